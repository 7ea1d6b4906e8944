"""The command line's runners: they write result files the chapters can read (checked by their schemas, with
their provenance), and the committed files' cheap check points still come out of this code."""

import json
import logging

import pytest

from nullspace_utils import approximate, experiments, results


def test_main_refuses_to_write_a_result_that_fails_its_schema(tmp_path, monkeypatch):
    """The runner's result goes through results.write with the experiment's kind: a result the chapter could
    not read is not written (and an older file at --out stays)."""
    committed = results.read("book/results/teaching/watermark_slsqp.json")
    out = tmp_path / "early.json"
    out.write_text("the file that was there\n")

    def runner(args, command):
        return {key: value for key, value in committed.items() if key != "predictions"}

    monkeypatch.setitem(experiments.RUNNERS, "watermark-slsqp", runner)
    with pytest.raises(results.ResultFileError, match='missing key "predictions"'):
        experiments.main(["watermark-slsqp", "--out", str(out)])
    assert out.read_text() == "the file that was there\n"
    monkeypatch.setitem(experiments.RUNNERS, "watermark-slsqp", lambda args, command: committed)
    experiments.main(["watermark-slsqp", "--out", str(out)])
    assert json.loads(out.read_text()) == committed


def _committed_check(experiment: str, expected_check: dict):
    """A committed teaching sweep, its check point (which must be the code's current one), and the check
    point's train and val images rendered again: what an honesty test recomputes from."""
    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import get_profile

    committed = results.read(results.result_file(experiment, "teaching"))
    check = committed["check"]
    assert {k: v for k, v in check.items() if k != "result"} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in expected_check.items()}
    profile = get_profile("teaching")
    train = TensorDataset(*stack_dataset(profile.dataset("train", n=check["train"])))
    val = TensorDataset(*stack_dataset(profile.dataset("val", n=check["val"])))
    return committed, check, profile, train, val


def test_committed_approximate_sweep_matches_a_recomputed_point():
    """Recompute the sweep's cheap check point on the CPU: the committed numbers must come from this code."""
    import torch

    committed, check, profile, train, val = _committed_check("approximate", experiments.APPROXIMATE_CHECK)
    model = profile.load_model(profile.vit_models[check["model_index"]])
    torch.manual_seed(0)
    point = approximate.approximate_point(model, train, val, lim=check["lim"], keep_norm=False, steps=check["steps"],
                                          batch_size=check["batch_size"], lr=check["lr"],
                                          milestones=tuple(check["milestones"]), device="cpu")
    expected = check["result"]
    assert point["initial_norm"] == pytest.approx(expected["initial_norm"], rel=1e-6)
    assert point["final_norm"] == pytest.approx(expected["final_norm"], rel=1e-3)
    for key in ("learned", "shuffled"):
        assert abs(point[key]["match"] - expected[key]["match"]) <= 1 / check["val"] + 1e-9
        assert point[key]["logit_mse"] == pytest.approx(expected[key]["logit_mse"], rel=0.02)
    # and the sweep itself has the shape the chapter plots
    config = committed["config"]
    for name in profile.vit_models:
        assert [row["lim"] for row in committed["models"][name]] == list(config["lims"])
    assert all(row["final_norm"] == pytest.approx(row["initial_norm"], rel=1e-4)
               for row in committed["keep_norm"][profile.vit_models[0]])


