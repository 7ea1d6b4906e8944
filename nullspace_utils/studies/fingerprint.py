"""Paper §9 made real: the owner's fingerprint verified on copies, thieves' models and unrelated models, why other
ViTs are told apart (the shared nullspace and the leak into their row space), its fade under fine-tuning and the
input-noise defence over several fingerprints and seeds.

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

from nullspace_utils import exact, metrics, models, results
from nullspace_utils import fingerprint as fp
from nullspace_utils.data import stack_dataset
from nullspace_utils.plotting import format_range
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Provenance
from nullspace_utils.studies import common, evidence

__all__ = ["FingerprintSettings", "ThiefTuning", "ThiefRates", "FingerprintCheckPoint", "SETTINGS", "CHECK",
           "TUNED_PARTS", "BACKEND_DEPENDENT_SUSPECTS", "make_suspects", "verification_row", "verification_rows",
           "check_point", "run", "claim_cells", "settings_line", "suspect_rows", "claim_lines", "roc_curves",
           "unrelated_rates", "unrelated_claims", "fade_panels", "fade_rows", "fade_lines", "defence_rows",
           "defence_lines", "leak_entry", "leak_rows", "leak_lines", "leak_panels", "tolerance_window", "range_panels",
           "step_ranges", "claims", "findings", "overlap", "leak_curves", "runs_line", "defence_thresholds", "CLAIM_FIGURE", "RESULT", "VerificationRow", "FingerprintSuspect", "FingerprintLeak",
           "FingerprintFadeRow", "FingerprintFadeRun", "FingerprintDefenceRow", "FingerprintDefenceRun",
           "ThiefTuningConfig", "FingerprintConfig", "FingerprintCheck", "FingerprintResult"]

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


class FingerprintLeak(TypedDict):
    """Why a ViT suspect keeps or changes the probes (:func:`leak_entry`): the values of a patch (C r²), its patch
    nullspace's dimension, the
    dimension it shares with the owner's, and per fingerprint and probe the energy share of the noise in its row
    space (:func:`~nullspace_utils.fingerprint.leak_energy`) and the relative logit change the probe showed."""

    derived: bool
    patch_values: int
    nullity: int
    shared_dimension: int
    energy: list[list[float]]
    change: list[list[float]]


class FingerprintFadeRow(TypedDict):
    """A fine-tuned copy after ``step`` steps: its accuracy, and per fade fingerprint the median leak energy share of
    its probes and the verification with every output."""

    step: int
    accuracy: float
    leak: list[float]
    logits: list[VerificationRow]
    probs: list[VerificationRow]
    label: list[VerificationRow]


class FingerprintFadeRun(TypedDict):
    """One fine-tuning run (its ``seed``: batches, and the new head's initialisation) at every checkpoint."""

    seed: int
    rows: list[FingerprintFadeRow]


class FingerprintDefenceRow(TypedDict):
    """The owner behind fresh input noise of std ``sigma``: its accuracy, one verification per fade fingerprint and
    output."""

    sigma: float
    accuracy: float
    logits: list[VerificationRow]
    probs: list[VerificationRow]
    label: list[VerificationRow]


class FingerprintDefenceRun(TypedDict):
    """The input-noise defence with the noise drawn from ``seed``, at every sigma."""

    seed: int
    rows: list[FingerprintDefenceRow]


class ThiefTuningConfig(TypedDict):
    """:class:`ThiefTuning`: how the thieves fine-tune (learning rate per trained part)."""

    images: int
    steps: int
    batch_size: int
    checkpoints: list[int]
    lr: dict[str, float]
    seeds: list[int]


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
    fade_fingerprints: int
    defence_seeds: list[int]


class FingerprintCheck(TypedDict):
    """:data:`CHECK` and its verification (:func:`check_point`), which a test recomputes."""

    part: str
    step: int
    fingerprint_seed: int
    tune_seed: int
    result: VerificationRow


class FingerprintResult(TypedDict):
    """``book/results/<profile>/fingerprint.json``: suspects, the fade under fine-tuning, the noise defence (§9)."""

    provenance: Provenance
    profile: str
    config: FingerprintConfig
    owner: str
    suspects: dict[str, FingerprintSuspect]
    leak: dict[str, FingerprintLeak]
    fade: dict[str, list[FingerprintFadeRun]]
    defence: list[FingerprintDefenceRun]
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
    split), verified at each of ``checkpoints``, at the rates ``lr``, once per seed of ``seeds`` (the batches and
    a new head's initialisation)."""

    images: int
    steps: int
    batch_size: int
    checkpoints: tuple[int, ...]
    lr: ThiefRates
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class FingerprintSettings:
    """The fingerprint run of one profile: ``fingerprints`` secrets (seeds 0, 1, ...) of ``n_probes`` probes drawn
    from the first ``val`` validation images with noise ``amplitude``, verified with tolerance ``tol`` (logits,
    probs) and ``bisection_steps`` (label); the thieves' ``fine_tune``; the input-noise defence's ``sigmas``,
    with its noise drawn from each of ``defence_seeds``. The fine-tuned copies and the defence are verified with
    the first ``fade_fingerprints`` secrets."""

    n_probes: int
    amplitude: float
    fingerprints: int
    tol: float
    bisection_steps: int
    fine_tune: ThiefTuning
    sigmas: tuple[float, ...]
    val: int
    fade_fingerprints: int = 1
    defence_seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not 1 <= self.fade_fingerprints <= self.fingerprints:
            raise ValueError(f"fade_fingerprints must lie in 1..fingerprints ({self.fingerprints}), got "
                             f"{self.fade_fingerprints}: the fade is verified with some of the run's secrets.")
        if not self.fine_tune.seeds or not self.defence_seeds:
            raise ValueError("fine_tune.seeds and defence_seeds need at least one seed each.")


@dataclass(frozen=True)
class FingerprintCheckPoint:
    """The run's cheap point that a test recomputes on the CPU from the committed file: a copy of the owner
    fine-tuned (its ``part``, with seed ``tune_seed``) for ``step`` steps, verified with logits against fingerprint
    ``fingerprint_seed``."""

    part: str
    step: int
    fingerprint_seed: int
    tune_seed: int = 0


_CHECKPOINTS = (0, 1, 2, 5, 10, 20, 50, 100, 200)

#: Fingerprint experiments per profile (paper §9's "patenting", made a test; see nullspace_utils.fingerprint)
SETTINGS: dict[str, FingerprintSettings] = {
    "teaching": FingerprintSettings(
        n_probes=16, amplitude=0.25, fingerprints=8, tol=1e-3, bisection_steps=14,
        fine_tune=ThiefTuning(images=2_000, steps=200, batch_size=32, checkpoints=_CHECKPOINTS,
                              lr=ThiefRates(all=1e-4, patch_embed=1e-4, head=1e-3), seeds=(0, 1, 2)),
        sigmas=(0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), val=500, fade_fingerprints=3, defence_seeds=(0, 1, 2)),
    "imagenet": FingerprintSettings(
        n_probes=32, amplitude=0.1, fingerprints=4, tol=1e-3, bisection_steps=14,
        fine_tune=ThiefTuning(images=2_000, steps=200, batch_size=32, checkpoints=_CHECKPOINTS,
                              lr=ThiefRates(all=1e-5, patch_embed=1e-5, head=1e-3), seeds=(0, 1, 2)),
        sigmas=(0.0, 1e-4, 1e-3, 1e-2, 3e-2), val=500, fade_fingerprints=3, defence_seeds=(0, 1, 2)),
}
#: the cheap point a test recomputes on the CPU: fine-tuning everything for a few steps, logits access
CHECK = FingerprintCheckPoint(part="all", step=5, fingerprint_seed=0, tune_seed=0)

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


def _row(result: fp.Verification) -> VerificationRow:
    """A :class:`~nullspace_utils.fingerprint.Verification` as a result row."""
    changes = result.changes[~result.changes.isnan()]
    return {"kept": result.kept, "n": result.n, "p_value": result.p_value, "is_yours": result.is_yours,
            "median_change": float(changes.median()) if len(changes) else None,
            "max_change": float(changes.max()) if len(changes) else None, "queries": result.queries}


def verification_row(fingerprint: fp.Fingerprint, model: nn.Module, *, output: str, tol: float = 1e-3,
                     bisection_steps: int = 14, show_progress: bool = False) -> VerificationRow:
    """:func:`~nullspace_utils.fingerprint.verify` ``model`` through ``output`` as a result row: kept / n, p-value,
    the claim, the median and largest per-probe change (None when no probe gave one) and the number of queries."""
    return _row(fp.verify(fingerprint, fp.as_query(model, output), output=output, tol=tol,
                          bisection_steps=bisection_steps, show_progress=show_progress))


def verification_rows(fingerprint: fp.Fingerprint, model: nn.Module, *, tol: float = 1e-3, bisection_steps: int = 14,
                      show_progress: bool = False) -> dict[str, VerificationRow]:
    """:func:`verification_row` for every kind of access, output -> row (logits, probs, label)."""
    return {output: verification_row(fingerprint, model, output=output, tol=tol, bisection_steps=bisection_steps,
                                     show_progress=show_progress)
            for output in fp.OUTPUTS}


def _median_leak(fingerprint: fp.Fingerprint, model: nn.Module) -> float:
    """The median over ``fingerprint``'s probes of the leak energy share into ``model``'s row space."""
    return float(fp.leak_energy(fingerprint, model).median())


def leak_entry(owner: nn.Module, model: nn.Module, fingerprints: list[fp.Fingerprint], *, derived: bool,
               tol: float = 1e-3) -> FingerprintLeak:
    """Why ``model`` keeps or changes the owner's probes (paper §3.2 applied to §9): its nullity, the dimension its
    patch nullspace shares with the owner's (:func:`~nullspace_utils.fingerprint.shared_nullspace_dimension`), and
    per fingerprint and probe the leak energy share (:func:`~nullspace_utils.fingerprint.leak_energy`) and the
    relative logit change under verification with logits. Raises
    :class:`~nullspace_utils.exact.NotPatchEmbeddingError` for a model without a patch embedding."""
    return {"derived": derived, "patch_values": int(exact.patch_embedding_matrix(model).shape[1]),
            "nullity": int(exact.patch_nullspace(model).shape[0]),
            "shared_dimension": fp.shared_nullspace_dimension(owner, model),
            "energy": [fp.leak_energy(f, model).tolist() for f in fingerprints],
            "change": [fp.verify(f, fp.as_query(model), tol=tol).changes.tolist() for f in fingerprints]}


def overlap(owner: nn.Module, model: nn.Module) -> dict[str, int]:
    """How ``model``'s patch nullspace meets the owner's (paper §3.2): ``values`` (C r²), ``nullity`` (its
    dimension), ``shared`` (the dimension of the intersection,
    :func:`~nullspace_utils.fingerprint.shared_nullspace_dimension`) and ``least`` (what any two nullspaces of
    these dimensions must share, k_owner + k - C r²)."""
    values = int(exact.patch_embedding_matrix(model).shape[1])
    owner_nullity, nullity = int(exact.patch_nullspace(owner).shape[0]), int(exact.patch_nullspace(model).shape[0])
    return {"values": values, "nullity": nullity, "shared": fp.shared_nullspace_dimension(owner, model),
            "least": max(owner_nullity + nullity - values, 0)}


def leak_curves(fingerprint: fp.Fingerprint, suspects: dict[str, nn.Module], scales: tuple[float, ...], *,
                tol: float = 1e-3) -> dict[str, tuple[list[float], list[float], str]]:
    """Verification against the leak, one suspect at a time: for each scale, the fingerprint's leak into the
    suspect's row space multiplied by it (:func:`~nullspace_utils.fingerprint.with_leak`), and the median leak
    energy share over the probes against the probes kept with logits (%), as
    :func:`~nullspace_utils.plotting.line_panels`' lines."""
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive (a leak of 0 has no place on a log axis), got {scales}.")
    curves = {}
    for name, model in suspects.items():
        energies, kept = [], []
        for scale in scales:
            scaled = fp.with_leak(fingerprint, model, scale)
            energies.append(float(fp.leak_energy(scaled, model).median()))
            kept.append(100 * fp.verify(scaled, fp.as_query(model), tol=tol).score)
        curves[name] = (energies, kept, "o-")
    return curves


# --------------------------------------------------------------------------- the run
def check_point(owner: nn.Module, fingerprint: fp.Fingerprint, images: torch.Tensor, labels: torch.Tensor,
                settings: FingerprintSettings, check: FingerprintCheckPoint = CHECK) -> VerificationRow:
    """The run's cheap point (:data:`CHECK`): a copy of ``owner`` fine-tuned (its ``part``, seed ``tune_seed``) for
    ``step`` steps on ``images``, verified with logits under ``settings``' tolerance."""
    tune = settings.fine_tune
    for _, thief in fp.tune_copy(owner, images, labels, part=check.part, steps=check.step, lr=tune.lr.of(check.part),
                                 batch_size=tune.batch_size, seed=check.tune_seed):
        return verification_row(fingerprint, thief, output="logits", tol=settings.tol,
                                bisection_steps=settings.bisection_steps)
    raise common.StudyError("tune_copy yielded no model")


def _verified(fingerprints: list[fp.Fingerprint], model: nn.Module, tolerances: dict[str, Any]) -> dict[str, Any]:
    """Per output, one verification row per fingerprint."""
    rows = [verification_rows(f, model, **tolerances) for f in fingerprints]
    return {output: [row[output] for row in rows] for output in fp.OUTPUTS}


def run(settings: FingerprintSettings, profile: Profile, how: common.Run,
        check: FingerprintCheckPoint = CHECK) -> FingerprintResult:
    """The fingerprint chapter's run: every suspect (:func:`make_suspects`) x output x fingerprint seed; why each ViT
    suspect keeps or changes the probes (:func:`leak_entry`); the fade under fine-tuning (everything, only a new
    head, only the patch embedding) against steps, once per fine-tuning seed, verified with the first
    ``fade_fingerprints`` fingerprints; the input-noise defence against sigma, once per defence seed, with the same
    fingerprints; the cheap ``check`` point. Its rows so far are saved after each suspect and run
    (:meth:`~nullspace_utils.studies.common.Run.save_partial`)."""
    tolerances: dict[str, Any] = {"tol": settings.tol, "bisection_steps": settings.bisection_steps}
    owner = profile.load_model(profile.vit_models[0])
    val_images, val_labels = stack_dataset(profile.dataset("val", n=settings.val))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=settings.fine_tune.images))
    fingerprints = [fp.make_fingerprint(owner, n_probes=settings.n_probes, amplitude=settings.amplitude, seed=seed,
                                        images=val_images) for seed in range(settings.fingerprints)]
    faded = fingerprints[:settings.fade_fingerprints]
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name,
                           "config": common.settings_dict(settings), "owner": owner.name, "suspects": {}, "leak": {},
                           "fade": {}, "defence": []}

    def accuracy(model: nn.Module) -> float:
        return metrics.accuracy(model, val_images, val_labels, classes=profile.label_indices)

    for name, (model, derived) in make_suspects(profile, owner).items():
        entry: dict[str, Any] = {"derived": derived, "accuracy": accuracy(model), **_verified(fingerprints, model,
                                                                                              tolerances)}
        out["suspects"][name] = entry
        try:
            out["leak"][name] = leak_entry(owner, model, fingerprints, derived=derived, tol=settings.tol)
        except exact.NotPatchEmbeddingError:  # a CNN: no patch map, so no nullspace to share; it sees all the noise
            pass
        logger.info("%s %s", name, {output: [row["kept"] for row in entry[output]] for output in fp.OUTPUTS})
        how.save_partial(out)
    tune = settings.fine_tune
    for part in TUNED_PARTS:
        out["fade"][part] = []
        for seed in tune.seeds:
            rows = []
            for step, thief in fp.tune_copy(owner, new_images, new_labels, part=part, steps=tune.steps,
                                            lr=tune.lr.of(part), checkpoints=tuple(tune.checkpoints),
                                            batch_size=tune.batch_size, reset_head=part == "head", seed=seed):
                row: dict[str, Any] = {"step": step, "accuracy": accuracy(thief),
                                       "leak": [_median_leak(f, thief) for f in faded],
                                       **_verified(faded, thief, tolerances)}
                rows.append(row)
                logger.info("%s seed %s step %s %.3f %s", part, seed, step, row["accuracy"],
                            {o: [r["kept"] for r in row[o]] for o in fp.OUTPUTS})
            out["fade"][part].append({"seed": seed, "rows": rows})
            how.save_partial(out)
    for seed in settings.defence_seeds:
        rows = []
        for sigma in settings.sigmas:
            defended = fp.NoisyInput(owner, sigma, seed=seed)
            rows.append({"sigma": sigma, "accuracy": accuracy(defended), **_verified(faded, defended, tolerances)})
            logger.info("seed %s sigma %s %s", seed, sigma, {o: [r["kept"] for r in rows[-1][o]] for o in fp.OUTPUTS})
        out["defence"].append({"seed": seed, "rows": rows})
        how.save_partial(out)
    out["check"] = {**asdict(check), "result": check_point(owner, fingerprints[check.fingerprint_seed], new_images,
                                                           new_labels, settings, check)}
    return cast(FingerprintResult, out)  # checked against the schema when it is written (RESULT.write)


