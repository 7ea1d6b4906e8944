"""The ``nullspace`` command line tool (a front end: the library never imports it).

    nullspace watermark IMAGE MARK -o OUT.png --model zoo-vit-s [--p 1] [--strength 1] [--device cuda]
    nullspace watermark FOLDER_OR_IMAGES... MARK -o OUT_FOLDER [--device cuda] [--batch-size 64]
    nullspace info --model vit_small_patch32_224 [--weights FILE]

With several images, or a folder of them, the watermarked images go to the folder OUT_FOLDER (created
if missing) as 8-bit PNGs (or float32 .npy files with --format npy) named after their sources, with a
progress bar in images per second; an image that cannot be read, solved or written gets one line on
stderr and the batch goes on (exit status 1 if any failed). Threads read the next batch and write the
last one while a batch is solved. The summary counts the predictions that changed as saved, and how
many of them the 8-bit rounding changed (the unrounded result kept them).
A file given twice counts once; the mark, if it lies in an input folder, is skipped with a note.

No file is replaced without --overwrite: outputs are written to a hidden temporary file and take their
name only when whole, with create-or-fail (a hard link), so an output that exists is complete. A rerun
therefore resumes (what is there is skipped), and of two runs into one folder exactly one writes each
output (the other says "written by another run meanwhile" and exits with status 1). Ctrl-C (SIGINT)
and SIGTERM stop between two files, leave no partial or hidden file, print a summary (done, skipped,
failed, left) and exit with status 130 and 143.

Photos are read the right way up (their EXIF orientation applied); animated images are refused.
Bad input (a missing or unreadable file, a symbolic link loop, an unknown model, a device it cannot
use, weights with NaN, a --size that does not fit the model, an output that would overwrite an input,
...) ends with exit status 2 and one line ``nullspace COMMAND: error: ...`` on stderr. The output file
is written only once everything else has worked.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import signal
import stat
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import FrameType
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.io import encode_png
from tqdm.auto import tqdm

from nullspace_utils import box_solver, data, exact, files, metrics, models, watermark

#: The largest --size accepted (a 4096 x 4096 image has 16.8 million pixels per channel).
MAX_SIZE = 4096

#: The output formats, by lower-case suffix.
OUTPUT_SUFFIXES = (".png", ".npy")

#: zlib level of the PNGs a batch writes, chosen by measurement on watermarked 224 px images
#: (``benchmarks/results/watermark_png_levels_cpu.json``, this repository's 2-core CPU, torchvision's encoder, which
#: the CLI uses): level 1 takes 3.0 ms and 58 KiB an image, the default 6 13.5 ms and 49 KiB, 0 (no compression)
#: 0.9 ms and 148 KiB; 4 saves another 8 KiB for 1.6 ms more.
PNG_COMPRESS_LEVEL = 1

#: Default --batch-size on a CPU (as before #34): a batch there takes tens of seconds, so a progress bar moves.
BATCH_SIZE = 64
#: Default --batch-size on a GPU: a batch there is solved in well under a second, and small batches leave it
#: idle between them. Measured on one H100 (``benchmarks/results/watermark_gpu_cli.json``, 3925 PNGs of 224 px):
#: 212 images/s at batch 64, 242 at 256, 255 at 512, 262 at 1024, 258 at 2048; 512 keeps most of the gain with
#: half the host memory of 1024. Beyond that, decoding and encoding in the worker threads limit the command: they
#: share Python's lock (16 threads decoded or encoded about 600 PNGs a second; reading 8-bit levels of files at the
#: model's size without tensor operations, 1263-1538 a second alone, though the whole command was not measurably faster:
#: ``benchmarks/results/watermark_gpu_cli_repeats.json``). Worker processes were no faster
#: (``benchmarks/results/watermark_gpu_cli_processes.log``): 166 images/s at batch 512 with a task per image, 255
#: with chunks of images in shared memory, though the solve inside then took half as long.
GPU_BATCH_SIZE = 512
#: The most worker threads that read and write a folder's files (fewer on a machine with fewer cores: its cores + 2).
#: On one 16-core H100 machine (``benchmarks/results/watermark_gpu_cli_repeats.json``, runs 16-24) 8 threads wrote
#: 499-525 PNGs a second in three runs, 16 threads 407-500 in four runs of the same library in between: with 16,
#: each thread's reading and writing took about twice as long, most likely waiting for Python's lock. On another
#: such machine (runs 25-29), 8 threads wrote 364-482 PNGs a second in five runs, on a third (runs 30-34) 410-535:
#: machines differ by more than 8 and 16 threads did. On a fourth, in one process with the settings taking turns
#: (``benchmarks/results/watermark_gpu_cli_settings.json``, 25-26 runs each): 8 threads 509-608 (median 573), 12
#: threads at a 0.5 ms switch interval median 577, 16 threads at 0.2 ms median 549 (not shown slower after
#: correcting for four comparisons); 8 threads at 1 or 0.2 ms instead of Python's 5 ms made no difference beyond
#: the runs' spread. That 8 threads are faster than 16 is not shown; they do the same work with less waiting.
WORKER_THREADS = 8


class UsageError(Exception):
    """A command-line argument that cannot work; the message says what to give instead."""


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every ``finally`` (removing a temporary file) runs."""


