"""Paper §6 and A.2 as its authors' code runs it: the per-channel SLSQP procedure (p = 1, 5000 iterations) and
every candidate explanation of the paper's 85 %, measured on the same images.

The settings (:data:`SETTINGS`, :class:`SlsqpSettings`), the runner (:func:`run`: SLSQP solved here in worker
processes, or imported from ``scripts/paper_slsqp_solve.py``'s answers) and its cheap check point (:data:`CHECK`,
:func:`check_point`), the result file ``book/results/<profile>/watermark_slsqp.json`` (:data:`RESULT`, schema
:class:`WatermarkSlsqpResult`), and the readers the watermark chapter shows it with (:func:`candidates_table`,
:func:`model_lines`). The procedure itself (:func:`~nullspace_utils.watermark.paper_slsqp`,
:func:`~nullspace_utils.watermark.channel_bases`) is in :mod:`nullspace_utils.watermark`.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import json
import logging
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
from typing_extensions import TypedDict

from nullspace_utils import box_solver, exact, metrics, plotting, results, watermark
from nullspace_utils.data import check_images, quantize_8bit, resize_crop, stack_dataset
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Provenance
from nullspace_utils.studies import common
from nullspace_utils.studies.watermark import PredictionChange, std_forgotten, watermark_mark

__all__ = ["SlsqpSettings", "SlsqpCheck", "SETTINGS", "CHECK", "MARK", "check_point", "run", "CANDIDATES",
           "candidates_table", "model_lines", "RESULT", "WatermarkSlsqpResult", "SlsqpModel", "SlsqpSolver",
           "SlsqpBox", "SlsqpConditions", "SlsqpCondition"]

logger = logging.getLogger(__name__)


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
    images: int
    solved: str
    seconds: float
    clean_accuracy: float
    clean_confidence_mean: float
    box: SlsqpBox
    slsqp: SlsqpSolver
    first_patches_objective: list[list[float]]


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


#: the result file, ``book/results/<profile>/watermark_slsqp.json``
RESULT: results.ResultKind[WatermarkSlsqpResult] = results.ResultKind("watermark_slsqp", WatermarkSlsqpResult,
                                                                   "watermark-slsqp")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SlsqpSettings:
    """The paper's watermark procedure (§6, A.2) as its authors' code runs it
    (:func:`~nullspace_utils.watermark.paper_slsqp`): norm ``p`` = 1, SLSQP with the paper's ``maxiter`` = 5000 cap, every patch's ``target`` the
    mark's patch, in the model's ``units``, on the first ``images`` val images, for every ViT of the profile whose
    per-channel nullspace is not {0}. The command line's ``--n`` and ``--maxiter`` replace ``images`` and
    ``maxiter``."""

    images: int = 20
    maxiter: int = 5000
    p: int = 1
    target: str = "mark"
    units: str = "normalised"


#: The run of each profile (the same procedure for both).
SETTINGS: dict[str, SlsqpSettings] = {"teaching": SlsqpSettings(), "imagenet": SlsqpSettings()}


@dataclass(frozen=True)
class SlsqpCheck:
    """The cheap point a test recomputes on the CPU: the first ``patches`` patches of val image ``image`` for the
    run's first ViT."""

    image: int = 0
    patches: int = 2


#: the cheap point a test recomputes on the CPU
CHECK = SlsqpCheck()

#: How the result file describes the mark and the targets.
MARK = "text 'NULL', rotated 20 degrees; every patch's target is the mark's patch"


