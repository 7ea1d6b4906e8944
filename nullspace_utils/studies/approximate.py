"""Paper §4, Fig. 2: learned encoder-level noise against lim for a profile's three ViTs, every point from several
seeds with its baselines; the first ViT again with its norm held and with the squared loss.

The result file ``book/results/<profile>/approximate.json`` (:data:`RESULT`, schema :class:`ApproximateResult`);
the sweep's recipe and rules are :mod:`~nullspace_utils.studies.noise_sweep`'s.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
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
    Work,
    check_point,
    chosen_lims,
    lim_sweep,
    noise_point,
    point_settings,
    point_work,
    sweep_datasets,
)

__all__ = ["ApproximateSettings", "ApproximateCheck", "SETTINGS", "CHECK", "work", "run", "merge", "RESULT",
           "ApproximateResult", "LOSS", "OPTIMIZER", "run_summary", "figure_2_panels", "keep_norm_panel",
           "verdict_rows", "loss_lines", "FIGURE_2_METRICS", "exact_reference", "figure_2",
           "MATCH_CEILING", "mse_range", "metric_separation", "at_ceiling", "figure_2_rows", "figure_2_summary",
           "failure_lines", "claims", "CLAIM_FIGURE"]


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
def work(settings: ApproximateSettings, profile: Profile, model: str,
         lims: Sequence[float] | None = None) -> tuple[Work, Work]:
    """What :func:`run` computes for ``model`` alone (one part of the plan; ``lims``: only these listed lims): its
    lims, and for the first ViT the same lims with the norm held (the rates reused) and, in the part with the first
    listed lim, the squared-loss lims; and what the lims it may add (``max_extensions``, in the part with the last
    listed lim) would cost on top. The cheap check point is left out."""
    point = settings.point()
    chosen = chosen_lims(lims, settings)
    listed = point_work(point, model, "encoder", vit_input=False).times(len(chosen))
    if model == profile.vit_models[0]:
        listed = listed + point_work(point, model, "encoder", vit_input=False, chosen_lr=False).times(len(chosen))
        if settings.lims[0] in chosen:
            listed = listed + point_work(point, model, "encoder", vit_input=False).times(len(settings.squared_lims))
    extensions = settings.max_extensions if settings.adds_lims(chosen) else 0
    return listed, point_work(point, model, "encoder", vit_input=False).times(extensions)


def run(settings: ApproximateSettings, profile: Profile, how: Run, *, models: Sequence[str] | None = None,
        lims: Sequence[float] | None = None, check: ApproximateCheck = CHECK) -> ApproximateResult:
    """Paper Fig. 2: learned encoder-level noise against lim for the profile's ViTs (``models``: only these, one part
    of a parallel run; join the parts with :func:`merge`), multi-seed, rate chosen per point; the first ViT again
    with ``keep_norm`` (the noise cannot shrink) at the same lims and rates, and with the squared loss at
    ``squared_lims``; and the cheap ``check`` point. The rows so far are written after every point.

    ``lims``: only these listed lims (a part of a sweep split by lims, :func:`~nullspace_utils.studies.noise_sweep.lim_sweep`);
    the part with the first listed lim also learns the squared-loss points, the one with the last the added lims."""
    chosen = chosen_models(models, profile.vit_models)
    part_lims = chosen_lims(lims, settings)
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
                         settings, save, out["models"].setdefault(name, []), lims=part_lims)
        if index == 0:
            kept = out["keep_norm"].setdefault(name, [])
            for row in rows:  # the same lims and rates, with the norm held
                kept.append(noise_point(model, train, val, level="encoder", lim=row["lim"], lr=row["lr"],
                                        keep_norm=True, **common))
                save()
            squared = out["squared_loss"].setdefault(name, [])
            for lim in settings.squared_lims if settings.lims[0] in part_lims else ():
                squared.append(noise_point(model, train, val, level="encoder", lim=lim, squared=True, **common))
                save()
    check_model = profile.load_model(profile.vit_models[check.model_index], device=how.device)
    out["check"] = {**settings_dict(check),
                    "result": check_point(check_model, small_train, small_val, check, "encoder", how.device)}
    return RESULT.validate(out, fix=RUNNER_FIX)


def merge(parts: Sequence[ApproximateResult], profile: Profile, how: Run) -> ApproximateResult:
    """One result from the parts of a sweep run in parallel (one ``models`` subset each, or some of a model's lims,
    same settings)."""
    joined = join_parts([dict(part) for part in parts], ("models", "keep_norm", "squared_loss"), profile.models, how,
                        lim_rows=True)
    return RESULT.validate(joined, fix=RUNNER_FIX)


# --------------------------------------------------------------------------- readers for the chapter
def run_summary(sweep: ApproximateResult) -> list[str]:
    """The lines the chapter prints under the file's provenance: budget, failures and the rates chosen."""
    config = sweep["config"]
    failed = [(name, row["lim"]) for name, rows in sweep["models"].items() for row in rows if row["learning_failed"]]
    edges = [(name, row["lim"]) for name, rows in sweep["models"].items() for row in rows
             if row["lr_choice"] and row["lr_choice"]["at_edge"]]
    chosen = sorted({row["lr"] for rows in sweep["models"].values() for row in rows})
    return [f"{config['steps']} SGD steps of {config['batch_size']} images (rate x0.1 at steps {plotting.format_list(config['milestones'])}), "
            f"seeds {plotting.format_list(config['seeds'])}, {config['train']} training and {config['val']} validation images",
            f"points where learning failed: {failed or 'none'}; rates at a grid edge: {edges or 'none'}",
            f"rates chosen by the probes: {chosen[0]:g} to {chosen[-1]:g}"]


