import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models

model = models.load_model("zoo-vit-s")
assert approximate.noise_shape(model, "encoder", 112) == (49, 96)  # one vector per token (49 patches, width 96)
assert approximate.noise_shape(model, "input", 112) == (3, 112, 112)  # one image
torch.manual_seed(0)
images = torch.rand(32, 3, 112, 112)
data = TensorDataset(images, torch.zeros(32, dtype=torch.long))  # labels are ignored
result = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=5, lr=1.0, milestones=(3,),
                                 batch_size=16)  # a NoiseResult; show_progress=True for a tqdm bar
assert isinstance(result, approximate.NoiseResult) and result.noise.shape == (49, 96) and len(result.history) == 5
assert result.history[-1]["loss"] < result.history[0]["loss"]  # the logits' change shrank as it learned
assert result.norm == result.noise.norm().item()
with torch.no_grad():
    clean = model(images[:4])
    with approximate.add_noise(model, result.noise, "encoder") as noisy_model:  # the noise added to every token
        assert noisy_model(images[:4]).shape == clean.shape
    assert torch.equal(model(images[:4]), clean)  # outside the block the model is as it was
shuffled = approximate.shuffle_noise(result.noise, seed=0)  # the same values in another order
assert torch.equal(shuffled.flatten().sort().values, result.noise.flatten().sort().values)
report = approximate.evaluate_noise(model, data, result.noise, level="encoder")  # a NoiseEvaluation
assert isinstance(report, approximate.NoiseEvaluation) and 0.5 < report.match <= 1.0  # share of predictions kept
point = approximate.approximate_point(model, data, data, lim=1.0, keep_norm=False, steps=5, batch_size=16, lr=1.0,
                                      milestones=(3,))  # one point of Fig. 2 as a JSON-ready row (the sweep's)
assert point["lim"] == 1.0 and point["final_norm"] <= point["initial_norm"]  # plain SGD: the noise may shrink
assert set(point["learned"]) == set(point["shuffled"]) == {"match", "logit_mse", "prob_change", "noise_norm",
                                                           "clean_norm"}  # approximate.NoiseEvaluation's fields
