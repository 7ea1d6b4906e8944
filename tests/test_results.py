"""Result files: every committed one fits its schema and records its provenance; a damaged one is refused
with the file, the key and the fix; reading falls back to GitHub; writing is checked and atomic."""

import json
import re
import shutil
import urllib.error
import urllib.request

import pytest

from nullspace_utils import files, results
from nullspace_utils.studies import result_kinds

COMMITTED = sorted(results.RESULTS.glob("*/*.json"))
KINDS = result_kinds()


def _kind(path) -> results.ResultKind:
    """The result kind of a committed file, by its name."""
    return KINDS[path.stem]


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def _not_found(url, *args, **kwargs):
    raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)


def _relative(path) -> str:
    return str(path.relative_to(results.REPOSITORY_ROOT))


def _checkout_with(tmp_path, relative: str):
    """A checkout root in ``tmp_path`` holding a copy of the committed file at ``relative``; returns the copy."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    copy = tmp_path / relative
    copy.parent.mkdir(parents=True)
    shutil.copy(results.REPOSITORY_ROOT / relative, copy)
    return copy


# --------------------------------------------------------------------------- committed files
def test_there_are_committed_results_of_every_kind():
    assert {path.stem for path in COMMITTED} == set(KINDS)


@pytest.mark.parametrize("path", COMMITTED, ids=_relative)
def test_every_committed_result_fits_its_schema_and_records_its_provenance(path):
    assert path.stem in KINDS, f"{path} has no study: give its study a RESULT and list it in studies.result_kinds"
    kind = _kind(path).name
    data = _kind(path).read(_relative(path))  # validated on reading
    made = data["provenance"]
    # the command that made it is the runner of this kind, for this profile
    words = made["command"].removeprefix(results.EXPERIMENTS_COMMAND + " ").split()
    if words[0] == "merge":  # a run in parallel parts, joined: the merge names the kind, each part its runner
        assert words[1] == kind and data["parts"]
        for part in data["parts"]:
            assert part["command"].removeprefix(results.EXPERIMENTS_COMMAND + " ").split()[0] == kind
    else:
        assert words[0] == _kind(path).command
    assert made["command"].startswith(results.EXPERIMENTS_COMMAND)
    assert data["profile"] == path.parent.name
    assert re.fullmatch(r"[0-9a-f]{40}", made["commit"]) and made["device"], path
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", made["date"])


def test_describe_provenance_is_the_line_a_chapter_prints():
    data = results.read("book/results/teaching/watermark_slsqp.json")
    made = data["provenance"]
    assert made["command"].endswith("watermark-slsqp --solved /tmp/solved")  # a folder of the machine that ran it
    assert results.describe_provenance(data) == (
        f"made by: {results.EXPERIMENTS_COMMAND} watermark-slsqp --solved solved\non {made['device']}, "
        f"torch {made['torch']}, timm {made['timm']}, commit {made['commit'][:10]}")


def test_the_shown_command_has_no_machine_paths():
    command = ("python -m nullspace_utils.experiments merge finetune /tmp/sweep/parts/lim2-s0.json "
               "/tmp/sweep/parts/untuned.json --out /tmp/sweep/finetune.json")
    assert results.shown_command(command, "book/results/teaching/finetune.json") == (
        "python -m nullspace_utils.experiments merge finetune parts/lim2-s0.json parts/untuned.json "
        "--out book/results/teaching/finetune.json")
    assert results.shown_command("run --weights /tmp/sw/sweep/finetune --out /tmp/sw/c.json") == (
        "run --weights sweep/finetune --out c.json")  # relative to the run's folder, without a place
    assert results.shown_command("run --profile teaching --n 8") == "run --profile teaching --n 8"  # no path: as typed
    for path in COMMITTED:
        note = KINDS[path.stem].chapter_result(path.parent.name).note
        assert not any(root in note for root in ("/tmp", "/root", "/home")), note


# --------------------------------------------------------------------------- schemas
def test_a_result_kind_knows_its_file_and_command():
    assert KINDS["watermark_slsqp"].path("teaching") == "book/results/teaching/watermark_slsqp.json"
    assert KINDS["watermark_slsqp"].command == "watermark-slsqp"
    assert KINDS["robustness"].path("imagenet") == results.result_file("robustness", "imagenet")


def test_a_damaged_file_names_the_file_the_key_and_the_fix(tmp_path, monkeypatch):
    relative = "book/results/teaching/robustness.json"
    copy = _checkout_with(tmp_path, relative)
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)
    data = json.loads(copy.read_text())
    del data["check"]["result"]["seeds"][0]["learned"]["match"]
    copy.write_text(json.dumps(data))
    robustness = KINDS["robustness"]
    with pytest.raises(results.ResultFileError) as error:
        robustness.read(relative)
    message = str(error.value)
    assert message.startswith(f"{relative} is not a valid robustness result")
    assert 'missing key "match" in ["check"]["result"]["seeds"][0]["learned"]' in message
    assert f"git checkout -- {relative}" in message
    assert "python -m nullspace_utils.experiments robustness --profile teaching" in message

    del data["check"]
    copy.write_text(json.dumps(data))
    with pytest.raises(results.ResultFileError, match='missing key "check" at the top level'):
        robustness.read(relative)
    copy.write_text(json.dumps(data)[:-100])  # cut short
    with pytest.raises(results.ResultFileError, match=f"{relative} is not valid JSON"):
        robustness.read(relative)


def test_a_mistyped_value_is_named_with_what_was_found(tmp_path, monkeypatch):
    relative = "book/results/teaching/watermark.json"
    copy = _checkout_with(tmp_path, relative)
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)
    data = json.loads(copy.read_text())
    data["models"]["zoo-vit-s"]["seconds"] = "4.8"
    copy.write_text(json.dumps(data))
    expected = '["models"]["zoo-vit-s"]["seconds"] should be a number, found a string ("4.8")'
    with pytest.raises(results.ResultFileError, match=re.escape(expected)):
        KINDS["watermark"].read(relative)
    assert results.read(relative, text=True) == copy.read_text()  # the text is not a result: not checked
    assert results.read(relative)["models"]["zoo-vit-s"]["seconds"] == "4.8"  # plain JSON: not checked


def test_json_types_follow_the_schema():
    data = results.read("book/results/teaching/fingerprint.json")
    data["suspects"]["owner"]["logits"][0]["median_change"] = None  # allowed: no probe gave a change
    data["config"]["amplitude"] = 1  # an integer is a number
    data["provenance"]["commit_note"] = "a note"  # optional keys, and keys the schema does not name
    data["extra"] = {"anything": [1, "two"]}
    fingerprint = KINDS["fingerprint"]
    assert fingerprint.validate(data) is data  # returned as it was (no key dropped, nothing coerced)
    broken = json.loads(json.dumps(data))
    broken["check"]["result"]["kept"] = 1.5
    with pytest.raises(results.ResultFileError,
                       match=re.escape('["check"]["result"]["kept"] should be an integer, found a number (1.5)')):
        fingerprint.validate(broken)
    broken = json.loads(json.dumps(data))
    broken["suspects"]["owner"]["derived"] = "yes"
    with pytest.raises(results.ResultFileError, match=r'\["derived"\] should be a boolean, found a string'):
        fingerprint.validate(broken)
    broken = json.loads(json.dumps(data))
    broken["suspects"]["owner"]["accuracy"] = True  # a boolean is not a number
    with pytest.raises(results.ResultFileError, match=r'\["accuracy"\] should be a number, found a boolean'):
        fingerprint.validate(broken)
    broken = json.loads(json.dumps(data))
    broken["suspects"]["owner"]["logits"] = {"0": {}}  # a list expected
    with pytest.raises(results.ResultFileError, match=r'\["logits"\] should be a list, found an object'):
        fingerprint.validate(broken)
    with pytest.raises(results.ResultFileError, match="the whole result should be an object, found a list"):
        KINDS["watermark"].validate([])
    broken = json.loads(json.dumps(data))
    broken["config"]["n_probes"] = "16"  # strict: a number in a string is not coerced
    with pytest.raises(results.ResultFileError, match=r'\["n_probes"\] should be an integer, found a string'):
        fingerprint.validate(broken)


# --------------------------------------------------------------------------- write
def test_write_checks_the_result_and_writes_it_all_at_once(tmp_path):
    slsqp = KINDS["watermark_slsqp"]
    result = results.read("book/results/teaching/watermark_slsqp.json")
    path = slsqp.write(tmp_path / "book" / "results" / "teaching" / "watermark_slsqp.json", result)
    assert json.loads(path.read_text()) == result  # the folder was made; the same data comes back

    broken = {key: value for key, value in result.items() if key != "predictions"}
    with pytest.raises(results.ResultFileError, match='missing key "predictions".*Nothing was written'):
        slsqp.write(path, broken)
    assert json.loads(path.read_text()) == result  # the file that was there is untouched
    elsewhere = tmp_path / "out.json"
    with pytest.raises(results.ResultFileError):
        slsqp.write(elsewhere, broken)
    assert not elsewhere.exists() and list(tmp_path.iterdir()) == [tmp_path / "book"]  # no partial file either

    with_tuples = {**result, "predictions": dict(result["predictions"]), "extra": (1, 2)}
    assert json.loads(slsqp.write(elsewhere, with_tuples).read_text())["extra"] == [1, 2]
    assert results.write_json(tmp_path / "notes.json", {"free": "form"}).is_file()  # plain JSON: no schema


def test_partial_results_are_written_unchecked_and_refused_on_reading(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)
    rows_so_far = {"provenance": results.provenance("python -m nullspace_utils.experiments robustness", {}),
                   "profile": "teaching", "encoder": {}}
    results.write_partial(tmp_path / results.result_file("robustness", "teaching"), rows_so_far)
    with pytest.raises(results.ResultFileError, match='missing key "config" at the top level.*cut short'):
        KINDS["robustness"].read(results.result_file("robustness", "teaching"))


# --------------------------------------------------------------------------- provenance
def test_provenance_records_command_settings_versions_device_and_commit():
    import platform

    import numpy
    import timm
    import torch

    made = results.provenance("python -m nullspace_utils.experiments watermark --n 8", {"n": 8, "profile": "teaching"})
    assert made["command"] == "python -m nullspace_utils.experiments watermark --n 8"
    assert made["config"] == {"n": 8, "profile": "teaching"} and made["device"] == "cpu"
    assert (made["torch"], made["timm"], made["numpy"], made["python"]) == (
        torch.__version__, timm.__version__, numpy.__version__, platform.python_version())
    assert made["commit"] == files.git_commit() and re.fullmatch(r"[0-9a-f]{40}", made["commit"])
    committed = results.read("book/results/teaching/watermark.json")
    KINDS["watermark"].validate({**committed, "provenance": made})  # a new record fits the schema
    assert set(committed["provenance"]) - {"commit_note"} <= set(made)  # and has every key older files have


def test_git_commit_outside_a_checkout(tmp_path):
    assert files.git_commit(tmp_path) == "unknown"


# --------------------------------------------------------------------------- read and chapters
def test_read_the_checkout_and_text():
    assert results.read("book/results/teaching/watermark.json")["profile"] == "teaching"
    assert results.read("_toc.yml", text=True).startswith("format: jb-book")


def test_read_offline_and_missing(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    with pytest.raises(FileNotFoundError, match="could not be fetched"):
        results.read("book/results/teaching/missing.json")
    assert results.read("book/results/imagenet/robustness.json", missing_ok=True) is None  # in a checkout
    monkeypatch.setattr(urllib.request, "urlopen", _not_found)
    assert results.read("book/results/imagenet/robustness.json", missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match="not in the repository"):
        results.read("book/results/imagenet/robustness.json")


def test_read_fetches_from_github_outside_a_checkout_and_validates(tmp_path, monkeypatch):
    committed = (results.RESULTS / "teaching" / "robustness.json").read_bytes()
    asked = []

    class Response:
        def __init__(self, content):
            self.content = content

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.content

    def github(url, *args, **kwargs):
        asked.append(url)
        return Response(committed)

    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)  # no checkout here
    monkeypatch.setattr(urllib.request, "urlopen", github)
    assert KINDS["robustness"].read("book/results/teaching/robustness.json") == json.loads(committed)
    assert asked == [results.RAW_URL + "book/results/teaching/robustness.json"]
    committed = committed.replace(b'"check"', b'"chekc"')  # GitHub's copy damaged: refused as well
    with pytest.raises(results.ResultFileError, match='missing key "check"'):
        KINDS["robustness"].read("book/results/teaching/robustness.json")


def test_chapter_result_gives_the_result_and_the_note_to_print(monkeypatch, capsys):
    found = results.chapter_result(KINDS["robustness"], "teaching")
    assert found.result["profile"] == "teaching"
    assert found.note == results.describe_provenance(found.result, "book/results/teaching/robustness.json")
    assert found.note.startswith("made by: python -m nullspace_utils") and capsys.readouterr().out == ""

    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    sweep, note = results.chapter_result(KINDS["robustness"], "imagenet")  # offline in a checkout: not made
    assert sweep is None and note == results.how_to_produce("robustness", "imagenet")
    assert note.startswith("No results of the 'imagenet' profile")
    assert "python -m nullspace_utils.experiments robustness --profile imagenet --device cuda" in note
    assert "Produce them with" in KINDS["watermark_slsqp"].chapter_result("imagenet", device=None).note

    # the library installed without the repository (Colab, pip) and offline: unknown, and said so
    monkeypatch.setattr(results, "REPOSITORY_ROOT", results.REPOSITORY_ROOT / "no-checkout-here")
    sweep, note = results.chapter_result(KINDS["robustness"], "teaching")
    assert sweep is None and "could not be fetched" in note and "No results" not in note
    assert "python -m nullspace_utils.experiments robustness --profile teaching" in note
    monkeypatch.undo()

    monkeypatch.setattr(urllib.request, "urlopen", _not_found)
    sweep, note = results.chapter_result(KINDS["robustness"], "imagenet")  # GitHub says: not made yet
    assert sweep is None and note.startswith("No results of the 'imagenet' profile")
    assert capsys.readouterr().out == ""  # the library prints nothing: the chapter prints the note


# --------------------------------------------------------------------------- numbers and damage (#32 item 6)
@pytest.mark.parametrize("value, said", [(float("nan"), "should be a finite number, found nan"),
                                         (float("inf"), "should be a finite number, found inf"),
                                         (7.5, "should be less than or equal to 1, found a number (7.5)"),
                                         (-0.25, "should be greater than or equal to 0")])
def test_non_finite_and_out_of_range_numbers_are_refused(tmp_path, value, said):
    data = json.loads((results.RESULTS / "teaching" / "robustness.json").read_text())
    data["check"]["result"]["seeds"][0]["learned"]["match"] = value  # a match is a fraction: [0, 1]
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(data))  # Python writes NaN and Infinity, which JSON does not have
    where = '["check"]["result"]["seeds"][0]["learned"]["match"] '
    with pytest.raises(results.ResultFileError, match=re.escape(where + said)):
        KINDS["robustness"].load(path)
    with pytest.raises(results.ResultFileError, match="Nothing was written"):
        KINDS["robustness"].write(tmp_path / "out.json", data)
    assert not (tmp_path / "out.json").exists()


def test_binary_garbage_and_deep_nesting_are_refused_in_one_line(tmp_path, monkeypatch):
    relative = "book/results/teaching/garbage.json"
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    (tmp_path / "book/results/teaching").mkdir(parents=True)
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)
    (tmp_path / relative).write_bytes(bytes(range(256)) * 4)
    with pytest.raises(results.ResultFileError, match=f"{relative} is binary, not text") as error:
        results.read(relative)
    assert "\n" not in str(error.value)
    with pytest.raises(results.ResultFileError, match="binary, not text"):
        KINDS["robustness"].load(tmp_path / relative)
    (tmp_path / relative).write_text("[" * 100_000 + "]" * 100_000)  # Python's parser recurses: RecursionError
    with pytest.raises(results.ResultFileError, match="nests deeper than JSON can be read") as error:
        KINDS["robustness"].read(relative)
    assert "\n" not in str(error.value)
    nested: list = []
    for _ in range(results.MAX_DEPTH + 5):
        nested = [nested]
    with pytest.raises(results.ResultFileError, match=f"nests more than {results.MAX_DEPTH} levels deep"):
        KINDS["robustness"].validate({"provenance": nested})
