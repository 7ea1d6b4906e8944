"""How much a change of the input changes a model's output: the book's metrics, each defined once.

Three layers, from plain tensors to models:

* **Per image, from logits.** Each function takes the logits of the clean inputs and of the changed
  ones, two (B, K) tensors, clean first, and returns one value per image, shape (B,):
  :func:`top1_kept`, :func:`max_logit_change`, :func:`relative_logit_change`,
  :func:`squared_logit_change`, :func:`top1_prob_change`; and :func:`top1_correct` against labels.
* **Over a data set.** :class:`PredictionChanges` gathers those per-image values batch by batch and
  averages them: the match %, logit MSE and probability change of paper Fig. 2, 3 and A.2.
* **From a model.** :func:`model_logits`, :func:`compare_predictions`, :func:`logit_change` and
  :func:`accuracy` run a model batch by batch without gradients, in eval mode
  (:func:`nullspace_utils.models.evaluating`) and in full float32 on CUDA
  (:func:`nullspace_utils.models.exact_float32`), leaving the model and the backend flags as they were.

Beside them, two comparisons of images: :func:`psnr` (image quality, paper §6) and
:func:`compare_maps` (explanation maps, paper §7).

Notation: ``z`` are the clean logits of one image, ``z'`` the changed ones, ``Δz = z' - z``,
``p = softmax(z)``, ``p' = softmax(z')`` and ``c = argmax_j z_j`` the clean top-1 class.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from nullspace_utils import models
from nullspace_utils.data import check_finite, check_images

__all__ = [
    "top1_kept",
    "max_logit_change",
    "relative_logit_change",
    "squared_logit_change",
    "top1_prob_change",
    "top1_correct",
    "PredictionChanges",
    "model_logits",
    "compare_predictions",
    "logit_change",
    "accuracy",
    "psnr",
    "compare_maps",
]


# --------------------------------------------------------------------------- per image, from logits
def _check_logits(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> None:
    if clean_logits.ndim != 2 or clean_logits.shape != changed_logits.shape:
        raise ValueError(f"clean and changed logits must both be (B, classes), got {tuple(clean_logits.shape)} "
                         f"and {tuple(changed_logits.shape)}.")


def top1_kept(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> torch.Tensor:
    """Per image, whether the top-1 prediction is unchanged: ``argmax z' == argmax z``, bool (B,).

    Its mean is the paper's "percentage of matching predictions" (§4, Fig. 2; §5, Fig. 3).
    """
    _check_logits(clean_logits, changed_logits)
    return changed_logits.argmax(1) == clean_logits.argmax(1)


def max_logit_change(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> torch.Tensor:
    """Per image, the largest absolute logit change ``max_j |Δz_j|``, (B,).

    Exact nullspace noise (paper §3) leaves it at float rounding; any other noise does not.
    """
    _check_logits(clean_logits, changed_logits)
    return (changed_logits - clean_logits).abs().amax(1)


def relative_logit_change(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> torch.Tensor:
    """Per image, ``max_j |Δz_j| / max_j |z_j|`` (the denominator at least 1e-12), (B,).

    Scale-free, so one tolerance fits every model: the fingerprint test's per-probe change (§9).
    """
    return max_logit_change(clean_logits, changed_logits) / clean_logits.abs().amax(1).clamp_min(1e-12)


def squared_logit_change(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> torch.Tensor:
    """Per image, the mean squared logit change ``mean_j Δz_j²``, (B,); its mean over images is the
    "logit MSE" of the approximate chapter (paper §4, eq. 6 with p = 2)."""
    _check_logits(clean_logits, changed_logits)
    return ((changed_logits - clean_logits) ** 2).mean(1)


def top1_prob_change(clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> torch.Tensor:
    """Per image, ``|p'_c - p_c|``: the absolute change of the probability of the clean top-1 class ``c``, (B,).

    Its mean is the "mean ``|Δp|``", the paper's "difference in confidence" (A.2).
    """
    _check_logits(clean_logits, changed_logits)
    predicted = clean_logits.argmax(1)[:, None]
    p_clean = clean_logits.softmax(1).gather(1, predicted)[:, 0]
    p_changed = changed_logits.softmax(1).gather(1, predicted)[:, 0]
    return (p_clean - p_changed).abs()


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image, whether the top-1 prediction is the label: ``argmax z == label``, bool (B,)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (B, classes) and labels (B,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}.")
    return logits.argmax(1) == labels.to(logits.device)


# --------------------------------------------------------------------------- over a data set
class PredictionChanges:
    """Per-image changes between clean and changed logits, gathered over batches, then averaged.

    ``add(clean_logits, changed_logits)`` once per batch; then read :attr:`match` (mean of
    :func:`top1_kept`), :attr:`logit_mse` (mean of :func:`squared_logit_change`), :attr:`prob_change`
    (mean of :func:`top1_prob_change`), :attr:`logit_change_max` and :attr:`logit_change_mean` (largest and
    mean of :func:`max_logit_change`). Paper Fig. 2, 3 (approximate noise) and A.2 (watermarks).
    """

    def __init__(self) -> None:
        self._kept: list[torch.Tensor] = []
        self._squared: list[torch.Tensor] = []
        self._prob: list[torch.Tensor] = []
        self._max_abs: list[torch.Tensor] = []

    def add(self, clean_logits: torch.Tensor, changed_logits: torch.Tensor) -> None:
        """Record one batch of clean and changed logits, (B, K) each."""
        self._kept.append(top1_kept(clean_logits, changed_logits))
        self._squared.append(squared_logit_change(clean_logits, changed_logits))
        self._prob.append(top1_prob_change(clean_logits, changed_logits))
        self._max_abs.append(max_logit_change(clean_logits, changed_logits))

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._kept)

    def _all(self, batches: list[torch.Tensor]) -> torch.Tensor:
        if not len(self):
            raise ValueError("no images were compared: add() at least one non-empty batch first.")
        return torch.cat(batches)

    @property
    def match(self) -> float:
        """Fraction of images whose top-1 prediction is unchanged."""
        return self._all(self._kept).float().mean().item()

    @property
    def logit_mse(self) -> float:
        """Mean over images of the mean squared logit change."""
        return self._all(self._squared).mean().item()

    @property
    def prob_change(self) -> float:
        """Mean over images of ``|p'_c - p_c|`` for the clean top-1 class ``c`` (the "mean ``|Δp|``")."""
        return self._all(self._prob).mean().item()

    @property
    def logit_change_max(self) -> float:
        """Largest ``max_j |Δz_j|`` over all images."""
        return self._all(self._max_abs).max().item()

    @property
    def logit_change_mean(self) -> float:
        """Mean over images of ``max_j |Δz_j|``."""
        return self._all(self._max_abs).mean().item()

    def summary(self) -> dict[str, float]:
        """``match``, ``prob_change``, ``logit_change_max`` and ``logit_change_mean`` (the watermark results' keys)."""
        return {"match": self.match, "prob_change": self.prob_change, "logit_change_max": self.logit_change_max,
                "logit_change_mean": self.logit_change_mean}


