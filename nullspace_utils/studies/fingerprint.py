"""Paper §9 made real: the owner's fingerprint verified on copies, thieves' models and unrelated models, its fade
under fine-tuning and the input-noise defence.

The settings per profile (:data:`SETTINGS`, :class:`FingerprintSettings`), the suspects (:func:`make_suspects`), the
runner (:func:`run`) and its cheap check point (:data:`CHECK`, :func:`check_point`), the result file
``book/results/<profile>/fingerprint.json`` (:data:`RESULT`, schema :class:`FingerprintResult`) and the readers the
fingerprint chapter shows it with. The method (:func:`~nullspace_utils.fingerprint.make_fingerprint`,
:func:`~nullspace_utils.fingerprint.verify`) is in :mod:`nullspace_utils.fingerprint`.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import copy
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from typing_extensions import TypedDict

from nullspace_utils import fingerprint as fp
from nullspace_utils import metrics, models, results
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Provenance
from nullspace_utils.studies import common

__all__ = ["FingerprintSettings", "ThiefTuning", "ThiefRates", "FingerprintCheckPoint", "SETTINGS", "CHECK",
           "TUNED_PARTS", "BACKEND_DEPENDENT_SUSPECTS", "make_suspects", "verification_row", "verification_rows",
           "check_point", "run", "claim_cells", "settings_line", "suspect_rows", "claim_lines", "roc_curves",
           "unrelated_rates", "unrelated_claims", "fade_panels", "fade_lines", "defence_rows", "RESULT",
           "VerificationRow", "FingerprintSuspect", "FingerprintFadeRow", "FingerprintDefenceRow", "ThiefTuningConfig",
           "FingerprintConfig", "FingerprintCheck", "FingerprintResult"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the result file
class VerificationRow(TypedDict):
    """:func:`verification_row`: one verification of a fingerprint."""

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


class ThiefTuningConfig(TypedDict):
    """:class:`ThiefTuning`: how the thieves fine-tune (learning rate per trained part)."""

    images: int
    steps: int
    batch_size: int
    checkpoints: list[int]
    lr: dict[str, float]


class FingerprintConfig(TypedDict):
    """:class:`FingerprintSettings` of the profile."""

    n_probes: int
    amplitude: float
    fingerprints: int
    tol: float
    bisection_steps: int
    fine_tune: ThiefTuningConfig
    sigmas: list[float]
    val: int


class FingerprintCheck(TypedDict):
    """:data:`CHECK` and its verification (:func:`check_point`), which a test recomputes."""

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


#: the result file, ``book/results/<profile>/fingerprint.json``
RESULT: results.ResultKind[FingerprintResult] = results.ResultKind("fingerprint", FingerprintResult, "fingerprint")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ThiefRates:
    """The thieves' learning rate (AdamW) for each part they train: everything, only the patch embedding, a new
    head (:func:`~nullspace_utils.fingerprint.tune_copy`'s ``part``)."""

    all: float
    patch_embed: float
    head: float

    def of(self, part: str) -> float:
        """The rate for ``part`` (``"all"``, ``"patch_embed"`` or ``"head"``)."""
        if part not in ("all", "patch_embed", "head"):
            raise ValueError(f"part must be 'all', 'head' or 'patch_embed', got {part!r}.")
        return float(getattr(self, part))


@dataclass(frozen=True)
class ThiefTuning:
    """How the thieves fine-tune their copies: ``steps`` steps of ``batch_size`` of ``images`` new images (the test
    split), verified at each of ``checkpoints``, at the rates ``lr``."""

    images: int
    steps: int
    batch_size: int
    checkpoints: tuple[int, ...]
    lr: ThiefRates


@dataclass(frozen=True)
class FingerprintSettings:
    """The fingerprint run of one profile: ``fingerprints`` secrets (seeds 0, 1, ...) of ``n_probes`` probes drawn
    from the first ``val`` validation images with noise ``amplitude``, verified with tolerance ``tol`` (logits,
    probs) and ``bisection_steps`` (label); the thieves' ``fine_tune``; the input-noise defence's ``sigmas``."""

    n_probes: int
    amplitude: float
    fingerprints: int
    tol: float
    bisection_steps: int
    fine_tune: ThiefTuning
    sigmas: tuple[float, ...]
    val: int


@dataclass(frozen=True)
class FingerprintCheckPoint:
    """The run's cheap point that a test recomputes on the CPU from the committed file: a copy of the owner
    fine-tuned (its ``part``) for ``step`` steps, verified with logits against fingerprint ``fingerprint_seed``."""

    part: str
    step: int
    fingerprint_seed: int


_CHECKPOINTS = (0, 1, 2, 5, 10, 20, 50, 100, 200)

#: Fingerprint experiments per profile (paper §9's "patenting", made a test; see nullspace_utils.fingerprint)
SETTINGS: dict[str, FingerprintSettings] = {
    "teaching": FingerprintSettings(
        n_probes=16, amplitude=0.25, fingerprints=8, tol=1e-3, bisection_steps=14,
        fine_tune=ThiefTuning(images=2_000, steps=200, batch_size=32, checkpoints=_CHECKPOINTS,
                              lr=ThiefRates(all=1e-4, patch_embed=1e-4, head=1e-3)),
        sigmas=(0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), val=500),
    "imagenet": FingerprintSettings(
        n_probes=32, amplitude=0.1, fingerprints=4, tol=1e-3, bisection_steps=14,
        fine_tune=ThiefTuning(images=2_000, steps=200, batch_size=32, checkpoints=_CHECKPOINTS,
                              lr=ThiefRates(all=1e-5, patch_embed=1e-5, head=1e-3)),
        sigmas=(0.0, 1e-4, 1e-3, 1e-2, 3e-2), val=500),
}
#: the cheap point a test recomputes on the CPU: fine-tuning everything for a few steps, logits access
CHECK = FingerprintCheckPoint(part="all", step=5, fingerprint_seed=0)

#: What the thieves fine-tune, in the order the run and the chapter take them -> how the chapter names it
TUNED_PARTS = {"all": "everything", "head": "a new head only", "patch_embed": "the patch embedding only"}

#: Suspects whose answers depend on the CPU's kernels, not only on the weights: float16 rounding on the CPU
#: and dynamic int8 quantisation (its scales are computed per batch by backend kernels) change which probes
#: keep their answer between machines, thread counts and BLAS builds (measured: an int8 copy kept 12/16
#: label probes on one machine and 14/16 on another). Chapters print their counts from result files,
#: with the machine that made them, never live.
BACKEND_DEPENDENT_SUSPECTS = ("float16 copy", "int8 copy")


# --------------------------------------------------------------------------- suspects and verifications
def make_suspects(profile: Profile, owner: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    """The fingerprint chapter's suspects, name -> (model, derived from the owner's?): the owner, an exact
    copy (a safetensors round trip), float16 and int8 copies; independently trained models of the same
    architecture (teaching profile: the zoo's extra seeds, ``zoo/seeds/*.safetensors``), the profile's other ViTs
    and its CNNs. The owner is not changed; the int8 copy computes on the CPU (dynamic int8 kernels exist only
    there)."""
    suspects: dict[str, tuple[nn.Module, bool]] = {"owner": (owner, True)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.safetensors"
        net = models.unwrap(owner)
        save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(path))
        duplicate = copy.deepcopy(owner)
        models.unwrap(duplicate).load_state_dict(load_file(str(path)))
    suspects["exact copy"] = (duplicate, True)
    suspects["float16 copy"] = (copy.deepcopy(owner).half(), True)
    with warnings.catch_warnings():  # torch.ao's deprecation notice: the API still works in torch 2.14
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(owner).cpu(), {nn.Linear}, dtype=torch.qint8)
    suspects["int8 copy"] = (int8, True)
    if profile.name == "teaching":
        for path in sorted((models.ZOO_DIR / "seeds").glob("*.safetensors")):
            suspects[path.stem] = (models.load_model(profile.vit_models[0], weights=path), False)
    for name in (*profile.vit_models[1:], *profile.cnn_models):
        suspects[name] = (profile.load_model(name), False)
    return suspects


def verification_row(fingerprint: fp.Fingerprint, model: nn.Module, *, output: str, tol: float = 1e-3,
                     bisection_steps: int = 14, show_progress: bool = False) -> VerificationRow:
    """:func:`~nullspace_utils.fingerprint.verify` ``model`` through ``output`` as a result row: kept / n, p-value,
    the claim, the median and largest per-probe change (None when no probe gave one) and the number of queries."""
    result = fp.verify(fingerprint, fp.as_query(model, output), output=output, tol=tol,
                       bisection_steps=bisection_steps, show_progress=show_progress)
    changes = result.changes[~result.changes.isnan()]
    return {"kept": result.kept, "n": result.n, "p_value": result.p_value, "is_yours": result.is_yours,
            "median_change": float(changes.median()) if len(changes) else None,
            "max_change": float(changes.max()) if len(changes) else None, "queries": result.queries}


def verification_rows(fingerprint: fp.Fingerprint, model: nn.Module, *, tol: float = 1e-3, bisection_steps: int = 14,
                      show_progress: bool = False) -> dict[str, VerificationRow]:
    """:func:`verification_row` for every kind of access, output -> row (logits, probs, label)."""
    return {output: verification_row(fingerprint, model, output=output, tol=tol, bisection_steps=bisection_steps,
                                     show_progress=show_progress)
            for output in fp.OUTPUTS}


# --------------------------------------------------------------------------- the run
def check_point(owner: nn.Module, fingerprint: fp.Fingerprint, images: torch.Tensor, labels: torch.Tensor,
                settings: FingerprintSettings, check: FingerprintCheckPoint = CHECK) -> VerificationRow:
    """The run's cheap point (:data:`CHECK`): a copy of ``owner`` fine-tuned (its ``part``) for ``step`` steps on
    ``images``, verified with logits under ``settings``' tolerance."""
    tune = settings.fine_tune
    for _, thief in fp.tune_copy(owner, images, labels, part=check.part, steps=check.step, lr=tune.lr.of(check.part),
                                 batch_size=tune.batch_size):
        return verification_row(fingerprint, thief, output="logits", tol=settings.tol,
                                bisection_steps=settings.bisection_steps)
    raise common.StudyError("tune_copy yielded no model")


def run(settings: FingerprintSettings, profile: Profile, how: common.Run,
        check: FingerprintCheckPoint = CHECK) -> FingerprintResult:
    """The fingerprint chapter's run: every suspect (:func:`make_suspects`) x output x fingerprint seed; the fade
    under fine-tuning (everything, only a new head, only the patch embedding) against steps; the input-noise
    defence against sigma; the cheap ``check`` point. Its rows so far are saved after each suspect and part
    (:meth:`~nullspace_utils.studies.common.Run.save_partial`)."""
    tolerances: dict[str, Any] = {"tol": settings.tol, "bisection_steps": settings.bisection_steps}
    owner = profile.load_model(profile.vit_models[0])
    val_images, val_labels = stack_dataset(profile.dataset("val", n=settings.val))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=settings.fine_tune.images))
    fingerprints = [fp.make_fingerprint(owner, n_probes=settings.n_probes, amplitude=settings.amplitude, seed=seed,
                                        images=val_images) for seed in range(settings.fingerprints)]
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name,
                           "config": common.settings_dict(settings), "owner": owner.name, "suspects": {}, "fade": {},
                           "defence": []}

    def accuracy(model: nn.Module) -> float:
        return metrics.accuracy(model, val_images, val_labels, classes=profile.label_indices)

    for name, (model, derived) in make_suspects(profile, owner).items():
        entry: dict[str, Any] = {"derived": derived, "accuracy": accuracy(model)}
        for output in fp.OUTPUTS:
            entry[output] = [verification_row(f, model, output=output, **tolerances) for f in fingerprints]
        out["suspects"][name] = entry
        logger.info("%s %s", name, {output: [row["kept"] for row in entry[output]] for output in fp.OUTPUTS})
        how.save_partial(out)
    tune = settings.fine_tune
    for part in TUNED_PARTS:
        rows = []
        for step, thief in fp.tune_copy(owner, new_images, new_labels, part=part, steps=tune.steps,
                                        lr=tune.lr.of(part), checkpoints=tuple(tune.checkpoints),
                                        batch_size=tune.batch_size, reset_head=part == "head"):
            row: dict[str, Any] = {"step": step, "accuracy": accuracy(thief),
                                   **verification_rows(fingerprints[0], thief, **tolerances)}
            rows.append(row)
            logger.info("%s %s %s %s", part, step, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS})
        out["fade"][part] = rows
        how.save_partial(out)
    for sigma in settings.sigmas:
        defended = fp.NoisyInput(owner, sigma)
        row = {"sigma": sigma, "accuracy": accuracy(defended),
               **verification_rows(fingerprints[0], defended, **tolerances)}
        out["defence"].append(row)
        logger.info("sigma %s %s %s", sigma, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS})
    out["check"] = {**asdict(check), "result": check_point(owner, fingerprints[check.fingerprint_seed], new_images,
                                                           new_labels, settings, check)}
    return cast(FingerprintResult, out)  # checked against the schema when it is written (RESULT.write)