#: Exit status after an interruption, as a shell reports a process killed by the signal: 128 + its number.
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM  # 130, 143


class _Signals:
    """SIGINT and SIGTERM as exceptions, held back while an output takes its final name.

    Python runs signal handlers in the main thread between two steps of the program, so a handler that only
    notes the signal while ``holding`` delays the interruption until the file is whole and counted.
    """

    def __init__(self) -> None:
        self.holding = False
        self.pending: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.holding:
            self.pending = signum
        else:
            self.stop(signum)

    @staticmethod
    def stop(signum: int) -> None:
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Our handlers for SIGINT and SIGTERM while the command runs (SIGTERM would otherwise end the process
        at once, leaving a hidden temporary file); the previous ones afterwards."""
        if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
            yield
            return
        previous = {number: signal.signal(number, self.handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler if handler is not None else signal.SIG_DFL)

    @contextlib.contextmanager
    def ignored(self) -> Iterator[None]:
        """Let SIGINT and SIGTERM pass without effect in the block: the run is already stopping (the outputs being
        written are finished, so that none is left half-written)."""
        holding, self.holding = self.holding, True
        try:
            yield
        finally:
            self.holding, self.pending = holding, None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Delay SIGINT and SIGTERM until the block has finished: an output is either whole and counted, or absent."""
        if self.holding:  # inside another held() or ignored() block: that one decides
            yield
            return
        self.holding, self.pending = True, None
        try:
            yield
        finally:
            self.holding = False
            if self.pending is not None:
                self.stop(self.pending)


_SIGNALS = _Signals()


#: Exceptions that mean bad input, not a bug of this package: printed as one line, exit status 2.
#: (A bug, an AssertionError or IndexError say, still shows its traceback.)
USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    OSError,  # a missing, unreadable or unwritable file, a full disk, a folder given as a file, ...
    EOFError,  # an empty .npy file
    ValueError,  # the library's checks of its arguments: an unreadable image, a mark of the wrong shape, ...
    Image.DecompressionBombError,  # an image with far more pixels than any photo
    models.UnknownModelError,
    models.WeightsError,
    models.WeightsUnavailableError,
    exact.NotPatchEmbeddingError,  # a CNN given to a command that needs a ViT
    exact.NoNullspaceError,
    data.DatasetUnavailableError,
)


# --------------------------------------------------------------------------- checks
def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (also through links, or on a case-insensitive file system)."""
    return _is_one_of(first, _file_identities([second]))


#: A path resolved (links followed; also for a file not there yet) and the (device, inode) of the file there, if any.
_Identity = tuple[str, tuple[int, int] | None]


def _identity(path: str | os.PathLike, folders: dict[str, str]) -> _Identity:
    """``path`` resolved and its file's (device, inode), with one system call for a plain file or a missing one:
    its folder is resolved once for all the files in it (``folders``, a cache), and only a symbolic link (or a
    name like ``..``) is resolved on its own. The same answer as ``os.path.realpath(path)`` and ``os.stat(path)``
    for a path the system can reach (where a missing folder is followed by ``..``, realpath's guess may differ:
    no file can be read or written there); strings, not ``Path`` objects, which cost more than the system call
    over a folder's thousands of files."""
    path = os.fspath(path)
    try:
        status: os.stat_result | None = os.lstat(path)
    except OSError:  # missing (or not reachable): resolved as a file that is not there yet
        status = None
    folder, name = os.path.split(path)
    if name in ("", ".", "..") or (status is not None and stat.S_ISLNK(status.st_mode)):
        resolved = os.path.realpath(path)  # (a link loop stays a path: Python's lax realpath)
        try:
            status = os.stat(path)
        except OSError:  # a link leading nowhere
            status = None
    else:
        if folder not in folders:
            folders[folder] = os.path.realpath(folder or ".")
        resolved = os.path.join(folders[folder], name)
    return resolved, None if status is None else (status.st_dev, status.st_ino)


def _file_identities(paths: Sequence[Path]) -> tuple[set[str], set[tuple[int, int]]]:
    """Each path resolved, and the (device, inode) of those that exist: what :func:`_is_one_of` compares with,
    computed once for a folder's thousands of inputs (comparing every pair would be quadratic)."""
    resolved, inodes = set(), set()
    folders: dict[str, str] = {}
    for path in paths:
        where, inode = _identity(path, folders)
        resolved.add(where)
        if inode is not None:
            inodes.add(inode)
    return resolved, inodes


def _is_one_of(path: Path, identities: tuple[set[str], set[tuple[int, int]]],
               folders: dict[str, str] | None = None) -> bool:
    """Whether ``path`` names one of the files of :func:`_file_identities`: the same resolved path (links followed;
    also for files not there yet), or the same existing file under another name (a hard link, a case-insensitive
    file system). ``folders``: resolved folders to reuse over many calls (:func:`_identity`)."""
    where, inode = _identity(path, {} if folders is None else folders)
    resolved, inodes = identities
    return where in resolved or (inode is not None and inode in inodes)


