"""ViTs against CNNs under nullspace noise, and transfer of noise between models (paper §5, Fig. 3).

Everything here is built on :mod:`nullspace_utils.approximate` (one training loop, one evaluation); the sweep of
Fig. 3 and its verdicts are the robustness study's (:mod:`nullspace_utils.studies.robustness`):

* :func:`transfer_matrix`: input-level noises learned for some models, added to the inputs of others
  (Fig. 3c), as a source x target table of matching predictions.
* :func:`exact_transfer`: the *exact* nullspace noise of a ViT (the caption of Fig. 3c) added to the
  inputs of every model, scaled to the RMS of the uniform noise it is compared with (equal energy).

Units: input-level noise is added to the [0, 1] image, the one space every model shares, so the same lim is
the same pixel energy for every model (RMS lim / sqrt(3)). The authors' code adds it to the *normalised* image,
whose scale differs between models whose normalisations differ (the zoo's six share one: there the two
conventions differ by one common factor).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from nullspace_utils import approximate, exact

logger = logging.getLogger(__name__)

__all__ = ["clean_passes", "transfer_matrix", "exact_transfer"]


def clean_passes(models: dict[str, nn.Module], val: Dataset, *, batch_size: int = 256,
                 device: str | torch.device | None = None) -> dict[str, approximate.CleanPass]:
    """Every model's clean logits on ``val`` at the input level (:func:`~nullspace_utils.approximate.clean_pass`):
    give them as ``clean`` to :func:`transfer_matrix` and :func:`exact_transfer` to evaluate many noises with one
    clean pass per model."""
    return {name: approximate.clean_pass(model, val, level="input", batch_size=batch_size, device=device)
            for name, model in models.items()}


def transfer_matrix(models: dict[str, nn.Module], noises: dict[str, torch.Tensor], val: Dataset, *,
                    device: str | torch.device | None = None, show_progress: bool = False,
                    clean: dict[str, approximate.CleanPass] | None = None) -> dict[str, dict[str, float]]:
    """``matrix[source][target]``: fraction of ``target``'s predictions unchanged by ``source``'s input noise.

    All noises must be input-level (C, H, W): the image is the only space all models share.
    ``show_progress=True`` shows a tqdm bar over the (source, target) pairs. ``clean``: each target's clean logits
    on ``val`` (:func:`clean_passes`), computed once for every source (by default here, once per call).
    """
    for source, noise in noises.items():
        if noise.ndim != 3:
            raise ValueError(f"noise of {source!r} has shape {tuple(noise.shape)}; transfer needs input-level "
                             "(C, H, W) noise, learned with level='input'.")
    clean = clean or clean_passes(models, val, device=device)
    matrix: dict[str, dict[str, float]] = {source: {} for source in noises}
    with tqdm(total=len(noises) * len(models), disable=not show_progress, desc="transfer") as bar:
        for source, noise in noises.items():
            for target, model in models.items():
                matrix[source][target] = approximate.evaluate_noise(model, val, noise, level="input", device=device,
                                                                    batch_size=clean[target].batch_size,
                                                                    clean=clean[target]).match
                bar.update()
    return matrix


def exact_transfer(source: nn.Module, models: dict[str, nn.Module], val: Dataset, *, rms: float,
                   seed: int = 0, device: str | torch.device | None = None, show_progress: bool = False,
                   clean: dict[str, approximate.CleanPass] | None = None) -> dict[str, float]:
    """Exact nullspace noise of the ViT ``source``, scaled to root-mean-square ``rms`` (compare it with
    Uniform(-lim, lim) at ``rms = lim / sqrt(3)``: equal energy), on every model's input: the fraction of unchanged
    predictions per model. The source itself keeps all of them (§3). ``show_progress=True`` shows a tqdm bar.
    ``clean``: each model's clean logits on ``val`` (:func:`clean_passes`), computed once for every noise (by
    default here, once per call)."""
    if not rms > 0:
        raise ValueError(f"rms must be positive, got {rms}.")
    image_size = tuple(val[0][0].shape[-2:])
    noise = exact.random_nullspace_noise(source, image_size, seed=seed, dtype=torch.float64)
    noise = (noise * (rms / noise.pow(2).mean().sqrt())).float()
    clean = clean or clean_passes(models, val, device=device)
    return {name: approximate.evaluate_noise(model, val, noise, level="input", device=device,
                                             batch_size=clean[name].batch_size, clean=clean[name]).match
            for name, model in tqdm(models.items(), disable=not show_progress, desc="exact noise transfer")}
