r"""The exact nullspace of a ViT's patch embedding, in pixel space (paper §3).

A ViT cuts an image (C, H, W) into non-overlapping r x r patches and maps each
flattened patch p (C*r*r values) to an embedding ``W p + b`` (d values). timm
models first normalise each channel, ``(x - mean) / std``, so the map from a
patch of the [0, 1] image to its embedding is

.. math::

    e = W \operatorname{diag}(1/\text{std})\, p + \bigl(b - W \operatorname{diag}(1/\text{std})\, \text{mean}\bigr),

with the per-channel ``1/std`` repeated over the r*r pixels of each channel.
Its linear part :math:`W_{\text{pix}} = W \operatorname{diag}(1/\text{std})` (:math:`d \times C r^2`) is what
this module calls the *patch embedding matrix*. Any :math:`v` with :math:`W_{\text{pix}} v = 0`, tiled over every
patch, leaves every patch embedding, and therefore every later layer and the
logits, unchanged for every input image (paper §3.2). When d < C r^2 such a
``v != 0`` exists by the rank-nullity theorem.

Two nullspaces. The paper (§3.2) takes "a input patch x ∈ R^{1×r×r}" and "d kernels", so its
nullspace is *per channel*: that of each channel's d x r^2 block ``W_c``, non-trivial only when
d < r^2, of dimension C (r^2 - d) for generic weights (the authors' code, github.com/Liu-Hy/NS-ViT,
``max_noise.py``, takes scipy's ``null_space`` of each channel's block in the same way). This module's
:func:`patch_nullspace` is the *joint* nullspace of the whole d x C r^2 map, dimension C r^2 - d: every
per-channel nullspace vector is in it (``W_c v_c = 0`` for every c gives ``sum_c W_c v_c = 0``), so it is
the larger space, and it exists whenever d < C r^2 (e.g. ViT-L/32, d = 1024 = r^2, whose per-channel
nullspace is {0}). :func:`channel_nullspace` gives the paper's. The per-channel std does not change the
per-channel nullspace (it scales each block by one number); it does change the joint one.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn

from nullspace_utils import linalg, metrics, models
from nullspace_utils.data import check_finite, quantize_8bit

__all__ = [
    "NoNullspaceError",
    "NotPatchEmbeddingError",
    "patch_embedding_layer",
    "patch_embedding_matrix",
    "normalisation",
    "patch_nullspace",
    "channel_nullspace",
    "nullspace_dimensions",
    "tile",
    "to_patches",
    "from_patches",
    "random_nullspace_noise",
    "patch_embeddings",
    "random_combinations",
    "nullspace_sizes",
    "AmplitudeSweep",
    "amplitude_sweep",
    "Effect",
    "StorageEffects",
    "storage_effects",
]


class NoNullspaceError(ValueError):
    """The patch embedding has full column rank: its nullspace is {0}."""


class NotPatchEmbeddingError(TypeError):
    """The model's first layer is not a non-overlapping linear patch embedding."""


def _what_it_is(net: nn.Module) -> str:
    """Why a model without ``patch_embed`` has no exact nullspace, and what to do instead."""
    inner = next((path for path, module in net.named_modules() if path and hasattr(module, "patch_embed")), None)
    if inner is not None:
        return (f"it holds a ViT at `.{inner}`. Pass that network (with its normalisation: "
                f"models.ImageClassifier(model.{inner}, mean, std)) instead of the wrapper.")
    approximate = ("Learned, approximate nullspace noise works for any model: see the approximate-noise chapter.")
    if hasattr(net, "patch_embeds"):
        return ("it embeds patches in several stages (a hierarchical ViT such as Twins or PVT), so the tokens "
                "after the first stage are not a linear map of the pixels and the book's exact nullspace does not "
                "apply. " + approximate)
    if hasattr(net, "stem"):
        return (f"its first layer is `stem` ({type(net.stem).__name__}), as in an MLP-Mixer or a CNN, not a ViT's "
                "patch embedding, so it has no exact nullspace of the kind of paper §3. " + approximate)
    return ("it is not a ViT (a CNN, say), so its first layer has no exact nullspace of the kind of paper §3. "
            + approximate)