# --------------------------------------------------------------------------- the check point and the solving
def check_point(model: nn.Module, image: torch.Tensor, mark: torch.Tensor, *,
                maxiter: int = SlsqpSettings().maxiter) -> dict[str, Any]:
    """The cheap point of the run (:data:`CHECK`): SLSQP (the paper's ``maxiter``, whatever the run's) on the
    first ``CHECK.patches`` patches of ``image`` (C, H, W): their objectives and iterations per channel, and how
    far the answer leaves [0, 1]."""
    check_images(image[None], name="image")
    r = exact.patch_embedding_layer(model).kernel_size[0]
    count, channels = CHECK.patches, image.shape[0]
    start = exact.to_patches(image[None].double(), r)[:count].reshape(count, channels, -1).numpy()
    target = exact.to_patches(mark[None].double(), r)[:count].reshape(count, channels, -1).numpy()
    mean, std = exact.normalisation(model)
    solved = watermark.paper_slsqp(watermark.channel_bases(model), start, target, mean, std, maxiter=maxiter)
    return {"objective": solved.objective.tolist(), "iterations": solved.iterations.tolist(),
            "box_violation": box_solver.box_violation(solved.pixels)}


def _paper_slsqp_image(job: tuple[list, Any, Any, tuple, tuple, int]) -> watermark.PaperSlsqp:
    """One image's patches through :func:`nullspace_utils.watermark.paper_slsqp` (a worker's task)."""
    bases, start, target, mean, std, maxiter = job
    return watermark.paper_slsqp(bases, start, target, mean, std, maxiter=maxiter)


def _solve_or_import(name: str, bases: list, start: Any, target: Any, model: nn.Module, maxiter: int, *,
                     solved: Path | None, workers: int) -> tuple[Any, Any, str]:
    """SLSQP's answers for ``start`` (B, m, C, r*r): (pixels (n, m, C, r*r), stats (n, m, C, 4), how).

    Solved here with ``workers`` processes, or, with ``solved`` a folder, read from ``solved/<name>.npz``
    (``pixels`` (n, C, m, r*r) and ``stats`` (n, C, 4, m): objective, objective at λ = 0, iterations,
    status; the first n images, n possibly fewer than asked), as written by the same per-channel SLSQP run
    elsewhere (scripts/paper_slsqp_solve.py, e.g. on a machine with more cores)."""
    if solved is not None:
        path = Path(solved) / f"{name}.npz"
        if not path.is_file():
            raise common.StudyError(f"--solved {solved}: no {path.name} there for {name}.")
        data = np.load(path)
        pixels = np.transpose(data["pixels"], (0, 2, 1, 3))
        stats = np.transpose(data["stats"], (0, 3, 1, 2))
        n = min(len(pixels), len(start))
        if pixels.shape[1:] != start.shape[1:]:
            raise common.StudyError(f"{path}: pixels of shape {pixels.shape[1:]} per image, expected "
                                    f"{start.shape[1:]}.")
        return pixels[:n], stats[:n], f"imported from {path.name}"
    mean, std = exact.normalisation(model)
    jobs = [(bases, start[i], target, mean, std, maxiter) for i in range(len(start))]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        answers = pool.map(_paper_slsqp_image, jobs, chunksize=1)
    pixels = np.stack([sol.pixels for sol in answers])
    stats = np.stack([np.stack([sol.objective, sol.start_objective, sol.iterations, sol.status], -1)
                      for sol in answers])
    return pixels, stats, f"solved here, {workers} processes"


def _condition(model: nn.Module, clean: torch.Tensor, changed: torch.Tensor, labels: torch.Tensor,
               classes: Any) -> SlsqpCondition:
    """Prediction change against the clean images (``metrics.compare_predictions``), the top-1 accuracy of the
    changed images against the ground-truth labels, and the PSNR of ``changed`` against ``clean``."""
    return {**metrics.compare_predictions(model, clean, changed),  # type: ignore[typeddict-item]
            "accuracy": metrics.accuracy(model, changed, labels, classes=classes),
            "psnr": metrics.psnr(clean, changed)}


