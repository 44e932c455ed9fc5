"""Pages of the L2 arm on the report site: one per observation day, and one per reprocessing batch.

Layout under the report site (``<home>/reports``)::

    l2/<day>/index.html, index.md              the images observed that day
    l2/<day>/trend_<metric>.png                per-detector trends of the last days
    l2/<day>/changes-<batch>.html, .md         a reprocessing compared with the version before

A day page puts the failures first (image, detector, monitor, metric, where,
value, the standard violated and by how much), then the images that could
not be measured, then the **root cause** section: the reference files that
calibrated each failing image (``l2_file.ref_files`` and the CRDS context),
linked to their own reports and marked when they failed their own checks,
so a 1/f or background failure points at a failing dark or refpix file.
Then one row per detector and monitor, and the trend plots.

Everything read from the database (file names, detectors, reference file
names, CRDS contexts, error texts) is data: the document model escapes it
per format (`rdmt_dagster.reports.document`), the figures draw it with
mathtext off.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from . import l2_queries as lq
from . import queries as q
from .document import BulletList, Cell, Document, Heading, Image, Paragraph, Table, to_html, to_markdown
from .escape import plain_text
from .formatting import (
    FailureGroup,
    absolute_limits,
    evaluator_kind,
    fmt_value,
    group_failures,
    natural_key,
    scrub,
    split_metric,
)
from .site import INDEX_HTML, INDEX_MD, _UNSAFE, _write_text, report_relative_path, write_index

L2_DIR = "l2"
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MONITOR_ORDER = ("astrometry", "psf", "noise_1f", "pixel")
DETECTORS = tuple(f"WFI{i:02d}" for i in range(1, 19))
#: the detector-scale metrics plotted per detector on a day page: (monitor, stored metric, title)
TREND_METRICS = (
    ("astrometry", "detector_astrometric_offset_rms", "Astrometric offset RMS"),
    ("psf", "detector_psf_fwhm_median", "PSF FWHM (median over the stars)"),
    ("noise_1f", "detector_noise_1f_excess", "1/f noise excess"),
    ("pixel", "detector_background_level", "Background level"),
)
#: reference types whose defects show up in a monitor's metrics (most telling first)
RELATED_REFTYPES = {
    "noise_1f": ("refpix", "dark", "superbias"),
    "pixel": ("dark", "flat", "superbias", "mask", "saturation", "linearity", "gain"),
    "astrometry": ("distortion",),
    "psf": (),
}
MAX_FAILURE_ROWS = 400
#: added to the site's style sheet on the L2 pages: wide tables, readable code, figures that fit
EXTRA_CSS = (
    "body{max-width:96em}"
    'code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.86em}'
    "td:first-child code{overflow-wrap:anywhere}"
    "li{margin:.25em 0}"
    "figure{display:block}figure img{max-width:100%;height:auto;border:1px solid #e2e5ea}"
    "caption{caption-side:bottom;text-align:left;font-size:.85em;color:#555;padding-top:.3em}"
)


def _html(doc: Document) -> str:
    return to_html(doc).replace("</style>", EXTRA_CSS + "</style>", 1)


def day_folder(site, day: str) -> Path:
    """``<site>/l2/<day>``; ``day`` must be ``YYYY-MM-DD`` (it names a folder)."""
    if not isinstance(day, str) or not DAY.fullmatch(day):
        raise ValueError(f"not an observation day (YYYY-MM-DD): {plain_text(day)!r}")
    return Path(site) / L2_DIR / day


def day_relative_path(day: str, fmt: str = "html") -> str:
    """A day page relative to the site root (``l2/<day>/index.html``)."""
    day_folder(".", day)
    return f"{L2_DIR}/{day}/{INDEX_HTML if fmt == 'html' else INDEX_MD}"


def present_days(site) -> list[str]:
    """The days with a page under ``<site>/l2/``, newest first."""
    root = Path(site) / L2_DIR
    if not root.is_dir():
        return []
    days = [p.name for p in root.iterdir() if DAY.fullmatch(p.name) and (p / INDEX_HTML).exists()]
    return sorted(days, reverse=True)


# -- standards ------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _default_blocks() -> dict:
    from ..science.standards import Standards

    standards = Standards()
    out = {}
    for monitor in standards.monitors():
        try:
            block = standards.for_monitor(monitor)
        except KeyError:
            continue
        out[monitor] = {"metrics": block.metrics}
    return out


class _Blocks:
    """Standards blocks by (standards hash, monitor), read once each; the defaults when a hash is not stored."""

    def __init__(self, conn):
        self.conn = conn
        self.cache: dict[tuple[str | None, str], dict] = {}

    def block(self, standards_hash: str | None, monitor: str) -> dict:
        key = (standards_hash, monitor)
        if key not in self.cache:
            block = q.standards_block(self.conn, standards_hash, monitor) if standards_hash else {}
            self.cache[key] = block or _default_blocks().get(monitor, {})
        return self.cache[key]

    def params_for(self, standards_hash: str | None, monitor: str):
        block = self.block(standards_hash, monitor)

        def params(base: str, scale: str, evaluator: str) -> dict:
            spec = (block.get("metrics") or {}).get(base) or {}
            value = spec.get(evaluator)
            per_scale = (spec.get("scales") or {}).get(scale) or {}
            if evaluator in per_scale:
                if per_scale[evaluator] is None:
                    return {}
                value = {**(value or {}), **(per_scale[evaluator] or {})}
            return dict(value) if isinstance(value, dict) else {}

        return params


def violation(kind: str, params: dict, value, threshold, lower, reference) -> str:
    """How far a failing value lies from the standard it violated, in words."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no finite value"
    value = float(value)
    if kind == "absolute":
        if threshold is None:
            return "—"
        # As stored: ``threshold`` is the maximum when there is one, else the minimum; ``lower`` the
        # minimum beside a maximum.
        if "max" in params or lower is not None:
            upper_limit, lower_limit = threshold, lower
        elif "min" in params:
            upper_limit, lower_limit = None, threshold
        else:  # no standard to tell: the side the value is on
            upper_limit, lower_limit = (threshold, None) if value > threshold else (None, threshold)
        if upper_limit is not None and value > upper_limit:
            return _beyond(value - upper_limit, upper_limit, "above the maximum", value)
        if lower_limit is not None and value < lower_limit:
            return _beyond(lower_limit - value, lower_limit, "below the minimum", value)
        return "outside the limits"
    if kind in ("change", "trend") and reference is not None and not math.isnan(reference):
        diff = value - reference
        what = "from the previous image" if kind == "change" else "from the median of the earlier images"
        rel = f" ({diff / abs(reference) * 100:+.3g}%)" if reference else ""
        return f"{_signed(diff)}{rel} {what}"
    return "—"


