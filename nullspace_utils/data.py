"""Images for the book: the offline ``teaching`` dataset and small image helpers.

The teaching dataset is drawn procedurally, so it needs no download and is the
same on every machine: ten classes of shapes (circle, square, ...) with random
colour, size, position and rotation, on textured backgrounds with distractor
strokes and pixel noise. Each image is rendered from its own random generator,
``numpy.random.default_rng([seed, index])``, so any image can be drawn on its own
and the same arguments always give the same pixels.

Images follow the library's convention: float32 tensors in [0, 1], shape (3, H, W).
This module knows nothing about models.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nullspace_utils.files import atomic_write

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CLASS_NAMES",
    "SPLIT_SEEDS",
    "DEFAULT_SPLIT_SIZES",
    "SyntheticShapes",
    "synthetic_dataset",
    "render_shape_image",
    "stack_dataset",
    "stack_dataset_in_parallel",
    "as_uint8_if_exact",
    "check_images",
    "check_finite",
    "quantize_8bit",
    "resize_crop",
    "load_image",
    "read_pixels",
    "pixels_to_images",
    "save_image",
    "IMAGENETTE_WNIDS",
    "IMAGENETTE_ARCHIVE",
    "DatasetUnavailableError",
    "data_dir",
    "imagenette",
    "write_fake_imagenette",
    "IMAGENETTE_SIZES",
]

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "arrow",
    "ellipse",
    "heart",
)

#: Base seeds of the splits. They are disjoint, so no validation image is a training image.
SPLIT_SEEDS: dict[str, int] = {"train": 20230201, "val": 20230202, "test": 20230203}

#: Number of images of each split when ``n`` is not given.
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 20_000, "val": 2_000, "test": 2_000}

_SUPERSAMPLE = 2  # render at 2x and average 2x2 blocks: smooth (anti-aliased) edges


# --------------------------------------------------------------------------- shapes
def _regular_polygon(sides: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(sides) / sides
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star_polygon(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    angles = np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_ARROW = np.array(
    [[-0.95, -0.22], [0.15, -0.22], [0.15, -0.6], [0.95, 0.0], [0.15, 0.6], [0.15, 0.22], [-0.95, 0.22]]
)
_TRIANGLE = _regular_polygon(3)
_HEXAGON = _regular_polygon(6, phase=0.0)
_STAR = _star_polygon()


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule for points (u, v) (any shape) against a closed polygon (K, 2)."""
    x0, y0 = vertices[:, 0], vertices[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    uu, vv = u[..., None], v[..., None]
    crosses = (y0 > vv) != (y1 > vv)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_v = x0 + (vv - y0) * (x1 - x0) / (y1 - y0)
    return np.logical_xor.reduce(crosses & (uu < x_at_v), axis=-1)


def _shape_mask(class_index: int, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Boolean mask of shape ``class_index`` in its own coordinates (unit size, centred, upright)."""
    name = CLASS_NAMES[class_index]
    r2 = u * u + v * v
    if name == "circle":
        return r2 <= 0.85**2
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.72
    if name == "triangle":
        return _inside_polygon(u, v + 0.15, _TRIANGLE)
    if name == "star":
        return _inside_polygon(u, v, _STAR)
    if name == "cross":
        return ((np.abs(u) <= 0.26) & (np.abs(v) <= 0.9)) | ((np.abs(v) <= 0.26) & (np.abs(u) <= 0.9))
    if name == "ring":
        return (r2 <= 0.92**2) & (r2 >= 0.55**2)
    if name == "hexagon":
        return _inside_polygon(u, v, _HEXAGON)
    if name == "arrow":
        return _inside_polygon(u, v, _ARROW)
    if name == "ellipse":
        return (u / 0.95) ** 2 + (v / (0.95 * aspect)) ** 2 <= 1.0
    if name == "heart":
        x, y = u * 1.25, v * 1.25 - 0.1
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    raise AssertionError(name)  # pragma: no cover - CLASS_NAMES is fixed


# --------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A smooth two-colour gradient with a few random gratings on top: (H, W, 3)."""
    colour_a, colour_b = rng.uniform(0.05, 0.95, size=(2, 3))
    direction = rng.uniform(0, 2 * np.pi)
    t = (np.cos(direction) * xs + np.sin(direction) * ys + 1.5) / 3.0  # roughly [0, 1]
    image = colour_a + t[..., None] * (colour_b - colour_a)
    for _ in range(rng.integers(2, 5)):
        frequency = rng.uniform(2.0, 12.0)
        angle = rng.uniform(0, 2 * np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        amplitude = rng.uniform(0.02, 0.09)
        grating = np.sin(frequency * (np.cos(angle) * xs + np.sin(angle) * ys) + phase)
        image = image + amplitude * grating[..., None] * rng.uniform(-1, 1, size=3)
    return image


def _distinct_colour(rng: np.random.Generator, avoid: np.ndarray, min_distance: float = 0.45) -> np.ndarray:
    for _ in range(100):
        colour = rng.uniform(0.0, 1.0, size=3)
        if np.linalg.norm(colour - avoid) >= min_distance:
            return colour
    return 1.0 - avoid  # far from ``avoid`` by construction; reached with tiny probability


def _stroke_alpha(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, pixel: float) -> np.ndarray:
    """Coverage (0..1) of one distractor, a thin line segment or a small dot, with soft edges."""
    p = rng.uniform(-1, 1, size=2)
    if rng.random() < 0.6:
        q = p + rng.uniform(-0.6, 0.6, size=2)
        d = q - p
        t = np.clip(((xs - p[0]) * d[0] + (ys - p[1]) * d[1]) / (d @ d + 1e-12), 0, 1)
        distance = np.hypot(xs - (p[0] + t * d[0]), ys - (p[1] + t * d[1]))
        radius = rng.uniform(0.01, 0.03)
    else:
        distance = np.hypot(xs - p[0], ys - p[1])
        radius = rng.uniform(0.03, 0.08)
    return np.clip((radius - distance) / pixel + 0.5, 0.0, 1.0)


def _pixel_centres(size: int) -> np.ndarray:
    return (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]


def render_shape_image(class_index: int, rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """Draw one image of class ``class_index`` with ``rng``: float32 (3, size, size) in [0, 1].

    Args:
        class_index: the class, 0 to 9 (an index into ``CLASS_NAMES``).
        rng: the generator that draws colour, size, position and background.
        size: the image's side in pixels.
    """
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"class_index must be in [0, {len(CLASS_NAMES)}), got {class_index}.")
    coords = _pixel_centres(size)
    xs, ys = np.meshgrid(coords, -coords)  # y points up, like a maths figure
    pixel = 2.0 / size

    image = _background(rng, xs, ys)
    mean_background = image.mean(axis=(0, 1))

    # Distractors first, so the shape can partly cover them.
    for _ in range(rng.integers(2, 6)):
        alpha = _stroke_alpha(rng, xs, ys, pixel)[..., None]
        image = image * (1.0 - alpha) + rng.uniform(0, 1, size=3) * alpha

    scale = rng.uniform(0.38, 0.62)
    centre = rng.uniform(-(0.95 - scale), 0.95 - scale, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    aspect = rng.uniform(0.42, 0.6)
    cos, sin = np.cos(angle), np.sin(angle)

    def shape_coordinates(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - centre[0], y - centre[1]
        return (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale

    # Coverage of the shape: its mask on a finer grid, averaged over each pixel (anti-aliasing).
    # Only the pixels of the shape's bounding box are rendered finely.
    half_extent = 1.1 * scale
    first = np.clip(np.floor((centre - half_extent + 1.0) / pixel).astype(int), 0, size)
    last = np.clip(np.ceil((centre + half_extent + 1.0) / pixel).astype(int), 0, size)
    (col0, row_low), (col1, row_high) = first, last
    row0, row1 = size - row_high, size - row_low  # rows run downwards while y points up
    fine = _pixel_centres(size * _SUPERSAMPLE)
    fine_x, fine_y = np.meshgrid(
        fine[col0 * _SUPERSAMPLE : col1 * _SUPERSAMPLE], -fine[row0 * _SUPERSAMPLE : row1 * _SUPERSAMPLE]
    )
    u_fine, v_fine = shape_coordinates(fine_x, fine_y)
    mask = _shape_mask(class_index, u_fine, v_fine, aspect)
    coverage = np.zeros((size, size, 1))
    coverage[row0:row1, col0:col1, 0] = mask.reshape(
        row1 - row0, _SUPERSAMPLE, col1 - col0, _SUPERSAMPLE
    ).mean(axis=(1, 3))

    u, _ = shape_coordinates(xs, ys)
    colour = _distinct_colour(rng, mean_background)
    shading = 1.0 + rng.uniform(-0.25, 0.25) * u.clip(-1, 1)  # a soft light from one side
    image = image * (1.0 - coverage) + (colour * shading[..., None]) * coverage

    image = image + rng.normal(0.0, rng.uniform(0.01, 0.05), size=image.shape)
    return np.clip(image, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- dataset
class SyntheticShapes(Dataset):
    """The teaching dataset: ``n`` images of ten shape classes, rendered on demand.

    Item ``i`` is ``(image, label)`` with ``image`` float32 (3, size, size) in [0, 1]
    and ``label = i % 10`` (so every split is class-balanced). The pixels depend
    only on ``(seed, i, size)``.
    """

    def __init__(self, n: int, *, size: int = 112, seed: int = 0, split: str = "custom") -> None:
        if n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}.")
        if size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}.")
        self.n, self.size, self.seed, self.split = int(n), int(size), int(seed), split
        self.classes: list[str] = list(CLASS_NAMES)

    def __len__(self) -> int:
        return self.n

    def label(self, index: int) -> int:
        return index % len(CLASS_NAMES)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} is out of range for {self.n} images.")
        index = index % self.n
        rng = np.random.default_rng([self.seed, index])
        image = render_shape_image(self.label(index), rng, self.size)
        return torch.from_numpy(image), self.label(index)

    def __repr__(self) -> str:
        return f"SyntheticShapes(split={self.split!r}, n={self.n}, size={self.size}, seed={self.seed})"


def synthetic_dataset(split: str, *, n: int | None = None, size: int = 112, seed: int | None = None) -> SyntheticShapes:
    """The teaching profile's dataset for ``split`` in ``{"train", "val", "test"}``.

    ``n`` defaults to :data:`DEFAULT_SPLIT_SIZES`; ``seed`` defaults to the split's
    entry of :data:`SPLIT_SEEDS` (the splits never share an image).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        n: how many images; ``None``: the split's default size.
        size: the images' side in pixels.
        seed: seed of the images; ``None``: the split's own.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}.")
    return SyntheticShapes(
        DEFAULT_SPLIT_SIZES[split] if n is None else n,
        size=size,
        seed=SPLIT_SEEDS[split] if seed is None else seed,
        split=split,
    )


def stack_dataset(dataset: Dataset, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items of ``dataset`` into an image batch (B, C, H, W) and a label vector (B,).

    Args:
        dataset: items ``(image, label)``.
        indices: which items; ``None``: all of them.
    """
    chosen = range(len(dataset)) if indices is None else indices  # type: ignore[arg-type]
    images, labels = zip(*(dataset[i] for i in chosen), strict=True)  # (image, label) pairs, transposed
    return torch.stack(list(images)), torch.as_tensor(labels, dtype=torch.long)


def _stack_range(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Items start..stop-1 of a dataset as numpy arrays (workers stay off torch's thread pool,
    which can deadlock in forked children)."""
    dataset, start, stop = job
    items = [dataset[i] for i in range(start, stop)]
    return np.stack([image.numpy() for image, _ in items]), np.array([label for _, label in items])


def stack_dataset_in_parallel(dataset: Dataset, *, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`stack_dataset` for a whole dataset, rendered ``chunk`` items at a time in forked
    workers over all CPU cores (the teaching set's images are drawn on the CPU).

    Args:
        dataset: items ``(image, label)``.
        chunk: items per worker task.
    """
    import multiprocessing

    size = len(dataset)  # type: ignore[arg-type]
    jobs = [(dataset, start, min(start + chunk, size)) for start in range(0, size, chunk)]
    with multiprocessing.Pool(min(len(jobs), multiprocessing.cpu_count())) as pool:
        parts = pool.map(_stack_range, jobs)
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = torch.from_numpy(np.concatenate([labels for _, labels in parts])).long()
    return images, labels


def as_uint8_if_exact(images: torch.Tensor) -> torch.Tensor:
    """``images`` as uint8 when that loses nothing (every value is k/255, as ``ToTensor`` makes from a
    decoded JPEG), else unchanged. ImageNette's train split as float32 at 224 px takes 5.7 GB; as uint8,
    1.4 GB, which leaves room on a 16 GB GPU. The learned-noise code turns batches back into the same floats."""
    quantised = (images * 255).round().clamp(0, 255).to(torch.uint8)
    return quantised if torch.equal(quantised.float().div(255), images) else images


@dataclass(frozen=True)
class _ImageCheck:
    batched: bool


def check_images(images: torch.Tensor, *, name: str = "images") -> _ImageCheck:
    """Validate the library's image convention: float (C, H, W) or (B, C, H, W) in [0, 1].

    Raises ``TypeError``/``ValueError`` that name the problem and the fix; returns
    whether the input was a batch.

    Args:
        images: the tensor to check.
        name: how the error message calls it.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(images).__name__}.")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be floating point in [0, 1], got dtype {images.dtype}; "
            "for 8-bit images use images.float() / 255."
        )
    if images.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (C, H, W) or (B, C, H, W), got {tuple(images.shape)}.")
    if images.numel():
        low, high = torch.aminmax(images)  # one pass; NaN fails both comparisons, an infinity one of them
        if not (bool(low >= 0) and bool(high <= 1)):
            check_finite(images, name=name)  # NaN or infinite: that message first
            raise ValueError(
                f"{name} must lie in [0, 1], got values in [{float(low):.3g}, {float(high):.3g}]; "
                "images are not normalised by the caller: the models normalise inside."
            )
    return _ImageCheck(batched=images.ndim == 4)


def check_finite(values: torch.Tensor, *, name: str) -> None:
    """Refuse a tensor with NaN or infinite values (noise, disguised images: anything not bound to [0, 1]).

    Args:
        values: the tensor to check.
        name: how the error message calls it.
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(values).__name__}.")
    if values.is_floating_point() and values.numel() and not torch.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; check what produced it (a division by zero, "
                         "a diverged optimisation) before passing it on.")


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the 256 levels of an 8-bit file (what saving as PNG does).

    Args:
        images: [0, 1] images of any shape.
    """
    check_images(images)
    return torch.round(images * 255.0) / 255.0


def resize_crop(images: torch.Tensor, scale: float = 8 / 7) -> torch.Tensor:
    """(B, C, H, W) images resized by ``scale`` (bilinear) and centre-cropped back to their width, clamped to
    [0, 1]: what an evaluation pipeline's "resize to 256, crop 224" does to an image already at 224.

    Args:
        images: [0, 1] images (B, C, H, W).
        scale: the resize factor (256 / 224 by default).
    """
    size = images.shape[-1]
    bigger = torch.nn.functional.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
    offset = (bigger.shape[-1] - size) // 2
    return bigger[..., offset : offset + size, offset : offset + size].clamp(0, 1)


#: Pillow modes of grey images with more than 8 bits, and the value each reads as white. Pillow's
#: ``convert("RGB")`` would saturate them (every value above 255 turns white), so they are scaled here.
_HIGH_BIT_DEPTH_WHITE: dict[str, float] = {
    "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,  # 16-bit grey
    "I": 65535.0,  # 32-bit integers: how Pillow may hold a 16-bit file; larger values are refused
    "F": 1.0,  # 32-bit floats, already in [0, 1]
}


def _size_pair(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``size`` as (height, width), or None; anything else is a clear error."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in pair):
        raise ValueError(f"size must be a positive int or a (height, width) pair of them, got {size!r}.")
    return int(pair[0]), int(pair[1])


def _background_colour(background: float | tuple[float, float, float] | None) -> np.ndarray | None:
    """``background`` as an RGB float array (3,) in [0, 1], or None."""
    if background is None:
        return None
    problem = ValueError(f"background must be a grey level in [0, 1] (1.0: white, 0.0: black) or an "
                         f"(r, g, b) triple in [0, 1], got {background!r}.")
    try:
        colour = np.broadcast_to(np.asarray(background, dtype=np.float32), (3,))
    except (TypeError, ValueError):
        raise problem from None
    if not ((colour >= 0) & (colour <= 1)).all():
        raise problem
    return colour


def _load_npy(path: Path, shape: tuple[int, int] | None) -> torch.Tensor:
    """A (3, H, W) float array saved with ``np.save`` (as :func:`save_image` writes it), read exactly."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npy file ({error}); was it truncated? "
                         "Write it again with save_image or np.save.") from error
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} is an .npz archive of several arrays, not one .npy array: "
                         "save the image alone with np.save or save_image.")
    if array.ndim == 3 and array.shape[0] != 3 and array.shape[2] == 3:
        raise ValueError(f"{path} holds an array of shape {array.shape}, channels last (H, W, 3), but .npy images "
                         "must be channels first (3, H, W): save np.transpose(a, (2, 0, 1)) instead.")
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"{path} holds an array of shape {array.shape}, but .npy images must have shape "
                         "(3, H, W) (one RGB image, channels first, as save_image writes them).")
    if array.dtype.kind != "f":
        raise ValueError(f"{path} holds {array.dtype} values, but .npy images must be floats in [0, 1]: "
                         "save a.astype(np.float32) / 255 for 8-bit values.")
    if shape is not None and array.shape[1:] != shape:
        raise ValueError(f"{path} is {array.shape[1]} x {array.shape[2]} pixels but size asks for "
                         f"{shape[0]} x {shape[1]}; .npy images are read exactly as saved, never resized: "
                         "resize the array yourself (e.g. torch.nn.functional.interpolate) or leave size out.")
    return torch.from_numpy(array.astype(np.float32))


