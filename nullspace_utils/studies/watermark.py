"""Paper §6 and A.2: output-preserving watermarks on a profile's validation images, for every ViT of the profile.

The settings per profile (:data:`SETTINGS`, :class:`WatermarkSettings`), the runner (:func:`run`), what it measures
per model (:func:`evaluate`: the exact watermark, 8-bit files, the std forgotten (:func:`std_forgotten`), resizing)
and its cheap check point (:data:`CHECK`, :func:`check_point`), the result file
``book/results/<profile>/watermark.json`` (:data:`RESULT`, schema :class:`WatermarkResult`), and the readers the
watermark chapter shows it with (:func:`conditions_table`, the toy problem's :func:`toy_figure`, the solver
benchmark's :func:`speed_figure` and :func:`speed_lines`). The method (:func:`~nullspace_utils.watermark.embed`) is in :mod:`nullspace_utils.watermark`.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from typing_extensions import TypedDict

from nullspace_utils import book_pages, exact, models, plotting, results, watermark
from nullspace_utils.data import quantize_8bit, resize_crop
from nullspace_utils.metrics import compare_predictions, psnr
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Fraction, Provenance
from nullspace_utils.studies import common

__all__ = ["WatermarkSettings", "WatermarkCheck", "SETTINGS", "CHECK", "MARK", "watermark_mark", "std_forgotten", "run_line",
           "evaluate", "check_point", "run", "CONDITIONS", "conditions_table", "toy_figure", "SpeedBar", "speed_bars",
           "speed_figure",
           "speed_lines", "exercise_answers", "exercise_lines",
           "RESULT", "WatermarkResult", "WatermarkModel", "WatermarkConditions", "WatermarkCondition",
           "PredictionChange"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the result file
class PredictionChange(TypedDict):
    """How changed images move a model's predictions (``metrics.compare_predictions``)."""

    match: Fraction
    prob_change: Fraction
    logit_change_max: float
    logit_change_mean: float


class WatermarkCondition(PredictionChange):
    """One condition of the watermark evaluation, with the image quality it costs."""

    psnr: float


class WatermarkConditions(TypedDict):
    """:func:`evaluate`: every condition the chapter tabulates."""

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


#: the result file, ``book/results/<profile>/watermark.json``
RESULT: results.ResultKind[WatermarkResult] = results.ResultKind("watermark", WatermarkResult, "watermark")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class WatermarkSettings:
    """The watermark run of one profile: the first ``images`` val images (``None``: the whole split), each
    watermarked with the rotated text mark (:func:`watermark_mark`) by eq. 7 in the norm ``p``."""

    images: int | None = None
    p: int = 1


#: The run of each profile; the command line's ``--n`` replaces ``images``.
SETTINGS: dict[str, WatermarkSettings] = {"teaching": WatermarkSettings(), "imagenet": WatermarkSettings()}


@dataclass(frozen=True)
class WatermarkCheck:
    """The cheap point a test recomputes on the CPU: every condition on the first ``images`` val images."""

    images: int = 8


#: the cheap point a test recomputes on the CPU
CHECK = WatermarkCheck()

#: How the result files describe :func:`watermark_mark`.
MARK = "text 'NULL', rotated 20 degrees"


def watermark_mark(image_size: int) -> torch.Tensor:
    """The watermark of the chapter and of both watermark runs: the text "NULL", rotated 20 degrees."""
    return watermark.text_mark("NULL", image_size, angle=20)


# --------------------------------------------------------------------------- what the run measures
def std_forgotten(model: nn.Module) -> models.ImageClassifier:
    """``model``'s network behind its mean but a std of 1: a watermark made for it moves in the nullspace of W
    alone, as if the per-channel std had been forgotten (the "naive std" conditions)."""
    mean, _ = exact.normalisation(model)
    return models.ImageClassifier(models.unwrap(model), mean, (1.0,) * len(mean))


