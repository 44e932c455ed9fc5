"""Per-file reports and the index of the public report site.

Layout of ``<home>/reports/`` (publishable as is: relative links only, file
names only, no paths, hosts or credentials)::

    index.html, index.md                      every report, newest USEAFTER first; the L2 day pages
    <file name>/report.html, report.md        one reference file
    <file name>/superpixel_<metric>.png       32x32 map per super-pixel metric
    <file name>/trend_<metric>.png            detector value over the deliveries
    l2/<day>/...                              the L2 images of a day (`rdmt_dagster.reports.l2_page`)

A report follows Roman-STScI-000704 section 4.3: failures first, then the
detector metrics with each evaluator's standard and verdict (Table 1), one
amp table per metric (Table 2) and the super-pixel maps (Figure 3), plus a
trend plot of each detector-level metric.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from ..science.scales import N_AMPS, N_SUPERPIXELS
from . import queries as q
from .document import Cell, Details, Document, Filters, Heading, Image, Paragraph, Table, to_html, to_markdown
from .escape import plain_text
from .formatting import (
    FAIL,
    NOT_EVALUATED,
    Failure,
    FailureGroup,
    VerdictSummary,
    absolute_limits,
    change_allowance,
    change_reference_file,
    count_by_evaluator,
    describe_standard,
    evaluator_kind,
    evaluator_sort_key,
    fmt_percent,
    fmt_value,
    group_failures,
    natural_key,
    scrub,
    split_metric,
    summarise_verdicts,
    trend_reference_files,
    trend_stats,
    verdict,
    worst_group,
)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
INDEX_MD = "index.md"
INDEX_HTML = "index.html"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def report_folder_name(filename: str) -> str:
    """The report folder of a reference file: its name with unsafe characters replaced."""
    name = _UNSAFE.sub("_", Path(filename).name)
    return name if name not in ("", ".", "..") else "_" + name


def _figure_file(folder: Path, stem: str) -> Path:
    """Where a figure of a report goes: its stem (from metric names) with unsafe characters replaced.

    Metric names come from the database; a ``/`` or ``..`` in one must not
    write outside the report folder or make an odd link.
    """
    return Path(folder) / f"{_UNSAFE.sub('_', stem)}.png"


def report_relative_path(filename: str, fmt: str = "html") -> str:
    """Path of a file's report relative to the site root (``<file>/report.html``)."""
    return f"{report_folder_name(filename)}/{REPORT_HTML if fmt == 'html' else REPORT_MD}"


@dataclass(frozen=True)
class ReportPaths:
    """What `write_file_report` wrote."""

    filename: str
    folder: Path
    markdown: Path
    html: Path
    images: tuple[Path, ...]
    n_failed: int
    seconds: float = 0.0

    @property
    def relative_html(self) -> str:
        return f"{self.folder.name}/{self.html.name}"

    @property
    def relative_markdown(self) -> str:
        return f"{self.folder.name}/{self.markdown.name}"


# -- data of one report -----------------------------------------------------

@dataclass
class _MetricData:
    base: str
    unit: str
    detector: float | None = None
    amp: np.ndarray | None = None
    superpixel: np.ndarray | None = None


@dataclass
class _ReportData:
    record: q.FileRecord
    run: q.RunRecord | None
    metrics: list[_MetricData]
    detector_evals: dict[tuple[str, str], q.EvaluationRow]
    failed_regions: dict[str, dict[int, list[str]]]  # full metric -> region -> failing evaluators
    failures: list[Failure]
    evaluators: list[str]
    block: dict
    history_files: list[q.FileRecord]
    history_values: dict[str, dict[int, float | None]]
    change_file: str | None
    notes: dict[str, str] = field(default_factory=dict)
    groups: list[FailureGroup] = field(default_factory=list)
    verdicts: VerdictSummary = field(default_factory=VerdictSummary)
    trend_files: list[str] = field(default_factory=list)

    def params(self, base: str, scale: str, evaluator: str) -> dict:
        spec = (self.block.get("metrics") or {}).get(base) or {}
        params = spec.get(evaluator)
        per_scale = (spec.get("scales") or {}).get(scale) or {}
        if evaluator in per_scale:
            if per_scale[evaluator] is None:
                return {}
            params = {**(params or {}), **per_scale[evaluator]}
        return dict(params) if isinstance(params, dict) else {}

    def kind(self, base: str, scale: str, evaluator: str) -> str:
        return evaluator_kind(evaluator, self.params(base, scale, evaluator))


