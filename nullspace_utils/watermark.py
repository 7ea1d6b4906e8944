r"""Output-preserving watermarks through the nullspace (paper §6, eq. 7, A.2).

For every patch :math:`x_j` of an image and the matching patch :math:`m_j` of a watermark, the paper looks for
nullspace noise :math:`v_j = E\lambda` that brings :math:`x_j` as close as possible to :math:`m_j` while the
result stays a valid image:

.. math::

    \min_\lambda \lVert m_j - (x_j + E\lambda) \rVert_p \quad \text{subject to} \quad 0 \le x_j + E\lambda \le 1.

Written in the pixels :math:`y = x_j + E\lambda` of the watermarked patch, ":math:`y - x_j` lies in the
nullspace" is the affine condition :math:`W_{\text{pix}} y = W_{\text{pix}} x_j` (d equations instead of
:math:`k = C r^2 - d` unknowns), and for p = 1 the problem is a linear program:

.. math::

    \min_y \lVert y - m_j \rVert_1 \quad \text{subject to} \quad W_{\text{pix}} y = W_{\text{pix}} x_j,
    \quad 0 \le y \le 1.

Because :math:`x_j` itself is feasible, the problem always has a solution, and every feasible y has the
same patch embedding as x_j: the watermarked image gives the model exactly the same tokens.

Solvers (:mod:`nullspace_utils.box_solver` holds them, for any matrix with independent rows):

- ``"admm"`` (default): all patches of all images at once in torch (:func:`~nullspace_utils.box_solver.admm`).
  ADMM alternates an exact projection onto the affine set (a precomputed :math:`(W W^\top)^{-1} W`), the proximal step of
  the objective restricted to the box (soft-threshold and clamp for p = 1), and a dual update; a final polish
  alternates the two projections and ends on the box.
- ``"highs"``: the LP per patch with scipy's HiGHS (p = 1 only): the exact reference.
- ``"slsqp"``: SLSQP in λ over the *joint* nullspace, for comparison only: it is very slow.

:func:`paper_slsqp` runs the paper's text (A.2: eq. 7 with p = 1 towards the mark, scipy's SLSQP, 5000
iterations) in the structure of the only per-channel SLSQP its authors published (github.com/Liu-Hy/NS-ViT,
``max_noise.py``, ``patch_parallel_impose``, which is their maximal-noise script, not a watermark: its objective
has no mark): channel by channel over the per-channel nullspace (:func:`nullspace_utils.exact.channel_nullspace`),
in the model's normalised units, SLSQP from λ = 0 with finite-difference gradients, and the unclipped result
kept, so the box violation can be measured before a clip to [0, 1].
"""

from __future__ import annotations

import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from nullspace_utils import box_solver, exact
from nullspace_utils.data import check_images
from nullspace_utils.models import model_device

__all__ = ["WatermarkResult", "embed", "text_mark", "SOLVERS", "PaperSlsqp", "paper_slsqp", "channel_bases",
           "COMPILE_FROM_ROWS", "compile_pays"]

SOLVERS = ("auto", "admm", "highs", "slsqp")

#: Host images solved on a GPU go through :func:`_embed_pipelined` (copies overlapping the solve) when this is on.
#: On since its GPU measurement (``benchmarks/results/watermark_gpu_pipeline.json``, one H100, 3925 images, TF32
#: without compile, second call): 4.00 s against 5.72 s for the plain chunk loop in the same run, the same
#: residual checked from the host's originals (1.6e-6), box and LP gap, and 6.3 GB of GPU memory against 20.9 GB.
_PIPELINE = True

#: ``compile=None`` (the default) compiles ADMM's iteration on a GPU for calls of at least this many patch rows
#: (images times patches per image; a ViT-S/32 image at 224 px has 49). Compiling costs its time once per process
#: and chunk shape, and saves some on every iteration after. On one H100 (``benchmarks/results/
#: watermark_gpu_step.json``, "after", TF32, 3925 images, 192,325 rows; the time ``embed`` reports, its solve) the
#: first compiled call took 11.7 s against 5.4 s uncompiled (about 6.3 s of compilation) and the second 2.6 s
#: against 3.8 s (1.2 s saved), so compiling breaks even after about five such calls, a million rows; the default
#: asks for twice that. This is an extrapolation from the solve's time: the whole second compiled call took 5.6 s
#: of wall time there (3 s outside the solve, not explained yet), so the end-to-end gain is not confirmed.
COMPILE_FROM_ROWS = 2_000_000


