"""Benchmark the watermark solvers on the same problem (paper §6, eq. 7, p = 1).

Model: a seeded random-init timm ``vit_small_patch32_224`` with ImageNet normalisation (the
nullspace depends only on the architecture's shapes and the weights, and random weights have the
same rank). Image: a teaching-set image resized to 224; mark: rendered text.

On the CPU (default), in one run:

- HiGHS's interior point method solves the LP exactly on ``--highs-patches`` patches: the optimum,
  and the baseline time (extrapolated to the image's 49 patches).
- SLSQP (the paper's method) runs ``--slsqp-iterations`` iterations on one patch; its time per
  iteration is extrapolated to the paper's 5000 iterations and 49 patches, labelled as such.
- The fast ADMM solver: the first call in a fresh process (a subprocess, as ``nullspace watermark``
  pays it), then warm calls at several iteration budgets, with the gap to the HiGHS optimum on the
  same patches. Each change to the solver's settings is measured against the settings before it, in the
  same run and with today's code: ``before`` (constant step 10 from the original patch, 300 iterations,
  and for the first call the SVD the old code computed on every call), then the warm start alone, the
  growing step (1 to 200) alone, and both (the default). The code's own changes (fewer passes over the
  arrays per iteration, the polish stopping once exact) are in every row: the earlier code's figures are
  in this file's git history.

With ``--device cuda``: the same comparison on ``--batch`` random images at once (3925 is the size of
ImageNette's val split), in float32, TF32 and bfloat16 matmuls, with and without ``torch.compile``;
the gap on HiGHS-checked patches of the batch; and the batch in chunks sized for a 16 GB GPU (a
Colab T4), with the peak memory. Prints ratios against the baselines measured in the same run and
writes a JSON results file:

    .venv/bin/python benchmarks/watermark.py --out benchmarks/results/watermark_cpu.json
    python benchmarks/watermark.py --device cuda --out benchmarks/results/watermark_gpu.json

With ``--device cuda`` also (issue #34), each as a ratio to the memory-bound floor computed from the copy
bandwidths measured in the same run (``floor``):

- ``embed_pipelined``: ``watermark.embed`` host to host on the batch (copies overlapping the solve), first and
  second call, TF32 and bfloat16, with and without ``torch.compile``: the time it reports and the call's wall time;
- ``embed_cuda_graphs``: the same calls host to host, TF32 and bfloat16 not compiled, in a ``box_solver.cuda_graphs``
  block, the folder command line's way of solving (which hands ``embed`` images already on the GPU): the first call
  records the iterations' graph for each chunk shape, the second replays them;
- ``cli``: ``nullspace watermark FOLDER`` on ``--cli-images`` 224 px PNGs the script writes itself, in images per
  second, at several batch sizes (the time inside ``embed`` apart); after it, the folder read into one batch on
  the device by the command line's thread pool, per file with ``load_image`` against ``read_pixels`` and one
  ``pixels_to_images`` (``reading``, also on the CPU);
- ``png_levels``: PNG encoding time and size per zlib level on watermarked 224 px images (the CLI's level).

``--part cli`` runs only the command-line part (on the CPU: its overhead as a fraction of the solve time on one
default batch, ``--cli-images 64``), ``--part png`` only the PNG levels, ``--part solve`` (GPU) all but those two.
``--part kernels --kernels-report FILE`` (GPU) times the solver's phases and writes torch.profiler's tables of one
solve and one ``embed`` call to FILE. ``--part wall --kernels-report FILE`` (GPU) looks for a compiled ``embed``
call's wall time beyond the time it reports: three TF32 compiled calls, the child processes (torch.compile's
workers) and their CPU time around each, the second under cProfile (its table to FILE).
``--part cli-settings`` runs the folder command line again and again in one process for ``--cli-seconds``, the
``--cli-settings`` (worker threads and Python's switch interval, ``THREADS:MS`` pairs) taking turns run by run:
many runs of each setting on one machine, and ``embed`` alone on one batch after them
(``benchmarks/results/watermark_gpu_cli_settings.json``). ``--profile-cli FILE`` writes a cProfile of one more CLI run in this process to FILE, and one of a new process,
with its slowest imports, beside it (``FILE``'s stem + ``_process.txt``):

    .venv/bin/python benchmarks/watermark.py --part cli --cli-images 64 --out run1.json

(``benchmarks/results/watermark_cli_cpu.json`` holds three such runs on the 2-core CPU, one after another, in its
``runs``.)

Two versions of the library timed on one machine: this script with ``PYTHONPATH`` set to each version's folder
(``--part solve`` keeps it short); the results file names the folder the library came from (``library``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from nullspace_utils import box_solver, cli, data, exact, models, watermark
from nullspace_utils.files import git_commit

PATCH = 32
#: The solver's settings before this benchmark's changes (kept to measure against): constant rho 10,
#: cold start, 300 iterations, float32.
BEFORE = {"iterations": 300, "rho": 10.0, "warm_start": False}
DEFAULT = {"iterations": 100, "rho": box_solver.RHO, "warm_start": True}
#: (name, settings, iteration budgets): each change alone, then both.
ABLATION = (("before", BEFORE, (100, 300)),
            ("warm start only", {**BEFORE, "warm_start": True}, (100, 300)),
            ("growing step only", {**DEFAULT, "warm_start": False}, (100,)),
            ("default", DEFAULT, (50, 100, 200, 300)))


def problem() -> tuple[models.ImageClassifier, torch.Tensor, torch.Tensor]:
    """The benchmark's model, image (3, 224, 224) and mark."""
    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch32_224", pretrained=False).eval()
    model = models.ImageClassifier(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])
    image = F.interpolate(data.synthetic_dataset("val", n=1)[0][0][None], size=224, mode="bicubic",
                          align_corners=False)[0].clamp(0, 1)
    return model, image, watermark.text_mark("NULL", 224, angle=20)


def solve(model, images: torch.Tensor, mark: torch.Tensor, settings: dict, *, device: str = "cpu",
          precision: str = "float32", compile_step: bool = False, polish: int = 50) -> tuple[torch.Tensor, float]:
    """ADMM with ``settings`` and at most ``polish`` polish rounds on all patches of ``images`` (B, 3, 224, 224) at
    once: (pixels, seconds)."""
    matrix = exact.patch_embedding_matrix(model).to(device, torch.float32)
    if device != "cpu":
        torch.cuda.synchronize()
    started = time.perf_counter()
    start = exact.to_patches(images.to(device), PATCH)
    goal = exact.to_patches(torch.broadcast_to(mark.to(device), images.shape), PATCH)
    pixels = box_solver.admm(matrix, start, goal, 1, settings["iterations"], polish, settings["rho"],
                             precision=precision, compile_step=compile_step, warm_start=settings["warm_start"])
    if device != "cpu":
        torch.cuda.synchronize()
    return pixels, time.perf_counter() - started