def _beyond(distance: float, limit: float, words: str, value: float) -> str:
    ratio = f" ({value / limit:.3g}× the limit)" if words.startswith("above") and limit > 0 else ""
    return f"{fmt_value(distance)} {words}{ratio}"


def _signed(value: float) -> str:
    text = fmt_value(value)
    return text if text.startswith("-") or text in ("NaN", "0") else f"+{text}"


# -- the results of a set of files ------------------------------------------------------

@dataclass
class FailureRow:
    """One failing metric/evaluator of one monitor of one image, described."""

    group: FailureGroup
    monitor: str
    kind: str
    how_much: str


@dataclass
class FileResult:
    """One image's measurements, failures (grouped) and the errors of monitors that could not run."""

    record: lq.L2FileRecord
    measurements: list[lq.MeasurementRecord]
    rows: list[FailureRow] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (monitor or "", scrubbed error)

    @property
    def n_failed(self) -> int:
        return sum(m.n_failed or 0 for m in self.measurements if m.status == "ok")

    @property
    def n_evaluations(self) -> int:
        return sum(m.n_evaluations or 0 for m in self.measurements if m.status == "ok")

    @property
    def n_not_evaluated(self) -> int:
        """Verdicts that could not be given (too little history, no previous image): neither pass nor fail."""
        return sum(m.n_not_evaluated or 0 for m in self.measurements if m.status == "ok")

    @property
    def failing_monitors(self) -> list[str]:
        return _monitor_sorted({r.monitor for r in self.rows})

    @property
    def metric_failures(self) -> list["MetricFailure"]:
        return merge_failures(self.rows)

    @property
    def failed(self) -> bool:
        return bool(self.rows) or self.n_failed > 0

    @property
    def unmeasured(self) -> bool:
        return bool(self.errors)


@dataclass
class MetricFailure:
    """Every failing evaluator of one metric of one monitor of one image, in one line."""

    monitor: str
    metric: str
    scale: str
    where: str  # "detector" or "2 of 32 amps (5, 6)"
    worst: FailureGroup  # the group whose violation is described
    standards: list[tuple[str, str, str]]  # (evaluator, kind, standard), absolute ones first
    how_much: str

    @property
    def absolute(self) -> list[tuple[str, str, str]]:
        return [s for s in self.standards if s[1] == "absolute"]

    @property
    def relative(self) -> list[tuple[str, str, str]]:
        return [s for s in self.standards if s[1] != "absolute"]


def _severity(row: FailureRow) -> float:
    """How far the worst region lies beyond an absolute limit (in the metric's unit)."""
    w = row.group.worst
    limits = [b for b in (w.threshold, w.lower) if b is not None]
    if w.value is None or math.isnan(w.value) or not limits:
        return math.inf
    return min(abs(w.value - b) for b in limits)


def merge_failures(rows: list[FailureRow]) -> list[MetricFailure]:
    """One `MetricFailure` per (monitor, metric) of ``rows``, in their order.

    The violation described is the absolute standard the value lies furthest
    beyond, or, when only relative evaluators fail, the first of them.
    """
    by_key: dict[tuple[str, str], list[FailureRow]] = {}
    for row in rows:
        by_key.setdefault((row.monitor, row.group.metric), []).append(row)
    out = []
    for (monitor, metric), mine in by_key.items():
        absolute = [r for r in mine if r.kind == "absolute"]
        chosen = max(absolute, key=_severity) if absolute else mine[0]
        widest = max(mine, key=lambda r: r.group.n_regions)
        ordered = absolute + [r for r in mine if r.kind != "absolute"]
        out.append(MetricFailure(monitor, metric, chosen.group.scale, widest.group.where, chosen.group,
                                 [(r.group.evaluator, r.kind, r.group.standard) for r in ordered], chosen.how_much))
    return out


