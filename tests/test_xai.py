"""Explanation maps: captum methods by name, and Chefer et al.'s LRP relevance (CVPR 2021, checked against the
authors' code) and gradient-weighted attention rollout (ICCV 2021) on stock timm ViTs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import fooling, metrics, models, xai

REFERENCE = Path(__file__).parent / "data" / "chefer_lrp_reference.npz"


@pytest.fixture(scope="module")
def triplet(vit_s, val_batch):
    images, _ = val_batch
    source, target = images[:2], images[2:4]
    return source, target, fooling.disguise(vit_s, source, target).image


@pytest.fixture(scope="module")
def reference(vit_s, val_batch):
    """Maps by Chefer et al.'s own code on zoo-vit-s, and the images they were computed on (tests/data/README.md)."""
    data = np.load(REFERENCE)
    images, _ = val_batch
    pairs = data["pairs"]
    sources = torch.stack([images[s] for s, _ in pairs])
    targets = torch.stack([images[t] for _, t in pairs])
    disguised = fooling.disguise(vit_s, sources, targets, channel=0, solution="least_change", p=2).image
    batch = torch.cat([sources, disguised, targets])
    np.testing.assert_allclose(batch.double().sum((1, 2, 3)).numpy(), data["input_sums"], rtol=1e-9)
    return batch, torch.from_numpy(data["classes"]), data


def correlations(ours: torch.Tensor, theirs: np.ndarray) -> list[float]:
    ours_flat, theirs_flat = ours.reshape(len(ours), -1).double().numpy(), theirs.reshape(len(theirs), -1)
    return [float(np.corrcoef(a, b.astype(np.float64))[0, 1]) for a, b in zip(ours_flat, theirs_flat, strict=True)]


def test_transformer_attribution_matches_the_authors_code(vit_s, reference):
    batch, classes, data = reference
    ours = xai.transformer_attribution(vit_s, batch, target=classes, upsample=False)
    assert ours.shape == (9, 7, 7)
    assert min(correlations(ours, data["tokens"])) >= 0.999  # measured: >= 0.999998
    # the test tells the two Chefer methods apart: the ICCV rollout is a different map
    rollout = xai.gradient_attention_rollout(vit_s, batch, target=classes, upsample=False)
    assert min(correlations(rollout, data["tokens"])) < 0.95


def test_pixel_lrp_matches_the_authors_code(vit_s, reference):
    batch, classes, data = reference
    ours = xai.lrp(vit_s, batch, target=classes)
    assert ours.shape == (9, 112, 112) and torch.isfinite(ours).all()
    assert min(correlations(ours, data["pixels"])) >= 0.99  # measured: >= 0.9992


def test_lrp_relevance_is_identical_on_tokens_and_not_on_pixels(vit_s, triplet):
    """The disguise changes only the pixels, not the tokens: token-level LRP cannot see it, pixel-level LRP can."""
    source, _, disguised = triplet
    same = metrics.compare_maps(xai.transformer_attribution(vit_s, source),
                                xai.transformer_attribution(vit_s, disguised))
    # LRP divides by small sums, which magnifies the tokens' float rounding (~1e-7) to ~1e-3 of the map's peak
    assert same["max_relative_difference"] < 1e-2 and same["correlation"] > 0.99999
    pixels = metrics.compare_maps(xai.lrp(vit_s, source), xai.lrp(vit_s, disguised))
    assert pixels["max_relative_difference"] > 0.05 and pixels["correlation"] < 0.999


@pytest.mark.parametrize("explain", [xai.transformer_attribution, xai.gradient_attention_rollout, xai.lrp])
def test_relevance_shape_and_model_left_unchanged(vit_s, triplet, explain):
    source, _, _ = triplet
    fused = [block.attn.fused_attn for block in vit_s.net.blocks]
    hooks = sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in vit_s.modules())
    maps = explain(vit_s, source)
    assert maps.shape == (2, 112, 112) and torch.isfinite(maps).all()
    assert explain(vit_s, source[0]).shape == (112, 112)
    assert [block.attn.fused_attn for block in vit_s.net.blocks] == fused
    assert sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in vit_s.modules()) == hooks
    assert all(p.grad is None for p in vit_s.parameters())
    assert not vit_s.training


@pytest.mark.parametrize("explain", [xai.transformer_attribution, xai.gradient_attention_rollout, xai.lrp])
def test_relevance_depends_on_the_target_class(vit_s, triplet, explain):
    source, _, _ = triplet
    assert not torch.allclose(explain(vit_s, source, target=0), explain(vit_s, source, target=5))


def test_old_name_is_the_iccv_rollout(vit_s, triplet):
    source, _, _ = triplet
    assert torch.equal(xai.relevance(vit_s, source), xai.gradient_attention_rollout(vit_s, source))


@pytest.mark.parametrize("name", ["gradient_attention_rollout", "saliency",
                                  "guided_backprop", "feature_ablation"])
