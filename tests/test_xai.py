"""Explanation maps: captum methods by name and Chefer et al.'s attention relevance on stock timm ViTs."""

import pytest
import torch

from nullspace_utils import fooling, metrics, models, xai


@pytest.fixture(scope="module")
def zoo_vit():
    return models.load_model("zoo-vit-s")


@pytest.fixture(scope="module")
def triplet(zoo_vit, val_batch):
    images, _ = val_batch
    source, target = images[:2], images[2:4]
    return source, target, fooling.disguise(zoo_vit, source, target).image


def test_relevance_shape_and_model_left_unchanged(zoo_vit, triplet):
    source, _, _ = triplet
    fused = [block.attn.fused_attn for block in zoo_vit.net.blocks]
    hooks = [len(block.attn.attn_drop._forward_hooks) for block in zoo_vit.net.blocks]
    maps = xai.relevance(zoo_vit, source)
    assert maps.shape == (2, 112, 112) and torch.isfinite(maps).all() and maps.min() >= 0
    assert xai.relevance(zoo_vit, source[0]).shape == (112, 112)
    assert [block.attn.fused_attn for block in zoo_vit.net.blocks] == fused
    assert [len(block.attn.attn_drop._forward_hooks) for block in zoo_vit.net.blocks] == hooks
    assert all(p.grad is None for p in zoo_vit.parameters())


def test_relevance_depends_on_the_target_class(zoo_vit, triplet):
    source, _, _ = triplet
    assert not torch.allclose(xai.relevance(zoo_vit, source, target=0), xai.relevance(zoo_vit, source, target=5))


@pytest.mark.parametrize("name", ["relevance", "saliency", "guided_backprop", "feature_ablation"])
def test_token_level_maps_of_source_and_disguise_agree(zoo_vit, triplet, name):
    source, target, disguised = triplet
    explain = (lambda x: xai.relevance(zoo_vit, x)) if name == "relevance" else \
        (lambda x: xai.attribute(zoo_vit, x, method=name))
    same = metrics.compare_maps(explain(source), explain(disguised))
    assert same["max_relative_difference"] < 1e-3 and same["correlation"] > 0.9999
    assert metrics.compare_maps(explain(source), explain(target))["correlation"] < 0.99


def test_input_times_gradient_differs_by_the_input(zoo_vit, triplet):
    source, _, disguised = triplet
    gradient_s = xai.attribute(zoo_vit, source, method="saliency", abs=False, reduce="none")
    gradient_d = xai.attribute(zoo_vit, disguised, method="saliency", abs=False, reduce="none")
    assert torch.allclose(gradient_s, gradient_d, atol=1e-4 * gradient_s.abs().max().item())
    product = xai.attribute(zoo_vit, disguised, method="input_x_gradient", reduce="none")
    assert torch.allclose(product, disguised * gradient_d, atol=1e-4 * product.abs().max().item())
    assert metrics.compare_maps(xai.attribute(zoo_vit, source, method="input_x_gradient"),
                            xai.attribute(zoo_vit, disguised, method="input_x_gradient"))["correlation"] < 0.99


def test_every_method_returns_image_sized_maps(zoo_vit, triplet):
    source, _, _ = triplet
    for name in xai.METHODS:
        maps = xai.attribute(zoo_vit, source[:1], method=name)
        assert maps.shape == (1, 112, 112) and torch.isfinite(maps).all(), name


def test_compare_maps_invariants():
    maps = torch.rand(2, 8, 8)
    assert metrics.compare_maps(maps, maps) == {"max_relative_difference": 0.0, "correlation": pytest.approx(1.0)}
    assert metrics.compare_maps(maps, -maps)["correlation"] == pytest.approx(-1.0)


def test_maps_are_computed_in_full_float32_and_leave_the_flags(zoo_vit, triplet):
    source, _, _ = triplet
    seen = []
    handle = zoo_vit.register_forward_pre_hook(
        lambda module, inputs: seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)))
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    try:
        torch.set_float32_matmul_precision("high")  # TF32 allowed by the caller
        torch.backends.cudnn.allow_tf32 = True
        xai.relevance(zoo_vit, source[:1])
        xai.attribute(zoo_vit, source[:1], method="saliency")
        assert seen and all(flags == ("highest", False) for flags in seen)
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    finally:
        handle.remove()
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn


def test_clear_errors(zoo_vit, triplet):
    source, _, _ = triplet
    with pytest.raises(ValueError, match="LRP has no propagation rules"):
        xai.attribute(zoo_vit, source, method="lrp")
    with pytest.raises(ValueError, match="Unknown method"):
        xai.attribute(zoo_vit, source, method="gradcam++")
    with pytest.raises(TypeError, match="needs a ViT"):
        xai.relevance(models.load_model("zoo-resnet"), source)
    with pytest.raises(ValueError, match="reduce must be"):
        xai.attribute(zoo_vit, source, method="saliency", reduce="max")


@pytest.mark.parametrize("name", ["smoothgrad", "gradient_shap"])
def test_sampling_methods_are_deterministic_and_leave_global_random_state(zoo_vit, triplet, name):
    import numpy as np

    source, _, _ = triplet
    torch.manual_seed(123)
    np.random.seed(123)
    first = xai.attribute(zoo_vit, source, method=name)
    after_torch, after_numpy = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(first, xai.attribute(zoo_vit, source, method=name))
    assert torch.equal(torch.rand(1), after_torch) and np.random.rand() == after_numpy
    torch.manual_seed(7)
    assert torch.equal(first, xai.attribute(zoo_vit, source, method=name))  # independent of the caller's seed
    assert not torch.equal(first, xai.attribute(zoo_vit, source, method=name, seed=1))
