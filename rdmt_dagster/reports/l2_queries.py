"""Read-only queries behind the L2 day pages, the reprocessing comparisons and the L2 notification.

Everything is read in a few batched queries (file ids in chunks of
`IN_CHUNK`), never one query per file: a day of an observing programme holds
thousands of images. SQLAlchemy Core only, so SQLite, PostgreSQL and
MySQL/MariaDB behave alike.

"A file" is one ``l2_file`` row, i.e. an image *and* its reprocess number.
A day shows, by default, the newest *measured* (``ok`` or ``error``) reprocess
number of each image observed that day; a newer row still waiting for its run
does not hide the results already there.

Failures and verdicts are those of each monitor's latest evaluation: the
``standards_hash`` that ``l2_measurement`` points at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ..storage import tables as t
from ..storage.l2_tables import (MEASURED, l2_evaluation, l2_file, l2_measurement, l2_metric_value,
                                  newest_measured_row)
from .formatting import Failure, split_metric
from .queries import json_list

IN_CHUNK = 500
DETECTOR = "detector"


def _chunks(values, size: int = IN_CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def parse_ref_files(text: str | None) -> dict[str, str]:
    """``l2_file.ref_files`` (JSON ``{reftype: file name}``) as a dict; {} when absent or not such a JSON object.

    The text comes from the image's header: untrusted, so anything that is not
    a string-to-string mapping is dropped rather than guessed at.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    out = {}
    for key, name in value.items():
        if isinstance(key, str) and isinstance(name, str) and key and name and name.upper() != "N/A":
            out[key.lower()] = name
    return dict(sorted(out.items()))


# -- records ----------------------------------------------------------------------

@dataclass(frozen=True)
class L2FileRecord:
    """One ``l2_file`` row as the pages show it."""

    id: int
    filename: str
    reprocess_number: int
    detector: str
    optical_element: str
    exposure_start: datetime | None
    observation_day: str | None
    status: str
    error: str | None
    n_failed: int | None
    ref_files: dict[str, str]
    crds_context: str
    claimed_by: str | None
    program: str = ""
    visit: str = ""
    exposure: str = ""

    @property
    def failed(self) -> bool:
        """Failed an evaluation or could not be measured (by some monitor or at all)."""
        return self.status == "error" or (self.n_failed or 0) > 0


def _file_record(row) -> L2FileRecord:
    m = row._mapping
    return L2FileRecord(
        m["id"], m["filename"], int(m["reprocess_number"] or 0), m["detector"] or "", m["optical_element"] or "",
        m["exposure_start"], m["observation_day"], m["status"], m["error"], m["n_failed"],
        parse_ref_files(m["ref_files"]), m["crds_context"] or "", m["claimed_by"], m["program"] or "",
        m["visit"] or "", m["exposure"] or "",
    )


@dataclass(frozen=True)
class MeasurementRecord:
    """One monitor's run on one file (``l2_measurement``)."""

    file_id: int
    monitor: str
    status: str
    error: str | None
    monitor_version: str
    standards_hash: str | None
    n_evaluations: int | None
    n_failed: int | None
    compared_with: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_not_evaluated: int | None = None  # verdicts that could not be given (counted in n_evaluations)


@dataclass(frozen=True)
class ReferenceStatus:
    """A reference file as the reference arm knows it: its status and latest evaluation."""

    filename: str
    reftype: str
    detector: str
    monitor: str
    status: str
    error: str | None
    n_failed: int | None
    n_evaluations: int | None
    evaluated_at: datetime | None
    n_not_evaluated: int | None = None

    @property
    def failed(self) -> bool:
        """Failed its own checks: a failed evaluation, or it could not be monitored."""
        return self.status == "error" or (self.n_failed or 0) > 0


@dataclass(frozen=True)
class TrendPoint:
    when: datetime | None
    value: float | None
    failed: bool
    filename: str
    unit: str = ""


@dataclass(frozen=True)
class DaySummary:
    day: str
    n_files: int
    n_failing: int
    n_errors: int


# -- files ------------------------------------------------------------------------

def _newest_measured(where) -> sa.Subquery:
    """filename -> its highest measured reprocess number among the rows matching ``where``."""
    f = l2_file
    return (sa.select(f.c.filename, sa.func.max(f.c.reprocess_number).label("n"))
            .where(where & f.c.status.in_(MEASURED)).group_by(f.c.filename).subquery())


