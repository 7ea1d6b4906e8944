r"""Beyond the paper: fine-tuning a ViT on inputs augmented with approximate nullspace noise, and the yardsticks
of robustness it is judged by.

The authors' follow-up (Liu, Singh, Li, Wang, "Approximate Nullspace Augmented Finetuning for Robust Vision
Transformers", CPAL 2025, arXiv 2403.10476; code github.com/Liu-Hy/NS-ViT) enlarges a ViT's approximate nullspace
on purpose: it synthesises a noise at the encoder's input that barely changes the model's logits (the paper's
:math:`\tilde v_\phi`, eq. 6) and fine-tunes the model to classify the noisy tokens too. As their training scripts do it
(``train_single.py``, ``hal/train_hal.py``):

- once per epoch, a *fresh* noise is learned for the *current* model, starting from Uniform(-lim, lim) in token
  units (``lim`` fixed for a run: 1 in ``train_single.py``, 3 in their ``hal/`` scripts, swept over 1, 2, 3), on a
  tenth of the training images;
- every training batch gets that one noise added to its patch tokens (the class token gets none), and the loss is
  ``CE(f(x), y) + CE(f(x; tokens + v), y)``: the clean loss plus the noisy loss, equal weights;
- the model trains with AdamW (rate 1e-4, weight decay 1e-4) on a cosine schedule over all steps.

This module does the same with the book's pieces, and states where it departs (:data:`DEPARTURES`). Two
baselines share the budget, seeds and schedule: ``plain`` fine-tuning (clean loss only) and ``gaussian``: a
random Gaussian direction at the encoder, drawn once per round like the learned noise, scaled to exactly the
energy (RMS) of the nullspace noise it stands against, so that the comparison is "learned direction vs random
direction at equal size".

The yardsticks: clean accuracy (:func:`nullspace_utils.metrics.accuracy`); a "-C" version of a dataset made with
``imagecorruptions`` (Hendrycks & Dietterich's ImageNet-C recipes: the noise, blur and digital families, which
need no weather assets, at severities 1-5); and PGD-L∞ accuracy from ``torchattacks``. The sweep that compares the
three methods, and judges each model's approximate nullspace too, is the study
:mod:`nullspace_utils.studies.finetune`.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset
from tqdm.auto import tqdm

from nullspace_utils import approximate, metrics, models
from nullspace_utils.data import check_images

__all__ = ["METHODS", "DEPARTURES", "CORRUPTIONS", "SEVERITIES", "PGD_EPSILONS", "FinetuneConfig", "RoundRecord",
           "FinetuneResult", "round_starts", "gaussian_noise", "augmentation_loss", "finetune", "save_weights",
           "clean_accuracy", "corrupt_images", "corruption_accuracy", "corruption_accuracies", "pgd_images",
           "pgd_accuracy"]

#: the three fine-tuning methods compared at one budget
METHODS = ("plain", "nullspace", "gaussian")

#: where the book departs from the authors' code, and why (the chapter prints these)
DEPARTURES = (
    "Noise synthesis uses the book's learn_noise (eq. 6 loss, plain SGD, rate chosen by a probe, x0.1 at a "
    "milestone) instead of the authors' AdamW on a cosine schedule with early stopping once the mean squared "
    "softmax change falls under eps: one optimiser for noises across the book.",
    "Rounds of a fixed number of steps instead of epochs, and a fixed number of noise steps per round instead of "
    "3 passes over a tenth of ImageNet: the teaching set is small and the budget is counted in steps.",
    "The noise rate is chosen once, in the first round, and kept for the later ones (the authors use one fixed "
    "rate); choosing it every round would cost more than the fine-tuning itself on the teaching zoo.",
    "No model EMA and no image augmentation (the authors use RandomResizedCrop and flips): all three methods see "
    "the same images in the same order, so the noise is the only difference.",
    "The starting model: the authors fine-tune a ViT-B/16 already trained for robustness (their code loads a DAT "
    "checkpoint) on ImageNet-1k; the book fine-tunes the teaching zoo's ViT-S (trained with label smoothing, flips "
    "and quarter turns) on the teaching set, and the imagenet profile timm's ViT-S/32 on ImageNette.",
    "Corruptions are applied to the teaching set's 112-pixel images with ImageNet-C's parameters, which were set "
    "for 224 pixels: severities are comparable between models here, not with published ImageNet-C numbers; "
    "accuracy is reported, not mCE (there is no AlexNet reference for the teaching set).",
    "Adversarial robustness is PGD-L∞ from torchattacks at small radii (0.5 to 2 /255); the authors' code evaluates "
    "with its own FGSM and AutoAttack options.",
)

#: ImageNet-C corruptions that need no weather assets (noise, blur, digital; imagecorruptions' names)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
#: PGD-L∞ radii on [0, 1] images: small, since the zoo was never trained against attacks
PGD_EPSILONS = (0.5 / 255, 1 / 255, 2 / 255)


def _check_positive(name: str, value: float) -> None:
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be positive and finite, got {value}.")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. Defaults are sized for the teaching zoo's ViT-S; the authors' values are in comments.

    ``gaussian_rms``: the RMS (per token entry) of the ``gaussian`` method's noise, one number for every round or one
    per round; ``None`` takes the Uniform(-lim, lim) start's RMS, ``lim / sqrt(3)``. For exactly matched energy pass
    the ``noise_rms`` of the ``nullspace`` run with the same seed (:attr:`FinetuneResult.noise_rms`).
    """

    method: str = "nullspace"
    steps: int = 300  # model optimiser steps (authors: 10 epochs of ImageNet)
    batch_size: int = 64  # (authors: 40 to 256)
    lr: float = 1e-4  # AdamW, cosine over all steps (authors: the same)
    weight_decay: float = 1e-4  # (authors: the same)
    rounds: int = 3  # a new noise this many times, evenly spaced (authors: once per epoch)
    lim: float = 2.0  # Uniform(-lim, lim) start of each noise, token units (authors: 3, swept 1-3)
    noise_steps: int = 40  # learn_noise steps per round (authors: up to 3 passes over 10 % of the training set)
    noise_lr: float | str = "auto"  # learn_noise's rate; "auto": chosen once in round 0 (authors: AdamW, 0.1)
    noise_milestones: tuple[int, ...] = (30,)
    noise_images: int = 512  # training images each noise learns from, a seeded random subset
    noise_batch_size: int = 128
    probe_steps: int = 20  # steps per rate of the "auto" probe
    gaussian_rms: float | tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
        for name in ("steps", "batch_size", "rounds", "noise_steps", "noise_images", "noise_batch_size",
                     "probe_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.rounds > self.steps:
            raise ValueError(f"rounds ({self.rounds}) cannot exceed steps ({self.steps}): each round needs a step.")
        for name in ("lr", "lim"):
            _check_positive(name, getattr(self, name))
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}.")
        if isinstance(self.noise_lr, str):
            if self.noise_lr != "auto":
                raise ValueError(f"noise_lr must be a positive number or 'auto', got {self.noise_lr!r}.")
        else:
            _check_positive("noise_lr", self.noise_lr)
        if isinstance(self.gaussian_rms, (tuple, list)):
            if len(self.gaussian_rms) != self.rounds:
                raise ValueError(f"gaussian_rms gives {len(self.gaussian_rms)} values for {self.rounds} rounds: give "
                                 "one per round (a nullspace run's noise_rms) or a single number.")
            for value in self.gaussian_rms:
                _check_positive("every gaussian_rms", value)
        elif self.gaussian_rms is not None:
            _check_positive("gaussian_rms", self.gaussian_rms)

    def gaussian_rms_of(self, round_index: int) -> float:
        """The ``gaussian`` method's noise RMS in round ``round_index``."""
        if self.gaussian_rms is None:
            return self.lim / math.sqrt(3)
        if isinstance(self.gaussian_rms, (tuple, list)):
            return float(self.gaussian_rms[round_index])
        return float(self.gaussian_rms)