# --------------------------------------------------------------------------- readers: what the chapter shows
def claim_cells(name: str, verification: fp.Verification) -> list[str]:
    """A live verification's table cells: probes kept, p-value, verdict; for the copies whose answers depend on the
    CPU's kernels (:data:`BACKEND_DEPENDENT_SUSPECTS`), a pointer to the eight-secret table instead."""
    if name in BACKEND_DEPENDENT_SUSPECTS:
        return ["varies by CPU", "—", "see the eight-secret table"]
    return [f"{verification.kept}/{verification.n}", f"{verification.p_value:.1g}",
            "**yours**" if verification.is_yours else "not shown"]


def settings_line(result: FingerprintResult) -> str:
    """The run's fingerprints in one line: how many, of how many probes, the amplitude and the tolerance."""
    config = result["config"]
    return (f"{config['fingerprints']} fingerprints of {config['n_probes']} probes, amplitude {config['amplitude']}, "
            f"tol {config['tol']:g}")


def suspect_rows(result: FingerprintResult) -> list[list[str]]:
    """The eight-secret table: per suspect, derived?, accuracy and, per output, the probes kept (lowest–highest over
    the fingerprints) with how many fingerprints led to the claim 'yours'."""
    rows = []
    for name, entry in result["suspects"].items():
        cells = [name, "yes" if entry["derived"] else "no", f"{100 * entry['accuracy']:.1f} %"]
        for output in fp.OUTPUTS:
            kept = [point["kept"] / point["n"] for point in _points(entry, output)]
            claimed = sum(point["is_yours"] for point in _points(entry, output))
            cells.append(f"{100 * min(kept):.0f}–{100 * max(kept):.0f} % ({claimed}/{len(kept)})")
        rows.append(cells)
    return rows


