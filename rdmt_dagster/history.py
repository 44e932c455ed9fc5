"""``rdmt history`` and ``rdmt failures``: a metric's values over time, and what failed, without SQL.

Both read the RDMT database of either arm on any backend (``RDMT_DATABASE_URL``,
or the SQLite file in ``RDMT_HOME``, the rule of
`rdmt_dagster.resources.config_from_environment`).

* `metric_history`: one `HistoryPoint` per file and region of one metric at
  one scale: reference files by USEAFTER (their values and the verdicts of
  their latest evaluation run), L2 images by exposure start (the newest
  measured reprocess number of each image, with the verdicts of each
  monitor's latest evaluation). A metric is named by its base name
  (``dark_current_mean``) and a scale; the region defaults to the detector's
  only one (0) and otherwise to every region of the scale, so the detector
  value is never mixed with super-pixel 0.
* `failed_groups`: the failed verdicts of each file's latest evaluation,
  grouped per file, monitor, metric, scale and evaluator, with the number of
  failing regions and the worst of them (`FailureGroup`); for one delivery
  (``reference_file.delivery`` or ``run_id``; an L2 batch) or the files that
  arrived since a date.

A verdict is True (passed), False (failed) or None (not evaluated: the
evaluator could not run). The same rows, for people who want SQL, are the
views ``metric_history`` and ``failures`` (migration 0005).

Every text taken from the database (file names, detectors, units, delivery
ids) is data: the table and CSV writers escape it (`_text`, `_csv_cell`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from .storage import tables as t
from .storage.l2_tables import (MEASURED, l2_evaluation, l2_file, l2_measurement, l2_metric_value,
                                 newest_measured_row)

ARMS = ("reference", "l2")
#: Region numbers of the scales the commands read, as `rdmt_dagster.science.scales` numbers them (a test
#: checks that they agree): kept here so that a query of milliseconds does not wait for numpy to import.
SCALE_REGIONS = {"detector": range(0, 1), "amp": range(1, 33), "superpixel": range(0, 1024)}
SCALES = tuple(SCALE_REGIONS)
EVALUATOR_ORDER = ("mission", "soc", "change", "trend")


# -- where the database is ---------------------------------------------------------

def database_url(home=None) -> str:
    """The RDMT database URL: ``RDMT_DATABASE_URL``, else SQLite in ``home`` (default ``RDMT_HOME``).

    The rule of `rdmt_dagster.resources.config_from_environment`, without
    importing Dagster (a second of start-up for a query of milliseconds).
    """
    url = os.environ.get("RDMT_DATABASE_URL")
    if url:
        return url
    home = Path(str(home) if home is not None else os.environ.get("RDMT_HOME", "rdmt_data")).resolve()
    return f"sqlite:///{home / 'rdmt.db'}"


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file of ``url`` when it does not exist (a query must not create an empty database)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def read_upgraded(url: str, work):
    """``work(connection)`` on the database at ``url``, upgrading its schema first if the query needs it.

    The query is tried first: opening Alembic for every call would cost more
    than the query. A schema older than the one it reads (a column or view it
    lacks) makes it fail; then the schema is upgraded (as every RDMT process
    does when it opens the database) and the query runs again.
    """
    engine = sa.create_engine(url)
    try:
        try:
            with engine.connect() as conn:
                return work(conn)
        except sa.exc.DBAPIError:
            from .storage.database import Database

            database = Database(url)
            try:
                database.upgrade()
            finally:
                database.dispose()
            with engine.connect() as conn:
                return work(conn)
    finally:
        engine.dispose()


# -- history -------------------------------------------------------------------------

class Verdict(NamedTuple):
    """One evaluator's verdict on one value: ``passed`` True, False or None (not evaluated)."""

    passed: bool | None
    threshold: float | None
    lower: float | None
    reference: float | None


@dataclass
class HistoryPoint:
    """One value of a metric in one file and region, with its latest verdicts.

    ``observed_at`` is the USEAFTER of a reference file, the exposure start of
    an L2 image (UTC); ``delivery`` the delivery it came in (a reference file)
    or the batch that measured it (an L2 image).
    """

    arm: str
    file_id: int
    filename: str
    reprocess_number: int
    detector: str
    monitor: str
    observed_at: datetime | None
    delivery: str | None
    metric: str
    scale: str
    region: int
    value: float | None
    unit: str
    standards_hash: str | None
    evaluations: dict[str, Verdict] = field(default_factory=dict)


