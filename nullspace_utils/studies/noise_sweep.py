"""The learned-noise sweep the approximate (§4, Fig. 2) and robustness (§5, Fig. 3) studies share: a multi-seed point
with its baselines (:func:`noise_point`), the lims extended until every model is stressed (:func:`lim_sweep`), the
settings of a sweep (:class:`SweepSettings`) and its cheap check point (:class:`CheckPoint`), and the rows' schemas.

The recipe is the authors' follow-up code's (Liu-Hy/NS-ViT): eq. 6's L2 norm, SGD, rate x0.1 at 30/60/80 % of the
run. Departures, each stated in the chapters: a budget in *steps* (theirs is 500 epochs of ImageNette), the rate
chosen per model, level and lim by a probe on training images (``lr_grid``, widened until the choice is
interior), and input-level lims in [0, 1] pixel units.
"""

# No ``from __future__ import annotations`` above the schemas: pydantic reads their NotRequired keys at run time.
import dataclasses
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence, cast

import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset
from typing_extensions import NotRequired, TypedDict

from nullspace_utils import approximate, models
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import Profile
from nullspace_utils.results import Fraction
from nullspace_utils.studies import evidence
from nullspace_utils.studies.common import StudyError

__all__ = ["LOSS", "PointSettings", "SweepSettings", "CheckPoint", "Work", "NO_WORK", "point_work", "noise_point", "chosen_lims", "lim_sweep", "point_settings", "check_point",
           "sweep_datasets", "NoisePoint", "NoiseSeedRow", "NoiseEvaluationRow", "TrainLossRow", "LrChoiceRow",
           "SweepConfig", "SweepCheck"]

logger = logging.getLogger(__name__)

#: the loss every sweep point minimises, as the result files state it
LOSS = "eq. 6: L2 norm of the logit difference over the classes, mean over the batch"


# --------------------------------------------------------------------------- the rows' schemas
class NoiseEvaluationRow(TypedDict):
    """``approximate.NoiseEvaluation`` as JSON."""

    match: Fraction
    logit_mse: float
    prob_change: Fraction
    noise_norm: float
    clean_norm: float


class TrainLossRow(TypedDict):
    """Eq. 6's loss on the point's training images: the start, the learned noise and its shuffled copy."""

    initial: float
    learned: float
    shuffled: float


class NoiseSeedRow(TypedDict):
    """One seed of a :func:`noise_point` row; the exact-nullspace baselines
    (``projected``, ``projected_norm_kept``, ``null_share``, ``row_removed``) are there for ViTs at the input only."""

    seed: int
    initial_norm: float
    final_norm: float
    train_loss: TrainLossRow
    learning_failed: bool
    learned: NoiseEvaluationRow
    shuffled: NoiseEvaluationRow
    uniform: NoiseEvaluationRow
    projected: NotRequired[NoiseEvaluationRow]
    projected_norm_kept: NotRequired[float]
    null_share: NotRequired[Fraction]
    row_removed: NotRequired[NoiseEvaluationRow]


class LrChoiceRow(TypedDict):
    """``approximate.LrChoice``: the rates probed, their scores (keys ``str(lr)``) and whether the winner sat at
    an edge of the grid."""

    lr: float
    grid: list[float]
    scores: dict[str, float]
    at_edge: bool


class NoisePoint(TypedDict):
    """A :func:`noise_point` row: one level and lim, every seed, and whether learning failed anywhere."""

    level: str
    lim: float
    rms: float
    keep_norm: bool
    loss: str
    p: float
    lr: float
    lr_choice: LrChoiceRow | None
    learning_failed: bool
    seeds: list[NoiseSeedRow]


