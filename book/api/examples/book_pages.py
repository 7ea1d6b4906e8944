from nullspace_utils import book_pages
from nullspace_utils.results import read

# the benchmarks page: the watermark solver's result files, as table rows and figure panels
cpu = read("benchmarks/results/watermark_cpu.json")
runs = book_pages.admm_runs(cpu)  # the ADMM timings per setting, fewest iterations first
assert list(runs) == ["before", "default"] and runs["default"][0]["iterations"] < runs["default"][-1]["iterations"]
gap, seconds = book_pages.solver_panels(cpu)  # for plotting.line_panels
assert set(gap["lines"]) == {"ADMM, before", "ADMM, default"} and "HiGHS (exact, extrapolated)" in seconds["lines"]
cpu, note = book_pages.benchmark_file("benchmarks/results/watermark_cpu.json")  # and its "how this was made" box
rows = book_pages.cpu_solver_rows(cpu)  # one row per solver and setting: time, gap, speed against HiGHS
assert book_pages.speed_ratio(489.4) == "489x" and book_pages.speed_ratio(1 / 70_588) == "1/71,000"
assert rows[-1][0].startswith("SLSQP") and rows[-1][1].endswith("days")
gpu_now = read("benchmarks/results/watermark_gpu_now.json")  # the newest GPU run of --part solve
gpu_rows = book_pages.gpu_solver_rows(gpu_now)
assert {row[2] for row in gpu_rows} >= {"float32", "tf32", "bfloat16"}  # the matmul precisions compared
repeats = read("benchmarks/results/watermark_gpu_cli_repeats.json")  # CLI runs of several libraries in turn
threads8 = book_pages.repeat_runs(repeats, "8 worker threads", call="22")  # made in gpu_now's call, on its machine
pipeline = read("benchmarks/results/watermark_gpu_pipeline.json")  # an earlier run: copies one after another
ends = book_pages.gpu_end_to_end_rows(gpu_now, threads8, pipeline)  # embed and the CLI, each against its floor
assert ends[0][0] == "embed, host to host, tf32 (library 7f77829)" and ends[0][1] == "3925"
assert ends[-1][0] == "folder CLI, batch 128, the fastest of 3 batch sizes (earlier run, library 26fa1e6)"
step = book_pages.change_rows(read("benchmarks/results/watermark_gpu_step.json"))  # one change, before and after
assert step[0][0] == "solver, float32" and float(step[0][3]) < 1  # after over before, on one machine
polish = book_pages.change_rows(read("benchmarks/results/watermark_gpu_polish_change.json"))  # the solver's phases
polish_file = read("benchmarks/results/watermark_gpu_polish_change.json")
assert book_pages.change_caption(polish_file, "one run.").startswith("On one NVIDIA H100")  # the table's caption
assert [row[0] for row in polish[:4]] == ["solver's setup, tf32, compiled", "solver's 100 iterations, tf32, compiled",
                                          "solver's polish, tf32, compiled", "solver's whole solve, tf32, compiled"]
now = book_pages.repeat_runs(repeats, "read_pixels + atomic_write")  # one library's runs, in the order they ran
assert [run["library"] for run in now] == ["read_pixels + atomic_write"] * len(now) and len(now) >= 2
assert len(book_pages.repeat_rows(repeats)) == len(repeats["runs"])  # a table row per run
assert book_pages.repeat_rate_line(repeats, "before").startswith("before: ")  # the range of one library's rates
assert "s before the first solve" in book_pages.repeat_phase_line(repeats, "CUDA graphs")  # its phases' ranges
assert "in a warm process over 3 runs" in book_pages.repeat_rate_line(repeats, "8 worker threads", call="21")  # one call
change = read("benchmarks/results/watermark_gpu_cli_change.json")  # which library each new process imported
assert "imported the library after" in book_pages.new_process_line({"before": change["before"], "after": change["after"]})
assert "equal bit for bit in every run: True" in book_pages.reading_line(now)  # the folder read, both ways (one setup)
assert book_pages.inside_embed_line(now, gpu_now).startswith("inside the command, embed took")
assert " % of the time inside it over 5 runs" in book_pages.outside_share_line(threads8)  # the rest of the command
at_issue = read("benchmarks/results/watermark_cpu_issue34.json")  # the CPU solver when issue #34 was filed
goals = book_pages.goal_rows(gpu_now, threads8, read("benchmarks/results/watermark_cli_cpu.json"), cpu, at_issue)
assert goals[0][3] == "not an H200" and goals[-1][0].startswith("embed's gap to the LP optimum on the CPU")  # met?
cli_line = book_pages.cli_timed_line(now[0])  # one run's timed CLI
settings = read("benchmarks/results/watermark_gpu_cli_settings.json")  # one process, settings taking turns
assert len(book_pages.settings_runs(settings, 8, 5.0)) >= 20  # the command line as it is, warm-up left out
assert [row[:2] for row in book_pages.settings_rows(settings)][0] == ["8", "5 ms"]  # a row per setting
assert "Spearman's rank correlation" in book_pages.settings_trend_line(settings)  # faster or slower over the call?
try:  # embed inside the command against embed alone, call for call: call 26's file cannot say (refused, with why)
    book_pages.settings_embed_line(settings)
