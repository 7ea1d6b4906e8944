"""The command line's runners: they write result files the chapters can read (checked by their schemas, with
their provenance), and the committed files' cheap check points still come out of this code."""

import json

import pytest
import torch

from nullspace_utils import experiments, metrics, models, results
from nullspace_utils.data import stack_dataset
from nullspace_utils.studies import approximate as approximate_study
from nullspace_utils.studies import evidence, noise_sweep
from nullspace_utils.studies import robustness as robustness_study
from nullspace_utils.studies.common import Run, StudyError, settings_dict


def test_main_refuses_to_write_a_result_that_fails_its_schema(tmp_path, monkeypatch):
    """The runner's result goes through results.write with the experiment's kind: a result the chapter could
    not read is not written (and an older file at --out stays)."""
    committed = results.read("book/results/teaching/watermark_slsqp.json")
    out = tmp_path / "early.json"
    out.write_text("the file that was there\n")

    def runner(args, profile, how):
        return {key: value for key, value in committed.items() if key != "predictions"}

    kind = experiments.RUNNERS["watermark-slsqp"][1]
    monkeypatch.setitem(experiments.RUNNERS, "watermark-slsqp", (runner, kind))
    with pytest.raises(results.ResultFileError, match='missing key "predictions"'):
        experiments.main(["watermark-slsqp", "--out", str(out)])
    assert out.read_text() == "the file that was there\n"
    monkeypatch.setitem(experiments.RUNNERS, "watermark-slsqp", (lambda args, profile, how: committed, kind))
    experiments.main(["watermark-slsqp", "--out", str(out)])
    assert json.loads(out.read_text()) == committed


def test_merge_reads_the_parts_the_user_names_from_the_current_folder(tmp_path, monkeypatch, capsys):
    """A relative path given to `merge` is the user's file (from the current folder), never the repository's file
    of the same name; a missing or foreign part is a one-line usage error."""
    mine = json.loads((results.RESULTS / "teaching" / "approximate.json").read_text())
    mine["provenance"]["command"] = "my own run"
    part = tmp_path / "book" / "results" / "teaching" / "approximate.json"  # the repository's relative path
    part.parent.mkdir(parents=True)
    part.write_text(json.dumps(mine))
    monkeypatch.chdir(tmp_path)
    experiments.main(["merge", "approximate", "book/results/teaching/approximate.json", "--out", "merged.json"])
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert [made["command"] for made in merged["parts"]] == ["my own run"]
    assert merged["models"] == mine["models"]
    for parts, said in ((["missing.json"], "missing.json does not exist"),
                        ([str(results.RESULTS / "teaching" / "robustness.json")], "not a valid approximate result")):
        with pytest.raises(SystemExit) as stop:
            experiments.main(["merge", "approximate", *parts, "--out", "x.json"])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_request_a_study_cannot_honour_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        experiments.main(["approximate", "--device", "cpu", "--models", "zoo-vit-xl", "--out", str(tmp_path / "a.json")])
    assert stop.value.code == 2 and "zoo-vit-xl not among this sweep's models" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def _committed_check(kind, expected_check) -> tuple:
    """A committed teaching sweep, its check point (which must be the code's current one), and the check
    point's train and val images rendered again: what an honesty test recomputes from."""
    from torch.utils.data import TensorDataset

    from nullspace_utils.profiles import get_profile

    committed = kind.read(kind.path("teaching"))
    check = committed["check"]
    assert {k: v for k, v in check.items() if k != "result"} == settings_dict(expected_check)
    profile = get_profile("teaching")
    train = TensorDataset(*stack_dataset(profile.dataset("train", n=check["train"])))
    val = TensorDataset(*stack_dataset(profile.dataset("val", n=check["val"])))
    return committed, check, profile, train, val


