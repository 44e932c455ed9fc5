"""Five years of Level-2 images at the Galactic Bulge survey peak in the RDMT database: fill it, then measure it.

    .venv/bin/python benchmarks/five_year_scale.py [--years 5] [--fraction 1.0] [--backend sqlite|postgresql|both]
        [--values history|detector|full|none] [--full-days 7] [--metric psf_fwhm_median] [--detector WFI07]
        [--repeat 5] [--batches 5] [--deliveries 3] [--try-indexes] [--keep] [--reuse] [--write] [--json PATH]

The database is created by the real migrations (``Database.upgrade``), then
filled with what the platform writes for the span: the L2 arm at the survey
peak (18 files every 120 s, 12,960 a day, every day of ``--years`` x 365.25
days: 23.7 million files in five years) and the reference arm at its own
rate, then measured. ``--fraction`` fills only the first part of the span
(``--fraction 0.1015`` is 2.4 million L2 files, 185 days at the peak rate).

What one file is
    The shape of every row comes from the real code, not from a list kept
    here: one synthetic 4088x4088 L2 image (the file of ``benchmarks/l2_bench.py``)
    is measured by the four L2 monitors (`rdmt_dagster.science.measure.measure_file`)
    and evaluated with the packaged standards (`rdmt_dagster.science.monitor.evaluate`)
    against no earlier file, two and ten, which gives per monitor the metric
    rows (metric, scale, region, unit and value), the evaluation rows
    (evaluator, threshold, lower limit, reference), which of them an evaluator
    cannot give without history, and the ``l2_measurement`` summary (counts,
    notes). The nine synthetic reference files of ``benchmarks/run.py`` are
    measured and evaluated the same way. Each L2 image gives 4
    ``l2_measurement`` rows, 444 ``l2_metric_value`` rows and 1,106
    ``l2_evaluation`` rows; a dark 8,456 ``metric_value`` and 33,824
    ``evaluation`` rows.

What is filled
    L2, every file of the span: its ``l2_file`` row as the ledger, the header
    reader, the claim and the store leave it (archive-style name, S3 key,
    notice key, checksum, size, message id, times of exposure, arrival, claim
    and measurement, detector, optical element, program / visit / exposure,
    observation day, the reference files and CRDS context that calibrated it,
    its batch, ``n_failed``) and its 4 ``l2_measurement`` rows with the
    evaluation summary (standards hash, counts of evaluations, failures and
    verdicts not given, the earlier files compared with, the evaluators'
    notes). Metric values and evaluations, per ``--values``: ``full`` every
    row above; ``detector`` the detector-scale rows (28 values and 82
    evaluations per file); ``history`` (default) the detector-scale value of
    ``--metric`` and its evaluations (5 rows per file); ``none`` nothing.
    The files observed in the last ``--full-days`` days of the span get every
    row whatever ``--values`` says. Files are WFI01..WFI18 per 120 s slot,
    6 exposures per visit, one visit in 72 through F087 and the others
    through F146; values are drawn around the measured ones (2 % scatter,
    counts rounded); 1 % of the images have one failed verdict, and change
    and trend verdicts are not given (NULL) for the first exposures of each
    detector and filter and for 0.2 % of the images (a missing predecessor).

    Reference arm, every delivery of the span: 18 darks weekly; readnoise,
    superbias and mask every 4 weeks; flat, gain, saturation, linearity and
    refpix every 13 weeks; each a new CRDS context, which the L2 files of the
    following days name. Every file gets its ``reference_file`` and
    ``evaluation_run`` rows and its detector and amp values and evaluations
    (all 1,057 regions with ``--values full`` or inside the full window);
    5 % have a failed verdict, the first three deliveries of a type have no
    trend verdicts and the first no change verdicts.

    The bulk rows are written by the database itself (``INSERT ... SELECT``
    from a template of one file joined with the files), the per-file rows by
    ``executemany`` (SQLite) or ``COPY`` (PostgreSQL, psycopg2's
    ``copy_expert``), in one transaction per day; a worker process builds
    the next day's rows while the database stores this one (``--workers 0``:
    in the same process). Secondary indexes are
    dropped first and rebuilt at the end (on PostgreSQL the primary and
    unique keys too, except those that foreign keys point at); their build is
    timed. SQLite runs without a journal while filling, then goes back to
    WAL; PostgreSQL fills with foreign-key triggers off
    (``session_replication_role = replica``), then runs ``VACUUM ANALYZE``.

What is measured
    1. ``rdmt history``: `rdmt_dagster.history.metric_history` of ``--metric``
       on ``--detector`` over the last year (the target: <= 1 s; median of
       ``--repeat``, a new connection each time), the command in a new
       process, and the ``metric_history`` view; with the time per SQL
       statement and, when slower than the target, the plans of the slowest.
       ``rdmt failures --since`` the last week (function and command).
    2. One 18-file batch through the real write path, median of
       ``--batches``: notices recorded by `rdmt_dagster.storage.l2_ledger.L2Ledger`,
       headers and the claim by `rdmt_dagster.storage.l2_store.L2Store`, the
       S3 catch-up's look-up of the same objects (``L2Ledger.record_unknown``), the
       evaluation against the stored history (`L2Store.history`), and the
       IO manager's store calls (``write_measurements`` and
       ``write_evaluation`` per file): files per second. Also one 18-dark
       delivery through `rdmt_dagster.storage.database.Database`. On
       PostgreSQL with the URL's driver (psycopg2) and again with psycopg 3
       when it is installed.
    3. Size of the database (SQLite file, ``pg_database_size``) and per
       table, per year and per L2 file, and extrapolated to the five years
       and to every row of every file.
    4. Partition keys of the L2 daily partitions
       (`rdmt_dagster.defs.l2.partitions.l2_day_partitions`) at the end of
       the span: the target is <= 2,000 per asset.
    5. The fill time, per table, and rows per second.

    ``--try-indexes`` then creates candidate indexes by hand (`candidate_indexes`:
    a partial index of the failed L2 verdicts for ``rdmt failures``), times
    their build, measures the queries and a few batches again, and drops
    them. The indexes an earlier run found useful are in the schema
    (revision 0006).

Notes
-----
The span starts on the first day of the L2 partitions (``RDMT_L2_FIRST_DAY``,
default 2026-09-01). SQLite is created under ``--workdir`` (default
``benchmarks/_data``), PostgreSQL as database ``--pg-database`` on
``--pg-url``; both are removed at the end unless ``--keep``. ``--reuse``
measures a kept database again without filling it (what was filled is read
from the ``.json`` file kept beside it). ``--write`` prepends the section to
BENCHMARKS.md under a ``## <UTC date time>`` heading, ``--json PATH`` writes
every number.

Examples
--------
A quick check of both backends on 1 % of the span::

    .venv/bin/python benchmarks/five_year_scale.py --fraction 0.01 --full-days 1 --batches 3

2 % of the span on each backend with the candidate indexes, the basis of the
extrapolation to five years::

    .venv/bin/python benchmarks/five_year_scale.py --fraction 0.02 --full-days 2 --try-indexes --json scale.json

The five years, one backend at a time (the database is dropped at the end)::

    .venv/bin/python benchmarks/five_year_scale.py --backend sqlite --try-indexes --write --json five_years_sqlite.json
    .venv/bin/python benchmarks/five_year_scale.py --backend postgresql --try-indexes --write --json five_years_pg.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import sqlite3
import statistics
import sys
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT / "benchmarks" / "_data"

# -- the calendar --------------------------------------------------------------------------------------------
FILES_PER_SLOT = 18
SLOT_SECONDS = 120
SLOTS_PER_DAY = 86400 // SLOT_SECONDS
FILES_PER_DAY = FILES_PER_SLOT * SLOTS_PER_DAY  # 12,960
DAYS_PER_YEAR = 365.25
DETECTORS = tuple(f"WFI{i:02d}" for i in range(1, FILES_PER_SLOT + 1))
EXPOSURES_PER_VISIT = 6
F087_EVERY = 72  # one visit in 72 (every 14.4 h) through F087, the others through F146
EXPOSURE_SECONDS = 140.0
BUCKET = "stpubdata"
PROGRAM = "00001"
#: Reference type -> weeks between deliveries (18 files each).
REFERENCE_EVERY_WEEKS = {"dark": 1, "readnoise": 4, "superbias": 4, "mask": 4, "flat": 13, "gain": 13,
                         "saturation": 13, "linearity": 13, "refpix": 13}
#: Reference types an L2 image names in ``meta.ref_file`` besides the monitored ones (one file per detector).
OTHER_REFERENCE_TYPES = ("apcorr", "area", "distortion", "epsf", "inverselinearity", "photom")
FIRST_CONTEXT = 100

# -- what the values look like -------------------------------------------------------------------------------
SCATTER = 0.02  # relative scatter of every value and reference between files
L2_FAILING = 0.01  # share of L2 images with one failed verdict
L2_GAPS = 0.002  # share of L2 images whose predecessor is missing: no change and trend verdicts
REFERENCE_FAILING = 0.05
NOT_EVALUATED_LEVELS = (0, 1, 2)  # earlier files: 10 (every verdict), 2 (no trend), 0 (no change, no trend)
HISTORY_FOR_LEVEL = {0: 10, 1: 2, 2: 0}
COUNT_UNITS = ("pix", "stars")

VALUE_LEVELS = ("history", "detector", "full", "none")
L2_TABLES = ("l2_file", "l2_measurement", "l2_metric_value", "l2_evaluation")
REFERENCE_TABLES = ("reference_file", "metric_value", "evaluation", "evaluation_run")
HISTORY_TARGET = 1.0
PARTITION_TARGET = 2000

SQLITE_STAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


def stamp(value: datetime) -> str:
    return value.strftime(SQLITE_STAMP)


def median_of(func, repeat: int):
    """(median seconds, min seconds, the last result) of ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), result


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.1f} MiB"


# -- templates: one measured file per monitor ----------------------------------------------------------------

@dataclass
class MonitorSummary:
    """What the store writes about one monitor's evaluation of one file, per not-evaluated level."""

    monitor: str
    version: str
    standards_hash: str
    n_evaluations: int
    n_not_evaluated: dict[int, int]
    notes: dict[int, str]


