"""Beyond the paper: the nullspace-augmented fine-tuning sweep (the authors' CPAL 2025 follow-up) against plain and
matched-energy Gaussian fine-tuning, and its "-C" corruption yardstick.

The settings per profile (:data:`SETTINGS`, :class:`FinetuneSettings`), the runner (:func:`run`, in parts joined by
:func:`merge`) and the "-C" runner (:func:`run_corruptions`), the cheap check run a test repeats (:data:`CHECK`,
:func:`check_run`), the result files ``book/results/<profile>/finetune.json`` (:data:`RESULT`, schema
:class:`FinetuneSweepResult`) and ``finetune_corruptions.json`` (:data:`CORRUPTIONS_RESULT`, schema
:class:`FinetuneCorruptionsResult`), and the readers the fine-tuning chapter shows them with: groups of seeds
(:func:`group_runs`), the verdicts on each yardstick (:func:`verdicts`, resting on
:func:`~nullspace_utils.studies.evidence.compare_groups`), its tables and its figures' data. The method
(:func:`~nullspace_utils.finetune.finetune` and the yardsticks) is in :mod:`nullspace_utils.finetune`.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, cast

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset
from typing_extensions import NotRequired, TypedDict

from nullspace_utils import approximate, finetune, plotting, results, robustness
from nullspace_utils.data import stack_dataset
from nullspace_utils.files import sha256_of_file
from nullspace_utils.profiles import Profile, get_profile
from nullspace_utils.results import Fraction, Provenance
from nullspace_utils.studies import approximate as approximate_study
from nullspace_utils.studies import common, evidence, noise_sweep
from nullspace_utils.studies.noise_sweep import NoisePoint

__all__ = ["FinetuneSettings", "CheckSettings", "SETTINGS", "CHECK", "run_name", "mapped_labels",
           "check_run", "run", "merge", "run_corruptions", "group_runs", "seed_scores", "comparison_pairs",
           "comparison_sentence", "verdict_cell", "verdict_lines", "Measure", "measures", "verdicts",
           "verdict_box", "verdict_table", "settings_table", "noise_table", "first_run_line", "loss_curve", "loss_panels",
           "clean_table", "corruption_gallery", "severity_panels", "corruption_table", "pgd_panels",
           "nullspace_table", "last_lim_line", "claims", "recomputed_lines", "sweep_images", "estimate_sweep_hours", "work",
           "cost_lines",
           "RESULT", "CORRUPTIONS_RESULT", "FinetuneSweepResult", "FinetuneSweepConfig", "FinetuneModelRow",
           "FinetuneRunRecord", "FinetuneRoundRow", "FinetuneCheck", "FinetuneCorruptionsResult", "CorruptionTable"]

logger = logging.getLogger(__name__)

#: a result file's models by name (``finetune.json``'s ``runs``, the -C file's ``models``), as read
Rows = Mapping[str, Any]


# --------------------------------------------------------------------------- the result file
class FinetuneSweepConfig(TypedDict):
    """:class:`FinetuneSettings` of the profile, as run (``steps`` may be overridden)."""

    model: str
    seeds: list[int]
    lims: list[float]
    steps: int
    batch_size: int
    rounds: int
    lr: float
    weight_decay: float
    noise_steps: int
    noise_milestones: list[int]
    noise_images: int
    noise_batch_size: int
    probe_steps: int
    train: int
    val: int
    attack_images: int
    pgd_epsilons: list[float]
    pgd_steps: int
    match_lims: list[float]
    match: dict[str, Any]
    exact_lims: list[float]
    corruption_images: int
    corruption_seed: int
    history_every: int


class FinetuneRoundRow(TypedDict):
    """``finetune.RoundRecord``: one round's augmentation noise (norm and RMS; for learned noise its start, rate and
    eq. 6 loss at the first and last step)."""

    round: int
    start_step: int
    norm: float
    rms: float
    initial_norm: float
    noise_lr: float
    noise_loss_first: float
    noise_loss_last: float


class FinetuneRunRecord(TypedDict):
    """``finetune.FinetuneResult.record()``: the run's settings, its losses (every ``history_every`` steps), its
    rounds and its wall time in seconds."""

    config: dict[str, Any]
    history: list[dict[str, float]]
    rounds: list[FinetuneRoundRow]
    seconds: float


class FinetuneModelRow(TypedDict):
    """One model of the fine-tuning sweep: how it was made (``method`` is ``untuned`` for the zoo model itself,
    which has no ``run`` and no weights file) and its yardsticks. ``pgd`` maps ``"<eps*255>/255"`` to accuracy,
    ``match`` holds one approximate-nullspace point per ``match_lims``, ``exact`` maps a pixel lim to the fraction
    of predictions kept under the untuned model's exact nullspace noise at the RMS of Uniform(-lim, lim)."""

    method: str
    lim: float | None
    seed: int | None
    weights: str | None
    weights_sha256: NotRequired[str]
    clean: Fraction
    pgd: dict[str, Fraction]
    match: list[NoisePoint]
    exact: dict[str, Fraction]
    run: NotRequired[FinetuneRunRecord]


class FinetuneCheck(TypedDict):
    """:data:`CHECK` and its tiny run's losses, noise RMS and clean accuracy (:func:`check_run`; a test repeats
    it)."""

    method: str
    lim: float
    steps: int
    batch_size: int
    rounds: int
    noise_steps: int
    noise_lr: float
    noise_milestones: list[int]
    noise_images: int
    noise_batch_size: int
    seed: int
    train: int
    val: int
    corruption: str
    severity: int
    result: dict[str, Any]


class FinetuneSweepResult(TypedDict):
    """``book/results/<profile>/finetune.json``: beyond the paper, nullspace-augmented fine-tuning and its two
    baselines, every model judged; the weights are in ``weights_folder``."""

    provenance: Provenance
    profile: str
    config: FinetuneSweepConfig
    weights_folder: str
    runs: dict[str, FinetuneModelRow]
    check: FinetuneCheck
    parts: NotRequired[list[Provenance]]  # a run in parallel parts, joined by ``experiments merge``


class CorruptionTable(TypedDict):
    """``finetune.corruption_accuracy``: accuracy per corruption and severity (keys ``"1"``..``"5"``), per
    corruption (mean over severities) and ``mean`` over corruptions."""

    per_severity: dict[str, dict[str, Fraction]]
    per_corruption: dict[str, Fraction]
    mean: Fraction


class FinetuneCorruptionsResult(TypedDict):
    """``book/results/<profile>/finetune_corruptions.json``: the "-C" accuracy of every model of ``finetune.json``
    (made on the CPU from its weights; ``sweep_commit`` is the commit of the sweep it read)."""

    provenance: Provenance
    profile: str
    sweep_commit: str
    config: dict[str, Any]
    models: dict[str, CorruptionTable]
    check: dict[str, Any]


