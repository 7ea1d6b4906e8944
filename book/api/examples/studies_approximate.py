from dataclasses import replace

from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate
from nullspace_utils.studies.common import Run

settings: approximate.ApproximateSettings = approximate.SETTINGS["teaching"]  # frozen: passed in, never patched
assert settings.lims == (0.5, 1.0, 2.0, 4.0) and settings.seeds == (0, 1, 2) and settings.squared_lims == (1.0, 4.0)
check: approximate.ApproximateCheck = approximate.CHECK  # the cheap point a test recomputes from the committed file
assert check.steps == 20 and check.model_index == 0

sweep: approximate.ApproximateResult = approximate.RESULT.read(approximate.RESULT.path("teaching"))  # validated
assert sweep["loss"] == approximate.LOSS and sweep["optimizer"] == approximate.OPTIMIZER
assert approximate.run_summary(sweep)[1] == "points where learning failed: none; rates at a grid edge: none"
panels = approximate.figure_2_panels(sweep["models"])  # for plotting.seed_panels: one panel per ViT
assert [panel["title"] for panel in panels] == ["zoo-vit-s", "zoo-vit-b", "zoo-vit-l"]
assert approximate.keep_norm_panel(sweep, "zoo-vit-s")["title"] == "zoo-vit-s: norm held"
assert approximate.verdict_rows(sweep)[0][:2] == ["zoo-vit-s", "0.5"]  # model, lim, rate, norms, verdict
assert approximate.loss_lines(sweep, "zoo-vit-s")[0].startswith("norm held, lim 0.5: ")
assert approximate.comparison_lines(sweep)[0].startswith("zoo-vit-s: learned beats its shuffled copy at lim ")

profile = get_profile("teaching")
tiny = replace(settings, lims=(4.0,), max_extensions=0, seeds=(0,), steps=2, milestones=(1,), batch_size=8,
               probe_steps=1, lr_grid=(1.0, 10.0), train=16, val=16, squared_lims=())
small_check = replace(check, steps=2, milestones=(1,), train=8, val=8)
made = approximate.run(tiny, profile, Run(command="example"), models=["zoo-vit-s"], check=small_check)
assert list(made["models"]) == ["zoo-vit-s"] and len(made["keep_norm"]["zoo-vit-s"]) == 1  # one part of a sweep
both = approximate.merge([made], profile, Run(command="merge"))  # the parts of a parallel run, joined
assert both["parts"][0]["command"] == "example" and both["models"] == made["models"]
