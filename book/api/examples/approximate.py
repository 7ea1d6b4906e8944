import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models

model = models.load_model("zoo-vit-s")
assert approximate.noise_shape(model, "encoder", 112) == (49, 96)  # one vector per patch token
assert approximate.noise_shape(model, "input", 112) == (3, 112, 112)  # one image
torch.manual_seed(0)
images = torch.rand(32, 3, 112, 112)
data = TensorDataset(images, torch.zeros(32, dtype=torch.long))  # labels are ignored

# eq. 6: learn a noise on the tokens that leaves the logits as they were
result = approximate.learn_noise(model, data, level="encoder", lim=1.0, steps=5, lr=1.0,
                                 milestones=(3,), batch_size=16)
assert isinstance(result, approximate.NoiseResult) and result.noise.shape == (49, 96)
assert result.history[-1]["loss"] < result.history[0]["loss"]  # the logit change shrank
assert approximate.learning_precision("auto", "cpu") == "float32"  # "auto": bf16 autocast on CUDA GPUs from Ampere
report = approximate.evaluate_noise(model, data, result.noise, level="encoder")
assert isinstance(report, approximate.NoiseEvaluation) and report.match > 0.5  # predictions kept
shuffled = approximate.shuffle_noise(result.noise, seed=0)  # the paper's baseline
loss = approximate.training_loss(model, data, result.noise, level="encoder", images=32)
assert loss < approximate.training_loss(model, data, shuffled, level="encoder", images=32)
# many noises on the same model and data: their clean logits once, then one forward pass per batch each
clean = approximate.clean_pass(model, data, level="encoder")
assert isinstance(clean, approximate.CleanPass) and clean.images == 32
assert approximate.evaluate_noise(model, data, shuffled, level="encoder", clean=clean) == approximate.evaluate_noise(
    model, data, shuffled, level="encoder")

# one noise per seed, with the seeds sharing forward passes (on a GPU by default: noises_per_pass)
three = approximate.learn_noises(model, data, level="encoder", lim=1.0, seeds=(0, 1, 2), steps=2, lr=1.0,
                                 milestones=(), batch_size=16, per_pass=3)
assert [noise.lr for noise in three] == [1.0] * 3
assert approximate.noises_per_pass(None, 256, "cpu") == 1  # on CUDA: IMAGES_PER_PASS per 80 GB (3 on an H100)
# the training images' clean logits once per learning call instead of once per step (on CUDA by default)
assert approximate.clean_logits_once(None, data, "cuda") and not approximate.clean_logits_once(None, data, "cpu")
once = approximate.learn_noises(model, data, level="encoder", lim=1.0, seeds=(0, 1, 2), steps=2, lr=1.0,
                                milestones=(), batch_size=16, per_pass=3, clean_once=True)
assert all(torch.allclose(a.noise, b.noise, atol=1e-5) for a, b in zip(once, three, strict=True))
# compile=True runs the learning passes through torch.compile (the ViT's blocks at the encoder); off by default
with approximate.compiled_passes(model, "encoder", False) as forward:
    assert forward is model  # not compiled: the model itself

# the pieces
start = approximate.uniform_noise((49, 96), 1.0, seed=0)  # Uniform(-1, 1): where learning starts
clean = torch.tensor([[1.0, 2.0]])
assert approximate.logit_distance(clean, clean + torch.tensor([[3.0, 4.0]])).item() == 5.0  # L2
with torch.no_grad(), approximate.add_noise(model, result.noise, "encoder") as noisy_model:
    noisy_logits = noisy_model(images[:4])  # the model with the noise on every patch token
image_noise = approximate.uniform_noise((3, 112, 112), 0.1, seed=0)
null_part, row_part = approximate.split_noise(model, image_noise)  # invisible + what the ViT sees

# the learning rate: lr="auto" (the default) probes a grid on training images first
choice = approximate.choose_lr(model, data, level="encoder", lim=1.0, grid=(0.1, 1.0, 10.0),
                               steps=2, batch_size=16)
assert isinstance(choice, approximate.LrChoice) and 0.01 in approximate.LR_GRID
rate, probed = approximate.resolve_lr("auto", model, data, level="encoder", lim=1.0,
                                     grid=(0.1, 1.0, 10.0), steps=2, batch_size=16)
assert rate == probed.lr and approximate.resolve_lr(0.5, model, data) == (0.5, None)
