"""What the book's two pages that are not chapters read: the benchmarks page (the result files of
``benchmarks/``: the watermark solver against HiGHS and SLSQP, on CPU and GPU) and the teachers page (the
chapters' run times, their exercises, and the suggested sessions in ``book/_data/``).

Every function here takes a committed file's contents as :func:`nullspace_utils.results.read` gives them (or reads
it so) and returns what the page shows: rows of a table, a figure's panels, the exercises found in the chapters.
Cells are formatted here, because these pages only display the files; nothing is computed anew.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Sequence

from nullspace_utils import results

__all__ = ["page_data", "admm_runs", "solver_panels", "cpu_solver_rows", "gpu_solver_rows", "chapter_time_rows",
           "session_rows", "Exercise", "exercises", "admm_settings_line", "svd_rows", "svd_ratio_line"]

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
             f"{row['gap_percent']:.3f} %", f"{exact_seconds / row['seconds']:.0f}x"] for row in cpu["admm_cpu"]]
    for name, label in (("before", f"before: {cpu['before']['iterations']} iterations and an SVD"),
                        ("default", f"default: {cpu['default']['iterations']} iterations")):
        rows.append([f"ADMM {label}, first call in a fresh process", f"{first[name]:.2f} s", "",
                     f"{exact_seconds / first[name]:.0f}x"])
    rows.append([f"HiGHS interior point (exact LP), extrapolated from {highs['patches']} patches",
                 f"{exact_seconds:.0f} s", "0 (the optimum)", "1x"])
    rows.append(["SLSQP (joint space), all 5000 iterations on each of 49 patches, extrapolated: an upper bound",
                 f"{slsqp['paper_setting_seconds_extrapolated'] / 86400:.0f} days", "—",
                 f"{exact_seconds / slsqp['paper_setting_seconds_extrapolated']:.1g}x"])
    return rows


def gpu_solver_rows(gpu: dict[str, Any]) -> Rows:
    """The GPU benchmark (``benchmarks/results/watermark_gpu.json``) as a table: settings, iterations, matmul
    precision, compiled or not, seconds for the batch, gap to the optimum and peak memory; first the solver on
    images already on the GPU, then whole ``embed`` calls from host memory."""
    rows = [[row["settings"], f"{row['iterations']}", row["precision"], "yes" if row["compiled"] else "no",
             f"{row['seconds']:.2f} s", f"{row['gap_percent']:.3f} %", f"{row['peak_memory_gb']:.0f} GB"]
            for row in gpu["admm_gpu"]]
    for row in gpu["embed_gpu"]:
        where = ("one chunk" if row["chunk_images"] is None
                 else f"chunks of {row['chunk_images']} images, sized for a {row['chunks']}")
        rows.append([f"embed from host memory, {where}", f"{gpu['default']['iterations']}", "tf32", "no",
                     f"{row['seconds']:.2f} s", "", f"{row['peak_memory_gb']:.0f} GB"])
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


# --------------------------------------------------------------------------- teachers
def chapter_time_rows(timing: dict[str, Any], gpu: dict[str, Any]) -> Rows:
    """Each chapter's run time: under the teaching profile on the CPU (``benchmarks/results/notebook_times.json``)
    and under the imagenet profile on one GPU (``benchmarks/results/imagenet_chapters_gpu.json``; "not run" for a
    chapter that file lacks)."""
    gpu_seconds = {entry["notebook"].removeprefix("book/").removesuffix(".ipynb"): entry["seconds"]
                   for entry in gpu["chapters"]}
    return [[name, f"{seconds:.0f} s", f"{gpu_seconds[name]:.0f} s" if name in gpu_seconds else "not run"]
            for name, seconds in timing["seconds"].items()]


def session_rows(sessions: list[dict[str, Any]], timing: dict[str, Any]) -> Rows:
    """The suggested sessions (``page_data("sessions")``: a title, chapters and prerequisites each) as a table:
    class time at 30 to 60 minutes per chapter, and the chapters' measured run time on the CPU."""
    rows = []
    for session in sessions:
        chapters = session["chapters"]
        rows.append([session["title"], ", ".join(chapters), f"{30 * len(chapters)}–{60 * len(chapters)} min",
                     f"{sum(timing['seconds'][name] for name in chapters) / 60:.0f} min", session["needs"]])
    return rows


class Exercise(NamedTuple):
    """One exercise of a chapter: the chapter's name, the exercise's title and its label (``ex-primer-1``)."""

    chapter: str
    title: str
    label: str


_EXERCISE = re.compile(r"```\{exercise\} (.+)\n# :label: (\S+)")


def exercises() -> list[Exercise]:
    """Every exercise of the book's chapters, in the order of ``_toc.yml`` and, within a chapter, of its source
    ``book/_src/<chapter>.py`` (the API pages, ``book/api/...``, are not chapters; a page without a source has no
    exercises)."""
    found = []
    for line in results.read("_toc.yml", text=True).splitlines():
        name = line.strip().removeprefix("- file: book/")
        if not line.strip().startswith("- file: book/") or "/" in name:
            continue
        source = results.read(f"book/_src/{name}.py", text=True, missing_ok=True)
        if source is not None:
            found += [Exercise(name, title, label) for title, label in _EXERCISE.findall(source)]
    return found
