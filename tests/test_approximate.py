import pytest
import torch
from torch.utils.data import DataLoader

from nullspace_utils import approximate, models
from nullspace_utils.data import synthetic_dataset
from nullspace_utils.studies import evidence, noise_sweep


@pytest.fixture(scope="module")
def small_data():
    return synthetic_dataset("val", n=24)


def test_noise_shapes(vit_s):
    assert approximate.noise_shape(vit_s, "encoder", 112) == (49, 96)
    assert approximate.noise_shape(vit_s, "input", 112) == (3, 112, 112)


def test_zero_noise_is_harmless(vit_s, small_data):
    for level in approximate.LEVELS:
        zero = torch.zeros(approximate.noise_shape(vit_s, level, 112))
        result = approximate.evaluate_noise(vit_s, small_data, zero, level=level)
        assert result.match == 1.0 and result.logit_mse == 0.0 and result.prob_change == 0.0
        assert result.noise_norm == 0.0 and result.clean_norm > 0


def test_hook_is_removed_and_noise_reaches_the_encoder(vit_s, small_data):
    images = torch.stack([small_data[i][0] for i in range(4)])
    with torch.no_grad():
        before = vit_s(images)
        noise = torch.randn(49, 96) * 5
        with approximate.add_noise(vit_s, noise, "encoder") as noisy:
            changed = noisy(images)
        after = vit_s(images)
    assert torch.equal(before, after)
    assert (changed - before).abs().max() > 1e-2
    assert len(vit_s.net.patch_embed._forward_hooks) == 0


def test_shuffle_keeps_the_values():
    noise = torch.randn(49, 96)
    shuffled = approximate.shuffle_noise(noise, seed=1)
    assert torch.equal(shuffled.flatten().sort().values, noise.flatten().sort().values)
    assert not torch.equal(shuffled, noise)
    assert torch.equal(shuffled, approximate.shuffle_noise(noise, seed=1))


def test_learning_reduces_the_loss(vit_s, small_data):
    loader = DataLoader(small_data, batch_size=8, shuffle=False)
    result = approximate.learn_noise(vit_s, loader, level="encoder", lim=1.0, steps=30, lr=1.0,
                                     milestones=())
    assert result.noise.shape == (49, 96)
    first = sum(h["loss"] for h in result.history[:3])
    last = sum(h["loss"] for h in result.history[-3:])
    assert last < 0.8 * first
    assert all(p.requires_grad for p in vit_s.parameters())  # the model's own flags are restored


def test_keep_norm_holds_the_norm(vit_s, small_data):
    result = approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=5, batch_size=8,
                                     keep_norm=True, lr=0.1)
    assert result.norm == pytest.approx(result.initial_norm, rel=1e-5)
    assert all(h["norm"] == pytest.approx(result.initial_norm, rel=1e-5) for h in result.history)


def test_input_level_for_a_cnn(small_data):
    cnn = models.load_model("zoo-mobilenetv3")
    result = approximate.learn_noise(cnn, small_data, level="input", lim=0.1, steps=3, batch_size=8, lr=0.1)
    assert result.noise.shape == (3, 112, 112)
    evaluation = approximate.evaluate_noise(cnn, small_data, result.noise, level="input")
    assert 0.0 <= evaluation.match <= 1.0 and evaluation.noise_norm == pytest.approx(result.norm)
    unchanged = approximate.evaluate_noise(cnn, small_data, torch.zeros_like(result.noise), level="input")
    assert unchanged.match == 1.0 and unchanged.logit_mse == 0.0  # no noise, no change: the measure is not blind


def test_errors(vit_s, small_data):
    with pytest.raises(ValueError, match="level"):
        approximate.noise_shape(vit_s, "middle", 112)
    with pytest.raises(ValueError, match="input"):
        approximate.noise_shape(models.load_model("zoo-resnet"), "encoder", 112)
    with pytest.raises(ValueError, match="lim"):
        approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.0)
    with pytest.raises(ValueError, match="shape"):
        approximate.evaluate_noise(vit_s, small_data, torch.zeros(10, 96), level="encoder")


def test_tensor_datasets_are_batched_by_slicing(vit_s, small_data):
    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset

    images, labels = stack_dataset(small_data)
    noise = torch.randn(49, 96)
    fast = approximate.evaluate_noise(vit_s, TensorDataset(images, labels), noise, level="encoder", batch_size=10)
    slow = approximate.evaluate_noise(vit_s, small_data, noise, level="encoder", batch_size=10)
    assert fast.match == slow.match and fast.logit_mse == pytest.approx(slow.logit_mse, rel=1e-5)


def test_progress_bars_only_when_asked(vit_s, small_data, capsys):
    zero = torch.zeros(49, 96)
    approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=2, batch_size=8, lr=0.1)
    approximate.evaluate_noise(vit_s, small_data, zero, level="encoder", batch_size=8)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""  # the default: notebook outputs do not change
    approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=2, batch_size=8, show_progress=True,
                            lr=0.1)
    approximate.evaluate_noise(vit_s, small_data, zero, level="encoder", batch_size=8, show_progress=True)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "learning encoder noise, lim 0.5" in shown.err and "2/2" in shown.err  # 2 SGD steps
    assert "evaluating encoder noise" in shown.err and "3/3" in shown.err  # 24 images in batches of 8


def test_learning_logs_its_losses_and_computes_in_full_float32(vit_s, small_data, caplog, tf32_allowed, flags_seen):
    import logging

    seen = flags_seen(vit_s)
    with caplog.at_level(logging.DEBUG, logger="nullspace_utils.approximate"):
        approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=2, batch_size=8, lr=0.1)
    approximate.evaluate_noise(vit_s, small_data, torch.zeros(49, 96), level="encoder", batch_size=8)
    assert seen and all(flags == ("highest", False) for flags in seen)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32  # restored
    assert "learned encoder noise, lim 0.5" in caplog.text and "loss" in caplog.text


