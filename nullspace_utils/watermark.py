"""Output-preserving watermarks through the nullspace (paper §6, eq. 7, A.2).

For every patch x_j of an image and the matching patch m_j of a watermark, the paper looks for
nullspace noise v_j = E λ that brings x_j as close as possible to m_j while the result stays a
valid image:

    min_λ || m_j - (x_j + E λ) ||_p    subject to   0 <= x_j + E λ <= 1.

Written in the pixels y = x_j + E λ of the watermarked patch, "y - x_j lies in the nullspace" is
the affine condition W_pix y = W_pix x_j (d equations instead of k = C r^2 - d unknowns), and for
p = 1 the problem is a linear program:

    min_y || y - m_j ||_1    subject to   W_pix y = W_pix x_j,   0 <= y <= 1.

Because x_j itself is feasible, the problem always has a solution, and every feasible y has the
same patch embedding as x_j: the watermarked image gives the model exactly the same tokens.

Solvers:

- ``"admm"`` (default): all patches of all images at once in torch. ADMM alternates an exact
  projection onto the affine set (a precomputed (W W^T)^{-1} W), the proximal step of the
  objective restricted to the box (soft-threshold and clamp for p = 1), and a dual update; a
  final polish alternates the two projections and ends on the box.
- ``"highs"``: the LP per patch with scipy's HiGHS (p = 1 only): the exact reference.
- ``"slsqp"``: SLSQP in λ over the *joint* nullspace, for comparison only: it is very slow.

:func:`paper_slsqp` runs the paper's procedure as its authors' code does it (github.com/Liu-Hy/NS-ViT,
``max_noise.py``, ``patch_parallel_impose``): channel by channel over the per-channel nullspace
(:func:`nullspace_utils.exact.channel_nullspace`), in the model's normalised units, SLSQP from λ = 0 with
finite-difference gradients, and the unclipped result kept, so the box violation can be measured before a
clip to [0, 1].
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from nullspace_utils import exact, models
from nullspace_utils.data import check_finite, check_images
from nullspace_utils.models import model_device

__all__ = ["WatermarkResult", "embed", "solve_patches", "evaluate", "text_mark", "SOLVERS",
           "PRECISIONS", "RHO", "PaperSlsqp", "paper_slsqp", "channel_bases", "box_violation"]

SOLVERS = ("auto", "admm", "highs", "slsqp")


@dataclass
class WatermarkResult:
    """What :func:`embed` returns. Tensors have the batch shape of the input image."""

    image: torch.Tensor  # the watermarked image(s), in [0, 1]
    noise: torch.Tensor  # image - original: nullspace noise, patch by patch
    objective: torch.Tensor  # per image: sum over patches of ||y - m||_1 (p=1) or ||y - m||_2^2 (p=2)
    embedding_residual: float  # max |W_pix (y - x)| over all patches: 0 up to float error
    box_violation: float  # max distance of a pixel outside [0, 1] (SLSQP: before its clip to the box)
    seconds: float
    solver: str
    iterations: int


# --------------------------------------------------------------------------- fast solver
#: ADMM's step size grows geometrically from the first value to the second over the iterations
#: (continuation): a small step makes fast progress on the objective, a large one at the end drives
#: the two copies of the variable together, so little is lost when the polish makes them exact.
#: Measured in benchmarks/watermark.py: 100 iterations with (1, 200) end within about 0.07 % of the
#: LP optimum, where a constant step of 10 needed 300 iterations for that (benchmarks page).
RHO = (1.0, 200.0)
RHO_UPDATE_EVERY = 5
#: Polish stops once an affine projection overshoots the box by less than this: two float32 ulps at 1.0,
#: the floor float32 iterates reach (measured: about 20 rounds after 100 iterations, instead of all 50).
POLISH_TOLERANCE = 2.5e-7
PRECISIONS = ("auto", "float32", "tf32", "bfloat16")


def _check_independent_rows(matrix: torch.Tensor) -> None:
    """Refuse a patch map whose rows are linearly dependent: W W^T is then singular (its rank, from the
    eigenvalues of that d x d Gram matrix in float64, is below d) and the projection cannot be formed."""
    gram = matrix.double() @ matrix.double().T
    eigenvalues = torch.linalg.eigvalsh(gram)
    rank = int((eigenvalues > eigenvalues[-1].clamp_min(0) * gram.shape[0] * torch.finfo(torch.float64).eps).sum())
    if rank < gram.shape[0]:
        raise ValueError(
            f"the patch map's {gram.shape[0]} rows are linearly dependent (rank {rank}): some embedding "
            "constraints repeat others, so W W^T is singular. Keep independent rows only (e.g. the "
            "right singular vectors of its nonzero singular values span the same constraints), or check the "
            "model's weights.")


def _rho_schedule(rho: float | tuple[float, float], iterations: int) -> tuple[float, float]:
    """(first step size, factor applied every ``RHO_UPDATE_EVERY`` iterations) for ``iterations``."""
    first, last = (float(rho), float(rho)) if isinstance(rho, (int, float)) else (float(rho[0]), float(rho[1]))
    # (a pair may come as a list, e.g. read back from a JSON result file)
    updates = max(1, iterations // RHO_UPDATE_EVERY - 1)
    return first, (last / first) ** (1.0 / updates)


@contextlib.contextmanager
def _matmul_precision(precision: str, device: torch.device) -> Iterator[torch.dtype]:
    """Yield the dtype the two projection matmuls run in; TF32 is switched on for the block only
    (:func:`nullspace_utils.models.tf32_matmuls`)."""
    if device.type != "cuda" or precision == "float32":
        yield torch.float32
        return
    if precision == "bfloat16":
        yield torch.bfloat16
        return
    with models.tf32_matmuls():
        yield torch.float32


def _admm_step(z: torch.Tensor, u: torch.Tensor, offset: torch.Tensor, mark: torch.Tensor, matrix_t: torch.Tensor,
               back: torch.Tensor, rho: torch.Tensor | float, alpha: float, p: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One over-relaxed ADMM iteration on all rows (``rho``: a number, or a 0-d tensor when compiled).

    y: projection of z - u onto {W y = W x} (``offset`` = W x, ``back`` = (W W^T)^{-1} W, both possibly in
    a lower precision); z: proximal step of the objective inside the box; u: the scaled dual variable.
    Written as few passes over the (P, n) arrays as possible (9 instead of 17): they, not the two
    matmuls, set the time of an iteration on a GPU.
    """
    values = z - u
    if matrix_t.dtype == values.dtype:  # float32 (or TF32) matmuls, fused with the subtractions
        correction = torch.addmm(offset, values, matrix_t, beta=-1)  # W v - W x
        y = torch.addmm(values, correction, back, alpha=-1)
    else:  # bfloat16 matmuls, float32 everywhere else
        correction = (values.to(matrix_t.dtype) @ matrix_t).float() - offset
        y = values - (correction.to(back.dtype) @ back).float()
    shifted = torch.lerp(z, y, alpha).add_(u)  # alpha y + (1 - alpha) z, plus u
    if p == 1:  # soft threshold at 1/rho around the mark: shifted - clamp(shifted - mark, -1/rho, 1/rho)
        threshold = 1 / rho
        z_next = shifted - (shifted - mark).clamp_(-threshold, threshold)  # type: ignore[arg-type]  # both work
    else:  # argmin 1/2 ||z - mark||^2 + rho/2 ||z - shifted||^2 (halving the objective moves no minimiser)
        z_next = torch.lerp(shifted, mark, 1 / (1 + rho))
    z_next.clamp_(0, 1)
    return z_next, shifted.sub_(z_next)


