"""The book's heavy experiments from the command line (a front end over the library), on a GPU or a CPU:

    python -m nullspace_utils.experiments watermark --profile teaching --device cuda

Each runner computes with the chapter's module (watermark, approximate, robustness, fingerprint) and
writes one result file, ``book/results/<profile>/<kind>.json``, through nullspace_utils.results: checked
against its schema, with the provenance (command, arguments, versions, commit, device) that made it.
The chapters plot those files; tests recompute one cheap point of each (the ``*_CHECK`` settings) so the
committed numbers cannot drift from the code. Progress is logged (shown at INFO level).

The settings of each run (``*_CONFIG``, ``*_CHECK``) live here, beside the command that uses them: they describe
runs, not methods, and each result file records the ones it ran with.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, cast

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset, TensorDataset

from nullspace_utils import approximate, finetune, metrics, models, results, robustness
from nullspace_utils import fingerprint as fp
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import Profile, get_profile
from nullspace_utils.studies import common, watermark_paper
from nullspace_utils.studies import finetune as finetune_study
from nullspace_utils.studies import watermark as watermark_study

__all__ = ["main", "fingerprint_check", "APPROXIMATE_CONFIG",
           "APPROXIMATE_CHECK", "ROBUSTNESS_CONFIG", "ROBUSTNESS_CHECK", "FINGERPRINT_CONFIG", "FINGERPRINT_CHECK"]

logger = logging.getLogger(__name__)

#: Learned-noise sweep settings per profile (paper Fig. 2 at the encoder; Fig. 3 at the input, for all six models).
#: The recipe is the authors' follow-up code's (Liu-Hy/NS-ViT): eq. 6's L2 norm, SGD, rate x0.1 at 30/60/80 % of
#: the run. Departures, each stated in the chapters: a budget in *steps* (theirs is 500 epochs of ImageNette),
#: the rate chosen per model, level and lim by a probe on training images (``lr_grid``, widened until the choice is
#: interior), and input-level lims in [0, 1] pixel units. ``lims`` grow by ``extend_factor`` past the listed ones
#: until Uniform(-lim, lim) keeps under ``extend_until`` of a model's predictions (at most ``max_extensions``
#: times), so that every model is stressed. Every point is learned from ``seeds`` (start and batch order).
APPROXIMATE_CONFIG: dict[str, dict[str, Any]] = {
    "teaching": {"lims": (0.5, 1.0, 2.0, 4.0), "extend_until": 0.5, "extend_factor": 2.0, "max_extensions": 4,
                 "seeds": (0, 1, 2), "steps": 200, "milestones": (60, 120, 160), "batch_size": 128,
                 "probe_steps": 50, "lr_grid": approximate.LR_GRID, "train": 2_000, "val": 500,
                 "squared_lims": (1.0, 4.0)},
    "imagenet": {"lims": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0), "extend_until": 0.5, "extend_factor": 2.0,
                 "max_extensions": 4, "seeds": (0, 1, 2), "steps": 500, "milestones": (150, 300, 400),
                 "batch_size": 256, "probe_steps": 50, "lr_grid": approximate.LR_GRID, "train": 9_469,
                 "val": 3_925, "squared_lims": (0.5,)},
}
#: the cheap sweep point a test recomputes on the CPU (a fixed rate, so that CPU and GPU cannot choose differently)
APPROXIMATE_CHECK: dict[str, Any] = {"model_index": 0, "lim": 2.0, "seeds": (0,), "steps": 20, "milestones": (10,),
                                     "lr": 1.0, "batch_size": 32, "train": 64, "val": 64}

#: Input-level sweep (paper §5, Fig. 3b and c), same recipe and rules as :data:`APPROXIMATE_CONFIG`; Fig. 3a reads
#: the ViTs' encoder rows from the approximate sweep. ``transfer_lims``: the lims of the transfer tables.
ROBUSTNESS_CONFIG: dict[str, dict[str, Any]] = {
    "teaching": {"lims": (0.05, 0.1, 0.25, 0.5, 1.0), "extend_until": 0.5, "extend_factor": 2.0, "max_extensions": 4,
                 "seeds": (0, 1, 2), "steps": 200, "milestones": (60, 120, 160), "batch_size": 128,
                 "probe_steps": 50, "lr_grid": approximate.LR_GRID, "train": 2_000, "val": 500,
                 "transfer_lims": (0.1, 0.25, 0.5)},
    "imagenet": {"lims": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0), "extend_until": 0.5, "extend_factor": 2.0,
                 "max_extensions": 4, "seeds": (0, 1, 2), "steps": 500, "milestones": (150, 300, 400),
                 "batch_size": 256, "probe_steps": 50, "lr_grid": approximate.LR_GRID, "train": 9_469,
                 "val": 3_925, "transfer_lims": (0.05, 0.1, 0.25)},
}
#: the cheap robustness point a test recomputes on the CPU (a fixed rate: no probe)
ROBUSTNESS_CHECK: dict[str, Any] = {"cnn_index": 2, "level": "input", "lim": 0.1, "seeds": (0,), "steps": 10,
                                    "milestones": (5,), "lr": 0.1, "batch_size": 32, "train": 64, "val": 64}

#: Fingerprint experiments (paper §9's "patenting", made a test; see nullspace_utils.fingerprint)
FINGERPRINT_CONFIG: dict[str, dict[str, Any]] = {
    "teaching": {"n_probes": 16, "amplitude": 0.25, "fingerprints": 8, "tol": 1e-3, "bisection_steps": 14,
                 "fine_tune": {"images": 2_000, "steps": 200, "batch_size": 32,
                               "checkpoints": (0, 1, 2, 5, 10, 20, 50, 100, 200),
                               "lr": {"all": 1e-4, "patch_embed": 1e-4, "head": 1e-3}},
                 "sigmas": (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), "val": 500},
    "imagenet": {"n_probes": 32, "amplitude": 0.1, "fingerprints": 4, "tol": 1e-3, "bisection_steps": 14,
                 "fine_tune": {"images": 2_000, "steps": 200, "batch_size": 32,
                               "checkpoints": (0, 1, 2, 5, 10, 20, 50, 100, 200),
                               "lr": {"all": 1e-5, "patch_embed": 1e-5, "head": 1e-3}},
                 "sigmas": (0.0, 1e-4, 1e-3, 1e-2, 3e-2), "val": 500},
}
#: the cheap point a test recomputes on the CPU: fine-tuning everything for a few steps, logits access
FINGERPRINT_CHECK: dict[str, Any] = {"part": "all", "step": 5, "fingerprint_seed": 0}


# --------------------------------------------------------------------------- shared by the runners
def _provenance(args: argparse.Namespace, command: str) -> results.Provenance:
    """The provenance of this run: ``command``, every argument (defaults included) and the device it uses.

    A runner calls it after rendering its images: on a GPU, asking the device's name initialises CUDA,
    which the forked rendering workers must not inherit."""
    device = args.device if "device" in vars(args) else get_profile(args.profile).device
    arguments = {key: [str(item) for item in value] if isinstance(value, list) and value and isinstance(value[0], Path)
                 else str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    return results.provenance(command, arguments, device=device)


def _sweep_setup(args: argparse.Namespace, configs: dict[str, dict[str, Any]], check: dict[str, Any]
                 ) -> tuple[Profile, dict[str, Any], tuple[Dataset, Dataset, Dataset, Dataset]]:
    """Profile, settings and the four datasets (train, val and the check point's small ones) of a sweep.

    Images are rendered on the CPU (forked workers) before anything initialises CUDA, then moved to
    ``args.device``.
    """
    profile = get_profile(args.profile)
    config = dict(configs[profile.name])
    if args.steps:  # the lr decays stay at the same fractions of the run
        config["milestones"] = tuple(round(m * args.steps / config["steps"]) for m in config["milestones"])
        config["steps"] = args.steps
        config["probe_steps"] = min(config["probe_steps"], args.steps)  # a probe no longer than the run itself
    datasets = (profile.tensor_dataset("train", config["train"], args.device),
                profile.tensor_dataset("val", config["val"], args.device),
                TensorDataset(*stack_dataset(profile.dataset("train", n=check["train"]))),
                TensorDataset(*stack_dataset(profile.dataset("val", n=check["val"]))))
    return profile, config, datasets


# --------------------------------------------------------------------------- runners
def run_watermark(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Paper A.2: :func:`nullspace_utils.studies.watermark.run` with the profile's settings (``--n`` val images)."""
    profile = get_profile(args.profile)
    run = common.Run(device=args.device, out=args.out, command=command, arguments=common.json_arguments(vars(args)))
    settings = dataclasses.replace(watermark_study.SETTINGS[profile.name], images=args.n)
    return cast(dict, watermark_study.run(settings, profile, run))


def run_watermark_slsqp(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Paper §6, A.2 as its authors' code runs it: :func:`nullspace_utils.studies.watermark_paper.run` (``--n``
    images, ``--maxiter``; solved by ``--workers`` processes, or imported from ``--solved``), on the CPU."""
    profile = get_profile(args.profile)
    run = common.Run(device=str(profile.device), out=args.out, command=command,
                     arguments=common.json_arguments(vars(args)))
    settings = dataclasses.replace(watermark_paper.SETTINGS[profile.name], images=args.n, maxiter=args.maxiter)
    return cast(dict, watermark_paper.run(settings, profile, run, solved=args.solved, workers=args.workers))


def _lim_sweep(point: Callable[..., dict[str, Any]], config: dict[str, Any], on_row: Callable[[], None],
               rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``point(lim)`` over ``config["lims"]``, extended by ``extend_factor`` while the uniform noise of the
    last lim still keeps at least ``extend_until`` of the predictions (mean over seeds); ``on_row`` after each."""
    def add(lim: float) -> None:
        rows.append(point(lim=lim))
        on_row()

    for lim in config["lims"]:
        add(lim)
    for _ in range(config["max_extensions"]):
        uniform = approximate.seed_values(rows[-1], "uniform")
        if sum(uniform) / len(uniform) < config["extend_until"]:
            break
        add(float(f"{rows[-1]['lim'] * config['extend_factor']:.6g}"))
    return rows


def _point_settings(config: dict[str, Any], device: str) -> dict[str, Any]:
    """The keyword arguments of :func:`nullspace_utils.approximate.noise_point` that a sweep's config fixes."""
    return {"seeds": tuple(config["seeds"]), "steps": config["steps"], "milestones": tuple(config["milestones"]),
            "batch_size": config["batch_size"], "probe_steps": config["probe_steps"],
            "lr_grid": tuple(config["lr_grid"]), "device": device}


def _check_point(model: torch.nn.Module, train: Dataset, val: Dataset, check: dict[str, Any], level: str,
                 device: str) -> dict[str, Any]:
    """A sweep's cheap check point (fixed rate), which a test recomputes on the CPU."""
    return approximate.noise_point(model, train, val, level=level, lim=check["lim"], seeds=tuple(check["seeds"]),
                                   steps=check["steps"], milestones=tuple(check["milestones"]), lr=check["lr"],
                                   batch_size=check["batch_size"], train_images=check["train"], device=device)


def _chosen_models(args: argparse.Namespace, names: tuple[str, ...]) -> tuple[str, ...]:
    """The models of ``names`` that ``--models`` asks for (all of them by default); unknown names are refused."""
    if not getattr(args, "models", None):
        return names
    unknown = sorted(set(args.models) - set(names))
    if unknown:
        raise SystemExit(f"--models: {', '.join(unknown)} not among this sweep's models {', '.join(names)}.")
    return tuple(name for name in names if name in args.models)


def _noise_file(out: Path) -> Path:
    """Where a robustness run keeps its seed-0 input noises (beside its result; not a result file)."""
    return out.with_name(out.stem + ".noises.safetensors")


def _transfer(out: dict[str, Any], profile: Profile, loaded: dict[str, torch.nn.Module], noises: dict[str, torch.Tensor],
              val: Dataset, transfer_lims: list[float], device: str) -> None:
    """Fill ``out``'s transfer tables: ``transfer[lim][source][target]`` (every model's seed-0 input noise on every
    model) and ``exact_transfer[lim][target]`` (ViT-S's exact nullspace noise at the RMS of Uniform(-lim, lim))."""
    source = profile.vit_models[0]
    for lim in transfer_lims:
        by_source = {name: noises[f"{name}/{lim:g}"].to(device) for name in profile.models}
        out["transfer"][str(lim)] = robustness.transfer_matrix(loaded, by_source, val, device=device)
        out["exact_transfer"][str(lim)] = robustness.exact_transfer(loaded[source], loaded, val, rms=lim / 3 ** 0.5,
                                                                    device=device)


def run_merge(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Merge the parts of a sweep run in parallel, one ``--models`` subset each (same config), into one result;
    for robustness, compute the transfer tables from the parts' saved noises. The parts' provenances are kept."""
    parts = [results.read(str(path)) for path in args.parts]
    first = parts[0]
    if any(part["config"] != first["config"] or part["profile"] != first["profile"] for part in parts):
        raise SystemExit("merge: the parts were run with different configs or profiles; run them again alike.")
    out = {key: value for key, value in first.items() if key != "provenance"}
    out["provenance"] = _provenance(args, command)
    out["parts"] = [part["provenance"] for part in parts]
    tables = {"approximate": ("models", "keep_norm", "squared_loss"), "robustness": ("input",),
              "finetune": ("runs",)}[args.kind]
    order = get_profile(first["profile"]).models
    if args.kind == "finetune":  # untuned first, then by method, lim and seed
        names = {name for part in parts for name in part["runs"]}
        order = tuple(sorted(names, key=lambda name: (name != "untuned", name.split("-s")[0], name)))
    for table in tables:
        joined: dict[str, Any] = {}
        for part in parts:
            for name, rows in part[table].items():
                if name in joined:
                    raise SystemExit(f"merge: {name} is in two parts' {table!r}; give each model to one part.")
                joined[name] = rows
        out[table] = {name: joined[name] for name in order if name in joined}  # in the profile's order
    if args.kind == "robustness":
        from safetensors.torch import load_file

        profile = get_profile(first["profile"])
        missing = sorted(set(profile.models) - set(out["input"]))
        if missing:
            raise SystemExit(f"merge: no part has {', '.join(missing)}; the transfer tables need every model.")
        noises: dict[str, torch.Tensor] = {}
        for path in args.parts:
            noises.update(load_file(str(_noise_file(Path(path)))))
        val = profile.tensor_dataset("val", first["config"]["val"], args.device)
        loaded: dict[str, torch.nn.Module] = {name: profile.load_model(name, device=args.device)
                                              for name in profile.models}
        out["transfer"], out["exact_transfer"] = {}, {}
        _transfer(out, profile, loaded, noises, val, [float(lim) for lim in first["config"]["transfer_lims"]],
                  args.device)
    return out


def run_approximate(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Paper Fig. 2: learned encoder-level noise against lim for the profile's three ViTs, multi-seed, rate chosen
    per point; the first ViT again with ``keep_norm`` (the noise cannot shrink) at the same lims and rates, and
    with the squared loss at ``squared_lims``. Partial results are written after every point."""
    profile, config, (train, val, small_train, small_val) = _sweep_setup(args, APPROXIMATE_CONFIG, APPROXIMATE_CHECK)
    out: dict[str, Any] = {"provenance": _provenance(args, command), "profile": profile.name, "level": "encoder",
                           "config": config,
                           "loss": "eq. 6: L2 norm of the logit difference over the classes, mean over the batch",
                           "optimizer": "SGD, rate chosen per point (lr_choice), x0.1 at the milestones",
                           "models": {}, "keep_norm": {}, "squared_loss": {}}
    settings = _point_settings(config, args.device)

    def save() -> None:
        results.write_partial(args.out, out)

    for index, name in enumerate(profile.vit_models):
        if name not in _chosen_models(args, profile.vit_models):
            continue
        model = profile.load_model(name, device=args.device)
        rows = _lim_sweep(functools.partial(approximate.noise_point, model, train, val, level="encoder", **settings),
                          config, save, out["models"].setdefault(name, []))
        if index == 0:
            kept = out["keep_norm"].setdefault(name, [])
            for row in rows:  # the same lims and rates, with the norm held
                kept.append(approximate.noise_point(model, train, val, level="encoder", lim=row["lim"], lr=row["lr"],
                                                    keep_norm=True, **settings))
                save()
            squared = out["squared_loss"].setdefault(name, [])
            for lim in config["squared_lims"]:
                squared.append(approximate.noise_point(model, train, val, level="encoder", lim=lim, squared=True,
                                                       **settings))
                save()
    check = APPROXIMATE_CHECK
    check_model = profile.load_model(profile.vit_models[check["model_index"]], device=args.device)
    out["check"] = {**check, "result": _check_point(check_model, small_train, small_val, check, "encoder", args.device)}
    return out


def run_robustness(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Paper Fig. 3: input-level noise for all six models (b), multi-seed with its baselines (for ViTs also the
    exact-nullspace ones); (c) every model's seed-0 input noise on every model at ``transfer_lims``, and ViT-S's
    exact nullspace noise at the RMS of Uniform(-lim, lim). Fig. 3a reads the ViTs' encoder rows from the
    approximate sweep's file."""
    profile, config, (train, val, small_train, small_val) = _sweep_setup(args, ROBUSTNESS_CONFIG, ROBUSTNESS_CHECK)
    out: dict[str, Any] = {"provenance": _provenance(args, command), "profile": profile.name, "config": config,
                           "loss": "eq. 6: L2 norm of the logit difference over the classes, mean over the batch",
                           "input": {}, "transfer": {}, "exact_transfer": {}}
    settings = _point_settings(config, args.device)

    def save() -> None:
        results.write_partial(args.out, out)

    chosen = _chosen_models(args, profile.models)
    loaded: dict[str, torch.nn.Module] = {name: profile.load_model(name, device=args.device) for name in chosen}
    transfer_lims = [float(lim) for lim in config["transfer_lims"]]
    noises: dict[str, torch.Tensor] = {}  # "model/lim" -> the seed-0 input noise, for the transfer tables
    for name, model in loaded.items():
        learned: dict[float, dict[int, torch.Tensor]] = {}

        def point(lim: float, model: torch.nn.Module = model,
                  learned: dict[float, dict[int, torch.Tensor]] = learned) -> dict[str, Any]:
            learned[lim] = {}
            return approximate.noise_point(model, train, val, level="input", lim=lim, noises=learned[lim], **settings)

        _lim_sweep(point, config, save, out["input"].setdefault(name, []))
        for lim in transfer_lims:
            noises[f"{name}/{lim:g}"] = learned[lim][config["seeds"][0]]
    save_file(noises, _noise_file(args.out))  # a part of a parallel run hands its noises to `merge`
    if set(chosen) == set(profile.models):
        _transfer(out, profile, loaded, noises, val, transfer_lims, args.device)
        save()
    if profile.cnn_models[ROBUSTNESS_CHECK["cnn_index"]] not in loaded:
        loaded[profile.cnn_models[ROBUSTNESS_CHECK["cnn_index"]]] = profile.load_model(
            profile.cnn_models[ROBUSTNESS_CHECK["cnn_index"]], device=args.device)
    check = ROBUSTNESS_CHECK  # the profile's third CNN (MobileNetV3), already loaded
    out["check"] = {**check, "result": _check_point(loaded[profile.cnn_models[check["cnn_index"]]], small_train,
                                                    small_val, check, check["level"], args.device)}
    return out


def fingerprint_check(owner: torch.nn.Module, fingerprint: fp.Fingerprint, images: torch.Tensor,
                      labels: torch.Tensor, config: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint run's cheap point (:data:`FINGERPRINT_CHECK`): a copy of ``owner`` fine-tuned (its
    ``part``) for ``step`` steps on ``images``, verified with logits under ``config``'s tolerance."""
    tune, check = config["fine_tune"], FINGERPRINT_CHECK
    for _, thief in fp.fine_tune(owner, images, labels, part=check["part"], steps=check["step"],
                                 lr=tune["lr"][check["part"]], batch_size=tune["batch_size"]):
        return fp.verification_row(fingerprint, thief, output="logits", tol=config["tol"],
                                   bisection_steps=config["bisection_steps"])
    raise AssertionError("fine_tune yielded nothing")


def run_fingerprint(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Fingerprint chapter: every suspect x output x fingerprint seed; the fade under fine-tuning (everything,
    only the head, only the patch embedding) against steps; the input-noise defence against sigma."""
    profile = get_profile(args.profile)
    config = FINGERPRINT_CONFIG[profile.name]
    tolerances = {"tol": config["tol"], "bisection_steps": config["bisection_steps"]}
    owner = profile.load_model(profile.vit_models[0])
    val_images, val_labels = stack_dataset(profile.dataset("val", n=config["val"]))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=config["fine_tune"]["images"]))
    fingerprints = [fp.make_fingerprint(owner, n_probes=config["n_probes"], amplitude=config["amplitude"], seed=seed,
                                        images=val_images) for seed in range(config["fingerprints"])]
    out: dict[str, Any] = {"provenance": _provenance(args, command), "profile": profile.name, "config": config,
                           "owner": owner.name, "suspects": {}, "fade": {}, "defence": []}
    for name, (model, derived) in fp.make_suspects(profile, owner).items():
        entry: dict[str, Any] = {"derived": derived, "accuracy": metrics.accuracy(model, val_images, val_labels,
                                                                                    classes=profile.label_indices)}
        for output in fp.OUTPUTS:
            entry[output] = [fp.verification_row(f, model, output=output, **tolerances) for f in fingerprints]
        out["suspects"][name] = entry
        logger.info("%s %s", name, {output: [row["kept"] for row in entry[output]] for output in fp.OUTPUTS})
        results.write_partial(args.out, out)
    tune = config["fine_tune"]
    for part in ("all", "head", "patch_embed"):
        rows = []
        for step, thief in fp.fine_tune(owner, new_images, new_labels, part=part, steps=tune["steps"],
                                        lr=tune["lr"][part], checkpoints=tuple(tune["checkpoints"]),
                                        batch_size=tune["batch_size"], reset_head=part == "head"):
            row = {"step": step, "accuracy": metrics.accuracy(thief, val_images, val_labels, classes=profile.label_indices),
                   **fp.verification_rows(fingerprints[0], thief, **tolerances)}
            rows.append(row)
            logger.info("%s %s %s %s", part, step, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS})
        out["fade"][part] = rows
        results.write_partial(args.out, out)
    for sigma in config["sigmas"]:
        defended = fp.NoisyInput(owner, sigma)
        row = {"sigma": sigma, "accuracy": metrics.accuracy(defended, val_images, val_labels, classes=profile.label_indices),
               **fp.verification_rows(fingerprints[0], defended, **tolerances)}
        out["defence"].append(row)
        logger.info("sigma %s %s %s", sigma, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS})
    out["check"] = {**FINGERPRINT_CHECK, "result": fingerprint_check(owner, fingerprints[0], new_images, new_labels,
                                                                     config)}
    return out


def run_finetune(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Beyond the paper: :func:`nullspace_utils.studies.finetune.run` with the profile's settings (``--steps``
    overrides the fine-tuning steps); ``--seeds``/``--lims``/``--methods`` run one part (join the parts with
    ``merge finetune``), ``--weights`` is the folder for the fine-tuned weights."""
    profile = get_profile(args.profile)
    run = common.Run(device=args.device, out=args.out, command=command, arguments=common.json_arguments(vars(args)))
    settings = finetune_study.SETTINGS[profile.name].with_steps(args.steps)
    return cast(dict, finetune_study.run(settings, profile, run, seeds=args.seeds, lims=args.lims,
                                         methods=args.methods, weights=args.weights))


def run_finetune_corruptions(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The "-C" yardstick (:func:`nullspace_utils.studies.finetune.run_corruptions`) of every model of the sweep
    ``--sweep`` (default: the committed one), its weights in ``--weights`` (default: the sweep's folder)."""
    profile = get_profile(args.profile)
    run = common.Run(device=args.device, out=args.out, command=command, arguments=common.json_arguments(vars(args)))
    sweep = finetune_study.RESULT.read(str(args.sweep or finetune_study.RESULT.path(profile.name)))
    return cast(dict, finetune_study.run_corruptions(sweep, profile, run, weights=args.weights))


#: experiment name (as typed on the command line) -> its runner


RUNNERS: dict[str, Callable[[argparse.Namespace, str], dict[str, Any]]] = {
    "watermark": run_watermark, "watermark-slsqp": run_watermark_slsqp, "approximate": run_approximate,
    "robustness": run_robustness, "fingerprint": run_fingerprint, "merge": run_merge, "finetune": run_finetune,
    "finetune-corruptions": run_finetune_corruptions}


# --------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per runner, with its options."""
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(prog=results.EXPERIMENTS_COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    wm = sub.add_parser("watermark", help="evaluate output-preserving watermarks on the val split (paper A.2)")
    wm.add_argument("--profile", default="teaching")
    wm.add_argument("--device", default=default_device)
    wm.add_argument("--n", type=int, default=None, help="number of val images (default: the whole split)")
    wm.add_argument("--out", type=Path, default=None)
    early = sub.add_parser("watermark-slsqp", help="the paper's procedure (per-channel SLSQP, p = 1) and every "
                                                   "candidate for its 85 %% on the same images (CPU, slow)")
    early.add_argument("--profile", default="teaching")
    early.add_argument("--n", type=int, default=watermark_paper.SETTINGS["teaching"].images)
    early.add_argument("--maxiter", type=int, default=watermark_paper.SETTINGS["teaching"].maxiter)
    early.add_argument("--workers", type=int, default=2, help="processes solving images in parallel")
    early.add_argument("--solved", type=Path, default=None,
                       help="a folder of <model>.npz answers of the same SLSQP run made elsewhere "
                            "(scripts/paper_slsqp_solve.py) to evaluate instead of solving here")
    early.add_argument("--out", type=Path, default=None)
    sweeps = (("approximate", "learned encoder-level noise against lim for the profile's ViTs (Fig. 2)"),
              ("robustness", "ViTs vs CNNs under learned noise, and transfer (Fig. 3)"))
    for name, description in sweeps:
        sweep = sub.add_parser(name, help=description)
        sweep.add_argument("--profile", default="teaching")
        sweep.add_argument("--device", default=default_device)
        sweep.add_argument("--steps", type=int, default=None, help="override the profile's number of SGD steps")
        sweep.add_argument("--models", nargs="+", default=None,
                           help="run only these models (one part of a parallel run; join the parts with `merge`)")
        sweep.add_argument("--out", type=Path, default=None)
    tune = sub.add_parser("finetune", help="beyond the paper: nullspace-augmented fine-tuning against plain and "
                                           "matched-energy Gaussian fine-tuning, judged on clean, PGD and match")
    tune.add_argument("--profile", default="teaching")
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
    corrupt.add_argument("--profile", default="teaching")
    corrupt.add_argument("--device", default="cpu")
    corrupt.add_argument("--sweep", type=Path, default=None, help="the finetune result (default: the committed one)")
    corrupt.add_argument("--weights", type=Path, default=None, help="its weights folder (default: the committed one)")
    corrupt.add_argument("--out", type=Path, default=None)
    merge = sub.add_parser("merge", help="join the parts of a sweep run in parallel (--models) into one result")
    merge.add_argument("kind", choices=("approximate", "robustness", "finetune"))
    merge.add_argument("parts", nargs="+", type=Path, help="the parts' result files")
    merge.add_argument("--device", default=default_device)
    merge.add_argument("--out", type=Path, default=None)
    finger = sub.add_parser("fingerprint", help="verify the owner's fingerprint on copies, thieves' models and "
                                                "unrelated models (paper §9; CPU, a few minutes)")
    finger.add_argument("--profile", default="teaching")
    finger.add_argument("--out", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one experiment and write its result file (``--out``, by default
    :func:`~nullspace_utils.results.result_file` in this checkout; partial results go there too).

    The whole run computes in full float32 (:func:`~nullspace_utils.models.exact_float32`): on a GPU, TF32
    would round the logits by about 1e-2, swamping the small changes the experiments measure."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress, for the one who ran the command
    kind = args.kind if args.experiment == "merge" else args.experiment
    if args.experiment == "merge":
        args.profile = results.read(str(args.parts[0]))["profile"]
    args.out = args.out or results.REPOSITORY_ROOT / results.result_file(kind, args.profile)
    with models.exact_float32():
        result = RUNNERS[args.experiment](args, f"{results.EXPERIMENTS_COMMAND} {' '.join(argv)}")
    logger.info("wrote %s", results.write(args.out, result, kind=kind))


if __name__ == "__main__":
    main()