def quality(model, pixels: torch.Tensor, images: torch.Tensor, mark: torch.Tensor, optimum: float,
            checked: int) -> dict:
    """Gap to the HiGHS optimum on the first ``checked`` patches, residual (absolute and relative to the
    largest |W x|) and box violation of solved ``pixels``."""
    matrix = exact.patch_embedding_matrix(model).to(pixels.device)
    start = exact.to_patches(images.to(pixels.device), PATCH).double()
    goal = exact.to_patches(mark[None].to(pixels.device), PATCH)[:checked].double()
    objective = (pixels[:checked].double() - goal).abs().sum().item()
    residual = ((pixels.double() - start) @ matrix.T).abs().max().item()
    scale = (start @ matrix.T).abs().max().item()
    box = max((-pixels).clamp_min(0).max().item(), (pixels - 1).clamp_min(0).max().item())
    return {"objective_on_highs_patches": objective, "gap_percent": 100 * (objective - optimum) / optimum,
            "embedding_residual": residual, "relative_residual": residual / scale, "box_violation": box}


def highs_optimum(model, images: torch.Tensor, mark: torch.Tensor, patches: int) -> tuple[float, float]:
    """HiGHS interior point on the first ``patches`` patches of ``images``: (objective, seconds per patch)."""
    matrix = exact.patch_embedding_matrix(model).numpy()
    start = exact.to_patches(images.cpu(), PATCH)[:patches].double().numpy()
    goal = exact.to_patches(mark[None].cpu(), PATCH)[:patches].double().numpy()
    started = time.perf_counter()
    solved = box_solver.highs(matrix, start, goal, method="highs-ipm")
    seconds = (time.perf_counter() - started) / patches
    return float(np.abs(solved - goal).sum()), seconds


def first_call(settings: str) -> float:
    """Seconds of the first ``embed`` call in a fresh Python process (``settings``: "default" or "before")."""
    output = subprocess.run([sys.executable, __file__, "--first-call", settings], capture_output=True, text=True,
                            check=True).stdout
    return float(output.strip().splitlines()[-1])


def _first_call_child(settings: str) -> None:
    """Run in the subprocess: load the problem, time one solve. ``default``: ``embed`` as a user calls it;
    ``before``: the SVD the old code made on every call, then ADMM with the earlier settings."""
    model, image, mark = problem()
    started = time.perf_counter()
    if settings == "before":
        exact.patch_nullspace(model)
        solve(model, image[None], mark, BEFORE)
    else:
        watermark.embed(model, image, mark)
    print(time.perf_counter() - started)


def cpu(args: argparse.Namespace, results: dict) -> None:
    model, image, mark = problem()
    optimum, highs_per_patch = highs_optimum(model, image[None], mark, args.highs_patches)
    highs_per_image = 49 * highs_per_patch
    results["highs"] = {"method": "highs-ipm", "seconds_per_patch": highs_per_patch, "objective": optimum,
                        "patches": args.highs_patches, "seconds_per_image_extrapolated": highs_per_image}

    if args.slsqp_iterations:
        started = time.perf_counter()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slsqp = watermark.embed(model, image[:, :32, :32], mark[:, :32, :32], solver="slsqp",
                                    maxiter=args.slsqp_iterations)
        slsqp_seconds = time.perf_counter() - started
        per_iteration = slsqp_seconds / args.slsqp_iterations
        first_patch = watermark.embed(model, image[:, :32, :32], mark[:, :32, :32], solver="highs")
        gap = 100 * (float(slsqp.objective) - float(first_patch.objective)) / float(first_patch.objective)
        results["slsqp"] = {"iterations": args.slsqp_iterations, "seconds": slsqp_seconds,
                            "seconds_per_iteration": per_iteration, "objective_first_patch": float(slsqp.objective),
                            "objective_gap_first_patch_percent": gap,
                            "paper_setting_seconds_extrapolated": per_iteration * 5000 * 49}

    results["first_call"] = {name: first_call(name) for name in ("before", "default")}
    rows = []
    solve(model, image[None], mark, {**DEFAULT, "iterations": 5})  # warm-up
    for name, settings, budgets in ABLATION:
        for iterations in budgets:
            pixels, seconds = solve(model, image[None], mark, {**settings, "iterations": iterations})
            rows.append({"settings": name, "iterations": iterations, "seconds": seconds,
                         **quality(model, pixels, image[None], mark, optimum, args.highs_patches)})
    results["admm_cpu"] = rows

    print(f"HiGHS interior point : {highs_per_patch:8.2f} s per patch, {highs_per_image:8.1f} s per image (extrapolated)")
    if "slsqp" in results:
        slsqp = results["slsqp"]
        print(f"SLSQP (paper)        : {slsqp['seconds_per_iteration']:8.2f} s per iteration; 5000 iterations x 49 "
              f"patches = {slsqp['paper_setting_seconds_extrapolated'] / 3600:.0f} h per image (extrapolated); after "
              f"{slsqp['iterations']} iterations {slsqp['objective_gap_first_patch_percent']:.0f} % above the optimum")
    first = results["first_call"]
    print(f"first call in a fresh process: before {first['before']:.2f} s, now {first['default']:.2f} s "
          f"({first['before'] / first['default']:.1f}x; {highs_per_image / first['default']:.0f}x HiGHS)")
    for row in rows:
        print(f"ADMM {row['settings']:17s} {row['iterations']:5d} it.: {row['seconds']:6.2f} s per image (warm), "
              f"gap {row['gap_percent']:+.4f} %, {highs_per_image / row['seconds']:7.0f}x HiGHS, "
              f"residual {row['embedding_residual']:.1e} (relative {row['relative_residual']:.1e}), "
              f"box {row['box_violation']:.0e}")


