"""How long each chapter takes to run top to bottom on this machine (the teacher page and the benchmarks
page plot it). Executes every notebook of _toc.yml with nbclient, as nbval does, and writes seconds.

    python benchmarks/notebook_times.py --out benchmarks/results/notebook_times.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from nullspace_utils import files, results

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "notebook_times.json")
    args = parser.parse_args()
    notebooks = subprocess.run([sys.executable, str(ROOT / "scripts" / "toc_notebooks.py")], capture_output=True,
                               text=True, check=True, cwd=ROOT).stdout.split()
    times = {}
    pages = {"teachers", "benchmarks"}  # they read this file: timing them would be circular
    for path in (path for path in notebooks if Path(path).stem not in pages):
        notebook = nbformat.read(ROOT / path, as_version=4)
        started = time.perf_counter()
        NotebookClient(notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
        times[Path(path).stem] = round(time.perf_counter() - started, 1)
        print(path, times[Path(path).stem], "s", flush=True)
    result = {"command": "python benchmarks/notebook_times.py", "commit": files.git_commit(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "note": "wall time per chapter, kernel start included; the teachers and benchmarks pages, which read "
                      "this file, are not timed", "seconds": times}
    print("wrote", results.write_json(args.out, result))  # all at once: a run cut short leaves the old file


if __name__ == "__main__":
    main()
