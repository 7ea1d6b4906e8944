"""What the paper-scale learned-noise sweeps (§4, §5) cost on one GPU: the time of one SGD step of
`nullspace_utils.approximate.learn_noise` on the imagenet profile's architectures (random weights: the cost
does not depend on them), multiplied out to the authors' recipe and to this book's.

    python benchmarks/learned_noise_cost.py --device cuda --out benchmarks/results/learned_noise_cost_gpu.json

Per model and level it times ``--steps`` steps at batch 256 of 224-pixel images (after a warm-up), in full
float32 as the sweeps run. The authors' recipe (Liu-Hy/NS-ViT) is 500 epochs of ImageNette's 9,469 training
images per noise (about 18,500 steps); the book's imagenet config is 500 steps per noise. Both are multiplied
by the number of noises a full sweep learns (lims x seeds x models, plus the rate probes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import TensorDataset

from nullspace_utils import approximate, models, results
from nullspace_utils.studies import approximate as approximate_study
from nullspace_utils.studies import common, robustness

ARCHITECTURES = {"vit_small_patch32_224": ("encoder", "input"), "vit_base_patch32_224": ("encoder", "input"),
                 "vit_large_patch32_224": ("encoder", "input"), "resnet50": ("input",),
                 "efficientnet_b0": ("input",), "mobilenetv3_small_100": ("input",)}
TRAIN_IMAGES, AUTHORS_EPOCHS, BATCH = 9_469, 500, 256


def step_seconds(name: str, level: str, steps: int, device: str) -> float:
    """Seconds per SGD step of learn_noise for timm's ``name`` (random weights) at ``level``."""
    net = timm.create_model(name, pretrained=False, num_classes=1000)
    model = models.ImageClassifier(net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), name=name).to(device)
    images = torch.rand(BATCH * 2, 3, 224, 224, device=device)
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long, device=device))
    settings = {"level": level, "lim": 0.1, "lr": 0.01, "milestones": (), "batch_size": BATCH, "device": device}
    approximate.learn_noise(model, data, steps=3, **settings)  # warm-up (kernels, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    approximate.learn_noise(model, data, steps=steps, **settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    authors_steps = AUTHORS_EPOCHS * math.ceil(TRAIN_IMAGES / BATCH)
    approximate_config = common.settings_dict(approximate_study.SETTINGS["imagenet"])
    robustness_config = common.settings_dict(robustness.SETTINGS["imagenet"])
    rows = []
    with models.exact_float32():
        for name, levels in ARCHITECTURES.items():
            for level in levels:
                config = approximate_config if level == "encoder" else robustness_config
                noises = len(config["lims"]) * len(config["seeds"])
                probe_steps = config["probe_steps"] * 8 * len(config["lims"])  # about 8 rates per probe
                seconds = step_seconds(name, level, args.steps, args.device)
                rows.append({"model": name, "level": level, "seconds_per_step": seconds,
                             "book_hours": seconds * (noises * config["steps"] + probe_steps) / 3600,
                             "authors_hours": seconds * (noises * authors_steps + probe_steps) / 3600})
                print(f"{name:<24} {level:<8} {seconds * 1000:7.1f} ms/step  book config {rows[-1]['book_hours']:6.2f} h"
                      f"  authors' 500 epochs {rows[-1]['authors_hours']:7.1f} h", flush=True)
    total = {key: sum(row[key] for row in rows) for key in ("book_hours", "authors_hours")}
    print(f"whole sweep (both levels, all six models, no lim extension): book config {total['book_hours']:.1f} h, "
          f"authors' recipe {total['authors_hours']:.0f} h")
    if args.out:
        out = {"provenance": results.provenance("python benchmarks/learned_noise_cost.py", vars(args) | {"out": str(args.out)},
                                                device=args.device),
               "batch": BATCH, "authors_steps_per_noise": authors_steps, "rows": rows, "total": total}
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
