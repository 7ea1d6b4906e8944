import math

import torch

from nullspace_utils import data, exact, metrics, models

clean = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # logits of two images (B, K), clean first
changed = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 2.0]])  # the same images, changed
assert metrics.top1_kept(clean, changed).tolist() == [True, False]  # argmax unchanged?
assert metrics.max_logit_change(clean, changed).tolist() == [1.0, 2.0]  # max_j |Δz_j|
assert metrics.relative_logit_change(clean, changed).tolist() == [0.5, 2.0]  # ... / max_j |z_j|
assert torch.allclose(metrics.squared_logit_change(clean, changed), torch.tensor([1 / 3, 5 / 3]))  # mean_j Δz_j²
p_clean = torch.tensor([math.e**2 / (math.e**2 + 2), math.e / (math.e + 2)])  # softmax(z)_c, c = argmax z
p_changed = torch.tensor([math.e**2 / (math.e**2 + math.e + 1), 1 / (math.e**2 + 2)])  # softmax(z')_c
assert torch.allclose(metrics.top1_prob_change(clean, changed), (p_clean - p_changed).abs())  # |Δp| per image
assert metrics.top1_correct(clean, torch.tensor([0, 2])).tolist() == [True, False]  # argmax == label?
changes = metrics.PredictionChanges()  # the same, gathered batch by batch and averaged
changes.add(clean, changed)
assert changes.match == 0.5 and changes.logit_change_max == 2.0 and math.isclose(changes.logit_mse, 1.0)
assert set(changes.summary()) == {"match", "prob_change", "logit_change_max", "logit_change_mean"}

vit = models.load_model("zoo-vit-s")
images, labels = data.stack_dataset(data.synthetic_dataset("val", n=16))
logits = metrics.model_logits(vit, images)  # batched, eval mode, full float32; (16, 10) on the CPU
assert metrics.accuracy(vit, images, labels) == (logits.argmax(1) == labels).float().mean().item() > 0.9
noise = exact.random_nullspace_noise(vit, 112, amplitude=0.1, seed=0)  # (3, 112, 112), from the nullspace (§3)
assert metrics.logit_change(vit, images, noise).max() < 1e-4  # max_j |Δz_j| per image: float rounding only
report = metrics.compare_predictions(vit, images, (images + 0.1 * torch.randn_like(images)).clamp(0, 1))
assert 0 <= report["match"] <= 1 and report["logit_change_max"] > 1e-3  # random noise moves the logits
assert metrics.psnr(images, images) == math.inf and 55 < metrics.psnr(images, data.quantize_8bit(images)) < 60  # dB
maps = torch.rand(2, 112, 112)
assert metrics.compare_maps(maps, maps)["max_relative_difference"] == 0  # explanation maps: alike?
