"""Explanation maps for the fooling study (paper §7, Fig. 5b, A.4, Fig. 7).

Two kinds of maps, both returned at image resolution as (B, H, W) tensors:

* :func:`attribute`: captum's attribution methods, named by lower-case strings (``METHODS``).
* :func:`relevance`: the gradient-weighted attention relevance of Chefer et al. (2021), which the
  paper calls LRP, computed on an unmodified timm ViT: fused attention is switched off for the call so
  the attention probabilities exist as tensors, a forward hook on each block's ``attn_drop`` keeps
  them, and ``torch.autograd.grad`` gives their gradients. Per block,
  ``R <- R + mean_heads(clamp(grad * attn, min=0)) @ R`` starting from the identity; the class-token
  row of ``R`` over the patch tokens is the map.

captum's own ``LRP`` has no rules for attention or LayerNorm, so it cannot explain a ViT; asking for
``"lrp"`` raises an error that says so.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nullspace_utils import models
from nullspace_utils.data import check_finite

__all__ = ["METHODS", "attribute", "relevance"]


def _patch_size(model: nn.Module) -> int | None:
    embed = getattr(models.unwrap(model), "patch_embed", None)
    size = getattr(embed, "patch_size", None)
    return None if size is None else int(size[0] if isinstance(size, (tuple, list)) else size)


def _saliency(model, images, target, **kwargs):
    from captum.attr import Saliency

    return Saliency(model).attribute(images, target=target, **{"abs": True, **kwargs})


def _integrated_gradients(model, images, target, **kwargs):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(images, target=target, **{"n_steps": 32, **kwargs})


def _input_x_gradient(model, images, target, **kwargs):
    from captum.attr import InputXGradient

    return InputXGradient(model).attribute(images, target=target, **kwargs)


def _quietly(method, model, images, target, **kwargs):
    """captum warns on every call that it hooks ReLUs (it does so even when, as in a ViT, there are none)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
        return method(model).attribute(images, target=target, **kwargs)


def _guided_backprop(model, images, target, **kwargs):
    from captum.attr import GuidedBackprop

    return _quietly(GuidedBackprop, model, images, target, **kwargs)


def _deconvolution(model, images, target, **kwargs):
    from captum.attr import Deconvolution

    return _quietly(Deconvolution, model, images, target, **kwargs)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's and numpy's global generators for one captum call (captum draws from both), then
    restore them, so a sampling method gives the same map for the same input and the caller's random
    streams are left as they were."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def _smoothgrad(model, images, target, **kwargs):
    from captum.attr import NoiseTunnel, Saliency

    options = {"nt_type": "smoothgrad", "nt_samples": 16, "stdevs": 0.1, **kwargs}
    seed = options.pop("seed", 0)
    with _seeded(seed):
        return NoiseTunnel(Saliency(model)).attribute(images, target=target, **options)


def _gradient_shap(model, images, target, **kwargs):
    from captum.attr import GradientShap

    seed = kwargs.pop("seed", 0)
    baselines = kwargs.pop("baselines", torch.zeros_like(images[:1]).repeat(2, 1, 1, 1))
    with _seeded(seed):
        return GradientShap(model).attribute(images, baselines=baselines, target=target,
                                             **{"n_samples": 16, **kwargs})


