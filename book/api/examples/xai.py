import math

import torch

from nullspace_utils import metrics, models, xai

model = models.load_model("zoo-vit-s")
images = torch.rand(2, 3, 112, 112)
assert {"saliency", "integrated_gradients", "input_x_gradient", "occlusion"} <= set(xai.METHODS)  # captum's, by name
saliency = xai.attribute(model, images, method="saliency")  # one map per image, for its predicted class
assert saliency.shape == (2, 112, 112)
assert xai.attribute(model, images, method="saliency", reduce="none").shape == (2, 3, 112, 112)  # per channel
chefer = xai.relevance(model, images)  # attention relevance (Chefer et al.), upsampled to the image's pixels
assert chefer.shape == (2, 112, 112) and chefer.min() >= 0
same = metrics.compare_maps(saliency, xai.attribute(model, images, method="saliency"))  # a map against itself
assert same["max_relative_difference"] == 0 and math.isclose(same["correlation"], 1)
other = metrics.compare_maps(saliency, xai.attribute(model, images, method="input_x_gradient"))  # another method
assert other["max_relative_difference"] > 0 and -1 <= other["correlation"] <= 1
