"""Paper §4, Fig. 2: learned encoder-level noise against lim for a profile's three ViTs, every point from several
seeds with its baselines; the first ViT again with its norm held and with the squared loss.

The result file ``book/results/<profile>/approximate.json`` (:data:`RESULT`, schema :class:`ApproximateResult`);
the sweep's recipe and rules are :mod:`~nullspace_utils.studies.noise_sweep`'s.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import functools
from dataclasses import dataclass
from typing import Any, Sequence

from typing_extensions import NotRequired, TypedDict

from nullspace_utils import approximate, plotting, results
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Provenance
from nullspace_utils.studies import evidence
from nullspace_utils.studies.common import RUNNER_FIX, Run, chosen_models, join_parts, settings_dict
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

__all__ = ["ApproximateSettings", "ApproximateCheck", "SETTINGS", "CHECK", "run", "merge", "RESULT",
           "ApproximateResult", "LOSS", "OPTIMIZER", "run_summary", "figure_2_panels", "keep_norm_panel",
           "verdict_rows", "loss_lines", "comparison_lines"]


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ApproximateSettings(SweepSettings):
    """:class:`~nullspace_utils.studies.noise_sweep.SweepSettings`, and the lims at which the first ViT is learned
    again with the squared loss (``squared_lims``)."""

    squared_lims: tuple[float, ...]


@dataclass(frozen=True)
class ApproximateCheck(CheckPoint):
    """The cheap point a test recomputes on the CPU, on the profile's ViT number ``model_index``."""

    model_index: int


#: the sweep of each profile (Fig. 2 at the encoder)
SETTINGS: dict[str, ApproximateSettings] = {
    "teaching": ApproximateSettings(lims=(0.5, 1.0, 2.0, 4.0), extend_until=0.5, extend_factor=2.0, max_extensions=4,
                                    seeds=(0, 1, 2), steps=200, milestones=(60, 120, 160), batch_size=128,
                                    probe_steps=50, lr_grid=approximate.LR_GRID, train=2_000, val=500,
                                    squared_lims=(1.0, 4.0)),
    "imagenet": ApproximateSettings(lims=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0), extend_until=0.5,
                                    extend_factor=2.0, max_extensions=4, seeds=(0, 1, 2), steps=500,
                                    milestones=(150, 300, 400), batch_size=256, probe_steps=50,
                                    lr_grid=approximate.LR_GRID, train=9_469, val=3_925, squared_lims=(0.5,)),
}
#: the cheap sweep point a test recomputes on the CPU (a fixed rate, so that CPU and GPU cannot choose differently)
CHECK = ApproximateCheck(model_index=0, lim=2.0, seeds=(0,), steps=20, milestones=(10,), lr=1.0, batch_size=32,
                         train=64, val=64)

OPTIMIZER = "SGD, rate chosen per point (lr_choice), x0.1 at the milestones"


# --------------------------------------------------------------------------- the result file
class ApproximateResult(TypedDict):
    """``book/results/<profile>/approximate.json``: learned encoder noise against lim (paper Fig. 2), per ViT, plain
    and with the norm held, and the first ViT with the squared loss."""

    provenance: Provenance
    profile: str
    level: str
    config: SweepConfig
    loss: str
    optimizer: str
    models: dict[str, list[NoisePoint]]
    keep_norm: dict[str, list[NoisePoint]]
    squared_loss: dict[str, list[NoisePoint]]
    check: SweepCheck
    parts: NotRequired[list[Provenance]]  # a run in parallel parts, joined by ``experiments merge``


#: the result file, ``book/results/<profile>/approximate.json``
RESULT: results.ResultKind[ApproximateResult] = results.ResultKind("approximate", ApproximateResult, "approximate")


# --------------------------------------------------------------------------- runner
def run(settings: ApproximateSettings, profile: Profile, how: Run, *, models: Sequence[str] | None = None,
        check: ApproximateCheck = CHECK) -> ApproximateResult:
    """Paper Fig. 2: learned encoder-level noise against lim for the profile's ViTs (``models``: only these, one part
    of a parallel run; join the parts with :func:`merge`), multi-seed, rate chosen per point; the first ViT again
    with ``keep_norm`` (the noise cannot shrink) at the same lims and rates, and with the squared loss at
    ``squared_lims``; and the cheap ``check`` point. The rows so far are written after every point."""
    chosen = chosen_models(models, profile.vit_models)
    train, val, small_train, small_val = sweep_datasets(profile, settings, check, how.device)
    out: dict[str, Any] = {"provenance": how.provenance(), "profile": profile.name, "level": "encoder",
                           "config": settings_dict(settings), "loss": LOSS, "optimizer": OPTIMIZER,
                           "models": {}, "keep_norm": {}, "squared_loss": {}}
    common = point_settings(settings, how.device)

    def save() -> None:
        how.save_partial(out)

    for index, name in enumerate(profile.vit_models):
        if name not in chosen:
            continue
        model = profile.load_model(name, device=how.device)
        rows = lim_sweep(functools.partial(noise_point, model, train, val, level="encoder", **common),
                         settings, save, out["models"].setdefault(name, []))
        if index == 0:
            kept = out["keep_norm"].setdefault(name, [])
            for row in rows:  # the same lims and rates, with the norm held
                kept.append(noise_point(model, train, val, level="encoder", lim=row["lim"], lr=row["lr"],
                                        keep_norm=True, **common))
                save()
            squared = out["squared_loss"].setdefault(name, [])
            for lim in settings.squared_lims:
                squared.append(noise_point(model, train, val, level="encoder", lim=lim, squared=True, **common))
                save()
    check_model = profile.load_model(profile.vit_models[check.model_index], device=how.device)
    out["check"] = {**settings_dict(check),
                    "result": check_point(check_model, small_train, small_val, check, "encoder", how.device)}
    return RESULT.validate(out, fix=RUNNER_FIX)


