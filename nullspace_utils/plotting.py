"""Figures and tables used across the chapters (matplotlib only)."""

from __future__ import annotations

import functools
import html
import math
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import matplotlib.text
import matplotlib.ticker
import numpy as np
import torch
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from nullspace_utils.fooling import ChannelChange, PredictionCheck
    from nullspace_utils.xai import MapAgreement

__all__ = ["PALETTE", "FAMILY_STYLES", "family_style", "readable", "smallest_points", "colour_bar_below", "to_display", "show_images", "class_grid", "Table", "table", "overlay", "show_maps",
           "line_panels", "NOISE_STYLES", "seed_series", "seed_panels", "format_range", "format_list", "matrix_heatmap", "change_strips", "roc_panels",
           "METHOD_STYLES", "method_panels", "finetune_diagram",
           "nullspace_walks", "nullspace_plane", "singular_value_plot", "loglog_curves", "time_bars",
           "prediction_panels", "channel_change_table", "disguise_table", "map_correlation_table",
           "map_difference_table", "reference_line"]


#: Width in inches at which the book's page shows a figure (its text column, about 690 px at 96 dpi), and
#: the smallest text size a reader should meet there.
PAGE_WIDTH_INCHES = 7.2
MIN_READABLE_POINTS = 8.0
#: A phone shows every figure at its own width (390 px less the margins), whatever the figure's size, and a
#: text there should stay at least this many pixels high.
PHONE_WIDTH_PIXELS = 370.0
MIN_PHONE_PIXELS = 6.0

#: The book's colours: Okabe and Ito's colour-blind-safe palette (Wong, Nature Methods 8, 441, 2011), blue,
#: orange, bluish green, vermillion, reddish purple, sky blue, black; its yellow is left out (too pale on white).
#: Every figure of this module draws its series in this order.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")

#: How each model family is drawn wherever ViTs and CNNs share a figure: its own hues (cool for ViTs, warm for
#: CNNs), its own marker and its own line style, so that the families differ without colour too.
FAMILY_STYLES: dict[str, dict[str, Any]] = {
    "ViT": {"colours": ("#0072B2", "#56B4E9", "#009E73"), "marker": "o", "linestyle": "-"},
    "CNN": {"colours": ("#D55E00", "#E69F00", "#CC79A7"), "marker": "s", "linestyle": "--"},
}

#: colour maps: a perceptual sequential one for magnitudes, a diverging one (blue, white, red) for signed values
VALUE_CMAP = "viridis"
SIGNED_CMAP = "RdBu_r"

_F = TypeVar("_F", bound=Callable[..., Any])


