import tempfile
from dataclasses import dataclass
from pathlib import Path

from nullspace_utils.studies import common


@dataclass(frozen=True)
class TinySettings:
    lims: tuple[float, ...] = (0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)


assert common.settings_dict(TinySettings()) == {"lims": [0.5, 1.0], "seeds": [0, 1, 2]}  # as a result stores it
assert common.chosen_models(None, ("a", "b")) == ("a", "b") and common.chosen_models(["b"], ("a", "b")) == ("b",)
try:
    common.chosen_models(["c"], ("a", "b"))
except common.StudyError as error:  # a request a runner cannot honour; the command line shows it as usage error
    assert "c not among this sweep's models a, b" in str(error)
else:
    raise AssertionError("an unknown model was accepted")
assert common.json_arguments({"out": Path("x.json"), "n": 4}) == {"out": "x.json", "n": 4}

with tempfile.TemporaryDirectory() as folder:
    how = common.Run(device="cpu", out=Path(folder) / "part.json", command="python my_run.py", arguments={"n": 4})
    made = how.provenance()  # command, arguments, versions, commit, device, date
    assert made["command"] == "python my_run.py" and made["config"] == {"n": 4} and made["device"] == "cpu"
    parts = [{"provenance": made, "profile": "teaching", "config": {"lims": [1]}, "rows": {name: [name]}}
             for name in ("b", "a")]
    joined = common.join_parts(parts, ("rows",), ("a", "b"), how)  # one result, each table in the given order
    assert list(joined["rows"]) == ["a", "b"] and joined["parts"] == [made, made]
    how.save_partial(joined)  # a run's rows so far, unchecked
    assert how.out is not None and how.out.is_file()
