r"""A box-constrained solver for affine constraints: for every row of ``start``,

.. math::

    \min_y \lVert y - \text{target} \rVert_p \quad \text{subject to} \quad A y = A\,\text{start},
    \quad 0 \le y \le 1,

with ``A`` a (d, n) matrix of independent rows and p = 1 (a linear program) or p = 2 (a quadratic program).
``start`` is feasible, so the problem always has a solution, and every feasible ``y`` keeps ``A y`` exactly.

The watermark (paper §6, eq. 7 written in pixels: :mod:`nullspace_utils.watermark`) solves it with ``A`` the
patch map ``W_pix`` and ``target`` the mark's patches; the one-channel disguise (§7, A.3:
:mod:`nullspace_utils.fooling`) with ``A`` the free channel's columns, in a box wide enough not to bind.

Solvers:

- :func:`admm` (and :func:`solve_patches`, its checked entry on raw rows): all rows at once in torch. ADMM
  alternates an exact projection onto the affine set (a precomputed :math:`(A A^\top)^{-1} A`), the proximal step of the
  objective restricted to the box (soft-threshold and clamp for p = 1), and a dual update; a final polish
  alternates the two projections and ends on the box.
- :func:`cuda_graphs`: a block inside which :func:`admm` on a GPU records its iterations in a CUDA graph once per
  problem shape and replays them (the folder command line solves its batches this way).
- :func:`highs`: the LP per row with scipy's HiGHS (p = 1 only): the exact reference.
- :func:`slsqp`: SLSQP in the coordinates of the nullspace of ``A``, for comparison only: it is very slow.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from nullspace_utils import models
from nullspace_utils.data import check_finite

__all__ = ["solve_patches", "admm", "highs", "slsqp", "check_settings", "check_independent_rows", "box_violation",
           "cuda_graphs", "RHO", "PRECISIONS"]


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


def check_independent_rows(matrix: torch.Tensor) -> None:
    """Refuse a (patch) map whose rows are linearly dependent: W W^T is then singular (its rank, from the
    eigenvalues of that d x d Gram matrix in float64, is below d) and the projection cannot be formed."""
    if not torch.isfinite(matrix).all():
        raise ValueError("the patch map holds NaN or infinite values (damaged or diverged weights), so it has no "
                         "nullspace: reload the model's weights.")
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


def _correction(values: torch.Tensor, offset: torch.Tensor, matrix_t: torch.Tensor) -> torch.Tensor:
    """W v - W x (P, d) for ``values`` v = z - u: how far v is from the affine set {W y = W x}, in its d
    coordinates (``matrix_t`` = W^T, possibly in a lower precision)."""
    if matrix_t.dtype == values.dtype:  # float32 (or TF32) matmul, fused with the subtraction
        return torch.addmm(offset, values, matrix_t, beta=-1)
    return (values.to(matrix_t.dtype) @ matrix_t).float() - offset  # bfloat16 matmul, float32 around it


def _admm_step(z: torch.Tensor, a: torch.Tensor, correction: torch.Tensor, offset: torch.Tensor,
               target: torch.Tensor, matrix_t: torch.Tensor, back: torch.Tensor, rho: torch.Tensor | float,
               u_scale: torch.Tensor | float, alpha: float, p: int, compiled: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One over-relaxed ADMM iteration on all rows (``rho``, ``u_scale``: numbers, or 0-d tensors when compiled).

    The state is z and a = z - u, with u the scaled dual variable (it is never stored: a is what the projection
    needs). y: projection of a onto {W y = W x}, y = a - C B with C = ``correction`` (:func:`_correction`) and
    B = ``back`` = (W W^T)^{-1} W, both possibly in a lower precision; z: proximal step of the objective inside the
    box; u: the dual update, times ``u_scale`` (the step size's growth is 1 / ``u_scale``). y is never written out:
    the over-relaxed point alpha y + (1 - alpha) z + u is (2 - alpha) z + (alpha - 1) a - alpha C B, one matmul.
    Returns z, a and the next iteration's C. ``compiled``: the step runs under ``torch.compile``, which fuses
    everything after the first matmul into one kernel (so that matmul is written without the bias that eager mode
    fuses into it). Passes over the (P, n) arrays: 22 in eager mode and 8 compiled (the first matmul's output
    written; it, z, a and the target read; z and a written; a read by the second matmul), where the form that
    carried u took 22 (24 in every fifth iteration) and 9, and the one that also wrote y 25 and 12 (passes, more
    than the two matmuls, set the time of an iteration on a GPU).
    """
    if compiled or back.dtype != z.dtype:  # one matmul (bfloat16 or not), the rest elementwise around it
        shifted = torch.add((2 - alpha) * z, a, alpha=alpha - 1).sub_(
            (correction.to(back.dtype) @ back).float(), alpha=alpha)
    else:  # eager float32: the bias (2 - alpha) z inside the matmul
        shifted = torch.addmm(z, correction, back, beta=2 - alpha, alpha=-alpha).add_(a, alpha=alpha - 1)
    if p == 1:  # soft threshold at 1/rho around the target: shifted - clamp(shifted - target, -1/rho, 1/rho)
        threshold = 1 / rho
        z_next = shifted - (shifted - target).clamp_(-threshold, threshold)  # type: ignore[arg-type]  # both work
    else:  # argmin 1/2 ||z - target||^2 + rho/2 ||z - shifted||^2 (halving the objective moves no minimiser)
        z_next = torch.lerp(shifted, target, 1 / (1 + rho))
    z_next.clamp_(0, 1)
    u_next = shifted.sub_(z_next)  # before its scaling
    if isinstance(u_scale, torch.Tensor):
        a_next = z_next - u_next * u_scale
    else:
        a_next = torch.sub(z_next, u_next, alpha=u_scale)
    return z_next, a_next, _correction(a_next, offset, matrix_t)


