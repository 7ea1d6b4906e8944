"""Every part of a profile's plan (``experiments all``) with the time this repository has for it, and the plan's
wall time against issue #33's goal of one hour on one GPU (the GPU's parts run one after another, the CPU parts one
after another beside them: the wall time is at least the larger sum). Nothing is run: the times come from committed files, each labelled
by how it was obtained:

- ``measured``: the part ran in full on a GPU with untrained weights and fake ImageNette-sized images
  (``imagenet_parts_gpu.json``, and the parts measured beside the estimates in ``plan_estimate_gpu.json``);
- ``estimated``: the dry run's estimate from measured steps (``plan_estimate_gpu.json``, its newest estimate);
  a part now split by lims (``plan.LIM_SPLITS``) gets the unsplit part's estimate in the share of its counted
  learning steps (:func:`nullspace_utils.plan.part_work`);
- ``projected``: the two SLSQP parts (CPU), from the seconds per iteration of ``paper_slsqp_cost_cpu.json`` times
  the teaching profile's committed median iterations, on the workers the plan gives them beside one GPU;
- ``at least``: the part ran alone (``benchmarks/time_part.py``) and was stopped at its limit before it finished
  (``<profile>_parts_cpu.json`` or ``_gpu.json``, ``"finished": false``): its time is a lower bound, for the cores
  it had; from fewer cores than the plan's machine has (:data:`CORES`) it is shown but left out of the sums;
- ``not measured``: no time at all (the sum leaves it out and says so).

``measured`` also covers a part that ``time_part.py`` ran alone to its end.

::

    python benchmarks/plan_timing.py --out benchmarks/results/plan_timing_imagenet.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from nullspace_utils import plan, results
from nullspace_utils.profiles import get_profile

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_SECONDS = 3600
#: the cores of the lent GPU machines, and the device slots of a one-GPU run (for the SLSQP parts' workers)
CORES, DEVICES = 16, ("cuda",)
#: how a part's time was obtained, timed kinds only (else "not measured")
HOWS = ("measured", "at least", "estimated", "projected")
#: the SLSQP parts -> their names in the cost file's rows
_SLSQP_PARTS = {"watermark-slsqp": "watermark_slsqp", "watermark-max-noise": "watermark_max_noise"}


def _read(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else {}


def _learning_steps(part: plan.Part, profile) -> int:
    counted = plan.part_work(part, profile)
    return sum(counted[0].learn_steps.values()) if counted else 0


def finetune_part_seconds(part_name: str, profile_name: str) -> float | None:
    """A fine-tuning part's share of :func:`~nullspace_utils.studies.finetune.estimate_sweep_hours` (the same
    counts, :func:`~nullspace_utils.studies.finetune.sweep_images`, for its methods, seed and lim), from the float32
    ViT-S/32 step of ``learned_noise_cost_gpu.json``; ``None`` for a part it does not count (the merge, the CPU
    "-C" pass)."""
    from nullspace_utils.studies import finetune as finetune_study

    cost = _read("learned_noise_cost_gpu.json")
    settings = finetune_study.SETTINGS[profile_name]
    step = next((row for row in cost.get("rows", []) if row["model"] == settings.model and row["level"] == "encoder"),
                None)
    kind = part_name.split("/", 1)[1] if part_name.startswith("finetune/") else ""
    if step is None or kind in ("", "merge"):
        return None
    if kind == "untuned":
        methods, seeds, lims = ["untuned"], [], []
    elif kind.startswith("plain-"):  # plain-s<seed>
        methods, seeds, lims = ["plain"], [0], []
    else:  # lim<L>-s<seed>: the nullspace run and its gaussian twin
        methods, seeds, lims = ["nullspace", "gaussian"], [0], [0.0]
    images = finetune_study.sweep_images(settings, methods, seeds, lims)
    return sum(images.values()) * step["seconds_per_step"] / cost["batch"]


def _estimated(part: plan.Part, profile, newest: dict[str, Any], slsqp: dict[str, Any],
               workers: int) -> dict[str, Any]:
    """A part's row without a full run: its estimate (the dry run's, or the rough fine-tuning count), the SLSQP
    parts' projection, else not measured."""
    whole = part.name.rsplit("/lims-", 1)[0]
    estimate = newest.get("parts", {}).get(whole)
    if estimate is not None:
        share = 1.0
        if whole != part.name:  # a part split by lims: its share of the whole part's learning steps
            study, model = whole.split("/")
            share = _learning_steps(part, profile) / _learning_steps(plan.Part(whole, (study, "--models", model)),
                                                                       profile)
        return {"how": "estimated", "seconds": estimate["estimate_seconds"] * share,
                "source": f"plan_estimate_gpu.json {profile.name}.after_clean_once (commit {newest.get('commit')})"
                          + (f", {share:.2f} of {whole}'s" if share != 1.0 else "")}
    if part.name in _SLSQP_PARTS and slsqp.get("profile") == profile.name:
        committed = slsqp["teaching_committed_iterations"]  # the teaching ViT of the same rank: S, B, L
        teaching = {name: committed.get(zoo, {}) for name, zoo in
                    zip(profile.vit_models, get_profile("teaching").vit_models, strict=True)}
        cpu_seconds = 0.0
        for name, row in slsqp["models"].items():
            if part.name not in row:
                continue
            iterations = teaching[name][_SLSQP_PARTS[part.name]]["median"]  # absent: nothing to project
            cpu_seconds += row[part.name]["seconds_per_iteration"] * row[part.name]["problems"] * iterations
        return {"how": "projected", "seconds": cpu_seconds / workers,
                "source": f"paper_slsqp_cost_cpu.json x the teaching profile's median iterations, on {workers} "
                          f"processes ({slsqp['cores']}-core CPU measured)"}
    rough = finetune_part_seconds(part.name, profile.name)
    if rough is not None:
        return {"how": "estimated", "seconds": rough,
                "source": "studies.finetune.estimate_sweep_hours's counts x the float32 ViT-S/32 step of "
                          "learned_noise_cost_gpu.json (rough: PGD, clean evaluation and the weights' gradients are "
                          "not counted, and the match learns in bf16 now, faster than that step)"}
    return {"how": "not measured", "seconds": None, "source": None}


