from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nullspace_utils import data, metrics


def test_same_arguments_give_identical_images():
    a = data.synthetic_dataset("val", n=5)
    b = data.synthetic_dataset("val", n=5)
    for i in range(5):
        assert torch.equal(a[i][0], b[i][0])
        assert a[i][1] == b[i][1] == i % 10


def test_image_does_not_depend_on_split_size():
    assert torch.equal(data.synthetic_dataset("train", n=3)[2][0], data.synthetic_dataset("train", n=100)[2][0])


def test_splits_are_disjoint():
    train = data.synthetic_dataset("train", n=10)
    val = data.synthetic_dataset("val", n=10)
    assert not any(torch.equal(train[i][0], val[i][0]) for i in range(10))
    assert len(set(data.SPLIT_SEEDS.values())) == len(data.SPLIT_SEEDS)


def test_shapes_dtype_range_and_balance():
    ds = data.synthetic_dataset("val", n=20, size=64)
    images, labels = data.stack_dataset(ds)
    assert images.shape == (20, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.bincount(labels, minlength=10).tolist() == [2] * 10
    assert ds.classes == list(data.CLASS_NAMES) and len(ds) == 20


def test_default_sizes_and_repr():
    assert len(data.synthetic_dataset("train")) == 20_000
    assert len(data.synthetic_dataset("val")) == 2_000
    assert "val" in repr(data.synthetic_dataset("val", n=1))


def test_images_are_not_trivial():
    images, _ = data.stack_dataset(data.synthetic_dataset("val", n=10))
    # textured: every image uses a wide range of values and differs from the others
    assert all(float(img.std()) > 0.05 for img in images)
    assert float((images[0] - images[1]).abs().mean()) > 0.05


@pytest.mark.parametrize("kwargs,match", [({"split": "nope"}, "split"), ({"split": "val", "n": 0}, "positive")])
def test_bad_dataset_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.synthetic_dataset(**kwargs)


def test_index_errors_and_class_index():
    ds = data.synthetic_dataset("val", n=3)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="class_index"):
        data.render_shape_image(10, np.random.default_rng(0))


def test_check_images_messages():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.check_images(torch.full((3, 4, 4), 2.0))
    with pytest.raises(TypeError, match="255"):
        data.check_images(torch.zeros((3, 4, 4), dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        data.check_images(torch.zeros(4, 4))
    assert data.check_images(torch.zeros(2, 3, 4, 4)).batched
    # one pass (torch.aminmax) decides; the message still names what is wrong, NaN and infinities first
    edges = torch.zeros(3, 4, 4)
    edges[0, 0, 0], edges[2, 3, 3] = -0.25, 1.5
    with pytest.raises(ValueError, match=r"values in \[-0.25, 1.5\]"):
        data.check_images(edges)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="NaN or infinite"):
            data.check_images(torch.zeros(3, 4, 4).index_fill_(1, torch.tensor([2]), bad))
    assert not data.check_images(torch.ones(3, 4, 4, dtype=torch.bfloat16)).batched  # 1 and 0 are inside
    assert not data.check_images(torch.empty(3, 0, 4)).batched  # nothing to check


def test_psnr_and_quantize():
    x = torch.full((3, 4, 4), 0.5)
    assert metrics.psnr(x, x) == float("inf")
    assert metrics.psnr(x, x + 0.1) == pytest.approx(20.0)
    q = data.quantize_8bit(torch.tensor([[[0.0, 0.5, 1.0, 0.001]]]))
    assert torch.allclose(q * 255, torch.round(q * 255))
    assert (q - torch.tensor([[[0.0, 0.5, 1.0, 0.001]]])).abs().max() <= 0.5 / 255 + 1e-7


# --------------------------------------------------------------------------- load_image / save_image

def _image(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "mode,values,name",
    [
        ("I;16", np.full((6, 8), 32768, np.uint16), "grey16.png"),
        ("I", np.full((6, 8), 32768, np.int32), "grey32.tif"),
        ("F", np.full((6, 8), 32768 / 65535, np.float32), "float.tif"),
    ],
)
def test_load_high_bit_depth_grey_is_scaled_not_saturated(tmp_path, mode, values, name):
    values[0, 0], values[0, 1] = 0, (1 if mode == "F" else 65535)  # black and white pixels
    Image.fromarray(values).save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    image = data.load_image(tmp_path / name)
    assert image.shape == (3, 6, 8)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey on all 3 channels
    assert image[0, 0, 0] == 0 and image[0, 0, 1] == 1
    assert image[0, 3, 3].item() == pytest.approx(32768 / 65535, abs=1e-6)  # was 1.0 (saturated)
    resized = data.load_image(tmp_path / name, size=(3, 4))
    assert resized.shape == (3, 3, 4) and resized.min() >= 0 and resized.max() <= 1
    assert resized[:, 2, 2].sub(32768 / 65535).abs().max() < 1e-3


def test_load_float_and_32_bit_images_outside_the_range_are_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 2.0, np.float32)).save(tmp_path / "bright.tif")
    with pytest.raises(ValueError, match="rescale"):
        data.load_image(tmp_path / "bright.tif")
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(ValueError, match="65535"):
        data.load_image(tmp_path / "big.tif")