def gpu(args: argparse.Namespace, results: dict) -> None:
    """``args.batch`` random 224 images at once on the GPU: settings and precisions compared."""
    model, _, mark = problem()
    batch = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    results["device"] = torch.cuda.get_device_name()
    results["batch"] = args.batch
    floor = bandwidth_floor(args, model)
    results["floor"] = floor
    save(args, results)
    optimum, highs_per_patch = highs_optimum(model, batch[:1], mark, args.highs_patches)
    results["highs"] = {"method": "highs-ipm", "seconds_per_patch": highs_per_patch, "objective": optimum,
                        "patches": args.highs_patches, "images": "the first patches of the batch's first image"}
    results["embed_pipelined"] = embed_pipelined(args, model, batch, mark, optimum, floor)
    save(args, results)
    if args.part == "all":
        results["cli"] = cli_runs(args, model, floor)
        save(args, results)
        results["png_levels"] = png_levels(args.device)
        save(args, results)
    on_device = batch.to(args.device)
    rows = []
    # ("before", BEFORE, "float32", False) is in watermark_gpu_before.json: left out to save device time
    runs = [("default", DEFAULT, "float32", False),
            ("default", DEFAULT, "tf32", False), ("default", DEFAULT, "bfloat16", False),
            ("default", DEFAULT, "tf32", True), ("default", DEFAULT, "bfloat16", True)]
    for name, settings, precision, compiled in runs:
        solve(model, on_device, mark, {**settings, "iterations": 5}, device=args.device, precision=precision,
              compile_step=compiled)  # warm-up, and compilation for these shapes (timed apart, below)
        torch.cuda.reset_peak_memory_stats()
        pixels, seconds = solve(model, on_device, mark, settings, device=args.device, precision=precision,
                                compile_step=compiled)
        row = {"settings": name, "iterations": settings["iterations"], "precision": precision, "compiled": compiled,
               "seconds": seconds, "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
               **quality(model, pixels, on_device, mark, optimum, args.highs_patches)}
        rows.append(row)
        del pixels
        print(f"ADMM {name:8s} {precision:9s} compiled={compiled!s:5s}: {args.batch} images in {seconds:6.2f} s "
              f"({seconds / floor['solve_seconds']:.1f}x the floor), gap {row['gap_percent']:+.4f} %, "
              f"residual {row['embedding_residual']:.1e}, peak {row['peak_memory_gb']:.1f} GB", flush=True)
        results["admm_gpu"] = rows
        save(args, results)

    # the whole call as a user makes it: images on the host, chunks streamed to the GPU and back
    for label, chunk in (("fits the device", None), ("16 GB GPU (Colab T4)", _t4_chunk(model))):
        torch.cuda.reset_peak_memory_stats()
        result = watermark.embed(model, batch, mark, device=args.device, chunk_images=chunk)
        results.setdefault("embed_gpu", []).append(
            {"chunks": label, "chunk_images": chunk, "seconds": result.seconds,
             "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
             "embedding_residual": result.embedding_residual, "box_violation": result.box_violation})
        print(f"embed from host memory, {label}: {result.seconds:.2f} s, "
              f"peak {torch.cuda.max_memory_allocated() / 1e9:.1f} GB", flush=True)
    save(args, results)
    # as the folder command line solves: the iterations recorded once in a CUDA graph, then replayed; last, and
    # kept apart, since the copy threads of host-to-host calls have not run beside a recording on a GPU before
    try:
        results["embed_cuda_graphs"] = embed_pipelined(args, model, batch, mark, optimum, floor, GRAPH_SETTINGS,
                                                       graphs=True)
    except Exception as error:  # reported in the file, not lost with the rows above
        results["embed_cuda_graphs_error"] = f"{type(error).__name__}: {error}"
        print("embed in CUDA graphs failed:", results["embed_cuda_graphs_error"], flush=True)