except ValueError as refusal:
    assert "outside a cuda_graphs block" in str(refusal)
else:
    raise AssertionError("call 26's embed alone ran outside the command's CUDA graphs: it should be refused")
threads = read("benchmarks/results/watermark_gpu_cli_threads.json")  # call 31: the calls kept, embed alone in graphs
assert "the later calls inside take" in book_pages.settings_embed_line(threads)
with_settings = book_pages.goal_rows(gpu_now, threads8, read("benchmarks/results/watermark_cli_cpu.json"), cpu,
                                     at_issue, cli_settings=settings)
assert len(with_settings) == len(goals) + 1 and any("switch interval" in row[0] for row in with_settings)  # a CLI row
assert "images/s after it); busy seconds by stage" in cli_line  # its rate, start and stages, from the file

# the sentences under the benchmark tables, from the files
settings_line = book_pages.admm_settings_line(cpu)  # the file read above
assert settings_line.startswith("before: a constant step 10, 300 iterations")  # the solver as first written
svd = read("benchmarks/results/nullspace_svd.txt", text=True)  # what benchmarks/nullspace_svd.py printed
assert [ratio for _, ratio, _ in book_pages.svd_rows(svd)] == [1.04, 0.67, 0.94]  # scipy's time over ours
assert book_pages.svd_ratio_line(svd).startswith("scipy's time over ours: 0.67 to 1.04 over 3 matrices")
assert book_pages.svd_table_rows(svd)[0][:2] == ["vit_small_patch32_224", "(384, 3072)"]  # for plotting.table
summary = book_pages.benchmarks_summary(cpu, None, svd, None)  # the page's "What we found" box, from the files
assert book_pages.benchmark_note(cpu, "benchmarks/results/watermark_cpu.json").markdown.count("commit") == 1

# the teachers page: run times, exercises, sessions
timing = read("benchmarks/results/notebook_times.json")
times = book_pages.chapter_time_rows(timing, read("benchmarks/results/imagenet_chapters_gpu.json"))
assert times[0][0] == "setting" and times[0][1].endswith(" s")  # chapter, CPU time, GPU time
numbers = book_pages.chapter_numbers(read("_toc.yml", text=True))  # the numbered chapters, as the site numbers them
assert numbers["setting"] == 1 and book_pages.chapter_time_rows(timing, {"chapters": []}, numbers)[0][0] == "1. setting"
found = book_pages.exercises()  # every exercise in the chapters' sources, in the book's order
assert found[0][:4] == ("setting", "1.1", "Your own image", "ex-setting-1")  # "Exercise 1.1" on the site
practises = book_pages.page_data("exercises")  # book/_data/exercises.json: label -> what it practises
assert all(exercise.label in practises for exercise in found)
exercise_time = {"cpu_seconds": {"ex-setting-1": 4.2}, "cores": 2, "load_average": {"setting": [1.0, 1.2]},
                 "failed": {}}
assert book_pages.exercise_time_line(exercise_time).startswith("timed on 2 cores at a load average of 1 to 1.2")
rows = book_pages.exercise_rows(found[:1], practises, exercise_time)  # number, chapter, title, practises, times
assert rows[0][0] == "Exercise 1.1" and rows[0][-2:] == ["4 s", f"~{book_pages.class_minutes(4.2)} min"]
assert book_pages.class_minutes(None) == book_pages.CLASS_MINUTES_BASE  # an estimate: no code to run
plan = book_pages.page_data("finetune_plan")  # one 50-minute class of the fine-tuning chapter
plan_times = {"cpu_seconds": {exercise.label: 60.0 for exercise in found}, "failed": {}}  # as the timing script writes
plan_rows = book_pages.session_plan_rows(plan, found, timing, plan_times)
assert plan_rows[-1][1] == "in all, for a 50-minute session"
assert book_pages.homework_line(plan, found, plan_times).startswith("homework: Exercise 9.1")
mine = book_pages.Exercise("primer", "2.1", "By hand", "ex-mine", "print(1)")  # chapter, number, title, label, code
assert book_pages.exercise_rows([mine], {}, {"cpu_seconds": {}, "failed": {"ex-mine": "NameError"}})[0][4] == (
    "not timed (NameError)")  # a solution that failed to run is said so
sessions = book_pages.page_data("sessions")  # book/_data/sessions.json
assert book_pages.session_rows(sessions, timing)[0][:3] == ["1. Linear algebra in a network",
                                                             "setting, primer, exact_nullspace", "90–180 min"]
solver, host = book_pages.solver_default(pipeline), book_pages.embed_default(pipeline)  # TF32, not compiled
assert solver["seconds"] < host["wall_seconds"]  # the copies from and to host memory come on top
plan_time, _ = book_pages.benchmark_file("benchmarks/results/plan_timing_imagenet.json")  # the imagenet plan's parts
by_study = book_pages.plan_timing_rows(plan_time)  # study, parts, how their times were obtained, seconds, untimed
assert [row[0] for row in by_study][:2] == ["watermark", "approximate"]
assert book_pages.plan_timing_line(plan_time).startswith("GPU parts ")  # then the CPU parts beside them