def _monitor_sorted(monitors) -> list[str]:
    return sorted(monitors, key=lambda m: (MONITOR_ORDER.index(m) if m in MONITOR_ORDER else len(MONITOR_ORDER), m))


def collect_l2_results(conn, files: list[lq.L2FileRecord], blocks: _Blocks | None = None) -> list[FileResult]:
    """Measurements and described failures of ``files`` (three queries for any number of files)."""
    blocks = blocks or _Blocks(conn)
    ids = [r.id for r in files]
    meas = lq.measurements(conn, ids)
    fails = lq.failed_evaluations(conn, ids)
    out = []
    for record in files:
        result = FileResult(record, meas.get(record.id, []))
        by_monitor = {m.monitor: m for m in result.measurements}
        for m in result.measurements:
            if m.status != "ok":
                result.errors.append((m.monitor if m.monitor != "file" else "", scrub(m.error) or "could not be measured"))
        if record.status == "error" and not result.errors:
            result.errors.append(("", scrub(record.error) or "could not be measured"))
        per_monitor = fails.get(record.id, {})
        for monitor in _monitor_sorted(per_monitor):
            m = by_monitor.get(monitor)
            standards_hash = m.standards_hash if m else None
            params_for = blocks.params_for(standards_hash, monitor)
            # The change evaluator's previous image is named on the image's own line of history, not here:
            # its name would make every standard a file name long.
            for g in group_failures(per_monitor[monitor], params_for, None):
                base = split_metric(g.metric)[1]
                params = params_for(base, g.scale, g.evaluator)
                kind = evaluator_kind(g.evaluator, params)
                w = g.worst
                how = violation(kind, params, w.value, w.threshold, w.lower, w.reference)
                result.rows.append(FailureRow(g, monitor, kind, how))
        out.append(result)
    return out


@dataclass(frozen=True)
class RefUse:
    """One reference file that calibrated some of the failing images."""

    reftype: str
    filename: str
    status: lq.ReferenceStatus | None
    images: tuple[str, ...]
    detectors: tuple[str, ...]
    related: tuple[str, ...]  # the failing monitors (on those images) its type is known to affect

    @property
    def failed(self) -> bool:
        return bool(self.status and self.status.failed)

    def verdict(self) -> str:
        s = self.status
        if s is None:
            return "not monitored by RDMT"
        if s.status == "error":
            return "FAILED its own checks (could not be monitored)"
        if s.n_failed is None:
            return f"in RDMT, not evaluated yet ({s.status})"
        if s.n_failed > 0:
            return f"FAILED its own checks ({s.n_failed} failed evaluation{'s' if s.n_failed != 1 else ''})"
        skipped = s.n_not_evaluated or 0
        if skipped:
            return (f"passed its own checks ({(s.n_evaluations or 0) - skipped} evaluations passed, "
                    f"{skipped} not evaluated)")
        return f"passed its own checks ({s.n_evaluations} evaluations)"


def reference_uses(conn, results: list[FileResult]) -> tuple[dict[int, list[RefUse]], list[RefUse]]:
    """The reference files of the failing or unmeasured images and what the reference arm says of them.

    Returns (file id -> its reference files, suspects first) and every
    distinct reference file used, failed ones first, then those of types
    related to the failing monitors, then by type.
    """
    bad = [r for r in results if r.failed or r.unmeasured]
    names = {name for r in bad for name in r.record.ref_files.values()}
    status = lq.reference_status(conn, names)
    users: dict[tuple[str, str], list[FileResult]] = {}
    for r in bad:
        for reftype, name in r.record.ref_files.items():
            users.setdefault((reftype, name), []).append(r)
    uses: dict[tuple[str, str], RefUse] = {}
    for (reftype, name), rs in users.items():
        related = tuple(_monitor_sorted({m for r in rs for m in r.failing_monitors
                                         if reftype in RELATED_REFTYPES.get(m, ())}))
        uses[(reftype, name)] = RefUse(
            reftype, name, status.get(name), tuple(r.record.filename for r in rs),
            tuple(sorted({r.record.detector for r in rs}, key=natural_key)), related)

    def order(u: RefUse, monitors=()) -> tuple:
        rel = any(u.reftype in RELATED_REFTYPES.get(m, ()) for m in monitors) if monitors else bool(u.related)
        return (not u.failed, not rel, u.status is None, u.reftype, u.filename)

    per_file = {}
    for r in bad:
        mine = [uses[(t, n)] for t, n in r.record.ref_files.items()]
        per_file[r.record.id] = sorted(mine, key=lambda u: order(u, r.failing_monitors))
    return per_file, sorted(uses.values(), key=order)


# -- figures --------------------------------------------------------------------------

TREND_SIZE = (11.0, 4.8)  # inches
TREND_DPI = 110
# Nine colours (no red: red marks failures and mission limits) times two marker shapes: 18 detectors.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
LIMIT_STYLES = {"mission": ("#b00020", ":"), "soc": ("#e07b00", "--")}
FAIL_RING = "#d00000"
#: a detector with more values than this in the plotted days is drawn as the median of equal time bins
#: (this many per line); its failing values are still ringed one by one. At the survey peak a detector
#: has ~10,000 images in 14 days: every one a marker would take seconds to draw and hide the trend.
TREND_BINS = 600
#: a limit further than this many data ranges from the values is named in the legend, not drawn
LIMIT_REACH = 0.5


