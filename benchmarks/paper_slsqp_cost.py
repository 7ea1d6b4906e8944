"""What the plan's two SLSQP parts cost at a profile's size on this CPU: ``watermark-slsqp`` (the paper's procedure,
eq. 7 with p = 1 per patch and channel, :func:`nullspace_utils.watermark.paper_slsqp`) and ``watermark-max-noise``
(the authors' ``patch_parallel_impose``, :func:`nullspace_utils.studies.watermark_paper.max_noise_channel`).

Both solve one SLSQP problem per image, patch and channel, with finite-difference gradients, from λ = 0. This
script times ``--iterations`` iterations of one such problem per ViT of the profile (each run is capped there, so
it times the iterations, not a solve), and counts the problems each part solves. It does not know how many
iterations a problem takes to converge at this size: it prints the CPU time per 100 iterations per problem, and at
each procedure's cap, and states the teaching profile's committed medians beside them. The weights are untrained
(the cost depends on the sizes alone); start and target patches are drawn uniformly in [0, 1]::

    python benchmarks/paper_slsqp_cost.py --profile imagenet --out benchmarks/results/paper_slsqp_cost_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import timm
import torch

from nullspace_utils import exact, models, results, watermark
from nullspace_utils.profiles import PROFILE_NAMES, get_profile
from nullspace_utils.studies import watermark_paper


def _model(name: str) -> torch.nn.Module:
    """The profile's model with untrained weights (the zoo's own for the teaching profile)."""
    return models.load_model(name) if name in models.ZOO else timm.create_model(name, pretrained=False).eval()


def _committed_iterations(profile: str) -> dict[str, dict[str, float]]:
    """The teaching profile's committed SLSQP iteration counts per ViT (median, max), for both parts."""
    found: dict[str, dict[str, float]] = {}
    for kind in (watermark_paper.RESULT, watermark_paper.MAX_NOISE_RESULT):
        path = Path(kind.path(profile))
        if not path.is_file():
            continue
        for name, row in results.read(path)["models"].items():
            found.setdefault(name, {})[kind.name] = {"median": row["slsqp"]["iterations_median"],
                                                     "max": row["slsqp"]["iterations_max"]}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="imagenet", choices=PROFILE_NAMES)
    parser.add_argument("--iterations", type=int, default=20, help="SLSQP iterations timed per problem")
    parser.add_argument("--workers", type=int, default=16,
                        help="processes the projection divides the CPU time by (the lent GPU machines have 16 cores)")
    parser.add_argument("--converge", type=int, default=0,
                        help="also run the first ViT's watermark-slsqp problem with this iteration cap, to see "
                             "whether it converges (0: not run; 200 takes about 3-4 minutes at the imagenet size)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.iterations < 1 or args.workers < 1:
        parser.error("--iterations and --workers must be at least 1.")
    profile = get_profile(args.profile)
    paper, noise = watermark_paper.SETTINGS[profile.name], watermark_paper.MAX_NOISE_SETTINGS[profile.name]
    rng = np.random.default_rng(0)
    rows: dict[str, dict] = {}
    for name in profile.vit_models:
        model = _model(name)
        layer = exact.patch_embedding_layer(model)
        pixels = layer.kernel_size[0] ** 2
        try:
            bases = watermark.channel_bases(model)
        except exact.NoNullspaceError as error:
            rows[name] = {"no_nullspace": str(error)}
            print(f"{name}: no per-channel nullspace, nothing to solve")
            continue
        channels = sum(basis.shape[1] > 0 for basis in bases)
        patches = (profile.image_size // layer.kernel_size[0]) ** 2
        mean, std = exact.normalisation(model)
        start, target = rng.random((1, len(bases), pixels)), rng.random((1, len(bases), pixels))
        one_channel = [bases[0], *(basis[:, :0] for basis in bases[1:])]  # channel 0 alone: one problem
        began = time.perf_counter()
        solved = watermark.paper_slsqp(one_channel, start, target, mean, std, maxiter=args.iterations)
        paper_seconds = (time.perf_counter() - began) / int(solved.iterations[0, 0])
        clipped = np.clip((start[:, 0] - mean[0]) / std[0], noise.low, noise.high)
        began = time.perf_counter()
        maximal = watermark_paper.max_noise_channel(bases[0], clipped, maxiter=args.iterations, low=noise.low,
                                                    high=noise.high)
        noise_seconds = (time.perf_counter() - began) / max(int(maximal.iterations[0]), 1)
        row = {"unknowns": int(bases[0].shape[1]), "pixels": pixels, "channels_solved": int(channels),
               "patches": patches}
        for part, seconds, images, cap in (("watermark-slsqp", paper_seconds, paper.images, paper.maxiter),
                                           ("watermark-max-noise", noise_seconds, noise.images, noise.maxiter)):
            problems = images * patches * channels
            row[part] = {"seconds_per_iteration": seconds, "problems": problems, "maxiter": cap,
                         "cpu_hours_per_100_iterations": problems * 100 * seconds / 3600,
                         "cpu_hours_at_cap": problems * cap * seconds / 3600}
            print(f"{name} {part}: {seconds:.3g} s per iteration ({row['unknowns']} unknowns, {pixels} pixels), "
                  f"{problems} problems: {problems * 100 * seconds / 3600:.1f} CPU-hours per 100 iterations each "
                  f"({problems * 100 * seconds / 3600 / args.workers:.1f} h on {args.workers} processes), "
                  f"{problems * cap * seconds / 3600:.0f} at the cap of {cap}")
        if args.converge and not any("converge" in other for other in rows.values()):
            began = time.perf_counter()
            longer = watermark.paper_slsqp(one_channel, start, target, mean, std, maxiter=args.converge)
            row["converge"] = {"maxiter": args.converge, "iterations": int(longer.iterations[0, 0]),
                               "status": int(longer.status[0, 0]), "converged": int(longer.status[0, 0]) == 0,
                               "seconds": time.perf_counter() - began}
            print(f"{name} watermark-slsqp, one problem capped at {args.converge}: {row['converge']}")
        rows[name] = row
    report = {
        "what": "seconds per SLSQP iteration of one patch-channel problem of the plan's two SLSQP parts, at the "
                "profile's size, and the CPU time their problems take per 100 iterations each and at the cap; how "
                "many iterations a problem needs at this size is not measured",
        "command": "python benchmarks/paper_slsqp_cost.py " + " ".join(f"--{key.replace('_', '-')} {value}"
                                                                      for key, value in vars(args).items()
                                                                      if key != "out" and value is not None),
        "profile": profile.name, "iterations_timed": args.iterations, "workers_projected": args.workers,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "threads": torch.get_num_threads(), "numpy": np.__version__, "scipy": scipy.__version__,
        "torch": torch.__version__, "timm": timm.__version__, "weights": "untrained",
        "models": rows,
        "teaching_committed_iterations": _committed_iterations("teaching"),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
