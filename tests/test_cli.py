import contextlib
import errno
import os
import subprocess
import sys

import numpy as np
import PIL.Image
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


def test_watermark_end_to_end(vit_s, files, capsys):
    out = files / "out.png"
    assert cli.main(["watermark", str(files / "image.png"), str(files / "mark.png"), "-o", str(out),
                     "--model", "zoo-vit-s"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "embedding residual" in printed
    watermarked = data.load_image(out)
    original = data.load_image(files / "image.png")
    assert watermarked.shape == (3, 112, 112)
    with torch.no_grad():
        assert vit_s(watermarked[None]).argmax() == vit_s(original[None]).argmax()
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


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written
def _run(files, *options, image="image.png", mark="mark.png"):
    return cli.main(["watermark", str(files / image), str(files / mark), *options])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nullspace watermark: error: "), err
    return lines[0]


@pytest.fixture()
def no_solver(monkeypatch):
    """Fail the test if the watermark is computed: the checks must come first."""
    def embed(*args, **kwargs):
        raise AssertionError("watermark.embed ran before the arguments were checked")
    monkeypatch.setattr(cli.watermark, "embed", embed)


def test_output_that_is_an_input_is_refused(files, capsys, no_solver):
    photo = (files / "image.png").read_bytes()
    logo = (files / "mark.png").read_bytes()
    (files / "sub").mkdir()
    os.link(files / "image.png", files / "hardlink.png")  # another name for the same file: samefile
    for output in ["image.png", "sub/../image.png", "mark.png", "hardlink.png"]:
        assert _run(files, "-o", str(files / output)) == 2
        assert "would be overwritten" in _one_error_line(capsys)
    assert (files / "image.png").read_bytes() == photo
    assert (files / "mark.png").read_bytes() == logo


@pytest.mark.parametrize("size, valid", [("0", "4096"), ("1000000", "4096"), ("-16", "4096"),
                                         ("100", "--size 112"), ("128", "--size 112")])
def test_size_that_cannot_work_is_refused_before_any_work(files, capsys, no_solver, size, valid):
    # zoo-vit-s has a position embedding for 112 x 112 only: --size 128 used to write the file, then crash
    assert _run(files, "-o", str(files / "out.png"), "--size", size) == 2
    assert valid in _one_error_line(capsys)
    assert not (files / "out.png").exists()


def test_size_of_a_vit_with_dynamic_input_size():
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(img_size=64, patch_size=16, embed_dim=48, depth=1, num_heads=1, num_classes=3,
                            dynamic_img_size=True)
    model = models.ImageClassifier(net, models.ZOO_MEAN, models.ZOO_STD, name="tiny")
    assert cli._image_size(None, model, "tiny") == 64
    assert cli._image_size(96, model, "tiny") == 96
    with pytest.raises(cli.UsageError, match="multiple of tiny's patch size 16"):
        cli._image_size(100, model, "tiny")


def test_output_path_is_checked_up_front(files, capsys, no_solver):
    for output, problem in [(files, "is a folder"), (files / "missing" / "out.png", "does not exist"),
                            (files / "out.jpg", "must end in .png"), (files / "out", "must end in .png")]:
        assert _run(files, "-o", str(output)) == 2
        assert problem in _one_error_line(capsys)
    assert sorted(path.name for path in files.iterdir()) == ["image.png", "mark.png"]


def test_uppercase_png_reports_the_saved_files_logit_change(vit_s, files, capsys):
    out = files / "OUT.PNG"
    assert _run(files, "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG")
    with torch.no_grad():
        before = vit_s(data.load_image(files / "image.png")[None])
        after = vit_s(data.load_image(out)[None])
    change = (after - before).abs().max().item()
    assert change > 1e-4  # 8-bit rounding: far above the float image's ~1e-6
    assert f"max logit change {change:.2e}" in printed


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     PermissionError(errno.EACCES, "Permission denied")])
def test_failing_save_leaves_existing_output_unchanged(files, capsys, monkeypatch, quick_solver, failure):
    out = files / "out.png"
    out.write_bytes(b"an older result")
    before = sorted(path.name for path in files.iterdir())

    def save_half_then_fail(picture, target, *args, **kwargs):
        is_name = isinstance(target, (str, os.PathLike))
        with open(target, "wb") if is_name else contextlib.nullcontext(target) as handle:
            handle.write(b"\x89PNG half")  # a full disk stops the write half-way
        raise failure

    monkeypatch.setattr(PIL.Image.Image, "save", save_half_then_fail)
    assert _run(files, "-o", str(out), "--overwrite") == 2
    assert failure.strerror in _one_error_line(capsys)
    assert out.read_bytes() == b"an older result"
    assert sorted(path.name for path in files.iterdir()) == before  # no partial file left either