# --------------------------------------------------------------------------- readers: what the chapter shows
def claim_cells(name: str, verification: fp.Verification) -> list[str]:
    """A live verification's table cells: probes kept (of those whose answer the control changed), p-value, verdict
    ("inconclusive" when too few answered the control for any claim); for the copies whose answers depend on the
    CPU's kernels (:data:`BACKEND_DEPENDENT_SUSPECTS`), a pointer to the eight-secret table instead."""
    if name in BACKEND_DEPENDENT_SUSPECTS:
        return ["varies by CPU", "—", "see the eight-secret table"]
    verdict = "**yours**" if verification.is_yours else "inconclusive" if verification.inconclusive else "not shown to be yours"
    return [f"{verification.kept}/{verification.n}", f"{verification.p_value:.1g}", verdict]


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


def _verification(row: FingerprintFadeRow | FingerprintDefenceRow, output: str) -> list[VerificationRow]:
    """A fade or defence row's verifications through ``output``, one per fade fingerprint."""
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
            if entry["derived"] == derived and name not in leave_out for point in _points(entry, output) if point["n"]]


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


def _kept(rows: list[VerificationRow]) -> list[float]:
    """The fraction of probes kept by each verification of ``rows``."""
    return [row["kept"] / row["n"] for row in rows if row["n"]]


