"""``rdmt history`` on a year of weekly dark deliveries (SQLite): the query, and the whole command.

    .venv/bin/python benchmarks/history_query.py [--weeks 52] [--detectors 18] [--repeat 7]

The database (``benchmarks/_data/history_<weeks>w_<detectors>d.db``, built
once and kept) holds what a year of weekly deliveries of 18 darks leaves: per
file the dark monitor's 8 metrics at 1057 regions and their 4 evaluators
(mission, soc, change, trend) under the packaged standards, written through
`Database` as the platform writes them, with its delivery (a CRDS context).
Values are drawn around the seed's Table 1 (mean dark rate 0.005 DN/s).

Timed, median of ``--repeat`` runs:

* the query: `rdmt_dagster.history.metric_history` of ``dark_current_mean``
  for one detector (the target: <= 0.5 s), a new connection each time;
  the same at super-pixel scale (every region), and for every detector;
* the command: ``rdmt history dark_current_mean --detector WFI07`` (table
  and ``--json``), a new process each time (start-up and imports included);
* ``rdmt failures --delivery`` of the last delivery.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "_data"
BIN = Path(sys.executable).parent
FIRST = datetime(2027, 1, 4)

#: base value of each dark metric (seed Table 1), and its relative scatter between files
DARK_METRICS = {
    "dark_current_mean": ("DN / s", 0.005, 0.01),
    "dark_current_percentile_50": ("DN / s", 0.005, 0.01),
    "dark_current_percentile_90": ("DN / s", 0.0062, 0.01),
    "dark_current_percentile_95": ("DN / s", 0.00665, 0.01),
    "dark_current_percentile_99": ("DN / s", 0.00733, 0.01),
    "num_dead_pix": ("pix", 16891.0, 0.005),
    "num_hot_pix": ("pix", 33636.0, 0.005),
    "num_warm_pix": ("pix", 50393.0, 0.005),
}
AREA = {"detector": 1.0, "amp": 1 / 32, "superpixel": 1 / 1024}  # counts scale with the region's share


def database_path(weeks: int, detectors: int) -> Path:
    return DATA / f"history_{weeks}w_{detectors}d.db"


def _metric_set(rng, name: str, detector: str, useafter: datetime):
    from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
    from rdmt_dagster.science.scales import ScaleValues

    metrics = []
    for metric, (unit, base, scatter) in DARK_METRICS.items():
        level = base * (1 + scatter * rng.standard_normal())
        counts = unit == "pix"
        arrays = {}
        for scale, n in (("detector", 1), ("amp", 32), ("superpixel", 1024)):
            share = AREA[scale] if counts else 1.0
            values = level * share * (1 + 0.02 * rng.standard_normal(n))
            arrays[scale] = np.round(values) if counts else values
        metrics.append(Metric(metric, unit, ScaleValues(**arrays)))
    info = ReferenceFileInfo(name, f"/crds/{name}", "dark", detector, useafter, "DARK")
    return MetricSet(info, "1.0.0", metrics)


def build(path: Path, weeks: int, detectors: int) -> float:
    """Write the database at ``path`` (unless it is there); the seconds it took."""
    from rdmt_dagster.science.history import MemoryHistory
    from rdmt_dagster.science.monitor import evaluate
    from rdmt_dagster.science.standards import Standards
    from rdmt_dagster.storage.database import CRDS, Database, sqlite_url

    if path.exists():
        return 0.0
    DATA.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.db")
    partial.unlink(missing_ok=True)
    start = time.perf_counter()
    database = Database(sqlite_url(partial))
    database.upgrade()
    standards = Standards().for_monitor("dark")
    database.write_standards(standards)
    rng = np.random.default_rng(2027)
    recent = {f"WFI{d:02d}": [] for d in range(1, detectors + 1)}  # the last 10 files: what the trend reads
    for week in range(weeks):
        delivery = f"roman_{week + 1:04d}.pmap"
        for detector, earlier in recent.items():
            name = f"roman_wfi_dark_{week * detectors + int(detector[3:]):05d}.asdf"
            ms = _metric_set(rng, name, detector, FIRST + timedelta(weeks=week))
            database.register(name, ms.info.path, None, delivery=delivery, trigger=CRDS)
            database.write_metrics(ms)
            database.write_evaluations(evaluate(ms, standards, MemoryHistory(earlier)), ms.monitor_version)
            earlier[:] = [*earlier[-9:], ms]
        print(f"  week {week + 1}/{weeks} written ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    database.dispose()
    partial.rename(path)
    return time.perf_counter() - start


def _median(func, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), result


def _query(url: str, **kwargs):
    import sqlalchemy as sa

    from rdmt_dagster.history import metric_history

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return metric_history(conn, "dark_current_mean", **kwargs)
    finally:
        engine.dispose()


def _command(url: str, *args, timeout: float = 300) -> str:
    """``rdmt *args`` in a new process on the database at ``url``: its output (an error: the end of stderr)."""
    env = {**os.environ, "RDMT_DATABASE_URL": url}
    proc = subprocess.run([str(BIN / "rdmt"), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return proc.stdout


def bench_history(repeat: int = 7, weeks: int = 52, detectors: int = 18) -> list[str]:
    """Markdown lines: the history query and command on a year of weekly dark deliveries."""
    from rdmt_dagster.storage.database import sqlite_url

    path = database_path(weeks, detectors)
    built = build(path, weeks, detectors)
    url = sqlite_url(path)
    _query(url, detector="WFI07")  # the first read of the file pages, outside the timing
    load = os.getloadavg()[0]
    lines = [f"SQLite database of {weeks} weekly deliveries x {detectors} darks ({weeks * detectors} files, "
             f"{path.stat().st_size / 2**30:.1f} GiB; 8 metrics x 1057 values and 4 evaluators each"
             + (f"; built in {built:.0f} s" if built else "") + ").", "",
             "| what | rows | median (s) | min (s) | runs |", "|---|---|---|---|---|"]
    cases = [
        ("`metric_history` dark_current_mean, WFI07 (the target: <= 0.5 s)", dict(detector="WFI07")),
        ("`metric_history` dark_current_mean, WFI07, every super-pixel", dict(detector="WFI07", scale="superpixel")),
        ("`metric_history` dark_current_mean, every detector", dict()),
    ]
    for label, kwargs in cases:
        med, low, points = _median(lambda: _query(url, **kwargs), repeat)
        lines.append(f"| {label} | {len(points)} | {med:.3f} | {low:.3f} | {repeat} |")
    commands = [
        ("`rdmt history dark_current_mean --detector WFI07` (new process)", ("history", "dark_current_mean",
                                                                            "--detector", "WFI07")),
        ("`rdmt history dark_current_mean --detector WFI07 --json` (new process)",
         ("history", "dark_current_mean", "--detector", "WFI07", "--json")),
        (f"`rdmt failures --delivery roman_{weeks:04d}.pmap --json` (new process)",
         ("failures", "--delivery", f"roman_{weeks:04d}.pmap", "--json")),
    ]
    for label, args in commands:
        med, low, out = _median(lambda: _command(url, *args), repeat)
        lines.append(f"| {label} | {len(out.splitlines())} lines | {med:.3f} | {low:.3f} | {repeat} |")
    # What any such command costs before it reads anything: Python and SQLAlchemy starting.
    floor = [str(sys.executable), "-c", "import sqlalchemy"]
    med, low, _ = _median(lambda: subprocess.run(floor, check=True), repeat)
    lines.append(f"| `python -c 'import sqlalchemy'` (the floor of the commands) | | {med:.3f} | {low:.3f} | {repeat} |")
    lines += ["", f"Load average when the timing started: {load:.1f} (on {os.cpu_count()} cores)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--detectors", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print("\n".join(bench_history(args.repeat, args.weeks, args.detectors)))


if __name__ == "__main__":
    main()
