"""Explanation maps for the fooling study (paper §7, Fig. 5b, A.4, Fig. 7).

Maps are returned at image resolution as (B, H, W) tensors:

* :func:`attribute`: captum's attribution methods, named by lower-case strings (``METHODS``).
* :func:`transformer_attribution`: the map the paper calls LRP, Chefer et al.'s "Transformer interpretability
  beyond attention visualization" (CVPR 2021). Relevance is propagated from the target logit down the ViT with
  LRP rules; per block, the relevance of the attention probabilities times their gradient (positive part, mean
  over heads) is rolled out, ``R <- R + A R``, and the class token's row over the patches is the map. Checked
  against the authors' code on the zoo ViT-S (``tests/data/chefer_lrp_reference.npz``).
* :func:`lrp`: the same propagation continued through the position and patch embeddings to the pixels (the
  CVPR paper's "full LRP" baseline). It depends on pixel values, so it can tell a nullspace disguise apart.
* :func:`compare_disguise`: how the maps of disguised images (:mod:`nullspace_utils.fooling`) compare with the
  source's, and the target's with the source's (:func:`nullspace_utils.metrics.compare_maps`, per image too).
* :func:`gradient_attention_rollout`: Chefer et al.'s *generic* relevance (ICCV 2021), the same rollout of
  gradient times attention probabilities, with no relevance propagation. Not LRP; a different map
  (correlation 0.85-0.95 with :func:`transformer_attribution` on the zoo ViT-S, measured).

All three transformer maps work on an unmodified timm ViT: fused attention is switched off for the call so the
attention probabilities exist as tensors, forward hooks record the activations the rules need, and
``torch.autograd.grad`` gives the gradients; hooks and flags are removed afterwards.

captum's own ``LRP`` has no rules for attention or LayerNorm, so it cannot explain a ViT; asking for
``"lrp"`` in :func:`attribute` raises an error that says so.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nullspace_utils import metrics, models
from nullspace_utils.data import check_finite

__all__ = ["METHODS", "MapAgreement", "attribute", "compare_disguise", "gradient_attention_rollout", "lrp",
           "transformer_attribution"]


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
    targets = torch.as_tensor(target, device=images.device)
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.ndim > 1 or (
            targets.ndim == 1 and len(targets) != len(images)):
        raise ValueError(f"target must be one class index, or one per image ({len(images)} here), got "
                         f"{target!r}; pass target=None to explain each image's predicted class.")
    targets = targets.long().expand(len(images)).clone()
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
            "Use transformer_attribution(model, images), Chefer et al.'s LRP relevance (CVPR 2021) that the paper "
            "calls LRP, or lrp(model, images) for its pixel-level variant."
        )
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted(METHODS)} (or transformer_attribution(), "
                         "lrp(), gradient_attention_rollout()).")
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


# --------------------------------------------------------------------------- transformer relevance
@dataclass
class _BlockTrace:
    """What one timm ``Block`` computed in the forward pass, for relevance propagation (all detached)."""

    x_in: torch.Tensor  # (B, N, d) the block's input, the first residual
    qkv_in: torch.Tensor  # (B, N, d) norm1's output, the input of attn.qkv
    qkv: torch.Tensor  # (B, N, 3d) attn.qkv's output, laid out as (3, heads, head_dim)
    attention: torch.Tensor  # (B, heads, N, N) softmax(q k^T / sqrt(head_dim)) after attn_drop
    gradient: torch.Tensor  # (B, heads, N, N) the target logit's gradient with respect to ``attention``
    proj_in: torch.Tensor  # (B, N, d) attention @ v with heads merged, the input of attn.proj
    attn_out: torch.Tensor  # (B, N, d) the attention branch, added to x_in
    fc1_in: torch.Tensor  # (B, N, d) norm2's output
    fc2_in: torch.Tensor  # (B, N, hidden) the GELU's output
    mlp_out: torch.Tensor  # (B, N, d) the MLP branch, added to x_in + attn_out


@dataclass
class _Trace:
    """One forward and backward pass of a timm ViT, captured by hooks."""

    blocks: list[_BlockTrace]
    head_in: torch.Tensor  # (B, d) the pooled, normalised class token
    tokens: torch.Tensor  # (B, N, d) class token and patch embeddings, before the position embedding
    pixels: torch.Tensor  # (B, C, H, W) the normalised image, the input of patch_embed.proj
    targets: torch.Tensor  # (B,) the explained class per image
    grid: tuple[int, int]
    prefix: int  # tokens before the patches (the class token)


def _check_vit(net: Any) -> Any:
    """The blocks of a timm ViT whose parts relevance propagation knows; a clear error otherwise."""
    blocks = getattr(net, "blocks", None)
    if blocks is None or not all(hasattr(block, "attn") and hasattr(block.attn, "attn_drop") for block in blocks):
        raise TypeError(f"{type(net).__name__} has no timm attention blocks (`blocks[i].attn`); this map "
                        "needs a ViT. Use attribute(..., method=...) for CNNs.")
    if getattr(net, "patch_embed", None) is None or _patch_size(net) is None:
        raise TypeError(f"{type(net).__name__} has attention blocks but no `patch_embed.patch_size`; the map "
                        "needs a timm ViT to place its tokens on the image.")
    return blocks


@contextlib.contextmanager
def _hooked(net: Any, blocks: Any, store: dict) -> Iterator[None]:
    """Unfused attention and forward hooks that record every activation relevance propagation needs;
    both are undone on exit, so the caller's model is left as it was."""

    def keep(key: str, output: bool = True) -> Callable:
        def hook(module, inputs, result):
            value = result if output else inputs[0]
            store.setdefault(key, []).append(value if key == "attention" else value.detach())
        return hook

    handles, fused = [], []
    for block in blocks:
        fused.append(block.attn.fused_attn)
        block.attn.fused_attn = False
        handles += [block.register_forward_pre_hook(lambda module, inputs: store.setdefault("x_in", []).append(
                        inputs[0].detach())),
                    block.attn.qkv.register_forward_hook(keep("qkv_in", output=False)),
                    block.attn.qkv.register_forward_hook(keep("qkv")),
                    block.attn.attn_drop.register_forward_hook(keep("attention")),
                    block.attn.proj.register_forward_hook(keep("proj_in", output=False)),
                    block.ls1.register_forward_hook(keep("attn_out")),
                    block.mlp.fc1.register_forward_hook(keep("fc1_in", output=False)),
                    block.mlp.fc2.register_forward_hook(keep("fc2_in", output=False)),
                    block.ls2.register_forward_hook(keep("mlp_out"))]
    handles += [net.head.register_forward_hook(keep("head_in", output=False)),
                net.patch_embed.register_forward_hook(keep("patches")),
                net.patch_embed.proj.register_forward_hook(keep("pixels", output=False))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for block, flag in zip(blocks, fused, strict=True):
            block.attn.fused_attn = flag


def _trace(model: nn.Module, batch: torch.Tensor, target) -> _Trace:
    """Run ``model`` once on ``batch`` with hooks, and the target logit's gradient with respect to every
    block's attention probabilities (Chefer et al. 2021, both papers)."""
    net: Any = models.unwrap(model)
    blocks = _check_vit(net)
    store: dict[str, list[torch.Tensor]] = {}
    with models.evaluating(model), models.exact_float32():
        targets = _targets(model, batch, target)
        with _hooked(net, blocks, store):
            logits = model(batch.clone().requires_grad_(True))
        if len(store.get("attention", [])) != len(blocks) or "mlp_out" not in store:
            raise TypeError(f"{type(net).__name__}'s blocks did not run as a timm ViT's do (attention, "
                            "residual branches through ls1/ls2); this map supports timm's VisionTransformer.")
        gradients = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), store["attention"])
    patches = store["patches"][0]
    if patches.ndim != 3:
        raise TypeError("patch_embed must return (B, tokens, d) as timm's ViT does (flatten=True).")
    prefix = getattr(net, "num_prefix_tokens", 1)
    if prefix:
        prefix_tokens = net.cls_token.detach().expand(len(batch), -1, -1)
        patches = torch.cat([prefix_tokens, patches], dim=1)
    r = _patch_size(net)
    assert r is not None  # _check_vit
    kept = ("x_in", "qkv_in", "qkv", "proj_in", "attn_out", "fc1_in", "fc2_in", "mlp_out")
    traces = [_BlockTrace(attention=store["attention"][i].detach(), gradient=gradients[i].detach(),
                          **{key: store[key][i] for key in kept})
              for i in range(len(blocks))]
    return _Trace(traces, store["head_in"][0], patches, store["pixels"][0], targets,
                  (batch.shape[-2] // r, batch.shape[-1] // r), prefix)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / (denominator + 1e-9), and 0 where the denominator is 0: LRP's stabilised division."""
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / (denominator + 1e-9))


def _linear_rule(inputs: torch.Tensor, weight: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """LRP-alpha1-beta0 through ``inputs @ weight.T`` (the bias takes no relevance): each output's relevance is
    shared among the inputs in proportion to their positive contributions x+ w+ and x- w- (Chefer et al.,
    CVPR 2021, eq. 4 with alpha = 1)."""
    positive_x, negative_x = inputs.clamp(min=0), inputs.clamp(max=0)
    positive_w, negative_w = weight.clamp(min=0), weight.clamp(max=0)
    ratio = _divide(relevance, positive_x @ positive_w.T + negative_x @ negative_w.T)
    return positive_x * (ratio @ positive_w) + negative_x * (ratio @ negative_w)


def _sum_per_image(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(1).sum(1).view(-1, *[1] * (tensor.ndim - 1))


def _add_rule(first: torch.Tensor, second: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance through ``first + second`` (a residual connection): shared by contribution, then each part
    rescaled so that the two sums split the total as |sum| of their shares (Chefer et al., CVPR 2021, eq. 8-9)."""
    ratio = _divide(relevance, first + second)
    shares = [first * ratio, second * ratio]
    sums = [_sum_per_image(share) for share in shares]
    total = _sum_per_image(relevance)
    weights = [_divide(s.abs(), sums[0].abs() + sums[1].abs()) * total for s in sums]
    return shares[0] * _divide(weights[0], sums[0]), shares[1] * _divide(weights[1], sums[1])


def _product_rule(left: torch.Tensor, right: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance through the matrix product ``left @ right`` of two activations, each given half
    (Chefer et al., CVPR 2021, the normalisation of eq. 8 applied to the two operands)."""
    ratio = _divide(relevance, left @ right)
    return left * (ratio @ right.transpose(-1, -2)) / 2, right * (left.transpose(-1, -2) @ ratio) / 2


def _block_relevance(block: Any, trace: _BlockTrace, relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagate relevance from a block's output to its input; also return the relevance of its attention
    probabilities (B, heads, N, N). LayerNorm, GELU, softmax and dropout pass relevance on unchanged."""
    heads = block.attn.num_heads
    residual, branch = _add_rule(trace.x_in + trace.attn_out, trace.mlp_out, relevance)
    branch = _linear_rule(trace.fc1_in, block.mlp.fc1.weight,
                          _linear_rule(trace.fc2_in, block.mlp.fc2.weight, branch))
    middle = residual + branch
    residual, branch = _add_rule(trace.x_in, trace.attn_out, middle)
    branch = _linear_rule(trace.proj_in, block.attn.proj.weight, branch)  # (B, N, d)
    batch, tokens, width = branch.shape
    per_head = branch.reshape(batch, tokens, heads, width // heads).transpose(1, 2)  # (B, heads, N, head_dim)
    q, k, v = trace.qkv.reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    attention_relevance, v_relevance = _product_rule(trace.attention, v, per_head)
    q_relevance, k_transposed = _product_rule(q, k.transpose(-1, -2), attention_relevance)
    qkv_relevance = torch.stack([q_relevance, k_transposed.transpose(-1, -2), v_relevance])  # (3, B, heads, N, hd)
    qkv_relevance = qkv_relevance.permute(1, 3, 0, 2, 4).reshape(batch, tokens, 3 * width)
    branch = _linear_rule(trace.qkv_in, block.attn.qkv.weight, qkv_relevance)
    return residual + branch, attention_relevance


def _propagate(net: Any, trace: _Trace) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LRP from the target logit (relevance 1) down to the tokens after the position embedding; with the
    relevance of every block's attention probabilities, first block first."""
    head = net.head.weight.detach()
    start = torch.zeros(len(trace.targets), head.shape[0], dtype=head.dtype, device=head.device)
    start[torch.arange(len(start), device=start.device), trace.targets.to(start.device)] = 1.0
    pooled = _linear_rule(trace.head_in, head, start)  # (B, d): the class token after the final norm
    relevance = torch.zeros_like(trace.blocks[-1].x_in)
    relevance[:, 0] = trace.head_in * _divide(pooled, trace.head_in)  # pooling takes the class token
    attention: list[torch.Tensor] = []
    for block, block_trace in zip(reversed(net.blocks), reversed(trace.blocks), strict=True):
        relevance, attention_relevance = _block_relevance(block, block_trace, relevance)
        attention.append(attention_relevance)
    return relevance, attention[::-1]


def _rollout(per_block: list[torch.Tensor], prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """R <- R + A R from the identity, block by block (Chefer et al.'s rule, both papers); the class token's
    row over the patches, (B, gh, gw)."""
    batch, tokens = per_block[0].shape[0], per_block[0].shape[-1]
    rollout = torch.eye(tokens, dtype=per_block[0].dtype, device=per_block[0].device).expand(batch, tokens, tokens)
    for matrix in per_block:
        rollout = rollout + matrix @ rollout
    return rollout[:, 0, prefix:].reshape(batch, *grid)


def _to_pixels(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _check_supported(net: Any) -> None:
    """LRP needs timm's plain ViT: class-token pooling and a position embedding added to every token."""
    if getattr(net, "global_pool", "token") != "token" or getattr(net, "num_prefix_tokens", 1) != 1 \
            or getattr(net, "no_embed_class", False) or getattr(net, "pos_embed", None) is None:
        raise TypeError("LRP relevance needs a timm ViT with one class token, class-token pooling "
                        "(global_pool='token') and a position embedding on every token.")


def gradient_attention_rollout(model: nn.Module, images: torch.Tensor, *, target=None,
                               upsample: bool = True) -> torch.Tensor:
    """Chefer et al.'s *generic* attention relevance (ICCV 2021), (B, H, W) in image pixels.

    Per block, ``R <- R + mean_heads(clamp(grad * A, min=0)) @ R`` from the identity, where ``A`` are the
    attention probabilities and ``grad`` the target logit's gradient with respect to them; the class token's
    row over the patches is the map. This is *not* LRP: no relevance is propagated (compare
    :func:`transformer_attribution`, the paper's Fig. 5b). ``upsample=False`` keeps the (B, gh, gw) token grid.
    Works on a stock timm ViT, left exactly as it was, in full float32. Raises ``TypeError`` for models without
    attention blocks.
    """
    batch, single = _batch(images)
    trace = _trace(model, batch, target)
    maps = _rollout([(b.gradient * b.attention).clamp(min=0).mean(1) for b in trace.blocks], trace.prefix, trace.grid)
    maps = (_to_pixels(maps, tuple(batch.shape[-2:])) if upsample else maps).to(batch.device)
    return maps[0] if single else maps


def _lrp_trace(model: nn.Module, images: torch.Tensor, target) -> tuple[torch.Tensor, bool, Any, Any]:
    """The batch, whether one image was given, the timm ViT (checked to be one LRP supports) and its trace:
    what :func:`transformer_attribution` and :func:`lrp` both start from."""
    batch, single = _batch(images)
    net: Any = models.unwrap(model)
    _check_vit(net)
    _check_supported(net)
    return batch, single, net, _trace(model, batch, target)


def transformer_attribution(model: nn.Module, images: torch.Tensor, *, target=None,
                            upsample: bool = True) -> torch.Tensor:
    """Chefer et al.'s LRP-based relevance (CVPR 2021, "Transformer interpretability beyond attention
    visualization"), the map the paper calls LRP (§7, Fig. 5b); (B, H, W) in image pixels.

    Relevance 1 on the target logit is propagated down the network with LRP rules (alpha = 1, beta = 0 for
    linear layers, relevance-conserving residual additions, halves to the two operands of each attention
    product). Per block, the relevance of the attention probabilities times their gradient, positive part,
    mean over heads, is rolled out, ``R <- R + A R``; the class token's row over the patches is the map.
    ``upsample=False`` keeps the (B, gh, gw) token grid. Tested against the authors' code
    (``tests/data/chefer_lrp_reference.npz``). Works on a stock timm ViT, left exactly as it was.
    """
    batch, single, net, trace = _lrp_trace(model, images, target)
    with torch.no_grad():
        _, attention = _propagate(net, trace)
    maps = _rollout([(b.gradient * a).clamp(min=0).mean(1) for b, a in zip(trace.blocks, attention, strict=True)],
                    trace.prefix, trace.grid)
    maps = (_to_pixels(maps, tuple(batch.shape[-2:])) if upsample else maps).to(batch.device)
    return maps[0] if single else maps


def _patch_rule(pixels: torch.Tensor, conv: Any, relevance: torch.Tensor) -> torch.Tensor:
    """LRP's z^B rule through the patch embedding, with each image's lowest and highest normalised pixel
    value as bounds (as Chefer et al.'s code does for the first layer)."""
    weight = conv.weight.detach()
    positive, negative = weight.clamp(min=0), weight.clamp(max=0)
    low = pixels.amin(dim=(1, 2, 3), keepdim=True).expand_as(pixels)
    high = pixels.amax(dim=(1, 2, 3), keepdim=True).expand_as(pixels)

    def forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, stride=conv.stride, padding=conv.padding)

    def backward(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(s, w, stride=conv.stride, padding=conv.padding)

    ratio = relevance / (forward(pixels, weight) - forward(low, positive) - forward(high, negative) + 1e-9)
    return pixels * backward(ratio, weight) - low * backward(ratio, positive) - high * backward(ratio, negative)


def lrp(model: nn.Module, images: torch.Tensor, *, target=None) -> torch.Tensor:
    """Pixel-level LRP of a ViT (Chefer et al. CVPR 2021's "full LRP"), (B, H, W), channels summed.

    The same propagation as :func:`transformer_attribution`, continued through the position embedding
    (a residual addition) and the patch embedding (z^B rule) to the pixels, instead of rolling out the
    attention relevance. Unlike the token-level maps, it depends on the pixel values themselves, so it tells
    an image and its nullspace disguise apart (paper §7). Works on a stock timm ViT, left exactly as it was.
    """
    batch, single, net, trace = _lrp_trace(model, images, target)
    with torch.no_grad():
        relevance, _ = _propagate(net, trace)
        position = net.pos_embed.detach().expand_as(trace.tokens)
        relevance, _ = _add_rule(trace.tokens, position, relevance)
        patches = relevance[:, trace.prefix:].transpose(1, 2).reshape(len(batch), -1, *trace.grid)
        maps = _patch_rule(trace.pixels, net.patch_embed.proj, patches).sum(1).to(batch.device)
    return maps[0] if single else maps


def relevance(model: nn.Module, images: torch.Tensor, *, target=None) -> torch.Tensor:
    """The old name of :func:`gradient_attention_rollout` (Chefer et al., ICCV 2021), kept so that existing
    code runs; it is not the paper's LRP, which is :func:`transformer_attribution`."""
    return gradient_attention_rollout(model, images, target=target)


@dataclass
class MapAgreement:
    """Explanation maps of disguised images against the source's (what :func:`compare_disguise` returns)."""

    transformed: dict[str, float]  # metrics.compare_maps(source maps, transformed images' maps), over the batch
    target: dict[str, float]  # metrics.compare_maps(source maps, target maps), over the batch
    transformed_correlations: list[float]  # per image: correlation of the source's map with the transformed one's
    target_correlations: list[float]  # per image: correlation of the source's map with the target's


def compare_disguise(source_maps: torch.Tensor, transformed_maps: torch.Tensor,
                     target_maps: torch.Tensor) -> MapAgreement:
    """How one method's maps (H, W) or (B, H, W) of disguised images compare with the source's (paper §7, A.4).

    A method fooled completely gives the transformed image the source's map (``transformed``: correlation 1,
    relative difference at float error); the target's map is the comparison a person would expect.
    """
    maps = [tensor.reshape(-1, *tensor.shape[-2:]) for tensor in (source_maps, transformed_maps, target_maps)]
    if not maps[0].shape == maps[1].shape == maps[2].shape:
        raise ValueError(f"the three sets of maps must have one shape, got {[tuple(m.shape) for m in maps]}.")
    source, transformed, target = maps

    def per_image(other: torch.Tensor) -> list[float]:
        return [metrics.compare_maps(source[i], other[i])["correlation"] for i in range(len(source))]

    return MapAgreement(transformed=metrics.compare_maps(source, transformed),
                        target=metrics.compare_maps(source, target),
                        transformed_correlations=per_image(transformed), target_correlations=per_image(target))
