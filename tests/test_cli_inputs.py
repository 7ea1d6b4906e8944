"""`nullspace watermark`'s inputs (#32): photos the right way up, animations refused, the mark and repeated files
in a batch, and one-line errors for symbolic link loops, devices it cannot use and weights that are not finite."""

import copy
import os

import numpy as np
import PIL.Image
import pytest
import torch

from nullspace_utils import cli, data, exact


@pytest.fixture()
def files(tmp_path):
    """photos/ with three photos, and mark.png beside it."""
    (tmp_path / "photos").mkdir()
    for index, (image, _) in enumerate(data.synthetic_dataset("val", n=3)):
        data.save_image(image, tmp_path / "photos" / f"photo{index}.png")
    mark = torch.zeros(3, 112, 112)
    mark[:, 40:70, :] = 1.0
    data.save_image(mark, tmp_path / "mark.png")
    return tmp_path


def _watermark(*arguments):
    return cli.main(["watermark", *map(str, arguments), "--quiet"])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nullspace watermark: error: "), err
    return lines[0]


# ---------------------------------------------------------------- reading pictures
def _two_colour_photo() -> PIL.Image.Image:
    """32 wide, 16 high: red on the left half, blue on the right, as a camera stores it."""
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16, 0] = 255
    pixels[:, 16:, 2] = 255
    return PIL.Image.fromarray(pixels)


def test_a_phone_photo_is_read_the_right_way_up(tmp_path):
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to show it
    _two_colour_photo().save(tmp_path / "phone.jpg", quality=95, exif=exif)
    image = data.load_image(tmp_path / "phone.jpg")
    assert image.shape == (3, 32, 16)  # shown standing: 16 wide, 32 high
    assert image[0, :14].mean() > 0.9 and image[2, 18:].mean() > 0.9  # the left half (red) turned to the top


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_an_animation_is_refused(tmp_path, suffix):
    first = _two_colour_photo()
    second = first.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    path = tmp_path / f"animated{suffix}"
    try:
        first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    except (KeyError, OSError):
        pytest.skip(f"this Pillow cannot write animated {suffix}")
    with pytest.raises(ValueError, match="2 frames .*export the frame you want"):
        data.load_image(path)


def test_a_batch_reports_an_animation_and_goes_on(files, capsys, quick_solver):
    first = _two_colour_photo()
    first.save(files / "photos" / "moving.gif", save_all=True, append_images=[first.rotate(180)], loop=0)
    assert _watermark(files / "photos", files / "mark.png", "-o", files / "out") == 1
    captured = capsys.readouterr()
    assert "moving.gif" in captured.err and "frames" in captured.err and "Traceback" not in captured.err
    assert sorted(path.name for path in (files / "out").iterdir()) == ["photo0.png", "photo1.png", "photo2.png"]


def test_the_mark_in_the_input_folder_is_skipped_with_a_note(files, capsys, quick_solver):
    os.replace(files / "mark.png", files / "photos" / "logo.png")
    assert _watermark(files / "photos", files / "photos" / "logo.png", "-o", files / "out") == 0
    captured = capsys.readouterr()
    assert "logo.png is the mark: skipped" in captured.err
    assert sorted(path.name for path in (files / "out").iterdir()) == ["photo0.png", "photo1.png", "photo2.png"]
    assert "summary: 3 done" in captured.out


def test_a_file_given_twice_counts_once(files, capsys, quick_solver):
    photo = files / "photos" / "photo0.png"
    os.symlink(photo, files / "again.png")  # the same file under another name
    assert _watermark(photo, photo, files / "photos", files / "again.png", files / "mark.png", "-o",
                      files / "out") == 0
    captured = capsys.readouterr()
    assert captured.err.count("again: watermarked once") == 3
    assert "wrote 3 of 3 images" in captured.out and "summary: 3 done, 0 skipped" in captured.out


# ---------------------------------------------------------------- symbolic link loops
@pytest.fixture()
def loop(files):
    os.symlink("loop.png", files / "loop.png")
    return files / "loop.png"


def test_a_loop_as_image_or_mark_is_one_line(files, loop, capsys):
    photo = files / "photos" / "photo0.png"
    for image, mark in [(loop, files / "mark.png"), (photo, loop)]:
        assert _watermark(image, mark, "-o", files / "out.png") == 2
        assert "symbolic link loop" in _one_error_line(capsys)
    assert not (files / "out.png").exists()


def test_a_loop_as_output_is_kept(files, loop, capsys):
    assert _watermark(files / "photos" / "photo0.png", files / "mark.png", "-o", loop) == 2
    assert "leads nowhere" in _one_error_line(capsys)
    assert os.readlink(loop) == "loop.png"
    os.symlink("loop-folder", files / "loop-folder")
    assert _watermark(files / "photos", files / "mark.png", "-o", files / "loop-folder") == 2
    assert "leads nowhere" in _one_error_line(capsys)


