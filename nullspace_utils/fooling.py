r"""Images that look like a *target* but that a ViT sees as the *source* (paper §7 and A.3).

Drop the [0, 1] box of the watermark problem and fix two of the three colour channels to the
target's. Only one channel (red, by default, as in the paper) stays free. Per patch, the ViT's
embedding is :math:`W_{\text{pix}} p + b` (see :mod:`nullspace_utils.exact`); splitting the columns of
:math:`W_{\text{pix}}` by channel, :math:`W_{\text{pix}} p = W_{\text{free}} p_{\text{free}} + W_{\text{fixed}}
p_{\text{fixed}}`. Asking that the transformed patch embeds exactly like the source patch gives, for each patch,
a linear system of d equations in :math:`r^2` unknowns (the free channel's pixels):

.. math::

    W_{\text{free}}\, p_{\text{free}} = W_{\text{pix}}\, p_{\text{source}} - W_{\text{fixed}}\, t_{\text{fixed}}.

When d < r*r it has many solutions; we take the one closest to the target's own free channel, so the
image looks as much like the target as the constraint allows. "Closest" in which norm: A.3 says the
details are those of watermarking, whose A.2 uses p = 1, so the paper's solution minimises
:math:`\lVert p_{\text{free}} - t_{\text{free}} \rVert_1` (``p=1``: a linear program, solved by the watermark chapter's LP solver
:func:`nullspace_utils.box_solver.solve_patches`). The default ``p=2`` is the closed form of the
L2 problem (the minimum-norm correction from a pseudo-inverse): exact, instant, and spread over all
pixels where p = 1 concentrates the change on fewer pixels. When d = r*r (the square case, e.g. the zoo's widest ViT or
vit_large_patch32_224) the solution is unique. When d > r*r no exact solution exists in general.

The tokens after the patch embedding are then identical, so every later layer, the logits, and any
explanation computed from the tokens onwards are those of the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from nullspace_utils import box_solver, exact, linalg
from nullspace_utils.data import check_images

__all__ = ["EXACT_RESIDUAL", "ChannelChange", "DisguiseResult", "NoExactDisguiseError", "PredictionCheck", "channel_change",
           "check_predictions", "disguise", "free_channel_matrices"]

SOLUTIONS = ("least_change", "least_norm")

#: the largest relative embedding residual :func:`disguise` calls exact: float32 rounding of an exact solution
#: gives about 3e-8 on the zoo ViT-S, float16 2e-4 and bfloat16 2e-3 (measured), which are not exact
EXACT_RESIDUAL = 1e-6


class NoExactDisguiseError(ValueError):
    """The free channel has fewer unknowns than the embedding has equations (d > r*r)."""


@dataclass
class DisguiseResult:
    """What :func:`disguise` returns. Tensors have the batch shape of ``source``."""

    image: torch.Tensor  # the transformed image(s): the target's fixed channels, a solved free channel
    channel: int  # the free channel
    bounded: bool  # whether the free channel was kept in [0, 1]
    embedding_residual: torch.Tensor  # per image: ||E(image) - E(source)|| / ||E(source)|| (linear part), of the
    # returned image in its dtype
    exact: bool  # True when every image's residual is below EXACT_RESIDUAL (float32 rounding or better)
    out_of_box: float  # fraction of the free channel's values outside [0, 1] (0 when bounded)


def free_channel_matrices(model: nn.Module, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (d, r*r) columns of the pixel-space patch matrix for ``channel`` and the (d, 2 r*r) rest."""
    return _split_columns(exact.patch_embedding_matrix(model), exact.patch_embedding_layer(model).in_channels, channel)