def _admm(matrix: torch.Tensor, start: torch.Tensor, mark: torch.Tensor, p: int, iterations: int, polish: int,
          rho: float | tuple[float, float], alpha: float = 1.6, precision: str = "float32",
          compile_step: bool = False, warm_start: bool = True, out_dtype: torch.dtype = torch.float32
          ) -> torch.Tensor:
    """Batched, over-relaxed ADMM with a growing step over the rows of ``start``/``mark`` (P, n) in float32.

    Splitting: y in the affine set {W y = W x}, z in the box with the objective; y = z at the end. Warm
    start: the mark projected onto the affine set, clamped to the box (``warm_start=False`` starts from the
    original patch, as this solver did before; kept for the benchmark). Returns feasible pixels in ``out_dtype``
    (float64 keeps the float64 polish's exactness; float32 rounds it to float32 resolution).
    """
    gram = matrix @ matrix.T
    back = torch.linalg.solve(gram, matrix)  # (d, n): (W W^T)^{-1} W, float32
    offset = start @ matrix.T  # (P, d): W x
    z = (mark - (mark @ matrix.T - offset) @ back).clamp(0, 1) if warm_start else start.clone()
    u = torch.zeros_like(start)
    first, growth = _rho_schedule(rho, iterations)
    # compiled: rho as a 0-d tensor, so the graph is not recompiled as it grows; eager: a number (clamp with
    # tensor bounds takes a slow path on the CPU)
    rho_now: torch.Tensor | float = torch.tensor(first, device=start.device) if compile_step else first
    step = torch.compile(_admm_step, dynamic=False) if compile_step else _admm_step
    with _matmul_precision(precision, start.device) as low:
        matrix_t, back_low = matrix.T.contiguous().to(low), back.to(low)
        for iteration in range(iterations):
            z, u = step(z, u, offset, mark, matrix_t, back_low, rho_now, alpha, p)
            if (iteration + 1) % RHO_UPDATE_EVERY == 0:
                rho_now, u = rho_now * growth, u / growth
    return _polish(z, start, matrix, back, offset, polish).to(out_dtype)


