"""Plotting helpers: they draw what they are given (values, lines, labels), not just something."""

import re

import matplotlib
import matplotlib.text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nullspace_utils import plotting  # noqa: E402


def test_table_is_html_with_a_header_and_right_aligned_numbers():
    table = plotting.table([["zoo-vit-s", "99.2 %", "**yours**"], ["a < b", "16/16", "`x|y`"]],
                           ["model", "kept", "verdict"])
    html = table._repr_html_()
    assert html.count("<tr>") == 3 and len(re.findall(r"<th[ >]", html)) == 3 and html.count("<td") == 6
    assert "<td>a &lt; b</td>" in html  # escaped, not markup
    assert "<strong>yours</strong>" in html and 'nowrap">x|y</code>' in html
    right = 'style="text-align: right'
    assert f'<td {right}' not in html.split("<tr>")[2].split("</td>")[0]  # the model column is text: left
    assert html.split("<tr>")[2].split("</td>")[1].startswith(f"<td {right}")  # 99.2 %: right-aligned


def test_table_markdown_escapes_pipes_and_aligns_numbers():
    table = plotting.table([["a", "1.5 %"], ["b", "2e-03"]], ["name", "mean |Δp|"])
    assert table.to_markdown().splitlines() == ["| name | mean \\|Δp\\| |", "|---|---:|", "| a | 1.5 % |",
                                                "| b | 2e-03 |"]


def test_table_plain_text_aligns_columns():
    lines = repr(plotting.table([["a", "1.5"], ["bbb", "12.25"]], ["name", "value"], caption="c")).splitlines()
    assert lines == ["c", "name  value", "----  -----", "a       1.5", "bbb   12.25"]


def test_table_refuses_ragged_rows():
    with pytest.raises(ValueError, match="row 1 has 1 cells but there are 2 headers"):
        plotting.table([["a", 1], ["b"]], ["name", "value"])


def test_to_display_maps_to_unit_range():
    image = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]]]).expand(3, 2, 2)
    shown = plotting.to_display(image, symmetric=True)
    assert shown.shape == (2, 2, 3)
    # 0 is mid-grey and the largest |value| (3) reaches white; -1 lies a sixth below grey
    assert shown[0, 1, 0] == 0.5 and shown[1, 1, 0] == 1.0 and shown[0, 0, 0] == pytest.approx(0.5 - 0.5 / 3)


def test_matrix_heatmap_annotates_every_cell_in_percent():
    matrix = {"a": {"a": 1.0, "b": 0.25}, "b": {"a": 0.5, "b": 0.125}}
    fig = plotting.matrix_heatmap(matrix, ["a", "b"], title="t")
    ax = fig.axes[0]
    assert sorted(text.get_text() for text in ax.texts) == ["100", "12", "25", "50"]
    assert ax.images[0].get_array()[0, 1] == pytest.approx(25.0)  # row = source, column = target
    _, axes = plt.subplots(1, 2)
    assert plotting.matrix_heatmap(matrix, ["a", "b"], ax=axes[1]) is axes[1].figure and len(axes[1].texts) == 4
    plt.close("all")


def test_seed_panels_draw_means_ranges_failures_and_one_key():
    rows = [{"lim": lim, "learning_failed": lim == 0.5,
             "seeds": [{"learned": {"match": m}, "shuffled": {"match": 0.5}} for m in (0.8, 0.9, 1.0)]}
            for lim in (0.1, 0.5)]
    series = [{"label": "vit", "kind": kind, "color": "C1",
               **dict(zip(("xs", "values", "failed"), plotting.seed_series(rows, kind), strict=True))}
              for kind in ("learned", "shuffled")]
    fig = plotting.seed_panels([{"title": "p", "xlabel": "lim", "ylabel": "%", "series": series}])
    ax = fig.axes[0]
    learned_line = ax.lines[0]
    assert list(learned_line.get_ydata()) == pytest.approx([90.0, 90.0]) and learned_line.get_linestyle() == "-"
    bars = ax.collections[0].get_segments()  # the error bar spans the lowest to the highest seed
    assert [segment[:, 1].tolist() for segment in bars] == [pytest.approx([80.0, 100.0])] * 2
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [0.5]  # the failed point only
    legend = fig.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == ["vit", "learned", "learned, shuffled"]
    assert all(text.get_fontsize() >= plotting.MIN_READABLE_POINTS for text in legend.get_texts())
    plt.close("all")