#: the sweep's result file, ``book/results/<profile>/finetune.json``
RESULT: results.ResultKind[FinetuneSweepResult] = results.ResultKind("finetune", FinetuneSweepResult, "finetune")
#: the "-C" result file, ``book/results/<profile>/finetune_corruptions.json``
CORRUPTIONS_RESULT: results.ResultKind[FinetuneCorruptionsResult] = results.ResultKind(
    "finetune_corruptions", FinetuneCorruptionsResult, "finetune-corruptions")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class FinetuneSettings:
    """The fine-tuning sweep of one profile. Per seed of ``seeds``: ``nullspace`` at each of ``lims``, ``gaussian``
    with the energy of that nullspace run round by round, and ``plain``: same steps, batches and seeds. ``model``
    is fine-tuned for ``steps`` AdamW steps of ``batch_size`` images (rate ``lr``, ``weight_decay``, cosine) in
    ``rounds`` rounds, which stand for the authors' epochs (teaching: one round is one pass over the ``train``
    images); each round's noise is learned for ``noise_steps`` steps (rate x0.1 at ``noise_milestones``) on
    ``noise_images`` images in batches of ``noise_batch_size``, the rate chosen once by a ``probe_steps`` probe.

    Every fine-tuned model and the untuned one are judged on clean accuracy (``val`` images), PGD-L∞ at
    ``pgd_epsilons`` with ``pgd_steps`` steps (the first ``attack_images``), the approximate nullspace match at
    ``match_lims`` (``match``), the untuned model's exact nullspace noise at the RMS of Uniform(-lim, lim) for
    ``exact_lims`` (pixels), and, on the CPU, the "-C" set (``corruption_images`` corrupted with
    ``corruption_seed``; :func:`run_corruptions`). ``history_every``: the losses kept per run."""

    model: str
    seeds: tuple[int, ...]
    lims: tuple[float, ...]
    steps: int
    batch_size: int
    rounds: int
    lr: float
    weight_decay: float
    noise_steps: int
    noise_milestones: tuple[int, ...]
    noise_images: int
    noise_batch_size: int
    probe_steps: int
    train: int
    val: int
    attack_images: int
    pgd_epsilons: tuple[float, ...]
    pgd_steps: int
    match_lims: tuple[float, ...]
    match: noise_sweep.PointSettings
    exact_lims: tuple[float, ...]
    corruption_images: int
    corruption_seed: int
    history_every: int

    def with_steps(self, steps: int | None) -> "FinetuneSettings":
        """These settings with ``steps`` fine-tuning steps (``None``: unchanged); the noise settings stay."""
        return dataclasses.replace(self, steps=steps) if steps else self


@dataclass(frozen=True)
class CheckSettings:
    """The cheap fine-tuning run a test repeats on the CPU (:func:`check_run`): a few ``method`` steps at a fixed
    noise rate ``noise_lr`` (no probe, so that CPU and GPU cannot choose differently) on the first ``train``
    teaching images, judged by its losses and its clean accuracy on ``val`` images; and the "-C" cell the
    corruption runner recomputes (``corruption`` at ``severity``)."""

    method: str
    lim: float
    steps: int
    batch_size: int
    rounds: int
    noise_steps: int
    noise_lr: float
    noise_milestones: tuple[int, ...]
    noise_images: int
    noise_batch_size: int
    seed: int
    train: int
    val: int
    corruption: str
    severity: int


#: The sweep of each profile. teaching: the zoo's ViT-S at lims 2 and 4, five rounds of one pass over 20 000
#: images; imagenet: the authors' setting on ImageNette (ViT-S/32, lim 3, ten epochs of 148 steps), not run here
#: (see the chapter). ``match`` is the approximate sweep's recipe of the profile.
SETTINGS: dict[str, FinetuneSettings] = {
    "teaching": FinetuneSettings(
        model="zoo-vit-s", seeds=(0, 1, 2), lims=(2.0, 4.0), steps=1565, batch_size=64, rounds=5, lr=1e-4,
        weight_decay=1e-4, noise_steps=40, noise_milestones=(30,), noise_images=512, noise_batch_size=128,
        probe_steps=20, train=20_000, val=2_000, attack_images=500, pgd_epsilons=finetune.PGD_EPSILONS, pgd_steps=10,
        match_lims=(4.0, 8.0),
        match=approximate_study.SETTINGS["teaching"].point(),
        exact_lims=(0.25, 0.5), corruption_images=300, corruption_seed=0, history_every=10),
    "imagenet": FinetuneSettings(
        model="vit_small_patch32_224", seeds=(0, 1, 2), lims=(3.0,), steps=1480, batch_size=64, rounds=10, lr=1e-4,
        weight_decay=1e-4, noise_steps=40, noise_milestones=(30,), noise_images=947, noise_batch_size=128,
        probe_steps=20, train=9_469, val=3_925, attack_images=500, pgd_epsilons=finetune.PGD_EPSILONS, pgd_steps=10,
        match_lims=(3.0,),
        match=approximate_study.SETTINGS["imagenet"].point(),
        exact_lims=(0.05, 0.1), corruption_images=500, corruption_seed=0, history_every=10),
}

#: the check run: six nullspace-noise steps in two rounds, four noise steps each at rate 100
CHECK = CheckSettings(method="nullspace", lim=4.0, steps=6, batch_size=16, rounds=2, noise_steps=4, noise_lr=100.0,
                      noise_milestones=(), noise_images=32, noise_batch_size=16, seed=0, train=64, val=64,
                      corruption="gaussian_noise", severity=3)


# --------------------------------------------------------------------------- the runners
def run_name(method: str, seed: int = 0, lim: float | None = None) -> str:
    """The key of one model in ``finetune.json`` and its weights file's stem: ``nullspace-lim4-s0``,
    ``gaussian-lim4-s0``, ``plain-s0``, and ``untuned`` (the zoo model itself)."""
    if method == "untuned":
        return "untuned"
    return f"{method}-s{seed}" if method == "plain" else f"{method}-lim{lim:g}-s{seed}"


def _finetune_config(settings: FinetuneSettings, method: str, seed: int, lim: float | None,
                     gaussian_rms: tuple[float, ...] | None = None) -> finetune.FinetuneConfig:
    """The :class:`~nullspace_utils.finetune.FinetuneConfig` of one run of the sweep."""
    extra: dict[str, Any] = {"lim": lim} if lim is not None else {}
    return finetune.FinetuneConfig(
        method=method, seed=seed, gaussian_rms=gaussian_rms, noise_milestones=tuple(settings.noise_milestones),
        steps=settings.steps, batch_size=settings.batch_size, rounds=settings.rounds, lr=settings.lr,
        weight_decay=settings.weight_decay, noise_steps=settings.noise_steps, noise_images=settings.noise_images,
        noise_batch_size=settings.noise_batch_size, probe_steps=settings.probe_steps, **extra)


def mapped_labels(profile: Profile, dataset: TensorDataset, *, as_float: bool = False) -> TensorDataset:
    """``dataset`` with labels as logit columns: ImageNette's 0..9 become ImageNet indices for 1000-way models (so
    that fine-tuning's cross-entropy and the attacks see the model's own classes); the teaching set's unchanged.
    ``as_float``: 8-bit images (ImageNette's, kept as uint8 by ``tensor_dataset``) become floats in [0, 1], as the
    yardsticks need; training batches are converted by the batcher instead, which saves memory."""
    images, labels = dataset.tensors
    if as_float and images.dtype == torch.uint8:
        images = images.float().div(255)
    if profile.label_indices is not None:
        labels = torch.tensor(profile.label_indices, device=labels.device)[labels]
    return TensorDataset(images, labels)


