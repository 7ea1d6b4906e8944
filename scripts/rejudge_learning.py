"""Re-derive the "learning failed" flags of every committed noise point from its stored measurements, by the
book's one learning-failure rule (:func:`nullspace_utils.studies.evidence.judge_learning`):

    python scripts/rejudge_learning.py            # rewrite the files whose flags differ
    python scripts/rejudge_learning.py --check    # exit 1 if any committed flag differs from the rule

Only the flags change; every measurement is the run's. A rewritten file says so in ``provenance.judged_by``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any, Iterator

from nullspace_utils import results
from nullspace_utils.studies import approximate, evidence, finetune, robustness

#: the committed result files that hold noise points, and where their points are
FILES = {"approximate": approximate.RESULT, "robustness": robustness.RESULT, "finetune": finetune.RESULT}


def noise_points(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every :func:`~nullspace_utils.studies.noise_sweep.noise_point` row of a result file, the check point's too."""
    for table in ("models", "keep_norm", "squared_loss", "input"):
        for rows in result.get(table, {}).values():
            yield from rows
    for run in result.get("runs", {}).values():
        yield from run.get("match") or []
    check = result.get("check", {})
    if isinstance(check.get("result"), dict) and "seeds" in check["result"]:
        yield check["result"]


def rejudge(result: dict[str, Any]) -> int:
    """Apply the rule to every point of ``result`` in place; the number of points whose flags changed."""
    changed = 0
    for point in noise_points(result):
        before = (point["learning_failed"], [entry["learning_failed"] for entry in point["seeds"]])
        evidence.judge_learning(point)
        changed += before != (point["learning_failed"], [entry["learning_failed"] for entry in point["seeds"]])
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if a flag differs from the rule")
    parser.add_argument("--profile", default="teaching")
    arguments = parser.parse_args(argv)
    differs = False
    for name, kind in FILES.items():
        path = kind.path(arguments.profile)
        if not (results.REPOSITORY_ROOT / path).is_file():
            continue
        result = kind.read(path)
        changed = rejudge(result)
        print(f"{name}: {changed} point(s) judged differently by the rule")
        if changed and not arguments.check:
            result["provenance"]["judged_by"] = (
                "learning_failed re-derived from the stored losses and norms by "
                f"nullspace_utils.studies.evidence.judge_learning on {datetime.date.today()} (scripts/rejudge_learning.py)")
            kind.write(results.REPOSITORY_ROOT / path, result)
        differs |= bool(changed)
    return 1 if differs and arguments.check else 0


if __name__ == "__main__":
    sys.exit(main())