def _book_style(function: _F) -> _F:
    """Draw ``function``'s figure with :data:`PALETTE` as the colour cycle (only while it draws: the caller's
    matplotlib settings are left as they were)."""
    @functools.wraps(function)
    def styled(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context({"axes.prop_cycle": cycler(color=list(PALETTE))}):
            return function(*args, **kwargs)
    return styled  # type: ignore[return-value]


def family_style(family: str, index: int) -> dict[str, Any]:
    """Colour, marker and line style of the ``index``-th model (0, 1, ...) of ``family`` ("ViT" or "CNN"), from
    :data:`FAMILY_STYLES`: ``{"color", "marker", "linestyle"}``, keyword arguments of ``ax.plot``."""
    if family not in FAMILY_STYLES:
        raise ValueError(f"unknown model family {family!r}: use one of {sorted(FAMILY_STYLES)}.")
    style = FAMILY_STYLES[family]
    return {"color": style["colours"][index % len(style["colours"])], "marker": style["marker"],
            "linestyle": style["linestyle"]}


def smallest_points(width: float, *, page_width: float = PAGE_WIDTH_INCHES,
                    min_points: float = MIN_READABLE_POINTS) -> float:
    """The smallest font size, in the figure's own points, that a figure ``width`` inches wide may use: at least
    ``min_points`` once the figure is shrunk to ``page_width`` (the desktop page), and at least
    ``MIN_PHONE_PIXELS`` pixels once it is shown ``PHONE_WIDTH_PIXELS`` wide (a phone)."""
    desktop = min_points * max(1.0, width / page_width)
    phone = MIN_PHONE_PIXELS * 72.0 * width / PHONE_WIDTH_PIXELS
    return max(desktop, phone)


def readable(fig: Figure, *, page_width: float = PAGE_WIDTH_INCHES, min_points: float = MIN_READABLE_POINTS) -> Figure:
    """Enlarge every text of ``fig`` (titles, labels, ticks, legends, annotations) that would show smaller
    than ``min_points`` once the figure is scaled to ``page_width`` inches, or smaller than
    ``MIN_PHONE_PIXELS`` on a phone (:func:`smallest_points`), then lay it out again.

    A figure wider than the page is shrunk to fit it, and its fonts with it: a 7 pt legend in a 14-inch
    figure reads as 3.5 pt. Every figure of this module goes through here before it is returned; call it
    on a figure you assemble yourself (several panels drawn with ``ax=``). A log axis gets plain tick labels
    (no crowded minor labels such as "2x10^-1 3x10^-1").
    """
    smallest = smallest_points(fig.get_figwidth(), page_width=page_width, min_points=min_points)
    for ax in fig.axes:
        _tidy_log_axes(ax)
    for ax in fig.axes:  # tick labels through tick_params, so that ticks made later inherit the size
        x_labels, y_labels = ax.xaxis.get_ticklabels(), ax.yaxis.get_ticklabels()
        if x_labels and float(x_labels[0].get_fontsize()) < smallest:
            ax.tick_params(axis="x", labelsize=smallest)
        if y_labels and float(y_labels[0].get_fontsize()) < smallest:
            ax.tick_params(axis="y", labelsize=smallest)
    for text in fig.findobj(matplotlib.text.Text):
        if isinstance(text, matplotlib.text.Text) and text.get_text() and float(text.get_fontsize()) < smallest:
            text.set_fontsize(smallest)
    if fig.get_layout_engine() is None:  # a figure laid out by its maker (constrained layout, 3-D) keeps it
        fig.tight_layout()
    return fig


def _log_label(value: float, plain: bool) -> str:
    """A log axis's tick label: plain digits ("0.02", "300") when ``plain``, else a power of ten ("$10^{5}$")."""
    if value <= 0:
        return ""
    if plain:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0 ** exponent
    return f"$10^{{{exponent}}}$" if abs(mantissa - 1) < 1e-6 else f"${mantissa:g}\\times10^{{{exponent}}}$"


def _tidy_log_axes(ax: Axes) -> None:
    """On ``ax``'s log axes: major ticks labelled by :func:`_log_label` (plain digits when the axis lies within
    0.001 to 10000, else powers of ten); minor ticks labelled (at 2 and 5 only)
    only when the axis spans less than two decades, where too few major ticks would be left to read it."""
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or min(limits) <= 0:
            continue
        plain = 1e-3 <= min(limits) and max(limits) <= 1e4  # else every label a power of ten, never a mix
        label = matplotlib.ticker.FuncFormatter(lambda value, _, plain=plain: _log_label(value, plain))
        if isinstance(axis.get_major_formatter(), matplotlib.ticker.LogFormatter):  # not one its maker chose
            axis.set_major_formatter(label)
        if not isinstance(axis.get_minor_formatter(), matplotlib.ticker.LogFormatter):
            continue
        if abs(np.log10(max(limits) / min(limits))) < 2:
            axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
            axis.set_minor_formatter(label)
        else:
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def to_display(image: torch.Tensor, *, symmetric: bool = False) -> np.ndarray:
    """A (C, H, W) tensor as an (H, W, C) array in [0, 1] for ``imshow``.

    Images in [0, 1] are shown as they are. With ``symmetric=True`` (for noise,
    which has both signs) values are mapped linearly so that 0 is mid-grey and
    the largest absolute value reaches black or white.
    """
    array = image.detach().cpu().to(torch.float64)
    if symmetric:
        peak = float(array.abs().max()) or 1.0
        array = 0.5 + 0.5 * array / peak
    return array.clamp(0, 1).permute(1, 2, 0).numpy()


@_book_style
def show_images(
    images: Sequence[torch.Tensor] | torch.Tensor,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    symmetric: Sequence[bool] | bool = False,
    size: float = 2.0,
    suptitle: str | None = None,
) -> Figure:
    """Show a row (or grid) of (C, H, W) images with titles; returns the figure.

    A one-channel image (1, H, W) is a map of values (e.g. the change of one colour channel): it is drawn with
    a colour map and a colour bar in its own units, diverging around 0 (blue, white, red) when ``symmetric``.
    """
    images = list(images)
    ncols = ncols or len(images)
    nrows = int(np.ceil(len(images) / ncols))
    flags = [symmetric] * len(images) if isinstance(symmetric, bool) else list(symmetric)
    for name, values in (("titles", titles), ("symmetric", flags)):
        if values is not None and len(values) != len(images):
            raise ValueError(f"{name} has {len(values)} entries for {len(images)} images: give one per image.")
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images, strict=False)):  # a grid may have spare axes
        if image.shape[0] == 1:  # a value map: colour with a scale, not a picture
            channel = image[0].detach().cpu().to(torch.float64).numpy()
            peak = float(np.abs(channel).max()) or 1.0
            drawn = ax.imshow(channel, interpolation="nearest", **(
                {"cmap": SIGNED_CMAP, "vmin": -peak, "vmax": peak} if flags[i] else {"cmap": VALUE_CMAP}))
            fig.colorbar(drawn, ax=ax, fraction=0.046, pad=0.04)
        else:
            ax.imshow(to_display(image, symmetric=flags[i]), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return readable(fig)


@_book_style
def class_grid(dataset: Any, class_names: Sequence[str], *, per_class: int = 4, size: float = 1.3) -> Figure:
    """A grid with one column per class and ``per_class`` examples in each, from a dataset of (image, label)."""
    chosen: dict[int, list[torch.Tensor]] = {c: [] for c in range(len(class_names))}
    for index in range(len(dataset)):
        image, label = dataset[index]
        if len(chosen[label]) < per_class:
            chosen[label].append(image)
        if all(len(v) == per_class for v in chosen.values()):
            break
    fig, axes = plt.subplots(per_class, len(class_names), figsize=(size * len(class_names), size * per_class))
    for column, name in enumerate(class_names):
        for row in range(per_class):
            ax = axes[row, column]
            ax.imshow(to_display(chosen[column][row]))
            ax.axis("off")
        axes[0, column].set_title(name, fontsize=9)
    return readable(fig)


_NUMBER = re.compile(r"^[<>≤≥~]?\s*[-+−]?\d[\d.,]*(e[-+]?\d+)?(\s*(%|s|ms|dB|x|M|days))?(\s*\(.*\))?$")
_INLINE = re.compile(r"\*\*(?P<bold>[^*]+)\*\*|`(?P<code>[^`]+)`")


def _looks_numeric(cell: str) -> bool:
    """A cell that a reader compares by magnitude: right-aligned (``12.5 %``, ``3.2e-03``, ``16/16``)."""
    return bool(_NUMBER.match(cell)) or bool(re.match(r"^\d[\d.]*\s*/\s*\d", cell))


def _plain_html(text: str) -> str:
    """Escaped text in which a word with a hyphen, slash or bar (``zoo-vit-s``, ``ViT-S/32``, ``|Δp|``) never
    breaks across lines: a table squeezed to the page wraps at spaces only."""
    return re.sub(r"\S*[-/|]\S*", lambda word: f'<span style="white-space: nowrap">{word.group()}</span>',
                  html.escape(text))


def _inline_html(cell: str) -> str:
    """HTML for a cell: escaped, with Markdown's ``**bold**`` and ```code``` kept as <strong> and <code>."""
    out, last = [], 0
    for match in _INLINE.finditer(cell):
        out.append(_plain_html(cell[last:match.start()]))
        if match["bold"] is not None:
            out.append(f"<strong>{html.escape(match['bold'])}</strong>")
        else:  # a model name such as zoo-vit-s must not break at its hyphens
            out.append(f'<code style="white-space: nowrap">{html.escape(match["code"])}</code>')
        last = match.end()
    out.append(_plain_html(cell[last:]))
    return "".join(out)


class Table:
    """A table of results that renders as a real table everywhere a notebook is read.

    Jupyter, Colab and the book's site show its HTML (numbers right-aligned, in tabular figures); a
    terminal, and nbval's comparison of outputs, see an aligned plain-text table; :meth:`to_markdown`
    gives a pipe table (with ``|`` inside cells escaped) for pages written in Markdown. Cells are
    formatted by the caller (``f"{x:.1f} %"``): the table never rounds, so what it shows is what the
    data say. ``**bold**`` and ```code``` inside a cell are kept.
    """

    def __init__(self, rows: Sequence[Sequence[object]], headers: Sequence[str], *, caption: str | None = None):
        self.headers = [str(header) for header in headers]
        self.rows = [[str(cell) for cell in row] for row in rows]
        for index, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table row {index} has {len(row)} cells but there are {len(self.headers)} "
                                 f"headers {self.headers}: give every row one cell per header.")
        self.caption = caption
        self.numeric = [bool(column) and all(_looks_numeric(cell) or cell in ("—", "-", "") for cell in column)
                        and any(_looks_numeric(cell) for cell in column)
                        for column in zip(*self.rows, strict=True)] if self.rows else [False] * len(self.headers)

    def to_markdown(self) -> str:
        """A pipe table; numeric columns are right-aligned (``---:``)."""
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        rule = "|" + "|".join("---:" if numeric else "---" for numeric in self.numeric) + "|"
        return "\n".join([line(self.headers), rule, *map(line, self.rows)])

    def to_html(self) -> str:
        """An HTML ``<table>``: a header row, numeric columns right-aligned, an optional caption."""
        def cell(tag: str, text: str, numeric: bool) -> str:
            # numbers: right-aligned in figures of equal width; a value (not a header) never breaks inside
            if not numeric:
                return f"<{tag}>{_inline_html(text)}</{tag}>"
            style = "text-align: right; font-variant-numeric: tabular-nums"
            if tag == "td":
                style += "; white-space: nowrap"
            return f'<{tag} style="{style}">{_inline_html(text)}</{tag}>'

        # the wrapper scrolls sideways, on a narrow screen, instead of cutting the table off
        parts = ['<div style="overflow-x: auto"><table class="table nullspace-table">']
        if self.caption:
            parts.append(f'<caption style="caption-side: top">{_inline_html(self.caption)}</caption>')
        parts.append("<thead><tr>" + "".join(cell("th", h, n) for h, n in zip(self.headers, self.numeric, strict=True))
                     + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(cell("td", c, n) for c, n in zip(row, self.numeric, strict=True)) + "</tr>"
                  for row in self.rows]
        parts.append("</tbody></table></div>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        widths = [max(len(text) for text in column) for column in zip(self.headers, *self.rows, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(text.rjust(width) if numeric else text.ljust(width)
                             for text, width, numeric in zip(cells, widths, self.numeric, strict=True)).rstrip()

        lines = [self.caption] if self.caption else []
        return "\n".join([*lines, line(self.headers), "  ".join("-" * width for width in widths),
                          *map(line, self.rows)])


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], *, caption: str | None = None) -> Table:
    """A :class:`Table` of ``rows`` under ``headers``; the last expression of a cell, or ``display(table(...))``."""
    return Table(rows, headers, caption=caption)