def compile_pays(device: str | torch.device, rows: int) -> bool:
    """Whether ``compile=None`` compiles ADMM's iteration for a call of ``rows`` patch rows on ``device``: on a GPU
    from :data:`COMPILE_FROM_ROWS` rows (on the CPU never: not measured there)."""
    return torch.device(device).type == "cuda" and rows >= COMPILE_FROM_ROWS


@dataclass
class WatermarkResult:
    """What :func:`embed` returns. Tensors have the batch shape of the input image."""

    image: torch.Tensor  # the watermarked image(s), in [0, 1]
    noise: torch.Tensor  # image - original: nullspace noise, patch by patch
    objective: torch.Tensor  # per image: sum over patches of ||y - m||_1 (p=1) or ||y - m||_2^2 (p=2)
    embedding_residual: float  # max |W_pix (y - x)| over all patches of the returned image, in its dtype
    box_violation: float  # max distance of a pixel outside [0, 1] (SLSQP: before its clip to the box)
    seconds: float
    solver: str
    iterations: int


# --------------------------------------------------------------------------- the paper's procedure
@dataclass
class PaperSlsqp:
    """What :func:`paper_slsqp` returns for P patches of C channels (numpy, float64)."""

    pixels: np.ndarray  # (P, C, r*r) watermarked patches in [0, 1] pixel units, NOT clipped
    objective: np.ndarray  # (P, C): ||m - y||_1 per patch and channel, in normalised units, at SLSQP's answer
    start_objective: np.ndarray  # (P, C): the same at λ = 0 (the original patch)
    iterations: np.ndarray  # (P, C): SLSQP's iteration count (``nit``)
    status: np.ndarray  # (P, C): SLSQP's exit status (0 converged, 9 iteration limit, others: see scipy)


def channel_bases(model: nn.Module) -> list[np.ndarray]:
    """Per channel c, the orthonormal basis (r^2, k_c) of the nullspace of its d x r^2 block (paper §3.2),
    from :func:`nullspace_utils.exact.channel_nullspace`, as float64 numpy arrays (picklable, for workers)."""
    basis = exact.channel_nullspace(model)  # (K, C, r, r)
    flat = basis.reshape(basis.shape[0], basis.shape[1], -1)
    on_channel = flat.abs().amax(dim=2) > 0  # (K, C): the one channel each vector lives on
    return [flat[on_channel[:, c], c].T.contiguous().numpy() for c in range(basis.shape[1])]


def paper_slsqp(bases: list[np.ndarray], start: np.ndarray, target: np.ndarray, mean: tuple[float, ...],
                std: tuple[float, ...], *, maxiter: int = 5000) -> PaperSlsqp:
    """The paper's eq. 7 with p = 1 (A.2's text) in the structure of its authors' per-channel SLSQP
    (``max_noise.py``'s ``patch_parallel_impose``, whose own objective maximises noise instead): per patch and
    per channel c,

        min_λ || t_c - x_c - E_c λ ||_1   s.t.   (0 - μ_c)/σ_c <= x_c + E_c λ <= (1 - μ_c)/σ_c,

    in normalised units (x_c = (pixels - μ_c)/σ_c, likewise the target t_c), by scipy's SLSQP from λ = 0 with
    finite-difference gradients (the L1 objective is not differentiable where a pixel meets the mark: SLSQP
    assumes it is) and at most ``maxiter`` iterations (the paper's 5000; the code's is 1000). The box is the valid
    pixel range [0, 1], where the code's is [-1, 1] in normalised units (the same range for its timm ViTs, whose
    mean and std are 0.5). ``bases`` from :func:`channel_bases`; ``start`` and
    ``target`` are (P, C, r*r) pixel patches in [0, 1]. The answer is returned unclipped, in pixel units.
    """
    from scipy.optimize import LinearConstraint, minimize

    if start.ndim != 3 or start.shape != target.shape or start.shape[1] != len(bases):
        raise ValueError(f"start and target must be (P, C, r*r) with C = {len(bases)} channels, got "
                         f"{start.shape} and {target.shape}.")
    if not isinstance(maxiter, int) or maxiter < 1:
        raise ValueError(f"maxiter must be a whole number >= 1, got {maxiter!r}.")
    patches, channels, _ = start.shape
    pixels = start.astype(np.float64).copy()
    shape = (patches, channels)
    objective, first = np.zeros(shape), np.zeros(shape)
    iterations, status = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    for c, basis in enumerate(bases):
        if basis.shape[1] == 0:  # this channel's nullspace is {0}: the patch stays as it is
            continue
        low, high = (0.0 - mean[c]) / std[c], (1.0 - mean[c]) / std[c]
        for j in range(patches):
            x = (start[j, c] - mean[c]) / std[c]
            t = (target[j, c] - mean[c]) / std[c]

            def distance(lam: np.ndarray, x: np.ndarray = x, t: np.ndarray = t, basis: np.ndarray = basis) -> float:
                return float(np.abs(t - x - basis @ lam).sum())

            result = minimize(distance, np.zeros(basis.shape[1]), method="SLSQP",
                              constraints=LinearConstraint(basis, low - x, high - x), options={"maxiter": maxiter})
            pixels[j, c] = mean[c] + std[c] * (x + basis @ result.x)
            objective[j, c], first[j, c] = distance(result.x), distance(np.zeros(basis.shape[1]))
            iterations[j, c], status[j, c] = result.nit, result.status
    return PaperSlsqp(pixels, objective, first, iterations, status)


