import subprocess
import sys

import numpy as np
import pytest
import torch

from nullspace_utils import cli, data, models


@pytest.fixture()
def files(tmp_path):
    image = data.synthetic_dataset("val", n=1)[0][0]
    data.save_image(image, tmp_path / "image.png")
    mark = torch.zeros(3, 56, 56)
    mark[:, 20:36, :] = 1.0  # a white bar, at another size than the image
    data.save_image(mark, tmp_path / "mark.png")
    return tmp_path


def test_watermark_end_to_end(files, capsys):
    out = files / "out.png"
    assert cli.main(["watermark", str(files / "image.png"), str(files / "mark.png"), "-o", str(out),
                     "--model", "zoo-vit-s"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "embedding residual" in printed
    watermarked = data.load_image(out)
    original = data.load_image(files / "image.png")
    assert watermarked.shape == (3, 112, 112)
    model = models.load_model("zoo-vit-s")
    with torch.no_grad():
        assert model(watermarked[None]).argmax() == model(original[None]).argmax()
    assert not torch.equal(watermarked, original)


def test_lossless_npy_output(files):
    out = files / "out.npy"
    assert cli.main(["watermark", str(files / "image.png"), str(files / "mark.png"), "-o", str(out)]) == 0
    assert np.load(out).dtype == np.float32


def test_clear_errors(files, capsys):
    assert cli.main(["watermark", str(files / "missing.png"), str(files / "mark.png"), "-o", "x.png"]) == 2
    assert "No image file" in capsys.readouterr().err
    (files / "bad.png").write_bytes(b"not an image")
    assert cli.main(["watermark", str(files / "bad.png"), str(files / "mark.png"), "-o", "x.png"]) == 2
    assert "Pillow" in capsys.readouterr().err
    assert cli.main(["watermark", str(files / "image.png"), str(files / "mark.png"), "-o", "x.png",
                     "--model", "zoo-resnet"]) == 2
    assert "approximate" in capsys.readouterr().err


def test_installed_console_script(files):
    result = subprocess.run([sys.executable, "-m", "nullspace_utils.cli", "info", "--model", "zoo-vit-b"],
                            capture_output=True, text=True, check=True)
    assert "nullspace dimension 576" in result.stdout


def test_image_io_round_trip(tmp_path):
    image = torch.rand(3, 8, 8)
    data.save_image(image, tmp_path / "a.npy")
    assert torch.equal(data.load_image(tmp_path / "a.npy"), image)
    data.save_image(image, tmp_path / "a.png")
    assert (data.load_image(tmp_path / "a.png") - image).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match=".png"):
        data.save_image(image, tmp_path / "a.jpg")
