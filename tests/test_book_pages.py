"""The readers of the benchmarks and teachers pages: rows and panels from the committed files' contents."""

import pytest

from nullspace_utils import book_pages
from nullspace_utils.results import read

CPU = {"highs": {"seconds_per_image_extrapolated": 100.0, "patches": 3},
       "before": {"iterations": 300, "rho": 10.0, "warm_start": False},
       "default": {"iterations": 100, "rho": [1.0, 200.0], "warm_start": True},
       "slsqp": {"paper_setting_seconds_extrapolated": 86400.0 * 2},
       "first_call": {"before": 2.0, "default": 0.5},
       "admm_cpu": [{"settings": "before", "iterations": 100, "seconds": 0.5, "gap_percent": 0.3},
                    {"settings": "warm start only", "iterations": 100, "seconds": 0.4, "gap_percent": 0.25},
                    {"settings": "before", "iterations": 300, "seconds": 1.0, "gap_percent": 0.06},
                    {"settings": "default", "iterations": 100, "seconds": 0.25, "gap_percent": 0.05}]}


def test_admm_runs_and_solver_panels():
    runs = book_pages.admm_runs(CPU)
    assert [row["iterations"] for row in runs["before"]] == [100, 300] and len(runs["default"]) == 1
    assert list(book_pages.admm_runs(CPU, ("warm start only",))) == ["warm start only"]
    gap, seconds = book_pages.solver_panels(CPU)
    assert gap["lines"]["ADMM, before"] == ([0.5, 1.0], [0.3, 0.06], "o-")
    assert seconds["lines"]["ADMM, default"] == ([100], [0.25], "o-")
    assert seconds["lines"]["HiGHS (exact, extrapolated)"] == ([50, 300], [100.0, 100.0], "--")


def test_cpu_and_gpu_solver_rows():
    rows = book_pages.cpu_solver_rows(CPU)
    assert len(rows) == 4 + 2 + 2  # every ADMM row, two first calls, HiGHS and SLSQP
    assert rows[0] == ["ADMM before, 100 iterations (warm)", "0.50 s", "0.300 %", "200x"]
    assert rows[4] == ["ADMM before: 300 iterations and an SVD, first call in a fresh process", "2.00 s", "", "50x"]
    assert rows[-2][1:] == ["100 s", "0 (the optimum)", "1x"] and rows[-1][1] == "2 days"
    gpu = {"admm_gpu": [{"settings": "default", "iterations": 100, "precision": "tf32", "compiled": True,
                         "seconds": 5.0, "gap_percent": 0.06, "peak_memory_gb": 35.8}],
           "default": {"iterations": 80},
           "embed_gpu": [{"chunks": "fits the device", "chunk_images": None, "seconds": 6.0, "peak_memory_gb": 25.7},
                         {"chunks": "16 GB GPU (Colab T4)", "chunk_images": 934, "seconds": 6.4,
                          "peak_memory_gb": 12.6}]}
    rows = book_pages.gpu_solver_rows(gpu)
    assert rows[0] == ["default", "100", "tf32", "yes", "5.00 s", "0.060 %", "36 GB"]
    assert rows[1][0] == "embed from host memory, copies one after another, one chunk" and rows[1][1] == "80"  # the file's budget
    assert rows[2][0] == "embed from host memory, copies one after another, chunks of 934 images, sized for a 16 GB GPU (Colab T4)"
    pipelined = book_pages.gpu_solver_rows({**gpu, "embed_pipelined": []})  # a file made since the pipeline came
    assert pipelined[1][0] == "embed from host memory, copies overlapping the solve, one chunk"


def test_benchmark_lines_come_from_the_files():
    assert book_pages.admm_settings_line(CPU) == (
        "before: a constant step 10, 300 iterations, starting from the original patch; "
        "default: a step growing from 1 to 200, 100 iterations, warm start")
    table = ("model                           shape  ours (s)  scipy (s) scipy/ours same space\n"
             "vit_small_patch32_224     (384, 3072)      2.16       2.25       1.04       True\n"
             "vit_base_patch32_224      (768, 3072)      3.17       2.12       0.67       True\n")
    assert book_pages.svd_rows(table) == [("vit_small_patch32_224", 1.04, True), ("vit_base_patch32_224", 0.67, True)]
    assert book_pages.svd_ratio_line(table) == ("scipy's time over ours: 0.67 to 1.04 over 2 matrices, neither is "
                                                "faster on every matrix; both bases span the same space for every "
                                                "matrix: True")
    slower = table.replace("1.04       True", "0.98      False")
    assert "scipy is as fast or faster on every matrix" in book_pages.svd_ratio_line(slower)
    assert book_pages.svd_ratio_line(slower).endswith("every matrix: False")
    assert book_pages.svd_table_rows(table) == [
        ["vit_small_patch32_224", "(384, 3072)", "2.16 s", "2.25 s", "1.04", "yes"],
        ["vit_base_patch32_224", "(768, 3072)", "3.17 s", "2.12 s", "0.67", "yes"]]
    assert book_pages.svd_table_rows(slower)[0][-1] == "no"
    with pytest.raises(ValueError, match="rerun the script"):
        book_pages.svd_table_rows(table + "vit_huge (1280, 3072) 1.0\n")