# --------------------------------------------------------------------------- public API
#: The patch maps :func:`_check_patch_map` passed, per model: the check holds while the matrix is the same (the
#: folder command line calls ``embed`` once per batch). Keyed on the matrix itself, as ``exact.patch_nullspace``'s
#: cache is, so an in-place edit of the weights is checked again. The check's eigenvalues run on the CPU, where
#: other work may hold the cores: on a GPU machine, right after a compiled call (torch.compile's worker processes
#: still busy), they took 0.67 s (``benchmarks/results/watermark_gpu_wall.json``).
_CHECKED_PATCH_MAPS: weakref.WeakKeyDictionary[nn.Module, torch.Tensor] = weakref.WeakKeyDictionary()


def _check_patch_map(model: nn.Module, matrix: torch.Tensor) -> None:
    """Refuse a patch map the watermark cannot use, without an SVD in the usual case d < C r^2.

    There the nullspace is not {0} by rank-nullity, and the solver only needs independent rows (a
    d x d Gram matrix's eigenvalues say so). With d >= C r^2 the nullspace may be {0}:
    :func:`exact.patch_nullspace` says so with the numbers. A map that passed is not checked again.
    """
    checked = _CHECKED_PATCH_MAPS.get(model)
    if checked is not None and torch.equal(checked, matrix):
        return
    d, n = matrix.shape
    if d >= n:
        exact.patch_nullspace(model)  # raises NoNullspaceError when the nullspace is {0}
    box_solver.check_independent_rows(matrix)
    _CHECKED_PATCH_MAPS[model] = matrix