def _metric_data(values) -> list[_MetricData]:
    """The file's metric values, one `_MetricData` per base metric, in natural order."""
    by_base: dict[str, _MetricData] = {}
    grouped: dict[tuple[str, str], dict[int, float | None]] = {}
    for metric, scale, region, value, unit in values:
        base = metric[len(scale) + 1 :] if metric.startswith(scale + "_") else metric
        by_base.setdefault(base, _MetricData(base, unit))
        grouped.setdefault((base, scale), {})[region] = value
    for (base, scale), regions in grouped.items():
        data = by_base[base]
        if scale == "detector":
            data.detector = np.nan if regions.get(0) is None else float(regions[0])
        elif scale in ("amp", "superpixel"):
            ids = range(1, N_AMPS + 1) if scale == "amp" else range(N_SUPERPIXELS)
            arr = np.array([np.nan if regions.get(i) is None else regions[i] for i in ids], dtype=np.float64)
            setattr(data, scale, arr)
    return sorted(by_base.values(), key=lambda m: natural_key(m.base))


def _region_value(data: _MetricData | None, scale: str, region: int) -> float | None:
    if data is None:
        return None
    if scale == "detector":
        return data.detector
    arr = getattr(data, scale, None)
    if arr is None:
        return None
    index = region - 1 if scale == "amp" else region
    return float(arr[index]) if 0 <= index < arr.size else None


def _load(database, filename: str) -> _ReportData:
    with database.engine.connect() as conn:
        record = q.file_record(conn, filename)
        if record is None:
            raise KeyError(f"{filename} is not in the database")
        run = q.latest_run(conn, record.id)
        values = q.metric_values(conn, record.id) if record.status == "ok" else []
        evals = q.report_evaluations(conn, record.id, run.standards_hash) if run else []
        block = q.standards_block(conn, run.standards_hash, record.monitor) if run else {}
        counts = q.verdict_counts(conn, record.id, run.standards_hash) if run else []
        history_files, history_values = (
            q.detector_history(conn, record) if record.status == "ok" else ([], {})
        )
        metrics = _metric_data(values)
        by_base = {m.base: m for m in metrics}
        data = _ReportData(
            record=record, run=run, metrics=metrics, detector_evals={}, failed_regions={}, failures=[],
            evaluators=[], block=block, history_files=history_files, history_values=history_values,
            change_file=change_reference_file(run.compared_with) if run else None,
            trend_files=trend_reference_files(run.compared_with) if run else [],
        )
        evaluators: set[str] = set()
        for row in evals:
            scale, base = split_metric(row.metric)
            evaluators.add(row.evaluator)
            if scale == "detector":
                data.detector_evals[(base, row.evaluator)] = row
            if row.passed is None or row.passed:  # "not evaluated" is no failure either
                continue
            data.failed_regions.setdefault(row.metric, {}).setdefault(row.region, []).append(row.evaluator)
            metric = by_base.get(base)
            data.failures.append(Failure(row.metric, scale, row.region, _region_value(metric, scale, row.region),
                                         metric.unit if metric else "", row.evaluator, row.threshold, row.lower,
                                         row.reference))
        data.evaluators = sorted(evaluators, key=evaluator_sort_key)
        # Grouped while the connection is open: a trend failure reads its earlier values to tell its sigma.
        data.groups = group_failures(data.failures, data.params, data.change_file,
                                     q.trend_lookup(conn, run.compared_with) if run else None)
    data.verdicts = summarise_verdicts(counts)
    for note in (run.notes if run else []):
        name, _, text = note.partition(":")
        data.notes[name.strip()] = scrub(text.strip())
    return data


# -- figures --------------------------------------------------------------------

