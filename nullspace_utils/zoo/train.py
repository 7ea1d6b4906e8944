"""Train the teaching zoo (a front end: the library never imports this module).

Three steps, each a sub-command of ``python -m nullspace_utils.zoo``:

``data``      render the training split once into an 8-bit ``.npy`` cache (all CPU cores);
``train``     train one or more zoo models from that cache, write ``<name>.safetensors``
              (fp16) and ``<name>.json`` (config, history, val accuracy on a fresh split);
``manifest``  collect the per-model JSON files into ``manifest.json`` with sha256 and provenance.

Every model is trained with the same recipe (AdamW, cosine schedule with warm-up,
label smoothing, flips and quarter turns as augmentation), so the three ViTs
compare fairly. The command that produced the committed zoo is in the manifest.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nullspace_utils.data import CLASS_NAMES, SPLIT_SEEDS, render_shape_image, stack_dataset, synthetic_dataset
from nullspace_utils.files import git_commit, sha256_of_file
from nullspace_utils.models import ZOO, ZOO_DIR, ZOO_MEAN, ZOO_STD, ImageClassifier, build_zoo_network


def _render_chunk(args: tuple[int, int, int, int]) -> np.ndarray:
    seed, start, stop, size = args
    out = np.empty((stop - start, 3, size, size), dtype=np.uint8)
    for i, index in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, index])
        image = render_shape_image(index % len(CLASS_NAMES), rng, size)
        out[i] = np.round(image * 255.0).astype(np.uint8)
    return out


def render_split_uint8(n: int, *, size: int, seed: int, workers: int) -> np.ndarray:
    """Images 0..n-1 of the split with ``seed`` as uint8 (n, 3, size, size), rendered in parallel."""
    chunk = 500
    jobs = [(seed, start, min(start + chunk, n), size) for start in range(0, n, chunk)]
    with multiprocessing.Pool(workers) as pool:
        return np.concatenate(pool.map(_render_chunk, jobs))


def _augment(images: torch.Tensor) -> torch.Tensor:
    """Label-preserving augmentation for the shape classes: random flips and quarter turns."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    quarter = int(torch.randint(0, 4, ()).item())
    return torch.rot90(images, quarter, dims=(-2, -1))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on a stacked split."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def train_one(name: str, cache: Path, out_dir: Path, *, epochs: int, batch_size: int, lr: float,
              weight_decay: float, warmup_epochs: int, label_smoothing: float, val_size: int,
              seed: int, device: str) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    train_uint8 = torch.from_numpy(np.load(cache)).to(device)
    train_labels = (torch.arange(len(train_uint8), device=device) % len(CLASS_NAMES)).long()
    val_images, val_labels = stack_dataset(synthetic_dataset("val", n=val_size))
    val_images, val_labels = val_images.to(device), val_labels.to(device)

    model = ImageClassifier(build_zoo_network(name), ZOO_MEAN, ZOO_STD, name=name).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    steps_per_epoch = len(train_uint8) // batch_size
    total_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    history = []
    generator = torch.Generator(device=device).manual_seed(seed)
    start_time = time.time()
    step = 0
    use_amp = device.startswith("cuda")
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_uint8), device=device, generator=generator)
        running = 0.0
        for batch in range(steps_per_epoch):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            images = _augment(train_uint8[index].float() / 255.0)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = F.cross_entropy(model(images), train_labels[index], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            running += loss.detach().item()
            step += 1
        record = {"epoch": epoch + 1, "loss": running / steps_per_epoch, "seconds": time.time() - start_time}
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            record["val_accuracy"] = accuracy(model, val_images, val_labels)
        history.append(record)
        print(name, record, flush=True)

    model = model.float().eval()
    val_accuracy = accuracy(model, val_images, val_labels)
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(out_dir / f"{name}.safetensors"))
    # Accuracy of the fp16 weights as they ship, measured in float32 on the CPU copy.
    reloaded = ImageClassifier(build_zoo_network(name), ZOO_MEAN, ZOO_STD, name=name)
    reloaded.net.load_state_dict({k: v.float() for k, v in state.items()})
    shipped_accuracy = accuracy(reloaded.to(device), val_images, val_labels)
    result = {
        "name": name,
        "kind": ZOO[name].kind,
        "plays": ZOO[name].plays,
        "description": ZOO[name].description,
        "params": sum(p.numel() for p in model.parameters()),
        "val_accuracy": shipped_accuracy,
        "val_accuracy_fp32": val_accuracy,
        "val_size": val_size,
        "training": {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing, "optimizer": "AdamW",
            "schedule": "linear warm-up then cosine", "augmentation": "random horizontal flip, random quarter turn",
            "precision": "bf16 autocast" if use_amp else "fp32", "seed": seed,
            "train_images": len(train_uint8), "train_seed": SPLIT_SEEDS["train"], "train_pixels": "8-bit",
            "seconds": time.time() - start_time, "device": torch.cuda.get_device_name() if use_amp else platform.processor(),
        },
        "history": history,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result


def write_manifest(out_dir: Path, command: str) -> dict:
    import timm

    models = {}
    for name in ZOO:
        path = out_dir / f"{name}.json"
        if not path.exists():
            continue
        entry = json.loads(path.read_text())
        entry.pop("name")
        entry["file"] = f"{name}.safetensors"
        entry["sha256"] = sha256_of_file(out_dir / entry["file"])
        models[name] = entry
    manifest = {
        "format": 1,
        "image_size": 112,
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "mean": list(ZOO_MEAN),
        "std": list(ZOO_STD),
        "dataset": {"generator": "nullspace_utils.data.synthetic_dataset", "split_seeds": SPLIT_SEEDS},
        "geometry_note": (
            "112x112 images with patch 16 give 7x7 = 49 patches as 224/32 does; widths 96/192/256 over "
            "3*16*16 = 768 give the ratios 0.125/0.25/0.33 of ViT-S/B/L-32 (384/768/1024 over 3072)."
        ),
        "provenance": {"command": command, "commit": git_commit(), "torch": torch.__version__,
                       "timm": timm.__version__, "numpy": np.__version__},
        "models": models,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nullspace_utils.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="render the training split into an 8-bit .npy cache")
    data.add_argument("--n", type=int, default=60_000)
    data.add_argument("--out", type=Path, required=True)
    data.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    train = sub.add_parser("train", help="train zoo models from the cache")
    train.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    train.add_argument("--cache", type=Path, required=True)
    train.add_argument("--out-dir", type=Path, default=ZOO_DIR)
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--warmup-epochs", type=int, default=3)
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument("--val-size", type=int, default=2000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    manifest = sub.add_parser("manifest", help="collect per-model results into manifest.json")
    manifest.add_argument("--out-dir", type=Path, default=ZOO_DIR)
    manifest.add_argument("--command", default="see README: python -m nullspace_utils.zoo ...")
    args = parser.parse_args(argv)

    if args.command == "data":
        images = render_split_uint8(args.n, size=112, seed=SPLIT_SEEDS["train"], workers=args.workers)
        np.save(args.out, images)
        print(f"wrote {args.out}: {images.shape}")
    elif args.command == "train":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            train_one(name, args.cache, args.out_dir, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, val_size=args.val_size, seed=args.seed,
                      device=args.device)
    else:
        write_manifest(args.out_dir, args.command)
