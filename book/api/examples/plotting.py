import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from nullspace_utils import data, fooling, plotting, xai  # noqa: E402

# every figure: colour-blind-safe colours (plotting.PALETTE), text readable on a page and a phone
image, noise = torch.rand(3, 32, 32), torch.randn(3, 32, 32)
fig = plotting.show_images([image, noise], ["image", "noise"], symmetric=[False, True])
shown = plotting.to_display(noise, symmetric=True)  # (32, 32, 3): 0 at mid-grey
fig = plotting.show_images([noise[:1]], ["red channel"], symmetric=True)  # one channel: colour bar
fig = plotting.class_grid(data.synthetic_dataset("val", n=20), data.CLASS_NAMES, per_class=2)
fig, axes = plt.subplots(1, 3, figsize=(14.4, 3))  # a figure you assemble yourself ...
plotting.readable(fig)  # ... gets every text at >= 8 pt on the page and >= 6 px on a phone
assert plotting.smallest_points(14.4) > 2 * plotting.MIN_READABLE_POINTS
image_of_values = axes[0].imshow(np.random.default_rng(0).random((4, 4)))
plotting.colour_bar_below(fig, image_of_values, "value")  # one scale under all panels

# tables: HTML in Jupyter and on the site, aligned text in a terminal, a pipe table for Markdown
results = plotting.table([["ViT-S", "99.2 %"], ["ResNet", "100.0 %"]], ["model", "accuracy"])
assert isinstance(results, plotting.Table) and results.to_markdown().splitlines()[1] == "|---|---:|"
assert plotting.format_range([0.972, 0.99]) == "97.2-99.0"  # a range over seeds, in %
# rounded outward, for values whose last digits vary between CPUs: the printed range holds them all
assert plotting.format_range([0.98054, 0.99498], scale=1, digits=2, outward=True, separator=" to ") == "0.98 to 1.00"
assert plotting.format_list([60, 120, 160]) == "60, 120 and 160"  # a list in prose, not a Python repr

# explanation maps, on their own or over their images
heat = torch.rand(32, 32)
blended = plotting.overlay(image, heat)  # (32, 32, 3)
fig = plotting.show_maps([[heat, heat]], ["one image"], ["method A", "method B"])

# curves: lines, seed ranges, model families (plotting.FAMILY_STYLES), fine-tuning methods
fig = plotting.line_panels([{"title": "t", "ylabel": "y", "lines": {"a": ([1, 2], [3, 4], "o-")}}],
                           xlabel="x", logx=(True,))
seeds = [{"learned": {"match": 0.9 + d}} for d in (-0.01, 0.01)]  # two seeds' results
rows = [{"lim": lim, "learning_failed": False, "seeds": seeds} for lim in (0.1, 0.5)]  # a sweep
xs, values, failed = plotting.seed_series(rows, "learned")  # x, the seeds' values in %, failures
vit = {"label": "ViT-S", "kind": "learned", "family": "ViT", "xs": xs, "values": values,
       "failed": failed, "color": plotting.family_style("ViT", 0)["color"]}
fig = plotting.seed_panels([{"title": "ViT-S", "xlabel": "lim", "ylabel": "%", "series": [vit]}])
assert "learned" in plotting.NOISE_STYLES and "plain" in plotting.METHOD_STYLES
fig = plotting.method_panels([{"title": "PGD", "xlabel": "eps", "ylabel": "accuracy (%)",
                               "xs": [0, 1], "series": {"plain": [[80, 82], [40, 42]]}}])
fig = plotting.finetune_diagram()
fig = plotting.roc_panels({"logits": {"all": ([0, 0, 1], [0, 1, 1], 1.0)}})
fig = plotting.matrix_heatmap({"a": {"a": 1.0, "b": 0.2}, "b": {"a": 0.3, "b": 0.9}}, ["a", "b"])
fig = plotting.change_strips({"owner": [1e-7, 2e-7], "other": [0.1, 0.3]}, tol=1e-3)
fig = plotting.loglog_curves([0.1, 1, 10], {"nullspace": ([1e-7] * 3, "o-")},
                             xlabel="amplitude", ylabel="max |logit change|")
fig = plotting.time_bars({"primer": 6.5, "setting": 25.8}, budget=120, budget_label="budget",
                         xlabel="seconds")
fig, ax = plt.subplots()
ax.semilogy([0.5, 4.0], [1e-3, 1.0])
plotting.reference_line(ax, 1e-13, "exact: ≤ 1e-13", side="right")  # off the axis: an arrow
plt.close("all")

# the primer's and the exact-nullspace chapter's figures
projection, function = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 1.0]])
directions = [np.array([0.0, 1.0]), np.array([1.0, -2.0]) / np.sqrt(5)]  # their nullspaces
fig = plotting.nullspace_walks(projection, function, directions, titles=["projection", "2 x1 + x2"])
plane = np.array([[1, 0], [-1, 1], [0, -1]]) / np.sqrt(2)
fig = plotting.nullspace_plane(np.array([[1.0, 1.0, 1.0]]), plane, title="null(1 1 1)")
fig = plotting.singular_value_plot([3.0, 1.0, 1e-3], tolerance=1e-2, title="sigma")
plt.close("all")

# the fooling chapter's panels and tables
logits = {"source": torch.tensor([[2.0, 0.0]]), "transformed": torch.tensor([[2.0, 0.0]])}
batches = {"source": image[None], "transformed": image[None]}
panels, titles = plotting.prediction_panels(batches, logits, str)
assert titles == ["source\n0 88.1 %", "transformed\n0 88.1 %"]  # class and probability
red = fooling.ChannelChange(channel=0, l1=900.0, l2=40.0, threshold=0.01, changed=0.3,
                            mean_abs=1.2, low=-8.0, high=12.0, out_of_box=0.46)
changes = plotting.channel_change_table({"L1": red})
kept = fooling.PredictionCheck(source_kept=1.0, target_taken=0.0, max_logit_change=1e-6)
checks = plotting.disguise_table({"ViT-S": kept}, {"ViT-S": red})
same = xai.MapAgreement(transformed={"max_relative_difference": 0.0, "correlation": 1.0},
                        target={"max_relative_difference": 1.0, "correlation": 0.1},
                        transformed_correlations=[1.0], target_correlations=[0.1])
correlations = plotting.map_correlation_table({"LRP": same})
differences = plotting.map_difference_table({"saliency": same})
assert correlations.rows[0][:2] == ["LRP", "identical"]
