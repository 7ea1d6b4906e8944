"""Devices: a model computes where it is, CPU images go in, results come back on the CPU (profiles' device).

The tests marked ``cuda`` need a GPU: CI has none, so they are skipped there and run on a GPU machine
(``python -m pytest tests/test_devices.py``); the others run everywhere.
"""

import copy

import pytest
import torch

from nullspace_utils import approximate, exact, metrics, models, watermark, xai
from nullspace_utils import fingerprint as fp
from nullspace_utils.profiles import get_profile, profile_device
from nullspace_utils.studies import fingerprint as fingerprint_study

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# --------------------------------------------------------------------------- everywhere
def test_model_device_reads_parameters_then_buffers():
    assert models.model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert models.model_device(torch.nn.Identity()) == torch.device("cpu")  # nothing to read: the CPU


def test_profile_devices_and_the_override(monkeypatch):
    monkeypatch.delenv("NULLSPACE_DEVICE", raising=False)
    assert get_profile("teaching").device == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_profile("imagenet").device.type == expected
    monkeypatch.setenv("NULLSPACE_DEVICE", "cpu")
    assert profile_device("imagenet") == torch.device("cpu")
    monkeypatch.setenv("NULLSPACE_DEVICE", "gpu")
    with pytest.raises(ValueError, match="not a torch device"):
        get_profile("teaching")
    if not torch.cuda.is_available():
        monkeypatch.setenv("NULLSPACE_DEVICE", "cuda")
        with pytest.raises(ValueError, match="Unset NULLSPACE_DEVICE"):
            get_profile("teaching")


def test_profile_puts_its_models_on_its_device():
    import dataclasses

    # a profile whose device differs from the CPU (meta: shapes only, so no GPU is needed to tell them apart)
    profile = dataclasses.replace(get_profile("teaching"), device=torch.device("meta"))
    assert models.model_device(profile.load_model("zoo-vit-s")) == torch.device("meta")
    # an explicit device= wins over the profile's
    assert models.model_device(profile.load_model("zoo-vit-s", device="cpu")) == torch.device("cpu")


def test_learned_noise_comes_back_on_the_cpu(vit_s, val_batch):
    data = torch.utils.data.TensorDataset(*val_batch)
    result = approximate.learn_noise(vit_s, data, level="encoder", lim=0.5, steps=2, batch_size=8, lr=0.1)
    assert result.noise.device == torch.device("cpu")
    assert models.model_device(vit_s) == torch.device("cpu")


# --------------------------------------------------------------------------- on a GPU
@pytest.fixture(scope="module")
def vit_pair(vit_s):
    """The zoo's ViT-S on the CPU and an identical copy on the GPU."""
    return vit_s, copy.deepcopy(vit_s).to("cuda")


@cuda
def test_cpu_images_through_a_gpu_model(vit_pair, val_batch):
    cpu_model, gpu_model = vit_pair
    images = val_batch[0][:8]
    logits = gpu_model(images)
    assert logits.device == torch.device("cpu")
    torch.testing.assert_close(logits, cpu_model(images), atol=1e-3, rtol=1e-3)
    # autograd follows the copy to the GPU and back
    inputs = images.clone().requires_grad_(True)
    gpu_model(inputs).sum().backward()
    assert inputs.grad is not None and inputs.grad.device == torch.device("cpu") and inputs.grad.abs().sum() > 0
    assert gpu_model(images.cuda()).device.type == "cuda"  # GPU images: GPU logits


@cuda
def test_exact_functions_on_a_gpu_model(vit_pair, val_batch):
    cpu_model, gpu_model = vit_pair
    images = val_batch[0][:4]
    tokens = exact.patch_embeddings(gpu_model, images)
    assert tokens.device == torch.device("cpu")
    torch.testing.assert_close(tokens, exact.patch_embeddings(cpu_model, images), atol=1e-4, rtol=1e-4)
    noise = exact.random_nullspace_noise(gpu_model, 112, amplitude=1.0, seed=0)
    assert metrics.logit_change(gpu_model, images, noise).max() < 1e-3