def _split_columns(matrix: torch.Tensor, channels: int, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns of a (d, C r*r) patch matrix that act on ``channel``, and the others, in channel order."""
    if not 0 <= channel < channels:
        raise ValueError(f"channel must be 0..{channels - 1} (0 red, 1 green, 2 blue), got {channel}.")
    per_channel = matrix.shape[1] // channels
    columns = torch.arange(matrix.shape[1]).reshape(channels, per_channel)
    free = columns[channel]
    fixed = torch.cat([columns[c] for c in range(channels) if c != channel])
    return matrix[:, free], matrix[:, fixed]


def _check_images(source: torch.Tensor, target: torch.Tensor, r: int) -> None:
    check_images(source, name="source")  # float in [0, 1]: an 8-bit image is refused with the fix
    check_images(target, name="target")
    if source.shape != target.shape:
        raise ValueError(f"source and target must have the same shape, got {tuple(source.shape)} and "
                         f"{tuple(target.shape)}; resize the target to the source's size first.")
    if source.ndim != 4:
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(source.shape)}.")
    height, width = source.shape[-2:]
    if height % r or width % r:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {r}; crop or resize it "
                         "so the model's patches tile the image.")


def _bounded_objective(free: torch.Tensor, rhs: torch.Tensor, start: torch.Tensor, x: torch.Tensor,
                       ridge: float) -> torch.Tensor:
    """Per patch: ||W_free x - rhs||^2 + ridge * ||W_free||_2^2 * ||x - start||^2."""
    scale = ridge * torch.linalg.matrix_norm(free, ord=2) ** 2
    return ((x @ free.T - rhs) ** 2).sum(1) + scale * ((x - start) ** 2).sum(1)


def _bounded_solve(free: torch.Tensor, rhs: torch.Tensor, start: torch.Tensor, ridge: float,
                   iterations: int) -> torch.Tensor:
    """All patches at once: the free channel in [0, 1] closest to the required embedding.

    Minimises :func:`_bounded_objective` subject to 0 <= x <= 1 by accelerated projected gradient
    (FISTA, step 1/L with L the gradient's Lipschitz constant), batched over patches in float64. The
    small ridge term picks, among near-equal fits, the one closest to the target's channel.
    scipy's ``lsq_linear`` solves the same problem patch by patch (the reference in the tests) but
    takes minutes per image.
    """
    gram = free.T @ free
    weight = ridge * torch.linalg.matrix_norm(free, ord=2) ** 2
    lipschitz = 2 * (torch.linalg.matrix_norm(free, ord=2) ** 2 + weight)
    linear = rhs @ free  # (P, r r)
    x = start.clamp(0, 1)
    y, t = x.clone(), 1.0
    for _ in range(iterations):
        gradient = 2 * (y @ gram - linear) + 2 * weight * (y - start)
        x_next = (y - gradient / lipschitz).clamp(0, 1)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = x_next + ((t - 1) / t_next) * (x_next - x)
        x, t = x_next, t_next
    return x


def _l1_solve(free: torch.Tensor, feasible: torch.Tensor, goal: torch.Tensor, iterations: int) -> torch.Tensor:
    """Per patch: min ||x - goal||_1 subject to free @ x = free @ feasible, with no bounds on x (paper A.2, A.3).

    The box solver (:func:`nullspace_utils.box_solver.solve_patches`) keeps its unknowns in [0, 1]; in the
    coordinates y = (x - low) / scale of a box [low, low + scale] that holds the feasible point and the goal
    with a wide margin it solves this problem, and the box is checked not to bind (widened tenfold if it does).
    """
    low = min(feasible.min().item(), goal.min().item())
    span = max(feasible.max().item(), goal.max().item()) - low + 1e-12
    for margin in (1.0, 10.0, 100.0):
        bottom, scale = low - margin * span, (1 + 2 * margin) * span
        y = box_solver.solve_patches(free, (feasible - bottom) / scale, (goal - bottom) / scale, p=1,
                                     iterations=iterations)
        if not ((y <= 1e-9) | (y >= 1 - 1e-9)).any():
            return bottom + scale * y
    raise RuntimeError("the L1 disguise kept reaching the solver's box; use p=2.")  # not met on any model tried


def disguise(
    model: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    channel: int = 0,
    bounded: bool = False,
    solution: str = "least_change",
    least_squares: bool = False,
    p: int = 2,
    ridge: float = 1e-6,
    iterations: int | None = None,
) -> DisguiseResult:
    """Make ``target`` embed like ``source`` by changing one colour channel only (paper §7, A.3).

    ``source`` and ``target`` are [0, 1] images (C, H, W) or (B, C, H, W). The channels other than
    ``channel`` are copied from ``target`` exactly. The free channel is solved per patch in float64, and the image
    comes back in the dtype of ``source``; ``embedding_residual`` and ``exact`` are those of the returned image
    (float16 and bfloat16 round an exact solution far above float error: ``exact`` is then False):

    * ``bounded=False`` (the paper's unconstrained study): exactly, as close to the target's channel as
      possible (``solution="least_change"``) or of least norm (``"least_norm"``), in the L2 norm by a
      pseudo-inverse (``p=2``, the default) or in the L1 norm of the paper's A.2/A.3 (``p=1``: a linear
      program per patch, ``iterations`` steps of the box solver's ADMM, default 1000, within about
      0.01 % of the exact LP optimum on the zoo ViT-S, measured against scipy's HiGHS in the tests).
      The values may leave [0, 1]: ``out_of_box`` says how many do. If d > r*r there is no exact solution
      in general: :class:`NoExactDisguiseError`, unless ``least_squares=True``, which returns the
      least-squares fit and reports its ``embedding_residual``.
    * ``bounded=True``: the free channel stays in [0, 1] (a box-constrained least-squares problem per
      patch, solved for all patches at once by ``iterations`` steps of accelerated projected
      gradient, default 500); the embeddings then match only approximately, see ``embedding_residual``.
    """
    if solution not in SOLUTIONS:
        raise ValueError(f"solution must be one of {SOLUTIONS}, got {solution!r}.")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (the paper's L1 objective, A.2/A.3) or 2 (the L2 closed form), got {p!r}.")
    if p == 1 and (bounded or least_squares):
        raise ValueError("p=1 solves the exact (unbounded) disguise only; use p=2 with bounded=True or "
                         "least_squares=True.")
    if iterations is not None and (not isinstance(iterations, int) or iterations < 1):
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}.")
    if not 0 <= ridge < float("inf"):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}.")
    proj = exact.patch_embedding_layer(model)  # raises NotPatchEmbeddingError for CNNs
    r = proj.kernel_size[0]
    single = source.ndim == 3
    source_b = source[None] if single else source
    target_b = target[None] if single else target
    _check_images(source_b, target_b, r)
    matrix = exact.patch_embedding_matrix(model)  # (d, C r r), float64
    free, fixed = _split_columns(matrix, proj.in_channels, channel)
    d, unknowns = free.shape
    if d > unknowns and not (least_squares or bounded):
        raise NoExactDisguiseError(
            f"The embedding has d = {d} equations per patch but the free channel only r*r = {unknowns} unknowns, "
            "so no exact solution exists in general. Pass least_squares=True for the closest fit (its residual "
            "is reported), or free more channels."
        )
    channels = proj.in_channels
    per = r * r
    source_patches = exact.to_patches(source_b.detach().cpu().double(), r)  # (P, C r r)
    target_patches = exact.to_patches(target_b.detach().cpu().double(), r)
    target_channels = target_patches.reshape(-1, channels, per)
    target_free = target_channels[:, channel]
    target_fixed = torch.cat([target_channels[:, c] for c in range(channels) if c != channel], dim=1)
    source_embedding = source_patches @ matrix.T  # (P, d), linear part: the bias and mean term are shared
    rhs = source_embedding - target_fixed @ fixed.T  # (P, d): what W_free must produce
    if bounded:
        solved = _bounded_solve(free, rhs, target_free, ridge, iterations or 500)
    else:
        pinv = torch.linalg.pinv(free, rtol=linalg.default_rtol(free.shape))  # (r r, d)
        start = target_free if solution == "least_change" else torch.zeros_like(target_free)
        solved = start + (rhs - start @ free.T) @ pinv.T
        if p == 1 and d < unknowns:  # d = r*r: the solution is unique, the L2 one
            solved = _l1_solve(free, solved, start, iterations or 1000)
    channels_out = [target_channels[:, c] for c in range(channels)]
    channels_out[channel] = solved
    patches = torch.stack(channels_out, dim=1).reshape(len(solved), channels * per)
    image = exact.from_patches(patches, tuple(source_b.shape), r).to(source.dtype)
    returned = exact.to_patches(image.double(), r)  # the residual of what is returned, rounded to its dtype
    change = ((returned - source_patches) @ matrix.T).reshape(len(source_b), -1)
    residual = change.norm(dim=1) / source_embedding.reshape(len(source_b), -1).norm(dim=1).clamp_min(1e-12)
    exact_solution = bool(residual.max() < EXACT_RESIDUAL)
    out_of_box = ((solved < 0) | (solved > 1)).double().mean().item()
    return DisguiseResult(image=image[0] if single else image, channel=channel, bounded=bounded,
                          embedding_residual=residual.float(), exact=exact_solution, out_of_box=out_of_box)


@dataclass
class ChannelChange:
    """How a disguise changed its free channel away from the target's (what :func:`channel_change` returns)."""

    channel: int  # the free channel (0 red, 1 green, 2 blue)
    l1: float  # sum of |free channel - target's channel| over the batch
    l2: float  # the Euclidean norm of that change
    threshold: float  # the size of change counted in ``changed``
    changed: float  # fraction of the free channel's values changed by more than ``threshold``
    mean_abs: float  # mean |free channel - target's channel|
    low: float  # smallest value of the free channel (unbounded disguises leave [0, 1])
    high: float  # largest value of the free channel
    out_of_box: float  # fraction of the free channel's values outside [0, 1] (the result's own count)


def channel_change(result: DisguiseResult, target: torch.Tensor, *, threshold: float = 0.01) -> ChannelChange:
    """How far ``result`` (a :func:`disguise` of ``target``) moved the free channel from the target's.

    The L1 norm (the paper's objective, ``p=1``) and the L2 norm (``p=2``) of the change, how many values
    it touches, and the range of the free channel, which may leave [0, 1] in the unbounded study (§7).
    """
    free = result.image[..., result.channel, :, :]
    change = free - target[..., result.channel, :, :]
    return ChannelChange(channel=result.channel, l1=change.abs().sum().item(), l2=change.norm().item(),
                         threshold=threshold, changed=(change.abs() > threshold).float().mean().item(),
                         mean_abs=change.abs().mean().item(), low=free.min().item(), high=free.max().item(),
                         out_of_box=result.out_of_box)


@dataclass
class PredictionCheck:
    """What a model predicts for disguised images (what :func:`check_predictions` returns)."""

    source_kept: float  # fraction of the images predicted as their source (1.0: every one)
    target_taken: float  # fraction predicted as their target instead
    max_logit_change: float  # largest |logit(image) - logit(source)| over the batch (float error when exact)


def check_predictions(model: nn.Module, images: torch.Tensor, source: torch.Tensor,
                      target: torch.Tensor) -> PredictionCheck:
    """Does ``model`` see the ``source`` in the disguised ``images`` (paper §7), or the ``target``?

    ``images``, ``source`` and ``target`` are [0, 1] images (C, H, W) or (B, C, H, W) of one shape; each
    batch is run through the model on its own.
    """
    batches = [tensor[None] if tensor.ndim == 3 else tensor for tensor in (images, source, target)]
    if not batches[0].shape == batches[1].shape == batches[2].shape:
        raise ValueError(f"images, source and target must have one shape, got {[tuple(b.shape) for b in batches]}.")
    with torch.no_grad():
        logits, source_logits, target_logits = (model(batch) for batch in batches)
    predicted = logits.argmax(1)
    return PredictionCheck(source_kept=(predicted == source_logits.argmax(1)).float().mean().item(),
                           target_taken=(predicted == target_logits.argmax(1)).float().mean().item(),
                           max_logit_change=(logits - source_logits).abs().max().item())