def test_learning_precision_is_checked_and_auto_is_float32_on_the_cpu_bf16_on_cuda(vit_s, small_data, monkeypatch):
    capability = {"value": (9, 0)}  # an H100
    monkeypatch.setattr(approximate, "_cuda_capability", lambda device: capability["value"])
    assert approximate.learning_precision("auto", "cpu") == "float32"
    assert approximate.learning_precision("auto", torch.device("cuda", 1)) == "bf16"
    capability["value"] = (7, 5)  # a T4: bf16 would be emulated, slower than float32
    assert approximate.learning_precision("auto", "cuda") == "float32"
    assert [approximate.learning_precision(name, "cpu") for name in ("float32", "tf32", "bf16")] == ["float32", "tf32",
                                                                                                    "bf16"]
    for bad in ("fp16", "BF16", None):
        with pytest.raises(ValueError, match="precision must be one of"):
            approximate.learning_precision(bad, "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):  # refused before any step or probe runs
        approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=1, lr=0.1, precision="half")
    with pytest.raises(ValueError, match="precision must be one of"):
        approximate.choose_lr(vit_s, small_data, level="encoder", lim=0.5, steps=1, precision="half")


def test_float32_on_the_cpu_is_the_default_and_its_history_is_the_loss_of_each_step(vit_s, small_data):
    settings = {"level": "encoder", "lim": 1.0, "steps": 4, "lr": 1.0, "milestones": (2,), "batch_size": 8, "seed": 3}
    default = approximate.learn_noise(vit_s, small_data, **settings)
    exact = approximate.learn_noise(vit_s, small_data, precision="float32", **settings)
    assert default.precision == exact.precision == "float32"
    assert torch.equal(default.noise, exact.noise) and default.history == exact.history  # bit for bit
    assert all(isinstance(entry[key], float) for entry in default.history for key in ("loss", "norm", "lr"))
    assert [entry["lr"] for entry in default.history] == pytest.approx([1.0, 0.1, 0.1, 0.1])
    # one step on the whole set: the recorded loss is eq. 6 at the start, the recorded norm the learned noise's
    whole = {**settings, "steps": 1, "batch_size": len(small_data), "lr": 0.5}
    one = approximate.learn_noise(vit_s, small_data, **whole)
    start = approximate.uniform_noise(tuple(one.noise.shape), 1.0, 3)
    at_start = approximate.training_loss(vit_s, small_data, start, level="encoder", images=len(small_data))
    assert one.history[0]["loss"] == pytest.approx(at_start, rel=1e-5)
    assert one.history[0]["norm"] == pytest.approx(one.norm, rel=1e-6) and one.initial_norm == pytest.approx(
        start.norm().item(), rel=1e-6)


def test_bf16_learns_under_autocast_and_every_measurement_stays_float32(vit_s, small_data, flags_seen):
    autocast_seen: list = []
    handle = vit_s.register_forward_pre_hook(lambda module, inputs: autocast_seen.append(
        torch.is_autocast_enabled("cpu")))
    seen = flags_seen(vit_s)
    try:
        settings = {"level": "encoder", "lim": 1.0, "steps": 12, "lr": 1.0, "milestones": (), "batch_size": 8}  # bf16 on a CPU is slow
        fast = approximate.learn_noise(vit_s, small_data, precision="bf16", **settings)
        assert autocast_seen and all(autocast_seen) and all(flags == ("highest", False) for flags in seen)
        autocast_seen.clear()
        seen.clear()
        evaluation = approximate.evaluate_noise(vit_s, small_data, fast.noise, level="encoder", batch_size=8)
        approximate.training_loss(vit_s, small_data, fast.noise, level="encoder", images=8, batch_size=8)
        assert autocast_seen and not any(autocast_seen)  # measured in float32, without TF32
        assert all(flags == ("highest", False) for flags in seen)
    finally:
        handle.remove()
    exact = approximate.learn_noise(vit_s, small_data, precision="float32", **settings)
    assert fast.precision == "bf16" and fast.noise.dtype == torch.float32 and fast.noise.shape == (49, 96)
    assert torch.isfinite(fast.noise).all() and fast.initial_norm == exact.initial_norm  # the same Uniform start
    assert not torch.equal(fast.noise, exact.noise)  # autocast changed the arithmetic
    assert fast.norm == pytest.approx(exact.norm, rel=0.05)  # ... but not what was learned
    first, last = (sum(entry["loss"] for entry in part) for part in (fast.history[:3], fast.history[-3:]))
    assert last < first and 0.0 <= evaluation.match <= 1.0


def test_learning_waits_for_the_device_a_fixed_number_of_times_not_once_per_step(vit_s, small_data, monkeypatch):
    """On a GPU every .item(), bool(tensor) or .tolist() waits for the queued kernels: learn_noise's loop must not call
    them per step (the history is read once at the end, in-memory data checked once). Counted in this module only
    (the model's own forward is the model's business)."""
    import sys

    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset

    data = TensorDataset(*stack_dataset(small_data))
    calls = {"count": 0}
    for name in ("item", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls["count"] += sys._getframe(1).f_code.co_filename == approximate.__file__
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    waits = []
    for steps in (2, 7):
        calls["count"] = 0
        result = approximate.learn_noise(vit_s, data, level="encoder", lim=0.5, steps=steps, lr=0.1, batch_size=8)
        waits.append(calls["count"])
        assert len(result.history) == steps
    assert waits[0] == waits[1]


def test_tf32_learning_sets_tf32_matmuls_for_learning_only(vit_s, small_data, flags_seen, restore_tf32_flags):
    torch.set_float32_matmul_precision("highest")
    seen = flags_seen(vit_s)
    result = approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.5, steps=2, batch_size=8, lr=0.1,
                                     precision="tf32")
    assert result.precision == "tf32" and seen and all(flags[0] == "high" for flags in seen)
    seen.clear()
    approximate.evaluate_noise(vit_s, small_data, result.noise, level="encoder", batch_size=8)
    assert seen and all(flags == ("highest", False) for flags in seen)
    assert torch.get_float32_matmul_precision() == "highest"  # restored