def full_metric_name(metric: str, scale: str) -> str:
    """The stored name of a metric at a scale: ``detector_dark_current_mean``."""
    return f"{scale}_{metric}"


# Each arm is read with one or two statements whatever the number of files:
# the files that match, joined by primary key to their latest evaluation and
# to the rows of one metric (a history) or to the failed verdicts (failures).
# Reading by chunks of file ids instead took ~500 statements for one detector
# over a year of L2 images, and most of the time went to binding their
# parameters (benchmarks/five_year_scale.py).

def _newest_reference_run():
    """``evaluation_run`` rows that are their file's latest: newest ``evaluated_at``, then smallest hash.

    The order the reports take (`rdmt_dagster.reports.queries.latest_run`).
    """
    r, later = t.evaluation_run, t.evaluation_run.alias("later")
    newer = sa.exists().where((later.c.file_id == r.c.file_id) & (
        (later.c.evaluated_at > r.c.evaluated_at)
        | ((later.c.evaluated_at == r.c.evaluated_at) & (later.c.standards_hash < r.c.standards_hash))))
    return ~newer


def _after(file_id):
    """``file_id`` as an expression, so that a join on it reads this table after the one it comes from.

    The values and verdicts are keyed by (file, [monitor,] standards hash,
    metric, ...): reached with the monitor and hash of the latest evaluation,
    one look-up finds them. Joined on a bare ``file_id = file_id``, SQLite
    (without statistics) may read them before the evaluation, by file id
    alone: every row of the file (~1,500 per L2 image, ~34,000 per dark).
    An expression (``+ 0``) is not a column equality SQLite can carry over to
    the file, so the order it must take is file, evaluation, values;
    PostgreSQL and MariaDB plan it as the plain join.
    """
    return file_id + 0


def _in_written_order(query):
    """``query`` joined in the order written (files, latest evaluation, values or verdicts) on MariaDB.

    Right after a bulk load InnoDB's statistics can describe empty tables and
    MariaDB may then start from the values (as in
    `rdmt_dagster.storage.database`): STRAIGHT_JOIN keeps the order.
    """
    for dialect in ("mysql", "mariadb"):
        query = query.prefix_with("STRAIGHT_JOIN", dialect=dialect)
    return query


def _without_jit(conn) -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction.

    The planner's cost of reading a year of one detector (~10^5 index look-ups)
    passes the JIT thresholds, and compiling the plan took 1.4 s of a 1.9 s
    statement (``benchmarks/five_year_scale.py``); the look-ups themselves
    gain nothing from it.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