def _chunk_images(device: torch.device, patches_per_image: int, n: int) -> int:
    """How many images one solver call takes on ``device``: about 16 float32 copies of the chunk's patch
    rows (iterates, temporaries, a float64 polish) must fit in 60 % of the free GPU memory, or in 2 GiB on
    the CPU (more gains nothing there: the matmuls are already large)."""
    bytes_per_image = 16 * 4 * n * patches_per_image
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = 0.6 * free
    else:
        budget = 2 * 1024**3
    return max(1, int(budget // bytes_per_image))


def embed(
    model: nn.Module,
    image: torch.Tensor,
    mark: torch.Tensor,
    *,
    p: int = 1,
    solver: str = "auto",
    strength: float = 1.0,
    iterations: int = 100,
    polish: int = 50,
    rho: float | tuple[float, float] = box_solver.RHO,
    precision: str = "auto",
    compile: bool | None = None,
    maxiter: int = 100,
    device: str | torch.device | None = None,
    chunk_images: int | None = None,
    show_progress: bool = False,
) -> WatermarkResult:
    """Overlay ``mark`` on ``image`` through the nullspace of ``model``'s patch embedding (paper eq. 7).

    ``image`` is (C, H, W) or (B, C, H, W) in [0, 1]; ``mark`` has the same shape or broadcasts to it
    (one mark for a whole batch). ``strength`` in (0, 1] blends the target: the solver aims at
    ``(1 - strength) * image + strength * mark``. The result has exactly the patch embeddings of the
    original (``embedding_residual`` is float error) and lies in [0, 1]. The solvers compute in float32 and
    float64; the image comes back in the dtype of ``image``, and ``embedding_residual`` is that of the returned
    image: float16 and bfloat16 round it by about 1e-3, which the residual shows (pass float32 images for float32
    rounding). The solver runs on ``device``,
    by default the model's; the image comes back on the device of ``image``.

    Large batches are solved ``chunk_images`` images at a time (default: what fits the device's free
    memory), each chunk moved to ``device`` and back, with a progress bar if ``show_progress``. Compiled, every
    chunk is solved at one shape: a shorter chunk (the last, or a whole batch smaller than ``chunk_images``) is
    padded with copies of its last patch row to the rows of ``chunk_images`` images, which are dropped from the
    answer, so calls with the same ``chunk_images`` compile once (and a compiled call of one image with
    ``chunk_images=512`` does the work of 512).
    ``precision`` is that of ADMM's two projection matmuls on a GPU: ``"tf32"``, ``"bfloat16"``, or
    ``"float32"``; ``"auto"`` means float32 on the CPU and tf32 on a GPU. It never changes exactness: the
    polish ends in float64. ``compile=True`` fuses each iteration with ``torch.compile``, which is worth its
    compile time on large GPU batches only: ``None`` compiles where :func:`compile_pays` (a GPU and at least
    :data:`COMPILE_FROM_ROWS` patch rows in the call).

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`.
        image: [0, 1] images, (C, H, W) or (B, C, H, W).
        mark: the watermark, the shape of ``image`` or broadcasting to it.
        p: the norm towards the mark: 1 (the paper's, a linear program) or 2.
        solver: ``"auto"`` (ADMM), ``"admm"``, ``"highs"`` (exact LP, p = 1) or ``"slsqp"`` (slow reference).
        strength: in (0, 1]: how far the target is blended from the image towards the mark.
        iterations: ADMM iterations.
        polish: the final alternating projections (ADMM).
        rho: ADMM's step size, or (first, last) for a step that grows geometrically in between.
        precision: ``"auto"``, ``"tf32"``, ``"bfloat16"`` or ``"float32"`` (GPU matmuls of ADMM).
        compile: fuse each ADMM iteration with ``torch.compile``; ``None``: where :func:`compile_pays`.
        maxiter: SLSQP's iteration limit (``solver="slsqp"``).
        device: where to solve; ``None``: the model's device.
        chunk_images: images per chunk (compiled: the shape every chunk is padded to); ``None``: what fits the
            device's free memory.
        show_progress: show a tqdm bar over the chunks.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (an LP, the paper's choice) or 2 (a QP), got {p}.")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}.")
    box_solver.check_settings(iterations=iterations, polish=polish, rho=rho, precision=precision)
    if chunk_images is not None and (not isinstance(chunk_images, int) or chunk_images < 1):
        raise ValueError(f"chunk_images must be a whole number >= 1, got {chunk_images!r}.")
    batched = check_images(image, name="image").batched  # one pass over a large batch (torch.aminmax)
    check_images(mark, name="mark")
    images = image if batched else image[None]
    try:
        marks = torch.broadcast_to(mark if mark.ndim == 4 else mark[None], images.shape)
    except RuntimeError:
        raise ValueError(
            f"mark of shape {tuple(mark.shape)} does not match image of shape {tuple(image.shape)}; "
            "resize it first, e.g. torch.nn.functional.interpolate(mark[None], size=image.shape[-2:])."
        ) from None
    proj = exact.patch_embedding_layer(model)
    r = proj.kernel_size[0]
    if images.shape[1] != proj.in_channels or images.shape[-1] % r or images.shape[-2] % r:
        raise ValueError(
            f"image of shape {tuple(images.shape)} does not fit the model: it needs {proj.in_channels} channels "
            f"and a height and width that are multiples of the patch size {r}."
        )
    matrix64 = exact.patch_embedding_matrix(model)
    _check_patch_map(model, matrix64)
    device = torch.device(device) if device is not None else model_device(model)
    chosen = "admm" if solver == "auto" else solver
    if chosen == "highs" and p != 1:
        raise ValueError("solver='highs' solves the p = 1 linear program; use solver='admm' for p = 2.")
    if chosen == "slsqp":
        warnings.warn("solver='slsqp' reproduces the paper's method and takes minutes per patch at ViT "
                      "scale; use it for comparison only.", stacklevel=2)
    precision = ("tf32" if device.type == "cuda" else "float32") if precision == "auto" else precision
    patches_per_image = (images.shape[-2] // r) * (images.shape[-1] // r)
    if compile is None:
        compile = chosen == "admm" and compile_pays(device, images.shape[0] * patches_per_image)
    per_chunk = chunk_images or _chunk_images(device, patches_per_image, matrix64.shape[1])
    matrix32 = matrix64.to(device, torch.float32)

    def solve_admm(start32: torch.Tensor, goal32: torch.Tensor) -> torch.Tensor:
        """ADMM on float32 patch rows on ``device`` (each chunk, both paths below)."""
        return box_solver.admm(matrix32, start32, goal32, p, iterations, polish, rho, precision=precision,
                               compile_step=bool(compile))

    if chosen == "admm" and device.type == "cuda" and images.device.type == "cpu" and _PIPELINE:
        # host to host on a GPU: copies overlap the solve (pinned staging, copy streams), one chunk shape
        if chunk_images is None:
            per_chunk = _pipeline_chunk(images.shape[0], per_chunk)

        started = time.perf_counter()
        watermarked, noise, objective, residual, box = _embed_pipelined(
            images, marks, solve_admm, matrix64, r=r, strength=strength, p=p, per_chunk=per_chunk, device=device,
            pad_chunks=compile, show_progress=show_progress)
        seconds = time.perf_counter() - started
        if not batched:
            watermarked, noise, objective = watermarked[0], noise[0], objective[0]
        return WatermarkResult(watermarked, noise, objective, residual, box, seconds, chosen, iterations)

    started = time.perf_counter()
    watermarked = torch.empty_like(images)
    residual, box, objectives = 0.0, 0.0, []
    one_mark = marks[:1].to(device) if marks.stride(0) == 0 else None  # one mark for all: moved once
    chunks = range(0, images.shape[0], per_chunk)
    for first in tqdm(chunks, desc="watermark", unit="chunk", disable=not show_progress or len(chunks) < 2):
        chunk = images[first : first + per_chunk].to(device)
        chunk_marks = one_mark if one_mark is not None else marks[first : first + per_chunk].to(device)
        start = exact.to_patches(chunk, r)
        goal = exact.to_patches(torch.broadcast_to((1.0 - strength) * chunk + strength * chunk_marks, chunk.shape), r)
        if chosen == "admm":
            # compiled, a shorter chunk is padded to the others' rows, or to chunk_images' when given (one shape,
            # one compilation, also across calls)
            padded = compile and (len(chunks) > 1 or chunk_images is not None)
            pad_rows = start.shape[0] // chunk.shape[0] * per_chunk if padded else None
            pixels = _solve_padded(solve_admm, start.float(), goal.float(), pad_rows)
        elif chosen == "highs":
            pixels = torch.from_numpy(box_solver.highs(matrix64.numpy(), start.double().cpu().numpy(),
                                                       goal.double().cpu().numpy(), show_progress)).to(start)
        else:
            solved, violation = box_solver.slsqp(matrix64.numpy(), start.double().cpu().numpy(),
                                                 goal.double().cpu().numpy(), p, maxiter, show_progress)
            pixels = torch.from_numpy(solved).to(start)
            box = max(box, violation)  # before the clip: the clipped pixels are in [0, 1] by construction
        pixels = pixels.to(images.dtype)  # what is returned: its residual and box are the ones reported
        residual = max(residual, ((pixels.double() - start.double()) @ matrix64.to(device).T).abs().max().item())
        box = max(box, (-pixels).clamp_min(0).max().item(), (pixels - 1).clamp_min(0).max().item())
        diff = (pixels - goal).double()
        per_patch = diff.abs().sum(1) if p == 1 else (diff**2).sum(1)
        objectives.append(per_patch.reshape(chunk.shape[0], -1).sum(1).cpu())
        watermarked[first : first + per_chunk] = exact.from_patches(pixels, tuple(chunk.shape), r)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started

    objective = torch.cat(objectives)
    noise = watermarked - images
    if not batched:
        watermarked, noise, objective = watermarked[0], noise[0], objective[0]
    steps = {"admm": iterations, "highs": 0, "slsqp": maxiter}[chosen]
    return WatermarkResult(watermarked, noise, objective, residual, box, seconds, chosen, steps)


# --------------------------------------------------------------------------- host to host on a GPU
def _pipeline_chunk(count: int, fits: int, *, chunks: int = 8, smallest: int = 256) -> int:
    """Images per chunk for the pipelined GPU path: about ``chunks`` equal chunks, so that copies of one chunk
    overlap the solve of another, but no fewer than ``smallest`` images per chunk (smaller ones would not fill the
    GPU) and no more than ``fits`` (the device's memory). Equal chunks: padding the last one (compiled steps, one
    shape) wastes little."""
    per_chunk = min(fits, max(smallest, -(-count // chunks)))
    pieces = -(-count // per_chunk)
    return -(-count // pieces)


def _upload(tensors: tuple[torch.Tensor, ...], device: torch.device, stream: torch.cuda.Stream | None
            ) -> tuple[tuple[torch.Tensor, ...], torch.cuda.Event | None]:
    """Copy host ``tensors`` to ``device`` (run in a worker thread). On a GPU: through page-locked (pinned) staging
    memory, asynchronously on ``stream``; the returned event says when the copies are done."""
    if stream is None:
        return tuple(tensor.to(device) for tensor in tensors), None
    with torch.cuda.device(device), torch.cuda.stream(stream):
        moved = []
        for tensor in tensors:
            staging = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)  # torch caches these blocks
            staging.copy_(tensor)
            moved.append(staging.to(device, non_blocking=True))
        done = torch.cuda.Event()
        done.record(stream)
    return tuple(moved), done


def _download(solved: torch.Tensor, ready: torch.cuda.Event | None, stream: torch.cuda.Stream | None,
              originals: torch.Tensor, watermarked: torch.Tensor, noise: torch.Tensor) -> None:
    """Copy ``solved`` images into ``watermarked`` (host) once ``ready``, and their difference to ``originals``
    into ``noise`` (run in a worker thread; on a GPU through pinned memory on ``stream``)."""
    if stream is None:
        host = solved.to(watermarked.device)
    else:
        with torch.cuda.device(stream.device), torch.cuda.stream(stream):
            if ready is not None:
                stream.wait_event(ready)
            host = torch.empty(solved.shape, dtype=solved.dtype, pin_memory=True)
            host.copy_(solved, non_blocking=True)
        stream.synchronize()
    watermarked.copy_(host)
    torch.sub(watermarked, originals, out=noise)


def _solve_padded(solve: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], start: torch.Tensor,
                  goal: torch.Tensor, rows: int | None) -> torch.Tensor:
    """``solve(start, goal)``, with fewer than ``rows`` patch rows padded to that many with copies of the last row
    (a compiled step keeps its one shape instead of compiling again for a last, shorter chunk) and the copies
    dropped from the answer."""
    if rows is None or start.shape[0] >= rows:
        return solve(start, goal)
    extra = rows - start.shape[0]
    padded = solve(torch.cat([start, start[-1:].expand(extra, -1)]), torch.cat([goal, goal[-1:].expand(extra, -1)]))
    return padded[: start.shape[0]]


def _solve_chunk(chunk: torch.Tensor, chunk_marks: torch.Tensor, solve: Callable[[torch.Tensor, torch.Tensor],
                 torch.Tensor], matrix64: torch.Tensor, *, r: int, strength: float, p: int, pad_to: int | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk on its device: (watermarked images in the chunk's dtype, embedding residual, box violation,
    objective per image), the last three as tensors (no host synchronisation). With ``pad_to``, a shorter chunk's
    patch rows are padded with copies of its last row to those of that many images (a compiled step keeps its one
    shape) and the copies are dropped."""
    count = chunk.shape[0]
    goal_images = torch.broadcast_to((1.0 - strength) * chunk + strength * chunk_marks, chunk.shape)
    start, goal = exact.to_patches(chunk, r), exact.to_patches(goal_images, r)
    rows = start.shape[0] // count * pad_to if pad_to is not None else None
    # in the chunk's dtype: what is returned, so its residual and box are the ones reported
    pixels = _solve_padded(solve, start.float(), goal.float(), rows).to(chunk.dtype)
    residual = ((pixels.double() - start.double()) @ matrix64.T).abs().max()
    box = torch.maximum((-pixels).clamp_min(0).max(), (pixels - 1).clamp_min(0).max()).double()
    diff = (pixels - goal).double()
    per_patch = diff.abs().sum(1) if p == 1 else (diff**2).sum(1)
    return exact.from_patches(pixels, tuple(chunk.shape), r), residual, box, per_patch.reshape(count, -1).sum(1)


def _embed_pipelined(images: torch.Tensor, marks: torch.Tensor, solve: Callable[[torch.Tensor, torch.Tensor],
                     torch.Tensor], matrix64: torch.Tensor, *, r: int, strength: float, p: int, per_chunk: int,
                     device: torch.device, pad_chunks: bool, show_progress: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    """Host ``images`` solved on ``device`` chunk by chunk, with the copies overlapping the solve: while chunk k is
    solved, chunk k + 1 is copied in (a worker thread, pinned staging, its own CUDA stream) and chunk k - 1 copied
    back (another thread and stream), so a GPU is not left waiting on the host. Returns (watermarked, noise,
    objective per image, embedding residual, box violation). On the CPU (tests) the same steps run without streams.
    """
    cuda = device.type == "cuda"
    uploads_stream = torch.cuda.Stream(device) if cuda else None
    downloads_stream = torch.cuda.Stream(device) if cuda else None
    compute = torch.cuda.current_stream(device) if cuda else None
    one_mark = marks[:1].to(device) if marks.stride(0) == 0 else None  # one mark for all: moved once
    matrix64 = matrix64.to(device)
    watermarked, noise = torch.empty_like(images), torch.empty_like(images)
    firsts = list(range(0, images.shape[0], per_chunk))

    def sources(first: int) -> tuple[torch.Tensor, ...]:
        chunk = images[first : first + per_chunk]
        return (chunk,) if one_mark is not None else (chunk, marks[first : first + per_chunk].contiguous())

    statistics = []
    with ThreadPoolExecutor(1) as uploads, ThreadPoolExecutor(1) as downloads:
        pending = uploads.submit(_upload, sources(firsts[0]), device, uploads_stream)
        copies_back = []
        for index, first in enumerate(tqdm(firsts, desc="watermark", unit="chunk",
                                           disable=not show_progress or len(firsts) < 2)):
            moved, ready = pending.result()
            if index + 1 < len(firsts):  # the next chunk's copy runs during this chunk's solve
                pending = uploads.submit(_upload, sources(firsts[index + 1]), device, uploads_stream)
            if compute is not None and ready is not None:
                compute.wait_event(ready)
                for tensor in moved:
                    tensor.record_stream(compute)  # allocated on the copy stream, used on this one
            chunk = moved[0]
            chunk_marks = one_mark if one_mark is not None else moved[1]
            solved, residual, box, objective = _solve_chunk(chunk, chunk_marks, solve, matrix64, r=r,
                                                            strength=strength, p=p,
                                                            pad_to=per_chunk if pad_chunks else None)
            statistics.append((residual, box, objective))
            solved_event = None
            if compute is not None and downloads_stream is not None:
                solved_event = torch.cuda.Event()
                solved_event.record(compute)
                solved.record_stream(downloads_stream)
            end = first + chunk.shape[0]
            copies_back.append(downloads.submit(_download, solved, solved_event, downloads_stream,
                                                images[first:end], watermarked[first:end], noise[first:end]))
        for copy in copies_back:
            copy.result()
    largest_residual = float(torch.stack([row[0] for row in statistics]).max())  # one host synchronisation
    largest_box = float(torch.stack([row[1] for row in statistics]).max())
    objective = torch.cat([row[2] for row in statistics]).cpu()
    return watermarked, noise, objective, largest_residual, largest_box


def text_mark(text: str, size: int | tuple[int, int], *, font_size: int | None = None,
              angle: float = 0.0) -> torch.Tensor:
    """A watermark image: white ``text`` on black, (3, H, W) in [0, 1], rendered with Pillow's built-in font."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = (size, size) if isinstance(size, int) else size
    font = ImageFont.load_default(size=font_size or max(8, height // 5))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=255, font=font)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC)
    gray = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
    return gray.expand(3, height, width).clone()
