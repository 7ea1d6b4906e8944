"""The API reference's examples run as written and assert what they show; every public function and class of
the library is used, by its exact name, in one of them; every module has a reference page with its example;
the doctests of the library's docstrings (shown on the same pages) pass."""

import ast
import doctest
import functools
import importlib
import inspect
import os
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


@functools.lru_cache(maxsize=None)
def _run_example(stem: str) -> dict:
    """Run ``book/api/examples/<stem>.py`` once per session, from the repository root; its variables."""
    matplotlib.use("Agg")
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        return runpy.run_path(str(ROOT / "book" / "api" / "examples" / f"{stem}.py"), run_name="__main__")
    finally:
        os.chdir(before)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example):
    _run_example(example.stem)


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


def _example_values(stem: str) -> dict:
    """The variables an example leaves behind (its one run, :func:`_run_example`), for the checks that would
    crowd its page: the page shows a few readable lines per function, these tests check the rest."""
    return _run_example(stem)


def test_exact_example_in_detail():
    import torch

    from nullspace_utils import exact, models

    values = _example_values("exact")
    layer, matrix, basis = values["layer"], values["matrix"], values["basis"]
    assert isinstance(layer, torch.nn.Conv2d) and layer.out_channels == 96 and layer.kernel_size == (16, 16)
    assert matrix.dtype == torch.float64 and values["std"] == models.ZOO_STD
    assert torch.allclose(matrix, exact.patch_embedding_matrix(values["model"], std=values["std"]))
    tiled = values["tiled"]
    assert tiled.shape == (3, 112, 112) and torch.equal(tiled[:, 16:32, 96:112], basis[0].float())
    noise = values["noise"]
    assert noise.shape == (3, 112, 112) and torch.isclose(noise.abs().max(), torch.tensor(0.5))
    assert values["embeddings"].shape == (2, 49, 96)
    per_channel = values["per_channel"]
    assert per_channel.shape == (480, 3, 16, 16)
    assert (matrix @ per_channel.reshape(480, -1).T).abs().max() < 1e-10  # inside the joint nullspace
    assert exact.nullspace_dimensions(1024, 32)["per_channel"] == 0  # ViT-L/32: d = r^2
    assert exact.nullspace_sizes(values["wide"]) == {"per_channel": 0, "joint": 0}
    mixes = values["mixes"]
    assert mixes.shape == (4, 3, 16, 16) and (matrix @ mixes.reshape(4, -1).T).abs().max() < 1e-10
    assert all(0 <= kept <= 1 for kept in values["sweep"].random_match)
    assert values["effects"].saturated > 0


def test_approximate_example_in_detail():
    import torch

    from nullspace_utils import approximate

    values = _example_values("approximate")
    model, data, images, result = values["model"], values["data"], values["images"], values["result"]
    assert len(result.history) == 5 and result.norm == result.noise.norm().item()
    assert values["report"].match <= 1.0
    with torch.no_grad():
        assert values["noisy_logits"].shape == (4, 10)
        assert not torch.equal(values["noisy_logits"], model(images[:4]))  # the noise was on
    sorted_values = values["shuffled"].flatten().sort().values
    assert torch.equal(sorted_values, result.noise.flatten().sort().values)  # the same values, reordered
    first = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=1, lr=1e-12, batch_size=16,
                                    seed=0)
    assert torch.allclose(first.noise, values["start"], atol=1e-6)  # learning starts from uniform_noise(seed)
    with torch.no_grad():
        assert (model(images[:4] + values["null_part"]) - model(images[:4])).abs().max() < 1e-3
    assert torch.allclose(values["null_part"] + values["row_part"], values["image_noise"], atol=1e-6)
    choice = values["choice"]
    assert choice.scores[str(choice.lr)] == min(choice.scores.values())
    assert set(approximate.LR_GRID) <= {0.01, 0.1, 1.0, 10.0, 100.0}
    auto = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=2, batch_size=16, probe_steps=2,
                                   lr_grid=(0.1, 1.0, 10.0))
    assert auto.lr_choice is not None and auto.lr == auto.lr_choice.lr


def test_watermark_example_in_detail():
    from nullspace_utils import box_solver

    values = _example_values("watermark")
    assert values["result"].solver == "admm"
    batch = values["batch"]
    assert batch.image.shape == (4, 3, 112, 112) and batch.objective.shape == (4,)
    solved, patches, matrix = values["solved"], values["patches"], values["matrix"]
    assert solved.shape == (49, 768) and solved.min() >= 0 and solved.max() <= 1
    assert (matrix @ (solved - patches).T).abs().max() < 1e-4  # every patch keeps its embedding
    assert [basis.shape for basis in values["bases"]] == [(256, 160)] * 3
    paper = values["paper"]
    assert paper.pixels.shape == (1, 3, 256) and box_solver.box_violation(paper.pixels) < 1e-3


def test_linalg_example_in_detail():
    import numpy as np

    values = _example_values("linalg")
    matrix, basis, projector = values["matrix"], values["basis"], values["projector"]
    assert np.allclose(values["sigma"], [np.sqrt(70), 0.0])
    assert values["tolerance"] == 3 * np.finfo(np.float64).eps
    assert np.allclose(basis.T @ basis, np.eye(2))  # orthonormal
    assert projector.shape == (3, 3) and np.allclose(projector, basis @ basis.T)
    assert np.allclose(projector @ projector, projector)
    projected = values["projected"]
    assert np.allclose(projected, projector @ values["v"]) and np.allclose(matrix @ projected, 0)
    seen, hidden = values["seen"], values["hidden"]
    assert np.allclose(hidden[0], projected) and np.allclose(matrix @ hidden.T, 0)
    assert np.allclose(matrix @ seen.T, matrix @ values["rows"].T)


def test_plotting_example_in_detail():
    import numpy as np

    values = _example_values("plotting")
    assert values["shown"].shape == (32, 32, 3) and np.isclose(np.abs(values["shown"] - 0.5).max(), 0.5)
    assert repr(values["results"]).splitlines() == ["model   accuracy", "------  --------", "ViT-S     99.2 %",
                                                     "ResNet   100.0 %"]
    assert values["results"].to_html().count("<tr>") == 3
    assert values["blended"].shape == (32, 32, 3)
    assert values["xs"] == [0.1, 0.5] and np.allclose(values["values"], [[89, 91], [89, 91]])
    assert values["changes"].rows == [["L1", "900", "40", "30 %", "46 %", "[-8, 12]"]]
    assert values["checks"].rows[0][:3] == ["ViT-S", "True", "True"]
    assert values["correlations"].rows == [["LRP", "identical", "above 0.9999", "0.10 to 0.10"]]
    assert values["differences"].rows[0][:3] == ["saliency", "identical", "< 1e-3"]
    assert len(values["panels"]) == 2
