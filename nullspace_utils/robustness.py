"""ViTs against CNNs under nullspace noise, and transfer of noise between models (paper §5, Fig. 3).

Everything here is built on :mod:`nullspace_utils.approximate` (one training loop, one evaluation):

* :func:`choose_lr`: one SGD learning rate does not fit six architectures (the input gradients of the
  models differ by orders of magnitude), so each model, level and lim gets the rate of a small grid whose
  short run ends at the lowest *training* loss; the validation images never take part.
* :func:`robustness_point`: for one model and one lim, learn a noise at a level (``"encoder"`` for a
  ViT's tokens, the paper's ṽϕ, Fig. 3a; ``"input"`` for the image, ṽω, any model, Fig. 3b) and evaluate
  it next to its shuffled twin and a fresh Uniform(-lim, lim) noise of the same shape: the reference that
  separates "robust to nullspace noise" from "robust to any noise of that size".
* :func:`transfer_matrix`: input-level noises learned for some models, added to the inputs of others
  (Fig. 3c), as a source x target table of matching predictions.
* :func:`exact_transfer`: the *exact* nullspace noise of a ViT (the caption of Fig. 3c) added to the
  inputs of every model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from nullspace_utils import approximate, exact

logger = logging.getLogger(__name__)

__all__ = ["uniform_noise", "choose_lr", "robustness_point", "transfer_matrix", "exact_transfer", "vits_beat_cnns"]


def uniform_noise(shape: tuple[int, ...], lim: float, seed: int = 0) -> torch.Tensor:
    """Uniform(-lim, lim) noise of ``shape`` from a seeded generator (the paper's initialisation and our reference)."""
    if lim <= 0:
        raise ValueError(f"lim must be positive, got {lim}.")
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) * 2 - 1) * lim


def choose_lr(model: nn.Module, train: Dataset, *, level: str, lim: float, lrs: tuple[float, ...], steps: int,
              batch_size: int, seed: int = 0, device: str | torch.device | None = None,
              show_progress: bool = False) -> tuple[float, dict[str, float]]:
    """The learning rate of ``lrs`` whose ``steps`` plain SGD steps (no decay) end at the lowest training loss.

    The score is the mean loss over the last quarter of the run; a rate whose loss is not finite loses.
    Returns the rate and every rate's score (keys are ``str(lr)``, for JSON). ``show_progress=True`` shows a
    tqdm bar over the rates.
    """
    if not lrs:
        raise ValueError("lrs is empty: give at least one learning rate.")
    scores: dict[str, float] = {}
    for lr in tqdm(lrs, disable=not show_progress, desc=f"choosing the lr ({level}, lim {lim})"):
        result = approximate.learn_noise(model, train, level=level, lim=lim, steps=steps, lr=lr, milestones=(),
                                         batch_size=batch_size, seed=seed, device=device)
        tail = [entry["loss"] for entry in result.history[-max(1, steps // 4):]]
        score = sum(tail) / len(tail)
        scores[str(lr)] = score if math.isfinite(score) else math.inf
    best = min(lrs, key=lambda lr: scores[str(lr)])
    logger.info("choose_lr (%s, lim %g): scores %s, chose %g", level, lim, scores, best)
    return best, scores


def robustness_point(model: nn.Module, train: Dataset, val: Dataset, *, level: str, lim: float, steps: int,
                     lr: float, milestones: tuple[int, ...], batch_size: int, seed: int = 0,
                     device: str | torch.device | None = None, show_progress: bool = False) -> tuple[dict, torch.Tensor]:
    """Learn one noise and evaluate it learned, shuffled and against fresh uniform noise.

    Returns the row (JSON-ready) and the learned noise (on the CPU), for transfer experiments.
    ``show_progress=True`` shows tqdm bars over the SGD steps and the evaluations' batches.
    """
    result = approximate.learn_noise(model, train, level=level, lim=lim, steps=steps, lr=lr, milestones=milestones,
                                     batch_size=batch_size, seed=seed, device=device, show_progress=show_progress)
    reference = uniform_noise(tuple(result.noise.shape), lim, seed + 1)
    row = {"level": level, "lim": lim, "lr": lr, "initial_norm": result.initial_norm, "final_norm": result.norm}
    for kind, noise, shuffle in (("learned", result.noise, False), ("shuffled", result.noise, True),
                                 ("uniform", reference, False)):
        row[kind] = asdict(approximate.evaluate_noise(model, val, noise, level=level, shuffle=shuffle, seed=seed,
                                                      device=device, show_progress=show_progress))
    return row, result.noise  # learn_noise gives it back on the CPU


def transfer_matrix(models: dict[str, nn.Module], noises: dict[str, torch.Tensor], val: Dataset, *,
                    device: str | torch.device | None = None, show_progress: bool = False) -> dict[str, dict[str, float]]:
    """``matrix[source][target]``: fraction of ``target``'s predictions unchanged by ``source``'s input noise.

    All noises must be input-level (C, H, W): the image is the only space all models share.
    ``show_progress=True`` shows a tqdm bar over the (source, target) pairs.
    """
    for source, noise in noises.items():
        if noise.ndim != 3:
            raise ValueError(f"noise of {source!r} has shape {tuple(noise.shape)}; transfer needs input-level "
                             "(C, H, W) noise, learned with level='input'.")
    matrix: dict[str, dict[str, float]] = {source: {} for source in noises}
    with tqdm(total=len(noises) * len(models), disable=not show_progress, desc="transfer") as bar:
        for source, noise in noises.items():
            for target, model in models.items():
                matrix[source][target] = approximate.evaluate_noise(model, val, noise, level="input", device=device).match
                bar.update()
    return matrix


def exact_transfer(source: nn.Module, models: dict[str, nn.Module], val: Dataset, *, amplitude: float,
                   seed: int = 0, device: str | torch.device | None = None,
                   show_progress: bool = False) -> dict[str, float]:
    """Exact nullspace noise of the ViT ``source`` (largest absolute value ``amplitude``) on every model's input:
    the fraction of unchanged predictions per model. The source itself keeps all of them (§3).
    ``show_progress=True`` shows a tqdm bar over the models."""
    image_size = tuple(val[0][0].shape[-2:])
    noise = exact.random_nullspace_noise(source, image_size, amplitude=amplitude, seed=seed)
    return {name: approximate.evaluate_noise(model, val, noise, level="input", device=device).match
            for name, model in tqdm(models.items(), disable=not show_progress, desc="exact noise transfer")}


def vits_beat_cnns(rows_by_model: dict[str, list[dict]], vits: tuple[str, ...], cnns: tuple[str, ...],
                   kind: str = "learned") -> list[dict]:
    """Per lim: the worst ViT's and the best CNN's match, and whether every ViT keeps more predictions
    than every CNN (the paper's §5 claim, checked lim by lim)."""
    lims = [row["lim"] for row in rows_by_model[vits[0]]]
    verdicts = []
    for index, lim in enumerate(lims):
        worst_vit = min(rows_by_model[name][index][kind]["match"] for name in vits)
        best_cnn = max(rows_by_model[name][index][kind]["match"] for name in cnns)
        verdicts.append({"lim": lim, "worst_vit": worst_vit, "best_cnn": best_cnn, "vits_ahead": worst_vit > best_cnn})
    return verdicts
