"""Stop `make install` early, with a clear message, when the disk cannot hold the environment.

torch 2.14.1's x86_64 wheel is a CUDA build: with its NVIDIA libraries the virtual environment takes
about 6.2 GB, and pip needs room to unpack wheels beside it. Without this check a full disk shows up
minutes later as pip's `OSError: [Errno 28] No space left on device`, with a half-written `.venv`.

Usage: python scripts/check_disk.py VENV_DIR [--need-gb N]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

NEEDED_GB = 8.0  # 6.2 GB measured for .venv + room for pip's temporary unpacking


def existing_parent(path: Path) -> Path:
    """The nearest folder that exists at or above `path` (the venv may not exist yet)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_free_space(venv_dir: Path, needed_gb: float = NEEDED_GB) -> str | None:
    """None when the disk holding `venv_dir` has `needed_gb` free, else the message to print."""
    folder = existing_parent(venv_dir)
    free_gb = shutil.disk_usage(folder).free / 1e9
    if free_gb >= needed_gb:
        return None
    return (
        f"make install: only {free_gb:.1f} GB free on the disk holding {folder}, and the environment "
        f"needs about {needed_gb:.0f} GB (torch's CUDA build and its NVIDIA libraries take 6.2 GB).\n"
        f"Free some space (old virtual environments, clones, `pip cache purge`), or put the "
        f"environment on another disk: make VENV=/other/disk/venv test"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv_dir", type=Path)
    parser.add_argument("--need-gb", type=float, default=NEEDED_GB)
    args = parser.parse_args(argv)
    message = check_free_space(args.venv_dir, args.need_gb)
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