def _match_point(model: nn.Module, datasets: dict[str, TensorDataset], match: noise_sweep.PointSettings, lim: float,
                 device: str) -> NoisePoint:
    """The approximate chapter's learned-noise point at the encoder, for ``model`` at ``lim``."""
    return noise_sweep.noise_point(model, datasets["match_train"], datasets["match_val"], level="encoder", lim=lim,
                                   **noise_sweep.point_settings(match, device))


def _judge_model(model: nn.Module, untuned: nn.Module, settings: FinetuneSettings,
                 datasets: dict[str, TensorDataset], device: str) -> dict[str, Any]:
    """One model's yardsticks, except corruptions (CPU: :func:`run_corruptions`): clean accuracy, PGD-L∞, the
    approximate nullspace match at ``match_lims`` and the untuned model's exact nullspace noise at ``exact_lims``."""
    val_images, val_labels = datasets["val"].tensors
    attack_images, attack_labels = (tensor[: settings.attack_images] for tensor in datasets["val"].tensors)
    return {"clean": finetune.clean_accuracy(model, val_images, val_labels),
            "pgd": finetune.pgd_accuracy(model, attack_images, attack_labels, epsilons=settings.pgd_epsilons,
                                         steps=settings.pgd_steps),
            "match": [_match_point(model, datasets, settings.match, lim, device) for lim in settings.match_lims],
            "exact": {f"{lim:g}": robustness.exact_transfer(untuned, {"model": model}, datasets["match_val"],
                                                            rms=lim / 3 ** 0.5, device=device)["model"]
                      for lim in settings.exact_lims}}


def _run_record(result: finetune.FinetuneResult, every: int) -> dict[str, Any]:
    """``result.record()`` with every ``every``-th step of the loss history (and the last), for a small file."""
    record = result.record()
    history = record["history"]
    record["history"] = [row for row in history if row["step"] % every == 0 or row is history[-1]]
    return record


def check_run(check: CheckSettings = CHECK, device: str | torch.device = "cpu") -> dict[str, Any]:
    """``check``'s tiny run on the zoo ViT-S (teaching images): its losses, noise sizes and clean accuracy; the
    sweep stores it and a test repeats it on the CPU."""
    profile = get_profile("teaching")
    train = TensorDataset(*stack_dataset(profile.dataset("train", n=check.train)))
    val_images, val_labels = stack_dataset(profile.dataset("val", n=check.val))
    config = finetune.FinetuneConfig(
        method=check.method, lim=check.lim, steps=check.steps, batch_size=check.batch_size, rounds=check.rounds,
        noise_steps=check.noise_steps, noise_lr=check.noise_lr, noise_milestones=tuple(check.noise_milestones),
        noise_images=check.noise_images, noise_batch_size=check.noise_batch_size, seed=check.seed)
    tuned = finetune.finetune(profile.load_model("zoo-vit-s", device=device), train, config)
    return {"loss": [row["loss"] for row in tuned.history], "noise_rms": list(tuned.noise_rms),
            "clean": finetune.clean_accuracy(tuned.model, val_images.to(device), val_labels.to(device))}


def run(settings: FinetuneSettings, profile: Profile, how: common.Run, *, seeds: Sequence[int] | None = None,
        lims: Sequence[float] | None = None, methods: Sequence[str] | None = None, weights: Path | str | None = None,
        check: CheckSettings = CHECK) -> FinetuneSweepResult:
    """Beyond the paper: the authors' nullspace-augmented fine-tuning against plain and matched-energy Gaussian
    fine-tuning (``settings``), every model judged (clean, PGD, match, exact) and its weights saved to the folder
    ``weights`` (default: ``book/results/<profile>/finetune/``, beside the result). ``seeds`` / ``lims`` /
    ``methods`` run one part (join the parts with :func:`merge`); ``gaussian`` needs ``nullspace`` in the same
    part (it takes that run's noise energy, round by round), else :class:`~nullspace_utils.studies.common.StudyError`.
    The rows so far are saved to ``how.out`` after each model."""
    seeds = tuple(seeds) if seeds else tuple(settings.seeds)
    lims = tuple(lims) if lims else tuple(settings.lims)
    methods = tuple(methods) if methods else ("untuned", *finetune.METHODS)
    if "gaussian" in methods and "nullspace" not in methods:
        raise common.StudyError("--methods: gaussian matches the energy of the nullspace run of its seed and lim; "
                                "give nullspace in the same part.")
    device = how.device
    datasets = {"train": mapped_labels(profile, profile.tensor_dataset("train", settings.train, device)),
                "val": mapped_labels(profile, profile.tensor_dataset("val", settings.val, device), as_float=True)}
    datasets["match_train"] = TensorDataset(*(tensor[: settings.match.train] for tensor in datasets["train"].tensors))
    datasets["match_val"] = TensorDataset(*(tensor[: settings.match.val] for tensor in datasets["val"].tensors))
    weights_folder = RESULT.path(profile.name).removesuffix(".json")  # beside the result
    if weights is None and how.out is None:
        raise common.StudyError("weights: give a folder for the fine-tuned weights (a run that writes no result file "
                                f"does not write into the committed {weights_folder}/).")
    folder = Path(weights or results.REPOSITORY_ROOT / weights_folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name,
                           "config": common.settings_dict(settings), "weights_folder": weights_folder, "runs": {}}
    untuned = profile.load_model(settings.model, device=device)

    def judge(name: str, model: nn.Module, tuned: finetune.FinetuneResult | None, lim: float | None,
              seed: int | None) -> None:
        entry: dict[str, Any] = {"method": name.split("-")[0], "lim": lim, "seed": seed,
                                 "weights": None if tuned is None else f"{name}.safetensors"}
        if tuned is not None:
            finetune.save_weights(model, str(folder / f"{name}.safetensors"))
            entry["weights_sha256"] = sha256_of_file(folder / f"{name}.safetensors")
            entry["run"] = _run_record(tuned, settings.history_every)
        entry.update(_judge_model(model, untuned, settings, datasets, device))
        out["runs"][name] = entry
        how.save_partial(out)
        logger.info("%s clean %.3f pgd %s", name, entry["clean"], entry["pgd"])

    def tune(method: str, seed: int, lim: float | None, gaussian_rms: tuple[float, ...] | None = None
             ) -> finetune.FinetuneResult:
        tuned = finetune.finetune(untuned, datasets["train"], _finetune_config(settings, method, seed, lim,
                                                                               gaussian_rms))
        judge(run_name(method, seed, lim), tuned.model, tuned, lim, seed)
        return tuned

    if "untuned" in methods:
        judge("untuned", untuned, None, None, None)
    for seed in seeds:
        if "plain" in methods:
            tune("plain", seed, None)
        for lim in lims if "nullspace" in methods else ():
            noisy = tune("nullspace", seed, lim)
            if "gaussian" in methods:
                tune("gaussian", seed, lim, noisy.noise_rms)
    out["check"] = {**common.settings_dict(check), "result": check_run(check, device)}
    return cast(FinetuneSweepResult, out)


def merge(parts: Sequence[dict[str, Any]], how: common.Run) -> FinetuneSweepResult:
    """One sweep from its parts run in parallel (:func:`~nullspace_utils.studies.common.join_parts`), the models
    in a fixed order: untuned first, then by method, lim and seed."""
    names = {name for part in parts for name in part["runs"]}
    order = sorted(names, key=lambda name: (name != "untuned", name.split("-s")[0], name))
    return cast(FinetuneSweepResult, common.join_parts(parts, ("runs",), order, how))