# --------------------------------------------------------------------------- from a model
def _starts(n: int, batch_size: int, show_progress: bool, description: str) -> Iterable[int]:
    """The first index of each batch, with a tqdm bar when ``show_progress``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=description) if show_progress else starts


def _input_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s first parameter (float32 when it has none)."""
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32


@torch.no_grad()
def model_logits(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                 show_progress: bool = False) -> torch.Tensor:
    """``model``'s logits of ``images`` (B, C, H, W), batch by batch: float32 (B, K) on the CPU.

    Each batch is sent to the model's device in the model's floating dtype (a float16 copy works), in eval
    mode and full float32; the model is left as it was.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}; add a batch axis with "
                         "images[None] for one image.")
    device, dtype = models.model_device(model), _input_dtype(model)
    with models.evaluating(model), models.exact_float32():
        batches = [model(images[start:start + batch_size].to(device, dtype)).float().cpu()
                   for start in _starts(len(images), batch_size, show_progress, "logits")]
    if not batches:
        raise ValueError("images is empty: give at least one image.")
    logits = torch.cat(batches)
    if not torch.isfinite(logits).all():
        raise ValueError(f"{getattr(model, 'name', '') or type(model).__name__} gives NaN or infinite logits, so "
                         "nothing measured from them would mean anything: check its weights for NaN "
                         "(a damaged file or a diverged training run) and the images for values far outside [0, 1].")
    return logits


@torch.no_grad()
def compare_predictions(model: nn.Module, clean: torch.Tensor, changed: torch.Tensor, *, batch_size: int = 256,
                        show_progress: bool = False) -> dict[str, float]:
    """How much ``changed`` images move ``model``'s output from that of ``clean`` ones (paper A.2, Fig. 2, 3).

    ``clean`` and ``changed`` are (B, C, H, W), image ``i`` of one the changed version of image ``i`` of the
    other. Returns :meth:`PredictionChanges.summary`: ``match`` (fraction of unchanged top-1 predictions),
    ``prob_change`` (mean ``|Δp|`` of the clean top-1 class), ``logit_change_max`` and ``logit_change_mean``
    (largest and mean per-image ``max_j |Δz_j|``).
    """
    if clean.shape != changed.shape:
        raise ValueError(f"clean and changed images must have the same shape, got {tuple(clean.shape)} and "
                         f"{tuple(changed.shape)}.")
    changes = PredictionChanges()
    for start in _starts(len(clean), batch_size, show_progress, "comparing predictions"):
        changes.add(model_logits(model, clean[start:start + batch_size], batch_size=batch_size),
                    model_logits(model, changed[start:start + batch_size], batch_size=batch_size))
    return changes.summary()


@torch.no_grad()
def logit_change(model: nn.Module, images: torch.Tensor, noise: torch.Tensor, *, batch_size: int = 256,
                 show_progress: bool = False) -> torch.Tensor:
    """Per image, ``max_j |f(x + v)_j - f(x)_j|`` for [0, 1] ``images`` x and ``noise`` v: shape (B,), on the CPU.

    ``noise`` is (C, H, W), the same for every image, or (B, C, H, W). No clipping is applied: exact
    nullspace noise is defined for the unbounded input space (paper §3); clip yourself to study the box [0, 1].
    """
    check_images(images, name="images")
    check_finite(noise, name="noise")
    noisy = images + noise
    clean_logits = model_logits(model, images, batch_size=batch_size, show_progress=show_progress)
    return max_logit_change(clean_logits, model_logits(model, noisy, batch_size=batch_size,
                                                       show_progress=show_progress))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, classes: Sequence[int] | None = None,
             batch_size: int = 64, show_progress: bool = False) -> float:
    """Top-1 accuracy of ``model`` on ``images`` (B, C, H, W) with ``labels`` (B,): mean of :func:`top1_correct`.

    ``classes`` lists the logit columns that the labels index (``profile.label_indices`` for 1000-way
    ImageNet models on ImageNette's ten classes); by default all of them.
    """
    logits = model_logits(model, images, batch_size=batch_size, show_progress=show_progress)
    if classes is not None:
        columns = [int(column) for column in classes]
        if any(not 0 <= column < logits.shape[1] for column in columns):
            raise ValueError(f"classes must be logit columns 0 to {logits.shape[1] - 1} of this model, got {columns}.")
        logits = logits[:, columns]
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be whole class indices, got dtype {labels.dtype}: use labels.long().")
    wrong = labels[(labels < 0) | (labels >= logits.shape[1])]
    if len(wrong):
        raise ValueError(f"label {wrong[0].item()} is not a class: there are {logits.shape[1]} "
                         f"({'columns of classes' if classes is not None else 'logits'}, labels 0 to "
                         f"{logits.shape[1] - 1}). Map the labels to class indices first (or pass classes=).")
    return top1_correct(logits, labels).float().mean().item()


# --------------------------------------------------------------------------- images and maps
def psnr(reference: torch.Tensor, image: torch.Tensor, *, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak² / MSE)`` over all values of two images (or batches)
    with values up to ``peak``; infinite for identical images. Paper §6: how visible a watermark is.
    The two must have one shape (no broadcasting: an image against a batch would compare the wrong pixels)."""
    if reference.shape != image.shape:
        raise ValueError(f"reference and image must have the same shape, got {tuple(reference.shape)} and "
                         f"{tuple(image.shape)}; compare one image with one image, or a batch with a batch.")
    if not 0 < peak < float("inf"):
        raise ValueError(f"peak must be a finite number > 0 (1.0 for [0, 1] images, 255 for 8-bit), got {peak!r}.")
    check_finite(reference, name="reference")
    check_finite(image, name="image")
    mse = torch.mean((reference.double() - image.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak**2 / mse))


def compare_maps(first: torch.Tensor, second: torch.Tensor) -> dict[str, float]:
    """How alike two explanation maps (H, W), or batches of them (..., H, W), are (paper §7, Fig. 5b).

    ``max_relative_difference``: the largest over maps of ``max |a - b| / max |a|`` (``a`` from ``first``,
    denominator at least 1e-30); ``correlation``: the Pearson correlation of each pair of maps, averaged.
    """
    a = first.reshape(-1, first.shape[-2] * first.shape[-1]).double()
    b = second.reshape(-1, second.shape[-2] * second.shape[-1]).double()
    scale = a.abs().amax(1).clamp_min(1e-30)
    relative = ((a - b).abs().amax(1) / scale).max().item()
    a_c, b_c = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    correlation = ((a_c * b_c).sum(1) / (a_c.norm(dim=1) * b_c.norm(dim=1)).clamp_min(1e-30)).mean().item()
    return {"max_relative_difference": relative, "correlation": correlation}
