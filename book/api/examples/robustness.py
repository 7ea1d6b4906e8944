import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, robustness

vit, cnn = models.load_model("zoo-vit-s"), models.load_model("zoo-mobilenetv3")
data = TensorDataset(torch.rand(16, 3, 112, 112), torch.zeros(16, dtype=torch.long))
reference = approximate.uniform_noise((3, 112, 112), 0.1, seed=1)  # the noise nobody learned
learned = approximate.learn_noise(cnn, data, level="input", lim=0.1, steps=2, lr=0.3, batch_size=8).noise
clean = robustness.clean_passes({"vit": vit, "cnn": cnn}, data)  # each model's clean logits, once for every noise
matrix = robustness.transfer_matrix({"vit": vit, "cnn": cnn}, {"cnn": learned, "uniform": reference}, data,
                                    clean=clean)
assert set(matrix) == {"cnn", "uniform"} and set(matrix["cnn"]) == {"vit", "cnn"}  # noise -> model -> match
exact = robustness.exact_transfer(vit, {"vit": vit, "cnn": cnn}, data, rms=0.1 / 3 ** 0.5, clean=clean)  # energy of U(-0.1, 0.1)
assert exact["vit"] == 1.0  # the ViT's exact nullspace noise keeps every prediction of the ViT itself