@dataclass
class RoundRecord:
    """The augmentation noise of one round: where it starts, its size, and for learned noise how well it learned."""

    round: int
    start_step: int
    norm: float  # L2 norm of the noise (m x d entries)
    rms: float  # norm / sqrt(m * d): per-entry size, what the gaussian method matches
    initial_norm: float = 0.0  # of the Uniform(-lim, lim) start (nullspace only)
    noise_lr: float = 0.0
    noise_loss_first: float = 0.0  # eq. 6 loss at the first and last noise step (nullspace only)
    noise_loss_last: float = 0.0


@dataclass
class FinetuneResult:
    """A fine-tuned copy of the model with its training record (per step: total, clean and noisy loss)."""

    model: nn.Module
    config: FinetuneConfig
    history: list[dict] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def noise_rms(self) -> tuple[float, ...]:
        """Per round, the RMS of the noise used: feed a nullspace run's to ``FinetuneConfig(gaussian_rms=...)``."""
        return tuple(record.rms for record in self.rounds)

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (no weights)."""
        return {"config": asdict(self.config), "history": self.history,
                "rounds": [asdict(record) for record in self.rounds], "seconds": self.seconds}


def round_starts(steps: int, rounds: int) -> list[int]:
    """The steps at which each round's noise takes over: ``rounds`` evenly spaced starts in ``range(steps)``, the
    first at 0 (the authors' once-per-epoch schedule, counted in steps)."""
    if steps < 1 or rounds < 1 or rounds > steps:
        raise ValueError(f"need 1 <= rounds <= steps, got rounds={rounds}, steps={steps}.")
    return [(index * steps) // rounds for index in range(rounds)]


def gaussian_noise(shape: tuple[int, ...], rms: float, seed: int = 0) -> torch.Tensor:
    """A Gaussian direction scaled to RMS exactly ``rms`` (norm ``rms * sqrt(numel)``): the matched-energy control
    of the nullspace noise. Exact rather than expected energy, so that only the direction differs."""
    _check_positive("rms", rms)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    noise = noise * (rms * math.sqrt(noise.numel()) / noise.norm())
    return noise.float()


def augmentation_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      noise: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
    """The authors' training loss: ``CE(f(x), y) + CE(f(x; tokens + noise), y)``, with ``noise`` (m, d) added to
    the patch tokens (:func:`nullspace_utils.approximate.add_noise`); only the clean loss when ``noise`` is None."""
    clean_loss = F.cross_entropy(model(images), labels)
    if noise is None:
        return clean_loss, {"loss": clean_loss.item(), "clean_loss": clean_loss.item()}
    with approximate.add_noise(model, noise, "encoder") as noisy_model:
        noisy_loss = F.cross_entropy(noisy_model(images), labels)
    loss = clean_loss + noisy_loss
    return loss, {"loss": loss.item(), "clean_loss": clean_loss.item(), "noisy_loss": noisy_loss.item()}


def _noise_subset(train: Dataset, images: int, seed: int) -> Dataset:
    """A seeded random subset of ``images`` training images for a round's noise (the authors: 10 % of them)."""
    size = len(train)  # type: ignore[arg-type]
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: min(images, size)]
    if isinstance(train, TensorDataset):
        return TensorDataset(*(tensor[order.to(tensor.device)] for tensor in train.tensors))
    return Subset(train, order.tolist())


def _round_noise(model: nn.Module, train: Dataset, config: FinetuneConfig, round_index: int, start: int,
                 noise_lr: float | str, device: torch.device) -> tuple[torch.Tensor, RoundRecord, float | str]:
    """The noise of one round, its record, and the noise rate to reuse in the later rounds."""
    round_seed = config.seed * 1000 + round_index
    shape = approximate.noise_shape(model, "encoder", _image_size(train))
    if config.method == "gaussian":
        noise = gaussian_noise(shape, config.gaussian_rms_of(round_index), seed=round_seed)
        record = RoundRecord(round_index, start, noise.norm().item(), noise.norm().item() / math.sqrt(noise.numel()))
        return noise, record, noise_lr
    subset = _noise_subset(train, config.noise_images, round_seed)
    result = approximate.learn_noise(model, subset, level="encoder", lim=config.lim, steps=config.noise_steps,
                                     lr=noise_lr, milestones=config.noise_milestones,
                                     batch_size=config.noise_batch_size, seed=round_seed,
                                     probe_steps=config.probe_steps, device=device)
    noise = result.noise
    record = RoundRecord(round_index, start, result.norm, result.norm / math.sqrt(noise.numel()), result.initial_norm,
                         result.lr, result.history[0]["loss"], result.history[-1]["loss"])
    return noise, record, result.lr


def _image_size(data: Dataset) -> tuple[int, int]:
    image = data.tensors[0][0] if isinstance(data, TensorDataset) else data[0][0]
    if image.ndim != 3:
        raise ValueError(f"training items must be (image (C, H, W), label), got an image of shape {tuple(image.shape)}.")
    return int(image.shape[-2]), int(image.shape[-1])


def finetune(model: nn.Module, train: Dataset, config: FinetuneConfig, *, device: str | torch.device | None = None,
             show_progress: bool = False) -> FinetuneResult:
    """Fine-tune a copy of ``model`` (a ViT from :func:`nullspace_utils.models.load_model`) on ``train`` with
    ``config.method`` (the follow-up's nullspace-noise augmentation or a baseline); ``model`` itself is untouched.

    ``train`` yields ``(image in [0, 1], label)``; a ``TensorDataset`` is batched by slicing and may hold uint8
    images. ``config.seed`` sets the batch order, the noise subsets and starts, so the three methods of one seed see
    the same batches, and any dropout (torch's global generator, seeded for the call and restored after it). The copy is trained on ``device`` (default: where ``model`` is) and returned in eval mode.
    """
    if config.method != "plain" and not hasattr(models.unwrap(model), "patch_embed"):
        raise ValueError(f"method {config.method!r} adds noise to the patch tokens and needs a ViT; "
                         f"{type(models.unwrap(model)).__name__} has no patch_embed. Use method='plain' for CNNs.")
    if len(train) < 1:  # type: ignore[arg-type]
        raise ValueError("train is empty: give at least one (image, label) item.")
    device = models.model_device(model) if device is None else torch.device(device)
    began = time.perf_counter()
    tuned = copy.deepcopy(model).to(device)
    for parameter in tuned.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    starts = round_starts(config.steps, config.rounds)
    loader = approximate._loader(train, config.batch_size, True, config.seed)  # the book's batcher (uint8-aware)
    batches = iter(loader)
    result = FinetuneResult(tuned, config)
    noise: torch.Tensor | None = None
    noise_lr: float | str = config.noise_lr
    with models.exact_float32(), models.LocalRandomState(config.seed, device).active():
        for step in tqdm(range(config.steps), disable=not show_progress, desc=f"fine-tuning ({config.method})"):
            if config.method != "plain" and step in starts:
                round_index = starts.index(step)
                noise, record, noise_lr = _round_noise(tuned, train, config, round_index, step, noise_lr, device)
                noise = noise.to(device)
                result.rounds.append(record)
            try:
                images, labels = next(batches)[:2]
            except StopIteration:
                batches = iter(loader)
                images, labels = next(batches)[:2]
            if images.is_floating_point() and not torch.isfinite(images).all():
                raise ValueError(f"train holds images with NaN or infinite values (a batch at step {step}); remove "
                                 "or repair them before fine-tuning.")
            tuned.train()
            loss, parts = augmentation_loss(tuned, images.to(device), labels.to(device), noise)
            if not math.isfinite(parts["loss"]):
                raise FloatingPointError(f"the training loss became {parts['loss']} at step {step} of "
                                         f"{config.method!r} fine-tuning: lower config.lr (now {config.lr:g}).")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            result.history.append({"step": step, **parts})
    tuned.eval()
    result.seconds = time.perf_counter() - began
    return result


def save_weights(model: nn.Module, path: str) -> None:
    """Save a fine-tuned zoo model's network with safetensors, readable by
    ``models.load_model(name, weights=path)`` (how weights travel from the GPU machine back to the CPU one)."""
    from safetensors.torch import save_file

    if not str(path).endswith(".safetensors"):
        raise ValueError(f"{path} should end in .safetensors: load_model reads only safetensors files.")
    state = {key: value.detach().cpu().contiguous() for key, value in models.unwrap(model).state_dict().items()}
    save_file(state, str(path))


# --------------------------------------------------------------------------- yardsticks
def _check_batch(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """:func:`~nullspace_utils.data.check_images`, for an RGB batch with one label per image."""
    if not check_images(images).batched or images.shape[1] != 3:
        raise ValueError(f"images must be RGB batches (B, 3, H, W), got shape {tuple(images.shape)}; "
                         "add a batch axis with images[None] for one image.")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
        raise ValueError(f"labels must be one per image, shape ({len(images)},), got {tuple(labels.shape)}.")


def clean_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256) -> float:
    """Top-1 accuracy on clean images (:func:`nullspace_utils.metrics.accuracy`)."""
    _check_batch(images, labels)
    return metrics.accuracy(model, images, labels, batch_size=batch_size)


#: how a reader installs the fine-tuning chapter's extra packages (a checkout's `make install` has them)
_INSTALL_EXTRA = 'pip install "nullspace-utils[finetune] @ git+https://github.com/nullspace-vit/nullspace-vit"'


def _imagecorruptions():
    try:
        import imagecorruptions
    except ImportError as error:
        raise ImportError("corruptions need the imagecorruptions package (PyPI: imagecorruptions-imaug), which the "
                          f"finetune extra installs: {_INSTALL_EXTRA} (in a checkout: make install).") from error
    return imagecorruptions


def corrupt_images(images: torch.Tensor, corruption: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """``images`` (B, 3, H, W) in [0, 1] with one ImageNet-C ``corruption`` at ``severity`` 1-5, applied by
    ``imagecorruptions.corrupt`` to each image as 8-bit RGB (as ImageNet-C's images are stored).

    Image ``i`` gets the seed ``seed + i``: most corruptions draw from NumPy's global generator, which is seeded
    with it and restored afterwards (the caller's state is untouched); those that take their own ``seed`` argument
    (impulse noise and glass blur in imagecorruptions-imaug 1.1.5, which otherwise draw fresh OS entropy) get it
    passed. So the result is deterministic.
    """
    library = _imagecorruptions()
    if corruption not in library.get_corruption_names("all"):
        raise ValueError(f"unknown corruption {corruption!r}; choose from {library.get_corruption_names('all')}.")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}.")
    _check_batch(images)
    pixels = (images.detach().cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    takes_seed = "seed" in inspect.signature(getattr(library.corruptions, corruption)).parameters
    state = np.random.get_state()
    try:
        out = []
        for index, image in enumerate(pixels):
            image_seed = (seed + index) % 2**32
            np.random.seed(image_seed)
            extra = {"seed": image_seed} if takes_seed else {}
            corrupted = library.corrupt(np.ascontiguousarray(image), corruption_name=corruption, severity=severity,
                                        **extra)
            out.append(np.asarray(corrupted, dtype=np.uint8)[: image.shape[0], : image.shape[1]])
    finally:
        np.random.set_state(state)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(images.dtype)


def corruption_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                        corruptions: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                        seed: int = 0, batch_size: int = 256, show_progress: bool = False) -> dict[str, Any]:
    """Accuracy on the "-C" version of ``images`` (Hendrycks & Dietterich 2019): per corruption and severity, the
    mean over severities per corruption, and ``mean``, the mean corruption accuracy over all of them (the
    accuracy counterpart of ImageNet-C's unnormalised mean error). Same ``seed``, same corrupted images."""
    return corruption_accuracies({"model": model}, images, labels, corruptions=corruptions, severities=severities,
                                 seed=seed, batch_size=batch_size, show_progress=show_progress)["model"]


def corruption_accuracies(models_by_name: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
                          corruptions: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                          seed: int = 0, batch_size: int = 256, show_progress: bool = False
                          ) -> dict[str, dict[str, Any]]:
    """:func:`corruption_accuracy` of several models on one "-C" set: each corrupted batch is made once and shown
    to every model (corrupting costs more than classifying), so all models see exactly the same images."""
    if not corruptions or not severities:
        raise ValueError("give at least one corruption and one severity.")
    if not models_by_name:
        raise ValueError("models_by_name is empty: give at least one model.")
    _check_batch(images, labels)
    tables: dict[str, dict[str, dict[int, float]]] = {name: {} for name in models_by_name}
    cells = [(corruption, severity) for corruption in corruptions for severity in severities]
    for corruption, severity in tqdm(cells, disable=not show_progress, desc="corruptions x severities"):
        corrupted = corrupt_images(images, corruption, severity, seed=seed)
        for name, model in models_by_name.items():
            tables[name].setdefault(corruption, {})[severity] = metrics.accuracy(model, corrupted, labels,
                                                                                batch_size=batch_size)
    out = {}
    for name, table in tables.items():
        per_corruption = {corruption: float(np.mean(list(row.values()))) for corruption, row in table.items()}
        out[name] = {"per_severity": table, "per_corruption": per_corruption,
                     "mean": float(np.mean(list(per_corruption.values())))}
    return out


def _torchattacks():
    try:
        import torchattacks
    except ImportError as error:
        raise ImportError(f"PGD needs the torchattacks package, which the finetune extra installs: {_INSTALL_EXTRA} "
                          "(in a checkout: make install).") from error
    return torchattacks


def pgd_images(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float, steps: int = 10,
               alpha: float | None = None, random_start: bool = True, seed: int = 0) -> torch.Tensor:
    """PGD-L∞ adversarial images (Madry et al. 2018) from ``torchattacks.PGD``: ``steps`` signed-gradient steps of
    size ``alpha`` (default ``2.5 * eps / steps``, Madry's rule) on the cross-entropy, projected back onto the
    ``eps`` ball around ``images`` and onto [0, 1], from a random start in the ball when ``random_start``.

    The random start draws from torch's global generator inside ``torch.random.fork_rng`` seeded with ``seed``: the
    attack is reproducible and the caller's random state is untouched. The model's mode is left as it was.
    """
    if not 0 <= eps < math.inf:
        raise ValueError(f"eps must be a finite number >= 0 (an L∞ radius on [0, 1] images), got {eps}.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    _check_batch(images, labels)
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if not 0 <= alpha < math.inf:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}.")
    if eps == 0:
        return images.clone()  # the ball is one point; torchattacks would also return the images
    attack = _torchattacks().PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    device = models.model_device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with models.evaluating(model), models.exact_float32():
            adversarial = attack(images.to(device), labels.to(device))
    adversarial = adversarial.detach().to(images.device)
    # torchattacks projects in float32; a rounding step may sit a hair outside the ball, so clamp to it exactly
    return torch.min(torch.max(adversarial, images - eps), images + eps).clamp(0, 1)


def pgd_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 epsilons: Sequence[float] = PGD_EPSILONS, steps: int = 10, seed: int = 0,
                 batch_size: int = 64, show_progress: bool = False) -> dict[str, float]:
    """Top-1 accuracy under PGD-L∞ at each radius of ``epsilons`` (keys ``f"{eps * 255:g}/255"``); settings as in
    :func:`pgd_images`, the batches attacked one after another (batch ``i`` with seed ``seed + i``)."""
    _check_batch(images, labels)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
    scores = {}
    for eps in tqdm(epsilons, disable=not show_progress, desc="PGD radii"):
        adversarial = torch.cat([pgd_images(model, images[i : i + batch_size], labels[i : i + batch_size], eps=eps,
                                            steps=steps, seed=seed + i)
                                 for i in range(0, len(images), batch_size)])
        scores[f"{eps * 255:g}/255"] = metrics.accuracy(model, adversarial, labels, batch_size=batch_size)
    return scores