def evaluate(model: nn.Module, images: torch.Tensor, mark: torch.Tensor, *, device: str | torch.device | None = None,
             batch_size: int = 500, **solver_options: Any) -> WatermarkConditions:
    """Watermark ``images`` (:func:`~nullspace_utils.watermark.embed`, ``solver_options`` passed on) and measure,
    per condition, what the model's predictions do (paper A.2).

    Conditions, each against the clean images under the same treatment:
    ``exact`` (our solver, float), ``exact_8bit`` (saved as 8-bit PNG; compared with the clean image
    rounded too), ``clean_8bit`` (rounding the clean image alone), ``naive_std`` (nullspace of W
    alone, ignoring the per-channel std: :func:`std_forgotten`), ``resized`` (watermarked, then resized by 8/7
    and centre cropped, as an eval pipeline might: :func:`~nullspace_utils.data.resize_crop`; the clean image
    gets the same treatment). Each also reports the PSNR of the watermarked image against the original. Runs on
    ``device``, by default where the model is; the caller's model is back on its own device (and in its own mode)
    afterwards.
    """
    device = torch.device(device) if device is not None else models.model_device(model)
    with models.evaluating(model, device) as on_device:
        images, mark = images.to(device), mark.to(device)
        marked = _watermark_all(on_device, images, mark, device, batch_size, solver_options)
        naive = _watermark_all(std_forgotten(on_device), images, mark, device, batch_size, solver_options)
        conditions = {
            "exact": {**compare_predictions(on_device, images, marked), "psnr": psnr(images, marked)},
            "exact_8bit": {**compare_predictions(on_device, quantize_8bit(images), quantize_8bit(marked)),
                           "psnr": psnr(images, quantize_8bit(marked))},
            "clean_8bit": {**compare_predictions(on_device, images, quantize_8bit(images)),
                           "psnr": psnr(images, quantize_8bit(images))},
            "naive_std": {**compare_predictions(on_device, images, naive), "psnr": psnr(images, naive)},
            "resized": {**compare_predictions(on_device, resize_crop(images), resize_crop(marked)),
                        "psnr": psnr(images, marked)},
        }
        return cast(WatermarkConditions, conditions)  # compare_predictions: a plain dict of PredictionChange's keys


def _watermark_all(solver_model: nn.Module, images: torch.Tensor, mark: torch.Tensor, device: torch.device,
                   batch_size: int, solver_options: dict[str, Any]) -> torch.Tensor:
    """Every image watermarked for ``solver_model``, ``batch_size`` at a time (one mark, or one per image)."""
    parts = [watermark.embed(solver_model, images[s : s + batch_size],
                             mark[s : s + batch_size] if mark.ndim == 4 else mark, device=device,
                             **solver_options).image
             for s in range(0, len(images), batch_size)]
    return torch.cat(parts)


def check_point(model: nn.Module, images: torch.Tensor, mark: torch.Tensor, *,
                device: str | torch.device | None = None, p: int = 1) -> WatermarkConditions:
    """:func:`evaluate` (with norm ``p``, the run's) on the first ``CHECK.images`` of ``images``: what the run stores
    as ``check`` per model and a test recomputes on the CPU."""
    return evaluate(model, images[: CHECK.images], mark, device=device, p=p)


# --------------------------------------------------------------------------- the runner
def run(settings: WatermarkSettings, profile: Profile, how: common.Run) -> WatermarkResult:
    """Paper A.2: every ViT of ``profile`` watermarked on the val split under every condition (:func:`evaluate`),
    with the time it took and the cheap check point (:func:`check_point`), on ``how.device``."""
    # the whole val split, decoded in parallel (ImageNette's 3,925 JPEGs one by one took minutes): the same floats
    images = profile.tensor_dataset("val", settings.images).tensors[0]
    images = images.float().div(255) if images.dtype == torch.uint8 else images
    mark = watermark_mark(profile.image_size)
    out: WatermarkResult = {"provenance": how.provenance(), "profile": profile.name, "images": len(images),
                            "mark": MARK, "p": settings.p, "models": {}}
    for name in profile.vit_models:
        model = profile.load_model(name, device=how.device)
        started = time.perf_counter()
        full = evaluate(model, images, mark, device=how.device, p=settings.p)
        seconds = time.perf_counter() - started
        out["models"][name] = {"all": full, "seconds": seconds,
                               "check": check_point(model, images, mark, device=how.device, p=settings.p)}
        logger.info("%s %.1f s %s", name, seconds, json.dumps(full["exact"]))
    return out