@cuda
def test_learning_and_evaluating_noise_stay_on_the_models_device(vit_pair, val_batch):
    _, gpu_model = vit_pair
    data = torch.utils.data.TensorDataset(*val_batch)
    result = approximate.learn_noise(gpu_model, data, level="encoder", lim=0.5, steps=3, batch_size=8, lr=0.1)
    assert result.noise.device == torch.device("cpu")
    assert models.model_device(gpu_model).type == "cuda"  # not moved back to the CPU
    evaluation = approximate.evaluate_noise(gpu_model, data, result.noise, level="encoder")
    assert 0 <= evaluation.match <= 1
    assert models.model_device(gpu_model).type == "cuda"


@cuda
def test_watermark_runs_on_the_models_device(vit_pair, val_batch):
    _, gpu_model = vit_pair
    images = val_batch[0][:2]
    result = watermark.embed(gpu_model, images, torch.zeros_like(images[0]))
    assert result.image.device == torch.device("cpu")
    assert result.embedding_residual < 1e-4
    from nullspace_utils.studies import watermark as watermark_study

    conditions = watermark_study.evaluate(gpu_model, images, torch.zeros_like(images[0]))
    assert conditions["exact"]["match"] == 1.0
    assert models.model_device(gpu_model).type == "cuda"


@cuda
@pytest.mark.parametrize("precision,compiled", [("float32", False), ("tf32", False), ("bfloat16", False),
                                                ("tf32", True)])
def test_watermark_precisions_keep_exactness_and_tf32_flags(vit_pair, val_batch, precision, compiled):
    """Lower-precision matmuls and compiled iterations on a GPU: the float64 polish keeps the embeddings
    exact, the objective stays within 1 % of the CPU float32 solution's, and TF32 is off again afterwards."""
    cpu_model, gpu_model = vit_pair
    images, mark = val_batch[0][:4], torch.rand(3, *val_batch[0].shape[-2:], generator=torch.Generator().manual_seed(0))
    reference = watermark.embed(cpu_model, images, mark)
    before = torch.backends.cuda.matmul.allow_tf32
    result = watermark.embed(gpu_model, images, mark, precision=precision, compile=compiled)
    assert torch.backends.cuda.matmul.allow_tf32 == before
    assert result.embedding_residual < 1e-5 and result.box_violation == 0
    assert ((result.objective - reference.objective) / reference.objective).abs().max() < 1e-2


@cuda
def test_explanations_of_a_gpu_model_match_the_cpu_ones(vit_pair, val_batch):
    cpu_model, gpu_model = vit_pair
    images = val_batch[0][:2]
    for compute in (lambda m: xai.relevance(m, images), lambda m: xai.attribute(m, images, method="saliency")):
        on_gpu, on_cpu = compute(gpu_model), compute(cpu_model)
        assert on_gpu.device == torch.device("cpu")
        assert metrics.compare_maps(on_cpu, on_gpu)["correlation"] > 0.999


@cuda
def test_fingerprint_suspects_on_a_gpu_owner(vit_pair, val_batch):
    _, gpu_model = vit_pair
    secret = fp.make_fingerprint(gpu_model, n_probes=4, amplitude=0.25, seed=0, images=val_batch[0])
    suspects = fingerprint_study.make_suspects(get_profile("teaching"), gpu_model)
    assert models.model_device(suspects["int8 copy"][0]) == torch.device("cpu")  # int8 kernels are CPU-only
    for name in ("owner", "exact copy", "float16 copy", "int8 copy"):
        result = fp.verify(secret, fp.as_query(suspects[name][0], "label"), output="label")
        assert result.n == 4, name
    assert fp.verify(secret, fp.as_query(gpu_model, "logits"), output="logits").kept == 4


@cuda
def test_exact_invariance_on_a_gpu_without_changing_the_tf32_flags(monkeypatch):
    """The imagenet profile on a GPU: loading leaves TF32 as the caller set it (cuDNN's default: on), and
    the metrics compute in full float32 all the same (models.exact_float32), so nullspace noise stays exact."""
    monkeypatch.delenv("NULLSPACE_DEVICE", raising=False)
    monkeypatch.setenv("NULLSPACE_WEIGHTS", "random")
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        profile = get_profile("imagenet")
        vit = profile.load_model(profile.vit_models[0])
        assert models.model_device(vit).type == "cuda" and torch.backends.cudnn.allow_tf32
        images = torch.rand(4, 3, 224, 224)
        noise = exact.random_nullspace_noise(vit, 224, amplitude=1.0, seed=0)
        assert metrics.logit_change(vit, images, noise).max() < 1e-3
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = previous