def test_logit_distance_is_eq6_norm_and_its_squared_variant():
    clean = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    noisy = torch.tensor([[4.0, 6.0, 3.0], [0.0, 0.0, 0.0]])
    assert approximate.logit_distance(clean, noisy).tolist() == [5.0, 0.0]  # the 3-4-5 triangle
    assert approximate.logit_distance(clean, noisy, squared=True).tolist() == [25.0, 0.0]
    assert approximate.logit_distance(clean, noisy, p=1).tolist() == [7.0, 0.0]
    moved = noisy.clone().requires_grad_(True)
    approximate.logit_distance(clean, moved).sum().backward()
    assert torch.isfinite(moved.grad).all() and moved.grad[1].abs().sum() == 0  # no NaN at zero difference
    assert torch.allclose(moved.grad[0], torch.tensor([0.6, 0.8, 0.0]))  # the unit direction of the difference
    with pytest.raises(ValueError, match="p must be positive"):
        approximate.logit_distance(clean, noisy, p=0)


def test_uniform_noise_is_seeded_in_range_and_the_learning_start(vit_s, small_data):
    noise = approximate.uniform_noise((3, 8, 8), 0.3, seed=4)
    assert noise.abs().max() <= 0.3 and torch.equal(noise, approximate.uniform_noise((3, 8, 8), 0.3, seed=4))
    assert not torch.equal(noise, approximate.uniform_noise((3, 8, 8), 0.3, seed=5))
    with pytest.raises(ValueError, match="lim must be positive"):
        approximate.uniform_noise((2,), 0.0)
    result = approximate.learn_noise(vit_s, small_data, level="encoder", lim=0.7, steps=1, lr=1e-12, batch_size=8,
                                     seed=3)
    assert torch.allclose(result.noise, approximate.uniform_noise((49, 96), 0.7, seed=3), atol=1e-6)


def test_choose_lr_widens_its_grid_until_the_best_rate_is_inside(vit_s, small_data):
    """Rates far too small all lose to larger ones: the grid must grow upwards until the winner is interior, and
    the winner must be the rate with the lowest probe score."""
    choice = approximate.choose_lr(vit_s, small_data, level="encoder", lim=2.0, grid=(1e-6, 1e-5), steps=3,
                                   batch_size=8, max_widenings=12, refine=False)
    assert choice.grid[0] == 1e-6 and len(choice.grid) > 2  # widened upwards
    assert not choice.at_edge and choice.lr not in (choice.grid[0], choice.grid[-1])
    assert choice.scores[str(choice.lr)] == min(choice.scores.values())
    capped = approximate.choose_lr(vit_s, small_data, level="encoder", lim=2.0, grid=(1e-6, 1e-5), steps=3,
                                   batch_size=8, max_widenings=0)
    assert capped.at_edge and capped.lr == 1e-5  # no widening allowed: reported as a failed probe
    with pytest.raises(ValueError, match="two positive"):
        approximate.choose_lr(vit_s, small_data, level="encoder", lim=2.0, grid=(0.1,), steps=2)


def test_learn_noise_chooses_its_rate_by_default(vit_s, small_data):
    result = approximate.learn_noise(vit_s, small_data, level="encoder", lim=1.0, steps=2, batch_size=8,
                                     probe_steps=2, lr_grid=(0.1, 1.0, 10.0))
    assert result.lr_choice is not None and result.lr == result.lr_choice.lr
    assert result.history[0]["lr"] == result.lr  # the run used the chosen rate
    with pytest.raises(ValueError, match="'auto'"):
        approximate.learn_noise(vit_s, small_data, level="encoder", lim=1.0, steps=2, lr="fast")


def test_split_noise_separates_what_the_vit_cannot_see(vit_s, small_data):
    noise = approximate.uniform_noise((3, 112, 112), 0.5, seed=0)
    null_part, row_part = approximate.split_noise(vit_s, noise)
    assert torch.allclose(null_part + row_part, noise, atol=1e-6)
    assert abs((null_part.double() * row_part.double()).sum().item()) < 1e-3 * noise.norm().item() ** 2
    # sqrt((3 r^2 - d) / 3 r^2) of a random noise's norm lies in the nullspace: 672 of 768 dimensions for ViT-S
    assert null_part.norm() / noise.norm() == pytest.approx((672 / 768) ** 0.5, rel=0.02)
    images = torch.stack([small_data[i][0] for i in range(4)])
    with torch.no_grad():
        assert (vit_s(images + null_part) - vit_s(images)).abs().max() < 1e-3  # invisible to the ViT
        assert (vit_s(images + row_part) - vit_s(images)).abs().max() > 1e-2
    with pytest.raises(ValueError, match="one input-level noise"):
        approximate.split_noise(vit_s, torch.zeros(49, 96))


def test_training_loss_tells_learned_noise_from_its_shuffled_copy(vit_s, small_data):
    zero = torch.zeros(49, 96)
    assert approximate.training_loss(vit_s, small_data, zero, level="encoder", images=16) == 0.0
    noise = approximate.uniform_noise((49, 96), 2.0, seed=0)
    assert approximate.training_loss(vit_s, small_data, noise, level="encoder", images=16) > 0.0