def test_table_words_with_hyphens_do_not_break():
    html = plotting.table([["zoo-vit-s", "a b"]], ["p-value", "mean |Δp|"]).to_html()
    assert '<span style="white-space: nowrap">zoo-vit-s</span>' in html
    assert 'mean <span style="white-space: nowrap">|Δp|</span>' in html  # breaks at the space only
    assert "<td>a b</td>" in html


def test_readable_makes_text_8pt_at_page_width():
    fig, axes = plt.subplots(1, 4, figsize=(14.4, 3))  # twice the page: shown at half size
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a line")
        ax.legend(fontsize=6)
        ax.set_title("title", fontsize=9)
    plotting.readable(fig)
    fig.canvas.draw()
    scale = 14.4 / plotting.PAGE_WIDTH_INCHES
    sizes = [text.get_fontsize() / scale for text in fig.findobj(matplotlib.text.Text) if text.get_text()]
    assert sizes and min(sizes) >= plotting.MIN_READABLE_POINTS - 1e-9
    ticks = [label.get_fontsize() / scale for ax in axes for label in ax.get_xticklabels()]
    assert min(ticks) >= plotting.MIN_READABLE_POINTS - 1e-9
    plt.close(fig)


def test_show_images_needs_one_title_and_flag_per_image():
    images = [torch.rand(3, 4, 4), torch.rand(3, 4, 4)]
    with pytest.raises(ValueError, match="titles has 1 entries for 2 images"):
        plotting.show_images(images, ["only one"])
    with pytest.raises(ValueError, match="symmetric has 3 entries for 2 images"):
        plotting.show_images(images, symmetric=[True, False, True])
    fig = plotting.show_images(images, ["a", "b"], ncols=3)  # a spare axis in the grid stays empty and off
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", ""] and not fig.axes[2].axison
    plt.close("all")


def test_matrix_heatmap_in_a_subfigure_returns_the_whole_figure():
    fig = plt.figure(figsize=(6, 3))
    left, right = fig.subfigures(1, 2)
    ax = right.subplots()
    assert plotting.matrix_heatmap({"a": {"a": 0.5}}, ["a"], ax=ax) is fig
    assert [text.get_text() for text in ax.texts] == ["50"]
    plt.close("all")


def test_nullspace_walks_and_plane_draw_the_given_maps():
    import numpy as np

    projection, function = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 1.0]])
    directions = [np.array([0.0, 1.0]), np.array([1.0, -2.0]) / np.sqrt(5)]
    fig = plotting.nullspace_walks(projection, function, directions, titles=["left", "right"])
    left, right = fig.axes[:2]
    assert [left.get_title(), right.get_title()] == ["left", "right"]
    points = [line.get_xydata()[0] for line in left.lines if line.get_marker() == "o"]
    assert len(points) == 5 and all(x == 1.0 for x, _ in points)  # moved along the x2 axis only
    assert [text.xy for text in left.texts][0] == pytest.approx((1.0, 0.0))  # every arrow ends on one output
    dashed = [line.get_xydata() for line in right.lines if line.get_linestyle() == "--"]
    for line in dashed:  # the lines run along the function's nullspace: the function is constant on them
        assert function @ line[0] == pytest.approx(function @ line[1])
    fig = plotting.nullspace_plane(np.array([[1.0, 1.0, 1.0]]), np.eye(3)[:, :2], title="plane")
    assert fig.axes[0].get_title() == "plane" and len(fig.axes[0].collections) == 4  # surface, row, 2 basis vectors
    plt.close("all")