def _figures(data: _ReportData, folder: Path) -> dict[str, Path]:
    from . import plots

    out: dict[str, Path] = {}
    for m in data.metrics:
        if m.superpixel is not None:
            metric = f"superpixel_{m.base}"
            failing = np.zeros(N_SUPERPIXELS, dtype=bool)
            regions = list(data.failed_regions.get(metric, {}))
            if regions:
                failing[np.asarray(regions, dtype=np.int64)] = True
            out[metric] = plots.superpixel_map(_figure_file(folder, metric), m.superpixel, failing, metric, m.unit)
    for m in data.metrics:
        metric = f"detector_{m.base}"
        if m.detector is None and metric not in data.history_values:
            continue
        values_by_file = data.history_values.get(metric, {})
        files = [f for f in data.history_files if f.id in values_by_file or f.id == data.record.id]
        values = [m.detector if f.id == data.record.id else values_by_file.get(f.id) for f in files]
        dates = [f.useafter for f in files]
        use_dates = bool(dates) and all(d is not None for d in dates)
        x_of = {f.filename: (f.useafter if use_dates else i + 1) for i, f in enumerate(files)}
        limits = [plots.Limit(ev, side, value) for ev, side, value in absolute_limits(data.params, m.base)]
        change, trend = _bands(data, m, files, values, x_of)
        out[metric + "@trend"] = plots.trend_plot(
            _figure_file(folder, f"trend_{m.base}"), dates, values, metric, m.unit, metric in data.failed_regions,
            limits=limits, change=change, trend=trend)
    return out


def _bands(data: _ReportData, m: _MetricData, files, values, x_of: dict):
    """The change evaluator's allowed range around the previous value, and the trend evaluator's.

    Drawn only where the evaluator ran (a reference value is stored) and,
    for the trend, where the median rebuilt from the plotted earlier values
    is the stored one.
    """
    from . import plots

    if not files or m.detector is None:
        return None, None
    here = x_of.get(data.record.filename)
    value_of = dict(zip((f.filename for f in files), values))
    change = trend = None
    for ev in data.evaluators:
        e = data.detector_evals.get((m.base, ev))
        params = data.params(m.base, "detector", ev)
        kind = evaluator_kind(ev, params)
        if e is None or verdict(e.passed) == NOT_EVALUATED:
            continue
        if kind == "change" and change is None:
            params = {"tolerance": e.threshold or 0.0, **params}
            allowed = change_allowance(params, m.detector, e.reference)
            previous = x_of.get(data.change_file) if data.change_file else None
            if previous is None and len(files) > 1:
                previous = x_of.get(files[-2].filename)
            label = f"{ev}: previous ±{fmt_percent(float(params['tolerance']), signed=False)}"
            if params.get("poisson_nsigma") or params.get("floor"):
                label += " + allowances"
            change = plots.Band(previous if previous is not None else here, here, e.reference - allowed,
                                e.reference + allowed, label)
        elif kind == "trend" and trend is None and data.trend_files:
            stats = trend_stats([value_of.get(name) for name in data.trend_files], params)
            if stats is None or not math.isclose(stats.median, e.reference, rel_tol=1e-9, abs_tol=1e-300):
                continue
            limit = float(params.get("limit", e.threshold or 0.0))
            first = x_of.get(data.trend_files[0], here)
            trend = plots.Band(first, here, stats.median - limit * stats.sigma, stats.median + limit * stats.sigma,
                               f"{ev}: median ± {limit:g} σ of the last {stats.n}", centre=stats.median)
    return change, trend


# -- document -------------------------------------------------------------------

def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _evaluations_cell(data: _ReportData) -> Cell | str:
    v, run = data.verdicts, data.run
    if run is None:
        return "not evaluated"
    # Counted from the evaluations themselves (a "not evaluated" is never a pass); the run's own
    # count of failures is the one the notification quotes.
    n_failed = run.n_failed
    parts = [f"{n_failed} failed", f"{v.n_passed} passed"]
    if v.n_not_evaluated:
        parts.append(f"{v.n_not_evaluated} not evaluated")
    return Cell(", ".join(parts) + f" (of {run.n_evaluations})", fail=n_failed > 0)


