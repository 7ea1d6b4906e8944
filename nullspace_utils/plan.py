"""Every result file of a profile from one resumable command (``python -m nullspace_utils.experiments all``).

The plan is a list of :class:`Part` objects: one ``experiments`` command each (a study, one model or seed of a
sweep, or the ``merge`` that joins a sweep's parts), the parts it needs first, and the files it publishes into
``book/results/<profile>/`` when it finishes. :func:`run_plan` runs the parts in order of their needs, one process
per device slot (several GPUs: one part per GPU at a time), and records each finished part in a manifest
(``plan.json`` in the work folder). A part is skipped when the manifest says it finished with the same key: the
same command, the same library source (:func:`code_version`) and the same keys of the parts it needs; so a
changed setting re-runs its part and every part after it, and an interruption loses at most the parts running.
A failed part is reported with its log, the parts that need it are not run, and the others go on.

Every part writes into the work folder first (a part cut short leaves only its own partial file there); the
finished result is then copied into ``book/results/<profile>/`` all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from nullspace_utils import approximate
from nullspace_utils.files import REPOSITORY_ROOT, atomic_write
from nullspace_utils.profiles import TENSOR_CACHE_VARIABLE, Profile

__all__ = ["Part", "PlanReport", "LIM_SPLITS", "lim_groups", "study_plan", "code_version", "part_keys", "Estimate", "StepCost", "part_work",
           "part_weights",
           "measure_step_cost", "estimate_plan", "describe_plan", "run_plan", "start_part", "DEVICE", "CPU_SLOT", "WORKERS", "cpu_workers"]

#: the placeholder of a part's command for the device its slot gives it (``cuda:1``, ``cpu``)
DEVICE = "{device}"
#: the slot of the parts that compute on the CPU (their commands have no ``{device}``)
CPU_SLOT = "cpu (CPU part)"
#: the placeholder of a CPU part's worker processes (:func:`cpu_workers`)
WORKERS = "{workers}"


def cpu_workers(devices: Sequence[str], cores: int | None = None) -> int:
    """The worker processes a CPU part (the SLSQP solves) is given beside ``devices``' parts: the machine's
    ``cores`` less two per device slot (a GPU part's process and its data loading), at least one. The results do
    not depend on it: each image is solved alone."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores - 2 * sum(1 for device in devices if device != "cpu"))


@dataclass(frozen=True)
class Part:
    """One step of the plan: its ``name``, the ``experiments`` command line ``argv`` (``{device}`` stands for the
    slot's device; ``{work}`` for the work folder), the names of the parts it ``needs`` first, and the files it
    ``publishes`` (paths relative to the work folder, copied to the same name in the results folder when it
    finishes). A part whose command has no ``{device}`` computes on the CPU and runs beside the device's parts, one
    at a time. ``command``: a whole command instead of ``python -m nullspace_utils.experiments argv`` (tests)."""

    name: str
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()
    publishes: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None

    @property
    def uses_device(self) -> bool:
        """Whether the part computes on the slot's device (else on the CPU, in the CPU slot)."""
        return any(DEVICE in word for word in (self.command or self.argv))

    def command_line(self, device: str, work: Path, workers: int = 1) -> list[str]:
        """The process to start for this part on ``device``, with the work folder ``work`` and ``workers`` worker
        processes where its command asks (``{workers}``)."""
        words = self.command or (sys.executable, "-m", "nullspace_utils.experiments", *self.argv)
        return [word.replace(DEVICE, device).replace("{work}", str(work)).replace(WORKERS, str(workers))
                for word in words]


@dataclass
class PlanReport:
    """What :func:`run_plan` did: parts ``done`` in this run, ``skipped`` (finished before, same key), ``failed``
    (with the log to read), ``not_run`` (a part they need failed, or the run was interrupted), the seconds each
    finished part took, and the signal that stopped the run."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    stopped_by: int = 0  # the signal that interrupted the run (SIGINT, SIGTERM), 0 if none

    @property
    def interrupted(self) -> bool:
        return self.stopped_by != 0

    @property
    def exit_code(self) -> int:
        """The command's exit status: 128 + the signal when interrupted (130 for Ctrl-C, 143 for SIGTERM), 1 when
        a part failed or was not run, else 0."""
        if self.interrupted:
            return 128 + self.stopped_by
        return 1 if self.failed or self.not_run else 0

    def summary(self) -> str:
        """One line per outcome, for the one who ran the command."""
        lines = [f"done: {len(self.done)}, skipped (finished before, same settings and code): {len(self.skipped)}, "
                 f"failed: {len(self.failed)}, not run: {len(self.not_run)}"]
        lines += [f"failed: {name} (its log: {log})" for name, log in self.failed.items()]
        if self.not_run:
            lines.append(f"not run: {', '.join(self.not_run)}")
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume; finished parts are skipped.")
        return "\n".join(lines)


#: The sweep parts whose lims are split over several parts, per profile: (study, model) -> number of parts. Each was
#: estimated above 500 s on one H100 as one part (``benchmarks/results/plan_estimate_gpu.json``, ``after_clean_once``:
#: ViT-S/32 and ViT-L/32 at the encoder 507 s and 1221 s; at the input ViT-L/32 1112 s, ResNet-50 752 s,
#: EfficientNet-B0 706 s). A part that long is lost whole when interrupted, sets the least time of a run on several
#: GPUs (the longest part), and does not fit one 600 s call of the lent GPU machines, where every part is to be run
#: in full once. The results do not change: a point depends on its lim and seeds alone.
LIM_SPLITS: dict[str, dict[tuple[str, str], int]] = {
    "teaching": {},
    "imagenet": {("approximate", "vit_small_patch32_224"): 2, ("approximate", "vit_large_patch32_224"): 3,
                 ("robustness", "vit_large_patch32_224"): 3, ("robustness", "resnet50"): 2,
                 ("robustness", "efficientnet_b0"): 2},
}


def lim_groups(lims: Sequence[float], parts: int) -> list[tuple[float, ...]]:
    """``lims`` in ``parts`` consecutive groups as even as can be, the longer ones first (8 in 3: 3, 3, 2)."""
    if not 1 <= parts <= len(lims):
        raise ValueError(f"cannot split {len(lims)} lims into {parts} parts; give 1 to {len(lims)}.")
    size, longer = divmod(len(lims), parts)
    groups, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < longer else 0)
        groups.append(tuple(lims[start:end]))
        start = end
    return groups


def _sweep(study: str, models: Sequence[str], profile: str, lims: Sequence[float],
           splits: dict[tuple[str, str], int]) -> list[Part]:
    """A learned-noise sweep (§4 approximate, §5 robustness) as one part per model, or per group of its listed
    ``lims`` where ``splits`` says so (:data:`LIM_SPLITS`), and the merge that joins them."""
    parts = []
    for model in models:
        common = (study, "--profile", profile, "--device", DEVICE, "--models", model)
        count = splits.get((study, model), 1)
        if count == 1:
            parts.append(Part(f"{study}/{model}", (*common, "--out", f"{{work}}/parts/{study}_{model}.json")))
            continue
        for group in lim_groups(lims, count):
            span = f"lims-{group[0]:g}-{group[-1]:g}" if len(group) > 1 else f"lims-{group[0]:g}"
            parts.append(Part(f"{study}/{model}/{span}", (*common, "--lims", *(f"{lim:g}" for lim in group),
                                                           "--out", f"{{work}}/parts/{study}_{model}_{span}.json")))
    merge = Part(f"{study}/merge", ("merge", study, *(part.argv[-1] for part in parts), "--device", DEVICE,
                                    "--out", f"{{work}}/{study}.json"),
                 needs=tuple(part.name for part in parts), publishes=(f"{study}.json",))
    return [*parts, merge]


def _finetune(profile: Profile, seeds: Sequence[int], lims: Sequence[float]) -> list[Part]:
    """The fine-tuning sweep as ``scripts/finetune_sweep.sh`` splits it (untuned; plain per seed; nullspace and
    gaussian per seed and lim), its merge, and the CPU "-C" pass over the merged result."""
    common = ("finetune", "--profile", profile.name, "--device", DEVICE, "--weights", "{work}/finetune")
    splits: list[tuple[str, tuple[str, ...]]] = [("untuned", ("--methods", "untuned"))]
    for seed in seeds:
        splits.append((f"plain-s{seed}", ("--seeds", str(seed), "--methods", "plain")))
        splits += [(f"lim{lim:g}-s{seed}", ("--seeds", str(seed), "--lims", f"{lim:g}", "--methods", "nullspace",
                                            "gaussian")) for lim in lims]
    parts = [Part(f"finetune/{name}", (*common, *options, "--out", f"{{work}}/parts/finetune_{name}.json"))
             for name, options in splits]
    merge = Part("finetune/merge", ("merge", "finetune", *(part.argv[-1] for part in parts), "--device", DEVICE,
                                    "--out", "{work}/finetune.json"),
                 needs=tuple(part.name for part in parts),
                 publishes=("finetune.json", *(f"finetune/{model}-s{seeds[0]}.safetensors"
                                               for model in _finetuned_names(lims))))
    corruptions = Part("finetune-corruptions", ("finetune-corruptions", "--profile", profile.name, "--device", "cpu",
                                                "--sweep", "{work}/finetune.json", "--weights", "{work}/finetune",
                                                "--out", "{work}/finetune_corruptions.json"),
                       needs=("finetune/merge",), publishes=("finetune_corruptions.json",))
    return [*parts, merge, corruptions]


def _finetuned_names(lims: Sequence[float]) -> list[str]:
    """The weight files' stems of one seed's fine-tuned models (as ``studies.finetune`` names them)."""
    return ["plain", *(f"{method}-lim{lim:g}" for lim in lims for method in ("nullspace", "gaussian"))]


def study_plan(profile: Profile, *, only: Sequence[str] | None = None) -> list[Part]:
    """Every part that writes a result file a chapter of ``profile`` reads, in an order that respects their
    needs: the A.2 watermark evaluation, the §4 and §5 sweeps (one part per model, then ``merge``), §5's transfer
    over seeds, the paper's watermark procedure and the maximal-noise script (CPU), the §9 fingerprints (CPU) and
    the fine-tuning sweep with its -C pass. ``only``: these studies (``approximate``, ``robustness``, ...) alone."""
    from nullspace_utils.studies import approximate as approximate_study
    from nullspace_utils.studies import finetune as finetune_study
    from nullspace_utils.studies import robustness as robustness_study

    name = profile.name
    tune = finetune_study.SETTINGS[name]
    splits = LIM_SPLITS.get(name, {})
    studies = {
        "watermark": [Part("watermark", ("watermark", "--profile", name, "--device", DEVICE,
                                         "--out", "{work}/watermark.json"), publishes=("watermark.json",))],
        "approximate": _sweep("approximate", profile.vit_models, name, approximate_study.SETTINGS[name].lims, splits),
        "robustness": [*_sweep("robustness", profile.vit_models + profile.cnn_models, name,
                               robustness_study.SETTINGS[name].lims, splits),
                       Part("robustness-transfer", ("robustness-transfer", "--profile", name, "--device", DEVICE,
                                                    "--sweep", "{work}/robustness.json",
                                                    "--out", "{work}/robustness_transfer.json"),
                            needs=("robustness/merge",), publishes=("robustness_transfer.json",))],
        "watermark-slsqp": [Part("watermark-slsqp", ("watermark-slsqp", "--profile", name, "--workers", WORKERS,
                                                     "--out", "{work}/watermark_slsqp.json"),
                                 publishes=("watermark_slsqp.json",))],
        "watermark-max-noise": [Part("watermark-max-noise", ("watermark-max-noise", "--profile", name,
                                                             "--workers", WORKERS,
                                                             "--out", "{work}/watermark_max_noise.json"),
                                     publishes=("watermark_max_noise.json",))],
        "fingerprint": [Part("fingerprint", ("fingerprint", "--profile", name, "--out", "{work}/fingerprint.json"),
                             publishes=("fingerprint.json",))],
        "finetune": _finetune(profile, tune.seeds, tune.lims),
    }
    unknown = sorted(set(only or ()) - set(studies))
    if unknown:
        raise ValueError(f"--only: {', '.join(unknown)} is not a study of the plan; choose among {', '.join(studies)}.")
    return [part for study, parts in studies.items() if not only or study in only for part in parts]


def code_version(root: Path = REPOSITORY_ROOT / "nullspace_utils") -> str:
    """A hash of the library's Python sources: a part made by other code is not skipped (the commit alone would
    re-run everything after any commit, documentation included)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def part_keys(parts: Sequence[Part], version: str) -> dict[str, str]:
    """Each part's key: its command, the code ``version`` and the keys of the parts it needs (so a changed part
    changes every part after it). Raises ``ValueError`` for a part that needs one the plan lacks or one after it."""
    keys: dict[str, str] = {}
    for part in parts:
        missing = [need for need in part.needs if need not in keys]
        if missing:
            raise ValueError(f"plan: {part.name} needs {', '.join(missing)}, which the plan lacks or runs after it; "
                             "put the parts it needs before it.")
        text = json.dumps([list(part.command or part.argv), version, [keys[need] for need in part.needs]])
        keys[part.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return keys


def _read_manifest(work: Path) -> dict[str, Any]:
    path = work / "plan.json"
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["parts"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a plan manifest ({error}): delete it to run every part again.") from error


def _write_manifest(work: Path, finished: dict[str, Any]) -> None:
    with atomic_write(work / "plan.json") as temporary:
        temporary.write_text(json.dumps({"parts": finished}, indent=1) + "\n")


# --------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class Estimate:
    """A part's estimated seconds on a device: ``seconds`` for the work it is sure to do, ``upper`` with every lim
    a sweep may add; both ``None`` when the part's work is not counted (:func:`part_work`)."""

    seconds: float | None
    upper: float | None

    def text(self) -> str:
        if self.seconds is None:
            return "not estimated (its work is not counted; see its last run)"
        extra = f" (up to {self.upper:.0f} s if the sweep adds lims)" if self.upper and self.upper > self.seconds else ""
        return f"about {self.seconds:.0f} s{extra}"


def _option(argv: Sequence[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _values(argv: Sequence[str], name: str) -> list[str]:
    """The words after option ``name`` up to the next option (none when it is absent)."""
    if name not in argv:
        return []
    words = []
    for word in argv[argv.index(name) + 1:]:
        if word.startswith("--"):
            break
        words.append(word)
    return words


def part_work(part: Part, profile: Profile) -> tuple[Any, Any] | None:
    """The counted work (:class:`~nullspace_utils.studies.noise_sweep.Work`) of a learned-noise part, as
    (listed lims, the lims a sweep may add): a sweep's model (``approximate/<model>``, ``robustness/<model>``, or
    some of its lims), ``robustness-transfer``, or a part of the fine-tuning sweep (a rough count:
    :func:`~nullspace_utils.studies.finetune.work`), at the profile's settings (``--steps`` applied). ``None`` for
    the other parts."""
    from nullspace_utils.studies import approximate as approximate_study
    from nullspace_utils.studies import finetune as finetune_study
    from nullspace_utils.studies import noise_sweep
    from nullspace_utils.studies import robustness as robustness_study

    study, model = part.argv[0] if part.argv else "", _option(part.argv, "--models")
    steps = _option(part.argv, "--steps")
    lims = [float(word) for word in _values(part.argv, "--lims")] or None
    if study == "approximate" and model:
        settings = approximate_study.SETTINGS[profile.name].with_steps(int(steps) if steps else None)
        return approximate_study.work(settings, profile, model, lims)
    if study == "robustness" and model:
        settings = robustness_study.SETTINGS[profile.name].with_steps(int(steps) if steps else None)
        return robustness_study.work(settings, profile, model, lims)
    if study == "finetune" and "--methods" in part.argv:  # a part of the fine-tuning sweep
        tune = finetune_study.SETTINGS[profile.name]
        tune = dataclasses.replace(tune, steps=int(steps)) if steps else tune
        seeds = [int(word) for word in _values(part.argv, "--seeds")] or list(tune.seeds)
        return finetune_study.work(tune, _values(part.argv, "--methods"), seeds, lims or list(tune.lims))
    if study == "robustness-transfer":  # after the plan's merge, which saves the sweep's noises beside its file
        return (robustness_study.transfer_work(robustness_study.SETTINGS[profile.name], profile, reuse_noises=True),
                noise_sweep.NO_WORK)
    return None


@dataclass(frozen=True)
class StepCost:
    """Seconds of one learning step, of one float32 forward pass of a batch (clean or noisy, as a noise's
    evaluation runs them) and of one batch of the clean logits a learning call computes once where it does
    (:func:`~nullspace_utils.approximate.clean_logits_once`; 0 where the steps compute them) of a (model, level),
    measured on a device."""

    learn_step: float
    forward_batch: float
    clean_batch: float = 0.0


def _seconds(function: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure_step_cost(profile: Profile, model_name: str, level: str, batch_size: int, device: str,
                      steps: int = 4, seeds: int = 3) -> StepCost:
    """What one learning step and one float32 forward batch of ``model_name`` at ``level`` take on ``device``: each timed
    twice, with ``steps`` and with twice as many steps (batches), after a warm-up; the difference over ``steps`` is
    the cost per step, without the call's fixed cost (where a busy machine makes the difference not positive, the
    longer call's time over its steps). As the sweeps run them: learning in the default arithmetic
    (bf16 autocast on CUDA) with a point's ``seeds`` in one pass as far as
    :func:`~nullspace_utils.approximate.noises_per_pass` allows (a step's cost is one noise's share of that pass),
    and where the clean logits are computed once per call (CUDA), that pass apart, from one-step calls on
    ``steps`` and twice as many batches; evaluation in full float32. Untrained weights for timm models (the cost
    does not depend on them); random images of the profile's size."""
    from torch.utils.data import TensorDataset

    from nullspace_utils import models

    where = torch.device(device)
    pretrained = {} if model_name in models.ZOO else {"pretrained": False}
    model = profile.load_model(model_name, device=where, **pretrained)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2 * steps * batch_size, 3, profile.image_size, profile.image_size, generator=generator)
    labels = torch.zeros(len(images), dtype=torch.long)

    # on the device before anything is timed, as a sweep's data is (a copy from the host inside a timed call would
    # count as computing)
    images, labels = images.to(where), labels.to(where)
    dataset = {batches: TensorDataset(images[: batches * batch_size], labels[: batches * batch_size])
               for batches in (1, steps, 2 * steps)}

    together = min(seeds, approximate.noises_per_pass(None, batch_size, where))  # as a point learns its seeds

    def learn(count: int, batches: int = 1) -> None:  # one batch: a clean pass computed once costs the same
        approximate.learn_noises(model, dataset[batches], level=level, lim=0.1, seeds=range(together), steps=count,
                                 lr=0.1, milestones=(), batch_size=batch_size, device=where)

    def evaluate(count: int) -> None:  # the noisy passes alone: the clean one is computed beforehand
        approximate.evaluate_noise(model, dataset[count], noise, level=level, batch_size=batch_size, device=where,
                                   clean=cleans[count])

    with models.exact_float32():
        noise = approximate.uniform_noise(approximate.noise_shape(model, level, (profile.image_size,) * 2), 0.1, 0)
        cleans = {count: approximate.clean_pass(model, dataset[count], level=level, batch_size=batch_size,
                                                device=where) for count in (1, steps, 2 * steps)}
        learn(1)  # warm-up: kernels chosen, memory allocated
        evaluate(1)
        learn_step = _per_step(lambda: learn(steps), lambda: learn(2 * steps), steps, where) / together
        forward = _per_step(lambda: evaluate(steps), lambda: evaluate(2 * steps), steps, where)
        clean = 0.0
        if approximate.clean_logits_once(None, dataset[1], where):
            clean = _per_step(lambda: learn(1, steps), lambda: learn(1, 2 * steps), steps, where)
    return StepCost(learn_step, forward, clean)


def _per_step(single: Callable[[], None], double: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step: the time of ``double`` (2 x ``steps`` steps) less that of ``single`` (``steps``), over
    ``steps``, so the call's fixed cost drops out. When the machine's noise makes that difference not positive (a
    busy CPU, a tiny step), ``double``'s time over its steps instead: too high by the fixed cost, never zero."""
    once, twice = _seconds(single, device), _seconds(double, device)
    return (twice - once) / steps if twice > once else twice / (2 * steps)


def estimate_plan(parts: Sequence[Part], profile: Profile, device: str,
                  measure: Callable[[str, str, int], StepCost] | None = None) -> dict[str, Estimate]:
    """Each part's :class:`Estimate` on ``device``: its counted work (:func:`part_work`) times the cost of a step
    measured there (:func:`measure_step_cost`, once per model, level and batch size, each part's work at its own;
    ``measure(model, level, batch_size)`` instead, e.g. in tests). Counted: the learning steps and the evaluations'
    forward passes, which dominate a sweep; not counted: loading data and models, and process start. The GPU
    memory the measurements used is given back at the end."""
    measure = measure or (lambda model, level, batch: measure_step_cost(profile, model, level, batch, device))
    costs: dict[tuple[str, str, int], StepCost] = {}
    estimates = {}
    for part in parts:
        counted = part_work(part, profile)
        if counted is None:
            estimates[part.name] = Estimate(None, None)
            continue
        seconds = []
        for work in counted:
            total = 0.0
            for key in {**work.learn_steps, **work.forward_batches, **work.clean_batches}:
                if key not in costs:
                    costs[key] = measure(*key)  # (model, level, batch size)
                total += (work.learn_steps.get(key, 0) * costs[key].learn_step
                          + work.forward_batches.get(key, 0) * costs[key].forward_batch
                          + work.clean_batches.get(key, 0) * costs[key].clean_batch)
            seconds.append(total)
        estimates[part.name] = Estimate(seconds[0], seconds[0] + seconds[1])
    if torch.device(device).type == "cuda" and torch.cuda.is_available():  # leave the parts' processes the memory
        torch.cuda.empty_cache()
    return estimates


def describe_plan(parts: Sequence[Part], work: Path, version: str | None = None,
                  estimates: dict[str, Estimate] | None = None, device: str = "") -> str:
    """The plan as ``--dry-run`` prints it: one line per part, whether it will run or is skipped, its needs, the
    seconds it took when it last finished (from the manifest; "never" otherwise), and with ``estimates``
    (:func:`estimate_plan`) its estimated seconds on ``device``, then their sum."""
    keys = part_keys(parts, version or code_version())
    finished = _read_manifest(work)
    lines = []
    for part in parts:
        record = finished.get(part.name)
        same = record is not None and record["key"] == keys[part.name]
        state = "skip (finished, same settings and code)" if same else "run"
        last = f"{record['seconds']:.0f} s on {record['device']}" if record else "never"
        needs = f"; after {', '.join(part.needs)}" if part.needs else ""
        guess = f"; on {device}: {estimates[part.name].text()}" if estimates else ""
        lines.append(f"{part.name}: {state}; last run: {last}{guess}{needs}\n    {' '.join(part.argv)}")
    if estimates:
        counted = [estimate for estimate in estimates.values() if estimate.seconds is not None]
        low = sum(estimate.seconds or 0.0 for estimate in counted)
        high = sum(estimate.upper or 0.0 for estimate in counted)
        lines.append(f"estimated on {device}, one part at a time: {low:.0f} s for the {len(counted)} learned-noise "
                     f"and fine-tuning parts (up to {high:.0f} s if the sweeps add lims), from steps measured just "
                     f"now; loading data and models is not counted, nor are the {len(estimates) - len(counted)} "
                     "other parts (not estimated; their last runs above)")
    return "\n".join(lines)


def part_weights(parts: Sequence[Part], work: Path,
                 estimates: dict[str, Estimate] | None = None) -> dict[str, float] | None:
    """How much of the plan each part is, in seconds, for the progress bar's ETA: its estimate (:func:`estimate_plan`)
    where there is one, else the seconds it took when it last finished (the manifest in ``work``), else the mean of
    those known (a guess: a merge weighs as much as a sweep's part). ``None`` when nothing is known: the bar then
    counts parts."""
    finished = _read_manifest(work)
    known: dict[str, float] = {}
    for part in parts:
        estimate = (estimates or {}).get(part.name)
        if estimate is not None and estimate.seconds is not None:
            known[part.name] = estimate.seconds
        elif part.name in finished:
            known[part.name] = float(finished[part.name]["seconds"])
    if not known:
        return None
    guess = sum(known.values()) / len(known)
    return {part.name: known.get(part.name, guess) for part in parts}


def start_part(part: Part, device: str, work: Path, log: IO[str], *, devices: Sequence[str] = (),
               workers: int = 1) -> subprocess.Popen:
    """Start ``part``'s process on ``device`` as :func:`run_plan` does: in a process session of its own (so that
    ``os.killpg`` stops its worker processes with it), its output into ``log``, told how many parts share its GPU
    (the slots ``devices`` gives it) and where decoded images are kept (``work/tensors``, unless
    :data:`~nullspace_utils.profiles.TENSOR_CACHE_VARIABLE` is set)."""
    share = {approximate.GPU_SHARE_VARIABLE: str(max(1, list(devices).count(device))),  # parts on this GPU
             TENSOR_CACHE_VARIABLE: os.environ.get(TENSOR_CACHE_VARIABLE, str(work / "tensors"))}
    return subprocess.Popen(part.command_line(device, work, workers), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, **share})


def run_plan(parts: Sequence[Part], *, work: Path, out_dir: Path, devices: Sequence[str] = ("cpu",),
             version: str | None = None, show_progress: bool = True, poll_seconds: float = 0.2,
             weights: dict[str, float] | None = None) -> PlanReport:
    """Run the ``parts`` not finished before (:func:`part_keys` against the manifest in ``work``), each as soon as
    the parts it needs are done, on a free slot of ``devices`` (one process per slot; ``["cuda:0", "cuda:1"]``
    runs two parts at once), logging each part to ``work/logs/<part>.log``. The parts share the imagenet profile's
    decoded images through ``work/tensors`` (:data:`~nullspace_utils.profiles.TENSOR_CACHE_VARIABLE`, unless it is
    set already): each split is decoded once per plan, not once per part. A finished part's ``publishes`` are
    copied from ``work`` to ``out_dir`` all at once. Ctrl-C or SIGTERM stops the running parts, keeps every
    finished one and returns with ``interrupted`` set. One progress bar spans the plan: with ``weights``
    (:func:`part_weights`) it advances by each finished part's expected seconds, so its ETA weighs a long part as
    long; without, it counts parts."""
    if not devices:
        raise ValueError("run_plan: no device to run on; give at least one, e.g. ['cpu'] or ['cuda:0'].")
    keys = part_keys(parts, version or code_version())
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "parts").mkdir(exist_ok=True)
    finished = _read_manifest(work)
    report = PlanReport()
    waiting = []
    for part in parts:
        record = finished.get(part.name)
        if record is not None and record["key"] == keys[part.name]:
            report.skipped.append(part.name)
        else:
            waiting.append(part)
    running: dict[str, tuple[subprocess.Popen, str, float, Any]] = {}
    free = list(devices)
    cpu_free = [CPU_SLOT]  # the parts that compute on the CPU whatever the devices: one at a time, beside them
    workers = cpu_workers(devices)
    weight = {part.name: (weights or {}).get(part.name, 1.0) for part in parts}
    total = sum(weight[part.name] for part in waiting)
    if weights:
        bar = tqdm(total=total, disable=not show_progress, unit="s", desc="plan (estimated seconds)",
                   bar_format=_WEIGHTED_BAR)
    else:
        bar = tqdm(total=total, disable=not show_progress, unit="part", desc="plan")
    stop = {"signal": 0}

    def interrupt(number: int, frame: Any) -> None:
        stop["signal"] = number

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (waiting or running) and not stop["signal"]:
            for name, (process, device, started, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[name]
                (cpu_free if device == CPU_SLOT else free).append(device)
                bar.update(weight[name])
                part = next(part for part in parts if part.name == name)
                unwritten = [relative for relative in part.publishes if not (work / relative).is_file()]
                if process.returncode != 0 or unwritten:
                    report.failed[name] = str(work / "logs" / f"{_file_name(name)}.log")
                else:
                    _publish(part, work, out_dir)
                    report.done.append(name)
                    report.seconds[name] = time.perf_counter() - started
                    finished[name] = {"key": keys[name], "seconds": report.seconds[name], "device": device}
                    _write_manifest(work, finished)
            for part in list(waiting):
                blocked = [need for need in part.needs if need in report.failed or need in report.not_run]
                if blocked:
                    waiting.remove(part)
                    report.not_run.append(part.name)
                    bar.update(weight[part.name])
                    continue
                ready = all(need in report.done or need in report.skipped for need in part.needs)
                slots = free if part.uses_device else cpu_free
                if ready and slots:
                    device = slots.pop(0)
                    log = open(work / "logs" / f"{_file_name(part.name)}.log", "w")  # noqa: SIM115 (closed above)
                    process = start_part(part, device, work, log, devices=devices, workers=workers)
                    running[part.name] = (process, device, time.perf_counter(), log)
                    waiting.remove(part)
            time.sleep(poll_seconds)
    finally:
        for name, (process, _, _, log) in running.items():  # interrupted: stop the parts still running
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            log.close()
            report.not_run.append(name)
        report.not_run += [part.name for part in waiting]
        report.stopped_by = stop["signal"]
        for number, handler in previous.items():
            signal.signal(number, handler)
        bar.close()
    return report


#: the weighted bar: estimated seconds done of the plan's, elapsed and remaining time
_WEIGHTED_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}]"


def _file_name(name: str) -> str:
    return name.replace("/", "_")


def _publish(part: Part, work: Path, out_dir: Path) -> None:
    """Copy a finished part's files from the work folder to the results folder, each all at once."""
    for relative in part.publishes:
        source, target = work / relative, out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as temporary:
            shutil.copyfile(source, temporary)