def _polish(pixels: torch.Tensor, start: torch.Tensor, matrix: torch.Tensor, back: torch.Tensor,
            offset: torch.Tensor, most: int) -> torch.Tensor:
    """Make ``pixels`` exactly feasible: alternate projections onto the affine set and the box (they converge
    to a point of the intersection, which is not empty: the original patch is in it) until a projection
    overshoots the box by less than ``POLISH_TOLERANCE`` or ``most`` rounds have run; then one projection in
    float64, so the embeddings match to float64 error, and a clamp of the (tiny) remaining overshoot."""
    y = pixels
    for round_ in range(most):
        projected = y - (y @ matrix.T - offset) @ back
        if round_ % 5 == 4 and float((projected - projected.clamp(0, 1)).abs().max()) < POLISH_TOLERANCE:
            y = projected
            break
        y = projected.clamp(0, 1)
    start64, y64, matrix64 = start.double(), y.double(), matrix.double()
    y64 = y64 - ((y64 - start64) @ matrix64.T) @ torch.linalg.solve(matrix64 @ matrix64.T, matrix64)
    return y64.clamp(0, 1)


# --------------------------------------------------------------------------- reference solvers
def _highs(matrix: np.ndarray, start: np.ndarray, mark: np.ndarray, show_progress: bool = False,
           method: str = "highs") -> np.ndarray:
    """Solve the p = 1 LP of every row exactly with HiGHS; variables [y (n), t (n)], t >= |y - m|.

    ``method`` is scipy's: "highs" lets HiGHS choose, "highs-ipm" is its interior point method."""
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, identity

    n = matrix.shape[1]
    eye = identity(n, format="csr")
    a_ub = bmat([[eye, -eye], [-eye, -eye]], format="csr")
    a_eq = bmat([[csr_matrix(matrix), csr_matrix((matrix.shape[0], n))]], format="csr")
    cost = np.concatenate([np.zeros(n), np.ones(n)])
    bounds = [(0.0, 1.0)] * n + [(0.0, None)] * n
    out = np.empty_like(start)
    for row in tqdm(range(start.shape[0]), desc="HiGHS", unit="patch", disable=not show_progress):
        result = linprog(cost, A_ub=a_ub, b_ub=np.concatenate([mark[row], -mark[row]]), A_eq=a_eq,
                         b_eq=matrix @ start[row], bounds=bounds, method=method)
        if result.status != 0:
            raise RuntimeError(f"HiGHS failed on patch {row}: {result.message}")
        out[row] = result.x[:n]
    return out