def _summary_table(data: _ReportData) -> Table:
    r, run = data.record, data.run
    rows = [
        ["File", Cell(r.filename, code=True)],
        ["Detector", r.detector or "—"],
        ["Monitor", f"{r.monitor or '—'} (version {run.monitor_version if run else r.monitor_version or '—'})"],
        ["Reference type", r.reftype or "—"],
        ["USEAFTER", _fmt_time(r.useafter)],
        ["Evaluated (UTC)", _fmt_time(run.evaluated_at) if run else "not evaluated"],
        ["Standards", Cell(run.standards_hash, code=True) if run else "—"],
        ["Compared with (change)", Cell(data.change_file, code=True) if data.change_file else "no previous file"],
        ["Evaluations", _evaluations_cell(data)],
    ]
    return Table(["Item", "Value"], rows)


def _failures_section(doc: Document, data: _ReportData) -> None:
    r, run = data.record, data.run
    doc.add(Heading(2, "Failures", "failures"))
    if r.status == "error":
        doc.add(Paragraph([f"This file could not be monitored: {scrub(r.error, os.path.dirname(r.path) + os.sep)}"],
                          kind="fail"))
    elif run is None:
        doc.add(Paragraph(["This file has not been evaluated yet."], kind="note"))
    elif data.groups:
        groups = data.groups
        worst = worst_group(groups)
        doc.add(Paragraph([f"{run.n_failed} failed evaluations in {len(groups)} metric/evaluator pairs. "
                           f"Worst: {worst.phrase}."], kind="fail"))
        rows = [[Cell(g.metric, code=True), Cell(g.evaluator, fail=True), g.where, g.value_text,
                 Cell(g.size, fail=True), g.standard] for g in groups]
        doc.add(Table(["Metric", "Evaluator", "Failing regions", "Value (worst region)", "How far off",
                       "Standard (worst region)"], rows,
                      caption="How far off: the worst region's distance from the standard it failed."))
    else:
        ran = data.verdicts.n_passed + data.verdicts.n_failed
        text = (f"All {run.n_evaluations} evaluations passed." if not data.verdicts.n_not_evaluated
                else f"All {ran} evaluations that ran passed.")
        doc.add(Paragraph([text], kind="ok"))
    if run is not None and data.verdicts.n_not_evaluated:
        why = "; ".join(f"{name}: {text}" for name, text in sorted(data.notes.items(),
                                                                  key=lambda kv: evaluator_sort_key(kv[0])))
        doc.add(Paragraph([Cell(f"Not evaluated (neither passed nor failed): {data.verdicts.not_evaluated_text()}"
                                + (f" ({why})" if why else "") + ".", muted=True)]))


def _detector_cell(data: _ReportData, m: _MetricData, ev: str) -> Cell | str:
    e = data.detector_evals.get((m.base, ev))
    if e is None:
        return "—"
    params = data.params(m.base, "detector", ev)
    kind = evaluator_kind(ev, params)
    state = verdict(e.passed)
    if state == NOT_EVALUATED:
        reason = data.notes.get(ev) or ("no previous file" if kind == "change" else "not enough history")
        return Cell(f"not evaluated ({reason})", muted=True)
    text = describe_standard(kind, params, e.threshold, e.lower, e.reference,
                             data.change_file if kind == "change" else None, "", value=m.detector, passed=e.passed)
    return Cell(f"{text}: {state}", fail=state == FAIL)


def _detector_section(doc: Document, data: _ReportData) -> None:
    doc.add(Heading(2, "Detector metrics", "detector"))
    header = ["Metric", "Value", "Unit"] + list(data.evaluators)
    rows = []
    for m in data.metrics:
        if m.detector is None:
            continue
        metric = f"detector_{m.base}"
        row = [Cell(metric, code=True), Cell(fmt_value(m.detector), fail=bool(data.failed_regions.get(metric))),
               m.unit]
        rows.append(row + [_detector_cell(data, m, ev) for ev in data.evaluators])
    doc.add(Table(header, rows, caption="Each evaluator's standard and verdict; failing entries are highlighted, "
                                        "evaluators that could not run say why."))