def test_transparency_is_refused_or_composited_on_the_background(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255  # opaque red ...
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert torch.equal(data.load_image(tmp_path / "opaque.png")[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    rgba[0, 0, 3] = 0  # ... with one fully transparent pixel
    Image.fromarray(rgba).save(tmp_path / "hole.png")
    with pytest.raises(ValueError, match="transparent.*background="):
        data.load_image(tmp_path / "hole.png")
    on_white = data.load_image(tmp_path / "hole.png", background=1.0)
    assert torch.equal(on_white[:, 0, 0], torch.ones(3)) and torch.equal(on_white[:, 1, 1], torch.tensor([1.0, 0, 0]))
    on_blue = data.load_image(tmp_path / "hole.png", background=(0.0, 0.0, 1.0), size=8)
    assert on_blue.shape == (3, 8, 8) and on_blue[2, 0, 0] > 0.5 and on_blue[2, -1, -1] == 0
    half = rgba.copy()
    half[..., 3] = 102  # 40 % opaque red on black: 0.4
    Image.fromarray(half).save(tmp_path / "half.png")
    assert data.load_image(tmp_path / "half.png", background=0.0)[:, 2, 2].tolist() == pytest.approx([0.4, 0, 0])
    Image.fromarray(rgba[..., [0, 3]][..., :2]).convert("LA").save(tmp_path / "la.png")
    palette = Image.new("P", (4, 4), 0)
    palette.save(tmp_path / "palette.png", transparency=0)
    for name in ("la.png", "palette.png"):
        with pytest.raises(ValueError, match="transparent"):
            data.load_image(tmp_path / name)
    with pytest.raises(ValueError, match="background must be"):
        data.load_image(tmp_path / "hole.png", background="white")
    with pytest.raises(ValueError, match="background must be"):
        data.load_image(tmp_path / "hole.png", background=(0.0, 2.0, 0.0))


def test_a_damaged_but_complete_png_is_reported_not_fatal(tmp_path):
    """One flipped byte inside a whole PNG's image data: a ValueError that says the file is damaged (a decoder that
    crashes the process on it, as torchvision 0.29's decode_png does, must not be used for files users give)."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    raw = bytearray((tmp_path / "a.png").read_bytes())
    raw[raw.index(b"IDAT") + 40] ^= 0xFF
    (tmp_path / "b.png").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged or truncated"):
        data.load_image(tmp_path / "b.png")


def test_npy_must_be_channels_first_and_is_never_resized(tmp_path):
    image = _image()
    np.save(tmp_path / "chw.npy", image.numpy())
    assert torch.equal(data.load_image(tmp_path / "chw.npy", size=16), image)  # the size it has: fine
    with pytest.raises(ValueError, match=r"16 x 16 pixels but size asks for 8 x 8.*resize"):
        data.load_image(tmp_path / "chw.npy", size=8)
    np.save(tmp_path / "hwc.npy", image.permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*np\.transpose\(a, \(2, 0, 1\)\)"):
        data.load_image(tmp_path / "hwc.npy")
    np.save(tmp_path / "grey.npy", image[0].numpy())
    with pytest.raises(ValueError, match=r"shape \(16, 16\).*\(3, H, W\)"):
        data.load_image(tmp_path / "grey.npy")
    np.save(tmp_path / "bytes.npy", (image * 255).byte().numpy())
    with pytest.raises(ValueError, match="uint8.*255"):
        data.load_image(tmp_path / "bytes.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "chw.npy").read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        data.load_image(tmp_path / "cut.npy")


@pytest.mark.parametrize("suffix", [".NPY", ".Npy", ".PNG", ".Png"])
def test_suffixes_are_case_insensitive(tmp_path, suffix):
    image = _image()
    path = data.save_image(image, tmp_path / f"image{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"image{suffix}"]  # no extra ".npy" added, no leftovers
    loaded = data.load_image(path)
    if suffix.lower() == ".npy":
        assert torch.equal(loaded, image) and np.load(path).dtype == np.float32
    else:
        assert Image.open(path).format == "PNG" and Image.open(path).mode == "RGB"
        assert (loaded - image).abs().max() <= 0.5 / 255 + 1e-6


def _pictures(folder: Path) -> dict[str, Path]:
    """One small file per kind of picture load_image reads: 8-bit colour, grey, palette, 1-bit, CMYK JPEG, 16-bit
    grey, opaque and translucent RGBA, and a float .npy."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (12, 10, 1), dtype=np.uint8)
    pictures = {"rgb.png": Image.fromarray(rgb), "rgb.jpg": Image.fromarray(rgb), "grey.png": Image.fromarray(rgb[..., 0]),
                "palette.png": Image.fromarray(rgb).convert("P"), "bits.png": Image.fromarray(rgb).convert("1"),
                "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
                "grey16.png": Image.fromarray(rng.integers(0, 65536, (12, 10)).astype(np.uint16)),
                "opaque.png": Image.fromarray(np.concatenate([rgb, np.full_like(alpha, 255)], axis=2)),
                "rgba.png": Image.fromarray(np.concatenate([rgb, alpha], axis=2))}
    for name, picture in pictures.items():
        picture.save(folder / name)
    np.save(folder / "values.npy", rng.random((3, 12, 10), dtype=np.float32))
    return {path.name: path for path in sorted(folder.iterdir())}


def test_read_pixels_gives_8_bit_levels_exactly_where_load_image_divides_them_by_255(tmp_path):
    """8-bit pictures at their size come as uint8 levels; anything load_image converts (resized, composited, more
    than 8 bits, .npy) as load_image's float32 values, channels last. pixels_to_images of either, alone or in a
    mixed batch, is load_image bit for bit; for 8-bit files that is Pillow's RGB levels divided by 255."""
    paths = _pictures(tmp_path)
    for name, path in paths.items():
        background = 0.5 if name == "rgba.png" else None
        for size in (None, (12, 10), 8):
            if name.endswith(".npy") and size == 8:
                continue
            pixels = data.read_pixels(path, size=size, background=background)
            image = data.load_image(path, size=size, background=background)
            exact = size != 8 and name not in ("grey16.png", "opaque.png", "rgba.png", "values.npy")
            assert pixels.dtype == (np.uint8 if exact else np.float32), (name, size)
            assert pixels.shape == (*image.shape[1:], 3) and image.dtype == torch.float32 and image.is_contiguous()
            assert torch.equal(data.pixels_to_images([pixels])[0], image), (name, size)
            if exact:
                reference = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
                assert torch.equal(image, torch.from_numpy(reference).permute(2, 0, 1))
    batch = [data.read_pixels(paths[name], background=0.5) for name in ("rgb.png", "grey16.png", "rgba.png", "grey.png")]
    assert torch.equal(data.pixels_to_images(batch),
                       torch.stack([data.load_image(paths[name], background=0.5)
                                    for name in ("rgb.png", "grey16.png", "rgba.png", "grey.png")]))
    levels = [data.read_pixels(paths[name]) for name in ("rgb.png", "grey.png", "palette.png")]
    assert {array.dtype for array in levels} == {np.dtype(np.uint8)}
    assert torch.equal(data.pixels_to_images(levels), torch.stack([data.load_image(paths[name])
                                                                   for name in ("rgb.png", "grey.png", "palette.png")]))


class _TensorCalls(torch.overrides.TorchFunctionMode):
    """The names of the torch functions called while it is on."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_reading_an_8_bit_file_runs_no_tensor_operation(tmp_path):
    """The folder command line reads in many threads; each tensor operation there takes Python's lock back, so
    read_pixels does none for an 8-bit picture at its size (the batch becomes a tensor once, in pixels_to_images).
    A file it must convert still is checked (resized values in [0, 1])."""
    path = _pictures(tmp_path)["rgb.png"]
    with _TensorCalls() as calls:
        data.read_pixels(path, size=(12, 10))
    assert calls.names == []
    with _TensorCalls() as calls:
        data.read_pixels(path, size=8)
    assert "aminmax" in calls.names


def test_pixels_to_images_refuses_what_read_pixels_does_not_give(tmp_path):
    levels = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="pixels is empty"):
        data.pixels_to_images([])
    with pytest.raises(ValueError, match=r"one size.*\(4, 4, 3\), \(4, 5, 3\)"):
        data.pixels_to_images([levels, np.zeros((4, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        data.pixels_to_images([np.zeros((3, 4, 4), np.uint8)])
    with pytest.raises(TypeError, match="uint8 levels or float32.*float64"):
        data.pixels_to_images([np.zeros((4, 4, 3), np.float64)])
    with pytest.raises(TypeError, match=r"list of numpy arrays.*list\(array\)"):
        data.pixels_to_images(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"pixels must lie in \[0, 1\]"):
        data.pixels_to_images([levels, np.full((4, 4, 3), 7.0, np.float32)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_pixels_to_images_on_a_gpu_equals_the_cpu_bit_for_bit(tmp_path):
    """On a GPU the 8-bit levels are divided by 255 there; a true division, as numpy's on the host (a Python
    divisor would get CUDA's multiplication by the reciprocal, which differs in the last bit for some levels)."""
    levels = [np.arange(256 * 3, dtype=np.uint16).reshape(16, 16, 3).astype(np.uint8) for _ in range(2)]
    on_gpu = data.pixels_to_images(levels, "cuda")
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), data.pixels_to_images(levels))


def test_save_image_refuses_bad_input_before_writing(tmp_path):
    with pytest.raises(ValueError, match="Unsupported file type '.jpg'"):
        data.save_image(_image(), tmp_path / "a.jpg")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        data.save_image(_image()[None], tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_and_folder_give_clear_errors(tmp_path):
    path = data.save_image(_image(), tmp_path / "whole.png")
    content = path.read_bytes()
    (tmp_path / "half.png").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"half\.png is damaged or truncated.*again"):
        data.load_image(tmp_path / "half.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        data.load_image(tmp_path / "text.png")
    with pytest.raises(IsADirectoryError, match="folder"):
        data.load_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="No image file"):
        data.load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("limit", [200, 100])  # 256 pixels: Pillow warns above the limit, raises above twice it
def test_decompression_bomb_gives_a_clear_error(tmp_path, monkeypatch, limit):
    path = data.save_image(_image(), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ValueError, match=r"big\.png has too many pixels.*MAX_IMAGE_PIXELS"):
        data.load_image(path)


def test_a_picture_whose_size_crosses_the_limit_while_decoding_is_refused(tmp_path, monkeypatch):
    """Some formats (ICO, ICNS) settle their size while decoding, after the open that checks it: the size is
    checked again once decoded. Here the limit is lowered during decoding, which a PNG's size then exceeds."""
    from PIL import PngImagePlugin

    path = data.save_image(_image(), tmp_path / "grows.png")  # 256 pixels
    decode = PngImagePlugin.PngImageFile.load

    def load_under_a_lower_limit(picture):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        return decode(picture)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load_under_a_lower_limit)
    with pytest.raises(ValueError, match=r"grows\.png has too many pixels"):
        data.load_image(path)