def test_noise_point_records_every_seed_and_the_baselines(vit_s, small_data):
    noises: dict = {}
    row = noise_sweep.noise_point(vit_s, small_data, small_data, level="input", lim=0.3, seeds=(0, 1), steps=2,
                                  milestones=(), batch_size=8, lr=0.5, train_images=16, noises=noises)
    assert [entry["seed"] for entry in row["seeds"]] == [0, 1] and set(noises) == {0, 1}
    assert row["lr_choice"] is None and row["rms"] == pytest.approx(0.3 / 3 ** 0.5)
    for entry in row["seeds"]:
        assert isinstance(entry["learning_failed"], bool)
        assert entry["projected"]["match"] == 1.0 and entry["row_removed"]["match"] == 1.0  # exact nullspace
        assert entry["projected_norm_kept"] == pytest.approx((672 / 768) ** 0.5, rel=0.02)
        assert 0.0 < entry["null_share"] <= 1.0
    assert row["learning_failed"] == any(entry["learning_failed"] for entry in row["seeds"])
    encoder = noise_sweep.noise_point(vit_s, small_data, small_data, level="encoder", lim=0.3, seeds=(0,), steps=2,
                                      milestones=(), batch_size=8, lr=0.5, train_images=16)
    assert "projected" not in encoder["seeds"][0]  # tokens have no pixel nullspace to project onto
    assert evidence.seed_values(row, "learned") == [entry["learned"]["match"] for entry in row["seeds"]]
    assert evidence.seed_values(row, "final_norm", "") == [entry["final_norm"] for entry in row["seeds"]]


def test_separated_is_strict():
    assert evidence.separated([0.9, 0.95], [0.5, 0.8]) == 1
    assert evidence.separated([0.5, 0.8], [0.9, 0.95]) == -1
    assert evidence.separated([0.5, 0.9], [0.8, 0.95]) == 0  # overlapping ranges: no verdict
    with pytest.raises(ValueError, match="at least one value"):
        evidence.separated([], [1.0])


def test_judge_learning_flags_seeds_that_lost_to_their_shuffled_copy_or_to_the_other_seeds():
    def seed(learned, shuffled, initial=6.0, norms=(10.0, 8.0)):
        return {"train_loss": {"initial": initial, "learned": learned, "shuffled": shuffled},
                "initial_norm": norms[0], "final_norm": norms[1], "learning_failed": False}

    row = {"lr": 1.0, "lr_choice": {"at_edge": False}, "learning_failed": False,
           "seeds": [seed(0.8, 5.7), seed(4.2, 5.8), seed(1.0, 5.7)]}
    evidence.judge_learning(row)
    assert [entry["learning_failed"] for entry in row["seeds"]] == [False, True, False]  # 4.2 > 2 x 0.8
    assert row["learning_failed"] and evidence.learning_failures(row) == ["seed 1: loss 5.2x the best seed's"]
    row["seeds"][1] = seed(1.5, 5.8)
    assert not evidence.judge_learning(row)["learning_failed"]  # within twice the best seed
    assert evidence.learning_failures(row) == []
    row["seeds"][2] = seed(1.0, 0.9)  # no better than its own shuffled copy
    assert evidence.judge_learning(row)["seeds"][2]["learning_failed"]
    row["seeds"][2] = seed(1.0, 5.0)
    row["lr_choice"]["at_edge"] = True  # a rate at the edge of its grid fails the whole point
    assert evidence.judge_learning(row)["learning_failed"] and evidence.SEED_LOSS_RATIO == 2.0
    assert evidence.learning_failures(row) == ["rate 1 at the edge of its grid"]
    assert not any(entry["learning_failed"] for entry in row["seeds"])  # the rate fails the point, not a seed


def test_judge_learning_flags_a_loss_that_did_not_halve_and_a_noise_that_grew():
    def seed(learned, initial, norms):
        return {"seed": 0, "train_loss": {"initial": initial, "learned": learned, "shuffled": 2 * initial},
                "initial_norm": norms[0], "final_norm": norms[1], "learning_failed": False}

    row = {"lr": 1.0, "lr_choice": None, "keep_norm": False, "learning_failed": False,
           "seeds": [seed(0.49, 1.0, (10.0, 9.0))]}
    assert not evidence.judge_learning(row)["learning_failed"]  # halved: learned, at MAX_LOSS_LEFT = 0.5
    row["seeds"] = [seed(0.52, 1.0, (10.0, 9.0))]
    assert evidence.judge_learning(row)["learning_failed"]
    assert evidence.learning_failures(row) == ["seed 0: loss only fell to 52 % of its start"]
    row["seeds"] = [seed(0.3, 1.0, (112.0, 155.0))]  # the loss fell, but the noise grew: the optimiser diverged
    assert evidence.learning_failures(judge := evidence.judge_learning(row)) == [
        "seed 0: noise norm grew from 112 to 155"] and judge["learning_failed"]
    row["keep_norm"] = True  # a norm held by the optimiser may end a rounding above its start
    assert not evidence.judge_learning(row)["learning_failed"] and evidence.MAX_LOSS_LEFT == 0.5


# --------------------------------------------------------------------------- Fig. 2, both halves (the study's readers)
def _point(lim, learned, shuffled, *, failed=False):
    """A sweep point from (match, logit MSE) pairs per seed for the learned noise and its shuffled copy."""
    return {"lim": lim, "lr": 1.0, "lr_choice": None, "learning_failed": failed,
            "seeds": [{"seed": index, "learned": {"match": lm, "logit_mse": le},
                       "shuffled": {"match": sm, "logit_mse": se}, "uniform": {"match": 0.5, "logit_mse": 9.0}}
                      for index, ((lm, le), (sm, se)) in enumerate(zip(learned, shuffled, strict=True))]}


