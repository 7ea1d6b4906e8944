import math
import tempfile
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from nullspace_utils import data, finetune, models

vit = models.load_model("zoo-vit-s")
train = TensorDataset(*data.stack_dataset(data.synthetic_dataset("train", n=32)))
images, labels = data.stack_dataset(data.synthetic_dataset("val", n=8))
# the authors' method: a noise learned per round for the current model, added to the patch tokens of every batch
settings = dict(steps=4, batch_size=16, rounds=2, lim=4.0, noise_steps=3, noise_lr=100.0, noise_milestones=(),
                noise_images=16, noise_batch_size=16, seed=0)
noisy = finetune.finetune(vit, train, finetune.FinetuneConfig(method="nullspace", **settings))
assert isinstance(noisy, finetune.FinetuneResult) and len(noisy.rounds) == 2  # one noise per round
assert isinstance(noisy.rounds[0], finetune.RoundRecord) and noisy.rounds[0].noise_loss_last < noisy.rounds[0].noise_loss_first
assert finetune.round_starts(4, 2) == [0, 2] and finetune.METHODS == ("plain", "nullspace", "gaussian")
# the control: a random direction with exactly the nullspace noise's energy, round by round
gaussian = finetune.finetune(vit, train, finetune.FinetuneConfig(method="gaussian", gaussian_rms=noisy.noise_rms,
                                                                 **settings))
assert [round(r, 6) for r in gaussian.noise_rms] == [round(r, 6) for r in noisy.noise_rms]
noise = finetune.gaussian_noise((49, 96), rms=1.5, seed=0)
assert math.isclose(noise.pow(2).mean().sqrt().item(), 1.5, rel_tol=1e-5)
loss, parts = finetune.augmentation_loss(vit, images, labels, noise)  # CE(clean) + CE(tokens + noise)
assert math.isclose(loss.item(), parts["clean_loss"] + parts["noisy_loss"], rel_tol=1e-5)
saved = Path(tempfile.mkdtemp()) / "nullspace-s0.safetensors"
finetune.save_weights(noisy.model, str(saved))  # load with models.load_model(weights=...)
assert finetune.clean_accuracy(models.load_model("zoo-vit-s", weights=saved), images,
                               labels) == finetune.clean_accuracy(noisy.model, images, labels)
# yardsticks: ImageNet-C corruptions (imagecorruptions), PGD-Linf (torchattacks); the sweep that judges each
# model by them is the study nullspace_utils.studies.finetune
blurred = finetune.corrupt_images(images, "defocus_blur", 3, seed=0)  # same seed, same corrupted images
assert blurred.shape == images.shape and not torch.equal(blurred, images)
assert len(finetune.CORRUPTIONS) == 11 and finetune.SEVERITIES == (1, 2, 3, 4, 5)
table = finetune.corruption_accuracy(vit, images, labels, corruptions=("contrast",), severities=(1,))
assert set(table) == {"per_severity", "per_corruption", "mean"}
both = finetune.corruption_accuracies({"untuned": vit, "tuned": noisy.model}, images, labels,
                                      corruptions=("contrast",), severities=(1,))  # each image corrupted once
assert both["untuned"] == table
attacked = finetune.pgd_images(vit, images, labels, eps=1 / 255, steps=2)
assert (attacked - images).abs().max() <= 1 / 255 + 1e-7
assert set(finetune.pgd_accuracy(vit, images, labels, epsilons=finetune.PGD_EPSILONS[:1], steps=2)) == {"0.5/255"}
assert len(finetune.DEPARTURES) == 7  # where the book departs from the authors' code, and why
