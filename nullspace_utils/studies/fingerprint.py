"""Paper §9 made real: the owner's fingerprint verified on copies, thieves' models and unrelated models, its fade
under fine-tuning and the input-noise defence.

The result file ``book/results/<profile>/fingerprint.json`` (:data:`RESULT`, schema :class:`FingerprintResult`).
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.

from typing_extensions import TypedDict

from nullspace_utils import results
from nullspace_utils.results import Provenance


# --------------------------------------------------------------------------- the result file
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


class ThiefTuningConfig(TypedDict):
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
    fine_tune: ThiefTuningConfig
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


RESULT = results.ResultKind("fingerprint", FingerprintResult, "fingerprint")
