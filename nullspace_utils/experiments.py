"""Heavy experiments of the book, run from the command line on a GPU (a front end).

    python -m nullspace_utils.experiments watermark --profile teaching --device cuda

Each writes a small JSON result file under ``book/results/<profile>/`` with the command, config,
versions and commit that made it; the chapters plot those files, and a test recomputes one cheap
point of each so the committed numbers cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nullspace_utils import models

__all__ = ["load_result", "result_file", "chapter_result", "how_to_produce", "git_commit", "fingerprint_suspects", "main",
           "RESULTS", "APPROXIMATE_CONFIG", "ROBUSTNESS_CONFIG", "FINGERPRINT_CONFIG"]

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY_ROOT / "book" / "results"
RAW_URL = "https://raw.githubusercontent.com/nullspace-vit/nullspace-vit/main/"
WATERMARK_CHECK_IMAGES = 8  # the cheap point a test recomputes on the CPU


def git_commit(cwd: Path = REPOSITORY_ROOT) -> str:
    """The checkout's HEAD commit, or "unknown" outside a git checkout (e.g. a copied tree on a GPU box)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _provenance(argv: list[str]) -> dict:
    import timm

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"command": "python -m nullspace_utils.experiments " + " ".join(argv), "commit": git_commit(),
            "torch": torch.__version__, "timm": timm.__version__, "device": device,
            "date": time.strftime("%Y-%m-%d")}


def load_result(path: str, *, missing_ok: bool = False, text: bool = False) -> dict | str | None:
    """A committed result file by its path in the repository, e.g. ``"book/results/teaching/watermark.json"``.

    Read from the checkout when there is one; otherwise (a notebook opened alone, on Colab) fetched
    from the repository on GitHub. With ``missing_ok=True`` a file that exists nowhere gives ``None``
    (see :func:`how_to_produce`): GitHub answers 404, or GitHub cannot be reached and the checkout lacks
    it. Without a checkout (the library installed alone, e.g. on Colab) and without network, whether the
    file exists is unknown: that raises ``FileNotFoundError`` saying so, even with ``missing_ok``.
    ``text=True`` returns the file's text instead of parsing it as JSON.
    """
    local = REPOSITORY_ROOT / path
    if local.is_file():
        return local.read_text() if text else json.loads(local.read_text())
    in_checkout = (REPOSITORY_ROOT / "_toc.yml").is_file()
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(RAW_URL + path, timeout=20) as response:
            content = response.read().decode()
            return content if text else json.loads(content)
    except urllib.error.HTTPError as error:
        if error.code == 404 and missing_ok:
            return None
        reason = "it is not in the repository" if error.code == 404 else f"GitHub answered {error.code}"
        raise FileNotFoundError(f"Result file {path} is not in this checkout, and {reason} ({RAW_URL}). "
                                "Produce it with the command in the README.") from error
    except (urllib.error.URLError, TimeoutError) as error:
        if missing_ok and in_checkout:
            return None
        raise FileNotFoundError(
            f"Result file {path} is not in this checkout and could not be fetched from {RAW_URL} ({error}). "
            "Clone the repository, or produce it with the command in the README."
        ) from error


def result_file(experiment: str, profile: str) -> str:
    """Where ``experiment``'s runner writes its result for ``profile``, relative to the repository root."""
    return f"book/results/{profile}/{experiment.replace('-', '_')}.json"


def _command(experiment: str, profile: str, device: str | None) -> str:
    return (f"python -m nullspace_utils.experiments {experiment} --profile {profile}"
            + (f" --device {device}" if device else ""))


def chapter_result(experiment: str, profile: str, *, device: str | None = "cuda") -> dict | None:
    """The result file of ``experiment`` that a chapter plots, after printing where it came from
    (command, device, versions, commit); ``None``, after printing how to make it (on ``device``), when it
    does not exist, or after printing why, when it cannot be read (the library installed without the
    repository, and no network): the chapter's other cells still run."""
    try:
        result = load_result(result_file(experiment, profile), missing_ok=True)
    except FileNotFoundError as error:
        print(f"{error}\nThe cells that show it are skipped. The command that makes it:\n"
              f"    {_command(experiment, profile, device)}")
        return None
    if result is None:
        print(how_to_produce(experiment, profile, device=device))
        return None
    made = result["provenance"]
    print(f"made by: {made['command']}\non {made['device']}, torch {made['torch']}, timm {made['timm']}, "
          f"commit {made['commit'][:10]}")
    return result


