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


def join_parts(parts: Sequence[dict[str, Any]], tables: Sequence[str], order: Sequence[str],
               run: Run) -> dict[str, Any]:
    """One result from the parts of a sweep run in parallel (same settings and profile, each model in one part):
    the first part's other keys, each of ``tables`` joined in ``order``, a new provenance, and the parts'
    provenances under ``parts``."""
    first = parts[0]
    if any(part["config"] != first["config"] or part["profile"] != first["profile"] for part in parts):
        raise StudyError("merge: the parts were run with different configs or profiles; run them again alike.")
    out = {key: value for key, value in first.items() if key != "provenance"}
    out["provenance"] = run.provenance()
    out["parts"] = [part["provenance"] for part in parts]
    for table in tables:
        joined: dict[str, Any] = {}
        for part in parts:
            for name, rows in part[table].items():
                if name in joined:
                    raise StudyError(f"merge: {name} is in two parts' {table!r}; give each model to one part.")
                joined[name] = rows
        out[table] = {name: joined[name] for name in order if name in joined}
    return out


def json_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Command-line arguments as JSON for a provenance (paths become strings)."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list) and value and isinstance(value[0], Path):
            return [str(item) for item in value]
        return value

    return {key: plain(value) for key, value in arguments.items()}
