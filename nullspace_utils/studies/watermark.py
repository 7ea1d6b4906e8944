"""Paper §6 and A.2: output-preserving watermarks on a profile's validation images, for every ViT of the profile.

The result file ``book/results/<profile>/watermark.json`` (:data:`RESULT`, schema :class:`WatermarkResult`).
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.

from typing_extensions import TypedDict

from nullspace_utils import results
from nullspace_utils.results import Provenance


# --------------------------------------------------------------------------- the result file
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


RESULT = results.ResultKind("watermark", WatermarkResult, "watermark")
