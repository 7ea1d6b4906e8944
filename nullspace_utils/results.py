"""Result files of the book's heavy experiments: where they live, what each holds, how to read and write them.

The runners of :mod:`nullspace_utils.experiments` write one JSON file per experiment and profile,
``book/results/<profile>/<kind>.json``, and the chapters plot those files. This module is the one
place that knows about them:

* :func:`provenance`: the record every result file carries (command, settings, commit, versions,
  device, date), and :func:`describe_provenance`, the line a chapter prints from it;
* a schema per kind of file (:data:`SCHEMAS`: ``watermark``, ``watermark_slsqp``, ``approximate``,
  ``robustness``, ``fingerprint``, each a ``TypedDict``) and :func:`validate`, which names the file, the
  key and the fix when a file does not fit;
* :func:`read` (the checkout first, else the repository on GitHub; known result files are validated),
  :func:`write` (validated, then written all at once) and :func:`write_partial` (a run's rows so far);
* :func:`chapter_result`: what a chapter shows for a result file that may not exist yet.

Schemas use plain JSON types: a number is ``float`` (an integer is a number too), a list is ``list``.
A file may hold keys its schema does not name; every key the schema names must be there, with its type.
"""

# No ``from __future__ import annotations`` here: the schemas' NotRequired keys must be seen at class creation.
import json
import logging
import platform
import subprocess
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

import numpy as np
import torch

from nullspace_utils.data import atomic_write

__all__ = ["git_commit", "provenance", "describe_provenance", "result_file", "how_to_produce", "read", "write",
           "write_partial", "chapter_result", "ChapterResult", "validate", "kind_of", "ResultFileError", "SCHEMAS",
           "Provenance", "WatermarkResult", "WatermarkSlsqpResult", "ApproximateResult", "RobustnessResult",
           "FingerprintResult", "FinetuneSweepResult", "FinetuneCorruptionsResult", "REPOSITORY_ROOT", "RESULTS",
           "RAW_URL", "EXPERIMENTS_COMMAND"]

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY_ROOT / "book" / "results"
RAW_URL = "https://raw.githubusercontent.com/nullspace-vit/nullspace-vit/main/"
EXPERIMENTS_COMMAND = "python -m nullspace_utils.experiments"


class ResultFileError(ValueError):
    """A result file (or a result about to be written) that does not have the shape of its kind."""


# --------------------------------------------------------------------------- schemas
class Provenance(TypedDict):
    """Who made a result file (:func:`provenance`). ``numpy``, ``python`` and ``config`` are recorded by
    runs made since this module exists; ``commit_note`` is written by hand where the commit needs a word."""

    command: str
    commit: str
    torch: str
    timm: str
    device: str
    date: str
    numpy: NotRequired[str]
    python: NotRequired[str]
    config: NotRequired[dict[str, Any]]
    commit_note: NotRequired[str]


class PredictionChange(TypedDict):
    """How changed images move a model's predictions (``metrics.compare_predictions``)."""

    match: float
    prob_change: float
    logit_change_max: float
    logit_change_mean: float


class WatermarkCondition(PredictionChange):
    """One condition of the watermark evaluation, with the image quality it costs."""

    psnr: float


class WatermarkConditions(TypedDict):
    """``watermark.evaluate``: every condition the chapter tabulates."""

    exact: WatermarkCondition
    exact_8bit: WatermarkCondition
    clean_8bit: WatermarkCondition
    naive_std: WatermarkCondition
    resized: WatermarkCondition


class WatermarkModel(TypedDict):
    """One model: the whole split (``all``), its time, and the cheap point a test recomputes (``check``)."""

    all: WatermarkConditions
    seconds: float
    check: WatermarkConditions


class WatermarkResult(TypedDict):
    """``book/results/<profile>/watermark.json``: output-preserving watermarks on the val split (paper A.2)."""

    provenance: Provenance
    profile: str
    images: int
    mark: str
    p: int
    models: dict[str, WatermarkModel]


class SlsqpCondition(PredictionChange):
    """One candidate of the paper-procedure run: prediction change, ground-truth accuracy, image quality."""

    accuracy: float
    psnr: float