def _series(rows: list[NoisePoint], kind: str, label: str, color: str, field: str = "match") -> dict[str, Any]:
    """One line of a :func:`~nullspace_utils.plotting.seed_panels` panel: ``kind``'s ``field`` over seeds (match in
    %, logit MSE as stored)."""
    xs, values, failed = plotting.seed_series(rows, kind, field=field, scale=100.0 if field == "match" else 1.0)
    return {"xs": xs, "values": values, "failed": failed, "label": label, "kind": kind, "color": color}


#: the two halves of Fig. 2: each metric's axis label
FIGURE_2_METRICS: dict[str, str] = {"match": "predictions unchanged (%)", "logit_mse": "logit MSE (log scale)"}


def figure_2_panels(rows_by_model: dict[str, list[NoisePoint]],
                    kinds: Sequence[str] = ("learned", "shuffled", "uniform"), *,
                    field: str = "match") -> list[dict[str, Any]]:
    """Fig. 2's panels for :func:`~nullspace_utils.plotting.seed_panels`: one per ViT, ``field`` against lim for
    each of ``kinds``, mean and range over seeds: the share of predictions kept (``"match"``, in %, the default)
    or the logit MSE (``"logit_mse"``, the figure's other half; give the panel a log y axis)."""
    if field not in FIGURE_2_METRICS:
        raise ValueError(f"Fig. 2 plots {' or '.join(FIGURE_2_METRICS)}, not {field!r}.")
    return [{"title": name, "xlabel": "lim (token units)", "ylabel": FIGURE_2_METRICS[field], "logx": True,
             "xticks": [row["lim"] for row in rows],
             "series": [_series(rows, kind, name, plotting.PALETTE[index % len(plotting.PALETTE)], field)
                        for kind in kinds]}
            for index, (name, rows) in enumerate(rows_by_model.items())]