#: colour map of explanation maps (perceptually uniform, readable without colour vision: dark is low, light high)
MAP_CMAP = "inferno"


def overlay(image: torch.Tensor, heatmap: torch.Tensor, *, alpha: float = 0.55, cmap: str = MAP_CMAP) -> np.ndarray:
    """An explanation map (H, W) drawn over a (C, H, W) image, as an (H, W, 3) array for ``imshow``.

    The map is scaled to [0, 1] by its own minimum and maximum (maps of different methods have
    different units), coloured with ``cmap`` (a perceptually uniform map by default, ``MAP_CMAP``) and
    blended with the image (values outside [0, 1] clipped for display only).
    """
    values = heatmap.detach().cpu().to(torch.float64)
    span = float(values.max() - values.min()) or 1.0
    coloured = plt.get_cmap(cmap)(((values - values.min()) / span).numpy())[..., :3]
    return (1 - alpha) * to_display(image) + alpha * coloured


@_book_style
def show_maps(maps: Sequence[Sequence[torch.Tensor]], row_names: Sequence[str], column_names: Sequence[str], *,
              images: Sequence[Sequence[torch.Tensor]] | None = None, size: float = 1.7) -> Figure:
    """A grid of explanation maps ``maps[row][column]``, each (H, W). Returns the figure.

    With ``images`` (same grid shape) each map is overlaid on its image (:func:`overlay`); without, the
    map's absolute value is shown on its own, scaled to its own maximum (maps of different methods have
    different units; two equal maps give two equal pictures). One colour bar under the grid gives the scale.
    """
    rows, columns = len(row_names), len(column_names)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for row in range(rows):
        for column in range(columns):
            ax = axes[row, column]
            heatmap = maps[row][column]
            if images is not None:
                ax.imshow(overlay(images[row][column], heatmap))
            else:
                values = heatmap.detach().abs().cpu().to(torch.float64).numpy()
                ax.imshow(values / (values.max() or 1.0), cmap=MAP_CMAP, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(column_names[column], fontsize=8)
            if column == 0:
                ax.set_ylabel(row_names[row], fontsize=9)
    readable(fig)
    label = ("map value, scaled to its own range (0: lowest, 1: highest)" if images is not None
             else "|map value| / the map's largest")
    return colour_bar_below(fig, matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), MAP_CMAP), label)


