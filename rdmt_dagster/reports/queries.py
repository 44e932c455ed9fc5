"""Read-only queries behind the reports and the notifications.

All of them use the SQLAlchemy Core schema of `rdmt_dagster.storage.tables`
and work on SQLite, MySQL/MariaDB and PostgreSQL alike. A file's report shows
its *latest* evaluation run (the newest ``evaluation_run`` row of the file;
re-evaluating with new standards adds a run under another standards hash).

To stay fast on a database holding thousands of files, a report reads:

* every metric value of its file (1057 per metric),
* the detector-level evaluations of its file and only the *failed* ones at
  amp and super-pixel scale (the passes are implied),
* the detector-level values of earlier files of the same monitor and
  detector (the trend plots),
* the number of evaluations per evaluator and verdict (one grouped count).

``evaluation.passed`` may be NULL: an evaluator that could not run ("not
evaluated"); every query here keeps it apart from a pass and from a failure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
import yaml

from ..storage import tables as t
from .formatting import Failure, TrendStats, trend_reference_files, trend_stats

DETECTOR_PREFIX = "detector_"


@dataclass(frozen=True)
class FileRecord:
    """One ``reference_file`` row (``path`` is kept only to scrub it from texts)."""

    id: int
    filename: str
    path: str
    monitor: str
    reftype: str
    detector: str
    useafter: datetime | None
    status: str
    error: str | None
    monitor_version: str


@dataclass(frozen=True)
class RunRecord:
    """The latest ``evaluation_run`` of one file."""

    standards_hash: str
    monitor_version: str
    evaluated_at: datetime
    n_evaluations: int
    n_failed: int
    compared_with: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluationRow:
    metric: str
    region: int
    evaluator: str
    threshold: float | None
    lower: float | None
    reference: float | None
    passed: bool | None  # None: not evaluated


def _file(row) -> FileRecord:
    return FileRecord(row.id, row.filename, row.path, row.monitor, row.reftype, row.detector, row.useafter,
                      row.status, row.error, row.monitor_version)


def json_list(text: str | None) -> list[str]:
    """A stored JSON list of strings (a plain text that is not JSON: a list of that one text)."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def file_record(conn, filename: str) -> FileRecord | None:
    f = t.reference_file
    row = conn.execute(sa.select(f).where(f.c.filename == filename)).first()
    return None if row is None else _file(row)


def latest_run(conn, file_id: int) -> RunRecord | None:
    r = t.evaluation_run
    row = conn.execute(
        sa.select(r).where(r.c.file_id == file_id).order_by(r.c.evaluated_at.desc(), r.c.standards_hash).limit(1)
    ).first()
    if row is None:
        return None
    return RunRecord(row.standards_hash, row.monitor_version, row.evaluated_at, row.n_evaluations, row.n_failed,
                     json_list(row.compared_with), json_list(row.notes))


def metric_values(conn, file_id: int) -> list[tuple[str, str, int, float | None, str]]:
    """(metric, scale, region, value, unit) of every metric value of a file."""
    m = t.metric_value
    return [
        tuple(r)
        for r in conn.execute(
            sa.select(m.c.metric, m.c.scale, m.c.region, m.c.value, m.c.unit).where(m.c.file_id == file_id)
        )
    ]


def report_evaluations(conn, file_id: int, standards_hash: str) -> list[EvaluationRow]:
    """All detector-level evaluations of a file, and its failed amp/super-pixel ones."""
    e = t.evaluation
    query = sa.select(e.c.metric, e.c.region, e.c.evaluator, e.c.threshold, e.c.lower, e.c.reference, e.c.passed).where(
        (e.c.file_id == file_id)
        & (e.c.standards_hash == standards_hash)
        & (e.c.metric.startswith(DETECTOR_PREFIX, autoescape=True) | e.c.passed.is_(False))
    )
    return [EvaluationRow(r.metric, r.region, r.evaluator, r.threshold, r.lower, r.reference,
                          None if r.passed is None else bool(r.passed))
            for r in conn.execute(query)]


@dataclass(frozen=True)
class VerdictCount:
    """How many evaluations of one evaluator have one stored verdict (``passed`` None: not evaluated)."""

    evaluator: str
    passed: bool | None
    count: int