def kernels(args: argparse.Namespace, results: dict, report: Path) -> None:
    """Where the GPU's time goes (``--part kernels``): the solver on ``args.batch`` images in its phases (the patch
    rows, warm start and setup, the iterations, the polish: :func:`solve` with 0 and 100 iterations, with and
    without the polish, best of two) for TF32 and bfloat16, compiled and not; then torch.profiler's table of CUDA kernels for one compiled
    solve and of host and device work for one ``embed`` call host to host (the default settings, second call),
    written to ``report``."""
    from torch.profiler import ProfilerActivity, profile

    model, _, mark = problem()
    batch = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    results["device"] = torch.cuda.get_device_name()
    results["batch"] = args.batch
    on_device = batch.to(args.device)
    rows, sections = [], []
    for precision, compiled in (("tf32", True), ("bfloat16", True), ("tf32", False)):
        solve(model, on_device, mark, {**DEFAULT, "iterations": 5}, device=args.device, precision=precision,
              compile_step=compiled)  # compilation for these shapes
        phases = {name: min(solve(model, on_device, mark, {**DEFAULT, "iterations": iterations}, device=args.device,
                                  precision=precision, compile_step=compiled, polish=polish)[1] for _ in range(2))
                  for name, iterations, polish in (("setup", 0, 0), ("iterations", 100, 0), ("polish", 100, 50))}
        row = {"precision": precision, "compiled": compiled, "setup_seconds": phases["setup"],
               "iterations_seconds": phases["iterations"] - phases["setup"],
               "polish_seconds": phases["polish"] - phases["iterations"], "total_seconds": phases["polish"]}
        rows.append(row)
        print(f"solver {precision:8s} compiled={compiled!s:5s}: setup {row['setup_seconds']:.3f} s, 100 iterations "
              f"{row['iterations_seconds']:.3f} s, polish {row['polish_seconds']:.3f} s, total "
              f"{row['total_seconds']:.3f} s", flush=True)
        if compiled:
            with profile(activities=[ProfilerActivity.CUDA]) as trace:
                solve(model, on_device, mark, DEFAULT, device=args.device, precision=precision, compile_step=True)
            sections.append(f"== solve, {precision}, compiled: CUDA kernels ==\n"
                            + trace.key_averages().table(sort_by="cuda_time_total", row_limit=20))
    results["solver_phases"] = rows
    del on_device
    torch.cuda.empty_cache()
    for call in ("first", "second"):
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
            result = watermark.embed(model, batch, mark, device=args.device)
        wall = time.perf_counter() - started
        print(f"embed host to host, default settings, {call} call under the profiler: {result.seconds:.2f} s "
              f"(wall {wall:.2f} s)", flush=True)
        del result
    sections.append("== embed host to host, default settings, second call: host (self CPU) ==\n"
                    + trace.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    sections.append("== the same call: CUDA kernels ==\n"
                    + trace.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    report.write_text("\n\n".join(sections) + "\n")


def _children_cpu_seconds() -> tuple[int, float]:
    """This process's child processes (Linux /proc) and the CPU seconds they have used: torch.compile's inductor
    compiles in a pool of worker processes, which keep running after a compiled call returns."""
    ticks = os.sysconf("SC_CLK_TCK")
    count, seconds = 0, 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # fields[1]: the parent's pid; [11], [12]: user and system ticks
            count, seconds = count + 1, seconds + (int(fields[11]) + int(fields[12])) / ticks
    return count, seconds


def wall(args: argparse.Namespace, results: dict, report: Path) -> None:
    """Where a compiled ``embed`` call's wall time goes beyond the time it reports (``--part wall``): TF32,
    compiled, host to host on ``args.batch`` images, three calls (the first compiles). Before and after each: this
    process's child processes and their CPU seconds, the load average, and ``check_images`` on the batch alone;
    the second call runs under cProfile, whose table (cumulative time) goes to ``report``."""
    import cProfile
    import pstats

    model, _, mark = problem()
    batch = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    results["device"] = torch.cuda.get_device_name()
    results["batch"] = args.batch
    rows = []
    for call in ("first", "second", "third"):
        children_before, child_seconds_before = _children_cpu_seconds()
        started = time.perf_counter()
        data.check_images(batch)
        check = time.perf_counter() - started
        profiler = cProfile.Profile() if call == "second" else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = watermark.embed(model, batch, mark, device=args.device, precision="tf32", compile=True)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        children, child_seconds = _children_cpu_seconds()
        row = {"call": call, "wall_seconds": seconds, "embed_seconds": result.seconds,
               "check_images_seconds": check, "children_before": children_before, "children_after": children,
               "children_cpu_seconds_during": child_seconds - child_seconds_before,
               "load_average_after": os.getloadavg()[0], "profiled": profiler is not None}
        rows.append(row)
        print(f"embed tf32 compiled, {call} call{' (cProfile)' if profiler else ''}: wall {seconds:.2f} s, embed "
              f"{result.seconds:.2f} s; check_images alone before it {check:.2f} s; child processes "
              f"{children_before} -> {children}, their CPU during it {row['children_cpu_seconds_during']:.1f} s; "
              f"load {row['load_average_after']:.1f}", flush=True)
        del result
        if profiler:
            with open(report, "w") as handle:
                pstats.Stats(profiler, stream=handle).sort_stats("cumulative").print_stats(40)
    results["wall"] = rows


def save(args: argparse.Namespace, results: dict) -> None:
    """Write what is measured so far (a run stopped part-way keeps its earlier parts)."""
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


def _seconds(work, device: torch.device, repeat: int = 5) -> float:
    """The best of ``repeat`` timings of ``work()`` on ``device``."""
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        work()
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def _bandwidths(device: torch.device, size: int = 2 * 1024**3) -> tuple[float, float, float, float]:
    """Bytes per second: a copy within device memory (read + written), host to device and back through pinned
    memory, and host to device from ordinary (pageable) memory."""
    source = torch.empty(size // 4, device=device)
    target = torch.empty_like(source)
    device_copy = 2 * size / _seconds(lambda: target.copy_(source), device)
    host = torch.empty(size // 8 // 4, pin_memory=True)
    on_device = torch.empty(host.shape, device=device)
    upload = host.numel() * 4 / _seconds(lambda: on_device.copy_(host, non_blocking=True), device)
    download = host.numel() * 4 / _seconds(lambda: host.copy_(on_device, non_blocking=True), device)
    pageable = torch.empty(host.shape)
    upload_pageable = host.numel() * 4 / _seconds(lambda: on_device.copy_(pageable), device)
    return device_copy, upload, download, upload_pageable


def bandwidth_floor(args: argparse.Namespace, model) -> dict:
    """Copy bandwidths measured now (device memory, host to device and back through pinned memory) and the
    memory-bound floors they give: the solve reads and writes at least its state each iteration (z, u and the
    target read, z and u written: 5 passes over the (P, n) float32 patch rows, matmuls and polish left out), and
    host to host the images go to the device and back once (each way at its own bandwidth, not overlapped)."""
    device_copy, upload, download, upload_pageable = _bandwidths(torch.device(args.device))
    torch.cuda.empty_cache()  # the test arrays' memory back to the device (embed sizes its chunks by what is free)
    n = exact.patch_embedding_matrix(model).shape[1]
    rows_bytes = args.batch * 49 * n * 4  # one (P, n) float32 array
    solve = 100 * 5 * rows_bytes / device_copy
    transfer = args.batch * 3 * 224 * 224 * 4 * (1 / upload + 1 / download)
    floor = {"device_copy_gb_per_s": device_copy / 1e9, "upload_pinned_gb_per_s": upload / 1e9,
             "download_pinned_gb_per_s": download / 1e9, "upload_pageable_gb_per_s": upload_pageable / 1e9,
             "solve_seconds": solve, "transfer_seconds": transfer, "embed_seconds": max(solve, transfer),
             "definition": "solve: 100 iterations x 5 passes over the batch's (P, n) float32 patch rows at the "
                           "measured device copy bandwidth (read + write); transfer: the images to the device and "
                           "back at the pinned bandwidths; embed: the larger of the two (they can overlap)"}
    print(f"bandwidth: device {floor['device_copy_gb_per_s']:.0f} GB/s, host->device {upload / 1e9:.1f} GB/s pinned "
          f"({upload_pageable / 1e9:.1f} pageable), device->host {download / 1e9:.1f} GB/s; floor: solve {solve:.2f} s, "
          f"transfers {transfer:.2f} s for {args.batch} images", flush=True)
    return floor


class _GarbageCollection:
    """Seconds Python's garbage collector ran while it is on (``gc.callbacks``): a full collection walks every
    object, and ``torch.compile`` leaves millions behind, so the call after a compilation may pay for one."""

    def __init__(self) -> None:
        self.seconds, self.collections, self._started = 0.0, 0, 0.0

    def _note(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self) -> _GarbageCollection:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)


#: ``embed_pipelined``'s settings: (precision, compiled, pipelined); the last is the plain chunk loop the pipeline
#: replaced (before #34), in the same run
PIPELINE_SETTINGS = [("tf32", False, True), ("tf32", True, True), ("bfloat16", True, True),
                     ("bfloat16", False, True), ("tf32", False, False)]
#: ``embed_cuda_graphs``' settings: the iterations recorded in a CUDA graph (not compiled: compiled iterations are
#: not recorded), the folder command line's way of solving
GRAPH_SETTINGS = [("tf32", False, True), ("bfloat16", False, True)]


def embed_pipelined(args: argparse.Namespace, model, batch: torch.Tensor, mark: torch.Tensor, optimum: float,
                    floor: dict, settings: list[tuple[str, bool, bool]] = PIPELINE_SETTINGS,
                    graphs: bool = False) -> list[dict]:
    """``watermark.embed`` host to host as a user calls it, twice per setting (the first call compiles, or
    with ``graphs`` records the CUDA graph: both calls in one ``box_solver.cuda_graphs`` block): the time it
    reports (``seconds``) and the wall time of the whole call (checks and the noise included)."""
    rows = []
    matrix = exact.patch_embedding_matrix(model).to(args.device)
    for precision, compiled, pipelined in settings:
        block = box_solver.cuda_graphs() if graphs else contextlib.nullcontext()
        with block:
            rows += _embed_calls(args, model, batch, mark, optimum, floor, matrix, precision, compiled, pipelined,
                                 graphs)
    return rows


def _embed_calls(args: argparse.Namespace, model, batch: torch.Tensor, mark: torch.Tensor, optimum: float,
                 floor: dict, matrix: torch.Tensor, precision: str, compiled: bool, pipelined: bool,
                 graphs: bool) -> list[dict]:
    """The two calls of one setting of :func:`embed_pipelined`, checked and printed."""
    rows = []
    for call in ("first", "second"):
        torch.cuda.reset_peak_memory_stats()
        default, watermark._PIPELINE = watermark._PIPELINE, pipelined
        started = time.perf_counter()
        try:
            with _GarbageCollection() as collector:
                result = watermark.embed(model, batch, mark, device=args.device, precision=precision,
                                         compile=compiled)
        finally:
            watermark._PIPELINE = default
        wall = time.perf_counter() - started
        # the residual from the host's original images and the returned ones, checked apart from embed's own
        host_residual = 0.0
        for first in range(0, args.batch, 512):
            before = exact.to_patches(batch[first : first + 512].to(args.device), PATCH).double()
            after = exact.to_patches(result.image[first : first + 512].to(args.device), PATCH).double()
            host_residual = max(host_residual, ((after - before) @ matrix.double().T).abs().max().item())
        pixels = exact.to_patches(result.image[:1], PATCH)
        objective = (pixels[: args.highs_patches].double()
                     - exact.to_patches(mark[None], PATCH)[: args.highs_patches].double()).abs().sum().item()
        row = {"precision": precision, "compiled": compiled, "pipelined": pipelined, "cuda_graphs": graphs,
               "call": call, "seconds": result.seconds, "host_residual": host_residual,
               "noise_exact": bool(torch.equal(result.noise, result.image - batch)),
               "wall_seconds": wall, "floor_ratio": wall / floor["embed_seconds"],
               "gc_seconds": collector.seconds, "gc_collections": collector.collections,
               "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
               "embedding_residual": result.embedding_residual, "box_violation": result.box_violation,
               "gap_percent": 100 * (objective - optimum) / optimum}
        rows.append(row)
        del result, pixels
        print(f"embed host to host, {precision:8s} compiled={compiled!s:5s} pipelined={pipelined!s:5s} "
              f"cuda_graphs={graphs!s:5s} {call:6s} "
              f"call: {row['seconds']:.2f} s, host residual {host_residual:.1e} "
              f"(wall {wall:.2f} s, {row['floor_ratio']:.1f}x the floor; garbage collection {collector.seconds:.2f} s "
              f"in {collector.collections}), residual "
              f"{row['embedding_residual']:.1e}, box {row['box_violation']:.0e}, gap {row['gap_percent']:+.3f} %, "
              f"peak {row['peak_memory_gb']:.1f} GB", flush=True)
    return rows


def _photo_folder(folder: Path, count: int) -> None:
    """``count`` 224 px PNGs written with Pillow's defaults: 32 of the teaching set's synthetic photos, upsampled,
    repeated (reading and solving one costs what another does)."""
    folder.mkdir(parents=True)
    unique = min(count, 32)
    images = F.interpolate(torch.stack([image for image, _ in data.synthetic_dataset("val", n=unique)]), size=224,
                           mode="bicubic", align_corners=False).clamp(0, 1)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda index: data.save_image(images[index % unique], folder / f"photo{index:04d}.png"),
                      range(count)))


def _cli_folder(args: argparse.Namespace, model) -> tuple[Path, Path, torch.Tensor, list[str]]:
    """What the command-line parts run on, in a new temporary folder: the model's weights, ``args.cli_images`` PNGs
    (:func:`_photo_folder`) and the mark. Returns the folder, the PNGs' folder, the mark image and the command's
    arguments after ``watermark`` (without ``-o``)."""
    from safetensors.torch import save_file

    work = Path(tempfile.mkdtemp(prefix="nullspace-bench-"))
    weights = work / "vit_s32_random.safetensors"
    save_file({key: value.contiguous() for key, value in models.unwrap(model).state_dict().items()}, str(weights))
    photos, mark = work / "photos", work / "mark.png"
    _photo_folder(photos, args.cli_images)
    mark_image = watermark.text_mark("NULL", 224, angle=20)
    data.save_image(mark_image, mark)
    command = [str(photos), str(mark), "--model", "vit_small_patch32_224", "--weights", str(weights),
               "--device", args.device, "--quiet"]
    return work, photos, mark_image, command


def _timed_embed(device: torch.device, inside: list[tuple[float, float]]):
    """``cli.watermark.embed`` as it is, and a stand-in that appends (start, seconds) of each call to ``inside``
    (the device's queued work finished before the start)."""
    real_embed = cli.watermark.embed

    def timed_embed(*positional, **keywords):
        _synchronize(device)
        started = time.perf_counter()
        try:
            return real_embed(*positional, **keywords)
        finally:
            inside.append((started, time.perf_counter() - started))

    return real_embed, timed_embed


def parse_cli_settings(text: str) -> list[tuple[int, float]]:
    """``--cli-settings``: comma-separated ``THREADS:MS`` pairs, worker threads and Python's switch interval in
    milliseconds (``8:5`` is the command line as it is: 8 threads, Python's default 5 ms), as (threads, seconds)
    pairs, the unit of ``sys.setswitchinterval``."""
    settings = []
    for item in text.split(","):
        threads, _, milliseconds = item.partition(":")
        try:
            setting = (int(threads), float(milliseconds) / 1000)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"--cli-settings takes THREADS:MS pairs such as 8:5,16:0.2, not "
                                             f"{item!r}") from error
        if setting[0] < 1 or setting[1] <= 0:
            raise argparse.ArgumentTypeError(f"--cli-settings: {item!r} needs at least one thread and a switch "
                                             "interval above 0 ms")
        settings.append(setting)
    return settings