_OPENING = threading.Lock()  # held while _open_picture's warning filter is in place


def _open_picture(path: Path) -> Image.Image:
    """Open and decode ``path`` with Pillow, the right way up (its EXIF orientation applied), refusing animations;
    Pillow's errors become ValueErrors that say what to do."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        # too large: refuse, don't just warn. Python's warning filters are global (catch_warnings is not safe in
        # threads): the folder command line's threads take turns here, for the header only, not the decoding
        with _OPENING, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as handle:
            frames, kind = getattr(handle, "n_frames", 1), handle.format
            if frames == 1 or kind == "MPO":  # MPO: a camera JPEG whose first frame is the photo itself
                handle.load()  # decode now, so that a truncated file fails here
                # some formats (ICO, ICNS) pick their size while decoding, outside the filter above: checked again
                if Image.MAX_IMAGE_PIXELS and handle.width * handle.height > Image.MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"Image size ({handle.width * handle.height} pixels) "
                                                       f"exceeds limit of {Image.MAX_IMAGE_PIXELS} pixels")
                ImageOps.exif_transpose(handle, in_place=True)  # a phone photo's Orientation tag, applied
                return handle
    except PermissionError:
        raise
    except UnidentifiedImageError as error:
        raise ValueError(f"{path} is not an image Pillow can read ({error}); give a PNG, JPEG, ... file "
                         "or a .npy array written by save_image.") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{path} has too many pixels to open safely ({error}). If you trust the file, raise "
                         "PIL.Image.MAX_IMAGE_PIXELS before loading it; otherwise shrink the image first.") from error
    except (OSError, SyntaxError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is damaged or truncated: Pillow cannot decode it ({error}). "
                         "Copy, download or export the image again.") from error
    raise ValueError(f"{path} is a {kind} with {frames} frames (an animation or several pages), not one picture: "
                     "export the frame you want as a PNG (e.g. with Pillow: picture.seek(k); picture.save(...)) "
                     "and give that file.")


def _missing_file_error(path: Path) -> OSError:
    """Why there is no readable file at ``path``: nothing there, a symbolic link loop, or a dangling link."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return OSError(errno.ELOOP, f"{path} is a symbolic link loop (it leads back to itself): point it at an "
                           "image file, or give the image's own path.")
    if os.path.islink(path):
        return FileNotFoundError(errno.ENOENT, f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                                 "exist: give the image's own path.")
    return FileNotFoundError(errno.ENOENT, f"No image file at {path}.")


