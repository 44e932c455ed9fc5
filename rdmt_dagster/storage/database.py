"""The RDMT relational database: SQLite (embedded default), MySQL/MariaDB, PostgreSQL.

Writes replace what a file had before: re-measuring a file, or re-evaluating
it with the same standards, never duplicates a row.

Concurrent writers are safe: two runs of one delivery may store the same
file at once. Every write transaction starts by creating the file's row if
needed (``INSERT ... ON CONFLICT DO NOTHING`` / ``ON DUPLICATE KEY UPDATE``)
and locking it, so writers of one file take turns and each replaces what the
previous one committed; writers of different files do not wait for each
other (SQLite, which has one writer at a time, excepted).

Content: each file row keeps the SHA-256 of the content registered under its
name and a version. Registering different content under a known name is
refused (`ContentChangedError`) unless it is registered as a new version,
which deletes the earlier metrics and evaluations: a file name is its
partition key and keys every output (Parquet, ECSV, reports), so one name
has one set of results.

Delivery: each file row records the delivery its content came in
(``delivery``, e.g. the CRDS context or ``submit:<UTC time>``), the trigger
(``delivered_by``: `CRDS`, `SUBMIT`, `DROP_FOLDER`) and the Dagster run that
measured it (``run_id``, `Database.record_run`).

Verdicts an evaluator could not give (not evaluated) are stored as NULL in
``evaluation.passed``: neither a pass nor a failure.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from ..science.metrics import FileInfo, Metric, MetricSet, PriorMetrics, ReferenceFileInfo
from ..science.monitor import EvaluationSet
from ..science.scales import ScaleValues, region_ids
from ..science.standards import MonitorStandards
from . import tables as t
from .files import evaluation_columns


INSERT_CHUNK = 20_000
IN_CHUNK = 500  # names per IN (...) list
RETRYABLE = ("deadlock", "could not serialize", "database is locked", "lock wait timeout")
HEAD_REVISION = "0006"  # the newest file in migrations/versions; a test checks they agree
UPGRADE_ATTEMPTS = 5

REGISTERED = "registered"  # waiting for its run (requested by its registrar or registered_files_sensor)
REPLACED = "replaced"  # new content under a measured name, registered with `rdmt submit --replace`


class ContentChangedError(ValueError):
    """Content registered under a name whose monitored content is different.

    Attributes
    ----------
    filename, path : str
        The name and where the new content is.
    registered_path : str
        Where the monitored content was registered from.
    checksum, registered_checksum : str or None
        SHA-256 of the new and of the monitored content (None: not recorded).
    """

    def __init__(self, filename: str, path: str, registered_path: str, checksum: str | None,
                 registered_checksum: str | None):
        self.filename, self.path, self.registered_path = filename, path, registered_path
        self.checksum, self.registered_checksum = checksum, registered_checksum
        super().__init__(f"{path}: its content differs from the {filename} already monitored "
                         f"(registered from {registered_path})")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _nullable(values: np.ndarray) -> list:
    """Floats with NaN/inf as None (MySQL stores no NaN)."""
    return [v if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64).tolist()]


def _delivery_values(delivery: str | None, trigger: str | None) -> dict:
    """The ``reference_file`` columns of a delivery, checked against their sizes."""
    if delivery is not None and len(delivery) > 64:
        raise ValueError(f"delivery {delivery!r} is longer than 64 characters")
    if trigger is not None and len(trigger) > 32:
        raise ValueError(f"trigger {trigger!r} is longer than 32 characters")
    return {"delivery": delivery, "delivered_by": trigger}


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def failed_evaluations_query(filenames=None, standards_hash: str | None = None) -> sa.Select:
    """Failed evaluations (of ``filenames``, under ``standards_hash``) with their metric values.

    ``passed IS false`` leaves out the verdicts not given (NULL).
    """
    e, m, f = t.evaluation, t.metric_value, t.reference_file
    query = (
        sa.select(f.c.filename, f.c.detector, e.c.metric, e.c.region, m.c.scale, m.c.value, m.c.unit,
                  e.c.evaluator, e.c.threshold, e.c.lower, e.c.reference, e.c.standards_hash)
        .select_from(f)
        .join(e, e.c.file_id == f.c.id)
        .join(m, (m.c.file_id == e.c.file_id) & (m.c.metric == e.c.metric) & (m.c.region == e.c.region))
        .where(e.c.passed.is_(False))
        .order_by(f.c.filename, e.c.metric, e.c.region, e.c.evaluator)
    )
    if filenames is not None:
        query = query.where(f.c.filename.in_(list(filenames)))
    if standards_hash is not None:
        query = query.where(e.c.standards_hash == standards_hash)
    # Files, then their evaluations, then one metric value each. Right after a
    # bulk load InnoDB's statistics can still describe empty tables, and MariaDB
    # then may drive the join from metric_value and reach evaluation through
    # file_id alone: a quadratic plan that took two minutes for two files.
    # STRAIGHT_JOIN keeps the order written above.
    for dialect in ("mysql", "mariadb"):
        query = query.prefix_with("STRAIGHT_JOIN", dialect=dialect)
    return query


def _insert_if_absent(conn, table, values: dict, key: str):
    """An INSERT of ``values`` into ``table`` that does nothing when a row with the same ``key`` exists.

    A concurrent transaction that inserted the same key first makes it wait
    for that transaction's end rather than fail.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert(table).values(values).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        statement = insert(table).values(values)
        # Not INSERT IGNORE, which would also turn other errors into warnings.
        return statement.on_duplicate_key_update({key: statement.inserted[key]})
    raise NotImplementedError(f"database dialect {dialect} is not supported")


