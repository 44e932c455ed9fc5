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
from .document import BulletList, Cell, Document, Heading, Image, Paragraph, Table, to_html, to_markdown
from .escape import plain_text
from .formatting import (
    Failure,
    change_reference_file,
    count_by_evaluator,
    describe_standard,
    evaluator_kind,
    evaluator_sort_key,
    fmt_value,
    group_failures,
    natural_key,
    scrub,
    split_metric,
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

    def params(self, base: str, scale: str, evaluator: str) -> dict:
        spec = (self.block.get("metrics") or {}).get(base) or {}
        params = spec.get(evaluator)
        per_scale = (spec.get("scales") or {}).get(scale) or {}
        if evaluator in per_scale:
            if per_scale[evaluator] is None:
                return {}
            params = {**(params or {}), **per_scale[evaluator]}
        return dict(params) if isinstance(params, dict) else {}


def _load(database, filename: str) -> _ReportData:
    with database.engine.connect() as conn:
        record = q.file_record(conn, filename)
        if record is None:
            raise KeyError(f"{filename} is not in the database")
        run = q.latest_run(conn, record.id)
        values = q.metric_values(conn, record.id) if record.status == "ok" else []
        evals = q.report_evaluations(conn, record.id, run.standards_hash) if run else []
        block = q.standards_block(conn, run.standards_hash, record.monitor) if run else {}
        history_files, history_values = (
            q.detector_history(conn, record) if record.status == "ok" else ([], {})
        )

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
    metrics = sorted(by_base.values(), key=lambda m: natural_key(m.base))

    detector_evals: dict[tuple[str, str], q.EvaluationRow] = {}
    failed_regions: dict[str, dict[int, list[str]]] = {}
    failures: list[Failure] = []
    evaluators: set[str] = set()
    for row in evals:
        scale, base = split_metric(row.metric)
        evaluators.add(row.evaluator)
        if scale == "detector":
            detector_evals[(base, row.evaluator)] = row
        if row.passed:
            continue
        failed_regions.setdefault(row.metric, {}).setdefault(row.region, []).append(row.evaluator)
        data = by_base.get(base)
        value = None
        if data is not None:
            if scale == "detector":
                value = data.detector
            elif getattr(data, scale, None) is not None:
                arr = getattr(data, scale)
                index = row.region - 1 if scale == "amp" else row.region
                value = float(arr[index]) if 0 <= index < arr.size else None
        failures.append(Failure(row.metric, scale, row.region, value, data.unit if data else "", row.evaluator,
                                row.threshold, row.lower, row.reference))
    notes = {}
    for note in (run.notes if run else []):
        name, _, text = note.partition(":")
        notes[name.strip()] = scrub(text.strip())
    return _ReportData(
        record=record, run=run, metrics=metrics, detector_evals=detector_evals, failed_regions=failed_regions,
        failures=failures, evaluators=sorted(evaluators, key=evaluator_sort_key), block=block,
        history_files=history_files, history_values=history_values,
        change_file=change_reference_file(run.compared_with) if run else None, notes=notes,
    )


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
    by_id = data.history_values
    for m in data.metrics:
        if m.detector is None and f"detector_{m.base}" not in by_id:
            continue
        metric = f"detector_{m.base}"
        values_by_file = by_id.get(metric, {})
        files = [f for f in data.history_files if f.id in values_by_file or f.id == data.record.id]
        dates = [f.useafter for f in files]
        values = [m.detector if f.id == data.record.id else values_by_file.get(f.id) for f in files]
        failed = metric in data.failed_regions
        out[metric + "@trend"] = plots.trend_plot(_figure_file(folder, f"trend_{m.base}"), dates, values, metric,
                                                  m.unit, failed)
    return out


# -- document -------------------------------------------------------------------

def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _document(data: _ReportData, ext: str, images: dict[str, Path]) -> Document:
    r, run = data.record, data.run
    doc = Document(f"RDMT report: {r.filename}")
    doc.add(Paragraph([Cell("← all reports", href=f"../index.{ext}"), "  ·  other format: ",
                       Cell(REPORT_MD if ext == "html" else REPORT_HTML,
                            href=REPORT_MD if ext == "html" else REPORT_HTML)], kind="note"))
    summary = [
        ["File", Cell(r.filename, code=True)],
        ["Detector", r.detector or "—"],
        ["Monitor", f"{r.monitor or '—'} (version {run.monitor_version if run else r.monitor_version or '—'})"],
        ["Reference type", r.reftype or "—"],
        ["USEAFTER", _fmt_time(r.useafter)],
        ["Evaluated (UTC)", _fmt_time(run.evaluated_at) if run else "not evaluated"],
        ["Standards", Cell(run.standards_hash, code=True) if run else "—"],
        ["Compared with (change)", Cell(data.change_file, code=True) if data.change_file else "no previous file"],
        ["Failed evaluations", Cell(f"{run.n_failed} of {run.n_evaluations}", fail=run.n_failed > 0) if run else "—"],
    ]
    doc.add(Table(["Item", "Value"], summary))

    # Failures first.
    doc.add(Heading(2, "Failures", "failures"))
    if r.status == "error":
        doc.add(Paragraph([f"This file could not be monitored: {scrub(r.error, os.path.dirname(r.path) + os.sep)}"],
                          kind="fail"))
    elif run is None:
        doc.add(Paragraph(["This file has not been evaluated yet."], kind="note"))
    elif data.failures:
        groups = group_failures(data.failures, data.params, data.change_file)
        doc.add(Paragraph([f"{len(data.failures)} failed evaluations in {len(groups)} metric/evaluator pairs."],
                          kind="fail"))
        rows = [[Cell(g.metric, code=True), g.scale, Cell(g.evaluator, fail=True), g.where, g.value_text, g.standard]
                for g in groups]
        doc.add(Table(["Metric", "Scale", "Evaluator", "Failing regions", "Value", "Standard (worst region)"], rows))
    else:
        doc.add(Paragraph([f"All {run.n_evaluations} evaluations passed."], kind="ok"))

    if not data.metrics:
        return doc

    # Detector metrics (seed Table 1).
    doc.add(Heading(2, "Detector metrics", "detector"))
    header = ["Metric", "Value", "Unit"] + [e for e in data.evaluators]
    rows = []
    for m in data.metrics:
        if m.detector is None:
            continue
        metric = f"detector_{m.base}"
        failed_here = bool(data.failed_regions.get(metric))
        row = [Cell(metric, code=True), Cell(fmt_value(m.detector), fail=failed_here), m.unit]
        for ev in data.evaluators:
            e = data.detector_evals.get((m.base, ev))
            if e is None:
                row.append("—")
                continue
            params = data.params(m.base, "detector", ev)
            kind = evaluator_kind(ev, params)
            text = describe_standard(kind, params, e.threshold, e.lower, e.reference,
                                     data.change_file if kind == "change" else None, data.notes.get(ev, ""),
                                     value=m.detector, passed=e.passed)
            row.append(Cell(f"{text}: {'pass' if e.passed else 'FAIL'}", fail=not e.passed))
        rows.append(row)
    doc.add(Table(header, rows, caption="Each evaluator's standard and verdict; failing entries are highlighted."))
    if data.notes:
        doc.add(BulletList([[f"{name}: {text}"] for name, text in sorted(data.notes.items())]))

    # Amp tables (seed Table 2): 4 column pairs of Amp / Value.
    amp_metrics = [m for m in data.metrics if m.amp is not None]
    if amp_metrics:
        doc.add(Heading(2, "Amplifier metrics", "amps"))
    for m in amp_metrics:
        metric = f"amp_{m.base}"
        failing = data.failed_regions.get(metric, {})
        doc.add(Heading(3, f"{metric} ({m.unit})" if m.unit else metric))
        rows = []
        per_col = N_AMPS // 4
        for i in range(1, per_col + 1):
            row = []
            for c in range(4):
                amp = i + c * per_col
                row += [str(amp), Cell(fmt_value(m.amp[amp - 1]), fail=amp in failing)]
            rows.append(row)
        doc.add(Table(["Amp", "Value"] * 4, rows, kind="amps"))
        if failing:
            doc.add(Paragraph(["Failing amps: " + "; ".join(
                f"{amp} ({', '.join(sorted(evs, key=evaluator_sort_key))})" for amp, evs in sorted(failing.items()))],
                kind="fail"))

    # Super-pixel maps (seed Figure 3).
    sp_metrics = [m for m in data.metrics if m.superpixel is not None]
    if sp_metrics:
        doc.add(Heading(2, "Super-pixel maps", "superpixels"))
        doc.add(Paragraph(["32×32 super-pixels of 128×128 pixels; each column is one amplifier (white lines), "
                           "row 0 at the bottom. Red squares mark super-pixels failing any evaluator."], kind="note"))
    for m in sp_metrics:
        metric = f"superpixel_{m.base}"
        fails = [f for f in data.failures if f.metric == metric]
        if fails:
            counts = ", ".join(f"{k} {v}" for k, v in count_by_evaluator(fails).items())
            n = len(data.failed_regions.get(metric, {}))
            caption = f"{metric}: {n} of {N_SUPERPIXELS} super-pixels fail ({counts})."
        else:
            caption = f"{metric}: no super-pixel fails."
        if metric in images:
            doc.add(Image(images[metric].name, metric, caption))

    # Trend plots.
    trend = [m for m in data.metrics if f"detector_{m.base}@trend" in images]
    if trend:
        n_files = len(data.history_files)
        doc.add(Heading(2, "Trends", "trends"))
        doc.add(Paragraph([f"Detector-level values of the last {n_files} {r.monitor} files of {r.detector} by "
                           "USEAFTER; the star is this file (red when it failed)."], kind="note"))
        for m in trend:
            doc.add(Image(images[f"detector_{m.base}@trend"].name, f"detector_{m.base} trend"))
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


def write_index(database, out_dir) -> tuple[Path, Path]:
    """Write ``index.html`` and ``index.md``: every report in ``out_dir``, newest USEAFTER first.

    The L2 day pages present under ``out_dir/l2/`` follow, newest day first,
    with their counts of images and failing images.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with database.engine.connect() as conn:
        rows = [r for r in q.index_rows(conn) if (out_dir / report_relative_path(r.filename)).exists()]
    l2_days, l2_summaries = _l2_days(database, out_dir)
    paths = []
    for ext, name, render in (("md", INDEX_MD, to_markdown), ("html", INDEX_HTML, to_html)):
        doc = Document("RDMT reference-file reports")
        n_fail = sum(1 for r in rows if (r.n_failed or 0) > 0 or r.status == "error")
        doc.add(Paragraph([f"{len(rows)} reports, {n_fail} with failures; newest USEAFTER first."], kind="note"))
        table = []
        for r in rows:
            if r.status == "error":
                failures = Cell("could not be monitored", fail=True)
            elif r.n_failed is None:
                failures = "not evaluated"
            else:
                failures = Cell(str(r.n_failed), fail=r.n_failed > 0)
            table.append([
                _fmt_time(r.useafter), r.detector or "—", r.monitor or "—",
                Cell(r.filename, href=report_relative_path(r.filename, ext)), failures, _fmt_time(r.evaluated_at),
            ])
        doc.add(Table(["USEAFTER", "Detector", "Monitor", "Report", "Failures", "Evaluated (UTC)"], table))
        if l2_days:
            _add_l2_days(doc, l2_days, l2_summaries, ext)
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
