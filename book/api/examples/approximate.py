import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models

model = models.load_model("zoo-vit-s")
print(approximate.noise_shape(model, "encoder", 112), approximate.noise_shape(model, "input", 112))  # (49, 96) (3, 112, 112)
images = torch.rand(32, 3, 112, 112)
data = TensorDataset(images, torch.zeros(32, dtype=torch.long))  # labels are ignored
result = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=5, lr=1.0, milestones=(3,),
                                 batch_size=16)  # a NoiseResult; show_progress=True for a tqdm bar
print(result.noise.shape, result.history[0]["loss"], "->", result.history[-1]["loss"], result.norm)
clean = model(images[:4])
with approximate.add_noise(model, result.noise, "encoder") as noisy_model:  # the noise added to every token
    print((noisy_model(images[:4]) - clean).abs().max())  # small: that is what the noise was learned for
shuffled = approximate.shuffle_noise(result.noise, seed=0)  # the same values in another order
report = approximate.evaluate_noise(model, data, result.noise, level="encoder")  # a NoiseEvaluation
print(report.match, approximate.evaluate_noise(model, data, shuffled, level="encoder").match)
point = approximate.approximate_point(model, data, data, lim=1.0, keep_norm=False, steps=5, batch_size=16, lr=1.0,
                                      milestones=(3,))  # one point of Fig. 2 as a JSON-ready row (the sweep's)
assert point["lim"] == 1.0 and point["final_norm"] <= point["initial_norm"]  # plain SGD: the noise may shrink
assert set(point["learned"]) == set(point["shuffled"]) == {"match", "logit_mse", "prob_change", "noise_norm",
                                                           "clean_norm"}  # approximate.NoiseEvaluation's fields
