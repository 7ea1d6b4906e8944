"""Time `nullspace_utils.linalg.nullspace` against `scipy.linalg.null_space` on ViT patch matrices.

Both compute an orthonormal basis from an SVD in float64; this checks that ours is not slower and
that both span the same space (projectors agree). Prints ratios measured in the same run:

    .venv/bin/python benchmarks/nullspace_svd.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import timm

from nullspace_utils import exact, linalg


def best_of(repeats: int, function, *args):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+",
                        default=["vit_small_patch32_224", "vit_base_patch32_224", "vit_large_patch32_224"])
    args = parser.parse_args()
    print(f"{'model':<24} {'shape':>12} {'ours (s)':>9} {'scipy (s)':>10} {'scipy/ours':>10} {'same space':>10}")
    for name in args.models:
        matrix = exact.patch_embedding_matrix(timm.create_model(name, pretrained=False)).numpy()
        ours_time, ours = best_of(args.repeats, linalg.nullspace, matrix)
        scipy_time, theirs = best_of(args.repeats, scipy.linalg.null_space, matrix)
        same = ours.shape == theirs.shape and np.allclose(ours @ ours.T, theirs @ theirs.T, atol=1e-8)
        print(f"{name:<24} {str(matrix.shape):>12} {ours_time:>9.2f} {scipy_time:>10.2f} "
              f"{scipy_time / ours_time:>10.2f} {str(same):>10}")


if __name__ == "__main__":
    main()