def _points(entry: FingerprintSuspect, output: str) -> list[VerificationRow]:
    """A suspect's verifications through ``output``, one per fingerprint."""
    return cast(dict, entry)[output]


def _verification(row: FingerprintFadeRow | FingerprintDefenceRow, output: str) -> VerificationRow:
    """A fade or defence row's verification through ``output``."""
    return cast(dict, row)[output]


def claim_lines(result: FingerprintResult) -> list[str]:
    """Per suspect derived from the owner's model: how many fingerprints claimed it 'yours', per output."""
    lines = []
    for name, entry in result["suspects"].items():
        if entry["derived"]:
            claims = ", ".join(f"{output} {sum(point['is_yours'] for point in _points(entry, output))}/"
                               f"{len(_points(entry, output))}" for output in fp.OUTPUTS)
            lines.append(f"{name}: claimed 'yours' with {claims}")
    return lines


def _scores(result: FingerprintResult, output: str, derived: bool, leave_out: tuple[str, ...] = ()) -> list[float]:
    """The fraction of probes kept, per fingerprint, for every suspect that is (not) ``derived``."""
    return [point["kept"] / point["n"] for name, entry in result["suspects"].items()
            if entry["derived"] == derived and name not in leave_out for point in _points(entry, output)]


def roc_curves(result: FingerprintResult) -> dict[str, dict[str, tuple[list[float], list[float], float]]]:
    """Per output, the ROC curve and its area of the score (fraction of probes kept) as a detector of "derived from
    the owner's model" against the unrelated models: all derived suspects, and without the int8 copy
    (:func:`~nullspace_utils.plotting.roc_panels`' input)."""
    curves = {}
    for output in fp.OUTPUTS:
        unrelated = _scores(result, output, False)
        curves[output] = {label: (*fp.roc_curve(derived, unrelated), fp.roc_auc(derived, unrelated))
                          for label, derived in (("all derived", _scores(result, output, True)),
                                                 ("without int8", _scores(result, output, True, ("int8 copy",))))}
    return curves


