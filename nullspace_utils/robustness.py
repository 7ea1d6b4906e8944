"""ViTs against CNNs under nullspace noise, and transfer of noise between models (paper §5, Fig. 3).

Everything here is built on :mod:`nullspace_utils.approximate` (one training loop, one evaluation, one sweep
point, :func:`~nullspace_utils.approximate.noise_point`, with its learning-rate probe and its baselines):

* :func:`transfer_matrix`: input-level noises learned for some models, added to the inputs of others
  (Fig. 3c), as a source x target table of matching predictions.
* :func:`exact_transfer`: the *exact* nullspace noise of a ViT (the caption of Fig. 3c) added to the
  inputs of every model, scaled to the RMS of the uniform noise it is compared with (equal energy).
* :func:`architecture_verdicts` and :func:`verdict_sentence`: the paper's §5 claim ("ViTs keep more
  predictions than CNNs") checked lim by lim from multi-seed rows, stated only where the seeds separate.

Units: input-level noise is added to the [0, 1] image, the one space every model shares, so the same lim is
the same pixel energy for every model (RMS lim / sqrt(3)). The authors' code adds it to the *normalised* image,
whose scale differs between models whose normalisations differ (the zoo's six share one: there the two
conventions differ by one common factor).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from nullspace_utils import approximate, exact

logger = logging.getLogger(__name__)

__all__ = ["transfer_matrix", "exact_transfer", "architecture_verdicts", "verdict_sentence", "verdict_summary", "relative_size"]


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


def exact_transfer(source: nn.Module, models: dict[str, nn.Module], val: Dataset, *, rms: float,
                   seed: int = 0, device: str | torch.device | None = None,
                   show_progress: bool = False) -> dict[str, float]:
    """Exact nullspace noise of the ViT ``source``, scaled to root-mean-square ``rms`` (compare it with
    Uniform(-lim, lim) at ``rms = lim / sqrt(3)``: equal energy), on every model's input: the fraction of unchanged
    predictions per model. The source itself keeps all of them (§3). ``show_progress=True`` shows a tqdm bar."""
    if not rms > 0:
        raise ValueError(f"rms must be positive, got {rms}.")
    image_size = tuple(val[0][0].shape[-2:])
    noise = exact.random_nullspace_noise(source, image_size, seed=seed, dtype=torch.float64)
    noise = (noise * (rms / noise.pow(2).mean().sqrt())).float()
    return {name: approximate.evaluate_noise(model, val, noise, level="input", device=device).match
            for name, model in tqdm(models.items(), disable=not show_progress, desc="exact noise transfer")}


def relative_size(row: dict) -> list[float]:
    """Per seed of a :func:`~nullspace_utils.approximate.noise_point` row: the starting noise's norm over the mean
    norm of the clean inputs at the same level (tokens or images). A unit-free size, so that a ViT's token noise
    and a CNN's image noise can share an axis (Fig. 3a)."""
    return [entry["initial_norm"] / entry["uniform"]["clean_norm"] for entry in row["seeds"]]


def architecture_verdicts(rows_by_model: dict[str, list[dict]], vits: Sequence[str], cnns: Sequence[str], *,
                          kind: str = "learned") -> list[dict]:
    """Per lim shared by all models: do the ViTs keep more predictions than the CNNs under ``kind`` noise?

    ``verdict`` is ``"ViTs ahead"`` when every seed of every ViT keeps more than every seed of every CNN,
    ``"CNNs ahead"`` for the reverse, ``"not separable"`` when the seeds' ranges overlap, and
    ``"learning failed"`` (for learned noise) when any model's point failed to learn, which says nothing about
    the models. Each verdict keeps the ranges it was read from."""
    shared = sorted(set.intersection(*({row["lim"] for row in rows_by_model[name]} for name in (*vits, *cnns))))
    verdicts = []
    for lim in shared:
        points = {name: next(row for row in rows_by_model[name] if row["lim"] == lim) for name in (*vits, *cnns)}
        values = {name: approximate.seed_values(point, kind) for name, point in points.items()}
        vit_values = [value for name in vits for value in values[name]]
        cnn_values = [value for name in cnns for value in values[name]]
        failed = sorted(name for name, point in points.items() if kind == "learned" and point["learning_failed"])
        if failed:
            verdict = "learning failed"
        else:
            verdict = {1: "ViTs ahead", -1: "CNNs ahead", 0: "not separable"}[
                approximate.separated(vit_values, cnn_values)]
        verdicts.append({"lim": lim, "kind": kind, "verdict": verdict, "failed": failed,
                         "vit_range": (min(vit_values), max(vit_values)), "cnn_range": (min(cnn_values), max(cnn_values))})
    return verdicts


def verdict_sentence(verdict: dict, *, unit: str = "") -> str:
    """One sentence for an :func:`architecture_verdicts` entry, with the ranges over seeds and models it rests on."""
    vit_low, vit_high = (100 * value for value in verdict["vit_range"])
    cnn_low, cnn_high = (100 * value for value in verdict["cnn_range"])
    ranges = f"ViTs keep {vit_low:.1f}-{vit_high:.1f} %, CNNs {cnn_low:.1f}-{cnn_high:.1f} %"
    where = f"at lim {verdict['lim']:g}{unit} ({verdict['kind']} noise)"
    if verdict["verdict"] == "learning failed":
        return f"{where}: no verdict, learning failed for {', '.join(verdict['failed'])} ({ranges})."
    if verdict["verdict"] == "not separable":
        return f"{where}: not separable at this budget ({ranges}; the seeds' ranges overlap)."
    return f"{where}: {verdict['verdict']} ({ranges})."



def verdict_summary(verdicts: list[dict]) -> str:
    """:func:`architecture_verdicts` in one line: each outcome that occurs with its lims, e.g.
    "ViTs ahead at lim 0.5; not separable at lim 0.05, 0.1"."""
    found: dict[str, list[str]] = {}
    for verdict in verdicts:
        found.setdefault(verdict["verdict"], []).append(f"{verdict['lim']:g}")
    return "; ".join(f"{outcome} at lim {', '.join(lims)}" for outcome, lims in found.items())