def patch_embedding_layer(model: nn.Module) -> nn.Conv2d:
    """The Conv2d that embeds patches, checked to be a non-overlapping linear patch map.

    Accepts a model from ``load_model`` or a raw timm ViT (``vit_*``, ``deit_*``).

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
    """
    net = models.unwrap(model)
    embed = getattr(net, "patch_embed", None)
    name = type(net).__name__
    if embed is None:
        raise NotPatchEmbeddingError(f"{name} has no `patch_embed`: {_what_it_is(net)}")
    if hasattr(embed, "backbone"):
        raise NotPatchEmbeddingError(
            f"{name} is a hybrid ViT: a convolutional stem comes before the patch embedding, so the map "
            "from pixels to tokens is not linear and has no exact nullspace. Use learned (approximate) "
            "nullspace noise instead (approximate-noise chapter)."
        )
    stem = next((path for path, child in embed.named_children()
                 if path not in ("proj", "norm") and any(True for _ in child.parameters())), None)
    if stem is not None:  # VOLO's PatchEmbed: convolutions, BatchNorm and ReLU before the projection
        raise NotPatchEmbeddingError(
            f"{name}.patch_embed runs `{stem}` ({type(getattr(embed, stem)).__name__}) before its projection `proj`, "
            "a convolutional stem, so the map from pixels to tokens is not linear and has no exact nullspace. "
            "Use learned (approximate) nullspace noise instead (approximate-noise chapter).")
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
    if proj.weight.is_meta:
        raise ValueError(f"{name}'s weights are on the meta device (shapes without values), so its patch map "
                         "cannot be read: load real weights first, e.g. net.to_empty(device='cpu') and then "
                         "net.load_state_dict(state), or models.load_model(name).")
    if kernel[0] != kernel[1]:
        raise NotPatchEmbeddingError(f"{name} uses non-square patches {kernel}; only r x r patches are supported.")
    return proj


def _per_channel(values: object, channels: int, what: str) -> tuple[float, ...]:
    """A per-channel tuple from a tuple, list or tensor (a (C,) or (1, C, 1, 1) buffer)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).flatten().tolist()
    try:
        result = tuple(float(value) for value in values)  # type: ignore[attr-defined]
    except TypeError as error:
        raise TypeError(f"{what} must be a sequence of {channels} numbers (one per channel), "
                        f"got {values!r}.") from error
    if len(result) != channels:
        raise ValueError(f"{what} needs {channels} values (one per channel), got {result}.")
    if any(value != value for value in result):
        raise ValueError(f"{what} contains NaN: {result}.")
    return result


def normalisation(model: nn.Module, mean: object = None, std: object = None, channels: int | None = None
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the model's input normalisation (see the module docstring), as floats;
    ``channels`` defaults to the patch embedding's input channels.

    Explicit arguments win; then the ``mean``/``std`` of a :class:`~nullspace_utils.models.ImageClassifier`;
    then, for a bare timm network (which does not normalise: its caller does), its ``pretrained_cfg``.
    A wrapper that holds the network as ``.net`` but does not say how it normalises, or a network with no
    config, raises :class:`~nullspace_utils.models.NormalisationUnknownError`: guessing (mean 0, std 1)
    would give a nullspace that is not one, and every number computed from it would be silently wrong.

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        mean: an explicit per-channel mean (wins over the model's), or ``None``.
        std: an explicit per-channel std (wins over the model's), or ``None``.
        channels: how many channels to expect; ``None`` reads them from the patch embedding.

    Returns:
        ``(mean, std)``, one float per channel each.
    """
    net = models.unwrap(model)
    if mean is None or std is None:
        found: tuple[object, object]
        if getattr(model, "mean", None) is not None and getattr(model, "std", None) is not None:
            found = (model.mean, model.std)
        elif net is not model:
            raise models.NormalisationUnknownError(
                f"{type(model).__name__} wraps a network as `.net` but has no `mean` and `std` attributes, so "
                "how it normalises its input is unknown. Pass mean=... and std=... (per channel, in the units "
                "its forward uses; mean=(0, 0, 0), std=(1, 1, 1) if it does not normalise), or wrap the network "
                "with nullspace_utils.models.ImageClassifier(net, mean, std).")
        else:
            cfg = getattr(net, "pretrained_cfg", None) or {}
            if cfg.get("mean") is None or cfg.get("std") is None:
                raise models.NormalisationUnknownError(
                    f"{type(net).__name__} has no pretrained_cfg with a mean and std, so the normalisation its "
                    "inputs get is unknown. Pass mean=... and std=... (per channel), or load the model with "
                    "nullspace_utils.models.load_model, which records them.")
            found = (cfg["mean"], cfg["std"])
        mean = found[0] if mean is None else mean
        std = found[1] if std is None else std
    if channels is None:
        channels = patch_embedding_layer(model).in_channels
    mean_values = _per_channel(mean, channels, "mean")
    std_values = _per_channel(std, channels, "std")
    if any(value <= 0 for value in std_values):
        raise ValueError(f"std must be positive in every channel, got {std_values}.")
    return mean_values, std_values


