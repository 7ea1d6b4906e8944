import json
import tempfile
from pathlib import Path

import pydantic

from nullspace_utils import files, results
from nullspace_utils.studies import fingerprint, robustness, watermark_paper

assert results.result_file("watermark-slsqp", "teaching") == "book/results/teaching/watermark_slsqp.json"
kind: results.ResultKind = robustness.RESULT  # a file's name, its schema (a TypedDict) and the command that makes it
assert kind.path("teaching") == "book/results/teaching/robustness.json" and kind.command == "robustness"
sweep = kind.read(kind.path("teaching"))  # checkout, else GitHub; checked against the schema by pydantic
assert results.describe_provenance(sweep).startswith("made by: python -m nullspace_utils.experiments merge robustness")
plain = results.read("book/results/teaching/robustness.json")  # plain JSON, not checked
assert plain == sweep
assert kind.load(results.RESULTS / "teaching" / "robustness.json") == sweep  # a file on disk, as a user names it

found = results.chapter_result(fingerprint.RESULT, "teaching")  # a ChapterResult: the result, and the note to print
assert found.note == results.describe_provenance(found.result, fingerprint.RESULT.path("teaching"))  # its place
assert isinstance(found, results.ChapterResult) and results.shown_command("run --out /data/x/y.json") == "run --out y.json"
assert found.result is not None and found.result["owner"] == "zoo-vit-s"  # None, with a note, when it cannot be had
assert isinstance(found.note, results.Note) and found.note.markdown.startswith(":::{admonition} How this was made")
cost = results.chapter_file("benchmarks/results/learned_noise_cost_gpu.json")  # any committed file, or None offline
assert cost.result is not None and "dropdown" in results.how_made_markdown(cost.result, "a.json")
assert results.unavailable_markdown("Not made yet.", "make it").startswith(":::{note}\nNot made yet.")
weights = "book/results/teaching/finetune/plain-s0.safetensors"  # a binary file a chapter recomputes from
digest = results.read("book/results/teaching/finetune.json")["runs"]["plain-s0"]["weights_sha256"]
assert results.committed_file(weights, digest).is_file()  # the checkout's, else fetched once into the cache
assert results.cache_folder().name == "repository" and not results.offline()  # NULLSPACE_OFFLINE=1: no fetching
assert results.OFFLINE_VARIABLE == "NULLSPACE_OFFLINE"
note = results.how_to_produce("approximate", "imagenet")  # the note when a profile has no file yet
assert "python -m nullspace_utils.experiments approximate --profile imagenet --device cuda" in note

early = results.read("book/results/teaching/watermark_slsqp.json")
damaged = {key: value for key, value in early.items() if key != "predictions"}
try:
    watermark_paper.RESULT.validate(damaged, source="my_copy.json")
except results.ResultFileError as error:  # names the file, the key and the fix
    assert str(error).startswith('my_copy.json is not a valid watermark_slsqp result: missing key "predictions"')
else:
    raise AssertionError("a result without predictions passed")

made: results.Provenance = results.provenance("python my_run.py --n 4", {"n": 4})  # command, config, versions...
assert made["commit"] == files.git_commit() and made["device"] == "cpu" and made["config"] == {"n": 4}
with tempfile.TemporaryDirectory() as folder:
    results.write_partial(Path(folder) / "early.json", {"provenance": made})  # a run's rows so far, unchecked
    path = watermark_paper.RESULT.write(Path(folder) / "early.json", {**early, "provenance": made})  # checked first
    assert json.loads(path.read_text())["provenance"]["command"] == "python my_run.py --n 4"
    assert results.write_json(Path(folder) / "notes.json", {"free": "form"}).is_file()  # any JSON, all at once
assert results.REPOSITORY_ROOT == files.REPOSITORY_ROOT and results.RESULTS == results.REPOSITORY_ROOT / "book" / "results"
assert results.RAW_URL.startswith("https://") and results.EXPERIMENTS_COMMAND == "python -m nullspace_utils.experiments"
fraction = pydantic.TypeAdapter(results.Fraction)  # a schema's match, accuracy or share: a number in [0, 1]
assert fraction.validate_python(0.96) == 0.96
try:
    fraction.validate_python(96.0)  # a percentage where a fraction belongs
except pydantic.ValidationError as error:
    assert "less than or equal to 1" in str(error)
else:
    raise AssertionError("a fraction above 1 is refused")