def _runs(result: FingerprintResult, part: str) -> list[FingerprintFadeRun]:
    """The fine-tuning runs of ``part``; a clear error for a part the file does not have."""
    if part not in result["fade"]:
        raise KeyError(f"the result has no fade of part {part!r}; it has {', '.join(result['fade'])}.")
    return result["fade"][part]


def step_ranges(result: FingerprintResult, part: str, output: str) -> list[tuple[int, list[float], int]]:
    """Per checkpoint of the fine-tuning of ``part``: the step, the fraction of probes kept through ``output`` in
    every run (fine-tuning seed x fade fingerprint) and how many of those runs led to the claim 'yours'."""
    runs = _runs(result, part)
    ranges = []
    for index, row in enumerate(runs[0]["rows"]):
        verifications = [v for run in runs for v in _verification(run["rows"][index], output)]
        ranges.append((row["step"], _kept(verifications), sum(v["is_yours"] for v in verifications)))
    return ranges


def _accuracy_ranges(result: FingerprintResult, part: str) -> list[list[float]]:
    """Per checkpoint of ``part``, the thief's accuracy in each fine-tuning run."""
    runs = _runs(result, part)
    return [[run["rows"][index]["accuracy"] for run in runs] for index in range(len(runs[0]["rows"]))]


def _percent_range(values: list[float]) -> str:
    """Fractions as a range of whole percentages, "25–100 %" (one number when both ends agree)."""
    return format_range(values, digits=0).replace("-", "–") + " %"


