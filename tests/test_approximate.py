import pytest
import torch
from torch.utils.data import DataLoader

from nullspace_utils import approximate, models
from nullspace_utils.data import synthetic_dataset


@pytest.fixture(scope="module")
def vit():
    return models.load_model("zoo-vit-s")


@pytest.fixture(scope="module")
def small_data():
    return synthetic_dataset("val", n=24)


def test_noise_shapes(vit):
    assert approximate.noise_shape(vit, "encoder", 112) == (49, 96)
    assert approximate.noise_shape(vit, "input", 112) == (3, 112, 112)


def test_zero_noise_is_harmless(vit, small_data):
    for level in approximate.LEVELS:
        zero = torch.zeros(approximate.noise_shape(vit, level, 112))
        result = approximate.evaluate_noise(vit, small_data, zero, level=level)
        assert result.match == 1.0 and result.logit_mse == 0.0 and result.prob_change == 0.0
        assert result.noise_norm == 0.0 and result.clean_norm > 0


def test_hook_is_removed_and_noise_reaches_the_encoder(vit, small_data):
    images = torch.stack([small_data[i][0] for i in range(4)])
    with torch.no_grad():
        before = vit(images)
        noise = torch.randn(49, 96) * 5
        with approximate.add_noise(vit, noise, "encoder") as noisy:
            changed = noisy(images)
        after = vit(images)
    assert torch.equal(before, after)
    assert (changed - before).abs().max() > 1e-2
    assert len(vit.net.patch_embed._forward_hooks) == 0


def test_shuffle_keeps_the_values():
    noise = torch.randn(49, 96)
    shuffled = approximate.shuffle_noise(noise, seed=1)
    assert torch.equal(shuffled.flatten().sort().values, noise.flatten().sort().values)
    assert not torch.equal(shuffled, noise)
    assert torch.equal(shuffled, approximate.shuffle_noise(noise, seed=1))


def test_learning_reduces_the_loss(vit, small_data):
    loader = DataLoader(small_data, batch_size=8, shuffle=False)
    result = approximate.learn_noise(vit, loader, level="encoder", lim=1.0, steps=30, lr=0.05,
                                     milestones=())
    assert result.noise.shape == (49, 96)
    first = sum(h["loss"] for h in result.history[:3])
    last = sum(h["loss"] for h in result.history[-3:])
    assert last < 0.8 * first
    assert all(p.requires_grad for p in vit.parameters())  # the model's own flags are restored


def test_keep_norm_holds_the_norm(vit, small_data):
    result = approximate.learn_noise(vit, small_data, level="encoder", lim=0.5, steps=5, batch_size=8,
                                     keep_norm=True)
    assert result.norm == pytest.approx(result.initial_norm, rel=1e-5)
    assert all(h["norm"] == pytest.approx(result.initial_norm, rel=1e-5) for h in result.history)


def test_input_level_for_a_cnn(small_data):
    cnn = models.load_model("zoo-mobilenetv3")
    result = approximate.learn_noise(cnn, small_data, level="input", lim=0.1, steps=3, batch_size=8)
    assert result.noise.shape == (3, 112, 112)
    evaluation = approximate.evaluate_noise(cnn, small_data, result.noise, level="input")
    assert 0.0 <= evaluation.match <= 1.0 and evaluation.noise_norm == pytest.approx(result.norm)
    unchanged = approximate.evaluate_noise(cnn, small_data, torch.zeros_like(result.noise), level="input")
    assert unchanged.match == 1.0 and unchanged.logit_mse == 0.0  # no noise, no change: the measure is not blind


def test_errors(vit, small_data):
    with pytest.raises(ValueError, match="level"):
        approximate.noise_shape(vit, "middle", 112)
    with pytest.raises(ValueError, match="input"):
        approximate.noise_shape(models.load_model("zoo-resnet"), "encoder", 112)
    with pytest.raises(ValueError, match="lim"):
        approximate.learn_noise(vit, small_data, level="encoder", lim=0.0)
    with pytest.raises(ValueError, match="shape"):
        approximate.evaluate_noise(vit, small_data, torch.zeros(10, 96), level="encoder")


def test_tensor_datasets_are_batched_by_slicing(vit, small_data):
    from torch.utils.data import TensorDataset

    from nullspace_utils.data import stack_dataset

    images, labels = stack_dataset(small_data)
    noise = torch.randn(49, 96)
    fast = approximate.evaluate_noise(vit, TensorDataset(images, labels), noise, level="encoder", batch_size=10)
    slow = approximate.evaluate_noise(vit, small_data, noise, level="encoder", batch_size=10)
    assert fast.match == slow.match and fast.logit_mse == pytest.approx(slow.logit_mse, rel=1e-5)


def test_progress_bars_only_when_asked(vit, small_data, capsys):
    zero = torch.zeros(49, 96)
    approximate.learn_noise(vit, small_data, level="encoder", lim=0.5, steps=2, batch_size=8)
    approximate.evaluate_noise(vit, small_data, zero, level="encoder", batch_size=8)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""  # the default: notebook outputs do not change
    approximate.learn_noise(vit, small_data, level="encoder", lim=0.5, steps=2, batch_size=8, show_progress=True)
    approximate.evaluate_noise(vit, small_data, zero, level="encoder", batch_size=8, show_progress=True)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "learning encoder noise, lim 0.5" in shown.err and "2/2" in shown.err  # 2 SGD steps
    assert "evaluating encoder noise" in shown.err and "3/3" in shown.err  # 24 images in batches of 8


def test_learning_logs_its_losses_and_computes_in_full_float32(vit, small_data, caplog):
    import logging

    seen = []
    handle = vit.register_forward_pre_hook(
        lambda module, inputs: seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)))
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("high")  # TF32 allowed by the caller
        torch.backends.cudnn.allow_tf32 = True
        with caplog.at_level(logging.DEBUG, logger="nullspace_utils.approximate"):
            approximate.learn_noise(vit, small_data, level="encoder", lim=0.5, steps=2, batch_size=8)
        approximate.evaluate_noise(vit, small_data, torch.zeros(49, 96), level="encoder", batch_size=8)
        assert seen and all(flags == ("highest", False) for flags in seen)
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32  # restored
    finally:
        handle.remove()
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn
    assert "learned encoder noise, lim 0.5" in caplog.text and "loss" in caplog.text