def part_times(profile_name: str = "imagenet") -> dict[str, dict[str, Any]]:
    """Each part of the profile's plan -> ``{"seconds", "how", "source"}`` (``seconds`` None when not measured)."""
    profile = get_profile(profile_name)
    parts = plan.study_plan(profile)
    estimates = _read("plan_estimate_gpu.json")
    newest = estimates.get(profile_name, {}).get("after_clean_once", {})
    measured: dict[str, dict[str, Any]] = {}
    for key in ("imagenet_parts_measured", "imagenet_parts_measured_after_clean_once"):  # older first: newer wins
        for name, row in estimates.get(key, {}).items():
            if not isinstance(row, dict):  # its note
                continue
            measured[name] = {"seconds": row["seconds"], "source": f"plan_estimate_gpu.json {key}",
                              "commit": row.get("commit", estimates.get("imagenet", {}).get("after", {}).get("commit"))}
    for runs in (f"{profile_name}_parts_gpu.json", f"{profile_name}_parts_cpu.json"):
        for name, row in _read(runs).get("parts", {}).items():
            if not row["finished"] and name in measured:  # a lower bound never replaces a full run
                continue
            measured[name] = {"seconds": row["seconds"], "source": runs, "commit": row["commit"],
                              "device": row["device"], "finished": row["finished"], "cores": row.get("cores")}
    slsqp = _read("paper_slsqp_cost_cpu.json")
    workers = plan.cpu_workers(DEVICES, cores=CORES)
    table: dict[str, dict[str, Any]] = {}
    for part in parts:
        bound = None
        if part.name in measured:
            row = dict(measured[part.name])
            if row.pop("finished", True):
                table[part.name] = {"how": "measured", **row}
                continue
            bound = {"how": "at least", **row}  # stopped early: an estimate above it is the better figure
        table[part.name] = _estimated(part, profile, newest, slsqp, workers)
        if bound is not None and (table[part.name]["seconds"] is None or bound["seconds"] >= table[part.name]["seconds"]):
            table[part.name] = bound
        elif bound is not None:
            table[part.name]["source"] += (f"; above the {bound['seconds']:.0f} s it ran before it was stopped "
                                           f"({bound['source']})")
    for part in parts:  # where the plan runs it: on the GPU's slot, or on the CPU's beside it; whether it is summed
        table[part.name] = {"slot": "gpu" if part.uses_device else "cpu", **table[part.name]}
        table[part.name]["counted"] = counted(table[part.name])
    return table