def _check_options(args: argparse.Namespace) -> None:
    """The options every watermark run checks before any work."""
    if args.size is not None and not 0 < args.size <= MAX_SIZE:
        raise UsageError(f"--size must be a number of pixels from 1 to {MAX_SIZE} (a multiple of the model's "
                         f"patch size), got {args.size}; leave it out to use the model's input size")
    if not 0.0 < args.strength <= 1.0:
        raise UsageError(f"--strength must be in (0, 1], got {args.strength}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.device is not None:
        _check_device(args.device)


def _check_arguments(args: argparse.Namespace) -> str:
    """Check what can be checked before any work on one image; returns the output's suffix in lower case."""
    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"the output {output} is a folder: give a file name, e.g. -o {output / 'watermarked.png'}")
    if not output.parent.is_dir():
        raise UsageError(f"the output's folder {output.parent} does not exist: create it first, or write elsewhere")
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"the output {output} must end in .png (8-bit) or .npy (lossless float), "
                         "e.g. -o watermarked.png")
    if args.format is not None and suffix != f".{args.format}":
        raise UsageError(f"--format {args.format}, but the output {output} ends in {output.suffix}: with one image "
                         "the output's name says the format; leave --format out or end -o in "
                         f".{args.format}")
    for name, source in (("image", args.images[0]), ("mark", args.mark)):
        if _same_file(output, Path(source)):
            raise UsageError(f"the output {output} is the input {name} {source}: it would be overwritten; "
                             "give another file name with -o")
    _refuse_existing(output, args.overwrite)
    _check_options(args)
    return suffix


def _refuse_existing(output: Path, overwrite: bool) -> None:
    """A file already at ``output`` (or a symbolic link, even one leading nowhere) is kept unless ``--overwrite``."""
    if overwrite or not os.path.lexists(output):
        return
    if output.is_symlink() and not output.exists():
        raise UsageError(f"the output {output} is a symbolic link that leads nowhere (a loop, or a missing target): "
                         "remove it, give another file name with -o, or give --overwrite to replace the link")
    raise UsageError(f"{output} exists: remove it, give another file name with -o, or give --overwrite")


def _check_device(name: str) -> None:
    """``--device`` names a device this machine has and the solver can compute on."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name} is not a device: use cpu or cuda (cuda:1 for the second GPU)") from None
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}, but Apple's MPS is not available here (it needs a Mac with Apple "
                         "silicon and a PyTorch built for it): use --device cpu, or cuda on a machine with a GPU")
    if device.type not in ("cpu", "cuda", "mps"):
        why = " (meta tensors hold no values: nothing can be computed on them)" if device.type == "meta" else ""
        raise UsageError(f"--device {name} cannot run the watermark solver{why}: use cpu, or cuda on a machine "
                         "with a GPU")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {name}, but no CUDA GPU is available here: use --device cpu")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}, but there are only {count} GPU(s): use cuda:0 to cuda:{count - 1}")


def _image_size(size: int | None, model: torch.nn.Module, model_name: str) -> int:
    """The side of the square image: ``size`` checked against the model, or the model's own input size.

    Most ViTs (the zoo's, timm's) have position embeddings for one input size only: timm asserts that
    size in the forward pass, so another --size would fail after the watermark was computed.
    """
    patch = exact.patch_embedding_layer(model).kernel_size[0]  # a clear error for CNNs
    net = models.unwrap(model)
    native = getattr(net.patch_embed, "img_size", None)  # (H, W) the model was built for, or None
    if native is not None and not getattr(net, "dynamic_img_size", False):
        side = int(native[0])
        if native[0] != native[1]:
            raise UsageError(f"{model_name} takes {native[0]} x {native[1]} images; this command makes square ones")
        if size is not None and size != side:
            raise UsageError(f"--size {size} does not fit {model_name}: its position embedding is for {side} x "
                             f"{side} images ({side // patch} x {side // patch} patches of {patch}); "
                             f"give --size {side} or leave --size out")
        return side
    if size is None:
        return int(native[0]) if native is not None else 224
    if size % patch:
        raise UsageError(f"--size must be a multiple of {model_name}'s patch size {patch} up to {MAX_SIZE} "
                         f"(e.g. {max(patch, size - size % patch)}), got {size}")
    return size


def _read_pixels(path: str, size: int, what: str, background: float | None = None) -> np.ndarray:
    """``path``'s pixels at ``size`` x ``size`` (:func:`nullspace_utils.data.read_pixels`: 8-bit levels where
    exact); .npy files are not resized, so their shape is checked."""
    is_array = Path(path).suffix.lower() == ".npy"  # data.read_pixels reads these exactly, never resized
    try:
        pixels = data.read_pixels(path, size=None if is_array else size, background=background)
    except ValueError as error:
        if "transparent" not in str(error):
            raise
        raise UsageError(f"the {what} {path} has transparent pixels: give --background 1 (white), 0 (black) or "
                         "a grey level in between to draw it on that colour") from error
    if tuple(pixels.shape[:2]) != (size, size):
        raise UsageError(f"the {what} {path} is {pixels.shape[0]} x {pixels.shape[1]} pixels, the model needs "
                         f"{size} x {size}; .npy files are never resized: give a PNG or JPEG, or an array of that size")
    return pixels


class _WrittenMeanwhile(Exception):
    """An output that appeared after the run began (another run wrote it): its source is not read."""


def _read_source(path: str, output: Path | None, size: int, background: float | None) -> np.ndarray:
    """A folder's image as :func:`_read_pixels` reads it, in a worker thread, unless its ``output`` exists by now
    (:class:`_WrittenMeanwhile`; ``None``: not checked, ``--overwrite``). The check is made here, not in the main
    thread, which launches the solver's GPU work: each system call there may wait for Python's lock behind the
    worker threads."""
    if output is not None and os.path.lexists(output):
        raise _WrittenMeanwhile(output)
    return _read_pixels(path, size, "image", background)


def _load_image(path: str, size: int, what: str, background: float | None = None) -> torch.Tensor:
    """``path`` as a (3, size, size) float image (:func:`_read_pixels`)."""
    return data.pixels_to_images([_read_pixels(path, size, what, background)])[0]


def _check_weights(model: models.ImageClassifier, name: str, image: torch.Tensor | None = None) -> None:
    """The model's patch embedding (and, given ``image``, its logits) are finite: NaN or infinite weights (a
    damaged weight file) would make the nullspace undefined or every output NaN (paper §3)."""
    fix = "its weights hold NaN or infinity (a damaged or badly converted weight file): load undamaged weights"
    if not torch.isfinite(exact.patch_embedding_matrix(model)).all():
        raise UsageError(f"{name}'s patch embedding has no nullspace to compute: {fix}")
    if image is not None:
        with torch.no_grad():
            logits = model(image[None].to(models.model_device(model)))
        if not torch.isfinite(logits).all():
            raise UsageError(f"{name} answers NaN or infinity for the mark: {fix}")


def _load_model(name: str, weights: str | None, pretrained: bool = True) -> models.ImageClassifier:
    """``models.load_model`` with the command line's words in the offline hint (--weights, not weights=)."""
    try:
        return models.load_model(name, weights=weights, pretrained=pretrained)
    except models.WeightsUnavailableError as error:
        cause = f" ({type(error.__cause__).__name__})" if error.__cause__ is not None else ""
        raise UsageError(f"could not download timm's pretrained weights for {name!r}{cause}: this needs the "
                         "network. Offline, download the model's model.safetensors elsewhere and pass it with "
                         "--weights FILE, or use a teaching-zoo model (--model zoo-vit-s)") from error


