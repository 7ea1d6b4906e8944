"""What the book's two pages that are not chapters read: the benchmarks page (the result files of
``benchmarks/``: the watermark solver against HiGHS and SLSQP, on CPU and GPU) and the teachers page (the
chapters' run times, their exercises, and the suggested sessions in ``book/_data/``).

Every function here takes a committed file's contents as :func:`nullspace_utils.results.read` gives them (or reads
it so) and returns what the page shows: rows of a table, a figure's panels, the exercises found in the chapters.
Cells are formatted here, because these pages only display the files; nothing is computed anew.
"""

from __future__ import annotations

import collections
import math
import re
import statistics
from typing import Any, NamedTuple, Sequence

from nullspace_utils import plotting, results

__all__ = ["page_data", "admm_runs", "solver_panels", "cpu_solver_rows", "gpu_solver_rows", "embed_default", "solver_default", "gpu_end_to_end_rows", "chapter_time_rows",
           "session_rows", "Exercise", "chapter_numbers", "exercises", "CLASS_MINUTES_BASE", "class_minutes",
           "exercise_rows", "session_plan_rows", "homework_line",
           "exercise_time_line", "admm_settings_line", "svd_rows", "svd_ratio_line",
           "speed_ratio", "benchmark_note", "benchmark_file", "svd_table_rows", "benchmarks_summary",
           "plan_timing_rows", "plan_timing_line", "goal_rows", "change_rows", "cli_timed_line", "change_caption", "repeat_runs", "repeat_rows", "reading_line", "repeat_rate_line", "repeat_phase_line", "new_process_line",
           "inside_embed_line", "outside_share_line", "settings_runs", "settings_rows", "settings_trend_line", "settings_embed_line", "GOAL_EMBED_SECONDS_H200", "GOAL_CLI_IMAGES_PER_SECOND",
           "GOAL_CPU_CLI_OVERHEAD", "GOAL_CPU_FIRST_CALL_SECONDS"]

Rows = list[list[str]]


def page_data(name: str) -> Any:
    """The data file ``book/_data/<name>.json`` of a page (e.g. ``exercises``: what each exercise practises, by its
    label; ``sessions``: the suggested teaching sessions), read like every committed file (:func:`~nullspace_utils.results.read`:
    from the checkout, or from GitHub when a notebook is opened alone)."""
    return results.read(f"book/_data/{name}.json")


# --------------------------------------------------------------------------- benchmarks: the watermark solver
def admm_runs(cpu: dict[str, Any], settings: Sequence[str] = ("before", "default")) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``benchmarks/results/watermark_cpu.json``'s ADMM timings for each of ``settings``, in the file's
    order (fewest iterations first)."""
    return {name: [row for row in cpu["admm_cpu"] if row["settings"] == name] for name in settings}


def solver_panels(cpu: dict[str, Any]) -> list[dict[str, Any]]:
    """The two panels (:func:`nullspace_utils.plotting.line_panels`) of the CPU benchmark: the gap to the LP
    optimum against the seconds per image, and the seconds per image against the iterations, for the ADMM
    solver before and after (:func:`admm_runs`), with HiGHS's extrapolated time as a line."""
    runs = admm_runs(cpu)
    highs = cpu["highs"]["seconds_per_image_extrapolated"]
    return [
        {"title": "gap to the LP optimum (HiGHS)", "ylabel": "%", "lines": {
            f"ADMM, {name}": ([row["seconds"] for row in rows], [row["gap_percent"] for row in rows], "o-")
            for name, rows in runs.items()}},
        {"title": "seconds per 224x224 image", "ylabel": "s", "lines": {
            **{f"ADMM, {name}": ([row["iterations"] for row in rows], [row["seconds"] for row in rows], "o-")
               for name, rows in runs.items()},
            "HiGHS (exact, extrapolated)": ([50, 300], [highs] * 2, "--")}},
    ]


def cpu_solver_rows(cpu: dict[str, Any]) -> Rows:
    """The CPU benchmark as a table, one row per solver and setting: time per image, gap to the optimum, and
    speed against HiGHS. ADMM warm (every setting and budget), then its first call in a fresh process, then HiGHS
    and SLSQP (both extrapolated from a few patches or iterations)."""
    highs, slsqp, first = cpu["highs"], cpu["slsqp"], cpu["first_call"]
    exact_seconds = highs["seconds_per_image_extrapolated"]
    rows = [[f"ADMM {row['settings']}, {row['iterations']} iterations (warm)", f"{row['seconds']:.2f} s",
             f"{row['gap_percent']:.3f} %", speed_ratio(exact_seconds / row['seconds'])] for row in cpu["admm_cpu"]]
    for name, label in (("before", f"before: {cpu['before']['iterations']} iterations and an SVD"),
                        ("default", f"default: {cpu['default']['iterations']} iterations")):
        rows.append([f"ADMM {label}, first call in a fresh process", f"{first[name]:.2f} s", "",
                     speed_ratio(exact_seconds / first[name])])
    rows.append([f"HiGHS interior point (exact LP), extrapolated from {highs['patches']} patches",
                 f"{exact_seconds:.0f} s", "0 (the optimum)", "1x"])
    rows.append(["SLSQP (joint space), the 5000-iteration cap on each of 49 patches, extrapolated: the cost of the cap",
                 f"{slsqp['paper_setting_seconds_extrapolated'] / 86400:.0f} days", "—",
                 speed_ratio(exact_seconds / slsqp['paper_setting_seconds_extrapolated'])])
    return rows


def speed_ratio(ratio: float) -> str:
    """A speed ratio as a table cell: ``"489x"`` from 1 up (a whole number), and below 1 as a fraction of two
    significant digits, ``"1/71,000"`` or ``"1/1.5"``, where ``f"{ratio:.1g}x"`` would print ``"1e-05x"``."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"a speed ratio must be a positive finite number, not {ratio!r}: divide two measured times.")
    if ratio >= 1:
        return f"{ratio:,.0f}x"
    inverse = float(f"{1 / ratio:.2g}")
    return f"1/{inverse:,.0f}" if inverse >= 10 else f"1/{inverse:g}"


def benchmark_note(data: dict[str, Any], path: str) -> results.Note:
    """The collapsed "how this was made" box of a benchmark's result file (``data``, read from ``path``): its
    command, commit, torch and the machine it ran on (the GPU's name, else the CPU's and its threads). Machine
    paths in the command (an ``--out`` into the home or a temporary folder of the machine that ran it) are shown as the file's place in the repository.
    The file's ``commit_note`` (which tree made it, when the commit alone does not say) follows."""
    command = " ".join(path if re.match(r"^/(tmp|root|home)/", word) else word for word in data["command"].split())
    machine = data.get("device") or f"{data['cpu']}, {data.get('threads') or data.get('cores')} CPU threads"
    note = data.get("commit_note")
    text = (f"made by: {command}\n  commit {data['commit'][:10]}, torch {data['torch']}, on {machine}"
            + (f"\n  {note}" if note else ""))
    markdown = (f":::{{admonition}} How this was made: `{path}`\n:class: dropdown\n- command: `{command}`\n"
                f"- commit `{data['commit'][:10]}`, torch {data['torch']}, on {machine}\n"
                + (f"- {note}\n" if note else "") + ":::\n")
    return results.Note(text, markdown)


