"""Files the library writes and checks: written all at once, hashed, and stamped with the commit that made them.

The bottom of the library (it imports nothing of it), so that the method modules, the studies and the zoo's
training script reach these without importing each other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "sha256_of_file", "git_commit", "REPOSITORY_ROOT"]

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
#: Where Linux shows the process's umask without changing it (``Umask:`` line, Linux 4.7 and later).
_PROC_STATUS = Path("/proc/self/status")
#: Elsewhere reading the umask means setting it for a moment (os.umask returns the old value): threads writing at
#: once (the folder CLI's writers) take this lock for those two calls, so none reads another's 0. (A thread that
#: creates files without the lock meanwhile would get 0; /proc avoids that window where it exists.)
_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Write ``path`` all at once: yields a temporary path beside it, moved onto ``path`` only on success.

    An existing file at ``path`` is left untouched when the write fails half-way (full disk, an error, an
    interrupt), and no partial file is left behind. Use it for every file the library writes::

        with atomic_write("out.png") as temporary:
            picture.save(temporary, format="PNG")

    With ``replace=False`` the write is exclusive (create-or-fail): the finished file is hard-linked to
    ``path``, which fails with ``FileExistsError`` when anything is there already, even a file another
    process wrote meanwhile, so two writers can never both take one name. Either way ``path`` appears
    only complete, so an existing ``path`` written through this function is a complete file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give a file name to write to (e.g. {path / 'out.png'}).")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist: create it first, or write elsewhere.")
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    temporary = Path(name)
    try:
        os.close(handle)
        # mkstemp makes the file private (0600); give it what a plain open() would: the mode of the file it
        # replaces, or 0666 less the umask for a new one
        if replace and path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            mode = 0o666 & ~_umask()
        os.chmod(temporary, mode)
        yield temporary
        if replace:
            os.replace(temporary, path)
        else:
            _link_exclusively(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask: from :data:`_PROC_STATUS` where it shows it, else set and restored under
    :data:`_UMASK_LOCK`."""
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    return umask


def _link_exclusively(temporary: Path, path: Path) -> None:
    """Give the finished ``temporary`` the name ``path`` unless that name is taken (one atomic system call)."""
    try:
        os.link(temporary, path)  # never follows or replaces what is at path, even a dangling link
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, f"{path} exists (another program or run wrote it meanwhile?): it was "
                              "kept; remove it, or write elsewhere", str(path)) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        raise OSError(error.errno, f"cannot create {path} exclusively: this file system has no hard links "
                      f"({error.strerror}); write to another folder, or allow replacing files") from error


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
