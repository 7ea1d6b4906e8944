"""Paper §5, Fig. 3: learned image-level noise for a profile's six models (ViTs and CNNs), multi-seed with its
baselines, the transfer of every model's noise to every model, and ViT-S's exact nullspace noise on all of them;
the verdicts on the paper's claim ("ViTs keep more predictions than CNNs"), stated only where the seeds separate.

The result file ``book/results/<profile>/robustness.json`` (:data:`RESULT`, schema :class:`RobustnessResult`);
panel (a) reads the ViTs' token rows from the approximate study's file. The sweep's recipe and rules are
:mod:`~nullspace_utils.studies.noise_sweep`'s.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from typing_extensions import NotRequired, TypedDict

from nullspace_utils import approximate, plotting, results, robustness
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Provenance
from nullspace_utils.studies import evidence
from nullspace_utils.studies.common import RUNNER_FIX, Run, StudyError, chosen_models, join_parts, settings_dict
from nullspace_utils.studies.noise_sweep import (
    LOSS,
    CheckPoint,
    NoisePoint,
    SweepCheck,
    SweepConfig,
    SweepSettings,
    check_point,
    lim_sweep,
    noise_point,
    point_settings,
    sweep_datasets,
)

__all__ = ["RobustnessSettings", "RobustnessCheck", "SETTINGS", "CHECK", "LOSS", "run", "merge", "noise_file", "RESULT",
           "RobustnessResult", "relative_size", "architecture_verdicts", "verdict_sentence", "verdict_summary",
           "run_summary", "uniform_reference_rows", "panels", "lr_rows", "null_part_rows", "exact_transfer_rows",
           "claim_lines"]


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RobustnessSettings(SweepSettings):
    """:class:`~nullspace_utils.studies.noise_sweep.SweepSettings`, and the lims of the transfer tables."""

    transfer_lims: tuple[float, ...]


@dataclass(frozen=True)
class RobustnessCheck(CheckPoint):
    """The cheap point a test recomputes on the CPU: the profile's CNN number ``cnn_index`` at ``level``."""

    cnn_index: int
    level: str


#: the input-level sweep of each profile (Fig. 3b and c)
SETTINGS: dict[str, RobustnessSettings] = {
    "teaching": RobustnessSettings(lims=(0.05, 0.1, 0.25, 0.5, 1.0), extend_until=0.5, extend_factor=2.0,
                                   max_extensions=4, seeds=(0, 1, 2), steps=200, milestones=(60, 120, 160),
                                   batch_size=128, probe_steps=50, lr_grid=approximate.LR_GRID, train=2_000, val=500,
                                   transfer_lims=(0.1, 0.25, 0.5)),
    "imagenet": RobustnessSettings(lims=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0), extend_until=0.5, extend_factor=2.0,
                                   max_extensions=4, seeds=(0, 1, 2), steps=500, milestones=(150, 300, 400),
                                   batch_size=256, probe_steps=50, lr_grid=approximate.LR_GRID, train=9_469,
                                   val=3_925, transfer_lims=(0.05, 0.1, 0.25)),
}
#: the cheap robustness point a test recomputes on the CPU (a fixed rate: no probe)
CHECK = RobustnessCheck(cnn_index=2, level="input", lim=0.1, seeds=(0,), steps=10, milestones=(5,), lr=0.1,
                        batch_size=32, train=64, val=64)



# --------------------------------------------------------------------------- the result file
class RobustnessResult(TypedDict):
    """``book/results/<profile>/robustness.json``: input-level learned noise for all six models, and transfer (Fig. 3).
    ``transfer[lim][source][target]`` and ``exact_transfer[lim][target]`` are fractions of kept predictions."""

    provenance: Provenance
    profile: str
    config: SweepConfig
    loss: str
    input: dict[str, list[NoisePoint]]
    transfer: dict[str, dict[str, dict[str, float]]]
    exact_transfer: dict[str, dict[str, float]]
    check: SweepCheck
    parts: NotRequired[list[Provenance]]  # a run in parallel parts, joined by ``experiments merge``


#: the result file, ``book/results/<profile>/robustness.json``
RESULT: results.ResultKind[RobustnessResult] = results.ResultKind("robustness", RobustnessResult, "robustness")


# --------------------------------------------------------------------------- runner
def noise_file(out: Path) -> Path:
    """Where a robustness run keeps its seed-0 input noises (beside its result; not a result file)."""
    return out.with_name(out.stem + ".noises.safetensors")