def test_metric_separation_reads_match_and_mse_each_way_and_failed_points_give_none():
    from nullspace_utils.studies import approximate as study

    point = _point(0.5, [(0.996, 0.0012), (0.998, 0.0016)], [(0.994, 0.0038), (0.998, 0.0070)])
    assert study.metric_separation(point) == {"match": 0, "logit_mse": 1}  # match overlaps; MSE: learned lower
    assert study.at_ceiling(point) and study.MATCH_CEILING == 0.99
    worse = _point(4.0, [(0.6, 2.0), (0.7, 3.0)], [(0.9, 0.1), (0.95, 0.2)])
    assert study.metric_separation(worse) == {"match": -1, "logit_mse": -1} and not study.at_ceiling(worse)
    assert not study.at_ceiling(_point(1.0, [(1.0, 0.1)], [(0.989, 0.2)]))  # one seed under 99 % is enough
    failed = _point(1.0, [(0.9, 0.001)], [(0.5, 1.0)], failed=True)
    assert study.metric_separation(failed) == {"match": None, "logit_mse": None}
    sweep = {"models": {"vit": [point, failed, worse]}}
    rows = study.figure_2_rows(sweep)
    assert rows[0] == ["vit", "0.5", "99.6-99.8 vs 99.4-99.8", "not separable (at ceiling)",
                       "0.0012-0.0016 vs 0.0038-0.0070", "learned ahead"]
    assert rows[1][3] == rows[1][5] == "learning failed, no verdict"
    assert rows[2][3] == rows[2][5] == "learned behind"
    assert study.figure_2_summary(sweep) == [["vit", "none", "0.5", "0.5", "1"]]  # match, MSE, ceiling, failed


def test_mse_range_keeps_two_significant_digits_in_plain_decimals():
    from nullspace_utils.studies import approximate as study

    assert study.mse_range([0.0070, 0.0038]) == "0.0038-0.0070"
    assert study.mse_range([8.339e-05, 0.0001471]) == "0.000083-0.00015"
    assert study.mse_range([1.252, 12.3]) == "1.3-12" and study.mse_range([0.0296]) == "0.030-0.030"
    assert study.mse_range([0.009996, 0.0099]) == "0.0099-0.010"  # rounded before its digits are counted


def test_figure_2_plots_both_halves_from_the_file_with_the_exact_reference():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nullspace_utils.studies import approximate as study
    from nullspace_utils.studies import robustness

    sweep = study.RESULT.read(study.RESULT.path("teaching"))
    exact = study.exact_reference(robustness.RESULT.read(robustness.RESULT.path("teaching")))
    assert set(exact) == set(sweep["models"])
    assert all(value["match"] == 1.0 and value["logit_mse"] < 1e-9 and value["evaluations"] == 15
               for value in exact.values())  # 5 lims x 3 seeds of the robustness sweep, at float rounding
    mse = study.figure_2_panels(sweep["models"], field="logit_mse")
    first = sweep["models"]["zoo-vit-s"][0]
    assert mse[0]["series"][0]["values"][0] == [entry["learned"]["logit_mse"] for entry in first["seeds"]]
    assert study.figure_2_panels(sweep["models"])[0]["series"][1]["values"][0] == [
        100 * entry["shuffled"]["match"] for entry in first["seeds"]]
    with pytest.raises(ValueError, match="match or logit_mse"):
        study.figure_2_panels(sweep["models"], field="prob")
    fig = study.figure_2(sweep, exact)
    models = len(sweep["models"])
    assert [ax.get_yscale() for ax in fig.axes[:2 * models]] == ["linear"] * models + ["log"] * models
    assert [text.get_text() for text in fig.axes[0].texts] == ["exact: 100 %"]
    assert fig.axes[models].texts[0].get_text().startswith("↓ exact: ≤ ")  # far below the learned noise's MSE
    plt.close("all")


def test_the_section_4_claim_quotes_the_file():
    """Every number of the §4 sentence is recomputed here from the file, independently of the study's readers."""
    import re

    from nullspace_utils.studies import approximate as study

    sweep = study.RESULT.read(study.RESULT.path("teaching"))
    (claim,) = study.claims(sweep)
    assert claim.chapter == "approximate" and claim.figure == "approximate-fig2" and claim.verdict in evidence.VERDICTS

    def values(point, kind, field="match"):
        return [entry[kind][field] for entry in point["seeds"]]

    points = [(name, point) for name, rows in sweep["models"].items() for point in rows]
    mse_ahead = sum(min(values(p, "shuffled", "logit_mse")) > max(values(p, "learned", "logit_mse")) for _, p in points)
    match_ahead = {(name, p["lim"]) for name, p in points if min(values(p, "learned")) > max(values(p, "shuffled"))}
    assert f"at {mse_ahead} of {len(points)} points" in claim.sentence
    assert "e.g. zoo-vit-s at lim 0.5: 0.0012-0.0016 vs 0.0038-0.0070" in claim.sentence  # the numbers
    for name, rows in sweep["models"].items():
        lims = ", ".join(f"{p['lim']:g}" for p in rows if (name, p["lim"]) in match_ahead)
        assert f"{name} lim {lims}" in claim.sentence
    largest = [rows[-1] for rows in sweep["models"].values()]
    for kind in ("learned", "shuffled"):
        shown = " / ".join(f"{100 * min(values(p, kind)):.1f}-{100 * max(values(p, kind)):.1f}" for p in largest)
        assert shown in claim.sentence
    held = sweep["keep_norm"]["zoo-vit-s"][-1]
    assert (f"{100 * min(values(held, 'learned')):.1f}-{100 * max(values(held, 'learned')):.1f} % against "
            f"{100 * min(values(held, 'shuffled')):.1f}-{100 * max(values(held, 'shuffled')):.1f} %") in claim.sentence
    rest = [p for name, p in points if (name, p["lim"]) not in match_ahead]
    floor = min(min(values(p, "shuffled")) for p in rest)
    ceiling = sum(min(values(p, "shuffled")) >= 0.99 for p in rest)
    assert (f"at the {len(rest)} other points match is at or near its ceiling (the shuffled copy keeps at least "
            f"{100 * floor:.1f} % on every seed; 99 % or more at {ceiling} of them)") in claim.sentence
    failed = sum(p["learning_failed"] for _, p in points)
    assert ("no point failed to learn" in claim.sentence) == (failed == 0)
    reproduced = failed == 0 and mse_ahead == len(points) and all(
        (name, rows[-1]["lim"]) in match_ahead for name, rows in sweep["models"].items())
    assert claim.verdict == ("reproduced" if reproduced else "partly")
    # nothing else is typed: every number in the sentence is one of those checked above, a lim or a seed count
    checked = set(re.findall(r"\d+(?:\.\d+)?", " ".join([
        f"{mse_ahead} {len(points)} 0.0012-0.0016 0.0038-0.0070 {100 * floor:.1f} {ceiling} {len(rest)} 99 "
        f"{len(points[0][1]['seeds'])}", *(f"{p['lim']:g}" for _, p in points),
        *(f"{100 * v:.1f}" for p in [*largest, held] for kind in ("learned", "shuffled") for v in values(p, kind))])))
    assert set(re.findall(r"\d+(?:\.\d+)?", claim.sentence.replace("§4", ""))) <= checked | {"4"}


