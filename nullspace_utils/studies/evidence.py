"""The statistics every verdict of the book uses, in one place: the values of a point's seeds, separation on seed
ranges, and the learning-failure rule.

A difference is read only where the seeds' ranges do not overlap (:func:`separated`); a point whose noise did
not learn (:func:`judge_learning`) gives no verdict about a model: it is an optimiser's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from nullspace_utils.plotting import format_range

__all__ = ["SEED_LOSS_RATIO", "MAX_LOSS_LEFT", "NEAR_MARGIN", "learning_failures", "near_failures", "judge_learning", "seed_values", "separated", "point_verdict",
           "compare_groups", "false_separation_rate", "VERDICTS", "Claim"]


#: a seed whose learned noise ends at more than this many times the best seed's training loss failed to learn
SEED_LOSS_RATIO = 2.0
#: a seed whose learned noise's training loss ends above this fraction of its start's has not learned at the
#: budget (it did not halve its loss); a seed within :data:`NEAR_MARGIN` below it passes only narrowly
#: (:func:`near_failures` names it, so that a verdict resting on it can say so)
MAX_LOSS_LEFT = 0.5
#: how close below :data:`MAX_LOSS_LEFT` (as a fraction of the start's loss) a seed's loss counts as a narrow pass
NEAR_MARGIN = 0.1


def _seed_failure(entry: Mapping[str, Any], best: float, keep_norm: bool) -> str | None:
    """Why one seed of a noise point failed to learn (see :func:`learning_failures`), or None."""
    loss = entry["train_loss"]
    if not loss["learned"] < loss["shuffled"]:
        return "no better than its shuffled copy"
    if loss["learned"] > SEED_LOSS_RATIO * best:
        return f"loss {loss['learned'] / best:.1f}x the best seed's"
    if loss["learned"] > MAX_LOSS_LEFT * loss["initial"]:
        return f"loss only fell to {100 * loss['learned'] / loss['initial']:.0f} % of its start"
    if not keep_norm and entry.get("final_norm", 0.0) > entry.get("initial_norm", float("inf")):
        return f"noise norm grew from {entry['initial_norm']:.0f} to {entry['final_norm']:.0f}"
    return None


def learning_failures(row: Mapping[str, Any]) -> list[str]:
    """Why a :func:`~nullspace_utils.studies.noise_sweep.noise_point` row's noise failed to learn, one reason per
    failing seed (and one for the rate), empty when it learned: the book's one learning-failure rule.

    A seed failed when its learned noise:

    - is no better than its own shuffled copy on the training loss (it learned nothing about the model);
    - ends at more than :data:`SEED_LOSS_RATIO` times the best seed's training loss (the rate, probed on the
      first seed, did not suit it);
    - ends above :data:`MAX_LOSS_LEFT` of its start's training loss (the loss did not halve: the run stopped
      far from a minimum);
    - has grown past its starting norm although its loss (eq. 6, no norm held) is smallest at zero noise (the
      optimiser diverged).

    The whole point failed too when its rate sat at an edge of the probe's grid. A failed point says how the
    optimiser did, not how the model behaves, and gives no verdict."""
    best = min(entry["train_loss"]["learned"] for entry in row["seeds"])
    reasons = []
    for index, entry in enumerate(row["seeds"]):
        reason = _seed_failure(entry, best, bool(row.get("keep_norm", False)))
        if reason:
            reasons.append(f"seed {entry.get('seed', index)}: {reason}")
    choice = row.get("lr_choice")
    if choice and choice["at_edge"]:
        reasons.append(f"rate {row['lr']:g} at the edge of its grid")
    return reasons


def near_failures(row: Mapping[str, Any]) -> list[float]:
    """The losses left (learned over start, per seed) of the seeds of a point that passed the learning-failure rule
    only narrowly: within :data:`NEAR_MARGIN` below :data:`MAX_LOSS_LEFT`. Empty for a point that failed (it is no
    evidence either way) or that learned clearly."""
    if row["learning_failed"]:
        return []
    left = [entry["train_loss"]["learned"] / entry["train_loss"]["initial"] for entry in row["seeds"]]
    return [value for value in left if MAX_LOSS_LEFT - NEAR_MARGIN < value <= MAX_LOSS_LEFT]


def judge_learning(row: Any) -> Any:
    """Set the "learning failed" flags of a :func:`~nullspace_utils.studies.noise_sweep.noise_point` row by the
    rule of :func:`learning_failures` (each seed's flag for its own reasons, the point's for any), and return it."""
    best = min(entry["train_loss"]["learned"] for entry in row["seeds"])
    for entry in row["seeds"]:
        entry["learning_failed"] = _seed_failure(entry, best, bool(row.get("keep_norm", False))) is not None
    row["learning_failed"] = bool(learning_failures(row))
    return row


def seed_values(row: Mapping[str, Any], kind: str, field: str = "match") -> list[float]:
    """``row[kind][field]`` of every seed of a :func:`~nullspace_utils.studies.noise_sweep.noise_point` row (``kind``: "learned", "shuffled", ...; or
    a per-seed number such as ``kind="final_norm", field=""``)."""
    return [entry[kind][field] if field else entry[kind] for entry in row["seeds"]]


def separated(first: Sequence[float], second: Sequence[float]) -> int:
    """+1 if every value of ``first`` is above every value of ``second``, -1 if below, 0 if the ranges overlap:
    the book's test that two sets of seeds tell a difference. With 3 seeds a side, two alike sets still separate
    2 times in 20 (10 %), so a difference should also be judged by its size."""
    if not first or not second:
        raise ValueError("separated needs at least one value on each side.")
    if min(first) > max(second):
        return 1
    if max(first) < min(second):
        return -1
    return 0


def false_separation_rate(first: int, second: int) -> float:
    """How often :func:`separated` reads a difference between two sets of ``first`` and ``second`` values drawn
    from one and the same continuous distribution (no real difference): every ordering of the pooled values is
    equally likely, and 2 of the C(first + second, first) splits put one set wholly above the other:
    ``2 / C(first + second, first)``. Three seeds a side: 10 %; nine (three models x three seeds) a side: 0.004 %.

    >>> round(false_separation_rate(3, 3), 3), round(false_separation_rate(1, 3), 3)
    (0.1, 0.5)
    """
    import math

    if first < 1 or second < 1:
        raise ValueError(f"false_separation_rate needs at least one value a side, got {first} and {second}.")
    return 2 / math.comb(first + second, first)


def point_verdict(row: Mapping[str, Any], first: str = "learned", second: str = "shuffled") -> str:
    """One sentence comparing two noises of a :func:`~nullspace_utils.studies.noise_sweep.noise_point` row on the share of predictions kept, with the
    ranges over seeds it rests on: "ahead" / "behind" only where the ranges do not overlap (:func:`separated`),
    "not separable" otherwise, and "learning failed" (no verdict) for a point that failed to learn."""
    low_first, low_second = seed_values(row, first), seed_values(row, second)
    ranges = (f"{first} {format_range(low_first, collapse=False)} %, "
              f"{second} {format_range(low_second, collapse=False)} %")
    if row["learning_failed"] and "learned" in (first, second):
        return f"lim {row['lim']:g}: learning failed, no verdict ({ranges})"
    outcome = {1: f"{first} keeps more", -1: f"{first} keeps less", 0: "not separable at this budget"}[
        separated(low_first, low_second)]
    return f"lim {row['lim']:g}: {outcome} ({ranges}; {len(row['seeds'])} seeds)"


def compare_groups(first: Sequence[float], second: Sequence[float]) -> dict:
    """Two methods' per-seed scores, paired by seed (the methods of one seed see the same batches), or one group
    against a single reference model (one score, e.g. the untuned model): the mean and sample standard deviation
    of the paired differences, ``separated`` (+1, -1 or 0) from :func:`separated` (a difference is read only where
    the seeds' ranges do not overlap), and ``weak`` when the mean difference is under twice its standard
    deviation; ``first`` and ``second`` as given. With three seeds on each side, two alike methods' ranges still
    separate 10 % of the time; against a single reference score, half the time: a separated but weak difference
    is the kind chance makes."""
    import numpy as np

    if not first or not second or (len(first) != len(second) and 1 not in (len(first), len(second))):
        raise ValueError(f"compare_groups pairs seeds: give equally many scores (or one score on a side, a single "
                         f"reference model such as the untuned one), got {len(first)} and {len(second)}.")
    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)  # one score on a side: broadcast
    spread = float(differences.std(ddof=1)) if len(differences) > 1 else 0.0
    weak = bool(abs(differences.mean()) < 2 * spread)
    return {"difference": float(differences.mean()), "spread": spread, "weak": weak,
            "separated": separated(list(first), list(second)), "first": list(first), "second": list(second)}


# --------------------------------------------------------------------------- claims
#: the one-word verdicts of the reproducibility page, and what each means
VERDICTS: dict[str, str] = {
    "reproduced": "the committed data show the paper's effect, with the seeds separated where seeds exist",
    "partly": "the data show part of the claim; the sentence says which part does not hold or cannot be told",
    "not reproduced": "the data, at the book's budget, do not show the effect",
    "not explained": "the book cannot account for the paper's number, and says what it tried",
    "beyond the paper": "a claim the paper does not test (or only states), measured by the book",
}


@dataclass(frozen=True)
class Claim:
    """One row of the reproducibility page: the paper's ``claim`` (in our words, with its section), the ``chapter``
    that tests it, the MyST label (``figure``) of the figure or table in that chapter that shows it, a one-word
    ``verdict`` (a key of :data:`VERDICTS`) and one ``sentence`` whose numbers are formatted from a result file."""

    claim: str
    chapter: str
    figure: str
    verdict: str
    sentence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Claim verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}: use one of them "
                             "and say the rest in the sentence.")
        for name in ("claim", "sentence"):
            if "\n" in getattr(self, name):
                raise ValueError(f"Claim {name} spans lines; a table cell is one line: join it.")

    def markdown_row(self) -> str:
        """The row as a Markdown pipe-table line (pipes inside the text escaped, so no cell is cut short)."""
        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        return (f"| {cell(self.claim)} | {{doc}}`{self.chapter}` | **{self.verdict}**: {cell(self.sentence)} "
                f"({{ref}}`figure <{self.figure}>`) |")