def run_corruptions(sweep: FinetuneSweepResult, profile: Profile, how: common.Run, *,
                    weights: Path | str | None = None, check: CheckSettings = CHECK) -> FinetuneCorruptionsResult:
    """The "-C" yardstick of every model of ``sweep`` (CPU: imagecorruptions draws with NumPy), its weights read
    from ``weights`` (default: the sweep's ``weights_folder``): accuracy per corruption and severity on the first
    ``corruption_images`` val images, corrupted once and shown to all models; and ``check``'s cell for the
    untuned model on ``check.val`` images, which a test recomputes."""
    config = sweep["config"]
    folder = Path(weights or results.REPOSITORY_ROOT / sweep["weights_folder"])
    loaded: dict[str, nn.Module] = {
        name: profile.load_model(config["model"], device=how.device,
                                 **({} if entry["weights"] is None else {"weights": folder / entry["weights"]}))
        for name, entry in sweep["runs"].items()}
    images, labels = mapped_labels(profile, profile.tensor_dataset("val", config["corruption_images"]),
                                   as_float=True).tensors
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name,
                           "sweep_commit": sweep["provenance"]["commit"],
                           "config": {"images": len(images), "corruptions": list(finetune.CORRUPTIONS),
                                      "severities": list(finetune.SEVERITIES), "seed": config["corruption_seed"]}}
    out["models"] = finetune.corruption_accuracies(loaded, images, labels, seed=config["corruption_seed"],
                                                   show_progress=True)
    corrupted = finetune.corrupt_images(images[: check.val], check.corruption, check.severity,
                                        seed=config["corruption_seed"])
    out["check"] = {"corruption": check.corruption, "severity": check.severity, "images": check.val,
                    "accuracy": finetune.clean_accuracy(loaded["untuned"], corrupted, labels[: check.val])}
    return cast(FinetuneCorruptionsResult, out)


# --------------------------------------------------------------------------- reading a sweep: groups and verdicts
def group_runs(runs: Rows) -> dict[str, list[str]]:
    """The models of a fine-tuning sweep (``finetune.json``'s ``runs``) grouped by method and lim, each group's
    names in seed order: ``{"untuned": [...], "plain": [...], "nullspace lim 2": [...], "gaussian lim 2": [...]}``,
    untuned first, then plain, then each lim's nullspace and gaussian groups."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for name, row in runs.items():
        label = row["method"] if row["lim"] is None else f"{row['method']} lim {row['lim']:g}"
        groups.setdefault(label, []).append((row["seed"] or 0, name))

    def order(label: str) -> tuple:
        method, _, lim = label.partition(" lim ")
        return (method != "untuned", method != "plain", float(lim or 0), method != "nullspace")
    return {label: [name for _, name in sorted(groups[label])] for label in sorted(groups, key=order)}


def seed_scores(rows: Rows, names: Sequence[str], score: Callable[[dict], Any]) -> list[float]:
    """``score(row)`` for each model of ``names`` (one group of :func:`group_runs`: one value per seed)."""
    return [float(score(rows[name])) for name in names]


def comparison_pairs(lims: Sequence[float]) -> list[tuple[str, str]]:
    """The group pairs the chapter compares at each lim: nullspace against plain and against its matched-energy
    Gaussian control, and the Gaussian control against plain."""
    return [pair for lim in lims for pair in ((f"nullspace lim {lim:g}", "plain"),
                                              (f"nullspace lim {lim:g}", f"gaussian lim {lim:g}"),
                                              (f"gaussian lim {lim:g}", "plain"))]


def comparison_sentence(first_label: str, second_label: str, measure: str, comparison: dict[str, Any], *,
                        scale: float = 100.0, unit: str = "points") -> str:
    """A verdict in words from :func:`~nullspace_utils.studies.evidence.compare_groups`: "A beats / trails B on ...
    by X ± Y points" (mean ± standard deviation of the per-seed differences) only where the ranges separate, "not
    separable" otherwise, with the ranges it rests on."""
    ranges = (f"({first_label} {plotting.format_range(comparison['first'], scale=scale)}, "
              f"{second_label} {plotting.format_range(comparison['second'], scale=scale)})")
    if comparison["separated"] == 0:
        return f"{first_label} vs {second_label}, {measure}: not separable with these seeds {ranges}"
    verb = "beats" if comparison["separated"] > 0 else "trails"
    weak = " (weak: under twice its spread)" if comparison["weak"] else ""
    return (f"{first_label} {verb} {second_label} on {measure} by {abs(scale * comparison['difference']):.1f} "
            f"± {scale * comparison['spread']:.1f} {unit}{weak} {ranges}")


def verdict_cell(comparison: dict[str, Any], *, scale: float = 100.0) -> str:
    """:func:`~nullspace_utils.studies.evidence.compare_groups` in a table cell: the signed mean difference ± its
    spread ("+1.6 ± 0.5", with "(weak)" when under twice its spread) where the seeds' ranges separate, "not
    separable" where they overlap."""
    if comparison["separated"] == 0:
        return "not separable"
    weak = " (weak)" if comparison["weak"] else ""
    return f"{scale * comparison['difference']:+.1f} ± {scale * comparison['spread']:.1f}{weak}"


def _compare(rows: Rows, groups: dict[str, list[str]], score: Callable[[dict], Any],
             first: str, second: str) -> dict[str, Any]:
    return evidence.compare_groups(seed_scores(rows, groups[first], score), seed_scores(rows, groups[second], score))


def verdict_lines(rows: Rows, groups: dict[str, list[str]], score: Callable[[dict], Any],
                  pairs: Sequence[tuple[str, str]], measure: str) -> list[str]:
    """:func:`comparison_sentence` for each (first, second) group pair of ``pairs``: ``score(row)`` of each model's
    row in ``rows`` (``finetune.json``'s ``runs``, or the -C file's ``models``), groups as :func:`group_runs`
    gives."""
    return [comparison_sentence(first, second, measure, _compare(rows, groups, score, first, second))
            for first, second in pairs]


class Measure(NamedTuple):
    """One yardstick the chapter judges the methods by: its ``key`` (``clean``, ``corruptions``, ``pgd``,
    ``uniform``), its name in a verdict sentence (``verdict``) and in the verdict table (``label``), the ``rows``
    it scores (``finetune.json``'s ``runs`` or the -C file's ``models``), the ``score`` of one row, and whether
    plain fine-tuning is also compared with the untuned model (``against_untuned``)."""

    key: str
    verdict: str
    label: str
    rows: Rows
    score: Callable[[dict], Any]
    against_untuned: bool


def _clean(row: dict) -> float:
    return row["clean"]


def _mean(row: dict) -> float:
    return row["mean"]


def _pgd(row: dict, radius: str) -> float:
    return row["pgd"][radius]


def _uniform(row: dict, lim: float) -> float:
    """The share of predictions kept under the uniform token noise at ``lim``, mean over the match's seeds."""
    return float(np.mean([entry["uniform"]["match"] for point in row["match"] if point["lim"] == lim
                          for entry in point["seeds"]]))