def _claims_end(ranges: list[tuple[int, list[float], int]]) -> int | None:
    """The first step of :func:`step_ranges`' rows from which on no run is claimed 'yours' (None: some run is
    claimed at the last step)."""
    for index, (step, _, _) in enumerate(ranges):
        if not any(claimed for _, _, claimed in ranges[index:]):
            return step
    return None


def fade_panels(result: FingerprintResult) -> list[dict[str, Any]]:
    """The fade under fine-tuning as :func:`range_panels`' panels: probes kept per output, then the thief's accuracy,
    against steps (step 0 at 0.5, for a log axis), one band per tuned part: the lowest to highest over the runs
    (fine-tuning seeds x fade fingerprints) and the median as a line."""
    import numpy as np

    panels: list[dict[str, Any]] = [{"title": f"probes kept ({output})", "ylabel": "%", "series": {}}
                                    for output in fp.OUTPUTS]
    panels.append({"title": "accuracy of the thief's model", "ylabel": "%", "series": {}})
    for part, label in TUNED_PARTS.items():
        for panel, output in zip(panels[:-1], fp.OUTPUTS, strict=True):
            ranges = step_ranges(result, part, output)
            steps = [max(step, 0.5) for step, _, _ in ranges]  # step 0 drawn at 0.5 on the log axis
            values = [[100 * value for value in kept] for _, kept, _ in ranges]
            panel["series"][label] = (steps, [min(v) for v in values], [float(np.median(v)) for v in values],
                                      [max(v) for v in values])
        accuracies = [[100 * value for value in values] for values in _accuracy_ranges(result, part)]
        panels[-1]["series"][label] = (steps, [min(v) for v in accuracies], [float(np.median(v)) for v in accuracies],
                                       [max(v) for v in accuracies])
    return panels


