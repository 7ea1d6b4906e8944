import torch
from torch.utils.data import TensorDataset

from nullspace_utils import models, robustness

vit, cnn = models.load_model("zoo-vit-s"), models.load_model("zoo-mobilenetv3")
data = TensorDataset(torch.rand(16, 3, 112, 112), torch.zeros(16, dtype=torch.long))
reference = robustness.uniform_noise((3, 112, 112), 0.1, seed=1)  # the noise nobody learned
lr, scores = robustness.choose_lr(cnn, data, level="input", lim=0.1, lrs=(0.03, 0.3), steps=2, batch_size=8)
row, noise = robustness.robustness_point(cnn, data, data, level="input", lim=0.1, steps=2, lr=lr,
                                         milestones=(), batch_size=8)
assert set(scores) == {"0.03", "0.3"} and scores[str(lr)] == min(scores.values())  # lowest final loss
assert {"learned", "shuffled", "uniform"} <= set(row) and 0 <= row["learned"]["match"] <= 1
matrix = robustness.transfer_matrix({"vit": vit, "cnn": cnn}, {"cnn": noise, "uniform": reference}, data)
assert set(matrix) == {"cnn", "uniform"} and set(matrix["cnn"]) == {"vit", "cnn"}  # noise -> model -> match
exact = robustness.exact_transfer(vit, {"vit": vit, "cnn": cnn}, data, amplitude=0.1)
assert exact["vit"] == 1.0  # the ViT's exact nullspace noise keeps every prediction of the ViT itself
rows = {"vit": [{"lim": 0.1, "learned": {"match": 0.99}}], "cnn": [{"lim": 0.1, "learned": {"match": 0.8}}]}
assert robustness.vits_beat_cnns(rows, ("vit",), ("cnn",)) == [
    {"lim": 0.1, "worst_vit": 0.99, "best_cnn": 0.8, "vits_ahead": True}]