def _transfer(out: dict[str, Any], profile: Profile, loaded: dict[str, nn.Module], noises: dict[str, torch.Tensor],
              val: Dataset, transfer_lims: Sequence[float], device: str) -> None:
    """Fill ``out``'s transfer tables: ``transfer[lim][source][target]`` (every model's seed-0 input noise on every
    model) and ``exact_transfer[lim][target]`` (ViT-S's exact nullspace noise at the RMS of Uniform(-lim, lim))."""
    source = profile.vit_models[0]
    for lim in transfer_lims:
        by_source = {name: noises[f"{name}/{lim:g}"].to(device) for name in profile.models}
        out["transfer"][str(lim)] = robustness.transfer_matrix(loaded, by_source, val, device=device)
        out["exact_transfer"][str(lim)] = robustness.exact_transfer(loaded[source], loaded, val, rms=lim / 3 ** 0.5,
                                                                    device=device)


def run(settings: RobustnessSettings, profile: Profile, how: Run, *, models: Sequence[str] | None = None,
        check: RobustnessCheck = CHECK) -> RobustnessResult:
    """Paper Fig. 3: input-level noise for all six models (b), multi-seed with its baselines (for ViTs also the
    exact-nullspace ones); (c) every model's seed-0 input noise on every model at ``transfer_lims``, and ViT-S's
    exact nullspace noise at the RMS of Uniform(-lim, lim). ``models``: only these (one part of a parallel run; the
    part saves its noises beside ``how.out`` and :func:`merge` computes the transfer tables); the cheap ``check``."""
    chosen = chosen_models(models, profile.models)
    train, val, small_train, small_val = sweep_datasets(profile, settings, check, how.device)
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name, "config": settings_dict(settings),
                           "loss": LOSS, "input": {}, "transfer": {}, "exact_transfer": {}}
    common = point_settings(settings, how.device)
    loaded: dict[str, nn.Module] = {name: profile.load_model(name, device=how.device) for name in chosen}
    noises: dict[str, torch.Tensor] = {}  # "model/lim" -> the seed-0 input noise, for the transfer tables
    for name, model in loaded.items():
        learned: dict[float, dict[int, torch.Tensor]] = {}

        def point(lim: float, model: nn.Module = model,
                  learned: dict[float, dict[int, torch.Tensor]] = learned) -> NoisePoint:
            learned[lim] = {}
            return noise_point(model, train, val, level="input", lim=lim, noises=learned[lim], **common)

        lim_sweep(point, settings, lambda: how.save_partial(out), out["input"].setdefault(name, []))
        for lim in settings.transfer_lims:
            noises[f"{name}/{lim:g}"] = learned[lim][settings.seeds[0]]
    if how.out is not None:
        save_file(noises, noise_file(how.out))  # a part of a parallel run hands its noises to `merge`
    if set(chosen) == set(profile.models):
        _transfer(out, profile, loaded, noises, val, settings.transfer_lims, how.device)
        how.save_partial(out)
    check_name = profile.cnn_models[check.cnn_index]  # the profile's third CNN (MobileNetV3)
    check_model = loaded.get(check_name) or profile.load_model(check_name, device=how.device)
    out["check"] = {**settings_dict(check),
                    "result": check_point(check_model, small_train, small_val, check, check.level, how.device)}
    return RESULT.validate(out, fix=RUNNER_FIX)


def merge(parts: Sequence[RobustnessResult], part_files: Sequence[Path], profile: Profile,
          how: Run) -> RobustnessResult:
    """One result from the parts of a sweep run in parallel (one ``models`` subset each, same settings), with the
    transfer tables computed from the noises the parts saved beside their files (:func:`noise_file`)."""
    out: dict[str, Any] = join_parts([dict(part) for part in parts], ("input",), profile.models, how)
    missing = sorted(set(profile.models) - set(out["input"]))
    if missing:
        raise StudyError(f"merge: no part has {', '.join(missing)}; the transfer tables need every model.")
    noises: dict[str, torch.Tensor] = {}
    for path in part_files:
        if not noise_file(Path(path)).is_file():
            raise StudyError(f"merge: {noise_file(Path(path))} is missing: a robustness part saves its noises beside "
                             "its result file; merge the parts where they were written.")
        noises.update(load_file(str(noise_file(Path(path)))))
    val = profile.tensor_dataset("val", out["config"]["val"], how.device)
    loaded: dict[str, nn.Module] = {name: profile.load_model(name, device=how.device) for name in profile.models}
    out["transfer"], out["exact_transfer"] = {}, {}
    _transfer(out, profile, loaded, noises, val, [float(lim) for lim in out["config"]["transfer_lims"]], how.device)
    return RESULT.validate(out, fix=RUNNER_FIX)


