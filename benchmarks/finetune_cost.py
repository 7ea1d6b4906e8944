"""Time the pieces of the fine-tuning experiment (the method nullspace_utils/finetune.py, the sweep
nullspace_utils/studies/finetune.py; issue #23) on this machine, and extrapolate the cost of the full run: 3 methods
x seeds on the teaching zoo's ViT-S, then -C accuracy, PGD and the nullspace match of every fine-tuned model.
Measures a few steps of each piece, never the whole thing:

    .venv/bin/python benchmarks/finetune_cost.py [--threads 2] [--out benchmarks/results/finetune_cpu.json]

The sizes (steps, batch, images evaluated) are arguments whose defaults are the plan made before the sweep ran
(benchmarks/results/finetune_cpu.json was measured with them); the sweep's own settings are
nullspace_utils.studies.finetune.SETTINGS, and its GPU cost is estimated by studies.finetune.estimate_sweep_hours.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, finetune, models
from nullspace_utils.data import stack_dataset, synthetic_dataset


def seconds(function, repeats: int = 1) -> float:
    """Best of ``repeats`` wall-clock times of ``function()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500, help="fine-tuning steps of one run (the plan)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--noise-steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-images", type=int, default=500, help="validation images for -C and PGD")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vit = models.load_model("zoo-vit-s")
    train = TensorDataset(*stack_dataset(synthetic_dataset("train", n=256)))
    images, labels = stack_dataset(synthetic_dataset("val", n=16))
    measured: dict[str, float] = {}

    for method in finetune.METHODS:  # per step, noise synthesis excluded (rounds=1, noise learned once, 1 step)
        config = finetune.FinetuneConfig(method=method, steps=6, batch_size=args.batch_size, rounds=1, noise_steps=1,
                                         noise_lr=1.0, noise_milestones=(), noise_images=64, noise_batch_size=64)
        finetune.finetune(vit, train, config)  # warm-up
        measured[f"step_{method}_s"] = seconds(lambda config=config: finetune.finetune(vit, train, config)) / 6
    measured["noise_step_s"] = seconds(lambda: approximate.learn_noise(
        vit, train, level="encoder", lim=2.0, steps=5, lr=1.0, milestones=(), batch_size=128)) / 5
    per_corruption = {}
    for corruption in finetune.CORRUPTIONS:
        per_corruption[corruption] = seconds(lambda c=corruption: finetune.corrupt_images(images, c, 3)) / len(images)
    measured["corrupt_image_s"] = sum(per_corruption.values()) / len(per_corruption)
    measured["clean_eval_image_s"] = seconds(lambda: finetune.clean_accuracy(vit, images, labels), 3) / len(images)
    measured["pgd10_image_s"] = seconds(lambda: finetune.pgd_images(vit, images, labels, eps=1 / 255)) / len(images)

    runs = len(finetune.METHODS) * args.seeds
    probe = 7 * 20  # choose_lr: about 7 rates x 20 probe steps, once per nullspace run
    fine_tuning = args.seeds * args.steps * sum(measured[f"step_{m}_s"] for m in finetune.METHODS)
    noise_synthesis = args.seeds * (args.rounds * args.noise_steps + probe) * measured["noise_step_s"]
    severities, corruptions = len(finetune.SEVERITIES), len(finetune.CORRUPTIONS)
    corrupting = args.eval_images * severities * corruptions * measured["corrupt_image_s"]  # once, shared by models
    corrupted_eval = (runs + 1) * args.eval_images * severities * corruptions * measured["clean_eval_image_s"]
    pgd = (runs + 1) * args.eval_images * len(finetune.PGD_EPSILONS) * measured["pgd10_image_s"]
    match = (runs + 1) * 3 * (500 + 140) * measured["noise_step_s"]  # 3 seeds x (steps + probe) per model
    estimate = {"fine_tuning_s": fine_tuning, "noise_synthesis_s": noise_synthesis, "corrupting_once_s": corrupting,
                "corrupted_eval_s": corrupted_eval, "pgd_s": pgd, "nullspace_match_s": match}
    estimate["total_s"] = sum(estimate.values())
    report = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch "
                         f"{torch.__version__}", "plan": vars(args) | {"runs": runs},
              "measured": measured, "per_corruption_image_s": per_corruption, "estimate_cpu": estimate}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
