"""`nullspace watermark` never loses a file (#32): exclusive writes, resuming, concurrent runs, SIGINT / SIGTERM.

The signal and concurrency tests start the real command in subprocesses; the others run it in this process with
a stand-in solver.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from nullspace_utils import cli, data


def _photos(folder, n):
    """``n`` PNG photos in ``folder`` (copies of three synthetic ones: reading and solving is what is timed)."""
    folder.mkdir()
    originals = [image for image, _ in data.synthetic_dataset("val", n=3)]
    for index in range(n):
        data.save_image(originals[index % 3], folder / f"photo{index:02d}.png")
    return folder


def _mark(path, rows=True):
    """A white bar across (``rows``) or down the picture."""
    mark = torch.zeros(3, 112, 112)
    if rows:
        mark[:, 40:70, :] = 1.0
    else:
        mark[:, :, 40:70] = 1.0
    data.save_image(mark, path)
    return path


def _summary(text):
    """(done, skipped, failed, left) from a run's summary line."""
    found = re.search(r"(\d+) done, (\d+) skipped \(output already there\), (\d+) failed, (\d+) left", text)
    assert found, text
    return tuple(int(group) for group in found.groups())


def _no_hidden_or_partial(folder):
    names = [path.name for path in folder.iterdir()]
    assert not [name for name in names if name.startswith(".") or name.endswith(".part")], names
    for name in names:
        data.load_image(folder / name)  # every file there is a whole PNG


