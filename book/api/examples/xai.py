import torch

from nullspace_utils import models, xai

model = models.load_model("zoo-vit-s")
images = torch.rand(2, 3, 112, 112)
saliency = xai.attribute(model, images, method="saliency")  # (2, 112, 112), via captum
chefer = xai.relevance(model, images)  # (2, 112, 112): attention relevance (Chefer et al.), upsampled
print(sorted(xai.METHODS), saliency.shape, chefer.shape)
print(xai.compare_maps(saliency, xai.attribute(model, images, method="input_x_gradient")))