class SweepConfig(TypedDict):
    """:class:`SweepSettings` of the approximate or robustness study (``steps`` and ``milestones`` as
    run); ``squared_lims`` for the approximate sweep, ``transfer_lims`` for the robustness sweep."""

    lims: list[float]
    extend_until: float
    extend_factor: float
    max_extensions: int
    seeds: list[int]
    steps: int
    milestones: list[int]
    batch_size: int
    probe_steps: int
    lr_grid: list[float]
    train: int
    val: int
    squared_lims: NotRequired[list[float]]
    transfer_lims: NotRequired[list[float]]


class SweepCheck(TypedDict):
    """:class:`CheckPoint` of the approximate or robustness study, and its point, which a test recomputes."""

    lim: float
    seeds: list[int]
    steps: int
    milestones: list[int]
    lr: float
    batch_size: int
    train: int
    val: int
    model_index: NotRequired[int]
    cnn_index: NotRequired[int]
    level: NotRequired[str]
    result: NoisePoint


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class PointSettings:
    """How one point is learned: from ``seeds`` (start and batch order), ``steps`` SGD steps of ``batch_size``
    images, the rate x0.1 at ``milestones``, the rate chosen by a ``probe_steps`` probe over ``lr_grid``; ``train``
    / ``val`` images."""

    seeds: tuple[int, ...]
    steps: int
    milestones: tuple[int, ...]
    batch_size: int
    probe_steps: int
    lr_grid: tuple[float, ...]
    train: int
    val: int


@dataclass(frozen=True)
class SweepSettings(PointSettings):
    """A learned-noise sweep of one profile: its points learned as :class:`PointSettings` says, at ``lims`` that grow
    by ``extend_factor`` past the listed ones until Uniform(-lim, lim) keeps under ``extend_until`` of a model's
    predictions (at most ``max_extensions`` times), so that every model is stressed."""

    lims: tuple[float, ...]
    extend_until: float
    extend_factor: float
    max_extensions: int

    def adds_lims(self, part_lims: Sequence[float]) -> bool:
        """Whether the part of the sweep that learns ``part_lims`` (:func:`chosen_lims`) also learns the lims the
        sweep adds past its listed ones: the part that holds the last listed lim, since the extensions follow it."""
        return self.lims[-1] in part_lims

    def point(self) -> PointSettings:
        """How each point of this sweep is learned (e.g. the fine-tuning study's match yardstick)."""
        return PointSettings(**{field.name: getattr(self, field.name) for field in dataclasses.fields(PointSettings)})

    def with_steps(self, steps: int | None):  # -> the same class
        """These settings with ``steps`` SGD steps (``None``: unchanged): the rate decays stay at the same fractions
        of the run, and the probe is no longer than the run itself."""
        if not steps:
            return self
        return dataclasses.replace(self, steps=steps, probe_steps=min(self.probe_steps, steps),
                                   milestones=tuple(round(m * steps / self.steps) for m in self.milestones))


