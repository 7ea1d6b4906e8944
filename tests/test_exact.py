import pytest
import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import exact, metrics, models
from nullspace_utils.data import stack_dataset, synthetic_dataset


def small_vit(**kwargs) -> VisionTransformer:
    torch.manual_seed(0)
    config = dict(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2, num_classes=5)
    config.update(kwargs)
    vit = VisionTransformer(**config).eval()
    vit.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # as timm.create_model records it
    return vit


def test_matrix_folds_std_per_channel():
    vit = small_vit()
    std = (0.5, 0.25, 2.0)
    W = exact.patch_embedding_matrix(vit, std=std)
    weight = vit.patch_embed.proj.weight.detach().double()
    assert W.shape == (64, 192) and W.dtype == torch.float64
    for c in range(3):
        assert torch.allclose(W[:, c * 64 : (c + 1) * 64], weight[:, c].reshape(64, -1) / std[c])


def test_basis_is_orthonormal_and_in_the_nullspace(vit_s):
    basis = exact.patch_nullspace(vit_s)
    assert basis.shape == (672, 3, 16, 16)
    flat = basis.reshape(basis.shape[0], -1)
    W = exact.patch_embedding_matrix(vit_s)
    assert (W @ flat.T).abs().max() < 1e-10 * W.abs().max()
    assert torch.allclose(flat @ flat.T, torch.eye(flat.shape[0], dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize(
    "name,joint,per_channel",
    [("vit_small_patch32_224", 2688, 1920), ("vit_base_patch32_224", 2304, 768), ("vit_large_patch32_224", 2048, 0),
     ("vit_small_patch16_224", 384, 0), ("deit_tiny_patch16_224", 576, 192)],
)
def test_dimensions_of_timm_vits(name, joint, per_channel):
    """Both nullspaces of timm's architectures (random weights: the generic dimensions, which pretrained
    weights share unless their blocks lose rank, what the imagenet profile's test checks)."""
    model = timm.create_model(name, pretrained=False)
    layer = exact.patch_embedding_layer(model)
    generic = exact.nullspace_dimensions(layer.out_channels, layer.kernel_size[0])
    assert exact.patch_nullspace(model).shape[0] == joint == generic["joint"]
    assert generic["per_channel"] == per_channel
    if per_channel:
        assert exact.channel_nullspace(model).shape[0] == per_channel
    else:
        with pytest.raises(exact.NoNullspaceError, match="per-channel nullspace .* is \\{0\\}"):
            exact.channel_nullspace(model)


@pytest.mark.parametrize("name,joint,per_channel", [("zoo-vit-s", 672, 480), ("zoo-vit-b", 576, 192),
                                                    ("zoo-vit-l", 512, 0)])
def test_dimensions_of_zoo(name, joint, per_channel):
    model = models.load_model(name)
    assert exact.patch_nullspace(model).shape[0] == joint
    if per_channel:
        assert exact.channel_nullspace(model).shape[0] == per_channel
    else:
        with pytest.raises(exact.NoNullspaceError, match="d = 256 outputs for r\\*r = 256"):
            exact.channel_nullspace(model)


def test_per_channel_nullspace_is_a_subspace_of_the_joint_one(vit_s):
    """Paper §3.2's per-channel space lies inside the joint one: projecting its basis onto the joint
    nullspace changes nothing, and each vector lives on one channel and is orthonormal."""
    per_channel = exact.channel_nullspace(vit_s).reshape(480, -1)
    joint = exact.patch_nullspace(vit_s).reshape(672, -1)
    W = exact.patch_embedding_matrix(vit_s)
    assert (W @ per_channel.T).abs().max() < 1e-10 * W.abs().max()
    inside = per_channel @ joint.T @ joint  # the projection onto the joint nullspace
    assert (inside - per_channel).abs().max() < 1e-10
    assert torch.allclose(per_channel @ per_channel.T, torch.eye(480, dtype=torch.float64), atol=1e-10)
    channels_used = (per_channel.reshape(480, 3, -1).abs().amax(2) > 0).sum(1)
    assert torch.equal(channels_used, torch.ones(480, dtype=torch.long))
    # and it is strictly smaller: a joint direction outside it exists (the test can fail)
    outside = joint - joint @ per_channel.T @ per_channel
    assert torch.linalg.matrix_rank(outside).item() == 672 - 480


def test_per_channel_nullspace_ignores_the_std_and_the_joint_one_does_not(vit_s):
    per_channel = exact.channel_nullspace(vit_s).reshape(480, -1)
    naive_joint = exact.patch_nullspace(vit_s, std=(1.0, 1.0, 1.0)).reshape(672, -1)
    W = exact.patch_embedding_matrix(vit_s)
    assert (W @ per_channel.T).abs().max() < 1e-10 * W.abs().max()  # no std was used to compute it
    assert (W @ naive_joint.T).abs().max() > 1e-4 * W.abs().max()  # forgetting the std leaves the joint one


def test_nullspace_dimensions_formula_and_bad_input():
    assert exact.nullspace_dimensions(384, 32) == {"per_channel": 1920, "joint": 2688}
    assert exact.nullspace_dimensions(1024, 32) == {"per_channel": 0, "joint": 2048}
    assert exact.nullspace_dimensions(5000, 32) == {"per_channel": 0, "joint": 0}
    assert exact.nullspace_dimensions(32, 8, channels=1) == {"per_channel": 32, "joint": 32}
    for bad in ({"d": 0, "r": 16}, {"d": 96, "r": 16.0}, {"d": 96, "r": 16, "channels": True}):
        with pytest.raises(ValueError, match="must be a whole number >= 1"):
            exact.nullspace_dimensions(**bad)


def test_zoo_logits_invariant_under_large_noise(vit_s):
    images, _ = stack_dataset(synthetic_dataset("val", n=8))
    noise = exact.random_nullspace_noise(vit_s, 112, amplitude=10.0, seed=3)
    assert noise.abs().max().item() == pytest.approx(10.0, rel=1e-5)
    change = metrics.logit_change(vit_s, images, noise)
    assert change.shape == (8,) and change.max() < 1e-3
    # the same-size random noise does change them: the test can fail
    random = (torch.rand_like(noise) * 2 - 1) * 10.0
    assert metrics.logit_change(vit_s, images, random).max() > 1.0


def test_naive_nullspace_breaks_with_nonuniform_std(vit_s):
    images, _ = stack_dataset(synthetic_dataset("val", n=4))
    naive = exact.patch_nullspace(vit_s, std=(1.0, 1.0, 1.0))
    noise = exact.tile(naive[0] / naive[0].abs().max() * 5.0, 112).float()
    assert metrics.logit_change(vit_s, images, noise).max() > 1e-3


def test_raw_timm_vit_with_pretrained_cfg_normalisation():
    # A raw timm model: the matrix must use its pretrained_cfg std (ImageNet, non-uniform).
    net = timm.create_model("vit_small_patch32_224", pretrained=False).eval()
    cfg = net.pretrained_cfg
    wrapped = models.ImageClassifier(net, cfg["mean"], cfg["std"])
    noise = exact.random_nullspace_noise(net, 224, amplitude=3.0, seed=0)
    images = torch.rand(2, 3, 224, 224)
    assert metrics.logit_change(wrapped, images, noise).max() < 1e-3


@pytest.mark.parametrize("in_chans,img_size", [(1, 32), (3, 48), (4, 24)])
def test_any_channels_and_image_size(in_chans, img_size):
    vit = small_vit(in_chans=in_chans, img_size=img_size, embed_dim=32)
    model = models.ImageClassifier(vit, (0.3,) * in_chans, tuple(0.2 + 0.1 * c for c in range(in_chans)))
    basis = exact.patch_nullspace(model)
    assert basis.shape == (in_chans * 64 - 32, in_chans, 8, 8)
    noise = exact.random_nullspace_noise(model, img_size, amplitude=5.0, seed=1)
    images = torch.rand(3, in_chans, img_size, img_size)
    assert metrics.logit_change(model, images, noise).max() < 1e-3


def test_no_nullspace_error_states_the_numbers():
    square = small_vit(embed_dim=192)  # 3 * 8 * 8 = 192
    with pytest.raises(exact.NoNullspaceError, match="d = 192.*C\\*r\\*r = 192.*rank 192"):
        exact.patch_nullspace(square)
    assert issubclass(exact.NoNullspaceError, ValueError)


def test_cnn_and_overlapping_and_hybrid_are_refused():
    with pytest.raises(exact.NotPatchEmbeddingError, match="approximate"):
        exact.patch_nullspace(models.load_model("zoo-resnet"))
    overlapping = small_vit()
    overlapping.patch_embed.proj = nn.Conv2d(3, 64, kernel_size=8, stride=4)
    with pytest.raises(exact.NotPatchEmbeddingError, match="overlap"):
        exact.patch_nullspace(overlapping)
    hybrid = timm.create_model("vit_tiny_r_s16_p8_224", pretrained=False)
    with pytest.raises(exact.NotPatchEmbeddingError, match="hybrid"):
        exact.patch_nullspace(hybrid)


def test_cache_follows_weight_changes():
    vit = small_vit()
    first = exact.patch_nullspace(vit)
    assert exact.patch_nullspace(vit) is first
    with torch.no_grad():
        vit.patch_embed.proj.weight.add_(torch.randn_like(vit.patch_embed.proj.weight))
    second = exact.patch_nullspace(vit)
    W = exact.patch_embedding_matrix(vit)
    assert (W @ second.reshape(second.shape[0], -1).T).abs().max() < 1e-10 * W.abs().max()
    assert not torch.equal(first, second)


def test_tile_shapes_and_errors():
    patch = torch.arange(12.0).reshape(3, 2, 2)
    tiled = exact.tile(patch, (4, 6))
    assert tiled.shape == (3, 4, 6)
    assert torch.equal(tiled[:, 2:4, 4:6], patch)
    assert exact.tile(patch[None].repeat(2, 1, 1, 1), 4).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        exact.tile(patch, 5)
    with pytest.raises(ValueError, match="patch_noise"):
        exact.tile(torch.zeros(3, 2, 3), 4)


def test_random_noise_is_seeded_and_batched(vit_s):
    a = exact.random_nullspace_noise(vit_s, 112, seed=5)
    b = exact.random_nullspace_noise(vit_s, 112, seed=5)
    c = exact.random_nullspace_noise(vit_s, 112, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    batch = exact.random_nullspace_noise(vit_s, 112, n=3, amplitude=0.2)
    assert batch.shape == (3, 3, 112, 112)
    assert torch.allclose(batch.abs().amax(dim=(1, 2, 3)), torch.full((3,), 0.2))


def test_patch_embeddings_unchanged(vit_s):
    images, _ = stack_dataset(synthetic_dataset("val", n=2))
    noise = exact.random_nullspace_noise(vit_s, 112, amplitude=1.0)
    clean = exact.patch_embeddings(vit_s, images)
    assert clean.shape == (2, 49, 96)
    assert (exact.patch_embeddings(vit_s, images + noise) - clean).abs().max() < 1e-5 * clean.abs().max() * 10


def test_unknown_normalisation_is_an_error_not_a_guess():
    bare = small_vit()
    bare.pretrained_cfg = None  # a network built by hand: nothing says how its inputs are normalised
    with pytest.raises(models.NormalisationUnknownError, match="Pass mean=... and std="):
        exact.patch_nullspace(bare)
    assert exact.patch_nullspace(bare, std=(1.0, 1.0, 1.0)).shape[0] == 3 * 8 * 8 - 64  # explicit is fine

    class Wrapper(torch.nn.Module):  # normalises in its own forward, with statistics nobody can read
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            return self.net((images - 0.48) / 0.27)

    wrapped = Wrapper(small_vit())
    with pytest.raises(models.NormalisationUnknownError, match="wraps a network as `.net`"):
        exact.random_nullspace_noise(wrapped, 32)
    noise = exact.random_nullspace_noise(models.ImageClassifier(wrapped.net, (0.48,) * 3, (0.27,) * 3), 32)
    images = torch.rand(2, 3, 32, 32)
    assert metrics.logit_change(wrapped, images, noise).max() < 1e-4  # with the true statistics: exact


def test_tensor_mean_and_std_are_read_per_channel():
    vit = small_vit()
    buffers = (torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1), torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1))
    from_tensors = exact.patch_embedding_matrix(vit, mean=buffers[0], std=buffers[1])
    assert torch.equal(from_tensors, exact.patch_embedding_matrix(vit, std=(0.5, 0.25, 2.0)))
    with pytest.raises(ValueError, match="needs 3 values"):
        exact.patch_embedding_matrix(vit, std=(0.5, 0.25))


def test_cache_sees_edits_through_data():
    vit = small_vit()
    first = exact.patch_nullspace(vit)
    vit.patch_embed.proj.weight.data[:, 0] *= 3  # bypasses autograd's version counter
    second = exact.patch_nullspace(vit)
    W = exact.patch_embedding_matrix(vit)
    assert not torch.equal(first, second)
    assert (W @ second.reshape(second.shape[0], -1).T).abs().max() < 1e-10 * W.abs().max()


def test_random_combinations_are_seeded_gaussian_mixes_of_the_basis():
    basis = torch.eye(4, dtype=torch.float64).reshape(4, 1, 2, 2)  # the standard basis: a mix is its weights
    mixes = exact.random_combinations(basis, 3, seed=5)
    weights = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert mixes.shape == (3, 1, 2, 2) and torch.equal(mixes.reshape(3, 4), weights)
    assert not torch.equal(exact.random_combinations(basis, 3, seed=6), mixes)


def test_random_noise_is_a_scaled_tiled_combination(vit_s):
    patch = exact.random_combinations(exact.patch_nullspace(vit_s), 1, seed=3)[0]
    noise = exact.random_nullspace_noise(vit_s, 112, amplitude=0.5, seed=3)
    assert torch.allclose(noise, exact.tile(patch * (0.5 / patch.abs().max()), 112).float())


def test_nullspace_sizes_measure_both_and_give_zero_without_one():
    assert exact.nullspace_sizes(small_vit()) == {"per_channel": 0, "joint": 128}  # d = 64 = r^2, C r^2 = 192
    assert exact.nullspace_sizes(small_vit(embed_dim=16)) == exact.nullspace_dimensions(16, 8) == {
        "per_channel": 144, "joint": 176}
    assert exact.nullspace_sizes(small_vit(embed_dim=192)) == {"per_channel": 0, "joint": 0}


def test_amplitude_sweep_nullspace_noise_keeps_logits_random_noise_does_not(vit_s, val_batch):
    images = val_batch[0][:8]
    sweep = exact.amplitude_sweep(vit_s, images, [0.01, 10.0])
    assert isinstance(sweep, exact.AmplitudeSweep) and sweep.amplitudes == [0.01, 10.0]
    assert max(sweep.nullspace_change) < 1e-3  # float rounding at every amplitude
    assert sweep.random_change[1] > 1.0 and sweep.random_change[0] < sweep.random_change[1]
    assert sweep.random_match[0] == 1.0 and sweep.random_match[1] < 1.0
    noise = exact.random_nullspace_noise(vit_s, 112, amplitude=10.0, seed=1)  # the sweep's nullspace noise
    assert sweep.nullspace_change[1] == metrics.logit_change(vit_s, images, noise).max().item()
    generator = torch.Generator().manual_seed(0)  # and its uniform noise, one generator for the sweep
    torch.rand(images.shape[1:], generator=generator)
    uniform = (torch.rand(images.shape[1:], generator=generator) * 2 - 1) * 10.0
    assert sweep.random_change[1] == metrics.logit_change(vit_s, images, uniform).max().item()


def test_storage_effects_clip_and_round(vit_s, val_batch):
    images = val_batch[0][:8]
    noise = exact.random_nullspace_noise(vit_s, 112, amplitude=0.1, seed=3)
    effects = exact.storage_effects(vit_s, images, noise)
    noisy = images + noise
    assert effects.saturated == pytest.approx(((noisy < 0) | (noisy > 1)).float().mean().item())
    assert effects.saturated > 0
    assert effects.unbounded < 1e-4  # the nullspace noise itself, unclipped: float rounding only
    with torch.no_grad():
        clipped_change = (vit_s(noisy.clamp(0, 1)) - vit_s(images)).abs().max().item()
    assert isinstance(effects.clipped, exact.Effect) and effects.clipped.max_logit_change == clipped_change
    assert effects.clipped.max_logit_change > 1e-3  # clipping moves the noise out of the nullspace
    for effect in (effects.clipped, effects.clean_8bit, effects.noisy_8bit):
        assert 0 <= effect.same_prediction <= 1
    plain = exact.storage_effects(vit_s, images, torch.zeros_like(noise))  # no noise: only rounding costs
    assert plain.saturated == 0 and plain.clipped == exact.Effect(0.0, 1.0)
    assert plain.noisy_8bit == plain.clean_8bit
