"""Files the library writes and checks: written all at once, hashed, and stamped with the commit that made them.

The bottom of the library (it imports nothing of it), so that the method modules, the studies and the zoo's
training script reach these without importing each other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "write_bytes_atomically", "sha256_of_file", "git_commit", "REPOSITORY_ROOT"]

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


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
        raise _folder_error(path)
    temporary = _new_temporary(path)
    try:
        if replace:  # a replaced file keeps its mode
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temporary, os.stat(path).st_mode & 0o777)  # permissions only: no setuid, setgid, sticky
        yield temporary
        if replace:
            os.replace(temporary, path)
        else:
            _link_exclusively(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: str | os.PathLike, content: bytes, *, replace: bool = True) -> None:
    """Write ``content`` to ``path`` whole or not at all, as :func:`atomic_write` does (same guarantees, same
    errors), in fewer system calls: the temporary file is written through the descriptor that created it, and
    without ``replace`` a folder at ``path`` is looked for only when the last step fails. For the folder command
    line, whose threads write thousands of small files at once and take Python's lock back after each call::

        write_bytes_atomically("out.png", encoded_png, replace=False)
    """
    path = Path(path)
    existing = None
    if replace:  # a replaced file keeps its mode; a folder (or a link to one) is refused as atomic_write does
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(path)
    if not path.name or (existing is not None and stat.S_ISDIR(existing.st_mode)):
        raise _folder_error(path)
    temporary, descriptor = _open_temporary(path)
    try:
        try:
            if existing is not None:
                os.fchmod(descriptor, existing.st_mode & 0o777)
            remaining = memoryview(content)
            while remaining:  # one write may write less than asked
                remaining = remaining[os.write(descriptor, remaining):]
        finally:
            os.close(descriptor)
        try:
            if replace:
                os.replace(temporary, path)
            else:
                _link_exclusively(temporary, path)
        except OSError:
            if path.is_dir():  # the same error atomic_write gives before writing (here: a folder made meanwhile)
                raise _folder_error(path) from None
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):  # (renamed onto path by os.replace: gone already)
            os.unlink(temporary)


def _folder_error(path: Path) -> IsADirectoryError:
    """The error both writers give for a folder (or a link to one) where a file is to be written."""
    return IsADirectoryError(f"{path} is a folder: give a file name to write to (e.g. {path / 'out.png'}).")


def _new_temporary(path: Path) -> Path:
    """An empty file beside ``path`` with a name nothing else has (:func:`_open_temporary`), closed."""
    temporary, descriptor = _open_temporary(path)
    os.close(descriptor)
    return temporary


def _open_temporary(path: Path, tries: int = 100) -> tuple[Path, int]:
    """A new file beside ``path`` with a name nothing else has (``.NAME.RANDOM.part``), created exclusively and
    with the mode a plain ``open()`` gives a new file: 0666 less the umask, which the system applies (no need to
    read the umask, which only setting it can do portably); its path and its descriptor, open for writing. Few
    system calls: the folder command line's threads write many files at once, and each call takes Python's lock
    back."""
    for _ in range(tries):
        temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.part")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except (FileNotFoundError, NotADirectoryError):
            if path.parent.is_dir():  # the folder is there: the error is another one
                raise
            if path.parent.exists():
                raise NotADirectoryError(f"{path.parent} is a file, not a folder: give a path inside a folder.") from None
            raise FileNotFoundError(f"the folder {path.parent} does not exist: create it first, or write "
                                    "elsewhere.") from None
        return temporary, descriptor
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path} in {tries} tries", str(path))


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
