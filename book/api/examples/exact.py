import torch

from nullspace_utils import exact, models

model = models.load_model("zoo-vit-s")  # or any timm ViT: models.load_model("vit_small_patch32_224")
matrix = exact.patch_embedding_matrix(model)  # (96, 768) float64: pixels of one patch -> its embedding
basis = exact.patch_nullspace(model)  # (672, 3, 16, 16): an orthonormal basis of its nullspace
noise = exact.random_nullspace_noise(model, 112, amplitude=0.5, seed=0)  # (3, 112, 112), tiled
images = torch.rand(2, 3, 112, 112)
assert exact.logit_change(model, images, noise).max() < 1e-4  # float rounding only