def _recompute_check(committed_check: dict, model, train, val) -> None:
    """Recompute a sweep's check point on the CPU and compare it with the committed one, seed by seed."""
    import torch

    torch.manual_seed(0)
    point = noise_sweep.check_point(model, train, val, noise_sweep.CheckPoint.from_record(committed_check),
                                    committed_check.get("level", "encoder"), "cpu")
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
                uniform = evidence.seed_values(before, "uniform")
                assert sum(uniform) / len(uniform) >= config["extend_until"]
            for row in rows:
                assert [entry["seed"] for entry in row["seeds"]] == list(config["seeds"])
                choice = row["lr_choice"]
                if choice is not None:
                    assert choice["scores"][str(choice["lr"])] == min(choice["scores"].values()) and row["lr"] == choice["lr"]
                flags = [entry["learning_failed"] for entry in row["seeds"]]
                assert flags == [entry["learning_failed"] for entry in evidence.judge_learning(
                    json.loads(json.dumps(row)))["seeds"]]  # the stored flags follow the library's rule
                assert row["learning_failed"] == (any(flags) or bool(choice and choice["at_edge"]))


def test_committed_approximate_sweep_matches_a_recomputed_point():
    """Recompute the sweep's cheap check point on the CPU: the committed numbers must come from this code."""
    committed, check, profile, train, val = _committed_check(approximate_study.RESULT, approximate_study.CHECK)
    assert committed["config"] == settings_dict(approximate_study.SETTINGS["teaching"])
    _recompute_check(check, profile.load_model(profile.vit_models[check["model_index"]]), train, val)
    _sweep_is_sound(committed, {"models": list(profile.vit_models)})
    first = profile.vit_models[0]
    assert [row["lim"] for row in committed["keep_norm"][first]] == [row["lim"] for row in committed["models"][first]]
    assert all(entry["final_norm"] == pytest.approx(entry["initial_norm"], rel=1e-4)
               for row in committed["keep_norm"][first] for entry in row["seeds"])
    assert all(row["loss"] == "squared" for row in committed["squared_loss"][first])


