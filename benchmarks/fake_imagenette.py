"""A fake ImageNette of the real one's size (9,469 training and 3,925 validation images of noise), to time the
imagenet profile's runs without the dataset: the cost of a run depends on the number and size of its images, not
on what they show. Point ``NULLSPACE_DATA`` at the folder and set ``NULLSPACE_WEIGHTS=random``:

    python benchmarks/fake_imagenette.py /tmp/fake-imagenette
    NULLSPACE_DATA=/tmp/fake-imagenette NULLSPACE_WEIGHTS=random \\
        python -m nullspace_utils.experiments robustness --profile imagenet --device cuda --models vit_small_patch32_224

Numbers computed on it mean nothing. The timings in ``benchmarks/results/plan_estimate_gpu.json`` were made with
fakes of the same kind, 9,600 images per split (``data.write_fake_imagenette`` with 60 per class, in 16 processes
of different seeds), before this script.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nullspace_utils import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to write (imagenette2-320/ goes inside); must not hold one")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing in parallel")
    args = parser.parse_args()
    if (args.folder / "imagenette2-320").exists():
        parser.error(f"{args.folder / 'imagenette2-320'} exists already: remove it, or give another folder.")
    started = time.perf_counter()
    data.write_fake_imagenette(args.folder, split_sizes=data.IMAGENETTE_SIZES, workers=args.workers)
    counts = {split: sum(1 for _ in (args.folder / "imagenette2-320" / split).rglob("*.JPEG"))
              for split in data.IMAGENETTE_SIZES}
    print(f"wrote {counts['train']} training and {counts['val']} validation images to {args.folder} "
          f"in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
