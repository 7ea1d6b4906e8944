from dataclasses import replace

from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import approximate, robustness
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
assert approximate.verdict_rows(sweep)[0][:2] == ["zoo-vit-s", "0.5"]  # model, lim, rate, norms, learned or why not
assert approximate.loss_lines(sweep, "zoo-vit-s")[0].startswith("norm held, lim 0.5: ")

# Fig. 2's two halves: match and logit MSE, learned against its shuffled copy on each, ranges over seeds
assert list(approximate.FIGURE_2_METRICS) == ["match", "logit_mse"]
assert approximate.figure_2_panels(sweep["models"], field="logit_mse")[0]["ylabel"] == "logit MSE (log scale)"
small = sweep["models"]["zoo-vit-s"][0]  # lim 0.5
assert approximate.metric_separation(small) == {"match": 0, "logit_mse": 1}  # only MSE tells them apart here
assert approximate.at_ceiling(small) and approximate.MATCH_CEILING == 0.99  # the shuffled copy keeps >= 99 %
assert approximate.mse_range([0.0012, 0.0070]) == "0.0012-0.0070"
assert approximate.figure_2_rows(sweep)[0][4:] == ["0.0012-0.0016 vs 0.0038-0.0070", "learned ahead"]
assert approximate.figure_2_summary(sweep)[0] == ["zoo-vit-s", "2, 4", "0.5, 1, 2, 4", "0.5", "none"]
assert approximate.failure_lines(sweep) == []  # no point failed to learn
robust = robustness.RESULT.read(robustness.RESULT.path("teaching"))
exact = approximate.exact_reference(robust)  # the exact nullspace noise, measured at the image level
assert exact["zoo-vit-s"]["match"] == 1.0 and exact["zoo-vit-s"]["logit_mse"] < 1e-9
figure = approximate.figure_2(sweep, exact)  # 2 rows (match, MSE on a log axis) x 3 ViTs
assert len(figure.axes) == 6 and figure.axes[3].get_yscale() == "log"
(claim,) = approximate.claims(sweep)  # the reproducibility page's §4 row
assert claim.verdict == "reproduced" and claim.figure == approximate.CLAIM_FIGURE == "approximate-fig2"

profile = get_profile("teaching")
tiny = replace(settings, lims=(4.0,), max_extensions=0, seeds=(0,), steps=2, milestones=(1,), batch_size=8,
               probe_steps=1, lr_grid=(1.0, 10.0), train=16, val=16, squared_lims=())
small_check = replace(check, steps=2, milestones=(1,), train=8, val=8)
made = approximate.run(tiny, profile, Run(command="example"), models=["zoo-vit-s"], check=small_check)
assert list(made["models"]) == ["zoo-vit-s"] and len(made["keep_norm"]["zoo-vit-s"]) == 1  # one part of a sweep
both = approximate.merge([made], profile, Run(command="merge"))  # the parts of a parallel run, joined
assert both["parts"][0]["command"] == "example" and both["models"] == made["models"]
listed, extensions = approximate.work(approximate.SETTINGS["imagenet"], get_profile("imagenet"), "vit_base_patch32_224")
assert sum(listed.learn_steps.values()) == 8 * ((5 + 2) * 50 + 3 * 500)  # 8 lims, each: rate probe + 3 seeds
