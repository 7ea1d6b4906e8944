import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, robustness

vit, cnn = models.load_model("zoo-vit-s"), models.load_model("zoo-mobilenetv3")
data = TensorDataset(torch.rand(16, 3, 112, 112), torch.zeros(16, dtype=torch.long))
reference = approximate.uniform_noise((3, 112, 112), 0.1, seed=1)  # the noise nobody learned
noises: dict = {}
row = approximate.noise_point(cnn, data, data, level="input", lim=0.1, seeds=(0,), steps=2, milestones=(),
                              batch_size=8, lr=0.3, train_images=16, noises=noises)  # a sweep point, its noise kept
matrix = robustness.transfer_matrix({"vit": vit, "cnn": cnn}, {"cnn": noises[0], "uniform": reference}, data)
assert set(matrix) == {"cnn", "uniform"} and set(matrix["cnn"]) == {"vit", "cnn"}  # noise -> model -> match
exact = robustness.exact_transfer(vit, {"vit": vit, "cnn": cnn}, data, rms=0.1 / 3 ** 0.5)  # energy of U(-0.1, 0.1)
assert exact["vit"] == 1.0  # the ViT's exact nullspace noise keeps every prediction of the ViT itself
assert robustness.relative_size(row)[0] > 0  # noise norm / clean input norm: a unit-free size for Fig. 3a


def point(lim: float, *matches: float) -> dict:
    return {"lim": lim, "learning_failed": False, "seeds": [{"learned": {"match": m}} for m in matches]}


rows = {"vit": [point(0.1, 0.99, 0.98)], "cnn": [point(0.1, 0.8, 0.85)]}
verdicts = robustness.architecture_verdicts(rows, ("vit",), ("cnn",))  # every ViT seed above every CNN seed?
assert verdicts[0]["verdict"] == "ViTs ahead" and verdicts[0]["vit_range"] == (0.98, 0.99)
assert robustness.verdict_sentence(verdicts[0]).startswith("at lim 0.1 (learned noise): ViTs ahead")
assert robustness.verdict_summary(verdicts) == "ViTs ahead at lim 0.1"  # every outcome with its lims, one line