def test_token_level_maps_of_source_and_disguise_agree(vit_s, triplet, name):
    source, target, disguised = triplet
    explain = (lambda x: xai.attribute(vit_s, x, method=name)) if name in xai.METHODS else \
        (lambda x: getattr(xai, name)(vit_s, x))
    same = metrics.compare_maps(explain(source), explain(disguised))
    assert same["max_relative_difference"] < 1e-3 and same["correlation"] > 0.9999
    assert metrics.compare_maps(explain(source), explain(target))["correlation"] < 0.99


def test_input_times_gradient_differs_by_the_input(vit_s, triplet):
    source, _, disguised = triplet
    gradient_s = xai.attribute(vit_s, source, method="saliency", abs=False, reduce="none")
    gradient_d = xai.attribute(vit_s, disguised, method="saliency", abs=False, reduce="none")
    assert torch.allclose(gradient_s, gradient_d, atol=1e-4 * gradient_s.abs().max().item())
    product = xai.attribute(vit_s, disguised, method="input_x_gradient", reduce="none")
    assert torch.allclose(product, disguised * gradient_d, atol=1e-4 * product.abs().max().item())
    assert metrics.compare_maps(xai.attribute(vit_s, source, method="input_x_gradient"),
                            xai.attribute(vit_s, disguised, method="input_x_gradient"))["correlation"] < 0.99


def test_every_method_returns_image_sized_maps(vit_s, triplet):
    source, _, _ = triplet
    for name in xai.METHODS:
        maps = xai.attribute(vit_s, source[:1], method=name)
        assert maps.shape == (1, 112, 112) and torch.isfinite(maps).all(), name


def test_compare_maps_invariants():
    maps = torch.rand(2, 8, 8)
    assert metrics.compare_maps(maps, maps) == {"max_relative_difference": 0.0, "correlation": pytest.approx(1.0)}
    assert metrics.compare_maps(maps, -maps)["correlation"] == pytest.approx(-1.0)


def test_maps_are_computed_in_full_float32_and_leave_the_flags(vit_s, triplet, tf32_allowed, flags_seen):
    source, _, _ = triplet
    seen = flags_seen(vit_s)
    xai.transformer_attribution(vit_s, source[:1])
    xai.lrp(vit_s, source[:1])
    xai.attribute(vit_s, source[:1], method="saliency")
    assert seen and all(flags == ("highest", False) for flags in seen)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32


def test_clear_errors(vit_s, triplet):
    source, _, _ = triplet
    with pytest.raises(ValueError, match="transformer_attribution"):
        xai.attribute(vit_s, source, method="lrp")
    with pytest.raises(ValueError, match="Unknown method"):
        xai.attribute(vit_s, source, method="gradcam++")
    for explain in (xai.transformer_attribution, xai.gradient_attention_rollout, xai.lrp):
        with pytest.raises(TypeError, match="needs a ViT"):
            explain(models.load_model("zoo-resnet"), source)
    pooled = models.ImageClassifier(VisionTransformer(img_size=112, patch_size=16, embed_dim=48, depth=1, num_heads=2,
                                                      num_classes=10, global_pool="avg").eval(),
                                    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(TypeError, match="class-token pooling"):
        xai.transformer_attribution(pooled, source)
    with pytest.raises(ValueError, match="reduce must be"):
        xai.attribute(vit_s, source, method="saliency", reduce="max")


@pytest.mark.parametrize("name", ["smoothgrad", "gradient_shap"])
def test_sampling_methods_are_deterministic_and_leave_global_random_state(vit_s, triplet, name):
    import numpy as np

    source, _, _ = triplet
    torch.manual_seed(123)
    np.random.seed(123)
    first = xai.attribute(vit_s, source, method=name)
    after_torch, after_numpy = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(first, xai.attribute(vit_s, source, method=name))
    assert torch.equal(torch.rand(1), after_torch) and np.random.rand() == after_numpy
    torch.manual_seed(7)
    assert torch.equal(first, xai.attribute(vit_s, source, method=name))  # independent of the caller's seed
    assert not torch.equal(first, xai.attribute(vit_s, source, method=name, seed=1))


def test_compare_disguise_compares_with_the_source_per_image_and_over_the_batch():
    source = torch.rand(3, 5, 5)
    agreement = xai.compare_disguise(source, source.clone(), -source)
    assert isinstance(agreement, xai.MapAgreement)
    assert agreement.transformed["max_relative_difference"] == 0 and agreement.transformed_correlations == \
        pytest.approx([1.0] * 3)
    assert agreement.target_correlations == pytest.approx([-1.0] * 3)
    assert agreement.target == metrics.compare_maps(source, -source)
    shifted = source.clone()
    shifted[1] = torch.rand(5, 5)  # only the second map changes
    partly = xai.compare_disguise(source, shifted, source)
    assert partly.transformed_correlations[0] == pytest.approx(1.0) and partly.transformed_correlations[1] < 0.99
    assert partly.transformed["correlation"] == pytest.approx(sum(partly.transformed_correlations) / 3)
    assert len(xai.compare_disguise(source[0], source[0], source[0]).target_correlations) == 1  # one (H, W) map
    with pytest.raises(ValueError, match="one shape"):
        xai.compare_disguise(source, source[:2], source)
