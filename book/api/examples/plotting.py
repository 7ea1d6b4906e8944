import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from nullspace_utils import data, fooling, plotting, xai  # noqa: E402

image, noise = torch.rand(3, 32, 32), torch.randn(3, 32, 32)
fig = plotting.show_images([image, noise], ["image", "noise"], symmetric=[False, True])  # every function: a figure
assert [ax.get_title() for ax in fig.axes] == ["image", "noise"]
shown = plotting.to_display(noise, symmetric=True)  # (32, 32, 3) for imshow: 0 at mid-grey, the peak black or white
assert shown.shape == (32, 32, 3) and np.isclose(np.abs(shown - 0.5).max(), 0.5)
results = plotting.table([["ViT-S", "99.2 %"], ["ResNet", "100.0 %"]], ["model", "accuracy"])  # a Table
assert isinstance(results, plotting.Table)
assert repr(results).splitlines() == ["model   accuracy",  # aligned text (a terminal, nbval); numbers right-aligned
                                      "------  --------",
                                      "ViT-S     99.2 %",
                                      "ResNet   100.0 %"]
assert results.to_html().count("<tr>") == 3  # Jupyter and the book show results._repr_html_(), an HTML <table>
assert results.to_markdown().splitlines()[1] == "|---|---:|"  # a pipe table for Markdown pages
fig = plotting.class_grid(data.synthetic_dataset("val", n=20), data.CLASS_NAMES, per_class=2)
assert len(fig.axes) == 2 * len(data.CLASS_NAMES)  # one column per class
heat = torch.rand(32, 32)
assert plotting.overlay(image, heat).shape == (32, 32, 3)  # a map drawn over an image
fig = plotting.show_maps([[heat, heat]], ["one image"], ["method A", "method B"], images=[[image, image]])
assert len(fig.axes) == 3  # two maps and one colour bar under them
fig = plotting.line_panels([{"title": "t", "ylabel": "y", "lines": {"a": ([1, 2], [3, 4], "o-")}}], xlabel="x")
assert np.array_equal(fig.axes[0].lines[0].get_ydata(), [3, 4])
fig, axes = plt.subplots(1, 3, figsize=(14.4, 3))  # a figure you assemble yourself, twice the page's width ...
axes[0].set_title("small", fontsize=6)
plotting.readable(fig)  # ... keeps every text at 8 pt on the page (7.2 inches) and 6 px on a phone (370 px)
assert axes[0].title.get_fontsize() == plotting.smallest_points(14.4) >= 2 * plotting.MIN_READABLE_POINTS
rows = [{"lim": lim, "learning_failed": lim > 0.3,  # multi-seed sweep rows (studies.noise_sweep.noise_point)
         "seeds": [{"learned": {"match": 1 - lim + d}, "uniform": {"match": 0.5}} for d in (-0.01, 0.01)]}
        for lim in (0.1, 0.5)]
xs, values, failed = plotting.seed_series(rows, "learned")  # x, the seeds' values (in %), failure flags
assert xs == [0.1, 0.5] and np.allclose(values, [[89, 91], [49, 51]]) and failed == [False, True]
fig = plotting.seed_panels([{"title": "ViT-S", "xlabel": "lim", "ylabel": "%", "logx": True, "series": [
    {"label": "ViT-S", "kind": kind, "color": "C0", **dict(zip(("xs", "values", "failed"),
                                                              plotting.seed_series(rows, kind), strict=True))}
    for kind in ("learned", "uniform")]}])  # mean lines, seed ranges as error bars, one key for all
assert np.allclose(fig.axes[0].lines[0].get_ydata(), [90, 50])  # the learned noise's mean match, in %
assert set(plotting.NOISE_STYLES) >= {"learned", "shuffled", "uniform", "projected", "row_removed"}
fig = plotting.matrix_heatmap({"a": {"a": 1.0, "b": 0.2}, "b": {"a": 0.3, "b": 0.9}}, ["a", "b"])  # transfer
assert [text.get_text() for text in fig.axes[0].texts] == ["100", "20", "30", "90"]  # in %
fig = plotting.change_strips({"owner": [1e-7, 2e-7], "other": [0.1, 0.3]}, tol=1e-3)  # fingerprint evidence
assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["owner", "other"]
fig = plotting.roc_panels({"logits": {"all": ([0, 0, 1], [0, 1, 1], 1.0)}})
assert fig.axes[0].get_legend().get_texts()[0].get_text() == "all (AUC 1.00)"
fig = plotting.method_panels([{"title": "PGD", "xlabel": "eps", "ylabel": "accuracy (%)", "xs": [0, 1],
                                "xticklabels": ["1/255", "2/255"],
                                "series": {"plain": [[80, 82], [40, 42]], "nullspace lim 4": [[79, 81], [38, 39]]}}])