def measures(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult | None = None) -> list[Measure]:
    """Every yardstick of ``sweep`` in the verdict table's order: clean accuracy, mean corruption accuracy (where
    the -C file ``corruptions`` is given), PGD accuracy at each radius, and the share of predictions kept under
    uniform token noise at the first match lim."""
    runs = sweep["runs"]
    lim = sweep["config"]["match_lims"][0]
    chosen = [Measure("clean", "clean accuracy", "clean accuracy", runs, _clean, True)]
    if corruptions is not None:
        chosen.append(Measure("corruptions", "mean corruption accuracy", "mean corruption accuracy (-C)",
                              corruptions["models"], _mean, True))
    chosen += [Measure("pgd", f"PGD accuracy at {radius}", f"PGD accuracy at {radius}", runs,
                       functools.partial(_pgd, radius=radius), True) for radius in runs["untuned"]["pgd"]]
    chosen.append(Measure("uniform", f"predictions kept under uniform token noise at lim {lim:g}",
                          f"kept under uniform token noise, lim {lim:g}", runs, functools.partial(_uniform, lim=lim),
                          False))
    return chosen


def verdicts(sweep: FinetuneSweepResult, key: str, corruptions: FinetuneCorruptionsResult | None = None
             ) -> list[str]:
    """The verdict sentences (:func:`verdict_lines`) on the measures of ``key`` (:func:`measures`; ``pgd``: every
    radius): plain against untuned where the measure has it, then :func:`comparison_pairs` at every lim."""
    chosen = [measure for measure in measures(sweep, corruptions) if measure.key == key]
    if not chosen:
        raise ValueError(f"no measure {key!r} in this sweep (the -C measure needs the corruptions file); choose from "
                         f"{sorted({measure.key for measure in measures(sweep, corruptions)})}.")
    groups = group_runs(sweep["runs"])
    pairs = comparison_pairs(sweep["config"]["lims"])
    return [line for measure in chosen
            for line in verdict_lines(measure.rows, groups, measure.score,
                                      ([("plain", "untuned")] if measure.against_untuned else []) + pairs,
                                      measure.verdict)]


def verdict_box(sweep: FinetuneSweepResult, key: str, corruptions: FinetuneCorruptionsResult | None = None
                ) -> results.Note:
    """:func:`verdicts` on ``key`` as the chapter shows them: a collapsed box, one bullet per comparison, titled by
    the count (``display``); as plain text (``print``), one sentence per line."""
    lines = verdicts(sweep, key, corruptions)
    bullets = "\n".join(f"- {line}" for line in lines)
    title = f"The {len(lines)} verdicts, one per comparison"
    return results.Note("\n".join(lines), f":::{{admonition}} {title}\n:class: dropdown\n{bullets}\n:::\n")


def verdict_table(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult | None = None) -> plotting.Table:
    """Every measure (rows) for each lim's nullspace method against plain and against its Gaussian control
    (columns), as :func:`verdict_cell` gives."""
    groups = group_runs(sweep["runs"])
    columns = [(f"nullspace lim {lim:g}", other) for lim in sweep["config"]["lims"]
               for other in ("plain", f"gaussian lim {lim:g}")]
    rows = [[measure.label, *[verdict_cell(_compare(measure.rows, groups, measure.score, first, second))
                              for first, second in columns]] for measure in measures(sweep, corruptions)]
    headers = [f"{first.replace('nullspace ', 'ns ')} vs {second.replace('gaussian ', 'gauss ')}"
               for first, second in columns]
    return plotting.table(rows, ["measure", *headers])


# --------------------------------------------------------------------------- reading a sweep: tables and figures
def settings_table(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult | None = None
                   ) -> plotting.Table:
    """The sweep's settings as the chapter shows them (the -C images from ``corruptions``, "?" without it)."""
    config = sweep["config"]
    return plotting.table([
        ["model", config["model"]],
        ["fine-tuning", f"{config['steps']} AdamW steps of {config['batch_size']} images (rate {config['lr']:g}, "
                        f"weight decay {config['weight_decay']:g}, cosine), {config['train']} training images"],
        ["noise", f"{config['rounds']} rounds; per round {config['noise_steps']} learn_noise steps on "
                  f"{config['noise_images']} images, lims {', '.join(f'{lim:g}' for lim in config['lims'])}"],
        ["seeds", ", ".join(map(str, config["seeds"]))],
        ["yardsticks", f"clean: {config['val']} val images; PGD: {config['attack_images']}; "
                       f"-C: {corruptions['config']['images'] if corruptions else '?'}"],
    ], ["setting", "value"])


def _nullspace_rounds(runs: Rows, names: Sequence[str]) -> list[dict[str, Any]]:
    return [record for name in names for record in runs[name]["run"]["rounds"]]


def noise_table(sweep: FinetuneSweepResult) -> plotting.Table:
    """Per lim, the nullspace runs' round noises (ranges over seeds and rounds): the eq. 6 loss at the first and
    the last noise step, the rates the probe chose and the learned noise's RMS, beside the start's RMS."""
    runs, groups = sweep["runs"], group_runs(sweep["runs"])
    rows = []
    for lim in sweep["config"]["lims"]:
        rounds = _nullspace_rounds(runs, groups[f"nullspace lim {lim:g}"])
        spread = functools.partial(_round_range, rounds, digits=2)
        rows.append([f"{lim:g}", f"{lim / 3 ** 0.5:.2f}", spread("noise_loss_first"), spread("noise_loss_last"),
                     ", ".join(sorted({f"{record['noise_lr']:g}" for record in rounds})), spread("rms")])
    return plotting.table(rows, ["lim", "start RMS", "eq. 6 loss: first step", "last step", "rate", "learned RMS"])


def _round_range(rounds: Sequence[dict[str, Any]], key: str, digits: int = 1) -> str:
    return plotting.format_range([record[key] for record in rounds], scale=1, digits=digits)


def first_run_line(first: dict[str, Any]) -> str:
    """The round noises of a first sweep whose nullspace runs did not learn
    (``benchmarks/results/finetune_first_gpu_run_lim8.json``): eq. 6 loss first -> last step, learned RMS against
    the start's, and the rates the probe chose."""
    names = [name for name in first["runs"] if name.startswith("nullspace")]
    lim = max(first["runs"][name]["lim"] for name in names)
    rounds = _nullspace_rounds(first["runs"], names)
    return (f"first run, lim {lim:g}: eq. 6 loss {_round_range(rounds, 'noise_loss_first')} -> "
            f"{_round_range(rounds, 'noise_loss_last')}, learned RMS {_round_range(rounds, 'rms', digits=0)} "
            f"(start {lim / 3 ** 0.5:.1f}); rates {plotting.format_list(sorted({record['noise_lr'] for record in rounds}))}")


def loss_curve(record: dict[str, Any], key: str = "loss", *, window: int = 150) -> tuple[list[float], list[float]]:
    """A run's training loss ``key`` (``loss``, ``clean_loss`` or ``noisy_loss``) from its stored history
    (``FinetuneResult.record()``), averaged over windows of ``window`` steps: the windows' middle steps and means."""
    if window < 1:
        raise ValueError(f"window must be at least 1 step, got {window}.")
    rows = [row for row in record["history"] if key in row]
    if not rows:
        raise ValueError(f"the history has no {key!r}; a plain run has only 'loss' and 'clean_loss'.")
    last = rows[-1]["step"]
    xs, means = [], []
    for start in range(0, last + 1, window):
        inside = [row[key] for row in rows if start <= row["step"] < start + window]
        if inside:
            xs.append(start + (min(start + window, last + 1) - start) / 2)
            means.append(float(np.mean(inside)))
    return xs, means