def _rgb_and_alpha(picture: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels as float32 RGB (H, W, 3) and alpha (H, W) in [0, 1]; alpha is None without transparency."""
    if picture.mode in _HIGH_BIT_DEPTH_WHITE:
        raw = np.asarray(picture)
        white = _HIGH_BIT_DEPTH_WHITE[picture.mode]
        grey = raw.astype(np.float32) / white
        if not (np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= 1):
            raise ValueError(f"{path} is a grey image (Pillow mode {picture.mode}) with values in "
                             f"[{raw.min()}, {raw.max()}], outside 0 (black) to {white:g} (white): rescale it "
                             "to that range, or save it as a .npy float array in [0, 1].")
        key = picture.info.get("transparency")  # one grey value may be marked as fully transparent
        alpha = None if key is None else (raw != key).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), alpha
    if picture.has_transparency_data:  # an alpha channel (RGBA, LA, ...) or a transparent colour (P, RGB, L)
        rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0, None


def _resize(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of float RGB (H, W, 3) to ``shape`` (Pillow, channel by channel), clamped to [0, 1]."""
    from PIL import Image

    height, width = shape
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c])).resize((width, height), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)  # bicubic overshoots a little at sharp edges


def read_pixels(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    background: float | tuple[float, float, float] | None = None,
) -> np.ndarray:
    """An image file's pixels as :func:`load_image` reads them, channels last (H, W, 3), and as 8-bit levels
    where they are exact: ``uint8`` (a read-only array) for a picture with 8 bits (or fewer) per channel, no
    transparency data (an alpha channel, even a fully opaque one, or a transparent colour) and no resizing; else the
    float32 values in [0, 1] that :func:`load_image` gives (channels last).

    :func:`pixels_to_images` turns a batch of them into the float images of :func:`load_image`, bit for bit. Many
    threads can read at once: for an 8-bit file at its size the work is decoding (which releases Python's lock) and
    one array, no tensor operation (each of which takes the lock again); other files are converted and checked in
    floats as :func:`load_image` does. The folder command line reads this way. Arguments, conventions and errors as
    :func:`load_image`.

    Args:
        path: the image file.
        size: resize to ``size`` x ``size`` or to (H, W); ``None`` keeps the file's size.
        background: a grey level or an (r, g, b) colour to composite transparency onto; ``None`` refuses it.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file: give the path of an image inside it.")
    if not path.is_file():
        raise _missing_file_error(path)
    shape = _size_pair(size)
    colour = _background_colour(background)
    if path.suffix.lower() == ".npy":
        stored = _load_npy(path, shape)
        check_images(stored, name=str(path))
        return stored.numpy().transpose(1, 2, 0)
    picture = _open_picture(path)
    if (picture.mode not in _HIGH_BIT_DEPTH_WHITE and not picture.has_transparency_data
            and (shape is None or picture.size == (shape[1], shape[0]))):  # the file's 8-bit levels, as they are
        return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))
    rgb, alpha = _rgb_and_alpha(picture, path)
    if alpha is not None and alpha.min() < 1:
        if colour is None:
            raise ValueError(f"{path} has transparent pixels (an alpha channel or a transparent colour), and "
                             "dropping the alpha would show colours meant to be hidden: pass background=1.0 "
                             "(white), 0.0 (black) or an (r, g, b) triple to composite it onto that colour.")
        rgb = rgb * alpha[..., None] + colour * (1.0 - alpha[..., None])
    if shape is not None and rgb.shape[:2] != shape:
        rgb = _resize(rgb, shape)
    values = np.ascontiguousarray(rgb, dtype=np.float32)
    check_images(torch.from_numpy(values), name=str(path))
    return values


def pixels_to_images(pixels: Sequence[np.ndarray], device: str | torch.device | None = None) -> torch.Tensor:
    """Images read by :func:`read_pixels`, all of one size, as a float32 batch (B, 3, H, W) in [0, 1] on
    ``device`` (default: the CPU), equal bit for bit to stacking :func:`load_image` of each file.

    8-bit levels are stacked as they are, sent (on a GPU from page-locked memory, a quarter of the bytes of
    floats) and divided by 255 where they arrive, by a true division (dividing by a Python number multiplies by
    its reciprocal on a GPU, which can differ in the last bit). A batch with any float image is converted on the
    host first, and its values are checked (:func:`check_images`).

    Args:
        pixels: (H, W, 3) arrays, uint8 levels or float32 values in [0, 1], as :func:`read_pixels` gives them.
        device: where the batch goes.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(pixels, np.ndarray) or not all(isinstance(array, np.ndarray) for array in pixels):
        raise TypeError("pixels must be a list of numpy arrays, one (H, W, 3) array per image as read_pixels gives "
                        "them; for an array of several images, pass list(array).")
    if not pixels:
        raise ValueError("pixels is empty: give at least one image read by read_pixels.")
    shapes = {array.shape for array in pixels}
    if len(shapes) > 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"pixels must be (H, W, 3) arrays of one size, got shapes {sorted(shapes)}: read them with "
                         "read_pixels and the same size.")
    kinds = {array.dtype for array in pixels}
    if not kinds <= {np.dtype(np.uint8), np.dtype(np.float32)}:
        raise TypeError(f"pixels must be uint8 levels or float32 values as read_pixels gives them, got "
                        f"{sorted(str(kind) for kind in kinds)}.")
    if kinds == {np.dtype(np.uint8)}:
        levels = _stacked(pixels, torch.uint8, device).to(device, non_blocking=True)
        return levels.permute(0, 3, 1, 2).contiguous().float().div_(torch.tensor(255.0, device=device))
    values = [array if array.dtype == np.float32 else _levels_to_values(array) for array in pixels]
    stacked = _stacked(values, torch.float32, device)
    check_images(stacked, name="pixels")  # values in [0, 1] (read_pixels checked its own; these may come from elsewhere)
    return stacked.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()