# --------------------------------------------------------------------------- verdicts
def relative_size(row: Mapping[str, Any]) -> list[float]:
    """Per seed of a :func:`~nullspace_utils.studies.noise_sweep.noise_point` row: the starting noise's norm over the mean
    norm of the clean inputs at the same level (tokens or images). A unit-free size, so that a ViT's token noise
    and a CNN's image noise can share an axis (Fig. 3a)."""
    return [entry["initial_norm"] / entry["uniform"]["clean_norm"] for entry in row["seeds"]]


def architecture_verdicts(rows_by_model: Mapping[str, Sequence[Mapping[str, Any]]], vits: Sequence[str], cnns: Sequence[str], *,
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
        values = {name: evidence.seed_values(point, kind) for name, point in points.items()}
        vit_values = [value for name in vits for value in values[name]]
        cnn_values = [value for name in cnns for value in values[name]]
        failed = sorted(name for name, point in points.items() if kind == "learned" and point["learning_failed"])
        if failed:
            verdict = "learning failed"
        else:
            verdict = {1: "ViTs ahead", -1: "CNNs ahead", 0: "not separable"}[
                evidence.separated(vit_values, cnn_values)]
        verdicts.append({"lim": lim, "kind": kind, "verdict": verdict, "failed": failed,
                         "vit_range": (min(vit_values), max(vit_values)), "cnn_range": (min(cnn_values), max(cnn_values))})
    return verdicts


def verdict_sentence(verdict: dict, *, unit: str = "") -> str:
    """One sentence for an :func:`architecture_verdicts` entry, with the ranges over seeds and models it rests on."""
    vits, cnns = (plotting.format_range(verdict[key], collapse=False) for key in ("vit_range", "cnn_range"))
    ranges = f"ViTs keep {vits} %, CNNs {cnns} %"
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


# --------------------------------------------------------------------------- readers for the chapter
def run_summary(sweep: RobustnessResult) -> list[str]:
    """The lines the chapter prints under the file's provenance: budget, failures and rates at a grid edge."""
    config = sweep["config"]
    failed = [(name, row["lim"]) for name, rows in sweep["input"].items() for row in rows if row["learning_failed"]]
    edges = [(name, row["lim"]) for name, rows in sweep["input"].items() for row in rows
             if row["lr_choice"] and row["lr_choice"]["at_edge"]]
    return [f"{config['steps']} SGD steps of {config['batch_size']} images, seeds {config['seeds']}, "
            f"{config['train']} training and {config['val']} validation images",
            f"points where learning failed: {failed or 'none'}; rates at a grid edge: {edges or 'none'}"]


def uniform_reference_rows(models: dict[str, nn.Module], val: Dataset, lims: Sequence[float], image_size: int, *,
                           seed: int = 1) -> list[list[str]]:
    """Per model: the share of predictions Uniform(-lim, lim) image noise (one draw, ``seed``) keeps at each lim."""
    shape = (3, image_size, image_size)
    rows = []
    for name, model in models.items():
        matches = [approximate.evaluate_noise(model, val, approximate.uniform_noise(shape, lim, seed=seed),
                                              level="input").match for lim in lims]
        rows.append([name, *[f"{100 * match:.1f} %" for match in matches]])
    return rows


def _series(rows: list[NoisePoint], kind: str, name: str, index: int, x: Any = "rms") -> dict[str, Any]:
    """One curve of a seed figure: ``kind`` noise of model ``name`` (colour ``index``)."""
    xs, values, failed = plotting.seed_series(rows, kind, x=x)
    return {"label": name, "kind": kind, "color": f"C{index}", "xs": xs, "values": values, "failed": failed}


def _mean_relative_size(row: NoisePoint) -> float:
    return float(np.mean(relative_size(row)))


def panels(sweep: RobustnessResult, tokens: dict[str, Any], vits: Sequence[str],
           models: Sequence[str]) -> list[dict[str, Any]]:
    """Fig. 3's panels (a) and (b) for :func:`~nullspace_utils.plotting.seed_panels`: (a) the ViTs' token noise
    (``tokens``: the approximate study's result) and the CNNs' image noise against the noise's size relative to
    the clean input; (b) every model's image noise against its pixel RMS."""
    panel_a = {name: tokens["models"][name] if name in vits else sweep["input"][name] for name in models}
    return [
        {"title": "(a) ViT tokens, CNN image", "xlabel": "noise norm / clean input norm", "logx": True,
         "ylabel": "predictions unchanged (%)",
         "series": [_series(rows, kind, name, index, x=_mean_relative_size)
                    for index, (name, rows) in enumerate(panel_a.items()) for kind in ("learned", "uniform")]},
        {"title": "(b) image, all models", "xlabel": "noise RMS (pixels in [0, 1])", "logx": True,
         "xticks": [lim / 3 ** 0.5 for lim in sweep["config"]["lims"]],
         "ylabel": "predictions unchanged (%)",
         "series": [_series(rows, kind, name, index) for index, (name, rows) in enumerate(sweep["input"].items())
                    for kind in ("learned", "uniform")]},
    ]


def lr_rows(sweep: RobustnessResult, lim: float) -> list[list[str]]:
    """Per model at ``lim``: the rate, learned vs shuffled, and the noise's norm (start -> learned range)."""
    rows = []
    for name, points in sweep["input"].items():
        point = next(point for point in points if point["lim"] == lim)
        rows.append([name, f"{point['lr']:g}", evidence.point_verdict(point).split(": ", 1)[1],
                     f"{point['seeds'][0]['initial_norm']:.0f} → "
                     + plotting.format_range(evidence.seed_values(point, "final_norm", ""), scale=1, digits=0)])
    return rows


def null_part_rows(sweep: RobustnessResult, vits: Sequence[str]) -> list[list[str]]:
    """Per ViT and lim (ranges over seeds): kept under the learned noise and under its null part, the null share of
    the learned noise and of its start, and whether the null part is unchanged by learning."""
    spread = plotting.format_range
    rows = []
    for name in vits:
        for point in sweep["input"][name]:
            same = all(abs(entry["row_removed"]["noise_norm"] / entry["projected"]["noise_norm"] - 1) < 1e-4
                       for entry in point["seeds"])
            rows.append([name, f"{point['lim']:g}", spread(evidence.seed_values(point, "learned")),
                         spread(evidence.seed_values(point, "row_removed")),
                         spread(evidence.seed_values(point, "null_share", ""), scale=1, digits=2),
                         spread(evidence.seed_values(point, "projected_norm_kept", ""), scale=1, digits=2),
                         "yes" if same else "**no**"])
    return rows


def exact_transfer_rows(sweep: RobustnessResult, models: Sequence[str]) -> list[list[str]]:
    """Per lim: the share of every model's predictions the source ViT's exact nullspace noise keeps."""
    return [[lim, *[f"{100 * sweep['exact_transfer'][lim][name]:.1f} %" for name in models]]
            for lim in sweep["exact_transfer"]]


def claim_lines(sweep: RobustnessResult, vits: Sequence[str], cnns: Sequence[str]) -> list[str]:
    """The paper's §5 claims one by one, as Markdown bullets generated from the file."""
    source, models = vits[0], (*vits, *cnns)
    learned_b = architecture_verdicts(sweep["input"], vits, cnns)
    uniform_b = architecture_verdicts(sweep["input"], vits, cnns, kind="uniform")
    lim_mid = str(sweep["config"]["transfer_lims"][-1])
    own = sweep["transfer"][lim_mid][source]
    exact_mid = sweep["exact_transfer"][lim_mid]
    uniform_mid = {name: next(row for row in sweep["input"][name] if str(row["lim"]) == lim_mid)["seeds"][0]["uniform"]
                   ["match"] for name in models}  # seed 0: the start of the transferred noise
    return [
        f"- **(b), learned image noise (the fair comparison):** {verdict_summary(learned_b)}.",
        f"- **(b), uniform noise of the same energy:** {verdict_summary(uniform_b)}. Where the learned noise separates the "
        "architectures and the uniform one does not, the difference is what learning found, not a general "
        "tolerance of noise.",
        f"- **(c), transfer of learned noise at lim {lim_mid}** (one seed; in brackets, the uniform noise it started "
        f"from, on the same model). ViT-S's own noise keeps {100 * own[source]:.0f} % ({100 * uniform_mid[source]:.0f} %) "
        "of its predictions, " + ", ".join(f"{100 * own[name]:.0f} % ({100 * uniform_mid[name]:.0f} %) of {name}'s"
                                         for name in (*vits[1:], *cnns)) + ".",
        f"- **(c), exact nullspace noise at the same energy, lim {lim_mid}.** {source} keeps "
        f"{100 * exact_mid[source]:.0f} %, as it must; "
        + ", ".join(f"{name} {100 * exact_mid[name]:.0f} %" for name in (*vits[1:], *cnns)) + ".",
    ]
