import torch

from nullspace_utils import exact, fooling, models

model = models.load_model("zoo-vit-s")
source, target = torch.rand(3, 112, 112), torch.rand(3, 112, 112)
result = fooling.disguise(model, source, target, channel=0)  # green and blue copied from the target
assert torch.equal(result.image[1:], target[1:]) and result.exact
print(result.embedding_residual, result.out_of_box)  # ~1e-7 and the share of red values outside [0, 1]
same = exact.patch_embeddings(model, result.image[None]) - exact.patch_embeddings(model, source[None])
assert same.abs().max() < 1e-3
