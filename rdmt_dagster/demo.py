"""``rdmt demo``: both arms of RDMT monitored with no one watching.

Reference files: delivery 1 is an 18-detector dark delivery, delivery 2 a
re-delivery of two darks, one of them (``WFI07``) with a dark-current excess;
with ``--full``, every monitored type, 18 detectors each, then the 18 darks
again and two detectors of every other type, one normal and one with that
type's injected anomaly (``ANOMALOUS_DETECTORS``; about 25 GB). The darks
arrive as new default contexts of a CRDS stand-in server on loopback, picked
up by the CRDS sensor (which downloads them into the CRDS cache with the real
client); the other types are handed over with ``rdmt submit``, as the RFP
does after CRDS accepts a delivery, and found by the registered-files sensor.

L2 images (`rdmt_dagster.demo_l2`): a moto server on loopback plays the
archive (S3, SNS, SQS); synthetic images of the 18 detectors over three
exposures are uploaded and announced, one detector with injected 1/f noise,
one image with its WCS off by 0.3 arcsec.

A Dagster daemon started for the demo evaluates the sensors and launches the
runs; the demo waits until every file is measured, evaluated, reported and
notified. Everything is written under the work directory, including the
Dagster instance and a ``workspace.yaml`` naming the code location ``rdmt``
as the repository's does, so that ``dagster dev`` shows the same runs and
sensor ticks afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .synthetic import DETECTORS, reference_filename

DELIVERIES = {1: "2027-01-01T00:00:00", 2: "2027-02-01T00:00:00"}
ANOMALOUS_DETECTORS = {
    "dark": "WFI07", "flat": "WFI02", "gain": "WFI12", "linearity": "WFI15", "mask": "WFI04",
    "readnoise": "WFI09", "refpix": "WFI17", "saturation": "WFI05", "superbias": "WFI13",
}
SENSOR_INTERVAL = "3"
TIMEOUT_PER_DELIVERY = 1800
VIA_CRDS = {"dark"}
# Approximate size of one synthetic file (MB), to check the disk before starting.
FILE_MB = {"dark": 130, "linearity": 260, "refpix": 150, "mask": 1}
DEFAULT_FILE_MB = 66

DAGSTER_YAML = """\
# Dagster instance of the RDMT demo (storage: SQLite files in this folder).
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  max_concurrent_runs: 1
sensors:
  use_threads: true
  num_workers: 2
"""


WORKSPACE_YAML = """\
# The demo's code location, named as in the repository's workspace.yaml, so that
# `dagster dev` from the repository root shows the demo's sensor ticks and runs.
load_from:
  - python_module:
      module_name: rdmt_dagster.definitions
      location_name: rdmt
