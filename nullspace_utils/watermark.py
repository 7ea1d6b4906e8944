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
- ``"slsqp"``: the paper's own method (scipy SLSQP in λ), for comparison only: it is very slow.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from nullspace_utils import exact
from nullspace_utils.data import check_finite, check_images
from nullspace_utils import models
from nullspace_utils.models import model_device

__all__ = ["WatermarkResult", "embed", "solve_patches", "evaluate", "compare_predictions", "text_mark", "to_patches", "from_patches", "SOLVERS"]

SOLVERS = ("auto", "admm", "highs", "slsqp")


@dataclass
class WatermarkResult:
    """What :func:`embed` returns. Tensors have the batch shape of the input image."""

    image: torch.Tensor  # the watermarked image(s), in [0, 1]
    noise: torch.Tensor  # image - original: nullspace noise, patch by patch
    objective: torch.Tensor  # per image: sum over patches of ||y - m||_1 (p=1) or ||y - m||_2^2 (p=2)
    embedding_residual: float  # max |W_pix (y - x)| over all patches: 0 up to float error
    box_violation: float  # max distance of a pixel outside [0, 1]
    seconds: float
    solver: str
    iterations: int


def to_patches(images: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * H/r * W/r, C*r*r), each row ordered like ``patch.reshape(-1)`` for (C, r, r)."""
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // r, r, w // r, r).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(b * (h // r) * (w // r), c * r * r)


def from_patches(patches: torch.Tensor, shape: tuple[int, int, int, int], r: int) -> torch.Tensor:
    """Inverse of :func:`to_patches` for an image batch of ``shape`` (B, C, H, W)."""
    b, c, h, w = shape
    grid = patches.reshape(b, h // r, w // r, c, r, r).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(b, c, h, w)


# --------------------------------------------------------------------------- fast solver
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


def _admm(matrix: torch.Tensor, start: torch.Tensor, mark: torch.Tensor, p: int, iterations: int,
          polish: int, rho: float, alpha: float = 1.6, tol: float = 1e-5) -> tuple[torch.Tensor, int]:
    """Batched, over-relaxed ADMM over the rows of ``start``/``mark`` (P, n); returns feasible pixels.

    Splitting: y in the affine set {W y = W x}, z in the box with the objective; y = z at the end.
    Stops early when the primal and dual residuals (max norm) fall below ``tol``.
    """
    dtype = start.dtype
    _check_independent_rows(matrix)
    gram = matrix @ matrix.T
    back = torch.linalg.solve(gram, matrix)  # (d, n): (W W^T)^{-1} W

    def project_affine(values: torch.Tensor) -> torch.Tensor:
        return values - ((values - start) @ matrix.T) @ back

    def prox(values: torch.Tensor, step: float) -> torch.Tensor:
        if p == 1:
            shifted = values - mark
            return (mark + torch.sign(shifted) * (shifted.abs() - step).clamp_min(0)).clamp(0, 1)
        return ((mark * step + values) / (1 + step)).clamp(0, 1)

    z = start.clone()
    u = torch.zeros_like(start)
    used = iterations
    for step in range(iterations):
        y = project_affine(z - u)
        relaxed = alpha * y + (1 - alpha) * z
        z_next = prox(relaxed + u, 1.0 / rho)
        u = u + relaxed - z_next
        if (step + 1) % 25 == 0:
            primal = (y - z_next).abs().max().item()
            dual = rho * (z_next - z).abs().max().item()
            if primal < tol and dual < tol:
                z, used = z_next, step + 1
                break
        z = z_next
    # Polish: alternating projections between the affine set and the box converge to a point of
    # their intersection (non-empty: the original patch is in it). End on the affine set in float64
    # so the embeddings match to float error, then clamp the (tiny) box overshoot.
    y = z
    for _ in range(polish):
        y = project_affine(y).clamp(0, 1)
    start64, y64, m64 = start.double(), y.double(), matrix.double()
    y64 = y64 - ((y64 - start64) @ m64.T) @ torch.linalg.solve(m64 @ m64.T, m64)
    return y64.clamp(0, 1).to(dtype), used


# --------------------------------------------------------------------------- reference solvers
def _highs(matrix: np.ndarray, start: np.ndarray, mark: np.ndarray) -> np.ndarray:
    """Solve the p = 1 LP of every row exactly with HiGHS; variables [y (n), t (n)], t >= |y - m|."""
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, identity

    n = matrix.shape[1]
    eye = identity(n, format="csr")
    a_ub = bmat([[eye, -eye], [-eye, -eye]], format="csr")
    a_eq = bmat([[csr_matrix(matrix), csr_matrix((matrix.shape[0], n))]], format="csr")
    cost = np.concatenate([np.zeros(n), np.ones(n)])
    bounds = [(0.0, 1.0)] * n + [(0.0, None)] * n
    out = np.empty_like(start)
    for row in range(start.shape[0]):
        result = linprog(cost, A_ub=a_ub, b_ub=np.concatenate([mark[row], -mark[row]]), A_eq=a_eq,
                         b_eq=matrix @ start[row], bounds=bounds, method="highs")
        if result.status != 0:
            raise RuntimeError(f"HiGHS failed on patch {row}: {result.message}")
        out[row] = result.x[:n]
    return out


def _slsqp(matrix: np.ndarray, start: np.ndarray, mark: np.ndarray, p: int, maxiter: int) -> np.ndarray:
    """The paper's formulation: SLSQP in the nullspace coordinates λ, per patch (slow)."""
    from scipy.optimize import minimize

    from nullspace_utils import linalg

    basis = linalg.nullspace(matrix)  # (n, k)
    out = np.empty_like(start)
    for row in range(start.shape[0]):
        x, m = start[row], mark[row]

        def objective(lam: np.ndarray) -> float:
            diff = x + basis @ lam - m
            return float(np.abs(diff).sum() if p == 1 else diff @ diff)

        constraints = [{"type": "ineq", "fun": lambda lam: x + basis @ lam, "jac": lambda lam: basis},
                       {"type": "ineq", "fun": lambda lam: 1.0 - x - basis @ lam, "jac": lambda lam: -basis}]
        result = minimize(objective, np.zeros(basis.shape[1]), method="SLSQP", constraints=constraints,
                          options={"maxiter": maxiter})
        out[row] = np.clip(x + basis @ result.x, 0.0, 1.0)
    return out


