r"""Learned, approximate nullspace noise (paper §4, eq. 6, and §5).

Beyond the linear patch embedding, the paper *learns* a noise that barely changes a model's output:
starting from Uniform(-lim, lim), minimise over training images (eq. 6)

.. math::

    \bigl\lVert f(u + v)_{\text{logits}} - f(u)_{\text{logits}} \bigr\rVert_p

(here: the L2 norm, averaged over the batch), where :math:`u` is either the tokens entering the encoder
(``level="encoder"``, the paper's :math:`\tilde v_\phi`; ViTs only) or the [0, 1] image itself
(``level="input"``, :math:`\tilde v_\omega`; any model, CNNs too).

The recipe follows the paper's eq. 6 and the authors' follow-up code (Liu et al., "Approximate Nullspace
Augmented Finetuning for Robust Vision Transformers", CPAL 2025; github.com/Liu-Hy/NS-ViT): the L2 *norm*
(not squared) of the logit difference, averaged over the batch, plain SGD with the rate x0.1 at fixed
milestones. ``squared=True`` gives the squared variant (the library's loss before 2026-11). Where the
book departs from the authors (steps instead of epochs, [0, 1] pixel units for ``lim``), the chapters say so.

The encoder-level noise has shape (m, d): one vector per *patch* token, added to the output of
timm's ``patch_embed`` through a forward hook (no hand-written forward, so it keeps working across
timm versions). The class token gets no noise: it is a parameter of the model, the same for every
input, so perturbing it would change the model rather than its input.

The objective is minimised by zero noise, so a learned noise can simply shrink; and one SGD rate does not
fit every model, level and lim. So :func:`learn_noise` picks its rate from a probe on training images by
default (``lr="auto"``, :func:`choose_lr`, a grid widened until the chosen rate is interior), every result
reports the noise norm next to its initial norm, ``keep_norm=True`` projects the noise back to its initial
norm after every step, and the study's :func:`~nullspace_utils.studies.noise_sweep.noise_point` checks that learning beat the
learned values' shuffled copy on the training loss, or marks the point "learning failed".

Only the forward and backward passes that *learn* a noise may run in lower precision (``precision``, :data:`PRECISIONS`;
by default float32 on the CPU and bf16 autocast on CUDA, measured in ``benchmarks/learned_noise_cost.py``): every
*measurement* (:func:`evaluate_noise`, :func:`training_loss`) computes in full float32 without TF32, as the small
logit changes of §4 need.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, Sized, cast

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler, TensorDataset
from tqdm.auto import tqdm

from nullspace_utils import exact, metrics, models
from nullspace_utils.data import check_finite

logger = logging.getLogger(__name__)

__all__ = ["LEVELS", "LR_GRID", "PRECISIONS", "learning_precision", "NoiseResult", "NoiseEvaluation", "LrChoice", "noise_shape", "add_noise",
           "uniform_noise", "logit_distance", "choose_lr", "learn_noise", "learn_noises", "noises_per_pass",
           "clean_logits_once", "compiled_passes", "COMPILE_BACKEND",
           "IMAGES_PER_PASS", "GPU_SHARE_VARIABLE", "CleanPass", "clean_pass", "training_loss",
           "evaluate_noise",
           "shuffle_noise", "split_noise", "resolve_lr"]

LEVELS = ("encoder", "input")

#: the starting grid of :func:`choose_lr`: log-spaced by 10, widened at whichever edge wins, then refined
LR_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)

#: images in one learning pass on a GPU of 80 GB when :func:`noises_per_pass` chooses (three noises at batch 256),
#: in proportion to the memory of others: the most any imagenet model needed for 768 was 34 GiB (ResNet-50 and
#: EfficientNet-B0 at the input, bf16; ``benchmarks/results/learned_noise_per_pass_gpu.json``)
IMAGES_PER_PASS = 768

#: the arithmetic of the passes that learn a noise (:func:`learning_precision`): ``"float32"`` (full float32, no TF32),
#: ``"tf32"`` (TF32 matrix products on CUDA; convolutions in float32), ``"bf16"`` (bfloat16 autocast, the loss and the
#: noise in float32), ``"auto"`` (float32 on the CPU, bf16 on CUDA)
PRECISIONS = ("auto", "float32", "tf32", "bf16")


def _device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` if given, else where ``model`` is."""
    return models.model_device(model) if device is None else torch.device(device)


