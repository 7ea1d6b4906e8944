"""The exact nullspace of a ViT's patch embedding, in pixel space (paper §3).

A ViT cuts an image (C, H, W) into non-overlapping r x r patches and maps each
flattened patch p (C*r*r values) to an embedding ``W p + b`` (d values). timm
models first normalise each channel, ``(x - mean) / std``, so the map from a
patch of the [0, 1] image to its embedding is

    e = W diag(1/std) p + (b - W diag(1/std) mean),

with the per-channel ``1/std`` repeated over the r*r pixels of each channel.
Its linear part ``W_pix = W diag(1/std)`` (d x C r^2) is what this module calls
the *patch embedding matrix*. Any ``v`` with ``W_pix v = 0``, tiled over every
patch, leaves every patch embedding, and therefore every later layer and the
logits, unchanged for every input image (paper §3.2). When d < C r^2 such a
``v != 0`` exists by the rank-nullity theorem.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch
import torch.nn as nn

from nullspace_utils import linalg

__all__ = [
    "NoNullspaceError",
    "NotPatchEmbeddingError",
    "patch_embedding_layer",
    "patch_embedding_matrix",
    "patch_nullspace",
    "tile",
    "random_nullspace_noise",
    "patch_embeddings",
    "logit_change",
]


class NoNullspaceError(ValueError):
    """The patch embedding has full column rank: its nullspace is {0}."""


class NotPatchEmbeddingError(TypeError):
    """The model's first layer is not a non-overlapping linear patch embedding."""


def _unwrap(model: nn.Module) -> nn.Module:
    """The timm network inside a :class:`~nullspace_utils.models.ImageClassifier`, else the model."""
    return getattr(model, "net", model)


def patch_embedding_layer(model: nn.Module) -> nn.Conv2d:
    """The Conv2d that embeds patches, checked to be a non-overlapping linear patch map.

    Accepts a model from ``load_model`` or a raw timm ViT (``vit_*``, ``deit_*``).
    """
    net = _unwrap(model)
    embed = getattr(net, "patch_embed", None)
    name = type(net).__name__
    if embed is None:
        raise NotPatchEmbeddingError(
            f"{name} has no `patch_embed`: it is not a ViT (a CNN, say), so its first layer has no exact "
            "nullspace of the kind of paper §3. Learned, approximate nullspace noise works for any model: "
            "see the approximate-noise chapter."
        )
    if hasattr(embed, "backbone"):
        raise NotPatchEmbeddingError(
            f"{name} is a hybrid ViT: a convolutional stem comes before the patch embedding, so the map "
            "from pixels to tokens is not linear and has no exact nullspace. Use learned (approximate) "
            "nullspace noise instead (approximate-noise chapter)."
        )
    proj = getattr(embed, "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise NotPatchEmbeddingError(
            f"{name}.patch_embed.proj is {type(proj).__name__}, not a Conv2d; cannot read a linear patch map."
        )
    kernel, stride = tuple(proj.kernel_size), tuple(proj.stride)
    padding = proj.padding if isinstance(proj.padding, str) else tuple(proj.padding)
    if kernel != stride or padding not in ((0, 0), "valid") or proj.groups != 1 or tuple(proj.dilation) != (1, 1):
        raise NotPatchEmbeddingError(
            f"{name}'s patch embedding has kernel {kernel}, stride {stride}, padding {padding}: its patches "
            "overlap or are padded, so one noise patch tiled over the image does not stay in the nullspace. "
            "Use learned (approximate) nullspace noise instead (approximate-noise chapter)."
        )
    if kernel[0] != kernel[1]:
        raise NotPatchEmbeddingError(f"{name} uses non-square patches {kernel}; only r x r patches are supported.")
    return proj


def _normalisation(model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None, channels: int):
    """Per-channel mean and std: explicit arguments win, then the wrapper's, then timm's pretrained_cfg."""
    cfg = getattr(_unwrap(model), "pretrained_cfg", None) or {}
    if mean is None:
        mean = getattr(model, "mean", None) or cfg.get("mean") or (0.0,) * channels
    if std is None:
        std = getattr(model, "std", None) or cfg.get("std") or (1.0,) * channels
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values (one per channel), got {mean} and {std}.")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}.")
    return mean, std


