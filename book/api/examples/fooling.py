import torch

from nullspace_utils import exact, fooling, models

model = models.load_model("zoo-vit-s")
source, target = torch.rand(3, 112, 112), torch.rand(3, 112, 112)
result = fooling.disguise(model, source, target, channel=0)  # a DisguiseResult: green, blue from the target
assert torch.equal(result.image[1:], target[1:]) and result.exact
print(result.embedding_residual, result.out_of_box)  # ~1e-7 and the share of red values outside [0, 1]
same = exact.patch_embeddings(model, result.image[None]) - exact.patch_embeddings(model, source[None])
assert same.abs().max() < 1e-3
free, fixed = fooling.free_channel_matrices(model, channel=0)  # the patch map split by channel
print(free.shape, fixed.shape)  # (96, 256) unknowns of the red channel, (96, 512) for green and blue
# a ViT whose width d exceeds the r * r unknowns of one channel has more equations than unknowns:
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

wide = models.ImageClassifier(VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                                num_classes=10), mean=(0.5,) * 3, std=(0.5,) * 3)
small_source, small_target = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
try:
    fooling.disguise(wide, small_source, small_target)
except fooling.NoExactDisguiseError as error:  # 32 equations, 16 unknowns per patch
    print(error)
closest = fooling.disguise(wide, small_source, small_target, least_squares=True)  # the best fit instead
print(closest.exact, closest.embedding_residual)  # False, and how far from the source's embeddings