# --------------------------------------------------------------------------- public API
def _check_solver_settings(*, iterations: int, polish: int, rho: float) -> None:
    """ADMM's settings: a positive, finite step size ``rho`` and non-negative whole iteration counts."""
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho (ADMM's step size) must be a positive finite number, got {rho!r}; the default 10 "
                         "works for images in [0, 1].")
    for name, value in (("iterations", iterations), ("polish", polish)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}.")


def solve_patches(matrix: torch.Tensor, start: torch.Tensor, target: torch.Tensor, *, p: int = 1,
                  iterations: int = 300, polish: int = 50, rho: float = 10.0) -> torch.Tensor:
    """The fast solver on raw rows: min ||y - target||_p s.t. matrix @ y = matrix @ start, 0 <= y <= 1.

    ``matrix`` is (d, n); ``start`` and ``target`` are (P, n) with ``start`` in [0, 1]. This is
    eq. (7) of the paper written in pixels, for any linear map, e.g. a 1 x 2 toy matrix.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}.")
    if start.ndim != 2 or start.shape != target.shape or matrix.ndim != 2 or matrix.shape[1] != start.shape[1]:
        raise ValueError(f"need matrix (d, n) and start/target (P, n); got {tuple(matrix.shape)}, "
                         f"{tuple(start.shape)}, {tuple(target.shape)}.")
    _check_solver_settings(iterations=iterations, polish=polish, rho=rho)
    check_finite(start, name="start")
    check_finite(target, name="target")
    pixels, _ = _admm(matrix.to(start), start, target.to(start), p, iterations, polish, rho)
    return pixels


def embed(
    model: nn.Module,
    image: torch.Tensor,
    mark: torch.Tensor,
    *,
    p: int = 1,
    solver: str = "auto",
    strength: float = 1.0,
    iterations: int = 300,
    polish: int = 50,
    rho: float = 10.0,
    maxiter: int = 100,
    device: str | torch.device | None = None,
) -> WatermarkResult:
    """Overlay ``mark`` on ``image`` through the nullspace of ``model``'s patch embedding (paper eq. 7).

    ``image`` is (C, H, W) or (B, C, H, W) in [0, 1]; ``mark`` has the same shape or broadcasts to it
    (one mark for a whole batch). ``strength`` in (0, 1] blends the target: the solver aims at
    ``(1 - strength) * image + strength * mark``. The result has exactly the patch embeddings of the
    original (``embedding_residual`` is float error) and lies in [0, 1]. The solver runs on ``device``,
    by default the model's; the image comes back on the device of ``image``.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (an LP, the paper's choice) or 2 (a QP), got {p}.")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}.")
    _check_solver_settings(iterations=iterations, polish=polish, rho=rho)
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
    exact.patch_nullspace(model)  # raises NoNullspaceError with the numbers when there is none
    matrix64 = exact.patch_embedding_matrix(model)
    target = (1.0 - strength) * images + strength * marks
    device = torch.device(device) if device is not None else model_device(model)

    started = time.perf_counter()
    start = to_patches(images.to(device), r)
    goal = to_patches(target.to(device), r)
    chosen = "admm" if solver == "auto" else solver
    if chosen == "admm":
        pixels, steps = _admm(matrix64.to(device, torch.float32), start.float(), goal.float(), p,
                              iterations, polish, rho)
    elif chosen == "highs":
        if p != 1:
            raise ValueError("solver='highs' solves the p = 1 linear program; use solver='admm' for p = 2.")
        pixels = torch.from_numpy(_highs(matrix64.numpy(), start.double().cpu().numpy(),
                                         goal.double().cpu().numpy())).to(start)
        steps = 0
    else:
        warnings.warn("solver='slsqp' reproduces the paper's method and takes minutes per patch at ViT "
                      "scale; use it for comparison only.", stacklevel=2)
        pixels = torch.from_numpy(_slsqp(matrix64.numpy(), start.double().cpu().numpy(),
                                         goal.double().cpu().numpy(), p, maxiter)).to(start)
        steps = maxiter
    seconds = time.perf_counter() - started

    residual = ((pixels.double() - start.double()) @ matrix64.to(device).T).abs().max().item()
    box = max((-pixels).clamp_min(0).max().item(), (pixels - 1).clamp_min(0).max().item())
    diff = (pixels - goal).double()
    per_patch = diff.abs().sum(1) if p == 1 else (diff**2).sum(1)
    objective = per_patch.reshape(images.shape[0], -1).sum(1)
    watermarked = from_patches(pixels, tuple(images.shape), r).to(images.device, images.dtype)
    noise = watermarked - images
    if not batched:
        watermarked, noise, objective = watermarked[0], noise[0], objective[0]
    return WatermarkResult(watermarked, noise, objective.cpu(), residual, box, seconds, chosen, steps)


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