def _curves(runs: Rows, names: Sequence[str], key: str
            ) -> tuple[list[float], list[list[float]]]:
    """One group's loss curves: the windows' steps and, per window, the seeds' means."""
    per_seed = [loss_curve(runs[name]["run"], key) for name in names]
    return per_seed[0][0], [list(values) for values in zip(*(means for _, means in per_seed), strict=True)]


def loss_panels(sweep: FinetuneSweepResult) -> list[dict[str, Any]]:
    """The :func:`~nullspace_utils.plotting.method_panels` of the training losses: (a) the clean loss of every
    fine-tuning, (b) the noisy loss of the noise methods (means over 150-step windows, per seed)."""
    runs, groups = sweep["runs"], group_runs(sweep["runs"])
    panels = []
    for key, title in (("clean_loss", "(a) clean loss"), ("noisy_loss", "(b) noisy loss")):
        chosen = [group for group in groups if group != "untuned" and (key == "clean_loss" or group != "plain")]
        panels.append({"title": title, "xlabel": "step", "ylabel": "cross-entropy",
                       "xs": _curves(runs, groups[chosen[0]], key)[0],
                       "series": {group: _curves(runs, groups[group], key)[1] for group in chosen}})
    return panels


def clean_table(sweep: FinetuneSweepResult) -> plotting.Table:
    """Each group's clean accuracy, the range over its seeds."""
    runs, groups = sweep["runs"], group_runs(sweep["runs"])
    return plotting.table([[group, plotting.format_range(seed_scores(runs, names, _clean), digits=2)]
                           for group, names in groups.items()], ["model", "clean accuracy (%)"])


def corruption_gallery(image: torch.Tensor, severity: int = 3) -> tuple[list[torch.Tensor], list[str]]:
    """One image (1, 3, H, W) clean and under each corruption of :data:`~nullspace_utils.finetune.CORRUPTIONS` at
    ``severity``, with their titles, for :func:`~nullspace_utils.plotting.show_images`."""
    shown = [image[0], *[finetune.corrupt_images(image, name, severity)[0] for name in finetune.CORRUPTIONS]]
    return shown, ["clean", *[name.replace("_", " ") for name in finetune.CORRUPTIONS]]


def _lim_panels(sweep: FinetuneSweepResult, values: Callable[[list[str]], list[list[float]]],
                axis: dict[str, Any]) -> list[dict[str, Any]]:
    """One :func:`~nullspace_utils.plotting.method_panels` panel per lim: untuned, plain and that lim's two noise
    groups, ``values(names)`` per group."""
    groups = group_runs(sweep["runs"])
    return [{"title": f"({'ab'[index]}) lim {lim:g}", **axis,
             "series": {group: values(groups[group])
                        for group in ("untuned", "plain", f"nullspace lim {lim:g}", f"gaussian lim {lim:g}")}}
            for index, lim in enumerate(sweep["config"]["lims"])]


def severity_panels(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult) -> list[dict[str, Any]]:
    """Per lim, accuracy (%) against severity, the mean over the corruptions, per seed."""
    models = corruptions["models"]

    def values(names: list[str]) -> list[list[float]]:
        return [[100 * float(np.mean([models[name]["per_severity"][corruption][str(severity)]
                                      for corruption in finetune.CORRUPTIONS])) for name in names]
                for severity in finetune.SEVERITIES]

    return _lim_panels(sweep, values, {"xlabel": "severity", "ylabel": "accuracy (%), mean of 11",
                                       "xs": list(finetune.SEVERITIES)})


def corruption_table(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult) -> plotting.Table:
    """Per corruption, each group's accuracy (%, mean over severities; ranges over seeds)."""
    groups, models = group_runs(sweep["runs"]), corruptions["models"]
    lims = sweep["config"]["lims"]
    shown = ["untuned", "plain", *[f"{method} lim {lim:g}" for method in ("nullspace", "gaussian") for lim in lims]]
    headers = ["untuned", "plain", *[f"{short} {lim:g}" for short in ("ns", "gauss") for lim in lims]]
    rows = [[corruption.replace("_", " "), *[plotting.format_range(
        [models[name]["per_corruption"][corruption] for name in groups[group]], digits=0) for group in shown]]
        for corruption in finetune.CORRUPTIONS]
    return plotting.table(rows, ["corruption", *headers],
                          caption="ns: nullspace noise, gauss: matched-energy Gaussian noise; "
                                  f"{' and '.join(f'{lim:g}' for lim in lims)}: the lim")


def pgd_panels(sweep: FinetuneSweepResult) -> list[dict[str, Any]]:
    """Per lim, PGD accuracy (%) at each radius, per seed."""
    runs = sweep["runs"]
    radii = list(runs["untuned"]["pgd"])

    def values(names: list[str]) -> list[list[float]]:
        return [[100 * runs[name]["pgd"][radius] for name in names] for radius in radii]

    return _lim_panels(sweep, values, {"xlabel": "ε (pixels in [0, 1])", "ylabel": "accuracy (%)",
                                       "xs": list(range(len(radii))), "xticklabels": radii})


def _match_values(runs: Rows, names: Sequence[str], lim: float, kind: str) -> list[float]:
    return [entry[kind]["match"] for name in names for point in runs[name]["match"] if point["lim"] == lim
            for entry in point["seeds"]]


def _exact(row: dict, lim: str) -> float:
    return row["exact"][lim]


def nullspace_table(sweep: FinetuneSweepResult) -> plotting.Table:
    """Per group, the share of predictions kept (ranges over models and noise seeds) under its own learned noise
    and the uniform start at the first match lim ("(failed)" where a learned noise did not learn), and under the
    untuned model's exact nullspace noise at the last exact lim."""
    runs, groups = sweep["runs"], group_runs(sweep["runs"])
    lim, exact = sweep["config"]["match_lims"][0], f"{sweep['config']['exact_lims'][-1]:g}"

    def match(names: list[str], kind: str) -> str:
        failed = any(point["learning_failed"] for name in names for point in runs[name]["match"] if point["lim"] == lim)
        return plotting.format_range(_match_values(runs, names, lim, kind)) + (
            " (failed)" if failed and kind == "learned" else "")

    rows = [[group, match(names, "learned"), match(names, "uniform"),
             plotting.format_range(seed_scores(runs, names, functools.partial(_exact, lim=exact)))]
            for group, names in groups.items()]
    return plotting.table(rows, ["model", f"learned noise, lim {lim:g}", f"uniform noise, lim {lim:g}",
                                 "untuned's exact noise"],
                          caption="% of predictions kept; ranges over models and noise seeds; (failed): learning "
                                  "failed for a noise seed there, so that range is no evidence")