def test_speed_ratio_reads_as_a_whole_number_or_a_fraction():
    """Speeds of 1 and more as "489x"; below 1 as "1/N" with two significant digits, never "1e-05x"."""
    assert book_pages.speed_ratio(489.4) == "489x" and book_pages.speed_ratio(1.0) == "1x"
    assert book_pages.speed_ratio(12345.0) == "12,345x"
    assert book_pages.speed_ratio(100 / (86400 * 2)) == "1/1,700"  # HiGHS 100 s against SLSQP's two days
    assert book_pages.speed_ratio(1 / 70_588) == "1/71,000"
    assert book_pages.speed_ratio(0.67) == "1/1.5"
    assert book_pages.cpu_solver_rows(CPU)[-1][-1] == "1/1,700"
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            book_pages.speed_ratio(bad)


def test_benchmark_note_and_summary():
    data = {"command": "python benchmarks/watermark.py --device cuda --out /root/out/watermark_gpu.json",
            "commit": "68ab899a4dbf60647d078b7837a33850bcaed5c7", "torch": "2.11.0", "cpu": "Xeon", "threads": 16,
            "device": "NVIDIA H100 80GB HBM3"}
    note = book_pages.benchmark_note(data, "benchmarks/results/watermark_gpu.json")
    assert "/root" not in note and "/root" not in note.markdown  # the machine path becomes the file's place
    assert "--out benchmarks/results/watermark_gpu.json" in note.markdown and ":class: dropdown" in note.markdown
    assert "on NVIDIA H100 80GB HBM3" in note
    cpu = {**CPU, "threads": 2}
    timing = {"cores": 2, "seconds": {"setting": 25.8, "primer": 6.5, "fooling": 130.0}}
    summary = book_pages.benchmarks_summary(cpu, None, None, timing)
    assert summary.markdown.startswith(":::{admonition} What we found\n")
    first, last = summary.splitlines()
    assert first.startswith("The watermark solver's default (100 ADMM iterations) takes 0.25 s per image on 2 CPU "
                            "threads and ends 0.05 % above the LP optimum: 400x faster than HiGHS")
    assert last.startswith("2 of 3 chapters run within the 120 s budget on 2 CPU cores (slowest: fooling, 130 s")
    assert "could be read" in book_pages.benchmarks_summary(None, None, None, None)


def test_benchmark_file_shows_how_it_was_made_or_why_it_is_missing():
    cpu, note = book_pages.benchmark_file("benchmarks/results/watermark_cpu.json")
    assert cpu is not None and note.markdown.startswith(":::{admonition} How this was made:")
    assert f"commit `{cpu['commit'][:10]}`" in note.markdown
    missing, why = book_pages.benchmark_file("benchmarks/results/no_such_benchmark.json")
    assert missing is None and "skipped" in why
    committed = book_pages.svd_rows(read("benchmarks/results/nullspace_svd.txt", text=True))
    assert [ratio for _, ratio, _ in committed] == [1.04, 0.67, 0.94]  # the table the page prints
    with pytest.raises(ValueError, match="nullspace_svd.py"):
        book_pages.svd_rows("model shape ours\n")


def test_teachers_tables():
    timing = {"seconds": {"setting": 30.0, "primer": 6.0, "benchmarks": 9.0}}
    gpu = {"chapters": [{"notebook": "book/setting.ipynb", "seconds": 29.4}]}
    assert book_pages.chapter_time_rows(timing, gpu) == [["setting", "30 s", "29 s"], ["primer", "6 s", "not run"],
                                                         ["benchmarks", "9 s", "not run"]]
    numbered = book_pages.chapter_time_rows(timing, gpu, {"setting": 1, "primer": 2})
    assert [row[0] for row in numbered] == ["1. setting", "2. primer", "benchmarks"]
    sessions = [{"title": "1", "chapters": ["setting", "primer"], "needs": "rank"},
                {"title": "2", "chapters": ["benchmarks"], "needs": "none"}]
    assert book_pages.session_rows(sessions, timing) == [["1", "setting, primer", "60–120 min", "under 1 min", "rank"],
                                                         ["2", "benchmarks", "30–60 min", "under 1 min", "none"]]
    slow = {"seconds": {"setting": 30.0, "primer": 60.0, "benchmarks": 9.0}}
    assert book_pages.session_rows(sessions, slow)[0][3] == "2 min"


@pytest.mark.parametrize(("chapters", "message"), [
    ([["setting", "primer"]], r"in none \['benchmarks'\]"),
    ([["setting", "primer"], ["primer", "benchmarks"]], r"in two sessions \['primer'\]"),
    ([["setting", "primer", "benchmarks", "fooling"]], r"not timed \['fooling'\]"),
])
def test_sessions_hold_every_timed_chapter_once(chapters, message):
    timing = {"seconds": {"setting": 30.0, "primer": 6.0, "benchmarks": 9.0}}
    sessions = [{"title": str(index), "chapters": names, "needs": ""} for index, names in enumerate(chapters)]
    with pytest.raises(ValueError, match=message):
        book_pages.session_rows(sessions, timing)


TOC = """format: jb-book
root: book/intro
parts:
  - caption: Chapters
    numbered: 1
    chapters:
      - file: book/setting
      - file: book/primer
  - caption: About the book
    chapters:
      - file: book/teachers
      - file: book/api/index
        sections:
          - file: book/api/linalg
"""


def test_chapter_numbers_count_the_numbered_part_only():
    assert book_pages.chapter_numbers(TOC) == {"setting": 1, "primer": 2}
    assert book_pages.chapter_numbers(TOC.replace("numbered: 1", "numbered: false")) == {}
    assert book_pages.chapter_numbers(TOC.replace("    numbered: 1\n", "")) == {}


