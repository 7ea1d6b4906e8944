"""What every study's runner shares: how it was asked to run (:class:`Run`), its settings as JSON, the error a
runner raises for a request it cannot honour, and the joining of a sweep's parallel parts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from nullspace_utils import results

__all__ = ["Run", "StudyError", "RUNNER_FIX", "settings_dict", "chosen_models", "join_parts", "json_arguments"]


#: what a runner's result that does not fit its schema says: a bug (the runner and the schema disagree), not a file
RUNNER_FIX = "Nothing was written: the runner's result and its study's schema disagree; make them agree."


class StudyError(ValueError):
    """A request a runner cannot honour (a model the sweep does not have, parts that do not fit together); the
    command line shows it as a usage error."""


@dataclass(frozen=True)
class Run:
    """How a runner was asked to run: the ``device`` it computes on, the file ``out`` it writes (its rows so far
    too, so a run cut short keeps them; ``None``: nowhere), and the ``command`` line and its ``arguments`` that
    asked for it, recorded in the result's provenance."""

    device: str = "cpu"
    out: Path | None = None
    command: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> results.Provenance:
        """The result's provenance (:func:`~nullspace_utils.results.provenance`). Call it after rendering images:
        on a GPU, asking the device's name initialises CUDA, which forked rendering workers must not inherit."""
        return results.provenance(self.command, self.arguments, device=self.device)

    def save_partial(self, result: dict[str, Any]) -> None:
        """Write ``result``'s rows so far to ``out`` (unchecked; the run's last write is checked)."""
        if self.out is not None:
            results.write_partial(self.out, result)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as the JSON object a result file stores (tuples become lists, nested settings
    objects)."""
    return json.loads(json.dumps(asdict(settings)))


def chosen_models(requested: Sequence[str] | None, names: Sequence[str]) -> tuple[str, ...]:
    """The models of ``names`` that ``requested`` asks for (all of them when ``None``), in ``names``' order;
    unknown names raise :class:`StudyError`."""
    if not requested:
        return tuple(names)
    unknown = sorted(set(requested) - set(names))
    if unknown:
        raise StudyError(f"--models: {', '.join(unknown)} not among this sweep's models {', '.join(names)}.")
    return tuple(name for name in names if name in requested)


def join_parts(parts: Sequence[dict[str, Any]], tables: Sequence[str], order: Sequence[str], run: Run, *,
               lim_rows: bool = False) -> dict[str, Any]:
    """One result from the parts of a sweep run in parallel (same settings and profile, each model in one part):
    the first part's other keys, each of ``tables`` joined in ``order``, a new provenance, and the parts'
    provenances under ``parts``.

    ``lim_rows``: the tables hold a list of rows per model, one per lim (a learned-noise sweep), and a model's lims
    may be split over several parts (``--lims``): its rows are joined in the order of their lims. A lim in two
    parts is refused, and so is a model whose rows in the first table lack a lim the config lists (``lims``)."""
    first = parts[0]
    if any(part["config"] != first["config"] or part["profile"] != first["profile"] for part in parts):
        raise StudyError("merge: the parts were run with different configs or profiles; run them again alike.")
    out = {key: value for key, value in first.items() if key != "provenance"}
    out["provenance"] = run.provenance()
    out["parts"] = [part["provenance"] for part in parts]
    for index, table in enumerate(tables):
        joined: dict[str, Any] = {}
        for part in parts:
            for name, rows in part[table].items():
                if name in joined and not lim_rows:
                    raise StudyError(f"merge: {name} is in two parts' {table!r}; give each model to one part.")
                if lim_rows:
                    twice = sorted({row["lim"] for row in joined.get(name, [])} & {row["lim"] for row in rows})
                    if twice:
                        raise StudyError(f"merge: {name} has {_lims(twice)} in two parts' {table!r}; give each of a "
                                         "model's lims to one part.")
                    rows = sorted([*joined.get(name, []), *rows], key=lambda row: row["lim"])
                joined[name] = rows
        if lim_rows and index == 0:  # the sweep's own table holds every listed lim of each of its models
            for name, rows in joined.items():
                missing = sorted(set(first["config"]["lims"]) - {row["lim"] for row in rows})
                if missing:
                    raise StudyError(f"merge: no part has {name}'s {_lims(missing)}; run the part that holds it "
                                     "(--lims) and merge again.")
        out[table] = {name: joined[name] for name in order if name in joined}
    return out


def _lims(lims: Sequence[float]) -> str:
    """``lim 0.1`` or ``lims 0.1, 0.2``, for a message."""
    return ("lim " if len(lims) == 1 else "lims ") + ", ".join(f"{lim:g}" for lim in lims)


def json_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Command-line arguments as JSON for a provenance (paths become strings)."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list) and value and isinstance(value[0], Path):
            return [str(item) for item in value]
        return value

    return {key: plain(value) for key, value in arguments.items()}