def test_a_loop_in_a_batch_is_reported_and_the_batch_goes_on(files, capsys, quick_solver):
    os.symlink("stuck.png", files / "photos" / "stuck.png")  # inside the folder
    os.symlink("folder", files / "folder")  # given as a folder
    assert _watermark(files / "photos", files / "folder", files / "mark.png", "-o", files / "out") == 1
    captured = capsys.readouterr()
    failures = captured.err.strip().splitlines()
    assert len(failures) == 2 and all("symbolic link loop" in line for line in failures), captured.err
    assert sorted(path.name for path in (files / "out").iterdir()) == ["photo0.png", "photo1.png", "photo2.png"]


# ---------------------------------------------------------------- devices and weights
@pytest.mark.parametrize("device, problem", [("mps", "MPS is not available"), ("meta", "hold no values"),
                                             ("xla", "cannot run the watermark solver")])
def test_a_device_it_cannot_use_is_one_line(files, capsys, device, problem):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert _watermark(files / "photos" / "photo0.png", files / "mark.png", "-o", files / "out.png",
                      "--device", device) == 2
    assert problem in _one_error_line(capsys)


@pytest.mark.parametrize("where, problem", [("patch", "no nullspace"), ("head", "answers NaN")])
def test_weights_that_are_not_finite_are_one_line(files, capsys, monkeypatch, vit_s, where, problem):
    damaged = copy.deepcopy(vit_s)
    with torch.no_grad():
        layer = exact.patch_embedding_layer(damaged) if where == "patch" else damaged.net.head
        layer.weight[0].fill_(float("nan"))
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: damaged)
    assert _watermark(files / "photos" / "photo0.png", files / "mark.png", "-o", files / "out.png") == 2
    line = _one_error_line(capsys)
    assert problem in line and "NaN or infinit" in line and ("weights" in line or "retrain" in line)
    assert _watermark(files / "photos", files / "mark.png", "-o", files / "out") == 2
    assert problem in _one_error_line(capsys)
    assert not (files / "out.png").exists() and not (files / "out").exists()


def test_a_failed_decomposition_is_one_line(files, capsys, monkeypatch):
    def diverging(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    monkeypatch.setattr(cli.watermark, "embed", diverging)
    assert _watermark(files / "photos" / "photo0.png", files / "mark.png", "-o", files / "out.png") == 2
    assert "NaN or infinity" in _one_error_line(capsys)


def test_a_folders_pictures_are_named_by_their_suffix(tmp_path):
    """A folder's pictures are found by their suffix as Path.suffix reads it (also a name of dots, "..png"), any
    case, in name order; other files and folders are left alone, a broken link with a picture's name is kept (to be
    reported), and the mark is skipped."""
    for name in ("b.PNG", "a.jpg", "..png", "notes.txt", "archive.png.zip"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    os.symlink("nowhere.png", tmp_path / "broken.png")
    (tmp_path / "mark.png").write_bytes(b"m")
    found = cli._batch_sources([str(tmp_path)], tmp_path / "mark.png", lambda message: None)
    assert [path.name for path in found] == ["..png", "a.jpg", "b.PNG", "broken.png"]


def test_file_identities_match_resolve_and_stat(tmp_path):
    """cli._identity resolves a folder once for its files and stats each file once; it must answer as
    os.path.realpath and os.stat do for plain files, missing ones, links (to files, nowhere, loops, through a
    linked folder), hard links and '..'."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "photo.png").write_bytes(b"x")
    os.link(real / "photo.png", real / "hard.png")
    os.symlink(real / "photo.png", real / "soft.png")
    os.symlink("nowhere.png", real / "dangling.png")
    os.symlink("loop.png", real / "loop.png")
    os.symlink(real, tmp_path / "linked")
    paths = [real / "photo.png", real / "hard.png", real / "soft.png", real / "dangling.png", real / "loop.png",
             real / "missing.png", tmp_path / "linked" / "photo.png", tmp_path / "linked" / "missing.png",
             real / "..", tmp_path / "linked" / ".." / "real" / "photo.png"]
    folders: dict[str, str] = {}
    for path in paths:
        try:
            status = os.stat(path)
            inode = (status.st_dev, status.st_ino)
        except OSError:
            inode = None
        assert cli._identity(path, folders) == (os.path.realpath(path), inode), path
    old_cwd = os.getcwd()
    try:
        os.chdir(real)
        assert cli._identity("photo.png", {}) == (os.path.realpath("photo.png"), cli._identity(real / "photo.png", {})[1])
    finally:
        os.chdir(old_cwd)
    # the same file under three names is one file; a missing name is no file
    inputs = cli._file_identities([real / "photo.png"])
    assert all(cli._is_one_of(path, inputs) for path in (real / "hard.png", real / "soft.png",
                                                         tmp_path / "linked" / "photo.png"))
    assert not cli._is_one_of(real / "missing.png", inputs)
