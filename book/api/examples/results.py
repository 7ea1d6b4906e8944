import json
import tempfile
from pathlib import Path

from nullspace_utils import results

assert results.result_file("watermark-slsqp", "teaching") == "book/results/teaching/watermark_slsqp.json"
assert results.kind_of("book/results/teaching/robustness.json") == "robustness"  # the kind names the schema
assert results.kind_of("benchmarks/results/watermark_cpu.json") is None  # no schema: read as it is
sweep: results.RobustnessResult = results.read("book/results/teaching/robustness.json")  # checkout, else GitHub
assert results.describe_provenance(sweep).startswith("made by: python -m nullspace_utils.experiments merge robustness")
fig2: results.ApproximateResult = results.read("book/results/teaching/approximate.json")  # validated on reading
evaluation: results.WatermarkResult = results.read("book/results/teaching/watermark.json")
assert fig2["config"]["lims"][0] == 0.5 and evaluation["models"]["zoo-vit-s"]["all"]["exact"]["match"] == 1.0

found = results.chapter_result("fingerprint", "teaching")  # a ChapterResult: the result, and the note to print
assert isinstance(found, results.ChapterResult) and found.note == results.describe_provenance(found.result)
fingerprints: results.FingerprintResult = found.result  # None, with a note saying why, when it cannot be had
assert fingerprints["owner"] == "zoo-vit-s"
note = results.how_to_produce("approximate", "imagenet")  # the note when a profile has no file yet
assert "python -m nullspace_utils.experiments approximate --profile imagenet --device cuda" in note

assert sorted(results.SCHEMAS) == ["approximate", "finetune", "finetune_corruptions", "fingerprint", "robustness",
                                  "watermark", "watermark_slsqp"]
tuned: results.FinetuneSweepResult = results.read("book/results/teaching/finetune.json")  # beyond the paper
corrupted: results.FinetuneCorruptionsResult = results.read("book/results/teaching/finetune_corruptions.json")
assert set(corrupted["models"]) == set(tuned["runs"]) and "untuned" in tuned["runs"]
early: results.WatermarkSlsqpResult = results.read("book/results/teaching/watermark_slsqp.json")
damaged = {key: value for key, value in early.items() if key != "predictions"}
try:
    results.validate("watermark_slsqp", damaged, source="my_copy.json")
except results.ResultFileError as error:  # names the file, the key and the fix
    assert str(error).startswith('my_copy.json is not a valid watermark_slsqp result: missing key "predictions"')
else:
    raise AssertionError("a result without predictions passed")

made: results.Provenance = results.provenance("python my_run.py --n 4", {"n": 4})  # command, config, versions...
assert made["commit"] == results.git_commit() and made["device"] == "cpu" and made["config"] == {"n": 4}
with tempfile.TemporaryDirectory() as folder:
    results.write_partial(Path(folder) / "early.json", {"provenance": made})  # a run's rows so far, unchecked
    path = results.write(Path(folder) / "early.json", {**early, "provenance": made}, kind="watermark_slsqp")
    assert json.loads(path.read_text())["provenance"]["command"] == "python my_run.py --n 4"