# --------------------------------------------------------------------------- readers for the chapter
#: The conditions of :func:`evaluate` in the chapter's table, with the names it gives them.
CONDITIONS = (("exact", "exact"), ("exact_8bit", "8-bit files"), ("clean_8bit", "clean image rounded, for reference"),
              ("naive_std", "naive std"), ("resized", "resized + cropped"))


def _logit_change(value: float) -> str:
    """Float rounding (about 1e-6, digits that depend on the device) as a comparison, real changes as numbers."""
    return "< 1e-5 (rounding)" if value < 1e-5 else f"{value:.1e}"


def conditions_table(result: WatermarkResult) -> plotting.Table:
    """Every model and condition of the whole split: same prediction, mean ``|Δp|``, mean max ``|Δlogit|`` (float rounding
    shown as such) and PSNR."""
    rows = []
    for name, entry in result["models"].items():
        conditions = cast(dict[str, WatermarkCondition], entry["all"])
        for key, label in CONDITIONS:
            value = conditions[key]
            rows.append([f"`{name}`", label, f"{100 * value['match']:.1f} %", f"{100 * value['prob_change']:.3f} %",
                         _logit_change(value["logit_change_mean"]), f"{value['psnr']:.1f}"])
    return plotting.table(rows, ["model", "condition", "same prediction", "mean |Δp|", "mean max |Δlogit|",
                                 "PSNR (dB)"])


def run_line(result: WatermarkResult) -> str:
    """How the whole-split evaluation ran, from its file: the images per model, the range of the seconds each model
    took (watermarking, then every condition) and the device."""
    seconds = [entry["seconds"] for entry in result["models"].values()]
    return (f"{result['images']} images per model, {min(seconds):.1f} to {max(seconds):.1f} s per model on "
            f"{result['provenance']['device']}")


def toy_figure(matrix: torch.Tensor, start: torch.Tensor, target: torch.Tensor, solution: torch.Tensor) -> Figure:
    """The watermark's problem with one equation (``matrix``, 1 x 2) in two pixels: the box, the segment of points
    with the embedding of ``start``, the L1 level sets around ``target`` and the ``solution`` (all (1, 2))."""
    (a, b), level = matrix[0].tolist(), float(matrix @ start[0])
    terms = " + ".join(f"{'' if c == 1 else f'{c:g}'}y_{i + 1}" for i, c in enumerate((a, b)))
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, lw=1.5))
    y1 = np.linspace(-0.2, 1.2, 2)
    ax.plot(y1, (level - a * y1) / b, "k--", lw=1, label=f"same embedding: ${terms} = $ const")
    g1, g2 = np.meshgrid(np.linspace(-0.2, 1.2, 200), np.linspace(-0.2, 1.2, 200))
    t1, t2 = target[0].tolist()
    ax.contour(g1, g2, np.abs(g1 - t1) + np.abs(g2 - t2), levels=8, colors="0.75", linewidths=0.8)
    ax.plot(*start[0], "o", color=plotting.PALETTE[0], label="original $x$")  # colour-blind-safe colours
    ax.plot(*target[0], "s", color=plotting.PALETTE[3], label="watermark $m$")
    ax.plot(*solution[0], "*", color=plotting.PALETTE[2], markersize=14, label="watermarked $y$")
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.2, 1.2)
    ax.set_aspect("equal")
    ax.set_xlabel("pixel 1")
    ax.set_ylabel("pixel 2")
    ax.legend(loc="lower left", fontsize=8)
    return plotting.readable(fig)  # text at least 8 pt at the page's width


class SpeedBar(NamedTuple):
    """One bar of :func:`speed_figure`: its label, seconds per image, colour, and whether the time is an
    extrapolation from a shorter measurement (drawn hatched and labelled so) rather than measured."""

    label: str
    seconds: float
    colour: str
    extrapolated: bool


#: the measured bars' colours in :func:`speed_figure`, by the legend's words (colour-blind-safe palette)
_SPEED_COLOURS = {"ADMM before, measured": plotting.PALETTE[1], "ADMM, measured": plotting.PALETTE[2]}


