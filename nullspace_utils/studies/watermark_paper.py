"""Paper §6 and A.2 as its authors' code runs it: the per-channel SLSQP procedure (p = 1, 5000 iterations) and
every candidate explanation of the paper's 85 %, measured on the same images.

The result file ``book/results/<profile>/watermark_slsqp.json`` (:data:`RESULT`, schema :class:`WatermarkSlsqpResult`).
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
from typing import Any

from typing_extensions import TypedDict

from nullspace_utils import results
from nullspace_utils.results import Provenance
from nullspace_utils.studies.watermark import PredictionChange


# --------------------------------------------------------------------------- the result file
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


RESULT = results.ResultKind("watermark_slsqp", WatermarkSlsqpResult, "watermark-slsqp")
