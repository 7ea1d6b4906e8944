"""The command line of the book's heavy experiments, a front end over ``nullspace_utils.studies``, on a GPU or
a CPU::

    python -m nullspace_utils.experiments watermark --profile teaching --device cuda

Each sub-command runs one study with its profile's settings (``studies.<study>.SETTINGS``) and writes its result
file, ``book/results/<profile>/<kind>.json`` (or ``--out``), checked against the study's schema, with the
provenance (command, arguments, versions, commit, device) that made it. A sweep run in parallel parts
(``--models`` and ``--lims`` for the noise sweeps, ``--seeds``/``--lims``/``--methods`` for finetune) is joined by
``merge``. Progress is logged.

``all`` runs every study a chapter reads as one resumable plan (:mod:`nullspace_utils.plan`): its parts in
order, one process per device (``--devices cuda:0 cuda:1``), merges included; a rerun skips the finished parts::

    python -m nullspace_utils.experiments all --profile imagenet --devices cuda --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from nullspace_utils import finetune, models, plan, results
from nullspace_utils.profiles import PROFILE_NAMES, Profile, get_profile
from nullspace_utils.studies import approximate as approximate_study
from nullspace_utils.studies import common
from nullspace_utils.studies import finetune as finetune_study
from nullspace_utils.studies import fingerprint as fingerprint_study
from nullspace_utils.studies import robustness as robustness_study
from nullspace_utils.studies import watermark as watermark_study
from nullspace_utils.studies import watermark_paper as watermark_paper_study

__all__ = ["main", "RUNNERS", "KINDS"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- sub-commands -> studies
def _given(settings: Any, **options: Any) -> Any:
    """``settings`` with the options the command line was given (an option left out keeps the profile's value)."""
    return dataclasses.replace(settings, **{key: value for key, value in options.items() if value is not None})


def _watermark(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    return watermark_study.run(_given(watermark_study.SETTINGS[profile.name], images=args.n), profile, how)


def _watermark_slsqp(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    settings = _given(watermark_paper_study.SETTINGS[profile.name], images=args.n, maxiter=args.maxiter)
    return watermark_paper_study.run(settings, profile, how, solved=args.solved, workers=args.workers)


def _watermark_max_noise(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    settings = _given(watermark_paper_study.MAX_NOISE_SETTINGS[profile.name], images=args.n, maxiter=args.maxiter)
    return watermark_paper_study.run_max_noise(settings, profile, how, solved=args.solved, workers=args.workers)


def _approximate(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    return approximate_study.run(approximate_study.SETTINGS[profile.name].with_steps(args.steps), profile, how, models=args.models,
                                 lims=args.lims)


def _robustness(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    return robustness_study.run(robustness_study.SETTINGS[profile.name].with_steps(args.steps), profile, how, models=args.models,
                                lims=args.lims)


def _robustness_transfer(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    path = str(args.sweep or robustness_study.RESULT.path(profile.name))
    try:  # a file the user names is read from the current folder; the default is the committed one
        sweep = robustness_study.RESULT.load(path) if args.sweep else robustness_study.RESULT.read(path)
    except (FileNotFoundError, results.ResultFileError) as error:
        raise common.StudyError(f"--sweep: {error}") from error
    if sweep is None or sweep["profile"] != profile.name:
        raise common.StudyError(f"--sweep: {path} is not a robustness result of the {profile.name!r} profile; run "
                                f"`robustness --profile {profile.name}` first.")
    noises = robustness_study.sweep_noises(sweep, Path(path))  # its own noises, when the sweep saved them
    return robustness_study.run_transfer(robustness_study.SETTINGS[profile.name], sweep, profile, how, noises=noises)


def _fingerprint(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    return fingerprint_study.run(fingerprint_study.SETTINGS[profile.name], profile, how)


def _finetune(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    return finetune_study.run(finetune_study.SETTINGS[profile.name].with_steps(args.steps), profile, how,
                              seeds=args.seeds, lims=args.lims, methods=args.methods, weights=args.weights)


def _finetune_corruptions(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    path = str(args.sweep or finetune_study.RESULT.path(profile.name))
    try:  # a file the user names is read from the current folder; the default is the committed one
        sweep = finetune_study.RESULT.load(path) if args.sweep else finetune_study.RESULT.read(path)
    except (FileNotFoundError, results.ResultFileError) as error:
        raise common.StudyError(f"--sweep: {error}") from error
    if sweep is None or sweep["profile"] != profile.name:
        raise common.StudyError(f"--sweep: {path} is not a finetune result of the {profile.name!r} profile.")
    return finetune_study.run_corruptions(sweep, profile, how, weights=args.weights)


def _merge(args: argparse.Namespace, profile: Profile, how: common.Run) -> Any:
    try:
        parts: list[Any] = [KINDS[args.kind].load(path) for path in args.parts]  # from the current folder
    except (results.ResultFileError, FileNotFoundError) as error:
        raise common.StudyError(f"merge {args.kind}: a part is not a {args.kind} result ({error})") from error
    if args.kind == "robustness":
        return robustness_study.merge(parts, args.parts, profile, how)
    if args.kind == "finetune":
        return finetune_study.merge(parts, how)
    return approximate_study.merge(parts, profile, how)


def _part_profile(path: Path) -> str:
    """The profile of a part given to ``merge`` (read from the current folder)."""
    if not Path(path).is_file():
        raise common.StudyError(f"merge: {path} does not exist (relative paths are read from {Path.cwd()}).")
    try:
        return str(json.loads(Path(path).read_text())["profile"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise common.StudyError(f"merge: {path} is not a result file with a profile ({error}).") from error


#: sub-command -> (its runner, the kind of result file it writes; ``None``: the kind ``merge`` is given)
RUNNERS: dict[str, tuple[Callable[[argparse.Namespace, Profile, common.Run], Any], results.ResultKind | None]] = {
    "watermark": (_watermark, watermark_study.RESULT), "watermark-slsqp": (_watermark_slsqp, watermark_paper_study.RESULT),
    "watermark-max-noise": (_watermark_max_noise, watermark_paper_study.MAX_NOISE_RESULT),
    "approximate": (_approximate, approximate_study.RESULT), "robustness": (_robustness, robustness_study.RESULT),
    "robustness-transfer": (_robustness_transfer, robustness_study.TRANSFER_RESULT),
    "fingerprint": (_fingerprint, fingerprint_study.RESULT), "finetune": (_finetune, finetune_study.RESULT),
    "finetune-corruptions": (_finetune_corruptions, finetune_study.CORRUPTIONS_RESULT), "merge": (_merge, None)}
#: the kinds of result ``merge`` joins
KINDS: dict[str, results.ResultKind] = {"approximate": approximate_study.RESULT, "robustness": robustness_study.RESULT, "finetune": finetune_study.RESULT}


# --------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per runner, with its options."""
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(prog=results.EXPERIMENTS_COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    wm = sub.add_parser("watermark", help="evaluate output-preserving watermarks on the val split (paper A.2)")
    wm.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    wm.add_argument("--device", default=default_device)
    wm.add_argument("--n", type=int, default=None, help="number of val images (default: the whole split)")
    wm.add_argument("--out", type=Path, default=None)
    early = sub.add_parser("watermark-slsqp", help="the paper's procedure (per-channel SLSQP, p = 1) and every "
                                                   "candidate for its 85 %% on the same images (CPU, slow)")
    early.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    early.add_argument("--n", type=int, default=None, help="number of val images (default: the profile's, 20)")
    early.add_argument("--maxiter", type=int, default=None, help="SLSQP's iteration cap (default: the paper's 5000)")
    early.add_argument("--workers", type=int, default=2, help="processes solving images in parallel")
    early.add_argument("--solved", type=Path, default=None,
                       help="a folder of <model>.npz answers of the same SLSQP run made elsewhere "
                            "(scripts/paper_slsqp_solve.py) to evaluate instead of solving here")
    early.add_argument("--out", type=Path, default=None)
    noisy = sub.add_parser("watermark-max-noise", help="the authors' max_noise.py patch_parallel_impose as written "
                                                       "(maximal noise, no mark), and the LP optima of it and of the "
                                                       "A.2 watermark problem on the same images (CPU)")
    noisy.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    noisy.add_argument("--n", type=int, default=None, help="number of val images (default: the A.2 run's, 20)")
    noisy.add_argument("--maxiter", type=int, default=None, help="SLSQP's iteration cap (default: the code's 1000)")
    noisy.add_argument("--workers", type=int, default=2, help="processes solving in parallel")
    noisy.add_argument("--solved", type=Path, default=None,
                       help="a folder of <model>_max_noise.npz answers made elsewhere "
                            "(scripts/paper_slsqp_solve.py --max-noise) to evaluate instead of solving here")
    noisy.add_argument("--out", type=Path, default=None)
    sweeps = (("approximate", "learned encoder-level noise against lim for the profile's ViTs (Fig. 2)"),
              ("robustness", "ViTs vs CNNs under learned noise, and transfer (Fig. 3)"))
    for name, description in sweeps:
        sweep = sub.add_parser(name, help=description)
        sweep.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
        sweep.add_argument("--device", default=default_device)
        sweep.add_argument("--steps", type=int, default=None, help="override the profile's number of SGD steps")
        sweep.add_argument("--models", nargs="+", default=None,
                           help="run only these models (one part of a parallel run; join the parts with `merge`)")
        sweep.add_argument("--lims", nargs="+", type=float, default=None,
                           help="run only these of the profile's listed lims (one part; the part with the last "
                                "listed lim also learns the lims the sweep adds past it)")
        sweep.add_argument("--out", type=Path, default=None)
    transfer = sub.add_parser("robustness-transfer", help="Fig. 3c over seeds: every model's input noise at the "
                                                          "transfer lims, each seed's, on every model (the sweep's "
                                                          "noises when saved beside it, else learned again)")
    transfer.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    transfer.add_argument("--device", default=default_device)
    transfer.add_argument("--sweep", type=Path, default=None,
                          help="the robustness result whose noises (or rates) it reuses (default: the committed one)")
    transfer.add_argument("--out", type=Path, default=None)
    tune = sub.add_parser("finetune", help="beyond the paper: nullspace-augmented fine-tuning against plain and "
                                           "matched-energy Gaussian fine-tuning, judged on clean, PGD and match")
    tune.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    tune.add_argument("--device", default=default_device)
    tune.add_argument("--steps", type=int, default=None, help="override the profile's fine-tuning steps")
    tune.add_argument("--seeds", nargs="+", type=int, default=None, help="run only these seeds (one part)")
    tune.add_argument("--lims", nargs="+", type=float, default=None, help="run only these lims (one part)")
    tune.add_argument("--methods", nargs="+", default=None, choices=("untuned", *finetune.METHODS),
                      help="run only these methods (one part; gaussian needs nullspace beside it)")
    tune.add_argument("--weights", type=Path, default=None,
                      help="folder for the fine-tuned weights (default: book/results/<profile>/finetune/)")
    tune.add_argument("--out", type=Path, default=None)
    corrupt = sub.add_parser("finetune-corruptions", help="the -C accuracy of every model of finetune.json (CPU)")
    corrupt.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    corrupt.add_argument("--device", default="cpu")
    corrupt.add_argument("--sweep", type=Path, default=None, help="the finetune result (default: the committed one)")
    corrupt.add_argument("--weights", type=Path, default=None, help="its weights folder (default: the committed one)")
    corrupt.add_argument("--out", type=Path, default=None)
    merge = sub.add_parser("merge", help="join the parts of a sweep run in parallel (--models) into one result")
    merge.add_argument("kind", choices=("approximate", "robustness", "finetune"))
    merge.add_argument("parts", nargs="+", type=Path, help="the parts' result files")
    merge.add_argument("--device", default=default_device)
    merge.add_argument("--out", type=Path, default=None)
    everything = sub.add_parser("all", help="every result file the chapters read, as one resumable plan: the "
                                            "studies' parts, their merges and the passes after them")
    everything.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    everything.add_argument("--devices", nargs="+", default=[default_device],
                            help="one part at a time on each (several GPUs: cuda:0 cuda:1 ...); CPU-only parts run "
                                 "beside them")
    everything.add_argument("--only", nargs="+", default=None, help="these studies alone (e.g. approximate robustness)")
    everything.add_argument("--work", type=Path, default=None,
                            help="where parts, logs and the manifest go (default: .cache/plan/<profile>)")
    everything.add_argument("--out-dir", type=Path, default=None,
                            help="where finished result files go (default: book/results/<profile>/)")
    everything.add_argument("--dry-run", action="store_true",
                            help="print the plan and each learned-noise part's estimated time on the first device, "
                                 "from a few steps of each model measured there (a minute on a GPU, minutes on a CPU); run nothing")
    everything.add_argument("--no-measure", action="store_true",
                            help="measure nothing: with --dry-run print the plan and the parts' last times only; on "
                                 "CUDA start at once, the progress bar weighing parts by their last times")
    finger = sub.add_parser("fingerprint", help="verify the owner's fingerprint on copies, thieves' models and "
                                                "unrelated models (paper §9; CPU, a few minutes)")
    finger.add_argument("--profile", default="teaching", choices=PROFILE_NAMES)
    finger.add_argument("--out", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one experiment and write its result file (``--out``, by default the study's file in this checkout;
    partial results go there too). A request the study cannot honour exits with status 2 and says why.

    The whole run computes in full float32 (:func:`~nullspace_utils.models.exact_float32`): on a GPU, TF32
    would round the logits by about 1e-2, swamping the small changes the experiments measure."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress, for the one who ran the command
    if args.experiment == "all":
        _run_all(args, parser)
        return
    runner, written = RUNNERS[args.experiment]
    kind = written or KINDS[args.kind]  # merge: the kind it is given
    try:
        if written is None:  # merge: the profile of the parts
            args.profile = _part_profile(args.parts[0])
        profile = get_profile(args.profile)
        args.out = args.out or results.REPOSITORY_ROOT / kind.path(profile.name)
        device = getattr(args, "device", None) or str(profile.device)
        how = common.Run(device=device, out=args.out, command=f"{results.EXPERIMENTS_COMMAND} {' '.join(argv)}",
                         arguments=common.json_arguments(vars(args)))
        with models.exact_float32():
            result = runner(args, profile, how)
    except common.StudyError as error:
        parser.exit(2, f"{parser.prog} {args.experiment}: error: {error}\n")
    logger.info("wrote %s", kind.write(args.out, result))


def _run_all(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``all``: the profile's plan (:func:`~nullspace_utils.plan.study_plan`), printed (``--dry-run``) or run
    (:func:`~nullspace_utils.plan.run_plan`); exits 1 when a part failed, 130/143 when interrupted."""
    profile = get_profile(args.profile)
    try:
        parts = plan.study_plan(profile, only=args.only)
    except ValueError as error:
        parser.exit(2, f"{parser.prog} all: error: {error}\n")
    work = args.work or results.REPOSITORY_ROOT / ".cache" / "plan" / profile.name
    out_dir = args.out_dir or results.REPOSITORY_ROOT / "book" / "results" / profile.name
    # the estimate costs about a minute on a GPU: measured before a dry run, and before a run on CUDA (for the plan
    # printed first and the progress bar's ETA), unless --no-measure
    measure = not args.no_measure and (args.dry_run or args.devices[0].startswith("cuda"))
    estimates = None
    if measure:
        try:
            estimates = plan.estimate_plan(parts, profile, args.devices[0])
        except (RuntimeError, OSError) as error:  # e.g. out of memory: a dry run says so, a run goes on without
            if args.dry_run:
                parser.exit(1, f"{parser.prog} all: error: measuring a step failed: {error}\n")
            logger.warning("measuring the plan's steps failed (%s); running without an estimate", error)
    if args.dry_run or estimates:
        print(plan.describe_plan(parts, work, estimates=estimates, device=args.devices[0]), flush=True)
    if args.dry_run:
        return
    report = plan.run_plan(parts, work=work, out_dir=out_dir, devices=args.devices,
                           weights=plan.part_weights(parts, work, estimates))
    print(report.summary())
    if report.exit_code:
        sys.exit(report.exit_code)


if __name__ == "__main__":
    main()
