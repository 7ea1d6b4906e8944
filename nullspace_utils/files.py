"""Files the library writes and checks: written all at once, hashed, and stamped with the commit that made them.

The bottom of the library (it imports nothing of it), so that the method modules, the studies and the zoo's
training script reach these without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "sha256_of_file", "git_commit", "REPOSITORY_ROOT"]

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` all at once: yields a temporary path beside it, renamed onto ``path`` only on success.

    An existing file at ``path`` is left untouched when the write fails half-way (full disk, an error, an
    interrupt), and no partial file is left behind. Use it for every file the library writes::

        with atomic_write("out.png") as temporary:
            picture.save(temporary, format="PNG")
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name to write to (e.g. {path / 'out.png'}).")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist: create it first, or write elsewhere.")
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private (0600); give it what a plain open() would: the mode of the file it
    # replaces, or 0666 less the umask for a new one
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sha256_of_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: Path = REPOSITORY_ROOT) -> str:
    """The checkout's HEAD commit, or "unknown" outside a git checkout (e.g. a copied tree on a GPU box)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