def colour_bar_below(fig: Figure, mappable: Any, label: str) -> Figure:
    """Add one horizontal colour bar for all of ``fig``'s panels under them (after :func:`readable`, which lays the
    panels out), with ``label`` under it, its text as large as :func:`smallest_points` asks. Returns ``fig``."""
    width, height = fig.get_size_inches()
    size = smallest_points(width)
    bar_height, gap = 0.12, 0.1 + size / 72  # inches: the bar, and the space above it
    bar = fig.add_axes((0.2, -(gap + bar_height) / height, 0.6, bar_height / height))
    colour_bar = fig.colorbar(mappable, cax=bar, orientation="horizontal")
    colour_bar.set_label(label, fontsize=size)
    colour_bar.ax.tick_params(labelsize=size)
    return fig


def _panel_grid(count: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A grid of ``count`` panels, at most ``ncols`` a row, each ``size`` inches; spare cells are hidden."""
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, axes


def _legend_below(fig: Figure, handles: Sequence[Any], names: Sequence[str]) -> Figure:
    """Make ``fig`` readable, then put one legend for all its panels under them, outside the axes (the notebook's
    inline figures are cropped to what is drawn)."""
    readable(fig)
    size_points = smallest_points(fig.get_figwidth())
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(names)),
               fontsize=size_points, frameon=False)
    return fig


@_book_style
def line_panels(panels: Sequence[dict[str, Any]], *, xlabel: str, size: tuple[float, float] = (3.6, 3.0),
                ncols: int = 2, logy: Sequence[bool] = (), logx: Sequence[bool] = (), legend: str = "inside") -> Figure:
    """Line plots sharing an x axis, ``ncols`` panels a row (two at the page's width by default); ``logy[i]`` and
    ``logx[i]`` put panel ``i``'s axes on a log scale (set them here rather than afterwards, so that the log
    axes get :func:`readable`'s tidy labels). ``legend="right"`` puts each panel's legend beside it, outside the
    axes, where it cannot hide points (give the panels one column, ``ncols=1``); ``"inside"``: matplotlib's best
    place in the axes.

    Each panel is ``{"title": str, "ylabel": str, "lines": {label: (xs, ys, style)}}`` where ``style`` is a
    matplotlib format string such as ``"o-"``; ``size`` is one panel's. Returns the figure.
    """
    if legend not in ("inside", "right"):
        raise ValueError(f"legend must be 'inside' or 'right', got {legend!r}.")
    fig, axes = _panel_grid(len(panels), ncols, size)
    for index, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):  # the spare axes are off
        for label, (xs, ys, style) in panel["lines"].items():
            ax.plot(xs, ys, style, label=label, markersize=4)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel["ylabel"])
        if index < len(logy) and logy[index]:
            ax.set_yscale("log")
        if index < len(logx) and logx[index]:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if legend == "right":
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        else:
            ax.legend(fontsize=7)
    return readable(fig)


#: line style and marker of each kind of noise in the seed figures (one key for all of them)
NOISE_STYLES: dict[str, tuple[Any, str]] = {"learned": ("-", "o"), "shuffled": (":", "x"), "uniform": ("--", "s"),
                                            "projected": ("-.", "^"), "row_removed": ((0, (1, 1)), "v")}
NOISE_NAMES = {"learned": "learned", "shuffled": "learned, shuffled", "uniform": "uniform (its start)",
               "projected": "start projected onto null(W_pix)", "row_removed": "learned, row-space part removed"}


def seed_series(rows: Sequence[Mapping[str, Any]], kind: str, *, field: str = "match", scale: float = 100.0,
                x: Any = "lim") -> tuple[list[float], list[list[float]], list[bool]]:
    """From multi-seed sweep rows (:func:`nullspace_utils.studies.noise_sweep.noise_point`): the x of each row (``x``: a
    row key, or a function of the row), the seeds' values of ``row[seed][kind][field]`` times ``scale``, and
    whether the row's learning failed."""
    xs = [x(row) if callable(x) else row[x] for row in rows]
    values = [[scale * entry[kind][field] for entry in row["seeds"]] for row in rows]
    return xs, values, [bool(row["learning_failed"]) for row in rows]


def format_range(values: Sequence[float], *, scale: float = 100.0, digits: int = 1, collapse: bool = True,
                 outward: bool = False, separator: str = "-") -> str:
    """The range of ``values`` (over seeds) times ``scale`` as text, "97.2-99.0", or one number when both ends
    print alike (``collapse=False``: both ends always, "99.0-99.0", as the verdict sentences print them).

    ``outward=True`` rounds the low end down and the high end up, so the printed range holds every value: for
    values whose last digits vary between CPUs, a value just above or below a rounding midpoint (0.99498 on one,
    0.99503 on another) then prints alike. ``separator`` goes between the two ends.

    >>> format_range([0.972, 0.99]), format_range([0.5, 0.5]), format_range([0.5, 0.5], collapse=False)
    ('97.2-99.0', '50.0', '50.0-50.0')
    >>> format_range([0.98054, 0.99498], scale=1, digits=2, outward=True, separator=" to ")
    '0.98 to 1.00'
    """
    low, high = scale * min(values), scale * max(values)
    if outward:  # (the 1e-9 keeps a value that is already round, 0.29 stored as 0.28999..., where it is)
        step = 10.0**digits
        low, high = math.floor(low * step + 1e-9) / step, math.ceil(high * step - 1e-9) / step
    shown_low, shown_high = f"{low:.{digits}f}", f"{high:.{digits}f}"
    return shown_low if shown_low == shown_high and collapse else f"{shown_low}{separator}{shown_high}"


def format_list(values: Sequence[Any] | Mapping[Any, Any], *, last: str = "and") -> str:
    """``values`` as a reader writes a list, "60, 120 and 160" (numbers with ``:g``), or a mapping's items as
    "all 0.0001, head 0.001", for prose lines instead of a Python repr.

    >>> format_list([60, 120, 160]), format_list([1e4]), format_list({"0": 2934, "8": 6}), format_list([])
    ('60, 120 and 160', '10000', '0: 2934, 8: 6', 'none')
    """
    def shown(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    if isinstance(values, Mapping):
        return ", ".join(f"{key} {shown(value)}" if not str(key).isdigit() else f"{key}: {shown(value)}"
                         for key, value in values.items()) or "none"
    words = [shown(value) for value in values]
    if len(words) < 2:
        return words[0] if words else "none"
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


@_book_style
def seed_panels(panels: Sequence[dict[str, Any]], *, size: tuple[float, float] = (3.6, 3.0), ncols: int = 2,
                legend: str = "below") -> Figure:
    """Curves over seeds: the mean as a line, the seeds' range (min to max) as error bars.

    Each panel is ``{"title", "xlabel", "ylabel", "logx": bool, "xticks" (optional), "series": [{"label", "kind", "color", "xs",
    "values", "failed", "family" (optional)}]}`` (``xs``, ``values``, ``failed`` as :func:`seed_series` gives them);
    ``kind`` picks the line style and marker of :data:`NOISE_STYLES`. A series with a ``family`` ("ViT" or "CNN")
    takes its marker from :data:`FAMILY_STYLES` instead (give it :func:`family_style`'s colour), so that ViTs and
    CNNs differ in marker and hue, while the line style still says the kind. A learned noise's point whose
    learning failed is drawn hollow. One legend for the whole figure keys the labels (colour, and marker where
    there are families) and the kinds (line style), under the panels."""
    fig, axes = _panel_grid(len(panels), ncols, size)
    labels: dict[str, tuple[str, str | None]] = {}
    kinds: list[str] = []
    families = any(series.get("family") for panel in panels for series in panel["series"])
    for ax, panel in zip(axes.flat, panels, strict=False):
        for series in panel["series"]:
            linestyle, marker = NOISE_STYLES[series["kind"]]
            family = series.get("family")
            if family:
                marker = family_style(family, 0)["marker"]
            means = [float(np.mean(values)) for values in series["values"]]
            low = [mean - min(values) for mean, values in zip(means, series["values"], strict=True)]
            high = [max(values) - mean for mean, values in zip(means, series["values"], strict=True)]
            ax.errorbar(series["xs"], means, yerr=[low, high], color=series["color"], linestyle=linestyle,
                        marker=marker, markersize=4, capsize=2, linewidth=1.2)
            failed = [i for i, flag in enumerate(series["failed"]) if flag and series["kind"] == "learned"]
            if failed:
                ax.plot([series["xs"][i] for i in failed], [means[i] for i in failed], marker, markersize=8,
                        markerfacecolor="white", color=series["color"], linestyle="none")
            labels.setdefault(series["label"], (series["color"], marker if family else None))
            if series["kind"] not in kinds:
                kinds.append(series["kind"])
        if panel.get("logx"):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:.2g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # unlabelled: they would overlap
        if panel.get("xticks"):
            ax.set_xticks(panel["xticks"])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
    handles = [matplotlib.lines.Line2D([], [], color=color, linewidth=3) if marker is None else
               matplotlib.lines.Line2D([], [], color=color, linewidth=2, marker=marker, markersize=6)
               for color, marker in labels.values()]
    handles += [matplotlib.lines.Line2D([], [], color="black", linestyle=NOISE_STYLES[kind][0],
                                        marker=None if families else NOISE_STYLES[kind][1], markersize=4)
                for kind in kinds]
    names = list(labels) + [NOISE_NAMES[kind] for kind in kinds]
    return _legend_below(fig, handles, names)


@_book_style
def matrix_heatmap(matrix: dict[str, dict[str, float]], names: Sequence[str], *, title: str = "",
                   size: float = 5.2, ax: Axes | None = None) -> Figure:
    """A source x target table of fractions (``matrix[source][target]``) as an annotated heatmap in %.

    Draws on ``ax`` when given (to put several matrices side by side), else on a new figure.
    """
    sources = [name for name in names if name in matrix]
    values = np.array([[100 * matrix[source][target] for target in names] for source in sources])
    if ax is None:
        _, ax = plt.subplots(figsize=(size * 1.25, size * len(sources) / len(names) + 0.8))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
    for i in range(len(sources)):
        for j in range(len(names)):
            ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center",
                    color="black" if values[i, j] > 60 else "white", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(sources)), sources, fontsize=8)
    ax.set_xlabel("model receiving the noise")
    ax.set_ylabel("noise learned for")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(image, ax=ax, fraction=0.04, label="%")
    return readable(ax.figure.figure)  # the whole figure, also when ``ax`` lies in a subfigure


@_book_style
def change_strips(changes: dict[str, Sequence[float]], *, tol: float, size: tuple[float, float] = (7.2, 3.4)) -> Figure:
    """Per-probe changes of each suspect (fingerprint chapter) as dots on a log axis, one row per suspect,
    with the tolerance ``tol`` as a dashed line: dots left of it are probes the suspect kept."""
    fig, ax = plt.subplots(figsize=size)
    floor = 1e-9  # exact zeros drawn at the floor
    for row, values in enumerate(changes.values()):
        values = np.maximum(np.asarray(values, dtype=float), floor)
        jitter = np.random.default_rng(row).uniform(-0.15, 0.15, len(values))
        ax.scatter(values, row + jitter, s=12, alpha=0.8)
    ax.axvline(tol, color="black", linestyle="--", linewidth=1, label=f"tolerance {tol:g}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(changes)), list(changes), fontsize=8)
    ax.set_xlabel("relative change of the output under the probe's noise")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper right")
    return readable(fig)


@_book_style
def roc_panels(curves: dict[str, dict[str, tuple[Sequence[float], Sequence[float], float]]],
               size: tuple[float, float] = (2.4, 2.6)) -> Figure:
    """ROC curves, one panel per key of ``curves`` (an access mode), one line per label inside:
    ``curves[panel][label] = (fpr, tpr, auc)``."""
    fig, axes = plt.subplots(1, len(curves), figsize=(size[0] * len(curves), size[1]), squeeze=False)
    for ax, (title, lines) in zip(axes[0], curves.items(), strict=True):
        for label, (fpr, tpr, auc) in lines.items():
            ax.step(fpr, tpr, where="post", label=f"{label} (AUC {auc:.2f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return readable(fig)


#: colour, line style and marker of each group of the fine-tuning chapter (``studies.finetune.group_runs``' labels)
METHOD_STYLES: dict[str, tuple[str, Any, str]] = {
    "untuned": ("black", ":", "D"), "plain": ("0.45", "-", "o"),
    "nullspace lim 2": (PALETTE[0], "--", "s"), "nullspace lim 4": (PALETTE[0], "-", "s"),
    "gaussian lim 2": (PALETTE[1], "--", "^"), "gaussian lim 4": (PALETTE[1], "-", "^")}


@_book_style
def method_panels(panels: Sequence[dict[str, Any]], *, size: tuple[float, float] = (3.6, 3.0),
                  ncols: int = 2) -> Figure:
    """Accuracy curves of several fine-tuning methods over seeds: the mean as a line, the seeds' range as error bars.

    Each panel is ``{"title", "xlabel", "ylabel", "xs", "xticklabels" (optional), "series": {group: values}}``
    where ``values[i]`` lists the seeds' scores at ``xs[i]`` and ``group`` is a key of :data:`METHOD_STYLES`.
    One legend under the panels."""
    fig, axes = _panel_grid(len(panels), ncols, size)
    shown: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, panels, strict=False):
        for group, values in panel["series"].items():
            color, linestyle, marker = METHOD_STYLES[group]
            means = np.array([np.mean(seeds) for seeds in values])
            low = means - np.array([min(seeds) for seeds in values])
            high = np.array([max(seeds) for seeds in values]) - means
            shown[group] = ax.errorbar(panel["xs"], means, yerr=[low, high], color=color, linestyle=linestyle,
                                       marker=marker, markersize=4, capsize=2, linewidth=1.2)
        if panel.get("xticklabels"):
            ax.set_xticks(panel["xs"], panel["xticklabels"])
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
    return _legend_below(fig, list(shown.values()), list(shown))


@_book_style
def finetune_diagram() -> Figure:
    """The authors' nullspace-augmented fine-tuning (CPAL 2025) as a picture: once per round a noise is learned for
    the current model (eq. 6), then every batch of the round is classified clean and with that noise on its patch
    tokens, and the model is trained on both losses."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_INCHES, 2.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 3.2)
    ax.axis("off")
    boxes = [
        (0.1, 1.6, 2.9, "start of a round:\nv ~ Uniform(-lim, lim)\n(one value per token entry)"),
        (3.5, 1.6, 2.9, "learn v for the current\nmodel (eq. 6): logits of\ntokens + v ≈ logits of tokens"),
        (6.9, 1.6, 3.0, "every batch of the round:\nCE(f(x), y) +\nCE(f(x; tokens + v), y)"),
    ]
    for x, y, width, text in boxes:
        ax.add_patch(matplotlib.patches.FancyBboxPatch((x, y), width, 1.3, boxstyle="round,pad=0.05",
                                                       facecolor="#eef3fb", edgecolor="#3b6fb6"))
        ax.text(x + width / 2, y + 0.65, text, ha="center", va="center", fontsize=9)
    arrow = {"arrowstyle": "->", "color": "#3b6fb6", "linewidth": 1.5}
    ax.annotate("", xy=(3.45, 2.25), xytext=(3.05, 2.25), arrowprops=arrow)
    ax.annotate("", xy=(6.85, 2.25), xytext=(6.45, 2.25), arrowprops=arrow)
    ax.annotate("", xy=(1.55, 1.55), xytext=(8.4, 1.55),
                arrowprops={**arrow, "connectionstyle": "bar,fraction=-0.12"})
    ax.text(5.0, 0.45, "AdamW steps on the model's weights; after steps / rounds steps, a new round:\n"
            "the noise is learned again for the model as it is now (v stays fixed within a round)",
            ha="center", va="center", fontsize=9)
    return readable(fig)


@_book_style
def nullspace_walks(projection: np.ndarray, function: np.ndarray, directions: Sequence[np.ndarray], *,
                    titles: Sequence[str], start: Sequence[float] = (1.0, 0.5)) -> Figure:
    """The paper's Fig. 1 (left two panels), for a 2 x 2 ``projection`` and a 1 x 2 linear ``function``, each with a
    unit vector of its nullspace in ``directions``. Left: points ``start + t v`` moved along the projection's
    nullspace all land on one output. Right: the function's value as colour, with lines along its nullspace, on
    which the colour never changes. ``titles``: one per panel."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    x = np.asarray(start, dtype=float)
    for t in [-1.5, -0.75, 0.0, 0.75, 1.5]:
        moved = x + t * directions[0]
        left.plot(*moved, "o", color=PALETTE[0])
        left.annotate("", xy=projection @ moved, xytext=moved, arrowprops=dict(arrowstyle="->", color="0.6"))
    left.plot(*(projection @ x), "s", color=PALETTE[3], markersize=9, label="every output: the same point")
    left.axhline(0, color="k", lw=0.8)
    left.set_title(titles[0])
    left.legend(loc="lower right")  # clear of the points, which lie on a vertical line
    left.set_aspect("equal")
    left.set_xlim(-0.5, 2.5)
    grid = np.linspace(-2, 2, 201)
    g1, g2 = np.meshgrid(grid, grid)
    filled = right.contourf(g1, g2, function[0, 0] * g1 + function[0, 1] * g2, levels=21, cmap=SIGNED_CMAP)
    fig.colorbar(filled, ax=right, fraction=0.046, pad=0.04, label="output $y$")
    for point in [np.array([-1.0, 0.0]), np.array([0.5, 0.5])]:
        line = point[:, None] + directions[1][:, None] * np.linspace(-2, 2, 2)
        right.plot(*line, "k--", lw=1.2)
        right.plot(*point, "ko")
    right.set_title(titles[1])
    right.set_xlim(-2, 2)
    right.set_ylim(-2, 2)
    right.set_aspect("equal")
    return readable(fig)


@_book_style
def nullspace_plane(row: np.ndarray, plane: np.ndarray, *, title: str, extent: float = 1.5) -> Figure:
    """The nullspace of a 1 x 3 ``row`` as a plane in 3-D: a patch of the span of the two columns of ``plane`` (its
    orthonormal basis), those two vectors in black and the row itself in red (vermillion), orthogonal to the plane.

    A 3-D figure keeps matplotlib's own layout (:func:`readable` would re-lay it out); its text is already large."""
    s, t = np.meshgrid(np.linspace(-extent, extent, 10), np.linspace(-extent, extent, 10))
    points = plane[:, :1, None] * s + plane[:, 1:, None] * t  # (3, 10, 10)
    fig = plt.figure(figsize=(5.5, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(*points, alpha=0.35, color=PALETTE[0])
    ax.quiver(0, 0, 0, *row[0], color=PALETTE[3], length=1.2, normalize=True)
    for k in range(plane.shape[1]):
        ax.quiver(0, 0, 0, *plane[:, k], color="k")
    ax.set_title(title)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_zlabel("$x_3$")
    return fig


@_book_style
def singular_value_plot(sigma: Sequence[float], *, tolerance: float, title: str,
                        tolerance_label: str = "default tolerance") -> Figure:
    """Singular values ``sigma`` (largest first) against their index on a log scale, with the ``tolerance`` below
    which a singular value counts as zero (:func:`nullspace_utils.linalg.rank`) as a dashed red line."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.semilogy(np.arange(1, len(sigma) + 1), sigma, ".")
    ax.axhline(tolerance, color=PALETTE[3], ls="--", label=tolerance_label)
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.set_title(title)
    ax.legend()
    return readable(fig)


@_book_style
def loglog_curves(xs: Sequence[float], curves: dict[str, tuple[Sequence[float], str]], *, xlabel: str,
                  ylabel: str, size: tuple[float, float] = (6.5, 3.6)) -> Figure:
    """Curves over the same ``xs`` on log-log axes, one per ``label: (ys, style)`` of ``curves`` (``style`` a
    matplotlib format string such as ``"o-"``), with a light grid and a legend above the axes (never on the data)."""
    fig, ax = plt.subplots(figsize=size)
    for label, (ys, style) in curves.items():
        ax.loglog(xs, ys, style, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(curves)), frameon=False)  # over the axes
    ax.grid(alpha=0.3)
    return readable(fig)


@_book_style
def time_bars(seconds: dict[str, float], *, budget: float, budget_label: str, xlabel: str,
              size: tuple[float, float] | None = None) -> Figure:
    """Horizontal bars of ``seconds`` per name, top to bottom in their order, with a dashed line at ``budget``
    keyed in a legend above the axes (clear of the bars and their labels). ``size`` defaults to the page's width
    and 0.35 inch per bar."""
    fig, ax = plt.subplots(figsize=size or (PAGE_WIDTH_INCHES, 1.2 + 0.35 * len(seconds)))
    ax.barh(list(seconds), list(seconds.values()), color=PALETTE[0])
    ax.axvline(budget, color="black", linestyle="--", linewidth=1, label=budget_label)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return readable(fig)


_CHANNEL_NAMES = ("red", "green", "blue")


def prediction_panels(images: Mapping[str, torch.Tensor], logits: Mapping[str, torch.Tensor],
                      class_name: Callable[[int], str]) -> tuple[list[torch.Tensor], list[str]]:
    """Panels and titles for :func:`show_images`: image by image, one panel per kind (the keys of ``images``,
    e.g. source, target, transformed), titled with the kind, the predicted class (``class_name(index)``) and
    its probability, from ``logits[kind]`` (B, classes)."""
    probabilities = {kind: values.softmax(1) for kind, values in logits.items()}
    panels, titles = [], []
    for index in range(len(next(iter(images.values())))):
        for kind, batch in images.items():
            predicted = int(probabilities[kind][index].argmax())
            panels.append(batch[index])
            titles.append(f"{kind}\n{class_name(predicted)} {100 * probabilities[kind][index, predicted]:.1f} %")
    return panels, titles


def channel_change_table(changes: Mapping[str, ChannelChange]) -> Table:
    """One row per disguise (:func:`nullspace_utils.fooling.channel_change`): the L1 and L2 norms of the change of
    the free channel, the share of values it changes, the share outside [0, 1] and the channel's range."""
    channel = _CHANNEL_NAMES[next(iter(changes.values())).channel]
    rows = [[name, f"{c.l1:.0f}", f"{c.l2:.0f}", f"{100 * c.changed:.0f} %", f"{100 * c.out_of_box:.0f} %",
             f"[{c.low:.0f}, {c.high:.0f}]"] for name, c in changes.items()]
    threshold = next(iter(changes.values())).threshold
    return table(rows, ["solution", "L1 norm of the change", "L2 norm of the change",
                        f"pixels changed by > {threshold:g}", f"{channel} outside [0, 1]", f"{channel} range"])


def disguise_table(checks: Mapping[str, PredictionCheck], changes: Mapping[str, ChannelChange]) -> Table:
    """One row per model (the keys of both): whether it still predicts the source for every disguised image
    (:func:`nullspace_utils.fooling.check_predictions`), whether its largest logit change is below 1e-4 (float
    rounding; its digits vary between CPUs, so the comparison is printed), and the free channel's share
    outside [0, 1], range and mean distance from the target's (:func:`nullspace_utils.fooling.channel_change`)."""
    channel = _CHANNEL_NAMES[next(iter(changes.values())).channel]
    rows = [[name, check.source_kept == 1, check.max_logit_change < 1e-4, f"{100 * changes[name].out_of_box:.0f} %",
             f"[{changes[name].low:.0f}, {changes[name].high:.0f}]", f"{changes[name].mean_abs:.2f}"]
            for name, check in checks.items()]
    return table(rows, ["model", "source's prediction kept", "max logit change below 1e-4",
                        f"{channel} outside [0, 1]", f"{channel} range", f"mean |{channel} − target {channel}|"])


def map_correlation_table(agreements: Mapping[str, MapAgreement], *, identical: float = 0.9999,
                          nearly: float = 0.95) -> Table:
    """One row per explanation method (:func:`nullspace_utils.xai.compare_disguise`): whether the transformed
    images' maps are the source's (every per-image correlation above ``identical``), nearly so (above ``nearly``)
    or different, the range of those correlations, and the range of the target's against the source's (both
    rounded outward: :func:`format_range`)."""
    rows = []
    for name, agreement in agreements.items():
        same, other = agreement.transformed_correlations, agreement.target_correlations
        shown = (f"above {identical:g}" if min(same) > identical
                 else format_range(same, scale=1, digits=2, collapse=False, outward=True, separator=" to "))
        verdict = "identical" if min(same) > identical else "nearly identical" if min(same) > nearly else "differs"
        rows.append([name, verdict, shown,
                     format_range(other, scale=1, digits=2, collapse=False, outward=True, separator=" to ")])
    return table(rows, ["method", "source vs transformed", "correlation", "correlation source vs target"])


def map_difference_table(agreements: Mapping[str, MapAgreement], *, tolerance: float = 1e-3) -> Table:
    """One row per explanation method (:func:`nullspace_utils.xai.compare_disguise`): identical or not, the
    largest relative difference between the source's and the transformed images' maps, and the mean correlations
    of the source's maps with the transformed images' and the targets'. Identical maps differ by float rounding
    only (about 1e-5, digits that vary between CPUs): below ``tolerance`` the comparison is printed, above it the
    difference itself."""
    rows = []
    for name, agreement in agreements.items():
        difference = agreement.transformed["max_relative_difference"]
        rows.append([name, "identical" if difference < tolerance else "differs",
                     f"< {tolerance:.0e}".replace("e-0", "e-") if difference < tolerance else f"{difference:.1f}",
                     f"{agreement.transformed['correlation']:.3f}", f"{agreement.target['correlation']:.2f}"])
    pairs = len(next(iter(agreements.values())).transformed_correlations)
    return table(rows, ["method", "source vs transformed", "max relative difference",
                        f"correlation (mean of {pairs} pairs)", "correlation source vs target"])


def reference_line(ax: Axes, y: float, label: str, *, side: str = "left", color: str = "0.35") -> None:
    """Mark on ``ax`` a reference value ``y`` measured elsewhere (not a series of this plot), labelled ``label`` on
    the panel's ``side`` ("left" or "right").

    Inside the y range already drawn: a thin dash-dot line across the panel with the label beside it, on the
    side away from the panel's middle (over the line in the upper half, under it in the lower half), where the
    data rarely are; the y limits are widened so that the label has a free band of its own there. Outside it
    (e.g. a float-rounding value on a log axis whose data lie decades higher): the limits are kept, so the data
    stay readable, and the label is written at that edge of the panel with an arrow pointing off the axis. Call
    it after the panel's data and scale are set."""
    if side not in ("left", "right"):
        raise ValueError(f"reference_line: side is 'left' or 'right', not {side!r}.")
    fig = ax.get_figure(root=True)
    width = fig.get_figwidth() if isinstance(fig, Figure) else PAGE_WIDTH_INCHES
    size = smallest_points(width)
    x = 0.03 if side == "left" else 0.97
    style: dict[str, Any] = {"ha": side, "color": color, "fontsize": size}
    low, high = sorted(ax.get_ylim())
    if low <= y <= high:
        ax.axhline(y, color=color, linestyle="-.", linewidth=1.0, zorder=0.5)
        log = ax.get_yscale() == "log"
        to_axis, from_axis = (np.log10, lambda v: 10.0 ** v) if log else (lambda v: v, lambda v: v)
        a, b, t = to_axis(low), to_axis(high), to_axis(y)
        above = (t - a) / (b - a) > 0.5
        height_inches = ax.get_position().height * (fig.get_figheight() if isinstance(fig, Figure) else 4.8)
        band = min(0.4, 1.6 * size / 72 / max(height_inches, 1e-6))  # the label's share of the axis, with margin
        if above and (b - t) / (b - a) < band:  # widen the top until the label's band is free
            ax.set_ylim(low, from_axis((t - band * a) / (1 - band)))
        elif not above and (t - a) / (b - a) < band:
            ax.set_ylim(from_axis((t - band * b) / (1 - band)), high)
        ax.annotate(label, (x, y), xycoords=ax.get_yaxis_transform(), xytext=(0, 2 if above else -2),
                    textcoords="offset points", va="bottom" if above else "top", **style)
    else:
        below = y < low
        ax.text(x, 0.03 if below else 0.97, f"{'↓' if below else '↑'} {label}", transform=ax.transAxes,
                va="bottom" if below else "top", **style)