# --------------------------------------------------------------------------- commands
def _watermark(args: argparse.Namespace) -> int:
    if len(args.images) > 1 or Path(args.images[0]).is_dir():
        return _watermark_batch(args)
    suffix = _check_arguments(args)
    model = _load_model(args.model, args.weights)
    size = _image_size(args.size, model, args.model)
    image = _load_image(args.images[0], size, "image", args.background)
    mark = _load_image(args.mark, size, "mark", args.background)
    _check_weights(model, args.model, mark)
    result = watermark.embed(model, image, mark, p=args.p, strength=args.strength, device=args.device,
                             compile=args.compile)
    with torch.no_grad():
        before = model(image[None])
    try:
        with _SIGNALS.held():  # written only now that everything else has worked, whole or not at all
            data.save_image(result.image, args.output, replace=args.overwrite)  # without --overwrite: create-or-fail
    except FileExistsError:
        raise UsageError(f"{args.output} appeared while this run was computing (another run?): it was kept; "
                         "give another file name with -o, or --overwrite") from None
    saved = data.load_image(args.output)  # what the file holds: 8 bits for .png, exact for .npy
    with torch.no_grad():
        after = model(saved[None])
    kind = "8-bit PNG" if suffix == ".png" else "lossless float32 .npy"
    print(f"wrote {args.output} ({size}x{size}, {kind}); solver {result.solver}, {result.seconds:.2f} s wall")
    print(f"objective {float(result.objective):.2f}, embedding residual {result.embedding_residual:.1e}, "
          f"PSNR vs original {metrics.psnr(image, saved):.1f} dB")
    print(f"prediction {before.argmax().item()} -> {after.argmax().item()} (as saved), "
          f"max logit change {(after - before).abs().max().item():.2e}")
    return 0


#: Picture suffixes a folder is searched for (any case); other files in it are left alone.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".npy")


def _file_key(path: Path | os.DirEntry) -> tuple:
    """What makes two paths one file: its device and inode (also through links), else the absolute path. A folder
    entry (``os.scandir``) gives its own, stat-ed once."""
    try:
        status = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except OSError:  # missing, or a symbolic link loop: reported when it is read
        return (os.path.abspath(path),)
    return (status.st_dev, status.st_ino)


def _is_picture_entry(entry: os.DirEntry) -> bool:
    """A folder entry to watermark: a file with a picture's suffix, or such a name that is a broken link (a loop,
    say), which is then reported as a failure of that image instead of being passed over in silence."""
    if PurePath(entry.name).suffix.lower() not in IMAGE_SUFFIXES:  # (as Path.suffix: "..png" is a PNG)
        return False
    try:
        return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))
    except OSError:  # a symbolic link loop: entry.is_file cannot follow it
        return True