def _slsqp(matrix: np.ndarray, start: np.ndarray, mark: np.ndarray, p: int, maxiter: int,
           show_progress: bool = False) -> tuple[np.ndarray, float]:
    """Eq. 7 over the joint nullspace: SLSQP in the coordinates λ, per patch (slow). Returns the pixels clipped
    to [0, 1] and the largest distance of a pixel outside [0, 1] before that clip (SLSQP's iterates may leave
    the box; the clip then moves the patch out of the nullspace)."""
    from scipy.optimize import minimize

    from nullspace_utils import linalg

    basis = linalg.nullspace(matrix)  # (n, k)
    out = np.empty_like(start)
    violation = 0.0
    for row in tqdm(range(start.shape[0]), desc="SLSQP", unit="patch", disable=not show_progress):
        x, m = start[row], mark[row]

        def objective(lam: np.ndarray, x: np.ndarray = x, m: np.ndarray = m) -> float:
            diff = x + basis @ lam - m
            return float(np.abs(diff).sum() if p == 1 else diff @ diff)

        constraints = [{"type": "ineq", "fun": lambda lam, x=x: x + basis @ lam, "jac": lambda lam: basis},
                       {"type": "ineq", "fun": lambda lam, x=x: 1.0 - x - basis @ lam, "jac": lambda lam: -basis}]
        result = minimize(objective, np.zeros(basis.shape[1]), method="SLSQP", constraints=constraints,
                          options={"maxiter": maxiter})
        raw = x + basis @ result.x
        violation = max(violation, box_violation(raw))
        out[row] = np.clip(raw, 0.0, 1.0)
    return out, violation


def box_violation(pixels: np.ndarray | torch.Tensor, low: float = 0.0, high: float = 1.0) -> float:
    """The largest distance of a value of ``pixels`` outside [``low``, ``high``] (0 when all are inside)."""
    values = pixels.detach().cpu().double().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
    if values.size == 0:
        return 0.0
    return float(max(low - values.min(), values.max() - high, 0.0))


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
    """The paper's eq. 7 with p = 1 as its authors' code solves it: per patch and per channel c,

        min_λ || t_c - x_c - E_c λ ||_1   s.t.   (0 - μ_c)/σ_c <= x_c + E_c λ <= (1 - μ_c)/σ_c,

    in normalised units (x_c = (pixels - μ_c)/σ_c, likewise the target t_c), by scipy's SLSQP from λ = 0 with
    finite-difference gradients (the L1 objective is not differentiable where a pixel meets the mark: SLSQP
    assumes it is) and at most ``maxiter`` iterations. ``bases`` from :func:`channel_bases`; ``start`` and
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
def _check_solver_settings(*, iterations: int, polish: int, rho: float | tuple[float, float],
                           precision: str = "auto") -> None:
    """ADMM's settings: positive finite step sizes ``rho`` (one, or a (first, last) pair) and non-negative
    whole iteration counts."""
    values = tuple(rho) if isinstance(rho, (tuple, list)) and len(rho) == 2 else (rho,)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"rho (ADMM's step size) must be a positive finite number or a pair (first, last) of them, "
                         f"got {rho!r}; the default {RHO} works for images in [0, 1].")
    for name, value in (("iterations", iterations), ("polish", polish)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}.")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")


def solve_patches(matrix: torch.Tensor, start: torch.Tensor, target: torch.Tensor, *, p: int = 1,
                  iterations: int = 100, polish: int = 50, rho: float | tuple[float, float] = RHO) -> torch.Tensor:
    """The fast solver on raw rows: min ||y - target||_p s.t. matrix @ y = matrix @ start, 0 <= y <= 1.

    ``matrix`` is (d, n) with independent rows; ``start`` and ``target`` are (P, n) with ``start`` in
    [0, 1]. This is eq. (7) of the paper written in pixels, for any linear map, e.g. a 1 x 2 toy matrix.
    Iterations run in float32; the polish ends with a projection in float64, and the result comes back in
    ``start``'s dtype (float64 input: embeddings kept to float64 error).
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}.")
    if start.ndim != 2 or start.shape != target.shape or matrix.ndim != 2 or matrix.shape[1] != start.shape[1]:
        raise ValueError(f"need matrix (d, n) and start/target (P, n); got {tuple(matrix.shape)}, "
                         f"{tuple(start.shape)}, {tuple(target.shape)}.")
    _check_solver_settings(iterations=iterations, polish=polish, rho=rho)
    check_finite(start, name="start")
    check_finite(target, name="target")
    _check_independent_rows(matrix)
    start64 = start.double()
    pixels = _admm(matrix.to(start.device, torch.float32), start.float(), target.to(start.device, torch.float32),
                   p, iterations, polish, rho, out_dtype=torch.float64)
    # the last projection once more from the float64 start itself: the float32 copy of it that ADMM saw
    # differs by float32 rounding, which would otherwise show in the embedding
    matrix64 = matrix.to(start.device, torch.float64)
    pixels = pixels - ((pixels - start64) @ matrix64.T) @ torch.linalg.solve(matrix64 @ matrix64.T, matrix64)
    return pixels.clamp(0, 1).to(start.dtype)


