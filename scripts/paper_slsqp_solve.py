"""The heavy half of ``python -m nullspace_utils.experiments watermark-slsqp``: the paper's per-channel SLSQP
(§6, eq. 7, p = 1, as in its authors' max_noise.py) on the first N val images, written as ``$OUT/<model>.npz``
after every image, so a run cut short keeps the images it finished. The runner's ``--solved $OUT`` then
evaluates them. It imports little of the library (``linalg.nullspace``, ``exact.to_patches``, the profile, and
the mark from ``nullspace_utils.studies.watermark``), so it runs on a plain copy of a checkout (a lent machine's).

    OUT=folder W=16 OMP_NUM_THREADS=1 python scripts/paper_slsqp_solve.py 20 zoo-vit-b zoo-vit-s

Same mathematics as ``nullspace_utils.watermark.paper_slsqp`` (same operations in the same order), one
process per (image, channel) task; ``stats`` holds objective, objective at λ = 0, iterations, status.
"""

import os
import sys
from multiprocessing import Pool

import numpy as np
import torch
from scipy.optimize import LinearConstraint, minimize

from nullspace_utils import exact, linalg
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies.watermark import watermark_mark
from nullspace_utils.studies.watermark_paper import SETTINGS

MAXITER = SETTINGS["teaching"].maxiter  # the paper's cap (A.2), 5000, as the study's runner uses it


def solve(task: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One channel of every patch of one image: SLSQP in λ, normalised units, box of valid pixels."""
    basis, start, target, mu, sd, maxiter = task
    low, high = (0 - mu) / sd, (1 - mu) / sd
    pixels, stats = np.empty_like(start), np.zeros((4, len(start)))
    for j in range(len(start)):
        x, t = (start[j] - mu) / sd, (target[j] - mu) / sd

        def distance(lam: np.ndarray, x: np.ndarray = x, t: np.ndarray = t) -> float:
            return float(np.abs(t - x - basis @ lam).sum())

        result = minimize(distance, np.zeros(basis.shape[1]), method="SLSQP",
                          constraints=LinearConstraint(basis, low - x, high - x), options={"maxiter": maxiter})
        pixels[j] = mu + sd * (x + basis @ result.x)
        stats[:, j] = distance(result.x), distance(np.zeros(basis.shape[1])), result.nit, result.status
    return pixels, stats


def main() -> None:
    n, names, out = int(sys.argv[1]), sys.argv[2:], os.environ["OUT"]
    profile = get_profile()
    images, _ = stack_dataset(profile.dataset("val", n=n))
    mark = watermark_mark(profile.image_size)
    for name in names:
        model = profile.load_model(name)
        weight = exact.patch_embedding_layer(model).weight.detach().to("cpu", torch.float64)
        d, channels, r, _ = weight.shape
        bases = [linalg.nullspace(weight[:, c].reshape(d, r * r)).numpy() for c in range(channels)]
        start = exact.to_patches(images.double(), r).reshape(n, -1, channels, r * r).numpy()
        target = exact.to_patches(mark[None].double(), r).reshape(-1, channels, r * r).numpy()
        tasks = [(bases[c], start[i, :, c], target[:, c], model.mean[c], model.std[c], MAXITER)
                 for i in range(n) for c in range(channels)]
        done: list[tuple[np.ndarray, np.ndarray]] = []
        with Pool(int(os.environ.get("W", "16"))) as pool:
            for answer in pool.imap(solve, tasks):
                done.append(answer)
                if len(done) % channels == 0:
                    finished = len(done) // channels
                    np.savez(f"{out}/{name}.npz",
                             pixels=np.stack([a for a, _ in done]).reshape(finished, channels, -1, r * r),
                             stats=np.stack([b for _, b in done]).reshape(finished, channels, 4, -1),
                             bases=np.stack(bases))
                    print(name, finished, flush=True)


if __name__ == "__main__":
    main()
