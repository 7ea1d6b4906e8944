import torch
from torch.utils.data import TensorDataset

from nullspace_utils import models, robustness

vit, cnn = models.load_model("zoo-vit-s"), models.load_model("zoo-mobilenetv3")
data = TensorDataset(torch.rand(16, 3, 112, 112), torch.zeros(16, dtype=torch.long))
lr, scores = robustness.choose_lr(cnn, data, level="input", lim=0.1, lrs=(0.03, 0.3), steps=2, batch_size=8)
row, noise = robustness.robustness_point(cnn, data, data, level="input", lim=0.1, steps=2, lr=lr,
                                         milestones=(), batch_size=8)
print(row["learned"]["match"], row["shuffled"]["match"], row["uniform"]["match"])
print(robustness.exact_transfer(vit, {"vit": vit, "cnn": cnn}, data, amplitude=0.1))  # vit: 1.0