"""


def prepare_environment(workdir: Path) -> Path:
    """Point RDMT and Dagster at ``workdir``; return DAGSTER_HOME."""
    workdir = Path(workdir).resolve()
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["RDMT_HOME"] = str(workdir)
    return dagster_home


def synthetic_types() -> list[str]:
    """Monitored types that have a synthetic generator, dark first."""
    from .science.monitor import arm_monitors

    names = []
    for name in arm_monitors("reference"):
        try:
            importlib.import_module(f"{__package__}.synthetic.{name}")
        except ImportError:
            continue
        names.append(name)
    return sorted(names, key=lambda n: (n != "dark", n))


def _write(job) -> str:
    reftype, path, detector, delivery, anomalous = job
    if not Path(path).exists():
        module = importlib.import_module(f"{__package__}.synthetic.{reftype}")
        module.write(path, detector, delivery, DELIVERIES[delivery], anomalous)
    return str(path)


def delivery_plan(delivery: int, types: list[str], full: bool = True) -> dict[str, list[str]]:
    """Detectors delivered per type: everything first; then two detectors of each type, one anomalous.

    With ``full``, the second delivery holds all 18 darks again.
    """
    if delivery == 1:
        return {t: list(DETECTORS) for t in types}
    plan = {}
    for t in types:
        bad = ANOMALOUS_DETECTORS[t]
        normal = DETECTORS[(DETECTORS.index(bad) + 9) % len(DETECTORS)]
        plan[t] = list(DETECTORS) if (t == "dark" and full) else sorted([bad, normal])
    return plan


def disk_needed_mb(types: list[str], full: bool = True, l2: bool = False) -> float:
    """Space the demo needs: every file once, the darks twice (the CRDS cache), the L2 images twice
    (here and in the archive's storage), plus outputs."""
    from .demo_l2 import EXPOSURES, IMAGE_MB

    total = 0.0
    for delivery in DELIVERIES:
        for t, detectors in delivery_plan(delivery, types, full).items():
            copies = 2 if t in VIA_CRDS else 1
            total += copies * len(detectors) * FILE_MB.get(t, DEFAULT_FILE_MB)
    if l2:
        total += 2 * IMAGE_MB * len(DETECTORS) * len(EXPOSURES)
    return total * 1.1 + 1000


def write_delivery(folder: Path, delivery: int, plan: dict[str, list[str]], anomalies: dict[str, str] | None = None,
                   workers: int = 2) -> dict[str, list[Path]]:
    """Write (or reuse) the files of one delivery: ``plan`` maps type -> detectors."""
    anomalies = anomalies or {}
    jobs = [(t, folder / t / reference_filename(t, delivery, det), det, delivery, anomalies.get(t) == det)
            for t, detectors in plan.items() for det in detectors]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        paths = [Path(p) for p in pool.map(_write, jobs)]
    out: dict[str, list[Path]] = defaultdict(list)
    for job, path in zip(jobs, paths):
        out[job[0]].append(path)
    return dict(out)


class Daemon:
    """``dagster-daemon run`` for the code location, as a child process."""

    def __init__(self, workdir: Path, env: dict):
        self.log_path = workdir / "logs" / "dagster-daemon.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.cwd = workdir
        self.proc = None

    def __enter__(self) -> "Daemon":
        executable = Path(sys.executable).parent / "dagster-daemon"
        self._log = open(self.log_path, "a")
        workspace = self.cwd / "workspace.yaml"
        workspace.write_text(WORKSPACE_YAML)
        # A session of its own, so that stopping it stops its code server and run workers too.
        self.proc = subprocess.Popen(
            [str(executable), "run", "-w", str(workspace)],
            cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        import signal

        if self.proc is not None:
            group = os.getpgid(self.proc.pid) if self.proc.poll() is None else self.proc.pid
            for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
                time.sleep(1)  # the code server leaves after the daemon
        self._log.close()


def _in_progress_runs(instance) -> int:
    import dagster as dg

    active = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]
    return len(instance.get_runs(filters=dg.RunsFilter(statuses=active)))


def wait_until_monitored(names: list[str], database, reports: Path, instance, daemon: Daemon, timeout: float) -> bool:
    """Wait until every file has a status and a report, and no run is in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not daemon.alive():
            print(f"the Dagster daemon stopped; see {daemon.log_path}")
            return False
        statuses = [database.file_status(n) for n in names]
        measured = all(s and s["status"] in ("ok", "error") for s in statuses)
        reported = all((reports / n / "report.html").exists() for n in names)
        if measured and reported and _in_progress_runs(instance) == 0:
            return True
        time.sleep(2)
    return False


def summarise_failures(rows: list[dict], database=None) -> list[str]:
    """One line per (file, metric, evaluator): where it failed, the worst value and how far off it is.

    The wording is the report's and the notification's
    (`rdmt_dagster.reports.formatting.FailureGroup.phrase`): the three quote
    the same value for the same failure. ``rows`` are
    `rdmt_dagster.storage.database.Database.failed_evaluations` rows. With
    ``database`` the failures are read as the notification reads them (the
    stored standards, a trend failure's sigma from the earlier files);
    without it the standards are the defaults whose hash the rows carry.
    """
    from .notify.message import collect_failures
    from .reports.formatting import Failure, group_failures

    files: dict[tuple[str, str], list[Failure]] = defaultdict(list)
    detectors: dict[str, str] = {}
    for r in rows:
        detectors[r["filename"]] = r["detector"]
        files[(r["filename"], r["standards_hash"])].append(Failure(
            r["metric"], r["scale"], r["region"], r["value"], r["unit"] or "", r["evaluator"], r["threshold"],
            r["lower"], r["reference"]))
    if database is not None:
        entries = [(f.filename, f.groups) for f in collect_failures(database, detectors, report_link=None)]
    else:
        entries = [(filename, group_failures(failures, _default_params(standards_hash)))
                   for (filename, standards_hash), failures in files.items()]
    lines = []
    for filename, groups in sorted(entries, key=lambda e: (detectors.get(e[0], ""), e[0])):
        for g in groups:
            lines.append(f"  {detectors.get(filename, '?')} {filename} [{g.evaluator}] {g.phrase}")
    return lines


def _default_params(standards_hash: str):
    """``params_for`` of the packaged standards block with this hash ({} for every metric when none has it)."""
    from .science.standards import Standards

    standards = Standards()
    block = {}
    for monitor in standards.monitors():
        candidate = standards.for_monitor(monitor)
        if candidate.hash == standards_hash:
            block = candidate
            break

    def params_for(base: str, scale: str, evaluator: str) -> dict:
        if not block or base not in block.metrics:
            return {}
        return block.evaluator_params(base, scale).get(evaluator, {})

    return params_for


def _reference_deliveries(workdir: Path, types: list[str], full: bool, workers: int, crds, rdmt, database,
                          reports: Path, instance, daemon) -> tuple[bool, dict[int, list[str]]]:
    """Write, deliver and wait for the reference deliveries; (all monitored, delivery -> file names)."""
    from .submission import submit

    ok, delivered = True, {}
    for delivery in DELIVERIES:
        t0 = time.perf_counter()
        print(f"reference delivery {delivery}: writing files ...", flush=True)
        files = write_delivery(workdir / "deliveries" / f"delivery_{delivery}", delivery,
                               delivery_plan(delivery, types, full), ANOMALOUS_DETECTORS if delivery > 1 else None,
                               workers)
        t1 = time.perf_counter()
        for reftype, paths in files.items():
            if reftype in VIA_CRDS:
                crds.deliver(paths)
            else:
                submit(paths, rdmt)
        names = [p.name for paths in files.values() for p in paths]
        done = wait_until_monitored(names, database, reports, instance, daemon, TIMEOUT_PER_DELIVERY)
        t2 = time.perf_counter()
        ok &= done
        delivered[delivery] = names
        crds_types = [t for t in files if t in VIA_CRDS]
        other = [t for t in files if t not in VIA_CRDS]
        print(f"reference delivery {delivery}: {len(names)} files ({', '.join(files)}) written in {t1 - t0:.0f} s; "
              + (f"delivered through CRDS ({', '.join(crds_types)})" if crds_types else "")
              + (" and " if crds_types and other else "")
              + (f"handed over with rdmt submit ({', '.join(other)})" if other else "")
              + (f"; monitored, reported and notified {t2 - t1:.0f} s after arrival" if done
                 else "; NOT all monitored in time"), flush=True)
    return ok, delivered


def _l2_images(workdir: Path, archive, darks: dict[int, list[str]], workers: int, database, reports: Path,
               instance, daemon) -> tuple[bool, list[str]]:
    """Write, upload and announce the L2 images and wait for them; (all monitored, file names)."""
    from . import demo_l2
    from .synthetic.l2 import merge_catalogs

    scene_list = demo_l2.scenes(darks)
    print(f"L2 images: writing {len(scene_list)} synthetic full-size images ...", flush=True)
    t0 = time.perf_counter()
    paths = demo_l2.write_images(workdir / "l2_images", scene_list, workers)
    merge_catalogs(paths, workdir / "l2_images" / "catalog.parquet")
    t1 = time.perf_counter()
    for path, scene in zip(paths, scene_list):
        archive.publish(path, scene.start_time[:10])
    t2 = time.perf_counter()
    names = [p.name for p in paths]
    done = demo_l2.wait_until_measured(database, names, reports, instance, daemon, TIMEOUT_PER_DELIVERY)
    t3 = time.perf_counter()
    print(f"L2 images: {len(names)} written in {t1 - t0:.0f} s, uploaded and announced through SNS -> SQS in "
          f"{t2 - t1:.0f} s; " + (f"measured, evaluated, reported and notified {t3 - t2:.0f} s after the "
                                  "first notice" if done else "NOT all monitored in time"), flush=True)
    return done, names


def run_demo(workdir: str | Path = "rdmt-demo", workers: int = 2, types: list[str] | None = None,
             full: bool = False, arms: tuple[str, ...] = ("reference", "l2")) -> int:
    """Run the demo; returns the process exit code (0 when every file was monitored).

    Parameters
    ----------
    workdir : path
        Where everything is written.
    types : list of str, optional
        Reference types (default: the dark; with ``full``, every monitored type).
    full : bool
        The full reference deliveries (every type, all 18 darks twice: about 25 GB).
    arms : tuple of str
        ``"reference"`` and/or ``"l2"``.
    """
    workdir = Path(workdir).resolve()
    dagster_home = prepare_environment(workdir)

    import dagster as dg

    from .crds_standin import CRDSStandIn
    from .demo_l2 import Archive
    from .resources import RDMTConfig

    types = types or (synthetic_types() if full else ["dark"])
    with_reference, with_l2 = "reference" in arms, "l2" in arms
    needed = disk_needed_mb(types if with_reference else [], full, with_l2)
    free = shutil.disk_usage(workdir).free / 2**20
    if free < needed:
        print(f"rdmt demo: {workdir} has {free / 1024:.1f} GB free; the demo needs about {needed / 1024:.0f} GB "
              f"(or choose fewer types with --types)", file=sys.stderr)
        return 2
    print(f"rdmt demo: {', '.join(arms)} arm(s) in {workdir} (about {needed / 1024:.1f} GB of disk)", flush=True)
    rdmt = RDMTConfig(home=str(workdir))
    database = rdmt.database()
    reports = workdir / "reports"
    ok = True
    delivered: dict[int, list[str]] = {}
    l2_names: list[str] = []
    with CRDSStandIn(workdir / "crds_server") as crds, Archive() as archive:
        env = {
            **os.environ,
            **archive.env,
            "CRDS_SERVER_URL": crds.url,
            "CRDS_PATH": str(workdir / "crds_cache"),
            "RDMT_CRDS_START_CONTEXT": crds.default_context,
            "RDMT_CRDS_MAX_FILES_PER_TICK": "200",
            "RDMT_SENSOR_INTERVAL": SENSOR_INTERVAL,
            "RDMT_HANDOFF_GRACE_SECONDS": "1",
            "RDMT_L2_QUEUE_URL": archive.queue_url,
            "RDMT_L2_CATALOG": str(workdir / "l2_images" / "catalog.parquet"),
            "RDMT_L2_BATCH_SIZE": "18",
            "RDMT_L2_MAX_WAIT": "20",
        }
        instance = dg.DagsterInstance.get()
        with Daemon(workdir, env) as daemon:
            if with_reference:
                done, delivered = _reference_deliveries(workdir, types, full, workers, crds, rdmt, database, reports,
                                                        instance, daemon)
                ok &= done
            if with_l2:
                darks = {d: [n for n in names if n.startswith("roman_wfi_dark_")] for d, names in delivered.items()}
                done, l2_names = _l2_images(workdir, archive, darks, workers, database, reports, instance, daemon)
                ok &= done
        instance.dispose()
    code = _summary(workdir, dagster_home, database, reports, delivered, l2_names)
    return code if ok else 1


def _summary(workdir: Path, dagster_home: Path, database, reports: Path, delivered: dict[int, list[str]],
             l2_names: list[str]) -> int:
    """Print where everything went and every failure; the exit code."""
    from .demo_l2 import failure_lines
    from .status import status_document

    print()
    print(f"Database (SQLite):   {database.engine.url.render_as_string(hide_password=True)}")
    print(f"Parquet dataset:     {workdir / 'parquet'}")
    print(f"ECSV files:          {workdir / 'ecsv'}")
    print(f"Reports (static):    {reports / 'index.html'}")
    print(f"Notifications:       {workdir / 'notifications.log'}")
    print(f"Dagster instance:    {dagster_home}")
    print(f"Status of each file: RDMT_HOME={workdir} .venv/bin/rdmt status")
    print(f"Browse the runs:     DAGSTER_HOME={dagster_home} RDMT_HOME={workdir} .venv/bin/dagster dev")
    print()
    for delivery, names in delivered.items():
        rows = database.failed_evaluations(names)
        print(f"Failed evaluations in reference delivery {delivery}: {len(rows)}")
        for line in summarise_failures(rows):
            print(line)
    if l2_names:
        lines = failure_lines(database, l2_names)
        print(f"Failed evaluations of the {len(l2_names)} L2 images: {len(lines)} (metric, evaluator) pairs")
        for line in lines:
            print(line)
    errors = [f for f in status_document(database)["files"] if f["status"] not in ("ok",)]
    for f in errors:
        print(f"  ERROR {f['file']} ({f['arm']}): {f['error']}")
    return 0 if not errors else 1
