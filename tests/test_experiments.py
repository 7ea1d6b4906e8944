"""The command line's runners: they write result files the chapters can read (checked by their schemas, with
their provenance), and the committed files' cheap check points still come out of this code."""

import json
import logging

import pytest

from nullspace_utils import approximate, experiments, metrics, models, results
from nullspace_utils.data import stack_dataset


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


def _recompute_check(committed_check: dict, model, train, val) -> None:
    """Recompute a sweep's check point on the CPU and compare it with the committed one, seed by seed."""
    import torch

    from nullspace_utils import experiments as runners

    torch.manual_seed(0)
    point = runners._check_point(model, train, val, committed_check, committed_check.get("level", "encoder"), "cpu")
    for got, expected in zip(point["seeds"], committed_check["result"]["seeds"], strict=True):
        assert got["initial_norm"] == pytest.approx(expected["initial_norm"], rel=1e-6)
        assert got["final_norm"] == pytest.approx(expected["final_norm"], rel=1e-3)
        assert got["train_loss"]["learned"] == pytest.approx(expected["train_loss"]["learned"], rel=0.02)
        for key in ("learned", "shuffled", "uniform"):
            assert abs(got[key]["match"] - expected[key]["match"]) <= 1 / committed_check["val"] + 1e-9
            assert got[key]["logit_mse"] == pytest.approx(expected[key]["logit_mse"], rel=0.02)


def _sweep_is_sound(committed: dict, tables: dict[str, list[str]]) -> None:
    """What the chapters rely on, for every row of a committed sweep: the configured lims first, extended only
    while uniform noise still kept half the predictions; every seed present; each chosen rate the lowest-scoring
    of its probe; and "learning failed" exactly when a seed's learned noise lost to its shuffled copy on the
    training loss or the rate sat at the edge of its grid."""
    config = committed["config"]
    for table, names in tables.items():
        for name in names:
            rows = committed[table][name]
            lims = [row["lim"] for row in rows]
            assert lims[: len(config["lims"])] == list(config["lims"])
            for before, after in zip(rows[len(config["lims"]) - 1:-1], rows[len(config["lims"]):], strict=True):
                assert after["lim"] == pytest.approx(before["lim"] * config["extend_factor"])
                uniform = approximate.seed_values(before, "uniform")
                assert sum(uniform) / len(uniform) >= config["extend_until"]
            for row in rows:
                assert [entry["seed"] for entry in row["seeds"]] == list(config["seeds"])
                choice = row["lr_choice"]
                if choice is not None:
                    assert choice["scores"][str(choice["lr"])] == min(choice["scores"].values()) and row["lr"] == choice["lr"]
                flags = [entry["learning_failed"] for entry in row["seeds"]]
                assert flags == [entry["learning_failed"] for entry in approximate.judge_learning(
                    json.loads(json.dumps(row)))["seeds"]]  # the stored flags follow the library's rule
                assert row["learning_failed"] == (any(flags) or bool(choice and choice["at_edge"]))


def test_committed_approximate_sweep_matches_a_recomputed_point():
    """Recompute the sweep's cheap check point on the CPU: the committed numbers must come from this code."""
    committed, check, profile, train, val = _committed_check("approximate", experiments.APPROXIMATE_CHECK)
    assert committed["config"] == json.loads(json.dumps(experiments.APPROXIMATE_CONFIG["teaching"]))
    _recompute_check(check, profile.load_model(profile.vit_models[check["model_index"]]), train, val)
    _sweep_is_sound(committed, {"models": list(profile.vit_models)})
    first = profile.vit_models[0]
    assert [row["lim"] for row in committed["keep_norm"][first]] == [row["lim"] for row in committed["models"][first]]
    assert all(entry["final_norm"] == pytest.approx(entry["initial_norm"], rel=1e-4)
               for row in committed["keep_norm"][first] for entry in row["seeds"])
    assert all(row["loss"] == "squared" for row in committed["squared_loss"][first])