@dataclass(frozen=True)
class _Arm:
    """One arm's tables as the queries join them.

    ``latest`` is the row naming each file's latest evaluation (its
    ``standards_hash``): the file's newest ``evaluation_run`` (reference
    files), or each monitor's ``l2_measurement`` (L2 images). ``on_latest``
    joins it to the file; ``evaluations_of_latest`` / ``values_of`` join the
    verdicts and the values of that evaluation by primary key.
    """

    name: str
    files: sa.Table
    latest: sa.Table
    values: sa.Table
    evaluations: sa.Table

    @property
    def monitor(self):
        """The monitor of a value: the file's (reference) or the measurement's (L2)."""
        return self.files.c.monitor if self.name == "reference" else self.latest.c.monitor

    def on_latest(self):
        f, latest = self.files, self.latest
        if self.name == "reference":
            return (latest.c.file_id == f.c.id) & _newest_reference_run()
        return (latest.c.file_id == f.c.id) & (latest.c.status == "ok")

    def evaluations_of_latest(self):
        e, latest = self.evaluations, self.latest
        on = (e.c.file_id == _after(latest.c.file_id)) & (e.c.standards_hash == latest.c.standards_hash)
        return on & (e.c.monitor == latest.c.monitor) if self.name == "l2" else on

    def values_of(self, file_id, monitor):
        v = self.values
        return (v.c.file_id == file_id) & (v.c.monitor == monitor) if self.name == "l2" else v.c.file_id == file_id

    def file_columns(self, received: bool = True):
        """id, filename, reprocess number, detector, monitor, observed, received (or NULL), delivery of each file."""
        f = self.files
        if not received:  # one date fewer to parse per row (SQLite stores dates as text)
            columns = self.file_columns()
            columns[6] = sa.null()
            return columns
        if self.name == "reference":
            # A replaced file's versions count as its reprocessings (as in `rdmt status`).
            return [f.c.id, f.c.filename, f.c.version, f.c.detector, f.c.monitor, f.c.useafter, f.c.registered_at,
                    f.c.delivery]
        return [f.c.id, f.c.filename, f.c.reprocess_number, f.c.detector, self.latest.c.monitor, f.c.exposure_start,
                f.c.received_at, f.c.claimed_by]

    def where(self, *, detector=None, observed_since=None, received_since=None, delivery=None):
        """The measured files (the newest measured row of an L2 image) matching the filters.

        ``delivery``: a reference file's delivery id or measuring run, an L2 image's batch.
        """
        f = self.files
        if self.name == "reference":
            where = f.c.status == "ok"
            if observed_since is not None:
                where &= f.c.useafter >= observed_since
            if received_since is not None:
                where &= f.c.registered_at >= received_since
            if delivery is not None:
                where &= (f.c.delivery == delivery) | (f.c.run_id == delivery)
        else:
            where = f.c.status.in_(MEASURED) & newest_measured_row()
            if observed_since is not None:
                # observation_day is the indexed UTC day of exposure_start: it narrows the search.
                where &= ((f.c.exposure_start >= observed_since)
                          & (f.c.observation_day >= observed_since.strftime("%Y-%m-%d")))
            if received_since is not None:
                where &= f.c.received_at >= received_since
            if delivery is not None:
                where &= f.c.claimed_by == delivery
        if detector is not None:
            where &= f.c.detector == detector
        return where


_ARMS = {
    "reference": _Arm("reference", t.reference_file, t.evaluation_run, t.metric_value, t.evaluation),
    "l2": _Arm("l2", l2_file, l2_measurement, l2_metric_value, l2_evaluation),
}


def _reprocess_number(arm: str, stored) -> int:
    return max(int(stored or 1) - 1, 0) if arm == "reference" else int(stored)


def _points(conn, arm: _Arm, where, metric: str, scale: str, region) -> list[HistoryPoint]:
    """The values of ``metric`` at ``scale`` (and ``region``) in the files ``where`` selects, with the
    verdicts of their latest evaluation: two statements (values, verdicts)."""
    name = full_metric_name(metric, scale)
    f, latest, v, e = arm.files, arm.latest, arm.values, arm.evaluations
    on_values = arm.values_of(_after(latest.c.file_id) if arm.name == "l2" else f.c.id, arm.monitor) & (
        v.c.metric == name) & (v.c.scale == scale)
    on_verdicts = arm.evaluations_of_latest() & (e.c.metric == name)
    if region is not None:
        on_values &= v.c.region == region
        on_verdicts &= e.c.region == region
    # A reference file not evaluated yet still has its values: its latest run is an outer join.
    files = (f.outerjoin(latest, arm.on_latest()) if arm.name == "reference" else f.join(latest, arm.on_latest()))
    values = _in_written_order(sa.select(
        *arm.file_columns(received=False), latest.c.standards_hash, v.c.region, v.c.value, v.c.unit).select_from(
        files.join(v, on_values)).where(where))
    points: dict[tuple, HistoryPoint] = {}
    for (file_id, filename, stored, detector, monitor, observed, _, delivery, standards_hash, at, value,
         unit) in conn.execute(values).all():
        points[(file_id, monitor, at)] = HistoryPoint(
            arm.name, file_id, filename, _reprocess_number(arm.name, stored), detector, monitor, observed, delivery,
            metric, scale, at, value, unit, standards_hash)
    if not points:
        return []
    if arm.name == "l2":
        # Only the monitors that measured the metric (one, usually): the others' evaluations need not be
        # looked up for every image.
        on_verdicts &= latest.c.monitor.in_(sorted({monitor for _, monitor, _ in points}))
    verdicts = _in_written_order(sa.select(
        e.c.file_id, arm.monitor, e.c.region, e.c.evaluator, e.c.passed, e.c.threshold, e.c.lower,
        e.c.reference).select_from(f.join(latest, arm.on_latest()).join(e, on_verdicts)).where(where))
    for file_id, monitor, at, evaluator, passed, threshold, lower, reference in conn.execute(verdicts).all():
        point = points.get((file_id, monitor, at))
        if point is not None:  # passed: True, False or None already (a Boolean column)
            point.evaluations[evaluator] = Verdict(passed, threshold, lower, reference)
    return list(points.values())