def patch_embedding_matrix(
    model: nn.Module, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> torch.Tensor:
    """The (d, C*r*r) float64 matrix ``W diag(1/std)`` mapping a [0, 1] pixel patch to its embedding.

    Columns are ordered like ``patch.reshape(-1)`` for a (C, r, r) patch. Paper §3.2,
    with the input normalisation folded in (see the module docstring).
    """
    proj = patch_embedding_layer(model)
    weight = proj.weight.detach().to("cpu", torch.float64)  # (d, C, r, r)
    d, channels, r, _ = weight.shape
    _, std = _normalisation(model, mean, std, channels)
    scale = 1.0 / torch.tensor(std, dtype=torch.float64).view(1, channels, 1, 1)
    return (weight * scale).reshape(d, channels * r * r)


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def patch_nullspace(
    model: nn.Module,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rtol: float | None = None,
) -> torch.Tensor:
    """An orthonormal basis (k, C, r, r), float64, of the nullspace of the pixel-space patch map.

    Computed by SVD (:func:`nullspace_utils.linalg.nullspace`, tolerance ``rtol``,
    default ``max(d, C r^2) * eps``) and cached per model while its weights are
    unchanged. Raises :class:`NoNullspaceError` when the nullspace is {0}.
    """
    proj = patch_embedding_layer(model)
    matrix = patch_embedding_matrix(model, mean=mean, std=std)
    key = (matrix.shape, tuple(_normalisation(model, mean, std, proj.in_channels)), rtol, proj.weight._version,
           proj.weight.data_ptr())
    cached = _CACHE.get(model)
    if cached is not None and cached["key"] == key:
        return cached["basis"]
    d, n = matrix.shape
    basis = linalg.nullspace(matrix, rtol)  # (n, k)
    if basis.shape[1] == 0:
        raise NoNullspaceError(
            f"The patch embedding of {type(_unwrap(model)).__name__} has d = {d} outputs for C*r*r = {n} inputs "
            f"and rank {linalg.rank(matrix, rtol)}: its nullspace is trivial, so no exact nullspace noise "
            "exists. Models with d < C*r*r (e.g. vit_*_patch32_224) have one."
        )
    r = proj.kernel_size[0]
    result = basis.T.reshape(-1, proj.in_channels, r, r).contiguous()
    _CACHE[model] = {"key": key, "basis": result}
    return result


def tile(patch_noise: torch.Tensor, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Repeat one (C, r, r) patch (or a batch (B, C, r, r)) over an image of ``image_size``.

    ``image_size`` must be a multiple of r, so the tiles align with the ViT's patches.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if patch_noise.ndim not in (3, 4) or patch_noise.shape[-1] != patch_noise.shape[-2]:
        raise ValueError(f"patch_noise must be (C, r, r) or (B, C, r, r), got {tuple(patch_noise.shape)}.")
    r = patch_noise.shape[-1]
    if height % r or width % r:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the patch size {r}: the tiles would not align "
            "with the model's patches. Resize or crop the image to a multiple of r first."
        )
    reps = (1,) * (patch_noise.ndim - 2) + (height // r, width // r)
    return patch_noise.repeat(*reps)


def random_nullspace_noise(
    model: nn.Module,
    image_size: int | tuple[int, int],
    *,
    amplitude: float = 1.0,
    n: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random nullspace noise tiled to an image, scaled so that its largest absolute value is ``amplitude``.

    A random Gaussian combination of the basis of :func:`patch_nullspace`; one
    (C, H, W) noise, or ``n`` of them (n, C, H, W). Adding it to any image leaves
    the patch embeddings unchanged (paper §3.2).
    """
    basis = patch_nullspace(model)  # (k, C, r, r)
    generator = torch.Generator().manual_seed(seed)
    count = 1 if n is None else n
    weights = torch.randn(count, basis.shape[0], generator=generator, dtype=torch.float64)
    patches = torch.einsum("bk,kcij->bcij", weights, basis)
    patches = patches * (amplitude / patches.abs().amax(dim=(1, 2, 3), keepdim=True))
    noise = tile(patches, image_size).to(dtype)
    return noise[0] if n is None else noise


@torch.no_grad()
def patch_embeddings(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embeddings (B, m, d) of [0, 1] images, through the model's own normalisation and layer.

    Computed on the model's device, returned on the images' device."""
    proj = patch_embedding_layer(model)
    mean, std = _normalisation(model, None, None, proj.in_channels)
    inputs = images.to(proj.weight.device)
    mean_t = torch.tensor(mean, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
    out = proj((inputs - mean_t) / std_t)  # (B, d, H/r, W/r)
    return out.flatten(2).transpose(1, 2).to(images.device)


@torch.no_grad()
def logit_change(model: nn.Module, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Largest absolute change of the logits per image, ``max_j |f(x + v)_j - f(x)_j|``: shape (B,).

    No clipping is applied: exact nullspace noise is defined for the unbounded
    input space (paper §3); clip yourself to study the box [0, 1].
    """
    clean = model(images)
    noisy = model(images + noise)
    return (noisy - clean).abs().amax(dim=1)
