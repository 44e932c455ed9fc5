"""Report figures: super-pixel maps (seed Figure 3) and detector-level trend plots.

Rendered with matplotlib's object API on the Agg canvas (no pyplot, no global
backend switch). Sizes are chosen for a person at 100 % zoom: a figure inch
is `CSS_DPI` CSS pixels on the page, so the smallest text (9.5 pt in the
figure) shows at 13 CSS pixels (about 10 pt), and a map or trend plot is
600 CSS pixels wide (two side by side on a wide screen) (`MAP_CSS`, `TREND_CSS`; the page gives the
``<img>`` these sizes). The PNG holds `SCALE` times as many pixels, sharp
when zoomed in or on a high-density screen.

A trend plot draws what the evaluators compared: the mission and SOC limits
(`limit_lines`), the change evaluator's band around the previous value and
the trend evaluator's band around the median of the earlier files. Its
y-range (`trend_ylim`) is never narrower than those bands, nor than a
fraction of the values, so that two nearly equal values (counting noise) do
not fill the axis and look like a cliff.

Titles, axis labels and legend texts show metric names, units and evaluator
names from the database: they are drawn with mathtext off, so a ``$`` in them
is text, never a formula.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..science.scales import N_SP_SIDE
from .escape import plain_text
from .formatting import fmt_value

SCALE = 2  # PNG pixels per CSS pixel
CSS_DPI = 100  # CSS pixels per figure inch
DPI = SCALE * CSS_DPI
MAP_INCHES = (6.0, 5.4)
TREND_INCHES = (6.0, 4.2)
MAP_CSS = (round(MAP_INCHES[0] * CSS_DPI), round(MAP_INCHES[1] * CSS_DPI))
TREND_CSS = (round(TREND_INCHES[0] * CSS_DPI), round(TREND_INCHES[1] * CSS_DPI))
FONT_TICK, FONT_LABEL, FONT_TITLE, FONT_LEGEND = 10.0, 11.0, 12.0, 9.5

AMP_TICKS = [0, 7, 15, 23, 31]
PASS_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"
LINE_COLOUR = "#4a6fa5"
CHANGE_COLOUR = "#4a6fa5"
TREND_COLOUR = "#7b52ab"  # purple: orange is the SOC limit
LIMIT_STYLES = {"mission": ("#b00020", ":"), "soc": ("#e07b00", "--")}
#: a limit further than this many value ranges from the values is named in the legend, not drawn
LIMIT_REACH = 0.5
#: the y-range covers at least this fraction of the largest value on each side
MIN_FRACTION = 0.1
MARGIN = 0.12  # of the y-range, above and below: room for the markers


_local = threading.local()


def _save(fig: Figure, path: Path) -> Path:
    # zlib level 3: a third faster than the default 6 for 10-30 % more bytes.
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    return path


def _text(text: str) -> str:
    """A label from the database on one line (matplotlib would break it at a newline)."""
    return plain_text(text)


# -- super-pixel map ----------------------------------------------------------------

class _MapFigure:
    """A reusable 32x32 super-pixel map with amp boundaries, failure outlines and a colour bar.

    Building a figure (axes, ticks, colour bar) costs about as much as
    drawing it, so each thread keeps one and only swaps its data.
    """

    def __init__(self):
        width, height = MAP_INCHES
        self.fig = Figure(figsize=MAP_INCHES, dpi=DPI)
        FigureCanvasAgg(self.fig)
        # Fixed layout (in inches): room for the tick labels, two title lines and the colour bar's labels.
        left, bottom, top, bar = 0.75, 0.6, 0.75, 1.15
        side = min(width - left - bar, height - bottom - top)
        ax = self.ax = self.fig.add_axes((left / width, bottom / height, side / width, side / height))
        cmap = colormaps["viridis"].with_extremes(bad="#bbbbbb")
        self.image = ax.imshow(np.zeros((N_SP_SIDE, N_SP_SIDE)), origin="lower", cmap=cmap, vmin=0, vmax=1,
                               interpolation="nearest", aspect="equal")
        # Each super-pixel column is one amplifier (128 columns wide): mark the boundaries.
        ax.vlines(np.arange(0.5, N_SP_SIDE - 1, 1.0), -0.5, N_SP_SIDE - 0.5, colors="white", linewidths=0.4,
                  alpha=0.5)
        self.marks = None
        ax.set_xlim(-0.5, N_SP_SIDE - 0.5)
        ax.set_ylim(-0.5, N_SP_SIDE - 0.5)
        ax.set_xticks(AMP_TICKS, [str(t + 1) for t in AMP_TICKS])
        ax.set_yticks([0, 8, 16, 24, 31])
        ax.set_xlabel("amplifier (super-pixel column)", fontsize=FONT_LABEL)
        ax.set_ylabel("super-pixel row", fontsize=FONT_LABEL)
        ax.tick_params(labelsize=FONT_TICK)
        # Two lines: the metric, then (in red) how many super-pixels fail; one would not fit the width.
        self.title = ax.annotate("", (0, 1), xycoords="axes fraction", xytext=(0, 20), textcoords="offset points",
                                 fontsize=FONT_TITLE, va="bottom", annotation_clip=False)
        self.title.set_parse_math(False)
        self.subtitle = ax.set_title("", fontsize=FONT_LABEL, loc="left", color="#c00000", pad=5)
        cax = self.fig.add_axes(((left + side + 0.15) / width, bottom / height, 0.16 / width, side / height))
        self.colorbar = self.fig.colorbar(self.image, cax=cax)
        self.colorbar.ax.tick_params(labelsize=FONT_TICK)
        self.colorbar.ax.yaxis.get_offset_text().set_fontsize(FONT_TICK)
        self.colorbar.ax.yaxis.label.set_parse_math(False)

    def render(self, path: Path, values: np.ndarray, failing: np.ndarray, title: str, unit: str) -> Path:
        grid = np.asarray(values, dtype=np.float64).reshape(N_SP_SIDE, N_SP_SIDE)
        finite = grid[np.isfinite(grid)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        self.image.set_data(np.ma.masked_invalid(grid))
        self.image.set_clim(vmin, vmax)
        if self.marks is not None:
            self.marks.remove()
            self.marks = None
        ys, xs = np.nonzero(np.asarray(failing, dtype=bool).reshape(N_SP_SIDE, N_SP_SIDE))
        if xs.size:
            # Outlines in data units: exactly one super-pixel whatever the figure size.
            boxes = [Rectangle((x - 0.5, y - 0.5), 1.0, 1.0) for x, y in zip(xs, ys)]
            self.marks = self.ax.add_collection(
                PatchCollection(boxes, facecolors="none", edgecolors="#ff1f1f", linewidths=1.4))
        self.title.set_text(_text(title))
        self.subtitle.set_text(f"{xs.size} failing super-pixel{'s' if xs.size != 1 else ''}, outlined in red"
                               if xs.size else "")
        self.colorbar.set_label(_text(unit) or "value", fontsize=FONT_LABEL)
        return _save(self.fig, path)


def _template(kind: str, factory):
    template = getattr(_local, kind, None)
    if template is None:
        template = factory()
        setattr(_local, kind, template)
    return template


def superpixel_map(path: Path, values: np.ndarray, failing: np.ndarray, title: str, unit: str) -> Path:
    """32x32 map of one super-pixel metric, amps as columns, failing super-pixels outlined in red.

    Parameters
    ----------
    values : array of 1024
        In super-pixel index order ``(y // 128) * 32 + x // 128`` (row 0 at the bottom).
    failing : bool array of 1024
        Super-pixels that failed any evaluator.
    """
    return _template("map", _MapFigure).render(Path(path), values, failing, title, unit)


# -- trend plot ------------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    """A range an evaluator allowed, drawn from ``x0`` to ``x1`` (dates, or file numbers)."""

    x0: object
    x1: object
    low: float
    high: float
    label: str
    centre: float | None = None  # drawn as a dashed line (the trend median)


@dataclass(frozen=True)
class Limit:
    """An absolute limit: ``evaluator`` (``mission``, ``soc``), ``side`` (``min``/``max``), ``value``."""

    evaluator: str
    side: str
    value: float

    @property
    def label(self) -> str:
        name = " & ".join("SOC" if e == "soc" else e for e in self.evaluator.split(" & "))
        return f"{name} {self.side} {fmt_value(self.value)}"


def merge_limits(limits) -> list[Limit]:
    """One entry per (side, value): the mission and SOC maxima are often the same number."""
    merged: dict[tuple[str, float], list[str]] = {}
    for limit in limits:
        names = merged.setdefault((limit.side, limit.value), [])
        if limit.evaluator not in names:
            names.append(limit.evaluator)
    return [Limit(" & ".join(names), side, value) for (side, value), names in merged.items()]


def _trend_axes(legend_rows: int) -> tuple[float, float, float, float]:
    """Axes position (figure fractions): tick labels on the left, the legend rows and axis label below."""
    width, height = TREND_INCHES
    bottom = 0.7 + 0.21 * legend_rows  # inches: tick labels and the axis label, then the legend
    return 0.95 / width, bottom / height, (width - 1.15) / width, (height - bottom - 0.4) / height


def trend_ylim(values, bands=(), min_fraction: float = MIN_FRACTION) -> tuple[float, float]:
    """The y-range of a trend plot: every value and band, never narrower than the noise of the values.

    Two nearly equal values would otherwise fill the axis, and a change of
    one count look like a cliff. The half-range is at least ``min_fraction``
    of the largest value and, when every value is a whole number (a count of
    pixels), at least 3 sigma of its counting noise (``3 sqrt(n)``). Values
    that are all non-negative do not get a range reaching far below zero.

    Parameters
    ----------
    values : sequence of float
        The plotted values (NaN ignored).
    bands : sequence of (low, high)
        The evaluators' allowed ranges drawn on the plot.
    min_fraction : float
        The smallest half-range, as a fraction of the largest absolute value.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    edges = [float(e) for b in bands for e in b if e is not None and math.isfinite(float(e))]
    points = finite + edges
    if not points:
        return 0.0, 1.0
    lo, hi = min(points), max(points)
    size = max((abs(v) for v in finite), default=max(abs(lo), abs(hi)))
    half = min_fraction * size
    if finite and all(v.is_integer() for v in finite):
        half = max(half, 3.0 * math.sqrt(size))
    min_span = 2.0 * half or 1.0
    if hi - lo < min_span:
        centre = 0.5 * (lo + hi)
        lo, hi = centre - 0.5 * min_span, centre + 0.5 * min_span
        if min(points) >= 0 > lo:  # keep a positive quantity's range from starting far below zero
            lo, hi = 0.0, max(hi - lo, max(points))
    margin = MARGIN * (hi - lo)
    return lo - margin, hi + margin


def _x_limits(x: list, dates: bool) -> tuple:
    if not dates:
        return 0.5, max(len(x), 1) + 0.5
    first, last = min(x), max(x)
    pad = max((last - first) * 0.06, timedelta(days=4))
    return first - pad, last + pad


def _draw_band(ax, band: Band, colour: str) -> None:
    if band.x0 == band.x1:  # one earlier point: a bar at the current file instead of an area of no width
        ax.vlines([band.x1], band.low, band.high, colors=colour, linewidths=9, alpha=0.25, label=band.label)
    else:
        ax.fill_between([band.x0, band.x1], [band.low] * 2, [band.high] * 2, color=colour, alpha=0.16, lw=0,
                        label=band.label)
    if band.centre is not None:
        ax.plot([band.x0, band.x1], [band.centre] * 2, ls="--", lw=1.2, color=colour)


def trend_plot(path: Path, dates: list[datetime | None], values: list[float | None], title: str, unit: str,
               current_failed: bool, limits: list[Limit] = (), change: Band | None = None,
               trend: Band | None = None) -> Path:
    """Detector-level value of one metric over the files of one type and detector; the last point is this file.

    Parameters
    ----------
    dates : list of datetime or None
        USEAFTER of each file, oldest first; files are plotted against their
        order when one has none.
    values : list of float or None
        The values (None: no value).
    limits : list of Limit
        Absolute limits: drawn as horizontal lines when near the values,
        else named in the legend ("above the plot").
    change, trend : Band, optional
        The range the change evaluator allowed around the previous value,
        and the trend evaluator's median ± limit sigma over its earlier files.
        The x positions of the bands must be of the same kind as ``dates``
        (file numbers from 1 when a date is missing).
    """
    y = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    use_dates = bool(dates) and all(d is not None for d in dates)
    x = list(dates) if use_dates else list(range(1, y.size + 1))
    bands = [b for b in (trend, change) if b is not None]
    limits = merge_limits(limits)
    n_entries = len(bands) + (y.size > 1) + 1 + len(limits)
    fig = Figure(figsize=TREND_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(_trend_axes(math.ceil(n_entries / 2)))
    for band, colour in ((trend, TREND_COLOUR), (change, CHANGE_COLOUR)):
        if band is not None:
            _draw_band(ax, band, colour)
    if y.size > 1:
        ax.plot(x[:-1], y[:-1], "o", color=LINE_COLOUR, ms=5.5, label="earlier files", zorder=3)
        ax.plot(x, y, "-", color=LINE_COLOUR, lw=1.3, zorder=2)
    colour = FAIL_COLOUR if current_failed else PASS_COLOUR
    ax.plot(x[-1:], y[-1:], "*", color=colour, ms=16, mec="white", mew=0.6, zorder=4,
            label="this file (failed)" if current_failed else "this file")

    lo, hi = trend_ylim(y, [(b.low, b.high) for b in bands])
    span = hi - lo
    for limit in limits:
        # Merged limits take the style of their first (strictest-named) evaluator.
        style_colour, style = LIMIT_STYLES.get(limit.evaluator.split(" & ")[0], ("#555555", "-."))
        if lo - LIMIT_REACH * span <= limit.value <= hi + LIMIT_REACH * span:
            ax.axhline(limit.value, color=style_colour, ls=style, lw=1.8, label=limit.label)
            lo, hi = min(lo, limit.value - MARGIN * span), max(hi, limit.value + MARGIN * span)
        else:
            where = "above" if limit.value > hi else "below"
            ax.plot([], [], ls=style, color=style_colour, lw=1.8, label=f"{limit.label} ({where} the plot)")
    ax.set_ylim(lo, hi)
    ax.set_xlim(*_x_limits(x, use_dates))
    if use_dates:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("USEAFTER", fontsize=FONT_LABEL)
    else:
        ax.set_xlabel("file (no USEAFTER)", fontsize=FONT_LABEL)
    ax.grid(True, color="#e2e5ea", lw=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=FONT_TICK)
    ax.yaxis.get_offset_text().set_fontsize(FONT_TICK)
    ax.xaxis.get_offset_text().set_fontsize(FONT_TICK)
    ax.set_ylabel(_text(unit) or "value", fontsize=FONT_LABEL, parse_math=False)
    ax.set_title(_text(title), fontsize=FONT_TITLE, loc="left", parse_math=False)
    handles, labels = ax.get_legend_handles_labels()
    # The files first, then what they were compared with (the bands were drawn first, below the points).
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith(("earlier", "this file")), i))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if handles:
        # Below the axes, where it hides no value (`_trend_axes` left room for its rows).
        legend = fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=2,
                            fontsize=FONT_LEGEND, frameon=False, borderaxespad=0.3, columnspacing=1.6)
        for text in legend.get_texts():
            text.set_parse_math(False)
    return _save(fig, Path(path))