def test_singular_value_loglog_and_time_bar_figures_draw_their_data():
    fig = plotting.singular_value_plot([10.0, 1.0, 0.1], tolerance=1e-3, title="s")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and list(ax.lines[0].get_ydata()) == [10.0, 1.0, 0.1]
    assert list(ax.lines[1].get_ydata()) == [1e-3, 1e-3]
    assert ax.get_legend().get_texts()[0].get_text() == "default tolerance"
    fig = plotting.loglog_curves([1, 10], {"a": ([1e-7, 1e-6], "o-"), "b": ([0.1, 5.0], "s-")}, xlabel="x", ylabel="y")
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in ax.lines] == [[1e-7, 1e-6], [0.1, 5.0]]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["a", "b"]
    fig = plotting.time_bars({"first": 10.0, "second": 130.0}, budget=120, budget_label="budget", xlabel="s")
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == [10.0, 130.0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["first", "second"] and ax.yaxis_inverted()
    assert list(ax.lines[0].get_xdata()) == [120, 120]
    plt.close("all")


def test_prediction_panels_title_each_kind_with_its_class_and_probability():
    images = {"source": torch.zeros(2, 3, 4, 4), "transformed": torch.ones(2, 3, 4, 4)}
    logits = {"source": torch.tensor([[0.0, 0.0], [0.0, 20.0]]), "transformed": torch.tensor([[3.0, 0.0], [0.0, 0.0]])}
    panels, titles = plotting.prediction_panels(images, logits, lambda index: f"class {index}")
    assert titles == ["source\nclass 0 50.0 %", "transformed\nclass 0 95.3 %",  # image by image, kind by kind
                      "source\nclass 1 100.0 %", "transformed\nclass 0 50.0 %"]
    assert [float(panel.mean()) for panel in panels] == [0.0, 1.0, 0.0, 1.0]


def test_disguise_tables_format_the_changes_and_checks():
    from nullspace_utils.fooling import ChannelChange, PredictionCheck

    l1 = ChannelChange(channel=0, l1=1234.4, l2=56.6, threshold=0.01, changed=0.304, mean_abs=1.234, low=-7.6,
                       high=12.2, out_of_box=0.456)
    l2 = ChannelChange(channel=0, l1=2000.0, l2=40.0, threshold=0.01, changed=1.0, mean_abs=0.5, low=-1.0, high=2.0,
                       out_of_box=0.2)
    table = plotting.channel_change_table({"L1": l1, "L2": l2})
    assert table.headers[3:] == ["pixels changed by > 0.01", "red outside [0, 1]", "red range"]
    assert table.rows == [["L1", "1234", "57", "30 %", "46 %", "[-8, 12]"], ["L2", "2000", "40", "100 %", "20 %",
                                                                             "[-1, 2]"]]
    checks = {"a": PredictionCheck(source_kept=1.0, target_taken=0.0, max_logit_change=3e-6),
              "b": PredictionCheck(source_kept=0.5, target_taken=0.5, max_logit_change=0.2)}
    table = plotting.disguise_table(checks, {"a": l1, "b": l2})
    assert table.headers[-1] == "mean |red − target red|"
    assert table.rows == [["a", "True", "True", "46 %", "[-8, 12]", "1.23"], ["b", "False", "False", "20 %", "[-1, 2]",
                                                                              "0.50"]]


def test_map_tables_give_the_verdict_and_the_correlations():
    from nullspace_utils.xai import MapAgreement

    fooled = MapAgreement(transformed={"max_relative_difference": 2e-5, "correlation": 1.0},
                          target={"max_relative_difference": 1.0, "correlation": 0.123},
                          transformed_correlations=[0.99999, 1.0], target_correlations=[0.1, 0.146])
    seen = MapAgreement(transformed={"max_relative_difference": 1.26, "correlation": 0.5},
                        target={"max_relative_difference": 1.0, "correlation": 0.2},
                        transformed_correlations=[0.4, 0.6], target_correlations=[0.2, 0.2])
    close = MapAgreement(transformed={"max_relative_difference": 0.3, "correlation": 0.98},
                         target={"max_relative_difference": 1.0, "correlation": 0.0},
                         transformed_correlations=[0.97, 0.99], target_correlations=[-0.1, 0.0])
    table = plotting.map_correlation_table({"fooled": fooled, "close": close, "seen": seen})
    assert table.rows == [["fooled", "identical", "above 0.9999", "0.10 to 0.15"],
                          ["close", "nearly identical", "0.97 to 0.99", "-0.10 to 0.00"],
                          ["seen", "differs", "0.40 to 0.60", "0.20 to 0.20"]]
    table = plotting.map_difference_table({"fooled": fooled, "seen": seen})
    assert table.headers[3] == "correlation (mean of 2 pairs)"
    assert table.rows == [["fooled", "identical", "< 1e-3", "1.000", "0.12"], ["seen", "differs", "1.3", "0.500", "0.20"]]


def test_reference_line_draws_inside_the_range_and_points_off_it_outside():
    fig, (inside, outside) = plt.subplots(1, 2)
    inside.plot([0, 1], [0.0, 10.0])
    plotting.reference_line(inside, 5.0, "ref: 5")
    assert [list(line.get_ydata()) for line in inside.lines[1:]] == [[5.0, 5.0]]  # one horizontal line at y
    assert [text.get_text() for text in inside.texts] == ["ref: 5"]
    outside.plot([0, 1], [1e-3, 1.0])
    outside.set_yscale("log")
    limits = outside.get_ylim()
    plotting.reference_line(outside, 1e-13, "exact", side="right")
    assert outside.get_ylim() == limits and len(outside.lines) == 1  # no line, the data's range kept
    label = outside.texts[0]
    assert label.get_text() == "↓ exact" and label.get_position()[1] < 0.5 and label.get_ha() == "right"
    assert label.get_fontsize() >= plotting.MIN_READABLE_POINTS
    plotting.reference_line(outside, 1e3, "above")
    assert outside.texts[1].get_text() == "↑ above" and outside.texts[1].get_position()[1] > 0.5
    with pytest.raises(ValueError, match="side"):
        plotting.reference_line(outside, 1.0, "x", side="middle")
    plt.close("all")


def _family_series(name: str, family: str, index: int) -> dict:
    rows = [{"lim": lim, "learning_failed": False, "seeds": [{"learned": {"match": 0.9}}]} for lim in (0.1, 0.5)]
    xs, values, failed = plotting.seed_series(rows, "learned")
    return {"label": name, "kind": "learned", "family": family, "color": plotting.family_style(family, index)["color"],
            "xs": xs, "values": values, "failed": failed}


def test_families_differ_in_marker_line_style_and_hue_not_colour_alone():
    vit, cnn = plotting.family_style("ViT", 0), plotting.family_style("CNN", 0)
    assert vit["marker"] != cnn["marker"] and vit["linestyle"] != cnn["linestyle"]
    assert not set(plotting.FAMILY_STYLES["ViT"]["colours"]) & set(plotting.FAMILY_STYLES["CNN"]["colours"])
    assert set(plotting.FAMILY_STYLES["ViT"]["colours"]) | set(plotting.FAMILY_STYLES["CNN"]["colours"]) <= set(
        plotting.PALETTE)  # every family colour is one of the colour-blind-safe palette's
    with pytest.raises(ValueError, match="unknown model family 'RNN'"):
        plotting.family_style("RNN", 0)
    fig = plotting.seed_panels([{"title": "p", "xlabel": "lim", "ylabel": "%",
                                 "series": [_family_series("vit", "ViT", 0), _family_series("cnn", "CNN", 0)]}])
    vit_line, cnn_line = (container.lines[0] for container in fig.axes[0].containers)  # the data lines
    assert vit_line.get_marker() == vit["marker"] and cnn_line.get_marker() == cnn["marker"]
    key = {text.get_text(): handle for text, handle in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles,
                                                           strict=True)}
    assert key["vit"].get_marker() == vit["marker"] and key["cnn"].get_marker() == cnn["marker"]  # the legend too
    plt.close("all")