def day_files(conn, day: str, *, all_reprocess: bool = False) -> list[L2FileRecord]:
    """The measured files observed on ``day``: by default the newest measured reprocess number of each image.

    With ``all_reprocess`` every measured row of the day. Ordered by detector,
    exposure start, file name and reprocess number.
    """
    f = l2_file
    query = sa.select(f).where((f.c.observation_day == day) & f.c.status.in_(MEASURED))
    if not all_reprocess:
        newest = _newest_measured(f.c.observation_day == day)
        query = query.join(newest, (newest.c.filename == f.c.filename) & (newest.c.n == f.c.reprocess_number))
    rows = [_file_record(r) for r in conn.execute(query)]
    return sort_files(rows)


def sort_files(rows) -> list[L2FileRecord]:
    from .formatting import natural_key

    return sorted(rows, key=lambda r: (natural_key(r.detector), r.exposure_start or datetime.min, r.filename,
                                       r.reprocess_number))


def waiting_count(conn, day: str) -> int:
    """Rows of ``day`` not measured yet (pending or claimed by a run)."""
    f = l2_file
    return int(conn.execute(sa.select(sa.func.count()).where(
        (f.c.observation_day == day) & f.c.status.not_in(MEASURED))).scalar() or 0)


def files_by_id(conn, file_ids) -> list[L2FileRecord]:
    """The ``l2_file`` rows of ``file_ids`` (unknown ids are left out), in the order given."""
    ids = list(dict.fromkeys(int(i) for i in file_ids))
    found: dict[int, L2FileRecord] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(sa.select(l2_file).where(l2_file.c.id.in_(chunk))):
            found[row.id] = _file_record(row)
    return [found[i] for i in ids if i in found]


def previous_versions(conn, files: list[L2FileRecord]) -> dict[int, L2FileRecord]:
    """For each file with reprocess number > 0: the newest *measured* row of the same image with a lower number.

    Returns file id -> that earlier row (files without one are left out).
    """
    wanted = [r for r in files if r.reprocess_number > 0]
    out: dict[int, L2FileRecord] = {}
    by_name: dict[str, list[L2FileRecord]] = {}
    for chunk in _chunks(sorted({r.filename for r in wanted})):
        query = sa.select(l2_file).where(l2_file.c.filename.in_(chunk) & l2_file.c.status.in_(MEASURED))
        for row in conn.execute(query):
            by_name.setdefault(row.filename, []).append(_file_record(row))
    for r in wanted:
        earlier = [e for e in by_name.get(r.filename, []) if e.reprocess_number < r.reprocess_number]
        if earlier:
            out[r.id] = max(earlier, key=lambda e: e.reprocess_number)
    return out


# -- measurements and evaluations -------------------------------------------------------

def measurements(conn, file_ids) -> dict[int, list[MeasurementRecord]]:
    """file id -> its monitors' measurements (sorted by monitor)."""
    m = l2_measurement
    out: dict[int, list[MeasurementRecord]] = {int(i): [] for i in file_ids}
    for chunk in _chunks(list(out)):
        query = sa.select(m).where(m.c.file_id.in_(chunk)).order_by(m.c.file_id, m.c.monitor)
        for r in conn.execute(query):
            out[r.file_id].append(MeasurementRecord(
                r.file_id, r.monitor, r.status, r.error, r.monitor_version or "", r.standards_hash,
                r.n_evaluations, r.n_failed, json_list(r.compared_with), json_list(r.notes),
                r.n_not_evaluated))
    return out


def _latest_evaluations():
    """``l2_evaluation`` joined to the evaluation each measurement points at (its latest standards)."""
    e, m = l2_evaluation, l2_measurement
    return e.join(m, (m.c.file_id == e.c.file_id) & (m.c.monitor == e.c.monitor)
                  & (m.c.standards_hash == e.c.standards_hash))


