"""Robustness pieces (paper §5): the rate probe, transfer, exact transfer at equal energy, seed-aware verdicts."""

import pytest
import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, results, robustness
from nullspace_utils.studies import evidence
from nullspace_utils.studies import robustness as robustness_study


@pytest.fixture(scope="module")
def small(val_batch):
    images, labels = val_batch
    return TensorDataset(images[:24], labels[:24]), TensorDataset(images[24:], labels[24:])


@pytest.fixture(scope="module")
def zoo(vit_s):
    return {"zoo-vit-s": vit_s, "zoo-mobilenetv3": models.load_model("zoo-mobilenetv3")}


def test_choose_lr_prefers_the_rate_with_the_lowest_training_loss(zoo, small):
    train, _ = small
    choice = approximate.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, grid=(0.03, 1e3), steps=4,
                                   batch_size=8, max_widenings=0, refine=False)
    assert set(choice.scores) == {"0.03", "1000.0"}
    assert choice.lr == 0.03 and choice.scores["0.03"] < choice.scores["1000.0"]  # a huge rate blows up the loss
    assert choice.at_edge  # and the winner is the grid's smallest: a probe that must be widened


def test_transfer_matrix_and_exact_transfer(zoo, small):
    _, val = small
    noise = approximate.uniform_noise((3, 112, 112), 0.3, seed=0)
    matrix = robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val)
    assert set(matrix["zoo-vit-s"]) == set(zoo)
    assert matrix["zoo-vit-s"]["zoo-mobilenetv3"] == approximate.evaluate_noise(
        zoo["zoo-mobilenetv3"], val, noise, level="input").match
    with pytest.raises(ValueError, match="input-level"):
        robustness.transfer_matrix(zoo, {"zoo-vit-s": torch.zeros(49, 96)}, val)
    exact_matches = robustness.exact_transfer(zoo["zoo-vit-s"], zoo, val, rms=1.0)
    assert exact_matches["zoo-vit-s"] == 1.0  # exact nullspace noise of its own ViT: nothing changes
    assert exact_matches["zoo-mobilenetv3"] < 1.0  # a CNN has no such nullspace
    with pytest.raises(ValueError, match="rms must be positive"):
        robustness.exact_transfer(zoo["zoo-vit-s"], zoo, val, rms=0.0)


def test_exact_transfer_noise_has_the_energy_of_the_uniform_noise_it_is_compared_with(zoo, small, monkeypatch):
    """At rms = lim / sqrt(3) the exact noise has the RMS of Uniform(-lim, lim): equal energy, one axis."""
    _, val = small
    seen = []
    real = approximate.evaluate_noise
    monkeypatch.setattr(approximate, "evaluate_noise", lambda model, data, noise, **kw: seen.append(noise) or real(
        model, data, noise, **kw))
    robustness.exact_transfer(zoo["zoo-vit-s"], {"zoo-vit-s": zoo["zoo-vit-s"]}, val, rms=0.5 / 3 ** 0.5)
    uniform = approximate.uniform_noise((3, 112, 112), 0.5, seed=0)
    assert seen[0].pow(2).mean().sqrt().item() == pytest.approx(uniform.pow(2).mean().sqrt().item(), rel=0.01)


def _point(lim, matches, failed=False):
    """A noise point whose seeds halved their loss (learned), or, ``failed``, one whose loss hardly fell."""
    left = 0.9 if failed else 0.1
    return {"lim": lim, "learning_failed": failed, "lr": 1.0, "lr_choice": None,
            "seeds": [{"seed": seed, "learned": {"match": m}, "initial_norm": 2.0, "final_norm": 1.5,
                       "train_loss": {"initial": 1.0, "learned": left, "shuffled": 1.0},
                       "uniform": {"clean_norm": 4.0}} for seed, m in enumerate(matches)]}