def test_robustness_figure_gives_vits_and_cnns_their_family_styles():
    from nullspace_utils.studies import robustness

    rows = [{"lim": 0.5, "rms": 0.29, "learning_failed": False, "seeds": [{"learned": {"match": 0.9}}]}]
    vit = robustness._series(rows, "learned", "vit-a", ["vit-a", "cnn-a"], ["vit-a"])
    cnn = robustness._series(rows, "learned", "cnn-a", ["vit-a", "cnn-a"], ["vit-a"])
    assert (vit["family"], cnn["family"]) == ("ViT", "CNN")
    assert vit["color"] == plotting.family_style("ViT", 0)["color"] != cnn["color"]


def test_figures_draw_in_the_palette_and_leave_the_callers_settings():
    before = matplotlib.rcParams["axes.prop_cycle"]
    fig = plotting.line_panels([{"title": "t", "ylabel": "y", "lines": {"a": ([1, 2], [1, 2], "o-"),
                                                                         "b": ([1, 2], [2, 1], "s-")}}], xlabel="x")
    colours = [matplotlib.colors.to_hex(line.get_color()).upper() for line in fig.axes[0].lines]
    assert colours == [colour.upper() for colour in plotting.PALETTE[:2]]
    assert matplotlib.rcParams["axes.prop_cycle"] == before
    plt.close("all")