class Database:
    """Access to the RDMT tables at ``url`` (any SQLAlchemy URL)."""

    def __init__(self, url: str):
        self.url = url
        kwargs = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 60}}
        self.engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- schema ---------------------------------------------------------
    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema to ``revision`` (default: the newest).

        Every process that opens the database upgrades it, so several may
        run the same migration at once; the ones that lose (a table or
        column that now exists) try again and find the schema up to date.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("rdmt_dagster.storage") / "migrations"))
        for attempt in range(UPGRADE_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    cfg.attributes["connection"] = connection
                    command.upgrade(cfg, revision)
                return
            except sa.exc.DBAPIError:
                if attempt == UPGRADE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * 2**attempt)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- reference files ------------------------------------------------
    def register(self, filename: str, path: str, checksum: str | None = None, *, replace: bool = False,
                 replaced_status: str = REGISTERED, delivery: str | None = None, trigger: str | None = None) -> int:
        """Record that ``filename`` is at ``path`` with content ``checksum``; harmless when repeated.

        Parameters
        ----------
        filename, path : str
            The file's name (its partition key) and where it is.
        checksum : str, optional
            SHA-256 (hex) of the file. Without one the content is not
            compared: only the path is recorded.
        replace : bool
            Register content that differs from the stored one as a new version
            (`new_version`) instead of refusing it.
        replaced_status : str
            Status of a measured file replaced so: `REGISTERED` when the caller
            requests its run itself, `REPLACED` when the hand-off of replaced
            files (`replaced_files`) is to request it.
        delivery : str, optional
            The delivery the file came in (at most 64 characters): the CRDS
            context (``roman_0042.pmap``), ``submit:<UTC time>``,
            ``drop_folder:<UTC time>``. Recorded with a new row or new content;
            the same content registered again keeps the delivery it first came
            in (a row without one takes this one).
        trigger : str, optional
            What brought it (at most 32 characters): `CRDS`, `SUBMIT` or
            `DROP_FOLDER` (``reference_file.delivered_by``).

        Returns
        -------
        int
            The row's id.

        Raises
        ------
        ContentChangedError
            ``checksum`` differs from the stored one, or none is stored, and
            ``replace`` is false. Nothing is changed.
        ValueError
            ``delivery`` or ``trigger`` is too long for its column.
        """
        came_in = _delivery_values(delivery, trigger)
        return self._transaction(
            lambda conn: self._register(conn, filename, str(path), checksum, replace, replaced_status, came_in))

    def _register(self, conn, filename, path, checksum, replace, replaced_status, came_in: dict) -> int:
        f = t.reference_file
        file_id = self._lock_file_row(conn, filename, path=path, checksum=checksum, registered_at=utcnow(), **came_in)
        row = conn.execute(sa.select(f.c.path, f.c.checksum, f.c.delivery).where(f.c.id == file_id)).one()
        if checksum is None or row.checksum == checksum:
            changes = {"path": path} if row.path != path else {}
            if row.delivery is None and came_in["delivery"] is not None:
                changes.update(came_in)
            if changes:
                conn.execute(f.update().where(f.c.id == file_id).values(**changes))
            return file_id
        if not replace:
            raise ContentChangedError(filename, path, row.path, checksum, row.checksum)
        self._new_version(conn, file_id, path, checksum, replaced_status, came_in)
        return file_id

    def record_run(self, filenames, run_id: str) -> None:
        """Record ``run_id`` (the Dagster run measuring them) as the run of ``filenames``."""
        if len(run_id) > 64:
            raise ValueError(f"run id {run_id!r} is longer than 64 characters")
        f = t.reference_file
        filenames = list(filenames)
        with self.engine.begin() as conn:
            for start in range(0, len(filenames), IN_CHUNK):
                conn.execute(f.update().where(f.c.filename.in_(filenames[start:start + IN_CHUNK])).values(run_id=run_id))

    def new_version(self, filename: str, path: str, checksum: str | None, status: str = REGISTERED) -> int:
        """Register new content under a known ``filename``; return its version.

        The file's metrics, evaluations and error are deleted, its version
        goes up by one and its status becomes ``status`` (`REGISTERED` or
        `REPLACED`; a file never measured stays `REGISTERED`), so that the
        next run measures it.
        """
        def work(conn):
            file_id = self._lock_file_row(conn, filename)
            if file_id is None:
                raise KeyError(f"{filename} is not registered")
            return self._new_version(conn, file_id, str(path), checksum, status)

        return self._transaction(work)

    def _new_version(self, conn, file_id: int, path: str, checksum: str | None, status: str,
                     came_in: dict | None = None) -> int:
        f = t.reference_file
        row = conn.execute(sa.select(f.c.status, f.c.version).where(f.c.id == file_id)).one()
        for table in (t.evaluation, t.evaluation_run, t.metric_value):
            self._delete_existing(conn, table, table.c.file_id == file_id)
        # A file that was never measured is still waiting for the run its
        # registrar requested: that run measures the new content.
        status = REGISTERED if row.status == REGISTERED else status
        # New content is a new delivery: the one it came in, or unknown.
        came_in = came_in or _delivery_values(None, None)
        conn.execute(f.update().where(f.c.id == file_id).values(
            path=path, checksum=checksum, version=row.version + 1, status=status, error=None,
            monitor_version="", measured_at=None, registered_at=utcnow(), run_id=None, **came_in))
        return row.version + 1

    def record_checksum(self, filename: str, checksum: str) -> None:
        """Store the checksum of ``filename``'s monitored content where none is recorded yet."""
        f = t.reference_file
        with self.engine.begin() as conn:
            conn.execute(f.update().where((f.c.filename == filename) & f.c.checksum.is_(None))
                         .values(checksum=checksum))

    def registrations(self, filenames) -> dict[str, dict]:
        """Path, checksum, status and version of each registered name of ``filenames``."""
        f = t.reference_file
        filenames = list(filenames)
        out = {}
        with self.engine.connect() as conn:
            for start in range(0, len(filenames), IN_CHUNK):
                rows = conn.execute(sa.select(f.c.filename, f.c.path, f.c.checksum, f.c.status, f.c.version)
                                    .where(f.c.filename.in_(filenames[start:start + IN_CHUNK])))
                out.update({r.filename: dict(r._mapping) for r in rows})
        return out

    def replaced_files(self) -> list[tuple[str, int]]:
        """(name, version) of the files replaced with new content and not measured since."""
        f = t.reference_file
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(f.c.filename, f.c.version).where(f.c.status == REPLACED).order_by(f.c.id))
            return [(r.filename, r.version) for r in rows]

    def paths(self, filenames) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.reference_file.c.filename, t.reference_file.c.path).where(
                    t.reference_file.c.filename.in_(list(filenames))
                )
            )
            return {r.filename: r.path for r in rows}

    @staticmethod
    def _lock_file_row(conn, filename: str, **create) -> int | None:
        """Lock the row of ``filename`` until the transaction ends; return its id (None: no row).

        With ``create`` (column values) a missing row is inserted first.
        This must be the transaction's first statement: a writer of the same
        file then waits here for the other's commit, and what it reads
        afterwards includes that commit (InnoDB's snapshot starts at the first
        plain read, SQLite's write lock at the first write).
        """
        f = t.reference_file
        if create:
            conn.execute(_insert_if_absent(conn, f, {"filename": filename, **create}, "filename"))
        elif conn.dialect.name == "sqlite":
            # SQLite ignores FOR UPDATE; a write takes its database-wide lock now.
            conn.execute(f.update().where(f.c.filename == filename).values(filename=f.c.filename))
        return conn.execute(sa.select(f.c.id).where(f.c.filename == filename).with_for_update()).scalar()

    def _file_row(self, conn, info: FileInfo, **values) -> int:
        file_id = self._lock_file_row(conn, info.filename, path=info.path, registered_at=utcnow())
        fields = dict(
            path=info.path, monitor=info.monitor, reftype=getattr(info, "reftype", ""), detector=info.detector,
            useafter=getattr(info, "useafter", None), **values,
        )
        conn.execute(t.reference_file.update().where(t.reference_file.c.id == file_id).values(**fields))
        return file_id

    def file_status(self, filename: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.reference_file).where(t.reference_file.c.filename == filename)).first()
            return None if row is None else dict(row._mapping)

    # -- metrics --------------------------------------------------------
    def write_metrics(self, metric_set: MetricSet) -> None:
        """Replace the stored metrics (or error) of one file."""
        self._transaction(lambda conn: self._write_metrics(conn, metric_set))

    def _write_metrics(self, conn, metric_set: MetricSet) -> None:
        file_id = self._file_row(
            conn, metric_set.info,
            status="ok" if metric_set.ok else "error",
            error=metric_set.error,
            monitor_version=metric_set.monitor_version,
            measured_at=utcnow(),
        )
        self._delete_existing(conn, t.metric_value, t.metric_value.c.file_id == file_id)
        if not metric_set.ok:
            return
        cols = metric_set.columns()
        n = len(cols["value"])
        self._insert(conn, t.metric_value, {
            "file_id": [file_id] * n, "metric": cols["metric"].tolist(), "region": cols["region"].tolist(),
            "scale": cols["scale"].tolist(), "value": _nullable(cols["value"]), "unit": cols["unit"].tolist(),
            "monitor_version": [metric_set.monitor_version] * n,
        })

    def load_metric_set(self, filename: str) -> MetricSet:
        """Rebuild the `MetricSet` of one measured file."""
        with self.engine.connect() as conn:
            f = conn.execute(sa.select(t.reference_file).where(t.reference_file.c.filename == filename)).first()
            if f is None:
                raise KeyError(f"{filename} is not in the database")
            info = ReferenceFileInfo(f.filename, f.path, f.monitor, f.detector, f.useafter, f.reftype)
            if f.status != "ok":
                return MetricSet(info, f.monitor_version, error=f.error or f"{filename}: not measured ({f.status})")
            rows = conn.execute(
                sa.select(t.metric_value.c.metric, t.metric_value.c.scale, t.metric_value.c.region,
                          t.metric_value.c.value, t.metric_value.c.unit).where(t.metric_value.c.file_id == f.id)
            ).all()
        return MetricSet(info, f.monitor_version, _metrics_from_rows(rows))

    # -- evaluations ----------------------------------------------------
    def write_standards(self, standards: MonitorStandards) -> None:
        """Keep the YAML of ``standards`` under its hash (once, whoever writes it first)."""
        values = dict(hash=standards.hash, monitor=standards.monitor, source=standards.source,
                      content=standards.as_yaml(), created_at=utcnow())

        def work(conn):
            conn.execute(_insert_if_absent(conn, t.standards, values, "hash"))

        self._transaction(work)

    def write_evaluations(self, evaluation_set: EvaluationSet, monitor_version: str) -> None:
        """Replace the evaluations of one file under one standards hash."""
        self._transaction(lambda conn: self._write_evaluations(conn, evaluation_set, monitor_version))

    def _write_evaluations(self, conn, evaluation_set: EvaluationSet, monitor_version: str) -> None:
        info = evaluation_set.info
        file_id = self._lock_file_row(conn, info.filename)
        if file_id is None:
            raise KeyError(f"{info.filename}: evaluations written before its metrics")
        key = (t.evaluation.c.file_id == file_id) & (t.evaluation.c.standards_hash == evaluation_set.standards_hash)
        self._delete_existing(conn, t.evaluation, key)
        self._delete_existing(conn, t.evaluation_run, (t.evaluation_run.c.file_id == file_id)
                              & (t.evaluation_run.c.standards_hash == evaluation_set.standards_hash))
        cols = evaluation_columns(evaluation_set)
        n = len(cols["passed"])
        self._insert(conn, t.evaluation, {
            "file_id": [file_id] * n, "standards_hash": [evaluation_set.standards_hash] * n,
            "metric": cols["metric"].tolist(), "region": cols["region"].tolist(),
            "evaluator": cols["evaluator"].tolist(), "threshold": _nullable(cols["threshold"]),
            "lower": _nullable(cols["lower"]), "reference": _nullable(cols["reference"]),
            "passed": cols["passed"].tolist(),  # None: not evaluated
        })
        compared = sorted({ev.reference_files for ev in evaluation_set.evaluations if ev.reference_files})
        notes = sorted({f"{ev.evaluator}: {ev.note}" for ev in evaluation_set.evaluations if ev.note})
        conn.execute(t.evaluation_run.insert().values(
            file_id=file_id, standards_hash=evaluation_set.standards_hash, monitor_version=monitor_version,
            evaluated_at=utcnow(), n_evaluations=n, n_failed=evaluation_set.n_failed,
            n_not_evaluated=evaluation_set.n_not_evaluated, compared_with=json.dumps(compared),
            notes=json.dumps(notes)))

    def failed_evaluations(self, filenames=None, standards_hash: str | None = None) -> list[dict]:
        """Failed evaluation rows joined with their metric values (not-evaluated ones are not failures)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(failed_evaluations_query(filenames, standards_hash))]

    def count_rows(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t.metadata.tables[table])).scalar()

    # -- history --------------------------------------------------------
    def history(self) -> "DatabaseHistory":
        return DatabaseHistory(self)

    def earlier_files(self, info: FileInfo, n: int) -> list[FileInfo]:
        """Up to ``n`` measured files of the type and detector of ``info`` preceding it, newest first."""
        if n <= 0 or getattr(info, "useafter", None) is None:
            return []
        f = t.reference_file
        earlier = (f.c.useafter < info.useafter) | ((f.c.useafter == info.useafter) & (f.c.filename < info.filename))
        query = (
            sa.select(f.c.filename, f.c.path, f.c.useafter)
            .where((f.c.monitor == info.monitor) & (f.c.detector == info.detector) & (f.c.status == "ok")
                   & (f.c.filename != info.filename) & earlier)
            .order_by(f.c.useafter.desc(), f.c.filename.desc())
            .limit(n)
        )
        with self.engine.connect() as conn:
            return [ReferenceFileInfo(r.filename, r.path, info.monitor, info.detector, r.useafter) for r in conn.execute(query)]

    def previous_info(self, info: FileInfo) -> FileInfo | None:
        """The previous measured file of the same type and detector, if any."""
        rows = self.earlier_files(info, 1)
        return rows[0] if rows else None

    def previous_path(self, info: FileInfo) -> str | None:
        """Path of the previous measured file of the same type and detector, if any."""
        previous = self.previous_info(info)
        return previous.path if previous else None

    def _transaction(self, work, attempts: int = 6):
        """Run ``work(connection)`` in a transaction, again when the server aborted it as a deadlock.

        Worker processes write different files at the same time; InnoDB may
        still pick one of two such transactions as a deadlock victim and asks
        for it to be restarted (MySQL 1213), as may PostgreSQL (40P01, 40001)
        and SQLite ("database is locked").
        """
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as exc:
                text = str(exc.orig).lower()
                if attempt == attempts - 1 or not any(word in text for word in RETRYABLE):
                    raise
                time.sleep(0.05 * 2**attempt)

    @staticmethod
    def _delete_existing(conn, table, where) -> None:
        """Delete the rows matching ``where``, without a locking delete when there are none.

        A plain SELECT takes no locks; a DELETE that matches nothing still
        takes InnoDB gap locks that collide with concurrent inserts.
        """
        if conn.execute(sa.select(sa.literal(1)).select_from(table).where(where).limit(1)).first() is not None:
            conn.execute(table.delete().where(where))

    def _insert(self, conn, table, columns: dict[str, list]) -> None:
        """Bulk insert column lists with the driver's own ``executemany``.

        About 4x faster than SQLAlchemy's per-row dict insert for the ~34k
        evaluation rows of one file (0.14 s against 0.5 s on SQLite).
        """
        names = list(columns)
        marks = {"qmark": "?", "numeric": None, "named": None}.get(conn.dialect.paramstyle, "%s")
        if marks is None:
            raise NotImplementedError(f"paramstyle {conn.dialect.paramstyle} is not supported")
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in names)}) "
               f"VALUES ({', '.join([marks] * len(names))})")
        rows = list(zip(*(columns[c] for c in names)))
        cursor = conn.connection.driver_connection.cursor()
        try:
            for start in range(0, len(rows), INSERT_CHUNK):
                cursor.executemany(sql, rows[start : start + INSERT_CHUNK])
        finally:
            cursor.close()


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _metrics_from_rows(rows) -> list[Metric]:
    """Group (metric, scale, region, value, unit) rows back into `Metric` objects."""
    grouped: dict[str, dict[str, dict[int, float]]] = {}
    units: dict[str, str] = {}
    for metric, scale, region, value, unit in rows:
        base = metric[len(scale) + 1 :]
        grouped.setdefault(base, {}).setdefault(scale, {})[region] = np.nan if value is None else value
        units[base] = unit
    out = []
    for base, by_scale in grouped.items():
        arrays = {scale: np.array([values.get(i, np.nan) for i in region_ids(scale).tolist()], dtype=np.float64)
                  for scale, values in by_scale.items()}
        out.append(Metric(base, units[base], ScaleValues(**arrays)))
    return out


class DatabaseHistory:
    """`History` backed by the database: earlier measured files of a type and detector."""

    def __init__(self, database: Database):
        self.database = database

    def before(self, info: FileInfo, n: int) -> list[PriorMetrics]:
        out = []
        for earlier in reversed(self.database.earlier_files(info, n)):
            ms = self.database.load_metric_set(earlier.filename)
            out.append(PriorMetrics(earlier.filename, ms.info.when, ms.values()))
        return out