def _check_patch_map(model: nn.Module, matrix: torch.Tensor) -> None:
    """Refuse a patch map the watermark cannot use, without an SVD in the usual case d < C r^2.

    There the nullspace is not {0} by rank-nullity, and the solver only needs independent rows (a
    d x d Gram matrix's eigenvalues say so). With d >= C r^2 the nullspace may be {0}:
    :func:`exact.patch_nullspace` says so with the numbers.
    """
    d, n = matrix.shape
    if d >= n:
        exact.patch_nullspace(model)  # raises NoNullspaceError when the nullspace is {0}
    _check_independent_rows(matrix)


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
    rho: float | tuple[float, float] = RHO,
    precision: str = "auto",
    compile: bool = False,
    maxiter: int = 100,
    device: str | torch.device | None = None,
    chunk_images: int | None = None,
    show_progress: bool = False,
) -> WatermarkResult:
    """Overlay ``mark`` on ``image`` through the nullspace of ``model``'s patch embedding (paper eq. 7).

    ``image`` is (C, H, W) or (B, C, H, W) in [0, 1]; ``mark`` has the same shape or broadcasts to it
    (one mark for a whole batch). ``strength`` in (0, 1] blends the target: the solver aims at
    ``(1 - strength) * image + strength * mark``. The result has exactly the patch embeddings of the
    original (``embedding_residual`` is float error) and lies in [0, 1]. The solver runs on ``device``,
    by default the model's; the image comes back on the device of ``image``.

    Large batches are solved ``chunk_images`` images at a time (default: what fits the device's free
    memory), each chunk moved to ``device`` and back, with a progress bar if ``show_progress``.
    ``precision`` is that of ADMM's two projection matmuls on a GPU: ``"tf32"``, ``"bfloat16"``, or
    ``"float32"``; ``"auto"`` means float32 on the CPU and tf32 on a GPU. It never changes exactness: the
    polish ends in float64. ``compile=True`` fuses each iteration with ``torch.compile`` (worth its
    compile time on large GPU batches only).
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (an LP, the paper's choice) or 2 (a QP), got {p}.")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}.")
    _check_solver_settings(iterations=iterations, polish=polish, rho=rho, precision=precision)
    if chunk_images is not None and (not isinstance(chunk_images, int) or chunk_images < 1):
        raise ValueError(f"chunk_images must be a whole number >= 1, got {chunk_images!r}.")
    batched = check_images(image, name="image").batched
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
    per_chunk = chunk_images or _chunk_images(device, patches_per_image, matrix64.shape[1])
    matrix32 = matrix64.to(device, torch.float32)

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
            pixels = _admm(matrix32, start.float(), goal.float(), p, iterations, polish, rho, precision=precision,
                           compile_step=compile)
        elif chosen == "highs":
            pixels = torch.from_numpy(_highs(matrix64.numpy(), start.double().cpu().numpy(),
                                             goal.double().cpu().numpy(), show_progress)).to(start)
        else:
            solved, violation = _slsqp(matrix64.numpy(), start.double().cpu().numpy(), goal.double().cpu().numpy(),
                                       p, maxiter, show_progress)
            pixels = torch.from_numpy(solved).to(start)
            box = max(box, violation)  # before the clip: the clipped pixels are in [0, 1] by construction
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


def evaluate(model: nn.Module, images: torch.Tensor, mark: torch.Tensor, *, device: str | torch.device | None = None,
             batch_size: int = 500, **solver_options) -> dict[str, dict[str, float]]:
    """Watermark ``images`` and measure, per condition, what the model's predictions do (paper A.2).

    Conditions, each against the clean images under the same treatment:
    ``exact`` (our solver, float), ``exact_8bit`` (saved as 8-bit PNG; compared with the clean image
    rounded too), ``clean_8bit`` (rounding the clean image alone), ``naive_std`` (nullspace of W
    alone, ignoring the per-channel std), ``resized`` (watermarked, then resized by 8/7 and centre
    cropped, as an eval pipeline might; the clean image gets the same treatment). Each also reports
    the PSNR of the watermarked image against the original. Runs on ``device``, by default where the
    model is; the caller's model is back on its own device (and in its own mode) afterwards.
    """
    device = torch.device(device) if device is not None else model_device(model)
    with models.evaluating(model, device) as on_device:
        return _evaluate(on_device, images.to(device), mark.to(device), device, batch_size, solver_options)


def _evaluate(model: nn.Module, images: torch.Tensor, mark: torch.Tensor, device: torch.device, batch_size: int,
              solver_options: dict) -> dict[str, dict[str, float]]:
    """:func:`evaluate` with the model, images and mark already on ``device``."""
    from nullspace_utils.data import quantize_8bit
    from nullspace_utils.metrics import compare_predictions, psnr
    from nullspace_utils.models import ImageClassifier

    def watermark_all(solver_model: nn.Module) -> torch.Tensor:
        parts = [embed(solver_model, images[s : s + batch_size], mark[s : s + batch_size] if mark.ndim == 4 else mark,
                       device=device, **solver_options).image
                 for s in range(0, len(images), batch_size)]
        return torch.cat(parts)

    def resize_crop(batch: torch.Tensor) -> torch.Tensor:
        size = batch.shape[-1]
        bigger = torch.nn.functional.interpolate(batch, scale_factor=8 / 7, mode="bilinear", align_corners=False)
        offset = (bigger.shape[-1] - size) // 2
        return bigger[..., offset : offset + size, offset : offset + size].clamp(0, 1)

    marked = watermark_all(model)
    net = models.unwrap(model)
    naive_model = ImageClassifier(net, getattr(model, "mean", (0.0,) * 3), (1.0,) * images.shape[1])
    naive = watermark_all(naive_model)
    results = {
        "exact": {**compare_predictions(model, images, marked), "psnr": psnr(images, marked)},
        "exact_8bit": {**compare_predictions(model, quantize_8bit(images), quantize_8bit(marked)),
                       "psnr": psnr(images, quantize_8bit(marked))},
        "clean_8bit": {**compare_predictions(model, images, quantize_8bit(images)),
                       "psnr": psnr(images, quantize_8bit(images))},
        "naive_std": {**compare_predictions(model, images, naive), "psnr": psnr(images, naive)},
        "resized": {**compare_predictions(model, resize_crop(images), resize_crop(marked)),
                    "psnr": psnr(images, marked)},
    }
    return results