def gpu_solver_rows(gpu: dict[str, Any]) -> Rows:
    """A GPU benchmark's solver runs (``benchmarks/results/watermark_gpu_now.json``, or an older file such as
    ``watermark_gpu.json``) as a table: settings, iterations, matmul precision, compiled or not, seconds for the
    batch, gap to the optimum and peak memory; first the solver on images already on the GPU, then whole ``embed``
    calls from host memory (the default settings; their copies overlap the solve in a file that has
    ``embed_pipelined`` rows, which the benchmark writes since the pipeline came, one after another before)."""
    rows = [[row["settings"], f"{row['iterations']}", row["precision"], "yes" if row["compiled"] else "no",
             f"{row['seconds']:.2f} s", f"{row['gap_percent']:.3f} %", f"{row['peak_memory_gb']:.0f} GB"]
            for row in gpu["admm_gpu"]]
    copies = "copies overlapping the solve" if "embed_pipelined" in gpu else "copies one after another"
    for row in gpu["embed_gpu"]:
        where = ("one chunk" if row["chunk_images"] is None
                 else f"chunks of {row['chunk_images']} images, sized for a {row['chunks']}")
        rows.append([f"embed from host memory, {copies}, {where}", f"{gpu['default']['iterations']}", "tf32", "no",
                     f"{row['seconds']:.2f} s", "", f"{row['peak_memory_gb']:.0f} GB"])
    return rows


def _arithmetic(row: dict[str, Any]) -> str:
    """A GPU benchmark row's matmul precision, and whether its step was compiled: "tf32", "bfloat16, compiled"."""
    return f"{row['precision']}{', compiled' if row['compiled'] else ''}"


def change_rows(change: dict[str, Any]) -> Rows:
    """One change to the library timed on one machine (e.g. ``benchmarks/results/watermark_gpu_step.json``: the
    benchmark run with the library ``before`` and ``after`` it): what, the seconds before and after, and after
    over before, for every row both runs have: the solver on images already on the GPU (the default settings),
    ``embed`` from host memory (the second call, wall time), the folder CLI (by batch size, then in a new
    process) and the solver's phases (``--part kernels``: setup, 100 iterations, polish, whole solve)."""
    def solver(run: dict[str, Any]) -> dict[str, float]:
        rows = [row for row in run.get("admm_gpu", []) if row["settings"] == "default"]
        timed = {f"solver, {_arithmetic(row)}": row["seconds"] for row in rows}
        if len(timed) != len(rows):
            raise ValueError("two solver rows with one precision and compile setting: not one change's pair")
        return timed

    def embed(run: dict[str, Any]) -> dict[str, float]:
        return {f"embed, host to host, {_arithmetic(row)}": row["wall_seconds"]
                for row in run.get("embed_pipelined", [])
                if row["call"] == "second" and row["pipelined"]}

    def command(run: dict[str, Any]) -> dict[str, float]:
        runs = run.get("cli", {}).get("runs", [])
        return {(f"folder CLI, {row['images']} images, batch {row['batch_size']}" +
                 (", in a new process" if row["run"] == "new process" else "")): row["seconds"]
                for row in runs if row["run"] == "timed" or _new_process_timed_it(row)}

    def phases(run: dict[str, Any]) -> dict[str, float]:
        return {f"solver's {name}, {_arithmetic(row)}": row[f"{key}_seconds"] for row in run.get("solver_phases", [])
                for name, key in _PHASES}

    rows = []
    for section in (solver, embed, command, phases):
        before, after = section(change["before"]), section(change["after"])
        rows += [[what, f"{before[what]:.2f} s", f"{after[what]:.2f} s", f"{after[what] / before[what]:.2f}"]
                 for what in before if what in after]
    return rows


#: The solver's phases as ``benchmarks/watermark.py --part kernels`` times them: (name, key in its rows).
_PHASES = (("setup", "setup"), ("100 iterations", "iterations"), ("polish", "polish"), ("whole solve", "total"))


def embed_default(pipeline: dict[str, Any]) -> dict[str, Any]:
    """``embed``'s default on a GPU (TF32, not compiled) in the pipeline benchmark
    (``benchmarks/results/watermark_gpu_pipeline.json``): the second whole call from host memory with pipelined
    copies (its ``wall_seconds`` is what a user waits for)."""
    return next(row for row in pipeline["embed_pipelined"] if row["call"] == "second" and row["pipelined"]
                and row["precision"] == "tf32" and not row["compiled"])


def solver_default(pipeline: dict[str, Any]) -> dict[str, Any]:
    """The same default's solver alone, on images already on the GPU, in the same run as :func:`embed_default`."""
    return next(row for row in pipeline["admm_gpu"] if row["settings"] == "default" and row["precision"] == "tf32"
                and not row["compiled"])


def gpu_end_to_end_rows(now: dict[str, Any], cli_runs: Sequence[dict[str, Any]],
                        before: dict[str, Any] | None = None) -> Rows:
    """What a user waits for on a GPU, each row against the floor measured in its own call (a lower bound from the
    GPU's copy speed, ``floor``): ``now``, a ``--part solve`` file (``benchmarks/results/watermark_gpu_now.json``:
    ``embed`` from host memory, the second of two calls, wall time, for each precision, its copies overlapping the
    solve, then one after another as before the pipeline); ``cli_runs``, ``--part cli`` runs made in the same call, on
    the same machine (:func:`repeat_runs`: each timed run in a warm process, and each new process that ran the run's
    library), against ``now``'s floor; ``before``, an earlier file with command-line runs
    (``watermark_gpu_pipeline.json``): its fastest, against its own floor. Columns: what (and the library), images,
    time, images per second, times the floor."""
    def row(what: str, images: int, seconds: float, floor: dict[str, Any]) -> list[str]:
        per_image = floor["floor"]["embed_seconds"] / floor["batch"]  # seconds per image at the floor
        return [what, f"{images}", f"{seconds:.2f} s", f"{images / seconds:.1f}", f"{seconds / (per_image * images):.0f}x"]

    second_calls = [entry for entry in now["embed_pipelined"] if entry["call"] == "second"]
    rows = [row(f"embed, host to host, {'' if entry['pipelined'] else 'copies one after another, '}"
                f"{_arithmetic(entry)} (library {now['commit'][:7]})", now["batch"], entry["wall_seconds"], now)
            for entry in sorted(second_calls, key=lambda entry: not entry["pipelined"])]  # overlapping copies first
    for run in cli_runs:
        label = f"run {run['order']}, library {str(run['commit'])[:7]}" if "order" in run else f"library {run['commit'][:7]}"
        for entry in run["cli"]["runs"]:
            if entry["run"] == "timed" or _new_process_timed_it(entry):
                where = "a new process" if entry["run"] == "new process" else "a warm process"
                rows.append(row(f"folder CLI, batch {entry['batch_size']}, in {where} ({label})", entry["images"],
                                entry["seconds"], now))
    timed = [entry for entry in before["cli"]["runs"] if entry["run"] == "timed"] if before is not None else []
    if before is not None and timed:  # (before checked again for mypy)
        fastest = min(timed, key=lambda entry: entry["seconds"] / entry["images"])
        rows.append(row(f"folder CLI, batch {fastest['batch_size']}, the fastest of {len(timed)} batch sizes "
                        f"(earlier run, library {before['commit'][:7]})", fastest["images"], fastest["seconds"], before))
    return rows