def _occlusion(model, images, target, **kwargs):
    from captum.attr import Occlusion

    r = _patch_size(model) or 16
    window = kwargs.pop("window", r)
    stride = kwargs.pop("stride", max(r // 2, 1))
    channels = images.shape[1]
    return Occlusion(model).attribute(images, target=target, sliding_window_shapes=(channels, window, window),
                                      strides=(channels, stride, stride), **{"perturbations_per_eval": 32, **kwargs})


def _feature_ablation(model, images, target, **kwargs):
    """Ablate (set to 0) one whole patch of the model's grid at a time."""
    from captum.attr import FeatureAblation

    r = _patch_size(model) or 16
    height, width = images.shape[-2:]
    ids = torch.arange((height // r) * (width // r), device=images.device).reshape(1, 1, height // r, width // r)
    mask = ids.repeat_interleave(r, 2).repeat_interleave(r, 3)
    return FeatureAblation(model).attribute(images, target=target, feature_mask=mask,
                                            **{"perturbations_per_eval": 16, **kwargs})


#: captum methods by name. Occlusion slides patch-sized windows at half-patch strides (so most windows
#: straddle patches); feature_ablation removes whole patches of the ViT's grid.
METHODS: dict[str, Callable] = {
    "saliency": _saliency,
    "integrated_gradients": _integrated_gradients,
    "input_x_gradient": _input_x_gradient,
    "guided_backprop": _guided_backprop,
    "deconvolution": _deconvolution,
    "smoothgrad": _smoothgrad,
    "gradient_shap": _gradient_shap,
    "occlusion": _occlusion,
    "feature_ablation": _feature_ablation,
}


def _targets(model: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    """One class index per image: the model's prediction, or ``target`` checked against the classes."""
    with torch.no_grad():
        logits = model(images)
    if target is None:
        return logits.argmax(1)
    targets = torch.as_tensor(target, device=images.device).long().expand(len(images)).clone()
    classes = logits.shape[1]
    wrong = targets[(targets < 0) | (targets >= classes)]
    if len(wrong):
        raise ValueError(f"target class {wrong[0].item()} does not exist: the model has {classes} classes "
                         f"(0 to {classes - 1}).")
    return targets


def _batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    check_finite(images, name="images")  # not check_images: a disguised image lies outside [0, 1] on purpose
    if images.ndim == 3:
        return images[None], True
    if images.ndim != 4:
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}.")
    return images, False


def attribute(model: nn.Module, images: torch.Tensor, *, method: str, target=None,
              reduce: str = "sum", **method_kwargs) -> torch.Tensor:
    """A captum attribution map per image, (B, H, W) (or (H, W) for one image).

    ``method`` is a key of :data:`METHODS`; ``target`` is a class index, one per image, or ``None``
    for the model's prediction. ``reduce`` combines the channels: ``"sum"`` (signed), ``"abs_sum"``,
    or ``"none"`` to keep (B, C, H, W). Extra keyword arguments go to the captum method. The model runs in
    eval mode and full float32 (:func:`nullspace_utils.models.exact_float32`) and is left as it was.
    """
    if method == "lrp":
        raise ValueError(
            "captum's LRP has no propagation rules for attention or LayerNorm, so it cannot explain a ViT. "
            "Use relevance(model, images), the attention relevance of Chefer et al. (2021) that the paper calls LRP."
        )
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)} (or relevance()).")
    if reduce not in ("sum", "abs_sum", "none"):
        raise ValueError(f"reduce must be 'sum', 'abs_sum' or 'none', got {reduce!r}.")
    batch, single = _batch(images)
    with models.evaluating(model), models.exact_float32():
        targets = _targets(model, batch, target)
        maps = METHODS[method](model, batch.clone().requires_grad_(True), targets, **method_kwargs).detach()
    if reduce == "sum":
        maps = maps.sum(1)
    elif reduce == "abs_sum":
        maps = maps.abs().sum(1)
    return maps[0] if single else maps


def relevance(model: nn.Module, images: torch.Tensor, *, target=None) -> torch.Tensor:
    """Chefer et al.'s gradient-weighted attention relevance of the class token, (B, H, W) in image pixels.

    Works on a stock timm ViT (``blocks[i].attn`` with ``fused_attn`` and ``attn_drop``); the model is
    left exactly as it was; it computes in full float32. Raises ``TypeError`` for models without attention blocks.
    """
    net = models.unwrap(model)
    blocks = getattr(net, "blocks", None)
    if blocks is None or not all(hasattr(block, "attn") and hasattr(block.attn, "attn_drop") for block in blocks):
        raise TypeError(f"{type(net).__name__} has no timm attention blocks (`blocks[i].attn`); relevance "
                        "needs a ViT. Use attribute(..., method=...) for CNNs.")
    batch, single = _batch(images)
    probabilities: list[torch.Tensor] = []
    handles, fused = [], []
    with models.evaluating(model), models.exact_float32():
        targets = _targets(model, batch, target)
        for block in blocks:
            fused.append(block.attn.fused_attn)
            block.attn.fused_attn = False
            handles.append(block.attn.attn_drop.register_forward_hook(
                lambda module, inputs, output: probabilities.append(output)))
        try:
            inputs = batch.clone().requires_grad_(True)
            logits = model(inputs)
            score = logits.gather(1, targets[:, None]).sum()
            gradients = torch.autograd.grad(score, probabilities)
        finally:
            for handle in handles:
                handle.remove()
            for block, flag in zip(blocks, fused, strict=True):
                block.attn.fused_attn = flag
    tokens = probabilities[0].shape[-1]
    rollout = torch.eye(tokens, device=probabilities[0].device).expand(len(batch), tokens, tokens)
    for attention, gradient in zip(probabilities, gradients, strict=True):
        cam = (gradient * attention).clamp(min=0).mean(1).detach()  # (B, N, N)
        rollout = rollout + cam @ rollout
    prefix = getattr(net, "num_prefix_tokens", 1)
    r = _patch_size(model)
    if r is None:
        raise TypeError(f"{type(net).__name__} has attention blocks but no `patch_embed.patch_size`; relevance "
                        "needs a timm ViT to map its tokens back to image pixels.")
    grid = (batch.shape[-2] // r, batch.shape[-1] // r)
    maps = rollout[:, 0, prefix:].reshape(len(batch), 1, *grid)
    maps = F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    maps = maps.to(batch.device)
    return maps[0] if single else maps