# --------------------------------------------------------------------------- the runner
def run(settings: SlsqpSettings, profile: Profile, how: common.Run, *, solved: Path | None = None,
        workers: int = 2) -> WatermarkSlsqpResult:
    """Paper §6, A.2, run as its authors' code does it (:func:`nullspace_utils.watermark.paper_slsqp`: per
    channel, normalised units, SLSQP, p = 1, a 5000-iteration cap) on the first ``images`` val images per ViT,
    and every candidate explanation of the paper's 85 % / 11.63 % measured on the same images: the raw
    (unclipped) answer, the answer clipped to [0, 1], clipped and saved as 8 bits, clipped and resized, the
    exact joint-nullspace watermark (ADMM) with and without the std, and the ground-truth labels.

    SLSQP is solved here by ``workers`` processes, or its answers imported from the folder ``solved``
    (``_solve_or_import``). The rows so far are saved after every model (``how.save_partial``)."""
    all_images, all_labels = stack_dataset(profile.dataset("val", n=settings.images))
    mark = watermark_mark(profile.image_size)
    classes = profile.label_indices
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name,
                           "config": common.settings_dict(settings), "images": len(all_images),
                           "maxiter": settings.maxiter, "p": settings.p, "mark": MARK, "models": {},
                           "no_nullspace": {}, "predictions": {}}
    started_all = time.perf_counter()
    for name in profile.vit_models:
        model = profile.load_model(name, device=how.device)
        proj = exact.patch_embedding_layer(model)
        d, r, channels = proj.out_channels, proj.kernel_size[0], proj.in_channels
        dimensions = exact.nullspace_dimensions(d, r, channels)
        try:
            bases = watermark.channel_bases(model)
        except exact.NoNullspaceError as error:
            out["no_nullspace"][name] = {"d": d, "r": r, **dimensions, "message": str(error)}
            logger.info("%s: %s", name, error)
            continue
        start = exact.to_patches(all_images.double(), r).reshape(len(all_images), -1, channels, r * r).numpy()
        target = exact.to_patches(mark[None].double(), r).reshape(-1, channels, r * r).numpy()
        started = time.perf_counter()
        pixels, stats, solved_how = _solve_or_import(name, bases, start, target, model, settings.maxiter, solved=solved,
                                              workers=workers)
        seconds = time.perf_counter() - started
        images, labels = all_images[: len(pixels)], all_labels[: len(pixels)]
        raw = torch.from_numpy(pixels.reshape(-1, channels * r * r))
        raw_images = exact.from_patches(raw, tuple(images.shape), r).float()  # unclipped
        clipped = raw_images.clamp(0, 1)
        outside = (raw_images.double() - raw_images.double().clamp(0, 1)).abs()
        iterations, statuses = stats[..., 2].astype(np.int64), stats[..., 3].astype(np.int64)
        joint = watermark.embed(model, images, mark)  # the book's exact joint-nullspace watermark (ADMM)
        naive = watermark.embed(std_forgotten(model), images, mark)  # the joint nullspace of W alone
        clean_confidence = metrics.model_logits(model, images).softmax(1).amax(1)
        out["models"][name] = {
            "d": d, "r": r, **dimensions, "per_channel_found": int(sum(b.shape[1] for b in bases)),
            "images": len(images), "solved": solved_how, "seconds": seconds,
            "clean_accuracy": metrics.accuracy(model, images, labels, classes=classes),
            "clean_confidence_mean": float(clean_confidence.mean()),
            "box": {"max_violation": float(outside.max()), "fraction_outside": float((outside > 0).double().mean()),
                    "fraction_outside_half_level": float((outside > 0.5 / 255).double().mean())},
            "slsqp": {"iterations_median": float(np.median(iterations)), "iterations_max": int(iterations.max()),
                      "at_cap": int((iterations >= settings.maxiter).sum()), "problems": int(iterations.size),
                      "status_counts": {str(k): int(v) for k, v in
                                        zip(*np.unique(statuses, return_counts=True), strict=True)},
                      "objective_vs_start": float(stats[..., 0].sum() / stats[..., 1].sum()),
                      "objective_vs_joint_optimum_pixels": float(
                          (clipped.double() - mark).abs().sum() / (joint.image.double() - mark).abs().sum())},
            "first_patches_objective": stats[0, : CHECK.patches, :, 0].tolist(),
        }
        out["predictions"][name] = {
            "slsqp_raw": _condition(model, images, raw_images, labels, classes),
            "slsqp_clipped": _condition(model, images, clipped, labels, classes),
            "slsqp_clipped_8bit": _condition(model, quantize_8bit(images), quantize_8bit(clipped), labels, classes),
            "slsqp_clipped_resized": _condition(model, resize_crop(images), resize_crop(clipped), labels, classes),
            "joint_exact": _condition(model, images, joint.image, labels, classes),
            "joint_naive_std": _condition(model, images, naive.image, labels, classes),
        }
        logger.info("%s %.0f s %s %s", name, seconds, json.dumps(out["models"][name]),
                    json.dumps(out["predictions"][name]))
        how.save_partial(out)
    out["seconds"] = time.perf_counter() - started_all
    check_name = next(iter(out["models"]))
    out["check"] = {**common.settings_dict(CHECK), "model": check_name,
                    "result": check_point(profile.load_model(check_name, device=how.device), all_images[CHECK.image],
                                          mark)}
    return cast(WatermarkSlsqpResult, out)  # built key by key: RESULT.write checks it against the schema


