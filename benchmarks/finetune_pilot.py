"""A tiny CPU pilot of issue #23 (one seed, 150 steps, 300 val images: a hint, not a result). Fine-tune the zoo
ViT-S with each method of nullspace_utils/finetune.py and measure clean accuracy and how many predictions survive
random token noise at the encoder (Uniform(-lim, lim), and a Gaussian of the same RMS; one draw each, seed 7):

    .venv/bin/python benchmarks/finetune_pilot.py [--out benchmarks/results/finetune_pilot_cpu.json]

About 15 minutes on two shared CPU cores.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, finetune, models
from nullspace_utils.data import stack_dataset, synthetic_dataset

PILOT = dict(steps=150, batch_size=32, rounds=3, lim=4.0, noise_steps=20, noise_lr=100.0, noise_milestones=(15,),
             noise_images=256, noise_batch_size=64, seed=0)  # noise rate: the approximate chapter's choice at lim 4


def survival(model: torch.nn.Module, val: TensorDataset) -> dict[str, float]:
    """Clean accuracy and the share of predictions kept under one random token noise per kind and lim."""
    images, labels = val.tensors
    row = {"clean": finetune.clean_accuracy(model, images, labels)}
    for lim in (2.0, 4.0):
        uniform = approximate.uniform_noise((49, 96), lim, seed=7)
        gaussian = finetune.gaussian_noise((49, 96), lim / 3**0.5, seed=7)
        row[f"uniform_match_lim{lim:g}"] = approximate.evaluate_noise(model, val, uniform, level="encoder").match
        row[f"gaussian_match_lim{lim:g}"] = approximate.evaluate_noise(model, val, gaussian, level="encoder").match
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/finetune_pilot_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    vit = models.load_model("zoo-vit-s")
    train = TensorDataset(*stack_dataset(synthetic_dataset("train", n=2000)))
    val = TensorDataset(*stack_dataset(synthetic_dataset("val", n=300)))
    out: dict = {"config": PILOT, "untuned": survival(vit, val)}
    learned = finetune.finetune(vit, train, finetune.FinetuneConfig(method="nullspace", **PILOT))
    runs = {"nullspace": learned,
            "gaussian": finetune.finetune(vit, train, finetune.FinetuneConfig(method="gaussian",
                                                                              gaussian_rms=learned.noise_rms, **PILOT)),
            "plain": finetune.finetune(vit, train, finetune.FinetuneConfig(method="plain", **PILOT))}
    for method, result in runs.items():
        out[method] = survival(result.model, val)
        print(method, out[method], flush=True)
    out["rounds"] = [vars(record) for record in learned.rounds]
    out["seconds"] = {method: result.seconds for method, result in runs.items()}
    with open(args.out, "w") as handle:
        json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