def range_panels(panels: list[dict[str, Any]], *, xlabel: str, logx: bool = True, size: tuple[float, float] = (3.6, 3.0),
                 ncols: int = 2) -> Any:
    """Plot :func:`fade_panels`-shaped panels, ``{"title", "ylabel", "series": {label: (xs, lows, medians, highs)}}``:
    per series the median as a line with markers and the lowest-to-highest range as a shaded band. Returns the
    matplotlib figure. (A plotting helper of this chapter only; :mod:`nullspace_utils.plotting` has none that draws
    bands.)"""
    import matplotlib.pyplot as plt

    from nullspace_utils import plotting

    rows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(size[0] * ncols, size[1] * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        for index, (label, (xs, lows, medians, highs)) in enumerate(panel["series"].items()):
            colour = plotting.PALETTE[index % len(plotting.PALETTE)]  # colour-blind safe
            ax.fill_between(xs, lows, highs, color=colour, alpha=0.2, linewidth=0)
            ax.plot(xs, medians, "o-", color=colour, markersize=4, label=label)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel["ylabel"])
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return plotting.readable(fig)


def fade_rows(result: FingerprintResult) -> list[list[str]]:
    """The fade table: per tuned part and checkpoint, the probes kept per output (lowest–highest over the runs, with
    how many runs led to the claim 'yours') and the thief's accuracy (lowest–highest over the fine-tuning seeds)."""
    rows = []
    for part, label in TUNED_PARTS.items():
        per_output = {output: step_ranges(result, part, output) for output in fp.OUTPUTS}
        for index, accuracies in enumerate(_accuracy_ranges(result, part)):
            cells = [label, str(per_output["logits"][index][0])]
            for output in fp.OUTPUTS:
                _, kept, claimed = per_output[output][index]
                cells.append(f"{_percent_range(kept)} ({claimed}/{len(kept)})")
            cells.append(format_range(accuracies).replace("-", "–") + " %")
            rows.append(cells)
    return rows


def runs_line(result: FingerprintResult) -> str:
    """How many runs each fade and defence point rests on, in words."""
    config = result["config"]
    seeds, fingerprints = len(config["fine_tune"]["seeds"]), config["fade_fingerprints"]
    return (f"{seeds * fingerprints} runs per point: {seeds} fine-tuning seeds x {fingerprints} fingerprints; the "
            f"defence {len(config['defence_seeds'])} noise seeds x {fingerprints} fingerprints")


def fade_lines(result: FingerprintResult) -> list[str]:
    """Per tuned part, a Markdown bullet from the fade over every run: probes kept with logits and labels after the
    first step and after the last (lowest–highest), the first checkpoint at which no run is claimed 'yours' with
    logits (if any), whether the lowest count ever rises again after falling, and the accuracy before and after."""
    lines = []
    for part, label in TUNED_PARTS.items():
        logits, labels = step_ranges(result, part, "logits"), step_ranges(result, part, "label")
        accuracies = _accuracy_ranges(result, part)
        first, last = 1, len(logits) - 1
        lost = _claims_end(logits)
        lowest = [min(kept) for _, kept, _ in logits]
        rises = any(later > earlier for earlier, later in zip(lowest, lowest[1:], strict=False))
        lines.append(
            f"- **{label}**: after {logits[first][0]} step(s) logits keep {_percent_range(logits[first][1])} of the "
            f"probes and labels {_percent_range(labels[first][1])}; after {logits[last][0]} steps "
            f"{_percent_range(logits[last][1])} and {_percent_range(labels[last][1])}; "
            + (f"no run is claimed 'yours' with logits from step {lost} on" if lost is not None
               else f"claimed 'yours' with logits in {logits[last][2]}/{len(logits[last][1])} runs at the end")
            + ("; the lowest count rises again at some step (not monotone)" if rises else "")
            + f"; accuracy {format_range(accuracies[0]).replace('-', '–')} % → "
              f"{format_range(accuracies[-1]).replace('-', '–')} %.")
    return lines


def _defence_verifications(result: FingerprintResult, index: int, output: str) -> list[VerificationRow]:
    """Every verification at the ``index``-th sigma through ``output``, over the noise seeds and fingerprints."""
    return [v for run in result["defence"] for v in _verification(run["rows"][index], output)]


def defence_rows(result: FingerprintResult) -> list[list[str]]:
    """The input-noise defence table: per noise std, the accuracy (lowest–highest over the noise seeds) and the probes
    kept per output (lowest–highest over seeds x fingerprints, with how many runs led to the claim 'yours')."""
    rows = []
    for index, row in enumerate(result["defence"][0]["rows"]):
        accuracies = [run["rows"][index]["accuracy"] for run in result["defence"]]
        cells = [f"{row['sigma']:g}", format_range(accuracies).replace("-", "–") + " %"]
        for output in fp.OUTPUTS:
            verifications = _defence_verifications(result, index, output)
            cells.append(f"{_percent_range(_kept(verifications))} "
                         f"({sum(v['is_yours'] for v in verifications)}/{len(verifications)})")
        rows.append(cells)
    return rows