def test_exercises_are_read_from_the_chapters_in_book_order_and_all_described():
    found = book_pages.exercises()
    assert found[0][:4] == ("setting", "1.1", "Your own image", "ex-setting-1")
    assert 'model = models.load_model("zoo-vit-s")' in found[0].solution_code.splitlines()  # its solution's code
    assert not found[1].solution_code  # a solution in words only
    chapters = [exercise.chapter for exercise in found]
    assert chapters.index("primer") < chapters.index("exact_nullspace") < chapters.index("finetune")
    assert "api" not in " ".join(chapters) and len({exercise.label for exercise in found}) == len(found)
    source = read("book/_src/primer.py", text=True)
    primer = [exercise for exercise in found if exercise.chapter == "primer"]
    assert [(exercise.number, exercise.label) for exercise in primer] == [
        (f"2.{i}", f"ex-primer-{i}") for i in range(1, 4)] and source.count("{exercise}") == 3
    assert primer[2].solution_code.startswith("A = rng.normal(size=(3, 5))")  # no comment marks left
    numbers = book_pages.chapter_numbers(read("_toc.yml", text=True))
    assert all(exercise.number.split(".")[0] == str(numbers[exercise.chapter]) for exercise in found)
    assert {exercise.label for exercise in found} == set(book_pages.page_data("exercises"))  # each one described
    sessions = book_pages.page_data("sessions")
    assert sorted(name for session in sessions for name in session["chapters"]) == sorted(set(chapters))


def test_class_time_estimate_and_exercise_rows():
    assert book_pages.class_minutes(None) == book_pages.CLASS_MINUTES_BASE == 10
    assert book_pages.class_minutes(0.5) == 15  # anything to run rounds up to the next 5 minutes
    assert book_pages.class_minutes(200.0) == 20 and book_pages.class_minutes(201.0) == 25  # 10 + 3 x 3.35 min
    found = [book_pages.Exercise("primer", "2.1", "By hand", "ex-a", "print(1)"),
             book_pages.Exercise("primer", "2.2", "In words", "ex-b", "")]
    rows = book_pages.exercise_rows(found, {"ex-a": "nullspaces"}, {"cpu_seconds": {"ex-a": 0.2}})
    assert rows == [["Exercise 2.1", "primer", "By hand", "nullspaces", "under 1 s", "~15 min"],
                    ["Exercise 2.2", "primer", "In words", "**not described yet**", "no code", "~10 min"]]
    with pytest.raises(ValueError, match="exercise_times.py"):
        book_pages.exercise_rows(found, {}, {"cpu_seconds": {}})  # code that was never timed
    timed_out = {"cpu_seconds": {}, "failed": {"ex-a": "did not finish within 900 s"}}
    rows = book_pages.exercise_rows(found[:1], {}, timed_out)  # listed as failed: said, and no class estimate
    assert rows[0][4:] == ["not timed (did not finish within 900 s)", "—"]


def test_session_plan_rows_add_up_and_show_the_measurements():
    found = [book_pages.Exercise("finetune", "9.1", "Train", "ex-1", "x"),
             book_pages.Exercise("finetune", "9.3", "Read", "ex-3", "y")]
    plan = {"chapter": "finetune", "minutes": 50, "homework": ["ex-1"],
            "steps": [{"what": "the answer", "minutes": 10}, {"what": "the sections", "minutes": 25, "run": True},
                      {"what": "on the files", "minutes": 15, "exercise": "ex-3"}]}
    times = {"cpu_seconds": {"ex-1": 125.0, "ex-3": 2.4}, "seconds": {"ex-1": 900.0, "ex-3": 20.0}}
    rows = book_pages.session_plan_rows(plan, found, {"seconds": {"finetune": 15.2}}, times)
    assert rows == [["0–10 min", "the answer", ""],
                    ["10–35 min", "the sections", "the notebook runs in 15 s"],
                    ["35–50 min", "Exercise 9.3 (Read): on the files", "its solution runs in 2 s"],
                    ["50 min", "in all, for a 50-minute session", ""]]
    assert book_pages.homework_line(plan, found, times) == "homework: Exercise 9.1 (Train; its solution runs in 2 min)"
    times.update(cores=2, load_average={"finetune": [17.1, 12.0], "primer": [3.5, 9.0]},
                 failed={"ex-2": "NameError: name 'x' is not defined"})
    assert book_pages.exercise_time_line(times) == (
        "timed on 2 cores at a load average of 3.5 to 17.1; the table gives CPU time (all threads), which other work "
        "on the machine does not inflate: 2 solutions timed, 1 did not finish")


def test_the_committed_finetune_plan_fits_its_session():
    plan = book_pages.page_data("finetune_plan")
    assert sum(step["minutes"] for step in plan["steps"]) <= plan["minutes"] == 50
    labels = {exercise.label for exercise in book_pages.exercises()}
    assert {step["exercise"] for step in plan["steps"] if "exercise" in step} | set(plan["homework"]) <= labels