def test_steps_override_scales_the_lr_milestones():
    import argparse

    args = argparse.Namespace(profile="teaching", steps=400, device="cpu")
    check = {**experiments.ROBUSTNESS_CHECK, "train": 4, "val": 4}
    configs = {"teaching": {**experiments.ROBUSTNESS_CONFIG["teaching"], "train": 4, "val": 4}}
    _, config, _ = experiments._sweep_setup(args, configs, check)
    base = experiments.ROBUSTNESS_CONFIG["teaching"]
    assert config["steps"] == 400
    assert list(config["milestones"]) == [m * 400 // base["steps"] for m in base["milestones"]]


def test_robustness_runner_end_to_end_tiny(tmp_path, monkeypatch, caplog):
    """The Fig. 3 runner on a tiny setting (1 lim, 2 steps, 16 images): every panel is filled in, progress
    is logged, and the provenance records the arguments the run used."""
    tiny = {"lims": (0.1,), "steps": 2, "milestones": (1,), "lrs": {"encoder": (1.0,), "input": (0.01, 0.1)},
            "probe_steps": 2, "batch_size": 8, "train": 16, "val": 16}
    monkeypatch.setitem(experiments.ROBUSTNESS_CONFIG, "teaching", tiny)
    monkeypatch.setattr(experiments, "ROBUSTNESS_CHECK", {**experiments.ROBUSTNESS_CHECK, "train": 8, "val": 8})
    out = tmp_path / "robustness.json"
    with caplog.at_level(logging.INFO, logger="nullspace_utils.experiments"):
        experiments.main(["robustness", "--profile", "teaching", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    from nullspace_utils.profiles import get_profile

    profile = get_profile("teaching")
    assert set(result["input"]) == set(profile.models) and set(result["encoder"]) == set(profile.vit_models)
    assert set(result["transfer"]["0.1"]) == set(profile.models)
    assert all(set(row) == set(profile.models) for row in result["transfer"]["0.1"].values())
    # the diagonal is each model's own learned input noise, evaluated again
    assert all(result["transfer"]["0.1"][name][name] == result["input"][name][0]["learned"]["match"]
               for name in profile.models)
    assert result["exact_transfer"]["0.1"][profile.vit_models[0]] == 1.0
    # every input row carries the rate its probe chose, and that rate has the lowest probe loss
    for rows in result["input"].values():
        probe = rows[0]["lr_probe"]
        assert set(probe) == {"0.01", "0.1"} and probe[str(rows[0]["lr"])] == min(probe.values())
    # the check point is evaluated on the 8 check images: its match is a count of them
    match = result["check"]["result"]["learned"]["match"]
    assert 0 <= match <= 1 and abs(match * 8 - round(match * 8)) < 1e-9
    assert result["provenance"]["command"].endswith(str(out))
    assert result["provenance"]["config"] == {"experiment": "robustness", "profile": "teaching", "device": "cpu",
                                              "steps": None, "out": str(out)}
    results.validate("robustness", result)
    progress = [record.getMessage() for record in caplog.records if record.name == "nullspace_utils.experiments"]
    assert any(message.startswith("zoo-mobilenetv3 input 0.1 lr ") for message in progress)
    assert progress[-1] == f"wrote {out}"


def test_committed_robustness_sweep_matches_a_recomputed_point():
    """Recompute the robustness sweep's cheap check point on the CPU against the committed file."""
    import torch

    from nullspace_utils import robustness

    committed, check, profile, train, val = _committed_check("robustness", experiments.ROBUSTNESS_CHECK)
    torch.manual_seed(0)
    row, _ = robustness.robustness_point(profile.load_model(profile.cnn_models[check["cnn_index"]]), train, val,
                                         level=check["level"],
                                         lim=check["lim"], steps=check["steps"], lr=check["lr"],
                                         milestones=tuple(check["milestones"]), batch_size=check["batch_size"])
    expected = check["result"]
    assert row["final_norm"] == pytest.approx(expected["final_norm"], rel=1e-3)
    for kind in ("learned", "shuffled", "uniform"):
        assert abs(row[kind]["match"] - expected[kind]["match"]) <= 1 / check["val"] + 1e-9
        assert row[kind]["logit_mse"] == pytest.approx(expected[kind]["logit_mse"], rel=0.02)
    # every panel has every model and lim the chapter plots
    lims = list(committed["config"]["lims"])
    assert all([row["lim"] for row in committed["input"][name]] == lims for name in profile.models)
    assert all([row["lim"] for row in committed["encoder"][name]] == lims for name in profile.vit_models)
    assert all(committed["exact_transfer"][str(lim)][profile.vit_models[0]] == 1.0 for lim in lims)
    # each row's rate is the one its probe scored lowest
    for level in ("encoder", "input"):
        for rows in committed[level].values():
            assert all(row["lr_probe"][str(row["lr"])] == min(row["lr_probe"].values()) for row in rows)


def test_committed_fingerprint_results_match_a_recomputed_point():
    """Recompute the fingerprint runner's check point (a copy fine-tuned for a few steps, logits access)."""
    from nullspace_utils import fingerprint as fp
    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import get_profile

    committed = results.read("book/results/teaching/fingerprint.json")
    config = committed["config"]
    assert config == json.loads(json.dumps(experiments.FINGERPRINT_CONFIG["teaching"]))
    assert {k: v for k, v in committed["check"].items() if k != "result"} == experiments.FINGERPRINT_CHECK
    profile = get_profile("teaching")
    owner = profile.load_model(profile.vit_models[0])
    val_images, _ = stack_dataset(profile.dataset("val", n=config["val"]))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=config["fine_tune"]["images"]))
    secret = fp.make_fingerprint(owner, n_probes=config["n_probes"], amplitude=config["amplitude"],
                                 seed=experiments.FINGERPRINT_CHECK["fingerprint_seed"], images=val_images)
    point = experiments.fingerprint_check(owner, secret, new_images, new_labels, config)
    expected = committed["check"]["result"]
    assert abs(point["kept"] - expected["kept"]) <= 1 and point["n"] == expected["n"]
    assert point["median_change"] == pytest.approx(expected["median_change"], rel=0.05)
    # the file's shape: every suspect with every output and fingerprint; the owner keeps every probe
    for entry in committed["suspects"].values():
        assert all(len(entry[output]) == config["fingerprints"] for output in fp.OUTPUTS)
    owner_points = [p for o in fp.OUTPUTS for p in committed["suspects"]["owner"][o]]
    assert all(p["kept"] == p["n"] and p["is_yours"] for p in owner_points)
    assert [row["step"] for row in committed["fade"]["all"]] == list(config["fine_tune"]["checkpoints"])


def test_fingerprint_runner_end_to_end_tiny(tmp_path, monkeypatch):
    """The fingerprint runner on a tiny setting writes every part the chapter reads, at the default path
    when no --out is given (here redirected to a temporary checkout root)."""
    tiny = {"n_probes": 4, "amplitude": 0.25, "fingerprints": 1, "tol": 1e-3, "bisection_steps": 4,
            "fine_tune": {"images": 16, "steps": 2, "batch_size": 8, "checkpoints": (0, 2),
                          "lr": {"all": 1e-4, "patch_embed": 1e-4, "head": 1e-3}},
            "sigmas": (0.0,), "val": 16}
    monkeypatch.setitem(experiments.FINGERPRINT_CONFIG, "teaching", tiny)
    monkeypatch.setattr(results, "REPOSITORY_ROOT", tmp_path)
    experiments.main(["fingerprint", "--profile", "teaching"])
    result = results.read(results.result_file("fingerprint", "teaching"))  # as the chapter reads it: validated
    assert result["provenance"]["device"] == "cpu" and result["provenance"]["config"]["experiment"] == "fingerprint"
    derived = [name for name, entry in result["suspects"].items() if entry["derived"]]
    assert derived == ["owner", "exact copy", "float16 copy", "int8 copy"]
    assert {"zoo-vit-s-seed1", "zoo-vit-b", "zoo-resnet"} <= set(result["suspects"]) - set(derived)
    owner = result["suspects"]["owner"]
    assert all(owner[output][0]["kept"] == owner[output][0]["n"] for output in ("logits", "probs", "label"))
    assert [row["step"] for row in result["fade"]["head"]] == [0, 2]
    assert set(result["fade"]["all"][0]) == {"step", "accuracy", "logits", "probs", "label"}
    assert result["defence"][0]["sigma"] == 0.0 and result["defence"][0]["logits"]["kept"] == 4
    assert result["check"]["result"]["n"] == 4
