"""Build the book under another profile: ``python scripts/build_profile.py imagenet`` (``make book PROFILE=imagenet``).

The committed notebooks hold the ``teaching`` profile's outputs and are never rewritten. This script
copies the book into ``_build/profile-<name>/``, executes every chapter of ``_toc.yml`` there with
``NULLSPACE_PROFILE=<name>`` (chapters read ``book/results/<name>/`` when those result files exist and
otherwise print the command that makes them), and builds that copy into
``_build/profile-<name>/_build/html``. Needs what the profile needs: for ``imagenet``, network access
once (weights and ImageNette) or ``NULLSPACE_WEIGHTS`` / ``NULLSPACE_DATA``. The models compute on the
GPU when there is one (``NULLSPACE_DEVICE`` overrides).

``--smoke`` tests the code path without any download: random weights (``NULLSPACE_WEIGHTS=random``) and
a small fake ImageNette written into the build folder; the numbers it shows mean nothing.
``--no-build`` only executes the chapters (for a machine without Jupyter Book); ``--report FILE`` writes
each chapter's run time and error as JSON. Every chapter runs even when one fails; the exit status is 1
if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import notebooks  # noqa: E402


def execute(notebook_path: Path) -> str | None:
    """Run one notebook in place; the error's last lines when a cell fails, else None."""
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook_path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        return "\n".join(str(error).strip().splitlines()[-12:])
    finally:
        nbformat.write(notebook, notebook_path)
    return None


def main(profile: str, *, smoke: bool = False, build: bool = True, report: Path | None = None,
         only: list[str] | None = None) -> int:
    target = ROOT / "_build" / f"profile-{profile}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "book", target / "book", ignore=shutil.ignore_patterns("_src"))
    os.environ["NULLSPACE_PROFILE"] = profile  # the kernels inherit this environment
    if smoke:
        from nullspace_utils.data import write_fake_imagenette

        os.environ["NULLSPACE_WEIGHTS"] = "random"
        os.environ["NULLSPACE_DATA"] = str(write_fake_imagenette(target / "fake-data", per_class=30))
    from nullspace_utils.profiles import get_profile

    device = str(get_profile(profile).device)
    chapters = []
    for notebook_path in notebooks(target):
        if only and notebook_path.stem not in only:
            continue
        name = str(notebook_path.relative_to(target))
        print(f"executing {name} under {profile} on {device}", flush=True)
        started = time.perf_counter()
        error = execute(notebook_path)
        chapters.append({"notebook": name, "seconds": round(time.perf_counter() - started, 1), "error": error})
        print(f"  {chapters[-1]['seconds']} s" + (f", FAILED:\n{error}" if error else ""), flush=True)
    if report is not None:
        report.write_text(json.dumps({"profile": profile, "smoke": smoke, "device": device,
                                      "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                                      "torch": torch.__version__, "python": platform.python_version(),
                                      "chapters": chapters}, indent=1) + "\n")
    failed = [chapter["notebook"] for chapter in chapters if chapter["error"]]
    if failed:
        print("failed:", ", ".join(failed))
        return 1
    if build:
        subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(target), "--keep-going"],
                       check=True)
        print(f"The {profile} book is built: open {target / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", choices=("teaching", "imagenet"))
    parser.add_argument("--smoke", action="store_true", help="random weights and a fake ImageNette (no download)")
    parser.add_argument("--no-build", dest="build", action="store_false", help="execute the chapters only")
    parser.add_argument("--report", type=Path, help="write run times and errors per chapter to this JSON file")
    parser.add_argument("--only", nargs="+", metavar="CHAPTER", help="execute only these chapters (e.g. fooling)")
    arguments = parser.parse_args()
    if arguments.only and arguments.build:
        parser.error("--only builds an incomplete book: add --no-build")
    sys.exit(main(arguments.profile, smoke=arguments.smoke, build=arguments.build, report=arguments.report,
                  only=arguments.only))
