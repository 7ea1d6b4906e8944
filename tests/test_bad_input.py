"""Bad input to the library gets a clear error that names the problem and the fix, never a silently wrong
number or a raw torch error (issue 21's list, each case as it was reported)."""

import copy
import time

import pytest
import torch

from nullspace_utils import box_solver, data, exact, fingerprint, fooling, metrics, models, watermark, xai


@pytest.fixture(scope="module")
def images():
    return data.stack_dataset(data.synthetic_dataset("val", n=4))[0]


def test_8bit_and_0_255_images_are_refused_by_the_model(vit_s, images):
    with pytest.raises(TypeError, match=r"images.float\(\) / 255"):
        vit_s((images * 255).round().to(torch.uint8))
    with pytest.raises(ValueError, match="0 to 255"):
        vit_s((images * 255).round())  # float, but every value a whole number up to 255: an 8-bit image
    disguised = fooling.disguise(vit_s, images[0], images[1]).image  # far outside [0, 1], not whole numbers
    assert vit_s(disguised[None]).shape == (1, 10)


def test_disguise_refuses_uint8(vit_s, images):
    as_bytes = (images * 255).round().to(torch.uint8)
    with pytest.raises(TypeError, match="255"):
        fooling.disguise(vit_s, as_bytes[0], as_bytes[1])


def test_float16_model_takes_float32_images(vit_s, images):
    half = models.ImageClassifier(models.build_zoo_network("zoo-vit-s"), vit_s.mean, vit_s.std).half()
    assert half(images).dtype == torch.float16


def test_nan_and_infinite_inputs_are_refused(vit_s, images):
    broken = images.clone()
    broken[0, 0, 0, 0] = float("nan")
    noise = exact.random_nullspace_noise(vit_s, 112)
    with pytest.raises(ValueError, match="NaN"):
        metrics.logit_change(vit_s, broken, noise)
    with pytest.raises(ValueError, match="NaN"):
        metrics.logit_change(vit_s, images, noise * float("inf"))
    with pytest.raises(ValueError, match="NaN"):
        xai.relevance(vit_s, broken[0])
    with pytest.raises(ValueError, match="NaN"):
        xai.attribute(vit_s, broken[0], method="saliency")
    with pytest.raises(ValueError, match="NaN"):
        fingerprint.make_fingerprint(vit_s, n_probes=2, images=broken)
    with pytest.raises(ValueError, match="NaN"):
        watermark.embed(vit_s, images[0], broken[0])


@pytest.mark.parametrize("rho", [float("nan"), 0.0, -1.0, float("inf")])
def test_solver_settings_are_checked(vit_s, images, rho):
    with pytest.raises(ValueError, match="rho"):
        watermark.embed(vit_s, images[0], images[1], rho=rho)


def test_rank_deficient_patch_map_is_explained():
    row = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    matrix = torch.cat([row, 2 * row])  # two equal constraints: W W^T is singular
    start, target = torch.full((1, 3), 0.5), torch.zeros(1, 3)
    with pytest.raises(ValueError, match="linearly dependent"):
        box_solver.solve_patches(matrix, start, target)


def test_integer_noise_dtype_is_refused(vit_s):
    with pytest.raises(TypeError, match="floating"):
        exact.random_nullspace_noise(vit_s, 112, dtype=torch.int64)


def test_model_on_the_meta_device_is_explained():
    with torch.device("meta"):
        net = models.build_zoo_network("zoo-vit-s")
    with pytest.raises(ValueError, match="meta"):
        exact.patch_nullspace(models.ImageClassifier(net, models.ZOO_MEAN, models.ZOO_STD))


def test_out_of_range_target_class(vit_s, images):
    with pytest.raises(ValueError, match="class 10.*10 classes"):
        xai.relevance(vit_s, images[0], target=10)
    with pytest.raises(ValueError, match="class -1"):
        xai.attribute(vit_s, images[:2], method="saliency", target=[0, -1])


def test_offline_pretrained_load_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)  # as on a machine with no network
    started = time.perf_counter()
    with pytest.raises(models.WeightsUnavailableError, match="weights="):
        models.load_model("vit_small_patch32_224")
    assert time.perf_counter() - started < 5


def test_hub_reachability_probe_gives_up_quickly(monkeypatch):
    import socket

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert models._hub_reachable(timeout=0.1) is False


def test_timm_config_without_statistics_is_an_error(monkeypatch):
    import timm

    real = timm.create_model

    def without_statistics(*args, **kwargs):
        net = real(*args, **kwargs)
        net.pretrained_cfg = {key: value for key, value in net.pretrained_cfg.items() if key not in ("mean", "std")}
        return net

    monkeypatch.setattr(timm, "create_model", without_statistics)
    with pytest.raises(models.NormalisationUnknownError, match="mean and std"):
        models.load_model("vit_tiny_patch16_224", pretrained=False)


def test_library_functions_leave_the_callers_model_and_random_state_alone(vit_s, images):
    from nullspace_utils import approximate

    model = copy.deepcopy(vit_s).train()  # a caller's model in training mode
    labels = torch.arange(len(images))
    data_set = torch.utils.data.TensorDataset(images, labels)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    learned = approximate.learn_noise(model, data_set, level="encoder", lim=0.5, steps=2, batch_size=2, lr=0.1)
    approximate.evaluate_noise(model, data_set, learned.noise, level="encoder")
    xai.relevance(model, images[0])
    xai.attribute(model, images[0], method="saliency")
    fingerprint.as_query(model)(images)
    for _ in fingerprint.tune_copy(model, images, labels, part="head", steps=1, lr=1e-4, reset_head=True, seed=3):
        pass
    assert model.training and all(module.training for module in model.modules())
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert torch.equal(torch.rand(3), expected)  # no function reseeded or drew from the global generator