def defence_thresholds(result: FingerprintResult) -> dict[str, float | None]:
    """Per output, the smallest noise std at and above which no run (noise seed x fingerprint) is claimed 'yours'
    (None when some run is claimed at the largest std)."""
    sigmas = [row["sigma"] for row in result["defence"][0]["rows"]]
    thresholds: dict[str, float | None] = {}
    for output in fp.OUTPUTS:
        claimed = [any(v["is_yours"] for v in _defence_verifications(result, index, output))
                   for index in range(len(sigmas))]
        thresholds[output] = next((sigma for index, sigma in enumerate(sigmas) if not any(claimed[index:])), None)
    return thresholds


def defence_lines(result: FingerprintResult) -> list[str]:
    """Per output, the smallest input-noise std from which no run is claimed 'yours', and the thief's accuracy there
    (lowest–highest over the noise seeds)."""
    sigmas = [row["sigma"] for row in result["defence"][0]["rows"]]
    lines = []
    for output, threshold in defence_thresholds(result).items():
        if threshold is None:
            lines.append(f"- {output}: some run is still claimed 'yours' at std {sigmas[-1]:g}")
            continue
        index = sigmas.index(threshold)
        accuracies = [run["rows"][index]["accuracy"] for run in result["defence"]]
        lines.append(f"- {output}: no run claimed from std {threshold:g} on, where the thief's accuracy is "
                     f"{format_range(accuracies).replace('-', '–')} % (without noise "
                     f"{format_range([run['rows'][0]['accuracy'] for run in result['defence']]).replace('-', '–')} %)")
    return lines


# --------------------------------------------------------------------------- readers: the leak
def _group(result: FingerprintResult, name: str) -> str:
    """The group a suspect is drawn in: derived suspects by name, other seeds of the owner's architecture together."""
    if result["leak"][name]["derived"]:
        return name
    return "owner's architecture, other seeds" if name.startswith(f"{result['owner']}-seed") else name


def _flat(values: list[list[float]]) -> list[float]:
    return [value for row in values for value in row]


def _number_range(values: list[float]) -> str:
    """A range of small positive numbers with two significant digits, "0.0016–0.042"."""
    low, high = f"{min(values):.2g}", f"{max(values):.2g}"
    return low if low == high else f"{low}–{high}"


def leak_rows(result: FingerprintResult) -> list[list[str]]:
    """The leak table: per ViT suspect, derived?, its nullity, the dimensions it shares with the owner's nullspace
    (and the least two such nullspaces must share), the energy share of the noise in its row space and the
    relative logit change per probe (lowest–highest over every probe of every fingerprint) and the probes kept with
    logits (lowest–highest over the fingerprints)."""
    owner_nullity = result["leak"]["owner"]["nullity"]
    rows = []
    for name, entry in result["leak"].items():
        least = max(owner_nullity + entry["nullity"] - entry["patch_values"], 0)
        energy = _flat(entry["energy"])
        kept = _kept(_points(result["suspects"][name], "logits"))
        rows.append([name, "yes" if entry["derived"] else "no", str(entry["nullity"]),
                     f"{entry['shared_dimension']} (≥ {least})",
                     _below(energy, _ROUNDING_ENERGY) if max(energy) < 1e-6 else _percent_range_digits(energy),
                     _below(_flat(entry["change"]), _ROUNDING_CHANGE), _percent_range(kept)])
    return rows


#: rounding-level bounds the chapter prints as comparisons (their digits differ between CPUs): a leak energy
#: share, and a relative logit change
_ROUNDING_ENERGY = 1e-12
_ROUNDING_CHANGE = 1e-5


def _below(values: list[float], bound: float) -> str:
    """``values`` as "below <bound>" when all of them are (float rounding), else their range, its low end written
    "below <bound>" when that one is: "below 1e-05–0.13" (rounding-level digits differ between CPUs)."""
    if max(values) < bound:
        return f"below {bound:g}"
    if min(values) < bound:
        return f"below {bound:g}–{max(values):.2g}"
    return _number_range(values)


def _percent_range_digits(values: list[float]) -> str:
    """Fractions as a range of percentages with one decimal, "8.5–13.2 %"."""
    return format_range(values, digits=1).replace("-", "–") + " %"


def tolerance_window(result: FingerprintResult) -> dict[str, float]:
    """Where the tolerance must sit: the largest relative logit change of a probe of the owner and its exact copy,
    the smallest of a probe of a ViT not derived from the owner's (whose noise leaks into its row space), the
    tolerance used, the smallest leak energy share among those ViTs' probes, and how many of their probes
    (``unrelated_within`` of ``unrelated_probes``) changed by no more than the tolerance."""
    exact_changes = _flat(result["leak"]["owner"]["change"]) + _flat(result["leak"].get("exact copy",
                                                                                        result["leak"]["owner"])["change"])
    unrelated = [entry for entry in result["leak"].values() if not entry["derived"]]
    changes = [value for entry in unrelated for value in _flat(entry["change"])]
    tol = result["config"]["tol"]
    return {"owner_largest": max(exact_changes), "unrelated_smallest": min(changes), "tol": tol,
            "leak_smallest": min(min(_flat(e["energy"])) for e in unrelated),
            "unrelated_within": sum(value <= tol for value in changes), "unrelated_probes": len(changes)}