def test_false_separation_rate_is_the_chance_that_alike_seeds_separate():
    """The rate the book quotes for a separation on seed ranges, against a simulation of alike seeds."""
    generator = torch.Generator().manual_seed(0)
    draws = torch.rand(20_000, 6, generator=generator)
    first, second = draws[:, :3], draws[:, 3:]
    separated = ((first.min(1).values > second.max(1).values) | (first.max(1).values < second.min(1).values))
    assert abs(separated.float().mean().item() - evidence.false_separation_rate(3, 3)) < 0.01  # 0.1
    assert evidence.false_separation_rate(3, 3) == pytest.approx(0.1)
    assert evidence.false_separation_rate(9, 9) < 1e-4 and evidence.false_separation_rate(1, 1) == 1.0
    with pytest.raises(ValueError, match="at least one value"):
        evidence.false_separation_rate(0, 3)


def test_a_clean_pass_gives_the_evaluations_and_losses_computed_batch_by_batch(vit_s):
    """Evaluating with precomputed clean logits (clean_pass) changes no number, and both agree with the clean and
    noisy logits of each batch computed side by side: a pairing off by one batch, or a last short batch dropped,
    would change the match or the loss."""
    data = synthetic_dataset("val", n=20)  # batches of 8: 8, 8, 4
    images = torch.stack([data[i][0] for i in range(len(data))])
    for level in approximate.LEVELS:
        noise = approximate.uniform_noise(approximate.noise_shape(vit_s, level, 112), 0.5, seed=3)
        clean = approximate.clean_pass(vit_s, data, level=level, batch_size=8)
        assert [len(batch) for batch in clean.logits] == [8, 8, 4] and clean.images == 20
        with_clean = approximate.evaluate_noise(vit_s, data, noise, level=level, batch_size=8, clean=clean)
        assert with_clean == approximate.evaluate_noise(vit_s, data, noise, level=level, batch_size=8)
        with torch.no_grad(), models.exact_float32():
            reference = vit_s(images)
            with approximate.add_noise(vit_s, noise, level) as noisy_model:
                noisy = noisy_model(images)
        kept = (reference.argmax(1) == noisy.argmax(1)).float().mean().item()
        assert with_clean.match == pytest.approx(kept)
        assert with_clean.logit_mse == pytest.approx((reference - noisy).pow(2).mean(1).mean().item(), rel=1e-4)
        clean_probability = reference.softmax(1).max(1).values
        changed = noisy.softmax(1).gather(1, reference.argmax(1, keepdim=True))[:, 0]
        assert with_clean.prob_change == pytest.approx((clean_probability - changed).abs().mean().item(), rel=1e-4)
        if level == "input":  # the clean inputs' mean norm: the images'
            assert with_clean.clean_norm == pytest.approx(images.flatten(1).norm(dim=1).mean().item(), rel=1e-5)
        first_twelve = approximate.clean_pass(vit_s, data, level=level, batch_size=8, images=12)
        assert [len(batch) for batch in first_twelve.logits] == [8, 4]
        loss = approximate.training_loss(vit_s, data, noise, level=level, images=12, batch_size=8, clean=first_twelve)
        assert loss == approximate.training_loss(vit_s, data, noise, level=level, images=12, batch_size=8)
        expected = approximate.logit_distance(reference[:12], noisy[:12]).mean().item()
        assert loss == pytest.approx(expected, rel=1e-4)


def test_a_clean_pass_of_other_data_is_refused(vit_s):
    data = synthetic_dataset("val", n=20)
    noise = torch.zeros(approximate.noise_shape(vit_s, "input", 112))
    clean = approximate.clean_pass(vit_s, data, level="input", batch_size=8)
    with pytest.raises(ValueError, match="batches of 8, not 4"):
        approximate.evaluate_noise(vit_s, data, noise, level="input", batch_size=4, clean=clean)
    with pytest.raises(ValueError, match="level 'input', not 'encoder'"):
        approximate.evaluate_noise(vit_s, data, torch.zeros(49, 96), level="encoder", batch_size=8, clean=clean)
    with pytest.raises(ValueError, match="clean covers 20 images"):
        approximate.evaluate_noise(vit_s, synthetic_dataset("val", n=28), noise, level="input", batch_size=8,
                                   clean=clean)
    partial = approximate.clean_pass(vit_s, data, level="input", batch_size=8, images=12)
    with pytest.raises(ValueError, match="clean covers 12 images"):
        approximate.evaluate_noise(vit_s, data, noise, level="input", batch_size=8, clean=partial)
    with pytest.raises(ValueError, match="images=16"):
        approximate.training_loss(vit_s, data, noise, level="input", images=16, batch_size=8, clean=partial)
    with pytest.raises(ValueError, match="shuffle=False"):
        approximate.clean_pass(vit_s, DataLoader(data, batch_size=8, shuffle=True), level="input")
    other = models.load_model("zoo-vit-b")
    with pytest.raises(ValueError, match="another model"):
        approximate.evaluate_noise(other, data, noise, level="input", batch_size=8, clean=clean)


