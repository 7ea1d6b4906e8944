"""Build the book under another profile: ``python scripts/build_profile.py imagenet`` (``make book PROFILE=imagenet``).

The committed notebooks hold the ``teaching`` profile's outputs and are never rewritten. This script
copies the book into ``_build/profile-<name>/``, executes every chapter of ``_toc.yml`` there with
``NULLSPACE_PROFILE=<name>`` (chapters read ``book/results/<name>/`` when those result files exist and
otherwise print the command that makes them), and builds that copy into
``_build/profile-<name>/_build/html``. Needs what the profile needs: for ``imagenet``, network access
once (weights and ImageNette) or ``NULLSPACE_WEIGHTS`` / ``NULLSPACE_DATA``; a GPU is not required
for the chapters themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import notebooks  # noqa: E402


def main(profile: str) -> Path:
    target = ROOT / "_build" / f"profile-{profile}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "book", target / "book", ignore=shutil.ignore_patterns("_src"))
    os.environ["NULLSPACE_PROFILE"] = profile
    for notebook_path in notebooks(target):
        print("executing", notebook_path.relative_to(target), "under", profile, flush=True)
        notebook = nbformat.read(notebook_path, as_version=4)
        NotebookClient(notebook, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
        nbformat.write(notebook, notebook_path)
    subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(target), "--keep-going"], check=True)
    print(f"The {profile} book is built: open {target / '_build' / 'html' / 'index.html'}")
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/build_profile.py PROFILE")
    main(sys.argv[1])