def cli_settings_runs(args: argparse.Namespace, model) -> dict:
    """The folder command line on ``args.cli_images`` PNGs again and again in one process for ``args.cli_seconds``,
    the settings of ``args.cli_settings`` (worker threads, Python's switch interval) taking turns run by run, each
    round in the same order, started one setting later than the round before: many runs of each setting on one
    machine, the machine's own spread beside any setting's effect. Does the main thread, which launches the torch
    operations that are not replayed from a CUDA graph (the polish, the copies, the checks) and releases Python's
    lock in each, wait for the worker threads to give it back? The first run of the process (torch's and CUDA's
    first use) is a warm-up; every run records its CUDA graphs again (each ``cli.main`` opens its own
    :func:`~nullspace_utils.box_solver.cuda_graphs` block). After the runs, ``embed`` alone (no worker thread busy)
    on one batch of the folder on the command's path: in a ``cuda_graphs`` block, one call recording the graph
    (timed apart, as each run's first batch records it), then six calls replaying it. Each run keeps its ``embed``
    calls' seconds one by one (``embed_call_seconds``: its first batch's call records)."""
    device = torch.device(args.device)
    work, photos, mark_image, command = _cli_folder(args, model)
    inside: list[tuple[float, float]] = []  # (start, seconds) of each embed call
    real_embed, timed_embed = _timed_embed(device, inside)
    settings, threads_then, interval_then = args.cli_settings, cli.WORKER_THREADS, sys.getswitchinterval()
    runs: list[dict] = []
    began = time.perf_counter()
    cli.watermark.embed = timed_embed
    try:
        while time.perf_counter() - began < args.cli_seconds:
            shift = max(len(runs) - 1, 0) // len(settings) % len(settings)
            for threads, interval in (settings[:1] if not runs else settings[shift:] + settings[:shift]):
                if runs and time.perf_counter() - began >= args.cli_seconds:
                    break
                cli.WORKER_THREADS = threads
                sys.setswitchinterval(interval)
                inside.clear()
                load = os.getloadavg()[0]
                started = time.perf_counter()
                try:
                    status = cli.main(["watermark", *command, "-o", str(work / f"out-{len(runs)}")])
                finally:
                    sys.setswitchinterval(interval_then)
                seconds, solve = time.perf_counter() - started, sum(length for _, length in inside)
                runs.append({"run": "warm-up" if not runs else "timed", "threads": threads,
                             "switch_interval_ms": 1000 * interval, "status": status, "seconds": seconds,
                             "images_per_second": args.cli_images / seconds, "embed_seconds": solve,
                             "embed_call_seconds": [length for _, length in inside],
                             "load_average_at_start": load})
                print(f"CLI {runs[-1]['run']:7s} {threads:2d} threads, switch interval {1000 * interval:4.1f} ms: "
                      f"{args.cli_images / seconds:6.1f} images/s, embed {solve:.2f} s of {seconds:.2f} s "
                      f"(load {load:.1f})", flush=True)
    finally:
        cli.watermark.embed, cli.WORKER_THREADS = real_embed, threads_then
    files = sorted(photos.iterdir())[:cli.GPU_BATCH_SIZE if device.type == "cuda" else cli.BATCH_SIZE]
    images = data.pixels_to_images([cli._read_pixels(str(path), 224, "image") for path in files], device)
    model, mark_image = model.to(device), mark_image.to(device)
    alone = []
    with box_solver.cuda_graphs():  # as in the command (on the CPU it changes nothing)
        for _ in range(7):  # the first call records the graph of this shape (as each run's first batch does)
            _synchronize(device)
            started = time.perf_counter()
            real_embed(model, images, mark_image, device=device)
            _synchronize(device)
            alone.append(time.perf_counter() - started)
    recording, alone = alone[0], alone[1:]
    print(f"embed alone on {len(files)} images: recording call {recording:.3f} s, then "
          + ", ".join(f"{seconds:.3f}" for seconds in alone) + " s", flush=True)
    return {"images": args.cli_images, "size": 224, "batch_size": len(files), "seconds_budget": args.cli_seconds,
            "settings": [{"threads": threads, "switch_interval_ms": 1000 * interval} for threads, interval in settings],
            "python_switch_interval_ms": 1000 * interval_then, "runs": runs,
            "embed_alone": {"images": len(files), "seconds": alone, "recording_seconds": recording,
                            "cuda_graphs": device.type == "cuda",
                            "note": "in a cuda_graphs block (a GPU's; the CPU has none), as in the command: "
                                    "recording_seconds is the block's first call, which records the graph of this "
                                    "shape (a run's first batch does the same), seconds the six calls after it"},
            "command": "nullspace watermark FOLDER mark.png -o OUT --model vit_small_patch32_224 --weights "
                       "RANDOM.safetensors --device DEVICE --quiet, in this process, cli.WORKER_THREADS and "
                       "sys.setswitchinterval set before each run"}


