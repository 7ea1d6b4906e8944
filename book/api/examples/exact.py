import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import exact, metrics, models

model = models.load_model("zoo-vit-s")  # or a timm ViT: models.load_model("vit_small_patch32_224")
layer = exact.patch_embedding_layer(model)  # Conv2d(3, 96, kernel_size=16, stride=16)
matrix = exact.patch_embedding_matrix(model)  # W_pix: a 3 x 16 x 16 patch -> 96 values
assert matrix.shape == (96, 768)
mean, std = exact.normalisation(model)  # the input normalisation W_pix folds in
basis = exact.patch_nullspace(model)  # orthonormal, one (3, 16, 16) patch per vector
assert basis.shape == (672, 3, 16, 16)  # 768 - 96 directions the embedding cannot see

# a nullspace patch, tiled over a 112 x 112 image, leaves every patch embedding as it was
tiled = exact.tile(basis[0].float(), 112)  # (3, 112, 112)
rows = exact.to_patches(tiled[None], 16)  # (49, 768): one row per patch, the matrix's column order
assert torch.equal(exact.from_patches(rows, (1, 3, 112, 112), 16)[0], tiled)
assert (rows.double() @ matrix.T).abs().max() < 1e-5
noise = exact.random_nullspace_noise(model, 112, amplitude=0.5, seed=0)  # a random one, peak 0.5
images = torch.rand(2, 3, 112, 112)
embeddings = exact.patch_embeddings(model, images)  # (2, 49, 96)
assert (exact.patch_embeddings(model, images + noise) - embeddings).abs().max() < 1e-4
assert metrics.logit_change(model, images, noise).max() < 1e-4  # so the logits stay too

# the paper's per-channel nullspace (§3.2) lies inside the joint one above
per_channel = exact.channel_nullspace(model)  # 3 x (256 - 96) vectors, each on one channel
assert exact.nullspace_sizes(model) == {"per_channel": 480, "joint": 672}
assert exact.nullspace_dimensions(384, 32) == {"per_channel": 1920, "joint": 2688}  # ViT-S/32
mixes = exact.random_combinations(basis, 4, seed=4)  # 4 random vectors of the nullspace

# the chapter's measurements, one call each
sweep = exact.amplitude_sweep(model, images, [0.1, 100.0])  # nullspace vs uniform noise
assert isinstance(sweep, exact.AmplitudeSweep)
assert max(sweep.nullspace_change) < 1e-2 < sweep.random_change[1]
effects = exact.storage_effects(model, images, noise)  # clip to [0, 1], round to 8 bits
assert isinstance(effects, exact.StorageEffects) and isinstance(effects.clipped, exact.Effect)
assert effects.unbounded < 1e-4 < effects.clipped.max_logit_change  # clipping breaks it

# errors that say what to do
cnn = models.load_model("zoo-resnet")
try:
    exact.patch_nullspace(cnn)
except exact.NotPatchEmbeddingError as error:
    assert "no `patch_embed`" in str(error)
else:
    raise AssertionError("a CNN has no patch embedding")
wide = models.ImageClassifier(  # d = 64 >= C r^2 = 3 * 4 * 4: no nullspace
    VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=2,
                      num_classes=10),
    mean=(0.5,) * 3, std=(0.5,) * 3)
try:
    exact.patch_nullspace(wide)
except exact.NoNullspaceError as error:
    assert "trivial" in str(error)
else:
    raise AssertionError("d >= C r^2 leaves no nullspace")
hidden = torch.nn.Module()
hidden.net = models.unwrap(model)  # a wrapper that does not say how it normalises
try:
    exact.patch_embedding_matrix(hidden)
except models.NormalisationUnknownError as error:
    assert "mean=" in str(error)  # pass mean=... and std=..., or use models.ImageClassifier
else:
    raise AssertionError("an unknown normalisation must not be guessed")