def test_end_to_end_rows_are_given_against_the_floor():
    pipeline = {"device": "GPU", "commit": "abcdef0123", "batch": 100, "floor": {"embed_seconds": 0.5},
                "embed_pipelined": [{"call": "first", "pipelined": True, "precision": "tf32", "compiled": False,
                                     "seconds": 8.0, "wall_seconds": 9.0},
                                    {"call": "second", "pipelined": True, "precision": "tf32", "compiled": False,
                                     "seconds": 1.5, "wall_seconds": 2.0},  # wall time: what a user waits for
                                    {"call": "second", "pipelined": False, "precision": "tf32", "compiled": False,
                                     "seconds": 2.5, "wall_seconds": 3.0}],
                "cli": {"runs": [{"run": "warm-up", "batch_size": 64, "images": 50, "seconds": 99.0},
                                 {"run": "timed", "batch_size": 64, "images": 50, "seconds": 10.0},
                                 {"run": "timed", "batch_size": 128, "images": 50, "seconds": 5.0}]}}
    now = {"device": "GPU", "commit": "1234567", "cli": {"runs": [{"run": "warm-up", "batch_size": 512, "images": 200, "seconds": 9.0,
                                              "overhead_fraction": 1.0},
                                             {"run": "timed", "batch_size": 512, "images": 200, "seconds": 4.0,
                                              "overhead_fraction": 1.0},
                                             {"run": "timed", "batch_size": 64, "images": 200, "seconds": 5.0,
                                              "overhead_fraction": 1.0},
                                             {"run": "new process", "batch_size": 512, "images": 200,
                                              "seconds": 8.0, "same_library": True}]}}
    later = {"device": "GPU", "commit": "fedcba9876", "batch": 200, "floor": {"embed_seconds": 0.1},
             "embed_pipelined": [{**entry, "wall_seconds": entry["wall_seconds"] / 2}
                                 for entry in pipeline["embed_pipelined"]]}
    rows = book_pages.gpu_end_to_end_rows(later, [{**now, "order": 7}], pipeline)
    assert rows == [["embed, host to host, tf32 (library fedcba9)", "200", "1.00 s", "200.0", "10x"],  # its own floor
                    ["embed, host to host, copies one after another, tf32 (library fedcba9)", "200", "1.50 s", "133.3",
                     "15x"],  # the second calls only, pipelined first
                    ["folder CLI, batch 512, in a warm process (run 7, library 1234567)", "200", "4.00 s", "50.0", "40x"],
                    ["folder CLI, batch 64, in a warm process (run 7, library 1234567)", "200", "5.00 s", "40.0", "50x"],
                    ["folder CLI, batch 512, in a new process (run 7, library 1234567)", "200", "8.00 s", "25.0", "80x"],
                    ["folder CLI, batch 128, the fastest of 2 batch sizes (earlier run, library abcdef0)", "50",
                     "5.00 s", "10.0", "20x"]]  # the earlier file's command line against the earlier floor
    assert book_pages.gpu_end_to_end_rows(later, [now])[2][0] == "folder CLI, batch 512, in a warm process (library 1234567)"
    summary = book_pages.benchmarks_summary(None, None, None, None, pipeline=pipeline, cli_now=[now])
    assert summary == book_pages.benchmarks_summary(None, None, None, None, pipeline=pipeline, cli_now=now)
    assert summary.startswith("End to end on GPU machines: `embed` (library abcdef0, one run) watermarks 100 images from "
                              "host memory in 2.0 s, 4x the floor (a lower bound from the GPU's copy speed); the folder CLI "
                              "(library 1234567, one run) writes 50.0 PNGs a second in a warm process (after a warm-up run; "
                              "the goal of 500 met in 0 of 1), 25 in a new process (Python, torch and CUDA start included)")
    slower = {**now, "cli": {"runs": [{**entry, "seconds": 2 * entry["seconds"]} for entry in now["cli"]["runs"]]}}
    summary = book_pages.benchmarks_summary(None, None, None, None, pipeline=pipeline, cli_now=[now, slower])
    assert ("the folder CLI (library 1234567, 2 runs) writes 25.0 to 50.0 PNGs a second in a warm process (after a "
            "warm-up run; the goal of 500 met in 0 of 2), 12 to 25 in a new process (Python, torch and CUDA start "
            "included)") in summary  # a range over the runs
    other = {**slower, "cli": {"runs": [{**entry, "same_library": False} for entry in slower["cli"]["runs"]]}}
    summary = book_pages.benchmarks_summary(None, None, None, None, pipeline=pipeline, cli_now=[now, other])
    assert "met in 0 of 2), 25 in a new process" in summary  # only the run that timed it
    summary = book_pages.benchmarks_summary(None, None, None, None, pipeline=pipeline, cli_now=[other])
    assert "not timed from the command line (a new process) with this library" in summary
    unknown = {**now, "cli": {"runs": [{key: value for key, value in entry.items() if key != "same_library"}
                                       for entry in now["cli"]["runs"]]}}
    with pytest.raises(ValueError, match="without same_library"):
        book_pages.gpu_end_to_end_rows(pipeline, [unknown])
    data = {"command": "python x.py", "commit": "abc", "torch": "2", "device": "GPU", "commit_note": "tree of d95547c"}
    assert "- tree of d95547c\n" in book_pages.benchmark_note(data, "x.json").markdown  # which tree made it


