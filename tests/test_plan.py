"""The resumable plan of ``experiments all`` (issue #33): order, skipping, re-running, failures, interruption and
several device slots, on parts that are small Python commands; and the real plan's commands parse."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nullspace_utils import experiments, plan
from nullspace_utils.profiles import get_profile

WRITE = "import pathlib, sys, time; time.sleep(float(sys.argv[2])); pathlib.Path(sys.argv[1]).write_text(sys.argv[3])"


def writer(name: str, output: str, *, needs: tuple[str, ...] = (), text: str = "ok", sleep: float = 0.0,
           publish: bool = True) -> plan.Part:
    """A part that writes ``text`` to ``{work}/output`` after ``sleep`` seconds."""
    return plan.Part(name, (name,), needs=needs, publishes=(output,) if publish else (),
                     command=(sys.executable, "-c", WRITE, f"{{work}}/{output}", str(sleep), text))


def failing(name: str) -> plan.Part:
    return plan.Part(name, (name,), command=(sys.executable, "-c", "raise SystemExit('broken on purpose')"))


def run(parts, tmp_path, **options):
    return plan.run_plan(parts, work=tmp_path / "work", out_dir=tmp_path / "out", version="v1",
                         show_progress=False, poll_seconds=0.01, **options)


def test_parts_run_in_order_of_their_needs_and_publish_their_files(tmp_path):
    parts = [writer("a", "a.json"), writer("b", "b.json", needs=("a",), text="from b")]
    report = run(parts, tmp_path)
    assert report.done == ["a", "b"] and not report.failed and not report.interrupted
    assert (tmp_path / "out" / "b.json").read_text() == "from b"
    manifest = json.loads((tmp_path / "work" / "plan.json").read_text())["parts"]
    assert set(manifest) == {"a", "b"} and manifest["a"]["device"] == "cpu (CPU part)"


def test_a_rerun_skips_finished_parts_and_a_changed_part_reruns_with_what_follows_it(tmp_path):
    parts = [writer("a", "a.json"), writer("b", "b.json", needs=("a",)), writer("c", "c.json")]
    run(parts, tmp_path)
    again = run(parts, tmp_path)
    assert again.skipped == ["a", "b", "c"] and again.done == []
    changed = [writer("a", "a.json", text="new setting"), parts[1], parts[2]]
    third = run(changed, tmp_path)
    assert third.done == ["a", "b"] and third.skipped == ["c"]  # b needs a: its key changed with a's
    assert (tmp_path / "out" / "a.json").read_text() == "new setting"
    other_code = plan.run_plan(parts, work=tmp_path / "work", out_dir=tmp_path / "out", version="v2",
                               show_progress=False, poll_seconds=0.01)
    assert sorted(other_code.done) == ["a", "b", "c"]  # other library code: nothing is skipped


def test_a_failed_part_is_reported_its_followers_not_run_and_the_rest_goes_on(tmp_path):
    silent = plan.Part("silent", ("silent",), publishes=("never.json",), command=(sys.executable, "-c", "pass"))
    parts = [failing("bad"), writer("after-bad", "x.json", needs=("bad",)), writer("fine", "f.json"), silent]
    report = run(parts, tmp_path)
    assert set(report.failed) == {"bad", "silent"}  # exit 1, and exit 0 without writing its file
    assert "broken on purpose" in Path(report.failed["bad"]).read_text()
    assert report.not_run == ["after-bad"] and report.done == ["fine"]
    assert "failed: 2, not run: 1" in report.summary() and report.exit_code == 1
    assert not (tmp_path / "out" / "x.json").exists()


def test_device_parts_share_the_slots_and_each_is_told_its_device(tmp_path):
    echo = "import pathlib, sys, time; time.sleep(0.5); pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    parts = [plan.Part(f"p{i}", ("x", plan.DEVICE), publishes=(f"p{i}.txt",),
                       command=(sys.executable, "-c", echo, f"{{work}}/p{i}.txt", plan.DEVICE)) for i in range(4)]
    report = run(parts, tmp_path, devices=["cuda:0", "cuda:1"])
    assert sorted(report.done) == ["p0", "p1", "p2", "p3"]
    used = {(tmp_path / "out" / f"p{i}.txt").read_text() for i in range(4)}
    assert used == {"cuda:0", "cuda:1"}  # both slots were used, and each part got its slot's device


def test_the_parts_share_decoded_images_through_the_work_folder(tmp_path, monkeypatch):
    """Each part is told where the plan keeps decoded images (work/tensors), unless the caller set the place."""
    from nullspace_utils.profiles import TENSOR_CACHE_VARIABLE

    echo = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(os.environ[sys.argv[2]])"
    part = plan.Part("p", ("x",), publishes=("p.txt",),
                     command=(sys.executable, "-c", echo, "{work}/p.txt", TENSOR_CACHE_VARIABLE))
    monkeypatch.delenv(TENSOR_CACHE_VARIABLE, raising=False)
    run([part], tmp_path)
    assert (tmp_path / "out" / "p.txt").read_text() == str(tmp_path / "work" / "tensors")
    monkeypatch.setenv(TENSOR_CACHE_VARIABLE, str(tmp_path / "mine"))
    run([part], tmp_path / "again")
    assert (tmp_path / "again" / "out" / "p.txt").read_text() == str(tmp_path / "mine")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_plan_keeps_finished_parts_and_resumes(tmp_path, stop):
    script = tmp_path / "run_plan.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from nullspace_utils import plan
        write = {WRITE!r}
        parts = [plan.Part(name, (name,), publishes=(name + ".json",),
                           command=(sys.executable, "-c", write, "{{work}}/" + name + ".json", sleep, "ok"))
                 for name, sleep in (("quick", "0"), ("slow", "30"))]
        report = plan.run_plan(parts, work=Path(sys.argv[1]), out_dir=Path(sys.argv[2]), version="v1",
                               show_progress=False, poll_seconds=0.01)
        print(report.summary())
        sys.exit(report.exit_code)
    """))
    work, out = tmp_path / "work", tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(script), str(work), str(out)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "quick.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(stop)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + stop and "interrupted" in stdout and "not run: slow" in stdout
    assert not (out / "slow.json").exists()
    finished = json.loads((work / "plan.json").read_text())["parts"]
    assert list(finished) == ["quick"]
    script.write_text(script.read_text().replace('"30"', '"0"'))  # the rerun: quick is skipped, slow runs
    rerun = subprocess.run([sys.executable, str(script), str(work), str(out)], capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0 and "done: 1, skipped (finished before, same settings and code): 1" in rerun.stdout


def test_a_part_needing_a_later_part_is_refused():
    with pytest.raises(ValueError, match="b needs a"):
        plan.part_keys([writer("b", "b.json", needs=("a",)), writer("a", "a.json")], "v1")


@pytest.mark.parametrize("profile", ["teaching", "imagenet"])
def test_every_part_of_the_real_plan_is_a_command_experiments_accepts(profile, tmp_path):
    parts = plan.study_plan(get_profile(profile))
    parser = experiments._parser()
    for part in parts:
        parser.parse_args(part.command_line("cuda:0", tmp_path)[3:])  # after "python -m nullspace_utils.experiments"
    plan.part_keys(parts, "v1")  # every need comes before the part that needs it
    published = {Path(name).name for part in parts for name in part.publishes}
    written = {kind.path(profile).rsplit("/", 1)[1] for _, kind in experiments.RUNNERS.values() if kind is not None}
    assert written <= published  # every result file a study writes comes out of the plan


def test_long_sweep_parts_are_split_by_lims_and_their_work_adds_up_to_the_whole_part():
    """The imagenet plan splits the sweep parts of :data:`plan.LIM_SPLITS` into groups of consecutive lims: every
    listed lim is in one part, the merge needs them all, and the parts' counted work is the unsplit part's (the
    squared-loss points in the first group, the lims a sweep may add in the last)."""
    from nullspace_utils.studies import approximate as approximate_study
    from nullspace_utils.studies import robustness as robustness_study

    profile = get_profile("imagenet")
    parts = plan.study_plan(profile, only=["approximate", "robustness"])
    names = [part.name for part in parts]
    assert plan.lim_groups((1, 2, 3, 4, 5, 6, 7, 8), 3) == [(1, 2, 3), (4, 5, 6), (7, 8)]
    with pytest.raises(ValueError, match="cannot split 2 lims into 3 parts"):
        plan.lim_groups((1, 2), 3)
    for (study, model), count in plan.LIM_SPLITS["imagenet"].items():
        settings = {"approximate": approximate_study, "robustness": robustness_study}[study].SETTINGS["imagenet"]
        split = [part for part in parts if part.name.startswith(f"{study}/{model}/lims-")]
        assert len(split) == count and f"{study}/{model}" not in names
        lims = [float(word) for part in split for word in plan._values(part.argv, "--lims")]
        assert lims == list(settings.lims)  # each listed lim in one part, in order
        merge = next(part for part in parts if part.name == f"{study}/merge")
        assert {part.name for part in split} <= set(merge.needs)
        assert all(part.argv[-1] in merge.argv for part in split)
        whole = plan.part_work(plan.Part("whole", (study, "--models", model)), profile)
        works = [plan.part_work(part, profile) for part in split]
        for index in range(2):  # listed lims, then the lims the sweep may add
            total = works[0][index]
            for work in works[1:]:
                total = total + work[index]
            assert total == whole[index]
        assert works[-1][1] == whole[1] and all(not work[1].learn_steps or not any(work[1].learn_steps.values())
                                                for work in works[:-1])
    assert not any("/lims-" in name for name in (part.name for part in plan.study_plan(get_profile("teaching"))))


def test_the_slsqp_parts_get_the_cores_the_device_parts_leave():
    """The two SLSQP parts solve their images in worker processes: the plan gives them the machine's cores less two
    per device slot (16 cores and one GPU: 14), at least one."""
    assert plan.cpu_workers(["cuda:0"], cores=16) == 14 and plan.cpu_workers(["cuda:0", "cuda:1"], cores=16) == 12
    assert plan.cpu_workers(["cpu"], cores=2) == 2 and plan.cpu_workers(["cuda:0"], cores=2) == 1
    parts = {part.name: part for part in plan.study_plan(get_profile("imagenet"),
                                                         only=["watermark-slsqp", "watermark-max-noise"])}
    for part in parts.values():
        line = part.command_line("cpu", Path("w"), workers=14)
        assert not part.uses_device and line[line.index("--workers") + 1] == "14"
        assert experiments._parser().parse_args(line[3:]).workers == 14


def test_all_dry_run_prints_the_plan_and_unknown_studies_are_refused(tmp_path, capsys):
    experiments.main(["all", "--dry-run", "--no-measure", "--only", "robustness", "--work", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "robustness-transfer: run; last run: never; after robustness/merge" in printed
    assert "approximate" not in printed
    with pytest.raises(SystemExit) as stop:
        experiments.main(["all", "--dry-run", "--only", "fooling"])
    assert stop.value.code == 2


# --------------------------------------------------------------------------- estimates
@pytest.mark.parametrize("clean_once", [False, True])
def test_point_work_counts_what_a_noise_point_computes(vit_s, monkeypatch, clean_once):
    """Every counted evaluation batch runs the model once. Every learning step runs it twice (clean and noisy) on
    the CPU; where a learning call computes the training images' clean logits once (CUDA; here forced on the CPU),
    a step runs it once and each call (the probe's two rounds, the learning) runs one clean pass over the training
    images, counted as ``clean_batches``. The forward passes of a real point are what :func:`point_work` counts,
    less the rates a widened grid added."""
    from torch.utils.data import TensorDataset

    from nullspace_utils import approximate, models
    from nullspace_utils.data import stack_dataset, synthetic_dataset
    from nullspace_utils.studies import noise_sweep

    if clean_once:
        monkeypatch.setattr(approximate, "clean_logits_once", lambda once, data, device: isinstance(data, TensorDataset))
    images = TensorDataset(*stack_dataset(synthetic_dataset("val", n=24)))
    settings = noise_sweep.PointSettings(seeds=(0, 1), steps=3, milestones=(), batch_size=8, probe_steps=2,
                                         lr_grid=(0.1, 1.0), train=24, val=24)
    forwards = []
    hook = models.unwrap(vit_s).register_forward_hook(lambda *_: forwards.append(1))
    try:
        for level, lr in [("input", "auto"), ("encoder", 0.5)]:
            forwards.clear()
            row = noise_sweep.noise_point(vit_s, images, images, level=level, lim=0.3, lr=lr, train_images=16,
                                          **noise_sweep.point_settings(settings, "cpu"))
            work = noise_sweep.point_work(settings, "zoo-vit-s", level, vit_input=level == "input",
                                          chosen_lr=lr == "auto", train_images=16)
            key = ("zoo-vit-s", level, 8)
            widened = len(row["lr_choice"]["grid"]) - len(settings.lr_grid) - 2 if row["lr_choice"] else 0
            counted = work.learn_steps[key] + widened * settings.probe_steps
            assert work.clean_batches[key] == (3 if lr == "auto" else 1) * 3  # learning calls x training batches
            if clean_once:  # a widening is a round of one rate, with its own clean pass of 3 batches
                learning = counted + work.clean_batches[key] + widened * 3
            else:
                learning = 2 * counted
            assert len(forwards) == learning + work.forward_batches[key]
    finally:
        hook.remove()


def test_estimates_multiply_the_counted_work_by_the_measured_step(tmp_path, monkeypatch):
    from dataclasses import replace

    from nullspace_utils.studies import robustness as robustness_study

    profile = get_profile("teaching")
    # robustness at another batch size than approximate: each part's steps are measured at its own
    monkeypatch.setitem(robustness_study.SETTINGS, "teaching",
                        replace(robustness_study.SETTINGS["teaching"], batch_size=64))
    parts = plan.study_plan(profile, only=["approximate", "robustness"])
    costs = {"learn": 0.01, "batch": 0.002, "clean": 0.001}
    measured = []

    def measure(model, level, batch_size):
        measured.append((model, level, batch_size))
        return plan.StepCost(costs["learn"], costs["batch"], costs["clean"])

    estimates = plan.estimate_plan(parts, profile, "cuda:0", measure=measure)
    assert len(measured) == len(set(measured)) == 3 + 6  # each (model, level, batch size) measured once
    assert {(level, batch) for _, level, batch in measured} == {("encoder", 128), ("input", 64)}
    for part in parts:
        counted = plan.part_work(part, profile)
        if counted is None:  # the merges
            assert part.name.endswith("merge") and estimates[part.name].seconds is None
            continue
        listed, extensions = counted
        seconds = sum(costs["learn"] * steps for steps in listed.learn_steps.values()) + sum(
            costs["batch"] * batches for batches in listed.forward_batches.values()) + sum(
            costs["clean"] * batches for batches in listed.clean_batches.values())
        assert estimates[part.name].seconds == pytest.approx(seconds)
        if part.name == "robustness-transfer":  # its lims are fixed
            assert estimates[part.name].upper == estimates[part.name].seconds
        else:  # the lims a sweep may add
            assert estimates[part.name].upper > estimates[part.name].seconds
    # the first ViT's part also learns the norm-kept and squared-loss points
    first, second = (plan.part_work(next(p for p in parts if p.name == f"approximate/{name}"), profile)[0]
                     for name in profile.vit_models[:2])
    assert sum(first.learn_steps.values()) > sum(second.learn_steps.values())
    # --steps changes the count
    shorter = plan.Part("x", ("approximate", "--models", "zoo-vit-b", "--steps", "10"))
    assert sum(plan.part_work(shorter, profile)[0].learn_steps.values()) < sum(second.learn_steps.values())
    printed = plan.describe_plan(parts, tmp_path, "v1", estimates=estimates, device="cuda:0")
    assert f"approximate/zoo-vit-s: run; last run: never; on cuda:0: about " \
           f"{estimates['approximate/zoo-vit-s'].seconds:.0f} s (up to" in printed
    total = sum(estimate.seconds or 0 for estimate in estimates.values())
    assert f"estimated on cuda:0, one part at a time: {total:.0f} s for the 10 learned-noise and fine-tuning parts" \
           in printed


def test_the_fine_tuning_parts_are_counted_and_add_up_to_the_whole_sweep():
    """Each fine-tuning part's counted work (studies.finetune.work): the untuned part the match alone, plain one
    loss per step, the noise methods two and the nullspace run its round noises; the seven imagenet parts add up to
    the whole sweep's count; the merge and the CPU "-C" pass are not counted."""
    from nullspace_utils.studies import finetune as finetune_study

    profile = get_profile("imagenet")
    parts = plan.study_plan(profile, only=["finetune"])
    tune = finetune_study.SETTINGS["imagenet"]
    counted = {part.name: plan.part_work(part, profile) for part in parts}
    assert counted["finetune/merge"] is None and counted["finetune-corruptions"] is None
    works = [work for work in counted.values() if work is not None]
    total = works[0][0]
    for work in works[1:]:
        total = total + work[0]
    whole = finetune_study.work(tune, ["untuned", "plain", "nullspace", "gaussian"], tune.seeds, tune.lims)[0]
    assert total == whole and not any(any(work[1].learn_steps.values()) for work in works)
    tune_key = (tune.model, "encoder", tune.batch_size)
    untuned, plain, noisy = (counted[f"finetune/{name}"][0] for name in ("untuned", "plain-s0", "lim3-s0"))
    assert tune_key not in untuned.forward_batches  # the match alone, at the sweep's batch
    assert plain.forward_batches[tune_key] == 3 * tune.steps  # one loss, forward and backward
    assert noisy.forward_batches[tune_key] == 2 * 2 * 3 * tune.steps  # nullspace and gaussian, two losses each
    assert (tune.model, "encoder", tune.noise_batch_size) in noisy.learn_steps  # the round noises


def test_a_step_is_measured_on_the_device():
    cost = plan.measure_step_cost(get_profile("teaching"), "zoo-vit-s", "encoder", batch_size=4, device="cpu",
                                  steps=1)
    assert 0 < cost.learn_step < 10 and 0 < cost.forward_batch < 10


def test_a_step_costs_the_difference_of_two_calls_or_the_longer_calls_share_when_noise_hides_it():
    """measure_step_cost's per-step time: (t(2n) - t(n)) / n, the fixed cost dropped; when the difference is not
    positive (noise on a busy machine), t(2n) / 2n, never zero (a zero sank an estimate, and a test, once)."""
    assert plan._per_step(lambda: time.sleep(0.01), lambda: time.sleep(0.21), 2, torch.device("cpu")) \
        == pytest.approx(0.1, abs=0.04)
    assert plan._per_step(lambda: time.sleep(0.2), lambda: time.sleep(0.08), 2, torch.device("cpu")) \
        == pytest.approx(0.02, abs=0.01)


def test_the_progress_bar_weighs_parts_by_their_estimates_or_last_times(tmp_path, capsys):
    """The bar's ETA weighs a long part as long: a part's estimate, else its last time, else the others' mean."""
    parts = [writer("a", "a.json"), writer("b", "b.json"), writer("c", "c.json")]
    work = tmp_path / "work"
    assert plan.part_weights(parts, work) is None  # nothing known: the bar counts parts
    estimates = {"a": plan.Estimate(10.0, 15.0), "b": plan.Estimate(None, None)}
    assert plan.part_weights(parts, work, estimates) == {"a": 10.0, "b": 10.0, "c": 10.0}
    run(parts, tmp_path)
    last = json.loads((work / "plan.json").read_text())["parts"]
    weights = plan.part_weights(parts, work, {"a": plan.Estimate(30.0, 30.0)})
    assert weights == {"a": 30.0, "b": last["b"]["seconds"], "c": last["c"]["seconds"]}
    capsys.readouterr()
    changed = [writer("a", "a.json", text="again"), writer("b", "b.json", text="again"), parts[2]]
    plan.run_plan(changed, work=work, out_dir=tmp_path / "out", version="v1", poll_seconds=0.01,
                  weights={"a": 30.0, "b": 10.0, "c": 99.0})
    shown = capsys.readouterr().err
    assert "plan (estimated seconds)" in shown and "40/40" in shown  # c was skipped: not in the total


def test_each_part_is_told_how_many_parts_share_its_gpu(tmp_path):
    """run_plan sets NULLSPACE_GPU_SHARE for a part: the number of slots its device has (a CPU part: 1)."""
    script = ("import os, sys, time; time.sleep(0.3); "
              "open(sys.argv[1], 'w').write(sys.argv[2] + ' ' + os.environ.get('NULLSPACE_GPU_SHARE', 'unset'))")
    parts = [plan.Part(name, (name,), publishes=(f"{name}.txt",),
                       command=(sys.executable, "-c", script, f"{{work}}/{name}.txt", plan.DEVICE))
             for name in ("a", "b", "c")]
    report = run(parts, tmp_path, devices=["cuda:0", "cuda:0", "cuda:1"])
    assert sorted(report.done) == ["a", "b", "c"] and not report.failed
    told = {(tmp_path / "out" / f"{name}.txt").read_text() for name in ("a", "b", "c")}
    assert told == {"cuda:0 2", "cuda:1 1"}  # two slots on cuda:0 (two parts there), one on cuda:1


def test_the_committed_plan_timing_and_the_readmes_table_follow_the_plan_and_the_timing_files():
    """benchmarks/plan_timing.py's file and the README's table are what it computes now from the plan and the
    committed timing files: a changed plan or timing file must refresh both (run the script with --out, paste)."""
    from scripts_loader import load_script

    root = Path(__file__).resolve().parents[1]
    timing = load_script("plan_timing", root / "benchmarks")
    table = timing.part_times("imagenet")
    assert set(table) == {part.name for part in plan.study_plan(get_profile("imagenet"))}
    committed = json.loads((root / "benchmarks" / "results" / "plan_timing_imagenet.json").read_text())
    assert committed["parts"] == json.loads(json.dumps(table))
    assert "\n".join(timing.table_lines(table)) in (root / "README.md").read_text()
    assert {row["how"] for row in table.values()} <= {*timing.HOWS, "not measured"}


def test_time_part_records_a_finished_part_and_a_lower_bound_for_one_cut_at_its_limit(tmp_path, monkeypatch):
    """benchmarks/time_part.py: a part that ends in time is recorded with its seconds; one still running at the
    limit is stopped (SIGTERM to its process group; SIGKILL after the grace period if it ignores that) and recorded
    as not finished, its seconds the limit; a part that fails, or writes none of the files it publishes, is refused;
    a part that needs others, or an unknown name, is refused; plan_timing shows a cut part as "at least", and leaves
    it out of the sums when it ran on fewer cores than the plan's machine."""
    from scripts_loader import load_script

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))  # time_part imports its neighbour watermark.py, as a script does
    time_part, timing = load_script("time_part", benchmarks), load_script("plan_timing", benchmarks)
    write = "import pathlib, sys, time; time.sleep(float(sys.argv[2])); pathlib.Path(sys.argv[1]).write_text('x')"
    quick = plan.Part("quick", ("quick",), publishes=("q.txt",),
                      command=(sys.executable, "-c", write, "{work}/q.txt", "0"))
    row = time_part.run_part(quick, device="cpu", work=tmp_path / "q", limit=60)
    assert row["finished"] and 0 < row["seconds"] < 60 and (tmp_path / "q" / "q.txt").is_file()
    slow = plan.Part("slow", ("slow",), command=(sys.executable, "-c", write, "{work}/s.txt", "5"))
    stubborn = plan.Part("stubborn", ("stubborn",), command=(
        sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"))
    for part in (slow, stubborn):
        started = time.perf_counter()
        cut = time_part.run_part(part, device="cpu", work=tmp_path / part.name, limit=1, grace=1)
        assert not cut["finished"] and cut["returncode"] in (-signal.SIGTERM, -signal.SIGKILL)
        assert time.perf_counter() - started < 15  # stopped, not waited for (it would sleep 30 s)
    assert not (tmp_path / "slow" / "s.txt").exists()  # it never got to write
    failing = plan.Part("failing", ("failing",), command=(sys.executable, "-c", "raise SystemExit(3)"))
    with pytest.raises(SystemExit, match="exit status 3"):
        time_part.run_part(failing, device="cpu", work=tmp_path / "f", limit=60)
    silent = plan.Part("silent", ("silent",), publishes=("never.txt",), command=(sys.executable, "-c", "pass"))
    with pytest.raises(SystemExit, match="no never.txt written"):
        time_part.run_part(silent, device="cpu", work=tmp_path / "n", limit=60)
    with pytest.raises(SystemExit, match="needs"):
        time_part.find_part("imagenet", "approximate/merge")
    with pytest.raises(SystemExit, match="fingerprint"):
        time_part.find_part("imagenet", "fingerprints")  # the message lists the parts

    out = tmp_path / "imagenet_parts_cpu.json"
    time_part.record(out, "fingerprint", {**cut, "commit": "abc", "device": "some CPU", "cores": 2})
    time_part.record(out, "finetune-corruptions", {**row, "commit": "abc", "device": "some CPU", "cores": 2})
    assert set(json.loads(out.read_text())["parts"]) == {"fingerprint", "finetune-corruptions"}  # both kept
    monkeypatch.setattr(timing, "RESULTS", tmp_path)
    table = timing.part_times("imagenet")
    assert table["fingerprint"]["how"] == "at least" and not table["fingerprint"]["counted"]
    assert table["finetune-corruptions"]["how"] == "measured" and table["finetune-corruptions"]["counted"]
    assert timing.slot_sums(table)["cpu"] == pytest.approx(row["seconds"])  # the 2-core lower bound is not summed
    time_part.record(out, "fingerprint", {**cut, "commit": "abc", "device": "a big CPU", "cores": 64})
    assert timing.part_times("imagenet")["fingerprint"]["counted"]  # from as many cores as the plan's: summed
