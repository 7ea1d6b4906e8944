"""The heavy half of ``python -m nullspace_utils.experiments watermark-slsqp``: the paper's text (§6, eq. 7, p = 1
towards the mark, SLSQP, 5000 iterations) in the per-channel structure of its authors' max_noise.py on the first N val images, written as ``$OUT/<model>.npz``
after every image, so a run cut short keeps the images it finished. The runner's ``--solved $OUT`` then
evaluates them. It imports little of the library (``linalg.nullspace``, ``exact.to_patches``, the profile, and
the mark from ``nullspace_utils.studies.watermark``), so it runs on a plain copy of a checkout (a lent machine's).

    OUT=folder W=16 OMP_NUM_THREADS=1 python scripts/paper_slsqp_solve.py 20 zoo-vit-b zoo-vit-s

With ``--max-noise`` first, it runs the authors' ``patch_parallel_impose`` as written instead (their maximal-noise
problem, no mark: ``nullspace_utils.studies.watermark_paper.max_noise_channel``, maxiter 1000, the image clipped to
[-1, 1] in normalised units) and writes ``$OUT/<model>_max_noise.npz`` (``noise`` (n, C, m, r*r), ``stats``
(n, C, 2, m): iterations, status) after every image of every model (images first, so a run cut short keeps
the same images for all models), for ``python -m nullspace_utils.experiments watermark-max-noise --solved $OUT``:

    OUT=folder W=16 OMP_NUM_THREADS=1 python scripts/paper_slsqp_solve.py --max-noise 20 zoo-vit-b zoo-vit-s

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


def max_noise(n: int, names: list[str], out: str) -> None:
    """The as-written maximal-noise run (see the module docstring): one process per (model, image, channel)."""
    from nullspace_utils import watermark
    from nullspace_utils.studies.watermark_paper import MAX_NOISE_SETTINGS, _max_noise_task, max_noise_start

    profile = get_profile()
    settings = MAX_NOISE_SETTINGS[profile.name]
    images, _ = stack_dataset(profile.dataset("val", n=n))
    bases, starts, tasks = {}, {}, []
    for name in names:
        model = profile.load_model(name)
        bases[name], starts[name] = watermark.channel_bases(model), max_noise_start(model, images, settings)
    channels = images.shape[1]
    for i in range(n):
        for name in names:
            tasks += [(name, (bases[name][c], starts[name][i, :, c], settings.maxiter, settings.low, settings.high))
                      for c in range(channels)]
    done: dict[str, list] = {name: [] for name in names}
    with Pool(int(os.environ.get("W", "16"))) as pool:
        for count, answer in enumerate(pool.imap(_max_noise_task, [job for _, job in tasks]), 1):
            done[tasks[count - 1][0]].append(answer)
            if count % (channels * len(names)) == 0:
                finished = count // (channels * len(names))
                for name, answers in done.items():
                    np.savez(f"{out}/{name}_max_noise.npz",
                             noise=np.stack([a.noise for a in answers]).reshape(finished, channels, *answers[0].noise.shape),
                             stats=np.stack([np.stack([a.iterations, a.status]) for a in answers]).reshape(
                                 finished, channels, 2, -1))
                print("images done", finished, flush=True)


def main() -> None:
    if sys.argv[1] == "--max-noise":
        max_noise(int(sys.argv[2]), sys.argv[3:], os.environ["OUT"])
        return
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