def test_change_rows_pair_the_runs_before_and_after():
    """A change timed on one machine: each row both runs have, before and after and their ratio; a row only one
    run has (another batch size, a first call, copies one after another) is left out."""
    def run(solver: float, embed: float, cli: float, extra_batch: int, same: bool = True) -> dict:
        return {"admm_gpu": [{"settings": "default", "precision": "tf32", "compiled": True, "seconds": solver}],
                "embed_pipelined": [{"call": "second", "pipelined": True, "precision": "tf32", "compiled": False,
                                     "wall_seconds": embed},
                                    {"call": "first", "pipelined": True, "precision": "tf32", "compiled": False,
                                     "wall_seconds": 99.0},
                                    {"call": "second", "pipelined": False, "precision": "tf32", "compiled": False,
                                     "wall_seconds": 99.0}],
                "cli": {"runs": [{"run": "warm-up", "batch_size": 512, "images": 100, "seconds": 99.0},
                                 {"run": "timed", "batch_size": 512, "images": 100, "seconds": cli},
                                 {"run": "timed", "batch_size": extra_batch, "images": 100, "seconds": 1.0},
                                 {"run": "new process", "batch_size": 512, "images": 100, "seconds": 2 * cli,
                                  "same_library": same}]}}

    rows = book_pages.change_rows({"before": run(2.0, 4.0, 5.0, 64), "after": run(1.0, 3.0, 2.5, 128)})
    assert rows == [["solver, tf32, compiled", "2.00 s", "1.00 s", "0.50"],
                    ["embed, host to host, tf32", "4.00 s", "3.00 s", "0.75"],
                    ["folder CLI, 100 images, batch 512", "5.00 s", "2.50 s", "0.50"],
                    ["folder CLI, 100 images, batch 512, in a new process", "10.00 s", "5.00 s", "0.50"]]
    # a new process that imported another library than its run's timed nothing of that run: no row
    assert book_pages.change_rows({"before": run(2.0, 4.0, 5.0, 64, same=False), "after": run(1.0, 3.0, 2.5, 128)}) \
        == rows[:3]
    before = {**run(2.0, 4.0, 5.0, 64, same=False)}
    before["cli"]["runs"][-1]["library_imported"] = "after (abc1234)"
    assert book_pages.new_process_line({"before": before, "after": run(1.0, 3.0, 2.5, 128)}) == (
        "new processes: before's 10.0 s (imported the library after (abc1234)); after's 5.0 s (its own library)")
    phases = [{"precision": "tf32", "compiled": True, "setup_seconds": 0.1, "iterations_seconds": 0.9,
               "polish_seconds": polish, "total_seconds": 1.0 + polish} for polish in (1.2, 0.3)]
    rows = book_pages.change_rows({"before": {"solver_phases": phases[:1]}, "after": {"solver_phases": phases[1:]}})
    assert rows == [["solver's setup, tf32, compiled", "0.10 s", "0.10 s", "1.00"],
                    ["solver's 100 iterations, tf32, compiled", "0.90 s", "0.90 s", "1.00"],
                    ["solver's polish, tf32, compiled", "1.20 s", "0.30 s", "0.25"],
                    ["solver's whole solve, tf32, compiled", "2.20 s", "1.30 s", "0.59"]]
    assert book_pages.change_rows({"before": {}, "after": run(1.0, 1.0, 1.0, 64)}) == []  # nothing to pair
    caption = book_pages.change_caption({"device": "GPU", "before": {"commit": "aaa"}, "after": {"commit": "bbb"}},
                                        "one run each.")
    assert caption == "On one GPU, library aaa then bbb, in that order, in one call; one run each."
    twice = run(1.0, 1.0, 1.0, 64)
    twice["admm_gpu"] = twice["admm_gpu"] * 2
    with pytest.raises(ValueError, match="two solver rows"):
        book_pages.change_rows({"before": twice, "after": twice})


def test_cli_timed_line_reads_the_timed_run():
    run = {"cli": {"runs": [{"run": "warm-up", "images_per_second": 1.0},
                            {"run": "timed", "images_per_second": 449.4, "startup_seconds": 0.864,
                             "images_per_second_after_startup": 553.2, "embed_seconds": 2.57,
                             "stage_seconds": {"load_image": 29.58, "eight_bit": 0.04, "write_output": 15.26}}]}}
    assert book_pages.cli_timed_line(run) == (
        "449.4 images/s (0.86 s before the first solve, reading the first batch; 553 images/s after it); busy seconds "
        "by stage, summed over the worker threads: load image 29.6 s, write output 15.3 s; inside embed 2.6 s")  # not 0.0 s
    run["cli"]["runs"][1]["stage_seconds"] = {"eight_bit": 0.01}
    assert "summed over the worker threads: none took 0.05 s; inside" in book_pages.cli_timed_line(run)


