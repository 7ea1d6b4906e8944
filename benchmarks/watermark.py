"""Benchmark the watermark solvers on the same problem (paper §6, eq. 7, p = 1).

Model: a seeded random-init timm ``vit_small_patch32_224`` with ImageNet normalisation (the
nullspace depends only on the architecture's shapes and the weights, and random weights have the
same rank). Image: a teaching-set image resized to 224; mark: rendered text.

- HiGHS solves the LP exactly on ``--highs-patches`` patches: the optimum.
- SLSQP (the paper's method) runs ``--slsqp-iterations`` iterations on one patch; its time per
  iteration is extrapolated to the paper's 5000 iterations and 49 patches, labelled as such.
- The fast ADMM solver runs on the whole image at several iteration budgets; its objective on
  the HiGHS patches gives the gap to the optimum.
- With ``--device cuda``, the fast solver also watermarks ``--batch`` images at once (3925 is the
  size of ImageNette's val split) and reports the time.

Prints ratios against the baselines measured in the same run and writes a JSON results file:

    .venv/bin/python benchmarks/watermark.py --out benchmarks/results/watermark_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from nullspace_utils import data, models, watermark
from nullspace_utils.experiments import git_commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--highs-patches", type=int, default=3)
    parser.add_argument("--slsqp-iterations", type=int, default=2)
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 200, 300, 600, 1000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=3925)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch32_224", pretrained=False).eval()
    model = models.ImageClassifier(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])
    image = F.interpolate(data.synthetic_dataset("val", n=1)[0][0][None], size=224, mode="bicubic",
                          align_corners=False)[0].clamp(0, 1)
    mark = watermark.text_mark("NULL", 224, angle=20)
    results: dict = {"command": "python benchmarks/watermark.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k != "out" and v is not None),
        "commit": git_commit(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "model": "vit_small_patch32_224 (random init, seed 0)", "p": 1}

    if args.device != "cpu":
        return gpu_batch(args, model, mark, results)

    # the patches HiGHS solves: the first k of the image's 49, row-major
    rows = 32 * ((args.highs_patches + 6) // 7)
    region = (slice(None), slice(0, rows), slice(None))
    started = time.perf_counter()
    highs = watermark.embed(model, image[region], mark[region], solver="highs")
    highs_seconds_per_patch = (time.perf_counter() - started) / (rows // 32 * 7)
    highs_patches = watermark.to_patches(highs.image[None], 32)[: args.highs_patches]
    mark_patches = watermark.to_patches(mark[region][None], 32)[: args.highs_patches]
    optimum = (highs_patches - mark_patches).abs().sum().item()
    results["highs"] = {"seconds_per_patch": highs_seconds_per_patch, "objective": optimum,
                        "patches": args.highs_patches, "seconds_per_image_extrapolated": 49 * highs_seconds_per_patch}

    started = time.perf_counter()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slsqp = watermark.embed(model, image[:, :32, :32], mark[:, :32, :32], solver="slsqp",
                                    maxiter=args.slsqp_iterations)
    slsqp_seconds = time.perf_counter() - started
    per_iteration = slsqp_seconds / args.slsqp_iterations
    slsqp_gap = (float(slsqp.objective) - (watermark.to_patches(highs.image[None], 32)[0]
                                           - mark_patches[0]).abs().sum().item())
    results["slsqp"] = {"iterations": args.slsqp_iterations, "seconds": slsqp_seconds,
                        "seconds_per_iteration": per_iteration,
                        "objective_first_patch": float(slsqp.objective),
                        "objective_gap_first_patch_percent": 100 * slsqp_gap / max(optimum / args.highs_patches, 1e-12),
                        "paper_setting_seconds_extrapolated": per_iteration * 5000 * 49}

    fast = []
    watermark.embed(model, image[:, :32, :32], mark[:, :32, :32], iterations=5, polish=2)  # warm-up
    for iterations in args.iterations:
        result = watermark.embed(model, image, mark, iterations=iterations)
        patches = watermark.to_patches(result.image[None], 32)[: args.highs_patches]
        objective = (patches - mark_patches).abs().sum().item()
        fast.append({"iterations": iterations, "iterations_used": result.iterations, "seconds": result.seconds,
                     "objective_on_highs_patches": objective, "gap_percent": 100 * (objective - optimum) / optimum,
                     "embedding_residual": result.embedding_residual, "box_violation": result.box_violation})
    results["admm_cpu"] = fast

    print(f"HiGHS (exact LP)    : {highs_seconds_per_patch:8.2f} s per patch, {49 * highs_seconds_per_patch:8.1f} s per image (extrapolated)")
    print(f"SLSQP (paper)       : {per_iteration:8.2f} s per iteration; 5000 iterations x 49 patches = "
          f"{per_iteration * 5000 * 49 / 3600:.0f} h per image (extrapolated); after {args.slsqp_iterations} "
          f"iterations the objective is {results['slsqp']['objective_gap_first_patch_percent']:.0f} % above the optimum")
    for row in fast:
        print(f"ADMM {row['iterations']:5d} iterations: {row['seconds']:6.2f} s per image, gap {row['gap_percent']:+.4f} %, "
              f"{49 * highs_seconds_per_patch / row['seconds']:7.0f}x faster than HiGHS, "
              f"residual {row['embedding_residual']:.1e}")

    write(args.out, results)


def write(path: Path | None, results: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
        print("wrote", path)


def gpu_batch(args: argparse.Namespace, model, mark: torch.Tensor, results: dict) -> None:
    """Watermark ``args.batch`` random 224 images at once on the GPU with the fast solver."""
    batch = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    watermark.embed(model, batch[:8], mark, device=args.device, iterations=10, polish=2)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    result = watermark.embed(model, batch, mark, device=args.device)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    results["admm_gpu"] = {"device": torch.cuda.get_device_name(), "images": args.batch, "seconds": seconds,
                           "iterations_used": result.iterations, "embedding_residual": result.embedding_residual,
                           "box_violation": result.box_violation}
    print(f"ADMM on {torch.cuda.get_device_name()}: {args.batch} images of 224x224 in {seconds:.1f} s "
          f"({result.iterations} iterations, residual {result.embedding_residual:.1e})")
    write(args.out, results)


if __name__ == "__main__":
    main()
