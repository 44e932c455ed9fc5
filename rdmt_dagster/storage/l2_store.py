"""The L2 arm's files and results in the RDMT database: claims, results, history.

A file moves through ``pending`` (announced; its header read into
``observation_day`` etc. before a run takes it) -> ``claimed`` (by exactly
one batch: a run's ``rdmt/l2_batch`` tag) -> ``ok`` or ``error``. Results are
keyed by the ``l2_file`` row, i.e. by file and reprocess number: storing a
file's results again replaces them, a reprocessing adds a row with the next
number and keeps the earlier results.

Claims are race-free on every backend: a claim is a conditional ``UPDATE ...
WHERE status = 'pending'``, so of two claimers of one file exactly one
changes the row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa

from ..science.metrics import FileInfo, L2FileInfo, MetricSet, PriorMetrics
from ..science.monitor import EvaluationSet
from .database import Database, _metrics_from_rows, _nullable, utcnow
from .files import evaluation_columns
from .l2_tables import l2_evaluation, l2_file, l2_measurement, l2_metric_value

PENDING, CLAIMED, OK, ERROR = "pending", "claimed", "ok", "error"
IN_CHUNK = 500


@dataclass(frozen=True)
class L2FileRow:
    """One L2 file and reprocess number as a run sees it."""

    id: int
    filename: str
    reprocess_number: int
    bucket: str
    s3_key: str
    observation_day: str | None
    monitors: tuple[str, ...] | None
    detector: str = ""
    optical_element: str = ""
    exposure_start: datetime | None = None
    ref_files: str | None = None
    crds_context: str = ""
    header_error: str | None = None

    @classmethod
    def from_row(cls, row) -> "L2FileRow":
        m = row._mapping
        monitors = tuple(x for x in (m["monitors"] or "").split(",") if x) or None
        return cls(m["id"], m["filename"], m["reprocess_number"], m["bucket"], m["s3_key"], m["observation_day"],
                   monitors, m["detector"], m["optical_element"], m["exposure_start"], m["ref_files"],
                   m["crds_context"], m["error"])

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.s3_key}"


def _chunks(values: list, size: int = IN_CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


class L2Store:
    """Access to the L2 tables of one migrated `Database`."""

    def __init__(self, database: Database):
        self.database = database
        self.engine = database.engine

    # -- headers and claims ---------------------------------------------
    def unidentified(self, limit: int) -> list[L2FileRow]:
        """Pending files whose header has not been read yet, oldest first."""
        query = (sa.select(l2_file).where((l2_file.c.status == PENDING) & l2_file.c.observation_day.is_(None))
                 .order_by(l2_file.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [L2FileRow.from_row(r) for r in conn.execute(query)]

    def record_header(self, file_id: int, header) -> None:
        """Store what an L2 header (`rdmt_dagster.l2.header.L2Header`) says about a pending file."""
        values = dict(
            detector=header.detector, optical_element=header.optical_element,
            exposure_start=header.exposure_start, program=header.program, visit=header.visit,
            exposure=header.exposure, ref_files=json.dumps(header.ref_files, sort_keys=True),
            crds_context=header.crds_context, observation_day=header.observation_day,
        )
        if values["observation_day"] is None:  # no exposure start: the day it was announced
            values["observation_day"] = self._received_day(file_id)
            values["error"] = f"{header.filename}: no exposure start in its header; filed under the day it arrived"
        with self.engine.begin() as conn:
            conn.execute(l2_file.update().where(l2_file.c.id == file_id).values(**values))

    def record_unreadable(self, file_id: int, problem: str) -> None:
        """A pending file whose header cannot be read: filed under the day it arrived.

        It stays pending: the run of that day tries to measure it, records the
        error against the file and fails its ``l2_files_readable`` check.
        """
        day = self._received_day(file_id)
        with self.engine.begin() as conn:
            conn.execute(l2_file.update().where(l2_file.c.id == file_id).values(observation_day=day, error=problem[:2000]))

    def _received_day(self, file_id: int) -> str:
        with self.engine.connect() as conn:
            received = conn.execute(sa.select(l2_file.c.received_at).where(l2_file.c.id == file_id)).scalar()
        return (received or utcnow()).strftime("%Y-%m-%d")

    def ready_days(self, batch_size: int, max_wait: timedelta, now: datetime | None = None) -> dict[str, tuple[int, bool]]:
        """Days with a full batch of identified pending files, or whose oldest has waited ``max_wait``.

        Returns day -> (number of pending files, whether the oldest has waited ``max_wait``).
        """
        now = now or utcnow()
        query = (sa.select(l2_file.c.observation_day, sa.func.count(), sa.func.min(l2_file.c.received_at))
                 .where((l2_file.c.status == PENDING) & l2_file.c.observation_day.is_not(None))
                 .group_by(l2_file.c.observation_day).order_by(l2_file.c.observation_day))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        ready = {day: (n, oldest <= now - max_wait) for day, n, oldest in rows}
        return {day: (n, waited) for day, (n, waited) in ready.items() if n >= batch_size or waited}

    def claim(self, day: str, batch: str, limit: int) -> list[int]:
        """Claim up to ``limit`` pending files of ``day`` for ``batch``; the ids this call claimed."""
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(l2_file.c.id).where((l2_file.c.status == PENDING)
                                                             & (l2_file.c.observation_day == day))
                               .order_by(l2_file.c.id).limit(limit)).scalars().all()
        return self._claim_ids(list(ids), batch)

    def _claim_ids(self, ids: list[int], batch: str) -> list[int]:
        now = utcnow()
        with self.engine.begin() as conn:
            for chunk in _chunks(ids):
                conn.execute(l2_file.update().where(l2_file.c.id.in_(chunk) & (l2_file.c.status == PENDING))
                             .values(status=CLAIMED, claimed_by=batch, claimed_at=now))
        return self.batch_ids(batch)

    def batch_ids(self, batch: str) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(l2_file.c.id).where(l2_file.c.claimed_by == batch)
                                     .order_by(l2_file.c.id)).scalars())

    def batch_files(self, batch: str) -> list[L2FileRow]:
        """The files claimed by (or measured in) ``batch``."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(l2_file).where(l2_file.c.claimed_by == batch).order_by(l2_file.c.id))
            return [L2FileRow.from_row(r) for r in rows]

    def stale_batches(self, claimed_before: datetime) -> list[str]:
        """Batches holding files claimed before ``claimed_before`` and not measured yet."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(l2_file.c.claimed_by).distinct().where(
                (l2_file.c.status == CLAIMED) & (l2_file.c.claimed_at < claimed_before))).scalars())

    def release_stale(self, older_than: datetime, keep_batches=()) -> int:
        """Return to ``pending`` files claimed before ``older_than`` by batches not in ``keep_batches``."""
        keep = list(keep_batches)
        where = (l2_file.c.status == CLAIMED) & (l2_file.c.claimed_at < older_than)
        if keep:
            where &= l2_file.c.claimed_by.not_in(keep)
        with self.engine.begin() as conn:
            return conn.execute(l2_file.update().where(where).values(status=PENDING, claimed_by=None,
                                                                     claimed_at=None)).rowcount

    def reprocess(self, days: list[str], batch: str) -> list[int]:
        """Claim the files observed on ``days`` for ``batch``, measured ones under their next reprocess number.

        Pending files of those days are claimed as they are; every file whose
        newest row is measured (``ok`` or ``error``) gets a new row, numbered
        one higher, claimed by ``batch``. Earlier rows and their results stay.
        Repeating the call for the same batch adds nothing.
        """
        already = self.batch_ids(batch)
        if already:
            return already
        newest = (sa.select(l2_file.c.filename, sa.func.max(l2_file.c.reprocess_number).label("n"))
                  .group_by(l2_file.c.filename).subquery())
        query = (sa.select(l2_file).join(newest, (newest.c.filename == l2_file.c.filename)
                                         & (newest.c.n == l2_file.c.reprocess_number))
                 .where(l2_file.c.observation_day.in_(days)).order_by(l2_file.c.id))
        now = utcnow()
        pending = []
        with self.engine.begin() as conn:
            for row in conn.execute(query).all():
                m = dict(row._mapping)
                if m["status"] == PENDING:
                    pending.append(m["id"])
                    continue
                if m["status"] == CLAIMED:
                    continue  # another run has it
                number = m["reprocess_number"] + 1
                copy = {k: m[k] for k in ("filename", "bucket", "s3_key", "checksum", "size", "monitors",
                                          "created_at", "detector", "optical_element", "exposure_start", "program",
                                          "visit", "exposure", "observation_day", "ref_files", "crds_context")}
                conn.execute(l2_file.insert().values(
                    **copy, reprocess_number=number, reprocessing="backfill", message_id="",
                    notice_key=hashlib.sha256(f"{m['filename']}\0backfill\0{number}".encode()).hexdigest(),
                    received_at=now, status=CLAIMED, claimed_by=batch, claimed_at=now))
        self._claim_ids(pending, batch)
        return self.batch_ids(batch)

    # -- results ----------------------------------------------------------
    def write_measurements(self, file_id: int, metric_sets: list[MetricSet], path: str | None = None) -> None:
        """Replace the measurements of one file (all its monitors) and mark it measured."""
        self.database._transaction(lambda conn: self._write_measurements(conn, file_id, metric_sets, path))

    def _write_measurements(self, conn, file_id, metric_sets, path) -> None:
        now = utcnow()
        for table in (l2_evaluation, l2_metric_value, l2_measurement):
            self.database._delete_existing(conn, table, table.c.file_id == file_id)
        for ms in metric_sets:
            monitor = ms.info.monitor or "file"
            conn.execute(l2_measurement.insert().values(
                file_id=file_id, monitor=monitor, status=OK if ms.ok else ERROR, error=ms.error,
                monitor_version=ms.monitor_version, measured_at=now))
            if not ms.ok:
                continue
            cols = ms.columns()
            n = len(cols["value"])
            self.database._insert(conn, l2_metric_value, {
                "file_id": [file_id] * n, "monitor": [monitor] * n, "metric": cols["metric"].tolist(),
                "region": cols["region"].tolist(), "scale": cols["scale"].tolist(),
                "value": _nullable(cols["value"]), "unit": cols["unit"].tolist()})
        errors = [ms.error for ms in metric_sets if not ms.ok]
        values = dict(status=OK if len(errors) < len(metric_sets) else ERROR,
                      error="; ".join(errors)[:4000] or None, measured_at=now, n_failed=len(errors))
        info = next((ms.info for ms in metric_sets if isinstance(ms.info, L2FileInfo)), None)
        if info is not None:  # the file's own header, as the monitors read it
            values.update(detector=info.detector, optical_element=info.optical_element,
                          exposure_start=info.exposure_start, program=info.program, visit=info.visit,
                          exposure=info.exposure)
        conn.execute(l2_file.update().where(l2_file.c.id == file_id).values(**values))

    def write_evaluation(self, file_id: int, evaluation_set: EvaluationSet) -> None:
        """Replace one monitor's evaluations of one file under one standards hash."""
        self.database._transaction(lambda conn: self._write_evaluation(conn, file_id, evaluation_set))

    def _write_evaluation(self, conn, file_id, es: EvaluationSet) -> None:
        monitor = es.info.monitor
        key = ((l2_evaluation.c.file_id == file_id) & (l2_evaluation.c.monitor == monitor)
               & (l2_evaluation.c.standards_hash == es.standards_hash))
        self.database._delete_existing(conn, l2_evaluation, key)
        cols = evaluation_columns(es)
        n = len(cols["passed"])
        self.database._insert(conn, l2_evaluation, {
            "file_id": [file_id] * n, "monitor": [monitor] * n, "standards_hash": [es.standards_hash] * n,
            "metric": cols["metric"].tolist(), "region": cols["region"].tolist(),
            "evaluator": cols["evaluator"].tolist(), "threshold": _nullable(cols["threshold"]),
            "lower": _nullable(cols["lower"]), "reference": _nullable(cols["reference"]),
            "passed": cols["passed"].tolist()})  # None: not evaluated
        compared = sorted({ev.reference_files for ev in es.evaluations if ev.reference_files})
        notes = sorted({f"{ev.evaluator}: {ev.note}" for ev in es.evaluations if ev.note})
        conn.execute(l2_measurement.update().where((l2_measurement.c.file_id == file_id)
                                                   & (l2_measurement.c.monitor == monitor)).values(
            standards_hash=es.standards_hash, evaluated_at=utcnow(), n_evaluations=n, n_failed=es.n_failed,
            n_not_evaluated=es.n_not_evaluated, compared_with=json.dumps(compared), notes=json.dumps(notes)))
        m = l2_measurement
        failed = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(m.c.n_failed), 0),
                                        sa.func.sum(sa.case((m.c.status == ERROR, 1), else_=0)))
                              .where(m.c.file_id == file_id)).one()
        conn.execute(l2_file.update().where(l2_file.c.id == file_id)
                     .values(n_failed=int(failed[0] or 0) + int(failed[1] or 0)))

    def record_error(self, file_id: int, error: str) -> None:
        """Mark a file as not measured, with the reason (its earlier measurements are removed)."""
        self.write_measurements(file_id, [MetricSet(FileInfo("", "", "file"), "", error=error[:4000])])

    def load_metric_sets(self, file_ids) -> dict[int, list[MetricSet]]:
        """The stored measurements of ``file_ids``: file id -> one `MetricSet` per monitor."""
        file_ids = list(file_ids)
        out: dict[int, list[MetricSet]] = {i: [] for i in file_ids}
        f, m, v = l2_file, l2_measurement, l2_metric_value
        with self.engine.connect() as conn:
            for chunk in _chunks(file_ids):
                files = {r.id: r for r in conn.execute(sa.select(f).where(f.c.id.in_(chunk)))}
                measurements = conn.execute(sa.select(m).where(m.c.file_id.in_(chunk))
                                            .order_by(m.c.file_id, m.c.monitor)).all()
                values: dict[tuple, list] = {}
                for r in conn.execute(sa.select(v.c.file_id, v.c.monitor, v.c.metric, v.c.scale, v.c.region,
                                                v.c.value, v.c.unit).where(v.c.file_id.in_(chunk))):
                    values.setdefault((r.file_id, r.monitor), []).append(r[2:])
                for meas in measurements:
                    info = _info(files[meas.file_id], meas.monitor)
                    if meas.status != OK:
                        out[meas.file_id].append(MetricSet(info, meas.monitor_version, error=meas.error))
                    else:
                        metrics = _metrics_from_rows(values.get((meas.file_id, meas.monitor), []))
                        out[meas.file_id].append(MetricSet(info, meas.monitor_version, metrics))
        return out

    def history(self) -> "L2History":
        return L2History(self)