@dataclass
class ArmTemplate:
    """The rows one file of each monitor of an arm gives, from a real measurement and evaluation.

    ``values``: (ord, monitor, metric, scale, region, mean, sigma, is_count, unit, version), in the order of
    the metric table's key; ``evaluations``: (ord, monitor, hash, metric, scale, region, evaluator, ne_at,
    threshold, lower, ref_mean, ref_sigma), in the order of the evaluation table's key, ``ne_at`` the
    not-evaluated level from which the verdict is not given (3: always given).
    """

    metric_sets: dict[str, object]
    summaries: dict[str, MonitorSummary]
    values: list[tuple] = field(default_factory=list)
    evaluations: list[tuple] = field(default_factory=list)

    def value_rows(self, keep) -> list[tuple]:
        return [r for r in self.values if keep(r[1], r[2], r[3])]

    def evaluation_rows(self, keep) -> list[tuple]:
        return [r for r in self.evaluations if keep(r[1], r[3], r[4])]


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _perturbed(ms, rng, **info_changes):
    """A copy of a `MetricSet` with another identity and values scattered by `SCATTER`."""
    from rdmt_dagster.science.metrics import Metric, MetricSet
    from rdmt_dagster.science.scales import ScaleValues

    metrics = []
    for m in ms.metrics:
        arrays = {}
        for scale, values in m.values.items():
            values = np.asarray(values, dtype=np.float64)
            new = values * (1 + SCATTER * rng.standard_normal(values.shape))
            arrays[scale] = np.round(new) if m.unit in COUNT_UNITS else new
        metrics.append(Metric(m.name, m.unit, ScaleValues(**arrays), m.description))
    return MetricSet(dataclasses.replace(ms.info, **info_changes), ms.monitor_version, metrics)


def _earlier(ms, n: int, rng) -> list:
    """``n`` earlier files of the series of ``ms`` (same monitor, detector, filter), oldest first."""
    when = ms.info.when
    out = []
    for j in range(n, 0, -1):
        changes = {"filename": f"earlier_{j:02d}_{ms.info.filename}"}
        if hasattr(ms.info, "exposure_start"):
            changes["exposure_start"] = when - timedelta(seconds=SLOT_SECONDS * j)
        else:
            changes["useafter"] = when - timedelta(weeks=j)
        out.append(_perturbed(ms, rng, **changes))
    return out


def build_template(metric_sets: list, standards) -> ArmTemplate:
    """Evaluate each measured `MetricSet` with 10, 2 and no earlier files; the rows the store writes."""
    from rdmt_dagster.science.history import MemoryHistory
    from rdmt_dagster.science.monitor import evaluate
    from rdmt_dagster.storage.files import evaluation_columns

    rng = np.random.default_rng(5)
    template = ArmTemplate({}, {})
    values, evaluations = [], []
    for ms in metric_sets:
        monitor = ms.info.monitor
        block = standards.for_monitor(monitor)
        template.metric_sets[monitor] = ms
        cols = ms.columns()
        for metric, scale, region, value, unit in zip(cols["metric"], cols["scale"], cols["region"], cols["value"],
                                                      cols["unit"]):
            mean = _finite(value)
            values.append((monitor, metric, scale, int(region), mean, abs(mean or 0.0) * SCATTER,
                           int(unit in COUNT_UNITS), unit, ms.monitor_version))
        by_level = {}
        history = _earlier(ms, HISTORY_FOR_LEVEL[0], rng)
        for level in NOT_EVALUATED_LEVELS:
            earlier = history[len(history) - HISTORY_FOR_LEVEL[level]:] if HISTORY_FOR_LEVEL[level] else []
            by_level[level] = evaluate(ms, block, MemoryHistory(earlier))
        notes = {level: json.dumps(sorted({f"{ev.evaluator}: {ev.note}" for ev in es.evaluations if ev.note}))
                 for level, es in by_level.items()}
        template.summaries[monitor] = MonitorSummary(
            monitor, ms.monitor_version, block.hash, by_level[0].n_evaluations,
            {level: es.n_not_evaluated for level, es in by_level.items()}, notes)
        columns = {level: evaluation_columns(es) for level, es in by_level.items()}
        full = columns[0]
        for i in range(len(full["passed"])):
            ne_at = next((level for level in (1, 2) if columns[level]["passed"][i] is None), 3)
            reference = _finite(full["reference"][i])
            evaluations.append((monitor, block.hash, full["metric"][i], full["scale"][i], int(full["region"][i]),
                                full["evaluator"][i], ne_at, _finite(full["threshold"][i]), _finite(full["lower"][i]),
                                reference, None if reference is None else abs(reference) * SCATTER))
    values.sort(key=lambda r: (r[0], r[1], r[3]))
    evaluations.sort(key=lambda r: (r[0], r[1], r[2], r[4], r[5]))
    template.values = [(i, *r) for i, r in enumerate(values)]
    template.evaluations = [(i, *r) for i, r in enumerate(evaluations)]
    return template


def l2_template(standards) -> ArmTemplate:
    """Every L2 monitor on the bulge-like synthetic image of ``benchmarks/l2_bench.py`` (written once)."""
    from rdmt_dagster.science.measure import MeasureRequest, measure_file, parameters_of
    from rdmt_dagster.synthetic.l2 import L2Scene, catalog_path, write_l2

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / "bench_l2_4000_WFI01_cal.asdf"
    if not path.exists() or not catalog_path(path).exists():
        write_l2(path, L2Scene(n_stars=4000))
    sets = measure_file(MeasureRequest(str(path), parameters_of(standards), None, None, str(catalog_path(path))))
    errors = [ms.error for ms in sets if not ms.ok]
    if errors:
        raise RuntimeError("; ".join(errors))
    return build_template(sets, standards)


def reference_template(standards) -> ArmTemplate:
    """Every reference monitor on the synthetic files of ``benchmarks/run.py`` (the mask against a previous mask)."""
    from rdmt_dagster.science.measure import measure
    from run import synthetic_files

    sets = []
    for name, path in synthetic_files().items():
        if name not in REFERENCE_EVERY_WEEKS:
            continue
        ms = measure(path, standards.for_monitor, previous_file=lambda info, path=path: str(path))
        if not ms.ok:
            raise RuntimeError(ms.error)
        sets.append(ms)
    return build_template(sets, standards)


# -- the database backends --------------------------------------------------------------------------------

class Backend:
    """A database to fill: the driver connection of the fill, and what differs between the backends."""

    label = ""
    uniform = ""  # SQL of a uniform random number in [-0.5, 0.5)

    def __init__(self, url: str):
        self.url = url
        self.dropped: list[tuple[str, str]] = []  # (name, statement that recreates it)

    @property
    def normal(self) -> str:
        """SQL of a standard normal deviate (the sum of four uniform numbers, rescaled)."""
        u = self.uniform
        return f"(({u} + {u} + {u} + {u}) * 1.7320508075688772)"

    def execute(self, sql: str, params=()) -> int:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), params)
        n = cur.rowcount
        cur.close()
        return n

    def query(self, sql: str, params=()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), params)
        rows = cur.fetchall()
        cur.close()
        return rows

    def _sql(self, sql: str) -> str:
        return sql

    def create_temp(self, name: str, columns: str, rows: list[tuple], index: str | None = None) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.execute(f"CREATE TEMP TABLE {name} ({columns})")
        if rows:
            self.insert_rows(name, tuple(c.split()[0] for c in columns.split(", ")), rows)
        if index:
            self.execute(f"CREATE INDEX {name}_ix ON {name} ({index})")


class SQLiteBackend(Backend):
    label = "SQLite"
    uniform = "(random() / 18446744073709551616.0)"

    def __init__(self, path: Path):
        from rdmt_dagster.storage.database import sqlite_url

        super().__init__(sqlite_url(path))
        self.path = path

    def create(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.exists()

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def open_fill(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000", "foreign_keys=OFF"):
            self.conn.execute(f"PRAGMA {pragma}")

    def close_fill(self) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def insert_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        marks = ", ".join(["?"] * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return len(rows)

    def drop_indexes(self, tables) -> None:
        names = ", ".join(f"'{t}'" for t in tables)
        for name, sql in self.query(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                    f"AND tbl_name IN ({names}) ORDER BY name"):
            self.execute(f'DROP INDEX "{name}"')
            self.dropped.append((name, sql))

    def rebuild_indexes(self) -> None:
        for _, sql in self.dropped:
            self.execute(sql)
        self.dropped = []

    def after_fill(self) -> dict:
        return {}

    def size(self) -> int:
        return sum(Path(f"{self.path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{self.path}{s}").exists())

    def table_sizes(self) -> dict[str, int]:
        """Bytes per table, its indexes included (SQLite's ``dbstat``)."""
        con = sqlite3.connect(self.path)
        try:
            owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
            page = con.execute("PRAGMA page_size").fetchone()[0]
            out: dict[str, int] = {}
            # pages x page size: the aggregate pgsize of a b-tree over 2 GiB overflows in some SQLite versions
            for name, pages in con.execute("SELECT name, pageno FROM dbstat WHERE aggregate = TRUE"):
                table = owner.get(name, name)
                out[table] = out.get(table, 0) + int(pages) * page
            return out
        except sqlite3.OperationalError:
            return {}
        finally:
            con.close()


class PostgresBackend(Backend):
    label = "PostgreSQL"
    uniform = "(random() - 0.5)"

    def __init__(self, base_url: str, database: str):
        super().__init__(f"{base_url.rstrip('/')}/{database}")
        self.base_url, self.database = base_url.rstrip("/"), database

    def _connect(self, database: str):
        import psycopg2

        u = sa.engine.make_url(f"{self.base_url}/{database}")
        return psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                                dbname=u.database)

    def _admin(self, sql: str):
        conn = self._connect("postgres")
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def create(self) -> None:
        self.drop()
        self._admin(f'CREATE DATABASE "{self.database}"')

    def exists(self) -> bool:
        return bool(self._admin(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"))

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def open_fill(self) -> None:
        self.conn = self._connect(self.database)
        for setting in ("synchronous_commit = off", "session_replication_role = replica",
                        "maintenance_work_mem = '1GB'", "work_mem = '64MB'"):
            self.execute(f"SET {setting}")
        self.conn.commit()

    def close_fill(self) -> None:
        self.conn.close()

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        self.conn.commit()

    def insert_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        buf = io.StringIO()
        for row in rows:
            buf.write("\t".join("\\N" if v is None else str(v) for v in row))
            buf.write("\n")
        buf.seek(0)
        cur = self.conn.cursor()
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)
        cur.close()
        return len(rows)

    def drop_indexes(self, tables) -> None:
        """Drop every index of ``tables`` but those a foreign key points at; remember how to recreate them."""
        names = ", ".join(f"'{t}'" for t in tables)
        rows = self.query(f"""
            SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid), c.conname, pg_get_constraintdef(c.oid)
            FROM pg_index i
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_class ic ON ic.oid = i.indexrelid
            LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
            WHERE t.relname IN ({names}) AND t.relnamespace = 'public'::regnamespace
              AND i.indexrelid NOT IN (SELECT conindid FROM pg_constraint WHERE contype = 'f')
            ORDER BY c.contype NULLS LAST, ic.relname""")
        for table, index, indexdef, constraint, condef in rows:
            if constraint:
                self.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
                self.dropped.append((constraint, f'ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}" {condef}'))
            else:
                self.execute(f'DROP INDEX "{index}"')
                self.dropped.append((index, indexdef))
        self.conn.commit()

    def rebuild_indexes(self) -> None:
        for _, sql in self.dropped:
            self.execute(sql)
            self.conn.commit()
        self.dropped = []

    def after_fill(self) -> dict:
        """Sequences past the filled ids, foreign-key triggers back on, ``VACUUM ANALYZE``; its seconds."""
        for table in ("l2_file", "reference_file"):
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"GREATEST((SELECT MAX(id) FROM {table}), 1))")
        self.execute("SET session_replication_role = DEFAULT")
        self.conn.commit()
        self.conn.autocommit = True
        t0 = time.perf_counter()
        for table in (*L2_TABLES, *REFERENCE_TABLES):
            self.execute(f"VACUUM ANALYZE {table}")
        self.conn.autocommit = False
        return {"vacuum_analyze_s": time.perf_counter() - t0}

    def size(self) -> int:
        conn = self._connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])
        finally:
            conn.close()

    def table_sizes(self) -> dict[str, int]:
        conn = self._connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                        "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
            return {name: int(size) for name, size in cur.fetchall()}
        finally:
            conn.close()