def how_to_produce(experiment: str, profile: str, *, device: str | None = "cuda") -> str:
    """What a chapter prints when a result file of ``profile`` does not exist yet."""
    where = "on a GPU " if device == "cuda" else ""
    return (f"No results of the {profile!r} profile for this part yet. Produce them {where}with\n"
            f"    {_command(experiment, profile, device)}\n"
            f"which writes {result_file(experiment, profile)}; then run this chapter again.")


def watermark_mark(image_size: int) -> torch.Tensor:
    """The watermark used by the chapter and the experiments: rotated text."""
    from nullspace_utils.watermark import text_mark

    return text_mark("NULL", image_size, angle=20)


def run_watermark(args: argparse.Namespace, argv: list[str]) -> dict:
    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import get_profile
    from nullspace_utils.watermark import evaluate

    models.disable_tf32()
    profile = get_profile(args.profile)
    dataset = profile.dataset("val", n=args.n)
    images, _ = stack_dataset(dataset)
    mark = watermark_mark(profile.image_size)
    out: dict = {"provenance": _provenance(argv), "profile": profile.name, "images": len(images),
                 "mark": "text 'NULL', rotated 20 degrees", "p": 1, "models": {}}
    for name in profile.vit_models:
        model = profile.load_model(name, device=args.device)
        started = time.perf_counter()
        full = evaluate(model, images, mark, device=args.device)
        seconds = time.perf_counter() - started
        check = evaluate(model, images[:WATERMARK_CHECK_IMAGES], mark, device=args.device)
        out["models"][name] = {"all": full, "seconds": seconds, "check": check}
        print(name, f"{seconds:.1f} s", json.dumps(full["exact"]), flush=True)
    return out


def run_watermark_slsqp(args: argparse.Namespace, argv: list[str]) -> dict:
    """The paper's solver stopped early (SLSQP, few iterations) on a few images: does the prediction survive?"""
    import warnings

    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import get_profile
    from nullspace_utils.watermark import compare_predictions, embed

    profile = get_profile(args.profile)
    images, _ = stack_dataset(profile.dataset("val", n=args.n or 4))
    mark = watermark_mark(profile.image_size)
    model = profile.load_model(profile.vit_models[0])
    out: dict = {"provenance": _provenance(argv), "profile": profile.name, "model": profile.vit_models[0],
                 "images": len(images), "maxiter": args.maxiter, "p": 1}
    optimum = embed(model, images, mark)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        early = embed(model, images, mark, solver="slsqp", maxiter=args.maxiter)
    out["seconds"] = time.perf_counter() - started
    out["objective_gap_percent"] = (100 * (early.objective.sum() / optimum.objective.sum() - 1)).item()
    out["embedding_residual"] = early.embedding_residual
    out["predictions"] = compare_predictions(model, images, early.image)
    print(json.dumps(out, indent=1), flush=True)
    return out


#: Sweep settings per profile. ``imagenet`` is the authors' follow-up code's recipe (SGD lr 0.01,
#: 500 steps, x0.1 at 150/300/400, batch 256). ``teaching`` keeps its schedule shape (decays at 30/60/80 %
#: of the steps) but is sized to run on a 2-core CPU (no GPU was lent when it was made) and uses lr 1.0:
#: the loss sums over 10 logits instead of 1000, and at lr 0.01 the noise barely moves in 200 steps (batch
#: loss 5.5 -> 4.2, norm -0.3 %; lr 1.0: 5.5 -> 0.7; the ``lr_probe`` rows of the result file measure this).
APPROXIMATE_CONFIG = {
    "teaching": {"lims": (0.1, 0.5, 1.0, 1.5, 2.0, 3.0), "steps": 200, "milestones": (60, 120, 160), "lr": 1.0,
                 "batch_size": 64, "train": 2_000, "val": 500, "probe_lim": 2.0, "probe_lrs": (0.01, 0.1, 1.0, 10.0)},
    "imagenet": {"lims": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0), "steps": 500, "milestones": (150, 300, 400),
                 "lr": 0.01, "batch_size": 256, "train": 9_469, "val": 3_925, "probe_lim": 1.0,
                 "probe_lrs": (0.01, 0.1, 1.0)},
}
#: the cheap sweep point a test recomputes on the CPU
APPROXIMATE_CHECK = {"model_index": 0, "lim": 2.0, "steps": 20, "milestones": (10,), "lr": 1.0, "batch_size": 32,
                     "train": 64, "val": 64}


