import torch

from nullspace_utils import models, watermark

model = models.load_model("zoo-vit-s")
image = torch.rand(3, 112, 112) * 0.5 + 0.25
mark = watermark.text_mark("NULL", 112)  # (3, 112, 112) in [0, 1]
result = watermark.embed(model, image, mark)  # the ADMM solver on this device
assert result.box_violation == 0 and result.embedding_residual < 1e-4
print(watermark.compare_predictions(model, image[None], result.image[None]))
