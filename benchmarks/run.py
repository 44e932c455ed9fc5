"""RDMT benchmarks; results are appended to BENCHMARKS.md with the machine and the date.

    .venv/bin/python benchmarks/run.py [--only metrics,delivery,ticks,queries,arrival,check,l2,noise_1f,romanisim,l2_ingest,l2_latency,history] [--repeat N]

* ``metrics``: every registered monitor's metrics for one synthetic 4096x4096
  detector, on one core (the file is read once, outside the timing), plus the
  time to read the file; and the reference percentile approaches for the dark
  rates (a per-region ``np.percentile`` loop, one vectorised call per scale).
* ``delivery``: one 18-detector dark delivery end to end (read, metrics,
  evaluation, database, Parquet, ECSV, reports, notification) through the
  Dagster definitions in one run on 2 cores, on top of a first delivery (so
  the change evaluator has a previous file); wall time, and the peak of the
  summed resident memory of the run process and its worker processes.
* ``ticks``: the cost of a sensor tick that finds nothing new, for each sensor.
* ``queries``: the failed-evaluation query behind the notifications on
  SQLite and on the PostgreSQL and MariaDB servers when they are reachable.
* ``arrival``: the fully automatic path of ``rdmt demo`` (CRDS stand-in,
  sensors, Dagster daemon, run launcher): seconds from a delivery's arrival
  (new CRDS context or ``rdmt submit``) to every file's report and the
  notification, for a dark delivery and for a delivery of every type.
* ``check``: ``rdmt check --json`` on four darks against ``benchmarks/straightforward_dark_check.py``.
* ``l2`` and ``romanisim``: the L2 monitors (``benchmarks/l2_bench.py``).
* ``l2_ingest`` and ``l2_latency``: the L2 arm's SQS ingest tick (100 notices,
  idle, through the sensor function; SQLite and the reachable servers) and the
  arrival-to-results latency of 18 full-size images through the Dagster
  daemon on 2 cores (``benchmarks/l2_arm.py``).
* ``history``: ``rdmt history`` of one metric and one detector on a SQLite
  database of a year of weekly 18-detector dark deliveries, the query and
  the command, and ``rdmt failures`` of a delivery (``benchmarks/history_query.py``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import threading
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "BENCHMARKS.md"
DATA = ROOT / "benchmarks" / "_data"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, numpy {np.__version__}"


def median_time(func, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def synthetic_files() -> dict[str, Path]:
    """One synthetic file per monitored reference type (written once into benchmarks/_data)."""
    from rdmt_dagster.science.monitor import arm_monitors
    from rdmt_dagster.synthetic import write_dark

    DATA.mkdir(parents=True, exist_ok=True)
    files = {"dark": DATA / "bench_dark.asdf"}
    if not files["dark"].exists():
        write_dark(files["dark"], "WFI01", 1, "2027-01-01T00:00:00")
    from rdmt_dagster.science.standards import Standards

    available = set(Standards().monitors())
    for name in arm_monitors("reference"):
        if name == "dark":
            continue
        try:
            module = importlib.import_module(f"rdmt_dagster.synthetic.{name}")
        except ImportError:
            print(f"skipping {name}: no synthetic generator", file=sys.stderr)
            continue
        if name not in available:
            print(f"skipping {name}: no standards block", file=sys.stderr)
            continue
        path = DATA / f"bench_{name}.asdf"
        if not path.exists():
            module.write(path, "WFI01", 1, "2027-01-01T00:00:00")
        files[name] = path
    return files


def bench_metrics(repeat: int) -> list[str]:
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.science.monitor import registry
    from rdmt_dagster.science.standards import Standards

    lines = ["| monitor | metrics per detector, median (s) | min (s) | read file (s) | runs |", "|---|---|---|---|---|"]
    standards = Standards()
    for name, path in synthetic_files().items():
        monitor = registry()[name]
        params = standards.for_monitor(name).parameters
        t0 = time.perf_counter()
        with rdm.open(path) as model:
            for _, value in model.items():
                if hasattr(value, "shape") and getattr(value, "size", 0) > 1:
                    np.asarray(value)
        read = time.perf_counter() - t0
        with rdm.open(path) as model:
            model_copy = model.copy()  # arrays in memory: the timing below excludes I/O
        med, times = median_time(lambda: monitor.metrics(model_copy, params), repeat)
        lines.append(f"| {name} | {med:.3f} | {min(times):.3f} | {read:.2f} | {repeat} |")

    with rdm.open(synthetic_files()["dark"]) as model:
        rates = np.array(model.dark_slope, dtype=np.float32)
    sci = np.full((4096, 4096), np.nan, dtype=np.float32)
    sci[4:-4, 4:-4] = rates[4:-4, 4:-4]
    q = [50, 90, 95, 99]

    def loop():
        np.nanpercentile(sci, q)
        for a in range(32):
            np.nanpercentile(sci[:, a * 128 : (a + 1) * 128], q)
        for y in range(32):
            for x in range(32):
                np.nanpercentile(sci[y * 128 : (y + 1) * 128, x * 128 : (x + 1) * 128], q)

    def vectorised():
        np.nanpercentile(sci, q)
        np.nanpercentile(sci.reshape(4096, 32, 128).transpose(1, 0, 2).reshape(32, -1), q, axis=1)
        np.nanpercentile(sci.reshape(32, 128, 32, 128).transpose(0, 2, 1, 3).reshape(1024, -1), q, axis=1)

    from rdmt_dagster.science.scales import RegionReducer

    ours, _ = median_time(lambda: RegionReducer(rates).percentiles(q), max(3, repeat))
    blocks = sci.reshape(32, 128, 32, 128).transpose(2, 0, 1, 3).reshape(1024, -1)
    sort_t, _ = median_time(lambda: blocks.copy().sort(axis=1), max(3, repeat))
    loop_t, _ = median_time(loop, 1)
    vec_t, _ = median_time(vectorised, 2)
    lines += [
        "",
        "Dark-rate percentiles (50/90/95/99) at all three scales, one detector:",
        "",
        "| method | time (s) | ratio to RegionReducer |",
        "|---|---|---|",
        f"| per-region `np.nanpercentile` loop | {loop_t:.2f} | {loop_t / ours:.1f}x |",
        f"| one vectorised `np.nanpercentile` per scale | {vec_t:.2f} | {vec_t / ours:.1f}x |",
        f"| `RegionReducer.percentiles` (block sort + selection from the sorted blocks) | {ours:.3f} | 1x |",
        f"| of which: sorting the 1024 super-pixel blocks (`ndarray.sort`) | {sort_t:.3f} | {sort_t / ours:.1f}x |",
    ]
    return lines


DELIVERY_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from pathlib import Path
from run import TreeMemory
from rdmt_dagster.demo import prepare_environment
workdir = Path({workdir!r})
prepare_environment(workdir)
import dagster as dg
from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.definitions import REFERENCE_FILE_JOB, build_definitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.synthetic import DETECTORS, DarkAnomaly, dark_filename, write_dark

def delivery(number, anomalous=None):
    folder = workdir / "deliveries" / f"delivery_{{number}}"
    paths = []
    for det in DETECTORS:
        path = folder / dark_filename(number, det)
        if not path.exists():
            write_dark(path, det, number, f"2027-0{{number}}-01T00:00:00", DarkAnomaly() if det == anomalous else None)
        paths.append(path)
    return paths

def run(paths):
    names = [p.name for p in paths]
    for p in paths:
        database.register(p.name, str(p))
    instance.add_dynamic_partitions(reference_file_partitions.name, names)
    return defs.resolve_job_def(REFERENCE_FILE_JOB).execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={{"loggers": {{"console": {{"config": {{"log_level": "WARNING"}}}}}}}},
        tags={{"dagster/asset_partition_range_start": names[0], "dagster/asset_partition_range_end": names[-1]}},
    ).success

defs = build_definitions()
instance = dg.DagsterInstance.get()
database = RDMTConfig(home=str(workdir)).database()
first, second = delivery(1), delivery(2, "WFI07")
assert run(first)
memory = TreeMemory(os.getpid())
t0 = time.perf_counter()
ok = run(second)
wall = time.perf_counter() - t0
print(json.dumps({{"ok": ok, "wall": wall, "peak_rss_mb": memory.stop()}}))
"""


