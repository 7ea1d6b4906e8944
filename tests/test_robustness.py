"""Robustness sweep pieces (paper §5): reference noise, one sweep point, transfer, exact transfer, verdicts."""

import pytest
import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, robustness


@pytest.fixture(scope="module")
def small(val_batch):
    images, labels = val_batch
    return TensorDataset(images[:24], labels[:24]), TensorDataset(images[24:], labels[24:])


@pytest.fixture(scope="module")
def zoo():
    return {name: models.load_model(name) for name in ("zoo-vit-s", "zoo-mobilenetv3")}


def test_uniform_noise_is_seeded_and_in_range():
    noise = robustness.uniform_noise((3, 8, 8), 0.3, seed=4)
    assert noise.abs().max() <= 0.3 and noise.abs().max() > 0.25
    assert torch.equal(noise, robustness.uniform_noise((3, 8, 8), 0.3, seed=4))
    with pytest.raises(ValueError, match="positive"):
        robustness.uniform_noise((2,), 0.0)


@pytest.mark.parametrize("name,level", [("zoo-vit-s", "encoder"), ("zoo-mobilenetv3", "input")])
def test_point_evaluates_learned_shuffled_and_uniform(zoo, small, name, level):
    train, val = small
    row, noise = robustness.robustness_point(zoo[name], train, val, level=level, lim=0.2, steps=3, lr=1.0,
                                             milestones=(2,), batch_size=8)
    assert set(row) >= {"learned", "shuffled", "uniform", "initial_norm", "final_norm"}
    assert tuple(noise.shape) == approximate.noise_shape(zoo[name], level, 112)
    assert row["learned"]["noise_norm"] == pytest.approx(row["shuffled"]["noise_norm"], rel=1e-5)
    # the learned noise evaluated again gives the same numbers
    again = approximate.evaluate_noise(zoo[name], val, noise, level=level)
    assert again.match == row["learned"]["match"] and again.logit_mse == pytest.approx(row["learned"]["logit_mse"])
    assert 0 <= row["uniform"]["match"] <= 1


def test_choose_lr_prefers_the_rate_with_the_lowest_training_loss(zoo, small):
    train, _ = small
    lr, scores = robustness.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, lrs=(0.03, 1e3), steps=4,
                                      batch_size=8)
    assert set(scores) == {"0.03", "1000.0"}
    assert lr == 0.03 and scores["0.03"] < scores["1000.0"]  # a huge rate blows the noise (and the loss) up
    with pytest.raises(ValueError, match="at least one"):
        robustness.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, lrs=(), steps=2, batch_size=8)


def test_transfer_matrix_and_exact_transfer(zoo, small):
    _, val = small
    noise = robustness.uniform_noise((3, 112, 112), 0.3, seed=0)
    matrix = robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val)
    assert set(matrix["zoo-vit-s"]) == set(zoo)
    assert matrix["zoo-vit-s"]["zoo-mobilenetv3"] == approximate.evaluate_noise(
        zoo["zoo-mobilenetv3"], val, noise, level="input").match
    with pytest.raises(ValueError, match="input-level"):
        robustness.transfer_matrix(zoo, {"zoo-vit-s": torch.zeros(49, 96)}, val)
    exact_matches = robustness.exact_transfer(zoo["zoo-vit-s"], zoo, val, amplitude=2.0)
    assert exact_matches["zoo-vit-s"] == 1.0  # exact nullspace noise of its own ViT: nothing changes
    assert exact_matches["zoo-mobilenetv3"] < 1.0  # a CNN has no such nullspace


def test_vits_beat_cnns_verdict():
    def rows(*matches):
        return [{"lim": lim, "learned": {"match": m}} for lim, m in zip((0.1, 0.5), matches, strict=True)]

    verdicts = robustness.vits_beat_cnns({"v1": rows(1.0, 0.9), "v2": rows(0.99, 0.6), "c1": rows(0.95, 0.7)},
                                         ("v1", "v2"), ("c1",))
    assert [v["vits_ahead"] for v in verdicts] == [True, False]
    assert verdicts[1] == {"lim": 0.5, "worst_vit": 0.6, "best_cnn": 0.7, "vits_ahead": False}


def test_progress_bars_only_when_asked(zoo, small, capsys):
    train, val = small
    noise = robustness.uniform_noise((3, 112, 112), 0.3, seed=0)
    robustness.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, lrs=(0.03, 0.1), steps=2, batch_size=8)
    robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    robustness.choose_lr(zoo["zoo-vit-s"], train, level="input", lim=0.25, lrs=(0.03, 0.1), steps=2, batch_size=8,
                         show_progress=True)
    robustness.transfer_matrix(zoo, {"zoo-vit-s": noise}, val, show_progress=True)
    robustness.exact_transfer(zoo["zoo-vit-s"], zoo, val, amplitude=1.0, show_progress=True)
    shown = capsys.readouterr().err
    assert "choosing the lr (input, lim 0.25)" in shown and "2/2" in shown  # two rates
    assert "transfer" in shown and "exact noise transfer" in shown
