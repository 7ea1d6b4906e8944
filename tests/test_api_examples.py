"""The API reference's examples run as written, and every module of the library has a reference page."""

import runpy
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "book" / "api" / "examples").glob("*.py"))
FRONT_ENDS = {"__init__", "cli"}  # the command line tool is documented in the README


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(example), run_name="__main__")


def test_every_public_function_and_class_appears_in_its_module_example():
    import importlib
    import inspect

    for example in EXAMPLES:
        module = importlib.import_module(f"nullspace_utils.{example.stem}")
        text = example.read_text()
        public = [name for name in module.__all__
                  if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))]
        missing = [name for name in public if name not in text]
        assert not missing, f"{example.name} shows no use of {missing}"


def test_every_module_has_a_page_with_its_example():
    modules = {path.stem for path in (ROOT / "nullspace_utils").glob("*.py")} - FRONT_ENDS
    pages = {path.stem for path in (ROOT / "book" / "api").glob("*.md")} - {"index"}
    assert modules == pages
    toc = (ROOT / "_toc.yml").read_text()
    for name in modules:
        page = (ROOT / "book" / "api" / f"{name}.md").read_text()
        assert f"automodule:: nullspace_utils.{name}" in page and f"examples/{name}.py" in page
        assert (ROOT / "book" / "api" / "examples" / f"{name}.py").is_file()
        assert f"book/api/{name}\n" in toc