def _detector_style(detector: str, index: int) -> tuple[str, str]:
    match = re.fullmatch(r"WFI(\d\d)", detector)
    n = int(match.group(1)) - 1 if match else index
    return _COLOURS[n % len(_COLOURS)], "o" if (n // len(_COLOURS)) % 2 == 0 else "s"


def _legend_label(text: str, limit: int = 24) -> str:
    label = plain_text(text) or "(no detector)"
    if len(label) > limit:
        label = label[:limit - 1] + "…"
    return " " + label if label.startswith("_") else label  # matplotlib hides labels starting with "_"


def binned_medians(times: list[datetime], values, n_bins: int) -> tuple:
    """The median of ``values`` (a numpy array) in each of ``n_bins`` equal bins of ``times`` (non-empty bins only).

    Returns the bin centres (a list of datetimes) and the medians (a numpy array); NaN values are left out of a
    bin's median.
    """
    import numpy as np

    t0 = min(times)
    seconds = np.array([(when - t0).total_seconds() for when in times])
    width = max(seconds.max() / n_bins, 1e-9)
    index = np.minimum((seconds / width).astype(int), n_bins - 1)
    centres, medians = [], []
    order = np.argsort(index, kind="stable")
    bounds = np.flatnonzero(np.diff(index[order])) + 1
    for members in np.split(order, bounds):
        finite = values[members][np.isfinite(values[members])]
        centres.append(t0 + timedelta(seconds=(index[members[0]] + 0.5) * width))
        medians.append(float(np.median(finite)) if finite.size else np.nan)
    return centres, np.array(medians)


def trend_figure(path: Path, title: str, unit: str, series: dict[str, list[lq.TrendPoint]],
                 limits: list[tuple[str, str, float]], start: datetime, end: datetime) -> Path:
    """One detector-scale metric over the days, one line per detector; limits as horizontal lines.

    Failing values are ringed in red. A limit far from every value (more than
    `LIMIT_REACH` times their range away) is named in the legend instead of
    squeezing the values into a line. Texts from the database are drawn with
    mathtext off.
    """
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=TREND_SIZE, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = []
    n_failed = 0
    binned = False
    failing_detectors = []
    n_points = sum(len(points) for points in series.values())
    ms, lw = (5.0, 1.2) if n_points <= 150 else (3.2, 0.9)
    for i, detector in enumerate(sorted(series, key=natural_key)):
        points = [p for p in series[detector] if p.when is not None]
        if not points:
            continue
        x = [p.when for p in points]
        y = np.array([np.nan if p.value is None else float(p.value) for p in points])
        colour, marker = _detector_style(detector, i)
        if len(points) > TREND_BINS:
            line_x, line_y = binned_medians(x, y, TREND_BINS)
            binned = True
            ax.plot(line_x, line_y, ls="-", lw=lw, color=colour, label=_legend_label(detector))
        else:
            ax.plot(x, y, marker=marker, ls="-", lw=lw, ms=ms, color=colour, label=_legend_label(detector))
        bad = [k for k, p in enumerate(points) if p.failed]
        if bad:
            n_failed += len(bad)
            failing_detectors.append(_legend_label(detector, 12))
            ax.scatter([x[k] for k in bad], y[bad], s=130, facecolors="none", edgecolors=FAIL_RING,
                       linewidths=2.0, zorder=5)
        values.extend(y[np.isfinite(y)].tolist())
    if n_failed:
        names = ", ".join(failing_detectors[:3]) + (", ..." if len(failing_detectors) > 3 else "")
        ax.scatter([], [], s=130, facecolors="none", edgecolors=FAIL_RING, linewidths=2.0,
                   label=f"failing: {n_failed} ({names})")
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = max(hi - lo, 0.1 * max(abs(lo), abs(hi))) or 1.0
    for evaluator, side, limit in limits:
        colour, style = LIMIT_STYLES.get(evaluator, ("#555555", "-."))
        name = f"{'SOC' if evaluator == 'soc' else evaluator} {side} {fmt_value(limit)}"
        if lo - LIMIT_REACH * span <= limit <= hi + LIMIT_REACH * span:
            ax.axhline(limit, color=colour, ls=style, lw=1.7, label=name)
        else:
            where = "above" if limit > hi else "below"
            ax.plot([], [], ls=style, color=colour, lw=1.7, label=f"{name} ({where} the plot)")
    if not values:
        ax.text(0.5, 0.5, "no values in these days", transform=ax.transAxes, ha="center", va="center",
                fontsize=13, color="#666666")
    ax.set_xlim(start, end)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, color="#e2e5ea", lw=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=10.5)
    ax.yaxis.get_offset_text().set_fontsize(10)
    ax.set_xlabel("exposure start (UTC)", fontsize=11)
    ax.set_ylabel(plain_text(unit) or "dimensionless", fontsize=11, parse_math=False)
    ax.set_title(plain_text(title), fontsize=13.5, loc="left", parse_math=False)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend = fig.legend(handles, labels, loc="outside right upper", ncols=2 if len(handles) > 16 else 1,
                            fontsize=10, frameon=False, title_fontsize=9.5, alignment="left",
                            title=(f"lines: medians of {TREND_BINS} time bins\nper detector ({n_points:,} values)"
                                   if binned else None))
        for text in legend.get_texts():
            text.set_parse_math(False)
    fig.savefig(path, dpi=TREND_DPI, metadata={"Software": None})
    return path