def leak_lines(result: FingerprintResult) -> list[str]:
    """The leak in sentences, every number from the file: per group of unrelated ViTs the shared dimension and the
    leak energy share, then the tolerance window (:func:`tolerance_window`)."""
    owner = result["leak"]["owner"]
    lines = []
    groups: dict[str, list[str]] = {}
    for name, entry in result["leak"].items():
        if not entry["derived"]:
            groups.setdefault(_group(result, name), []).append(name)
    for group, names in groups.items():
        entries = [result["leak"][name] for name in names]
        shared = sorted({entry["shared_dimension"] for entry in entries})
        nullities = sorted({entry["nullity"] for entry in entries})
        energy = [value for entry in entries for value in _flat(entry["energy"])]
        lines.append(f"{group}: nullity {', '.join(map(str, nullities))}, shares {', '.join(map(str, shared))} of "
                     f"the owner's {owner['nullity']} dimensions; {_percent_range_digits(energy)} of the noise's "
                     f"energy leaks into its row space")
    window = tolerance_window(result)
    lines.append(f"largest change of the owner and its exact copy below {_ROUNDING_CHANGE:g}: "
                 f"{window['owner_largest'] < _ROUNDING_CHANGE}; tolerance "
                 f"{window['tol']:g}; smallest change of an unrelated ViT {window['unrelated_smallest']:.1e} "
                 f"({window['unrelated_smallest'] / window['tol']:.1f} x the tolerance); unrelated ViTs' probes within "
                 f"the tolerance: {window['unrelated_within']} of {window['unrelated_probes']}")
    return lines


def leak_panels(result: FingerprintResult) -> list[dict[str, Any]]:
    """:func:`~nullspace_utils.plotting.line_panels`' panels (points, no lines; draw both axes on a log scale): the
    relative logit change of every probe against its leak energy share, per suspect group; and the probes kept with
    logits against the median leak energy share of a fingerprint, for the fine-tuned copies (every run and
    checkpoint) and the unrelated ViTs. Leak shares below 1e-18 (float64 rounding) are drawn at 1e-18."""
    floor = 1e-18
    changes: dict[str, Any] = {}
    for name, entry in result["leak"].items():
        xs, ys, _ = changes.setdefault(_group(result, name), ([], [], "o"))
        xs.extend(max(value, floor) for value in _flat(entry["energy"]))
        ys.extend(max(value, floor) for value in _flat(entry["change"]))
    kept: dict[str, Any] = {}
    for part, label in TUNED_PARTS.items():
        xs, ys = [], []
        for run in result["fade"][part]:
            for row in run["rows"]:
                xs.extend(max(value, floor) for value in row["leak"])
                ys.extend(100 * value for value in _kept(row["logits"]))
        kept[f"fine-tuned: {label}"] = (xs, ys, "o")
    for name, entry in result["leak"].items():
        if not entry["derived"]:
            import numpy as np

            xs, ys, _ = kept.setdefault("unrelated ViTs", ([], [], "s"))
            xs.extend(float(np.median(energies)) for energies in entry["energy"])
            ys.extend(100 * value for value in _kept(_points(result["suspects"][name], "logits")))
    return [{"title": "each probe: logit change vs leak", "ylabel": "relative logit change", "lines": changes},
            {"title": "each fingerprint: probes kept (logits)", "ylabel": "% of probes kept", "lines": kept}]


#: the MyST label of the chapter's table that shows the §9 claims
CLAIM_FIGURE = "fingerprint-suspects"



def _suspect_counts(result: FingerprintResult) -> tuple[list[str], bool, int]:
    """The unrelated suspects' names, whether the owner and its exact copy are claimed in every verification, and
    how many verifications the unrelated suspects had (suspects x fingerprints x outputs)."""
    suspects = result["suspects"]
    unrelated = [name for name, entry in suspects.items() if not entry["derived"]]
    exact_names = [name for name in ("owner", "exact copy") if name in suspects]
    every = all(point["is_yours"] for name in exact_names for output in fp.OUTPUTS
                for point in _points(suspects[name], output))
    return unrelated, every, len(unrelated) * result["config"]["fingerprints"] * len(fp.OUTPUTS)


def _claimed(result: FingerprintResult, name: str) -> str:
    """How many fingerprints claimed suspect ``name`` 'yours', per output: "8, 8, 7"."""
    return ", ".join(str(sum(point["is_yours"] for point in _points(result["suspects"][name], output)))
                     for output in fp.OUTPUTS)