# -- the fill -----------------------------------------------------------------------------------------------

@dataclass
class Span:
    """The filled time: ``n_slots`` slots of 120 s from ``start``; the last ``full_days`` get every row."""

    start: datetime
    n_slots: int
    full_days: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=SLOT_SECONDS * self.n_slots)

    @property
    def days(self) -> float:
        return self.n_slots / SLOTS_PER_DAY

    @property
    def n_files(self) -> int:
        return self.n_slots * FILES_PER_SLOT

    @property
    def first_full_slot(self) -> int:
        return max(0, self.n_slots - int(round(self.full_days * SLOTS_PER_DAY)))

    @property
    def full_from(self) -> datetime:
        return self.start + timedelta(seconds=SLOT_SECONDS * self.first_full_slot)


def reference_deliveries(span: Span) -> list[tuple[datetime, str, int, int]]:
    """(time, reference type, delivery number of the type, CRDS context number), oldest first."""
    out = []
    weeks = int((span.end - span.start).total_seconds() // (7 * 86400)) + 1
    for week in range(weeks):
        for reftype, every in REFERENCE_EVERY_WEEKS.items():
            if week % every == 0:
                when = span.start + timedelta(weeks=week, hours=10)
                if when < span.end:
                    out.append((when, reftype, week // every + 1))
    out.sort(key=lambda d: (d[0], d[1]))
    return [(when, reftype, number, FIRST_CONTEXT + i) for i, (when, reftype, number) in enumerate(out)]


def reference_filename(reftype: str, number: int, detector: str) -> str:
    from rdmt_dagster.synthetic import reference_filename as name

    return name(reftype, number, detector)


class RefFiles:
    """The reference files and CRDS context in force at a time, as JSON per detector (``l2_file.ref_files``)."""

    def __init__(self, deliveries):
        self.deliveries = deliveries
        self.next = 0
        self.latest = {reftype: 1 for reftype in REFERENCE_EVERY_WEEKS}
        self.context = FIRST_CONTEXT
        self.json = self._json()

    def _json(self) -> dict[str, str]:
        out = {}
        for k, detector in enumerate(DETECTORS, start=1):
            names = {reftype: reference_filename(reftype, n, detector) for reftype, n in self.latest.items()}
            names.update({reftype: f"roman_wfi_{reftype}_{k:04d}.asdf" for reftype in OTHER_REFERENCE_TYPES})
            out[detector] = json.dumps(names, sort_keys=True)
        return out

    def at(self, when: datetime) -> tuple[dict[str, str], str]:
        changed = False
        while self.next < len(self.deliveries) and self.deliveries[self.next][0] <= when:
            _, reftype, number, context = self.deliveries[self.next]
            self.latest[reftype], self.context, changed = number, context, True
            self.next += 1
        if changed:
            self.json = self._json()
        return self.json, f"roman_{self.context:04d}.pmap"


def l2_name(slot: int, detector: str) -> tuple[str, str, str, str]:
    """(file name, optical element, visit, exposure) of a detector's file in a 120 s slot."""
    visit_number, exposure = divmod(slot, EXPOSURES_PER_VISIT)
    visit, observation, segment = visit_number % 1000, (visit_number // 1000) % 1000, visit_number // 1_000_000 + 1
    name = (f"r{PROGRAM}01001{segment:03d}{observation:03d}{visit:03d}_01101_{exposure + 1:04d}_{detector}"
            "_cal.asdf")
    return name, optical_element(slot), f"{visit:03d}", f"{exposure + 1:04d}"


L2_FILE_COLUMNS = ("id", "filename", "reprocess_number", "notice_key", "bucket", "s3_key", "checksum", "size",
                   "reprocessing", "message_id", "created_at", "received_at", "detector", "optical_element",
                   "exposure_start", "program", "visit", "exposure", "status", "claimed_by", "claimed_at",
                   "measured_at", "observation_day", "ref_files", "crds_context", "n_failed")
MEASUREMENT_COLUMNS = ("file_id", "monitor", "status", "monitor_version", "measured_at", "standards_hash",
                       "evaluated_at", "n_evaluations", "n_failed", "n_not_evaluated", "compared_with", "notes")
REFERENCE_FILE_COLUMNS = ("id", "filename", "path", "monitor", "reftype", "detector", "useafter", "status",
                          "monitor_version", "registered_at", "measured_at", "checksum", "version", "delivery",
                          "delivered_by", "run_id")
RUN_COLUMNS = ("file_id", "standards_hash", "monitor_version", "evaluated_at", "n_evaluations", "n_failed",
               "n_not_evaluated", "compared_with", "notes")


def l2_keep(values: str, metric: str):
    """Which rows of an L2 file's template ``--values`` fills: (monitor, metric, scale) -> bool."""
    if values == "full":
        return lambda monitor, name, scale: True
    if values == "detector":
        return lambda monitor, name, scale: scale == "detector"
    if values == "history":
        return lambda monitor, name, scale: scale == "detector" and name == f"detector_{metric}"
    return lambda monitor, name, scale: False


def reference_keep(values: str):
    """Which rows of a reference file's template are filled: detector and amp, or every row."""
    if values == "full":
        return lambda monitor, name, scale: True
    return lambda monitor, name, scale: scale in ("detector", "amp")


def compared_with(previous) -> str:
    """``compared_with`` as the store writes it (a JSON list): the change evaluator's previous file and the
    trend evaluator's earlier files (at least three, oldest first, joined by commas)."""
    if not previous:
        return "[]"
    names = {previous[-1]}
    if len(previous) >= 3:
        names.add(",".join(previous))
    return '["' + '", "'.join(sorted(names)) + '"]'  # json.dumps of names that need no escaping


def optical_element(slot: int) -> str:
    return "F087" if (slot // EXPOSURES_PER_VISIT) % F087_EVERY == F087_EVERY - 1 else "F146"


def previous_slots(slot: int, n: int = 10) -> list[int]:
    """The up to ``n`` slots before ``slot`` through the same filter, oldest first."""
    found, same, j = [], optical_element(slot), slot - 1
    while len(found) < n and j >= 0:
        if optical_element(j) == same:
            found.append(j)
            j -= 1
        else:  # a whole visit through the other filter
            j = (j // EXPOSURES_PER_VISIT) * EXPOSURES_PER_VISIT - 1
    return found[::-1]


@dataclass
class L2Rows:
    """Builds the ``l2_file`` and ``l2_measurement`` rows of any run of slots (a pure function of the slots, so
    that a worker process can build the next day while the database stores this one)."""

    start: datetime
    first_full_slot: int
    summaries: list[MonitorSummary]
    all_ords: list[int]
    kept_ords: list[int]
    ne_at: dict[int, int]
    monitor_of: dict[int, str]
    deliveries: list
    seed: int = 2027

    def day(self, first_slot: int, n_slots: int):
        """(``l2_file`` rows, ``l2_measurement`` rows, plan rows (file id, failing template row, not-evaluated
        level) of the files with a failure or verdicts not given)."""
        files, measurements, plan = [], [], []
        rng = np.random.default_rng([self.seed, first_slot])
        n = n_slots * FILES_PER_SLOT
        fails, gaps, picks = rng.random(n) < L2_FAILING, rng.random(n) < L2_GAPS, rng.random(n)
        sizes = rng.normal(70e6, 4e6, n).astype(np.int64).tolist()
        ref_files = RefFiles(self.deliveries)
        series: dict[tuple[str, str], deque] = {}
        for oe in ("F146", "F087"):
            probe = next((j for j in range(first_slot, first_slot + F087_EVERY * EXPOSURES_PER_VISIT)
                          if optical_element(j) == oe), first_slot)
            earlier = [j for j in previous_slots(probe) if j < first_slot][-10:]
            for detector in DETECTORS:
                series[(detector, oe)] = deque((l2_name(j, detector)[0] for j in earlier), maxlen=10)
        for s in range(n_slots):
            slot = first_slot + s
            start = self.start + timedelta(seconds=SLOT_SECONDS * slot)
            created = start + timedelta(seconds=EXPOSURE_SECONDS + 180)
            received, claimed = created + timedelta(seconds=5), created + timedelta(seconds=65)
            measured = claimed + timedelta(seconds=90)
            times = [stamp(t) for t in (created, received, start, claimed, measured, measured + timedelta(seconds=20))]
            day = start.strftime("%Y-%m-%d")
            batch = f"{day}_{slot:012x}"
            refs, context = ref_files.at(start)
            ords = self.all_ords if slot >= self.first_full_slot else self.kept_ords
            for k, detector in enumerate(DETECTORS):
                i = s * FILES_PER_SLOT + k
                file_id = slot * FILES_PER_SLOT + k + 1
                name, oe, visit, exposure = l2_name(slot, detector)
                previous = series[(detector, oe)]
                level = 2 if (not previous or gaps[i]) else (1 if len(previous) < 3 else 0)
                fail_ord = None
                if fails[i] and ords:
                    candidates = ords if level == 0 else [o for o in ords if self.ne_at[o] > level]
                    if candidates:
                        fail_ord = candidates[int(picks[i] * len(candidates))]
                if fail_ord is not None or level:
                    plan.append((file_id, fail_ord, level))
                key = f"roman/wfi/{PROGRAM}/{day}/{name}"
                checksum = hashlib.sha256(name.encode()).hexdigest()
                notice = hashlib.sha256(f"{BUCKET}\0{key}\0{checksum}".encode()).hexdigest()  # the ledger's notice_key
                files.append((file_id, name, 0, notice, BUCKET, key, checksum, sizes[i], "none",
                              f"{slot:08x}-{k:04x}-4000-8000-{file_id:012x}", times[0], times[1], detector, oe,
                              times[2], PROGRAM, visit, exposure, "ok", batch, times[3], times[4], day,
                              refs[detector], context, int(fail_ord is not None)))
                compared = compared_with(previous) if level < 2 else "[]"
                failing_monitor = self.monitor_of.get(fail_ord)
                for summary in self.summaries:
                    measurements.append((file_id, summary.monitor, "ok", summary.version, times[4],
                                         summary.standards_hash, times[5], summary.n_evaluations,
                                         int(summary.monitor == failing_monitor), summary.n_not_evaluated[level],
                                         compared, summary.notes[level]))
                previous.append(name)
        return files, measurements, plan


class Filler:
    """Fills one backend with the span (see the module docstring)."""

    def __init__(self, backend: Backend, span: Span, l2: ArmTemplate, reference: ArmTemplate, values: str,
                 metric: str, workers: int = 1, progress=True):
        self.backend, self.span, self.l2, self.reference = backend, span, l2, reference
        self.values, self.metric, self.workers, self.progress = values, metric, workers, progress
        self.rng = np.random.default_rng(2027)
        self.rows: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._keep_l2 = l2_keep(values, metric)
        self._keep_reference = reference_keep(values)

    def _add(self, key: str, rows: int, seconds: float) -> None:
        self.rows[key] = self.rows.get(key, 0) + rows
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def templates(self) -> None:
        """The template tables of the ``INSERT ... SELECT`` statements: every row, and the subset kept."""
        b = self.backend
        b.begin()
        value_columns = ("ord INTEGER, monitor TEXT, metric TEXT, scale TEXT, region INTEGER, mean DOUBLE PRECISION, "
                         "sigma DOUBLE PRECISION, is_count INTEGER, unit TEXT, version TEXT")
        evaluation_columns = ("ord INTEGER, monitor TEXT, hash TEXT, metric TEXT, scale TEXT, region INTEGER, "
                              "evaluator TEXT, ne_at INTEGER, threshold DOUBLE PRECISION, lower DOUBLE PRECISION, "
                              "ref_mean DOUBLE PRECISION, ref_sigma DOUBLE PRECISION")
        everything = lambda *_: True  # noqa: E731
        for arm, template, keep, index in (("l2", self.l2, self._keep_l2, None),
                                           ("ref", self.reference, self._keep_reference, "monitor, ord")):
            for kind, rows in (("all", everything), ("kept", keep)):
                b.create_temp(f"fill_{arm}_values_{kind}", value_columns, template.value_rows(rows), index)
                b.create_temp(f"fill_{arm}_evaluations_{kind}", evaluation_columns, template.evaluation_rows(rows),
                              index)
        b.create_temp("fill_plan", "file_id INTEGER PRIMARY KEY, fail_ord INTEGER, ne INTEGER", [])
        b.create_temp("fill_ref_plan", "file_id INTEGER PRIMARY KEY, fail_ord INTEGER, ne INTEGER", [])
        b.commit()

    # -- L2 --------------------------------------------------------------------------------------------------
    def _expand_l2(self, first_id: int, last_id: int, kind: str) -> None:
        b, z = self.backend, self.backend.normal
        t0 = time.perf_counter()
        n = b.execute(f"""
            INSERT INTO l2_metric_value (file_id, monitor, metric, region, scale, value, unit)
            SELECT f.id, t.monitor, t.metric, t.region, t.scale,
                   CASE WHEN t.is_count = 1 THEN ROUND(t.mean + t.sigma * {z}) ELSE t.mean + t.sigma * {z} END, t.unit
            FROM l2_file f CROSS JOIN fill_l2_values_{kind} t
            WHERE f.id BETWEEN ? AND ?""", (first_id, last_id))
        self._add("l2_metric_value", n, time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = b.execute(f"""
            INSERT INTO l2_evaluation (file_id, monitor, standards_hash, metric, region, evaluator, threshold, lower,
                                       reference, passed)
            SELECT f.id, t.monitor, t.hash, t.metric, t.region, t.evaluator, t.threshold, t.lower,
                   CASE WHEN t.ref_mean IS NULL OR COALESCE(p.ne, 0) >= t.ne_at THEN NULL
                        ELSE t.ref_mean + t.ref_sigma * {z} END,
                   CASE WHEN COALESCE(p.ne, 0) >= t.ne_at THEN NULL WHEN p.fail_ord = t.ord THEN FALSE ELSE TRUE END
            FROM l2_file f LEFT JOIN fill_plan p ON p.file_id = f.id CROSS JOIN fill_l2_evaluations_{kind} t
            WHERE f.id BETWEEN ? AND ?""", (first_id, last_id))
        self._add("l2_evaluation", n, time.perf_counter() - t0)

    def fill_l2(self) -> None:
        b, span = self.backend, self.span
        rows = L2Rows(span.start, span.first_full_slot, list(self.l2.summaries.values()),
                      [r[0] for r in self.l2.evaluations], [r[0] for r in self.l2.evaluation_rows(self._keep_l2)],
                      {r[0]: r[7] for r in self.l2.evaluations}, {r[0]: r[1] for r in self.l2.evaluations},
                      reference_deliveries(span))
        days = [(first, min(SLOTS_PER_DAY, span.n_slots - first)) for first in range(0, span.n_slots, SLOTS_PER_DAY)]
        full_id = span.first_full_slot * FILES_PER_SLOT + 1
        start = time.perf_counter()
        pool = ProcessPoolExecutor(1) if self.workers else None
        try:
            pending = pool.submit(rows.day, *days[0]) if pool else None
            for number, (first, n_slots) in enumerate(days):
                t0 = time.perf_counter()
                if pool:
                    files, measurements, plan = pending.result()
                    if number + 1 < len(days):
                        pending = pool.submit(rows.day, *days[number + 1])
                    self._add("waiting for the rows built in a worker process", 0, time.perf_counter() - t0)
                else:
                    files, measurements, plan = rows.day(first, n_slots)
                    self._add("l2 rows built in Python", 0, time.perf_counter() - t0)
                b.begin()
                t0 = time.perf_counter()
                self._add("l2_file", b.insert_rows("l2_file", L2_FILE_COLUMNS, files), time.perf_counter() - t0)
                t0 = time.perf_counter()
                n = b.insert_rows("l2_measurement", MEASUREMENT_COLUMNS, measurements)
                self._add("l2_measurement", n, time.perf_counter() - t0)
                if plan:
                    b.insert_rows("fill_plan", ("file_id", "fail_ord", "ne"), plan)
                first_id, last_id = files[0][0], files[-1][0]
                if first_id < full_id and self.values != "none":
                    self._expand_l2(first_id, min(last_id, full_id - 1), "kept")
                if last_id >= full_id:
                    self._expand_l2(max(first_id, full_id), last_id, "all")
                b.commit()
                if self.progress and ((number + 1) % 30 == 0 or number + 1 == len(days)):
                    print(f"  {b.label}: day {number + 1}/{len(days)}, {(first + n_slots) * FILES_PER_SLOT:,} L2 "
                          f"files, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)

    # -- reference arm ---------------------------------------------------------------------------------------
    def fill_reference(self) -> None:
        b, span = self.backend, self.span
        deliveries = reference_deliveries(span)
        files, runs, plan = [], [], []
        series: dict[tuple[str, str], deque] = {}
        ords = {monitor: [r[0] for r in self.reference.evaluations if r[1] == monitor]
                for monitor in self.reference.summaries}
        ne_at = {r[0]: r[7] for r in self.reference.evaluations}
        kept = {monitor: {r[0] for r in self.reference.evaluation_rows(self._keep_reference)} & set(o)
                for monitor, o in ords.items()}
        full_id = None
        t0 = time.perf_counter()
        for when, reftype, number, context in deliveries:
            summary = self.reference.summaries[reftype]
            for detector in DETECTORS:
                file_id = len(files) + 1
                if when >= span.full_from and full_id is None:
                    full_id = file_id
                name = reference_filename(reftype, number, detector)
                previous = series.setdefault((reftype, detector), deque(maxlen=10))
                level = 2 if not previous else (1 if len(previous) < 3 else 0)
                choices = sorted(o for o in (ords[reftype] if full_id else kept[reftype]) if ne_at[o] > level)
                fail_ord = None
                if choices and self.rng.random() < REFERENCE_FAILING:
                    fail_ord = choices[int(self.rng.random() * len(choices))]
                if fail_ord is not None or level:
                    plan.append((file_id, fail_ord, level))
                registered, measured = when + timedelta(minutes=5), when + timedelta(minutes=9)
                files.append((file_id, name, f"/crds/references/roman/wfi/{name}", reftype, reftype.upper(), detector,
                              stamp(when), "ok", summary.version, stamp(registered), stamp(measured),
                              hashlib.sha256(name.encode()).hexdigest(), 1, f"roman_{context:04d}.pmap", "crds",
                              str(uuid.UUID(int=context))))
                runs.append((file_id, summary.standards_hash, summary.version, stamp(measured), summary.n_evaluations,
                             int(fail_ord is not None), summary.n_not_evaluated[level],
                             compared_with(previous) if level < 2 else "[]", summary.notes[level]))
                previous.append(name)
        self._add("reference rows built in Python", 0, time.perf_counter() - t0)
        if not files:
            return
        b.begin()
        t0 = time.perf_counter()
        self._add("reference_file", b.insert_rows("reference_file", REFERENCE_FILE_COLUMNS, files),
                  time.perf_counter() - t0)
        t0 = time.perf_counter()
        self._add("evaluation_run", b.insert_rows("evaluation_run", RUN_COLUMNS, runs), time.perf_counter() - t0)
        if plan:
            b.insert_rows("fill_ref_plan", ("file_id", "fail_ord", "ne"), plan)
        b.commit()
        full_id = full_id or len(files) + 1
        for first in range(1, len(files) + 1, 500):
            last = min(first + 499, len(files))
            b.begin()
            if first < full_id:
                self._expand_reference(first, min(last, full_id - 1), "kept")
            if last >= full_id:
                self._expand_reference(max(first, full_id), last, "all")
            b.commit()

    def _expand_reference(self, first_id: int, last_id: int, kind: str) -> None:
        b, z = self.backend, self.backend.normal
        t0 = time.perf_counter()
        n = b.execute(f"""
            INSERT INTO metric_value (file_id, metric, region, scale, value, unit, monitor_version)
            SELECT f.id, t.metric, t.region, t.scale,
                   CASE WHEN t.is_count = 1 THEN ROUND(t.mean + t.sigma * {z}) ELSE t.mean + t.sigma * {z} END,
                   t.unit, t.version
            FROM reference_file f CROSS JOIN fill_ref_values_{kind} t
            WHERE f.id BETWEEN ? AND ? AND t.monitor = f.monitor""", (first_id, last_id))
        self._add("metric_value", n, time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = b.execute(f"""
            INSERT INTO evaluation (file_id, standards_hash, metric, region, evaluator, threshold, lower, reference,
                                    passed)
            SELECT f.id, t.hash, t.metric, t.region, t.evaluator, t.threshold, t.lower,
                   CASE WHEN t.ref_mean IS NULL OR COALESCE(p.ne, 0) >= t.ne_at THEN NULL
                        ELSE t.ref_mean + t.ref_sigma * {z} END,
                   CASE WHEN COALESCE(p.ne, 0) >= t.ne_at THEN NULL WHEN p.fail_ord = t.ord THEN FALSE ELSE TRUE END
            FROM reference_file f LEFT JOIN fill_ref_plan p ON p.file_id = f.id
                 CROSS JOIN fill_ref_evaluations_{kind} t
            WHERE f.id BETWEEN ? AND ? AND t.monitor = f.monitor""", (first_id, last_id))
        self._add("evaluation", n, time.perf_counter() - t0)

    def run(self) -> dict:
        b = self.backend
        b.open_fill()
        t_all = time.perf_counter()
        t0 = time.perf_counter()
        b.drop_indexes((*L2_TABLES, *REFERENCE_TABLES))
        self.templates()
        self._add("templates and dropping indexes", 0, time.perf_counter() - t0)
        self.fill_reference()
        self.fill_l2()
        t0 = time.perf_counter()
        rebuilt = [name for name, _ in b.dropped]
        b.rebuild_indexes()
        b.commit()
        index_seconds = time.perf_counter() - t0
        fill_seconds = time.perf_counter() - t_all
        extra = b.after_fill()
        b.close_fill()
        return {"rows": self.rows, "seconds": self.seconds, "index_build_s": index_seconds,
                "indexes_rebuilt": rebuilt, "fill_s": fill_seconds, **extra}


# -- measurements -------------------------------------------------------------------------------------------

class StatementLog:
    """The SQL statements run through an engine, with their parameters (IN lists folded into one shape)."""

    FOLD = re.compile(r"\((?:\s*(?:\?|%\([^)]+\)s|__\[POSTCOMPILE_[^\]]+\])\s*,?)+\)")

    def __init__(self, engine):
        self.statements: list[tuple[str, str, object]] = []
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((self.FOLD.sub("(...)", " ".join(statement.split())), statement, parameters))

    def replay(self, url: str) -> dict[str, list]:
        """Run every statement again on the driver's cursor, rows fetched: shape -> [calls, seconds, statement,
        parameters of its slowest call, seconds of that call]."""
        engine = sa.create_engine(url)
        out: dict[str, list] = {}
        try:
            with engine.connect() as conn:
                cursor = conn.connection.driver_connection.cursor()
                for key, statement, parameters in self.statements:
                    t0 = time.perf_counter()
                    cursor.execute(statement, parameters)
                    if cursor.description is not None:  # not a SET
                        cursor.fetchall()
                    seconds = time.perf_counter() - t0
                    entry = out.setdefault(key, [0, 0.0, statement, parameters, 0.0])
                    entry[0] += 1
                    entry[1] += seconds
                    if seconds > entry[4]:
                        entry[2:] = [statement, parameters, seconds]
        finally:
            engine.dispose()
        return out


def profile(url: str, work, explain: bool) -> dict:
    """One run of ``work(connection)``: its seconds, the seconds of its SQL (replayed, rows fetched), the
    slowest statement shapes, and with ``explain`` their plans."""
    engine = sa.create_engine(url)
    log = StatementLog(engine)
    try:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            work(conn)
            total = time.perf_counter() - t0
    finally:
        engine.dispose()
    shapes = log.replay(url)
    slowest = sorted(shapes.items(), key=lambda kv: -kv[1][1])[:3]
    out = {"total_s": total, "sql_s": sum(v[1] for v in shapes.values()), "statements": len(log.statements),
           "slowest": [{"statement": key, "calls": calls, "seconds": seconds}
                       for key, (calls, seconds, *_) in slowest]}
    if explain:
        for item, (_, (_, _, statement, parameters, _)) in zip(out["slowest"], slowest):
            try:
                item["plan"] = _explain(url, statement, parameters)
            except Exception as exc:  # noqa: BLE001 - a plan is a diagnostic
                item["plan"] = f"(no plan: {type(exc).__name__}: {exc})"
    return out


def _explain(url: str, statement: str, parameters) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                return "\n".join(f"{'  ' * (row[1] > 0)}{row[3]}" for row in cursor.fetchall())
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            return re.sub(r"'\{(\d+,){8,}\d+\}'", lambda m: f"'{{{m.group(0).count(',') + 1} ids}}'", plan)
    finally:
        engine.dispose()


def _with_engine(url: str, work):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return work(conn)
    finally:
        engine.dispose()


def _command(url: str, *args) -> str:
    from history_query import _command as rdmt_command

    return rdmt_command(url, *args, timeout=3600)


VIEW_QUERY = """SELECT observed_at, value FROM metric_history
WHERE arm = 'l2' AND detector = :detector AND metric = :metric AND scale = 'detector' AND observed_at >= :since
ORDER BY observed_at"""


def _view(url: str, metric: str, detector: str, since: datetime, timeout: float):
    """The ``metric_history`` view of one metric and detector since ``since``; None when it took over ``timeout``."""
    query = sa.text(VIEW_QUERY).bindparams(sa.bindparam("since", type_=sa.DateTime))

    def work(conn):
        raw = conn.connection.driver_connection
        if conn.dialect.name == "sqlite":
            deadline = time.monotonic() + timeout
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
        else:
            conn.exec_driver_sql(f"SET statement_timeout = {int(timeout * 1000)}")
        try:
            return conn.execute(query, {"detector": detector, "metric": metric, "since": since}).all()
        except sa.exc.DBAPIError as exc:
            if "interrupt" in str(exc).lower() or "statement timeout" in str(exc).lower():
                return None
            raise

    return _with_engine(url, work)


def measure_queries(url: str, span: Span, metric: str, detector: str, repeat: int, timeout: float) -> dict:
    """History and failures, the functions and the commands; the statements of the history query."""
    from rdmt_dagster.history import failed_groups, metric_history

    since = max(span.start, span.end - timedelta(days=365))
    week = span.end - timedelta(days=7)
    week_day = week.strftime("%Y-%m-%d")
    week = datetime.strptime(week_day, "%Y-%m-%d")
    out: dict = {"since": since.isoformat(), "failures_since": week_day}

    history = lambda: _with_engine(url, lambda c: metric_history(c, metric, detector=detector, since=since))  # noqa
    history()  # the first read of the pages, outside the timing
    med, low, points = median_of(history, repeat)
    out["history"] = {"median_s": med, "min_s": low, "points": len(points), "runs": repeat,
                      "l2_points": sum(p.arm == "l2" for p in points)}

    out["history_profile"] = profile(url, lambda c: metric_history(c, metric, detector=detector, since=since),
                                     explain=med > HISTORY_TARGET)

    args = ("history", metric, "--detector", detector, "--since", since.strftime("%Y-%m-%d"))
    med, low, text = median_of(lambda: _command(url, *args), repeat)
    out["history_command"] = {"median_s": med, "min_s": low, "lines": len(text.splitlines()), "runs": repeat,
                              "args": " ".join(args)}

    times, rows = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = _view(url, metric, detector, since, timeout)
        times.append(time.perf_counter() - t0)
        if rows is None:
            break
    out["view"] = {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
                   "rows": None if rows is None else len(rows), "timed_out": rows is None, "timeout_s": timeout}

    failures = lambda: _with_engine(url, lambda c: failed_groups(c, since=week))  # noqa: E731
    med, low, groups = median_of(failures, repeat)
    out["failures"] = {"median_s": med, "min_s": low, "groups": len(groups), "runs": repeat,
                       "files": len({(g.arm, g.filename) for g in groups})}
    out["failures_profile"] = profile(url, lambda c: failed_groups(c, since=week), explain=med > HISTORY_TARGET)
    args = ("failures", "--since", week_day)
    med, low, text = median_of(lambda: _command(url, *args), repeat)
    out["failures_command"] = {"median_s": med, "min_s": low, "lines": len(text.splitlines()), "runs": repeat,
                               "args": " ".join(args)}
    return out


class WritePath:
    """Batches of 18 new L2 files (and deliveries of 18 darks) through the platform's own storage calls."""

    def __init__(self, url: str, span: Span, l2: ArmTemplate, reference: ArmTemplate, standards):
        from rdmt_dagster.storage.database import Database
        from rdmt_dagster.storage.l2_ledger import L2Ledger
        from rdmt_dagster.storage.l2_store import L2Store
        from rdmt_dagster.storage.l2_views import ensure_l2_views

        self.database = Database(url)
        self.store, self.ledger = L2Store(self.database), L2Ledger(self.database)
        ensure_l2_views(self.database.engine, standards)  # as the IO manager's store does once per process
        self.span, self.l2, self.reference, self.standards = span, l2, reference, standards
        self.rng = np.random.default_rng(11)
        with self.database.engine.connect() as conn:  # after the batches an earlier measurement added
            added = conn.execute(sa.text("SELECT COUNT(*) FROM l2_file WHERE id > :n"), {"n": span.n_files}).scalar()
            darks = conn.execute(sa.text("SELECT COUNT(*) FROM reference_file WHERE monitor = 'dark'")).scalar()
        self.slot = span.n_slots + -(-added // FILES_PER_SLOT)
        self.dark_number = darks // FILES_PER_SLOT + 1
        self.ref_files = RefFiles(reference_deliveries(span))

    def close(self) -> None:
        self.database.dispose()

    def l2_batch(self) -> dict:
        """One slot's 18 files: ingest (notices, headers, claim), evaluation, and the store's writes; seconds."""
        from rdmt_dagster.l2.header import L2Header
        from rdmt_dagster.l2.notices import L2Notice
        from rdmt_dagster.science.metrics import L2FileInfo
        from rdmt_dagster.science.monitor import evaluate

        slot, self.slot = self.slot, self.slot + 1
        start = self.span.start + timedelta(seconds=SLOT_SECONDS * slot)
        day = start.strftime("%Y-%m-%d")
        refs, context = self.ref_files.at(start)
        names = [l2_name(slot, detector) for detector in DETECTORS]
        items = []
        for (name, *_), detector in zip(names, DETECTORS):
            key = f"roman/wfi/{PROGRAM}/{day}/{name}"
            notice = L2Notice(BUCKET, key, name, start + timedelta(seconds=EXPOSURE_SECONDS + 180), "none",
                              hashlib.sha256(name.encode()).hexdigest(), 70_000_000)
            items.append(([notice], str(uuid.uuid4())))
        out = {}
        t0 = time.perf_counter()
        self.ledger.record_many(items)
        out["ledger_s"] = time.perf_counter() - t0
        from rdmt_dagster.storage.l2_tables import l2_file

        with self.database.engine.connect() as conn:
            ids = dict(conn.execute(sa.select(l2_file.c.filename, l2_file.c.id)
                                    .where(l2_file.c.filename.in_([n[0] for n in names]))).all())
        t0 = time.perf_counter()
        for (name, optical_element, visit, exposure), detector in zip(names, DETECTORS):
            header = L2Header(name, detector, optical_element, start, PROGRAM, visit, exposure,
                              json.loads(refs[detector]), context)
            self.store.record_header(ids[name], header)
        batch = f"{day}_{uuid.uuid4().hex[:12]}"
        claimed = self.store.claim(day, batch, FILES_PER_SLOT)
        out["header_and_claim_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()  # what the S3 catch-up does with objects it lists: known ones are left out
        self.ledger.record_unknown([notices[0] for notices, _ in items], "s3-catchup:five-year-scale")
        out["catch_up_s"] = time.perf_counter() - t0
        if len(claimed) != FILES_PER_SLOT:
            raise RuntimeError(f"claimed {len(claimed)} files of batch {batch}, expected {FILES_PER_SLOT}")
        rows = self.store.batch_files(batch)
        sets = {}
        for row in rows:
            info = L2FileInfo(row.filename, row.uri, "", row.detector, row.optical_element, row.exposure_start,
                              PROGRAM, row.filename.split("_")[0][-3:], row.filename.split("_")[2])
            sets[row.id] = [_perturbed(ms, self.rng, **{f.name: getattr(info, f.name)
                                                          for f in dataclasses.fields(info) if f.name != "monitor"})
                            for ms in self.l2.metric_sets.values()]
        t0 = time.perf_counter()
        history = self.store.history()
        evaluations = {row.id: [evaluate(ms, self.standards.for_monitor(ms.info.monitor), history)
                                for ms in sets[row.id]] for row in rows}
        out["evaluate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for row in rows:
            self.store.write_measurements(row.id, sets[row.id])
        out["write_measurements_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for row in rows:
            for es in evaluations[row.id]:
                self.store.write_evaluation(row.id, es)
        out["write_evaluation_s"] = time.perf_counter() - t0
        out["store_s"] = out["write_measurements_s"] + out["write_evaluation_s"]
        out["total_s"] = out["ledger_s"] + out["header_and_claim_s"] + out["evaluate_s"] + out["store_s"]
        out["total_s"] += out["catch_up_s"]
        out["rows"] = sum(len(ms.columns()["value"]) for s in sets.values() for ms in s) + sum(
            es.n_evaluations for e in evaluations.values() for es in e)
        return out

    def dark_delivery(self) -> dict:
        """18 darks: registered, measured values and evaluations written through `Database`; seconds."""
        from rdmt_dagster.science.monitor import evaluate
        from rdmt_dagster.storage.tables import CRDS

        number, self.dark_number = self.dark_number, self.dark_number + 1
        when = self.span.end + timedelta(hours=number)
        context = f"roman_{9000 + number:04d}.pmap"
        block = self.standards.for_monitor("dark")
        template = self.reference.metric_sets["dark"]
        history = self.database.history()
        t0 = time.perf_counter()
        for detector in DETECTORS:
            name = reference_filename("dark", number, detector)
            path = f"/crds/references/roman/wfi/{name}"
            self.database.register(name, path, hashlib.sha256(name.encode()).hexdigest(), delivery=context,
                                   trigger=CRDS)
            ms = _perturbed(template, self.rng, filename=name, path=path, detector=detector, useafter=when)
            self.database.write_metrics(ms)
            self.database.write_evaluations(evaluate(ms, block, history), ms.monitor_version)
        return {"total_s": time.perf_counter() - t0}


def measure_day_page(url: str, span: Span) -> dict:
    """The L2 day page of the last whole day of the span, as every run of that day rewrites it (timed once)."""
    import tempfile

    from rdmt_dagster.reports.l2_page import write_l2_day_pages
    from rdmt_dagster.reports.l2_queries import day_summaries
    from rdmt_dagster.storage.database import Database

    day = (span.end - timedelta(days=1)).strftime("%Y-%m-%d")
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            summary = day_summaries(conn, [day]).get(day)
        with tempfile.TemporaryDirectory() as site:
            t0 = time.perf_counter()
            write_l2_day_pages(database, [day], Path(site))
            seconds = time.perf_counter() - t0
    finally:
        database.dispose()
    return {"day": day, "images": summary.n_files if summary else 0, "seconds": seconds}


def measure_write_path(url: str, span: Span, l2: ArmTemplate, reference: ArmTemplate, standards, batches: int,
                       deliveries: int) -> dict:
    path = WritePath(url, span, l2, reference, standards)
    try:
        l2_batches = [path.l2_batch() for _ in range(batches)]
        darks = [path.dark_delivery() for _ in range(deliveries)]
    finally:
        path.close()
    keys = [k for k in l2_batches[0] if k.endswith("_s")] if l2_batches else []
    summary = {k: {"median_s": statistics.median(b[k] for b in l2_batches), "min_s": min(b[k] for b in l2_batches)}
               for k in keys}
    return {"l2_batches": l2_batches, "l2": summary, "rows_per_batch": l2_batches[0]["rows"] if l2_batches else 0,
            "dark_deliveries": darks,
            "dark": ({"median_s": statistics.median(d["total_s"] for d in darks),
                      "min_s": min(d["total_s"] for d in darks)} if darks else None)}


def partition_counts(years: float) -> dict:
    """Keys of the L2 daily partitions once the span is over, and inside the span."""
    from rdmt_dagster.defs.l2.partitions import l2_day_partitions

    start = l2_day_partitions.start
    end = start + timedelta(days=years * DAYS_PER_YEAR)
    t0 = time.perf_counter()
    keys = l2_day_partitions.get_partition_keys(current_time=end)
    seconds = time.perf_counter() - t0
    inside = [k for k in keys if k < end.strftime("%Y-%m-%d")]
    return {"first_day": start.strftime("%Y-%m-%d"), "end": end.strftime("%Y-%m-%d"), "days_ahead": (l2_day_partitions.end_offset or 1) - 1,
            "keys_at_end": len(keys), "keys_inside_span": len(inside), "get_partition_keys_s": seconds,
            "target": PARTITION_TARGET}


# -- index candidates -----------------------------------------------------------------------------------------

def candidate_indexes(dialect: str) -> list[tuple[str, str, str]]:
    """(name, CREATE INDEX statement, what it serves)."""
    false = "0" if dialect == "sqlite" else "false"
    return [
        ("ix_l2_evaluation_failed", "CREATE INDEX ix_l2_evaluation_failed ON l2_evaluation "
         f"(file_id, monitor, standards_hash) WHERE passed IS {false}", "`rdmt failures`: the failed L2 verdicts"),
    ]


def try_indexes(backend: Backend, url: str, span: Span, args, l2, reference, standards) -> dict:
    """Create each candidate (timed), measure the queries and a batch again, drop them."""
    engine = sa.create_engine(url)
    built = []
    try:
        for name, sql, purpose in candidate_indexes(engine.dialect.name):
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(sql)
            built.append({"name": name, "sql": sql, "purpose": purpose, "build_s": time.perf_counter() - t0})
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE l2_file")
        sizes = backend.index_sizes([b["name"] for b in built]) if hasattr(backend, "index_sizes") else {}
        for b in built:
            b["bytes"] = sizes.get(b["name"])
        after = measure_queries(url, span, args.metric, args.detector, args.repeat, args.view_timeout)
        write_after = measure_write_path(url, span, l2, reference, standards, max(1, min(args.batches, 3)), 0)
    finally:
        with engine.begin() as conn:
            for b in built:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {b['name']}")
        engine.dispose()
    return {"indexes": built, "queries": after, "write_path": write_after}


def _sqlite_index_sizes(self, names) -> dict[str, int]:
    con = sqlite3.connect(self.path)
    try:
        marks = ", ".join("?" * len(names))
        page = con.execute("PRAGMA page_size").fetchone()[0]
        return {n: int(pages) * page for n, pages in con.execute(
            f"SELECT name, pageno FROM dbstat WHERE aggregate = TRUE AND name IN ({marks})", list(names))}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _pg_index_sizes(self, names) -> dict[str, int]:
    conn = self._connect(self.database)
    try:
        cur = conn.cursor()
        cur.execute("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)", (list(names),))
        return {n: int(s) for n, s in cur.fetchall()}
    finally:
        conn.close()


SQLiteBackend.index_sizes = _sqlite_index_sizes
PostgresBackend.index_sizes = _pg_index_sizes


# -- one backend ----------------------------------------------------------------------------------------------

def full_rows_per_l2_file(l2: ArmTemplate) -> dict[str, int]:
    return {"l2_file": 1, "l2_measurement": len(l2.summaries), "l2_metric_value": len(l2.values),
            "l2_evaluation": len(l2.evaluations)}


def run_backend(backend: Backend, args, span: Span, l2: ArmTemplate, reference: ArmTemplate, standards) -> dict:
    from rdmt_dagster.storage.database import Database

    sidecar = Path(f"{backend.path}.json") if isinstance(backend, SQLiteBackend) else \
        Path(args.workdir) / f"{backend.database}.json"
    result: dict = {"backend": backend.label, "url": sa.engine.make_url(backend.url).render_as_string()}
    kept: dict = {}
    if args.reuse and backend.exists() and sidecar.exists():
        kept = json.loads(sidecar.read_text())
        if kept["span"]["n_slots"] != span.n_slots or kept["values"] != args.values:
            raise SystemExit(f"{backend.label}: the kept database holds {kept['span']['n_slots']} slots filled with "
                             f"--values {kept['values']}; run with the same --years, --fraction and --values")
        result["fill"], result["reused"] = kept["fill"], True
        # A database kept from an earlier revision of the schema is brought to the current one, as every RDMT
        # process does when it opens it: the new migrations' cost on a filled database is measured here.
        t0 = time.perf_counter()
        database = Database(backend.url)
        database.upgrade()
        database.dispose()
        result["upgrade_kept_s"] = time.perf_counter() - t0
        print(f"{backend.label}: measuring the kept database {backend.url} (upgraded in "
              f"{result['upgrade_kept_s']:.1f} s)", file=sys.stderr)
    else:
        backend.create()
        t0 = time.perf_counter()
        database = Database(backend.url)
        database.upgrade()
        for monitor in (*l2.summaries, *reference.summaries):
            database.write_standards(standards.for_monitor(monitor))
        database.dispose()
        upgrade_s = time.perf_counter() - t0
        print(f"{backend.label}: filling {span.n_files:,} L2 files over {span.days:.1f} days", file=sys.stderr)
        fill = Filler(backend, span, l2, reference, args.values, args.metric, args.workers).run()
        fill["upgrade_s"] = upgrade_s
        result["fill"] = fill
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps({"fill": fill, "span": {"start": span.start.isoformat(), "n_slots": span.n_slots,
                                                              "full_days": span.full_days}, "values": args.values}))
    if result.get("reused") and "size_bytes" in kept:  # as filled: later runs added batches to it
        result["size_bytes"], result["table_bytes"], result["size_s"] = kept["size_bytes"], kept["table_bytes"], 0.0
    else:
        t0 = time.perf_counter()
        result["size_bytes"] = backend.size()
        result["table_bytes"] = backend.table_sizes()
        result["size_s"] = time.perf_counter() - t0
        state = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**state, "size_bytes": result["size_bytes"],
                                       "table_bytes": result["table_bytes"]}))
    print(f"{backend.label}: {gib(result['size_bytes'])}; measuring queries", file=sys.stderr)
    result["queries"] = measure_queries(backend.url, span, args.metric, args.detector, args.repeat, args.view_timeout)
    print(f"{backend.label}: writing the day page of the last whole day", file=sys.stderr)
    result["day_page"] = measure_day_page(backend.url, span)
    print(f"{backend.label}: measuring the write path", file=sys.stderr)
    result["write_path"] = measure_write_path(backend.url, span, l2, reference, standards, args.batches,
                                              args.deliveries)
    if isinstance(backend, PostgresBackend) and "+psycopg2" in backend.url and importlib.util.find_spec("psycopg"):
        print(f"{backend.label}: measuring the write path with psycopg 3", file=sys.stderr)
        result["write_path_psycopg"] = measure_write_path(backend.url.replace("+psycopg2", "+psycopg"), span, l2,
                                                          reference, standards, args.batches, args.deliveries)
    if args.try_indexes:
        print(f"{backend.label}: trying candidate indexes", file=sys.stderr)
        result["candidates"] = try_indexes(backend, backend.url, span, args, l2, reference, standards)
    return result


def extrapolate(result: dict, span: Span, years: float, l2: ArmTemplate, values: str, metric: str) -> dict:
    """Bytes per row of each table; size and fill time of the whole span, as this fill level fills it and with
    every row of every file (per-file work and row rates as measured here, the reference arm by the span)."""
    fill, tables = result["fill"], result["table_bytes"]
    rows, seconds = fill["rows"], fill["seconds"]
    per_row = {t: tables[t] / rows[t] for t in (*L2_TABLES, *REFERENCE_TABLES) if rows.get(t) and tables.get(t)}
    files_5y = int(round(years * DAYS_PER_YEAR * FILES_PER_DAY))
    window = min((span.n_slots - span.first_full_slot) * FILES_PER_SLOT, files_5y)
    keep = l2_keep(values, metric)
    full = full_rows_per_l2_file(l2)
    kept = {"l2_file": 1, "l2_measurement": len(l2.summaries), "l2_metric_value": len(l2.value_rows(keep)),
            "l2_evaluation": len(l2.evaluation_rows(keep))}
    rows_as_filled = {t: kept[t] * (files_5y - window) + full[t] * window for t in L2_TABLES}
    rows_every = {t: full[t] * files_5y for t in L2_TABLES}
    span_ratio = files_5y / max(span.n_files, 1)
    reference_bytes = sum(tables.get(t, 0) for t in REFERENCE_TABLES)
    other = max(result["size_bytes"] - sum(tables.get(t, 0) for t in (*L2_TABLES, *REFERENCE_TABLES)), 0)
    l2_bytes = sum(tables.get(t, 0) for t in L2_TABLES)

    def size(l2_rows):
        if any(l2_rows[t] and t not in per_row for t in L2_TABLES):
            return None
        return sum(per_row.get(t, 0) * n for t, n in l2_rows.items()) + reference_bytes * span_ratio + other

    per_file_s = sum(seconds.get(k, 0.0) for k in ("l2 rows built in Python", "waiting for the rows built in a worker "
                                                    "process", "l2_file", "l2_measurement"))
    per_file_s /= max(span.n_files, 1)
    rate = {t: rows[t] / seconds[t] for t in ("l2_metric_value", "l2_evaluation") if rows.get(t) and seconds.get(t)}
    reference_s = sum(seconds.get(k, 0.0) for k in ("reference rows built in Python", "reference_file",
                                                      "evaluation_run", "metric_value", "evaluation"))

    def fill_time(l2_rows, total_bytes):
        if total_bytes is None or any(l2_rows[t] and t not in rate for t in ("l2_metric_value", "l2_evaluation")):
            return None
        expand = sum(l2_rows[t] / rate[t] for t in ("l2_metric_value", "l2_evaluation") if l2_rows[t])
        index = fill["index_build_s"] * total_bytes / max(result["size_bytes"], 1)
        return files_5y * per_file_s + expand + reference_s * span_ratio + index

    as_filled, every_row = size(rows_as_filled), size(rows_every)
    vacuum = fill.get("vacuum_analyze_s")
    filled_years = span.days / DAYS_PER_YEAR
    return {
        "bytes_per_row": per_row, "filled_years": filled_years, "files_five_years": files_5y,
        "rows_five_years_as_filled": rows_as_filled, "rows_five_years_every_row": rows_every,
        "bytes_per_year": result["size_bytes"] / filled_years,
        "bytes_per_l2_file": l2_bytes / max(span.n_files, 1),
        "bytes_per_l2_file_every_row": sum(per_row.get(t, 0) * n for t, n in full.items()),
        "five_years_bytes_as_filled": as_filled, "five_years_bytes_every_row": every_row,
        "rows_per_second": sum(rows.get(t, 0) for t in (*L2_TABLES, *REFERENCE_TABLES)) / fill["fill_s"],
        "seconds_per_l2_file": per_file_s, "expand_rows_per_second": rate,
        "five_years_fill_s_as_filled": fill_time(rows_as_filled, as_filled),
        "five_years_fill_s_every_row": fill_time(rows_every, every_row),
        "five_years_vacuum_analyze_s": None if vacuum is None or as_filled is None else
        vacuum * as_filled / max(result["size_bytes"], 1),
    }


# -- the report -------------------------------------------------------------------------------------------------

def _s(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def _minutes(seconds) -> str:
    return "-" if not seconds else f"{seconds / 60:.0f}"


def _bytes(n) -> str:
    return "-" if not n else gib(n)


def markdown(results: list[dict], args, span: Span, l2: ArmTemplate, reference: ArmTemplate, partitions: dict,
             load: float) -> list[str]:
    full = full_rows_per_l2_file(l2)
    kept = {"full": "every row", "detector": "the detector-scale rows (values and evaluations)",
            "history": f"the detector-scale value of `{args.metric}` and its evaluations", "none": "none"}[args.values]
    files_5y = int(round(args.years * DAYS_PER_YEAR * FILES_PER_DAY))
    lines = [f"### {args.years:g} years of L2 images at the Galactic Bulge survey peak (18 files / 120 s): fill, "
             "queries, writes", ""]
    lines += [f"Filled {span.days:.1f} days ({span.start:%Y-%m-%d} to {span.end:%Y-%m-%d %H:%M}; "
              f"{span.days / (args.years * DAYS_PER_YEAR):.1%} of {args.years:g} x 365.25 days, which at 12,960 "
              f"files a day is {files_5y:,} files): {span.n_files:,} L2 files, each with its `l2_file` row and "
              f"{full['l2_measurement']} `l2_measurement` rows (the evaluation summary); metric values and "
              f"evaluations: {kept}, and every row ({full['l2_metric_value']} values, {full['l2_evaluation']} "
              f"evaluations per file, as measured by the four L2 monitors on a synthetic image) for the files "
              f"observed after {span.full_from:%Y-%m-%d %H:%M} (the last {args.full_days:g} days). Reference arm: "
              f"{len(reference_deliveries(span))} deliveries of 18 files (darks weekly; readnoise, superbias, mask "
              "every 4 weeks; flat, gain, saturation, linearity, refpix every 13 weeks), detector and amp values "
              "and evaluations (every region in the last days). Schema by the migrations (`Database.upgrade`).", ""]
    lines += ["| backend | L2 files | rows filled | fill (s) | of which index build (s) | rows/s | database | per L2 "
              "file (as filled) | per L2 file (every row) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        x, f = r["extrapolation"], r["fill"]
        n_rows = sum(f["rows"].get(t, 0) for t in (*L2_TABLES, *REFERENCE_TABLES))
        lines.append(f"| {r['backend']} | {span.n_files:,} | {n_rows:,} | {f['fill_s']:.0f} | {f['index_build_s']:.0f} "
                     f"| {x['rows_per_second']:,.0f} | {gib(r['size_bytes'])} | "
                     f"{x['bytes_per_l2_file'] / 1024:.1f} KiB | {x['bytes_per_l2_file_every_row'] / 1024:.0f} KiB |")
    upgraded = [f"{r['backend']} {r['upgrade_kept_s']:.1f} s" for r in results if "upgrade_kept_s" in r]
    if upgraded:
        lines += ["", "The databases were kept from an earlier run (sizes as filled) and brought to the current "
                  "schema before measuring, as any RDMT process does when it opens one: " + ", ".join(upgraded)
                  + (" (at the current revision already)." if all(r.get("upgrade_kept_s", 0) < 0.5 for r in results)
                     else " (the new migrations' indexes built on the filled tables).")]
    lines += ["", "| backend | table | rows | bytes per row (indexes included) |", "|---|---|---|---|"]
    for r in results:
        for t in (*L2_TABLES, *REFERENCE_TABLES):
            bpr = r["extrapolation"]["bytes_per_row"].get(t)
            if bpr is not None:
                lines.append(f"| {r['backend']} | `{t}` | {r['fill']['rows'][t]:,} | {bpr:,.0f} |")
    year_points = int(DAYS_PER_YEAR * SLOTS_PER_DAY)
    lines += ["", f"Queries, median of {args.repeat} (a new connection each time; commands in a new process). The last "
              f"column scales the median to a whole year of one detector at the peak rate ({year_points:,} images), "
              "in proportion to the points read:", "",
              "| backend | what | rows | median (s) | min (s) | target | a year at the peak (s) |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        q = r["queries"]
        h, hc, v, fl, fc = q["history"], q["history_command"], q["view"], q["failures"], q["failures_command"]
        b = r["backend"]
        year = lambda t, n: _s(t * year_points / n) if n else "-"  # noqa: E731
        lines += [
            f"| {b} | `metric_history` {args.metric}, {args.detector}, since {q['since'][:10]} | {h['points']:,} "
            f"points | {_s(h['median_s'])} | {_s(h['min_s'])} | <= {HISTORY_TARGET:g} s | "
            f"{year(h['median_s'], h['l2_points'])} |",
            f"| {b} | `rdmt {hc['args']}` | {hc['lines']:,} lines | {_s(hc['median_s'])} | {_s(hc['min_s'])} | | "
            f"{year(hc['median_s'], h['l2_points'])} |",
            f"| {b} | `metric_history` view, same metric, detector and year | "
            + (f"stopped after {v['timeout_s']:.0f} s | > {v['timeout_s']:.0f} | | | |" if v["timed_out"] else
               f"{v['rows']:,} | {_s(v['median_s'])} | {_s(v['min_s'])} | | {year(v['median_s'], v['rows'])} |"),
            f"| {b} | `failed_groups` since {q['failures_since']} (both arms) | {fl['groups']:,} groups of "
            f"{fl['files']:,} files | {_s(fl['median_s'])} | {_s(fl['min_s'])} | | |",
            f"| {b} | `rdmt {fc['args']}` | {fc['lines']:,} lines | {_s(fc['median_s'])} | {_s(fc['min_s'])} | | |",
        ]
    lines += ["", "Where the time goes (one run each; the SQL statements run again on the driver's cursor, their rows "
              "fetched, the rest is Python):", "",
              "| backend | query | total (s) | SQL (s) | statements | slowest statement shape (calls, s) |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for label, key in (("history", "history_profile"), ("failures", "failures_profile")):
            s = r["queries"][key]
            top = s["slowest"][0] if s["slowest"] else None
            text = f"`{top['statement'][:100]}...` ({top['calls']}, {top['seconds']:.2f})" if top else ""
            lines.append(f"| {r['backend']} | {label} | {s['total_s']:.2f} | {s['sql_s']:.2f} | {s['statements']:,} "
                         f"| {text} |")
    pages = [r for r in results if "day_page" in r]
    if pages:
        lines += ["", "The L2 day page of the last whole day (every L2 run of a day rewrites it: failures, "
                  "unmeasured images, the reference files behind them, per-detector table, 14 days of trends), "
                  "timed once: " + "; ".join(f"{r['backend']} {r['day_page']['seconds']:.1f} s for "
                                             f"{r['day_page']['images']:,} images of {r['day_page']['day']}"
                                             for r in pages) + "."]
    lines += ["", f"One batch of 18 new L2 files through the real write path, median of {args.batches} "
              f"({results[0]['write_path']['rows_per_batch']:,} rows per batch):", "",
              "| backend | notices (`L2Ledger.record_many`) (s) | headers + claim (s) | S3 catch-up look-up of the 18 "
              "objects (`record_unknown`) (s) | evaluation with the stored history (s) | store: `write_measurements` + "
              "`write_evaluation` (s) | files/s of the store | all (s) | 18-dark delivery through `Database`, median of "
              f"{args.deliveries} (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        variants = [("write_path", r["backend"] if r["backend"] == "SQLite" else
                     f"{r['backend']} ({sa.engine.make_url(r['url']).get_driver_name()})")]
        if "write_path_psycopg" in r:
            variants.append(("write_path_psycopg", f"{r['backend']} (psycopg)"))
        for key, label in variants:
            w, dark = r[key]["l2"], r[key]["dark"]
            lines.append(f"| {label} | {_s(w['ledger_s']['median_s'])} | "
                         f"{_s(w['header_and_claim_s']['median_s'])} | {_s(w['catch_up_s']['median_s'])} | "
                         f"{_s(w['evaluate_s']['median_s'])} | "
                         f"{_s(w['store_s']['median_s'])} | {FILES_PER_SLOT / w['store_s']['median_s']:.1f} | "
                         f"{_s(w['total_s']['median_s'])} | {_s(dark['median_s']) if dark else '-'} |")
    lines += ["", f"Extrapolated to {args.years:g} years ({files_5y:,} L2 files; fill time and size scale with the "
              "files, the reference arm with the span):", "",
              "| backend | fill as here (min) | `VACUUM ANALYZE` after it (min) | database as here | per year as here "
              "| with every row of every file | per year with every row | fill with every row (h) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        x = r["extrapolation"]
        as_filled, every = x["five_years_bytes_as_filled"], x["five_years_bytes_every_row"]
        cells = [r["backend"], _minutes(x["five_years_fill_s_as_filled"]), _minutes(x["five_years_vacuum_analyze_s"]),
                 _bytes(as_filled), _bytes(as_filled and as_filled / args.years), _bytes(every),
                 _bytes(every and every / args.years),
                 "-" if not x["five_years_fill_s_every_row"] else f"{x['five_years_fill_s_every_row'] / 3600:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    p = partitions
    lines += ["", f"Dagster: `l2_day_partitions` (first day {p['first_day']}, {p['days_ahead']} days ahead) holds "
              f"**{p['keys_at_end']:,} keys per asset** on {p['end']}, the end of {args.years:g} years "
              f"({p['keys_inside_span']:,} of them days of the span; target <= {p['target']:,}); "
              f"`get_partition_keys` took {p['get_partition_keys_s'] * 1000:.0f} ms."]
    for r in results:
        cand = r.get("candidates")
        if not cand:
            continue
        q0, q1 = r["queries"], cand["queries"]
        w0, w1 = r["write_path"]["l2"], cand["write_path"]["l2"]
        lines += ["", f"{r['backend']}: candidate indexes, created by hand in the filled database:", "",
                  "| index | serves | build (s) | size |", "|---|---|---|---|"]
        lines += [f"| `{c['sql']}` | {c['purpose']} | {c['build_s']:.1f} | "
                  f"{gib(c['bytes']) if c.get('bytes') else '-'} |" for c in cand["indexes"]]
        lines += ["", "| what | before (s) | with the indexes (s) |", "|---|---|---|",
                  f"| `metric_history` | {_s(q0['history']['median_s'])} | {_s(q1['history']['median_s'])} |",
                  f"| `metric_history` view | {_s(q0['view']['median_s'])} | {_s(q1['view']['median_s'])} |",
                  f"| `failed_groups` last week | {_s(q0['failures']['median_s'])} | {_s(q1['failures']['median_s'])} |",
                  f"| notices of a batch (`record_many`) | {_s(w0['ledger_s']['median_s'])} | "
                  f"{_s(w1['ledger_s']['median_s'])} |",
                  f"| S3 catch-up look-up of a batch (`record_unknown`) | {_s(w0['catch_up_s']['median_s'])} | "
                  f"{_s(w1['catch_up_s']['median_s'])} |",
                  f"| store of a batch | {_s(w0['store_s']['median_s'])} | {_s(w1['store_s']['median_s'])} |"]
    for r in results:
        for label, key in (("history", "history_profile"), ("failures", "failures_profile")):
            slowest = [item for item in r["queries"][key]["slowest"] if "plan" in item]
            if not slowest:
                continue
            lines += ["", f"{r['backend']}: the {label} query takes more than {HISTORY_TARGET:g} s; the plans of its "
                      "slowest statements:", ""]
            for item in slowest:
                lines += [f"- {item['calls']:,} call(s), {item['seconds']:.2f} s: `{item['statement'][:200]}`", "",
                          "```", item["plan"], "```", ""]
    summary = []
    for r in results:
        h, x = r["queries"]["history"], r["extrapolation"]
        if h["l2_points"]:
            per_point = h["median_s"] / h["l2_points"]
            summary.append(f"{r['backend']}: the history query takes {per_point * 1e6:.0f} us per L2 image, "
                           f"{per_point * year_points:.0f} s for a year of one detector at the peak (target "
                           f"{HISTORY_TARGET:g} s); the five years take {_bytes(x['five_years_bytes_as_filled'])} as "
                           f"filled here and {_bytes(x['five_years_bytes_every_row'])} with every row.")
    lines += ["", " ".join(summary + [
        f"Dagster's L2 daily partitions hold {p['keys_at_end']:,} keys per asset after {args.years:g} years "
        f"({'over' if p['keys_at_end'] > p['target'] else 'within'} the {p['target']:,} target).",
        f"Load average when the measurements started: {load:.1f} (on {os.cpu_count()} cores). Values and verdicts "
        "are drawn around one measured image, not computed from pixels; a query reads the rows it would read in "
        "production, but the tables hold fewer rows than five years would, so the database caches more of them."])]
    return lines


def write_results(section: list[str]) -> None:
    """Prepend ``section`` to BENCHMARKS.md under a ``## <UTC date time>`` heading, as ``benchmarks/run.py`` does."""
    from run import RESULTS, machine

    stamp_ = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([f"## {stamp_}", "", f"Machine: {machine()}", "", *section]) + "\n"
    header = "# Benchmarks\n\nProduced by `benchmarks/run.py`; newest first.\n\n"
    old = RESULTS.read_text()[len(header):] if RESULTS.exists() and RESULTS.read_text().startswith(header) else ""
    RESULTS.write_text(header + text + ("\n" + old if old else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--fraction", type=float, default=1.0, help="fill only this first part of the span")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--values", choices=VALUE_LEVELS, default="history",
                        help="metric values and evaluations of the files before the full window")
    parser.add_argument("--full-days", type=float, default=7.0, help="the last days of the span get every row")
    parser.add_argument("--metric", default="psf_fwhm_median", help="the metric of the history query")
    parser.add_argument("--detector", default="WFI07")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="L2 batches through the write path")
    parser.add_argument("--deliveries", type=int, default=3, help="dark deliveries through the write path")
    parser.add_argument("--view-timeout", type=float, default=300.0, help="seconds before the view query is stopped")
    parser.add_argument("--workers", type=int, choices=(0, 1), default=1,
                        help="build the L2 rows of the next day in a worker process while this one is stored")
    parser.add_argument("--try-indexes", action="store_true", help="measure again with the candidate indexes")
    parser.add_argument("--workdir", default=str(DATA), help="where the SQLite database is created")
    parser.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--pg-database", default="rdmt_scale")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true", help="measure kept databases without filling them again")
    parser.add_argument("--write", action="store_true", help="prepend the results to BENCHMARKS.md")
    parser.add_argument("--json", metavar="PATH", help="write every number to PATH")
    args = parser.parse_args()
    if args.repeat < 1 or args.batches < 1:
        parser.error("--repeat and --batches must be at least 1")

    from rdmt_dagster.defs.l2.partitions import l2_day_partitions
    from rdmt_dagster.science.standards import Standards

    first = l2_day_partitions.start.replace(tzinfo=None)
    n_slots = int(round(args.years * DAYS_PER_YEAR * args.fraction * SLOTS_PER_DAY))
    if n_slots < 1:
        parser.error("--years x --fraction fills nothing")
    span = Span(first, n_slots, min(args.full_days, n_slots / SLOTS_PER_DAY))
    standards = Standards()
    t0 = time.perf_counter()
    l2 = l2_template(standards)
    reference = reference_template(standards)
    print(f"templates from measured files: {time.perf_counter() - t0:.1f} s; per L2 image "
          f"{full_rows_per_l2_file(l2)}", file=sys.stderr)
    partitions = partition_counts(args.years)
    load = os.getloadavg()[0]
    backends: list[Backend] = []
    if args.backend in ("sqlite", "both"):
        backends.append(SQLiteBackend(Path(args.workdir) / "five_year_scale.db"))
    if args.backend in ("postgresql", "both"):
        backends.append(PostgresBackend(args.pg_url, args.pg_database))
    results = []
    keep = args.keep or args.reuse
    for backend in backends:
        try:
            result = run_backend(backend, args, span, l2, reference, standards)
            result["extrapolation"] = extrapolate(result, span, args.years, l2, args.values, args.metric)
            results.append(result)
        finally:
            if not keep:
                backend.drop()
                sidecar = Path(f"{backend.path}.json") if isinstance(backend, SQLiteBackend) else \
                    Path(args.workdir) / f"{backend.database}.json"
                sidecar.unlink(missing_ok=True)
    section = markdown(results, args, span, l2, reference, partitions, load)
    from run import machine

    print("\n".join([f"Machine: {machine()}", "", *section]))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "span": {"start": span.start.isoformat(), "end": span.end.isoformat(),
                                         "days": span.days, "l2_files": span.n_files,
                                         "full_from": span.full_from.isoformat()},
            "rows_per_l2_file": full_rows_per_l2_file(l2), "partitions": partitions, "load": load,
            "results": results}, indent=1, default=str))
    if args.write:
        write_results(section)


if __name__ == "__main__":
    main()