# -- the day page ---------------------------------------------------------------------

@dataclass
class _DayData:
    day: str
    results: list[FileResult]
    waiting: int
    per_file_refs: dict[int, list[RefUse]]
    all_refs: list[RefUse]
    trends: dict[tuple[str, str], dict[str, list[lq.TrendPoint]]]
    limits: dict[tuple[str, str], list[tuple[str, str, float]]]
    trend_days: int
    monitors: list[str]


def _load_day(conn, day: str, trend_days: int) -> _DayData:
    files = lq.day_files(conn, day)
    blocks = _Blocks(conn)
    results = collect_l2_results(conn, files, blocks)
    per_file, all_refs = reference_uses(conn, results)
    first = (date.fromisoformat(day) - timedelta(days=max(1, trend_days) - 1)).isoformat()
    wanted = [(m, metric) for m, metric, _ in TREND_METRICS]
    trends = lq.trend_series(conn, wanted, first, day)
    hashes = lq.standards_hashes(conn, [r.id for r in files])
    limits = {(m, metric): absolute_limits(blocks.params_for(hashes.get(m), m), split_metric(metric)[1])
              for m, metric in wanted}
    monitors = _monitor_sorted(set(MONITOR_ORDER) | {m.monitor for r in results for m in r.measurements
                                                     if m.monitor != "file"})
    return _DayData(day, results, lq.waiting_count(conn, day), per_file, all_refs, trends, limits, trend_days,
                    monitors)


def _ref_cell(use: RefUse, ext: str, up: str) -> Cell:
    href = f"{up}{report_relative_path(use.filename, ext)}" if use.status is not None else None
    return Cell(use.filename, href=href, code=href is None)


def _short_verdict(use: RefUse) -> str:
    s = use.status
    if s is None:
        return "(not monitored)"
    if s.status == "error":
        return "(FAILED: could not be monitored)"
    if s.n_failed is None:
        return "(not evaluated yet)"
    if s.n_failed > 0:
        return f"(FAILED {s.n_failed} evaluation{'s' if s.n_failed != 1 else ''})"
    return "(passed)"


def _value_text(g: FailureGroup) -> str:
    w = g.worst
    unit = f" {g.unit}" if g.unit else ""
    if g.scale == "detector":
        return f"{fmt_value(w.value)}{unit}"
    from .formatting import region_name

    return f"{fmt_value(w.value)}{unit} (worst: {region_name(g.scale, w.region)})"


def _detector_cell(results: list[FileResult], monitor: str) -> Cell | str:
    n_files = n_failed_files = n_failed = n_errors = 0
    for r in results:
        m = next((x for x in r.measurements if x.monitor == monitor), None)
        if m is None and r.record.status == "error":  # the image itself could not be read: no monitor ran
            n_files += 1
            n_errors += 1
            continue
        if m is None:
            continue
        n_files += 1
        if m.status != "ok":
            n_errors += 1
        elif (m.n_failed or 0) > 0:
            n_failed_files += 1
            n_failed += m.n_failed
    if n_files == 0:
        return "—"
    parts = []
    if n_failed_files:
        parts.append(f"{n_failed_files} of {n_files} failed ({n_failed} evaluations)")
    if n_errors:
        parts.append(f"{n_errors} error{'s' if n_errors != 1 else ''}")
    if not parts:
        return Cell(f"pass ({n_files})")
    return Cell(", ".join(parts), fail=True)