def last_lim_line(sweep: FinetuneSweepResult) -> str:
    """What the match points at the last match lim say: how many of them failed to learn by the book's one rule
    (:func:`~nullspace_utils.studies.evidence.learning_failures`) and how far their training loss fell (ranges
    over every model and noise seed), so that no verdict is read from failed points."""
    lim = sweep["config"]["match_lims"][-1]
    points = [point for row in sweep["runs"].values() for point in row.get("match") or [] if point["lim"] == lim]
    failed = [point for point in points if point["learning_failed"]]
    left = [entry["train_loss"]["learned"] / entry["train_loss"]["initial"] for point in points for entry in point["seeds"]]
    verdict = "no verdict is read there" if len(failed) == len(points) else "only the points that learned are read"
    return (f"learned noise at lim {lim:g}: learning failed for {len(failed)} of {len(points)} models (training "
            f"loss at {plotting.format_range(left, digits=0, collapse=False)} % of its start); {verdict}")


#: the seed whose fine-tuned weights are committed (book/results/<profile>/finetune/*-s0.safetensors)
_COMMITTED_WEIGHTS_SEED = 0


def recomputed_lines(profile: Profile, sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult, *,
                     corruption: str = "gaussian_noise", severity: int = 3) -> Iterator[str]:
    """One cell of the "-C" table redone here from the committed weights (seed 0's: the other seeds' are not
    committed), a line per model as it is done: whether the accuracy under ``corruption`` at ``severity`` is within
    one image of the file's. Outside a checkout the weights are fetched (:func:`~nullspace_utils.results.committed_file`,
    checked by sha256); when they cannot be had (offline), one line says so and nothing is recomputed."""
    weights = {}
    for name, row in sweep["runs"].items():
        if row["weights"] is None or row["seed"] != _COMMITTED_WEIGHTS_SEED or "weights_sha256" not in row:
            continue
        try:
            weights[name] = results.committed_file(f"{sweep['weights_folder']}/{row['weights']}", row["weights_sha256"])
        except FileNotFoundError as error:
            yield f"skipped: the seed-{_COMMITTED_WEIGHTS_SEED} fine-tuned weights cannot be had here. {error}"
            return
    count = corruptions["config"]["images"]
    images, labels = stack_dataset(profile.dataset("val", n=count))
    corrupted = finetune.corrupt_images(images, corruption, severity, seed=corruptions["config"]["seed"])
    for name, path in weights.items():
        model = profile.load_model(sweep["config"]["model"], weights=path)
        accuracy = finetune.clean_accuracy(model, corrupted, labels)
        stored = corruptions["models"][name]["per_severity"][corruption][str(severity)]
        yield f"{name}: recomputed accuracy within one image of the file: {abs(accuracy - stored) <= 1 / count}"


# --------------------------------------------------------------------------- the cost of a sweep
def work(settings: FinetuneSettings, methods: Sequence[str], seeds: Sequence[int],
         lims: Sequence[float]) -> tuple[noise_sweep.Work, noise_sweep.Work]:
    """What a part of the sweep computes (``methods`` for ``seeds`` and ``lims``), counted for the plan's estimate
    (:func:`nullspace_utils.plan.part_work`) in the units of a measured step of ``settings.model``: each fine-tuning
    step as three float32 forward passes of its batch per loss (forward and backward with the weights' gradients:
    a rough rule), one loss for plain and two for the noise methods; the nullspace runs' round noises and first
    rate probe as learning steps; and the match yardstick of every model the part makes (an approximate point per
    ``match_lims``, :func:`~nullspace_utils.studies.noise_sweep.point_work`). Left out: clean and PGD evaluation.
    Nothing is added later, so the second :class:`~nullspace_utils.studies.noise_sweep.Work` is empty."""
    model = settings.model
    tune_key, noise_key = (model, "encoder", settings.batch_size), (model, "encoder", settings.noise_batch_size)
    match = noise_sweep.point_work(settings.match, model, "encoder", vit_input=False).times(len(settings.match_lims))
    probe = (len(approximate.LR_GRID) + 2) * settings.probe_steps  # the rate chosen once, in the first round
    noise = noise_sweep.Work({noise_key: settings.rounds * settings.noise_steps + probe}, {})
    total = match if "untuned" in methods else noise_sweep.NO_WORK
    for method in (method for method in methods if method != "untuned"):
        runs = len(seeds) * (1 if method == "plain" else len(lims))
        losses = 1 if method == "plain" else 2
        run = noise_sweep.Work({}, {tune_key: 3 * losses * settings.steps}) + match
        if method == "nullspace":
            run = run + noise
        total = total + run.times(runs)
    return total, noise_sweep.NO_WORK


def sweep_images(settings: FinetuneSettings, methods: Sequence[str], seeds: Sequence[int],
                 lims: Sequence[float]) -> dict[str, int]:
    """The images that pass forward and backward through the model in ``methods`` of the sweep for ``seeds`` and
    ``lims`` (the whole sweep, or one part of it), as :func:`estimate_sweep_hours` counts them: ``finetuning`` (every
    step, two passes for the noise methods, one for plain), ``noise`` (the nullspace runs' round noises and first
    rate probe, the grid's rates and about two more; the gaussian runs learn nothing) and ``match`` (the
    approximate-nullspace yardstick of every model made, and of the untuned one when ``"untuned"`` is among
    ``methods``)."""
    plain_runs = len(seeds) if "plain" in methods else 0
    noisy_runs = len(seeds) * len(lims) * sum(method in methods for method in ("nullspace", "gaussian"))
    nullspace_runs = len(seeds) * len(lims) if "nullspace" in methods else 0
    match = settings.match
    # a rate probe tries its grid and about two rates more, as work and noise_sweep.point_work count it
    match_probe = (len(match.lr_grid) + 2) * match.probe_steps
    noise_probe = (len(approximate.LR_GRID) + 2) * settings.probe_steps
    match_steps = len(settings.match_lims) * (match_probe + len(match.seeds) * match.steps)
    judged = int("untuned" in methods) + noisy_runs + plain_runs
    return {"finetuning": settings.steps * settings.batch_size * (2 * noisy_runs + plain_runs),
            "noise": nullspace_runs * (settings.rounds * settings.noise_steps + noise_probe) * settings.noise_batch_size,
            "match": judged * match_steps * match.batch_size}


def estimate_sweep_hours(settings: FinetuneSettings, seconds_per_step: float, measured_batch: int
                         ) -> dict[str, float]:
    """A rough GPU cost of a fine-tuning sweep (``settings``), in hours, from the measured time of one forward and
    backward pass of the model at ``measured_batch`` images (e.g. a learned-noise step of
    ``benchmarks/learned_noise_cost.py``), assumed linear in the batch size.

    Counted (:func:`sweep_images`): every fine-tuning step (two passes for the noise methods, one for plain), each
    round's noise steps and the first round's rate probe (about 7 rates), and the approximate-nullspace match of
    every model (probe and seeds). Left out, because they are small or not on the GPU: clean and PGD evaluation, and
    the "-C" set, which is made on a CPU. A lower bound for the fine-tuning part: a weight update also computes the
    weights' gradients, which a learned-noise step does not."""
    per_image = seconds_per_step / measured_batch
    images = sweep_images(settings, ("untuned", *finetune.METHODS), settings.seeds, settings.lims)
    hours = {piece: count * per_image / 3600 for piece, count in images.items()}
    return {**hours, "total": sum(images.values()) * per_image / 3600}


