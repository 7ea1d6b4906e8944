import torch
from timm.models.vision_transformer import VisionTransformer

from nullspace_utils import exact, fooling, models

model = models.load_model("zoo-vit-s")
source, target = torch.rand(3, 112, 112), torch.rand(3, 112, 112)
result = fooling.disguise(model, source, target, channel=0)  # a DisguiseResult: green, blue from the target
assert isinstance(result, fooling.DisguiseResult) and result.exact and result.channel == 0
assert torch.equal(result.image[1:], target[1:])  # only the red channel was solved for
assert result.embedding_residual.max() < fooling.EXACT_RESIDUAL  # float32 rounding of the returned image: the ViT
# sees the source in the disguised image
assert 0 < result.out_of_box < 1  # unbounded (the paper's study): some red values leave [0, 1]
same = exact.patch_embeddings(model, result.image[None]) - exact.patch_embeddings(model, source[None])
assert same.abs().max() < 1e-3
l1 = fooling.disguise(model, source, target, p=1)  # the paper's L1 objective (A.3 -> A.2): one LP per patch
assert l1.exact and (l1.image[0] - target[0]).abs().sum() < (result.image[0] - target[0]).abs().sum()
bounded = fooling.disguise(model, source, target, bounded=True, iterations=50)  # the red channel kept in [0, 1]
assert bounded.out_of_box == 0 and bounded.image.min() >= 0 and bounded.image.max() <= 1  # at a cost in residual
free, fixed = fooling.free_channel_matrices(model, channel=0)  # the patch map split by channel
assert free.shape == (96, 256) and fixed.shape == (96, 512)  # 16 * 16 unknowns of red; green and blue
# a ViT whose width d exceeds the r * r unknowns of one channel has more equations than unknowns:
wide = models.ImageClassifier(VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                                num_classes=10), mean=(0.5,) * 3, std=(0.5,) * 3)
small_source, small_target = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
try:
    fooling.disguise(wide, small_source, small_target)
except fooling.NoExactDisguiseError as error:  # 32 equations, 16 unknowns per patch
    assert "least_squares=True" in str(error)  # says what to do instead
else:
    raise AssertionError("d > r * r has no exact disguise in general")
closest = fooling.disguise(wide, small_source, small_target, least_squares=True)  # the best fit instead
assert not closest.exact and closest.embedding_residual.max() > 1e-3  # how far from the source's embeddings
change = fooling.channel_change(l1, target[None])  # a ChannelChange: how far the red channel moved from the target's
assert isinstance(change, fooling.ChannelChange) and change.low < 0 < 1 < change.high  # beyond [0, 1]
assert change.l1 < fooling.channel_change(result, target[None]).l1  # the L1 objective makes the smaller L1 change
check = fooling.check_predictions(model, result.image, source, target)  # a PredictionCheck: what the model sees
assert isinstance(check, fooling.PredictionCheck) and check.source_kept == 1.0 and check.max_logit_change < 1e-3