def admm(matrix: torch.Tensor, start: torch.Tensor, target: torch.Tensor, p: int, iterations: int, polish: int,
         rho: float | tuple[float, float], alpha: float = 1.6, precision: str = "float32",
         compile_step: bool = False, warm_start: bool = True, out_dtype: torch.dtype = torch.float32
         ) -> torch.Tensor:
    """Batched, over-relaxed ADMM with a growing step over the rows of ``start``/``target`` (P, n) in float32.

    Splitting: y in the affine set {W y = W x}, z in the box with the objective; y = z at the end. Warm
    start: the target projected onto the affine set, clamped to the box (``warm_start=False`` starts from the
    original row, as this solver did before; kept for the benchmark). Returns feasible pixels in ``out_dtype``
    (float64 keeps the float64 polish's exactness; float32 rounds it to float32 resolution). ``precision``: that of
    the two projection matmuls on a GPU (``PRECISIONS``); ``compile_step``: fuse each
    iteration with ``torch.compile``. Nothing is checked here: :func:`solve_patches` is the checked entry.
    """
    gram = matrix @ matrix.T
    back = torch.linalg.solve(gram, matrix)  # (d, n): (W W^T)^{-1} W, float32
    offset = start @ matrix.T  # (P, d): W x
    graphs = _CUDA_GRAPHS.get()
    if graphs is not None and _records_graphs(start.device) and not compile_step:
        z = _replayed_iterations(graphs, matrix, back, offset, start, target, p, iterations, rho, alpha, precision,
                                 warm_start)
    else:
        z = _iterations(matrix, back, offset, start, target, p, iterations, rho, alpha, precision, compile_step,
                        warm_start)
    return _polish(z, start, matrix, back, offset, polish).to(out_dtype)


def _iterations(matrix: torch.Tensor, back: torch.Tensor, offset: torch.Tensor, start: torch.Tensor,
                target: torch.Tensor, p: int, iterations: int, rho: float | tuple[float, float], alpha: float,
                precision: str, compile_step: bool, warm_start: bool) -> torch.Tensor:
    """ADMM's iterations (:func:`admm`, before the polish): the box-side iterate z after the last one."""
    z = (target - (target @ matrix.T - offset) @ back).clamp(0, 1) if warm_start else start.clone()
    a = z.clone()  # z - u, with the dual variable u = 0 at the start
    first, growth = _rho_schedule(rho, iterations)
    # compiled: rho as a 0-d tensor, so the graph is not recompiled as it grows; eager: a number (clamp with
    # tensor bounds takes a slow path on the CPU)
    rho_now: torch.Tensor | float = torch.tensor(first, device=start.device) if compile_step else first
    # the dual variable shrinks as the step grows (u = y / rho): scaled inside the step that ends an update period
    u_scales: tuple[torch.Tensor | float, torch.Tensor | float] = (
        (torch.tensor(1.0, device=start.device), torch.tensor(1 / growth, device=start.device)) if compile_step
        else (1.0, 1 / growth))
    step = torch.compile(_admm_step, dynamic=False) if compile_step else _admm_step
    with _matmul_precision(precision, start.device) as low:
        matrix_t, back_low = matrix.T.contiguous().to(low), back.to(low)
        correction = _correction(a, offset, matrix_t)
        for iteration in range(iterations):
            update = (iteration + 1) % RHO_UPDATE_EVERY == 0
            z, a, correction = step(z, a, correction, offset, target, matrix_t, back_low, rho_now, u_scales[update],
                                    alpha, p, compile_step)
            if update:
                rho_now = rho_now * growth
    return z


