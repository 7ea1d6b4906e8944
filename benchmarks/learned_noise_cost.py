"""What the paper-scale learned-noise sweeps (§4, §5) cost on one GPU: the time of one SGD step of
`nullspace_utils.approximate.learn_noise` on the imagenet profile's architectures (random weights: the cost
does not depend on them), multiplied out to the authors' recipe and to this book's; how much faster the
low-precision learning arithmetic is (``--precisions``); and whether it keeps the learned noise's quality
(``--quality``).

    python benchmarks/learned_noise_cost.py --device cuda --out benchmarks/results/learned_noise_cost_gpu.json
    python benchmarks/learned_noise_cost.py --device cuda --precisions float32 tf32 bf16 \\
        --out benchmarks/results/learned_noise_precision_gpu.json
    python benchmarks/learned_noise_cost.py --device cuda --quality --out benchmarks/results/learned_noise_quality_gpu.json

Without ``--precisions`` or ``--quality``: per model and level it times ``--steps`` steps at batch 256 of
224-pixel images (after a warm-up), in full float32, and multiplies out. The authors' recipe (Liu-Hy/NS-ViT) is
500 epochs of ImageNette's 9,469 training images per noise (about 18,500 steps); the book's imagenet config is 500
steps per noise. Both are multiplied by the number of noises a full sweep learns (lims x seeds x models, plus the
rate probes).

``--precisions``: the same step of the three ViTs (encoder level, ``--levels`` to change) in each learning arithmetic
of :data:`nullspace_utils.approximate.PRECISIONS`, each against the float32 step timed in the same process (ratio =
float32 seconds / its seconds).

``--per-pass 1 3``: per architecture and level (``--models``, ``--levels``), the seconds of one step per noise when
that many noises are learned in one forward pass (``learn_noises``, the default arithmetic of the device), each
against one noise per pass timed in the same process, with the GPU memory each needed at its peak.

``--clean-once``: per architecture and level, the seconds of one step per noise with the clean logits of the
training images computed once (the default on CUDA, ``approximate.clean_logits_once``) against per step, both with
the device's default noises per pass, timed in the same process.

``--compile``: per architecture and level, the seconds of one step per noise with the learning passes compiled
(``approximate.compiled_passes``, ``torch.compile``) against not, both with the device's defaults (arithmetic, noises
per pass, clean logits once), timed in the same process after a warm-up call that compiles; the first compiled
call's seconds (the compilation) are reported apart.

``--input-test``: per architecture and level, the seconds of one step per noise with the model's test for 8-bit
images at every step (a host sync on a GPU, the library before 78a353a) against once before the first step
(:func:`nullspace_utils.models.inputs_checked`), both with the device's defaults, timed in the same process.

``--quality``: on the teaching profile, noises learned at committed points of the §4 and §5 sweeps
(``book/results/teaching/approximate.json``, ``robustness.json``; :data:`QUALITY_POINTS`) with each precision, several
seeds, at the committed point's rate and the sweep's settings. Match and logit MSE are measured in float32
(``evaluate_noise``) on the sweep's validation images and compared with the float32 seeds' spread. With
``--quality-per-pass 3`` each precision is also learned with its seeds together, three noises per pass; with ``--quality-clean-once`` also so with the clean logits computed once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import timm
import torch
import torch._dynamo
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, results
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate as approximate_study
from nullspace_utils.studies import common, evidence, robustness

ARCHITECTURES = {"vit_small_patch32_224": ("encoder", "input"), "vit_base_patch32_224": ("encoder", "input"),
                 "vit_large_patch32_224": ("encoder", "input"), "resnet50": ("input",),
                 "efficientnet_b0": ("input",), "mobilenetv3_small_100": ("input",)}
VITS = ("vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224")
TRAIN_IMAGES, AUTHORS_EPOCHS, BATCH = 9_469, 500, 256
#: (study, model, level, lim) of the committed teaching sweeps whose noise ``--quality`` learns again, most telling
#: first (a run cut short keeps the points it finished): large lims at the encoder (where learning matters most),
#: input-level points of two CNNs and a ViT, and small lims, where the logit MSE is smallest (bf16's rounding would
#: show there first)
QUALITY_POINTS: tuple[tuple[str, str, str, float], ...] = (
    ("approximate", "zoo-vit-s", "encoder", 4.0), ("approximate", "zoo-vit-l", "encoder", 8.0),
    ("robustness", "zoo-resnet", "input", 0.25), ("approximate", "zoo-vit-s", "encoder", 0.5),
    ("robustness", "zoo-mobilenetv3", "input", 0.5), ("robustness", "zoo-vit-b", "input", 0.5),
    ("approximate", "zoo-vit-b", "encoder", 8.0), ("approximate", "zoo-vit-l", "encoder", 1.0))


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _random_model(name: str, device: str) -> models.ImageClassifier:
    """timm's ``name`` with random weights, wrapped as the book's classifiers are, on ``device``."""
    net = timm.create_model(name, pretrained=False, num_classes=1000)
    return models.ImageClassifier(net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), name=name).to(device)


def step_seconds(name: str, level: str, steps: int, device: str, precision: str = "float32") -> float:
    """Seconds per SGD step of learn_noise for timm's ``name`` (random weights) at ``level``, learning in
    ``precision``."""
    return _timed_steps(_random_model(name, device), level, steps, device, precision)


def _timed_steps(model: torch.nn.Module, level: str, steps: int, device: str, precision: str,
                 per_pass: int = 1, clean_once: bool = False, compile: bool = False,
                 warm_up: dict[str, float] | None = None) -> float:
    """Seconds per step of one noise, with ``per_pass`` noises learned in each pass, the clean logits computed per
    step or, with ``clean_once``, once (the timed call's pass over the 512 images included), after a 3-step warm-up;
    the device's peak memory is reset before the timed steps, for :func:`_peak_memory`. With ``compile`` the passes
    are compiled (the warm-up compiles; its seconds go into ``warm_up["seconds"]``)."""
    images = torch.rand(BATCH * 2, 3, 224, 224, device=device)
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long, device=device))
    settings = {"level": level, "lim": 0.1, "lr": 0.01, "milestones": (), "batch_size": BATCH, "device": device,
                "precision": precision, "seeds": range(per_pass), "per_pass": per_pass, "clean_once": clean_once,
                "compile": compile}
    began = time.perf_counter()
    approximate.learn_noises(model, data, steps=3, **settings)  # warm-up (kernels, allocator; compiling)
    _synchronize(device)
    if warm_up is not None:
        warm_up["seconds"] = time.perf_counter() - began
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    approximate.learn_noises(model, data, steps=steps, **settings)
    _synchronize(device)
    return (time.perf_counter() - started) / (steps * per_pass)


def cost_rows(device: str, steps: int) -> dict[str, Any]:
    """The float32 step of every architecture and level, multiplied out to the book's and the authors' sweeps."""
    authors_steps = AUTHORS_EPOCHS * math.ceil(TRAIN_IMAGES / BATCH)
    approximate_config = common.settings_dict(approximate_study.SETTINGS["imagenet"])
    robustness_config = common.settings_dict(robustness.SETTINGS["imagenet"])
    rows = []
    for name, levels in ARCHITECTURES.items():
        for level in levels:
            config = approximate_config if level == "encoder" else robustness_config
            noises = len(config["lims"]) * len(config["seeds"])
            probe_steps = config["probe_steps"] * 8 * len(config["lims"])  # about 8 rates per probe
            seconds = step_seconds(name, level, steps, device)
            rows.append({"model": name, "level": level, "seconds_per_step": seconds,
                         "book_hours": seconds * (noises * config["steps"] + probe_steps) / 3600,
                         "authors_hours": seconds * (noises * authors_steps + probe_steps) / 3600})
            print(f"{name:<24} {level:<8} {seconds * 1000:7.1f} ms/step  book config {rows[-1]['book_hours']:6.2f} h"
                  f"  authors' 500 epochs {rows[-1]['authors_hours']:7.1f} h", flush=True)
    total = {key: sum(row[key] for row in rows) for key in ("book_hours", "authors_hours")}
    print(f"whole sweep (both levels, all six models, no lim extension): book config {total['book_hours']:.1f} h, "
          f"authors' recipe {total['authors_hours']:.0f} h")
    return {"batch": BATCH, "authors_steps_per_noise": authors_steps, "rows": rows, "total": total}


def precision_rows(device: str, steps: int, precisions: list[str], names: list[str], levels: list[str]
                   ) -> dict[str, Any]:
    """Per ViT and level, the seconds of one step in each precision and its speed-up over float32 (same process,
    same model, float32 timed first)."""
    rows = []
    for name in names:
        model = _random_model(name, device)
        for level in levels:
            seconds = {precision: _timed_steps(model, level, steps, device, precision)
                       for precision in dict.fromkeys(["float32", *precisions])}
            speedup = {precision: seconds["float32"] / value for precision, value in seconds.items()}
            rows.append({"model": name, "level": level, "seconds_per_step": seconds, "speedup_over_float32": speedup})
            print(f"{name:<24} {level:<8} " + "  ".join(f"{precision} {value * 1000:6.1f} ms (x{speedup[precision]:.2f})"
                                                          for precision, value in seconds.items()), flush=True)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"batch": BATCH, "image_size": 224, "steps_timed": steps, "rows": rows}


def _peak_memory(device: str) -> float | None:
    """GiB the device held at its peak since the last reset, or ``None`` off CUDA."""
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def together_rows(device: str, steps: int, counts: list[int], names: list[str], levels: list[str]) -> dict[str, Any]:
    """Per model and level, the seconds of one step per noise with ``count`` noises learned in one pass (the device's
    default arithmetic), and the speed-up over one noise per pass, timed in the same process; the peak memory."""
    rows = []
    for name in names:
        model = _random_model(name, device)
        for level in [level for level in levels if level in ARCHITECTURES[name]]:
            seconds, memory = {}, {}
            for count in dict.fromkeys([1, *counts]):
                seconds[str(count)] = _timed_steps(model, level, steps, device, "auto", per_pass=count)
                memory[str(count)] = _peak_memory(device)
            speedup = {count: seconds["1"] / value for count, value in seconds.items()}
            rows.append({"model": name, "level": level, "seconds_per_noise_step": seconds,
                         "speedup_over_one": speedup, "peak_gib": memory})
            print(f"{name:<24} {level:<8} " + "  ".join(
                f"{count}/pass {value * 1000:6.1f} ms (x{speedup[count]:.2f}, {memory[count] or 0:.1f} GiB)"
                for count, value in seconds.items()), flush=True)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {"batch": BATCH, "image_size": 224, "steps_timed": steps,
            "arithmetic": approximate.learning_precision("auto", device), "rows": rows}


def _variant_rows(device: str, steps: int, names: list[str], levels: list[str],
                  variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and level, the seconds of one step per noise in each of ``variants`` (label: keyword arguments of
    :func:`_timed_steps`, and ``"context"``, a context manager to time it in), one after another in this process,
    the device's default noises per pass and arithmetic otherwise; ``speedup`` is the first's time over the last's,
    ``first_call_seconds`` each variant's warm-up call (compiling, where it compiles)."""
    per_pass = approximate.noises_per_pass(None, BATCH, device)
    rows = []
    for name in names:
        model = _random_model(name, device)
        for level in [level for level in levels if level in ARCHITECTURES[name]]:
            seconds, first_call = {}, {}
            for label, options in variants.items():
                options = dict(options)
                warm_up: dict[str, float] = {}
                with options.pop("context", contextlib.nullcontext)():
                    seconds[label] = _timed_steps(model, level, steps, device, "auto", per_pass=per_pass,
                                                  warm_up=warm_up, **options)
                first_call[label] = warm_up["seconds"]
            first, last = list(variants)[0], list(variants)[-1]
            rows.append({"model": name, "level": level, "seconds_per_noise_step": seconds,
                         "speedup": seconds[first] / seconds[last], "first_call_seconds": first_call})
            print(f"{name:<24} {level:<8} " + ", ".join(f"{label} {value * 1000:6.1f} ms" for label, value
                                                        in seconds.items())
                  + f" (x{rows[-1]['speedup']:.2f}; first calls " + ", ".join(f"{value:.0f} s" for value
                                                                                in first_call.values()) + ")",
                  flush=True)
        del model
        torch._dynamo.reset()  # each model compiles afresh, as in a part of its own
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def _settings(device: str, steps: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batch": BATCH, "image_size": 224, "steps_timed": steps,
            "per_pass": approximate.noises_per_pass(None, BATCH, device),
            "arithmetic": approximate.learning_precision("auto", device), "rows": rows}


def clean_once_rows(device: str, steps: int, names: list[str], levels: list[str]) -> dict[str, Any]:
    """Per model and level, the seconds of one step per noise with the clean logits computed per step and once
    (:func:`~nullspace_utils.approximate.clean_logits_once`), both with the device's default noises per pass and
    arithmetic, timed in the same process, and the speed-up."""
    variants = {"per step": {"clean_once": False}, "once": {"clean_once": True}}
    return _settings(device, steps, _variant_rows(device, steps, names, levels, variants))


def compile_rows(device: str, steps: int, names: list[str], levels: list[str]) -> dict[str, Any]:
    """Per model and level, the seconds of one step per noise with the learning passes compiled and not (the
    device's defaults otherwise), timed in the same process, the speed-up, and the compiling call's seconds."""
    once = device.startswith("cuda")
    variants = {"eager": {"clean_once": once}, "compiled": {"clean_once": once, "compile": True}}
    return {**_settings(device, steps, _variant_rows(device, steps, names, levels, variants)),
            "backend": approximate.COMPILE_BACKEND}


@contextlib.contextmanager
def _input_test_per_step() -> Iterator[None]:
    """The library before 78a353a: the model tests its input for 8-bit values at every learning step (on a GPU
    each test waits for the device), as :func:`nullspace_utils.models.inputs_checked` now spares it."""
    checked = models.inputs_checked
    models.inputs_checked = contextlib.nullcontext  # type: ignore[assignment]
    try:
        yield
    finally:
        models.inputs_checked = checked  # type: ignore[assignment]


def input_test_rows(device: str, steps: int, names: list[str], levels: list[str]) -> dict[str, Any]:
    """Per model and level, the seconds of one step per noise with the model's 8-bit input test at every step (a
    host sync on a GPU) and without it (the images tested once), the device's defaults otherwise, in one process."""
    once = device.startswith("cuda")
    variants = {"tested per step": {"clean_once": once, "context": _input_test_per_step},
                "tested once": {"clean_once": once}}
    return _settings(device, steps, _variant_rows(device, steps, names, levels, variants))


def _committed_row(study: str, model: str, level: str, lim: float) -> dict[str, Any]:
    """The committed teaching row of ``study`` for ``model`` at ``lim``."""
    kind = approximate_study.RESULT if study == "approximate" else robustness.RESULT
    sweep = kind.read(kind.path("teaching"))
    if sweep is None:
        raise FileNotFoundError(f"no committed {kind.path('teaching')}")
    table = sweep["models"] if study == "approximate" else sweep[level]
    return next(row for row in table[model] if row["lim"] == lim)


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def quality_rows(device: str, precisions: list[str], seeds: list[int],
                 points: tuple[tuple[str, str, str, float], ...] = QUALITY_POINTS,
                 on_row: Callable[[dict[str, Any]], None] = lambda out: None, per_pass: int = 1,
                 clean_once: bool = False) -> dict[str, Any]:
    """Per committed teaching point, noises learned per seed in each precision at the point's committed rate (one
    noise per pass, and with ``per_pass`` > 1 also each precision with that many seeds per pass, named
    ``"<precision> x<per_pass>"``, and with ``clean_once`` also so with the clean logits computed once, named
    ``"<precision> x<per_pass> once"``; all others compute them per step);
    match and logit MSE measured in float32, the final training loss and a loss curve every 10 steps; and per metric
    each precision's seeds against float32's (:func:`~nullspace_utils.studies.evidence.separated`: +1 when every
    seed of the precision is above every float32 seed, -1 below, 0 when the ranges overlap; above is better for
    match, worse for logit MSE and training loss), with the difference of the means and float32's seed range.
    ``on_row`` gets the result so far after each point."""
    profile = get_profile("teaching")
    data: dict[str, tuple[TensorDataset, TensorDataset]] = {}
    rows: list[dict[str, Any]] = []
    out = {"profile": "teaching", "seeds": seeds, "measured_in": "float32 without TF32 (evaluate_noise)",
           "separated_reads": "+1: every seed of the precision above every float32 seed, -1 below, 0 ranges overlap",
           "rows": rows}
    for study, name, level, lim in points:
        settings = (approximate_study.SETTINGS if study == "approximate" else robustness.SETTINGS)["teaching"]
        key = f"{settings.train}/{settings.val}"
        if key not in data:
            data[key] = (profile.tensor_dataset("train", settings.train, device),
                         profile.tensor_dataset("val", settings.val, device))
        train, val = data[key]
        committed = _committed_row(study, name, level, lim)
        model = profile.load_model(name, device=device)
        by_precision: dict[str, Any] = {}
        variants = [(precision, precision, 1, False) for precision in dict.fromkeys(["float32", *precisions])]
        variants += [(f"{precision} x{per_pass}", precision, per_pass, False) for precision in precisions
                     if per_pass > 1]
        variants += [(f"{precision} x{per_pass} once", precision, per_pass, True) for precision in precisions
                     if clean_once]
        for variant, precision, count, once in variants:
            per_seed = []
            started = time.perf_counter()
            learned = approximate.learn_noises(model, train, level=level, lim=lim, seeds=seeds, steps=settings.steps,
                                               lr=committed["lr"], milestones=tuple(settings.milestones),
                                               batch_size=settings.batch_size, device=device, precision=precision,
                                               per_pass=count, clean_once=once)
            for seed, result in zip(seeds, learned, strict=True):
                evaluation = approximate.evaluate_noise(model, val, result.noise, level=level,
                                                        batch_size=settings.batch_size, device=device)
                loss = approximate.training_loss(model, train, result.noise, level=level, images=512,
                                                 batch_size=settings.batch_size, device=device)
                per_seed.append({"seed": seed, "match": evaluation.match, "logit_mse": evaluation.logit_mse,
                                 "train_loss": loss, "final_norm": result.norm, "initial_norm": result.initial_norm,
                                 "loss_curve": [entry["loss"] for entry in result.history[::10]]})
            _synchronize(device)
            by_precision[variant] = {"seeds": per_seed, "seconds": time.perf_counter() - started,
                                       **{metric: _spread([entry[metric] for entry in per_seed])
                                          for metric in ("match", "logit_mse", "train_loss")}}
        reference = by_precision["float32"]
        for entry in by_precision.values():
            entry["vs_float32"] = {metric: {
                "separated": evidence.separated([seed[metric] for seed in entry["seeds"]],
                                                [seed[metric] for seed in reference["seeds"]]),
                "mean_difference": entry[metric]["mean"] - reference[metric]["mean"],
                "float32_seed_range": reference[metric]["max"] - reference[metric]["min"]}
                for metric in ("match", "logit_mse", "train_loss")}
        committed_seeds = {metric: [seed["learned"][metric] for seed in committed["seeds"]]
                           for metric in ("match", "logit_mse")}
        rows.append({"study": study, "model": name, "level": level, "lim": lim, "lr": committed["lr"],
                     "steps": settings.steps, "batch_size": settings.batch_size, "train": settings.train,
                     "val": settings.val, "committed": committed_seeds, "precisions": by_precision})
        print(f"{study:<11} {name:<16} {level:<7} lim {lim:<4g} " + "  ".join(
            f"{precision}: match {entry['match']['mean']:.4f} [{entry['match']['min']:.3f}, {entry['match']['max']:.3f}] "
            f"mse {entry['logit_mse']['mean']:.3g} ({entry['seconds']:.1f} s)" for precision, entry in by_precision.items())
            + f"  committed match {statistics.fmean(committed_seeds['match']):.4f}", flush=True)
        on_row(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precisions", nargs="+", default=None,
                        choices=[name for name in approximate.PRECISIONS if name != "auto"],
                        help="time one step of the ViTs in each learning precision against float32")
    parser.add_argument("--models", nargs="+", default=list(VITS),
                        help="with --precisions or --per-pass: the timm models")
    parser.add_argument("--levels", nargs="+", default=["encoder"], choices=approximate.LEVELS,
                        help="with --precisions or --per-pass: the noise levels (a CNN has only 'input')")
    parser.add_argument("--quality", action="store_true",
                        help="learn noise at committed teaching points in float32 and --quality-precisions")
    parser.add_argument("--quality-precisions", nargs="+", default=["bf16", "tf32"],
                        choices=[name for name in approximate.PRECISIONS if name != "auto"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="with --quality")
    parser.add_argument("--quality-per-pass", type=int, default=1,
                        help="with --quality: also learn each precision's seeds this many per pass")
    parser.add_argument("--quality-clean-once", action="store_true",
                        help="with --quality: also learn each precision's seeds --quality-per-pass per pass with "
                             "the clean logits computed once")
    parser.add_argument("--clean-once", action="store_true",
                        help="time one step per noise with the clean logits computed once against per step "
                             "(--models, --levels)")
    parser.add_argument("--compile", action="store_true",
                        help="time one step per noise with the learning passes compiled against not "
                             "(--models, --levels)")
    parser.add_argument("--input-test", action="store_true",
                        help="time one step per noise with the model's input test at every step against once "
                             "(--models, --levels)")
    parser.add_argument("--per-pass", nargs="+", type=int, default=None,
                        help="time one step per noise with this many noises per pass against one (--models, --levels)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()

    def write(out: dict[str, Any]) -> None:
        if args.out:
            command = "python benchmarks/learned_noise_cost.py " + " ".join(sys.argv[1:])
            provenance = results.provenance(command.strip(), vars(args) | {"out": str(args.out)}, device=args.device)
            args.out.write_text(json.dumps({"provenance": provenance, "wall_seconds": time.perf_counter() - started,
                                            **out}, indent=1) + "\n")

    with models.exact_float32():  # learn_noise sets its own arithmetic; everything else is full float32
        if args.quality:
            write(quality_rows(args.device, args.quality_precisions, args.seeds, on_row=write,
                               per_pass=args.quality_per_pass, clean_once=args.quality_clean_once))
        elif args.clean_once:
            write(clean_once_rows(args.device, args.steps, args.models, args.levels))
        elif args.compile:
            write(compile_rows(args.device, args.steps, args.models, args.levels))
        elif args.input_test:
            write(input_test_rows(args.device, args.steps, args.models, args.levels))
        elif args.per_pass:
            write(together_rows(args.device, args.steps, args.per_pass, args.models, args.levels))
        elif args.precisions:
            write(precision_rows(args.device, args.steps, args.precisions, args.models, args.levels))
        else:
            write(cost_rows(args.device, args.steps))


if __name__ == "__main__":
    main()
