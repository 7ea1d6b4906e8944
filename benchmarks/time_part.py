"""Run one part of a profile's plan (``experiments all``) alone, as the plan would start it, and record how long it
took, or, when it did not finish within ``--limit`` seconds, that it takes at least that long. The record goes into
``--out`` (``benchmarks/results/<profile>_parts_cpu.json`` for a CPU part, ``<profile>_parts_gpu.json`` on a GPU
machine), next to the other parts' records; ``benchmarks/plan_timing.py`` reads both files (issue #33).

    NULLSPACE_WEIGHTS=random NULLSPACE_DATA=/tmp/fake python benchmarks/time_part.py fingerprint --profile imagenet \\
        --limit 900 --out benchmarks/results/imagenet_parts_cpu.json

Only a part that needs no other part first can run alone (merges and passes after a sweep cannot). Its files go
to a temporary work folder (``--work`` to keep them). A part cut at the limit is stopped as an interrupted plan
would (SIGTERM to its processes), and its record says ``"finished": false``: its ``seconds`` are a lower bound,
for the cores it had (``"cores"``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from watermark import cpu_name  # benchmarks/watermark.py: this script's folder is on the path (tests put it there)

from nullspace_utils import plan, results
from nullspace_utils.files import atomic_write
from nullspace_utils.profiles import PROFILE_NAMES, get_profile


def find_part(profile_name: str, name: str) -> plan.Part:
    """The part ``name`` of the profile's plan, refused with the names to choose from when unknown or when it needs
    other parts first."""
    parts = {part.name: part for part in plan.study_plan(get_profile(profile_name))}
    if name not in parts:
        raise SystemExit(f"time_part: no part {name!r} in the {profile_name} plan; its parts: {', '.join(parts)}")
    if parts[name].needs:
        raise SystemExit(f"time_part: {name} needs {', '.join(parts[name].needs)} first, so it cannot run alone: "
                         "time it inside `experiments all` (its manifest, plan.json, records each part's seconds).")
    return parts[name]


def run_part(part: plan.Part, *, device: str, work: Path, limit: float, grace: float = 60.0) -> dict[str, Any]:
    """Start ``part`` on ``device`` as the plan would (:func:`nullspace_utils.plan.start_part`, ``work`` as its work
    folder) and wait at most ``limit`` seconds; then stop it as an interrupted plan does (SIGTERM to its process
    group), and ``grace`` seconds later with SIGKILL. Its record: finished, seconds (the limit when cut: a lower bound), the limit,
    the exit status and the log's last lines. A part that fails, or ends without writing the files it publishes,
    is refused (``SystemExit``): its time says nothing."""
    (work / "parts").mkdir(parents=True, exist_ok=True)
    log = work / "time_part.log"
    cut = False
    started = time.perf_counter()
    with open(log, "w") as handle:
        process = plan.start_part(part, device, work, handle, devices=[device], workers=plan.cpu_workers([device]))
        try:
            status = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            cut = True
            os.killpg(process.pid, signal.SIGTERM)
            try:
                status = process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                status = process.wait()
    seconds = time.perf_counter() - started
    tail = log.read_text().splitlines()[-5:]
    missing = [name for name in part.publishes if not (work / name).is_file()]
    if not cut and (status != 0 or missing):  # its time says nothing about the part's
        problem = f"exit status {status}" if status != 0 else f"no {', '.join(missing)} written"
        raise SystemExit(f"time_part: {part.name} failed after {seconds:.0f} s ({problem}); nothing recorded. "
                         f"Its log, {log}, ends:\n" + "\n".join(tail))
    return {"finished": not cut, "seconds": float(limit) if cut else seconds, "limit_seconds": float(limit),
            "returncode": status, "log_tail": tail}


def record(out: Path, name: str, row: dict[str, Any]) -> dict[str, Any]:
    """``out`` with ``row`` as part ``name``'s record (the other parts' records kept), written atomically."""
    table = json.loads(out.read_text()) if out.is_file() else {}
    table.setdefault("what", "parts of the plan run alone by benchmarks/time_part.py (the weights and data each used: "
                             "its invocation); finished false: cut at the limit, so seconds is a lower bound on the "
                             "cores it ran on")
    table.setdefault("parts", {})[name] = row
    with atomic_write(out) as temporary:
        temporary.write_text(json.dumps(table, indent=1) + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", help="a part's name, as `experiments all --dry-run` lists it")
    parser.add_argument("--profile", default="imagenet", choices=PROFILE_NAMES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds before the part is stopped")
    parser.add_argument("--work", type=Path, default=None, help="its work folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.limit > 0:
        raise SystemExit(f"time_part: --limit must be a positive number of seconds, got {args.limit}.")
    part = find_part(args.profile, args.part)
    with tempfile.TemporaryDirectory(prefix="nullspace-time-part-") as temporary:
        row = run_part(part, device=args.device, work=args.work or Path(temporary), limit=args.limit)
    computed_on = cpu_name() if not part.uses_device or args.device == "cpu" else torch.cuda.get_device_name()
    settings = " ".join(f"{name}={os.environ[name]}" for name in ("NULLSPACE_WEIGHTS", "NULLSPACE_DATA")
                        if name in os.environ)
    row = {**row, "commit": results.git_commit(), "device": computed_on, "cores": os.cpu_count(),
           "command": " ".join(["python", *part.command_line(args.device, Path("WORK"))[1:]]),
           "invocation": " ".join(filter(None, [settings, "python benchmarks/time_part.py", *sys.argv[1:]])),
           "date": time.strftime("%Y-%m-%d")}
    record(args.out, part.name, row)
    verdict = f"finished in {row['seconds']:.0f} s" if row["finished"] else \
        f"not finished in {row['limit_seconds']:.0f} s (exit status {row['returncode']}): at least that long"
    print(f"{part.name}: {verdict}; recorded in {args.out}")


if __name__ == "__main__":
    main()