def test_goal_rows_compare_each_goal_with_its_measurement():
    """Issue #34's goals: an embed time is judged against the H200 goal only when it was measured on an H200; the
    CLI's rate and the CPU's overhead and first call against theirs, on the edge included where the goal says so."""
    def embed(seconds: float) -> dict:
        return {"call": "second", "pipelined": True, "precision": "bfloat16", "compiled": True, "wall_seconds": seconds}

    gpu = {"device": "NVIDIA H200", "batch": 3925,
           "embed_pipelined": [embed(1.5), {**embed(0.1), "call": "first"}, {**embed(0.1), "pipelined": False}]}
    cli_gpu = {"device": "NVIDIA H200", "cli": {"runs": [{"run": "warm-up", "images": 8, "batch_size": 4,
                                                          "images_per_second": 900.0},
                                                         {"run": "timed", "images": 8, "batch_size": 4,
                                                          "images_per_second": 499.6}]}}
    cli_cpu = {"cpu": "a CPU", "threads": 2, "commit": "1111111aaa", "cli": {"runs": [{"run": "timed", "images": 64,
                                                                                     "overhead_fraction": 0.2}]}}
    cpu = {"cpu": "a CPU", "threads": 2, "commit": "2222222bbb", "first_call": {"default": 0.7},
           "default": {"iterations": 100},
           "admm_cpu": [{"settings": "default", "iterations": 50, "gap_percent": 0.3},
                        {"settings": "default", "iterations": 100, "gap_percent": 0.07064}]}
    rows = book_pages.goal_rows(gpu, [cli_gpu], cli_cpu, cpu)
    assert [row[3] for row in rows] == ["yes", "no", "no", "yes"]  # 1.5 s meets "<= 1.5"; 20 % misses "< 20 %"
    assert rows[2][2] == "20 % (a CPU, 2 threads, library 1111111, one run)"
    three = {**cli_cpu, "runs": [{"cli": {"runs": [{"run": "timed", "images": 64, "overhead_fraction": share}]}}
                                 for share in (0.15, 0.19, 0.21)]}
    assert book_pages.goal_rows(gpu, [cli_gpu], three, cpu)[2][2:] == [
        "15 to 21 % (a CPU, 2 threads, library 1111111, 3 runs)", "in 2 of 3 runs"]  # several runs: the range
    at_issue = {**cpu, "commit": "3333333ccc", "admm_cpu": [{"settings": "default", "iterations": 100,
                                                             "gap_percent": 0.0707}]}
    gap = book_pages.goal_rows(gpu, [cli_gpu], cli_cpu, cpu, at_issue)[-1]
    assert gap == ["embed's gap to the LP optimum on the CPU, default (100 iterations)",
                   "as at the issue: 0.071 % (library 3333333)", "0.071 % (library 2222222)", "yes"]  # the default's row
    worse = {**cpu, "admm_cpu": [{"settings": "default", "iterations": 100, "gap_percent": 0.0716}]}
    assert book_pages.goal_rows(gpu, [cli_gpu], cli_cpu, worse, at_issue)[-1][3] == "no"
    assert rows[0][:3] == ["embed, 3925 images host to host, bfloat16, compiled (second call)", "≤ 1.5 s on one H200",
                           "1.50 s on an NVIDIA H200"]
    assert rows[1][2] == "499.6 images/s on an NVIDIA H200"  # printed to a tenth: never "500" and "no"
    on_h100 = book_pages.goal_rows({**gpu, "device": "NVIDIA H100"}, [cli_gpu], cli_cpu, cpu)
    assert on_h100[0][3] == "not an H200"
    faster = {**cli_gpu, "cli": {"runs": [{**entry, "images_per_second": 501.0} for entry in cli_gpu["cli"]["runs"]]}}
    assert book_pages.goal_rows(gpu, [cli_gpu, faster], cli_cpu, cpu)[1][2:] == [
        "499.6 to 501.0 images/s over 2 runs on an NVIDIA H200", "in 1 of 2 runs"]  # several runs: the range
    assert book_pages.goal_rows(gpu, [faster, faster], cli_cpu, cpu)[1][3] == "yes"
    assert book_pages.goal_rows(gpu, cli_gpu, cli_cpu, cpu) == rows  # one run's file alone, as before