def _info(row, monitor: str) -> L2FileInfo:
    return L2FileInfo(row.filename, f"s3://{row.bucket}/{row.s3_key}", monitor, row.detector,
                      row.optical_element, row.exposure_start, row.program, row.visit, row.exposure)


class L2History:
    """Earlier exposures of the same monitor, detector and optical element (their newest measured row)."""

    def __init__(self, store: L2Store):
        self.store = store

    def before(self, info: FileInfo, n: int) -> list[PriorMetrics]:
        if n <= 0 or info.when is None:
            return []
        f, m, v = l2_file, l2_measurement, l2_metric_value
        later = l2_file.alias("later")
        newer = sa.exists().where((later.c.filename == f.c.filename) & (later.c.status == OK)
                                  & (later.c.reprocess_number > f.c.reprocess_number))
        earlier = (f.c.exposure_start < info.when) | ((f.c.exposure_start == info.when) & (f.c.filename < info.filename))
        query = (sa.select(f.c.id, f.c.filename, f.c.exposure_start).select_from(f)
                 .join(m, (m.c.file_id == f.c.id) & (m.c.monitor == info.monitor) & (m.c.status == OK))
                 .where((f.c.status == OK) & (f.c.detector == info.detector)
                        & (f.c.optical_element == getattr(info, "optical_element", ""))
                        & (f.c.filename != info.filename) & earlier & ~newer)
                 .order_by(f.c.exposure_start.desc(), f.c.filename.desc()).limit(n))
        with self.store.engine.connect() as conn:
            files = conn.execute(query).all()
            if not files:
                return []
            rows: dict[int, list] = {r.id: [] for r in files}
            for r in conn.execute(sa.select(v.c.file_id, v.c.metric, v.c.scale, v.c.region, v.c.value, v.c.unit)
                                  .where(v.c.file_id.in_(list(rows)) & (v.c.monitor == info.monitor))):
                rows[r.file_id].append(r[1:])
        out = []
        for r in reversed(files):
            metrics = _metrics_from_rows(rows[r.id])
            values = {(metric.name, s): np.asarray(a, dtype=np.float64)
                      for metric in metrics for s, a in metric.values.items()}
            out.append(PriorMetrics(r.filename, r.exposure_start, values))
        return out