def _day_document(data: _DayData, ext: str, images: dict[str, str], changes: list[str]) -> Document:
    up = "../../"
    results = data.results
    failing = [r for r in results if r.rows or (r.n_failed > 0)]
    unmeasured = [r for r in results if r.unmeasured]
    doc = Document(f"RDMT L2 images observed on {data.day}")
    other = INDEX_MD if ext == "html" else INDEX_HTML
    nav = [Cell("← all reports", href=f"{up}index.{ext}"), "  ·  other format: ", Cell(other, href=other)]
    for name in changes:
        nav += ["  ·  ", Cell(f"reprocessing changes ({name.removeprefix('changes-')})", href=f"{name}.{ext}")]
    doc.add(Paragraph(nav, kind="note"))
    detectors = sorted({r.record.detector for r in results}, key=natural_key)
    n_failed = sum(r.n_failed for r in failing)
    summary = [
        ["Images measured", str(len(results))],
        ["Images failing an evaluation", Cell(f"{len(failing)} ({n_failed} failed evaluations)", fail=bool(failing))
         if failing else "0"],
        ["Images that could not be measured (fully or by some monitor)",
         Cell(str(len(unmeasured)), fail=bool(unmeasured))],
        ["Detectors", str(len(detectors))],
        ["Waiting to be measured", str(data.waiting)],
    ]
    doc.add(Table(["Item", "Value"], summary))

    # Failures first.
    doc.add(Heading(2, "Failures", "failures"))
    if not results:
        doc.add(Paragraph(["No measured images on this day."], kind="note"))
    elif not failing:
        skipped = sum(r.n_not_evaluated for r in results)
        tail = (f" {skipped} verdicts could not be given (no previous image or too little history) and are "
                f"not counted as passes." if skipped else "")
        doc.add(Paragraph([f"No measured image failed an evaluation ({len(results)} images).{tail}"], kind="ok"))
    else:
        rows = [(r, mf) for r in failing for mf in r.metric_failures]
        doc.add(Paragraph([f"{len(failing)} of {len(results)} images failed {n_failed} evaluations "
                           f"({len(rows)} failing metrics), by detector and exposure start."], kind="fail"))
        table = []
        previous = None
        for r, mf in rows[:MAX_FAILURE_ROWS]:
            rec = r.record
            if rec.id != previous:
                name = rec.filename + (f" (reprocess {rec.reprocess_number})" if rec.reprocess_number else "")
                lead = [Cell(name, code=True), rec.detector or "—"]
            else:
                lead = ["", ""]
            previous = rec.id
            standards = "; ".join(f"{ev} {text}" for ev, _, text in mf.standards)
            table.append(lead + [mf.monitor, Cell(mf.metric, code=True), mf.where,
                                 Cell(_value_text(mf.worst), fail=True), standards, mf.how_much])
        doc.add(Table(["Image", "Detector", "Monitor", "Metric", "Scale / amps", "Value", "Standards violated",
                       "By how much"], table,
                      caption="One row per failing metric: every evaluator it fails, and how far the value lies "
                              "beyond the absolute limit it violates most (else the first relative standard)."))
        if len(rows) > MAX_FAILURE_ROWS:
            doc.add(Paragraph([f"... and {len(rows) - MAX_FAILURE_ROWS} more failing metrics."], kind="note"))

    doc.add(Heading(2, "Images that could not be measured", "unmeasured"))
    if unmeasured:
        rows = [[Cell(r.record.filename, code=True), r.record.detector or "—", monitor or "all monitors",
                 Cell(error, fail=True)] for r in unmeasured for monitor, error in r.errors]
        doc.add(Table(["Image", "Detector", "Monitor", "Error"], rows))
    else:
        doc.add(Paragraph(["Every image was measured by every monitor."], kind="ok"))

    # Root cause: the reference files of the failing images.
    doc.add(Heading(2, "Root cause: reference files of the failing images", "root-cause"))
    bad = [r for r in results if r.record.id in data.per_file_refs and (r.rows or r.n_failed > 0 or r.unmeasured)]
    if not bad:
        doc.add(Paragraph(["No failing image."], kind="note"))
    else:
        suspects = [u for u in data.all_refs if u.failed]
        if suspects:
            doc.add(Paragraph([f"{len(suspects)} reference file{'s' if len(suspects) != 1 else ''} that calibrated "
                               "failing images failed {0} own checks:".format("their" if len(suspects) != 1 else "its")],
                              kind="fail"))
            doc.add(BulletList([
                [f"{u.reftype} ", _ref_cell(u, ext, up), ": ", Cell(u.verdict(), fail=True),
                 f"; calibrated {len(u.images)} failing image{'s' if len(u.images) != 1 else ''} "
                 f"({', '.join(u.detectors)})"] for u in suspects]))
        else:
            doc.add(Paragraph(["None of the reference files of the failing images failed its own checks "
                               "(or RDMT does not monitor them)."], kind="note"))
        doc.add(Paragraph(["Each failing image with the reference files that calibrated it (from its header) and "
                           "its CRDS context: reference files that failed their own checks first, then the types "
                           "that affect the failing monitors. Linked files have an RDMT report."], kind="note"))
        items = []
        for r in bad:
            rec = r.record
            monitors = ", ".join(r.failing_monitors) or ("not measured" if r.unmeasured else "—")
            item = [Cell(rec.filename, code=True), f" ({rec.detector or '—'}; failing: {monitors}; CRDS context ",
                    Cell(rec.crds_context or "unknown", code=bool(rec.crds_context)), "): "]
            uses = data.per_file_refs.get(rec.id, [])
            if not uses:
                item.append("no reference files in its header")
            for k, u in enumerate(uses):
                item += [("; " if k else "") + f"{u.reftype} ", _ref_cell(u, ext, up), " ",
                         Cell(_short_verdict(u), fail=u.failed)]
            items.append(item)
        doc.add(BulletList(items))

    # Per detector.
    doc.add(Heading(2, "Detectors", "detectors"))
    if results:
        by_detector: dict[str, list[FileResult]] = {}
        for r in results:
            by_detector.setdefault(r.record.detector, []).append(r)
        known = [d for d in DETECTORS if d in by_detector]
        others = sorted((d for d in by_detector if d not in DETECTORS), key=natural_key)
        rows = []
        for d in known + others:
            rs = by_detector[d]
            rows.append([d or "—", str(len(rs))] + [_detector_cell(rs, m) for m in data.monitors])
        doc.add(Table(["Detector", "Images"] + data.monitors, rows,
                      caption="Per monitor: pass (images), images failing (failed evaluations), or errors."))
    else:
        doc.add(Paragraph(["No measured images on this day."], kind="note"))

    # Trends.
    doc.add(Heading(2, "Trends", "trends"))
    doc.add(Paragraph([f"Detector-level values of the last {data.trend_days} days up to {data.day}, one line per "
                       "detector (the newest measured version of each image). Red rings: values failing an "
                       "evaluator; dashed orange: SOC limits; dotted red: mission limits."], kind="note"))
    for monitor, metric, title in TREND_METRICS:
        if metric in images:
            doc.add(Image(images[metric], f"{title} per detector"))
    doc.add(Paragraph([f"Generated by RDMT-Dagster on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
                       "Values are rounded to 4 significant digits."], kind="note"))
    return doc