def merge(parts: Sequence[ApproximateResult], profile: Profile, how: Run) -> ApproximateResult:
    """One result from the parts of a sweep run in parallel (one ``models`` subset each, same settings)."""
    joined = join_parts([dict(part) for part in parts], ("models", "keep_norm", "squared_loss"), profile.models, how)
    return RESULT.validate(joined, fix=RUNNER_FIX)


# --------------------------------------------------------------------------- readers for the chapter
def run_summary(sweep: ApproximateResult) -> list[str]:
    """The lines the chapter prints under the file's provenance: budget, failures and the rates chosen."""
    config = sweep["config"]
    failed = [(name, row["lim"]) for name, rows in sweep["models"].items() for row in rows if row["learning_failed"]]
    edges = [(name, row["lim"]) for name, rows in sweep["models"].items() for row in rows
             if row["lr_choice"] and row["lr_choice"]["at_edge"]]
    chosen = sorted({row["lr"] for rows in sweep["models"].values() for row in rows})
    return [f"{config['steps']} SGD steps of {config['batch_size']} images (rate x0.1 at steps {config['milestones']}), "
            f"seeds {config['seeds']}, {config['train']} training and {config['val']} validation images",
            f"points where learning failed: {failed or 'none'}; rates at a grid edge: {edges or 'none'}",
            f"rates chosen by the probes: {chosen[0]:g} to {chosen[-1]:g}"]


def _series(rows: list[NoisePoint], kind: str, label: str, color: str) -> dict[str, Any]:
    """One line of a :func:`~nullspace_utils.plotting.seed_panels` panel: ``kind``'s match over seeds."""
    xs, values, failed = plotting.seed_series(rows, kind)
    return {"xs": xs, "values": values, "failed": failed, "label": label, "kind": kind, "color": color}


def figure_2_panels(rows_by_model: dict[str, list[NoisePoint]],
                    kinds: Sequence[str] = ("learned", "shuffled", "uniform")) -> list[dict[str, Any]]:
    """Fig. 2's panels for :func:`~nullspace_utils.plotting.seed_panels`: one per ViT, the share of predictions kept
    against lim for each of ``kinds``, mean and range over seeds."""
    return [{"title": name, "xlabel": "lim (token units)", "ylabel": "predictions unchanged (%)", "logx": True,
             "xticks": [row["lim"] for row in rows],
             "series": [_series(rows, kind, name, f"C{index}") for kind in kinds]}
            for index, (name, rows) in enumerate(rows_by_model.items())]


def keep_norm_panel(sweep: ApproximateResult, name: str) -> dict[str, Any]:
    """One panel: ``name``'s learned noise and its shuffled copy, plain SGD against the norm held."""
    series = [_series(rows, kind, label, color)
              for label, rows, color in (("plain SGD", sweep["models"][name], "C0"),
                                         ("keep norm", sweep["keep_norm"][name], "C3"))
              for kind in ("learned", "shuffled")]
    return {"title": f"{name}: norm held", "xlabel": "lim (token units)", "ylabel": "predictions unchanged (%)",
            "logx": True, "xticks": [row["lim"] for row in sweep["models"][name]], "series": series}


def _norm_range(point: NoisePoint) -> str:
    """The learned noise's norm over seeds, "12-15" (both ends always)."""
    return plotting.format_range(evidence.seed_values(point, "final_norm", ""), scale=1, digits=0, collapse=False)


def verdict_rows(sweep: ApproximateResult) -> list[list[str]]:
    """Per ViT and lim: rate, noise norm (start -> learned range) and the learned-vs-shuffled verdict."""
    rows = []
    for name, points in sweep["models"].items():
        for point in points:
            rows.append([name, f"{point['lim']:g}", f"{point['lr']:g}",
                         f"{point['seeds'][0]['initial_norm']:.0f} → {_norm_range(point)}",
                         evidence.point_verdict(point).split(": ", 1)[1]])
    return rows


def loss_lines(sweep: ApproximateResult, name: str) -> list[str]:
    """``name``'s verdicts with the norm held, then the eq. 6 norm against the squared loss at the same lims."""
    lines = [f"norm held, {evidence.point_verdict(point)}" for point in sweep["keep_norm"][name]]
    for squared in sweep["squared_loss"][name]:
        plain = next(point for point in sweep["models"][name] if point["lim"] == squared["lim"])
        for label, point in (("eq. 6 norm", plain), ("squared", squared)):
            lines.append(f"{label} loss, rate {point['lr']:g}, {evidence.point_verdict(point)}; learned norm "
                         f"{_norm_range(point)}")
    return lines


def comparison_lines(sweep: ApproximateResult) -> list[str]:
    """Per ViT, against the paper's Fig. 2: the lims where learned noise beats its shuffled copy, where they cannot
    be told apart, and the verdict at the largest lim."""
    lines = []
    for name, points in sweep["models"].items():
        ahead = [point["lim"] for point in points if evidence.separated(
            evidence.seed_values(point, "learned"), evidence.seed_values(point, "shuffled")) == 1]
        unclear = [point["lim"] for point in points if point["lim"] not in ahead]
        largest = points[-1]
        lines.append(f"{name}: learned beats its shuffled copy at lim {', '.join(f'{lim:g}' for lim in ahead) or 'none'}"
                     f"{'; not separable at lim ' + ', '.join(f'{lim:g}' for lim in unclear) if unclear else ''}. "
                     f"At the largest lim, {evidence.point_verdict(largest).split(': ', 1)[1]}.")
    return lines