def counted(row: dict[str, Any]) -> bool:
    """Whether a part's time enters the sums: every timed row, except a lower bound from a machine with fewer
    cores than the plan's (:data:`CORES`), which would not bound the part's time there."""
    if row["seconds"] is None:
        return False
    return row["how"] != "at least" or (row.get("cores") or 0) >= CORES


def _sums(table: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {how: sum(row["seconds"] for row in table.values() if row["how"] == how and counted(row))
            for how in HOWS}


def slot_sums(table: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The timed parts' seconds by where the plan runs them: the GPU's parts one after another, the CPU parts one
    after another beside them (:func:`nullspace_utils.plan.run_plan`). The plan's wall time is about the larger (the
    sums add measured, estimated and projected times, so neither is a lower bound)."""
    gpu = sum(row["seconds"] for row in table.values() if counted(row) and row["slot"] == "gpu")
    cpu = sum(row["seconds"] for row in table.values() if counted(row) and row["slot"] == "cpu")
    return {"gpu": gpu, "cpu": cpu, "wall": max(gpu, cpu)}


def table_lines(table: dict[str, dict[str, Any]]) -> list[str]:
    """The printed table: a line per part (name, its slot, how its time was obtained, seconds), then the sums."""
    lines = []
    for name, row in table.items():
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.0f} s"
        apart = "" if counted(row) or row["seconds"] is None else f"  (on {row['cores']} cores: not in the sums)"
        lines.append(f"{name:55} {row['slot']:4} {row['how']:13} {seconds:>9}{apart}")
    sums, slots = _sums(table), slot_sums(table)
    missing = [name for name, row in table.items() if row["seconds"] is None]
    lines.append(f"GPU parts {slots['gpu']:.0f} s, CPU parts {slots['cpu']:.0f} s beside them: the plan takes about "
                 f"{slots['wall']:.0f} s, the larger sum ({slots['wall'] / GOAL_SECONDS:.1f}x the one-hour goal); "
                 + ", ".join(f"{how} {sums[how]:.0f} s" for how in HOWS if sums[how] or how != "at least")
                 + f"; {len(missing)} parts have no time: {', '.join(missing) or 'none'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="imagenet", choices=("imagenet",))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    table = part_times(args.profile)
    print("\n".join(table_lines(table)))
    missing = [name for name, row in table.items() if row["seconds"] is None]
    if args.out:
        args.out.write_text(json.dumps({
            "what": "every part of the plan with the time this repository has for it (a full run where there is "
                    "one, else an estimate or a projection: see how and source), the GPU's parts one at a time on "
                    "one GPU and the CPU parts one at a time beside them; the plan's wall time is at least the "
                    "larger of the two sums",
            "command": f"python benchmarks/plan_timing.py --profile {args.profile} --out {args.out}",
            "commit": results.git_commit(), "torch": torch.__version__,
            "device": "the committed timing files (each part's source names its machine)",
            "goal_seconds": GOAL_SECONDS, "sums_by_how": _sums(table), "slots": slot_sums(table),
            "not_measured": missing, "parts": table}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
