import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from nullspace_utils import data, files, metrics

folder = Path(tempfile.mkdtemp())  # where this example writes its files
val = data.synthetic_dataset("val", n=20)  # a SyntheticShapes: 10 classes of drawn shapes, seeded per split
assert isinstance(val, data.SyntheticShapes) and len(val) == 20
images, labels = data.stack_dataset(val)  # (20, 3, 112, 112) in [0, 1], (20,)
assert images.shape == (20, 3, 112, 112) and labels.shape == (20,)
assert [data.CLASS_NAMES[int(label)] for label in labels[:3]] == ["circle", "square", "triangle"]
custom = data.SyntheticShapes(5, size=64, seed=1)  # any number of images, any size
assert len(custom) == 5 and custom[0][0].shape == (3, 64, 64)
star = data.render_shape_image(3, np.random.default_rng(0), size=64)  # one star (class 3), as numpy
assert data.CLASS_NAMES[3] == "star" and star.shape == (3, 64, 64) and star.dtype == np.float32
assert data.check_images(images).batched  # the library's image convention holds: (B, C, H, W) in [0, 1]
try:
    data.check_images(images * 255)  # 8-bit values: refused, with the fix
except ValueError as error:
    assert "[0, 1]" in str(error)
else:
    raise AssertionError("images outside [0, 1] must be refused")
data.check_finite(images - 0.5, name="noise")  # any values, but no NaN or infinity (noise, disguised images)
assert 58 < metrics.psnr(images[0], data.quantize_8bit(images[0])) < 60  # what 8-bit storage costs: 58.9 dB
resized = data.resize_crop(images)  # resized by 8/7 and centre-cropped back, as an eval pipeline might
assert resized.shape == images.shape and not torch.equal(resized, images)  # same size, resampled pixels
path = data.save_image(images[0], folder / "shape.png")  # 8-bit PNG (or .npy, lossless)
assert torch.equal(data.load_image(path), data.quantize_8bit(images[0]))  # (3, 112, 112) in [0, 1], as saved
assert data.load_image(path, size=56).shape == (3, 56, 56)  # resized (bicubic) on loading
pixels = data.read_pixels(path)  # channels last; 8-bit levels (uint8) where exact, else load_image's floats
assert pixels.dtype == np.uint8 and pixels.shape == (112, 112, 3)  # (for many files: threads read in parallel)
assert torch.equal(data.pixels_to_images([pixels, pixels]), data.load_image(path).expand(2, -1, -1, -1))
with files.atomic_write(folder / "labels.txt") as temporary:  # written beside the target, renamed when complete
    temporary.write_text(" ".join(str(int(label)) for label in labels))
assert (folder / "labels.txt").read_text().startswith("0 1 2 ")
assert data.data_dir() == Path(os.environ.get("NULLSPACE_DATA") or Path.home() / ".cache" / "nullspace-vit")
try:
    data.imagenette("val", root=folder / "empty", download=False)  # the imagenet profile's images (torchvision)
except data.DatasetUnavailableError as error:
    assert data.IMAGENETTE_ARCHIVE in str(error)  # says where to put imagenette2-320.tgz by hand
else:
    raise AssertionError("an empty folder holds no ImageNette")
fake = data.write_fake_imagenette(folder / "fake-imagenette", per_class=1)  # ImageNette's layout, noise images
fakes = data.imagenette("val", root=fake, download=False)  # read like the real one
assert len(fakes) == 10 and [label for _, label in fakes] == list(range(10))  # one per class
sized = data.write_fake_imagenette(folder / "sized", split_sizes={"train": 12, "val": 10}, workers=2)  # 2 processes
assert len(data.imagenette("train", root=sized, download=False)) == 12
assert data.IMAGENETTE_SIZES == {"train": 9_469, "val": 3_925}  # the real one's: split_sizes=IMAGENETTE_SIZES to time runs
few = data.synthetic_dataset("val", n=6)
stacked, stacked_labels = data.stack_dataset_in_parallel(few, chunk=3)  # drawn in forked workers, chunk by chunk
assert torch.equal(stacked, data.stack_dataset(few)[0]) and stacked_labels.shape == (6,)
assert data.as_uint8_if_exact(data.quantize_8bit(stacked)).dtype == torch.uint8  # 8-bit values: stored in a quarter
assert data.as_uint8_if_exact(stacked + 1e-3).dtype == torch.float32  # anything else stays as it is