def test_an_output_written_by_another_run_meanwhile_is_kept(tmp_path, capsys, monkeypatch):
    photos, mark, out = _photos(tmp_path / "photos", 3), _mark(tmp_path / "mark.png"), tmp_path / "out"
    theirs = torch.zeros(3, 112, 112)

    def embed_while_another_run_writes(model, image, mark, **kwargs):
        if not (out / "photo01.png").exists():  # the other run finishes photo01 while this one solves it
            data.save_image(theirs, out / "photo01.png")
        return cli.watermark.WatermarkResult(image=image.clone(), noise=torch.zeros_like(image),
                                             objective=torch.tensor(0.0), embedding_residual=0.0,
                                             box_violation=0.0, seconds=0.0, solver="quick", iterations=0)

    monkeypatch.setattr(cli.watermark, "embed", embed_while_another_run_writes)
    status = cli.main(["watermark", str(photos), str(mark), "-o", str(out), "--batch-size", "3", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1  # not everything asked for was written by this run
    assert torch.equal(data.load_image(out / "photo01.png"), theirs)  # kept, not replaced
    assert "photo01.png was written by another run meanwhile: kept" in captured.err
    assert _summary(captured.out) == (2, 1, 0, 0)
    _no_hidden_or_partial(out)


def test_a_single_output_that_appears_meanwhile_is_kept(tmp_path, capsys, monkeypatch):
    photo, mark, out = tmp_path / "photo.png", _mark(tmp_path / "mark.png"), tmp_path / "out.png"
    data.save_image(data.synthetic_dataset("val", n=1)[0][0], photo)

    def embed_while_another_run_writes(model, image, mark, **kwargs):
        out.write_bytes(b"another run's picture")  # checked before the work began: not there yet
        return cli.watermark.WatermarkResult(image=image.clone(), noise=torch.zeros_like(image),
                                             objective=torch.tensor(0.0), embedding_residual=0.0,
                                             box_violation=0.0, seconds=0.0, solver="quick", iterations=0)

    monkeypatch.setattr(cli.watermark, "embed", embed_while_another_run_writes)
    assert cli.main(["watermark", str(photo), str(mark), "-o", str(out)]) == 2
    assert "appeared while this run was computing" in capsys.readouterr().err
    assert out.read_bytes() == b"another run's picture"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mark.png", "out.png", "photo.png"]


def test_a_rerun_resumes_and_counts_each_file_once(tmp_path, capsys, quick_solver):
    photos, mark, out = _photos(tmp_path / "photos", 3), _mark(tmp_path / "mark.png"), tmp_path / "out"
    out.mkdir()
    data.save_image(torch.zeros(3, 112, 112), out / "photo00.png")  # left by an interrupted run
    before = (out / "photo00.png").read_bytes()
    assert cli.main(["watermark", str(photos), str(mark), "-o", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert _summary(captured.out) == (2, 1, 0, 0) and "1 of 3 outputs are already in" in captured.err
    assert (out / "photo00.png").read_bytes() == before
    assert sorted(path.name for path in out.iterdir()) == ["photo00.png", "photo01.png", "photo02.png"]


def _command(*arguments):
    return [sys.executable, "-m", "nullspace_utils.cli", "watermark", *map(str, arguments), "--quiet"]


def _environment():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("number, status, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_between_files_with_a_summary(tmp_path, number, status, name):
    total = 40
    photos, mark, out = _photos(tmp_path / "photos", total), _mark(tmp_path / "mark.png"), tmp_path / "out"
    process = subprocess.Popen(_command(photos, mark, "-o", out, "--batch-size", "1"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_environment())
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(path.suffix == ".png" for path in out.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(number)  # as Ctrl-C (SIGINT) or `kill` (SIGTERM) would
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr and f"interrupted by {name}" in stdout
    done, skipped, failed, left = _summary(stdout)
    assert skipped == failed == 0 and done >= 1 and left >= 1 and done + left == total
    assert len(list(out.iterdir())) == done  # every file it counts is there, whole
    _no_hidden_or_partial(out)


def test_two_concurrent_runs_write_each_output_once(tmp_path):
    total = 8
    photos, out = _photos(tmp_path / "photos", total), tmp_path / "out"
    marks = [_mark(tmp_path / "across.png", rows=True), _mark(tmp_path / "down.png", rows=False)]
    runs = [subprocess.Popen(_command(photos, mark, "-o", out, "--batch-size", "1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_environment()) for mark in marks]
    results = [run.communicate(timeout=400) for run in runs]
    summaries = [_summary(stdout) for stdout, _ in results]
    assert all("Traceback" not in stderr for _, stderr in results)
    (done_a, skipped_a, failed_a, _), (done_b, skipped_b, failed_b, _) = summaries
    assert failed_a == failed_b == 0
    assert done_a + done_b == total and skipped_a == done_b and skipped_b == done_a  # each output written once
    _no_hidden_or_partial(out)
    assert len(list(out.iterdir())) == total
    # and each output is wholly one run's: nearer the mark of the run that says it wrote it, by a wide margin
    targets = [data.load_image(mark) for mark in marks]
    nearer_first = 0
    for path in out.iterdir():
        image = data.load_image(path)
        distances = [(image - target).abs().mean().item() for target in targets]
        assert abs(distances[0] - distances[1]) > 0.02, distances
        nearer_first += distances[0] < distances[1]
    assert nearer_first == done_a


def test_interrupted_single_image_leaves_nothing(tmp_path, capsys, monkeypatch):
    photo, mark = tmp_path / "photo.png", _mark(tmp_path / "mark.png")
    data.save_image(data.synthetic_dataset("val", n=1)[0][0], photo)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.watermark, "embed", interrupted)
    assert cli.main(["watermark", str(photo), str(mark), "-o", str(tmp_path / "out.png")]) == 130
    assert "interrupted by SIGINT" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mark.png", "photo.png"]


def test_a_signal_during_a_write_waits_for_the_file(tmp_path, monkeypatch):
    """The signal arrives while the file is being written: the file is finished and counted, then the run stops."""
    target = tmp_path / "out.png"
    real_save = data.save_image

    def save_then_signal(image, path, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        return real_save(image, path, **kwargs)

    monkeypatch.setattr(cli.data, "save_image", save_then_signal)
    signals, before = cli._Signals(), signal.getsignal(signal.SIGTERM)
    written = []
    with signals.installed(), pytest.raises(cli.Terminated):
        with signals.held():
            cli.data.save_image(torch.zeros(3, 8, 8), target, replace=False)
            written.append(target)
    assert written == [target] and target.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]
    assert signal.getsignal(signal.SIGTERM) == before  # put back as it was


def test_exclusive_write_never_replaces(tmp_path):
    from nullspace_utils import files

    target = tmp_path / "out.txt"
    target.write_text("someone else's")
    with pytest.raises(FileExistsError, match="kept"):
        with files.atomic_write(target, replace=False) as temporary:
            temporary.write_text("ours")
    assert target.read_text() == "someone else's" and sorted(tmp_path.iterdir()) == [target]
    os.symlink("loop.txt", tmp_path / "loop.txt")  # even a link that leads nowhere is not replaced
    with pytest.raises(FileExistsError):
        with files.atomic_write(tmp_path / "loop.txt", replace=False) as temporary:
            temporary.write_text("ours")
    assert os.readlink(tmp_path / "loop.txt") == "loop.txt"
    with files.atomic_write(tmp_path / "new.txt", replace=False) as temporary:
        temporary.write_text("ours")
    assert (tmp_path / "new.txt").read_text() == "ours"


def test_batches_are_solved_inside_one_cuda_graphs_block(tmp_path, capsys, monkeypatch):
    """Every batch's embed runs inside box_solver.cuda_graphs (on a GPU its iterations are recorded once per batch
    shape and replayed), one block for the whole folder (a graph recorded at the first batch serves the next), ended
    with the command."""
    photos, mark, out = _photos(tmp_path / "photos", 5), _mark(tmp_path / "mark.png"), tmp_path / "out"
    blocks = []

    def embed(model, image, mark, **kwargs):
        blocks.append(cli.box_solver._CUDA_GRAPHS.get())
        return cli.watermark.WatermarkResult(image=image.clone(), noise=torch.zeros_like(image),
                                             objective=torch.tensor(0.0), embedding_residual=0.0, box_violation=0.0,
                                             seconds=0.0, solver="stub", iterations=0)

    monkeypatch.setattr(cli.watermark, "embed", embed)
    assert cli.main(["watermark", str(photos), str(mark), "-o", str(out), "--batch-size", "2", "--quiet"]) == 0
    assert len(blocks) == 3 and blocks[0] is not None and all(block is blocks[0] for block in blocks)
    assert cli.box_solver._CUDA_GRAPHS.get() is None
    capsys.readouterr()


def test_compile_pads_the_last_batch_to_one_shape(tmp_path, capsys, monkeypatch):
    """--compile: every batch reaches embed with one chunk shape, the first batch's (embed pads a last, shorter
    batch to it, so a compiled step is not compiled again), and by default a small folder is not compiled."""
    photos, mark, out = _photos(tmp_path / "photos", 5), _mark(tmp_path / "mark.png"), tmp_path / "out"
    calls = []

    def embed(model, image, mark, **kwargs):
        calls.append((image.shape[0], kwargs["compile"], kwargs["chunk_images"]))
        image = image.clone()
        image[:, :, 0, 0] = 0.5  # the solver's mark on each image
        return cli.watermark.WatermarkResult(image=image, noise=torch.zeros_like(image), objective=torch.tensor(0.0),
                                             embedding_residual=0.0, box_violation=0.0, seconds=0.0, solver="stub",
                                             iterations=0)

    monkeypatch.setattr(cli.watermark, "embed", embed)
    command = ["watermark", str(photos), str(mark), "--batch-size", "2", "--quiet", "--format", "npy"]
    assert cli.main([*command, "-o", str(out), "--compile"]) == 0
    assert calls == [(2, True, 2), (2, True, 2), (1, True, 2)]  # 2 + 2 + 1, each solved as one chunk of 2
    assert _summary(capsys.readouterr().out) == (5, 0, 0, 0)
    written = sorted(out.iterdir())
    assert len(written) == 5 and all(data.load_image(path)[:, 0, 0].eq(0.5).all() for path in written)
    calls.clear()
    assert cli.main([*command, "-o", str(tmp_path / "plain")]) == 0
    assert calls == [(2, False, None), (2, False, None), (1, False, None)]  # 5 images: far too few to compile
    calls.clear()
    small = ["watermark", str(_photos(tmp_path / "three", 3)), str(mark), "--batch-size", "8", "--quiet", "--compile"]
    assert cli.main([*small, "-o", str(tmp_path / "small")]) == 0
    assert calls == [(3, True, 3)]  # a folder smaller than a batch: one chunk of 3, not padded to 8


def test_the_first_batch_is_read_while_the_model_is_checked(tmp_path, capsys, monkeypatch, quick_solver):
    """The first batch's files are being decoded before the model reaches its device and is checked (in a new
    process that is CUDA's start), and a check that fails cancels the reading and leaves no output folder."""
    photos, mark, out = _photos(tmp_path / "photos", 4), _mark(tmp_path / "mark.png"), tmp_path / "out"
    started_reading, seen = [], []  # the photos whose reading began; how many had when the model was checked
    read = cli._read_pixels

    def reading(path, *args, **kwargs):
        if "photo" in path:
            started_reading.append(path)
        return read(path, *args, **kwargs)

    def checked(model, name, image=None):
        deadline = time.monotonic() + 5
        while not started_reading and time.monotonic() < deadline:  # the threads have the batch already
            time.sleep(0.001)
        seen.append(len(started_reading))

    monkeypatch.setattr(cli, "_read_pixels", reading)
    monkeypatch.setattr(cli, "_check_weights", checked)
    assert cli.main(["watermark", str(photos), str(mark), "-o", str(out), "--quiet"]) == 0
    assert seen and seen[0] >= 1 and _summary(capsys.readouterr().out) == (4, 0, 0, 0)

    def failing(model, name, image=None):
        raise cli.UsageError("damaged weights")

    monkeypatch.setattr(cli, "_check_weights", failing)
    assert cli.main(["watermark", str(photos), str(mark), "-o", str(tmp_path / "never"), "--quiet"]) == 2
    assert "damaged weights" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_a_source_whose_output_appears_meanwhile_is_not_read(tmp_path, capsys, monkeypatch):
    """An output another run writes after this run began, before this run reads its source, is kept and its source
    is not read: the worker thread that would read it checks first (not the main thread)."""
    photos, mark, out = _photos(tmp_path / "photos", 3), _mark(tmp_path / "mark.png"), tmp_path / "out"
    theirs = torch.zeros(3, 112, 112)
    read = cli._read_pixels
    reads = []

    def reading(path, *args, **kwargs):
        reads.append(os.path.basename(path))
        return read(path, *args, **kwargs)

    def embed_while_another_run_writes(model, image, mark, **kwargs):
        if not (out / "photo02.png").exists():  # during the first batch: photo02 (the third batch) is not read yet
            data.save_image(theirs, out / "photo02.png")
        return cli.watermark.WatermarkResult(image=image.clone(), noise=torch.zeros_like(image),
                                             objective=torch.tensor(0.0), embedding_residual=0.0,
                                             box_violation=0.0, seconds=0.0, solver="quick", iterations=0)

    monkeypatch.setattr(cli, "_read_pixels", reading)
    monkeypatch.setattr(cli.watermark, "embed", embed_while_another_run_writes)
    status = cli.main(["watermark", str(photos), str(mark), "-o", str(out), "--batch-size", "1", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1 and _summary(captured.out) == (2, 1, 0, 0)
    assert "photo02.png was written by another run meanwhile: skipped" in captured.err
    assert sorted(name for name in reads if name.startswith("photo")) == ["photo00.png", "photo01.png"]
    assert torch.equal(data.load_image(out / "photo02.png"), theirs)
    _no_hidden_or_partial(out)