def test_reading_in_many_threads_leaves_the_warning_filters_alone(tmp_path):
    """The folder command line reads in threads; the check that refuses decompression bombs sets a warning filter
    for the time of opening a file. Python's filters are global: unguarded, threads restoring each other's copies
    left an extra filter behind in every try (8 threads, 800 reads)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    paths = [data.save_image(_image(seed=index), tmp_path / f"{index}.png") for index in range(16)]
    before = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(data.read_pixels, paths * 50))
    assert warnings.filters == before


@pytest.mark.parametrize("suffix,writer", [(".png", "PIL.Image.Image.save"), (".npy", "numpy.save")])
def test_failed_save_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch, suffix, writer):
    path = data.save_image(_image(seed=1), tmp_path / f"image{suffix}")
    before = path.read_bytes()

    def half_write(*args, **kwargs):
        target = args[0] if writer == "numpy.save" else args[1]  # np.save(file, array), Image.save(self, file)
        if hasattr(target, "write"):
            target.write(b"half an image")
        else:
            with open(target, "wb") as handle:
                handle.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(writer, half_write)
    with pytest.raises(OSError, match="disk full"):
        data.save_image(_image(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_atomic_write_gives_the_permissions_a_plain_write_would(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = data.save_image(torch.rand(3, 8, 8), tmp_path / "new.png")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
        path.chmod(0o640)
        data.save_image(torch.rand(3, 8, 8), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # a replaced file keeps its mode
        path.chmod(0o4755)
        data.save_image(torch.rand(3, 8, 8), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o755  # its permissions, not its setuid bit
    finally:
        os.umask(umask)


def test_atomic_write_leaves_the_umask_to_the_system(tmp_path, monkeypatch):
    """The temporary file is created with mode 0666, which the system reduces by the umask, as for a plain open():
    the umask is never read (reading it portably means setting it for a moment, a window in which another thread
    would create files with 0). Every os.umask call is recorded (there must be none), and 32 files written by
    eight threads at once each get 0666 less the umask; a missing folder and a folder given as the file are
    named."""
    import os
    import stat
    from concurrent.futures import ThreadPoolExecutor

    from nullspace_utils import files

    real_umask, calls = os.umask, []

    def recorded_umask(mask: int) -> int:
        calls.append(mask)
        return real_umask(mask)

    previous = real_umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", recorded_umask)

        def write(index: int) -> Path:
            with files.atomic_write(tmp_path / f"{index}.txt", replace=False) as temporary:
                temporary.write_text(str(index))
            return tmp_path / f"{index}.txt"

        with ThreadPoolExecutor(8) as pool:
            written = list(pool.map(write, range(32)))
    finally:
        real_umask(previous)
    assert calls == []
    assert {stat.S_IMODE(path.stat().st_mode) for path in written} == {0o640}
    assert [path.read_text() for path in written] == [str(index) for index in range(32)]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{index}.txt" for index in range(32))
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        with files.atomic_write(tmp_path / "missing" / "a.txt"):
            pass
    with pytest.raises(NotADirectoryError, match="0.txt is a file, not a folder"):  # a file where a folder must be
        with files.atomic_write(tmp_path / "0.txt" / "a.txt"):
            pass
    with pytest.raises(IsADirectoryError, match="is a folder"):
        with files.atomic_write(tmp_path):
            pass


def test_parallel_stacking_gives_what_stacking_gives():
    dataset = data.synthetic_dataset("val", n=7)
    images, labels = data.stack_dataset_in_parallel(dataset, chunk=3)  # three chunks, the last short
    reference_images, reference_labels = data.stack_dataset(dataset)
    assert torch.equal(images, reference_images) and torch.equal(labels, reference_labels)


def test_write_bytes_atomically_keeps_atomic_writes_guarantees(tmp_path, monkeypatch):
    """files.write_bytes_atomically, the folder command line's writer: the bytes whole (also when the system writes
    fewer than asked at a time), a replaced file's mode kept, create-or-fail with replace=False (even over a link
    leading nowhere), atomic_write's errors for a folder and a missing folder, and nothing left when a write fails."""
    import os
    import stat

    from nullspace_utils import files

    target = tmp_path / "out.png"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda descriptor, data: real_write(descriptor, bytes(data)[:3]))  # 3 at a time
    files.write_bytes_atomically(target, b"0123456789", replace=False)
    monkeypatch.setattr(os, "write", real_write)
    assert target.read_bytes() == b"0123456789"
    target.chmod(0o640)
    files.write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    with pytest.raises(FileExistsError, match="exists"):
        files.write_bytes_atomically(target, b"other", replace=False)
    os.symlink("nowhere", tmp_path / "dangling.png")
    with pytest.raises(FileExistsError):
        files.write_bytes_atomically(tmp_path / "dangling.png", b"other", replace=False)
    assert os.readlink(tmp_path / "dangling.png") == "nowhere" and target.read_bytes() == b"new"
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "folder", tmp_path / "to_folder")
    for replace in (True, False):
        for folder in (tmp_path, tmp_path / "to_folder"):  # a folder, or a link to one, is never replaced
            with pytest.raises(IsADirectoryError, match="is a folder"):
                files.write_bytes_atomically(folder, b"x", replace=replace)
    assert (tmp_path / "to_folder").is_symlink()
    os.unlink(tmp_path / "to_folder"), (tmp_path / "folder").rmdir()
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        files.write_bytes_atomically(tmp_path / "missing" / "a.png", b"x")

    def full_disk(descriptor, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.write_bytes_atomically(target, b"half")
    monkeypatch.setattr(os, "write", real_write)
    assert target.read_bytes() == b"new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dangling.png", "out.png"]  # no .part left