def _synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a GPU's; the CPU's is done when a call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reading_rates(photos: Path, device: torch.device, repeats: int = 3) -> dict:
    """A folder's PNGs read into one batch on ``device`` with the command line's thread pool, two ways, in images
    per second (best of ``repeats``, alternating): ``load_image`` per file, then stacked and sent (the command line
    before 2026-12-07, second session: tensor operations in every thread), against ``read_pixels`` per file, then
    ``pixels_to_images`` once (8-bit levels; the tensor work once per batch). Also whether the two batches are
    equal bit for bit."""
    paths = sorted(photos.iterdir())
    workers = min(getattr(cli, "WORKER_THREADS", 16), (os.cpu_count() or 1) + 2)  # the command line's pool (16 before)
    size = data.read_pixels(paths[0]).shape[0]

    def per_image() -> torch.Tensor:
        with ThreadPoolExecutor(workers) as pool:
            return torch.stack(list(pool.map(lambda path: data.load_image(path, size=size), paths))).to(device)

    def per_batch() -> torch.Tensor:
        with ThreadPoolExecutor(workers) as pool:
            return data.pixels_to_images(list(pool.map(lambda path: data.read_pixels(path, size=size), paths)), device)

    seconds: dict[str, list[float]] = {"load_image": [], "read_pixels": []}
    batches = {}
    for _ in range(repeats):
        for name, read in (("load_image", per_image), ("read_pixels", per_batch)):
            started = time.perf_counter()
            batches[name] = read()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name].append(time.perf_counter() - started)
    rates = {name: len(paths) / min(values) for name, values in seconds.items()}
    equal = torch.equal(batches["load_image"], batches["read_pixels"])
    print(f"reading {len(paths)} PNGs into one batch on {device.type}, {workers} threads (best of {repeats}): "
          f"load_image per file {rates['load_image']:.0f} images/s, read_pixels + pixels_to_images "
          f"{rates['read_pixels']:.0f} images/s ({rates['read_pixels'] / rates['load_image']:.2f}x); equal bit for "
          f"bit: {equal}", flush=True)
    return {"images": len(paths), "threads": workers, "repeats": repeats, "seconds": seconds,
            "images_per_second": rates, "ratio": rates["read_pixels"] / rates["load_image"], "equal": equal}