class SlsqpConditions(TypedDict):
    """Every candidate explanation of the paper's 85 %, measured on the same images."""

    slsqp_raw: SlsqpCondition
    slsqp_clipped: SlsqpCondition
    slsqp_clipped_8bit: SlsqpCondition
    slsqp_clipped_resized: SlsqpCondition
    joint_exact: SlsqpCondition
    joint_naive_std: SlsqpCondition


class SlsqpBox(TypedDict):
    """How far SLSQP's answer leaves [0, 1] before the clip (pixel units)."""

    max_violation: float
    fraction_outside: float
    fraction_outside_half_level: float


class SlsqpSolver(TypedDict):
    """What SLSQP did over every patch and channel."""

    iterations_median: float
    iterations_max: int
    at_cap: int
    problems: int
    status_counts: dict[str, int]
    objective_vs_start: float
    objective_vs_joint_optimum_pixels: float


class SlsqpModel(TypedDict):
    """One ViT of the paper-procedure run."""

    d: int
    r: int
    per_channel: int
    joint: int
    per_channel_found: int
    seconds: float
    clean_accuracy: float
    clean_confidence_mean: float
    box: SlsqpBox
    slsqp: SlsqpSolver


class WatermarkSlsqpResult(TypedDict):
    """``book/results/<profile>/watermark_slsqp.json``: the paper's watermark procedure (per-channel SLSQP,
    p = 1, §6, A.2) and every candidate explanation of its 85 % on the same images, per ViT (``predictions``)."""

    provenance: Provenance
    profile: str
    config: dict[str, Any]
    images: int
    maxiter: int
    p: int
    mark: str
    seconds: float
    models: dict[str, SlsqpModel]
    no_nullspace: dict[str, dict[str, Any]]
    predictions: dict[str, SlsqpConditions]
    check: dict[str, Any]


class NoiseEvaluationRow(TypedDict):
    """``approximate.NoiseEvaluation`` as JSON."""

    match: float
    logit_mse: float
    prob_change: float
    noise_norm: float
    clean_norm: float


class TrainLossRow(TypedDict):
    """Eq. 6's loss on the point's training images: the start, the learned noise and its shuffled copy."""

    initial: float
    learned: float
    shuffled: float


class NoiseSeedRow(TypedDict):
    """One seed of a :func:`~nullspace_utils.approximate.noise_point` row; the exact-nullspace baselines
    (``projected``, ``projected_norm_kept``, ``null_share``, ``row_removed``) are there for ViTs at the input only."""

    seed: int
    initial_norm: float
    final_norm: float
    train_loss: TrainLossRow
    learning_failed: bool
    learned: NoiseEvaluationRow
    shuffled: NoiseEvaluationRow
    uniform: NoiseEvaluationRow
    projected: NotRequired[NoiseEvaluationRow]
    projected_norm_kept: NotRequired[float]
    null_share: NotRequired[float]
    row_removed: NotRequired[NoiseEvaluationRow]


class LrChoiceRow(TypedDict):
    """``approximate.LrChoice``: the rates probed, their scores (keys ``str(lr)``) and whether the winner sat at
    an edge of the grid."""

    lr: float
    grid: list[float]
    scores: dict[str, float]
    at_edge: bool


class NoisePoint(TypedDict):
    """``approximate.noise_point``: one level and lim, every seed, and whether learning failed anywhere."""

    level: str
    lim: float
    rms: float
    keep_norm: bool
    loss: str
    p: float
    lr: float
    lr_choice: LrChoiceRow | None
    learning_failed: bool
    seeds: list[NoiseSeedRow]


class SweepConfig(TypedDict):
    """``experiments.APPROXIMATE_CONFIG`` / ``ROBUSTNESS_CONFIG`` of the profile (``steps`` and ``milestones`` as
    run); ``squared_lims`` for the approximate sweep, ``transfer_lims`` for the robustness sweep."""

    lims: list[float]
    extend_until: float
    extend_factor: float
    max_extensions: int
    seeds: list[int]
    steps: int
    milestones: list[int]
    batch_size: int
    probe_steps: int
    lr_grid: list[float]
    train: int
    val: int
    squared_lims: NotRequired[list[float]]
    transfer_lims: NotRequired[list[float]]


