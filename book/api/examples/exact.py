import torch

from nullspace_utils import exact, models

model = models.load_model("zoo-vit-s")  # or any timm ViT: models.load_model("vit_small_patch32_224")
print(exact.patch_embedding_layer(model))  # Conv2d(3, 96, kernel_size=(16, 16), stride=(16, 16))
matrix = exact.patch_embedding_matrix(model)  # (96, 768) float64: pixels of one patch -> its embedding
basis = exact.patch_nullspace(model)  # (672, 3, 16, 16): an orthonormal basis of its nullspace
one_patch = basis[0].float()  # a (3, 16, 16) nullspace vector ...
tiled = exact.tile(one_patch, 112)  # ... repeated over the 7 x 7 patches of a 112 x 112 image
noise = exact.random_nullspace_noise(model, 112, amplitude=0.5, seed=0)  # a random combination, tiled
images = torch.rand(2, 3, 112, 112)
same = exact.patch_embeddings(model, images + tiled) - exact.patch_embeddings(model, images)  # (2, 49, 96)
assert same.abs().max() < 1e-4
assert exact.logit_change(model, images, noise).max() < 1e-4  # float rounding only
try:
    exact.patch_nullspace(models.load_model("zoo-resnet"))
except exact.NotPatchEmbeddingError as error:  # a CNN has no patch embedding
    print(error)
# exact.NoNullspaceError is raised for a ViT whose patch embedding has d >= C r^2 outputs
bare = models.unwrap(model)  # the timm network alone: it does not normalise, its caller must
wrapper = torch.nn.Module()
wrapper.net = bare  # a wrapper that hides how it normalises: refused rather than guessed
try:
    exact.patch_embedding_matrix(wrapper)
except models.NormalisationUnknownError as error:
    print(error)  # says to pass mean=... and std=..., or to use models.ImageClassifier