def cli_runs(args: argparse.Namespace, model, floor: dict) -> dict:
    """``nullspace watermark FOLDER MARK -o OUT`` in this process on ``args.cli_images`` 224 px PNGs, with the
    benchmark's model (random weights through --weights): a warm-up run, then one timed run per batch size, the
    time inside ``watermark.embed`` summed apart (the solve; the rest is the command's overhead)."""
    device = torch.device(args.device)
    batch_sizes = [None, *args.cli_batch_sizes] if device.type == "cuda" else [None]
    work, photos, _, command = _cli_folder(args, model)
    inside: list[tuple[float, float]] = []  # (start, seconds) of each embed call
    real_embed, timed_embed = _timed_embed(device, inside)

    # (_eight_bit, the rounding of a batch once, is in the library from 2026-12-07 on, and _read_pixels, the
    # decoding of each file to 8-bit levels, from 2026-12-07 (second session) on, where _load_image reads only the
    # mark: an older library is timed without them)
    stages = tuple(name for name in ("_load_image", "_read_pixels", "_eight_bit", "_prediction_checks",
                                     "_saved_pixels", "_write_output") if hasattr(cli, name))
    busy = dict.fromkeys(stages, 0.0)  # seconds spent in each of the command's stages, summed over its threads
    busy_lock = threading.Lock()  # (the worker threads add to it at once)
    real_stages = {name: getattr(cli, name) for name in stages}

    def timed_stage(name: str):
        def timed(*positional, **keywords):
            started = time.perf_counter()
            try:
                return real_stages[name](*positional, **keywords)
            finally:
                with busy_lock:
                    busy[name] += time.perf_counter() - started
        return timed

    runs = []
    default = cli.BATCH_SIZE if device.type == "cpu" else cli.GPU_BATCH_SIZE
    cli.watermark.embed = timed_embed
    for name in stages:
        setattr(cli, name, timed_stage(name))
    try:
        for label, batch_size in [("warm-up", None)] + [("timed", size) for size in batch_sizes]:
            inside.clear()
            busy.update(dict.fromkeys(stages, 0.0))
            out = work / f"out-{len(runs)}"
            extra = ["--batch-size", str(batch_size)] if batch_size else []
            started = time.perf_counter()
            with _GarbageCollection() as collector:
                status = cli.main(["watermark", *command, "-o", str(out), *extra])
            seconds = time.perf_counter() - started
            solve = sum(length for _, length in inside)
            startup = inside[0][0] - started  # model, mark and weight checks, the first batch's reading
            row = {"run": label, "batch_size": batch_size or default, "status": status,
                   "images": args.cli_images, "seconds": seconds, "images_per_second": args.cli_images / seconds,
                   "embed_seconds": solve, "overhead_fraction": (seconds - solve) / solve,
                   "startup_seconds": startup, "overhead_after_startup_fraction": (seconds - startup - solve) / solve,
                   "images_per_second_after_startup": args.cli_images / (seconds - startup),
                   "floor_ratio": seconds / (floor["embed_seconds"] * args.cli_images / args.batch) if floor else None,
                   "stage_seconds": {name.strip("_"): busy[name] for name in stages},
                   "gc_seconds": collector.seconds, "gc_collections": collector.collections}
            runs.append(row)
            print(f"CLI {label:7s} batch {row['batch_size']}: {args.cli_images} images in {seconds:.2f} s, "
                  f"{row['images_per_second']:.1f} images/s ({row['images_per_second_after_startup']:.1f} after the "
                  f"start); inside embed {solve:.2f} s, overhead "
                  f"{100 * row['overhead_fraction']:.0f} % of it ({100 * row['overhead_after_startup_fraction']:.0f} % "
                  f"after a {startup:.2f} s start)" + (f", {row['floor_ratio']:.0f}x the floor"
                                                                     if floor else "")
                  + f"; garbage collection {collector.seconds:.2f} s in {collector.collections}", flush=True)
            print("    busy seconds by stage (summed over threads): "
                  + ", ".join(f"{name} {value:.2f}" for name, value in row["stage_seconds"].items()), flush=True)
        # what a user waits for: a new process (Python, torch and CUDA start included), the default batch size
        child = _same_library(work)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nullspace_utils.cli", "watermark", *command,
                               "-o", str(work / "out-process")], capture_output=True, text=True, **child)
        seconds = time.perf_counter() - started
        imported = subprocess.run([sys.executable, "-c", "import nullspace_utils.cli as cli; print(cli.__file__)"],
                                  capture_output=True, text=True, **child).stdout.strip()
        same_library = Path(imported).resolve() == Path(cli.__file__).resolve()
        runs.append({"run": "new process", "batch_size": default, "status": done.returncode,
                     "images": args.cli_images, "seconds": seconds, "images_per_second": args.cli_images / seconds,
                     "library_imported": imported, "same_library": same_library})
        if not same_library:
            print(f"WARNING: the new process imported {imported}, not this process's {cli.__file__}", flush=True)
        print(f"CLI in a new process, batch {default}: {args.cli_images} images in {seconds:.2f} s, "
              f"{args.cli_images / seconds:.1f} images/s (status {done.returncode}) {done.stderr[-300:]}", flush=True)
        if args.profile_cli:  # where the command's time goes: a new process's imports and calls, then one more
            # run in this process under cProfile (beyond the solve)
            _profile_process(command, work, args.profile_cli.with_name(args.profile_cli.stem + "_process.txt"), child)
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            cli.main(["watermark", *command, "-o", str(work / "out-profiled")])
            profile.disable()
            with open(args.profile_cli, "w") as handle:
                pstats.Stats(profile, stream=handle).sort_stats("cumulative").print_stats(45)
    finally:
        cli.watermark.embed = real_embed
        for name, function in real_stages.items():
            setattr(cli, name, function)
    # after the command's runs, so that they start as an older library's do (reading_rates needs read_pixels)
    reading = reading_rates(photos, device) if hasattr(data, "read_pixels") else None
    return {"images": args.cli_images, "size": 224, "png_compress_level": cli.PNG_COMPRESS_LEVEL, "runs": runs,
            "reading": reading,
            "command": "nullspace watermark FOLDER mark.png -o OUT --model vit_small_patch32_224 --weights "
                       f"RANDOM.safetensors --device {args.device} --quiet [--batch-size B], in this process"}


def _same_library(work: Path) -> dict:
    """``subprocess.run`` arguments for a new process that imports the library this one imported: started in
    ``work`` with that library's folder first on ``PYTHONPATH``. (Started in a checkout, ``python -m`` imports the
    working directory's library before ``PYTHONPATH``'s: the "new process" runs before 2026-12-07, fourth
    session, timed the library of the folder they were started in, not always the one timed in the process.)"""
    folders = [str(Path(cli.__file__).resolve().parent.parent), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return {"cwd": work, "env": {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, folders))}}