class SweepCheck(TypedDict):
    """``experiments.APPROXIMATE_CHECK`` / ``ROBUSTNESS_CHECK`` and its point, which a test recomputes."""

    lim: float
    seeds: list[int]
    steps: int
    milestones: list[int]
    lr: float
    batch_size: int
    train: int
    val: int
    model_index: NotRequired[int]
    cnn_index: NotRequired[int]
    level: NotRequired[str]
    result: NoisePoint


class ApproximateResult(TypedDict):
    """``book/results/<profile>/approximate.json``: learned encoder noise against lim (paper Fig. 2), per ViT, plain
    and with the norm held, and the first ViT with the squared loss."""

    provenance: Provenance
    profile: str
    level: str
    config: SweepConfig
    loss: str
    optimizer: str
    models: dict[str, list[NoisePoint]]
    keep_norm: dict[str, list[NoisePoint]]
    squared_loss: dict[str, list[NoisePoint]]
    check: SweepCheck
    parts: NotRequired[list[Provenance]]  # a run in parallel parts, joined by ``experiments merge``


class RobustnessResult(TypedDict):
    """``book/results/<profile>/robustness.json``: input-level learned noise for all six models, and transfer (Fig. 3).
    ``transfer[lim][source][target]`` and ``exact_transfer[lim][target]`` are fractions of kept predictions."""

    provenance: Provenance
    profile: str
    config: SweepConfig
    loss: str
    input: dict[str, list[NoisePoint]]
    transfer: dict[str, dict[str, dict[str, float]]]
    exact_transfer: dict[str, dict[str, float]]
    check: SweepCheck
    parts: NotRequired[list[Provenance]]  # a run in parallel parts, joined by ``experiments merge``


class VerificationRow(TypedDict):
    """``fingerprint.verification_row``: one verification of a fingerprint."""

    kept: int
    n: int
    p_value: float
    is_yours: bool
    median_change: float | None
    max_change: float | None
    queries: int


class FingerprintSuspect(TypedDict):
    """One suspect: derived from the owner's model?, its accuracy, one verification per fingerprint and output."""

    derived: bool
    accuracy: float
    logits: list[VerificationRow]
    probs: list[VerificationRow]
    label: list[VerificationRow]


class FingerprintFadeRow(TypedDict):
    """A fine-tuned copy after ``step`` steps, verified with every output."""

    step: int
    accuracy: float
    logits: VerificationRow
    probs: VerificationRow
    label: VerificationRow


class FingerprintDefenceRow(TypedDict):
    """The owner behind fresh input noise of std ``sigma``, verified with every output."""

    sigma: float
    accuracy: float
    logits: VerificationRow
    probs: VerificationRow
    label: VerificationRow


class FineTuneConfig(TypedDict):
    """How the thieves fine-tune (learning rate per trained part)."""

    images: int
    steps: int
    batch_size: int
    checkpoints: list[int]
    lr: dict[str, float]


class FingerprintConfig(TypedDict):
    """``experiments.FINGERPRINT_CONFIG`` of the profile."""

    n_probes: int
    amplitude: float
    fingerprints: int
    tol: float
    bisection_steps: int
    fine_tune: FineTuneConfig
    sigmas: list[float]
    val: int


class FingerprintCheck(TypedDict):
    """``experiments.FINGERPRINT_CHECK`` and its verification, which a test recomputes."""

    part: str
    step: int
    fingerprint_seed: int
    result: VerificationRow


class FingerprintResult(TypedDict):
    """``book/results/<profile>/fingerprint.json``: suspects, the fade under fine-tuning, the noise defence (§9)."""

    provenance: Provenance
    profile: str
    config: FingerprintConfig
    owner: str
    suspects: dict[str, FingerprintSuspect]
    fade: dict[str, list[FingerprintFadeRow]]
    defence: list[FingerprintDefenceRow]
    check: FingerprintCheck


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
SCHEMAS: dict[str, type] = {
    "watermark": WatermarkResult,
    "watermark_slsqp": WatermarkSlsqpResult,
    "approximate": ApproximateResult,
    "robustness": RobustnessResult,
    "fingerprint": FingerprintResult,
    "finetune": FinetuneSweepResult,
    "finetune_corruptions": FinetuneCorruptionsResult,
}