def verdict_counts(conn, file_id: int, standards_hash: str) -> list[VerdictCount]:
    """Evaluations of a file under one standards hash, counted by evaluator and ``passed``."""
    e = t.evaluation
    query = (
        sa.select(e.c.evaluator, e.c.passed, sa.func.count().label("n"))
        .where((e.c.file_id == file_id) & (e.c.standards_hash == standards_hash))
        .group_by(e.c.evaluator, e.c.passed)
    )
    return [VerdictCount(r.evaluator, None if r.passed is None else bool(r.passed), int(r.n))
            for r in conn.execute(query)]


def region_values(conn, filenames, metric: str, region: int) -> dict[str, float | None]:
    """filename -> the value of one metric in one region, for the given files (those measured)."""
    names = list(dict.fromkeys(filenames))
    if not names:
        return {}
    f, m = t.reference_file, t.metric_value
    query = (
        sa.select(f.c.filename, m.c.value)
        .join(m, m.c.file_id == f.c.id)
        .where(f.c.filename.in_(names) & (m.c.metric == metric) & (m.c.region == region))
    )
    return {r.filename: r.value for r in conn.execute(query)}


def failures(conn, file_id: int, standards_hash: str) -> list[Failure]:
    """Failed evaluations of a file under one standards hash, with their values."""
    e, m = t.evaluation, t.metric_value
    query = (
        sa.select(e.c.metric, m.c.scale, e.c.region, m.c.value, m.c.unit, e.c.evaluator, e.c.threshold, e.c.lower,
                  e.c.reference)
        .join(m, (m.c.file_id == e.c.file_id) & (m.c.metric == e.c.metric) & (m.c.region == e.c.region))
        .where((e.c.file_id == file_id) & (e.c.standards_hash == standards_hash) & e.c.passed.is_(False))
        .order_by(e.c.metric, e.c.evaluator, e.c.region)
    )
    return [Failure(*r) for r in conn.execute(query)]


def standards_block(conn, standards_hash: str, monitor: str) -> dict:
    """The monitor's standards block stored under ``standards_hash`` ({} when unknown)."""
    s = t.standards
    content = conn.execute(sa.select(s.c.content).where(s.c.hash == standards_hash)).scalar()
    if not content:
        return {}
    try:
        data = yaml.safe_load(content) or {}
    except yaml.YAMLError:
        return {}
    block = data.get(monitor, {})
    return block if isinstance(block, dict) else {}


def detector_history(conn, record: FileRecord, limit: int = 60) -> tuple[list[FileRecord], dict[str, dict[int, float | None]]]:
    """Up to ``limit`` measured files of the same monitor and detector up to and including ``record``.

    Returns the files oldest first (by USEAFTER, then name) and, per detector
    metric name, file id -> value.
    """
    f, m = t.reference_file, t.metric_value
    if record.useafter is None:
        files = [record]
    else:
        not_later = (f.c.useafter < record.useafter) | (
            (f.c.useafter == record.useafter) & (f.c.filename <= record.filename)
        )
        rows = conn.execute(
            sa.select(f)
            .where((f.c.monitor == record.monitor) & (f.c.detector == record.detector) & (f.c.status == "ok")
                   & not_later)
            .order_by(f.c.useafter.desc(), f.c.filename.desc())
            .limit(limit)
        ).all()
        files = [_file(r) for r in reversed(rows)]
        if not any(x.id == record.id for x in files):
            files.append(record)
    ids = [x.id for x in files]
    values: dict[str, dict[int, float | None]] = {}
    rows = conn.execute(
        sa.select(m.c.file_id, m.c.metric, m.c.value).where(
            m.c.file_id.in_(ids) & (m.c.scale == "detector") & (m.c.region == 0)
        )
    )
    for file_id, metric, value in rows:
        values.setdefault(metric, {})[file_id] = value
    return files, values


@dataclass(frozen=True)
class IndexRow:
    filename: str
    monitor: str
    detector: str
    useafter: datetime | None
    status: str
    evaluated_at: datetime | None
    n_failed: int | None
    n_evaluations: int | None
    id: int | None = None
    standards_hash: str | None = None
    delivery: str | None = None  # when the database records deliveries
    n_not_evaluated: int | None = None  # when the evaluation run counts them