def learning_precision(precision: str, device: str | torch.device) -> str:
    """The arithmetic :func:`learn_noise` learns in on ``device``: ``precision`` itself, or for ``"auto"`` full float32
    on the CPU (the book's results, bit for bit; bf16 on a CPU is emulated and slow) and bf16 autocast on a CUDA GPU
    that computes bf16 natively (compute capability 8.0 and up; float32 on older ones, such as Colab's T4). On one
    H100 a step of 256 images at 224 px then takes 2.9x / 5.3x / 6.6x less time than float32 for ViT-S/B/L-32 (TF32:
    2.3x / 3.4x / 4.1x; ``benchmarks/results/learned_noise_precision_gpu.json``), and the noise it learns keeps its
    match and logit MSE, *measured in float32*, within the float32 seeds' spread at the teaching points measured
    (``learned_noise_quality_gpu.json``). Models as small as the teaching zoo's leave the GPU waiting on kernel
    launches, and there bf16's casts make a step of one noise slower than float32; with three noises per pass
    (:func:`noises_per_pass`) a teaching point's three seeds took 1.8-2.7x less time than one by one (evaluations
    included), and their match and logit MSE did not separate from the float32 seeds'
    (``learned_noise_quality_per_pass_gpu.json``).

    Args:
        precision: one of :data:`PRECISIONS`.
        device: the device the noise is learned on.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    device = torch.device(device)
    return "bf16" if device.type == "cuda" and _cuda_capability(device) >= (8, 0) else "float32"


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    """A CUDA device's compute capability: from 8.0 (Ampere: A100, L4, H100, H200) bf16 and TF32 are native; below
    (a T4 is 7.5) bf16 is emulated, slower than float32."""
    return torch.cuda.get_device_capability(device)


#: the environment variable through which :func:`nullspace_utils.plan.run_plan` tells a part how many parts share
#: its GPU (its slots on that device): each may then use that share of the GPU's memory
GPU_SHARE_VARIABLE = "NULLSPACE_GPU_SHARE"


def _cuda_memory_bytes(device: torch.device) -> int:
    """This process's share of a CUDA device's memory, in bytes: all of it, or the part that
    ``$NULLSPACE_GPU_SHARE`` (the number of processes sharing the GPU, set by the plan) leaves to each."""
    share = os.environ.get(GPU_SHARE_VARIABLE, "1")
    if not share.isdigit() or int(share) < 1:
        raise ValueError(f"{GPU_SHARE_VARIABLE}={share!r} must be a whole number >= 1 (the processes sharing the GPU).")
    return torch.cuda.get_device_properties(device).total_memory // int(share)


@contextlib.contextmanager
def _learning_arithmetic(precision: str) -> Iterator[None]:
    """The backend flags of a resolved ``precision`` (not ``"auto"``) inside the block; bf16's autocast itself is
    entered around the forward passes (:func:`_sgd`), so that the loss and the backward pass stay outside it."""
    with models.tf32_matmuls() if precision == "tf32" else models.exact_float32():
        yield


def _check_level(model: nn.Module, level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}.")
    if level == "encoder" and not hasattr(models.unwrap(model), "patch_embed"):
        raise ValueError(
            f"level='encoder' needs a ViT with a `patch_embed` module; {type(models.unwrap(model)).__name__} has none. "
            "Use level='input' for CNNs (the paper's ṽω)."
        )


def noise_shape(model: nn.Module, level: str, image_size: int | tuple[int, int]) -> tuple[int, ...]:
    """Shape of a noise for ``model``: (m, d) patch tokens at the encoder, (C, H, W) at the input.

    Args:
        model: the classifier the noise is for.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
        image_size: the image's side, or (H, W).
    """
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

    Args:
        model: the classifier to run.
        noise: a noise of :func:`noise_shape`'s shape for ``level`` (the same for every image), or one per image of
            the batch, ``(B, *shape)``.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
    """
    _check_level(model, level)
    if level == "input":
        yield lambda images: model(images + noise)
        return
    embed = _patch_embed(model)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if noise.shape not in (output.shape[1:], output.shape):
            raise ValueError(f"encoder noise has shape {tuple(noise.shape)}, the patch tokens {tuple(output.shape[1:])} "
                             f"(or {tuple(output.shape)} with one noise per image).")
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

    def __init__(self, data: TensorDataset, batch_size: int, shuffle: bool, seed: int, indices: bool = False) -> None:
        self.tensors, self.batch_size, self.shuffle, self.indices = data.tensors, batch_size, shuffle, indices
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)  # batches, the last one possibly smaller

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.tensors[0].device)  # once per pass: a copy to a GPU per batch waits for the GPU
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            images, *rest = (tensor[index] for tensor in self.tensors)
            if images.dtype == torch.uint8:
                images = images.float().div(255)
            yield (images, *rest, index) if self.indices else (images, *rest)


def _loader(data: Dataset | DataLoader, batch_size: int, shuffle: bool, seed: int, indices: bool = False):
    """Batches of ``data``; with ``indices`` (a TensorDataset only) each batch also holds its images' indices."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, TensorDataset):
        return _TensorBatches(data, batch_size, shuffle, seed, indices)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=False)


def _finite(images: torch.Tensor) -> torch.Tensor:
    """A batch of ``data``, refused when it holds NaN or infinite values (they would turn every loss and metric
    into NaN without an error)."""
    if images.is_floating_point() and not torch.isfinite(images).all():
        raise ValueError("data holds images with NaN or infinite values; remove or repair them (e.g. keep "
                         "torch.isfinite(images).flatten(1).all(1)) before learning or evaluating a noise.")
    return images


def uniform_noise(shape: tuple[int, ...], lim: float, seed: int = 0) -> torch.Tensor:
    """Uniform(-lim, lim) noise of ``shape`` from a seeded generator: the paper's starting point for a learned
    noise (§4), and the reference it is compared with. Its RMS is ``lim / sqrt(3)``.

    Args:
        shape: the noise's shape (:func:`noise_shape`).
        lim: the half-width of the uniform distribution.
        seed: seed of the generator.
    """
    if not 0 < lim < math.inf:
        raise ValueError(f"lim must be positive and finite, got {lim}.")
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) * 2 - 1) * lim


def logit_distance(clean: torch.Tensor, noisy: torch.Tensor, *, p: float = 2, squared: bool = False) -> torch.Tensor:
    """Per image, the paper's eq. 6: the L_p norm of the logit difference over the classes (B,).

    ``squared=True`` gives ``sum |difference|^p`` instead (for p = 2, the squared L2 distance): the variant the
    library used before, whose gradient is ``p * norm^(p-1)`` times larger (about 6x at lim 2 on the zoo ViT-S).

    Args:
        clean: logits of the clean inputs (B, classes).
        noisy: logits of the same inputs with the noise (B, classes).
        p: the norm's order.
        squared: return :math:`\\sum_j |\\Delta z_j|^p` instead of the norm.
    """
    if not p > 0:
        raise ValueError(f"p must be positive, got {p}.")
    difference = noisy - clean
    if squared:
        return difference.abs().pow(p).sum(dim=1)
    return torch.linalg.vector_norm(difference, ord=p, dim=1)  # its gradient at 0 is 0, not NaN


@dataclass
class LrChoice:
    """What :func:`choose_lr` tried and what it chose: every rate's probe score (mean training loss over the last
    quarter of a short constant-rate run; keys ``str(lr)``) and whether the winner is still at an edge of the grid
    after widening, in which case the probe failed and results learned with it must not be read as a model's."""

    lr: float
    grid: list[float]
    scores: dict[str, float]
    at_edge: bool


@dataclass
class NoiseResult:
    """A learned noise and how it got there."""

    noise: torch.Tensor
    level: str
    lim: float
    initial_norm: float
    lr: float = 0.0
    lr_choice: LrChoice | None = None  # set when the rate was chosen by lr="auto"
    history: list[dict] = field(default_factory=list)  # per step: loss, noise norm, lr
    precision: str = "float32"  # the arithmetic it was learned in (learning_precision)

    @property
    def norm(self) -> float:
        return self.noise.norm().item()


