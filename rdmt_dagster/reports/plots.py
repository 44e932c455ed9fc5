"""Report figures: super-pixel maps (seed Figure 3) and detector-level trend plots.

Rendered with matplotlib's object API on the Agg canvas (no pyplot, no global
backend switch), as small PNGs. Building a figure (axes, ticks, colour bar)
costs about as much as drawing it, so each thread keeps one map figure and
one trend figure and only swaps their data: ~35 ms per PNG, which keeps a
report of 8 metrics (16 PNGs) well under a second.

Titles and axis labels show metric names and units from the database: they
are drawn with mathtext off, so a ``$`` in them is text, never a formula.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..science.scales import N_SP_SIDE

DPI = 72
AMP_TICKS = [0, 7, 15, 23, 31]
PASS_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"
LINE_COLOUR = "#4a6fa5"

_local = threading.local()


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


class _MapFigure:
    """A reusable 32x32 super-pixel map with amp boundaries, failure marks and a colour bar."""

    def __init__(self):
        self.fig = Figure(figsize=(4.4, 3.7))
        FigureCanvasAgg(self.fig)
        ax = self.ax = self.fig.add_axes((0.1, 0.13, 0.66, 0.78))
        ax.set_anchor("W")
        cmap = colormaps["viridis"].with_extremes(bad="#bbbbbb")
        self.image = ax.imshow(np.zeros((N_SP_SIDE, N_SP_SIDE)), origin="lower", cmap=cmap, vmin=0, vmax=1,
                               interpolation="nearest", aspect="equal")
        # Each super-pixel column is one amplifier (128 columns wide): mark the boundaries.
        ax.vlines(np.arange(0.5, N_SP_SIDE - 1, 1.0), -0.5, N_SP_SIDE - 0.5, colors="white", linewidths=0.35,
                  alpha=0.6)
        self.marks = ax.scatter([], [], marker="s", s=22, facecolors="none", edgecolors="red", linewidths=0.9)
        ax.set_xlim(-0.5, N_SP_SIDE - 0.5)
        ax.set_ylim(-0.5, N_SP_SIDE - 0.5)
        ax.set_xticks(AMP_TICKS, [str(t + 1) for t in AMP_TICKS])
        ax.set_yticks([0, 15, 31])
        ax.set_xlabel("amplifier (super-pixel column)", fontsize=8)
        ax.set_ylabel("super-pixel row", fontsize=8)
        ax.tick_params(labelsize=7)
        self.title = ax.set_title("", fontsize=8.5, parse_math=False)
        self.colorbar = self.fig.colorbar(self.image, cax=self.fig.add_axes((0.78, 0.13, 0.03, 0.78)))
        self.colorbar.ax.tick_params(labelsize=7)
        self.colorbar.ax.yaxis.label.set_parse_math(False)

    def render(self, path: Path, values: np.ndarray, failing: np.ndarray, title: str, unit: str) -> Path:
        grid = np.asarray(values, dtype=np.float64).reshape(N_SP_SIDE, N_SP_SIDE)
        finite = grid[np.isfinite(grid)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        self.image.set_data(np.ma.masked_invalid(grid))
        self.image.set_clim(vmin, vmax)
        fail = np.asarray(failing, dtype=bool).reshape(N_SP_SIDE, N_SP_SIDE)
        ys, xs = np.nonzero(fail)
        self.marks.set_offsets(np.column_stack([xs, ys]) if xs.size else np.empty((0, 2)))
        self.title.set_text(title + (f"  ({xs.size} failing, red)" if xs.size else ""))
        self.colorbar.set_label(unit or "value", fontsize=8)
        return _save(self.fig, path)


class _TrendFigure:
    """A reusable plot of one detector-level metric against USEAFTER."""

    def __init__(self):
        import matplotlib.dates as mdates

        self.fig = Figure(figsize=(4.4, 2.5))
        FigureCanvasAgg(self.fig)
        ax = self.ax = self.fig.add_subplot()
        ax.xaxis_date()
        start = [datetime(2000, 1, 1)]
        (self.earlier,) = ax.plot(start, [0.0], "o-", color=LINE_COLOUR, ms=3.5, lw=1.0, label="earlier files")
        (self.link,) = ax.plot(start, [0.0], "-", color=LINE_COLOUR, lw=1.0)
        (self.current,) = ax.plot(start, [0.0], "*", color=PASS_COLOUR, ms=11, label="this file")
        locator = mdates.AutoDateLocator(minticks=2, maxticks=5)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("USEAFTER", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.yaxis.get_offset_text().set_fontsize(7)
        self.ylabel = ax.set_ylabel("", fontsize=8, parse_math=False)
        self.title = ax.set_title("", fontsize=8.5, parse_math=False)
        self.legend = ax.legend(fontsize=7, loc="upper left", frameon=False)
        self.fig.subplots_adjust(left=0.17, right=0.97, bottom=0.2, top=0.88)

    def render(self, path: Path, dates: list[datetime], values: np.ndarray, title: str, unit: str,
               current_failed: bool) -> Path:
        self.earlier.set_data(dates[:-1], values[:-1])
        self.link.set_data(dates[-2:], values[-2:])
        self.current.set_data(dates[-1:], values[-1:])
        colour = FAIL_COLOUR if current_failed else PASS_COLOUR
        self.current.set_color(colour)
        self.legend.legend_handles[1].set_color(colour)
        self.legend.get_texts()[1].set_text("this file (failed)" if current_failed else "this file")
        self.legend.set_visible(len(values) > 1)
        self.ylabel.set_text(unit or "value")
        self.title.set_text(title)
        self.ax.relim()
        self.ax.autoscale_view()
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


def trend_plot(path: Path, dates: list[datetime | None], values: list[float | None], title: str, unit: str,
               current_failed: bool) -> Path:
    """Detector-level value of one metric over the files of one type and detector; the last point is this file.

    Files without USEAFTER are plotted against their order instead.
    """
    y = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if dates and all(d is not None for d in dates):
        return _template("trend", _TrendFigure).render(Path(path), list(dates), y, title, unit, current_failed)
    fig = Figure(figsize=(4.4, 2.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(1, y.size + 1)
    ax.plot(x, y, "o-", color=LINE_COLOUR, ms=3.5, lw=1.0)
    ax.plot(x[-1:], y[-1:], "*", color=FAIL_COLOUR if current_failed else PASS_COLOUR, ms=11)
    ax.set_xlabel("file (no USEAFTER)", fontsize=8)
    ax.set_ylabel(unit or "value", fontsize=8, parse_math=False)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8.5, parse_math=False)
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.2, top=0.88)
    return _save(fig, Path(path))