def _optional_column(table: sa.Table, name: str):
    """A column that a newer schema adds, or None on a schema without it."""
    return table.c[name] if name in table.c else None


def index_rows(conn) -> list[IndexRow]:
    """Every measured (or failed-to-measure) file with its latest evaluation run, newest USEAFTER first.

    ``reference_file.delivery`` and ``evaluation_run.n_not_evaluated`` are
    read when the schema has them (None otherwise).
    """
    f, r = t.reference_file, t.evaluation_run
    latest = (
        sa.select(r.c.file_id, sa.func.max(r.c.evaluated_at).label("evaluated_at"))
        .group_by(r.c.file_id)
        .subquery()
    )
    delivery = _optional_column(f, "delivery")
    not_evaluated = _optional_column(r, "n_not_evaluated")
    query = (
        sa.select(f.c.filename, f.c.monitor, f.c.detector, f.c.useafter, f.c.status, latest.c.evaluated_at,
                  r.c.n_failed, r.c.n_evaluations, f.c.id, r.c.standards_hash,
                  (delivery if delivery is not None else sa.null()).label("delivery"),
                  (not_evaluated if not_evaluated is not None else sa.null()).label("n_not_evaluated"))
        .select_from(f)
        .outerjoin(latest, latest.c.file_id == f.c.id)
        .outerjoin(r, (r.c.file_id == f.c.id) & (r.c.evaluated_at == latest.c.evaluated_at))
        .where(f.c.status != "registered")
    )
    out: dict[str, IndexRow] = {}
    for row in conn.execute(query):
        values = dict(row._mapping)
        if values["delivery"] is not None:
            values["delivery"] = str(values["delivery"])
        out.setdefault(row.filename, IndexRow(**values))
    return sort_newest_first(out.values())


def failed_metrics(conn, rows, chunk: int = 500) -> dict[int, list[tuple[str, str]]]:
    """file id -> distinct (metric, evaluator) failing under its latest run, for the rows that failed.

    Only files with failures are read (by primary-key prefix), so the index
    stays cheap however many files pass.
    """
    wanted = {r.id: r.standards_hash for r in rows if r.id is not None and (r.n_failed or 0) > 0}
    e = t.evaluation
    out: dict[int, set[tuple[str, str]]] = {}
    ids = list(wanted)
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        query = (
            sa.select(e.c.file_id, e.c.standards_hash, e.c.metric, e.c.evaluator)
            .where(e.c.file_id.in_(part) & e.c.passed.is_(False))
            .distinct()
        )
        for r in conn.execute(query):
            if wanted.get(r.file_id) == r.standards_hash:
                out.setdefault(r.file_id, set()).add((r.metric, r.evaluator))
    return {k: sorted(v) for k, v in out.items()}


def sort_newest_first(rows) -> list[IndexRow]:
    """USEAFTER descending (files without one last), then evaluation time descending, then name."""
    rows = list(rows)
    rows.sort(key=lambda x: x.filename)
    rows.sort(key=lambda x: x.evaluated_at or datetime.min, reverse=True)
    rows.sort(key=lambda x: (x.useafter is not None, x.useafter or datetime.min), reverse=True)
    return rows


def trend_lookup(conn, compared_with: list[str]):
    """``trend_for(failure, params)`` for `rdmt_dagster.reports.formatting.group_failures`.

    Rebuilds the trend evaluator's median and sigma of a failing region from
    the values of the earlier files its run names (one query per failing
    metric and evaluator, for the worst region only). None when the rebuilt
    median differs from the stored one: those files changed since, and a
    sigma from them would tell the wrong size.
    """
    files = trend_reference_files(compared_with)

    def trend_for(failure: Failure, params: dict) -> TrendStats | None:
        if not files or failure.reference is None:
            return None
        values = region_values(conn, files, failure.metric, failure.region)
        stats = trend_stats([values.get(name) for name in files], params)
        if stats is None or not math.isclose(stats.median, failure.reference, rel_tol=1e-9, abs_tol=1e-300):
            return None
        return stats

    return trend_for