def test_noises_learned_together_are_the_noises_learned_alone(vit_s):
    """learn_noises with several noises per pass (what a GPU does by default) gives each seed the noise it learns
    alone, up to the rounding of a larger batch; a rate probe run together picks the same rate. One per pass (the
    CPU's default) is learn_noise exactly."""
    data = synthetic_dataset("train", n=40)  # batches of 16: 16, 16, 8, so a step meets a short batch
    settings = {"lim": 0.5, "steps": 5, "milestones": (3,), "batch_size": 16}
    for level in approximate.LEVELS:
        together = approximate.learn_noises(vit_s, data, level=level, seeds=(0, 1, 2), lr=1.0, per_pass=3,
                                            keep_norm=level == "input", **settings)
        alone = approximate.learn_noises(vit_s, data, level=level, seeds=(0, 1, 2), lr=1.0, per_pass=1,
                                         keep_norm=level == "input", **settings)
        for first, second, seed in zip(together, alone, (0, 1, 2), strict=True):
            assert torch.allclose(first.noise, second.noise, rtol=1e-4, atol=1e-5)
            assert [entry["loss"] for entry in first.history] == pytest.approx(
                [entry["loss"] for entry in second.history], rel=1e-4)
            assert [entry["lr"] for entry in first.history] == [1.0] * 2 + [0.1] * 3  # the rate after each step
            single = approximate.learn_noise(vit_s, data, level=level, seed=seed, lr=1.0, keep_norm=level == "input",
                                             **settings)
            assert torch.equal(single.noise, second.noise) and single.history == second.history
        assert not torch.allclose(together[0].noise, together[1].noise)  # each seed its own start and batches
    probes = {"level": "encoder", "lim": 0.5, "grid": (0.1, 1.0, 10.0), "steps": 3, "batch_size": 16}
    shared, one_by_one = (approximate.choose_lr(vit_s, data, per_pass=count, **probes) for count in (5, 1))
    assert shared.lr == one_by_one.lr and shared.grid == one_by_one.grid
    assert list(shared.scores.values()) == pytest.approx(list(one_by_one.scores.values()), rel=1e-4)


def test_a_dataloader_learns_its_noises_one_per_pass(vit_s):
    """A DataLoader has one batch order for every seed, so its noises cannot share passes: per_pass is ignored."""
    data = DataLoader(synthetic_dataset("train", n=24), batch_size=8, shuffle=True,
                      generator=torch.Generator().manual_seed(0))
    settings = {"level": "input", "lim": 0.3, "seeds": (0, 1), "steps": 3, "lr": 1.0, "milestones": ()}
    torch.manual_seed(0)
    together = approximate.learn_noises(vit_s, data, per_pass=2, **settings)
    data.generator.manual_seed(0)
    alone = approximate.learn_noises(vit_s, data, per_pass=1, **settings)
    assert all(torch.equal(a.noise, b.noise) for a, b in zip(together, alone, strict=True))


def test_noises_per_pass_fills_a_gpu_by_its_memory_and_keeps_the_cpu_exact(vit_s, monkeypatch):
    memory = {"bytes": 85_000_000_000}  # what torch reports for an H100 80GB
    monkeypatch.setattr(approximate, "_cuda_memory_bytes", lambda device: memory["bytes"])
    assert approximate.noises_per_pass(None, 256, "cuda") == approximate.IMAGES_PER_PASS // 256 == 3
    assert approximate.noises_per_pass(None, 1024, "cuda:0") == 1 and approximate.noises_per_pass(None, 8, "cpu") == 1
    memory["bytes"] = 150_000_000_000  # an H200
    assert approximate.noises_per_pass(None, 256, "cuda") == 5
    memory["bytes"] = 15_800_000_000  # a 16 GB T4: one noise of 256 images needs up to 11.5 GiB
    assert approximate.noises_per_pass(None, 256, "cuda") == 1 and approximate.noises_per_pass(None, 64, "cuda") == 2
    assert approximate.noises_per_pass(2, 256, "cpu") == 2
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="per_pass must be a whole number"):
            approximate.noises_per_pass(bad, 256, "cpu")
    with pytest.raises(ValueError, match="seeds is empty"):
        approximate.learn_noises(vit_s, synthetic_dataset("train", n=8), level="input", lim=0.1, seeds=(), lr=1.0)
    images = torch.stack([synthetic_dataset("val", n=2)[i][0] for i in range(2)])
    with torch.no_grad(), approximate.add_noise(vit_s, torch.zeros(3, 49, 96), "encoder") as noisy_model:
        with pytest.raises(ValueError, match="one noise per image"):
            noisy_model(images)  # three noises for two images


def test_parts_sharing_a_gpu_count_their_share_of_its_memory(monkeypatch):
    """The plan tells each part how many share its GPU (NULLSPACE_GPU_SHARE); three parts on an H100 then learn one
    noise per pass each instead of three."""
    import types

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(
        total_memory=85_000_000_000))
    monkeypatch.delenv(approximate.GPU_SHARE_VARIABLE, raising=False)
    assert approximate.noises_per_pass(None, 256, "cuda") == 3
    monkeypatch.setenv(approximate.GPU_SHARE_VARIABLE, "3")
    assert approximate.noises_per_pass(None, 256, "cuda") == 1
    monkeypatch.setenv(approximate.GPU_SHARE_VARIABLE, "0")
    with pytest.raises(ValueError, match="NULLSPACE_GPU_SHARE='0' must be a whole number"):
        approximate.noises_per_pass(None, 256, "cuda")


