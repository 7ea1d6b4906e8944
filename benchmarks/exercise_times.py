"""How long each exercise's hidden solution code takes to run on this machine (the teachers page lists it).

For each chapter of _toc.yml's numbered part, executes the chapter top to bottom with nbclient (so the solution
finds the names the chapter defines), then each solution's ``~~~python`` code in the order of the exercises,
timed; a solution without code is not timed. Writes seconds per exercise label.

    python benchmarks/exercise_times.py --out benchmarks/results/exercise_times.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from nullspace_utils import book_pages, files, results

ROOT = Path(__file__).resolve().parents[1]
MARK = "solution seconds:"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "exercise_times.json")
    args = parser.parse_args()
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # the kernel's CPU time (all its threads): what a busy machine does not inflate
    failed: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    found = [exercise for exercise in book_pages.exercises() if exercise.solution_code]
    for chapter in dict.fromkeys(exercise.chapter for exercise in found):
        notebook = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
        timed = {}
        for exercise in (exercise for exercise in found if exercise.chapter == chapter):
            notebook.cells.append(nbformat.v4.new_code_cell(
                "import time as _t\n_started, _started_cpu = _t.perf_counter(), _t.process_time()"))
            notebook.cells.append(nbformat.v4.new_code_cell(exercise.solution_code))
            timed[exercise.label] = len(notebook.cells) - 1
            notebook.cells.append(nbformat.v4.new_code_cell(
                f"print({MARK!r}, _t.perf_counter() - _started, _t.process_time() - _started_cpu)"))
        started = time.perf_counter()
        NotebookClient(notebook, timeout=1800, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(ROOT / "book")}}).execute()
        for label, index in timed.items():
            errors = [output for output in notebook.cells[index].outputs if output.output_type == "error"]
            if errors:
                failed[label] = f"{errors[0].ename}: {errors[0].evalue}"
                continue
            printed = "".join(output.get("text", "") for output in notebook.cells[index + 1].outputs)
            wall, cpu = printed.split(MARK)[1].split()
            seconds[label], cpu_seconds[label] = round(float(wall), 2), round(float(cpu), 2)
        print(chapter, f"{time.perf_counter() - started:.0f} s", {label: cpu_seconds.get(label) for label in timed},
              flush=True)
    result = {"command": "python benchmarks/exercise_times.py", "commit": files.git_commit(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "note": "each exercise's solution code, run after its chapter in the same kernel: wall time (seconds) "
                      "and the kernel's CPU time over all its threads (cpu_seconds, which other work on the machine "
                      "does not inflate); solutions without code are not listed; load_average: the machine's "
                      "one-minute load average at the start and the end (above the core count: other work shared "
                      "the CPU)", "seconds": seconds, "cpu_seconds": cpu_seconds, "failed": failed}
    print("wrote", results.write_json(args.out, result))  # all at once: a run cut short leaves the old file


if __name__ == "__main__":
    main()