def test_steps_override_scales_the_lr_milestones():
    base = robustness_study.SETTINGS["teaching"]
    shorter = base.with_steps(400)
    assert shorter.steps == 400 and shorter.probe_steps == base.probe_steps
    assert list(shorter.milestones) == [m * 400 // base.steps for m in base.milestones]
    assert base.with_steps(None) is base and base.with_steps(20).probe_steps == 20  # a probe no longer than the run
    assert isinstance(shorter, robustness_study.RobustnessSettings) and shorter.transfer_lims == base.transfer_lims


_TINY = noise_sweep.SweepSettings(lims=(0.1,), extend_until=0.5, extend_factor=2.0, max_extensions=1, seeds=(0, 1),
                                  steps=2, milestones=(1,), batch_size=8, probe_steps=2, lr_grid=(0.1, 1.0, 10.0),
                                  train=16, val=16)


def test_robustness_runner_in_parts_and_merged_end_to_end_tiny(tmp_path):
    """The Fig. 3 runner on a tiny setting, run as two parallel parts (models) joined by `merge`: every model is
    there with every seed, the transfer tables are computed from the parts' noises, and the provenance records the
    parts."""
    from dataclasses import asdict, replace

    from nullspace_utils.profiles import get_profile

    profile = get_profile("teaching")
    tiny = robustness_study.RobustnessSettings(**asdict(_TINY), transfer_lims=(0.1,))
    check = replace(robustness_study.CHECK, train=8, val=8)
    parts = [tmp_path / "vits.json", tmp_path / "cnns.json"]
    for part, names in zip(parts, (profile.vit_models, profile.cnn_models), strict=True):
        made = robustness_study.run(tiny, profile, Run(out=part, command="part", arguments={"models": list(names)}),
                                    models=names, check=check)
        robustness_study.RESULT.write(part, made)
        assert list(made["input"]) == list(names) and made["transfer"] == {}  # a part has no transfer tables
    merged = tmp_path / "robustness.json"
    result = robustness_study.merge([json.loads(part.read_text()) for part in parts], parts, profile,
                                    Run(command="merge", out=merged))
    assert list(result["input"]) == list(profile.models)  # the profile's order
    assert all(len(row["seeds"]) == 2 for rows in result["input"].values() for row in rows)
    table = result["transfer"]["0.1"]
    assert set(table) == set(profile.models) and all(set(row) == set(profile.models) for row in table.values())
    # the diagonal is each model's own seed-0 learned input noise, evaluated again
    assert all(table[name][name] == result["input"][name][0]["seeds"][0]["learned"]["match"] for name in profile.models)
    assert result["exact_transfer"]["0.1"][profile.vit_models[0]] == 1.0
    assert [part["config"]["models"] for part in result["parts"]] == [list(profile.vit_models), list(profile.cnn_models)]
    assert result["provenance"]["command"] == "merge" and result["config"] == settings_dict(tiny)
    with pytest.raises(StudyError, match="not among"):
        robustness_study.run(tiny, profile, Run(), models=["zoo-vit-xl"], check=check)
    with pytest.raises(StudyError, match="no part has"):
        robustness_study.merge([json.loads(parts[0].read_text())], parts[:1], profile, Run())
    _transfer_reuses_the_sweeps_noises(tiny, result, merged, profile)
    # a part whose noise file is another run's (or of the old one-seed format) is refused before anything is merged
    from safetensors.torch import save_file

    save_file({f"{name}/0.1": torch.zeros(3, 112, 112) for name in profile.cnn_models},
              robustness_study.noise_file(parts[1]))
    with pytest.raises(StudyError, match=r"does not hold the noises of .*cnns.json .*is missing"):
        robustness_study.merge([json.loads(part.read_text()) for part in parts], parts, profile, Run(command="merge"))


def test_a_sweep_split_by_lims_merges_into_the_whole_runs_result(tmp_path):
    """The approximate runner run whole, and as two parts of its lims (``--lims``) joined by ``merge``: the same
    rows (the first ViT's norm-kept and squared-loss points included), the added lim learned by the part with the
    last listed lim and the squared-loss points by the part with the first; a lim twice or missing is refused."""
    from dataclasses import asdict, replace

    from nullspace_utils.profiles import get_profile

    profile = get_profile("teaching")
    first = profile.vit_models[0]
    # extend_until 0: the sweep always adds its one extra lim, so the split must put it in the right part
    tiny = approximate_study.ApproximateSettings(**{**asdict(_TINY), "lims": (0.1, 0.4), "extend_until": 0.0,
                                                    "seeds": (0,), "lr_grid": (1.0, 10.0)}, squared_lims=(0.1,))
    check = replace(approximate_study.CHECK, train=8, val=8, steps=2, milestones=(1,), batch_size=8)
    whole = approximate_study.run(tiny, profile, Run(), models=[first], check=check)
    assert [row["lim"] for row in whole["models"][first]] == [0.1, 0.4, 0.8]
    parts = []
    for lims in ((0.4,), (0.1,)):  # in any order
        made = approximate_study.run(tiny, profile, Run(), models=[first], lims=lims, check=check)
        parts.append(json.loads(json.dumps(made)))
    assert [row["lim"] for row in parts[0]["models"][first]] == [0.4, 0.8]  # the added lim comes with the last
    assert parts[0]["squared_loss"][first] == [] and len(parts[1]["squared_loss"][first]) == 1
    merged = approximate_study.merge(parts, profile, Run(command="merge"))
    for table in ("models", "keep_norm", "squared_loss"):
        assert merged[table] == json.loads(json.dumps(whole[table])), table
    with pytest.raises(StudyError, match=r"zoo-vit-s has lims 0.4, 0.8 in two parts' 'models'"):
        approximate_study.merge([parts[0], parts[0], parts[1]], profile, Run())
    with pytest.raises(StudyError, match=r"no part has zoo-vit-s's lim 0.1;"):
        approximate_study.merge(parts[:1], profile, Run())
    with pytest.raises(StudyError, match=r"--lims: 0.3 not among this sweep's lims 0.1, 0.4 "):
        approximate_study.run(tiny, profile, Run(), models=[first], lims=[0.3], check=check)


def test_a_robustness_sweep_split_by_lims_keeps_each_models_noises_from_every_part(tmp_path):
    """Robustness parts split by lims save each part's noises at its own transfer lims; merge gathers a model's
    noises from all its parts, so the transfer tables hold every transfer lim."""
    from dataclasses import asdict, replace

    from nullspace_utils.profiles import get_profile

    profile = get_profile("teaching")
    tiny = robustness_study.RobustnessSettings(**{**asdict(_TINY), "lims": (0.1, 0.2), "seeds": (0,),
                                                  "max_extensions": 0, "lr_grid": (1.0, 10.0)},
                                               transfer_lims=(0.1, 0.2))
    check = replace(robustness_study.CHECK, train=8, val=8, steps=2, milestones=(1,), batch_size=8)
    paths = [tmp_path / "low.json", tmp_path / "high.json"]
    for path, lims in zip(paths, ((0.1,), (0.2,)), strict=True):
        made = robustness_study.run(tiny, profile, Run(out=path, command="part"), lims=lims, check=check)
        robustness_study.RESULT.write(path, made)
        assert made["transfer"] == {}  # a part of the lims has no transfer tables
    result = robustness_study.merge([json.loads(path.read_text()) for path in paths], paths, profile,
                                    Run(command="merge", out=tmp_path / "robustness.json"))
    assert all([row["lim"] for row in rows] == [0.1, 0.2] for rows in result["input"].values())
    for lim in ("0.1", "0.2"):
        table = result["transfer"][lim]
        assert set(table) == set(profile.models) and all(set(row) == set(profile.models) for row in table.values())
        row = {"0.1": 0, "0.2": 1}[lim]
        assert all(table[name][name] == result["input"][name][row]["seeds"][0]["learned"]["match"]
                   for name in profile.models)  # the diagonal: each part's own noise, evaluated again


def _transfer_reuses_the_sweeps_noises(tiny, result, merged, profile) -> None:
    """robustness-transfer after a merge reads the noises saved beside the merged file instead of learning them
    again: the same tables as learning them again (the CPU learns them bit for bit alike), its points the sweep's
    rows; a noise file of another sweep is refused."""
    from safetensors.torch import load_file, save_file

    robustness_study.RESULT.write(merged, result)
    sweep = json.loads(merged.read_text())
    noises = robustness_study.sweep_noises(sweep, merged)
    assert {name: {lim: sorted(seeds) for lim, seeds in by_lim.items()} for name, by_lim in noises.items()} == {
        name: {0.1: [0, 1]} for name in profile.models}
    reused = robustness_study.run_transfer(tiny, sweep, profile, Run(device="cpu"), noises=noises)
    again = robustness_study.run_transfer(tiny, sweep, profile, Run(device="cpu"))
    assert (reused["noises"], again["noises"]) == ("the sweep's", "learned again")
    assert reused["learned"] == again["learned"] and reused["exact"] == again["exact"]
    assert all(reused["points"][name]["0.1"] == next(row for row in sweep["input"][name] if row["lim"] == 0.1)
               for name in profile.models)
    stored = load_file(str(robustness_study.noise_file(merged)))
    stored[f"{profile.models[-1]}/0.1/1"] = stored[f"{profile.models[-1]}/0.1/1"] * 2  # another sweep's noise
    save_file(stored, robustness_study.noise_file(merged))
    with pytest.raises(StudyError, match="does not hold the noises"):
        robustness_study.sweep_noises(sweep, merged)
    robustness_study.noise_file(merged).unlink()
    assert robustness_study.sweep_noises(sweep, merged) is None  # none saved: learned again


def test_committed_robustness_sweep_matches_a_recomputed_point():
    """Recompute the robustness sweep's cheap check point on the CPU against the committed file."""
    committed, check, profile, train, val = _committed_check(robustness_study.RESULT, robustness_study.CHECK)
    assert committed["config"] == settings_dict(robustness_study.SETTINGS["teaching"])
    _recompute_check(check, profile.load_model(profile.cnn_models[check["cnn_index"]]), train, val)
    _sweep_is_sound(committed, {"input": list(profile.models)})
    for lim in committed["config"]["transfer_lims"]:
        assert committed["exact_transfer"][str(lim)][profile.vit_models[0]] == 1.0
        assert set(committed["transfer"][str(lim)]) == set(profile.models)
    for rows in (committed["input"][name] for name in profile.vit_models):  # the exact-nullspace baselines
        assert all(entry["projected"]["match"] == 1.0 for row in rows for entry in row["seeds"])


def test_committed_fingerprint_results_match_a_recomputed_point():
    """Recompute the fingerprint study's check point (a copy fine-tuned for a few steps, logits access) on the CPU
    from the committed file, whose settings must be the study's current ones."""
    from dataclasses import asdict

    from nullspace_utils import fingerprint as fp
    from nullspace_utils.profiles import get_profile
    from nullspace_utils.studies import common
    from nullspace_utils.studies import fingerprint as study

    committed = study.RESULT.read(study.RESULT.path("teaching"))
    settings, check = study.SETTINGS["teaching"], study.CHECK
    assert committed["config"] == common.settings_dict(settings)
    assert {k: v for k, v in committed["check"].items() if k != "result"} == asdict(check)
    profile = get_profile("teaching")
    owner = profile.load_model(profile.vit_models[0])
    val_images, _ = stack_dataset(profile.dataset("val", n=settings.val))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=settings.fine_tune.images))
    secret = fp.make_fingerprint(owner, n_probes=settings.n_probes, amplitude=settings.amplitude,
                                 seed=check.fingerprint_seed, images=val_images)
    point = study.check_point(owner, secret, new_images, new_labels, settings, check)
    expected = committed["check"]["result"]
    assert abs(point["kept"] - expected["kept"]) <= 1 and point["n"] == expected["n"]
    assert point["median_change"] == pytest.approx(expected["median_change"], rel=0.05)
    # the file's shape: every suspect with every output and fingerprint; the owner keeps every probe
    for entry in committed["suspects"].values():
        assert all(len(entry[output]) == settings.fingerprints for output in fp.OUTPUTS)
    owner_points = [p for o in fp.OUTPUTS for p in committed["suspects"]["owner"][o]]
    assert all(p["kept"] == p["n"] and p["is_yours"] for p in owner_points)
    for runs in committed["fade"].values():  # one run per fine-tuning seed, every checkpoint, every fade fingerprint
        assert [run["seed"] for run in runs] == list(settings.fine_tune.seeds)
        for run in runs:
            assert [row["step"] for row in run["rows"]] == list(settings.fine_tune.checkpoints)
            assert all(len(row[o]) == len(row["leak"]) == settings.fade_fingerprints for row in run["rows"]
                       for o in fp.OUTPUTS)
    assert [run["seed"] for run in committed["defence"]] == list(settings.defence_seeds)