def _colour_bars(fig) -> list:
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def test_value_maps_have_colour_bars():
    change = torch.tensor([[[-2.0, 1.0], [0.5, 0.0]]])  # one channel: a map of values with both signs
    fig = plotting.show_images([change, torch.rand(3, 2, 2)], ["change", "image"], symmetric=[True, False])
    assert len(_colour_bars(fig)) == 1  # the value map has one, the picture none
    shown = fig.axes[0].images[0]
    assert shown.get_cmap().name == plotting.SIGNED_CMAP and shown.get_clim() == (-2.0, 2.0)  # 0 in the middle
    heat = torch.rand(4, 4)
    for images in (None, [[torch.rand(3, 4, 4)] * 2]):
        fig = plotting.show_maps([[heat, heat]], ["row"], ["a", "b"], images=images)
        bars = _colour_bars(fig)
        assert len(bars) == 1 and bars[0].get_xlabel()  # one labelled scale for the whole grid
    fig = plotting.nullspace_walks(torch.eye(2).numpy(), torch.ones(1, 2).numpy(),
                                   [torch.tensor([0.0, 1.0]).numpy(), torch.tensor([1.0, -1.0]).numpy() / 2 ** 0.5],
                                   titles=["a", "b"])
    assert len(_colour_bars(fig)) == 1  # the output y as colour
    plt.close("all")


def test_legends_stay_six_pixels_high_on_a_phone():
    rows = [{"lim": 0.1, "learning_failed": False, "seeds": [{"learned": {"match": 0.9}}]}]
    series = [{"label": "vit", "kind": "learned", "color": "C0",
               **dict(zip(("xs", "values", "failed"), plotting.seed_series(rows, "learned"), strict=True))}]
    for width in (3.6, 7.2, 14.4):  # one, two and four panels
        fig = plotting.seed_panels([{"title": "p", "xlabel": "x", "ylabel": "y", "series": series}] * int(width / 3.6),
                                   ncols=4, size=(3.6, 3.0))
        pixels_per_point = plotting.PHONE_WIDTH_PIXELS / (fig.get_figwidth() * 72)
        for text in fig.legends[0].get_texts():
            assert text.get_fontsize() * pixels_per_point >= plotting.MIN_PHONE_PIXELS - 1e-9
        plt.close(fig)


