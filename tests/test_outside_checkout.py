"""The library installed without the repository (pip, Colab), as a chapter uses it (#32): committed files it
recomputes from are fetched once from GitHub, checked by sha256, and kept in a cache; offline, every reader a
chapter calls gives ``(None, note)`` or a line saying what it skips, never a crash."""

import hashlib
import re
import sys
import urllib.error
import urllib.request

import pytest

from nullspace_utils import book_pages, files, finetune, results
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import finetune as finetune_study

WEIGHTS = "book/results/teaching/finetune/plain-s0.safetensors"


class Response:
    def __init__(self, content: bytes):
        self.content = content

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self):
        return self.content


@pytest.fixture
def no_checkout(tmp_path, monkeypatch):
    """The library as pip installs it: no repository around it, and an empty cache."""
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path / "site-packages")
    monkeypatch.setenv("NULLSPACE_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(results.OFFLINE_VARIABLE, raising=False)
    return tmp_path


@pytest.fixture
def github(monkeypatch):
    """GitHub serving the checkout's files; the URLs asked for are recorded."""
    asked: list[str] = []

    def serve(url, *args, **kwargs):
        asked.append(url)
        path = files.REPOSITORY_ROOT / url.removeprefix(results.RAW_URL)
        if not path.is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)  # type: ignore[arg-type]
        return Response(path.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    return asked


def sha256(path: str) -> str:
    return hashlib.sha256((files.REPOSITORY_ROOT / path).read_bytes()).hexdigest()


def test_committed_file_in_a_checkout_is_the_checkouts_and_checked():
    assert results.committed_file(WEIGHTS, sha256(WEIGHTS)) == results.REPOSITORY_ROOT / WEIGHTS
    with pytest.raises(results.ResultFileError, match="does not match its recorded sha256.*git checkout"):
        results.committed_file(WEIGHTS, "0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        results.committed_file(WEIGHTS, "abc")


def test_committed_file_outside_a_checkout_is_fetched_once_and_cached(no_checkout, github):
    digest = sha256(WEIGHTS)
    path = results.committed_file(WEIGHTS, digest)
    assert path == no_checkout / "cache" / "repository" / WEIGHTS and path.read_bytes() == (
        files.REPOSITORY_ROOT / WEIGHTS).read_bytes()
    assert github == [results.RAW_URL + WEIGHTS]
    assert results.committed_file(WEIGHTS, digest) == path and len(github) == 1  # from the cache, not asked again
    path.write_bytes(b"damaged")  # a damaged cache copy is fetched again
    assert results.committed_file(WEIGHTS, digest).read_bytes() != b"damaged" and len(github) == 2


def test_committed_file_refuses_a_changed_download_and_keeps_nothing(no_checkout, github):
    with pytest.raises(results.ResultFileError, match="does not match its recorded sha256"):
        results.committed_file(WEIGHTS, "1" * 64)
    assert not (no_checkout / "cache" / "repository" / WEIGHTS).exists()
    with pytest.raises(FileNotFoundError, match="GitHub answered 404"):
        results.committed_file("book/results/teaching/finetune/plain-s9.safetensors", "1" * 64)


def test_offline_outside_a_checkout_says_how_to_get_the_file(no_checkout, github, monkeypatch):
    monkeypatch.setenv(results.OFFLINE_VARIABLE, "1")
    assert results.offline()
    with pytest.raises(FileNotFoundError, match=r"could not be fetched.*NULLSPACE_OFFLINE.*run this once with network"):
        results.committed_file(WEIGHTS, sha256(WEIGHTS))
    found, note = results.chapter_file("benchmarks/results/learned_noise_cost_gpu.json")
    assert found is None and "could not be fetched" in note and "skipped" in note
    sweep, note = finetune_study.RESULT.chapter_result("teaching")
    assert sweep is None and "could not be fetched" in note
    assert github == []  # the variable keeps the library off the network
    monkeypatch.setenv(results.OFFLINE_VARIABLE, "0")
    assert not results.offline()


def test_recomputed_lines_fetch_the_weights_or_say_what_they_skip(no_checkout, github, monkeypatch):
    sweep = finetune_study.RESULT.read(finetune_study.RESULT.path("teaching"))  # from "GitHub"
    corruptions = finetune_study.CORRUPTIONS_RESULT.read(finetune_study.CORRUPTIONS_RESULT.path("teaching"))
    monkeypatch.setenv(results.OFFLINE_VARIABLE, "1")
    lines = list(finetune_study.recomputed_lines(get_profile("teaching"), sweep, corruptions))
    assert len(lines) == 1 and lines[0].startswith("skipped: the seed-0 fine-tuned weights cannot be had here")
    monkeypatch.delenv(results.OFFLINE_VARIABLE)
    pytest.importorskip("imagecorruptions", reason="imagecorruptions is not installed: `make install` installs it")
    github.clear()
    lines = list(finetune_study.recomputed_lines(get_profile("teaching"), sweep, corruptions))
    seed_0 = [name for name, row in sweep["runs"].items() if row["seed"] == 0]
    assert lines == [f"{name}: recomputed accuracy within one image of the file: True" for name in seed_0]
    assert sorted(github) == sorted(f"{results.RAW_URL}{sweep['weights_folder']}/{name}.safetensors" for name in seed_0)


def test_page_readers_offline_outside_a_checkout_say_so(no_checkout, github, monkeypatch):
    monkeypatch.setenv(results.OFFLINE_VARIABLE, "1")
    with pytest.raises(FileNotFoundError, match="could not be fetched"):
        book_pages.page_data("sessions")
    found, note = results.chapter_file("book/_data/sessions.json")
    assert found is None and "book/_data/sessions.json" in note


def _install_command() -> str:
    """The reader's install command, with the repository URL of _config.yml (the Colab cells' too)."""
    url = re.search(r"^repository:\n  url: (\S+)", (files.REPOSITORY_ROOT / "_config.yml").read_text(), re.M).group(1)
    return f'pip install "nullspace-utils[finetune] @ git+{url}"'


@pytest.mark.parametrize("module, call", [("torchattacks", finetune._torchattacks),
                                          ("imagecorruptions", finetune._imagecorruptions)])
def test_a_missing_extra_names_the_install_a_reader_can_run(module, call, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=re.escape(_install_command())):
        call()


@pytest.mark.parametrize("page", ["README.md", "book/api/finetune.md"])
def test_the_pages_name_the_same_install(page):
    text = " ".join((files.REPOSITORY_ROOT / page).read_text().split())  # one line, as a wrapped paragraph reads
    assert _install_command() in text
    assert 'pip install "nullspace-utils[finetune]"' not in text  # not on PyPI: that names nothing


def test_the_ci_step_fails_when_a_chapter_raises(tmp_path, capsys):
    """scripts/outside_checkout.py's offline half: a chapter that raises fails the step, one that skips does not."""
    import nbformat
    from scripts_loader import load_script

    step = load_script("outside_checkout")
    cells = {"skips": 'from IPython.display import display\ndisplay("skipped: the file could not be fetched")',
             "crashes": 'raise FileNotFoundError("book/_data/sessions.json is not in this checkout")'}
    for name, code in cells.items():
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), tmp_path / f"{name}.ipynb")
    assert step.execute(tmp_path, ["skips"]) == 0
    assert step.execute(tmp_path, ["skips", "crashes"]) == 1
    out = capsys.readouterr().out
    assert "skips: finished" in out and "1 file(s) could not be fetched" in out
    assert "crashes: FAILED: FileNotFoundError: book/_data/sessions.json is not in this checkout" in out
    assert "1 of 2 chapters did not finish outside the checkout: crashes" in out