def _time_order(point) -> tuple:
    """Oldest first; files with no time last; then file, arm, monitor and region."""
    return (point.observed_at is None, point.observed_at or datetime.min, point.filename, point.arm,
            point.reprocess_number, point.monitor, point.region)


def check_scale_region(scale: str, region: int | None) -> int | None:
    """The region to read: ``region``, or 0 for the detector scale, or None (all regions of the scale).

    Raises
    ------
    ValueError
        An unknown scale, or a region that the scale does not have.
    """
    if scale not in SCALE_REGIONS:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    regions = SCALE_REGIONS[scale]
    if region is None:
        return regions[0] if len(regions) == 1 else None
    if region not in regions:
        raise ValueError(f"scale {scale} has regions {regions[0]}..{regions[-1]}, not {region}")
    return region


def metric_history(conn, metric: str, *, detector: str | None = None, scale: str = "detector",
                   region: int | None = None, since: datetime | None = None, arms=ARMS) -> list[HistoryPoint]:
    """A metric's values over time, with the verdicts of each file's latest evaluation.

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        A connection to a migrated RDMT database.
    metric : str
        Base name, without the scale (``dark_current_mean``).
    detector : str, optional
        Only this detector (``WFI07``).
    scale : str
        ``detector`` (default), ``amp`` or ``superpixel``.
    region : int, optional
        One region of the scale (amps 1..32, super-pixels 0..1023). Default:
        the detector's region 0, or every region of an amp or super-pixel scale.
    since : datetime, optional
        Only files observed (USEAFTER, exposure start; naive UTC) at or after it.
    arms : iterable of str
        ``reference`` and/or ``l2``.

    Returns
    -------
    list of HistoryPoint
        Oldest first (files without a time last), then by file and region.
    """
    region = check_scale_region(scale, region)
    points: list[HistoryPoint] = []
    _without_jit(conn)
    for name in ARMS:
        if name in arms:
            arm = _ARMS[name]
            points += _points(conn, arm, arm.where(detector=detector, observed_since=since), metric, scale, region)
    return sorted(points, key=_time_order)


# -- failures ------------------------------------------------------------------------

@dataclass
class FailureGroup:
    """The failed verdicts of one evaluator on one metric and scale of one file.

    ``worst_*`` is the failing region farthest from its standard (`excess`);
    ``received_at`` is when the file (its current version) arrived.
    """

    arm: str
    filename: str
    reprocess_number: int
    detector: str
    monitor: str
    observed_at: datetime | None
    received_at: datetime | None
    delivery: str | None
    metric: str
    scale: str
    evaluator: str
    standards_hash: str
    n_regions: int
    worst_region: int
    worst_value: float | None
    unit: str
    threshold: float | None
    lower: float | None
    reference: float | None


def excess(value, threshold, lower, reference) -> float:
    """How far a failing value lies from its standard, relative to it (to pick the worst region).

    Relative evaluators (a reference value): the fractional difference from
    the reference. Absolute ones: the distance beyond the limit it crossed,
    as a fraction of that limit. A value that could not be measured (NaN,
    stored as NULL) is the worst of all.
    """
    if value is None or math.isnan(value):
        return math.inf
    if reference is not None:
        return abs(value - reference) / max(abs(reference), 1e-300)
    if lower is not None and value < lower:
        return (lower - value) / max(abs(lower), 1e-300)
    if threshold is None:
        return 0.0
    return abs(value - threshold) / max(abs(threshold), 1e-300)