def failed_evaluations(conn, file_ids) -> dict[int, dict[str, list[Failure]]]:
    """file id -> monitor -> the failed evaluations of its latest evaluation, with the values judged."""
    e, m, v = l2_evaluation, l2_measurement, l2_metric_value
    out: dict[int, dict[str, list[Failure]]] = {int(i): {} for i in file_ids}
    source = _latest_evaluations().outerjoin(
        v, (v.c.file_id == e.c.file_id) & (v.c.monitor == e.c.monitor) & (v.c.metric == e.c.metric)
        & (v.c.region == e.c.region))
    # Verdicts are read only for the files whose latest evaluations counted failures (the count is in
    # ix_l2_measurement_latest): a day at the survey peak holds ~14 million verdicts, and about one image
    # in a hundred has a failed one.
    failing: list[int] = []
    for chunk in _chunks(list(out)):
        failing += conn.execute(sa.select(m.c.file_id).distinct()
                                .where(m.c.file_id.in_(chunk) & (m.c.n_failed > 0))).scalars().all()
    for chunk in _chunks(sorted(failing)):
        query = (sa.select(e.c.file_id, e.c.monitor, e.c.metric, v.c.scale, e.c.region, v.c.value, v.c.unit,
                           e.c.evaluator, e.c.threshold, e.c.lower, e.c.reference)
                 .select_from(source)
                 .where(e.c.file_id.in_(chunk) & e.c.passed.is_(False))
                 .order_by(e.c.file_id, e.c.monitor, e.c.metric, e.c.evaluator, e.c.region))
        for r in conn.execute(query):
            scale = r.scale or _scale_of(r.metric)
            out[r.file_id].setdefault(r.monitor, []).append(Failure(
                r.metric, scale, r.region, r.value, r.unit or "", r.evaluator, r.threshold, r.lower, r.reference))
    return out


def _scale_of(metric: str) -> str:
    return split_metric(metric)[0]


def detector_values(conn, file_ids) -> dict[int, dict[tuple[str, str], tuple[float | None, str]]]:
    """file id -> {(monitor, metric): (value, unit)} of its detector-scale metrics."""
    v = l2_metric_value
    out: dict[int, dict] = {int(i): {} for i in file_ids}
    for chunk in _chunks(list(out)):
        query = (sa.select(v.c.file_id, v.c.monitor, v.c.metric, v.c.value, v.c.unit)
                 .where(v.c.file_id.in_(chunk) & (v.c.scale == DETECTOR) & (v.c.region == 0)))
        for r in conn.execute(query):
            out[r.file_id][(r.monitor, r.metric)] = (r.value, r.unit or "")
    return out


def verdicts(conn, file_ids) -> dict[int, dict[tuple[str, str, str], tuple[int, int]]]:
    """file id -> {(monitor, metric, evaluator): (failed regions, evaluated regions)} of its latest evaluations.

    A region not evaluated (``passed`` NULL) counts in neither.
    """
    e = l2_evaluation
    failed = sa.func.sum(sa.case((e.c.passed.is_(False), 1), else_=0))
    out: dict[int, dict] = {int(i): {} for i in file_ids}
    for chunk in _chunks(list(out)):
        query = (sa.select(e.c.file_id, e.c.monitor, e.c.metric, e.c.evaluator, failed, sa.func.count(e.c.passed))
                 .select_from(_latest_evaluations())
                 .where(e.c.file_id.in_(chunk))
                 .group_by(e.c.file_id, e.c.monitor, e.c.metric, e.c.evaluator))
        for file_id, monitor, metric, evaluator, n_failed, n in conn.execute(query):
            out[file_id][(monitor, metric, evaluator)] = (int(n_failed or 0), int(n or 0))
    return out


def standards_hashes(conn, file_ids) -> dict[str, str]:
    """monitor -> the standards hash most of ``file_ids`` were last evaluated under."""
    m = l2_measurement
    counts: dict[tuple[str, str], int] = {}
    for chunk in _chunks(list(file_ids)):
        query = (sa.select(m.c.monitor, m.c.standards_hash, sa.func.count())
                 .where(m.c.file_id.in_(chunk) & m.c.standards_hash.is_not(None))
                 .group_by(m.c.monitor, m.c.standards_hash))
        for monitor, standards_hash, n in conn.execute(query):
            counts[(monitor, standards_hash)] = counts.get((monitor, standards_hash), 0) + int(n)
    out: dict[str, tuple[int, str]] = {}
    for (monitor, standards_hash), n in counts.items():
        if monitor not in out or (n, standards_hash) > out[monitor]:
            out[monitor] = (n, standards_hash)
    return {monitor: h for monitor, (n, h) in out.items()}


# -- trends -------------------------------------------------------------------------

