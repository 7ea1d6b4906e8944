"""Learned, approximate nullspace noise (paper §4, eq. 6, and §5).

Beyond the linear patch embedding, the paper *learns* a noise that barely changes a model's output:
starting from Uniform(-lim, lim), minimise over training images

    || f(u + v)[logits] - f(u)[logits] ||_p

where ``u`` is either the tokens entering the encoder (``level="encoder"``, the paper's ṽϕ; ViTs
only) or the [0, 1] image itself (``level="input"``, ṽω; any model, CNNs too).

The encoder-level noise has shape (m, d): one vector per *patch* token, added to the output of
timm's ``patch_embed`` through a forward hook (no hand-written forward, so it keeps working across
timm versions). The class token gets no noise: it is a parameter of the model, the same for every
input, so perturbing it would change the model rather than its input.

The objective is minimised by zero noise, so a learned noise can simply shrink. Every result
reports the noise norm next to its initial norm, and ``keep_norm=True`` projects the noise back to
its initial norm after every step, a variant that cannot shrink.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, cast

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from nullspace_utils import metrics, models

logger = logging.getLogger(__name__)

__all__ = ["LEVELS", "NoiseResult", "NoiseEvaluation", "noise_shape", "add_noise", "learn_noise",
           "evaluate_noise", "shuffle_noise", "approximate_point"]

LEVELS = ("encoder", "input")


def _device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else where ``model`` is."""
    return models.model_device(model) if device is None else torch.device(device)