def test_steps_override_scales_the_lr_milestones():
    import argparse

    args = argparse.Namespace(profile="teaching", steps=400, device="cpu")
    check = {**experiments.ROBUSTNESS_CHECK, "train": 4, "val": 4}
    configs = {"teaching": {**experiments.ROBUSTNESS_CONFIG["teaching"], "train": 4, "val": 4}}
    _, config, _ = experiments._sweep_setup(args, configs, check)
    base = experiments.ROBUSTNESS_CONFIG["teaching"]
    assert config["steps"] == 400
    assert list(config["milestones"]) == [m * 400 // base["steps"] for m in base["milestones"]]


_TINY = {"lims": (0.1,), "extend_until": 0.5, "extend_factor": 2.0, "max_extensions": 1, "seeds": (0, 1), "steps": 2,
         "milestones": (1,), "batch_size": 8, "probe_steps": 2, "lr_grid": (0.1, 1.0, 10.0), "train": 16, "val": 16}


def test_robustness_runner_in_parts_and_merged_end_to_end_tiny(tmp_path, monkeypatch, caplog):
    """The Fig. 3 runner on a tiny setting, run as two parallel parts (--models) joined by `merge`: every model is
    there with every seed, the transfer tables are computed from the parts' noises, progress is logged, and the
    provenance records the parts and the arguments."""
    monkeypatch.setitem(experiments.ROBUSTNESS_CONFIG, "teaching", {**_TINY, "transfer_lims": (0.1,)})
    monkeypatch.setattr(experiments, "ROBUSTNESS_CHECK", {**experiments.ROBUSTNESS_CHECK, "train": 8, "val": 8})
    from nullspace_utils.profiles import get_profile

    profile = get_profile("teaching")
    parts = [tmp_path / "vits.json", tmp_path / "cnns.json"]
    with caplog.at_level(logging.INFO, logger="nullspace_utils.experiments"):
        for part, names in zip(parts, (profile.vit_models, profile.cnn_models), strict=True):
            experiments.main(["robustness", "--device", "cpu", "--models", *names, "--out", str(part)])
        out = tmp_path / "robustness.json"
        experiments.main(["merge", "robustness", *map(str, parts), "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert list(result["input"]) == list(profile.models)  # the profile's order
    assert all(len(row["seeds"]) == 2 for rows in result["input"].values() for row in rows)
    table = result["transfer"]["0.1"]
    assert set(table) == set(profile.models) and all(set(row) == set(profile.models) for row in table.values())
    # the diagonal is each model's own seed-0 learned input noise, evaluated again
    assert all(table[name][name] == result["input"][name][0]["seeds"][0]["learned"]["match"] for name in profile.models)
    assert result["exact_transfer"]["0.1"][profile.vit_models[0]] == 1.0
    assert [part["config"]["models"] for part in result["parts"]] == [list(profile.vit_models), list(profile.cnn_models)]
    assert result["provenance"]["config"]["parts"] == list(map(str, parts))
    results.validate("robustness", result)
    progress = [record.getMessage() for record in caplog.records if record.name == "nullspace_utils.experiments"]
    assert progress[-1] == f"wrote {out}"
    with pytest.raises(SystemExit, match="not among"):
        experiments.main(["robustness", "--device", "cpu", "--models", "zoo-vit-xl", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="no part has"):
        experiments.main(["merge", "robustness", str(parts[0]), "--device", "cpu", "--out", str(tmp_path / "y.json")])


def test_committed_robustness_sweep_matches_a_recomputed_point():
    """Recompute the robustness sweep's cheap check point on the CPU against the committed file."""
    committed, check, profile, train, val = _committed_check("robustness", experiments.ROBUSTNESS_CHECK)
    assert committed["config"] == json.loads(json.dumps(experiments.ROBUSTNESS_CONFIG["teaching"]))
    _recompute_check(check, profile.load_model(profile.cnn_models[check["cnn_index"]]), train, val)
    _sweep_is_sound(committed, {"input": list(profile.models)})
    for lim in committed["config"]["transfer_lims"]:
        assert committed["exact_transfer"][str(lim)][profile.vit_models[0]] == 1.0
        assert set(committed["transfer"][str(lim)]) == set(profile.models)
    for rows in (committed["input"][name] for name in profile.vit_models):  # the exact-nullspace baselines
        assert all(entry["projected"]["match"] == 1.0 for row in rows for entry in row["seeds"])


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


def _tiny_finetune():
    """A fine-tuning sweep of a few steps on 16 teaching images, and a check run of two steps on 8."""
    import dataclasses

    from nullspace_utils.studies import finetune as finetune_study

    match = finetune_study.MatchSettings(seeds=(0,), steps=2, milestones=(1,), batch_size=8, probe_steps=2,
                                         lr_grid=(0.1, 1.0, 10.0), train=16, val=16)
    settings = dataclasses.replace(
        finetune_study.SETTINGS["teaching"], seeds=(0, 1), lims=(4.0,), steps=4, batch_size=8, rounds=2,
        noise_steps=2, noise_milestones=(), noise_images=8, noise_batch_size=8, probe_steps=2, train=16, val=16,
        attack_images=8, pgd_epsilons=(1 / 255,), pgd_steps=2, match_lims=(4.0,), match=match, exact_lims=(0.25,),
        corruption_images=8, history_every=2)
    return settings, dataclasses.replace(finetune_study.CHECK, train=8, val=8, steps=2, noise_steps=2)


def test_finetune_runner_in_parts_merged_and_corrupted_end_to_end_tiny(tmp_path):
    """The fine-tuning sweep on a tiny setting, as two parts joined by `merge`, then its -C pass: every model is
    there once, in a fixed order, with saved weights that reload to the judged model; the Gaussian run's noise has
    the energy of the nullspace run of its seed, round by round; the untuned model keeps every prediction under
    its own exact nullspace noise and has no run; the -C file covers every model and cell."""
    pytest.importorskip("torchattacks", reason="torchattacks is not installed: `make install` installs it")
    pytest.importorskip("imagecorruptions", reason="imagecorruptions is not installed: `make install` installs it")
    from nullspace_utils.profiles import get_profile
    from nullspace_utils.studies import common
    from nullspace_utils.studies import finetune as finetune_study

    profile = get_profile("teaching")
    settings, check = _tiny_finetune()
    weights = tmp_path / "weights"
    first = common.Run(device="cpu", out=tmp_path / "a.json", command="tiny part a")
    parts = [finetune_study.run(settings, profile, first, seeds=[0], lims=[4.0],
                                methods=["untuned", "nullspace", "gaussian"], weights=weights, check=check),
             finetune_study.run(settings, profile, common.Run(device="cpu"), seeds=[1], methods=["plain"],
                                weights=weights, check=check)]
    assert list(json.loads((tmp_path / "a.json").read_text())["runs"]) == list(parts[0]["runs"])  # saved as it went
    result = finetune_study.merge(parts, common.Run(device="cpu", command="tiny merge"))
    finetune_study.RESULT.validate(json.loads(json.dumps(result)))
    assert result["config"] == common.settings_dict(settings) and len(result["parts"]) == 2
    assert list(result["runs"]) == ["untuned", "gaussian-lim4-s0", "nullspace-lim4-s0", "plain-s1"]
    untuned = result["runs"]["untuned"]
    assert untuned["weights"] is None and "run" not in untuned and untuned["exact"]["0.25"] == 1.0
    noisy, gaussian = result["runs"]["nullspace-lim4-s0"], result["runs"]["gaussian-lim4-s0"]
    assert [r["rms"] for r in gaussian["run"]["rounds"]] == pytest.approx([r["rms"] for r in noisy["run"]["rounds"]],
                                                                        rel=1e-5)
    assert result["runs"]["plain-s1"]["run"]["rounds"] == []
    images, labels = stack_dataset(profile.dataset("val", n=16))
    reloaded = models.load_model("zoo-vit-s", weights=weights / noisy["weights"])
    assert metrics.accuracy(reloaded, images, labels) == noisy["clean"]
    with pytest.raises(common.StudyError, match="gaussian matches"):
        finetune_study.run(settings, profile, common.Run(device="cpu"), methods=["gaussian"], weights=weights)
    with pytest.raises(common.StudyError, match="two parts"):
        finetune_study.merge([parts[0], parts[0]], common.Run(device="cpu"))
    table = finetune_study.run_corruptions(result, profile, common.Run(device="cpu"), weights=weights, check=check)
    finetune_study.CORRUPTIONS_RESULT.validate(json.loads(json.dumps(table)))
    assert list(table["models"]) == list(result["runs"])
    assert all(len(row["per_severity"]) == 11 and all(len(cells) == 5 for cells in row["per_severity"].values())
               for row in table["models"].values())
    assert table["check"]["images"] == check.val


def test_finetune_yardsticks_get_float_images_and_model_classes():
    """Under the imagenet profile, tensor_dataset keeps ImageNette as uint8 and labels 0..9: the fine-tuning
    runner hands the yardsticks floats in [0, 1] and the 1000-way model's class indices."""
    import torch
    from torch.utils.data import TensorDataset

    from nullspace_utils.profiles import get_profile
    from nullspace_utils.studies import finetune as finetune_study

    images = torch.tensor([[[[0, 255]]], [[[51, 102]]]], dtype=torch.uint8).expand(2, 3, 1, 2)
    labels = torch.tensor([0, 9])
    imagenet = get_profile("imagenet")
    mapped = finetune_study.mapped_labels(imagenet, TensorDataset(images, labels), as_float=True)
    assert mapped.tensors[0].dtype == torch.float32 and mapped.tensors[0].max() == 1.0
    assert mapped.tensors[1].tolist() == [imagenet.label_indices[0], imagenet.label_indices[9]]
    kept = finetune_study.mapped_labels(get_profile("teaching"), TensorDataset(images, labels))
    assert kept.tensors[0].dtype == torch.uint8 and kept.tensors[1].tolist() == [0, 9]