def test_fingerprint_runner_end_to_end_tiny(tmp_path):
    """The fingerprint study's runner on tiny settings: its result has every part the chapter reads, fits the
    schema when written, and its rows so far were saved to the run's file as it went."""
    from nullspace_utils.profiles import get_profile
    from nullspace_utils.studies import common
    from nullspace_utils.studies import fingerprint as study

    tiny = study.FingerprintSettings(
        n_probes=4, amplitude=0.25, fingerprints=2, tol=1e-3, bisection_steps=4,
        fine_tune=study.ThiefTuning(images=16, steps=2, batch_size=8, checkpoints=(0, 2),
                                    lr=study.ThiefRates(all=1e-4, patch_embed=1e-4, head=1e-3), seeds=(0, 1)),
        sigmas=(0.0,), val=16, fade_fingerprints=1, defence_seeds=(0,))
    partial = tmp_path / "partial.json"
    run = common.Run(device="cpu", out=partial, command="test", arguments={"experiment": "fingerprint"})
    out = study.RESULT.write(tmp_path / "fingerprint.json", study.run(tiny, get_profile("teaching"), run))
    result = study.RESULT.read(str(out))  # as the chapter reads it: validated
    assert result["provenance"]["device"] == "cpu" and result["provenance"]["config"]["experiment"] == "fingerprint"
    assert result["config"] == common.settings_dict(tiny)
    derived = [name for name, entry in result["suspects"].items() if entry["derived"]]
    assert derived == ["owner", "exact copy", "float16 copy", "int8 copy"]
    assert {"zoo-vit-s-seed1", "zoo-vit-b", "zoo-resnet"} <= set(result["suspects"]) - set(derived)
    owner = result["suspects"]["owner"]
    assert all(owner[output][0]["kept"] == owner[output][0]["n"] for output in ("logits", "probs", "label"))
    assert [run["seed"] for run in result["fade"]["head"]] == [0, 1]
    assert [row["step"] for row in result["fade"]["head"][1]["rows"]] == [0, 2]
    assert set(result["fade"]["all"][0]["rows"][0]) == {"step", "accuracy", "leak", "logits", "probs", "label"}
    assert len(result["fade"]["all"][0]["rows"][0]["logits"]) == 1  # the fade fingerprints only
    assert result["fade"]["head"][0]["rows"][-1]["leak"][0] < 1e-12  # a new head leaves the patch map as it was
    defence = result["defence"][0]["rows"][0]
    assert defence["sigma"] == 0.0 and defence["logits"][0]["kept"] == 4
    leak = result["leak"]  # every ViT suspect, no CNN (no patch map); unrelated ViT-S share 2 * 672 - 768 dimensions
    assert "zoo-resnet" not in leak and leak["owner"]["shared_dimension"] == leak["owner"]["nullity"] == 672
    assert leak["zoo-vit-s-seed1"]["shared_dimension"] == 576 and len(leak["zoo-vit-b"]["energy"]) == 2
    assert result["check"]["result"]["n"] == 4 and result["check"]["tune_seed"] == 0
    saved = results.read(str(partial))  # the rows up to the last part (the defence rows come after it)
    assert set(saved["suspects"]) == set(result["suspects"]) and set(saved["fade"]) == {"all", "head", "patch_embed"}


def _tiny_finetune():
    """A fine-tuning sweep of a few steps on 16 teaching images, and a check run of two steps on 8."""
    import dataclasses

    from nullspace_utils.studies import finetune as finetune_study

    match = noise_sweep.PointSettings(seeds=(0,), steps=2, milestones=(1,), batch_size=8, probe_steps=2,
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


def test_every_committed_noise_point_is_judged_by_the_one_learning_failure_rule(capsys):
    """The stored "learning failed" flags of the approximate, robustness and fine-tuning files are what
    evidence.judge_learning says of their stored losses and norms (scripts/rejudge_learning.py --check)."""
    from scripts_loader import load_script

    rejudge = load_script("rejudge_learning")
    assert rejudge.main(["--check"]) == 0, capsys.readouterr().out
    finetune = results.read("book/results/teaching/finetune.json")
    points = list(rejudge.noise_points(finetune))
    assert points and all(point["learning_failed"] for point in points if point["lim"] == 8.0)  # loss ~3/4 of start
    broken = json.loads(json.dumps(points[0]))
    broken["seeds"][0]["final_norm"] = 10 * broken["seeds"][0]["initial_norm"]
    assert rejudge.rejudge({"runs": {"x": {"match": [broken]}}}) == 1  # a changed flag is counted