def test_unreadable_inputs_exit_2_without_traceback(files, capsys, monkeypatch, no_solver):
    whole = (files / "image.png").read_bytes()
    (files / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (files / "folder.png").mkdir()
    for image, mark, problem in [("truncated.png", "mark.png", "truncated"),
                                 ("folder.png", "mark.png", "folder"),
                                 ("image.png", "missing.png", "missing.png")]:
        assert _run(files, "-o", str(files / "out.png"), image=image, mark=mark) == 2
        assert problem in _one_error_line(capsys)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 112 x 112 is now a decompression bomb
    assert _run(files, "-o", str(files / "out.png")) == 2
    assert "pixels" in _one_error_line(capsys)
    assert not (files / "out.png").exists()


def test_model_errors_speak_the_command_lines_language(files, capsys, monkeypatch, no_solver):
    import timm

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")  # what huggingface_hub raises offline
        return real_create_model(name, pretrained=False, **kwargs)

    real_create_model = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    assert _run(files, "-o", str(files / "out.png"), "--model", "vit_small_patch32_224") == 2
    line = _one_error_line(capsys)
    assert "--weights FILE" in line and "weights=" not in line
    assert _run(files, "-o", str(files / "out.png"), "--model", "vit_small_patch32_224",
                "--weights", str(files / "missing.safetensors")) == 2
    assert "missing.safetensors does not exist" in _one_error_line(capsys)
    assert _run(files, "-o", str(files / "out.png"), "--model", "zoo-vit-z") == 2
    assert "Unknown model" in _one_error_line(capsys)


def test_out_of_memory_is_explained_but_bugs_still_raise(files, capsys, monkeypatch):
    def embed(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(cli.watermark, "embed", embed)
    assert _run(files, "-o", str(files / "out.png")) == 2
    assert "out of memory" in _one_error_line(capsys)

    def buggy(*args, **kwargs):
        raise IndexError("a bug of ours")

    monkeypatch.setattr(cli.watermark, "embed", buggy)
    with pytest.raises(IndexError):
        _run(files, "-o", str(files / "out.png"))
    assert not (files / "out.png").exists()


def test_an_existing_output_is_kept_unless_overwrite(files, capsys, quick_solver):
    out = files / "out.png"
    out.write_bytes(b"the user's own picture")
    assert _run(files, "-o", str(out)) == 2  # refused before any work, the file untouched
    assert "exists" in _one_error_line(capsys) and out.read_bytes() == b"the user's own picture"
    assert _run(files, "-o", str(out), "--overwrite") == 0  # asked for: replaced
    assert out.read_bytes().startswith(b"\x89PNG")


def test_transparent_mark_needs_a_background(files, capsys):
    logo = np.zeros((56, 56, 4), dtype=np.uint8)
    logo[20:36, :, :3] = 255
    logo[20:36, :, 3] = 255  # a white bar, opaque; the rest fully transparent
    PIL.Image.fromarray(logo, "RGBA").save(files / "logo.png")
    out = files / "out.png"
    args = ["watermark", str(files / "image.png"), str(files / "logo.png"), "-o", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--background" in err and "background=" not in err and not out.exists()
    assert cli.main([*args, "--background", "0"]) == 0  # drawn on black: the white bar of the mark.png fixture
    assert out.exists()


@pytest.fixture()
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, (image, _) in enumerate(data.synthetic_dataset("val", n=3)):
        data.save_image(image, folder / f"photo{index}.png")
    (folder / "notes.txt").write_text("not a picture: ignored")
    mark = torch.zeros(3, 112, 112)
    mark[:, 40:70, :] = 1.0
    data.save_image(mark, tmp_path / "mark.png")
    return folder


def test_batch_folder_writes_a_folder_and_reports_each_failure(vit_s, photo_folder, capsys):
    (photo_folder / "broken.png").write_bytes(b"not an image")
    out = photo_folder.parent / "marked"
    status = cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o", str(out),
                       "--batch-size", "2", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1  # one image failed; the others were still written
    assert sorted(path.name for path in out.iterdir()) == ["photo0.png", "photo1.png", "photo2.png"]
    failure_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(failure_lines) == 1 and "broken.png" in failure_lines[0] and "Traceback" not in captured.err
    assert "wrote 3 of 4 images" in captured.out and "predictions changed (as saved): 0" in captured.out
    original = data.load_image(photo_folder / "photo1.png")
    marked = data.load_image(out / "photo1.png")
    with torch.no_grad():
        assert vit_s(marked[None]).argmax() == vit_s(original[None]).argmax()
    assert not torch.equal(marked, original)


def test_batch_list_of_files_and_its_refusals(photo_folder, capsys):
    mark = str(photo_folder.parent / "mark.png")
    images = [str(photo_folder / "photo0.png"), str(photo_folder / "photo2.png")]
    out = photo_folder.parent / "listed"
    assert cli.main(["watermark", *images, mark, "-o", str(out), "--quiet"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["photo0.png", "photo2.png"]
    # a second run resumes: the outputs there are complete, so they are skipped, never replaced
    os.utime(out / "photo0.png", ns=(1, 1))  # a replaced file would get a new time
    assert cli.main(["watermark", *images, mark, "-o", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "summary: 0 done, 2 skipped (output already there), 0 failed, 0 left" in captured.out
    assert "--overwrite" in captured.err and (out / "photo0.png").stat().st_mtime_ns == 1
    assert cli.main(["watermark", *images, mark, "-o", str(out), "--quiet", "--overwrite"]) == 0
    assert "summary: 2 done, 0 skipped" in capsys.readouterr().out
    assert (out / "photo0.png").stat().st_mtime_ns != 1  # asked for: replaced
    # writing into the folder the photos come from would replace them
    assert cli.main(["watermark", str(photo_folder), mark, "-o", str(photo_folder), "--overwrite"]) == 2
    assert "input images" in capsys.readouterr().err
    # two sources with one name would write one file twice
    other = photo_folder.parent / "other"
    other.mkdir()
    data.save_image(data.load_image(photo_folder / "photo0.png"), other / "photo0.png")
    assert cli.main(["watermark", images[0], str(other / "photo0.png"), mark, "-o", str(out / "x")]) == 2
    assert "rename one" in capsys.readouterr().err
    # a file as the output folder
    assert cli.main(["watermark", *images, mark, "-o", images[0]]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_batch_outputs_refuse_an_input_under_another_name(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    sources = [photos / f"photo{index}.png" for index in range(3)]
    for source in sources:
        source.write_bytes(source.name.encode())
    mark = tmp_path / "mark.png"
    mark.write_bytes(b"mark")
    assert cli._batch_outputs(sources, mark, out) == {source: out / source.name for source in sources}
    os.link(sources[2], out / "photo0.png")  # photo0's output would overwrite photo2 through a hard link
    with pytest.raises(cli.UsageError, match="out/photo0.png is one of the input images"):
        cli._batch_outputs(sources, mark, out)
    (out / "photo0.png").unlink()
    (out / "photo1.png").symlink_to(sources[0])  # ... or photo0 through a symbolic link
    with pytest.raises(cli.UsageError, match="out/photo1.png is one of the input images"):
        cli._batch_outputs(sources, mark, out)
    (out / "photo1.png").unlink()
    os.link(mark, out / "photo2.png")
    with pytest.raises(cli.UsageError, match="is the mark"):
        cli._batch_outputs(sources, mark, out)


def test_batch_progress_bar_on_stderr(photo_folder, capsys):
    out = photo_folder.parent / "progress"
    assert cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o", str(out)]) == 0
    assert "watermark" in capsys.readouterr().err  # tqdm's bar


def test_batch_never_overwrites_the_mark_and_survives_a_failed_batch(photo_folder, capsys, monkeypatch):
    out = photo_folder.parent / "marks-here"
    out.mkdir()
    mark = out / "photo0.png"  # the mark sits where photo0's output would go
    data.save_image(data.load_image(photo_folder.parent / "mark.png"), mark)
    before = mark.read_bytes()
    assert cli.main(["watermark", str(photo_folder), str(mark), "-o", str(out), "--overwrite"]) == 2
    assert "is the mark" in capsys.readouterr().err and mark.read_bytes() == before

    calls = []

    def first_batch_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(*args, **kwargs)

    from nullspace_utils import watermark

    original = watermark.embed
    monkeypatch.setattr(watermark, "embed", first_batch_fails)
    done = photo_folder.parent / "after-failure"
    status = cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o", str(done),
                       "--batch-size", "2", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1 and len(captured.err.strip().splitlines()) == 2  # one line per image of the failed batch
    assert [path.name for path in done.iterdir()] == ["photo2.png"]  # the next batch still ran


def test_batch_npy_format_keeps_the_exact_values(photo_folder, capsys, quick_solver):
    out = photo_folder.parent / "exact"
    assert cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o", str(out),
                     "--format", "npy", "--quiet"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["photo0.npy", "photo1.npy", "photo2.npy"]
    original = data.load_image(photo_folder / "photo1.png")  # at the zoo model's input size already
    assert torch.equal(data.load_image(out / "photo1.npy"), original)  # the stand-in solver returns it unchanged
    assert "lossless float32 .npy" in capsys.readouterr().out
    # with one image the output's name says the format
    assert cli.main(["watermark", str(photo_folder / "photo0.png"), str(photo_folder.parent / "mark.png"), "-o",
                     str(photo_folder.parent / "one.png"), "--format", "npy"]) == 2
    assert "--format npy, but the output" in capsys.readouterr().err


def test_batch_output_holds_what_the_prediction_check_saw(tmp_path):
    """The PNG a batch writes (in a worker thread, at PNG_COMPRESS_LEVEL) reads back as exactly the 8-bit image
    whose prediction the summary checked, and as data.save_image would have written it."""
    image = torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0))
    levels = cli._eight_bit(image[None])  # what _prediction_checks and _saved_pixels are given
    cli._write_output(cli._saved_pixels(image[None], levels)[0], tmp_path / "batch.png", replace=False)
    data.save_image(image, tmp_path / "library.png")
    as_checked = torch.round(image * 255).to(torch.uint8).float() / 255
    assert levels.dtype == torch.uint8 and torch.equal(levels[0].float() / 255, as_checked)
    other = torch.full_like(levels, 7)  # the PNG holds the levels it is given, not a rounding of its own
    assert (cli._saved_pixels(image[None], other) == 7).all()
    assert torch.equal(data.load_image(tmp_path / "batch.png"), as_checked)
    assert torch.equal(data.load_image(tmp_path / "library.png"), as_checked)
    cli._write_output(cli._saved_pixels(image[None], None)[0], tmp_path / "batch.npy", replace=False)
    assert torch.equal(data.load_image(tmp_path / "batch.npy"), image)
    with pytest.raises(FileExistsError):  # create-or-fail, as before
        zeros = torch.zeros(1, 3, 24, 20)
        cli._write_output(cli._saved_pixels(zeros, cli._eight_bit(zeros))[0], tmp_path / "batch.png", replace=False)
    assert torch.equal(data.load_image(tmp_path / "batch.png"), as_checked)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["batch.npy", "batch.png", "library.png"]


class _RoundingSensitive(torch.nn.Module):
    """Predicts class 1 for images off the 8-bit grid and class 0 on it: any 8-bit rounding changes its answer."""

    def forward(self, images):
        off_grid = (images * 255 - torch.round(images * 255)).abs().flatten(1).amax(1)
        return torch.stack([torch.full_like(off_grid, 1e-4), off_grid], dim=1)


def test_prediction_changes_are_told_apart(capsys):
    originals = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # off the grid: class 1
    marked = originals.clone()
    marked[3] = torch.round(marked[3] * 255) / 255  # the solve itself moved this one onto the grid: class 0
    checks = cli._prediction_checks(_RoundingSensitive(), torch.device("cpu"), originals, marked,
                                    cli._eight_bit(marked))
    assert [(check.changed, check.changed_unrounded) for check in checks] == [(True, False)] * 3 + [(True, True)]
    changes = cli._Changes()
    for check in checks:
        changes.add(check)
    assert (changes.by_rounding, changes.by_solve) == (3, 1)
    line = changes.line(".png")
    assert line.startswith("4 (3 by the 8-bit rounding") and "1 by the solve" in line and "--format npy" in line
    exact = cli._prediction_checks(_RoundingSensitive(), torch.device("cpu"), originals, marked, None)
    assert [(check.changed, check.changed_unrounded) for check in exact] == [(False, False)] * 3 + [(True, True)]
    assert cli._Changes().line(".png") == "0"


def test_a_failed_write_is_reported_and_the_batch_goes_on(photo_folder, capsys, monkeypatch, quick_solver):
    real_write = cli._write_output

    def full_disk_for_photo1(image, path, replace):
        if path.stem == "photo1":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(image, path, replace)

    monkeypatch.setattr(cli, "_write_output", full_disk_for_photo1)
    out = photo_folder.parent / "disk-full"
    assert cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o", str(out),
                     "--batch-size", "2", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "summary: 2 done, 0 skipped (output already there), 1 failed, 0 left" in captured.out
    assert [line for line in captured.err.splitlines() if "photo1" in line and "No space left" in line]
    assert sorted(path.name for path in out.iterdir()) == ["photo0.png", "photo2.png"]


def test_a_batch_of_mixed_files_reaches_the_solver_as_load_image_reads_them(vit_s, photo_folder, monkeypatch,
                                                                           quick_solver):
    """The batch's threads read 8-bit files at the model's size as 8-bit levels and the others (to resize, to
    composite) as floats; the batch embed receives is, bit for bit, the stack of load_image's images, in the
    command's order."""
    size = cli._image_size(None, vit_s, "zoo-vit-s")  # the default model's input size
    data.save_image(torch.rand(3, size, size, generator=torch.Generator().manual_seed(3)), photo_folder / "at_size.png")
    data.save_image(torch.rand(3, size + 8, size, generator=torch.Generator().manual_seed(4)), photo_folder / "tall.png")
    translucent = np.zeros((size, size, 4), np.uint8)
    translucent[..., 0], translucent[..., 3] = 200, 128
    PIL.Image.fromarray(translucent).save(photo_folder / "translucent.png")
    order = cli._batch_sources([str(photo_folder)], photo_folder.parent / "mark.png", lambda message: None)
    kinds = {data.read_pixels(path, size=size, background=0.5).dtype for path in order}
    assert kinds == {np.dtype(np.uint8), np.dtype(np.float32)}  # both paths are in the batch
    seen = []
    solve = cli.watermark.embed  # the quick solver

    def recording(model, images, mark, **keywords):
        seen.append(images.clone())
        return solve(model, images, mark, **keywords)

    monkeypatch.setattr(cli.watermark, "embed", recording)
    status = cli.main(["watermark", str(photo_folder), str(photo_folder.parent / "mark.png"), "-o",
                       str(photo_folder.parent / "out"), "--background", "0.5", "--batch-size", "8", "--quiet"])
    assert status == 0 and len(seen) == 1
    expected = torch.stack([data.load_image(path, size=size, background=0.5) for path in order])
    assert torch.equal(seen[0], expected)
