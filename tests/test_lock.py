"""constraints.txt (scripts/lock.py) pins every package of `make install`, and agrees with requirements.txt."""
import importlib.metadata
import re
from pathlib import Path

from scripts_loader import load_script

normalise = load_script("lock").normalise
ROOT = Path(__file__).resolve().parents[1]
PLATFORM_SPECIFIC = ("nvidia-", "cuda-", "triton")


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a requirements-style file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            name = normalise(name)
            assert name not in out, f"{path.name} pins {name} twice"
            out[name] = version.strip()
    return out


def test_requirements_read_the_lock():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-c constraints.txt" in lines


def test_lock_agrees_with_requirements():
    locked, required = pins(ROOT / "constraints.txt"), pins(ROOT / "requirements.txt")
    assert len(locked) > 100  # the transitive closure, not only the direct pins
    for name, version in required.items():
        assert locked.get(name) == version, f"requirements.txt pins {name}=={version}, constraints.txt has {locked.get(name)}: run scripts/lock.py"


def test_lock_lines_are_exact_pins():
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[a-z0-9-]+==[A-Za-z0-9.+!-]+", line), line


def test_this_environment_is_the_locked_one():
    """The tests run in what `make install` installs: a drifted venv would test something else."""
    wrong = {}
    for name, version in pins(ROOT / "constraints.txt").items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name.startswith(PLATFORM_SPECIFIC):  # torch's CUDA libraries exist only on Linux x86_64
                continue
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from constraints.txt (locked, installed): {wrong}"