# --------------------------------------------------------------------------- CUDA graphs
#: The graphs :func:`cuda_graphs` keeps while its block runs (``None`` outside one): per problem shape and
#: settings, the captured graph, its input tensors (copied into before each replay) and its output z.
_CUDA_GRAPHS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nullspace_cuda_graphs", default=None)
_RECORDING = threading.Lock()  # one CUDA graph recording at a time in the process


@contextlib.contextmanager
def cuda_graphs() -> Iterator[None]:
    """Inside this block, :func:`admm` on a GPU (not compiled) records its iterations in a CUDA graph once per
    problem shape and settings, and replays that graph at later calls of the same shape: one launch for all
    iterations instead of about ten per iteration, so the iterations no longer wait for Python between launches
    (which other threads holding the interpreter's lock can delay: the folder command line's readers and writers).
    The answer is the same solve's up to rounding (the same operations; a GPU may pick other matmul kernels, and
    with TF32 or bfloat16 matmuls the iterates may then differ a little more).

    The graphs keep their memory (the iterates of their problem size, a few copies of the patch rows) until the
    block ends, when they are released: each shape holds its own, so a last, shorter batch adds another. A new
    shape costs a short warm-up and the recording, not a solve. Blocks nest (the outer block's graphs are kept) and
    belong to the thread or context that opened them; one recording runs at a time in the process. Compiled
    iterations (``compile_step``) are not recorded.
    """
    if _CUDA_GRAPHS.get() is not None:  # nested: the outer block keeps and releases the graphs
        yield
        return
    token = _CUDA_GRAPHS.set({})
    try:
        yield
    finally:
        _CUDA_GRAPHS.reset(token)


def _replayed_iterations(graphs: dict, matrix: torch.Tensor, back: torch.Tensor, offset: torch.Tensor,
                         start: torch.Tensor, target: torch.Tensor, p: int, iterations: int,
                         rho: float | tuple[float, float], alpha: float, precision: str, warm_start: bool
                         ) -> torch.Tensor:
    """:func:`_iterations` through a CUDA graph of ``graphs`` (recorded at the first call of this shape and these
    settings). The returned z is the graph's output tensor: read it before the next replay (the polish does)."""
    # everything the recorded work depends on: shapes, dtypes, settings, and the TF32 switch a float32 matmul reads
    key = (start.device, tuple((tensor.dtype, tuple(tensor.shape)) for tensor in (matrix, start, target)), p,
           iterations, str(rho), alpha, precision, warm_start, torch.backends.cuda.matmul.allow_tf32)
    entry = graphs.get(key)
    inputs = {"matrix": matrix, "back": back, "offset": offset, "start": start, "target": target}
    if entry is None:
        static = {name: tensor.clone() for name, tensor in inputs.items()}

        def record(steps: int) -> torch.Tensor:
            return _iterations(static["matrix"], static["back"], static["offset"], static["start"],
                               static["target"], p, steps, rho, alpha, precision, False, warm_start)

        replay, output = _record_cuda_graph(lambda: record(iterations), lambda: record(RHO_UPDATE_EVERY),
                                            start.device)
        entry = graphs[key] = (replay, static, output)
    replay, static, output = entry
    for name, tensor in inputs.items():
        static[name].copy_(tensor)
    replay()
    return output


def _records_graphs(device: torch.device) -> bool:
    """Whether :func:`cuda_graphs` records on ``device``: on GPUs only."""
    return device.type == "cuda"


