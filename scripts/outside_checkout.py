"""CI step (#32): every chapter runs as a reader outside the checkout runs it, offline, and must finish.

What it does, in a fresh temporary folder outside the checkout:

1. copies the checkout's files that git knows (a clone's content: tracked and untracked-but-not-ignored) and
   installs the package from that copy into a fresh venv, from ``pyproject.toml``'s dependencies alone (not
   requirements.txt) with ``constraints.txt`` as the lock, as a reader's ``pip install`` does:
   ``pip install -c constraints.txt "<copy>[finetune]" nbclient ipykernel`` (the last two run the notebooks);
   the wheels come from a wheelhouse, ``.cache/wheels`` in the checkout, filled by ``pip download`` when the
   install finds a wheel missing (the first run: 3.1 GB; pip's own cache keeps nothing here), so a later run
   installs without the network;
2. copies the chapters of ``_toc.yml`` into another folder and executes each copy there with nbclient, under
   the fresh venv's kernel, with the network off and an empty cache (``NULLSPACE_DATA``), and fails if any
   chapter raises: a chapter that needs a committed file must skip it with a note, not crash.

Network off: the execution runs in a new network namespace (``unshare -rn``: user namespaces, no root needed;
the kernels talk over Unix sockets, so no loopback is needed either), and the script checks that a connection
fails there. Where ``unshare`` is refused, it says so and falls back to ``NULLSPACE_OFFLINE=1``
(:func:`nullspace_utils.results.offline`) and ``HF_HUB_OFFLINE=1``, which keep the library, not the whole
process, off the network.

    python scripts/outside_checkout.py                      # every chapter (what `make test` runs)
    python scripts/outside_checkout.py primer setting --keep  # two chapters; keep the folder to look inside
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".cache" / "wheels"
EXTRAS = "finetune"  # every extra a chapter needs (the finetune chapter's corruptions and PGD)
RUNNERS = ["nbclient", "ipykernel"]  # what executes the notebooks; a reader's Jupyter or Colab brings its own
CELL_TIMEOUT = 1800  # seconds; a cell stuck longer is a failure


def run(command: list[str], **kwargs) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def toc_chapters() -> list[str]:
    """The notebooks of ``_toc.yml`` (scripts/toc_notebooks.py), as paths relative to the checkout."""
    output = subprocess.run([sys.executable, str(ROOT / "scripts" / "toc_notebooks.py")], check=True,
                            capture_output=True, text=True, cwd=ROOT).stdout
    return output.split()


def copy_clone(target: Path) -> None:
    """The checkout's files that a clone would have (and new ones not yet committed, not ignored) into ``target``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], check=True, capture_output=True,
                            cwd=ROOT).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def install(work: Path) -> Path:
    """A fresh venv in ``work`` with the package installed from a copy of the checkout; returns its python."""
    source = work / "source"
    copy_clone(source)
    wanted = [f"{source}[{EXTRAS}]", *RUNNERS]
    constraints = ["-c", str(ROOT / "constraints.txt")]
    started = time.perf_counter()
    python = work / "venv" / "bin" / "python"
    offline_install = [str(python), "-m", "pip", "install", "-q", "--no-compile", "--no-index", "--find-links",
                       str(WHEELHOUSE), *constraints, *wanted]  # --no-compile: bytecode only for what is imported
    run([sys.executable, "-m", "venv", str(work / "venv")])
    if subprocess.run(offline_install).returncode != 0:
        print("the wheelhouse lacks wheels this install needs: downloading them", flush=True)
        # the wheels of everything the install needs, and of the build backend (setuptools); files already in
        # the wheelhouse are not downloaded again
        run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(WHEELHOUSE), *constraints, *wanted,
             "setuptools>=64", "wheel"])
        shutil.rmtree(work / "venv")
        run([sys.executable, "-m", "venv", str(work / "venv")])
        run(offline_install)
    print(f"install: {time.perf_counter() - started:.0f} s", flush=True)
    return python