def speed_bars(cpu: dict[str, Any]) -> list[SpeedBar]:
    """Every solver of ``benchmarks/results/watermark_cpu.json``: SLSQP and HiGHS, both extrapolated from a shorter
    measurement (SLSQP from a few iterations on one patch to the paper's 5000 on every patch, HiGHS from a few
    patches to all), then every ADMM setting, measured (the earlier ones in orange, the others in green)."""
    slsqp, highs = cpu["slsqp"], cpu["highs"]
    bars = [SpeedBar(f"SLSQP (joint), 5000 it., all patches\nEXTRAPOLATED from {slsqp['iterations']} it.",
                     slsqp["paper_setting_seconds_extrapolated"], "0.55", True),
            SpeedBar(f"HiGHS LP, exact\nEXTRAPOLATED from {highs['patches']} patches",
                     highs["seconds_per_image_extrapolated"], plotting.PALETTE[0], True)]
    for row in cpu["admm_cpu"]:
        colour = _SPEED_COLOURS["ADMM before, measured" if row["settings"] == "before" else "ADMM, measured"]
        bars.append(SpeedBar(f"ADMM {row['settings']}, {row['iterations']} it.\ngap {row['gap_percent']:.3f} %",
                             row["seconds"], colour, False))
    return bars


def speed_figure(cpu: dict[str, Any]) -> Figure:
    """:func:`speed_bars` as horizontal bars on a log scale; extrapolated bars hatched, with a legend saying so."""
    from matplotlib.patches import Patch

    bars = speed_bars(cpu)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.42 * len(bars)))  # room for two-line labels
    drawn = ax.barh([bar.label for bar in bars], [bar.seconds for bar in bars], color=[bar.colour for bar in bars])
    for rectangle, bar in zip(drawn, bars, strict=True):
        if bar.extrapolated:
            rectangle.set_hatch("//")
            rectangle.set_edgecolor("white")
            rectangle.set_alpha(0.6)
    ax.legend(handles=[Patch(facecolor="0.55", edgecolor="white", hatch="//", alpha=0.6,
                             label="extrapolated, not measured"),
                       *[Patch(facecolor=colour, label=label) for label, colour in _SPEED_COLOURS.items()]],
              loc="lower center", bbox_to_anchor=(0.4, 1.0), ncol=3, frameon=False)  # over the bars, clear of them
    ax.set_xscale("log")
    ax.set_xlabel("seconds per 224 x 224 image, ViT-S/32, 2-core CPU, warm (log scale)")
    ax.invert_yaxis()
    return plotting.readable(fig)  # text at least 8 pt at the page's width


def speed_lines(cpu: dict[str, Any], gpu: dict[str, Any], pipeline: dict[str, Any] | None = None) -> list[str]:
    """What the chapter says of the benchmark: the default's gap and first call against HiGHS on the CPU, and the
    fastest GPU setting within 0.1 % of the optimum (``gpu``: ``benchmarks/results/watermark_gpu_now.json``) against
    ``embed``'s default from host memory, second call, from the same run (``pipeline=None``) or from another
    (``pipeline``, a file with ``embed_pipelined`` rows); last, the two extrapolated times and what each was
    extrapolated from."""
    highs = cpu["highs"]["seconds_per_image_extrapolated"]
    default = next(r for r in cpu["admm_cpu"] if r["settings"] == "default" and r["iterations"] == 100)
    first = cpu["first_call"]
    fastest = min((r for r in gpu["admm_gpu"] if r["gap_percent"] < 0.1), key=lambda r: r["seconds"])
    run = "the same run" if pipeline is None else "another run on the same kind of GPU"
    solver, host = book_pages.solver_default(pipeline or gpu), book_pages.embed_default(pipeline or gpu)
    slsqp = cpu["slsqp"]
    return [f"default (100 iterations): objective within {default['gap_percent']:.2f} % of the LP optimum; "
            f"a first call in a fresh process takes {first['default']:.1f} s (before: {first['before']:.1f} s), "
            f"{highs / first['default']:.0f} times faster than HiGHS's extrapolated time",
            f"GPU ({gpu['device']}), {gpu['batch']} images: {fastest['seconds']:.1f} s with the images already on "
            f"the GPU ({fastest['precision']} matmuls{', compiled, compilation not counted' if fastest['compiled'] else ''}; "
            f"gap {fastest['gap_percent']:.2f} %); embed's default ({solver['precision']}, not compiled): "
            f"{solver['seconds']:.1f} s on the GPU, {host['wall_seconds']:.1f} s from host memory with the copies "
            f"({run})",
            f"extrapolated, not measured (hatched bars): SLSQP {slsqp['paper_setting_seconds_extrapolated'] / 86400:.0f} "
            f"days per image from {slsqp['iterations']} timed iterations on one patch; HiGHS {highs:.0f} s per image "
            f"from {cpu['highs']['patches']} timed patches"]