def _batch_sources(inputs: list[str], mark: Path, note: Callable[[str], None]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders as their pictures (sorted, not recursive).

    A file named twice (or through a link) counts once; the mark, when it lies in an input folder, is not
    watermarked. Each of these gets a ``note``. A folder is listed with ``os.scandir``, which knows most entries'
    kinds without a system call, and each file is stat-ed once.
    """
    sources: list[Path] = []
    seen: dict[tuple, Path] = {}
    mark_key = _file_key(mark)
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            with os.scandir(path) as listing:
                found = sorted((path / entry.name, _file_key(entry)) for entry in listing if _is_picture_entry(entry))
            if not found:
                raise UsageError(f"the folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            candidates = []
            for entry, key in found:
                if key == mark_key:
                    note(f"{entry} is the mark: skipped")
                else:
                    candidates.append((entry, key))
        else:
            candidates = [(path, _file_key(path))]  # a missing file is reported as a failure of that image
        for candidate, key in candidates:
            if key in seen:
                note(f"{candidate} is {seen[key]} again: watermarked once")
                continue
            seen[key] = candidate
            sources.append(candidate)
    if not sources:
        raise UsageError("nothing to watermark: the only picture given is the mark")
    return sources


def _batch_outputs(sources: list[Path], mark: Path, folder: Path, suffix: str = ".png") -> dict[Path, Path]:
    """Where each source's watermarked file (a PNG, or ``suffix``) goes; refuses names that collide and outputs
    that are inputs (the mark too)."""
    if os.path.lexists(folder) and not folder.is_dir():
        if folder.is_symlink() and not folder.exists():
            raise UsageError(f"the output folder {folder} is a symbolic link that leads nowhere (a loop, or a "
                             "missing target): remove it, or give a real folder with -o")
        raise UsageError(f"with several images, -o must be a folder; {folder} is a file: give a folder name")
    if not folder.parent.is_dir():
        raise UsageError(f"the output folder's parent {folder.parent} does not exist: create it first")
    outputs = {source: folder / f"{source.stem}{suffix}" for source in sources}
    seen: dict[Path, Path] = {}
    inputs, marks = _file_identities(sources), _file_identities([mark])  # each file's identity found once
    folders: dict[str, str] = {}  # the output folder, resolved once
    for source, output in outputs.items():
        if output in seen:
            raise UsageError(f"{seen[output]} and {source} would both be written to {output}: rename one of them")
        seen[output] = source
        if _is_one_of(output, inputs, folders):
            raise UsageError(f"the output {output} is one of the input images: write to another folder with -o")
        if _is_one_of(output, marks, folders):
            raise UsageError(f"the output {output} is the mark {mark}: it would be overwritten; write to another "
                             "folder with -o, or move the mark")
    return outputs


@dataclass
class _Tally:
    """What became of a batch's images; ``left`` were not reached (an interruption)."""

    total: int
    done: int = 0
    skipped: int = 0  # their output was there already: complete, since an output takes its name only when whole
    taken: int = 0  # their output was written by another run while this one worked: kept, not replaced
    failed: int = 0

    def line(self) -> str:
        left = self.total - self.done - self.skipped - self.taken - self.failed
        return (f"{self.done} done, {self.skipped + self.taken} skipped (output already there), "
                f"{self.failed} failed, {left} left")


def _watermark_batch(args: argparse.Namespace) -> int:
    """Watermark many images, ``args.batch_size`` at a time; one line per failure, the batch goes on.

    Outputs are created exclusively (create-or-fail, :func:`nullspace_utils.files.write_bytes_atomically`), so an output
    that exists is complete and was never half-written: a rerun skips it (resumes), and of two runs into one
    folder exactly one writes each output. SIGINT and SIGTERM stop the run between two outputs, with a summary.

    A pipeline keeps the solver busy: threads decode the next batch while this one is solved, and encode and write
    the outputs of the batches before it (:class:`_Pipeline`).
    """
    def note(message: str) -> None:
        print(f"nullspace watermark: note: {message}", file=sys.stderr)

    _check_options(args)
    mark_path = Path(args.mark)
    suffix = f".{args.format or 'png'}"
    sources = _batch_sources(args.images, mark_path, note)
    folder = Path(args.output)
    outputs = _batch_outputs(sources, mark_path, folder, suffix)
    model = _load_model(args.model, args.weights)
    size = _image_size(args.size, model, args.model)
    device = torch.device(args.device) if args.device is not None else models.model_device(model)
    tally = _Tally(total=len(sources))
    todo = sources
    if not args.overwrite:  # resume: what is there is complete (see above) and kept
        todo = [source for source in sources if not os.path.lexists(outputs[source])]
        tally.skipped = len(sources) - len(todo)
    batch_size = args.batch_size or (BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE)
    batches = [todo[first : first + batch_size] for first in range(0, len(todo), batch_size)]
    shape_images = len(batches[0]) if batches else 0  # the images of every compiled call (a folder may hold fewer)
    pipeline = _Pipeline(tally, args.overwrite)

    def read(batch: list[Path]) -> list[tuple[Path, Future]]:
        return [(source, pipeline.pool.submit(_read_source, str(source), None if args.overwrite else outputs[source],
                                              size, args.background))
                for source in batch]

    try:
        # on a GPU, the solver's iterations are recorded once per batch shape and replayed (box_solver.cuda_graphs):
        # one launch for its iterations, which the reader and writer threads cannot hold up
        with pipeline, box_solver.cuda_graphs():
            # the first batch is decoded while the model goes to its device (in a new process, while CUDA starts)
            # and is checked: reading changes nothing, and an error below cancels it
            reading = read(batches[0]) if batches else []
            mark = _load_image(args.mark, size, "mark", args.background)
            model = model.to(device)  # the logit check of each saved file runs where the solver does
            _check_weights(model, args.model, mark)
            folder.mkdir(exist_ok=True)
            if tally.skipped:
                note(f"{tally.skipped} of {len(sources)} outputs are already in {folder}, complete (an output takes "
                     "its name only once whole): skipped; give --overwrite to redo them")
            # compiled once per process and batch shape: decided for the whole folder (each batch alone never
            # pays), and every batch is solved at the first's shape (embed pads a last, shorter one to chunk_images)
            patch = exact.patch_embedding_layer(model).kernel_size[0]
            compile_step = args.compile if args.compile is not None else watermark.compile_pays(
                device, len(todo) * (size // patch) ** 2)
            pipeline.progress = tqdm(total=len(todo), desc="watermark", unit="image", disable=args.quiet)
            for index in range(len(batches)):
                current, reading = reading, read(batches[index + 1]) if index + 1 < len(batches) else []
                loaded = pipeline.loaded(current)
                pipeline.settle(wait=False)
                if not loaded:
                    continue
                # the batch goes to the solver's device once: the prediction checks and the 8-bit conversion
                # run there too, and only the files' bytes come back (not the images, their noise and a copy
                # sent again for the checks)
                images = data.pixels_to_images([pixels for _, pixels in loaded], device)
                try:  # compiled: every call one chunk of the first batch's size (one shape, one compilation)
                    result = watermark.embed(model, images, mark, p=args.p, strength=args.strength, device=device,
                                             compile=compile_step, chunk_images=shape_images if compile_step else None)
                except USER_ERRORS + (MemoryError, torch.OutOfMemoryError) as error:  # the next batch may work
                    for source, _ in loaded:
                        pipeline.fail(source, error)
                    continue
                levels = _eight_bit(result.image) if suffix == ".png" else None  # rounded once, on the device
                checks = _prediction_checks(model, device, images, result.image, levels)
                pixels = _saved_pixels(result.image, levels)
                for (source, _), saved, check in zip(loaded, pixels, checks, strict=True):
                    pipeline.write(source, outputs[source], saved, check)
            pipeline.settle(wait=True)
    except (KeyboardInterrupt, Terminated) as stop:
        with _SIGNALS.ignored():  # outputs being written are finished (whole) and counted, the rest cancelled
            pipeline.stop()
        pipeline.progress.close()
        name, status = ("SIGINT", EXIT_SIGINT) if isinstance(stop, KeyboardInterrupt) else ("SIGTERM", EXIT_SIGTERM)
        print(f"interrupted by {name}: {tally.line()} (no partial file left in {folder}); run the same command "
              "again to do the rest: what is done is skipped")
        return status
    pipeline.progress.close()
    kind = "8-bit PNG" if suffix == ".png" else "lossless float32 .npy"
    print(f"wrote {tally.done} of {len(sources)} images to {folder} ({kind}, {size}x{size}); "
          f"{tally.failed} failed; predictions changed (as saved): {pipeline.changes.line(suffix)}; "
          f"largest logit change {pipeline.changes.largest:.2e}")
    print(f"summary: {tally.line()}")
    return 1 if tally.failed or tally.taken else 0


@dataclass
class _Check:
    """One watermarked image's predictions: whether the saved file's differs from the original's, whether the
    unrounded result's does too (else the 8-bit rounding changed it), and the largest logit change as saved."""

    changed: bool
    changed_unrounded: bool
    logit_change: float


@dataclass
class _Changes:
    """The prediction checks of the outputs written, added up."""

    by_solve: int = 0  # the unrounded result's prediction differs already
    by_rounding: int = 0  # the unrounded result kept the prediction; the saved 8-bit file does not
    largest: float = 0.0

    def add(self, check: _Check) -> None:
        self.by_solve += check.changed and check.changed_unrounded
        self.by_rounding += check.changed and not check.changed_unrounded
        self.largest = max(self.largest, check.logit_change)

    def line(self, suffix: str) -> str:
        total = self.by_solve + self.by_rounding
        if not total:
            return "0"
        fix = "; --format npy saves the exact values" if self.by_rounding and suffix == ".png" else ""
        return (f"{total} ({self.by_rounding} by the 8-bit rounding, the unrounded result kept them{fix}; "
                f"{self.by_solve} by the solve)")


def _eight_bit(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as the 8-bit levels an 8-bit PNG holds (uint8, on the images' device)."""
    return torch.round(images.float() * 255).to(torch.uint8)


def _prediction_checks(model: torch.nn.Module, device: torch.device, originals: torch.Tensor,
                       marked: torch.Tensor, levels: torch.Tensor | None) -> list[_Check]:
    """Each image's prediction before and after as saved (the 8-bit ``levels`` of :func:`_eight_bit` for PNG; the
    float values of ``marked`` for .npy, ``levels=None``), and for the images whose prediction changed, the
    unrounded result's, which tells the rounding's part. Runs on ``device`` (the images are moved there if they are
    elsewhere)."""
    originals, marked = originals.to(device), marked.to(device)
    rounded = levels is not None
    saved = levels.to(device).float() / 255 if levels is not None else marked.float()
    with torch.no_grad():
        before, after = model(torch.cat([originals, saved])).chunk(2)  # one forward for both
        changed = before.argmax(1) != after.argmax(1)
        changed_unrounded = torch.zeros_like(changed)
        if rounded and changed.any():
            changed_unrounded[changed] = model(marked[changed]).argmax(1) != before.argmax(1)[changed]
        elif not rounded:
            changed_unrounded = changed
    largest = (after - before).abs().amax(1)
    return [_Check(bool(c), bool(u), float(x)) for c, u, x in zip(changed.tolist(), changed_unrounded.tolist(),
                                                                   largest.tolist(), strict=True)]


def _saved_pixels(images: torch.Tensor, levels: torch.Tensor | None) -> np.ndarray:
    """A batch of (B, 3, H, W) images in [0, 1] as their files will hold them, converted at once in the main
    thread (the worker threads then only encode, and hold Python's lock less) and on the images' device (from a
    GPU, only the 8-bit values come back): the 8-bit ``levels`` of :func:`_eight_bit` as (B, H, W, 3) for .png;
    ``levels=None``: the images as float32 (B, 3, H, W) for .npy."""
    if levels is None:
        return images.float().contiguous().cpu().numpy()
    return levels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _write_output(pixels: np.ndarray, path: Path, replace: bool) -> None:
    """Encode one image as :func:`_saved_pixels` gives it (run in a worker thread) and write it whole or not at
    all, as :func:`nullspace_utils.data.save_image` does: .png as 8 bits (level ``PNG_COMPRESS_LEVEL``), .npy as
    float32. Without ``replace``, create-or-fail (``FileExistsError`` when ``path`` exists).

    PNGs are encoded by torchvision (libpng), which holds Python's lock for none of the encoding, so the worker
    threads encode in parallel; Pillow's encoder takes the lock back between the pieces it writes, which other
    busy threads delay. Alone, torchvision's took 3.0 ms an image and Pillow's 4.2 ms for files of the same size
    (``benchmarks/results/watermark_png_levels_cpu.json``, level 1). torchvision 0.29 marks its codecs deprecated in
    favour of TorchCodec (which needs FFmpeg on the system); torchvision is pinned here. Its decoder is not used
    on files users give: it crashes the process on some damaged PNGs."""
    if path.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, pixels)
        encoded = buffer.getvalue()
    else:
        encoded = encode_png(torch.from_numpy(pixels).permute(2, 0, 1), compression_level=PNG_COMPRESS_LEVEL
                             ).numpy().tobytes()
    files.write_bytes_atomically(path, encoded, replace=replace)


class _Pipeline:
    """The batch's worker threads and the books of what became of each image.

    Decoding and writing run in a thread pool; the main thread (which alone receives signals) solves and keeps the
    tally: an output is counted once its write has finished, in :meth:`settle`, under held signals.
    """

    def __init__(self, tally: _Tally, overwrite: bool) -> None:
        self.tally, self.overwrite = tally, overwrite
        self.progress = tqdm(disable=True)  # shown (replaced) once the checks before the first solve have passed
        # decoding and encoding let go of Python's lock, the rest of a file's work holds it: more threads than
        # WORKER_THREADS only wait longer for it, and so does the main thread, which launches the solver's GPU work
        self.pool = ThreadPoolExecutor(max_workers=min(WORKER_THREADS, (os.cpu_count() or 1) + 2),
                                       thread_name_prefix="nullspace")
        self.writing: collections.deque[tuple[Path, Path, Future, _Check]] = collections.deque()
        self.changes = _Changes()

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def report(self, source: Path, message: str) -> None:
        self.progress.write(f"nullspace watermark: {source}: {message}", file=sys.stderr)

    def fail(self, source: Path, error: BaseException) -> None:
        self.tally.failed += 1
        self.report(source, _one_line(error))
        self.progress.update(1)

    def loaded(self, reading: list[tuple[Path, Future]]) -> list[tuple[Path, np.ndarray]]:
        """The batch's pixels as decoded (:func:`_read_source`), without those that failed (reported) or whose
        output another run has written meanwhile (skipped)."""
        images = []
        for source, future in reading:
            try:
                images.append((source, future.result()))
            except _WrittenMeanwhile as written:
                self.tally.taken += 1
                self.report(source, f"{written} was written by another run meanwhile: skipped")
                self.progress.update(1)
            except USER_ERRORS as error:
                self.fail(source, error)
        return images

    def write(self, source: Path, output: Path, pixels: np.ndarray, check: _Check) -> None:
        self.writing.append((source, output, self.pool.submit(_write_output, pixels, output, self.overwrite), check))

    def settle(self, *, wait: bool) -> None:
        """Count the outputs whose write has finished (all of them with ``wait``), in order."""
        while self.writing and (wait or self.writing[0][2].done()):
            with _SIGNALS.held():  # counted and off the list together, or neither
                self._count(*self.writing.popleft())

    def _count(self, source: Path, output: Path, future: Future, check: _Check) -> None:
        try:
            future.result()
        except FileExistsError:  # created by another run between the check above and this write
            self.tally.taken += 1
            self.report(source, f"{output} was written by another run meanwhile: kept, not replaced")
        except USER_ERRORS as error:
            self.tally.failed += 1
            self.report(source, _one_line(error))
        else:
            self.tally.done += 1
            self.changes.add(check)
        self.progress.update(1)

    def stop(self) -> None:
        """After SIGINT or SIGTERM: writes not begun are cancelled, those under way finish (a whole file) and are
        counted, so that every output counted is there and none is partial."""
        for _, _, future, _ in self.writing:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.writing = collections.deque(entry for entry in self.writing if not entry[2].cancelled())
        self.settle(wait=True)


def _info(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.weights, pretrained=args.weights is not None)
    _check_weights(model, args.model)
    matrix = exact.patch_embedding_matrix(model)
    basis = exact.patch_nullspace(model)
    print(f"{args.model}: patch matrix {tuple(matrix.shape)}, nullspace dimension {basis.shape[0]}, "
          f"mean {model.mean}, std {model.std}")
    return 0


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a weight file that does not fit lists many keys)."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return "out of memory: try a smaller --size, or --device cpu when the GPU is too small"
    message = " ".join(str(error).split()) or type(error).__name__
    return message if len(message) <= 1000 else message[:1000] + " ..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nullspace", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wm = sub.add_parser("watermark", help="overlay a visible watermark that leaves the model's output unchanged")
    wm.add_argument("images", nargs="+", metavar="IMAGE",
                    help="the picture to watermark (PNG, JPEG, ...), resized to the model's input size; or several "
                         "pictures, or a folder of them")
    wm.add_argument("mark", help="the watermark (a logo, text on a background, ...), resized to the image")
    wm.add_argument("-o", "--output", required=True,
                    help="output file: .png (8-bit) or .npy (lossless), not one of the inputs; with several images "
                         "or a folder, the folder the watermarked PNGs go to (created if missing)")
    wm.add_argument("--model", default="zoo-vit-s", help="zoo name or timm ViT name (default zoo-vit-s)")
    wm.add_argument("--weights", default=None, help="local .safetensors weights for a timm model")
    wm.add_argument("--p", type=int, default=1, choices=[1, 2],
                    help="distance to the mark that is minimised (paper eq. 7): 1, the paper's L1 (an LP: few pixels "
                         "change a lot, specks along edges; default) or 2 (least squares: spread out, smoother "
                         "for text over a photo; see the watermark chapter)")
    wm.add_argument("--strength", type=float, default=1.0,
                    help="in (0, 1]: aim at (1 - strength) * image + strength * mark (default 1, the mark alone)")
    wm.add_argument("--background", type=float, default=None,
                    help="grey level in [0, 1] that transparent pixels of the image or mark (a logo, say) are "
                         "drawn on: 1 white, 0 black (default: transparent images are refused)")
    wm.add_argument("--size", type=int, default=None,
                    help="resize the image to SIZE x SIZE: a multiple of the patch size, for ViTs whose position "
                         "embedding allows other sizes (default and usually the only choice: the model's)")
    wm.add_argument("--device", default=None, help="where the solver runs: cpu, cuda (default: the model's)")
    wm.add_argument("--batch-size", type=int, default=None,
                    help="with several images: how many are solved together (default 64 on a CPU, 512 on a GPU); "
                         "the next batch is read and the last one written while a batch is solved")
    wm.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="fuse each solver iteration with torch.compile (GPU): it costs seconds once per run and "
                         "saves some on every batch after; by default on a GPU from two million image patches "
                         "(about 40,000 images of a ViT-S/32), where the solve's measured times say it pays")
    wm.add_argument("--format", choices=["png", "npy"], default=None,
                    help="with several images: the outputs' format, png (8-bit, default) or npy (lossless float32, "
                         "where the exact values matter: 8-bit rounding can change a prediction with a tiny "
                         "margin, which the summary reports)")
    wm.add_argument("--overwrite", action="store_true",
                    help="replace an existing output file (one image) or watermarked files already in the output "
                         "folder (several images); without it, an existing output file is kept and the run "
                         "refused (one image), or existing outputs are kept and skipped: a rerun resumes")
    wm.add_argument("--quiet", action="store_true", help="with several images: no progress bar")
    info = sub.add_parser("info", help="print a model's patch matrix shape and nullspace dimension")
    info.add_argument("--model", required=True, help="zoo name or timm ViT name")
    info.add_argument("--weights", default=None, help="local .safetensors weights for a timm model")
    args = parser.parse_args(argv)
    handlers = {"watermark": _watermark, "info": _info}
    try:
        with _SIGNALS.installed():
            return handlers[args.command](args)
    except USER_ERRORS + (MemoryError, torch.OutOfMemoryError) as error:
        print(f"nullspace {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except torch.linalg.LinAlgError as error:  # the nullspace's SVD of a matrix that is not finite
        print(f"nullspace {args.command}: error: the model's patch embedding cannot be decomposed "
              f"({_one_line(error)}): its weights likely hold NaN or infinity; load undamaged weights",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nullspace {args.command}: interrupted by SIGINT; no partial file left", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"nullspace {args.command}: interrupted by SIGTERM; no partial file left", file=sys.stderr)
        return EXIT_SIGTERM


if __name__ == "__main__":
    sys.exit(main())
