import math

import torch

from nullspace_utils import metrics, models, xai

model = models.load_model("zoo-vit-s")
images = torch.rand(2, 3, 112, 112)
assert {"saliency", "integrated_gradients", "input_x_gradient", "occlusion"} <= set(xai.METHODS)  # captum's, by name
saliency = xai.attribute(model, images, method="saliency")  # one map per image, for its predicted class
assert saliency.shape == (2, 112, 112)
assert xai.attribute(model, images, method="saliency", reduce="none").shape == (2, 3, 112, 112)  # per channel
lrp_tokens = xai.transformer_attribution(model, images)  # the paper's "LRP" (Chefer et al. CVPR 2021), upsampled
assert lrp_tokens.shape == (2, 112, 112) and lrp_tokens.min() >= 0
assert xai.transformer_attribution(model, images, upsample=False).shape == (2, 7, 7)  # one value per patch
assert xai.lrp(model, images).shape == (2, 112, 112)  # LRP down to the pixels, channels summed
rollout = xai.gradient_attention_rollout(model, images)  # Chefer et al. ICCV 2021: gradient x attention, rolled out
assert rollout.shape == (2, 112, 112) and not torch.allclose(rollout, lrp_tokens)
same = metrics.compare_maps(saliency, xai.attribute(model, images, method="saliency"))  # a map against itself
assert same["max_relative_difference"] == 0 and math.isclose(same["correlation"], 1)
other = metrics.compare_maps(saliency, xai.attribute(model, images, method="input_x_gradient"))  # another method
assert other["max_relative_difference"] > 0 and -1 <= other["correlation"] <= 1
agreement = xai.compare_disguise(saliency, saliency.clone(), lrp_tokens)  # source, transformed, target
assert isinstance(agreement, xai.MapAgreement) and agreement.transformed["max_relative_difference"] == 0
assert len(agreement.transformed_correlations) == 2 and agreement.target_correlations[0] < 1  # per image