def unrelated_rates(result: FingerprintResult) -> dict[str, float]:
    """Per output, the largest fraction of probes an unrelated model kept."""
    return {output: max(_scores(result, output, False)) for output in fp.OUTPUTS}


def unrelated_claims(result: FingerprintResult) -> int:
    """How many verifications claimed an unrelated model 'yours' (any output, any fingerprint)."""
    return sum(point["is_yours"] for entry in result["suspects"].values() if not entry["derived"]
               for output in fp.OUTPUTS for point in _points(entry, output))


def fade_panels(result: FingerprintResult) -> list[dict[str, Any]]:
    """The fade under fine-tuning as :func:`~nullspace_utils.plotting.line_panels`' panels: probes kept per output,
    then the thief's accuracy, against steps (step 0 at 0.5, for a log axis), one line per tuned part."""
    panels: list[dict[str, Any]] = [{"title": f"probes kept ({output})", "ylabel": "%", "lines": {}}
                                    for output in fp.OUTPUTS]
    panels.append({"title": "accuracy of the thief's model", "ylabel": "%", "lines": {}})
    for index, (part, label) in enumerate(TUNED_PARTS.items()):
        rows = result["fade"][part]
        steps = [max(row["step"], 0.5) for row in rows]  # step 0 drawn at 0.5 on the log axis
        for panel, output in zip(panels[:-1], fp.OUTPUTS, strict=True):
            kept = [100 * _verification(row, output)["kept"] / _verification(row, output)["n"] for row in rows]
            panel["lines"][label] = (steps, kept, f"C{index}o-")
        panels[-1]["lines"][label] = (steps, [100 * row["accuracy"] for row in rows], f"C{index}o-")
    return panels


