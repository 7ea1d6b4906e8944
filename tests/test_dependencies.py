"""`pip install nullspace-utils` (as on Colab, or a reader with one downloaded notebook) brings everything
that the library and every chapter import: each third-party import maps to a dependency in pyproject.toml."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Modules a chapter may import without a dependency of ours: any Jupyter kernel that runs a notebook
# brings IPython, and google.colab exists only on Colab (the install cell imports it to detect Colab).
PROVIDED_BY_THE_KERNEL = {"IPython", "google"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalise(re.match(r"[A-Za-z0-9_.-]+", requirement).group()) for requirement in requirements}


def _top_level_imports(path: Path) -> set[str]:
    source = path.read_text()
    if path.parent.name == "_src":  # chapter sources: drop IPython magics (%pip) before parsing
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted((ROOT / "nullspace_utils").rglob("*.py")) + sorted((ROOT / "book" / "_src").glob("*.py"))


def _missing(path: Path) -> dict[str, list[str]]:
    """{module: the distributions that provide it} for each third-party import of ``path`` that no dependency
    in pyproject.toml brings."""
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for module in _top_level_imports(path):
        if module in sys.stdlib_module_names or module in PROVIDED_BY_THE_KERNEL or module == "nullspace_utils":
            continue
        owners = {_normalise(name) for name in distributions.get(module, [module])}
        if not owners & declared:
            missing[module] = sorted(owners)
    return missing


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_import_is_a_declared_dependency(path):
    missing = _missing(path)
    assert not missing, (f"{path.relative_to(ROOT)} imports {missing}, which pyproject.toml's dependencies do not "
                         "bring: add the distribution there (and its exact pin to requirements.txt).")


def test_the_check_sees_a_missing_dependency(tmp_path):
    chapter = tmp_path / "_src" / "chapter.py"
    chapter.parent.mkdir()
    chapter.write_text("import skimage.data\n%pip install x\nfrom IPython.display import display\nimport json\n"
                       "from nullspace_utils import exact\nimport yaml\n")
    assert _top_level_imports(chapter) == {"skimage", "IPython", "json", "nullspace_utils", "yaml"}
    # PyYAML is installed (Jupyter Book brings it) but is no dependency of the library: a reader's
    # `pip install nullspace-utils` would not have it
    assert _missing(chapter) == {"yaml": ["pyyaml"]}


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalised name: version} of the ``name==version`` requirements among ``lines`` (comments dropped)."""
    pins = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([A-Za-z0-9_.+!-]+)\s*", line.split("#", 1)[0])
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def test_every_extra_pins_what_requirements_pin():
    """An extra installs on a reader's machine what `make install` tests: an unpinned torchattacks resolved to 3.5.1,
    which downgrades requests, urllib3, idna and httpx (#32)."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    required = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert extras, "pyproject.toml declares no extras: this test would check nothing"
    for extra, requirements in extras.items():
        for requirement in requirements:
            pinned = _pins([requirement])
            assert pinned, f"[{extra}] {requirement!r} is not an exact pin: pin it as requirements.txt does"
            (name, version), = pinned.items()
            assert required.get(name) == version, (f"[{extra}] pins {name}=={version}, requirements.txt "
                                                   f"{required.get(name)}: make them agree")


def test_the_pin_check_sees_a_loose_or_different_pin():
    assert _pins(["torchattacks==3.3.0  # PGD", "imagecorruptions-imaug", "numpy>=1.24", "# x==1"]) == {
        "torchattacks": "3.3.0"}
    assert _pins(["Imagecorruptions_Imaug == 1.1.5"]) == {"imagecorruptions-imaug": "1.1.5"}