def test_clean_logits_computed_once_give_the_noises_computed_per_step(vit_s):
    """With clean_once (the default on CUDA) the clean logits of the training images come from one pass before the
    first step, looked up by index at every step: the same noises, losses and rate choice as computed per step (up
    to rounding: an image's logits come from another batch), with one clean forward per batch of the data instead
    of one per step."""
    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset

    data = TensorDataset(*stack_dataset(synthetic_dataset("train", n=40)))  # batches of 16: 16, 16, 8
    settings = {"lim": 0.5, "seeds": (0, 1, 2), "steps": 5, "milestones": (3,), "batch_size": 16, "lr": 1.0}
    calls = {"count": 0}
    handle = vit_s.register_forward_hook(lambda module, inputs, output: calls.__setitem__("count", calls["count"] + 1))
    try:
        for level in approximate.LEVELS:
            for per_pass in (3, 1):
                learned = {}
                for once in (False, True):
                    calls["count"] = 0
                    learned[once] = approximate.learn_noises(vit_s, data, level=level, per_pass=per_pass,
                                                             keep_norm=level == "input", clean_once=once, **settings)
                    passes = 3 // per_pass  # forward passes of the noisy images, each of 5 steps
                    # per step: a clean and a noisy forward; once: 3 clean batches, then the noisy forwards alone
                    assert calls["count"] == (3 + passes * 5 if once else passes * 2 * 5)
                for first, second in zip(learned[True], learned[False], strict=True):
                    assert torch.allclose(first.noise, second.noise, rtol=1e-4, atol=1e-5)
                    assert [entry["loss"] for entry in first.history] == pytest.approx(
                        [entry["loss"] for entry in second.history], rel=1e-4)
    finally:
        handle.remove()
    probes = {"level": "encoder", "lim": 0.5, "grid": (0.1, 1.0, 10.0), "steps": 3, "batch_size": 16, "per_pass": 5}
    once, per_step = (approximate.choose_lr(vit_s, data, clean_once=flag, **probes) for flag in (True, False))
    assert once.lr == per_step.lr and list(once.scores.values()) == pytest.approx(list(per_step.scores.values()),
                                                                                   rel=1e-4)


def test_compiled_learning_passes_give_the_eager_noises_and_leave_the_model_as_it_was(vit_s, monkeypatch):
    """compile=True runs the learning passes through torch.compile (here its aot_eager backend: the same graphs,
    no code generation): at both levels the same noises and losses as without, the encoder's ViT gets its own
    blocks back, each new batch size compiles at most once more, and a ViT without blocks or a bad value is
    refused before anything runs."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset

    monkeypatch.setattr(approximate, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    data = TensorDataset(*stack_dataset(synthetic_dataset("train", n=40)))  # batches of 16: 16, 16, 8
    settings = {"lim": 0.5, "seeds": (0, 1), "steps": 4, "milestones": (2,), "batch_size": 16, "lr": 1.0,
                "per_pass": 2, "clean_once": True}
    blocks, net = models.unwrap(vit_s).blocks, vit_s.net
    for level in approximate.LEVELS:
        counters.clear()
        eager = approximate.learn_noises(vit_s, data, level=level, **settings)
        compiled = approximate.learn_noises(vit_s, data, level=level, compile=True, **settings)
        again = approximate.learn_noises(vit_s, data, level=level, compile=True, **settings)
        assert vit_s.net is net and models.unwrap(vit_s).blocks is blocks  # put back
        for first, second, third in zip(eager, compiled, again, strict=True):
            assert torch.allclose(first.noise, second.noise, rtol=1e-4, atol=1e-5)
            assert torch.equal(second.noise, third.noise)
            assert [entry["loss"] for entry in first.history] == pytest.approx(
                [entry["loss"] for entry in second.history], rel=1e-4)
        assert counters["stats"]["unique_graphs"] == 2  # the full and the last batch: not per step, nor per call
    with pytest.raises(ValueError, match="compile must be True or False"):
        approximate.learn_noise(vit_s, data, level="input", lim=0.1, lr=1.0, compile="yes")
    with pytest.raises(ValueError, match="compiles the ViT's `blocks`"):
        with approximate.compiled_passes(torch.nn.Linear(2, 2), "encoder", True):
            pass
    with approximate.compiled_passes(torch.nn.Linear(2, 2), "input", True) as whole:  # a plain model: compiled whole
        assert torch.allclose(whole(torch.ones(1, 2)), whole._orig_mod(torch.ones(1, 2)))


def test_clean_logits_are_computed_once_on_cuda_only_by_default_and_only_for_tensor_datasets(vit_s):
    from torch.utils.data import TensorDataset

    tensors = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    assert approximate.clean_logits_once(None, tensors, "cuda") and approximate.clean_logits_once(None, tensors, "cuda:1")
    assert not approximate.clean_logits_once(None, tensors, "cpu")  # the committed results, bit for bit
    other = synthetic_dataset("train", n=4)
    assert not approximate.clean_logits_once(None, other, "cuda")
    assert not approximate.clean_logits_once(False, tensors, "cuda") and approximate.clean_logits_once(True, tensors, "cpu")
    with pytest.raises(ValueError, match="clean_once=True needs a TensorDataset"):
        approximate.clean_logits_once(True, other, "cpu")
    with pytest.raises(ValueError, match="clean_once=True needs a TensorDataset"):
        approximate.learn_noise(vit_s, other, level="input", lim=0.1, lr=1.0, clean_once=True)
    with pytest.raises(ValueError, match="clean_once must be True, False or None"):
        approximate.clean_logits_once("yes", tensors, "cpu")