def _stacked(arrays: Sequence[np.ndarray], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H, W, 3) arrays of ``dtype`` stacked into one host tensor, page-locked when it goes to a GPU (a copy from
    such memory runs about three times as fast: ``benchmarks/results/watermark_gpu_step.json``)."""
    stacked = torch.empty((len(arrays), *arrays[0].shape), dtype=dtype, pin_memory=device.type == "cuda")
    np.stack(arrays, out=stacked.numpy())
    return stacked


def _levels_to_values(levels: np.ndarray) -> np.ndarray:
    """8-bit levels as float32 in [0, 1], divided by 255 as :func:`pixels_to_images` does on any device."""
    return np.asarray(levels, dtype=np.float32) / np.float32(255.0)


def load_image(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    background: float | tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """Read an image file (PNG, JPEG, ...) as a float (3, H, W) tensor in [0, 1].

    * 8-bit files are divided by 255, 16-bit grey files (Pillow modes ``I;16``, ``I``) by 65535; float
      grey files (mode ``F``) must already lie in [0, 1]. Grey images are repeated over the 3 channels.
    * Transparency (RGBA, LA, a palette or colour marked transparent): with ``background=None`` an
      image with any pixel that is not fully opaque is refused with a ``ValueError`` (a fully opaque
      alpha channel is simply dropped). Give ``background``, a grey level in [0, 1] (1.0 white, 0.0
      black) or an (r, g, b) triple, to composite the image onto that colour instead.
    * With ``size``, the image is resized (bicubic, with Pillow) to ``size`` x ``size`` or (H, W); bicubic
      overshoots a little at sharp edges, and the result is clamped to [0, 1], as Pillow does for 8 bits.
    * Photos are turned the right way up (their EXIF Orientation tag applied, ``PIL.ImageOps.exif_transpose``).
      Animated or multi-page files (GIF, APNG, WebP, TIFF with several frames) are refused with a ``ValueError``;
      a camera's MPO JPEG is read as its first frame, the photo itself.
    * ``.npy`` files (any case of the suffix) must hold a float array (3, H, W), as :func:`save_image`
      writes it, and are read back losslessly; they are never resized, so a ``size`` that differs from
      the array's is an error.

    Unreadable, truncated or too large (decompression bomb) files give a ``ValueError`` that says why. Reading many
    files, :func:`read_pixels` and :func:`pixels_to_images` give the same images faster (in threads, and on a GPU).

    Args:
        path: the image file.
        size: resize to ``size`` x ``size`` or to (H, W); ``None`` keeps the file's size.
        background: a grey level or an (r, g, b) colour to composite transparency onto; ``None`` refuses it.
    """
    return pixels_to_images([read_pixels(path, size=size, background=background)])[0]


def save_image(image: torch.Tensor, path: str | os.PathLike, *, replace: bool = True) -> Path:
    """Save a (3, H, W) image in [0, 1]: ``.png`` as 8 bits (rounded, see :func:`quantize_8bit`),
    ``.npy`` losslessly as float32 (the suffix in any case). Returns the path.

    The file is written through :func:`~nullspace_utils.files.atomic_write`: if writing fails, an existing file at ``path`` is
    left as it was and no partial file remains. With ``replace=False`` an existing ``path`` is never replaced
    (``FileExistsError``, even when another process creates it during the write).

    Args:
        image: a [0, 1] image (3, H, W).
        path: a ``.png`` or ``.npy`` file.
        replace: replace an existing file.
    """
    from PIL import Image

    check_images(image, name="image")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be one RGB image of shape (3, H, W), got {tuple(image.shape)}; "
                         "save a batch one image at a time (images[i]).")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise ValueError(f"Unsupported file type {path.suffix!r}: use .png (8-bit) or .npy (lossless float).")
    with atomic_write(path, replace=replace) as temporary:
        if suffix == ".npy":
            with open(temporary, "wb") as handle:  # a file handle: np.save would add ".npy" to a file name
                np.save(handle, image.detach().cpu().float().numpy())
        else:
            array = (quantize_8bit(image) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            Image.fromarray(array).save(temporary, format="PNG")
    return path


# --------------------------------------------------------------------------- ImageNette (imagenet profile)
#: ImageNette's ten classes as WordNet ids, in torchvision's label order (sorted), with their
#: ImageNet-1k indices (checked against timm's ImageNet class list in the tests).
IMAGENETTE_WNIDS: tuple[tuple[str, int], ...] = (
    ("n01440764", 0),  # tench
    ("n02102040", 217),  # English springer
    ("n02979186", 482),  # cassette player
    ("n03000684", 491),  # chain saw
    ("n03028079", 497),  # church
    ("n03394916", 566),  # French horn
    ("n03417042", 569),  # garbage truck
    ("n03425413", 571),  # gas pump
    ("n03445777", 574),  # golf ball
    ("n03888257", 701),  # parachute
)
#: The archive the imagenet profile uses: the 320-pixel version (what torchvision calls size "320px").
IMAGENETTE_ARCHIVE = "imagenette2-320.tgz"


class DatasetUnavailableError(RuntimeError):
    """A dataset is not on disk and could not be downloaded."""


def data_dir() -> Path:
    """Where datasets are cached: ``$NULLSPACE_DATA``, else ``~/.cache/nullspace-vit``."""
    return Path(os.environ.get("NULLSPACE_DATA") or Path.home() / ".cache" / "nullspace-vit").expanduser()


def imagenette(split: str, *, root: str | os.PathLike | None = None, transform: Callable[[Any], Any] | None = None,
               download: bool = True) -> Dataset:
    """ImageNette (320 px) through torchvision's ``datasets.Imagenette``: items ``(transform(PIL image), label)``.

    ``label`` is 0..9 in :data:`IMAGENETTE_WNIDS` order. The archive is downloaded once into ``root``
    (default :func:`data_dir`) and its MD5 checked by torchvision. Offline, place ``imagenette2-320.tgz``
    (or its extracted folder ``imagenette2-320/``) in ``root`` by hand; otherwise
    :class:`DatasetUnavailableError` says exactly that.

    Args:
        split: ``"train"`` or ``"val"``.
        root: the folder of the archive; ``None``: :func:`data_dir`.
        transform: applied to each PIL image.
        download: download the archive when it is missing.
    """
    import urllib.error

    from torchvision.datasets import Imagenette

    root = Path(root) if root is not None else data_dir()
    if split not in ("train", "val"):
        raise ValueError(f"ImageNette has the splits 'train' and 'val', not {split!r}.")
    url, md5 = Imagenette._ARCHIVES["320px"]
    try:
        root.mkdir(parents=True, exist_ok=True)
        dataset = Imagenette(str(root), split=split, size="320px", download=download, transform=transform)
    except KeyError as error:  # torchvision meets a class folder that is not an ImageNette WordNet id
        raise DatasetUnavailableError(
            f"{root / 'imagenette2-320' / split} has a class folder {error} that is not one of the ten ImageNette "
            f"WordNet ids {[wnid for wnid, _ in IMAGENETTE_WNIDS]}. Re-extract {IMAGENETTE_ARCHIVE}."
        ) from error
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise DatasetUnavailableError(
            f"ImageNette is not in {root} and could not be downloaded ({type(error).__name__}: {error}). "
            f"Download {url} (MD5 {md5}) on a machine with network access and put the file {IMAGENETTE_ARCHIVE} "
            f"(or the folder imagenette2-320/ extracted from it) into {root}, or set NULLSPACE_DATA to the folder "
            "that holds it."
        ) from error
    if tuple(dataset.wnids) != tuple(wnid for wnid, _ in IMAGENETTE_WNIDS):
        raise DatasetUnavailableError(
            f"{root / 'imagenette2-320' / split} has the class folders {dataset.wnids}, expected the ten ImageNette "
            f"WordNet ids {[wnid for wnid, _ in IMAGENETTE_WNIDS]}. Re-extract {IMAGENETTE_ARCHIVE}."
        )
    return dataset


#: ImageNette's split sizes (imagenette2-320): a fake of :func:`write_fake_imagenette` with these holds as many images
IMAGENETTE_SIZES: dict[str, int] = {"train": 9_469, "val": 3_925}


def write_fake_imagenette(root: str | os.PathLike, per_class: int | None = None, *, seed: int = 0,
                          split_sizes: dict[str, int] | None = None, workers: int = 1) -> Path:
    """Write a stand-in for ImageNette in torchvision's layout, to test code paths offline (or to time a run at
    ImageNette's size: ``split_sizes=IMAGENETTE_SIZES``).

    ``root/imagenette2-320/{train,val}/<wnid>/*.JPEG``: noisy 320 x 240 images, class ``k`` a little brighter than
    class ``k - 1``, ``per_class`` per class and split (2 if neither is given), or ``split_sizes[split]`` per split,
    spread over the ten classes as evenly as they go. Each class of each split is drawn from its own seed (``seed``,
    the split, the class), so ``workers`` processes write the same images as one. :func:`imagenette` reads it like
    the real one; numbers computed on it mean nothing. Returns ``root``.

    Args:
        root: the folder to write into.
        per_class: images per class and split.
        seed: seed of the images.
        split_sizes: images per split, ``{"train": n, "val": m}``, at least ten each (every class has one); instead
            of ``per_class``.
        workers: processes that write classes in parallel.
    """
    from concurrent.futures import ProcessPoolExecutor

    if per_class is not None and split_sizes is not None:
        raise ValueError("give per_class or split_sizes, not both.")
    if split_sizes is None:
        per_class = 2 if per_class is None else per_class
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}.")
        split_sizes = {split: per_class * len(IMAGENETTE_WNIDS) for split in ("train", "val")}
    if sorted(split_sizes) != ["train", "val"] or any(size < len(IMAGENETTE_WNIDS) for size in split_sizes.values()):
        raise ValueError(f"split_sizes must give 'train' and 'val' at least {len(IMAGENETTE_WNIDS)} images each (one "
                         f"per class), got {split_sizes}.")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    root = Path(root)
    jobs = []
    for split_index, (split, size) in enumerate(sorted(split_sizes.items())):
        classes = len(IMAGENETTE_WNIDS)
        for label, (wnid, _) in enumerate(IMAGENETTE_WNIDS):
            count = size // classes + (label < size % classes)
            jobs.append((root / "imagenette2-320" / split / wnid, wnid, label, count, (seed, split_index, label)))
    if workers == 1:
        for job in jobs:
            _write_fake_class(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_fake_class, jobs))
    return root


def _write_fake_class(job: tuple[Path, str, int, int, tuple[int, int, int]]) -> None:
    """One class folder of :func:`write_fake_imagenette`: ``count`` noisy JPEGs of brightness ``20 * label``."""
    from PIL import Image

    folder, wnid, label, count, seeds = job
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seeds)
    for k in range(count):
        pixels = 20 * label + rng.integers(0, 30, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{wnid}_{k}.JPEG", quality=90)