def _trend_images(data: _DayData, folder: Path) -> dict[str, str]:
    end = datetime.combine(date.fromisoformat(data.day) + timedelta(days=1), time())
    start = end - timedelta(days=max(1, data.trend_days))
    out = {}
    for monitor, metric, title in TREND_METRICS:
        series = data.trends.get((monitor, metric), {})
        unit = next((p.unit for ps in series.values() for p in ps if p.unit), "")
        path = folder / f"trend_{_UNSAFE.sub('_', metric)}.png"
        trend_figure(path, f"{title} ({monitor})", unit, series, data.limits.get((monitor, metric), []), start, end)
        out[metric] = path.name
    return out


def write_l2_day_pages(database, days, site, *, trend_days: int = 14) -> dict[str, Path]:
    """Write ``<site>/l2/<day>/index.html`` and ``index.md`` (and trend PNGs) for each of ``days``.

    Parameters
    ----------
    database : rdmt_dagster.storage.database.Database
    days : iterable of str
        Observation days, ``YYYY-MM-DD`` (the L2 partitions).
    site : path-like
        The report site (``<home>/reports``).
    trend_days : int
        Days shown by the trend plots, ending with each day.

    Returns
    -------
    dict
        day -> the HTML page. The site's index is rewritten to list the days.
    """
    out = {}
    for day in dict.fromkeys(days):
        folder = day_folder(site, day)
        with database.engine.connect() as conn:
            data = _load_day(conn, day, trend_days)
        folder.mkdir(parents=True, exist_ok=True)
        images = _trend_images(data, folder)
        changes = sorted(p.stem for p in folder.glob("changes-*.html"))
        _write_text(folder / INDEX_MD, to_markdown(_day_document(data, "md", images, changes)))
        out[day] = _write_text(folder / INDEX_HTML, _html(_day_document(data, "html", images, changes)))
    write_index(database, site)
    return out


# -- reprocessing changes ----------------------------------------------------------------

def _verdict_text(n_failed: int, n: int, scale: str) -> str:
    """``pass``, ``FAIL (3 of 32 amps)``, or ``not evaluated`` when no region was evaluated (never a pass)."""
    if n == 0:
        return "not evaluated"
    if n_failed == 0:
        return "pass"
    if scale == "detector" or n <= 1:
        return "FAIL"
    return f"FAIL ({n_failed} of {n} {'amps' if scale == 'amp' else scale + 's'})"


def _verdict_cell(text: str) -> Cell:
    return Cell(text, fail=text.startswith("FAIL"), muted=text == "not evaluated")


def _relative(before, after) -> float:
    if before is None or after is None or math.isnan(before) or math.isnan(after):
        return math.inf if (before is None or math.isnan(before)) != (after is None or math.isnan(after)) else 0.0
    if before == after:
        return 0.0
    return abs(after - before) / abs(before) if before else math.inf


def _batch_name(files: list[lq.L2FileRecord]) -> str:
    batches = [r.claimed_by for r in files if r.claimed_by]
    name = batches[0] if batches else str(files[0].id)
    name = _UNSAFE.sub("_", name)[:80].strip(".") or str(files[0].id)
    return name