def _overlaps(labels: list) -> list[tuple[str, str]]:
    boxes = [(label.get_text(), label.get_window_extent()) for label in labels if label.get_text()]
    return [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:] if box.overlaps(other)]


def test_log_axis_tick_labels_do_not_overlap():
    # the benchmark's panel: seconds from 0.2 to 0.8 on a log axis, where matplotlib labels every minor tick
    fig = plotting.line_panels([{"title": "t", "ylabel": "%", "lines": {"a": ([0.21, 0.33, 0.55, 0.79],
                                                                            [0.3, 0.07, 0.02, 0.01], "o-")}}],
                               xlabel="seconds", logy=(True,), logx=(True,))
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [label for label in ax.get_xticklabels(minor=True) + ax.get_xticklabels() if label.get_visible()]
    assert len([label for label in labels if label.get_text()]) >= 2 and not _overlaps(labels)
    plt.close("all")


def test_time_bars_and_loglog_keep_their_legend_off_the_data():
    fig = plotting.time_bars({f"chapter {i}": 100.0 + i for i in range(9)}, budget=120, budget_label="budget: 2 min",
                             xlabel="s")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.y0 >= ax.get_window_extent().y1 - 1  # above the axes, over no bar
    assert not _overlaps(ax.get_yticklabels())
    fig = plotting.loglog_curves([1, 10], {"a": ([1.0, 10.0], "o-")}, xlabel="x", ylabel="y")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().y0 >= ax.get_window_extent().y1 - 1
    plt.close("all")


def test_reference_line_label_gets_a_band_of_its_own():
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.plot([0, 1], [90.0, 100.0])  # data up to the reference: the label must not sit on them
    plotting.reference_line(ax, 100.0, "exact: 100 %")
    fig.canvas.draw()
    label = ax.texts[0].get_window_extent()
    line_y = ax.transData.transform((0, 100.0))[1]
    assert label.y0 >= line_y and label.y1 <= ax.get_window_extent().y1  # over the line, inside the panel
    plt.close("all")


def test_nb_markers_carry_tags_and_alt_text_in_either_order():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("nb", Path(__file__).parents[1] / "scripts" / "nb.py")
    nb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nb)
    book = nb.parse('# %% tags=[hide-input] alt="ViTs keep predictions; CNNs lose them"\nx = 1\n'
                    '# %% alt="the red change" tags=[hide-input, remove-stderr]\ny = 2\n# %%\nz = 3\n')
    assert [cell.metadata.get("mystnb") for cell in book.cells] == [
        {"image": {"alt": "ViTs keep predictions; CNNs lose them"}}, {"image": {"alt": "the red change"}}, None]
    assert [cell.metadata.get("tags") for cell in book.cells] == [["hide-input"], ["hide-input", "remove-stderr"],
                                                                   None]
    with pytest.raises(ValueError, match="line 1: .* is not a cell marker"):
        nb.parse("# %% alt='single quotes'\nx = 1\n")


def test_line_panels_put_the_legend_beside_the_axes_when_asked():
    panels = [{"title": "t", "ylabel": "y", "lines": {"a": ([1, 2], [1, 2], "o-"), "b": ([1, 2], [2, 1], "s-")}}]
    fig = plotting.line_panels(panels, xlabel="x", ncols=1, legend="right")
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.x0 > axes_box.x1  # entirely right of the panel: no point hidden
    inside = plotting.line_panels(panels, xlabel="x", ncols=1).axes[0]
    inside.figure.canvas.draw()
    assert inside.get_legend().get_window_extent(renderer).x0 < inside.get_window_extent(renderer).x1
    with pytest.raises(ValueError, match="legend must be"):
        plotting.line_panels(panels, xlabel="x", legend="left")
    plt.close("all")