def _failed_groups(conn, arm: _Arm, where) -> list[FailureGroup]:
    """The failed verdicts of the latest evaluation of the files ``where`` selects, grouped, with the values
    judged: one statement."""
    f, latest, v, e = arm.files, arm.latest, arm.values, arm.evaluations
    # Only evaluations that counted a failure are opened: the count is stored with each evaluation.
    failing = arm.on_latest() & (latest.c.n_failed > 0)
    if arm.name == "l2":
        where &= f.c.n_failed > 0  # the file's own count, read with the file row
    on_value = arm.values_of(e.c.file_id, arm.monitor) & (v.c.metric == e.c.metric) & (v.c.region == e.c.region)
    query = _in_written_order(sa.select(
        *arm.file_columns(), latest.c.standards_hash, e.c.metric, e.c.region, e.c.evaluator, e.c.threshold,
        e.c.lower, e.c.reference, v.c.scale, v.c.value, v.c.unit).select_from(
        f.join(latest, failing).join(e, arm.evaluations_of_latest() & e.c.passed.is_(False)).outerjoin(v, on_value)
    ).where(where))
    groups: dict[tuple, FailureGroup] = {}
    for (file_id, filename, stored, detector, monitor, observed, received, delivery, standards_hash, metric, at,
         evaluator, threshold, lower, reference, scale, value, unit) in conn.execute(query).all():
        if scale is None:  # the value row is gone: the scale from the name
            scale, unit = _scale_of(metric), ""
        key = (file_id, monitor, metric, evaluator)
        group = groups.get(key)
        if group is None:
            base = metric[len(scale) + 1:] if metric.startswith(scale + "_") else metric
            groups[key] = FailureGroup(arm.name, filename, _reprocess_number(arm.name, stored), detector, monitor,
                                       observed, received, delivery, base, scale, evaluator, standards_hash, 1, at,
                                       value, unit, threshold, lower, reference)
            continue
        group.n_regions += 1
        new, old = (excess(value, threshold, lower, reference),
                    excess(group.worst_value, group.threshold, group.lower, group.reference))
        if new > old or (new == old and at < group.worst_region):
            group.worst_region, group.worst_value = at, value
            group.threshold, group.lower, group.reference = threshold, lower, reference
    return list(groups.values())


def _scale_of(metric: str) -> str:
    """The scale a stored metric name starts with (for a failed verdict whose value row is gone)."""
    return next((scale for scale in SCALES if metric.startswith(scale + "_")), "")


def _failure_order(group: FailureGroup) -> tuple:
    return (group.received_at is None, group.received_at or datetime.min, group.filename, group.arm,
            group.reprocess_number, group.monitor, group.metric, SCALES.index(group.scale) if group.scale in SCALES
            else len(SCALES), evaluator_sort_key(group.evaluator))


def failed_groups(conn, *, delivery: str | None = None, since: datetime | None = None,
                  arms=ARMS) -> list[FailureGroup]:
    """What failed: the failed verdicts of each file's latest evaluation, grouped (see `FailureGroup`).

    Parameters
    ----------
    conn : sqlalchemy.engine.Connection
        A connection to a migrated RDMT database.
    delivery : str, optional
        Only files of this delivery: ``reference_file.delivery`` or ``run_id``
        (reference files), the batch that measured them (L2 images).
    since : datetime, optional
        Only files that arrived (registered, announced; naive UTC) at or after it.
    arms : iterable of str
        ``reference`` and/or ``l2``.

    Returns
    -------
    list of FailureGroup
        By arrival, file, monitor, metric, scale and evaluator. Verdicts that
        were not given (not evaluated) are not failures and never appear.
    """
    groups: list[FailureGroup] = []
    _without_jit(conn)
    for name in ARMS:
        if name in arms:
            arm = _ARMS[name]
            groups += _failed_groups(conn, arm, arm.where(received_since=since, delivery=delivery))
    return sorted(groups, key=_failure_order)


# -- output ----------------------------------------------------------------------------