assert np.allclose(fig.axes[0].lines[0].get_ydata(), [81, 41]) and set(plotting.METHOD_STYLES) >= {"plain", "untuned"}
fig = plotting.finetune_diagram()  # the fine-tuning chapter's picture of the method
assert any("learn v" in text.get_text() for text in fig.axes[0].texts)
plt.close("all")
assert plotting.format_range([0.972, 0.99]) == "97.2-99.0" and plotting.format_range([1.0, 1.0]) == "100.0"
# the primer's and the exact-nullspace chapter's figures
projection, function = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 1.0]])
directions = [np.array([0.0, 1.0]), np.array([1.0, -2.0]) / np.sqrt(5)]  # unit vectors of their nullspaces
fig = plotting.nullspace_walks(projection, function, directions, titles=["projection", "2 x1 + x2"])
assert [ax.get_title() for ax in fig.axes[:2]] == ["projection", "2 x1 + x2"]
fig = plotting.nullspace_plane(np.array([[1.0, 1.0, 1.0]]), np.array([[1, 0], [-1, 1], [0, -1]]) / np.sqrt(2),
                               title="null(1 1 1)")  # a plane in 3-D (its basis need not be orthogonal to draw)
assert fig.axes[0].name == "3d"
fig = plotting.singular_value_plot([3.0, 1.0, 1e-3], tolerance=1e-2, title="sigma")  # log scale, tolerance dashed
assert fig.axes[0].get_yscale() == "log"
fig = plotting.loglog_curves([0.1, 1, 10], {"nullspace": ([1e-7] * 3, "o-"), "random": ([0.1, 1, 9], "s-")},
                             xlabel="amplitude", ylabel="max |logit change|")
assert fig.axes[0].get_xscale() == fig.axes[0].get_yscale() == "log" and len(fig.axes[0].lines) == 2
fig = plotting.time_bars({"primer": 6.5, "setting": 25.8}, budget=120, budget_label="budget", xlabel="seconds")
assert [bar.get_width() for bar in fig.axes[0].patches] == [6.5, 25.8]
plt.close("all")
# the fooling chapter's panels and tables
logits = {"source": torch.tensor([[2.0, 0.0]]), "transformed": torch.tensor([[2.0, 0.0]])}
panels, titles = plotting.prediction_panels({"source": image[None], "transformed": image[None]}, logits, str)
assert titles == ["source\n0 88.1 %", "transformed\n0 88.1 %"] and len(panels) == 2  # class, probability
red = fooling.ChannelChange(channel=0, l1=900.0, l2=40.0, threshold=0.01, changed=0.3, mean_abs=1.2, low=-8.0,
                            high=12.0, out_of_box=0.46)
assert plotting.channel_change_table({"L1": red}).rows == [["L1", "900", "40", "30 %", "46 %", "[-8, 12]"]]
kept = fooling.PredictionCheck(source_kept=1.0, target_taken=0.0, max_logit_change=1e-6)
assert plotting.disguise_table({"ViT-S": kept}, {"ViT-S": red}).rows[0][:3] == ["ViT-S", "True", "True"]
same = xai.MapAgreement(transformed={"max_relative_difference": 0.0, "correlation": 1.0},
                        target={"max_relative_difference": 1.0, "correlation": 0.1},
                        transformed_correlations=[1.0], target_correlations=[0.1])
assert plotting.map_correlation_table({"LRP": same}).rows == [["LRP", "identical", "above 0.9999", "0.10 to 0.10"]]
assert plotting.map_difference_table({"saliency": same}).rows[0][:3] == ["saliency", "identical", "< 1e-3"]
# a reference measured elsewhere: a labelled line inside the drawn range, an arrow at the edge outside it
fig, ax = plt.subplots()
ax.semilogy([0.5, 4.0], [1e-3, 1.0])
plotting.reference_line(ax, 1e-13, "exact: ≤ 1e-13", side="right")  # decades below: the axis keeps the data's range
assert ax.texts[0].get_text() == "↓ exact: ≤ 1e-13" and len(ax.lines) == 1
plt.close("all")
# colour-blind-safe colours; ViTs and CNNs told apart by hue group, marker and line style (plotting.FAMILY_STYLES)
assert plotting.family_style("CNN", 0)["marker"] != plotting.family_style("ViT", 0)["marker"]
assert plotting.PALETTE[0] == "#0072B2" and plotting.smallest_points(7.2) >= plotting.MIN_READABLE_POINTS
fig, ax = plt.subplots()
shown = ax.imshow(np.random.default_rng(0).random((4, 4)))
plotting.colour_bar_below(plotting.readable(fig), shown, "value")  # one scale under all panels
plt.close("all")
