"""The API reference's examples run as written and assert what they show; every public function and class of
the library is used, by its exact name, in one of them; every module has a reference page with its example;
the doctests of the library's docstrings (shown on the same pages) pass."""

import ast
import doctest
import importlib
import inspect
import pkgutil
import runpy
from pathlib import Path

import matplotlib
import pytest

import nullspace_utils

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "book" / "api" / "examples").glob("*.py"))
FRONT_ENDS = {"__init__", "cli"}  # the command line tool is documented in the README
LIBRARY = sorted(name for _, name, _ in pkgutil.walk_packages(nullspace_utils.__path__, "nullspace_utils."))


def _module_name(stem: str) -> str:
    """The module a page or example of ``book/api/`` documents: ``studies_approximate`` is
    ``nullspace_utils.studies.approximate``, ``exact`` is ``nullspace_utils.exact``."""
    return "nullspace_utils." + (f"studies.{stem.removeprefix('studies_')}" if stem.startswith("studies_") else stem)


def _documented_modules() -> set[str]:
    """The stems of every module that needs a page: the library's modules and its studies (``studies_<name>``)."""
    modules = {path.stem for path in (ROOT / "nullspace_utils").glob("*.py")} - FRONT_ENDS
    return modules | {f"studies_{path.stem}" for path in (ROOT / "nullspace_utils" / "studies").glob("*.py")
                      if path.stem != "__init__"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(example), run_name="__main__")


def _problems(source: str) -> list[str]:
    """Why an example would show a result that its run does not check (empty when it checks all it shows)."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            problems.append(f"line {node.lineno}: print() shows a value that nothing checks; assert it instead "
                            "(the reader sees the expected value in the assert)")
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                if not any(isinstance(inner, ast.Assert) for inner in ast.walk(handler)):
                    problems.append(f"line {handler.lineno}: an `except` that asserts nothing about the error")
            raises_otherwise = any(isinstance(inner, ast.Raise) for statement in node.orelse
                                   for inner in ast.walk(statement))
            if node.handlers and not raises_otherwise and not _is_fallback(node):
                problems.append(f"line {node.lineno}: this `try` passes when nothing is raised; add "
                                "`else: raise AssertionError(...)`")
    return problems


def _assigned(statements: list[ast.stmt]) -> set[str]:
    return {target.id for statement in statements if isinstance(statement, ast.Assign)
            for target in statement.targets if isinstance(target, ast.Name)}


def _is_fallback(node: ast.Try) -> bool:
    """A `try` that gets a value one way or, when that raises, another (the code after it checks the value)."""
    names = _assigned(node.body)
    return bool(names) and all(names & _assigned(handler.body) for handler in node.handlers)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_asserts_what_it_shows(example):
    problems = _problems(example.read_text())
    assert not problems, f"{example.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_check_sees_unchecked_results():
    assert _problems("import torch\nassert torch.zeros(2).shape == (2,)\n") == []
    assert len(_problems("x = 1\nprint(x)  # 1\n")) == 1
    swallowed = "try:\n    int('x')\nexcept ValueError as error:\n    assert 'x' in str(error)\n"
    assert len(_problems(swallowed)) == 1  # passes when int('x') stops raising
    assert _problems(swallowed + "else:\n    raise AssertionError\n") == []
    assert len(_problems("try:\n    int('x')\nexcept ValueError as error:\n    error = None\n"
                         "else:\n    raise AssertionError\n")) == 1  # shows the error, checks nothing
    fallback = ("try:\n    n = int(s)\nexcept ValueError as error:\n    assert s in str(error)\n    n = 0\n"
                "assert n >= 0\n")
    assert _problems(fallback) == []


def _used_names(source: str) -> set[tuple[str, str]]:
    """(module, name) pairs of the library that ``source`` uses in code (comments and strings do not count):
    ``module.name`` through ``from nullspace_utils import module [as alias]``, and ``from
    nullspace_utils.module import name``."""
    tree = ast.parse(source)
    aliases, used = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("nullspace_utils", "nullspace_utils.studies"):
            aliases.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nullspace_utils."):
            used |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nullspace_utils.") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.add((aliases[node.value.id], node.attr))
    return used


def test_used_names_are_exact():
    source = ("from nullspace_utils import fingerprint as fp, watermark\n"
              "from nullspace_utils.profiles import get_profile\n"
              "watermark.embedding_residual  # watermark.embed\nfp.verify('data.stack_dataset')\n")
    assert _used_names(source) == {("nullspace_utils.watermark", "embedding_residual"),
                                   ("nullspace_utils.fingerprint", "verify"),
                                   ("nullspace_utils.profiles", "get_profile")}


def test_every_public_function_and_class_is_used_in_an_example():
    """By its exact name, in code: ``embedding_residual`` or a comment does not cover ``embed``. Most names
    are used in their own module's example; an error may be shown where it arises (models'
    NormalisationUnknownError in exact's example)."""
    used = set().union(*(_used_names(example.read_text()) for example in EXAMPLES))
    missing = {}
    for example in EXAMPLES:
        module = importlib.import_module(_module_name(example.stem))
        public = [name for name in module.__all__
                  if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))]
        missing_here = [name for name in public if (module.__name__, name) not in used]
        if missing_here:
            missing[example.name] = missing_here
    assert not missing, f"no API example uses these public names (by exact name, in code): {missing}"


def test_every_module_has_a_page_with_its_example():
    modules = _documented_modules()
    pages = {path.stem for path in (ROOT / "book" / "api").glob("*.md")} - {"index"}
    assert modules == pages
    assert {example.stem for example in EXAMPLES} == modules
    toc = (ROOT / "_toc.yml").read_text()
    for name in modules:
        page = (ROOT / "book" / "api" / f"{name}.md").read_text()
        assert f"automodule:: {_module_name(name)}" in page and f"examples/{name}.py" in page
        assert f"book/api/{name}\n" in toc


@pytest.mark.parametrize("module", LIBRARY)
def test_docstring_examples(module):
    """A ``>>>`` example in a docstring is on the module's reference page too: it must hold."""
    if module.endswith("__main__"):
        pytest.skip("running it would start the zoo's training")
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{module}: {runner.failures} of {runner.tries} docstring examples failed (see above)"


def test_the_docstring_examples_are_found():
    """linalg.nullspace's docstring shows its result: the doctest run above sees it (it would pass vacuously
    if the finder missed the examples)."""
    from nullspace_utils import linalg

    tests = [test for test in doctest.DocTestFinder().find(linalg) if test.examples]
    assert any(test.name == "nullspace_utils.linalg.nullspace" and len(test.examples) == 4 for test in tests)