def _profile_process(command: list[str], work: Path, report: Path, child: dict, imports: int = 25) -> None:
    """The CLI in a new process once more, under cProfile and ``-X importtime``: its seconds, the calls by
    cumulative time and the slowest imports (cumulative), written to ``report``."""
    import pstats

    stats = work / "process.prof"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cProfile", "-o", str(stats), "-m",
                           "nullspace_utils.cli", "watermark", *command, "-o", str(work / "out-process-profiled")],
                          capture_output=True, text=True, **child)
    seconds = time.perf_counter() - started
    timings = []  # "import time: self [us] | cumulative | name"
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            timings.append((int(fields[1]), fields[2].rstrip()))
    with open(report, "w") as handle:
        handle.write(f"the CLI in a new process under cProfile and -X importtime: {seconds:.2f} s, status "
                     f"{done.returncode}\n\nslowest imports, cumulative seconds:\n")
        for micros, name in sorted(timings, reverse=True)[:imports]:
            handle.write(f"{micros / 1e6:8.3f}  {name}\n")
        handle.write("\n")
        if stats.exists():
            pstats.Stats(str(stats), stream=handle).sort_stats("cumulative").print_stats(60)
    print(f"CLI in a new process, profiled: {seconds:.2f} s (status {done.returncode}); {report}", flush=True)


def png_levels(device: str, count: int = 16) -> list[dict]:
    """PNG encoding of watermarked 224 px images (the benchmark's model and mark, teaching-set photos) by the
    folder CLI's encoder (torchvision's ``encode_png``) and by Pillow's (which it used before): milliseconds per
    image (one thread, best of 2) and size, per zlib level."""
    from PIL import Image
    from torchvision.io import encode_png

    model, _, mark = problem()
    photos = F.interpolate(torch.stack([image for image, _ in data.synthetic_dataset("val", n=count)]), size=224,
                           mode="bicubic", align_corners=False).clamp(0, 1)
    marked = watermark.embed(model, photos, mark, device=device).image
    arrays = [torch.round(image * 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy() for image in marked]

    def pillow(array: np.ndarray, level: int) -> int:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=level)
        return buffer.tell()

    def torchvision(array: np.ndarray, level: int) -> int:
        return encode_png(torch.from_numpy(array).permute(2, 0, 1), compression_level=level).numel()

    rows = []
    for encoder, encode in (("torchvision", torchvision), ("pillow", pillow)):
        for level in range(10):
            best, size = float("inf"), 0
            for _ in range(2):
                started = time.perf_counter()
                size = sum(encode(array, level) for array in arrays)
                best = min(best, time.perf_counter() - started)
            rows.append({"encoder": encoder, "level": level, "ms_per_image": 1e3 * best / count,
                         "kib_per_image": size / count / 1024})
            print(f"PNG {encoder} level {level}: {rows[-1]['ms_per_image']:.2f} ms, "
                  f"{rows[-1]['kib_per_image']:.0f} KiB per image", flush=True)
    return rows


def _t4_chunk(model) -> int:
    """The chunk embed's own rule picks on a GPU with 15 GB free (a 16 GB T4 with the CUDA context)."""
    n = exact.patch_embedding_matrix(model).shape[1]
    return max(1, int(0.6 * 15e9 // (16 * 4 * n * 49)))


def library_hash() -> str:
    """sha256 over the imported library's Python files (names and contents, in name order): which version of
    ``nullspace_utils`` ran, even where the checkout's commit is stale (a copied tree) or two versions are timed
    through ``PYTHONPATH``. ``git show <commit>:nullspace_utils`` files hashed the same way match it."""
    import hashlib

    folder = Path(box_solver.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--highs-patches", type=int, default=3)
    parser.add_argument("--slsqp-iterations", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=3925)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--part", choices=["all", "cli", "cli-settings", "png", "solve", "kernels", "wall"],
                        default="all",
                        help="cli: only the command line on a folder; png: only the PNG levels; solve (GPU): "
                             "all but those two (the floor, embed and the ADMM rows), e.g. to time two versions "
                             "of the library on one machine; kernels (GPU): the solver's phases and profiles; "
                             "wall (GPU): a compiled embed call's wall time beyond its own; cli-settings: the "
                             "command line again and again in one process, --cli-settings taking turns")
    parser.add_argument("--cli-images", type=int, default=512)
    parser.add_argument("--cli-batch-sizes", type=int, nargs="*", default=[64, 256, 1024, 2048, 4096],
                        help="on a GPU, the batch sizes timed after the default one")
    parser.add_argument("--cli-settings", type=parse_cli_settings,
                        default=parse_cli_settings("8:5,8:1,8:0.2,12:0.5,16:0.2"),
                        help="--part cli-settings: THREADS:MS pairs, worker threads and Python's switch interval")
    parser.add_argument("--cli-seconds", type=float, default=60.0,
                        help="--part cli-settings: start no run after this many seconds")
    parser.add_argument("--profile-cli", type=Path, default=None, help="write a cProfile of one more CLI run here")
    parser.add_argument("--kernels-report", type=Path, default=None,
                        help="--part kernels / wall: where to write the profiler's tables")
    parser.add_argument("--first-call", choices=["before", "default"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_call:
        return _first_call_child(args.first_call)

    results: dict = {
        "command": "python benchmarks/watermark.py " + " ".join(sys.argv[1:]), "commit": git_commit(),
        "library": str(Path(box_solver.__file__).resolve().parent), "library_sha256": library_hash(),
        "torch": torch.__version__, "cpu": cpu_name(),
        "threads": torch.get_num_threads(), "model": "vit_small_patch32_224 (random init, seed 0)", "p": 1,
        "before": BEFORE, "default": {**DEFAULT, "rho": list(DEFAULT["rho"])}}
    results["ablation"] = [{"settings": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                            "iterations_tried": list(budgets)} for name, cfg, budgets in ABLATION]
    results["load_average_at_start"] = list(os.getloadavg())  # other work on the machine slows CPU timings
    if args.part in ("cli", "cli-settings"):
        model, _, _ = problem()
        results["device"] = torch.cuda.get_device_name() if args.device != "cpu" else cpu_name()
        if args.part == "cli":
            results["cli"] = cli_runs(args, model, {})
        else:
            results["cli_settings"] = cli_settings_runs(args, model)
    elif args.part == "png":
        results["png_levels"] = png_levels(args.device)
    elif args.part == "wall":
        if args.device == "cpu" or args.kernels_report is None:
            parser.error("--part wall profiles a GPU call: give --device cuda and --kernels-report FILE")
        wall(args, results, args.kernels_report)
    elif args.part == "kernels":
        if args.device == "cpu" or args.kernels_report is None:
            parser.error("--part kernels profiles the GPU: give --device cuda and --kernels-report FILE")
        kernels(args, results, args.kernels_report)
    elif args.part == "solve" and (args.device == "cpu" or args.profile_cli):
        parser.error("--part solve is the GPU's comparison without the CLI: give --device cuda, and no --profile-cli")
    else:
        (cpu if args.device == "cpu" else gpu)(args, results)
    if args.out:
        save(args, results)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