def trend_series(conn, metrics, first_day: str, last_day: str) -> dict[tuple[str, str], dict[str, list[TrendPoint]]]:
    """Detector-scale values of ``metrics`` ((monitor, full metric name) pairs) per detector over a range of days.

    The newest measured reprocess number of each image observed from
    ``first_day`` to ``last_day`` (inclusive); each point says whether that
    value failed any evaluator of its latest evaluation. Returns
    (monitor, metric) -> detector -> points ordered by exposure start.
    """
    metrics = list(dict.fromkeys(metrics))
    out: dict[tuple[str, str], dict[str, list[TrendPoint]]] = {key: {} for key in metrics}
    f, m, v, e = l2_file, l2_measurement, l2_metric_value, l2_evaluation
    # The days listed, not a range: with both columns of ix_l2_file_day (day, status) given as lists, SQLite
    # reads the days' rows from that index instead of every measured image of ix_l2_file_status.
    days = [(date.fromisoformat(first_day) + timedelta(days=k)).isoformat()
            for k in range((date.fromisoformat(last_day) - date.fromisoformat(first_day)).days + 1)]
    in_range = f.c.observation_day.in_(days) & f.c.status.in_(MEASURED) & newest_measured_row()
    # One statement per metric, each row reached by its full key: at the survey peak the range holds
    # ~180,000 images, each with ~1,500 values and verdicts. A verdict is looked for only where the
    # measurement counted a failure.
    for monitor, metric in metrics:
        failed = sa.exists().where((e.c.file_id == m.c.file_id) & (e.c.monitor == m.c.monitor)
                                   & (e.c.standards_hash == m.c.standards_hash) & (e.c.metric == metric)
                                   & (e.c.region == 0) & e.c.passed.is_(False))
        query = (sa.select(f.c.detector, f.c.exposure_start, f.c.filename, v.c.value, v.c.unit,
                           sa.case((m.c.n_failed > 0, failed), else_=sa.false()).label("failed"))
                 .select_from(f)
                 .join(m, (m.c.file_id == f.c.id) & (m.c.monitor == monitor))
                 .join(v, (v.c.file_id == f.c.id) & (v.c.monitor == monitor) & (v.c.metric == metric)
                       & (v.c.region == 0) & (v.c.scale == DETECTOR))
                 .where(in_range)
                 .order_by(f.c.exposure_start, f.c.filename))
        series = out[(monitor, metric)]
        for detector, when, filename, value, unit, is_failed in conn.execute(query):
            series.setdefault(detector or "", []).append(TrendPoint(when, value, bool(is_failed), filename, unit or ""))
    return out


# -- reference files ------------------------------------------------------------------

def reference_status(conn, filenames) -> dict[str, ReferenceStatus]:
    """Reference files known to the reference arm, by name: status and latest evaluation run.

    Names not in ``reference_file`` are left out.
    """
    f, r = t.reference_file, t.evaluation_run
    names = sorted({n for n in filenames if n})
    out: dict[str, ReferenceStatus] = {}
    for chunk in _chunks(names):
        latest = (sa.select(r.c.file_id, sa.func.max(r.c.evaluated_at).label("evaluated_at"))
                  .where(r.c.file_id.in_(sa.select(f.c.id).where(f.c.filename.in_(chunk))))
                  .group_by(r.c.file_id).subquery())
        query = (sa.select(f.c.filename, f.c.reftype, f.c.detector, f.c.monitor, f.c.status, f.c.error,
                           r.c.n_failed, r.c.n_evaluations, latest.c.evaluated_at, r.c.n_not_evaluated)
                 .select_from(f)
                 .outerjoin(latest, latest.c.file_id == f.c.id)
                 .outerjoin(r, (r.c.file_id == f.c.id) & (r.c.evaluated_at == latest.c.evaluated_at))
                 .where(f.c.filename.in_(chunk))
                 .order_by(f.c.filename, r.c.n_failed.desc()))
        for row in conn.execute(query):
            if row.filename not in out:  # two runs at the same instant: the one with more failures
                out[row.filename] = ReferenceStatus(*row)
    return out


# -- the site index -----------------------------------------------------------------

def day_summaries(conn, days) -> dict[str, DaySummary]:
    """Per day: images measured (newest measured reprocess number), failing, and not measurable."""
    f = l2_file
    days = sorted(set(days))
    out: dict[str, DaySummary] = {}
    failing = sa.func.sum(sa.case(((f.c.status == "error") | (f.c.n_failed > 0), 1), else_=0))
    errors = sa.func.sum(sa.case((f.c.status == "error", 1), else_=0))
    for chunk in _chunks(days):
        newest = _newest_measured(f.c.observation_day.in_(chunk))
        query = (sa.select(f.c.observation_day, sa.func.count(), failing, errors)
                 .join(newest, (newest.c.filename == f.c.filename) & (newest.c.n == f.c.reprocess_number))
                 .where(f.c.observation_day.in_(chunk))
                 .group_by(f.c.observation_day))
        for day, n, n_failing, n_errors in conn.execute(query):
            out[day] = DaySummary(day, int(n), int(n_failing or 0), int(n_errors or 0))
    return out
