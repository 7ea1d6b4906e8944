"""The library's layers (README, Architecture): method modules know nothing of profiles, result files, plots, studies
or the command line; the chapters, benchmarks and scripts reach the experiments through the studies, never through
the command line's module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("linalg", "exact", "approximate", "robustness", "watermark", "fooling", "box_solver", "xai", "fingerprint",
           "finetune", "models", "data", "metrics", "files")
ABOVE_METHODS = {"profiles", "plotting", "results", "studies", "experiments", "cli", "book_pages"}


def _library_imports(path: Path) -> set[str]:
    """The modules of nullspace_utils that the file at ``path`` imports, anywhere in it (``studies.x`` as
    ``studies``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nullspace_utils"):
            module = node.module.removeprefix("nullspace_utils").lstrip(".")
            found |= {alias.name for alias in node.names} if not module else {module.split(".")[0]}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("nullspace_utils.")}
    return found


def test_the_method_modules_exist():
    assert all((ROOT / "nullspace_utils" / f"{name}.py").is_file() for name in METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_a_method_module_imports_nothing_above_its_layer(name):
    above = _library_imports(ROOT / "nullspace_utils" / f"{name}.py") & ABOVE_METHODS
    assert not above, f"nullspace_utils/{name}.py imports {sorted(above)}: move that code into a study"


def test_fooling_does_not_reach_into_watermark():
    assert "watermark" not in _library_imports(ROOT / "nullspace_utils" / "fooling.py")


def test_no_chapter_benchmark_or_script_imports_the_command_line():
    sources = [*(ROOT / "book" / "_src").glob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
               *(ROOT / "scripts").glob("*.py")]
    assert len(sources) > 20
    offenders = [str(path.relative_to(ROOT)) for path in sources if "experiments" in _library_imports(path)]
    assert not offenders, f"these import nullspace_utils.experiments; import the study instead: {offenders}"


def test_the_check_sees_an_import(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("from nullspace_utils import plotting\nfrom nullspace_utils.studies import evidence\n"
                      "def f():\n    from nullspace_utils.results import read\n")
    assert _library_imports(source) == {"plotting", "studies", "results"}