# --------------------------------------------------------------------------- readers for the chapter
#: The candidate explanations of the paper's 85 %, in the chapter's order.
CANDIDATES = ("slsqp_raw", "slsqp_clipped", "slsqp_clipped_8bit", "slsqp_clipped_resized", "joint_exact",
              "joint_naive_std")


def candidates_table(result: WatermarkSlsqpResult) -> plotting.Table:
    """Every model and candidate: same prediction, mean ``|Δp|`` and ground-truth accuracy."""
    rows = []
    for name, entry in result["predictions"].items():
        conditions: dict[str, Any] = dict(entry)
        for key in CANDIDATES:
            value = conditions[key]
            rows.append([f"`{name}`", f"`{key}`", f"{100 * value['match']:.0f} %",
                         f"{100 * value['prob_change']:.1f} %", f"{100 * value['accuracy']:.0f} %"])
    return plotting.table(rows, ["model", "candidate", "same prediction", "mean |Δp|", "ground-truth accuracy"])


def model_lines(result: WatermarkSlsqpResult) -> list[str]:
    """Per model: its images, nullspace sizes, clean accuracy and confidence; what SLSQP did (iterations, the cap,
    exit statuses); how far its answer left [0, 1]; and the models without a per-channel nullspace."""
    lines: list[str] = []
    for name, entry in result["models"].items():
        box, solver = entry["box"], entry["slsqp"]
        lines += [f"{name}: {entry['images']} images, per-channel nullspace {entry['per_channel']} dimensions "
                  f"(joint {entry['joint']}); clean accuracy {100 * entry['clean_accuracy']:.0f} %, "
                  f"mean confidence {entry['clean_confidence_mean']:.2f}",
                  f"  SLSQP: {solver['problems']} problems, iterations median {solver['iterations_median']:.0f}, "
                  f"max {solver['iterations_max']}, {solver['at_cap']} stopped by the {result['maxiter']} cap; "
                  f"exit statuses {solver['status_counts']}",
                  f"  before the clip: largest box violation below one 8-bit level: "
                  f"{box['max_violation'] < 1 / 255}; pixels outside by more than half an 8-bit level: "
                  f"{100 * box['fraction_outside_half_level']:.4f} %"]
    for name, missing in result["no_nullspace"].items():
        lines.append(f"{name}: no per-channel nullspace (d = {missing['d']} = r^2 = {missing['r'] ** 2}); "
                     f"joint: {missing['joint']}")
    return lines