def network_off_prefix() -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that take the network away: ``unshare -rn``, else the library's switch."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"], {}
    print("unshare -rn is not allowed here: the network stays on for the process; NULLSPACE_OFFLINE=1 and "
          "HF_HUB_OFFLINE=1 keep the library off it", flush=True)
    return [], {"NULLSPACE_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def installed_apart() -> bool:
    """Whether this python imports nullspace_utils from outside the checkout (the fresh install), said either way."""
    library = Path(importlib.util.find_spec("nullspace_utils").origin).resolve()
    apart = not library.is_relative_to(ROOT)
    print(f"nullspace_utils from {library.parent}" if apart else
          f"nullspace_utils is imported from the checkout ({library}), not from the fresh install", flush=True)
    return apart


def execute(folder: Path, names: list[str]) -> int:
    """Execute the notebooks ``names`` in ``folder`` (run by the fresh venv's python, offline): 1 if one fails."""
    import socket

    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        network = "ON (a connection to pypi.org succeeded)"
    except OSError:
        network = "off"
    print(f"network: {network}; NULLSPACE_OFFLINE={os.environ.get('NULLSPACE_OFFLINE', '')}", flush=True)
    failed = []
    (folder / ".ipc").mkdir(exist_ok=True)  # the kernels' Unix sockets
    for name in names:
        path = folder / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        manager = KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / ".ipc" / name))
        started = time.perf_counter()
        try:
            NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT).execute(cwd=str(folder))
            outcome = "finished"
        except (CellExecutionError, CellTimeoutError) as error:  # a cell raised, or ran past CELL_TIMEOUT
            failed.append(name)
            outcome = "FAILED: " + (re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines() or ["?"])[-1]
        except Exception as error:  # the kernel did not start or died: the chapter did not finish either
            failed.append(name)
            outcome = f"FAILED: {type(error).__name__}: {error}"
        nbformat.write(notebook, path)
        shown = "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                          for cell in notebook.cells for output in cell.get("outputs", []))  # printed or displayed
        skips = shown.count("could not be fetched")
        note = f", {skips} file(s) could not be fetched (skipped with a note)" if skips else ""
        print(f"{name}: {outcome} in {time.perf_counter() - started:.0f} s{note}", flush=True)
    if failed:
        print(f"{len(failed)} of {len(names)} chapters did not finish outside the checkout: {', '.join(failed)}")
        return 1
    print(f"all {len(names)} chapters finished outside the checkout, offline")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter names (default: every notebook of _toc.yml)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venv, executed copies)")
    parser.add_argument("--execute", type=Path, help=argparse.SUPPRESS)  # the offline half, run by the fresh venv
    args = parser.parse_args(argv)
    if args.execute:
        return execute(args.execute, args.chapters) if installed_apart() else 1

    notebooks = toc_chapters()
    available = {Path(path).stem: path for path in notebooks}
    unknown = [name for name in args.chapters if name not in available]
    if unknown:
        raise SystemExit(f"not chapters of _toc.yml: {', '.join(unknown)}; choose from {', '.join(available)}.")
    names = args.chapters or list(available)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="nullspace-outside-"))
    if work.resolve().is_relative_to(ROOT):
        raise SystemExit(f"the temporary folder {work} lies inside the checkout: set TMPDIR to a folder outside it.")
    try:
        python = install(work)
        chapters = work / "chapters"
        chapters.mkdir()
        for name in names:
            shutil.copy2(ROOT / available[name], chapters / f"{name}.ipynb")
        prefix, switches = network_off_prefix()
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR")  # nothing of the checkout's environment
        env = {key: os.environ[key] for key in keep if key in os.environ}
        paths = [str(python.parent)] + [part for part in env.get("PATH", "").split(os.pathsep)
                                        if part and not Path(part).resolve().is_relative_to(ROOT)]
        env.update(switches, PATH=os.pathsep.join(paths), NULLSPACE_DATA=str(work / "cache"),
                   MPLCONFIGDIR=str(work / "matplotlib"), PYTHONNOUSERSITE="1")
        code = subprocess.run([*prefix, str(python), str(Path(__file__).resolve()), "--execute", str(chapters),
                               *names], env=env, cwd=chapters).returncode
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"outside-the-checkout step: {time.perf_counter() - started:.0f} s in all", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