def exact_reference(robustness: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The exact nullspace noise of §3 as Fig. 2's reference, per ViT, from the robustness sweep (which measures it
    at the image level, ``projected``: each seed's uniform start projected onto null(W_pix)): the lowest share of
    predictions it kept, the largest logit MSE it gave, and over how many (lim, seed) evaluations. The token-level
    sweep has no exact noise of its own: its tokens are zero."""
    out = {}
    for name, rows in robustness["input"].items():
        entries = [entry["projected"] for row in rows for entry in row["seeds"] if "projected" in entry]
        if entries:
            out[name] = {"match": min(entry["match"] for entry in entries),
                         "logit_mse": max(entry["logit_mse"] for entry in entries), "evaluations": len(entries)}
    return out


def figure_2(sweep: ApproximateResult, exact: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """Paper Fig. 2, both halves: per ViT (columns), the share of predictions kept (top row) and the logit MSE (bottom
    row, log axis) against lim for learned, shuffled and uniform noise, mean and range over seeds; with ``exact``
    (:func:`exact_reference`), the exact nullspace noise's measured values as a labelled reference in each panel."""
    models = sweep["models"]
    panels = [*figure_2_panels(models), *figure_2_panels(models, field="logit_mse")]
    fig = plotting.seed_panels(panels, ncols=len(models), size=(2.6, 2.6))
    for ax in fig.axes[len(models):2 * len(models)]:
        ax.set_yscale("log")
    for index, name in enumerate(models):
        if exact and name in exact:
            reference = exact[name]
            plotting.reference_line(fig.axes[index], 100 * reference["match"],
                                    f"exact: {100 * reference['match']:.0f} %")
            plotting.reference_line(fig.axes[len(models) + index], reference["logit_mse"],
                                    f"exact: ≤ {reference['logit_mse']:.0e}", side="right")
    return fig


#: top-1 match is at its ceiling at a point where even the shuffled copy (the learned values, nothing learned)
#: keeps at least this share of predictions on every seed: at most 1 % of the validation images left to flip
MATCH_CEILING = 0.99


def _two_digits(value: float) -> str:
    """``value`` (>= 0) in plain decimals with two significant digits: 0.0070, 0.000083, 1.3, 12."""
    if value <= 0:
        return f"{value:g}"
    rounded = float(f"{value:.2g}")  # 0.009996 is 0.010, not 0.0100
    return f"{rounded:.{max(0, 1 - math.floor(math.log10(rounded)))}f}"


def mse_range(values: Sequence[float]) -> str:
    """A logit MSE range over seeds, each end with two significant digits in plain decimals, "0.0012-0.0016"
    (both ends always)."""
    return f"{_two_digits(min(values))}-{_two_digits(max(values))}"


def metric_separation(point: NoisePoint) -> dict[str, int | None]:
    """Whether learned noise beats its shuffled copy at one point, on each half of Fig. 2, by
    :func:`~nullspace_utils.studies.evidence.separated` on the seeds' ranges: ``match`` +1 when learned keeps more
    predictions, ``logit_mse`` +1 when learned moves the logits less; -1 the other way, 0 overlapping; None for
    both when the point failed to learn (no verdict)."""
    if point["learning_failed"]:
        return {"match": None, "logit_mse": None}
    return {"match": evidence.separated(evidence.seed_values(point, "learned"), evidence.seed_values(point, "shuffled")),
            "logit_mse": evidence.separated(evidence.seed_values(point, "shuffled", "logit_mse"),
                                            evidence.seed_values(point, "learned", "logit_mse"))}


def at_ceiling(point: NoisePoint) -> bool:
    """Whether top-1 match is at its ceiling at ``point``: its shuffled copy keeps at least :data:`MATCH_CEILING` of
    the predictions on every seed, so learned noise has (almost) nothing left to win on match."""
    return min(evidence.seed_values(point, "shuffled")) >= MATCH_CEILING


def _metric_word(separation: int | None, ceiling: bool = False) -> str:
    """One verdict cell of :func:`figure_2_rows`."""
    if separation is None:
        return "learning failed, no verdict"
    word = {1: "learned ahead", -1: "learned behind", 0: "not separable"}[separation]
    return f"{word} (at ceiling)" if ceiling and separation != 1 else word


def figure_2_rows(sweep: ApproximateResult) -> list[list[str]]:
    """Per ViT and lim, Fig. 2's two halves side by side: match (learned vs shuffled, % over seeds) and its verdict
    ("at ceiling" where :func:`at_ceiling`), logit MSE (learned vs shuffled) and its verdict."""
    rows = []
    for name, points in sweep["models"].items():
        for point in points:
            verdict = metric_separation(point)
            match = [plotting.format_range(evidence.seed_values(point, kind), collapse=False)
                     for kind in ("learned", "shuffled")]
            mse = [mse_range(evidence.seed_values(point, kind, "logit_mse")) for kind in ("learned", "shuffled")]
            rows.append([name, f"{point['lim']:g}", " vs ".join(match), _metric_word(verdict["match"], at_ceiling(point)),
                         " vs ".join(mse), _metric_word(verdict["logit_mse"])])
    return rows


def _lims(points: Sequence[NoisePoint]) -> str:
    """"0.5, 1, 2", or "none"."""
    return ", ".join(f"{point['lim']:g}" for point in points) or "none"


def figure_2_summary(sweep: ApproximateResult) -> list[list[str]]:
    """The answer first, one row per ViT: the lims where learned noise beats its shuffled copy on match and on logit
    MSE, where match is at its ceiling (:func:`at_ceiling`), and where learning failed (no verdict)."""
    rows = []
    for name, points in sweep["models"].items():
        verdicts = [(point, metric_separation(point)) for point in points]
        rows.append([name, _lims([point for point, verdict in verdicts if verdict["match"] == 1]),
                     _lims([point for point, verdict in verdicts if verdict["logit_mse"] == 1]),
                     _lims([point for point in points if at_ceiling(point)]),
                     _lims([point for point in points if point["learning_failed"]])])
    return rows


def failure_lines(sweep: ApproximateResult) -> list[str]:
    """Why each point of the sweep that failed to learn failed (:func:`~nullspace_utils.studies.evidence.learning_failures`), one line per point;
    empty when none did."""
    return [f"{name}, lim {point['lim']:g}: {'; '.join(evidence.learning_failures(point))}"
            for name, points in sweep["models"].items() for point in points if point["learning_failed"]]


def keep_norm_panel(sweep: ApproximateResult, name: str) -> dict[str, Any]:
    """One panel: ``name``'s learned noise and its shuffled copy, plain SGD against the norm held."""
    series = [_series(rows, kind, label, color)
              for label, rows, color in (("plain SGD", sweep["models"][name], plotting.PALETTE[0]),
                                         ("keep norm", sweep["keep_norm"][name], plotting.PALETTE[3]))
              for kind in ("learned", "shuffled")]
    return {"title": f"{name}: norm held", "xlabel": "lim (token units)", "ylabel": "predictions unchanged (%)",
            "logx": True, "xticks": [row["lim"] for row in sweep["models"][name]], "series": series}


def _norm_range(point: NoisePoint) -> str:
    """The learned noise's norm over seeds, "12-15" (both ends always)."""
    return plotting.format_range(evidence.seed_values(point, "final_norm", ""), scale=1, digits=0, collapse=False)


def verdict_rows(sweep: ApproximateResult) -> list[list[str]]:
    """Per ViT and lim: rate, noise norm (start -> learned range) and whether the noise learned by the book's rule
    (:func:`~nullspace_utils.studies.evidence.learning_failures`: "learned", or why not); the learned-vs-shuffled
    verdicts on both metrics are :func:`figure_2_rows`'."""
    rows = []
    for name, points in sweep["models"].items():
        for point in points:
            rows.append([name, f"{point['lim']:g}", f"{point['lr']:g}",
                         f"{point['seeds'][0]['initial_norm']:.0f} → {_norm_range(point)}",
                         "; ".join(evidence.learning_failures(point)) or "learned"])
    return rows


def _mse_clause(point: NoisePoint) -> str:
    """"logit MSE 0.0012-0.0016 vs 0.0038-0.0070: learned ahead": the other half of Fig. 2 for one point."""
    ranges = " vs ".join(mse_range(evidence.seed_values(point, kind, "logit_mse")) for kind in ("learned", "shuffled"))
    return f"logit MSE {ranges}: {_metric_word(metric_separation(point)['logit_mse'])}"


def loss_lines(sweep: ApproximateResult, name: str) -> list[str]:
    """``name``'s verdicts with the norm held, then the eq. 6 norm against the squared loss at the same lims, each on
    match (:func:`~nullspace_utils.studies.evidence.point_verdict`) and on logit MSE (learned vs shuffled)."""
    lines = [f"norm held, {evidence.point_verdict(point)}; {_mse_clause(point)}" for point in sweep["keep_norm"][name]]
    for squared in sweep["squared_loss"][name]:
        plain = next(point for point in sweep["models"][name] if point["lim"] == squared["lim"])
        for label, point in (("eq. 6 norm", plain), ("squared", squared)):
            lines.append(f"{label} loss, rate {point['lr']:g}, {evidence.point_verdict(point)}; {_mse_clause(point)}; "
                         f"learned norm {_norm_range(point)}")
    return lines


#: the MyST label of the chapter's section with Fig. 2, which the reproducibility page links to
CLAIM_FIGURE = "approximate-fig2"


def _example_point(sweep: ApproximateResult) -> tuple[str, NoisePoint]:
    """The point the §4 sentence quotes: the first where match is at its ceiling and logit MSE still separates
    (else the first point of the first ViT)."""
    for name, points in sweep["models"].items():
        for point in points:
            if at_ceiling(point) and metric_separation(point)["logit_mse"] == 1:
                return name, point
    name = next(iter(sweep["models"]))
    return name, sweep["models"][name][0]


def claims(sweep: ApproximateResult) -> list[evidence.Claim]:
    """Paper §4, Fig. 2 as the reproducibility page's row, every number formatted from ``sweep``: learned token noise
    against its shuffled copy on both halves of Fig. 2 (logit MSE at every point, match where it is not at its
    ceiling), the largest lims' match ranges, and the first ViT with its norm held. "reproduced" when no point
    failed to learn, logit MSE separates at every point and match at every ViT's largest lim; "partly" otherwise."""
    models = sweep["models"]
    points = [(name, point) for name, rows in models.items() for point in rows]
    verdicts = {(name, point["lim"]): metric_separation(point) for name, point in points}
    mse_ahead = sum(verdict["logit_mse"] == 1 for verdict in verdicts.values())
    failed = [(name, point) for name, point in points if point["learning_failed"]]
    seeds = sorted({len(point["seeds"]) for _, point in points})
    name, example = _example_point(sweep)
    match_lims = "; ".join(f"{model} lim {_lims([p for p in rows if verdicts[model, p['lim']]['match'] == 1])}"
                           for model, rows in models.items())
    largest = [rows[-1] for rows in models.values()]
    kept = {kind: " / ".join(plotting.format_range(evidence.seed_values(point, kind), collapse=False)
                             for point in largest) for kind in ("learned", "shuffled")}
    unseparated = [point for model, point in points if verdicts[model, point["lim"]]["match"] == 0]
    first = next(iter(models))
    held = sweep["keep_norm"].get(first, [])
    sentence = (f"on logit MSE the learned token noise beats its shuffled copy at {mse_ahead} of {len(points)} points "
                f"({'/'.join(map(str, seeds))} seeds each, ranges not overlapping; e.g. {name} at lim "
                f"{example['lim']:g}: {mse_range(evidence.seed_values(example, 'learned', 'logit_mse'))} vs "
                f"{mse_range(evidence.seed_values(example, 'shuffled', 'logit_mse'))}), on top-1 match only where "
                f"noise of that energy costs predictions ({match_lims}): at each ViT's largest lim it keeps "
                f"{kept['learned']} % of {' / '.join(models)}'s predictions against {kept['shuffled']} % for its "
                f"shuffled copy")
    if held:
        sentence += (f", and {plotting.format_range(evidence.seed_values(held[-1], 'learned'), collapse=False)} % "
                     f"against {plotting.format_range(evidence.seed_values(held[-1], 'shuffled'), collapse=False)} "
                     f"% with {first}'s norm held at lim {held[-1]['lim']:g}")
    if unseparated:
        floor = min(min(evidence.seed_values(point, "shuffled")) for point in unseparated)
        sentence += (f"; at the {len(unseparated)} other points match is at or near its ceiling (the shuffled copy "
                     f"keeps at least {100 * floor:.1f} % on every seed; {100 * MATCH_CEILING:.0f} % or more at "
                     f"{sum(at_ceiling(point) for point in unseparated)} of them) and cannot tell the two apart")
    sentence += (f"; {len(failed)} point{'s' if len(failed) != 1 else ''} failed to learn and give no verdict"
                 if failed else "; no point failed to learn")
    reproduced = (not failed and mse_ahead == len(points)
                  and all(verdicts[model, rows[-1]["lim"]]["match"] == 1 for model, rows in models.items()))
    return [evidence.Claim(
        claim="Noise can be learned beyond the patch embedding so that the output barely moves, and it beats its "
              "own shuffled values (§4, Fig. 2)",
        chapter="approximate", figure=CLAIM_FIGURE, verdict="reproduced" if reproduced else "partly",
        sentence=f"{sentence[0].upper()}{sentence[1:]} (teaching zoo; the imagenet profile is not run here).")]
