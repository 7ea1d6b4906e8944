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
start = approximate.uniform_noise((49, 96), 1.0, seed=0)  # Uniform(-1, 1): where learning starts, seeded
assert torch.allclose(approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=1, lr=1e-12,
                                              batch_size=16, seed=0).noise, start, atol=1e-6)
clean = torch.tensor([[1.0, 2.0]])
assert approximate.logit_distance(clean, clean + torch.tensor([[3.0, 4.0]])).item() == 5.0  # eq. 6: an L2 norm
choice = approximate.choose_lr(model, data, level="encoder", lim=1.0, grid=(0.1, 1.0, 10.0), steps=2,
                               batch_size=16)  # an LrChoice: probe on training images, grid widened if needed
assert isinstance(choice, approximate.LrChoice) and choice.scores[str(choice.lr)] == min(choice.scores.values())
assert set(approximate.LR_GRID) <= {0.01, 0.1, 1.0, 10.0, 100.0}  # the default starting grid
auto = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=2, batch_size=16, probe_steps=2,
                               lr_grid=(0.1, 1.0, 10.0))  # lr="auto", the default, probes first
assert auto.lr_choice is not None and auto.lr == auto.lr_choice.lr
loss = approximate.training_loss(model, data, result.noise, level="encoder", images=32)  # eq. 6 on training images
assert loss < approximate.training_loss(model, data, shuffled, level="encoder", images=32)  # learning worked
image_noise = approximate.uniform_noise((3, 112, 112), 0.1, seed=0)
null_part, row_part = approximate.split_noise(model, image_noise)  # invisible to the ViT + what reaches its tokens
with torch.no_grad():
    assert (model(images[:4] + null_part) - model(images[:4])).abs().max() < 1e-3
rate, probed = approximate.resolve_lr("auto", model, data, level="encoder", lim=1.0, grid=(0.1, 1.0, 10.0), steps=2,
                                     batch_size=16)  # "auto": the rate choose_lr picks, with its LrChoice
assert probed is not None and rate == probed.lr and approximate.resolve_lr(0.5, model, data) == (0.5, None)
