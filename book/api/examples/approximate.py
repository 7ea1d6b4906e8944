import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models

model = models.load_model("zoo-vit-s")
images = torch.rand(32, 3, 112, 112)
data = TensorDataset(images, torch.zeros(32, dtype=torch.long))  # labels are ignored
result = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=5, lr=1.0, milestones=(3,),
                                 batch_size=16, progress=False)
print(result.noise.shape, result.history[0]["loss"], "->", result.history[-1]["loss"])  # (49, 96)
report = approximate.evaluate_noise(model, data, result.noise, level="encoder")
print(report.match, approximate.evaluate_noise(model, data, result.noise, level="encoder", shuffle=True).match)