def _check_finite_weights(weight: torch.Tensor, model: nn.Module) -> None:
    """Refuse NaN or infinite patch-embedding weights before an SVD would fail on them with a raw error."""
    if not torch.isfinite(weight).all():
        raise ValueError(f"The patch embedding of {type(models.unwrap(model)).__name__} has NaN or infinite weights, "
                         "so it has no nullspace: the weight file is damaged or a training run diverged. Reload "
                         "the weights (models.load_model) or retrain.")


def patch_embedding_matrix(
    model: nn.Module, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> torch.Tensor:
    """The (d, C*r*r) float64 matrix ``W diag(1/std)`` mapping a [0, 1] pixel patch to its embedding.

    Columns are ordered like ``patch.reshape(-1)`` for a (C, r, r) patch. Paper §3.2,
    with the input normalisation folded in (see the module docstring).

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        mean: the per-channel mean of the input normalisation; ``None`` takes the model's (:func:`normalisation`).
        std: the per-channel std of the input normalisation; ``None`` takes the model's.
    """
    proj = patch_embedding_layer(model)
    weight = proj.weight.detach().to("cpu", torch.float64)  # (d, C, r, r)
    _check_finite_weights(weight, model)
    d, channels, r, _ = weight.shape
    # the mean only shifts the constant c of the embedding, never W_pix: it need not be known here
    _, std = normalisation(model, (0.0,) * channels if mean is None else mean, std, channels)
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

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        mean: the per-channel mean of the input normalisation; ``None`` takes the model's.
        std: the per-channel std of the input normalisation; ``None`` takes the model's.
        rtol: relative tolerance of the SVD (:func:`nullspace_utils.linalg.nullspace`); ``None``: the default.
    """
    proj = patch_embedding_layer(model)
    matrix = patch_embedding_matrix(model, mean=mean, std=std)
    # keyed on the matrix itself (weights and normalisation folded in): an in-place edit of the weights, even
    # through .data, which bypasses autograd's version counter, gives a new matrix and so a new basis
    cached = _CACHE.get(model)
    if cached is not None and cached["rtol"] == rtol and torch.equal(cached["matrix"], matrix):
        return cached["basis"]
    d, n = matrix.shape
    basis = linalg.nullspace(matrix, rtol)  # (n, k)
    if basis.shape[1] == 0:
        raise NoNullspaceError(
            f"The patch embedding of {type(models.unwrap(model)).__name__} has d = {d} outputs for C*r*r = {n} inputs "
            f"and rank {linalg.rank(matrix, rtol)}: its nullspace is trivial, so no exact nullspace noise "
            "exists. Models with d < C*r*r (e.g. vit_*_patch32_224) have one."
        )
    r = proj.kernel_size[0]
    result = basis.T.reshape(-1, proj.in_channels, r, r).contiguous()
    _CACHE[model] = {"matrix": matrix, "rtol": rtol, "basis": result}
    return result


def channel_nullspace(model: nn.Module, *, rtol: float | None = None) -> torch.Tensor:
    """The paper's per-channel nullspace (§3.2): an orthonormal basis (K, C, r, r), float64, ordered by channel.

    Each basis vector lives on one channel c and spans the nullspace of that channel's d x r^2 block
    ``W_c`` (SVD with tolerance ``rtol``, as :func:`patch_nullspace`); K is the sum over channels, C (r^2 - d)
    for generic weights with d < r^2. Every vector is also in the joint nullspace of :func:`patch_nullspace`.
    Raises :class:`NoNullspaceError` when every channel's nullspace is {0} (d >= r^2, e.g. ViT-L/32).

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        rtol: relative tolerance of each channel's SVD; ``None``: the default.
    """
    proj = patch_embedding_layer(model)
    weight = proj.weight.detach().to("cpu", torch.float64)  # (d, C, r, r); std only scales each block
    _check_finite_weights(weight, model)
    d, channels, r, _ = weight.shape
    parts = []
    for c in range(channels):
        block = linalg.nullspace(weight[:, c].reshape(d, r * r), rtol)  # (r^2, k_c)
        vectors = torch.zeros(block.shape[1], channels, r * r, dtype=torch.float64)
        vectors[:, c] = block.T
        parts.append(vectors)
    basis = torch.cat(parts).reshape(-1, channels, r, r)
    if basis.shape[0] == 0:
        raise NoNullspaceError(
            f"Every channel of the patch embedding of {type(models.unwrap(model)).__name__} has d = {d} outputs for "
            f"r*r = {r * r} pixels and full column rank: the paper's per-channel nullspace (§3.2) is {{0}}. The "
            f"joint nullspace of the whole d x C*r*r map (exact.patch_nullspace) exists while d < {channels * r * r}.")
    return basis


def nullspace_dimensions(d: int, r: int, channels: int = 3) -> dict[str, int]:
    """Nullspace dimensions of a generic (full-rank) patch embedding with ``d`` outputs and r x r patches.

    ``per_channel``: the paper's (§3.2), ``channels * max(r^2 - d, 0)``; ``joint``: the book's,
    ``max(channels * r^2 - d, 0)``. Trained or random weights have full rank with probability one, so
    these are what :func:`channel_nullspace` and :func:`patch_nullspace` find (tests check both).

    Args:
        d: the embedding width (the patch embedding's outputs).
        r: the patch size in pixels.
        channels: the image's colour channels.

    Returns:
        ``{"per_channel": ..., "joint": ...}``.
    """
    for name, value in (("d", d), ("r", r), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
    return {"per_channel": channels * max(r * r - d, 0), "joint": max(channels * r * r - d, 0)}


def tile(patch_noise: torch.Tensor, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Repeat one (C, r, r) patch (or a batch (B, C, r, r)) over an image of ``image_size``.

    ``image_size`` must be a multiple of r, so the tiles align with the ViT's patches.

    Args:
        patch_noise: one patch (C, r, r) or a batch of them (B, C, r, r).
        image_size: the image's side, or (H, W); each a multiple of r.

    Returns:
        (C, H, W), or (B, C, H, W) for a batch.
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


def to_patches(images: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * H/r * W/r, C*r*r): the rows the patch embedding matrix acts on (paper §3.2).

    Patches come row-major over the patch grid, and each row is ordered like ``patch.reshape(-1)`` for a
    (C, r, r) patch, the column order of :func:`patch_embedding_matrix`.

    Args:
        images: a batch (B, C, H, W) with H and W multiples of ``r``.
        r: the patch size in pixels.
    """
    b, c, h, w = images.shape
    if h % r or w % r:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {r}; resize or crop it first.")
    grid = images.reshape(b, c, h // r, r, w // r, r).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(b * (h // r) * (w // r), c * r * r)


def from_patches(patches: torch.Tensor, shape: Sequence[int], r: int) -> torch.Tensor:
    """Inverse of :func:`to_patches` for an image batch of ``shape`` (B, C, H, W).

    Args:
        patches: rows (B * H/r * W/r, C*r*r) as :func:`to_patches` gives them.
        shape: the image batch's shape (B, C, H, W).
        r: the patch size in pixels.
    """
    b, c, h, w = shape
    grid = patches.reshape(b, h // r, w // r, c, r, r).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(b, c, h, w)


def _number(value: object) -> float:
    """``value`` as a float (NaN for anything that is not a number, which every range check then refuses)."""
    try:
        return float(value)  # type: ignore[arg-type]  # numbers, numpy and one-element tensors
    except (TypeError, ValueError):
        return math.nan


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

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        image_size: the image's side, or (H, W); multiples of the patch size.
        amplitude: the noise's largest absolute value.
        n: how many noises; ``None`` gives one (C, H, W) noise without a batch dimension.
        seed: seed of the Gaussian weights.
        dtype: the result's dtype.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating point type, got {dtype}: rounding the noise to whole numbers "
                        "would move it out of the nullspace.")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be a whole number >= 1 (how many noises), or None for one (C, H, W) noise; "
                         f"got {n!r}.")
    if not 0 <= _number(amplitude) < math.inf:
        raise ValueError(f"amplitude must be a finite number >= 0 (the noise's largest absolute value), "
                         f"got {amplitude!r}.")
    patches = random_combinations(patch_nullspace(model), 1 if n is None else n, seed=seed)
    patches = patches * (amplitude / patches.abs().amax(dim=(1, 2, 3), keepdim=True))
    noise = tile(patches, image_size).to(dtype)
    return noise[0] if n is None else noise


@torch.no_grad()
def patch_embeddings(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embeddings (B, m, d) of [0, 1] images, through the model's own normalisation and layer.

    Computed on the model's device in its dtype (float16 images on a float32 model are computed in float32, as
    the model's forward does), returned on the images' device.

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        images: [0, 1] images (B, C, H, W).
    """
    proj = patch_embedding_layer(model)
    mean, std = normalisation(model, None, None, proj.in_channels)
    check_finite(images, name="images")
    if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != proj.in_channels:
        raise ValueError(f"images must be float (B, {proj.in_channels}, H, W) in [0, 1], got {images.dtype} of shape "
                         f"{tuple(images.shape)}; add a batch axis with images[None] for one image.")
    inputs = images.to(proj.weight.device, proj.weight.dtype)
    mean_t = torch.tensor(mean, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=inputs.dtype, device=inputs.device).view(1, -1, 1, 1)
    out = proj((inputs - mean_t) / std_t)  # (B, d, H/r, W/r)
    return out.flatten(2).transpose(1, 2).to(images.device)


def random_combinations(basis: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` random combinations (n, C, r, r) of a basis (k, C, r, r), with independent standard Gaussian weights
    (float64, drawn from a generator seeded with ``seed``): random vectors of the space the basis spans, which,
    unlike one basis vector, do not depend on which orthonormal basis the SVD picked.

    Args:
        basis: k basis vectors (k, C, r, r), e.g. from :func:`patch_nullspace`.
        n: how many combinations.
        seed: seed of the Gaussian weights.
    """
    weights = torch.randn(n, basis.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.einsum("bk,kcij->bcij", weights, basis)


def nullspace_sizes(model: nn.Module, *, rtol: float | None = None) -> dict[str, int]:
    """The measured dimensions of both nullspaces of ``model``'s patch embedding: ``per_channel``
    (:func:`channel_nullspace`, the paper's) and ``joint`` (:func:`patch_nullspace`, the book's), 0 where one is
    {0} (where those raise :class:`NoNullspaceError`). Same keys as :func:`nullspace_dimensions`, which gives the
    generic values for comparison.

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        rtol: relative tolerance of the SVDs; ``None``: the default.
    """
    sizes = {}
    for name, compute in (("per_channel", channel_nullspace), ("joint", patch_nullspace)):
        try:
            sizes[name] = int(compute(model, rtol=rtol).shape[0])
        except NoNullspaceError:
            sizes[name] = 0
    return sizes


@dataclass(frozen=True)
class AmplitudeSweep:
    """Nullspace noise against uniform random noise of the same amplitude (largest absolute value), per amplitude:
    the largest logit change over the images for each, and the share of images whose prediction the random
    noise keeps (nullspace noise keeps every one, up to float rounding)."""

    amplitudes: list[float]
    nullspace_change: list[float]
    random_change: list[float]
    random_match: list[float]


@torch.no_grad()
def amplitude_sweep(model: nn.Module, images: torch.Tensor, amplitudes: Sequence[float], *, seed: int = 1,
                    random_seed: int = 0) -> AmplitudeSweep:
    """For each amplitude, one nullspace noise (:func:`random_nullspace_noise` with ``seed``) and one uniform noise
    in [-amplitude, amplitude] (one generator seeded with ``random_seed`` for the whole sweep), each added to every
    one of ``images`` (B, C, H, W): how far the logits move (:func:`~nullspace_utils.metrics.logit_change`) and,
    for the random noise, how many predictions stay.

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        images: [0, 1] images (B, C, H, W).
        amplitudes: the noises' largest absolute values, one sweep point each.
        seed: seed of the nullspace noises.
        random_seed: seed of the uniform noises.
    """
    clean = model(images).argmax(1)
    generator = torch.Generator().manual_seed(random_seed)
    size = (images.shape[-2], images.shape[-1])
    values = [float(amplitude) for amplitude in amplitudes]
    null_change, random_change, random_match = [], [], []
    for amplitude in values:
        v_null = random_nullspace_noise(model, size, amplitude=amplitude, seed=seed)
        v_rand = (torch.rand(images.shape[1:], generator=generator) * 2 - 1) * amplitude
        null_change.append(metrics.logit_change(model, images, v_null).max().item())
        random_change.append(metrics.logit_change(model, images, v_rand).max().item())
        random_match.append((model(images + v_rand).argmax(1) == clean).float().mean().item())
    return AmplitudeSweep(values, null_change, random_change, random_match)


class Effect(NamedTuple):
    """What one treatment of the images does to a model's outputs, against the untouched images."""

    max_logit_change: float  # the largest |change| of a logit over all images
    same_prediction: float  # the share of images whose predicted class stays


@dataclass(frozen=True)
class StorageEffects:
    """Nullspace noise ``v`` on images ``x``, stored as a real image must be (paper §3 holds for unbounded inputs):
    the share of values of ``x + v`` outside [0, 1], the largest logit change of ``x + v`` as it is (float rounding
    only), and the :class:`Effect` of clipping ``x + v`` to [0, 1], of rounding the clean ``x`` to 8 bits, and of
    clipping and rounding ``x + v``."""

    saturated: float
    unbounded: float
    clipped: Effect
    clean_8bit: Effect
    noisy_8bit: Effect


@torch.no_grad()
def storage_effects(model: nn.Module, images: torch.Tensor, noise: torch.Tensor) -> StorageEffects:
    """:class:`StorageEffects` of adding ``noise`` (C, H, W), e.g. from :func:`random_nullspace_noise`, to
    [0, 1] ``images`` (B, C, H, W) and storing the result as an 8-bit image
    (:func:`~nullspace_utils.data.quantize_8bit`).

    Args:
        model: a ViT from :func:`~nullspace_utils.models.load_model`, or a raw timm ViT.
        images: [0, 1] images (B, C, H, W).
        noise: one noise (C, H, W) added to every image.
    """
    def effect(treated: torch.Tensor) -> Effect:
        change = metrics.compare_predictions(model, images, treated)
        return Effect(change["logit_change_max"], change["match"])

    noisy = images + noise
    return StorageEffects(saturated=((noisy < 0) | (noisy > 1)).float().mean().item(),
                          unbounded=metrics.logit_change(model, images, noise).max().item(),
                          clipped=effect(noisy.clamp(0, 1)), clean_8bit=effect(quantize_8bit(images)),
                          noisy_8bit=effect(quantize_8bit(noisy.clamp(0, 1))))
