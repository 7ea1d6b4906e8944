"""How long each exercise's hidden solution code takes to run (the teachers page lists it).

For each chapter of _toc.yml's numbered part, executes the chapter top to bottom with nbclient (so the solution
finds the names the chapter defines), then each solution's ``~~~python`` code in the order of the exercises,
timed: wall time, and the kernel's CPU time over all its threads, which other work on a shared machine does not
inflate. A solution without code is not timed. Chapters can run in parallel processes (``--chapters``); each
adds its chapters to the output file when done, under a lock, so the parts make one file.

    python benchmarks/exercise_times.py --out benchmarks/results/exercise_times.json
    python benchmarks/exercise_times.py --chapters setting primer &  python benchmarks/exercise_times.py --chapters finetune
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

from nullspace_utils import book_pages, files, results

ROOT = Path(__file__).resolve().parents[1]
MARK = "solution seconds:"
NOTE = ("each exercise's solution code, run after its chapter in the same kernel: wall time (seconds) and the "
        "kernel's CPU time over all its threads (cpu_seconds, which other work on the machine does not inflate); "
        "solutions without code are not listed; load_average: per chapter, the machine's one-minute load average "
        "when it started and ended (above the core count: other work shared the CPU)")


def time_chapter(chapter: str, exercises: list[book_pages.Exercise], timeout: int) -> dict[str, dict]:
    """Run ``chapter``, then each of its ``exercises``' solution code, timed; what failed or ran over ``timeout``
    seconds is reported instead of a time."""
    notebook = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    timed = {}
    for exercise in exercises:
        notebook.cells.append(nbformat.v4.new_code_cell(
            "import time as _t\n_started, _started_cpu = _t.perf_counter(), _t.process_time()"))
        notebook.cells.append(nbformat.v4.new_code_cell(exercise.solution_code))
        timed[exercise.label] = len(notebook.cells) - 1
        notebook.cells.append(nbformat.v4.new_code_cell(
            f"print({MARK!r}, _t.perf_counter() - _started, _t.process_time() - _started_cpu)"))
    load = [os.getloadavg()[0]]
    out: dict[str, dict] = {"seconds": {}, "cpu_seconds": {}, "failed": {}}
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    except CellTimeoutError:
        pass  # the solutions that did not finish are reported below
    load.append(os.getloadavg()[0])
    for label, index in timed.items():
        errors = [output for output in notebook.cells[index].get("outputs", []) if output.output_type == "error"]
        printed = "".join(output.get("text", "") for output in notebook.cells[index + 1].get("outputs", []))
        if errors or MARK not in printed:
            out["failed"][label] = (f"{errors[0].ename}: {errors[0].evalue}" if errors
                                    else f"did not finish within {timeout} s")
            continue
        wall, cpu = printed.split(MARK)[1].split()
        out["seconds"][label], out["cpu_seconds"][label] = round(float(wall), 2), round(float(cpu), 2)
    out["load_average"] = {chapter: [round(value, 1) for value in load]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "exercise_times.json")
    parser.add_argument("--chapters", nargs="+", help="only these chapters (default: every chapter with exercises)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds a cell may run (default 1200)")
    args = parser.parse_args()
    found = [exercise for exercise in book_pages.exercises() if exercise.solution_code]
    chapters = list(dict.fromkeys(exercise.chapter for exercise in found))
    unknown = set(args.chapters or []) - set(chapters)
    if unknown:
        parser.error(f"no exercise with code in {sorted(unknown)}; chapters with some: {', '.join(chapters)}")
    for chapter in args.chapters or chapters:
        started = time.perf_counter()
        part = time_chapter(chapter, [exercise for exercise in found if exercise.chapter == chapter], args.timeout)
        with open(args.out.with_suffix(".lock"), "w") as lock:  # parts running in parallel add to one file in turn
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = json.loads(args.out.read_text()) if args.out.is_file() else {
                "seconds": {}, "cpu_seconds": {}, "failed": {}, "load_average": {}}
            replaced = {chapter, *part["seconds"], *part["failed"]}  # this chapter's entries of an earlier run
            for key in ("seconds", "cpu_seconds", "failed", "load_average"):
                result[key] = {name: value for name, value in result[key].items() if name not in replaced} | part[key]
            result.update(command="python benchmarks/exercise_times.py", commit=files.git_commit(),
                          torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                          cores=os.cpu_count(), note=NOTE)
            results.write_json(args.out, result)
        print(chapter, f"{time.perf_counter() - started:.0f} s", part["cpu_seconds"], part["failed"], flush=True)


if __name__ == "__main__":
    main()