def claims(result: FingerprintResult) -> list[evidence.Claim]:
    """The reproducibility page's row for paper §9 ("a ViT's nullspace could 'patent' a trained model"): verdict
    "beyond the paper" (the paper states the idea in one paragraph and tests nothing), one sentence whose numbers
    all come from ``result``."""
    config, suspects = result["config"], result["suspects"]
    fingerprints, probes = config["fingerprints"], config["n_probes"]
    unrelated, every, verifications = _suspect_counts(result)
    wrong = unrelated_claims(result)
    most = max(point["kept"] for name in unrelated for output in fp.OUTPUTS for point in _points(suspects[name], output))

    same = [entry for entry in result["leak"].values() if not entry["derived"]
            and entry["nullity"] == result["leak"]["owner"]["nullity"]]
    shared = sorted({entry["shared_dimension"] for entry in same})
    energy = [value for entry in result["leak"].values() if not entry["derived"] for value in _flat(entry["energy"])]
    window = tolerance_window(result)
    runs = len(config["fine_tune"]["seeds"]) * config["fade_fingerprints"]
    tuned = step_ranges(result, "patch_embed", "logits")
    lost = _claims_end(tuned)
    thresholds = defence_thresholds(result)
    quantised = [result["leak"][name] for name in ("float16 copy", "int8 copy") if name in result["leak"]]
    same_map = (", whose patch maps keep the owner's whole nullspace," if quantised and all(
        entry["shared_dimension"] == result["leak"]["owner"]["nullity"] and max(_flat(entry["energy"])) < 1e-12
        for entry in quantised) else "")
    defence = "; ".join(f"{output} from std {thresholds[output]:g}" for output in fp.OUTPUTS
                        if thresholds[output] is not None) or "no std of the run"
    sentence = (
        f"Over {fingerprints} fingerprints of {probes} probes at α = 10⁻³ (teaching zoo), the owner and its exact copy "
        f"are claimed {'every time with every output' if every else 'not every time'} and unrelated models in {wrong} "
        f"of {verifications} verifications (at most {most} of {probes} probes kept); an independently trained ViT of "
        f"the owner's architecture shares {', '.join(map(str, shared))} of the owner's "
        f"{result['leak']['owner']['nullity']} nullspace dimensions, and what gives an unrelated ViT away is the "
        f"{_percent_range_digits(energy)} of the noise's energy that leaks into its row space, which moves the "
        f"logits past the tolerance {window['tol']:g} on all but {window['unrelated_within']} of "
        f"{window['unrelated_probes']} probes (the closest at {window['unrelated_smallest'] / window['tol']:.1f} times "
        f"it); float16 and int8 copies{same_map} are claimed in only "
        f"{_claimed(result, 'float16 copy')} and {_claimed(result, 'int8 copy')} of {fingerprints} fingerprints (logits, probabilities, "
        f"labels); over {runs} runs per point ({len(config['fine_tune']['seeds'])} fine-tuning seeds x "
        f"{config['fade_fingerprints']} fingerprints), fine-tuning the patch embedding "
        + (f"leaves no logits claim from step {lost} on" if lost is not None else "leaves some logits claim")
        + f" and fresh input noise ends every claim ({defence}).")
    return [evidence.Claim(
        claim="A ViT's nullspace could \"patent\" a trained model without any step at training time (§9, one "
              "paragraph, no experiment)",
        chapter="fingerprint", figure=CLAIM_FIGURE, verdict="beyond the paper", sentence=sentence)]


def findings(result: FingerprintResult) -> list[str]:
    """The chapter's "What we found" bullets (:func:`~nullspace_utils.studies.claims.findings`), each formatted from
    ``result`` and linked to the section that shows it: copies and strangers, quantised copies, fine-tuning, input
    noise."""
    config, suspects = result["config"], result["suspects"]
    fingerprints, probes = config["fingerprints"], config["n_probes"]
    unrelated, every, verifications = _suspect_counts(result)

    bullets = [
        f"**Exact copies are proven, strangers are not.** Over {fingerprints} fingerprints of {probes} probes at "
        f"α = 10⁻³, the owner and its exact copy are claimed {'every time with every output' if every else 'not every time'}"
        f"; the {len(unrelated)} unrelated models in {unrelated_claims(result)} of {verifications} verifications "
        f"({{ref}}`see the table <{CLAIM_FIGURE}>`)."]
    quantised = [name for name in BACKEND_DEPENDENT_SUSPECTS if name in suspects]
    if quantised:
        bullets.append(
            "**Quantised copies mostly are not.** " + "; ".join(f"{name} claimed in {_claimed(result, name)}"
                                                                 for name in quantised)
            + f" of {fingerprints} fingerprints (logits, probabilities, labels): rounding after the patch "
            f"embedding changes answers the fingerprint needs unchanged ({{ref}}`see the leak <fingerprint-leak>`).")
    head_end = _claims_end(step_ranges(result, "head", "logits")) if "head" in result["fade"] else None
    tuned_end = _claims_end(step_ranges(result, "patch_embed", "logits"))
    runs = len(config["fine_tune"]["seeds"]) * config["fade_fingerprints"]
    bullets.append(
        f"**Fine-tuning the patch embedding ends the claim** (at α = 10⁻³; some probes stay kept). Over {runs} runs, "
        + (f"no run is claimed with logits from step {tuned_end} on" if tuned_end is not None
           else "some run is still claimed with logits at the last step")
        + ("; a new head alone keeps the logits claim to the end" if head_end is None else
           f"; a new head alone loses it from step {head_end}")
        + " ({ref}`see the fade <fingerprint-fade>`).")
    thresholds = defence_thresholds(result)
    ended = "; ".join(f"{output} from std {thresholds[output]:g}" for output in fp.OUTPUTS
                      if thresholds[output] is not None) or "no std of the run"
    sigmas = [row["sigma"] for row in result["defence"][0]["rows"]]
    last = max((sigmas.index(sigma) for sigma in thresholds.values() if sigma is not None), default=len(sigmas) - 1)
    accuracy = [run["rows"][last]["accuracy"] for run in result["defence"]]
    before = [run["rows"][0]["accuracy"] for run in result["defence"]]
    bullets.append(f"**A little input noise ends the claim too.** Fresh noise on every query ends every claim ({ended}); "
                   f"the thief's accuracy there is {format_range(accuracy).replace('-', '–')} % against "
                   f"{format_range(before).replace('-', '–')} % without noise "
                   "({ref}`see the defence <fingerprint-defence>`).")
    return bullets