@torch.no_grad()
def compare_predictions(model: nn.Module, clean: torch.Tensor, changed: torch.Tensor, *,
                        batch_size: int = 256) -> dict[str, float]:
    """How much ``changed`` images move the model's output relative to ``clean`` ones (paper A.2).

    Returns ``match`` (fraction of unchanged top-1 predictions), ``prob_change`` (mean absolute change
    of the probability of the clean prediction, the paper's "difference in confidence"),
    ``logit_change_max`` and ``logit_change_mean`` (largest and mean per-image max absolute logit change).
    """
    matches, prob_changes, logit_changes = [], [], []
    for start in range(0, len(clean), batch_size):
        before = model(clean[start : start + batch_size])
        after = model(changed[start : start + batch_size])
        predicted = before.argmax(1)
        matches.append(after.argmax(1) == predicted)
        p_before = before.softmax(1).gather(1, predicted[:, None])[:, 0]
        p_after = after.softmax(1).gather(1, predicted[:, None])[:, 0]
        prob_changes.append((p_before - p_after).abs())
        logit_changes.append((after - before).abs().amax(1))
    logit = torch.cat(logit_changes)
    return {"match": torch.cat(matches).float().mean().item(), "prob_change": torch.cat(prob_changes).mean().item(),
            "logit_change_max": logit.max().item(), "logit_change_mean": logit.mean().item()}


def evaluate(model: nn.Module, images: torch.Tensor, mark: torch.Tensor, *, device: str | torch.device | None = None,
             batch_size: int = 500, **solver_options) -> dict[str, dict[str, float]]:
    """Watermark ``images`` and measure, per condition, what the model's predictions do (paper A.2).

    Conditions, each against the clean images under the same treatment:
    ``exact`` (our solver, float), ``exact_8bit`` (saved as 8-bit PNG; compared with the clean image
    rounded too), ``clean_8bit`` (rounding the clean image alone), ``naive_std`` (nullspace of W
    alone, ignoring the per-channel std), ``resized`` (watermarked, then resized by 8/7 and centre
    cropped, as an eval pipeline might; the clean image gets the same treatment). Each also reports
    the PSNR of the watermarked image against the original. Runs on ``device`` (the model is moved
    there), by default where the model is.
    """
    from nullspace_utils.data import psnr, quantize_8bit
    from nullspace_utils.models import ImageClassifier

    device = torch.device(device) if device is not None else model_device(model)
    model = model.to(device)
    images = images.to(device)
    mark = mark.to(device)

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