def evaluator_sort_key(name: str) -> tuple:
    return (EVALUATOR_ORDER.index(name) if name in EVALUATOR_ORDER else len(EVALUATOR_ORDER), name)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


# The rule of `rdmt_dagster.reports.escape.plain_text` (C0 and C1 controls, DEL, line and paragraph
# separators, bidirectional overrides and isolates), here because importing the reports package costs a
# third of a second, longer than the query; a test checks that both give the same text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def _text(value) -> str:
    """Untrusted text on one line for the terminal (control characters, line breaks become spaces)."""
    return "" if value is None else _CONTROL.sub(" ", str(value))


def _csv_cell(value):
    """A CSV cell: untrusted text on one line that a spreadsheet cannot take for a formula."""
    if not isinstance(value, str):
        return value
    value = _text(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _fmt(value) -> str:
    if value is None:
        return "NaN"
    return f"{value:.6g}"


def verdict_word(passed: bool | None) -> str:
    """``PASS``, ``FAIL`` or ``n/e`` (not evaluated)."""
    return "n/e" if passed is None else ("PASS" if passed else "FAIL")


def history_evaluators(points) -> list[str]:
    """Every evaluator with a verdict among ``points``, in the usual order."""
    return sorted({name for p in points for name in p.evaluations}, key=evaluator_sort_key)


def history_document(points: list[HistoryPoint], query: dict) -> dict:
    """The JSON document of ``rdmt history --json``: the query and one entry per point."""
    return {**query, "points": [{
        "arm": p.arm, "file": p.filename, "reprocess_number": p.reprocess_number, "detector": p.detector,
        "monitor": p.monitor, "observed_at": _iso(p.observed_at), "delivery": p.delivery, "metric": p.metric,
        "scale": p.scale, "region": p.region, "value": _number(p.value), "unit": p.unit,
        "standards_hash": p.standards_hash,
        "evaluations": {name: {"passed": v.passed, "threshold": _number(v.threshold), "lower": _number(v.lower),
                               "reference": _number(v.reference)}
                        for name, v in sorted(p.evaluations.items(), key=lambda kv: evaluator_sort_key(kv[0]))},
    } for p in points]}


def history_csv(points: list[HistoryPoint]) -> str:
    """``rdmt history --csv``: one row per point; per evaluator its verdict (``pass``, ``fail``, ``n/e``,
    empty when it did not judge the value) and threshold, lower limit and reference."""
    evaluators = history_evaluators(points)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["arm", "file", "reprocess_number", "detector", "monitor", "observed_at", "delivery", "metric",
                     "scale", "region", "value", "unit", "standards_hash"]
                    + [f"{name}{suffix}" for name in evaluators for suffix in ("", "_threshold", "_lower",
                                                                                "_reference")])
    for p in points:
        row = [p.arm, p.filename, p.reprocess_number, p.detector, p.monitor, _iso(p.observed_at) or "",
               p.delivery or "", p.metric, p.scale, p.region, "" if p.value is None else repr(float(p.value)), p.unit,
               p.standards_hash or ""]
        for name in evaluators:
            v = p.evaluations.get(name)
            if v is None:
                row += ["", "", "", ""]
                continue
            row += [{True: "pass", False: "fail", None: "n/e"}[v.passed]] + [
                "" if x is None else repr(float(x)) for x in (v.threshold, v.lower, v.reference)]
        writer.writerow([_csv_cell(x) for x in row])
    return out.getvalue()


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *rows]]


def format_history(points: list[HistoryPoint], metric: str, scale: str, region: int | None) -> str:
    """The readable table of ``rdmt history``: one line per file (and region), each evaluator's verdict."""
    where = f"scale {scale}" + (f", region {region}" if region is not None else ", every region")
    lines = [f"{_text(metric)} ({where}): {len(points)} value(s); PASS / FAIL / n/e = not evaluated "
             "(the evaluator could not run), latest evaluation of each file"]
    if not points:
        return "\n".join(lines) + "\n"
    evaluators = history_evaluators(points)
    arms = len({p.arm for p in points}) > 1
    header = (["arm"] if arms else []) + ["observed (UTC)", "file", "detector"] + (
        ["region"] if scale != "detector" else []) + ["value", "unit"] + evaluators
    rows = []
    for p in points:
        row = ([p.arm] if arms else []) + [
            p.observed_at.strftime("%Y-%m-%d %H:%M:%S") if p.observed_at else "—",
            _text(p.filename) + (f" (rep {p.reprocess_number})" if p.arm == "l2" and p.reprocess_number else ""),
            _text(p.detector)]
        if scale != "detector":
            row.append(str(p.region))
        row += [_fmt(p.value), _text(p.unit)]
        row += [verdict_word(p.evaluations[name].passed) if name in p.evaluations else "—" for name in evaluators]
        rows.append(row)
    return "\n".join(lines + _table(header, rows)) + "\n"


