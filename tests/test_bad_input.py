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
    mixed = torch.cat([images[:1], (images[1:2] * 255).round()])
    with pytest.raises(ValueError, match="1 of them"):
        vit_s(mixed)  # one 8-bit image among images in [0, 1]: tested image by image
    disguised = fooling.disguise(vit_s, images[0], images[1]).image  # far outside [0, 1], not whole numbers
    assert vit_s(disguised[None]).shape == (1, 10)


def test_learning_refuses_8bit_data_once_and_skips_the_per_step_test(vit_s, images, monkeypatch):
    """Data held in memory is tested once, before the first step (whole numbers up to 255 refused); then the
    steps' forward passes skip the model's own test, which would wait for a GPU at every step (#33)."""
    from nullspace_utils import approximate

    as_bytes = torch.utils.data.TensorDataset((images * 255).round(), torch.arange(len(images)))
    with pytest.raises(ValueError, match="0 to 255"):
        approximate.learn_noise(vit_s, as_bytes, level="encoder", lim=1.0, steps=1, lr=0.1, batch_size=4)
    tested = []
    real_test = models.check_not_8bit
    monkeypatch.setattr(models, "check_not_8bit", lambda batch, **kw: (tested.append(len(batch)), real_test(batch, **kw)))
    good = torch.utils.data.TensorDataset(images, torch.arange(len(images)))
    approximate.learn_noise(vit_s, good, level="encoder", lim=1.0, steps=3, lr=0.1, batch_size=2)
    assert tested == [len(images)]  # the whole set once, no step's batch
    with models.inputs_checked():
        assert vit_s((images * 255).round()).shape == (len(images), 10)  # trusted inside the block
    with pytest.raises(ValueError, match="0 to 255"):
        vit_s((images * 255).round())  # and tested again after it


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


# --------------------------------------------------------------------------- issue 32
def test_normalisation_is_read_only_so_forward_and_nullspace_agree(vit_s, images):
    model = copy.deepcopy(vit_s)
    for name in ("mean", "std"):
        with pytest.raises(AttributeError, match=r"read-only.*ImageClassifier\(model.net, mean, std"):
            setattr(model, name, (0.5, 0.5, 0.5))
    assert exact.normalisation(model) == (model.mean, model.std)
    assert model._std.flatten().tolist() == pytest.approx(model.std)  # the buffers the forward uses
    noise = exact.random_nullspace_noise(model, 112, amplitude=1.0)
    assert metrics.logit_change(model, images, noise).max() < 1e-5  # float rounding, not the 4.8e-3 of a stale std


def _true_residual(model, original, returned):
    """max |W_pix (y - x)| over patches, from the tensors as they are (in their dtype)."""
    matrix = exact.patch_embedding_matrix(model)
    r = exact.patch_embedding_layer(model).kernel_size[0]
    moved = exact.to_patches(returned.double()[None], r) - exact.to_patches(original.double()[None], r)
    return (moved @ matrix.T).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_watermark_reports_the_residual_of_what_it_returns(vit_s, images, dtype):
    image, mark = images[0].to(dtype), images[1].to(dtype)
    result = watermark.embed(vit_s, image, mark)
    assert result.image.dtype == dtype
    true = _true_residual(vit_s, image, result.image)
    assert result.embedding_residual == pytest.approx(true, rel=1e-6) and true > 1e-4  # rounding, said as it is
    assert watermark.embed(vit_s, images[0], images[1]).embedding_residual < 1e-5  # float32 stays exact


def test_half_precision_disguise_is_not_called_exact(vit_s, images):
    half = fooling.disguise(vit_s, images[0].half(), images[1].half())
    assert half.image.dtype == torch.float16
    assert not half.exact and half.embedding_residual.max() > 1e-5  # float16 rounds the exact solution
    single = fooling.disguise(vit_s, images[0], images[1])
    assert single.exact and single.embedding_residual.max() < fooling.EXACT_RESIDUAL


def test_patch_embeddings_of_float16_images(vit_s, images):
    half = exact.patch_embeddings(vit_s, images[:2].half())
    assert half.dtype == torch.float32  # the model's dtype, as its forward computes
    assert torch.allclose(half, exact.patch_embeddings(vit_s, images[:2].half().float()))


def test_nan_and_infinite_settings_are_refused(vit_s, images):
    from nullspace_utils import approximate, finetune

    data_set = torch.utils.data.TensorDataset(images, torch.arange(len(images)))
    with pytest.raises(ValueError, match="amplitude"):
        exact.random_nullspace_noise(vit_s, 112, amplitude=float("nan"))
    with pytest.raises(ValueError, match="lr"):
        approximate.learn_noise(vit_s, data_set, level="encoder", lim=1.0, steps=1, lr=float("inf"))
    with pytest.raises(ValueError, match="lim"):
        approximate.learn_noise(vit_s, data_set, level="encoder", lim=float("inf"), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        finetune.FinetuneConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="weight_decay"):
        finetune.FinetuneConfig(weight_decay=float("nan"))