def test_repeated_runs_in_order_with_their_libraries_and_the_reading_line():
    """A file of CLI runs of several libraries in turn: the runs of one library in the order they ran, a row per
    run in that order, and the folder-reading comparison over the runs that timed it."""
    def run(order: int, library: str, rate: float, reading: float | None) -> dict:
        timed = {"run": "timed", "images": 100, "batch_size": 50, "images_per_second": rate, "seconds": 100 / rate,
                 "images_per_second_after_startup": rate + 10, "startup_seconds": 0.5, "embed_seconds": 0.2}
        fresh = {"run": "new process", "images": 100, "batch_size": 50, "images_per_second": rate / 2,
                 "same_library": order != 3}  # run 3's new process imported another library
        return {"order": order, "call": "7", "library": library, "commit": f"{order}abcdef0", "device": "GPU",
                "cli": {"runs": [{**timed, "run": "warm-up"}, timed, fresh],
                        "reading": None if reading is None else {
                            "images": 100, "threads": 16, "repeats": 3, "equal": True, "ratio": reading / 600,
                            "images_per_second": {"load_image": 600.0, "read_pixels": reading}}}}

    repeats = {"runs": [run(3, "after", 330.0, 1200.0), run(1, "before", 340.0, None), run(2, "after", 430.0, 900.0)]}
    assert [r["order"] for r in book_pages.repeat_runs(repeats, "after")] == [2, 3]
    with pytest.raises(ValueError, match=r"no run of the library 'later'.*\['after', 'before'\]"):
        book_pages.repeat_runs(repeats, "later")
    assert book_pages.repeat_rows(repeats) == [
        ["1", "7", "before (1abcdef)", "340.0", "350", "0.50 s", "0.20 s", "170"],
        ["2", "7", "after (2abcdef)", "430.0", "440", "0.50 s", "0.20 s", "215"],
        ["3", "7", "after (3abcdef)", "330.0", "340", "0.50 s", "0.20 s", "–"]]
    assert book_pages.reading_line(repeats["runs"]) == (
        "100 PNGs into one batch, 16 threads, best of 3, in 2 runs: load_image per file 600 images/s, read_pixels and "
        "one pixels_to_images 900 to 1200 images/s (1.50 to 2.00x); the two batches equal bit for bit in every run: "
        "True")
    mixed = [*repeats["runs"], {**repeats["runs"][0], "cli": {**repeats["runs"][0]["cli"], "reading": {
        **repeats["runs"][0]["cli"]["reading"], "threads": 8}}}]
    with pytest.raises(ValueError, match=r"different setups \(images, threads, repeats\)"):
        book_pages.reading_line(mixed)  # 8 and 16 threads: not one range
    with pytest.raises(ValueError, match="none of these runs timed the folder read"):
        book_pages.reading_line(book_pages.repeat_runs(repeats, "before"))
    assert book_pages.repeat_rate_line(repeats, "after") == ("after: 330 to 430 images/s in a warm process over 2 "
                                                             "runs (mean 380)")
    assert book_pages.repeat_rate_line(repeats, "before") == "before: 340 images/s in a warm process, one run"
    assert book_pages.repeat_phase_line(repeats, "after") == (
        "after: 330 to 430 images/s in a warm process (2 runs; 340 to 440 from the first solve on); 0.50 s before the "
        "first solve, 0.20 s inside embed")
    assert book_pages.repeat_phase_line(repeats, "before").startswith("before: 340 images/s in a warm process (one run;")
    for run in repeats["runs"]:  # two calls; the worker threads' busy seconds timed
        run["call"] = "2" if run["order"] == 3 else "1"
        for entry in run["cli"]["runs"]:
            entry["stage_seconds"] = {"read_pixels": run["order"] * 1.0, "write_output": 2.5}
    assert [run["order"] for run in book_pages.repeat_runs(repeats, "after", call="2")] == [3]
    with pytest.raises(ValueError, match=r"no run of the library 'before' in call 2"):
        book_pages.repeat_runs(repeats, "before", call="2")
    assert book_pages.repeat_rate_line(repeats, "after", call="1") == "after: 430 images/s in a warm process, one run"
    assert book_pages.repeat_phase_line(repeats, "after") == (
        "after: 330 to 430 images/s in a warm process (2 runs; 340 to 440 from the first solve on); 0.50 s before the "
        "first solve, 0.20 s inside embed; the worker threads busy 2.0 to 3.0 s reading, 2.5 s writing")
    alone = {"batch": 400, "embed_pipelined": [
        {"call": "second", "pipelined": True, "precision": "tf32", "compiled": False, "wall_seconds": 0.04},
        {"call": "second", "pipelined": True, "precision": "tf32", "compiled": True, "wall_seconds": 9.0}]}
    for run in repeats["runs"]:
        for entry in run["cli"]["runs"]:
            entry["overhead_fraction"] = run["order"] / 4
    assert book_pages.outside_share_line(book_pages.repeat_runs(repeats, "after")) == (
        "folder command line, warm process: the time outside embed is 50 to 75 % of the time inside it over 2 runs, "
        "0.50 s of it before the first solve (reading the first batch)")
    assert book_pages.inside_embed_line(book_pages.repeat_runs(repeats, "after"), alone) == (
        "inside the command, embed took 2.00 to 2.00 ms per image over 2 runs; alone, on 400 images from host memory "
        "(TF32, not compiled, second call), 0.10 ms (20.0 to 20.0x)")


def test_plan_timing_by_study_and_its_sum():
    """The benchmarks page's table of the imagenet plan: each study's parts, how their times were obtained and their
    sum; the line: the GPU's and the CPU's parts, the wall time at least the larger, against the goal."""
    timing = {"goal_seconds": 3600, "slots": {"gpu": 300.0, "cpu": 7000.0, "wall": 7000.0},
              "not_measured": ["finetune/merge"],
              "parts": {"approximate/a/lims-1-2": {"how": "measured", "seconds": 100.0},
                        "approximate/a/lims-4": {"how": "estimated", "seconds": 200.0},
                        "watermark-slsqp": {"how": "projected", "seconds": 7000.0},
                        "finetune/merge": {"how": "not measured", "seconds": None},
                        "fingerprint": {"how": "at least", "seconds": 900.0, "counted": False}}}  # on fewer cores
    assert book_pages.plan_timing_rows(timing) == [["approximate", "2", "1 measured, 1 estimated", "300 s", "0"],
                                                  ["watermark-slsqp", "1", "1 projected", "7,000 s", "0"],
                                                  ["finetune", "1", "-", "-", "1"],
                                                  ["fingerprint", "1", "1 at least", "-", "0"]]
    assert book_pages.plan_timing_line(timing) == ("GPU parts 300 s (0.1 h), CPU parts 7,000 s (1.9 h) beside them: "
                                                   "the plan takes about 1.9 h, the larger, against the goal of 1 h; 1 part "
                                                   "has no time")