@dataclass(frozen=True)
class CheckPoint:
    """A sweep's cheap point that a test recomputes on the CPU from the committed file: ``lim``, a fixed rate ``lr``
    (no probe, so that CPU and GPU cannot choose differently), few ``steps`` and images."""

    lim: float
    seeds: tuple[int, ...]
    steps: int
    milestones: tuple[int, ...]
    lr: float
    batch_size: int
    train: int
    val: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "CheckPoint":
        """The check point a result file stores (its other keys, such as ``result``, are left out)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = record[field.name]
            values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


# --------------------------------------------------------------------------- one point
def _evaluation(model: nn.Module, val, noise: torch.Tensor, *, level: str, shuffle: bool = False, seed: int = 0,
                batch_size: int, device: str | torch.device | None, clean: approximate.CleanPass) -> dict:
    return asdict(approximate.evaluate_noise(model, val, noise, level=level, shuffle=shuffle, seed=seed,
                                             batch_size=batch_size, device=device, clean=clean))


def noise_point(model: nn.Module, train: Dataset, val: Dataset, *, level: str, lim: float, seeds: Sequence[int] = (0, 1, 2),
                steps: int, milestones: tuple[int, ...], batch_size: int, lr: float | str = "auto", p: float = 2,
                squared: bool = False, keep_norm: bool = False, probe_steps: int = 50,
                lr_grid: Sequence[float] = approximate.LR_GRID, train_images: int = 512, noises: dict[int, torch.Tensor] | None = None,
                device: str | torch.device | None = None, show_progress: bool = False) -> NoisePoint:
    """One point of the paper's Fig. 2 (encoder) or Fig. 3 (input) as a JSON-ready row, with its baselines.

    The rate is chosen once per point (``lr="auto"``: :func:`~nullspace_utils.approximate.choose_lr` on ``train`` with the first seed), then
    a noise is learned per seed (seed = the Uniform(-lim, lim) start and the batch order; on a GPU the seeds share
    forward passes, :func:`~nullspace_utils.approximate.learn_noises`). Per seed the row keeps:
    the norms; the training loss (eq. 6 on ``train_images`` training images) of the start, the learned noise and
    its shuffled copy, and ``learning_failed`` as :func:`~nullspace_utils.studies.evidence.judge_learning` decides from those losses; and
    the validation evaluations (:class:`~nullspace_utils.approximate.NoiseEvaluation`) of the learned noise, its shuffled copy and the
    Uniform(-lim, lim) start it came from. For a ViT at the input it adds the exact-nullspace baselines: the start
    projected onto null(W_pix) (``projected``: keeps every prediction by construction, with
    ``projected_norm_kept`` of its norm), and the learned noise's null(W_pix) share of norm with its evaluation
    once its row-space part is removed (``row_removed``). The row also says if the rate sat at the edge of its grid.
    ``noises``, if given, receives each seed's learned noise (on the CPU), e.g. for the robustness study's
    transfer tables.
    """
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed.")
    lr, lr_choice = approximate.resolve_lr(lr, model, train, level=level, lim=lim, p=p, squared=squared, grid=lr_grid,
                                steps=probe_steps, batch_size=batch_size, seed=seeds[0], device=device,
                                show_progress=show_progress)
    vit_input = level == "input" and hasattr(models.unwrap(model), "patch_embed")
    common: dict[str, Any] = {"batch_size": batch_size, "device": device}
    # the clean logits once per point: each of its 9-15 evaluations and 9 losses then costs one forward per batch
    clean_val = approximate.clean_pass(model, val, level=level, **common)
    clean_train = approximate.clean_pass(model, train, level=level, images=train_images, **common)
    loss_settings: dict[str, Any] = {"level": level, "p": p, "squared": squared, "images": train_images,
                                     "clean": clean_train, **common}
    evaluation: dict[str, Any] = {"level": level, "clean": clean_val, **common}
    per_seed = []
    learned = approximate.learn_noises(model, train, level=level, lim=lim, seeds=seeds, p=p, squared=squared,
                                       steps=steps, lr=lr, milestones=milestones, keep_norm=keep_norm,
                                       show_progress=show_progress, **common)  # on a GPU, in shared passes
    for seed, result in zip(seeds, learned, strict=True):
        if noises is not None:
            noises[seed] = result.noise
        start = approximate.uniform_noise(tuple(result.noise.shape), lim, seed)
        shuffled = approximate.shuffle_noise(result.noise, seed)
        losses = {name: approximate.training_loss(model, train, noise, **loss_settings)
                  for name, noise in (("initial", start), ("learned", result.noise), ("shuffled", shuffled))}
        entry: dict = {"seed": seed, "initial_norm": result.initial_norm, "final_norm": result.norm,
                       "train_loss": losses, "learning_failed": False,  # judged below, over all seeds
                       "learned": _evaluation(model, val, result.noise, **evaluation),
                       "shuffled": _evaluation(model, val, result.noise, shuffle=True, seed=seed, **evaluation),
                       "uniform": _evaluation(model, val, start, **evaluation)}
        if vit_input:
            projected, _ = approximate.split_noise(model, start)
            null_part, _ = approximate.split_noise(model, result.noise)
            entry["projected"] = _evaluation(model, val, projected, **evaluation)
            entry["projected_norm_kept"] = projected.norm().item() / start.norm().item()
            entry["null_share"] = null_part.norm().item() / max(result.norm, 1e-30)
            entry["row_removed"] = _evaluation(model, val, null_part, **evaluation)
        per_seed.append(entry)
    row = {"level": level, "lim": lim, "rms": lim / math.sqrt(3), "keep_norm": keep_norm,
           "loss": "squared" if squared else "norm", "p": p, "lr": lr,
           "lr_choice": None if lr_choice is None else asdict(lr_choice), "learning_failed": False, "seeds": per_seed}
    evidence.judge_learning(row)  # over all seeds: a seed far behind the best one failed too
    for entry in per_seed:
        logger.info("%s %s lim %g seed %d lr %g: match %.3f, shuffled %.3f, uniform %.3f, norm %.3g -> %.3g%s",
                    getattr(model, "name", ""), level, lim, entry["seed"], lr, entry["learned"]["match"],
                    entry["shuffled"]["match"], entry["uniform"]["match"], entry["initial_norm"], entry["final_norm"],
                    ", LEARNING FAILED" if entry["learning_failed"] else "")
    return cast(NoisePoint, row)


# --------------------------------------------------------------------------- what a point costs
@dataclass(frozen=True)
class Work:
    """What a run computes, counted (for the plan's estimate, :func:`nullspace_utils.plan.estimate_plan`):
    ``learn_steps`` SGD steps of :func:`~nullspace_utils.approximate.learn_noise`, ``forward_batches`` float32
    forward passes of one batch (the clean passes, :func:`~nullspace_utils.approximate.clean_pass`, and the noisy
    ones of :func:`~nullspace_utils.approximate.evaluate_noise` and ``training_loss``) and ``clean_batches``, the
    batches of the training images' clean logits that a learning call computes once where it does
    (:func:`~nullspace_utils.approximate.clean_logits_once`: on CUDA), per (model, level, batch size): each is timed
    at its own batch size."""

    learn_steps: dict[tuple[str, str, int], int]
    forward_batches: dict[tuple[str, str, int], int]
    clean_batches: dict[tuple[str, str, int], int] = dataclasses.field(default_factory=dict)

    def __add__(self, other: "Work") -> "Work":
        def joined(first: dict, second: dict) -> dict:
            return {key: first.get(key, 0) + second.get(key, 0) for key in {**first, **second}}

        return Work(joined(self.learn_steps, other.learn_steps), joined(self.forward_batches, other.forward_batches),
                    joined(self.clean_batches, other.clean_batches))

    def times(self, count: int) -> "Work":
        return Work(*({key: count * value for key, value in counted.items()}
                      for counted in (self.learn_steps, self.forward_batches, self.clean_batches)))


NO_WORK = Work({}, {})


def point_work(settings: PointSettings, model: str, level: str, *, vit_input: bool, chosen_lr: bool = True,
               train_images: int = 512) -> Work:
    """What :func:`noise_point` computes for one point with ``settings``: the rate probe when ``chosen_lr`` (the
    starting grid and its two refinements, assuming the grid is not widened), the clean passes over the
    validation images and the first ``train_images`` training images, then per seed the learning and the noisy
    passes of three training losses and of the validation evaluations (three, five for a ViT at the input); and
    where the clean logits of the training images are computed once per learning call, those passes (the probe's
    two rounds and the learning: three)."""
    probe = (len(settings.lr_grid) + 2) * settings.probe_steps if chosen_lr else 0
    val_batches = math.ceil(settings.val / settings.batch_size)
    loss_batches = math.ceil(min(train_images, settings.train) / settings.batch_size)
    per_seed = (5 if vit_input else 3) * val_batches + 3 * loss_batches
    key = (model, level, settings.batch_size)
    learning_calls = 3 if chosen_lr else 1
    return Work({key: probe + len(settings.seeds) * settings.steps},
                {key: val_batches + loss_batches + len(settings.seeds) * per_seed},
                {key: learning_calls * math.ceil(settings.train / settings.batch_size)})


# --------------------------------------------------------------------------- a sweep
def point_settings(settings: PointSettings, device: str) -> dict[str, Any]:
    """The keyword arguments of :func:`noise_point` that a sweep's (or any point's) settings fix."""
    return {"seeds": tuple(settings.seeds), "steps": settings.steps, "milestones": tuple(settings.milestones),
            "batch_size": settings.batch_size, "probe_steps": settings.probe_steps,
            "lr_grid": tuple(settings.lr_grid), "device": device}


def chosen_lims(requested: Sequence[float] | None, settings: SweepSettings) -> tuple[float, ...]:
    """The listed lims of ``settings`` that ``requested`` asks for (all of them when ``None``), in the listed order:
    one part of a sweep split by lims (``--lims``). A lim the settings do not list raises
    :class:`~nullspace_utils.studies.common.StudyError`."""
    if not requested:
        return tuple(settings.lims)
    unknown = sorted(set(requested) - set(settings.lims))
    if unknown:
        raise StudyError(f"--lims: {', '.join(f'{lim:g}' for lim in unknown)} not among this sweep's lims "
                         f"{', '.join(f'{lim:g}' for lim in settings.lims)} (the lims it adds past them are learned "
                         "by the part that holds the last listed one).")
    return tuple(lim for lim in settings.lims if lim in requested)


def lim_sweep(point: Callable[..., NoisePoint], settings: SweepSettings, on_row: Callable[[], None],
              rows: list[NoisePoint], lims: Sequence[float] | None = None) -> list[NoisePoint]:
    """Rows of ``point(lim=...)`` over ``settings.lims``, extended by ``extend_factor`` while the uniform noise of the
    last lim still keeps at least ``extend_until`` of the predictions (mean over seeds); ``on_row`` after each.

    ``lims``: only these listed lims (:func:`chosen_lims`; one part of a sweep split by lims). Each point depends on
    its lim and seeds alone, so the parts' rows are the whole sweep's; the extensions follow the last listed lim and
    are learned by the part that holds it."""
    def add(lim: float) -> None:
        rows.append(point(lim=lim))
        on_row()

    chosen = chosen_lims(lims, settings)
    for lim in chosen:
        add(lim)
    if not settings.adds_lims(chosen):
        return rows
    for _ in range(settings.max_extensions):
        uniform = evidence.seed_values(rows[-1], "uniform")
        if sum(uniform) / len(uniform) < settings.extend_until:
            break
        add(float(f"{rows[-1]['lim'] * settings.extend_factor:.6g}"))
    return rows


def check_point(model: nn.Module, train: Dataset, val: Dataset, check: CheckPoint, level: str,
                device: str) -> NoisePoint:
    """A sweep's cheap check point (fixed rate), which a test recomputes on the CPU."""
    return noise_point(model, train, val, level=level, lim=check.lim, seeds=check.seeds, steps=check.steps,
                       milestones=check.milestones, lr=check.lr, batch_size=check.batch_size,
                       train_images=check.train, device=device)


def sweep_datasets(profile: Profile, settings: SweepSettings, check: CheckPoint, device: str
                   ) -> tuple[Dataset, Dataset, Dataset, Dataset]:
    """The four datasets of a sweep: train and val (on ``device``) and the check point's small ones (CPU).

    Images are rendered on the CPU (forked workers) before anything initialises CUDA, then moved to ``device``."""
    return (profile.tensor_dataset("train", settings.train, device),
            profile.tensor_dataset("val", settings.val, device),
            TensorDataset(*stack_dataset(profile.dataset("train", n=check.train))),
            TensorDataset(*stack_dataset(profile.dataset("val", n=check.val))))