def _map_section(doc: Document, data: _ReportData, images: dict[str, Path]) -> None:
    from .plots import MAP_CSS

    sp_metrics = [m for m in data.metrics if m.superpixel is not None]
    if not sp_metrics:
        return
    doc.add(Heading(2, "Super-pixel maps", "superpixels"))
    doc.add(Paragraph(["32×32 super-pixels of 128×128 pixels; each column is one amplifier (white lines), "
                       "row 0 at the bottom. Red outlines mark super-pixels failing any evaluator."], kind="note"))
    for m in sp_metrics:
        metric = f"superpixel_{m.base}"
        failing = [f for f in data.failures if f.metric == metric]
        if failing:
            counts = ", ".join(f"{ev} {n}" for ev, n in count_by_evaluator(failing).items())
            n = len(data.failed_regions.get(metric, {}))
            caption = f"{metric}: {n} of {N_SUPERPIXELS} super-pixels fail ({counts})."
        else:
            caption = f"{metric}: no super-pixel fails."
        if metric in images:
            doc.add(Image(images[metric].name, metric, caption, *MAP_CSS))


def _trend_section(doc: Document, data: _ReportData, images: dict[str, Path]) -> None:
    from .plots import TREND_CSS

    trend = [m for m in data.metrics if f"detector_{m.base}@trend" in images]
    if not trend:
        return
    r = data.record
    doc.add(Heading(2, "Trends", "trends"))
    doc.add(Paragraph([f"Detector-level values of the last {len(data.history_files)} {r.monitor} files of "
                       f"{r.detector} by USEAFTER; the star is this file (red when it failed). Shaded: the range "
                       "the change evaluator allowed around the previous file (blue) and the trend evaluator's "
                       "median ± limit σ (purple); lines: mission (dotted red) and SOC (dashed orange) limits, "
                       "named in the legend when far off the values."], kind="note"))
    for m in trend:
        doc.add(Image(images[f"detector_{m.base}@trend"].name, f"detector_{m.base} trend", "", *TREND_CSS))


def _amp_section(doc: Document, data: _ReportData) -> None:
    """Seed Table 2 (4 column pairs of Amp / Value), folded: the failing amps are named under Failures."""
    amp_metrics = [m for m in data.metrics if m.amp is not None]
    if not amp_metrics:
        return
    doc.add(Heading(2, "Amplifier metrics", "amps"))
    n_failing = sum(1 for m in amp_metrics if data.failed_regions.get(f"amp_{m.base}"))
    summary = f"{len(amp_metrics)} tables of {N_AMPS} amps" + (
        f", {n_failing} with failing amps" if n_failing else ", no failing amp")
    blocks = []
    for m in amp_metrics:
        metric = f"amp_{m.base}"
        failing = data.failed_regions.get(metric, {})
        blocks.append(Heading(3, f"{metric} ({m.unit})" if m.unit else metric))
        rows = []
        per_col = N_AMPS // 4
        for i in range(1, per_col + 1):
            row = []
            for c in range(4):
                amp = i + c * per_col
                row += [str(amp), Cell(fmt_value(m.amp[amp - 1]), fail=amp in failing)]
            rows.append(row)
        blocks.append(Table(["Amp", "Value"] * 4, rows, kind="amps"))
        if failing:
            blocks.append(Paragraph(["Failing amps: " + "; ".join(
                f"{amp} ({', '.join(sorted(evs, key=evaluator_sort_key))})" for amp, evs in sorted(failing.items()))],
                kind="fail"))
    doc.add(Details(summary, blocks))