def _evaluator_kinds() -> dict[str, str]:
    """Evaluator name -> kind, from the packaged standards (``common.evaluators``)."""
    from .science.standards import default_blocks

    try:
        return dict(default_blocks().get("common", {}).get("evaluators", {}))
    except Exception:  # noqa: BLE001 - wording only: fall back to the generic description
        return {}


def limit_text(group: FailureGroup, kind: str | None) -> str:
    """The standard the worst region failed, in short: ``<= 1``, ``0.8 – 1.2``, ``±11% of 0.0052``, ``|z| <= 5 vs 0.005``."""
    thr, lower, ref, value = group.threshold, group.lower, group.reference, group.worst_value
    if kind == "change" and thr is not None:
        return f"±{thr * 100:g}% of {_fmt(ref)}"
    if kind == "trend" and thr is not None:
        return f"|z| <= {thr:g} vs median {_fmt(ref)}"
    if ref is not None:
        return f"{_fmt(thr)} vs {_fmt(ref)}"
    if thr is None:
        return "—"
    if lower is not None:
        return f"{_fmt(lower)} – {_fmt(thr)}"
    # A single stored limit is a max unless the failing value lies below it (a min).
    return f">= {_fmt(thr)}" if value is not None and value < thr else f"<= {_fmt(thr)}"


def failures_document(groups: list[FailureGroup], query: dict) -> dict:
    """The JSON document of ``rdmt failures --json``."""
    return {**query, "failures": [{
        "arm": g.arm, "file": g.filename, "reprocess_number": g.reprocess_number, "detector": g.detector,
        "monitor": g.monitor, "observed_at": _iso(g.observed_at), "received_at": _iso(g.received_at),
        "delivery": g.delivery, "metric": g.metric, "scale": g.scale, "evaluator": g.evaluator,
        "standards_hash": g.standards_hash, "n_regions": g.n_regions, "worst_region": g.worst_region,
        "worst_value": _number(g.worst_value), "unit": g.unit, "threshold": _number(g.threshold),
        "lower": _number(g.lower), "reference": _number(g.reference),
    } for g in groups]}


def format_failures(groups: list[FailureGroup]) -> str:
    """The readable table of ``rdmt failures``: one line per file, metric, scale and evaluator."""
    if not groups:
        return "no failed evaluations\n"
    kinds = _evaluator_kinds()
    arms = len({g.arm for g in groups}) > 1
    header = (["arm"] if arms else []) + ["file", "detector", "monitor", "metric", "scale", "evaluator", "regions",
                                          "worst value", "unit", "limit"]
    rows = []
    for g in groups:
        where = f"{g.n_regions}" if g.scale == "detector" else f"{g.n_regions} (worst {g.worst_region})"
        rows.append(([g.arm] if arms else []) + [
            _text(g.filename), _text(g.detector), _text(g.monitor), _text(g.metric), g.scale, _text(g.evaluator),
            where, _fmt(g.worst_value), _text(g.unit), limit_text(g, kinds.get(g.evaluator))])
    files = len({(g.arm, g.filename, g.reprocess_number) for g in groups})
    total = sum(g.n_regions for g in groups)
    return "\n".join(_table(header, rows) + [f"{total} failed evaluation(s) in {len(groups)} group(s) of {files} "
                                             "file(s)"]) + "\n"


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (or an ISO 8601 time) as a naive UTC datetime.

    Raises
    ------
    ValueError
        Not a date.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since takes a date YYYY-MM-DD (UTC), not {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
