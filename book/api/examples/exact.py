import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import exact, metrics, models

model = models.load_model("zoo-vit-s")  # or any timm ViT: models.load_model("vit_small_patch32_224")
layer = exact.patch_embedding_layer(model)  # Conv2d(3, 96, kernel_size=(16, 16), stride=(16, 16))
assert isinstance(layer, torch.nn.Conv2d) and layer.out_channels == 96 and layer.kernel_size == (16, 16)
matrix = exact.patch_embedding_matrix(model)  # pixels of one patch (3 * 16 * 16) -> its embedding (96)
assert matrix.shape == (96, 768) and matrix.dtype == torch.float64
mean, std = exact.normalisation(model)  # the per-channel input normalisation the matrix folds in
assert std == models.ZOO_STD and torch.allclose(matrix, exact.patch_embedding_matrix(model, std=std))
basis = exact.patch_nullspace(model)  # an orthonormal basis of its nullspace, one patch each
assert basis.shape == (672, 3, 16, 16)  # 768 - 96 = 672 directions the embedding cannot see
one_patch = basis[0].float()  # a (3, 16, 16) nullspace vector ...
tiled = exact.tile(one_patch, 112)  # ... repeated over the 7 x 7 patches of a 112 x 112 image
assert tiled.shape == (3, 112, 112) and torch.equal(tiled[:, 16:32, 96:112], one_patch)
rows = exact.to_patches(tiled[None], 16)  # (49, 768): one row per patch, in the matrix's column order
assert rows.shape == (49, 768) and torch.equal(exact.from_patches(rows, (1, 3, 112, 112), 16)[0], tiled)
assert (rows.double() @ matrix.T).abs().max() < 1e-5  # the matrix maps every patch of the noise to 0
noise = exact.random_nullspace_noise(model, 112, amplitude=0.5, seed=0)  # a random combination, tiled
assert noise.shape == (3, 112, 112) and torch.isclose(noise.abs().max(), torch.tensor(0.5))  # peak = amplitude
images = torch.rand(2, 3, 112, 112)
embeddings = exact.patch_embeddings(model, images)  # (2, 49, 96): 7 x 7 patches of width 96
assert embeddings.shape == (2, 49, 96)
assert (exact.patch_embeddings(model, images + tiled) - embeddings).abs().max() < 1e-4  # float rounding only
assert metrics.logit_change(model, images, noise).max() < 1e-4  # so the logits do not move either
try:
    exact.patch_nullspace(models.load_model("zoo-resnet"))
except exact.NotPatchEmbeddingError as error:  # a CNN has no patch embedding
    assert "no `patch_embed`" in str(error)
else:
    raise AssertionError("a CNN has no patch embedding")
# a ViT whose width d reaches C r^2 (here 64 >= 3 * 4 * 4) has no nullspace in its patch embedding
wide = models.ImageClassifier(VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=2,
                                                num_classes=10), mean=(0.5,) * 3, std=(0.5,) * 3)
try:
    exact.patch_nullspace(wide)
except exact.NoNullspaceError as error:
    assert "trivial" in str(error)
else:
    raise AssertionError("d >= C r^2 leaves no nullspace")
wrapper = torch.nn.Module()
wrapper.net = models.unwrap(model)  # a wrapper that hides how it normalises: refused rather than guessed
try:
    exact.patch_embedding_matrix(wrapper)
except models.NormalisationUnknownError as error:
    assert "mean=" in str(error)  # says to pass mean=... and std=..., or to use models.ImageClassifier
else:
    raise AssertionError("an unknown normalisation must not be guessed")

# the paper's per-channel nullspace (§3.2: each channel's d x r^2 block) lies inside the joint one above
per_channel = exact.channel_nullspace(model)  # (480, 3, 16, 16): 3 * (256 - 96), one channel per vector
assert per_channel.shape == (480, 3, 16, 16)
assert (matrix @ per_channel.reshape(480, -1).T).abs().max() < 1e-10  # also in the joint nullspace
assert exact.nullspace_dimensions(384, 32) == {"per_channel": 1920, "joint": 2688}  # ViT-S/32, generic weights
assert exact.nullspace_dimensions(1024, 32)["per_channel"] == 0  # ViT-L/32: d = r^2, no per-channel nullspace

# the exact-nullspace chapter's measurements, each one call
mixes = exact.random_combinations(basis, 4, seed=4)  # 4 random vectors of the nullspace, no basis vector singled out
assert mixes.shape == (4, 3, 16, 16) and (matrix @ mixes.reshape(4, -1).T).abs().max() < 1e-10
assert exact.nullspace_sizes(model) == exact.nullspace_dimensions(96, 16) == {"per_channel": 480, "joint": 672}
assert exact.nullspace_sizes(wide) == {"per_channel": 0, "joint": 0}  # 0 where NoNullspaceError is raised
sweep = exact.amplitude_sweep(model, images, [0.1, 100.0])  # nullspace against uniform noise, same amplitude
assert isinstance(sweep, exact.AmplitudeSweep) and max(sweep.nullspace_change) < 1e-2  # float rounding only
assert sweep.random_change[1] > 1 and all(0 <= kept <= 1 for kept in sweep.random_match)  # shares of predictions kept
effects = exact.storage_effects(model, images, noise)  # clip x + v to [0, 1], round to 8 bits: what it costs
assert isinstance(effects, exact.StorageEffects) and effects.unbounded < 1e-4 and effects.saturated > 0
assert isinstance(effects.clipped, exact.Effect) and effects.clipped.max_logit_change > 1e-3  # clipping breaks it