def _document(data: _ReportData, ext: str, images: dict[str, Path]) -> Document:
    r = data.record
    doc = Document(f"RDMT report: {r.filename}")
    doc.add(Paragraph([Cell("← all reports", href=f"../index.{ext}"), "  ·  other format: ",
                       Cell(REPORT_MD if ext == "html" else REPORT_HTML,
                            href=REPORT_MD if ext == "html" else REPORT_HTML)], kind="note"))
    doc.add(_summary_table(data))
    _failures_section(doc, data)  # failures first
    if not data.metrics:
        return doc
    _detector_section(doc, data)  # seed Table 1
    _map_section(doc, data, images)  # seed Figure 3
    _trend_section(doc, data, images)
    _amp_section(doc, data)  # seed Table 2, folded below the figures
    doc.add(Paragraph([f"Generated by RDMT-Dagster on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
                       "Values are rounded to 4 significant digits."], kind="note"))
    return doc


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_file_report(database, filename: str, out_dir) -> ReportPaths:
    """Write the Markdown and HTML report (and figures) of one reference file.

    Parameters
    ----------
    database : rdmt_dagster.storage.database.Database
    filename : str
        The file's name as registered (the partition key).
    out_dir : path-like
        The report site (``<home>/reports``); the report goes in ``out_dir/<filename>/``.
    """
    start = time.perf_counter()
    data = _load(database, filename)
    folder = Path(out_dir) / report_folder_name(filename)
    folder.mkdir(parents=True, exist_ok=True)
    images = _figures(data, folder)
    keep = {p.name for p in images.values()}
    for stale in folder.glob("*.png"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    md = _write_text(folder / REPORT_MD, to_markdown(_document(data, "md", images)))
    html = _write_text(folder / REPORT_HTML, to_html(_document(data, "html", images)))
    return ReportPaths(filename, folder, md, html, tuple(images.values()),
                       data.run.n_failed if data.run else 0, time.perf_counter() - start)


#: the index's filter (`rdmt_dagster.reports.document.Filters`): code of the platform, no data, no
#: external resource, no network (it works from file://). It shows the filter bar (hidden without
#: scripts), hides the rows whose data-* differ from a chosen value, then the delivery tables and
#: headings left empty, and says how many reports show. The choice is kept in the address
#: (``index.html#status=failed&detector=WFI07``), so a filtered view can be bookmarked or sent.
FILTER_SCRIPT = """(function () {
  var form = document.getElementById("filters");
  if (!form) { return; }
  form.hidden = false;
  var selects = form.getElementsByTagName("select");
  var count = document.getElementById("filter-count");
  function fromAddress() {
    var pairs = window.location.hash.replace(/^#/, "").split("&"), i, k;
    for (i = 0; i < pairs.length; i++) {
      var kv = pairs[i].split("=");
      for (k = 0; k < selects.length; k++) {
        if (selects[k].name === kv[0]) {
          var value = decodeURIComponent(kv[1] || "");
          for (var o = 0; o < selects[k].options.length; o++) {
            if (selects[k].options[o].value === value) { selects[k].value = value; }
          }
        }
      }
    }
  }
  function toAddress() {
    var parts = [], k;
    for (k = 0; k < selects.length; k++) {
      if (selects[k].value) { parts.push(selects[k].name + "=" + encodeURIComponent(selects[k].value)); }
    }
    try { history.replaceState(null, "", parts.length ? "#" + parts.join("&") : window.location.pathname); }
    catch (e) { /* some browsers refuse it for pages opened from disk: the filter works without */ }
  }
  function apply() {
    var shown = 0, total = 0, t, i, k;
    var tables = document.querySelectorAll("table.filterable");
    for (t = 0; t < tables.length; t++) {
      var rows = tables[t].tBodies[0].rows, visible = 0;
      for (i = 0; i < rows.length; i++) {
        var ok = true;
        for (k = 0; k < selects.length; k++) {
          var want = selects[k].value;
          if (want && rows[i].getAttribute("data-" + selects[k].name) !== want) { ok = false; }
        }
        rows[i].hidden = !ok;
        total += 1;
        if (ok) { visible += 1; }
      }
      shown += visible;
      tables[t].hidden = visible === 0;
      var heading = tables[t].previousElementSibling;
      if (heading && /^H[2-4]$/.test(heading.tagName)) { heading.hidden = visible === 0; }
    }
    count.textContent = shown + " of " + total + " reports shown";
  }
  form.addEventListener("change", function () { toAddress(); apply(); });
  window.addEventListener("hashchange", function () { fromAddress(); apply(); });
  fromAddress();
  apply();
})();"""

STATUS_FAILED, STATUS_PASSED, STATUS_NOT_EVALUATED, STATUS_ERROR = "failed", "passed", "not evaluated", "error"
STATUS_ORDER = (STATUS_FAILED, STATUS_ERROR, STATUS_NOT_EVALUATED, STATUS_PASSED)
MAX_METRICS_PER_EVALUATOR = 5


def _status(row: q.IndexRow) -> str:
    if row.status == "error":
        return STATUS_ERROR
    if row.n_failed is None:
        return STATUS_NOT_EVALUATED
    return STATUS_FAILED if row.n_failed > 0 else STATUS_PASSED


def _delivery_of(row: q.IndexRow) -> str:
    """The delivery a file came in, or its USEAFTER month where the database does not record deliveries."""
    if row.delivery:
        return f"Delivery {row.delivery}"
    if row.useafter is not None:
        return f"USEAFTER {row.useafter:%Y-%m}"
    return "No USEAFTER"


def _group_by_delivery(rows: list[q.IndexRow]) -> list[tuple[str, list[q.IndexRow]]]:
    """Deliveries newest first (by their newest USEAFTER, then name); in each, failures first, then by detector."""
    groups: dict[str, list[q.IndexRow]] = {}
    for r in rows:
        groups.setdefault(_delivery_of(r), []).append(r)

    def newest(item):
        name, members = item
        dates = [m.useafter for m in members if m.useafter is not None]
        return (bool(dates), max(dates) if dates else datetime.min, natural_key(name))

    ordered = sorted(groups.items(), key=newest, reverse=True)
    for _, members in ordered:
        members.sort(key=lambda r: (STATUS_ORDER.index(_status(r)), natural_key(r.detector or ""),
                                    natural_key(r.monitor or ""), r.filename))
    return ordered


def failed_metrics_text(pairs: list[tuple[str, str]]) -> str:
    """``change: dark_current_mean, dark_current_percentile_50 (+3 more)``: base metric names by evaluator."""
    by_evaluator: dict[str, list[str]] = {}
    for metric, evaluator in pairs:
        base = split_metric(metric)[1]
        names = by_evaluator.setdefault(evaluator, [])
        if base not in names:
            names.append(base)
    parts = []
    for evaluator in sorted(by_evaluator, key=evaluator_sort_key):
        names = sorted(by_evaluator[evaluator], key=natural_key)
        shown = ", ".join(names[:MAX_METRICS_PER_EVALUATOR])
        more = len(names) - MAX_METRICS_PER_EVALUATOR
        parts.append(f"{evaluator}: {shown}" + (f" (+{more} more)" if more > 0 else ""))
    return "; ".join(parts)


def _index_row(r: q.IndexRow, failed: dict[int, list[tuple[str, str]]], ext: str) -> list:
    status = _status(r)
    if status == STATUS_ERROR:
        status_cell, what = Cell("could not be monitored", fail=True), ""
    elif status == STATUS_NOT_EVALUATED:
        status_cell, what = Cell("not evaluated", muted=True), ""
    elif status == STATUS_FAILED:
        status_cell = Cell(f"FAILED ({r.n_failed} evaluations)", fail=True)
        what = failed_metrics_text(failed.get(r.id, []))
    else:
        status_cell, what = Cell("passed"), ""
        if r.n_not_evaluated:
            status_cell = Cell(f"passed ({r.n_not_evaluated} not evaluated)")
    return [r.detector or "—", r.monitor or "—", Cell(r.filename, href=report_relative_path(r.filename, ext)),
            status_cell, what, _fmt_time(r.useafter), _fmt_time(r.evaluated_at)]


def _filters(rows: list[q.IndexRow]) -> Filters:
    types = sorted({r.monitor or "—" for r in rows}, key=natural_key)
    detectors = sorted({r.detector or "—" for r in rows}, key=natural_key)
    statuses = [s for s in STATUS_ORDER if any(_status(r) == s for r in rows)]
    return Filters([("type", "Type", [(t, t) for t in types]),
                    ("detector", "Detector", [(d, d) for d in detectors]),
                    ("status", "Status", [(s, s) for s in statuses])])


def _index_document(rows, failed, l2_days, l2_summaries, ext: str) -> Document:
    doc = Document("RDMT reference-file reports")
    n_fail = sum(1 for r in rows if _status(r) in (STATUS_FAILED, STATUS_ERROR))
    groups = _group_by_delivery(rows)
    by_month = not any(r.delivery for r in rows)
    grouping = ("by USEAFTER month (this database does not record deliveries)" if by_month
                else "by delivery")
    doc.add(Paragraph([f"{len(rows)} reports, {n_fail} with failures; grouped {grouping}, newest first; "
                       "in each, failures first."], kind="note"))
    doc.add(Heading(2, "Reference files", "reference-files"))
    if rows:
        doc.add(_filters(rows))
    for name, members in groups:
        n_bad = sum(1 for r in members if _status(r) in (STATUS_FAILED, STATUS_ERROR))
        doc.add(Heading(3, f"{name}: {len(members)} file{'s' if len(members) != 1 else ''}, {n_bad} failing"))
        doc.add(Table(["Detector", "Type", "Report", "Status", "Failed metrics", "USEAFTER", "Evaluated (UTC)"],
                      [_index_row(r, failed, ext) for r in members], kind="filterable",
                      row_data=[{"type": r.monitor or "—", "detector": r.detector or "—", "status": _status(r)}
                                for r in members]))
    if l2_days:
        _add_l2_days(doc, l2_days, l2_summaries, ext)
    if ext == "html":
        doc.script = FILTER_SCRIPT
    return doc


def write_index(database, out_dir) -> tuple[Path, Path]:
    """Write ``index.html`` and ``index.md``: every report in ``out_dir``, by delivery, newest first.

    Deliveries are ``reference_file.delivery`` when the database records
    it, else the files' USEAFTER month. Each file names its failing metrics;
    the HTML can be filtered by type, detector and status. The L2 day pages
    present under ``out_dir/l2/`` follow, newest day first, with their counts
    of images and failing images.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with database.engine.connect() as conn:
        rows = [r for r in q.index_rows(conn) if (out_dir / report_relative_path(r.filename)).exists()]
        failed = q.failed_metrics(conn, rows)
    l2_days, l2_summaries = _l2_days(database, out_dir)
    paths = []
    for ext, name, render in (("md", INDEX_MD, to_markdown), ("html", INDEX_HTML, to_html)):
        doc = _index_document(rows, failed, l2_days, l2_summaries, ext)
        paths.append(_write_text(out_dir / name, render(doc)))
    return paths[1], paths[0]


def _l2_days(database, out_dir: Path) -> tuple[list[str], dict]:
    """The L2 day pages under ``out_dir/l2/`` (newest first) and their counts from the database (one query)."""
    from .l2_page import present_days
    from .l2_queries import day_summaries

    days = present_days(out_dir)
    if not days:
        return [], {}
    try:
        with database.engine.connect() as conn:
            return days, day_summaries(conn, days)
    except sa.exc.DBAPIError:  # a database without the L2 tables: the pages, without counts
        return days, {}


def _add_l2_days(doc: Document, days: list[str], summaries: dict, ext: str) -> None:
    from .l2_page import day_relative_path

    doc.add(Heading(2, "L2 images by observation day", "l2"))
    rows = []
    for day in days:
        s = summaries.get(day)
        if s is None:
            rows.append([Cell(day, href=day_relative_path(day, ext)), "—", "—", "—"])
            continue
        rows.append([Cell(day, href=day_relative_path(day, ext)), str(s.n_files),
                     Cell(str(s.n_failing), fail=s.n_failing > 0), Cell(str(s.n_errors), fail=s.n_errors > 0)])
    doc.add(Table(["Day", "Images", "Failing images", "Not measurable"], rows,
                  caption="Newest day first; failing images include those that could not be measured."))


def report_task(task: tuple) -> tuple[str, "ReportPaths | None", str | None]:
    """Write one file's report (runs in a worker process): ``(database_url, filename, out_dir)``."""
    from ..resources import open_database

    database_url, name, out_dir = task
    try:
        return name, write_file_report(open_database(database_url), name, out_dir), None
    except Exception as exc:  # one bad report must not stop the others or the notifications
        return name, None, f"{type(exc).__name__}: {scrub(str(exc))}"


def write_reports(database, filenames, out_dir, log=None, workers: int = 1) -> tuple[dict[str, ReportPaths], dict[str, str]]:
    """Reports of several files (in ``workers`` processes) and the index.

    A file whose report fails is logged and skipped.

    Returns
    -------
    (reports, errors)
        filename -> `ReportPaths`, and filename -> error message.
    """
    from ..parallel import process_map

    url = database.engine.url.render_as_string(hide_password=False)
    reports, errors = {}, {}
    for name, paths, error in process_map(report_task, [(url, n, out_dir) for n in filenames], workers):
        if error is None:
            reports[name] = paths
        else:
            errors[name] = error
            if log is not None:
                # One log line per failure, whatever the file name holds.
                log.error(plain_text(f"report of {name} failed: {error}"))
    write_index(database, out_dir)
    return reports, errors