def _record_cuda_graph(work: Callable[[], torch.Tensor], warm_up: Callable[[], object], device: torch.device
                       ) -> tuple[Callable[[], None], torch.Tensor]:
    """Record ``work`` in a CUDA graph on ``device``: (the graph's replay, launched on the current stream of
    ``device`` even when another GPU is the current one, and its output tensor). ``warm_up`` runs
    first, outside the graph, on the side stream the recording then uses, so that lazy set-up (cuBLAS workspaces)
    is not recorded (PyTorch's CUDA graph notes). ``device`` is made the current device (the recording stream and
    its memory are that GPU's). Only this thread's CUDA calls are checked during the recording
    (``capture_error_mode="thread_local"``): other threads (``embed``'s copy threads) may go on using the GPU; one
    recording at a time in the process."""
    with _RECORDING, torch.cuda.device(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            warm_up()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            output = work()

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay, output


def _polish(pixels: torch.Tensor, start: torch.Tensor, matrix: torch.Tensor, back: torch.Tensor,
            offset: torch.Tensor, most: int) -> torch.Tensor:
    """Make ``pixels`` exactly feasible: alternate projections onto the affine set and the box (they converge
    to a point of the intersection, which is not empty: the original patch is in it), row by row, until a row's
    projection overshoots the box by less than ``POLISH_TOLERANCE`` or ``most`` rounds have run; then one
    projection in float64, so the embeddings match to float64 error, and a clamp of the (tiny) remaining overshoot.

    Rows are checked every fifth round, and a row that is done leaves the rounds: the next rounds multiply only the
    rows still moving. (When the stop waited for every row to be done at one check, on an H100 all 192,325 patch
    rows of 3925 images ran the 50 rounds of two float32 matmuls, more time than the 100 compiled ADMM iterations;
    with the stop per row, the polish took 0.41-0.44x its time before, one run on one H100:
    ``benchmarks/results/watermark_gpu_polish_change.json``.)"""
    y = pixels.clone()
    moving = torch.arange(y.shape[0], device=y.device)  # the rows still iterating
    rows, rows_offset = y, offset
    for round_ in range(most):
        projected = rows - (rows @ matrix.T - rows_offset) @ back
        if round_ % 5 == 4:
            done = (projected - projected.clamp(0, 1)).abs().amax(1) < POLISH_TOLERANCE
            if bool(done.any()):  # done rows keep their (unclamped) projection; the others go on
                y.index_copy_(0, moving[done], projected[done])
                going = ~done
                moving, rows_offset, projected = moving[going], rows_offset[going], projected[going]
                if not moving.numel():
                    break
        rows = projected.clamp_(0, 1)
    if moving.numel() and rows is not y:  # (most = 0: y as it came)
        y.index_copy_(0, moving, rows)
    start64, y64, matrix64 = start.double(), y.double(), matrix.double()
    y64 = y64 - ((y64 - start64) @ matrix64.T) @ torch.linalg.solve(matrix64 @ matrix64.T, matrix64)
    return y64.clamp(0, 1)


# --------------------------------------------------------------------------- reference solvers
def highs(matrix: np.ndarray, start: np.ndarray, target: np.ndarray, show_progress: bool = False,
          method: str = "highs") -> np.ndarray:
    """Solve the p = 1 LP of every row exactly with HiGHS; variables [y (n), t (n)], t >= ``|y - m|``.

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
        result = linprog(cost, A_ub=a_ub, b_ub=np.concatenate([target[row], -target[row]]), A_eq=a_eq,
                         b_eq=matrix @ start[row], bounds=bounds, method=method)
        if result.status != 0:
            raise RuntimeError(f"HiGHS failed on patch {row}: {result.message}")
        out[row] = result.x[:n]
    return out


def slsqp(matrix: np.ndarray, start: np.ndarray, target: np.ndarray, p: int, maxiter: int,
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
        x, m = start[row], target[row]

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


# --------------------------------------------------------------------------- checks and the checked entry
def check_settings(*, iterations: int, polish: int, rho: float | tuple[float, float],
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
    check_settings(iterations=iterations, polish=polish, rho=rho)
    check_finite(start, name="start")
    check_finite(target, name="target")
    check_independent_rows(matrix)
    start64 = start.double()
    pixels = admm(matrix.to(start.device, torch.float32), start.float(), target.to(start.device, torch.float32),
                   p, iterations, polish, rho, out_dtype=torch.float64)
    # the last projection once more from the float64 start itself: the float32 copy of it that ADMM saw
    # differs by float32 rounding, which would otherwise show in the embedding
    matrix64 = matrix.to(start.device, torch.float64)
    pixels = pixels - ((pixels - start64) @ matrix64.T) @ torch.linalg.solve(matrix64 @ matrix64.T, matrix64)
    return pixels.clamp(0, 1).to(start.dtype)