def test_nan_data_and_noise_are_refused(vit_s, images):
    from nullspace_utils import approximate, finetune

    broken = images.clone()
    broken[1, 0, 0, 0] = float("nan")
    bad_set = torch.utils.data.TensorDataset(broken, torch.arange(len(images)))
    with pytest.raises(ValueError, match="NaN"):
        approximate.learn_noise(vit_s, bad_set, level="encoder", lim=1.0, steps=1, lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="NaN"):
        finetune.finetune(vit_s, bad_set, finetune.FinetuneConfig(method="plain", steps=1, rounds=1, batch_size=4))
    good_set = torch.utils.data.TensorDataset(images, torch.arange(len(images)))
    noise = torch.full(approximate.noise_shape(vit_s, "encoder", 112), float("nan"))
    with pytest.raises(ValueError, match="NaN"):  # reported a match of 0.125 before
        approximate.evaluate_noise(vit_s, good_set, noise, level="encoder")
    with pytest.raises(ValueError, match="NaN"):
        approximate.training_loss(vit_s, good_set, noise, level="encoder")


def test_nan_weights_are_refused_with_the_fix(vit_s, images):
    head_broken = copy.deepcopy(vit_s)
    with torch.no_grad():
        head_broken.net.head.weight[0, 0] = float("nan")
    noise = exact.random_nullspace_noise(head_broken, 112)  # the patch embedding is fine
    with pytest.raises(ValueError, match="NaN or infinite logits.*weights"):
        metrics.logit_change(head_broken, images, noise)
    embed_broken = copy.deepcopy(vit_s)
    with torch.no_grad():
        embed_broken.net.patch_embed.proj.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="patch embedding .* NaN or infinite weights"):
        exact.patch_nullspace(embed_broken)
    with pytest.raises(ValueError, match="NaN or infinite weights"):
        watermark.embed(embed_broken, images[0], images[1])


def _dropout_vit():
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=4,
                            drop_rate=0.5, proj_drop_rate=0.5)
    return models.ImageClassifier(net, models.ZOO_MEAN, models.ZOO_STD)


def test_finetune_seeds_dropout_without_consuming_the_callers_rng():
    from nullspace_utils import finetune

    generator = torch.Generator().manual_seed(0)
    train = torch.utils.data.TensorDataset(torch.rand(8, 3, 32, 32, generator=generator), torch.arange(8) % 4)
    model = _dropout_vit()
    config = finetune.FinetuneConfig(method="plain", steps=3, rounds=1, batch_size=4, lr=1e-2, seed=5)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first = finetune.finetune(model, train, config).model
    assert torch.equal(torch.rand(3), expected)  # the caller's generator was not drawn from
    torch.manual_seed(123)  # another global state: the run must not depend on it
    second = finetune.finetune(model, train, config).model
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    other = finetune.finetune(model, train, finetune.FinetuneConfig(method="plain", steps=3, rounds=1, batch_size=4,
                                                                    lr=1e-2, seed=6)).model
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters(), strict=True))


def test_bad_arguments_are_one_line_errors_naming_the_fix(vit_s, images):
    from nullspace_utils import approximate, finetune

    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        exact.random_nullspace_noise(vit_s, 112, n=-1)
    with pytest.raises(ValueError, match="one per image"):
        xai.attribute(vit_s, images[:2], method="saliency", target=[0, 1, 2])
    with pytest.raises(ValueError, match="label 12 is not a class"):
        metrics.accuracy(vit_s, images[:2], torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(images, images[0])  # broadcasting would compare every image with the first
    data_set = torch.utils.data.TensorDataset(images, torch.arange(len(images)))
    noise = torch.zeros(approximate.noise_shape(vit_s, "encoder", 112))
    with pytest.raises(ValueError, match="batch_size"):
        approximate.evaluate_noise(vit_s, data_set, noise, level="encoder", batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        approximate.learn_noise(vit_s, data_set, level="encoder", lim=1.0, steps=1, lr=0.1, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        metrics.model_logits(vit_s, images, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        finetune.pgd_accuracy(vit_s, images, torch.arange(len(images)), epsilons=(0.0,), batch_size=0)


def test_volo_is_refused_for_its_convolutional_stem():
    net = models.load_model("volo_d1_224", pretrained=False)
    with pytest.raises(exact.NotPatchEmbeddingError, match="convolutional stem"):
        exact.patch_nullspace(net)
