"""Beyond the paper: the nullspace-augmented fine-tuning sweep (the authors' CPAL 2025 follow-up) against plain and
matched-energy Gaussian fine-tuning, and its "-C" corruption yardstick.

The result files ``book/results/<profile>/finetune.json`` (:data:`RESULT`, schema :class:`FinetuneSweepResult`) and
``finetune_corruptions.json`` (:data:`CORRUPTIONS_RESULT`, schema :class:`FinetuneCorruptionsResult`).
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
from typing import Any

from typing_extensions import NotRequired, TypedDict

from nullspace_utils import results
from nullspace_utils.results import Provenance
from nullspace_utils.studies.noise_sweep import NoisePoint


# --------------------------------------------------------------------------- the result file
class FinetuneSweepConfig(TypedDict):
    """``experiments.FINETUNE_CONFIG`` of the profile, as run (``steps`` may be overridden)."""

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
    clean: float
    pgd: dict[str, float]
    match: list[NoisePoint]
    exact: dict[str, float]
    run: NotRequired[FinetuneRunRecord]


class FinetuneCheck(TypedDict):
    """``experiments.FINETUNE_CHECK`` and its tiny run's losses, noise RMS and clean accuracy (a test repeats it)."""

    method: str
    lim: float
    steps: int
    seed: int
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

    per_severity: dict[str, dict[str, float]]
    per_corruption: dict[str, float]
    mean: float


class FinetuneCorruptionsResult(TypedDict):
    """``book/results/<profile>/finetune_corruptions.json``: the "-C" accuracy of every model of ``finetune.json``
    (made on the CPU from its weights; ``sweep_commit`` is the commit of the sweep it read)."""

    provenance: Provenance
    profile: str
    sweep_commit: str
    config: dict[str, Any]
    models: dict[str, CorruptionTable]
    check: dict[str, Any]


#: The schema of each kind of result file; a kind is the file's name without ``.json``.


RESULT = results.ResultKind("finetune", FinetuneSweepResult, "finetune")
CORRUPTIONS_RESULT = results.ResultKind("finetune_corruptions", FinetuneCorruptionsResult, "finetune-corruptions")