# --------------------------------------------------------------------------- the chapter's exercise answers
def _jpeg(image: torch.Tensor, quality: int = 90) -> torch.Tensor:
    """``image`` (C, H, W) in [0, 1] saved as a JPEG file of ``quality`` in memory and read back."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255


def exercise_answers(profile: Profile, model: nn.Module, images: torch.Tensor, mark: torch.Tensor,
                     result: watermark.WatermarkResult) -> dict[str, Any]:
    """The numbers the watermark chapter's exercise solutions rest on, computed: the widest ViT's nullspace,
    objective and PSNR against ``model``'s ``result`` (ex. 1); predictions kept by JPEG copies against 8-bit ones
    (ex. 2); the objective and embedding residual of the first image at several ADMM budgets (ex. 3)."""
    widest = profile.load_model(profile.vit_models[-1])
    big = watermark.embed(widest, images, mark)
    sizes = {}
    for name, net in ((profile.vit_models[0], model), (profile.vit_models[-1], widest)):
        proj = exact.patch_embedding_layer(net)
        sizes[name] = exact.nullspace_dimensions(proj.out_channels, proj.kernel_size[0], proj.in_channels)["joint"]
    compressed = torch.stack([_jpeg(image) for image in result.image])
    budgets = (50, 100, 300, 1000)
    runs = [watermark.embed(model, images[:1], mark, iterations=steps) for steps in budgets]  # the first image
    return {"nullspace": sizes, "objective_ratio": float(big.objective.sum() / result.objective.sum()),
            "psnr": {profile.vit_models[0]: psnr(images, result.image), profile.vit_models[-1]: psnr(images, big.image)},
            "jpeg": compare_predictions(model, images, compressed),
            "eight_bit": compare_predictions(model, quantize_8bit(images), quantize_8bit(result.image)),
            "budgets": list(budgets), "objectives": [float(run.objective.sum()) for run in runs],
            "residuals": [run.embedding_residual for run in runs]}


def exercise_lines(answers: dict[str, Any]) -> list[str]:
    """:func:`exercise_answers` as the chapter prints them (rounding-level values as comparisons)."""
    (small, small_size), (big, big_size) = answers["nullspace"].items()
    objectives = answers["objectives"]
    falling = all(later <= earlier * (1 + 1e-6) for earlier, later in zip(objectives, objectives[1:], strict=False))
    return [f"ex. 1: joint nullspace {big_size} dimensions for {big}, {small_size} for {small}; objective "
            f"{answers['objective_ratio']:.2f} times {small}'s; PSNR {answers['psnr'][big]:.1f} dB against "
            f"{answers['psnr'][small]:.1f} dB",
            f"ex. 2: JPEG (quality 90) copies keep {100 * answers['jpeg']['match']:.0f} % of predictions; 8-bit "
            f"copies {100 * answers['eight_bit']['match']:.0f} %",
            f"ex. 3 (first image): objective never rises from {answers['budgets'][0]} to {answers['budgets'][-1]} iterations: "
            f"{falling}; it falls by less than 1 % from the first budget to the last: "
            f"{1 - objectives[-1] / objectives[0] < 0.01}; embedding residual below 1e-5 at every budget: "
            f"{max(answers['residuals']) < 1e-5}"]