def approximate_point(model, train, val, *, lim: float, keep_norm: bool, steps: int, batch_size: int,
                      lr: float, milestones: tuple[int, ...], device: str) -> dict:
    """Learn one encoder-level noise and evaluate it, learned and shuffled (one point of paper Fig. 2)."""
    from dataclasses import asdict

    from nullspace_utils.approximate import evaluate_noise, learn_noise

    result = learn_noise(model, train, level="encoder", lim=lim, steps=steps, batch_size=batch_size, lr=lr,
                         milestones=milestones, keep_norm=keep_norm, device=device, progress=False)
    learned = evaluate_noise(model, val, result.noise, level="encoder", device=device)
    shuffled = evaluate_noise(model, val, result.noise, level="encoder", shuffle=True, device=device)
    return {"lim": lim, "keep_norm": keep_norm, "lr": lr, "initial_norm": result.initial_norm,
            "final_norm": result.norm, "first_loss": result.history[0]["loss"],
            "final_loss": result.history[-1]["loss"], "learned": asdict(learned), "shuffled": asdict(shuffled)}


def _stack_range(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Items start..stop-1 of a dataset as numpy arrays (workers stay off torch's thread pool,
    which can deadlock in forked children)."""
    dataset, start, stop = job
    items = [dataset[i] for i in range(start, stop)]
    return np.stack([image.numpy() for image, _ in items]), np.array([label for _, label in items])


def _as_uint8_if_exact(images: torch.Tensor) -> torch.Tensor:
    """``images`` as uint8 when that loses nothing (every value is k/255, as ``ToTensor`` makes from a
    decoded JPEG), else unchanged. ImageNette's train split as float32 at 224 px takes 5.7 GB; as uint8,
    1.4 GB, which leaves room on a 16 GB GPU. Batches turn back into the same floats (``_TensorBatches``)."""
    quantised = (images * 255).round().clamp(0, 255).to(torch.uint8)
    return quantised if torch.equal(quantised.float().div(255), images) else images


def _tensor_dataset(profile, split: str, n: int, device: str):
    """The split rendered once (in parallel over all CPU cores) as a TensorDataset on ``device``."""
    import multiprocessing

    from torch.utils.data import DataLoader, TensorDataset

    dataset = profile.dataset(split, n=n)
    if profile.name != "teaching":  # decoded JPEGs through torchvision transforms: DataLoader workers
        loader = DataLoader(dataset, batch_size=128, num_workers=min(8, multiprocessing.cpu_count()))
        images, labels = [], []
        for batch, label in loader:
            images.append(_as_uint8_if_exact(batch))
            labels.append(label)
        if any(batch.dtype != torch.uint8 for batch in images):  # a transform that is not 8-bit: keep floats
            images = [batch.float().div(255) if batch.dtype == torch.uint8 else batch for batch in images]
        return TensorDataset(torch.cat(images).to(device), torch.cat(labels).long().to(device))
    n = len(dataset)
    jobs = [(dataset, start, min(start + 500, n)) for start in range(0, n, 500)]
    with multiprocessing.Pool(min(len(jobs), multiprocessing.cpu_count())) as pool:
        parts = pool.map(_stack_range, jobs)
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = torch.from_numpy(np.concatenate([labels for _, labels in parts])).long()
    return TensorDataset(images.to(device), labels.to(device))


def _write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def _sweep_setup(args: argparse.Namespace, configs: dict, check: dict):
    """Profile, settings and the four datasets (train, val and the check point's small ones) of a sweep.

    TF32 is switched off (it would swamp the small logit changes we measure). Images are rendered on the
    CPU (forked workers) before anything initialises CUDA, then moved to ``args.device``.
    """
    from torch.utils.data import TensorDataset

    from nullspace_utils.profiles import get_profile

    models.disable_tf32()
    profile = get_profile(args.profile)
    config = dict(configs[profile.name])
    if args.steps:  # the lr decays stay at the same fractions of the run
        config["milestones"] = tuple(round(m * args.steps / config["steps"]) for m in config["milestones"])
        config["steps"] = args.steps
        if "probe_steps" in config:  # a learning-rate probe no longer than the run itself
            config["probe_steps"] = min(config["probe_steps"], args.steps)
    datasets = [_tensor_dataset(profile, split, n, "cpu") for split, n in
                (("train", config["train"]), ("val", config["val"]), ("train", check["train"]), ("val", check["val"]))]
    return profile, config, [TensorDataset(*(t.to(args.device) for t in d.tensors)) for d in datasets]


def run_approximate(args: argparse.Namespace, argv: list[str]) -> dict:
    """Paper Fig. 2: learned encoder-level noise against lim for the profile's three ViTs.

    Rows: every ViT x lim (plain SGD), ViT-S again with ``keep_norm`` (the noise cannot shrink), and an
    lr probe on ViT-S. Partial results are written after every row, so a run cut short keeps its rows.
    """
    profile, config, (train, val, small_train, small_val) = _sweep_setup(args, APPROXIMATE_CONFIG, APPROXIMATE_CHECK)
    out: dict = {"provenance": _provenance(argv), "profile": profile.name, "level": "encoder",
                 "config": config, "loss": "squared L2 between logits, summed over classes, mean over the batch",
                 "optimizer": "SGD, lr x0.1 at the milestones", "models": {}, "keep_norm": {}, "lr_probe": []}
    schedule = {"steps": config["steps"], "batch_size": config["batch_size"], "milestones": config["milestones"]}

    def point(model, lim: float, keep_norm: bool, lr: float) -> dict:
        started = time.perf_counter()
        row = approximate_point(model, train, val, lim=lim, keep_norm=keep_norm, lr=lr, device=args.device,
                                **schedule)
        row["seconds"] = time.perf_counter() - started
        print(model.name, json.dumps({k: row[k] for k in ("lim", "keep_norm", "lr", "initial_norm", "final_norm")}),
              f"match {row['learned']['match']:.3f} shuffled {row['shuffled']['match']:.3f}",
              f"{row['seconds']:.0f} s", flush=True)
        return row

    for index, name in enumerate(profile.vit_models):
        model = profile.load_model(name, device=args.device)
        out["models"][name] = []
        for lim in config["lims"]:
            out["models"][name].append(point(model, lim, False, config["lr"]))
            _write_json(args.out, out)
        if index == 0:
            out["keep_norm"][name] = []
            for lim in config["lims"]:
                out["keep_norm"][name].append(point(model, lim, True, config["lr"]))
                _write_json(args.out, out)
            for lr in config["probe_lrs"]:
                out["lr_probe"].append({"model": name, **point(model, config["probe_lim"], False, lr)})
                _write_json(args.out, out)
    check = APPROXIMATE_CHECK
    check_model = profile.load_model(profile.vit_models[check["model_index"]], device=args.device)
    out["check"] = {**check, "result": approximate_point(
        check_model, small_train, small_val, lim=check["lim"], keep_norm=False, steps=check["steps"],
        batch_size=check["batch_size"], lr=check["lr"], milestones=check["milestones"], device=args.device)}
    return out


#: Robustness sweep settings (paper §5, Fig. 3) per profile: the approximate sweep's schedule, but the SGD rate
#: is chosen per model, level and lim from ``lrs`` by a ``probe_steps`` run on training images
#: (:func:`nullspace_utils.robustness.choose_lr`): a CPU probe found the best input-level rate 0.03 for the zoo's
#: ViT-B/L and 0.3 for its ResNet, and the approximate sweep's 1.0 diverges at the input for every model.
ROBUSTNESS_CONFIG = {
    # run on one GPU (a few minutes)
    "teaching": {"lims": (0.05, 0.1, 0.25, 0.5, 1.0), "steps": 200, "milestones": (60, 120, 160),
                 "lrs": {"encoder": (0.3, 1.0, 3.0), "input": (0.01, 0.03, 0.1, 0.3)}, "probe_steps": 40,
                 "batch_size": 64, "train": 2_000, "val": 500},
    "imagenet": {"lims": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0), "steps": 500, "milestones": (150, 300, 400),
                 "lrs": {"encoder": (0.003, 0.01, 0.03), "input": (0.003, 0.01, 0.03)}, "probe_steps": 50,
                 "batch_size": 256, "train": 9_469, "val": 3_925},
}
#: the cheap robustness point a test recomputes on the CPU (a fixed rate: no probe)
ROBUSTNESS_CHECK = {"cnn_index": 2, "level": "input", "lim": 0.1, "steps": 10, "milestones": (5,),
                    "lr": 0.1, "batch_size": 32, "train": 64, "val": 64}


def run_robustness(args: argparse.Namespace, argv: list[str]) -> dict:
    """Paper Fig. 3: (a) encoder noise for ViTs, input noise for CNNs; (b) input noise for all six; (c) every
    model's input noise on every model (the paper shows ViT-S's row) and ViT-S's exact nullspace noise on every
    model; learned noises come with shuffled and uniform references."""
    from nullspace_utils import robustness

    profile, config, (train, val, small_train, small_val) = _sweep_setup(args, ROBUSTNESS_CONFIG, ROBUSTNESS_CHECK)
    out: dict = {"provenance": _provenance(argv), "profile": profile.name, "config": config,
                 "encoder": {}, "input": {}, "transfer": {}, "exact_transfer": {}}
    schedule = {key: config[key] for key in ("steps", "milestones", "batch_size")}
    models_ = {name: profile.load_model(name, device=args.device) for name in profile.models}
    source = profile.vit_models[0]
    input_noises: dict[float, dict[str, torch.Tensor]] = {lim: {} for lim in config["lims"]}
    for name, model in models_.items():
        for level in (("encoder", "input") if name in profile.vit_models else ("input",)):
            out[level][name] = []
            for lim in config["lims"]:
                lr, probe = robustness.choose_lr(model, train, level=level, lim=lim, lrs=tuple(config["lrs"][level]),
                                                 steps=config["probe_steps"], batch_size=config["batch_size"],
                                                 device=args.device)
                row, noise = robustness.robustness_point(model, train, val, level=level, lim=lim, lr=lr,
                                                         device=args.device, **schedule)
                out[level][name].append({**row, "lr_probe": probe})
                if level == "input":
                    input_noises[lim][name] = noise.to(args.device)
                print(name, level, lim, f"lr {lr} match {row['learned']['match']:.3f} shuffled {row['shuffled']['match']:.3f} "
                      f"uniform {row['uniform']['match']:.3f}", flush=True)
                _write_json(args.out, out)
    for lim, noises in input_noises.items():  # transfer[lim][source][target]: every model's input noise on every model
        out["transfer"][str(lim)] = robustness.transfer_matrix(models_, noises, val, device=args.device)
        out["exact_transfer"][str(lim)] = robustness.exact_transfer(models_[source], models_, val, amplitude=lim,
                                                                    device=args.device)
    _write_json(args.out, out)
    check = ROBUSTNESS_CHECK
    row, _ = robustness.robustness_point(  # the profile's third CNN (MobileNetV3), already loaded
        models_[profile.cnn_models[check["cnn_index"]]], small_train, small_val, level=check["level"],
        lim=check["lim"], steps=check["steps"], lr=check["lr"], milestones=check["milestones"],
        batch_size=check["batch_size"], device=args.device)
    out["check"] = {**check, "result": row}
    return out


#: Fingerprint experiments (paper §9's "patenting", made a test; see nullspace_utils.fingerprint)
FINGERPRINT_CONFIG = {
    "teaching": {"n_probes": 16, "amplitude": 0.25, "fingerprints": 8, "tol": 1e-3, "bisection_steps": 14,
                 "fine_tune": {"images": 2_000, "steps": 200, "batch_size": 32,
                               "checkpoints": (0, 1, 2, 5, 10, 20, 50, 100, 200),
                               "lr": {"all": 1e-4, "patch_embed": 1e-4, "head": 1e-3}},
                 "sigmas": (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1), "val": 500},
    "imagenet": {"n_probes": 32, "amplitude": 0.1, "fingerprints": 4, "tol": 1e-3, "bisection_steps": 14,
                 "fine_tune": {"images": 2_000, "steps": 200, "batch_size": 32,
                               "checkpoints": (0, 1, 2, 5, 10, 20, 50, 100, 200),
                               "lr": {"all": 1e-5, "patch_embed": 1e-5, "head": 1e-3}},
                 "sigmas": (0.0, 1e-4, 1e-3, 1e-2, 3e-2), "val": 500},
}
#: the cheap point a test recomputes on the CPU: fine-tuning everything for a few steps, logits access
FINGERPRINT_CHECK = {"part": "all", "step": 5, "fingerprint_seed": 0}


#: Suspects whose answers depend on the CPU's kernels, not only on the weights: float16 rounding on the CPU
#: and dynamic int8 quantisation (its scales are computed per batch by backend kernels) change which probes
#: keep their answer between machines, thread counts and BLAS builds (measured: an int8 copy kept 12/16
#: label probes on one machine and 14/16 on another). Chapters print their counts from result files,
#: with the machine that made them, never live.
BACKEND_DEPENDENT_SUSPECTS = ("float16 copy", "int8 copy")


def fingerprint_suspects(profile, owner) -> dict[str, tuple[torch.nn.Module, bool]]:
    """The chapter's suspects, name -> (model, derived from the owner's?): the owner, an exact copy (a
    safetensors round trip), float16 and int8 copies; independently trained models of the same
    architecture (teaching: the zoo's extra seeds), the other widths and the CNNs."""
    import copy
    import tempfile
    import warnings

    from safetensors.torch import load_file, save_file

    suspects: dict[str, tuple[torch.nn.Module, bool]] = {"owner": (owner, True)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.safetensors"
        save_file({k: v.contiguous() for k, v in owner.net.state_dict().items()}, str(path))
        duplicate = copy.deepcopy(owner)
        duplicate.net.load_state_dict(load_file(str(path)))
    suspects["exact copy"] = (duplicate, True)
    suspects["float16 copy"] = (copy.deepcopy(owner).half(), True)
    with warnings.catch_warnings():  # torch.ao's deprecation notice: the API still works in torch 2.14
        warnings.simplefilter("ignore")
        # dynamic int8 kernels exist for the CPU only, so this copy computes there whatever the owner's device
        suspects["int8 copy"] = (torch.ao.quantization.quantize_dynamic(copy.deepcopy(owner).cpu(), {torch.nn.Linear},
                                                                        dtype=torch.qint8), True)
    if profile.name == "teaching":
        for path in sorted((models.ZOO_DIR / "seeds").glob("*.safetensors")):
            suspects[path.stem] = (models.load_model(profile.vit_models[0], weights=path), False)
    for name in (*profile.vit_models[1:], *profile.cnn_models):
        suspects[name] = (profile.load_model(name), False)
    return suspects


def fingerprint_points(fingerprint, model, *, config: dict) -> dict[str, dict]:
    """:func:`fingerprint_point` for every kind of access (logits, probs, label)."""
    from nullspace_utils.fingerprint import OUTPUTS

    return {output: fingerprint_point(fingerprint, model, output=output, config=config) for output in OUTPUTS}


def fingerprint_point(fingerprint, model, *, output: str, config: dict) -> dict:
    """One verification, JSON-ready: kept / n, p-value, median and largest per-probe change, queries."""
    from nullspace_utils import fingerprint as fp

    result = fp.verify(fingerprint, fp.as_query(model, output), output=output, tol=config["tol"],
                       bisection_steps=config["bisection_steps"])
    changes = result.changes[~result.changes.isnan()]
    return {"kept": result.kept, "n": result.n, "p_value": result.p_value, "is_yours": result.is_yours,
            "median_change": float(changes.median()) if len(changes) else None,
            "max_change": float(changes.max()) if len(changes) else None, "queries": result.queries}


def run_fingerprint(args: argparse.Namespace, argv: list[str]) -> dict:
    """Fingerprint chapter: every suspect x output x fingerprint seed; the fade under fine-tuning (everything,
    only the head, only the patch embedding) against steps; the input-noise defence against sigma."""
    from nullspace_utils import fingerprint as fp
    from nullspace_utils.data import stack_dataset
    from nullspace_utils.profiles import get_profile

    profile = get_profile(args.profile)
    config = FINGERPRINT_CONFIG[profile.name]
    owner = profile.load_model(profile.vit_models[0])
    val_images, val_labels = stack_dataset(profile.dataset("val", n=config["val"]))
    new_images, new_labels = stack_dataset(profile.dataset("test", n=config["fine_tune"]["images"]))
    fingerprints = [fp.make_fingerprint(owner, n_probes=config["n_probes"], amplitude=config["amplitude"], seed=seed,
                                        images=val_images) for seed in range(config["fingerprints"])]
    out: dict = {"provenance": _provenance(argv), "profile": profile.name, "config": config, "owner": owner.name,
                 "suspects": {}, "fade": {}, "defence": []}
    for name, (model, derived) in fingerprint_suspects(profile, owner).items():
        out["suspects"][name] = {"derived": derived, "accuracy": fp.accuracy(model, val_images, val_labels)}
        for output in fp.OUTPUTS:
            out["suspects"][name][output] = [fingerprint_point(f, model, output=output, config=config)
                                             for f in fingerprints]
        print(name, {o: [p["kept"] for p in out["suspects"][name][o]] for o in fp.OUTPUTS}, flush=True)
        _write_json(args.out, out)
    tune = config["fine_tune"]
    for part in ("all", "head", "patch_embed"):
        rows = []
        for step, thief in fp.fine_tune(owner, new_images, new_labels, part=part, steps=tune["steps"],
                                        lr=tune["lr"][part], checkpoints=tuple(tune["checkpoints"]),
                                        batch_size=tune["batch_size"], reset_head=part == "head"):
            row = {"step": step, "accuracy": fp.accuracy(thief, val_images, val_labels),
                   **fingerprint_points(fingerprints[0], thief, config=config)}
            rows.append(row)
            print(part, step, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS}, flush=True)
        out["fade"][part] = rows
        _write_json(args.out, out)
    for sigma in config["sigmas"]:
        defended = fp.NoisyInput(owner, sigma)
        row = {"sigma": sigma, "accuracy": fp.accuracy(defended, val_images, val_labels),
               **fingerprint_points(fingerprints[0], defended, config=config)}
        out["defence"].append(row)
        print("sigma", sigma, row["accuracy"], {o: row[o]["kept"] for o in fp.OUTPUTS}, flush=True)
    out["check"] = {**FINGERPRINT_CHECK, "result": fingerprint_check(owner, fingerprints[0], new_images, new_labels,
                                                                     config)}
    return out


def fingerprint_check(owner, fingerprint, images, labels, config: dict) -> dict:
    """The cheap point: fine-tune everything for FINGERPRINT_CHECK['step'] steps, verify with logits."""
    from nullspace_utils import fingerprint as fp

    tune, check = config["fine_tune"], FINGERPRINT_CHECK
    for _, thief in fp.fine_tune(owner, images, labels, part=check["part"], steps=check["step"],
                                 lr=tune["lr"][check["part"]], batch_size=tune["batch_size"]):
        return fingerprint_point(fingerprint, thief, output="logits", config=config)
    raise AssertionError("fine_tune yielded nothing")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m nullspace_utils.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    wm = sub.add_parser("watermark", help="evaluate output-preserving watermarks on the val split (paper A.2)")
    wm.add_argument("--profile", default="teaching")
    wm.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    wm.add_argument("--n", type=int, default=None, help="number of val images (default: the whole split)")
    wm.add_argument("--out", type=Path, default=None)
    early = sub.add_parser("watermark-slsqp", help="the paper's SLSQP stopped early, on a few images (CPU, slow)")
    early.add_argument("--profile", default="teaching")
    early.add_argument("--n", type=int, default=4)
    early.add_argument("--maxiter", type=int, default=3)
    early.add_argument("--out", type=Path, default=None)
    for name, description in (("approximate", "learned encoder-level noise against lim for the profile's ViTs (Fig. 2)"),
                              ("robustness", "ViTs vs CNNs under learned noise, and transfer (Fig. 3)")):
        sweep = sub.add_parser(name, help=description)
        sweep.add_argument("--profile", default="teaching")
        sweep.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        sweep.add_argument("--steps", type=int, default=None, help="override the profile's number of SGD steps")
        sweep.add_argument("--out", type=Path, default=None)
    finger = sub.add_parser("fingerprint", help="verify the owner's fingerprint on copies, thieves' models and "
                                                "unrelated models (paper §9; CPU, a few minutes)")
    finger.add_argument("--profile", default="teaching")
    finger.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    runners = {"watermark": run_watermark, "watermark-slsqp": run_watermark_slsqp, "approximate": run_approximate,
               "robustness": run_robustness, "fingerprint": run_fingerprint}
    args.out = args.out or REPOSITORY_ROOT / result_file(args.experiment, args.profile)  # partial results go there too
    result = runners[args.experiment](args, argv)
    _write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