def test_architecture_verdicts_need_separated_seeds():
    rows = {"v1": [_point(0.1, (1.0, 0.99)), _point(0.5, (0.9, 0.7))],
            "c1": [_point(0.1, (0.95, 0.9)), _point(0.5, (0.8, 0.6))],
            "c2": [_point(0.1, (0.9, 0.8)), _point(0.5, (0.5, 0.4), failed=True)]}
    verdicts = robustness_study.architecture_verdicts(rows, ("v1",), ("c1", "c2"))
    assert [v["verdict"] for v in verdicts] == ["ViTs ahead", "not comparable"]
    assert verdicts[0]["vit_range"] == (0.99, 1.0) and verdicts[0]["cnn_range"] == (0.8, 0.95)
    assert verdicts[1]["failed"] == ["c2"] and verdicts[0]["among_learned"] is None
    assert verdicts[1]["reasons"]["c2"][0].startswith("seed 0: loss only fell to 90 %")
    among = verdicts[1]["among_learned"]  # v1 (0.7-0.9) against c1 alone (0.6-0.8): they overlap
    assert among["cnns"] == ["c1"] and among["verdict"] == "not separable" and among["cnn_range"] == (0.6, 0.8)
    sentence = robustness_study.verdict_sentence(verdicts[1])
    assert "not comparable, learning failed for c2" in sentence and "among the models that learned, not separable" in sentence
    rows["c2"][1] = _point(0.5, (0.5, 0.4))
    assert robustness_study.architecture_verdicts(rows, ("v1",), ("c1", "c2"))[1]["verdict"] == "not separable"
    behind = robustness_study.architecture_verdicts({"v1": [_point(0.1, (0.5, 0.6))], "c1": [_point(0.1, (0.7, 0.8))]},
                                              ("v1",), ("c1",))
    assert behind[0]["verdict"] == "CNNs ahead"
    sentence = robustness_study.verdict_sentence(verdicts[0])
    assert sentence.startswith("at lim 0.1 (learned noise): ViTs ahead") and "99.0-100.0 %" in sentence
    assert "not separable at this budget" in robustness_study.verdict_sentence(
        robustness_study.architecture_verdicts(rows, ("v1",), ("c1", "c2"))[1])
    assert robustness_study.relative_size(rows["v1"][0]) == [0.5, 0.5]
    assert robustness_study.verdict_summary(verdicts) == "ViTs ahead at lim 0.1; not comparable at lim 0.5"


def test_progress_bars_only_when_asked(zoo, small, capsys):
    train, val = small
    noise = approximate.uniform_noise((3, 112, 112), 0.3, seed=0)
    approximate.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, grid=(0.03, 0.1), steps=2, batch_size=8,
                          max_widenings=0, refine=False)
    robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    approximate.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, grid=(0.03, 0.1), steps=2, batch_size=8,
                          max_widenings=0, refine=False, show_progress=True)
    robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val, show_progress=True)
    robustness.exact_transfer(zoo["zoo-vit-s"], zoo, val, rms=0.5, show_progress=True)
    shown = capsys.readouterr().err
    assert "choosing the lr (input, lim 0.25)" in shown and "2/2" in shown  # two rates
    assert "transfer" in shown and "exact noise transfer" in shown


def test_run_transfer_learns_every_seed_and_reads_it_on_every_model(tmp_path):
    """Fig. 3c over seeds on tiny settings: every seed's noise of every model on every model, each noise point
    judged by the learning-failure rule, the exact noise keeping all of its source's predictions."""
    import dataclasses

    from nullspace_utils import profiles
    from nullspace_utils.studies import common

    profile = dataclasses.replace(profiles.get_profile("teaching"), vit_models=("zoo-vit-s",),
                                  cnn_models=("zoo-mobilenetv3",))  # one ViT, one CNN: fast
    settings = dataclasses.replace(robustness_study.SETTINGS["teaching"], seeds=(0, 1), steps=2, milestones=(1,),
                                   train=8, val=8, batch_size=8, transfer_lims=(0.5,))
    sweep = results.read("book/results/teaching/robustness.json")
    with pytest.raises(robustness_study.StudyError, match="other settings"):
        robustness_study.run_transfer(settings, sweep, profile, common.Run(device="cpu", out=None))
    sweep["config"] = common.settings_dict(settings)
    out = robustness_study.run_transfer(settings, sweep, profile, common.Run(device="cpu", out=tmp_path / "t.json"))
    models = list(profile.models)
    assert list(out["learned"]["0.5"]) == models and all(
        list(row) == models and all(len(seeds) == 2 for seeds in row.values()) for row in out["learned"]["0.5"].values())
    assert out["exact"]["0.5"][profile.vit_models[0]] == [1.0, 1.0]
    for name in models:
        point = out["points"][name]["0.5"]
        assert point["lr"] == out["rates"][name]["0.5"] == next(r["lr"] for r in sweep["input"][name] if r["lim"] == 0.5)
        assert point["lr_choice"] is None  # the sweep's rate, no probe
        # a noise evaluated on its own model gives the same share as the point's own evaluation
        assert out["learned"]["0.5"][name][name] == pytest.approx(evidence.seed_values(point, "learned"))
    robustness_study.TRANSFER_RESULT.write(tmp_path / "t.json", out)  # it fits the schema