# --------------------------------------------------------------------------- validation
def _json_name(value: Any) -> str:
    """``value``'s JSON type in words, with the value itself (shortened)."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    shown = json.dumps(value, default=repr)
    return f"{names.get(type(value), type(value).__name__)} ({shown[:40] + '...' if len(shown) > 40 else shown})"


def _expected_name(expected: Any) -> str:
    """A schema type in words: ``float`` is "a number", ``list[...]`` "a list", a TypedDict "an object"."""
    if get_origin(expected) in (Union, types.UnionType):
        return " or ".join(_expected_name(option) for option in get_args(expected))
    if is_typeddict(expected) or expected is dict or get_origin(expected) is dict:
        return "an object"
    if expected is list or get_origin(expected) is list:
        return "a list"
    return {float: "a number", int: "an integer", str: "a string", bool: "a boolean", type(None): "null"}.get(
        expected, str(expected))


def _fits(value: Any, expected: type) -> bool:
    """Whether a JSON scalar ``value`` has the plain type ``expected`` (an integer is a number; a bool is not)."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is type(None):
        return value is None
    return isinstance(value, expected)


def _problem(value: Any, expected: Any, where: str) -> str | None:
    """Why ``value`` (at ``where``, a Python index like ``["models"]["zoo-vit-s"]``) does not fit ``expected``,
    or None when it does."""
    mismatch = f"{where or 'the whole result'} should be {_expected_name(expected)}, found {_json_name(value)}"
    if expected is Any:
        return None
    if is_typeddict(expected):
        if not isinstance(value, dict):
            return mismatch
        for key, key_type in get_type_hints(expected).items():
            if key not in value:
                if key in expected.__required_keys__:
                    return f'missing key "{key}" ' + (f"in {where}" if where else "at the top level")
                continue
            problem = _problem(value[key], key_type, f'{where}["{key}"]')
            if problem is not None:
                return problem
        return None
    origin = get_origin(expected)
    if origin in (Union, types.UnionType):
        return None if any(_problem(value, option, where) is None for option in get_args(expected)) else mismatch
    if origin is list:
        if not isinstance(value, list):
            return mismatch
        (item_type,) = get_args(expected)
        for index, item in enumerate(value):
            problem = _problem(item, item_type, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return mismatch
        _, item_type = get_args(expected)
        for key, item in value.items():
            problem = _problem(item, item_type, f'{where}["{key}"]')
            if problem is not None:
                return problem
        return None
    return None if _fits(value, expected) else mismatch


def _schema(kind: str) -> type:
    """The schema of ``kind`` (``watermark-slsqp`` and ``watermark_slsqp`` alike)."""
    try:
        return SCHEMAS[kind.replace("-", "_")]
    except KeyError:
        raise ValueError(f"no schema for result files of kind {kind!r}: the kinds are {sorted(SCHEMAS)}.") from None


def _check(kind: str, data: Any, *, source: str, fix: str) -> None:
    """Raise :class:`ResultFileError` saying ``source``, what does not fit and ``fix`` when ``data`` fails."""
    problem = _problem(data, _schema(kind), "")
    if problem is not None:
        raise ResultFileError(f"{source} is not a valid {kind.replace('-', '_')} result: {problem}. {fix}")


def _remake_fix(kind: str, profile: str, path: str | None) -> str:
    """The fix for a result (the file at ``path``, when there is one) that does not fit its schema."""
    restore = f"restore the committed one (git checkout -- {path}) or " if path else ""
    return (f"The file is damaged, cut short (a run stopped early) or made by other code: {restore}make it again "
            f"with\n    {EXPERIMENTS_COMMAND} {kind.replace('_', '-')} --profile {profile}")


def validate(kind: str, data: Any, *, source: str | None = None) -> None:
    """Check ``data`` against the schema of ``kind`` (a key of :data:`SCHEMAS`); ``source`` is the file it came from.

    Raises :class:`ResultFileError` naming the file, the first key that is missing or has the wrong type
    (as a Python index, e.g. ``["check"]["result"]["learned"]["match"]``) and how to fix it.
    """
    profile = data.get("profile") if isinstance(data, dict) else None
    fix = _remake_fix(kind, profile if isinstance(profile, str) else "<profile>", source)
    _check(kind, data, source=source or "the data", fix=fix)


def kind_of(path: str | Path) -> str | None:
    """The kind of a result file by its place, ``book/results/<profile>/<kind>.json``; None for any other file."""
    parts = Path(path).parts
    if len(parts) < 4 or parts[-4:-2] != ("book", "results") or not parts[-1].endswith(".json"):
        return None
    kind = parts[-1].removesuffix(".json")
    return kind if kind in SCHEMAS else None


# --------------------------------------------------------------------------- provenance
def git_commit(cwd: Path = REPOSITORY_ROOT) -> str:
    """The checkout's HEAD commit, or "unknown" outside a git checkout (e.g. a copied tree on a GPU box)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(command: str, config: dict[str, Any], *, device: str | torch.device = "cpu") -> Provenance:
    """The record every result file carries: the ``command`` that made it, the ``config`` it ran with (JSON-ready;
    the experiments give their command-line arguments, defaults included), the checkout's commit, the versions
    of torch, timm, numpy and python, the name of the ``device`` it computed on (``"cpu"`` or the GPU's) and
    the date."""
    import timm

    device = torch.device(device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"command": command, "commit": git_commit(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "device": device_name,
            "date": time.strftime("%Y-%m-%d"), "config": config}


def describe_provenance(result: dict[str, Any]) -> str:
    """The two lines a chapter prints above a result: the command, then device, versions and commit."""
    made = result["provenance"]
    return (f"made by: {made['command']}\non {made['device']}, torch {made['torch']}, timm {made['timm']}, "
            f"commit {made['commit'][:10]}")


# --------------------------------------------------------------------------- where, read, write
def result_file(experiment: str, profile: str) -> str:
    """Where ``experiment``'s runner writes its result for ``profile``, relative to the repository root."""
    return f"book/results/{profile}/{experiment.replace('-', '_')}.json"


def _command(experiment: str, profile: str, device: str | None) -> str:
    """The command line that makes ``experiment``'s result file for ``profile``."""
    return f"{EXPERIMENTS_COMMAND} {experiment} --profile {profile}" + (f" --device {device}" if device else "")


def how_to_produce(experiment: str, profile: str, *, device: str | None = "cuda") -> str:
    """What a chapter prints when a result file of ``profile`` does not exist yet."""
    where = "on a GPU " if device == "cuda" else ""
    return (f"No results of the {profile!r} profile for this part yet. Produce them {where}with\n"
            f"    {_command(experiment, profile, device)}\n"
            f"which writes {result_file(experiment, profile)}; then run this chapter again.")


def _read_text(path: str, *, missing_ok: bool) -> str | None:
    """The text of the file at ``path`` (relative to the repository root): the checkout's, else GitHub's."""
    local = REPOSITORY_ROOT / path
    if local.is_file():
        return local.read_text()
    in_checkout = (REPOSITORY_ROOT / "_toc.yml").is_file()
    try:
        with urllib.request.urlopen(RAW_URL + path, timeout=20) as response:
            logger.info("%s is not in this checkout: fetched from %s", path, RAW_URL)
            return response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 404 and missing_ok:
            return None
        reason = "it is not in the repository" if error.code == 404 else f"GitHub answered {error.code}"
        raise FileNotFoundError(f"Result file {path} is not in this checkout, and {reason} ({RAW_URL}). "
                                "Produce it with the command in the README.") from error
    except (urllib.error.URLError, TimeoutError) as error:
        if missing_ok and in_checkout:
            return None
        raise FileNotFoundError(
            f"Result file {path} is not in this checkout and could not be fetched from {RAW_URL} ({error}). "
            "Clone the repository, or produce it with the command in the README."
        ) from error


def read(path: str, *, missing_ok: bool = False, text: bool = False) -> Any:
    """A committed file by its path in the repository, e.g. ``"book/results/teaching/watermark.json"``, parsed
    as JSON (``text=True``: its text). A result file of a known kind (:func:`kind_of`) is validated against its
    schema: a damaged one raises :class:`ResultFileError` saying which key and how to fix it.

    Read from the checkout when there is one; otherwise (a notebook opened alone, on Colab) fetched
    from the repository on GitHub. With ``missing_ok=True`` a file that exists nowhere gives ``None``
    (see :func:`how_to_produce`): GitHub answers 404, or GitHub cannot be reached and the checkout lacks
    it. Without a checkout (the library installed alone, e.g. on Colab) and without network, whether the
    file exists is unknown: that raises ``FileNotFoundError`` saying so, even with ``missing_ok``.
    """
    content = _read_text(path, missing_ok=missing_ok)
    if content is None or text:
        return content
    kind = kind_of(path)
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        fix = (_remake_fix(kind, Path(path).parts[-2], path) if kind else
               f"Restore the committed file (git checkout -- {path}) or make it again.")
        raise ResultFileError(f"{path} is not valid JSON ({error}). {fix}") from error
    if kind is not None:
        validate(kind, data, source=path)
    return data


def _write_json(path: Path, result: dict[str, Any]) -> Path:
    """``result`` as indented JSON at ``path``, written all at once; the folder is made when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(result, indent=1) + "\n")
    return path


def write(path: str | Path, result: dict[str, Any], *, kind: str | None = None) -> Path:
    """Write ``result`` as JSON at ``path`` (on disk; the folder is made when missing), all at once
    (:func:`~nullspace_utils.data.atomic_write`): a failed write leaves an existing file as it was.

    The result is first checked, as the JSON it becomes, against the schema of ``kind`` (by default the
    kind of ``path``, see :func:`kind_of`; other files have no schema): one that fails is not written and
    raises :class:`ResultFileError`. Returns the path.
    """
    path = Path(path)
    kind = kind or kind_of(path)
    if kind is not None:
        as_written = json.loads(json.dumps(result))  # tuples become lists, as a reader will see them
        _check(kind, as_written, source=f"the result for {path}",
               fix=f"Nothing was written: make the code that builds it and the schema {_schema(kind).__name__} "
                   "(nullspace_utils/results.py) agree.")
    return _write_json(path, result)


def write_partial(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a run's rows so far to ``path`` unchecked (a run cut short keeps them); the run's last write is a
    checked :func:`write`. Reading such a file back fails its schema, saying what is missing."""
    return _write_json(Path(path), result)


# --------------------------------------------------------------------------- chapters
class ChapterResult(NamedTuple):
    """A result file as a chapter shows it: the result (``None`` when it cannot be had) and the note to print
    above it (where it came from, or how to make it)."""

    result: Any
    note: str


def chapter_result(experiment: str, profile: str, *, device: str | None = "cuda") -> ChapterResult:
    """The result file of ``experiment`` that a chapter plots, and the note the chapter prints above it::

        sweep, note = results.chapter_result("robustness", profile.name)
        print(note)

    The note is :func:`describe_provenance` when the file is found; when it does not exist, the result is
    ``None`` and the note says how to make it (on ``device``); when it cannot be read (the library installed
    without the repository, and no network), the note says why. A damaged file raises
    :class:`ResultFileError`, so a chapter never shows numbers from a file that does not fit its schema.
    """
    try:
        result = read(result_file(experiment, profile), missing_ok=True)
    except FileNotFoundError as error:
        return ChapterResult(None, f"{error}\nThe cells that show it are skipped. The command that makes it:\n"
                                   f"    {_command(experiment, profile, device)}")
    if result is None:
        return ChapterResult(None, how_to_produce(experiment, profile, device=device))
    return ChapterResult(result, describe_provenance(result))