def fade_lines(result: FingerprintResult) -> list[str]:
    """Per tuned part, a Markdown bullet: probes kept with logits and labels after the first and the last
    checkpoint, and the accuracy before and after."""
    def kept(row: FingerprintFadeRow, output: str) -> str:
        return f"{_verification(row, output)['kept']}/{_verification(row, output)['n']}"

    lines = []
    for part, label in TUNED_PARTS.items():
        rows = result["fade"][part]
        first, last = rows[1], rows[-1]
        lines.append(f"- **{label}**: after {first['step']} step(s) logits keep {kept(first, 'logits')} and labels "
                     f"{kept(first, 'label')}; after {last['step']} steps {kept(last, 'logits')} and "
                     f"{kept(last, 'label')}; accuracy {100 * rows[0]['accuracy']:.0f} % → "
                     f"{100 * last['accuracy']:.0f} %.")
    return lines


def defence_rows(result: FingerprintResult) -> list[list[str]]:
    """The input-noise defence table: per noise std, the accuracy and the probes kept per output."""
    return [[f"{row['sigma']:g}", f"{100 * row['accuracy']:.1f} %",
             *[f"{_verification(row, output)['kept']}/{_verification(row, output)['n']}" for output in fp.OUTPUTS]]
            for row in result["defence"]]