class TreeMemory:
    """Samples the summed resident memory of a process and its descendants every 50 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def _rss_mb(self) -> float:
        total, todo = 0.0, [self.pid]
        while todo:
            pid = todo.pop()
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                continue
            todo += self._children(pid)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss_mb())
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def bench_delivery(repeat: int) -> list[str]:
    lines = ["| run | wall (s) | peak RSS of run + workers (MB) |", "|---|---|---|"]
    walls, peaks = [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="rdmt-bench-") as tmp:
            workdir = Path(tmp)
            # Reuse the synthetic deliveries between runs: the files are the input, not what is measured.
            for delivery in (1, 2):
                cached = DATA / f"delivery_{delivery}"
                target = workdir / "deliveries" / f"delivery_{delivery}"
                target.parent.mkdir(parents=True, exist_ok=True)
                if cached.exists():
                    target.symlink_to(cached, target_is_directory=True)
            script = DELIVERY_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), workdir=str(workdir))
            proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            result = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
            for delivery in (1, 2):
                cached, target = DATA / f"delivery_{delivery}", workdir / "deliveries" / f"delivery_{delivery}"
                if not cached.exists() and target.exists() and not target.is_symlink():
                    target.rename(cached)
        walls.append(result["wall"])
        peaks.append(result["peak_rss_mb"])
        lines.append(f"| {i + 1} | {result['wall']:.1f} | {result['peak_rss_mb']:.0f} |")
    lines.append(f"| **median** | **{statistics.median(walls):.1f}** | **{max(peaks):.0f}** (max) |")
    return lines


def bench_idle_ticks(repeat: int = 21) -> list[str]:
    """Cost of a sensor tick that finds nothing new (after a first tick that handed over one file each)."""
    import dagster as dg

    from rdmt_dagster.crds_standin import CRDSStandIn
    from rdmt_dagster.resources import RDMTConfig
    from rdmt_dagster.sensors import crds_sensor, drop_folder_sensor, registered_files_sensor
    from rdmt_dagster.synthetic import write_dark

    lines = ["| sensor | idle tick, median (ms) | max (ms) | ticks |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="rdmt-ticks-") as tmp, CRDSStandIn(Path(tmp) / "server") as crds, \
            dg.instance_for_test() as instance:
        os.environ.update({"CRDS_SERVER_URL": crds.url, "CRDS_PATH": f"{tmp}/cache",
                           "RDMT_CRDS_START_CONTEXT": crds.default_context, "RDMT_HANDOFF_GRACE_SECONDS": "0"})
        home = Path(tmp) / "home"
        rdmt = RDMTConfig(home=str(home))
        crds.deliver([write_dark(Path(tmp) / "in" / "roman_wfi_dark_0001.asdf", "WFI01", 1, "2027-01-01")])
        write_dark(home / "dropbox" / "roman_wfi_dark_0002.asdf", "WFI02", 1, "2027-01-01")
        for sensor in (crds_sensor, registered_files_sensor, drop_folder_sensor):
            cursor = None
            for _ in range(3):  # hand the files over (the drop folder waits for a stable size)
                context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"rdmt": rdmt})
                result = sensor(context)
                if not isinstance(result, dg.SkipReason):
                    for request in result.dynamic_partitions_requests or []:
                        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                    cursor = result.cursor if result.cursor is not None else cursor
            times = []
            for _ in range(repeat):
                context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"rdmt": rdmt})
                t0 = time.perf_counter()
                result = sensor(context)
                times.append(time.perf_counter() - t0)
                if not isinstance(result, dg.SkipReason) and result.run_requests:
                    raise RuntimeError(f"{sensor.name} requested runs on an idle tick")
            lines.append(f"| {sensor.name} | {statistics.median(times) * 1000:.1f} | {max(times) * 1000:.1f} | {repeat} |")
    return lines


ARRIVAL = re.compile(r"^delivery (\d+): (\d+) files .* monitored, reported and notified (\d+) s after arrival")


def bench_arrival(types: list[str]) -> list[str]:
    """Run ``rdmt demo`` (the automatic path) and read its arrival-to-notification times."""
    lines = ["| reference types | delivery | files | arrival to reports + notification (s) |", "|---|---|---|---|"]
    for selection in types:
        with tempfile.TemporaryDirectory(prefix="rdmt-arrival-") as tmp:
            cmd = [str(Path(sys.executable).parent / "rdmt"), "demo", "--workdir", tmp]
            if selection != "all":
                cmd += ["--types", selection]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = [ARRIVAL.match(line) for line in proc.stdout.splitlines()]
            found = [m for m in found if m]
            if proc.returncode != 0 or len(found) != 2:
                raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
            for m in found:
                lines.append(f"| {selection} | {m.group(1)} | {m.group(2)} | {m.group(3)} |")
    return lines


def _metric_sets(n_files: int):
    """``n_files`` dark-shaped metric sets (8 metrics x 1057 values) of one delivery."""
    from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
    from rdmt_dagster.science.scales import ScaleValues

    names = ["dark_current_mean"] + [f"dark_current_percentile_{q}" for q in (50, 90, 95, 99)]
    names += ["num_dead_pix", "num_hot_pix", "num_warm_pix"]
    rng = np.random.default_rng(0)
    sets = []
    for k in range(n_files):
        info = ReferenceFileInfo(f"roman_wfi_dark_{k:04d}.asdf", f"/data/{k}.asdf", "dark", f"WFI{k % 18 + 1:02d}",
                        datetime(2027, 1, 1), "DARK")
        metrics = [Metric(m, "DN / s", ScaleValues(rng.random(1), rng.random(32), rng.random(1024))) for m in names]
        sets.append(MetricSet(info, "1.0.0", metrics))
    return sets


def _query_databases(only: str | None = None):
    """(label, URL, drop) for SQLite and each database server reachable on loopback (or just ``only``)."""
    import socket
    import uuid

    import sqlalchemy as sa

    from rdmt_dagster.storage.database import sqlite_url

    def reachable(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    if only in (None, "SQLite"):
        tmp = Path(tempfile.mkdtemp(prefix="rdmt-bench-db-"))
        yield "SQLite", sqlite_url(tmp / "rdmt.db"), lambda: shutil.rmtree(tmp)
    servers = [("PostgreSQL", 5432, "postgresql+psycopg://postgres@127.0.0.1:5432", "postgres", '"'),
               ("MariaDB", 3306, "mysql+pymysql://root@127.0.0.1:3306", "", "`")]
    for label, port, base, admin_db, quote in servers:
        if only not in (None, label):
            continue
        if not reachable(port):
            print(f"benchmark: {label} is not reachable on 127.0.0.1:{port}; skipped")
            continue
        name = f"rdmt_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(f"{base}/{admin_db}", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quote}{name}{quote}"))

        def drop(admin=admin, name=name, quote=quote):
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE {quote}{name}{quote}"))
            admin.dispose()

        yield label, f"{base}/{name}", drop


def _loaded_database(url, sets, standards):
    from rdmt_dagster.science.monitor import evaluate
    from rdmt_dagster.storage.database import Database

    database = Database(url)
    database.upgrade()
    database.write_standards(standards)
    for ms in sets:
        database.write_metrics(ms)
        database.write_evaluations(evaluate(ms, standards), "1.0.0")
    return database


def bench_queries(repeat: int) -> list[str]:
    """The failed-evaluation query behind notifications, on each database backend.

    An 18-file dark delivery (random values, so many evaluations fail) is
    written, then ``Database.failed_evaluations`` of those files is timed. On
    MariaDB, a database holding two files also times the join driven the
    other way (metric_value first: the plan the optimizer may pick from stale
    statistics), once, since it is quadratic in the rows per file.
    """
    import sqlalchemy as sa

    from rdmt_dagster.science.standards import Standards

    standards = Standards().for_monitor("dark")
    sets = _metric_sets(18)
    names = [ms.info.filename for ms in sets]
    lines = ["| database | files | failed rows | failed_evaluations, median (s) | runs |", "|---|---|---|---|---|"]
    notes = []
    for label, url, drop in _query_databases():
        try:
            database = _loaded_database(url, sets, standards)
            n = len(database.failed_evaluations(names))
            med, _ = median_time(lambda: database.failed_evaluations(names), repeat)
            lines.append(f"| {label} | {len(names)} | {n} | {med:.3f} | {repeat} |")
            database.dispose()
        finally:
            drop()
    for _, url, drop in _query_databases(only="MariaDB"):
        try:
            database = _loaded_database(url, sets[:2], standards)
            two = ", ".join(f"'{x}'" for x in names[:2])
            reverse = (
                "SELECT STRAIGHT_JOIN f.filename, e.metric, m.value FROM metric_value m "
                "JOIN evaluation e ON m.file_id = e.file_id AND m.metric = e.metric AND m.region = e.region "
                f"JOIN reference_file f ON f.id = e.file_id WHERE e.passed = 0 AND f.filename IN ({two})"
            )
            fast, _ = median_time(lambda: database.failed_evaluations(names[:2]), repeat)
            with database.engine.connect() as conn:
                t0 = time.perf_counter()
                rows = len(conn.execute(sa.text(reverse)).all())
                slow = time.perf_counter() - t0
            database.dispose()
            notes = ["", f"MariaDB, a database of two files ({rows} failed rows): files -> evaluations -> metric "
                         f"values {fast:.3f} s (median of {repeat}); metric values -> evaluations -> files "
                         f"{slow:.1f} s (one run): {slow / fast:.0f}x."]
        finally:
            drop()
    return lines + notes


def bench_check(repeat: int = 3) -> list[str]:
    """``rdmt check --json`` on four full-size darks against the straightforward numpy script."""
    from rdmt_dagster.synthetic import write_dark

    DATA.mkdir(parents=True, exist_ok=True)
    darks = []
    for k, detector in enumerate(("WFI01", "WFI02", "WFI03", "WFI04"), start=1):
        path = DATA / f"check_dark_{k:04d}.asdf"
        if not path.exists():
            write_dark(path, detector, 1, "2027-01-01T00:00:00")
        darks.append(str(path))
    commands = {
        "straightforward numpy script": [sys.executable, str(ROOT / "benchmarks" / "straightforward_dark_check.py"), *darks],
        "`rdmt check --json`": [str(ROOT / ".venv" / "bin" / "rdmt"), "check", "--json", *darks],
    }
    times = {}
    for label, command in commands.items():
        times[label], _ = median_time(lambda: subprocess.run(command, stdout=subprocess.DEVNULL, check=False), repeat)
    base, ours = times.values()
    lines = ["| command | wall time, median (s) |", "|---|---|"]
    lines += [f"| {label} | {t:.2f} |" for label, t in times.items()]
    return lines + ["", f"Four full-size darks, 2 cores, median of {repeat}: `rdmt check` takes {ours / base:.2f}x "
                        "the straightforward script (which evaluates nothing)."]


def main() -> None:
    parser = argparse.ArgumentParser()
    names = ["metrics", "delivery", "ticks", "queries", "arrival", "check", "l2", "noise_1f", "romanisim", "l2_ingest",
             "l2_latency", "history"]
    parser.add_argument("--only", type=lambda text: set(text.split(",")),
                        help=f"comma-separated benchmarks among {', '.join(names)} (default: all)")
    parser.add_argument("--arrival-types", default="dark,all", help="comma-separated: a type list per demo, or 'all'")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--delivery-repeat", type=int, default=3)
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"## {stamp}", "", f"Machine: {machine()}", ""]
    if args.only is None or "metrics" in args.only:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        out += ["### Metrics per detector (one core)", ""] + bench_metrics(args.repeat) + [""]
    if args.only is None or "delivery" in args.only:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
        out += ["### One 18-detector dark delivery end to end through Dagster (2 cores)", ""]
        out += bench_delivery(args.delivery_repeat) + [""]
    if args.only is None or "ticks" in args.only:
        out += ["### Sensor ticks that find nothing new", ""] + bench_idle_ticks() + [""]
    if args.only is None or "queries" in args.only:
        out += ["### Failed evaluations of a delivery, per database backend", ""] + bench_queries(args.repeat) + [""]
    if args.only is None or "arrival" in args.only:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
        out += ["### Arrival to report and notification through CRDS, the sensors and the daemon (2 cores)", ""]
        out += bench_arrival(args.arrival_types.split(",")) + [""]
    if args.only is None or "check" in args.only:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
        out += ["### `rdmt check` against a straightforward script (2 cores)", ""] + bench_check() + [""]
    if args.only is None or "l2" in args.only:
        from l2_bench import bench_l2

        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        out += ["### L2 monitors per 4088x4088 image (one core)", ""] + bench_l2(args.repeat) + [""]
    if args.only is None or "noise_1f" in args.only:
        from l2_bench import bench_noise_1f

        out += ["### 1/f noise: injected 1/f, sky level, crowding", ""] + bench_noise_1f() + [""]
    if args.only is None or "romanisim" in args.only:
        from l2_bench import bench_romanisim

        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        out += ["### Astrometry and PSF on romanisim images against their true catalogs (one core)", ""]
        out += bench_romanisim() + [""]
    if args.only is None or "l2_ingest" in args.only:
        from l2_arm import bench_ingest

        os.sched_setaffinity(0, set(range(os.cpu_count())))
        out += ["### L2 ingest: one SQS tick of 100 notices, and an idle tick (moto on loopback)", ""]
        out += bench_ingest() + [""]
    if args.only is None or "l2_latency" in args.only:
        from l2_arm import bench_latency

        out += ["### L2 arrival to results: 18 full-size images through SNS, SQS, the sensors and the daemon "
                "(2 cores)", ""]
        out += bench_latency() + [""]
    if args.only is None or "history" in args.only:
        from history_query import bench_history

        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        out += ["### `rdmt history` and `rdmt failures` on a year of weekly dark deliveries (SQLite, one core)", ""]
        out += bench_history(args.repeat) + [""]
    text = "\n".join(out) + "\n"
    print(text)
    header = "# Benchmarks\n\nProduced by `benchmarks/run.py`; newest first.\n\n"
    old = RESULTS.read_text()[len(header):] if RESULTS.exists() and RESULTS.read_text().startswith(header) else ""
    RESULTS.write_text(header + text + ("\n" + old if old else ""))


if __name__ == "__main__":
    main()