def change_caption(change: dict[str, Any], how: str) -> str:
    """The caption of a :func:`change_rows` table: the machine, the library before and after (in the order they ran,
    in one call), then ``how`` the rows were timed."""
    return (f"On one {change['device']}, library {change['before']['commit']} then {change['after']['commit']}, in "
            f"that order, in one call; {how}")


def _cli_run(cli_run: dict[str, Any], kind: str) -> dict[str, Any]:
    """The first run of ``kind`` ("timed", "new process") in a ``benchmarks/watermark.py --part cli`` file."""
    return next(entry for entry in cli_run["cli"]["runs"] if entry["run"] == kind)


def _new_process_timed_it(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` of a ``--part cli`` file is a "new process" run that timed the file's own library. Its
    ``same_library`` says so: before 2026-12-07 (fourth session) the new process was started with ``python -m``
    in the folder of one library, which Python imports before ``PYTHONPATH``'s, so in a call that timed several
    libraries the new processes all ran that folder's (the files were corrected: ``library_imported``)."""
    if entry["run"] != "new process":
        return False
    if "same_library" not in entry:
        raise ValueError("a new-process run without same_library: the benchmark records it since 2026-12-07 (fourth "
                         "session); rerun benchmarks/watermark.py --part cli, or say which library it imported")
    return bool(entry["same_library"])


def new_process_line(runs: dict[str, dict[str, Any]]) -> str:
    """The new-process run of each labelled ``--part cli`` file: its seconds and whether it imported the file's own
    library or which one it did (its ``same_library`` and ``library_imported``)."""
    parts = []
    for label, run in runs.items():
        entry = _cli_run(run, "new process")
        which = ("its own library" if _new_process_timed_it(entry)
                 else f"imported the library {entry['library_imported']}")
        parts.append(f"{label}'s {entry['seconds']:.1f} s ({which})")
    return "new processes: " + "; ".join(parts)


def _rates(runs: Sequence[dict[str, Any]], kind: str) -> list[float]:
    """Images per second of the first run of ``kind`` in each ``--part cli`` file; for "new process", only the runs
    that timed their file's library (:func:`_new_process_timed_it`)."""
    entries = [_cli_run(run, kind) for run in runs]
    if kind == "new process":
        entries = [entry for entry in entries if _new_process_timed_it(entry)]
    return [entry["images"] / entry["seconds"] for entry in entries]


def _met_in(flags: Sequence[bool]) -> str:
    """A goal checked in several runs: "yes" if met in all, "no" if in none, else "in k of n runs"."""
    met = sum(flags)
    return "yes" if met == len(flags) else "no" if not met else f"in {met} of {len(flags)} runs"


def _span(values: Sequence[float], digits: int) -> str:
    """The range of ``values`` as "low to high", or one number when both ends print alike."""
    return plotting.format_range(values, scale=1, digits=digits, separator=" to ")


def cli_timed_line(cli_run: dict[str, Any]) -> str:
    """The timed folder-CLI run of a ``benchmarks/watermark.py --part cli`` file (its first run after the warm-up):
    images per second, the busy seconds of each of the command's stages summed over its worker threads (the stages
    that took 0.05 s or more), and the seconds inside ``embed``."""
    timed = _cli_run(cli_run, "timed")
    stages = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in timed["stage_seconds"].items()
                       if seconds >= 0.05) or "none took 0.05 s"
    return (f"{timed['images_per_second']:.1f} images/s ({timed['startup_seconds']:.2f} s before the first solve, "
            f"reading the first batch; {timed['images_per_second_after_startup']:.0f} images/s after it); busy "
            f"seconds by stage, summed over the worker threads: {stages}; inside embed {timed['embed_seconds']:.1f} s")


def repeat_runs(repeats: dict[str, Any], library: str, call: str | None = None) -> list[dict[str, Any]]:
    """The ``--part cli`` runs of one library in a file of repeated runs (``benchmarks/results/
    watermark_gpu_cli_repeats.json``: several libraries timed in turn in one call, each run a whole ``--part cli``
    result with its ``library`` label, ``commit``, ``call`` and ``order``), in the order they ran; with ``call``,
    only that call's (one machine's)."""
    runs = [run for run in repeats["runs"] if run["library"] == library and (call is None or run["call"] == call)]
    if not runs and call is None:
        raise ValueError(f"no run of the library {library!r} in this file: it has "
                         f"{sorted({run['library'] for run in repeats['runs']})}")
    if not runs:
        raise ValueError(f"no run of the library {library!r} in call {call} in this file: it has "
                         f"{sorted({(run['library'], run['call']) for run in repeats['runs']})}")
    return sorted(runs, key=lambda run: run["order"])


def repeat_rows(repeats: dict[str, Any]) -> Rows:
    """One row per run of a file of repeated runs (:func:`repeat_runs`), in the order they ran: order, the call
    (one machine) that made it, library (label and commit), images per second in a warm process (its timed run), the
    same after the first solve began, seconds before it, seconds inside ``embed``, and images per second in a new
    process."""
    rows = []
    for run in sorted(repeats["runs"], key=lambda run: run["order"]):
        timed, fresh = _cli_run(run, "timed"), _cli_run(run, "new process")
        rows.append([f"{run['order']}", f"{run['call']}", f"{run['library']} ({run['commit'][:7]})",
                     f"{timed['images_per_second']:.1f}",
                     f"{timed['images_per_second_after_startup']:.0f}", f"{timed['startup_seconds']:.2f} s",
                     f"{timed['embed_seconds']:.2f} s",
                     f"{fresh['images_per_second']:.0f}" if _new_process_timed_it(fresh) else "–"])
    return rows


def reading_line(runs: Sequence[dict[str, Any]]) -> str:
    """The folder read into one GPU batch two ways, over the ``--part cli`` runs that timed it (their ``reading``):
    the range of images per second each way, of the ratio, and whether every pair of batches was equal. The runs
    must share their image count, threads and repeats (the line gives them once)."""
    readings = [run["cli"]["reading"] for run in runs if run["cli"].get("reading")]
    if not readings:
        raise ValueError("none of these runs timed the folder read (a library without read_pixels)")
    first = readings[0]
    setups = {(r["images"], r["threads"], r["repeats"]) for r in readings}
    if len(setups) > 1:
        raise ValueError(f"these runs timed the folder read in different setups (images, threads, repeats): "
                         f"{sorted(setups)}; give the runs of one setup, e.g. one library's or one call's")
    return (f"{first['images']} PNGs into one batch, {first['threads']} threads, best of {first['repeats']}, in "
            f"{len(readings)} runs: load_image per file {_span([r['images_per_second']['load_image'] for r in readings], 0)} "
            f"images/s, read_pixels and one pixels_to_images "
            f"{_span([r['images_per_second']['read_pixels'] for r in readings], 0)} images/s "
            f"({_span([r['ratio'] for r in readings], 2)}x); the two batches equal bit for bit in every run: "
            f"{all(r['equal'] for r in readings)}")


def repeat_rate_line(repeats: dict[str, Any], library: str, call: str | None = None) -> str:
    """One library's rates in a file of repeated runs (:func:`repeat_runs`, of one ``call`` if given): the range and
    mean of images per second in a warm process (the timed runs) and how many runs."""
    rates = [_cli_run(run, "timed")["images_per_second"] for run in repeat_runs(repeats, library, call)]
    if len(rates) == 1:
        return f"{library}: {rates[0]:.0f} images/s in a warm process, one run"
    return (f"{library}: {min(rates):.0f} to {max(rates):.0f} images/s in a warm process over {len(rates)} runs "
            f"(mean {sum(rates) / len(rates):.0f})")


def repeat_phase_line(repeats: dict[str, Any], library: str, call: str | None = None) -> str:
    """One library's timed runs in a file of repeated runs (:func:`repeat_runs`, of one ``call`` if given), phase by
    phase: the range of images per second in a warm process (and counted from the first solve on), of the seconds
    before the first solve, of the seconds inside ``embed`` and, where the runs timed them, of the seconds the worker
    threads spent reading and writing files (summed over the threads)."""
    timed = [_cli_run(run, "timed") for run in repeat_runs(repeats, library, call)]
    count = "one run" if len(timed) == 1 else f"{len(timed)} runs"
    line = (f"{library}: {_span([entry['images_per_second'] for entry in timed], 0)} images/s in a warm process "
            f"({count}; {_span([entry['images_per_second_after_startup'] for entry in timed], 0)} from the first "
            f"solve on); {_span([entry['startup_seconds'] for entry in timed], 2)} s before the first solve, "
            f"{_span([entry['embed_seconds'] for entry in timed], 2)} s inside embed")
    if all({"read_pixels", "write_output"} <= entry.get("stage_seconds", {}).keys() for entry in timed):
        line += (f"; the worker threads busy {_span([entry['stage_seconds']['read_pixels'] for entry in timed], 1)} s "
                 f"reading, {_span([entry['stage_seconds']['write_output'] for entry in timed], 1)} s writing")
    return line


def outside_share_line(runs: Sequence[dict[str, Any]]) -> str:
    """The folder CLI's time outside ``embed`` in its timed runs (``--part cli`` files, :func:`repeat_runs`), as a
    share of the time inside it: its range over the runs, and the range of the seconds before the first solve."""
    timed = [_cli_run(run, "timed") for run in runs]
    return (f"folder command line, warm process: the time outside embed is "
            f"{_span([100 * entry['overhead_fraction'] for entry in timed], 0)} % of the time inside it over "
            f"{len(timed)} runs, {_span([entry['startup_seconds'] for entry in timed], 2)} s of it before the first "
            "solve (reading the first batch)")


def inside_embed_line(runs: Sequence[dict[str, Any]], gpu_now: dict[str, Any]) -> str:
    """The solver's time per image inside the folder CLI (its timed runs' seconds inside ``embed``) against
    ``embed`` alone on the batch of a ``--part solve`` file (the default, TF32 not compiled: the CLI's setting at
    2,048 images; second call, wall time), in milliseconds per image."""
    timed = [_cli_run(run, "timed") for run in runs]
    inside = [1000 * entry["embed_seconds"] / entry["images"] for entry in timed]
    per_image = 1000 * embed_default(gpu_now)["wall_seconds"] / gpu_now["batch"]
    return (f"inside the command, embed took {min(inside):.2f} to {max(inside):.2f} ms per image over {len(inside)} "
            f"runs; alone, on {gpu_now['batch']} images from host memory (TF32, not compiled, second call), "
            f"{per_image:.2f} ms ({min(inside) / per_image:.1f} to {max(inside) / per_image:.1f}x)")


def settings_runs(settings_file: dict[str, Any], threads: int, switch_interval_ms: float) -> list[dict[str, Any]]:
    """The timed runs of one setting (worker threads, Python's switch interval in ms) in a
    ``benchmarks/watermark.py --part cli-settings`` file, in the order they ran (the process's first run, a
    warm-up, left out)."""
    runs = [run for run in settings_file["cli_settings"]["runs"] if run["run"] == "timed"
            and run["threads"] == threads and math.isclose(run["switch_interval_ms"], switch_interval_ms)]
    if not runs:
        raise ValueError(f"no timed run of {threads} threads at a {switch_interval_ms} ms switch interval in this "
                         f"file: it has {[(row['threads'], row['switch_interval_ms']) for row in settings_file['cli_settings']['settings']]}")
    return runs


def settings_rows(settings_file: dict[str, Any]) -> Rows:
    """One row per setting of a ``--part cli-settings`` file (:func:`settings_runs`): worker threads, switch
    interval, timed runs, images per second (median, then the range), the two-sided Mann-Whitney U test's p-value of
    its rates against the first setting's (the command line as it is; how likely rates this far apart would be if
    the setting changed nothing), the runs at the CLI goal (``GOAL_CLI_IMAGES_PER_SECOND``), and the median seconds
    inside ``embed``."""
    from scipy.stats import mannwhitneyu

    settings = settings_file["cli_settings"]["settings"]
    runs_of = [settings_runs(settings_file, setting["threads"], setting["switch_interval_ms"]) for setting in settings]
    rates_of = [[run["images_per_second"] for run in runs] for runs in runs_of]
    rows = []
    for index, (setting, runs, rates) in enumerate(zip(settings, runs_of, rates_of, strict=True)):
        p_value = "(the baseline)" if index == 0 else _p_value(mannwhitneyu(rates, rates_of[0]).pvalue)
        rows.append([f"{setting['threads']}", f"{setting['switch_interval_ms']:g} ms", f"{len(runs)}",
                     f"{statistics.median(rates):.0f}", _span(rates, 0), p_value,
                     _met_in([rate >= GOAL_CLI_IMAGES_PER_SECOND for rate in rates]),
                     f"{statistics.median(run['embed_seconds'] for run in runs):.2f} s"])
    return rows


def _p_value(p_value: float) -> str:
    """A test's p-value to two decimals, or "< 0.001" / "< 0.01" where two decimals would print 0.00."""
    return "< 0.001" if p_value < 0.001 else "< 0.01" if p_value < 0.005 else f"{p_value:.2f}"


def settings_trend_line(settings_file: dict[str, Any], first: int = 5) -> str:
    """Whether the command line sped up or slowed down over a ``--part cli-settings`` call, whatever the setting:
    the ``first`` and the last ``first`` timed runs' rates, and Spearman's rank correlation of each run's rate with
    its place in the order they ran (with its p-value: how likely a correlation this strong would be if the rates
    did not depend on the order)."""
    from scipy.stats import spearmanr

    rates = [run["images_per_second"] for run in settings_file["cli_settings"]["runs"] if run["run"] == "timed"]
    if len(rates) < 2 * first:
        raise ValueError(f"{len(rates)} timed runs in this file: the first and last {first} would overlap; give a "
                         f"smaller first= (at most {len(rates) // 2})")
    trend = spearmanr(range(len(rates)), rates)
    return (f"over the call's {len(rates)} timed runs, in the order they ran: the first {first} runs "
            f"{_span(rates[:first], 0)} images/s, the last {first} runs {_span(rates[-first:], 0)}; Spearman's rank "
            f"correlation of a run's rate with its place {trend.statistic:.2f} (p = {trend.pvalue:.1g})")


def settings_embed_line(settings_file: dict[str, Any]) -> str:
    """``embed`` inside the command against ``embed`` alone, call for call, in a ``--part cli-settings`` file made with
    each run's calls kept (``embed_call_seconds``) and embed alone's recording call timed (``recording_seconds``): the
    first setting's runs (the command line as it is), the median of their first calls (each run's first batch records
    the CUDA graph and checks the new model's patch map) and of their later calls, beside embed alone's recording
    call and the median of its six replays; the ratio of the later calls' median to the replays'. A file whose embed alone ran outside the command's CUDA
    graphs, or that keeps no calls one by one (call 26's), is refused: it does not compare."""
    cli_settings = settings_file["cli_settings"]
    alone = cli_settings["embed_alone"]
    on_gpu = settings_file["device"] != settings_file.get("cpu")  # the benchmark names the CPU as a CPU run's device
    if on_gpu and not alone.get("cuda_graphs"):
        raise ValueError("this file's embed alone ran outside a cuda_graphs block: not the command's path, so it "
                         "does not compare with the time inside the command; rerun --part cli-settings")
    setting = cli_settings["settings"][0]
    runs = settings_runs(settings_file, setting["threads"], setting["switch_interval_ms"])
    if "recording_seconds" not in alone or any("embed_call_seconds" not in run for run in runs):
        raise ValueError("this file keeps no embed calls one by one (embed_call_seconds) or no timed recording call "
                         "(embed_alone.recording_seconds): made before 3785eb2; rerun --part cli-settings")
    if cli_settings["images"] % cli_settings["batch_size"]:
        raise ValueError(f"{cli_settings['images']} images in batches of {cli_settings['batch_size']}: the last "
                         "call is shorter than embed alone's, so the calls do not compare")
    first_calls = [run["embed_call_seconds"][0] for run in runs]
    later_calls = [seconds for run in runs for seconds in run["embed_call_seconds"][1:]]
    if not later_calls:
        raise ValueError("each run solved one batch: no call after the recording one to compare")
    later, replay = statistics.median(later_calls), statistics.median(alone["seconds"])
    return (f"embed on {cli_settings['batch_size']} images, {setting['threads']} worker threads at "
            f"{setting['switch_interval_ms']:g} ms, {len(runs)} runs: inside the command the first call (recording "
            f"the CUDA graph) {_span(first_calls, 2)} s (median {statistics.median(first_calls):.2f}), the "
            f"{len(later_calls)} later calls {_span(later_calls, 2)} s (median {later:.2f}); alone the recording call "
            f"{alone['recording_seconds']:.2f} s, then {len(alone['seconds'])} calls {_span(alone['seconds'], 2)} s "
            f"(median {replay:.2f}): the later calls inside take {later / replay:.2f}x the calls alone")


#: Issue #34's goals: ``embed`` on 3925 images host to host within this many seconds on one H200; the folder CLI
#: at this many images a second on a GPU machine, and on the CPU with less than this fraction of the solve's time
#: outside it; the CPU's first call within this many seconds.
GOAL_EMBED_SECONDS_H200 = 1.5
GOAL_CLI_IMAGES_PER_SECOND = 500
GOAL_CPU_CLI_OVERHEAD = 0.20
GOAL_CPU_FIRST_CALL_SECONDS = 0.7


def goal_rows(gpu_now: dict[str, Any], cli_gpu: dict[str, Any] | Sequence[dict[str, Any]], cli_cpu: dict[str, Any],
              cpu: dict[str, Any], cpu_at_issue: dict[str, Any] | None = None,
              cli_settings: dict[str, Any] | None = None) -> Rows:
    """Issue #34's goals against the files measured after its changes: what, the goal, what was measured (and
    where), and whether it is met. ``gpu_now``: ``benchmarks/watermark.py --part solve`` on a GPU (its second
    ``embed`` calls, wall time, pipelined); ``cli_gpu``: ``--part cli`` runs (or one) on a GPU machine with one library (their
    timed runs in a warm process: the range over the runs, met in all, none or some of them, see
    :func:`repeat_runs`); ``cli_cpu`` and ``cpu``: the CPU's CLI file (one run's, or several runs' in its ``runs``,
    one library's) and solver file; ``cpu_at_issue``: the CPU solver's
    file when the issue was filed, whose default gap to the optimum the goal keeps ("as today": met when today's,
    to three decimals of a percent, is no larger); ``cli_settings``: a ``--part cli-settings`` file, whose runs of
    its first setting (by default the command line as it is: 8 worker threads, Python's 5 ms switch interval) add
    a row. An ``embed`` time from another GPU than an H200 is not compared
    with the H200 goal."""
    device = gpu_now["device"]
    rows = []
    for entry in gpu_now["embed_pipelined"]:
        if entry["call"] != "second" or not entry["pipelined"]:
            continue
        seconds = entry["wall_seconds"]
        met = ("yes" if seconds <= GOAL_EMBED_SECONDS_H200 else "no") if "H200" in device else "not an H200"
        rows.append([f"embed, {gpu_now['batch']} images host to host, {_arithmetic(entry)} (second call)",
                     f"≤ {GOAL_EMBED_SECONDS_H200} s on one H200", f"{seconds:.2f} s on an {device}", met])
    cli_gpu = [cli_gpu] if isinstance(cli_gpu, dict) else cli_gpu  # one run's file, as before several were kept
    timed = [entry for run in cli_gpu for entry in run["cli"]["runs"] if entry["run"] == "timed"]
    if timed:
        rates = [entry["images_per_second"] for entry in timed]
        measured = (f"{rates[0]:.1f} images/s" if len(rates) == 1 else
                    f"{min(rates):.1f} to {max(rates):.1f} images/s over {len(rates)} runs")
        rows.append([f"folder CLI, {timed[0]['images']} PNGs, batch {timed[0]['batch_size']}, warm process",
                     f"≥ {GOAL_CLI_IMAGES_PER_SECOND} images/s", f"{measured} on an {cli_gpu[0]['device']}",
                     _met_in([rate >= GOAL_CLI_IMAGES_PER_SECOND for rate in rates])])
    if cli_settings is not None:
        first = cli_settings["cli_settings"]["settings"][0]  # the command line as it is, by the script's default
        runs = settings_runs(cli_settings, first["threads"], first["switch_interval_ms"])
        rates = [run["images_per_second"] for run in runs]
        rows.append([f"the same, {first['threads']} threads at a {first['switch_interval_ms']:g} ms switch interval, "
                     f"{len(runs)} runs in one process, other settings' runs between them",
                     f"≥ {GOAL_CLI_IMAGES_PER_SECOND} images/s",
                     f"{_span(rates, 1)} images/s, median {statistics.median(rates):.1f}, on an "
                     f"{cli_settings['device']} (another machine)",
                     _met_in([rate >= GOAL_CLI_IMAGES_PER_SECOND for rate in rates])])
    cpu_runs = cli_cpu["runs"] if "runs" in cli_cpu else [cli_cpu]  # several runs' files, or one run's
    shares = [_cli_run(run, "timed")["overhead_fraction"] for run in cpu_runs]
    if shares:
        count = "one run" if len(shares) == 1 else f"{len(shares)} runs"
        rows.append([f"folder CLI on the CPU, {_cli_run(cpu_runs[0], 'timed')['images']} PNGs, warm process: time "
                     "outside the solve", f"< {100 * GOAL_CPU_CLI_OVERHEAD:.0f} % of the solve's",
                     f"{_span([100 * share for share in shares], 0)} % ({cli_cpu['cpu']}, {cli_cpu['threads']} threads, "
                     f"library {cli_cpu['commit'][:7]}, {count})",
                     _met_in([share < GOAL_CPU_CLI_OVERHEAD for share in shares])])
    first = cpu["first_call"]["default"]
    rows.append(["embed's first call on the CPU, one image, new process", f"≤ {GOAL_CPU_FIRST_CALL_SECONDS} s",
                 f"{first:.2f} s ({cpu['cpu']}, {cpu['threads']} threads, library {cpu['commit'][:7]}, one run)",
                 "yes" if first <= GOAL_CPU_FIRST_CALL_SECONDS else "no"])
    if cpu_at_issue is not None:
        def gap(run: dict[str, Any]) -> float:
            return next(row["gap_percent"] for row in run["admm_cpu"] if row["settings"] == "default"
                        and row["iterations"] == run["default"]["iterations"])

        then, now = gap(cpu_at_issue), gap(cpu)
        rows.append([f"embed's gap to the LP optimum on the CPU, default ({cpu['default']['iterations']} iterations)",
                     f"as at the issue: {then:.3f} % (library {cpu_at_issue['commit'][:7]})",
                     f"{now:.3f} % (library {cpu['commit'][:7]})", "yes" if round(now, 3) <= round(then, 3) else "no"])
    return rows


def admm_settings_line(cpu: dict[str, Any]) -> str:
    """The two ADMM settings the CPU benchmark compares (its ``before`` and ``default`` entries): step size,
    iterations and start, as the page prints them above its figure."""
    def step(rho: Any) -> str:
        return f"a step growing from {rho[0]:g} to {rho[1]:g}" if isinstance(rho, list) else f"a constant step {rho:g}"

    return "; ".join(f"{name}: {step(cpu[name]['rho'])}, {cpu[name]['iterations']} iterations, "
                     f"{'warm start' if cpu[name]['warm_start'] else 'starting from the original patch'}"
                     for name in ("before", "default"))


def svd_rows(text: str) -> list[tuple[str, float, bool]]:
    """The rows of ``benchmarks/results/nullspace_svd.txt`` (what ``benchmarks/nullspace_svd.py`` prints): each
    matrix's model, scipy's time over ours, and whether both bases span the same space."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0][-3:] != ["scipy/ours", "same", "space"]:
        raise ValueError("not the table benchmarks/nullspace_svd.py prints: its last columns are 'scipy/ours' and "
                         "'same space'; rerun the script to refresh the file.")
    return [(cells[0], float(cells[-2]), cells[-1] == "True") for cells in lines[1:]]


def svd_ratio_line(text: str) -> str:
    """One line on the SVD benchmark, from its table (:func:`svd_rows`): the range of scipy's time over ours,
    whether either is faster on every matrix, and whether every pair of bases spans the same space."""
    rows = svd_rows(text)
    ratios = [ratio for _, ratio, _ in rows]
    low, high = min(ratios), max(ratios)
    if low < 1 < high:
        faster = "neither is faster on every matrix"
    else:
        faster = "scipy is as fast or faster on every matrix" if high <= 1 else "ours is as fast or faster on every matrix"
    return (f"scipy's time over ours: {low:.2f} to {high:.2f} over {len(rows)} matrices, {faster}; "
            f"both bases span the same space for every matrix: {all(same for _, _, same in rows)}")


def benchmark_file(path: str, *, text: bool = False) -> results.ChapterResult:
    """A benchmark's result file as the page shows it: :func:`~nullspace_utils.results.chapter_file` (``None`` and a
    note when it cannot be had, #32), with :func:`benchmark_note`'s "how this was made" box for a file that records
    its command and commit."""
    content, note = results.chapter_file(path, text=text)
    if isinstance(content, dict) and "command" in content and "commit" in content:
        note = benchmark_note(content, path)
    return results.ChapterResult(content, note)


def svd_table_rows(text: str) -> Rows:
    """``benchmarks/results/nullspace_svd.txt`` as table rows: model, matrix shape, our time, scipy's, scipy's time
    over ours and whether both bases span the same space (the file's columns; its shape cell holds a space)."""
    shapes = re.compile(r"^(\S+)\s+(\(\d+,\s*\d+\))\s+(\S+)\s+(\S+)\s+(\S+)\s+(True|False)\s*$")
    rows = [shapes.match(line) for line in text.splitlines()[1:] if line.strip()]
    if not rows or not all(rows):
        raise ValueError("not the table benchmarks/nullspace_svd.py prints (model, (d, n), ours, scipy, ratio, "
                         "True/False per line); rerun the script to refresh the file.")
    return [[row[1], row[2], f"{float(row[3]):.2f} s", f"{float(row[4]):.2f} s", f"{float(row[5]):.2f}",
             "yes" if row[6] == "True" else "no"] for row in rows if row]


def plan_timing_rows(timing: dict[str, Any]) -> Rows:
    """``benchmarks/results/plan_timing_imagenet.json`` (``benchmarks/plan_timing.py``) by study: its parts, how
    their times were obtained (how many measured, estimated, projected, at least), the seconds of those the plan's
    sums count (``counted``; a lower bound from a machine of fewer cores is not), and the parts with no time."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for name, row in timing["parts"].items():
        studies.setdefault(name.split("/")[0], []).append(row)
    rows = []
    for study, parts in studies.items():
        counts = collections.Counter(part["how"] for part in parts if part["seconds"] is not None)
        summed = [part["seconds"] for part in parts if part.get("counted", part["seconds"] is not None)]
        timed = sum(part["seconds"] is not None for part in parts)
        rows.append([study, f"{len(parts)}", ", ".join(f"{count} {how}" for how, count in counts.items()) or "-",
                     f"{sum(summed):,.0f} s" if summed else "-", f"{len(parts) - timed}"])
    return rows


def plan_timing_line(timing: dict[str, Any]) -> str:
    """The plan's wall time against its goal, from the same file: the GPU's parts one after another, the CPU parts
    beside them, so about the larger sum (of measured, estimated and projected times); and the parts with no time."""
    slots, goal = timing["slots"], timing["goal_seconds"]
    missing = len(timing["not_measured"])
    return (f"GPU parts {slots['gpu']:,.0f} s ({slots['gpu'] / 3600:.1f} h), CPU parts {slots['cpu']:,.0f} s "
            f"({slots['cpu'] / 3600:.1f} h) beside them: the plan takes about {slots['wall'] / 3600:.1f} h, the larger, "
            f"against the goal of {goal / 3600:g} h; "
            + (f"{missing} part has no time" if missing == 1 else f"{missing} parts have no time"))


def benchmarks_summary(cpu: dict[str, Any] | None, gpu: dict[str, Any] | None, svd: str | None,
                       timing: dict[str, Any] | None, budget: float = 120, *, pipeline: dict[str, Any] | None = None,
                       cli_now: dict[str, Any] | Sequence[dict[str, Any]] | None = None) -> results.Note:
    """The benchmarks page's "What we found" box, one bullet per result file that could be read, each linking to
    its section: the CPU watermark solver against HiGHS, the GPU batch, ``embed`` and the folder CLI end to end
    (``pipeline``: a GPU run's ``embed_pipelined`` rows and floor, e.g. ``watermark_gpu_now.json``; ``cli_now``: CLI
    runs of one library on such a machine, :func:`repeat_runs`: the range of their rates), the SVD against scipy, the chapters' run times against ``budget`` seconds."""
    bullets = []
    if cpu is not None:
        default = next(row for row in cpu["admm_cpu"] if row["settings"] == "default"
                       and row["iterations"] == cpu["default"]["iterations"])
        highs = cpu["highs"]["seconds_per_image_extrapolated"]
        days = cpu["slsqp"]["paper_setting_seconds_extrapolated"] / 86400
        bullets.append(f"The watermark solver's default ({default['iterations']} ADMM iterations) takes "
                       f"{default['seconds']:.2f} s per image on {cpu['threads']} CPU threads and ends "
                       f"{default['gap_percent']:.2f} % above the LP optimum: {speed_ratio(highs / default['seconds'])} "
                       f"faster than HiGHS (extrapolated: {highs:.0f} s), while SLSQP in the paper's setting would "
                       f"take about {days:.0f} days (extrapolated) ({{ref}}`see the figure <benchmarks-watermark>`)")
    if gpu is not None:
        row = min((row for row in gpu["admm_gpu"] if row["settings"] == "default" and row["precision"] == "tf32"),
                  key=lambda row: row["seconds"])
        bullets.append(f"On one {gpu['device']} (library {gpu['commit'][:7]}, one run), the solver alone takes "
                       f"{row['seconds']:.2f} s for {gpu['batch']} images already on the GPU (TF32 matmuls"
                       f"{', compiled' if row['compiled'] else ''}), "
                       f"{row['gap_percent']:.2f} % above the optimum ({{ref}}`see the table <benchmarks-gpu>`)")
    if isinstance(cli_now, dict):  # one run's file, as before several were kept
        cli_now = [cli_now]
    if pipeline is not None and cli_now:
        embed = embed_default(pipeline)
        rates, fresh = _rates(cli_now, "timed"), _rates(cli_now, "new process")  # the default batch
        goal = sum(rate >= GOAL_CLI_IMAGES_PER_SECOND for rate in rates)
        cli_libraries = ", ".join(sorted({str(run.get("commit", "?"))[:7] for run in cli_now}))
        runs = "one run" if len(cli_now) == 1 else f"{len(cli_now)} runs"
        bullets.append(f"End to end on {pipeline['device']} machines: `embed` (library {pipeline['commit'][:7]}, one "
                       f"run) watermarks {pipeline['batch']} images from host memory in {embed['wall_seconds']:.1f} s, "
                       f"{embed['wall_seconds'] / pipeline['floor']['embed_seconds']:.0f}x the floor (a lower bound from "
                       f"the GPU's copy speed); the folder CLI (library {cli_libraries}, {runs}) writes {_span(rates, 1)} PNGs "
                       f"a second in a warm process (after a warm-up run; the goal of {GOAL_CLI_IMAGES_PER_SECOND} "
                       f"met in {goal} of {len(rates)}), "
                       + (f"{_span(fresh, 0)} in a new process (Python, torch and CUDA start included)" if fresh else
                          "not timed from the command line (a new process) with this library")
                       + " ({ref}`see the goals <benchmarks-goals>`)")
    if svd is not None:
        ratios = [ratio for _, ratio, _ in svd_rows(svd)]
        same = all(same for _, _, same in svd_rows(svd))
        bullets.append(f"Our nullspace SVD against scipy's: scipy's time over ours is {min(ratios):.2f} to "
                       f"{max(ratios):.2f} over {len(ratios)} matrices; both bases span the same space"
                       f"{' for every matrix' if same else ' NOT for every matrix'} "
                       f"({{ref}}`see the table <benchmarks-svd>`)")
    if timing is not None:
        seconds = timing["seconds"]
        slowest = max(seconds, key=seconds.get)
        within = sum(value <= budget for value in seconds.values())
        bullets.append(f"{within} of {len(seconds)} chapters run within the {budget:.0f} s budget on "
                       f"{timing['cores']} CPU cores (slowest: {slowest}, {seconds[slowest]:.0f} s; all together "
                       f"{sum(seconds.values()):.0f} s) ({{ref}}`see the figure <benchmarks-chapters>`)")
    if not bullets:
        bullets.append("None of the benchmark files could be read here: the notes below say how to get them")
    text = "\n".join(bullets)
    body = "\n".join(f"- {bullet}" for bullet in bullets)
    return results.Note(text, f":::{{admonition}} What we found\n:class: tip\n{body}\n:::\n")


# --------------------------------------------------------------------------- teachers
def chapter_time_rows(timing: dict[str, Any], gpu: dict[str, Any], numbers: dict[str, int] | None = None) -> Rows:
    """Each chapter's run time: under the teaching profile on the CPU (``benchmarks/results/notebook_times.json``)
    and under the imagenet profile on one GPU (``benchmarks/results/imagenet_chapters_gpu.json``; "not run" for a
    chapter that file lacks). With ``numbers`` (:func:`chapter_numbers`) a chapter is named by its number too."""
    gpu_seconds = {entry["notebook"].removeprefix("book/").removesuffix(".ipynb"): entry["seconds"]
                   for entry in gpu["chapters"]}
    numbers = numbers or {}
    return [[f"{numbers[name]}. {name}" if name in numbers else name, f"{seconds:.0f} s",
             f"{gpu_seconds[name]:.0f} s" if name in gpu_seconds else "not run"]
            for name, seconds in timing["seconds"].items()]


def session_rows(sessions: list[dict[str, Any]], timing: dict[str, Any]) -> Rows:
    """The suggested sessions (``page_data("sessions")``: a title, chapters and prerequisites each) as a table:
    class time at 30 to 60 minutes per chapter, and the chapters' measured run time on the CPU. Every timed chapter
    must be in exactly one session, and every session's chapters must be timed."""
    planned = [name for session in sessions for name in session["chapters"]]
    twice = sorted({name for name in planned if planned.count(name) > 1})
    left_out = sorted(set(timing["seconds"]) - set(planned))
    untimed = sorted(set(planned) - set(timing["seconds"]))
    if twice or left_out or untimed:
        raise ValueError(f"the sessions (book/_data/sessions.json) must hold every timed chapter once: in two "
                         f"sessions {twice or 'none'}, in none {left_out or 'none'}, not timed {untimed or 'none'} "
                         "(rerun benchmarks/notebook_times.py after adding a chapter).")
    rows = []
    for session in sessions:
        chapters = session["chapters"]
        rows.append([session["title"], ", ".join(chapters), f"{30 * len(chapters)}–{60 * len(chapters)} min",
                     _minutes(sum(timing['seconds'][name] for name in chapters)), session["needs"]])
    return rows


def _minutes(seconds: float) -> str:
    return "under 1 min" if seconds < 60 else f"{seconds / 60:.0f} min"


class Exercise(NamedTuple):
    """One exercise of a chapter: the chapter's name, the exercise's number as the site shows it (``"4.2"``: the
    chapter's number in the book, then the exercise's place in the chapter), its title, its label
    (``ex-primer-1``) and the Python code of its hidden solution (``""`` for a solution without code)."""

    chapter: str
    number: str
    title: str
    label: str
    solution_code: str


_EXERCISE = re.compile(r"```\{exercise\} (.+)\n# :label: (\S+)")
_SOLUTION = re.compile(r"^# ```\{solution\} (\S+)\n(.*?)^# ```$", re.M | re.S)
_CODE = re.compile(r"^# ~~~python\n(.*?)^# ~~~$", re.M | re.S)
_TOC_FILE = re.compile(r"^\s*- file: book/(\w+)\s*$")


def chapter_numbers(toc: str) -> dict[str, int]:
    """The chapters' numbers in the book, from the text of ``_toc.yml``: the pages of its numbered part
    (``numbered:``), counted from 1 in order, as the site numbers them; pages in other parts have none."""
    numbers: dict[str, int] = {}
    numbered = False
    for line in toc.splitlines():
        if line.strip().startswith("- caption:"):  # a new part
            numbered = False
        elif line.strip().startswith("numbered:"):
            numbered = line.split(":", 1)[1].strip() not in ("false", "0")
        elif numbered and (match := _TOC_FILE.match(line)):
            numbers[match[1]] = len(numbers) + 1
    return numbers


def _solution_code(body: str) -> str:
    """The ``~~~python`` blocks of a solution in a chapter's source, without the source's comment marks."""
    blocks = [[line[2:] if line.startswith("# ") else line.removeprefix("#") for line in code.splitlines()]
              for code in _CODE.findall(body)]
    return "\n\n".join("\n".join(lines) for lines in blocks)


def exercises(toc: str | None = None) -> list[Exercise]:
    """Every exercise of the book's numbered chapters, in the order of ``_toc.yml`` (its text, read from the
    repository when not given) and, within a chapter, of its source ``book/_src/<chapter>.py``, numbered as
    sphinx-exercise numbers them on the site (``"<chapter>.<n>"``; a chapter without a source has no exercises)."""
    found = []
    toc = results.read("_toc.yml", text=True) if toc is None else toc
    for name, chapter in chapter_numbers(toc).items():
        source = results.read(f"book/_src/{name}.py", text=True, missing_ok=True)
        if source is None:
            continue
        solutions = {label: _solution_code(body) for label, body in _SOLUTION.findall(source)}
        found += [Exercise(name, f"{chapter}.{index}", title, label, solutions.get(label, ""))
                  for index, (title, label) in enumerate(_EXERCISE.findall(source), start=1)]
    return found


#: Minutes of class an exercise takes before any of its code runs: reading it, trying it, discussing it (an estimate).
CLASS_MINUTES_BASE = 10


def class_minutes(solution_seconds: float | None) -> int:
    """An estimate, not a measurement, of an exercise's class time in minutes: :data:`CLASS_MINUTES_BASE` to read,
    try and discuss it, plus three runs of its solution's code (a student's tries: a first one, a fix, the
    answer), rounded up to 5 minutes. ``None``: a solution without code."""
    minutes = CLASS_MINUTES_BASE + 3 * (solution_seconds or 0.0) / 60
    return 5 * math.ceil(minutes / 5)


def _seconds(seconds: float) -> str:
    """A run time as a teacher reads it: "under 1 s", seconds up to two minutes, then minutes."""
    if seconds < 1:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def exercise_rows(found: Sequence[Exercise], practises: dict[str, str], times: dict[str, Any]) -> Rows:
    """The teachers page's table of exercises: the number students see, the chapter, the title, what it practises
    (``book/_data/exercises.json``), its solution's measured run time (``benchmarks/results/exercise_times.json``'s
    CPU time, which a busy machine does not inflate; "no code" for a solution without code) and the class time
    estimated by :func:`class_minutes`."""
    rows = []
    for exercise in found:
        seconds = times["cpu_seconds"].get(exercise.label) if exercise.solution_code else None
        failed = exercise.solution_code and seconds is None
        rows.append([f"Exercise {exercise.number}", exercise.chapter, exercise.title,
                     practises.get(exercise.label, "**not described yet**"), _solution_time(exercise, times),
                     "—" if failed else f"~{class_minutes(seconds)} min"])
    return rows


def _solution_time(exercise: Exercise, times: dict[str, Any]) -> str:
    """An exercise's solution run time as the teachers page shows it: "no code", its CPU time, or why it was not
    timed (``times["failed"]``: it erred or outlasted the timing script's timeout). A solution with code that the
    file neither timed nor lists as failed is an error: the file is older than the exercise."""
    if not exercise.solution_code:
        return "no code"
    seconds = times["cpu_seconds"].get(exercise.label)
    if seconds is not None:
        return _seconds(seconds)
    if exercise.label in times.get("failed", {}):
        return f"not timed ({times['failed'][exercise.label]})"
    raise ValueError(f"{exercise.label} has solution code but no time in exercise_times.json: rerun "
                     "`python benchmarks/exercise_times.py`.")


def _solution_phrase(exercise: Exercise, times: dict[str, Any]) -> str:
    """:func:`_solution_time` in a sentence: "its solution runs in 2 s", "no code" or "not timed (...)"."""
    shown = _solution_time(exercise, times)
    return shown if shown == "no code" or shown.startswith("not timed") else f"its solution runs in {shown}"


def session_plan_rows(plan: dict[str, Any], found: Sequence[Exercise], timing: dict[str, Any],
                      exercise_time: dict[str, Any]) -> Rows:
    """A one-session plan of a chapter (``book/_data/<chapter>_plan.json``: the chapter, the session's minutes and
    its steps, each with its minutes, an estimate) as rows: minutes from and to, the step, and what was measured
    for it: the chapter's run time for the step that runs it (``"run": true``), the solution's run time for an
    exercise (``"exercise": label``, shown by the number students see). The last row is the total."""
    by_label = {exercise.label: exercise for exercise in found}
    rows, start = [], 0
    for step in plan["steps"]:
        what, measured = step["what"], ""
        if step.get("run"):
            measured = f"the notebook runs in {timing['seconds'][plan['chapter']]:.0f} s"
        if "exercise" in step:
            exercise = by_label[step["exercise"]]
            what = f"Exercise {exercise.number} ({exercise.title}): {what}"
            measured = _solution_phrase(exercise, exercise_time)
        rows.append([f"{start}–{start + step['minutes']} min", what, measured])
        start += step["minutes"]
    rows.append([f"{start} min", f"in all, for a {plan['minutes']}-minute session", ""])
    return rows


def homework_line(plan: dict[str, Any], found: Sequence[Exercise], exercise_time: dict[str, Any]) -> str:
    """The plan's exercises set as homework (its ``homework`` labels), by the numbers students see, with their
    solutions' measured run times."""
    by_label = {exercise.label: exercise for exercise in found}
    parts = []
    for label in plan.get("homework", []):
        parts.append(f"Exercise {by_label[label].number} ({by_label[label].title}; "
                     f"{_solution_phrase(by_label[label], exercise_time)})")
    return "homework: " + ("; ".join(parts) or "none")


def exercise_time_line(times: dict[str, Any]) -> str:
    """How the exercises were timed (``benchmarks/results/exercise_times.json``): the machine's cores, the range of
    its load average while the chapters ran, and which time the table gives."""
    loads = [value for pair in times["load_average"].values() for value in pair]
    return (f"timed on {times['cores']} cores at a load average of {min(loads):g} to {max(loads):g}; the table gives "
            f"CPU time (all threads), which other work on the machine does not inflate: "
            f"{len(times['cpu_seconds'])} solutions timed, {len(times['failed'])} did not finish")