def test_settings_runs_rows_and_trend_of_a_cli_settings_file():
    """A ``--part cli-settings`` file: each setting's timed runs (the warm-up left out), a row per setting with the
    median, range, test against the first setting and runs at the goal, the rates' trend over the call, and the goals
    table's extra row for the first setting."""
    def run(kind: str, threads: int, interval: float, rate: float, embed: float) -> dict:
        return {"run": kind, "threads": threads, "switch_interval_ms": interval, "images_per_second": rate,
                "embed_seconds": embed}

    settings_file = {"device": "NVIDIA H100", "cli_settings": {
        "images": 2048, "settings": [{"threads": 8, "switch_interval_ms": 5.0}, {"threads": 16, "switch_interval_ms": 0.2}],
        "runs": [run("warm-up", 8, 5.0, 100.0, 9.0), run("timed", 8, 5.0, 510.0, 2.0), run("timed", 16, 0.2, 450.0, 2.2),
                 run("timed", 16, 0.2, 520.0, 2.4), run("timed", 8, 5.0, 560.0, 2.1), run("timed", 8, 5.0, 499.96, 2.3)],
        "embed_alone": {"images": 512, "seconds": [0.5, 0.4, 0.6]}}}
    assert [run["images_per_second"] for run in book_pages.settings_runs(settings_file, 8, 5.0)] == [510.0, 560.0, 499.96]
    assert book_pages.settings_rows(settings_file) == [
        ["8", "5 ms", "3", "510", "500 to 560", "(the baseline)", "in 2 of 3 runs", "2.10 s"],
        ["16", "0.2 ms", "2", "485", "450 to 520", "0.80", "in 1 of 2 runs", "2.30 s"]]  # exact test: U = 2 of 6
    apart = {"device": "NVIDIA H100", "cli_settings": {  # six runs each, every rate of the second below the first's
        "images": 2048, "settings": settings_file["cli_settings"]["settings"],
        "runs": [run("timed", 8, 5.0, 500.0 + k, 2.0) for k in range(6)]
                + [run("timed", 16, 0.2, 400.0 + k, 2.0) for k in range(6)]}}
    assert book_pages.settings_rows(apart)[1][5] == "< 0.01"  # exact test: p = 2/924 = 0.0022, not "0.00"
    with pytest.raises(ValueError, match="no timed run of 12 threads"):
        book_pages.settings_runs(settings_file, 12, 5.0)
    line = book_pages.settings_trend_line(settings_file, first=2)  # rates 510, 450, 520, 560, 499.96 in order
    assert line.startswith("over the call's 5 timed runs, in the order they ran: the first 2 runs 450 to 510 "
                           "images/s, the last 2 runs 500 to 560;") and "its place 0.20 (p = 0.7)" in line
    with pytest.raises(ValueError, match="would overlap"):
        book_pages.settings_trend_line(settings_file, first=3)
    gpu = {"device": "NVIDIA H100", "batch": 3925, "embed_pipelined": []}
    cli_gpu = {"device": "NVIDIA H100", "cli": {"runs": [{"run": "timed", "images": 2048, "batch_size": 512,
                                                          "images_per_second": 450.0}]}}
    cli_cpu = {"cpu": "a CPU", "threads": 2, "commit": "1111111aaa", "cli": {"runs": [{"run": "timed", "images": 64,
                                                                                     "overhead_fraction": 0.1}]}}
    cpu = {"cpu": "a CPU", "threads": 2, "commit": "2222222bbb", "first_call": {"default": 0.5}}
    rows = book_pages.goal_rows(gpu, [cli_gpu], cli_cpu, cpu, cli_settings=settings_file)
    assert rows[1][2:] == ["500.0 to 560.0 images/s, median 510.0, on an NVIDIA H100 (another machine)",
                           "in 2 of 3 runs"]  # 499.96 prints as 500.0 but misses the goal
    assert len(book_pages.goal_rows(gpu, [cli_gpu], cli_cpu, cpu)) == len(rows) - 1


def test_settings_embed_line_compares_calls_inside_the_command_with_embed_alone():
    """The first setting's embed calls inside the command (first call apart: it records the CUDA graph) against embed
    alone's recording call and replays; files that do not compare are refused with the reason."""
    def run(kind: str, threads: int, calls: list[float]) -> dict:
        return {"run": kind, "threads": threads, "switch_interval_ms": 5.0, "images_per_second": 500.0,
                "embed_seconds": sum(calls), "embed_call_seconds": calls}

    settings_file = {"device": "NVIDIA H100", "cli_settings": {
        "images": 1536, "batch_size": 512, "settings": [{"threads": 8, "switch_interval_ms": 5.0},
                                                        {"threads": 4, "switch_interval_ms": 5.0}],
        "runs": [run("warm-up", 8, [9.0, 1.0, 1.0]), run("timed", 8, [0.9, 0.5, 0.6]), run("timed", 4, [5.0, 5.0, 5.0]),
                 run("timed", 8, [0.7, 0.4, 0.42])],
        "embed_alone": {"images": 512, "seconds": [0.3, 0.25, 0.35], "recording_seconds": 0.8, "cuda_graphs": True}}}
    line = book_pages.settings_embed_line(settings_file)
    assert line == ("embed on 512 images, 8 worker threads at 5 ms, 2 runs: inside the command the first call "
                    "(recording the CUDA graph) 0.70 to 0.90 s (median 0.80), the 4 later calls 0.40 to 0.60 s (median "
                    "0.46); alone the recording call 0.80 s, then 3 calls 0.25 to 0.35 s (median 0.30): the later calls "
                    "inside take 1.53x the calls alone")  # the later calls 0.5, 0.6, 0.4, 0.42: median 0.46
    outside = {**settings_file, "cli_settings": {**settings_file["cli_settings"],
                                                 "embed_alone": {**settings_file["cli_settings"]["embed_alone"],
                                                                 "cuda_graphs": False}}}
    with pytest.raises(ValueError, match="outside a cuda_graphs block"):
        book_pages.settings_embed_line(outside)
    on_cpu = {**outside, "device": "AMD EPYC", "cpu": "AMD EPYC"}  # a CPU run has no graphs: nothing to refuse
    assert book_pages.settings_embed_line(on_cpu) == line
    older = {**settings_file, "cli_settings": {**settings_file["cli_settings"], "embed_alone": {
        "images": 512, "seconds": [0.3], "cuda_graphs": True}}}
    with pytest.raises(ValueError, match="no timed recording call"):
        book_pages.settings_embed_line(older)
    uneven = {**settings_file, "cli_settings": {**settings_file["cli_settings"], "images": 1500}}
    with pytest.raises(ValueError, match="last call is shorter"):
        book_pages.settings_embed_line(uneven)