def write_l2_changes(database, file_ids, site) -> Path | None:
    """Compare reprocessed images with their previous version; ``<site>/l2/<day>/changes-<batch>.html`` (+ .md).

    Among ``file_ids`` (``l2_file`` ids) the files with reprocess number > 0
    are compared with the newest measured earlier reprocess number of the same
    image: every detector-scale metric and the verdict of every evaluator
    (failing regions). Changed verdicts come first, then the metrics, largest
    relative change first. The page goes under the observation day of the
    first reprocessed file and is named after the batch that claimed them
    (or the first id).

    Returns the HTML page, or None when none of ``file_ids`` is a reprocessing.
    """
    with database.engine.connect() as conn:
        files = [r for r in lq.files_by_id(conn, file_ids) if r.reprocess_number > 0]
        if not files:
            return None
        previous = lq.previous_versions(conn, files)
        both = [r.id for r in files] + [p.id for p in previous.values()]
        values = lq.detector_values(conn, both)
        verdicts = lq.verdicts(conn, both)
        meas = lq.measurements(conn, both)
    days = sorted({r.observation_day for r in files if r.observation_day and DAY.fullmatch(r.observation_day)})
    day = next((r.observation_day for r in files if r.observation_day in days), None) or (
        days[0] if days else datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    folder = day_folder(site, day)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"changes-{_batch_name(files)}"

    verdict_rows, metric_rows, status_rows, unchanged, missing = [], [], [], 0, []
    for r in files:
        p = previous.get(r.id)
        if p is None:
            missing.append(r)
            continue
        label = (r, p)
        old_status = {m.monitor: m for m in meas.get(p.id, [])}
        new_status = {m.monitor: m for m in meas.get(r.id, [])}
        for monitor in _monitor_sorted(set(old_status) | set(new_status)):
            a, b = old_status.get(monitor), new_status.get(monitor)
            sa_, sb = (a.status if a else "not run"), (b.status if b else "not run")
            if sa_ != sb:
                status_rows.append((label, monitor, sa_, sb, scrub(b.error) if b is not None and b.error else ""))
        old_v, new_v = verdicts.get(p.id, {}), verdicts.get(r.id, {})
        for key in sorted(set(old_v) | set(new_v)):
            monitor, metric, evaluator = key
            before, after = old_v.get(key), new_v.get(key)
            if before is None or after is None:
                continue
            scale = split_metric(metric)[0]
            text_before, text_after = _verdict_text(*before, scale), _verdict_text(*after, scale)
            if text_before == text_after:
                continue
            verdict_rows.append((label, monitor, metric, evaluator, text_before, text_after, after[0] - before[0]))
        old_m, new_m = values.get(p.id, {}), values.get(r.id, {})
        for key in sorted(set(old_m) | set(new_m)):
            before, unit_b = old_m.get(key, (None, ""))
            after, unit_a = new_m.get(key, (None, ""))
            rel = _relative(before, after)
            if rel == 0.0:
                unchanged += 1
                continue
            metric_rows.append((label, key[0], key[1], before, after, unit_a or unit_b, rel))
    verdict_rows.sort(key=lambda x: (x[6] <= 0, -abs(x[6])))
    metric_rows.sort(key=lambda x: -x[6])

    def document(ext: str) -> Document:
        doc = Document(f"RDMT L2 reprocessing: what changed ({stem.removeprefix('changes-')})")
        other = f"{stem}.{'md' if ext == 'html' else 'html'}"
        doc.add(Paragraph([Cell(f"← day page {day}", href=f"{INDEX_HTML if ext == 'html' else INDEX_MD}"),
                           "  ·  ", Cell("all reports", href=f"../../index.{ext}"), "  ·  other format: ",
                           Cell(other, href=other)], kind="note"))
        compared = len(files) - len(missing)
        doc.add(Table(["Item", "Value"], [
            ["Reprocessed images", str(len(files))],
            ["Compared with an earlier version", str(compared)],
            ["Observation days", ", ".join(days) or "—"],
            ["Changed verdicts", Cell(str(len(verdict_rows)), fail=any(x[6] > 0 for x in verdict_rows))],
            ["Changed detector-level values", str(len(metric_rows))],
            ["Unchanged detector-level values", str(unchanged)],
        ]))

        def who(label) -> list:
            r, p = label
            return [Cell(r.filename, code=True), r.detector or "—", f"{p.reprocess_number} → {r.reprocess_number}"]

        doc.add(Heading(2, "Verdicts that changed", "verdicts"))
        if verdict_rows:
            doc.add(Table(["Image", "Detector", "Reprocess", "Monitor", "Metric", "Evaluator", "Before", "After"],
                          [who(lbl) + [m, Cell(metric, code=True), ev, _verdict_cell(b), _verdict_cell(a)]
                           for lbl, m, metric, ev, b, a, _ in verdict_rows],
                          caption="Newly failing first."))
        else:
            doc.add(Paragraph(["No evaluator changed its verdict."], kind="ok"))
        if status_rows:
            doc.add(Heading(2, "Monitors that changed status", "status"))
            doc.add(Table(["Image", "Detector", "Reprocess", "Monitor", "Before", "After", "Error"],
                          [who(lbl) + [m, b, Cell(a, fail=a == "error"), err or "—"]
                           for lbl, m, b, a, err in status_rows]))
        doc.add(Heading(2, "Detector-level values that changed", "values"))
        if metric_rows:
            rows = []
            for lbl, monitor, metric, before, after, unit, rel in metric_rows:
                diff = (after - before) if before is not None and after is not None else None
                rel_text = "—" if math.isinf(rel) else f"{(diff / abs(before)) * 100:+.3g}%"
                rows.append(who(lbl) + [monitor, Cell(metric, code=True), fmt_value(before), fmt_value(after),
                                        unit or "—", _signed(diff) if diff is not None and not math.isnan(diff)
                                        else "—", rel_text])
            doc.add(Table(["Image", "Detector", "Reprocess", "Monitor", "Metric", "Before", "After", "Unit",
                           "Change", "Relative"], rows, caption="Largest relative change first."))
        else:
            doc.add(Paragraph(["No detector-level value changed."], kind="ok"))
        if missing:
            doc.add(Paragraph(["Not compared (no measured earlier version): "
                               + ", ".join(r.filename for r in missing)], kind="note"))
        doc.add(Paragraph([f"Generated by RDMT-Dagster on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC."],
                          kind="note"))
        return doc

    _write_text(folder / f"{stem}.md", to_markdown(document("md")))
    return _write_text(folder / f"{stem}.html", _html(document("html")))