def _check_level(model: nn.Module, level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
    if level == "encoder" and not hasattr(models.unwrap(model), "patch_embed"):
        raise ValueError(
            f"level='encoder' needs a ViT with a `patch_embed` module; {type(models.unwrap(model)).__name__} has none. "
            "Use level='input' for CNNs (the paper's ṽω)."
        )


def noise_shape(model: nn.Module, level: str, image_size: int | tuple[int, int]) -> tuple[int, ...]:
    """Shape of a noise for ``model``: (m, d) patch tokens at the encoder, (C, H, W) at the input."""
    _check_level(model, level)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if level == "input":
        channels = len(getattr(model, "mean", (0, 0, 0)))
        return (channels, height, width)
    embed = _patch_embed(model)
    with torch.no_grad():
        device = next(embed.parameters()).device
        tokens = embed(torch.zeros(1, cast(nn.Conv2d, embed.proj).in_channels, height, width, device=device))
    return tuple(tokens.shape[1:])


def _patch_embed(model: nn.Module) -> nn.Module:
    """The ``patch_embed`` module of a timm ViT (that it exists is :func:`_check_level`'s to check)."""
    return cast(nn.Module, models.unwrap(model).patch_embed)


@contextlib.contextmanager
def add_noise(model: nn.Module, noise: torch.Tensor, level: str) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Within the ``with`` block, calls of the returned callable run ``model`` with ``noise`` added.

    At the encoder the noise is added to the patch tokens by a forward hook that is always removed on
    exit; at the input it is added to the [0, 1] image before the model's own normalisation.
    """
    _check_level(model, level)
    if level == "input":
        yield lambda images: model(images + noise)
        return
    embed = _patch_embed(model)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if output.shape[1:] != noise.shape:
            raise ValueError(f"encoder noise has shape {tuple(noise.shape)}, the patch tokens {tuple(output.shape[1:])}.")
        return output + noise

    handle = embed.register_forward_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


class _TensorBatches:
    """Batches of a TensorDataset by slicing its tensors: a DataLoader collates item by item, which
    costs ~0.1 s per batch of 256 images on two CPU cores and dominated a whole sweep.

    Images stored as 8-bit integers (``torch.uint8``, 0..255, a quarter of the memory of float32) come
    out as float32 in [0, 1], as torchvision's ``ToTensor`` would have made them.
    """

    def __init__(self, data: TensorDataset, batch_size: int, shuffle: bool, seed: int) -> None:
        self.tensors, self.batch_size, self.shuffle = data.tensors, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)  # batches, the last one possibly smaller

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size].to(self.tensors[0].device)
            images, *rest = (tensor[index] for tensor in self.tensors)
            if images.dtype == torch.uint8:
                images = images.float().div(255)
            yield (images, *rest)


def _loader(data: Dataset | DataLoader, batch_size: int, shuffle: bool, seed: int):
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, TensorDataset):
        return _TensorBatches(data, batch_size, shuffle, seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=False)


@dataclass
class NoiseResult:
    """A learned noise and how it got there."""

    noise: torch.Tensor
    level: str
    lim: float
    initial_norm: float
    history: list[dict] = field(default_factory=list)  # per step: loss, noise norm, lr

    @property
    def norm(self) -> float:
        return self.noise.norm().item()


def learn_noise(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    level: str,
    lim: float,
    p: float = 2,
    steps: int = 500,
    lr: float = 0.01,
    milestones: tuple[int, ...] = (150, 300, 400),
    batch_size: int = 256,
    keep_norm: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    show_progress: bool = False,
) -> NoiseResult:
    """Learn a noise that leaves ``model``'s logits unchanged (paper eq. 6), by plain SGD.

    Defaults follow the authors' follow-up code: L2 between logits (``p=2``, squared and averaged),
    SGD with lr 0.01, 500 steps, learning rate x0.1 at steps 150/300/400. ``data`` yields
    ``(image, label)``; labels are ignored. A ``TensorDataset`` is batched by slicing (fast), and may hold
    its images as ``torch.uint8`` (0..255), which are turned into floats in [0, 1] batch by batch. It
    runs on ``device`` (the model is moved there for the call, then back), by default where the model
    is; the model's mode, device and ``requires_grad`` flags are left as they were, and it computes in full
    float32 (:func:`nullspace_utils.models.exact_float32`). The learned noise comes back on the CPU.
    ``show_progress=True`` shows a tqdm bar over the steps.
    """
    if lim <= 0:
        raise ValueError(f"lim must be positive, got {lim}.")
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}.")
    device = _device(model, device)
    trainable = [parameter.requires_grad for parameter in model.parameters()]
    with models.evaluating(model, device), models.exact_float32():
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        try:
            return _sgd(model, data, level=level, lim=lim, p=p, steps=steps, lr=lr, milestones=milestones,
                        batch_size=batch_size, keep_norm=keep_norm, seed=seed, device=device,
                        show_progress=show_progress)
        finally:
            for parameter, flag in zip(model.parameters(), trainable, strict=True):
                parameter.requires_grad_(flag)


def _sgd(model: nn.Module, data, *, level: str, lim: float, p: float, steps: int, lr: float,
         milestones: tuple[int, ...], batch_size: int, keep_norm: bool, seed: int, device,
         show_progress: bool) -> NoiseResult:
    loader = _loader(data, batch_size, True, seed)
    first_images = next(iter(loader))[0]
    shape = noise_shape(model, level, tuple(first_images.shape[-2:]))
    generator = torch.Generator().manual_seed(seed)
    noise = ((torch.rand(shape, generator=generator) * 2 - 1) * lim).to(device).requires_grad_(True)
    initial_norm = noise.detach().norm().item()
    optimizer = torch.optim.SGD([noise], lr=lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)
    history: list[dict] = []
    batches = iter(loader)
    for step in tqdm(range(steps), disable=not show_progress, desc=f"learning {level} noise, lim {lim}"):
        try:
            images = next(batches)[0]
        except StopIteration:
            batches = iter(loader)
            images = next(batches)[0]
        images = images.to(device)
        with torch.no_grad():
            clean = model(images)
        with add_noise(model, noise, level) as noisy_model:
            noisy = noisy_model(images)
        loss = (noisy - clean).abs().pow(p).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if keep_norm:
            with torch.no_grad():
                noise.mul_(initial_norm / noise.norm().clamp_min(1e-12))
        history.append({"step": step, "loss": loss.item(), "norm": noise.detach().norm().item(),
                        "lr": optimizer.param_groups[0]["lr"]})
    if history:
        logger.debug("learned %s noise, lim %g, lr %g: loss %.4g -> %.4g, norm %.4g -> %.4g", level, lim, lr,
                    history[0]["loss"], history[-1]["loss"], initial_norm, history[-1]["norm"])
    return NoiseResult(noise.detach().cpu(), level, lim, initial_norm, history)


def shuffle_noise(noise: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same values in a random order: the paper's baseline with the learned noise's statistics."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(noise.numel(), generator=generator).to(noise.device)
    return noise.flatten()[order].reshape(noise.shape)


@dataclass
class NoiseEvaluation:
    """How much a noise changes a model's predictions (paper Fig. 2, 3)."""

    match: float  # fraction of unchanged top-1 predictions (metrics.top1_kept, averaged)
    logit_mse: float  # mean over images of the mean squared logit change (metrics.squared_logit_change)
    prob_change: float  # mean |change| of the probability of the clean prediction (metrics.top1_prob_change)
    noise_norm: float
    clean_norm: float  # mean norm of the clean inputs at that level (tokens or images), for scale


@torch.no_grad()
def evaluate_noise(model: nn.Module, data: Dataset | DataLoader, noise: torch.Tensor, *, level: str,
                   shuffle: bool = False, seed: int = 0, batch_size: int = 256,
                   device: str | torch.device | None = None, show_progress: bool = False) -> NoiseEvaluation:
    """Match %, logit MSE and probability change of ``model`` under ``noise`` (optionally shuffled), as
    defined in :class:`nullspace_utils.metrics.PredictionChanges`.

    Runs on ``device`` (the model is moved there for the call, then back), by default where the model is,
    in full float32; the model's mode and device are left as they were. ``show_progress=True`` shows a
    tqdm bar over the batches.
    """
    device = _device(model, device)
    noise = (shuffle_noise(noise, seed) if shuffle else noise).to(device)
    with models.evaluating(model, device), models.exact_float32():
        return _evaluate(model, data, noise, level=level, seed=seed, batch_size=batch_size, device=device,
                         show_progress=show_progress)


def _evaluate(model: nn.Module, data, noise: torch.Tensor, *, level: str, seed: int, batch_size: int,
              device: torch.device, show_progress: bool = False) -> NoiseEvaluation:
    """The loop of :func:`evaluate_noise`, on a model already in eval mode on ``device``."""
    changes, clean_norms = metrics.PredictionChanges(), []
    embed = _patch_embed(model) if level == "encoder" else None
    batches = _loader(data, batch_size, False, seed)
    for images, _ in tqdm(batches, disable=not show_progress, desc=f"evaluating {level} noise"):
        images = images.to(device)
        clean = model(images)
        with add_noise(model, noise, level) as noisy_model:
            noisy = noisy_model(images)
        changes.add(clean, noisy)
        if embed is not None:
            normalize = getattr(model, "normalize", lambda x: x)
            clean_norms.append(embed(normalize(images)).flatten(1).norm(dim=1))
        else:
            clean_norms.append(images.flatten(1).norm(dim=1))
    return NoiseEvaluation(
        match=changes.match,
        logit_mse=changes.logit_mse,
        prob_change=changes.prob_change,
        noise_norm=noise.norm().item(),
        clean_norm=torch.cat(clean_norms).mean().item(),
    )


def approximate_point(model: nn.Module, train: Dataset, val: Dataset, *, lim: float, keep_norm: bool, steps: int,
                      batch_size: int, lr: float, milestones: tuple[int, ...],
                      device: str | torch.device | None = None, show_progress: bool = False) -> dict:
    """One point of paper Fig. 2 as a JSON-ready row: learn an encoder-level noise from Uniform(-lim, lim)
    (:func:`learn_noise`) and evaluate it on ``val``, learned and shuffled, with its norms and its first and
    last batch loss. ``show_progress=True`` shows tqdm bars over the steps and the evaluations."""
    result = learn_noise(model, train, level="encoder", lim=lim, steps=steps, batch_size=batch_size, lr=lr,
                         milestones=milestones, keep_norm=keep_norm, device=device, show_progress=show_progress)
    learned = evaluate_noise(model, val, result.noise, level="encoder", device=device, show_progress=show_progress)
    shuffled = evaluate_noise(model, val, result.noise, level="encoder", shuffle=True, device=device,
                              show_progress=show_progress)
    return {"lim": lim, "keep_norm": keep_norm, "lr": lr, "initial_norm": result.initial_norm,
            "final_norm": result.norm, "first_loss": result.history[0]["loss"],
            "final_loss": result.history[-1]["loss"], "learned": asdict(learned), "shuffled": asdict(shuffled)}
