import sys
import tempfile
from pathlib import Path

from nullspace_utils import plan
from nullspace_utils.profiles import get_profile

parts = plan.study_plan(get_profile("teaching"), only=["robustness"])  # one part per model, the merge, the transfer
assert [part.name for part in parts][-2:] == ["robustness/merge", "robustness-transfer"]
assert parts[0].uses_device and parts[-1].needs == ("robustness/merge",)
keys = plan.part_keys(parts, plan.code_version())  # command + library code + the keys of what it needs
assert len(set(keys.values())) == len(parts)

# a plan of your own: each Part is a command; {work} is the work folder, {device} the slot's device
write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
mine = [plan.Part("hello", ("hello",), publishes=("hello.txt",),
                  command=(sys.executable, "-c", write, "{work}/hello.txt", plan.DEVICE))]
with tempfile.TemporaryDirectory() as folder:
    work, out = Path(folder) / "work", Path(folder) / "out"
    report: plan.PlanReport = plan.run_plan(mine, work=work, out_dir=out, devices=["cpu"], show_progress=False)
    assert report.done == ["hello"] and (out / "hello.txt").read_text() == "cpu" and report.exit_code == 0
    assert "skip (finished, same settings and code)" in plan.describe_plan(mine, work)  # a rerun skips it
    assert plan.run_plan(mine, work=work, out_dir=out, show_progress=False).skipped == ["hello"]
    with open(Path(folder) / "alone.log", "w") as log:  # one part started as the plan starts it, alone
        assert plan.start_part(mine[0], "cpu", work, log).wait() == 0  # its own process session, like the plan's
assert plan.CPU_SLOT.startswith("cpu")  # the slot of parts that compute on the CPU whatever the devices

# what a part will cost: its counted work (learning steps, forward batches) times a step measured here
teaching = get_profile("teaching")
sweep = plan.study_plan(teaching, only=["approximate"])
listed, extensions = plan.part_work(sweep[1], teaching)  # approximate/zoo-vit-b: its lims, and those it may add
assert sum(listed.learn_steps.values()) > 0 and plan.part_work(sweep[-1], teaching) is None  # a merge: not counted
# the imagenet plan splits its longest sweep parts by lims, into consecutive groups (each fits a 600 s GPU call)
assert plan.lim_groups((0.01, 0.05, 0.1, 0.25, 0.5, 1.0), 3) == [(0.01, 0.05), (0.1, 0.25), (0.5, 1.0)]
assert plan.LIM_SPLITS["imagenet"][("robustness", "vit_large_patch32_224")] == 3 and not plan.LIM_SPLITS["teaching"]
# the SLSQP parts solve in worker processes: the cores the device parts leave ({workers} in their commands)
assert plan.cpu_workers(["cuda:0"], cores=16) == 14 and plan.WORKERS == "{workers}"
cost: plan.StepCost = plan.measure_step_cost(teaching, "zoo-vit-s", "encoder", batch_size=4, device="cpu", steps=1)
assert cost.learn_step > 0 and cost.forward_batch > 0  # seconds on this machine
estimates = plan.estimate_plan(sweep, teaching, "cpu", measure=lambda model, level, batch: cost)  # one cost for all
assert isinstance(estimates["approximate/zoo-vit-b"], plan.Estimate)
assert estimates["approximate/zoo-vit-b"].text().startswith("about ") and estimates["approximate/merge"].seconds is None
assert "estimated on cpu, one part at a time" in plan.describe_plan(sweep, Path("no-work-yet"), estimates=estimates,
                                                                     device="cpu")
# the progress bar's weights: each part's estimate, else its last time, else the others' mean (the merge here)
weights = plan.part_weights(sweep, Path("no-work-yet"), estimates)
assert weights["approximate/zoo-vit-b"] == estimates["approximate/zoo-vit-b"].seconds and weights["approximate/merge"] > 0