def _check_noise_settings(lim: float, p: float) -> None:
    if not 0 < lim < math.inf:
        raise ValueError(f"lim must be positive and finite, got {lim}.")
    if not p > 0:
        raise ValueError(f"p must be positive, got {p}.")


def choose_lr(model: nn.Module, data: Dataset | DataLoader, *, level: str, lim: float, p: float = 2,
              squared: bool = False, grid: Sequence[float] = LR_GRID, steps: int = 50, batch_size: int = 256,
              max_widenings: int = 6, refine: bool = True, seed: int = 0, device: str | torch.device | None = None,
              precision: str = "auto", per_pass: int | None = None, clean_once: bool | None = None,
              compile: bool = False, show_progress: bool = False) -> LrChoice:
    """The SGD rate for :func:`learn_noise`, chosen on *training* images (validation images never take part).

    Each rate runs ``steps`` constant-rate SGD steps from the same start; its score is the mean loss over the last
    quarter of the run (a rate whose loss is not finite loses). While the best rate is the smallest or the largest
    tried, the grid is widened by one rate beyond that edge (with the spacing of its two end rates), at most
    ``max_widenings`` times; then, with ``refine``, the two rates halfway (in log scale) to the best one's
    neighbours are tried too. A rate at the edge of its grid says the grid, not the model, decided:
    ``LrChoice.at_edge`` reports when widening did not move the best rate inside. The rates of one round (the
    starting grid, then the two refinements) are learned together, ``per_pass`` at a time (:func:`learn_noises`).

    Args:
        model: the classifier the noise is for.
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
        lim: the half-width of the uniform start.
        p: the norm's order in the loss (:func:`logit_distance`).
        squared: use the loss without its root.
        grid: the rates tried first.
        steps: SGD steps per rate.
        batch_size: images per step.
        max_widenings: how often the grid may grow past an edge.
        refine: also try the two rates halfway to the best one's neighbours.
        seed: seed of the start and of the batch order (the same for every rate).
        device: where to compute; ``None``: where the model is.
        precision: the arithmetic of the probe runs (:func:`learning_precision`).
        per_pass: rates learned in one forward pass (:func:`noises_per_pass`; ``None``: chosen by the device).
        clean_once: the clean logits computed once per round, not per step (:func:`clean_logits_once`; ``None``:
            chosen by the device).
        compile: run the probe's passes through ``torch.compile`` (:func:`compiled_passes`).
        show_progress: show a tqdm bar.
    """
    learning_precision(precision, "cpu")  # bad values fail before any probe runs
    clean_logits_once(clean_once, data, "cpu")
    _check_compile(compile, model, level)
    _check_noise_settings(lim, p)
    _check_level(model, level)
    rates = sorted(float(rate) for rate in grid)
    if len(rates) < 2 or any(not 0 < rate < math.inf for rate in rates):
        raise ValueError(f"grid must hold at least two positive learning rates, got {list(grid)}.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    factor = rates[-1] / rates[-2]
    scores: dict[str, float] = {}

    def learned(new: Sequence[float]) -> None:
        """Run the rates not scored yet, together, and score each (a loss that is not finite loses)."""
        todo = [rate for rate in new if str(rate) not in scores]
        if todo:
            results = _learn(model, data, [(seed, rate) for rate in todo], level=level, lim=lim, p=p, squared=squared,
                             steps=steps, milestones=(), batch_size=batch_size, keep_norm=False, device=device,
                             precision=precision, per_pass=per_pass, clean_once=clean_once, compile=compile)
            for rate, result in zip(todo, results, strict=True):
                tail = [entry["loss"] for entry in result.history[-max(1, steps // 4):]]
                value = sum(tail) / len(tail)
                scores[str(rate)] = value if math.isfinite(value) else math.inf
        bar.update(len(todo))

    def score(rate: float) -> float:
        return scores[str(rate)]

    def rounded(rate: float) -> float:
        return float(f"{rate:.3g}")

    with tqdm(disable=not show_progress, desc=f"choosing the lr ({level}, lim {lim:g})") as bar:
        for widening in range(max_widenings + 1):
            learned(rates)
            best = min(rates, key=score)
            at_edge = best in (rates[0], rates[-1])
            if not at_edge or widening == max_widenings:
                break
            rates = [rounded(rates[0] / factor)] + rates if best == rates[0] else rates + [rounded(rates[-1] * factor)]
        if refine and not at_edge:
            index = rates.index(best)
            between = [rounded(math.sqrt(best * rates[index - 1])), rounded(math.sqrt(best * rates[index + 1]))]
            rates = sorted(set(rates) | set(between))
            learned(between)
            best = min(rates, key=score)
    logger.info("choose_lr (%s, lim %g): scores %s, chose %g%s", level, lim, scores, best,
                " (at the edge of the grid)" if at_edge else "")
    return LrChoice(lr=best, grid=rates, scores={str(rate): scores[str(rate)] for rate in rates}, at_edge=at_edge)


def resolve_lr(lr: float | str, model: nn.Module, data: Dataset | DataLoader, **probe: Any
               ) -> tuple[float, LrChoice | None]:
    """``lr`` as a number: itself, or for ``"auto"`` the rate :func:`choose_lr` picks (``probe`` are its settings),
    with that choice.

    Args:
        lr: a rate, or ``"auto"``.
        model: the classifier (for ``"auto"``).
        data: the training data (for ``"auto"``).
        **probe: :func:`choose_lr`'s keyword arguments.
    """
    if not isinstance(lr, str):
        return lr, None
    if lr != "auto":
        raise ValueError(f"lr must be a positive number or 'auto', got {lr!r}.")
    choice = choose_lr(model, data, **probe)
    return choice.lr, choice


def learn_noise(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    level: str,
    lim: float,
    p: float = 2,
    squared: bool = False,
    steps: int = 500,
    lr: float | str = "auto",
    milestones: tuple[int, ...] = (150, 300, 400),
    batch_size: int = 256,
    keep_norm: bool = False,
    seed: int = 0,
    probe_steps: int = 50,
    lr_grid: Sequence[float] = LR_GRID,
    device: str | torch.device | None = None,
    precision: str = "auto",
    per_pass: int | None = None,
    clean_once: bool | None = None,
    compile: bool = False,
    show_progress: bool = False,
) -> NoiseResult:
    """Learn a noise that leaves ``model``'s logits unchanged (paper eq. 6), by plain SGD.

    The loss is eq. 6's L_p norm of the logit difference (:func:`logit_distance`), averaged over the batch;
    ``squared=True`` sums ``|difference|^p`` instead. The schedule follows the authors' follow-up code
    (Liu-Hy/NS-ViT): SGD, 500 steps here (their 500 "rounds" are epochs), rate x0.1 at steps 150/300/400.
    ``lr="auto"`` (the default) picks the rate with :func:`choose_lr` (``probe_steps`` steps per rate of
    ``lr_grid``, same seed, training images only), recorded in ``NoiseResult.lr_choice``; pass a number to fix it.

    ``seed`` sets both the Uniform(-lim, lim) start (:func:`uniform_noise`) and the order of the batches.
    ``data`` yields ``(image, label)``; labels are ignored. A ``TensorDataset`` is batched by slicing (fast), and
    may hold its images as ``torch.uint8`` (0..255), turned into floats in [0, 1] batch by batch. It runs on
    ``device`` (the model is moved there for the call, then back), by default where the model is; the model's
    mode, device and ``requires_grad`` flags are left as they were. It computes in ``precision``
    (:func:`learning_precision`): by default full float32 on the CPU (:func:`nullspace_utils.models.exact_float32`)
    and bf16 autocast on CUDA, with the loss, the gradient step and the noise in float32; the rate probe uses the same.
    The loss history stays on the device until the last step (no wait for the GPU per step). The learned noise
    comes back on the CPU.
    ``show_progress=True`` shows a tqdm bar over the steps.

    Args:
        model: the classifier the noise is for (left as it was).
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
        lim: the half-width of the Uniform(-lim, lim) start.
        p: the norm's order in the loss (:func:`logit_distance`).
        squared: minimise :math:`\\sum_j |\\Delta z_j|^p` instead of the norm.
        steps: SGD steps.
        lr: the SGD rate, or ``"auto"`` for :func:`choose_lr`'s.
        milestones: the steps after which the rate is multiplied by 0.1.
        batch_size: images per step.
        keep_norm: rescale the noise to its starting norm after every step.
        seed: seed of the start and of the batch order.
        probe_steps: steps per rate when ``lr="auto"``.
        lr_grid: the rates ``lr="auto"`` tries first.
        device: where to compute; ``None``: where the model is.
        precision: the arithmetic of the learning passes, one of :data:`PRECISIONS` (:func:`learning_precision`).
        per_pass: rates of the probe learned in one forward pass (:func:`noises_per_pass`).
        clean_once: the clean logits of the training images computed once, not per step (:func:`clean_logits_once`;
            ``None``: on CUDA only).
        compile: run the learning passes through ``torch.compile`` (:func:`compiled_passes`).
        show_progress: show a tqdm bar over the steps.
    """
    return learn_noises(model, data, level=level, lim=lim, seeds=(seed,), p=p, squared=squared, steps=steps, lr=lr,
                        milestones=milestones, batch_size=batch_size, keep_norm=keep_norm, probe_steps=probe_steps,
                        lr_grid=lr_grid, device=device, precision=precision, per_pass=per_pass,
                        clean_once=clean_once, compile=compile, show_progress=show_progress)[0]


def noises_per_pass(per_pass: int | None, batch_size: int, device: str | torch.device) -> int:
    """How many noises :func:`learn_noises` and :func:`choose_lr` learn in one forward pass on ``device``:
    ``per_pass`` itself, or for ``None`` one on the CPU (each noise then learns exactly as alone: the book's
    committed results, bit for bit) and on CUDA as many as :data:`IMAGES_PER_PASS` images per 80 GB of the GPU's
    memory hold, at least one: three at batch 256 on an H100, five on an H200, one on a 16 GB T4 or a 24 GB L4. A
    model too small to fill the GPU alone then does not leave it waiting. When the plan runs several parts on one
    GPU, each counts only its share of the memory (:data:`GPU_SHARE_VARIABLE`).

    Args:
        per_pass: a number of noises, or ``None`` to choose by the device.
        batch_size: images per step of one noise.
        device: where the noises are learned.
    """
    if per_pass is None:
        device = torch.device(device)
        if device.type != "cuda":
            return 1
        images = IMAGES_PER_PASS * _cuda_memory_bytes(device) // (80 * 10**9)
        return max(1, images // batch_size)
    if isinstance(per_pass, bool) or not isinstance(per_pass, int) or per_pass < 1:
        raise ValueError(f"per_pass must be a whole number >= 1 or None, got {per_pass!r}.")
    return per_pass


def learn_noises(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    level: str,
    lim: float,
    seeds: Sequence[int] = (0, 1, 2),
    p: float = 2,
    squared: bool = False,
    steps: int = 500,
    lr: float | str = "auto",
    milestones: tuple[int, ...] = (150, 300, 400),
    batch_size: int = 256,
    keep_norm: bool = False,
    probe_steps: int = 50,
    lr_grid: Sequence[float] = LR_GRID,
    device: str | torch.device | None = None,
    precision: str = "auto",
    per_pass: int | None = None,
    clean_once: bool | None = None,
    compile: bool = False,
    show_progress: bool = False,
) -> list[NoiseResult]:
    """One noise per seed, as :func:`learn_noise` learns each (same settings and rate; ``lr="auto"`` chooses the
    rate once, with the first seed), but ``per_pass`` of them in each forward pass: the model is frozen, so the
    noises can share its passes, each noise on its own seed's batch of images (the batch stacked once per noise).
    Each noise's loss and gradient are its own, as if it were learned alone; on the CPU the default learns one
    at a time (:func:`noises_per_pass`), which gives exactly :func:`learn_noise`'s noises. A ``DataLoader`` (one
    batch order for every seed) always learns one noise per pass. The arguments not listed below are
    :func:`learn_noise`'s.

    Args:
        model: the classifier the noises are for (left as it was).
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        level: ``"encoder"`` or ``"input"``.
        lim: the half-width of every Uniform(-lim, lim) start.
        seeds: one noise per seed (its start and its batch order).
        per_pass: noises learned in one forward pass (:func:`noises_per_pass`; ``None``: chosen by the device).
        clean_once: the clean logits of the training images computed once, not per step (:func:`clean_logits_once`;
            ``None``: chosen by the device).
        compile: run the learning passes (the probe's too) through ``torch.compile`` (:func:`compiled_passes`).
    """
    _check_noise_settings(lim, p)
    _check_level(model, level)
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed.")
    learning_precision(precision, "cpu")  # a bad value fails before any probe runs
    clean_logits_once(clean_once, data, "cpu")
    _check_compile(compile, model, level)
    lr, lr_choice = resolve_lr(lr, model, data, level=level, lim=lim, p=p, squared=squared, grid=lr_grid,
                                steps=probe_steps, batch_size=batch_size, seed=seeds[0], device=device,
                                precision=precision, per_pass=per_pass, clean_once=clean_once, compile=compile,
                                show_progress=show_progress)
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be positive and finite (or 'auto'), got {lr}.")
    results = _learn(model, data, [(seed, lr) for seed in seeds], level=level, lim=lim, p=p, squared=squared,
                     steps=steps, milestones=milestones, batch_size=batch_size, keep_norm=keep_norm, device=device,
                     precision=precision, per_pass=per_pass, clean_once=clean_once, compile=compile,
                     show_progress=show_progress)
    for result in results:
        result.lr_choice = lr_choice
    return results


def _learn(model: nn.Module, data, runs: Sequence[tuple[int, float]], *, level: str, lim: float, p: float,
           squared: bool, steps: int, milestones: tuple[int, ...], batch_size: int, keep_norm: bool,
           device: str | torch.device | None, precision: str, per_pass: int | None, clean_once: bool | None = None,
           compile: bool = False, show_progress: bool = False) -> list[NoiseResult]:
    """One noise per ``(seed, rate)`` of ``runs``, ``per_pass`` of them per forward pass (:func:`_sgd`), with the
    model frozen, in eval mode on ``device`` and in ``precision``'s arithmetic; the model is left as it was."""
    device = _device(model, device)
    arithmetic = learning_precision(precision, device)
    autocast = arithmetic == "bf16"
    clean_logits = None
    # a DataLoader has one batch order for every seed: its noises learn one at a time, each over a pass of its own
    chunk = 1 if isinstance(data, DataLoader) else noises_per_pass(per_pass, batch_size, device)
    trainable = [parameter.requires_grad for parameter in model.parameters()]
    results: list[NoiseResult] = []
    with models.evaluating(model, device), _learning_arithmetic(arithmetic):
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        try:
            if clean_logits_once(clean_once, data, device):  # once per call, for all its passes
                clean_logits = _clean_logits(model, data, batch_size, device, autocast)
            with compiled_passes(model, level, compile) as forward:
                for start in range(0, len(runs), chunk):
                    results += _sgd(model, data, runs[start : start + chunk], level=level, lim=lim, p=p,
                                    squared=squared, steps=steps, milestones=milestones, batch_size=batch_size,
                                    keep_norm=keep_norm, device=device, autocast=autocast, clean_logits=clean_logits,
                                    show_progress=show_progress, forward=forward)
        finally:
            for parameter, flag in zip(model.parameters(), trainable, strict=True):
                parameter.requires_grad_(flag)
    for result in results:
        result.precision = arithmetic
    return results


#: the ``torch.compile`` backend of :func:`compiled_passes` (tests use ``"aot_eager"``: the same graphs, no code
#: generation)
COMPILE_BACKEND = "inductor"


def _check_compile(compile: bool, model: nn.Module, level: str) -> None:
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True or False, got {compile!r}.")
    if compile and level == "encoder" and not isinstance(getattr(models.unwrap(model), "blocks", None), nn.Module):
        raise ValueError(f"compile=True at the encoder compiles the ViT's `blocks`; {type(models.unwrap(model)).__name__} "
                         "has none: pass compile=False.")


@contextlib.contextmanager
def compiled_passes(model: nn.Module, level: str, compile: bool) -> Iterator[nn.Module]:
    """Within the block, the module the learning passes call: ``model`` itself, or with ``compile`` a form of it
    run through ``torch.compile`` (:data:`COMPILE_BACKEND`). At the encoder the noise enters through a forward hook
    on the patch embedding (:func:`add_noise`), which would make a compiled whole model compile again at every
    step: there the ViT's transformer ``blocks`` (nearly all of its computation) are compiled. At the input the
    network inside an :class:`~nullspace_utils.models.ImageClassifier` is (its input check stays outside the
    graph), or any other model whole. The compiled module is swapped into ``model`` for the block and the original
    put back on exit. The model is frozen, so its parameters are constants of the graphs; a new batch size compiles
    once more (the last, shorter batch). The measurements (:func:`evaluate_noise`, :func:`training_loss`) are never
    compiled.

    Args:
        model: the frozen classifier, already on its device.
        level: ``"encoder"`` or ``"input"``.
        compile: compile, or return ``model`` as it is.
    """
    _check_compile(compile, model, level)
    if not compile:
        yield model
        return
    owner, name = (models.unwrap(model), "blocks") if level == "encoder" else (model, "net")
    if not isinstance(getattr(owner, name, None), nn.Module):  # a plain model at the input: compiled whole
        yield cast(nn.Module, torch.compile(model, backend=COMPILE_BACKEND))
        return
    original = cast(nn.Module, getattr(owner, name))
    setattr(owner, name, torch.compile(original, backend=COMPILE_BACKEND))
    try:
        yield model
    finally:
        setattr(owner, name, original)


def clean_logits_once(clean_once: bool | None, data: Dataset | DataLoader, device: str | torch.device) -> bool:
    """Whether :func:`learn_noises` and :func:`choose_lr` compute the clean logits of the training images once, in
    one pass over them before the first step, instead of once per step: ``clean_once`` itself, or for ``None`` on
    CUDA and not on the CPU (the book's committed results, bit for bit). With the model frozen, a step is then the
    noisy forward and backward passes alone: on one H100 1.32-1.50x less time per noise step for the six imagenet
    models at 224 px (``benchmarks/results/learned_noise_clean_once_gpu.json``). Computed once, an image's clean
    logits come from another batch than the one it meets in a step, in the same arithmetic; at eight committed
    teaching points the noises learned so did not separate from the float32 seeds in match or logit MSE
    (``learned_noise_quality_clean_once_gpu.json``), and on one CPU both ways gave identical noises (a test compares
    them up to rounding). A call of fewer step batches than the data holds (a short probe on many images) computes
    more clean batches once than per step. Only a ``TensorDataset`` can be computed once: its images are found
    again by index.

    Args:
        clean_once: ``True``, ``False``, or ``None`` to choose by the device.
        data: the training data.
        device: where the noises are learned.
    """
    if clean_once is None:
        return torch.device(device).type == "cuda" and isinstance(data, TensorDataset)
    if not isinstance(clean_once, bool):
        raise ValueError(f"clean_once must be True, False or None, got {clean_once!r}.")
    if clean_once and not isinstance(data, TensorDataset):
        raise ValueError(f"clean_once=True needs a TensorDataset (its images are found again by index), got "
                         f"{type(data).__name__}; pass clean_once=False or None, or stack the data into a "
                         "TensorDataset (nullspace_utils.data.stack_dataset).")
    return clean_once


def _clean_logits(model: nn.Module, data: TensorDataset, batch_size: int, device: torch.device,
                  autocast: bool) -> torch.Tensor:
    """The clean logits of every image of ``data``, in its stored order, float32 on ``device``: one pass in the
    learning arithmetic (:func:`clean_logits_once`)."""
    logits = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for images, *_ in _loader(data, batch_size, False, 0):
            logits.append(model(images.to(device)).float())
    return torch.cat(logits)


def _all_checked(loader) -> bool:
    """For a loader of tensors already in memory (:class:`_TensorBatches`): checks all its images at once, in chunks
    (finite, and not 8-bit values: :func:`nullspace_utils.models.check_not_8bit`; images stored as uint8 come out
    divided by 255), and returns True, so the loop need not check (and wait for the GPU) per step. False for any
    other loader."""
    if not isinstance(loader, _TensorBatches):
        return False
    images = loader.tensors[0]
    if images.dtype == torch.uint8:  # uint8 storage: batched as value / 255, in [0, 1] by construction
        return True
    for start in range(0, len(images), 1024):
        models.check_not_8bit(_finite(images[start : start + 1024]), name="the data")
    return True


def _sgd(model: nn.Module, data, runs: Sequence[tuple[int, float]], *, level: str, lim: float, p: float,
         squared: bool, steps: int, milestones: tuple[int, ...], batch_size: int, keep_norm: bool, device,
         autocast: bool, clean_logits: torch.Tensor | None, show_progress: bool,
         forward: nn.Module | None = None) -> list[NoiseResult]:
    """The SGD loop of :func:`learn_noises`: one noise per ``(seed, rate)`` of ``runs``, all in the same forward
    passes (in bf16 autocast when ``autocast``). Each distinct seed draws its own batches; each noise meets its
    seed's batch, and its loss (the mean over that batch) and its rate are its own. With one run this is exactly
    the single-noise loop: the same tensors, the same operations. Given ``clean_logits`` (every training image's,
    :func:`clean_logits_once`), a step looks its images' up by index instead of running the clean pass. The noisy
    passes call ``forward`` (:func:`compiled_passes`'s module; ``None``: ``model``)."""
    forward = model if forward is None else forward
    seeds = list(dict.fromkeys(seed for seed, _ in runs))  # one batch order per distinct seed
    owner = [seeds.index(seed) for seed, _ in runs]
    # with clean logits, each batch also holds its images' indices, to look theirs up
    loaders = [_loader(data, batch_size, True, seed, indices=clean_logits is not None) for seed in seeds]
    checked = _all_checked(loaders[0])
    # a first batch of every loader, for the image size: drawing it moves a loader's shuffling on by one pass, as
    # the single-noise loop always did, so each seed's batches stay the ones it meets when learned alone
    first_images = [next(iter(loader))[0] for loader in loaders][0]
    shape = noise_shape(model, level, tuple(first_images.shape[-2:]))
    noises = [uniform_noise(shape, lim, seed).to(device).requires_grad_(True) for seed, _ in runs]
    initial_norms = [noise.detach().norm().item() for noise in noises]
    optimizer = torch.optim.SGD([{"params": [noise], "lr": rate} for noise, (_, rate) in zip(noises, runs, strict=True)])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)
    # on the device until the end: .item() per step would wait for the GPU
    losses: list[list[torch.Tensor]] = [[] for _ in runs]
    norms: list[list[torch.Tensor]] = [[] for _ in runs]
    rates: list[list[float]] = [[] for _ in runs]
    batches = [iter(loader) for loader in loaders]
    alone = len(runs) == 1
    description = f"learning {level} noise, lim {lim}" + ("" if alone else f", {len(runs)} at once")
    for _ in tqdm(range(steps), disable=not show_progress, desc=description):
        images: list[torch.Tensor] = []
        picked: list[torch.Tensor] = []
        for index, loader in enumerate(loaders):
            try:
                batch = next(batches[index])
            except StopIteration:
                batches[index] = iter(loader)
                batch = next(batches[index])
            images.append(batch[0].to(device) if checked else _finite(batch[0].to(device)))
            if clean_logits is not None:  # its images' indices, where the clean logits are
                picked.append(batch[-1].to(clean_logits.device))
        size = len(images[0])  # the loaders share data and batch size: their batches have one size at every step
        if any(len(batch) != size for batch in images):
            raise RuntimeError(f"noises learned together met batches of sizes {[len(b) for b in images]} in one step; "
                               "learn them one per pass (per_pass=1).")
        # images checked once above: the model need not test them (and wait for the GPU) at every step
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast), \
                (models.inputs_checked() if checked else contextlib.nullcontext()):
            if clean_logits is not None:
                clean = clean_logits[picked[0] if len(picked) == 1 else torch.cat(picked)]
            else:
                with torch.no_grad():
                    clean = model(images[0] if len(images) == 1 else torch.cat(images))
            noisy_images = images[owner[0]] if alone else torch.cat([images[index] for index in owner])
            noise = noises[0] if alone else torch.cat([noise.expand(size, *shape) for noise in noises])
            with add_noise(forward, noise, level) as noisy_model:
                noisy = noisy_model(noisy_images)
        step_losses = [logit_distance(clean[owner[k] * size : (owner[k] + 1) * size].float(),
                                      noisy[k * size : (k + 1) * size].float(), p=p, squared=squared).mean()
                       for k in range(len(runs))]
        loss = step_losses[0] if alone else torch.stack(step_losses).sum()  # each noise's gradient is its own loss's
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        for k, noise in enumerate(noises):
            if keep_norm:
                with torch.no_grad():
                    noise.mul_(initial_norms[k] / noise.norm().clamp_min(1e-12))
            losses[k].append(step_losses[k].detach())
            norms[k].append(noise.detach().norm())
            rates[k].append(optimizer.param_groups[k]["lr"])
    results = []
    for k, (noise, (_, rate)) in enumerate(zip(noises, runs, strict=True)):
        history = [{"step": step, "loss": loss, "norm": norm, "lr": lr} for step, (loss, norm, lr)
                   in enumerate(zip(torch.stack(losses[k]).tolist() if losses[k] else [],
                                    torch.stack(norms[k]).tolist() if norms[k] else [], rates[k], strict=True))]
        if history:
            logger.debug("learned %s noise, lim %g, lr %g: loss %.4g -> %.4g, norm %.4g -> %.4g", level, lim, rate,
                         history[0]["loss"], history[-1]["loss"], initial_norms[k], history[-1]["norm"])
        results.append(NoiseResult(noise.detach().cpu(), level, lim, initial_norms[k], rate, None, history))
    return results


@dataclass
class CleanPass:
    """A model's clean logits on a dataset, batch by batch in the stored order (:func:`clean_pass`), and the clean
    inputs' norms at ``level``: what :func:`evaluate_noise` and :func:`training_loss` compare a noisy pass with.
    Computed once, it serves every noise evaluated on the same model, data and batch size (a sweep point
    evaluates 9 to 15 noises), so each costs one forward pass per batch instead of two, with the same numbers."""

    level: str
    batch_size: int
    logits: list[torch.Tensor]  # per batch, (B, K), on the device they were computed on
    clean_norms: torch.Tensor  # per image, the norm of its clean input at ``level`` (tokens or image)
    model_id: int = 0  # id() of the model it was computed with, to refuse it for another

    @property
    def images(self) -> int:
        """How many images the pass covers."""
        return sum(len(batch) for batch in self.logits)


@torch.no_grad()
def clean_pass(model: nn.Module, data: Dataset | DataLoader, *, level: str, batch_size: int = 256,
               images: int | None = None, device: str | torch.device | None = None) -> CleanPass:
    """``model``'s clean logits on ``data`` (its first ``images`` images; ``None``: all), in full float32, batch by
    batch in the stored order: pass it as ``clean=`` to :func:`evaluate_noise` or :func:`training_loss` with the
    same model, data, level and batch size, to evaluate many noises with one clean pass.

    Args:
        model: the classifier (left as it was).
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        level: ``"encoder"`` or ``"input"``: the level whose clean inputs' norms are kept.
        batch_size: images per forward pass.
        images: only the first ``images`` images; ``None``: all of them.
        device: where to compute; ``None``: where the model is.
    """
    _check_level(model, level)
    _check_in_order(data)
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 1):
        raise ValueError(f"images must be a whole number >= 1 or None, got {images!r}.")
    device = _device(model, device)
    logits, norms, count = [], [], 0
    with models.evaluating(model, device), models.exact_float32():
        embed = _patch_embed(model) if level == "encoder" else None
        normalize = getattr(model, "normalize", lambda x: x)
        for batch, *_ in _loader(data, batch_size, False, 0):
            if images is not None:
                batch = batch[: images - count]
            batch = _finite(batch.to(device))
            logits.append(model(batch))
            inputs = embed(normalize(batch)) if embed is not None else batch
            norms.append(inputs.flatten(1).norm(dim=1))
            count += len(batch)
            if images is not None and count >= images:
                break
    if not count:
        raise ValueError("data holds no images: give at least one.")
    return CleanPass(level, batch_size, logits, torch.cat(norms), id(models.unwrap(model)))


def _check_in_order(data: Dataset | DataLoader) -> None:
    """Refuses a loader that shuffles: a noisy batch is compared with the clean logits of the same images."""
    if isinstance(data, DataLoader) and not isinstance(data.sampler, SequentialSampler):
        raise ValueError("the loader shuffles its images, so a noisy batch would be compared with the clean logits of "
                         "other images: pass the dataset itself, or a DataLoader with shuffle=False.")


def _noisy_batches(model: nn.Module, data, noise: torch.Tensor, clean: CleanPass, *, level: str, device: torch.device,
                   show_progress: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(clean logits, noisy logits)`` per batch of ``data`` in its stored order, the clean ones from ``clean``;
    refuses a ``clean`` made with other data, level or batch size than this pass's."""
    if clean.level != level:
        raise ValueError(f"clean was computed at level {clean.level!r}, not {level!r}: compute clean_pass at {level!r}.")
    if clean.model_id != id(models.unwrap(model)):
        raise ValueError("clean was computed with another model: compute clean_pass with this one.")
    mismatch = ValueError(f"clean covers {clean.images} images in batches of {clean.batch_size}, not this data's: "
                          "compute clean_pass with the same model, data, batch size and number of images.")
    _check_in_order(data)
    batches = _loader(data, clean.batch_size, False, 0)
    index = 0
    for images, *_ in tqdm(batches, disable=not show_progress, desc=f"evaluating {level} noise"):
        if index == len(clean.logits):
            break
        images = images[: len(clean.logits[index])]
        if len(images) != len(clean.logits[index]):
            raise mismatch
        with add_noise(model, noise, level) as noisy_model:
            noisy = noisy_model(_finite(images.to(device)))
        yield clean.logits[index].to(device), noisy
        index += 1
    if index != len(clean.logits):
        raise mismatch


@torch.no_grad()
def training_loss(model: nn.Module, data: Dataset | DataLoader, noise: torch.Tensor, *, level: str, p: float = 2,
                  squared: bool = False, images: int = 512, batch_size: int = 256,
                  device: str | torch.device | None = None, clean: CleanPass | None = None) -> float:
    """The loss :func:`learn_noise` minimises (eq. 6, mean over images), for a fixed ``noise``, on the first
    ``images`` images of ``data`` in their stored order: the yardstick of "did learning work?" (learned noise
    against its shuffled copy, on the images it learned from).

    Args:
        model: the classifier.
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        noise: the fixed noise.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
        p: the norm's order (:func:`logit_distance`).
        squared: use the loss without its root.
        images: how many images, from the start of ``data``.
        batch_size: images per forward pass.
        device: where to compute; ``None``: where the model is.
        clean: the clean logits of these images (:func:`clean_pass` with ``images``), to skip their forward pass.
    """
    check_finite(noise, name="noise")
    device = _device(model, device)
    if clean is None:
        clean = clean_pass(model, data, level=level, batch_size=batch_size, images=images, device=device)
    elif clean.images != min(images, _count(data)) or clean.batch_size != batch_size:
        raise ValueError(f"clean covers {clean.images} images in batches of {clean.batch_size}; this loss needs the "
                         f"first {images} in batches of {batch_size}: compute clean_pass with images={images}.")
    total = 0.0
    with models.evaluating(model, device), models.exact_float32():
        noise = noise.to(device)
        for clean_logits, noisy in _noisy_batches(model, data, noise, clean, level=level, device=device):
            total += logit_distance(clean_logits, noisy, p=p, squared=squared).sum().item()
    return total / clean.images


def shuffle_noise(noise: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same values in a random order: the paper's baseline with the learned noise's statistics.

    Args:
        noise: any noise tensor.
        seed: seed of the permutation.
    """
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
                   device: str | torch.device | None = None, show_progress: bool = False,
                   clean: CleanPass | None = None) -> NoiseEvaluation:
    """Match %, logit MSE and probability change of ``model`` under ``noise`` (optionally shuffled), as
    defined in :class:`nullspace_utils.metrics.PredictionChanges`.

    Runs on ``device`` (the model is moved there for the call, then back), by default where the model is,
    in full float32; the model's mode and device are left as they were. ``show_progress=True`` shows a
    tqdm bar over the batches. Evaluating many noises on the same model and data, compute their clean logits
    once with :func:`clean_pass` and pass them as ``clean``: the result is the same, at half the forward passes.

    Args:
        model: the classifier.
        data: a dataset or loader of ``(image, label)`` pairs; the labels are ignored.
        noise: the noise to evaluate.
        level: ``"encoder"`` (noise on the patch tokens, ViTs only) or ``"input"`` (noise on the [0, 1] image).
        shuffle: evaluate the noise with its values shuffled (:func:`shuffle_noise`), the paper's baseline.
        seed: seed of the shuffle.
        batch_size: images per forward pass.
        device: where to compute; ``None``: where the model is.
        show_progress: show a tqdm bar over the batches.
        clean: ``model``'s clean logits on all of ``data`` (:func:`clean_pass`), to skip their forward pass.
    """
    check_finite(noise, name="noise")
    device = _device(model, device)
    noise = (shuffle_noise(noise, seed) if shuffle else noise).to(device)
    if clean is None:
        clean = clean_pass(model, data, level=level, batch_size=batch_size, device=device)
    elif clean.batch_size != batch_size:
        raise ValueError(f"clean was computed in batches of {clean.batch_size}, not {batch_size}: compute clean_pass "
                         "with this batch size.")
    elif clean.images != _count(data):
        raise ValueError(f"clean covers {clean.images} images, the data {_count(data)}: compute clean_pass on all "
                         "of the data (no images=).")
    changes = metrics.PredictionChanges()
    with models.evaluating(model, device), models.exact_float32():
        for clean_logits, noisy in _noisy_batches(model, data, noise, clean, level=level, device=device,
                                                  show_progress=show_progress):
            changes.add(clean_logits, noisy)
    if len(changes) != _count(data):
        raise ValueError(f"clean covers {len(changes)} images, the data {_count(data)}: compute clean_pass on all "
                         "of the data (no images=).")
    return NoiseEvaluation(
        match=changes.match,
        logit_mse=changes.logit_mse,
        prob_change=changes.prob_change,
        noise_norm=noise.norm().item(),
        clean_norm=clean.clean_norms.mean().item(),
    )


def _count(data: Dataset | DataLoader) -> int:
    """How many images ``data`` holds (a loader: those of its dataset)."""
    return len(cast(Sized, data.dataset if isinstance(data, DataLoader) else data))


def split_noise(model: nn.Module, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An input-level (C, H, W) noise of a ViT split patch by patch into its part in the exact nullspace of the
    patch embedding, null(W_pix), which the ViT cannot see (§3), and the rest (the row-space part), which alone
    reaches the tokens: ``noise == null_part + row_part`` and the two are orthogonal. Computed in float64
    with :func:`nullspace_utils.exact.patch_nullspace` (raises ``NoNullspaceError`` if it is {0}).

    Args:
        model: the ViT whose patch embedding defines the nullspace.
        noise: an input-level noise (C, H, W).

    Returns:
        ``(nullspace_part, row_space_part)``, each (C, H, W), adding up to ``noise``.
    """
    if noise.ndim != 3:
        raise ValueError(f"split_noise takes one input-level noise (C, H, W), got shape {tuple(noise.shape)}.")
    basis = exact.patch_nullspace(model)  # (k, C, r, r), orthonormal rows once flattened
    r = basis.shape[-1]
    flat_basis = basis.reshape(basis.shape[0], -1)
    patches = exact.to_patches(noise.detach().cpu().to(torch.float64).unsqueeze(0), r)
    null_patches = (patches @ flat_basis.T) @ flat_basis
    null_part = exact.from_patches(null_patches, (1, *noise.shape), r)[0].to(noise.dtype)
    return null_part, (noise.detach().cpu() - null_part)