def cost_lines(settings: FinetuneSettings, cost: dict[str, Any]) -> list[str]:
    """What a sweep of ``settings`` would cost on a GPU (:func:`estimate_sweep_hours`), from the encoder step time
    of its model measured by ``benchmarks/learned_noise_cost.py`` (``cost``, that script's result file)."""
    step = next(row for row in cost["rows"] if row["model"] == settings.model and row["level"] == "encoder")
    hours = estimate_sweep_hours(settings, step["seconds_per_step"], cost["batch"])
    return [f"measured on {cost['provenance']['device']}: {step['seconds_per_step'] * 1000:.0f} ms per step of "
            f"{cost['batch']} images (ViT-S/32, forward and backward)",
            ", ".join(f"{part} {value:.2f} h" for part, value in hours.items())]


# --------------------------------------------------------------------------- the reproducibility page
def _group_range(rows: Rows, names: Sequence[str], score: Callable[[dict], Any]) -> str:
    values = seed_scores(rows, names, score)
    return plotting.format_range(values, collapse=False) if len(values) > 1 else f"{100 * values[0]:.1f}"


def _difference(comparison: dict[str, Any]) -> str:
    return f"{100 * abs(comparison['difference']):.1f} ± {100 * comparison['spread']:.1f}"


def _uniform_first_lim(sweep: FinetuneSweepResult) -> Callable[[dict], float]:
    return functools.partial(_uniform, lim=sweep["config"]["match_lims"][0])


def claims(sweep: FinetuneSweepResult, corruptions: FinetuneCorruptionsResult) -> list[evidence.Claim]:
    """The reproducibility page's rows for the authors' follow-up (nullspace-noise fine-tuning), every number from
    the sweep and its -C file, every comparison by :func:`~nullspace_utils.studies.evidence.compare_groups` (read
    only where the seeds' ranges separate)."""
    runs, groups = sweep["runs"], group_runs(sweep["runs"])
    lims = [f"{lim:g}" for lim in sweep["config"]["lims"]]
    at = " / ".join(lims)

    def ranges(rows: Rows, method: str, score: Callable[[dict], Any]) -> str:
        return " / ".join(_group_range(rows, groups[f"{method} lim {lim}"], score) for lim in lims)

    def compare(rows: Rows, first: str, second: str, score: Callable[[dict], Any]) -> dict[str, Any]:
        return _compare(rows, groups, score, first, second)

    def against(rows: Rows, method: str, other: str, score: Callable[[dict], Any]) -> list[dict[str, Any]]:
        return [compare(rows, f"{method} lim {lim}", other.format(lim=lim), score) for lim in lims]

    def said(comparisons: list[dict[str, Any]]) -> str:
        if all(c["separated"] == 0 for c in comparisons):
            return "not separable"
        if len({c["separated"] for c in comparisons}) > 1:
            return "differs by lim: " + ", ".join(verdict_cell(c) for c in comparisons)
        direction = "ahead" if comparisons[0]["separated"] > 0 else "behind"
        weak = ", all weak: under twice their spread" if all(c["weak"] for c in comparisons) else ""
        return f"{direction} by {' / '.join(_difference(c) for c in comparisons)} points{weak}"

    def outcome(comparisons: list[dict[str, Any]]) -> str:
        ahead = [c["separated"] == 1 and not c["weak"] for c in comparisons]
        return "reproduced" if all(ahead) else "partly" if any(ahead) else "not reproduced"

    models = corruptions["models"]
    mean_vs_plain = against(models, "nullspace", "plain", _mean)
    mean_vs_gaussian = against(models, "nullspace", "gaussian lim {lim}", _mean)
    radius = "2/255" if "2/255" in runs["untuned"]["pgd"] else next(iter(runs["untuned"]["pgd"]))
    pgd = functools.partial(_pgd, radius=radius)
    pgd_vs_plain = against(runs, "nullspace", "plain", pgd)
    lowered = all(evidence.compare_groups(seed_scores(runs, names, pgd), [pgd(dict(runs["untuned"]))])["separated"] == -1
                  for group, names in groups.items() if group != "untuned")
    clean_vs_plain = against(runs, "nullspace", "plain", _clean)
    gaussian_clean = against(runs, "gaussian", "plain", _clean)
    uniform = _uniform_first_lim(sweep)
    uniform_vs_plain = against(runs, "nullspace", "plain", uniform)
    match_lim = f"{sweep['config']['match_lims'][0]:g}"
    exact_lim = f"{sweep['config']['exact_lims'][-1]:g}"
    learned_at_ceiling = min(entry["learned"]["match"] for row in runs.values() for point in row["match"]
                             if point["lim"] == sweep["config"]["match_lims"][0] for entry in point["seeds"])
    return [
        evidence.Claim(
            claim="Nullspace-noise fine-tuning improves robustness to common corruptions (ImageNet-C)",
            chapter="finetune", figure="finetune-corruptions", verdict=outcome(mean_vs_plain),
            sentence=f"mean accuracy on the teaching -C set {ranges(models, 'nullspace', _mean)} % at lim {at} against "
                     f"{_group_range(models, groups['plain'], _mean)} % for plain fine-tuning "
                     f"({said(mean_vs_plain)}); the matched-energy Gaussian control reaches "
                     f"{ranges(models, 'gaussian', _mean)} % (the nullspace noise is {said(mean_vs_gaussian)})"),
        evidence.Claim(
            claim="Nullspace-noise fine-tuning improves robustness to adversarial perturbations",
            chapter="finetune", figure="finetune-pgd", verdict=outcome(pgd_vs_plain),
            sentence=f"PGD-L∞ accuracy at ε = {radius} {ranges(runs, 'nullspace', pgd)} % at lim {at} against "
                     f"{_group_range(runs, groups['plain'], pgd)} % for plain fine-tuning ({said(pgd_vs_plain)})"
                     + (f"; every fine-tuning, plain included, lowers it from the untuned model's "
                        f"{_group_range(runs, groups['untuned'], pgd)} %" if lowered else "")),
        evidence.Claim(
            claim="What it costs in clean accuracy", chapter="finetune", figure="finetune-clean",
            verdict="beyond the paper",
            sentence=f"{ranges(runs, 'nullspace', _clean)} % at lim {at} against "
                     f"{_group_range(runs, groups['plain'], _clean)} % for plain fine-tuning ({said(clean_vs_plain)}; "
                     f"untuned {_group_range(runs, groups['untuned'], _clean)} %), while the Gaussian control is "
                     f"{said(gaussian_clean)} against plain"),
        evidence.Claim(
            claim="It enlarges the model's tolerance to nullspace-like noise", chapter="finetune",
            figure="finetune-nullspace", verdict="partly" if outcome(uniform_vs_plain) != "not reproduced"
            else "not reproduced",
            sentence=f"predictions kept under uniform token noise at lim {match_lim}: "
                     f"{_group_range(runs, groups['plain'], uniform)} % (plain), {ranges(runs, 'nullspace', uniform)} % "
                     f"(nullspace, lim {at}; {said(uniform_vs_plain)} against plain), "
                     f"{ranges(runs, 'gaussian', uniform)} % (Gaussian, far more); whether the approximate nullspace "
                     f"itself grows cannot be told: the learned-noise "
                     f"match stays at its ceiling (at least {100 * learned_at_ceiling:.1f} % for every model), and the "
                     f"untuned model's exact nullspace noise keeps at least "
                     f"{100 * min(row['exact'][exact_lim] for row in runs.values()):.1f} % of every model's predictions"),
    ]
