"""Replay of the survey peak through the L2 arm's whole production path, with optional fault injection.

    .venv/bin/python benchmarks/l2_replay.py [--minutes 30] [--compression 1] [--rate 1]
        [--database sqlite|postgresql] [--faults] [--run-monitoring SECONDS] [--daemon-env NAME=VALUE]
        [--write] [--json PATH]
    .venv/bin/python benchmarks/l2_replay.py --from-json PATH [--write]     # the section of an earlier replay

What is replayed
----------------
At the survey peak the WFI reads out its 18 detectors every 120 s: one
full-size Level-2 image per detector (WFI01..WFI18), a *cadence group*. The
replay publishes ``--rate`` groups per 120 simulated seconds (``--rate 4``:
72 images, four groups of 18 evenly spaced) for ``--minutes`` simulated
minutes. Each image is uploaded to S3 (``wfi/<UTC date>/<name>``, in key
order, while the group before it is published) before its archive notice is
published to an SNS topic whose SQS subscription is the queue the arm
reads; the publication of the notice is the image's arrival.

Time compression
----------------
``--compression C`` divides every simulated interval by ``C`` in wall time:
with ``C = 2`` a group of 18 arrives every 60 wall seconds and 30 simulated
minutes take 15 wall minutes. Nothing inside the pipeline is compressed: the
sensor interval, the batch wait, Dagster's run launch and the monitors run
at their real speed, so a compressed replay is a harder load than the
uncompressed one (``C x rate`` times the peak, per wall second). The exposure
starts written into the images are simulated times (``--epoch`` + the
group's simulated offset), so the images land on their observation day and
form their batches as at the telescope.

The production path
-------------------
A moto server in a process of its own on loopback plays the archive (S3,
SNS, SQS; real boto3 over HTTP). ``dagster-daemon run`` runs the code
location with the repository's ``dagster.yaml`` (queued runs, at most two at
a time, run retries) in a temporary ``DAGSTER_HOME``: the SQS sensor records
the notices, the batch sensor reads the headers and claims batches of 18
(``RDMT_L2_BATCH_SIZE``) or what waited ``RDMT_L2_MAX_WAIT``, and each
batch is one run of ``monitor_l2_images`` (every L2 monitor in two worker
processes, evaluations, the RDMT database, Parquet, day pages,
notifications to the log). The RDMT database is SQLite in the work folder,
or (``--database postgresql``) a fresh database on the PostgreSQL server at
127.0.0.1:5432, dropped afterwards.

Images
------
Eighteen full-size synthetic images (`rdmt_dagster.synthetic.l2`, one per
detector, exposure 1000; ~30 MB each, cached in
``benchmarks/_data/l2_replay`` with their merged catalog; writing them is
not part of any timing) are the pool. Every published image is a distinct
file: its pool image with the ASDF tree's ``meta.filename``,
``meta.observation.exposure`` (1001, 1002, ...) and
``meta.exposure.start_time`` / ``end_time`` rewritten in place (same byte
lengths, so the binary blocks and their index do not move), uploaded from
memory under its own key and archive file name. The header read and the
monitors therefore see a distinct exposure with its own start; the pixels
of one detector are the same in every exposure. An object is deleted from
S3 once its file's results are in the database, so the disk holds the pool
and the backlog only (``--max-s3-gb`` stops a replay whose backlog outgrows
it); the objects of images whose notice is published twice stay to the end.

What is measured
----------------
* per image, arrival (the notice's publication, wall clock) to its results
  in the RDMT database (``l2_file`` status ok/error with ``measured_at``):
  median, 95th percentile, maximum; and where the time goes, from the
  database's timestamps and the Dagster instance's run statistics: SQS
  sensor recording (``received_at``), header read and batch claim
  (``claimed_at``), run request to enqueued, queue wait (enqueued to
  launched: a free run slot and the coordinator's dequeue loop), run launch
  (launched to started: a new run worker process loading the code
  location), and the run until the image's results are stored;
* throughput against the offered load;
* CPU (user + sys) of the daemon's process tree (daemon, code server, run
  workers, their measurement pools), sampled every second from ``/proc``
  with the CPU of exited processes taken from their parent's ``cutime``;
  by role, so that the measurement pools' CPU per image is the monitors'
  CPU per image; peak and mean summed RSS;
* every few seconds, the queue (``ApproximateNumberOfMessages`` and
  ``...NotVisible``), the ``l2_file`` rows pending and claimed, and the
  outstanding images (published, results not yet stored); the backlog left
  before each group's publication decides whether the load is sustained:
  *bounded* when the last one is at most two cadence steps of images
  (``2 x 18 x rate``, or what arrives in 240 wall seconds when that is more)
  and a least-squares line through the second half rises by less than one
  cadence step (``18 x rate`` images).

Faults (``--faults``)
---------------------
The replay runs on PostgreSQL through a TCP proxy on loopback that this
script controls (``RDMT_DATABASE_URL`` names the proxy's port), with the S3
catch-up sensor started (``RDMT_L2_BUCKET_PREFIXES=<bucket>/wfi/%Y/%m/%d/``),
and:

a. at a third of the publication period the daemon's whole process tree is
   killed (SIGKILL) and ``--restart-after`` seconds later started again;
b. at ``--outage-at`` (60 %) of it, and at least 45 s after the restart, the
   database becomes unreachable for ``--outage`` seconds: the proxy drops its
   connections and refuses new ones;
c. some notices are published twice (right after the first, and two groups
   later, usually once the file is measured) and some malformed bodies are
   published (not JSON, not an object, a bad bucket, an unknown file type, a
   name that does not end the key, a notice of a missing object);
d. some images are uploaded without a notice: the catch-up sensor must find
   them. As the images of a group are in S3 before their notices, the
   catch-up sensor also meets files whose notice is on its way.

``--run-monitoring SECONDS`` adds Dagster run monitoring (start timeout and
maximum run time) to the instance, and ``--daemon-env`` sets variables of
the daemon, e.g. to try a change of configuration.

After publishing, the replay waits (bounded) for the backlog to drain, then
checks that every uploaded image has exactly one ``l2_file`` row, at
reprocess number 0 with status ok; every malformed message exactly one
``rejected_message`` row; and an empty queue. For each fault it reports its
time and the recovery: from the fault's end until files complete again, and
until the outstanding images are back to their level before the fault.
Unmeasured files are listed with their claim and the state of their runs.

Output
------
A markdown section (printed; ``--write`` prepends it to BENCHMARKS.md under
a ``## <UTC date time>`` heading with the machine line, as
``benchmarks/run.py`` does) and, with ``--json PATH``, every raw number:
per image, per run, the samples, the faults and the checks.

Notes
-----
The moto server's, the proxy's and this script's CPU are reported apart
from the daemon tree's. The machine may be shared: the load average at the
start is printed with the results. The daemon, its code server, run
workers, measurement pools and moto are always stopped (processes of this
``DAGSTER_HOME`` still running after the daemon stopped are killed by PID)
and the work folder is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
POOL = ROOT / "benchmarks" / "_data" / "l2_replay"
CADENCE = 120.0  # simulated seconds between two readouts of the 18 detectors at the peak
GROUP = 18
POOL_EXPOSURE = 1000  # four digits: a published exposure number (1001..9999) has the same length
PG_BASE = "postgresql+psycopg2://postgres@127.0.0.1"
PG_PORT = 5432
SENSORS = ("l2_sqs_sensor", "l2_batch_sensor", "l2_s3_catchup_sensor")
ACTIVE_RUN = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def _log(text: str) -> None:
    print(f"l2_replay: {text}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    """The ``q`` percentile (linear interpolation, as numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return {"n": len(values), "median": _pct(values, 50), "p95": _pct(values, 95),
            "max": max(values) if values else float("nan"),
            "mean": statistics.fmean(values) if values else float("nan")}


# -- images -------------------------------------------------------------------------------
def pool_images(workers: int = 2) -> tuple[list[Path], Path, float]:
    """The 18 pool images (exposure 1000, one per detector) and their merged catalog; seconds spent writing."""
    from l2_arm import detector_images

    return detector_images(POOL, POOL_EXPOSURE, workers,
                           announce=lambda n: _log(f"writing {n} pool image(s) into {POOL} (once)"))


_TIME = rb"!time/time-[0-9.]+ (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\r?\n"
_FIELDS = {
    # field -> (pattern of the enclosing block of meta, pattern whose group 1 is the value rewritten in place)
    "start": (rb"\n    exposure:\r?\n(?:      .*\n)+", rb"\n      start_time: " + _TIME),
    "end": (rb"\n    exposure:\r?\n(?:      .*\n)+", rb"\n      end_time: " + _TIME),
    "filename": (None, rb"\n    filename: (r\d{19}_\d{5}_\d{4}_WFI\d\d_cal\.asdf)\r?\n"),
    "exposure": (rb"\n    observation: \{[^}]*\}", rb"[{ ]exposure: (\d{4})[,}]"),
}


class Template:
    """A pool image in memory, and where its tree holds the fields each published copy rewrites."""

    def __init__(self, path: Path, exposure_time: float):
        from rdmt_dagster.l2.header import tree_end

        self.path = path
        self.data = path.read_bytes()
        self.exposure_time = exposure_time
        end = tree_end(self.data[:1 << 20], complete=False)
        if end is None:
            raise RuntimeError(f"{path.name}: no ASDF tree end in its first MiB")
        tree = self.data[:end]
        self.spans = {}
        for name, (block, pattern) in _FIELDS.items():
            offset, text = 0, tree
            if block is not None:
                blocks = list(re.finditer(block, tree))
                if len(blocks) != 1:
                    raise RuntimeError(f"{path.name}: {len(blocks)} blocks of meta field {name} in the ASDF tree")
                offset, text = blocks[0].start(), blocks[0].group()
            found = list(re.finditer(pattern, text))
            if len(found) != 1:
                raise RuntimeError(f"{path.name}: {len(found)} matches of meta field {name} in the ASDF tree")
            lo, hi = found[0].span(1)
            self.spans[name] = (offset + lo, offset + hi)

    def image(self, filename: str, exposure: int, start: datetime) -> bytes:
        """The bytes of a copy that is ``filename``, exposure ``exposure``, starting at ``start`` (UTC)."""
        values = {
            "filename": filename,
            "exposure": f"{exposure:04d}",
            "start": start.isoformat(timespec="milliseconds"),
            "end": (start + timedelta(seconds=self.exposure_time)).isoformat(timespec="milliseconds"),
        }
        out = bytearray(self.data)
        for name, text in values.items():
            lo, hi = self.spans[name]
            raw = text.encode()
            if len(raw) != hi - lo:
                raise ValueError(f"{name} {text!r} does not have the length of the pool image's value")
            out[lo:hi] = raw
        return bytes(out)


def check_template(template: Template, workdir: Path) -> None:
    """One rewritten copy, read back by the header reader and by roman_datamodels: the rewrite is a valid file."""
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.l2.header import header_from_bytes

    start = datetime(2027, 4, 5, 3, 4, 5, 678000)
    name = template.path.name.replace(f"_{POOL_EXPOSURE:04d}_", "_9876_")
    data = template.image(name, 9876, start)
    header = header_from_bytes(data[:1 << 20], name)
    if (header.exposure_start, header.exposure) != (start, "9876"):
        raise RuntimeError(f"rewritten header reads {header}")
    path = workdir / name
    path.write_bytes(data)
    try:
        with rdm.open(path) as model:
            if model.meta.filename != name or model.meta.observation.exposure != 9876 \
                    or abs(model.meta.exposure.start_time.to_datetime() - start).total_seconds() > 1e-3:
                raise RuntimeError(f"the rewritten copy opens as {model.meta.filename} "
                                   f"{model.meta.exposure.start_time}")
    finally:
        path.unlink()


# -- the schedule ---------------------------------------------------------------------------
@dataclass
class Image:
    """One published (or, for a lost notice, only uploaded) image."""

    name: str
    key: str
    detector: str
    group: int
    exposure: int
    start: str
    lost: bool = False
    size: int = 0
    checksum: str = ""
    uploaded: float | None = None   # wall clock, upload finished
    published: float | None = None  # wall clock, its notice published (uploaded, for a lost notice)


@dataclass
class Group:
    """One cadence group: 18 images, one per detector, published together."""

    index: int
    at: float                 # wall seconds after the replay's start
    images: list[Image]
    duplicates_now: list[Image] = field(default_factory=list)
    duplicates_late: list[Image] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


def make_plan(args, day_prefix: str) -> list[Group]:
    """The groups of the replay, with the images whose notice is lost, repeated or malformed chosen evenly."""
    from rdmt_dagster.synthetic import DETECTORS

    n_groups = max(1, int(round(args.minutes * 60.0 / CADENCE * args.rate)))
    if n_groups > 9999 - POOL_EXPOSURE:
        raise SystemExit(f"{n_groups} groups: more exposure numbers than the pool's four digits hold")
    spacing = CADENCE / args.rate  # simulated seconds between groups
    epoch = datetime.fromisoformat(args.epoch)
    groups = []
    for g in range(n_groups):
        exposure = POOL_EXPOSURE + 1 + g
        start = epoch + timedelta(seconds=g * spacing)
        images = []
        for det in DETECTORS:
            name = f"r0000101001001001001_01101_{exposure:04d}_{det}_cal.asdf"
            images.append(Image(name, f"{day_prefix}{name}", det, g, exposure,
                                start.isoformat(timespec="milliseconds")))
        groups.append(Group(g, g * spacing / args.compression, images))
    rng = random.Random(args.seed)

    def spread(n: int, first: int = 1) -> list[int]:
        usable = max(1, n_groups - first)
        return [first + (k * usable) // max(1, n) for k in range(n)]

    for k, g in enumerate(spread(args.lost)):
        image = groups[min(g, n_groups - 1)].images[(5 + 7 * k) % GROUP]
        image.lost = True
    for k, g in enumerate(spread(args.duplicates)):
        group = groups[min(g, n_groups - 1)]
        image = rng.choice([i for i in group.images if not i.lost])
        if k % 2 == 0:
            group.duplicates_now.append(image)
        else:
            groups[min(group.index + 2, n_groups - 1)].duplicates_late.append(image)
    for k, g in enumerate(spread(args.malformed)):
        groups[min(g, n_groups - 1)].malformed.append(malformed_body(k, day_prefix))
    return groups


def malformed_body(k: int, day_prefix: str) -> str:
    """A distinct message body that announces nothing monitorable (kind ``k`` of six, cycling)."""
    from l2_arm import BUCKET

    name = f"r0000101001001001001_01101_{9000 + k:04d}_WFI01_cal.asdf"
    notice = {"archiveBucket": BUCKET, "archiveObjectKey": f"{day_prefix}{name}", "filename": name,
              "fileType": "science_wfi_level_2", "fileCreationTimestamp": "2027-03-20T01:00:00.000000Z",
              "reprocessingState": "none", "checksum": f"bad{k}", "fileSize": 1}
    kind = k % 6
    if kind == 0:
        return f"this is not a notice ({k})"
    if kind == 1:
        return json.dumps(["a list", k])
    if kind == 2:
        return json.dumps({**notice, "archiveBucket": f"Not_A_Bucket_{k}"})
    if kind == 3:
        return json.dumps({**notice, "fileType": f"science_wfi_level_{k + 9}"})
    if kind == 4:
        return json.dumps({**notice, "filename": f"r0000101001001001001_01101_{9000 + k:04d}_WFI02_cal.asdf"})
    return json.dumps(notice)  # a notice of an object that is not in the bucket


# -- the daemon's process tree ----------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int):
    """(ppid, own CPU s, reaped children's CPU s, RSS bytes, start tick) of a process; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17, starttime 22, rss 24
    return (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK,
            int(fields[21]) * _PAGE, int(fields[19]))


def _children(pid: int) -> list[int]:
    from run import TreeMemory

    return TreeMemory._children(pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


ROLES = ("daemon", "code server", "run worker", "measurement pool", "other")


class TreeSampler:
    """CPU and resident memory of the daemon's process tree, sampled every ``interval`` seconds.

    CPU is counted by increments: each process's own user + sys since the
    last sample, and the growth of its ``cutime + cstime`` beyond what its
    exited children had shown when last seen (their last second, and
    processes too short-lived to be seen). A process whose parent is no
    longer in the tree when it exits (an orphan, the killed daemon) loses
    at most its last interval. Roles: ``daemon``, ``code server``
    (``dagster api grpc``), ``run worker`` (the code server's spawned run
    processes), ``measurement pool`` (a run's forkserver and its workers, or
    the ``subprocess`` runner's monitor processes: download, read and
    monitors), ``other``.
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.root: int | None = None
        self.known: dict[tuple[int, int], dict] = {}  # (pid, start tick) -> last sample
        self.cpu = {role: 0.0 for role in ROLES}
        self.samples: list[dict] = []  # t, cpu (cumulative), rss
        self.seen: set[int] = set()
        self.extra: dict[str, int] = {}  # label -> pid sampled apart (moto, proxy)
        self.extra_cpu: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sampling = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def attach(self, pid: int) -> None:
        """Follow the tree of a (re)started daemon."""
        with self._lock:
            self.root = pid

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _role(self, pid: int, parent_role: str | None) -> str:
        if pid == self.root:
            return "daemon"
        cmd = _cmdline(pid)
        if "forkserver" in cmd or "rdmt_dagster.pipes.monitor" in cmd or parent_role == "measurement pool":
            return "measurement pool"
        if " api grpc" in cmd:
            return "code server"
        if parent_role == "code server" and "spawn_main" in cmd:
            return "run worker"
        if parent_role == "run worker" and "resource_tracker" not in cmd:
            return "run worker"
        return "other"

    def sample(self) -> None:
        with self._sampling:
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            root = self.root
        live: dict[tuple[int, int], dict] = {}
        todo = [(root, None)] if root is not None else []
        while todo:
            pid, parent_role = todo.pop()
            stat = _stat(pid)
            if stat is None:
                continue
            ppid, own, reaped, rss, started = stat
            key = (pid, started)
            old = self.known.get(key)
            role = old["role"] if old else self._role(pid, parent_role)
            live[key] = {"pid": pid, "ppid": ppid, "own": own, "reaped": reaped, "rss": rss, "role": role}
            self.seen.add(pid)
            todo += [(child, role) for child in _children(pid)]
        gone = [(k, v) for k, v in self.known.items() if k not in live]
        live_pids = {v["pid"]: k for k, v in live.items()}
        exited_by_parent: dict[tuple[int, int], list[dict]] = {}
        for _, old in gone:
            parent = live_pids.get(old["ppid"])
            if parent is not None:
                exited_by_parent.setdefault(parent, []).append(old)
        for key, now in live.items():
            old = self.known.get(key)
            self.cpu[now["role"]] += now["own"] - (old["own"] if old else 0.0)
            growth = now["reaped"] - (old["reaped"] if old else 0.0)
            exited = exited_by_parent.get(key, [])
            shown = sum(e["own"] + e["reaped"] for e in exited)
            tail = max(0.0, growth - shown)
            # The exited children's last interval goes to their role; unseen children to the parent's.
            role = exited[0]["role"] if exited else now["role"]
            self.cpu[role] += tail
        for label, pid in self.extra.items():
            stat = _stat(pid)
            if stat is not None:
                self.extra_cpu[label] = stat[1] + stat[2]
        self.known = live
        self.samples.append({"t": time.time(), "cpu": sum(self.cpu.values()),
                             "rss": sum(v["rss"] for v in live.values()), "processes": len(live)})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a sampler must not end the replay
                _log(f"process sampler: {type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)


def kill_tree(root: int) -> list[int]:
    """SIGKILL a process and all its descendants (children first seen, then killed top-down)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += _children(pid)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


# -- the database proxy ---------------------------------------------------------------------------
def proxy_main(listen: int, target: int) -> None:
    """A TCP proxy 127.0.0.1:listen -> 127.0.0.1:target, controlled by lines on stdin.

    ``down``: drop every connection (RST) and stop listening, so that new
    connections are refused; ``up``: listen again. Each command is answered
    by a line ``ok <command>`` on stdout once done.
    """
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        pairs: set = set()
        state = {"server": None}

        async def pipe(reader, writer):
            try:
                while True:
                    data = await reader.read(1 << 16)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
            except OSError:
                client_writer.transport.abort()
                return
            pair = (client_writer, server_writer)
            pairs.add(pair)
            try:
                await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
            finally:
                pairs.discard(pair)

        async def up():
            if state["server"] is None:
                state["server"] = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)

        async def down():
            server, state["server"] = state["server"], None
            if server is not None:
                server.close()
            for pair in list(pairs):
                for writer in pair:
                    writer.transport.abort()

        await up()
        print("ok ready", flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "stop":
                break
            await {"up": up, "down": down}[line]()
            print(f"ok {line}", flush=True)
        await down()

    asyncio.run(main())


class Proxy:
    """`proxy_main` in a process of its own (the daemon's database traffic does not pass through this one)."""

    def __init__(self, target: int):
        from l2_arm import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "--proxy", str(self.port), str(target)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._expect("ready")

    def _expect(self, word: str) -> None:
        line = self.proc.stdout.readline().strip()
        if line != f"ok {word}":
            raise RuntimeError(f"database proxy: expected 'ok {word}', got {line!r}")

    def command(self, word: str) -> None:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        self._expect(word)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def postgres_database():
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432 (its name), dropped afterwards."""
    import sqlalchemy as sa

    name = f"rdmt_replay_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{PG_BASE}:{PG_PORT}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the replay -----------------------------------------------------------------------------------
def instance_yaml(run_monitoring: float | None) -> str:
    """The repository's dagster.yaml, with a run-monitoring block when asked for."""
    text = (ROOT / "dagster.yaml").read_text()
    if run_monitoring:
        seconds = int(run_monitoring)
        text += (f"run_monitoring:\n  enabled: true\n  start_timeout_seconds: {seconds}\n"
                 f"  max_runtime_seconds: {seconds}\n  poll_interval_seconds: 10\n")
    return text


class Backlog:
    """The queue and the ``l2_file`` states every few seconds; deletes the objects of measured files."""

    def __init__(self, replay: "Replay", interval: float):
        self.replay, self.interval = replay, interval
        self.samples: list[dict] = []
        self.measured: dict[str, float] = {}  # file name -> wall clock its results were seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog-sampler", daemon=True)

    def start(self) -> "Backlog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict:
        import sqlalchemy as sa

        from rdmt_dagster.storage.l2_tables import l2_file

        r = self.replay
        queue = r.sqs.get_queue_attributes(QueueUrl=r.queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        with r.engine.connect() as conn:
            states = dict(conn.execute(sa.select(l2_file.c.status, sa.func.count()).group_by(l2_file.c.status)).all())
            done = conn.execute(sa.select(l2_file.c.filename).where(
                l2_file.c.status.in_(("ok", "error")) & l2_file.c.measured_at.is_not(None)
                & (l2_file.c.reprocess_number == 0))).scalars().all()
        now = time.time()
        for name in done:
            self.measured.setdefault(name, now)
        r.delete_objects([name for name in self.measured if name not in r.deleted])
        with r.lock:
            uploaded = sum(1 for i in r.images if i.published is not None)
            s3_bytes = r.s3_bytes
        sample = {"t": now, "visible": int(queue["ApproximateNumberOfMessages"]),
                  "in_flight": int(queue["ApproximateNumberOfMessagesNotVisible"]),
                  "pending": int(states.get("pending", 0)), "claimed": int(states.get("claimed", 0)),
                  "measured": len(self.measured), "arrived": uploaded,
                  "outstanding": uploaded - sum(1 for n in self.measured if n in r.names), "s3_bytes": s3_bytes}
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # the database is down (a fault) or moto is slow: sample again later
                self.samples.append({"t": time.time(), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            self._stop.wait(self.interval)


class Replay:
    """One replay: the archive, the daemon, the schedule, the faults, the samplers."""

    def __init__(self, args, workdir: Path, groups: list[Group], templates: dict, catalog: Path, clients: dict,
                 queue: str, topic: str, engine, daemon_env: dict):
        self.args, self.workdir, self.groups, self.templates = args, workdir, groups, templates
        self.catalog, self.clients, self.queue, self.topic, self.engine = catalog, clients, queue, topic, engine
        self.sqs, self.s3, self.sns = clients["sqs"], clients["s3"], clients["sns"]
        self.env = daemon_env
        self.images = [i for g in groups for i in g.images]
        self.names = {i.name for i in self.images}
        self.lock = threading.Lock()
        self.s3_bytes = 0
        self.s3_peak = 0
        self.deleted: set[str] = set()
        # A notice published again later must find its object, or it is rejected as a notice of a missing one.
        self.keep = {i.name for g in groups for i in g.duplicates_now + g.duplicates_late}
        self.by_name = {i.name: i for i in self.images}
        self.events: list[dict] = []
        self.before_publication: list[dict] = []
        self.republished: list[dict] = []
        self.malformed: list[str] = []
        self.t0 = 0.0
        self.publish_end = 0.0
        self.daemon = None
        self.daemons: list = []
        self.upload_error: BaseException | None = None

    # -- S3 -------------------------------------------------------------------------------------
    def upload(self, group: Group) -> None:
        """Upload a group's images in key order (one at a time: a listing never sees a later key first)."""
        from l2_arm import BUCKET

        for image in sorted(group.images, key=lambda i: i.key):
            data = self.templates[image.detector].image(image.name, image.exposure,
                                                        datetime.fromisoformat(image.start))
            image.size, image.checksum = len(data), f"{zlib.crc32(data):08x}"
            self.s3.put_object(Bucket=BUCKET, Key=image.key, Body=data)
            image.uploaded = time.time()
            with self.lock:
                self.s3_bytes += image.size
                self.s3_peak = max(self.s3_peak, self.s3_bytes)
                if image.lost:
                    image.published = image.uploaded  # the moment a notice would have been sent

    def delete_objects(self, names: list[str]) -> None:
        from l2_arm import BUCKET

        if self.args.keep_objects:
            return
        todo = [self.by_name[n] for n in names if n in self.by_name and n not in self.deleted and n not in self.keep]
        for start in range(0, len(todo), 1000):
            chunk = todo[start:start + 1000]
            self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": i.key} for i in chunk], "Quiet": True})
            with self.lock:
                for image in chunk:
                    self.deleted.add(image.name)
                    self.s3_bytes -= image.size

    # -- SNS ------------------------------------------------------------------------------------
    def notice(self, image: Image) -> str:
        from l2_arm import BUCKET

        return json.dumps({"archiveBucket": BUCKET, "archiveObjectKey": image.key, "filename": image.name,
                           "fileType": "science_wfi_level_2",
                           "fileCreationTimestamp": datetime.fromtimestamp(image.uploaded, timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                           "reprocessingState": "none", "checksum": image.checksum, "fileSize": image.size})

    def publish(self, bodies: list[str]) -> list[float]:
        """Publish message bodies to the topic, ten per call; the wall clock before each body's call."""
        from l2_arm import _publish

        stamps = []
        for start in range(0, len(bodies), 10):
            stamps += [time.time()] * len(bodies[start:start + 10])
            _publish(self.clients, self.topic, bodies[start:start + 10])
        return stamps

    # -- the daemon -----------------------------------------------------------------------------
    def start_daemon(self, tree: TreeSampler) -> None:
        from rdmt_dagster.demo import Daemon

        self.daemon = Daemon(self.workdir, self.env).__enter__()
        self.daemons.append(self.daemon)
        tree.attach(self.daemon.proc.pid)

    def kill_daemon(self, tree: TreeSampler) -> int:
        killed = kill_tree(self.daemon.proc.pid)
        self.daemon.proc.wait()
        self.daemon.__exit__(None, None, None)
        tree.seen.update(killed)
        return len(killed)

    # -- the schedule ---------------------------------------------------------------------------
    def fault_plan(self) -> list[tuple[float, str]]:
        if not self.args.faults:
            return []
        period = self.groups[-1].at + CADENCE / self.args.rate / self.args.compression
        kill = period / 3
        restart = kill + self.args.restart_after
        outage = max(self.args.outage_at * period, restart + 45)
        return sorted([(kill, "kill"), (restart, "restart"), (outage, "db down"), (outage + self.args.outage, "db up")])

    def run_faults_due(self, plan: list, tree: TreeSampler, proxy: Proxy | None) -> None:
        while plan and time.time() - self.t0 >= plan[0][0]:
            _, what = plan.pop(0)
            t = time.time() - self.t0
            if what == "kill":
                n = self.kill_daemon(tree)
                _log(f"[{t:6.0f} s] fault: daemon tree killed ({n} processes)")
                self.events.append({"fault": "daemon killed", "t": t, "processes": n})
            elif what == "restart":
                self.start_daemon(tree)
                _log(f"[{t:6.0f} s] daemon started again")
                self.events.append({"fault": "daemon restarted", "t": t})
            elif what == "db down":
                proxy.command("down")
                _log(f"[{t:6.0f} s] fault: database unreachable")
                self.events.append({"fault": "database down", "t": t})
            elif what == "db up":
                proxy.command("up")
                _log(f"[{t:6.0f} s] database reachable again")
                self.events.append({"fault": "database up", "t": t})

    def wait_until(self, when: float, plan: list, tree: TreeSampler, proxy, backlog: Backlog) -> None:
        next_print = getattr(self, "_next_print", 0.0)
        while True:
            self.run_faults_due(plan, tree, proxy)
            now = time.time() - self.t0
            if now >= next_print:
                self.progress(backlog)
                next_print = now + self.args.print_every
            if now >= when:
                break
            if self.daemon is not None and not self.daemon.alive() and not any(w == "restart" for _, w in plan):
                raise RuntimeError(f"the daemon stopped; see {self.daemon.log_path}: "
                                   + self.daemon.log_path.read_text()[-3000:])
            time.sleep(min(0.2, when - now))
        self._next_print = next_print

    def progress(self, backlog: Backlog) -> None:
        last = next((s for s in reversed(backlog.samples) if "error" not in s), None)
        if last is None:
            return
        t = time.time() - self.t0
        _log(f"[{t:6.0f} s] arrived {last['arrived']:4d}  measured {last['measured']:4d}  outstanding "
             f"{last['outstanding']:3d}  queue {last['visible']}+{last['in_flight']}  pending {last['pending']:3d}  "
             f"claimed {last['claimed']:3d}  S3 {last['s3_bytes'] / 2**30:.1f} GiB")

    def outstanding_now(self) -> int:
        import sqlalchemy as sa

        from rdmt_dagster.storage.l2_tables import l2_file

        with self.engine.connect() as conn:
            done = conn.execute(sa.select(sa.func.count()).select_from(l2_file).where(
                l2_file.c.status.in_(("ok", "error")) & (l2_file.c.reprocess_number == 0))).scalar()
        with self.lock:
            arrived = sum(1 for i in self.images if i.published is not None)
        return arrived - int(done)

    def publish_all(self, tree: TreeSampler, backlog: Backlog, proxy) -> None:
        """Upload one group ahead and publish every group on time; run the faults on theirs."""
        plan = self.fault_plan()
        uploads: dict[int, threading.Event] = {}

        published = {group.index: threading.Event() for group in self.groups}
        stopping = threading.Event()

        def uploader():
            try:
                for group in self.groups:
                    # at most one group ahead of the publications
                    while group.index > 0 and not published[group.index - 1].wait(0.2):
                        if stopping.is_set():
                            return
                    self.upload(group)
                    uploads[group.index].set()
            except BaseException as exc:
                self.upload_error = exc
                for event in uploads.values():
                    event.set()

        for group in self.groups:
            uploads[group.index] = threading.Event()
        thread = threading.Thread(target=uploader, name="uploader", daemon=True)
        thread.start()
        self.t0 = time.time()
        late = []
        try:
            self._publish_groups(plan, uploads, published, tree, backlog, proxy, late)
        finally:
            stopping.set()
        self.publish_end = time.time() - self.t0
        self.late = late
        while plan:  # faults scheduled after the last group (a very short replay)
            self.wait_until(plan[0][0], plan, tree, proxy, backlog)
        thread.join(timeout=60)

    def _publish_groups(self, plan, uploads, published, tree, backlog, proxy, late) -> None:
        for group in self.groups:
            self.wait_until(group.at, plan, tree, proxy, backlog)
            while not uploads[group.index].wait(0.2):
                self.run_faults_due(plan, tree, proxy)
            if self.upload_error is not None:
                raise RuntimeError(f"upload failed: {self.upload_error!r}")
            if self.s3_bytes > self.args.max_s3_gb * 2**30:
                raise Overload(f"{self.s3_bytes / 2**30:.1f} GiB of images wait in S3 (--max-s3-gb "
                               f"{self.args.max_s3_gb}): the pipeline does not keep up")
            try:
                before = self.outstanding_now()
            except Exception:  # database down (a fault)
                before = None
            t_group = time.time() - self.t0
            late.append(t_group - group.at)
            self.before_publication.append({"group": group.index, "t": t_group, "outstanding": before})
            announced = [i for i in group.images if not i.lost]
            stamps = self.publish([self.notice(i) for i in announced])
            with self.lock:
                for image, stamp in zip(announced, stamps):
                    image.published = stamp
            extra = [("duplicate", i) for i in group.duplicates_now + group.duplicates_late]
            if extra:
                self.publish([self.notice(i) for _, i in extra])
                self.republished += [{"name": i.name, "t": time.time() - self.t0,
                                      "kind": "right after" if i in group.duplicates_now else "two groups later"}
                                     for _, i in extra]
            if group.malformed:
                self.publish(group.malformed)
                self.malformed += group.malformed
            published[group.index].set()

    def drain(self, backlog: Backlog, tree: TreeSampler, proxy) -> dict:
        """Wait until every arrived image has results and the queue is empty (bounded); how it ended."""
        deadline = time.monotonic() + self.args.drain_timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            self.wait_until(time.time() - self.t0 + self.args.sample_every, [], tree, proxy, backlog)
            sample = next((s for s in reversed(backlog.samples) if "error" not in s), None)
            if sample is None:
                continue
            done = sample["outstanding"] <= 0 and sample["visible"] + sample["in_flight"] == 0
            if done:
                return {"drained": True, "t": time.time() - self.t0}
            if sample["measured"] != last_count:
                last_count, last_change = sample["measured"], time.monotonic()
            if time.monotonic() - last_change > self.args.stall:
                return {"drained": False, "t": time.time() - self.t0,
                        "reason": f"no image completed for {self.args.stall:.0f} s"}
            if time.monotonic() > deadline:
                return {"drained": False, "t": time.time() - self.t0,
                        "reason": f"--drain-timeout {self.args.drain_timeout:.0f} s reached"}


class Overload(RuntimeError):
    """The backlog outgrew the disk bound: the offered load is above the ceiling."""


def wait_for_first_tick(clients: dict, queue: str, daemon, timeout: float = 300) -> float:
    """Seconds until the SQS sensor took a test event off the queue (the daemon is up and ticking)."""
    from l2_arm import _queued

    t0 = time.perf_counter()
    clients["sqs"].send_message(QueueUrl=queue, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    deadline = time.monotonic() + timeout
    while _queued(clients, queue):
        if not daemon.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not take the first message; see {daemon.log_path}: "
                               + daemon.log_path.read_text()[-3000:])
        time.sleep(0.2)
    return time.perf_counter() - t0


def start_catchup_sensor(workdir: Path, env: dict) -> None:
    """``dagster sensor start l2_s3_catchup_sensor`` (the sensor is stopped by default)."""
    from rdmt_dagster.demo import WORKSPACE_YAML

    workspace = workdir / "workspace.yaml"
    workspace.write_text(WORKSPACE_YAML)
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "start", "l2_s3_catchup_sensor",
                           "-w", str(workspace)], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"could not start the catch-up sensor: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def dagster_records(dagster_home: Path, timeout: float) -> dict:
    """Runs (statistics, steps, batch), sensor tick periods and the run coordinator's settings."""
    import dagster as dg

    from l2_arm import _tick_period
    from rdmt_dagster.defs.l2.jobs import BATCH_TAG, L2_JOB

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        deadline = time.monotonic() + timeout
        while True:
            records = instance.get_run_records(filters=dg.RunsFilter(job_name=L2_JOB))
            active = [r for r in records if r.dagster_run.status.value in ACTIVE_RUN]
            if not active or time.monotonic() > deadline:
                break
            time.sleep(2)
        runs = []
        for r in records:
            run = r.dagster_run
            stats = instance.get_run_stats(run.run_id)
            steps = {s.step_key: (s.end_time - s.start_time) if s.start_time and s.end_time else None
                     for s in instance.get_run_step_stats(run.run_id)}
            runs.append({"run_id": run.run_id, "status": run.status.value, "batch": run.tags.get(BATCH_TAG),
                         "retry_of": run.tags.get("dagster/parent_run_id"),
                         "created": r.create_timestamp.timestamp(), "enqueued": stats.enqueued_time,
                         "launched": stats.launch_time, "started": stats.start_time, "ended": stats.end_time,
                         "steps": steps})
        coordinator = instance.run_coordinator
        queue = coordinator.get_run_queue_config() if hasattr(coordinator, "get_run_queue_config") else None
        return {
            "runs": sorted(runs, key=lambda x: x["created"]),
            "tick_period": {name: _tick_period(instance, name) for name in SENSORS},
            "max_concurrent_runs": getattr(queue, "max_concurrent_runs", None),
            "dequeue_interval": getattr(coordinator, "dequeue_interval_seconds", None),
        }
    finally:
        instance.dispose()


def database_rows(engine) -> tuple[list[dict], list[dict]]:
    import sqlalchemy as sa

    from rdmt_dagster.storage.l2_tables import l2_file, rejected_message

    with engine.connect() as conn:
        files = [dict(r._mapping) for r in conn.execute(sa.select(
            l2_file.c.filename, l2_file.c.reprocess_number, l2_file.c.status, l2_file.c.error,
            l2_file.c.message_id, l2_file.c.received_at, l2_file.c.claimed_at, l2_file.c.claimed_by,
            l2_file.c.measured_at, l2_file.c.observation_day))]
        rejected = [dict(r._mapping) for r in conn.execute(sa.select(
            rejected_message.c.message_id, rejected_message.c.reason, rejected_message.c.body))]
    return files, rejected


def _descendants_of_home(dagster_home: Path) -> set[int]:
    """Processes whose environment names this DAGSTER_HOME (orphans of a killed tree included)."""
    marker = f"DAGSTER_HOME={dagster_home}".encode()
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    out.add(int(entry.name))
    return out


def _moto_pid() -> int | None:
    for child in _children(os.getpid()):
        if "moto.server" in _cmdline(child):
            return child
    return None


def replay(args) -> dict:
    """Run one replay; the raw numbers."""
    import sqlalchemy as sa

    from l2_arm import BUCKET, _child_env, _clients, _moto, _queue_with_topic, _reap, _remove
    from rdmt_dagster.storage.database import Database, sqlite_url
    from rdmt_dagster.synthetic.l2 import L2Scene

    paths, catalog, written = pool_images()
    pool_mb = sum(p.stat().st_size for p in paths) / 2**20
    free_gb = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    if free_gb < args.max_s3_gb + 3:
        raise SystemExit(f"{free_gb:.0f} GiB free in {tempfile.gettempdir()}: --max-s3-gb {args.max_s3_gb} "
                         "needs that much and 3 GiB more")
    load = os.getloadavg()[0]
    out = {"args": vars(args), "pool_mb": pool_mb, "pool_written_s": written, "load_at_start": load,
           "free_gb_at_start": free_gb}
    day_prefix = f"wfi/{datetime.now(timezone.utc):%Y/%m/%d}/"
    groups = make_plan(args, day_prefix)
    templates = {p.name.split("_")[3]: Template(p, L2Scene().exposure_time) for p in paths}
    tree = TreeSampler(args.cpu_every)
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="rdmt-l2-replay-"))
        stack.callback(_remove, workdir)
        dagster_home = workdir / "dagster_home"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text(instance_yaml(args.run_monitoring))
        check_template(next(iter(templates.values())), workdir)
        replay_ref: list[Replay] = []

        def reap():
            pids = tree.seen | _descendants_of_home(dagster_home)
            for r in replay_ref:
                for daemon in r.daemons:
                    if daemon.alive():  # the killed one was stopped already
                        with contextlib.suppress(Exception):
                            daemon.__exit__(None, None, None)
            _reap(pids | _descendants_of_home(dagster_home), dagster_home)

        stack.enter_context(_moto())
        proxy = None
        if args.database == "postgresql":
            name = stack.enter_context(postgres_database())
            direct = f"{PG_BASE}:{PG_PORT}/{name}"
            if args.faults:
                proxy = Proxy(PG_PORT)
                stack.callback(proxy.close)
                url = f"{PG_BASE}:{proxy.port}/{name}"
            else:
                url = direct
        else:
            direct = url = sqlite_url(workdir / "rdmt.db")
        database = Database(direct)
        database.upgrade()  # created and migrated before the daemon starts
        stack.callback(database.dispose)
        engine = sa.create_engine(direct, **({"connect_args": {"timeout": 60}} if direct.startswith("sqlite") else {}))
        stack.callback(engine.dispose)
        clients = _clients()
        clients["s3"].create_bucket(Bucket=BUCKET)
        queue, topic = _queue_with_topic(clients, "l2-notices")
        env = _child_env(workdir, queue, catalog)
        env.update({"RDMT_L2_BATCH_SIZE": str(args.batch_size), "RDMT_L2_MAX_BATCH_SIZE": str(args.max_batch_size),
                    "RDMT_L2_MAX_WAIT": str(args.max_wait), "RDMT_SENSOR_INTERVAL": str(args.sensor_interval)})
        env.update(item.split("=", 1) for item in args.daemon_env)
        if args.database == "postgresql":
            env["RDMT_DATABASE_URL"] = url
        if args.faults:
            env["RDMT_L2_BUCKET_PREFIXES"] = f"{BUCKET}/wfi/%Y/%m/%d/"
            start_catchup_sensor(workdir, env)
        r = Replay(args, workdir, groups, templates, catalog, clients, queue, topic, engine, env)
        replay_ref.append(r)
        stack.callback(reap)
        moto = _moto_pid()
        if moto:
            tree.extra["moto"] = moto
        if proxy:
            tree.extra["database proxy"] = proxy.proc.pid
        t_start = time.perf_counter()
        r.start_daemon(tree)
        tree.start()
        stack.callback(tree.stop)
        out["startup_s"] = time.perf_counter() - t_start
        out["first_tick_s"] = wait_for_first_tick(clients, queue, r.daemon)
        backlog = Backlog(r, args.sample_every).start()
        stack.callback(backlog.stop)
        tree.sample()
        self_cpu0 = sum(os.times()[:2])
        cpu0, extra0 = dict(tree.cpu), dict(tree.extra_cpu)
        _log(f"replaying {len(groups)} groups of {GROUP} ({len(r.images)} images) over "
             f"{groups[-1].at:.0f} s; {args.database}{' through the proxy, faults on' if args.faults else ''}")
        overload = None
        try:
            r.publish_all(tree, backlog, proxy)
            out["drain"] = r.drain(backlog, tree, proxy)
        except Overload as exc:
            overload = str(exc)
            r.publish_end = time.time() - r.t0
            _log(f"stopped: {overload}")
            out["drain"] = {"drained": False, "t": r.publish_end, "reason": overload}
        out["overload"] = overload
        t_end = time.time()
        backlog.stop()
        backlog.sample()  # the last state, after the drain
        tree.sample()
        try:
            out["dagster"] = dagster_records(dagster_home, timeout=60 if overload is None else 5)
        except Exception as exc:  # the numbers from the database and the samplers are still worth reporting
            _log(f"the Dagster instance could not be read: {type(exc).__name__}: {exc}")
            out["dagster"] = {"runs": [], "tick_period": {}, "max_concurrent_runs": None, "dequeue_interval": None,
                              "error": f"{type(exc).__name__}: {exc}"}
        tree.stop()
        files, rejected = database_rows(engine)
        try:
            queue_left = r.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        except Exception:
            queue_left = {}
        out.update({
            "t0": r.t0, "t_end": t_end, "publish_end": r.publish_end, "late": getattr(r, "late", []),
            "groups": len(groups), "images": [asdict(i) for i in r.images],
            "republished": r.republished, "malformed": r.malformed,
            "faults": r.events, "before_publication": r.before_publication,
            "backlog": backlog.samples, "tree": tree.samples,
            "cpu": {role: tree.cpu[role] - cpu0.get(role, 0.0) for role in ROLES},
            "cpu_total_with_startup": sum(tree.cpu.values()),
            "extra_cpu": {k: v - extra0.get(k, 0.0) for k, v in tree.extra_cpu.items()},
            "self_cpu": sum(os.times()[:2]) - self_cpu0,
            "s3_peak_gb": r.s3_peak / 2**30, "files": [_jsonable(f) for f in files],
            "rejected": [_jsonable(x) for x in rejected],
            "queue_left": {k: int(v) for k, v in queue_left.items()},
            "env": {k: v for k, v in env.items() if k.startswith("RDMT_") and "URL" not in k},
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "database_url": url.split("@")[-1],
        })
    return out


def _jsonable(row: dict) -> dict:
    return {k: (v.replace(tzinfo=timezone.utc).timestamp() if isinstance(v, datetime) else v) for k, v in row.items()}


# -- analysis ------------------------------------------------------------------------------------
def analyse(raw: dict) -> dict:
    """Latencies, their parts, throughput, CPU and memory, the backlog's course, the faults and the checks."""
    args = raw["args"]
    t0 = raw["t0"]
    rows = {}
    for f in raw["files"]:
        rows.setdefault(f["filename"], []).append(f)
    runs = raw["dagster"]["runs"]
    runs_of_batch: dict[str, list[dict]] = {}
    for run in runs:
        runs_of_batch.setdefault(run["batch"], []).append(run)
    per_file = []
    for image in raw["images"]:
        if image["published"] is None:
            continue
        row = next((f for f in rows.get(image["name"], []) if f["reprocess_number"] == 0), None)
        rec = {"name": image["name"], "group": image["group"], "lost": image["lost"], "published": image["published"]}
        if row:
            rec.update(status=row["status"], received=row["received_at"], claimed=row["claimed_at"],
                       measured=row["measured_at"], batch=row["claimed_by"],
                       catchup=row["message_id"].startswith("s3-catchup"))
        if row and row["measured_at"] and row["status"] in ("ok", "error"):
            rec["latency"] = row["measured_at"] - image["published"]
            run = _run_of(runs_of_batch.get(row["claimed_by"], []), row["measured_at"])
            if run:
                rec["run"] = run["run_id"]
                rec["parts"] = {
                    "recorded": row["received_at"] - image["published"],
                    "claimed": row["claimed_at"] - row["received_at"] if row["claimed_at"] else None,
                    "enqueued": (run["enqueued"] or run["created"]) - row["claimed_at"] if row["claimed_at"] else None,
                    "queue_wait": run["launched"] - run["enqueued"] if run["launched"] and run["enqueued"] else None,
                    "launch": run["started"] - run["launched"] if run["started"] and run["launched"] else None,
                    "in_run": row["measured_at"] - run["started"] if run["started"] else None,
                }
        per_file.append(rec)
    measured = [f for f in per_file if "latency" in f]
    announced = [f for f in measured if not f["lost"]]
    latency = _stats([f["latency"] for f in announced])
    parts = {k: _stats([f["parts"][k] for f in announced if "parts" in f and f["parts"][k] is not None])
             for k in ("recorded", "claimed", "enqueued", "queue_wait", "launch", "in_run")}
    done_runs = [r for r in runs if r["started"] and r["ended"]]
    run_stats = {
        "count": len(runs), "retries": sum(1 for r in runs if r["retry_of"]),
        "statuses": _count(r["status"] for r in runs),
        "duration": _stats([r["ended"] - r["started"] for r in done_runs]),
        "queue_wait": _stats([r["launched"] - r["enqueued"] for r in runs if r["launched"] and r["enqueued"]]),
        "launch": _stats([r["started"] - r["launched"] for r in runs if r["started"] and r["launched"]]),
        "steps": {step: _stats([r["steps"].get(step) for r in done_runs if r["steps"].get(step) is not None])
                  for step in ("l2_metrics", "l2_evaluations", "l2_reports", "l2_notifications")},
        "files_per_run": _stats([n for n in (float(sum(1 for f in measured if f.get("run") == r["run_id"]))
                                             for r in done_runs) if n]),
    }
    # Throughput
    first = min((f["published"] for f in per_file), default=t0)
    last = max((f["measured"] for f in measured), default=first)
    offered = GROUP * args["rate"] * args["compression"] * 60.0 / CADENCE  # images per wall minute
    throughput = len(measured) / max(1e-9, (last - first) / 60.0)
    # Backlog course: what was left before each publication
    before = [b for b in raw["before_publication"] if b["outstanding"] is not None]
    bounded = _bounded(before, args)
    # CPU and memory over the replay (daemon tree)
    tree = [s for s in raw["tree"] if t0 <= s["t"] <= raw["t_end"]]
    wall = raw["t_end"] - t0
    cpu_total = sum(raw["cpu"].values())
    rss = [s["rss"] / 2**20 for s in tree]
    cpu = {"total": cpu_total, "by_role": raw["cpu"], "cores": cpu_total / wall if wall else float("nan"),
           "per_image": cpu_total / len(measured) if measured else float("nan"),
           "monitors_per_image": raw["cpu"]["measurement pool"] / len(measured) if measured else float("nan"),
           "rss_peak_mb": max(rss, default=float("nan")), "rss_mean_mb": statistics.fmean(rss) if rss else float("nan"),
           "moto": raw["extra_cpu"].get("moto"), "proxy": raw["extra_cpu"].get("database proxy"),
           "self": raw["self_cpu"]}
    out = {"latency": latency, "parts": parts, "runs": run_stats, "offered_per_min": offered,
           "throughput_per_min": throughput, "measured": len(measured), "arrived": len(per_file),
           "statuses": _count(f.get("status", "missing") for f in per_file), "bounded": bounded, "cpu": cpu,
           "wall": wall, "per_file": per_file, "series": _series(raw, runs)}
    lost = [f for f in per_file if f["lost"]]
    out["lost"] = {"n": len(lost), "found": sum(1 for f in lost if f.get("received")),
                   "latency": _stats([f["latency"] for f in lost if "latency" in f]),
                   "registered": _stats([f["received"] - f["published"] for f in lost if f.get("received")])}
    out["checks"] = _checks(raw, rows)
    out["faults"] = _fault_recovery(raw, measured)
    out["stuck"] = _stuck(raw, rows, runs_of_batch)
    return out


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _run_of(runs: list[dict], measured: float) -> dict | None:
    """The run of a batch whose results a file's ``measured_at`` is (a retry's, when the batch was retried)."""
    started = [r for r in runs if r["started"] and r["started"] <= measured + 1]
    return max(started, key=lambda r: r["started"]) if started else (runs[0] if runs else None)


def _bounded(before: list[dict], args: dict) -> dict:
    """Whether the backlog left before each publication stays bounded (see the module docstring)."""
    if len(before) < 6:
        return {"verdict": None, "reason": "too few groups to tell"}
    step = GROUP * args["rate"]  # the images of one cadence step (120 simulated s)
    limit = max(2 * step, 240.0 * step * args["compression"] / CADENCE)
    half = before[len(before) // 2:]
    xs, ys = [b["t"] for b in half], [b["outstanding"] for b in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    rise = slope * (xs[-1] - xs[0])
    end = before[-1]["outstanding"]
    return {"verdict": end <= limit and rise < step, "end": end, "limit": limit, "rise_second_half": rise,
            "rise_limit": step, "slope_per_cadence": slope * CADENCE / args["compression"],
            "max": max(b["outstanding"] for b in before)}


def _series(raw: dict, runs: list[dict]) -> list[dict]:
    """The samples with the runs queued and running and the tree's CPU and memory at each sample."""
    t0 = raw["t0"]
    tree = raw["tree"]
    out = []
    k = 0
    prev_cpu, prev_t = None, None
    for s in raw["backlog"]:
        if "error" in s:
            out.append({"t": s["t"] - t0, "error": s["error"]})
            continue
        while k + 1 < len(tree) and tree[k + 1]["t"] <= s["t"]:
            k += 1
        point = tree[k] if tree else {"cpu": 0.0, "rss": 0, "t": s["t"]}
        cores = None
        if prev_cpu is not None and point["t"] > prev_t:
            cores = (point["cpu"] - prev_cpu) / (point["t"] - prev_t)
        prev_cpu, prev_t = point["cpu"], point["t"]
        queued = sum(1 for r in runs
                     if (r["enqueued"] or r["created"]) <= s["t"] < (r["started"] or r["ended"] or math.inf))
        running = sum(1 for r in runs if r["started"] and r["started"] <= s["t"] < (r["ended"] or math.inf))
        out.append({"t": s["t"] - t0, "arrived": s["arrived"], "measured": s["measured"],
                    "outstanding": s["outstanding"], "visible": s["visible"], "in_flight": s["in_flight"],
                    "pending": s["pending"], "claimed": s["claimed"], "runs_queued": queued, "runs_running": running,
                    "cpu_cumulative": point["cpu"], "cores": cores, "rss_mb": point["rss"] / 2**20,
                    "s3_gb": s["s3_bytes"] / 2**30})
    return out


def _checks(raw: dict, rows: dict) -> dict:
    """Zero lost, zero duplicated, each malformed message rejected once, the queue empty."""
    uploaded = {i["name"] for i in raw["images"] if i["uploaded"] is not None}
    problems = []
    for name in sorted(uploaded):
        found = rows.get(name, [])
        if len(found) != 1 or found[0]["reprocess_number"] != 0 or found[0]["status"] != "ok":
            problems.append(f"{name}: " + (", ".join(f"#{f['reprocess_number']} {f['status']}" for f in found)
                                           or "no row"))
    unknown = sorted(set(rows) - uploaded)
    bodies = []
    for r in raw["rejected"]:
        try:
            bodies.append(json.loads(r["body"]).get("Message"))
        except (ValueError, AttributeError):
            bodies.append(r["body"])
    rejected_once = [body for body in raw["malformed"] if bodies.count(body) == 1]
    duplicated = sorted(name for name in uploaded if len(rows.get(name, [])) > 1)
    left = sum(raw["queue_left"].values()) if raw["queue_left"] else None
    return {"uploaded": len(uploaded), "one_ok_row": len(uploaded) - len(problems), "problems": problems,
            "duplicated": duplicated,
            "unknown_rows": unknown, "malformed": len(raw["malformed"]), "rejected_once": len(rejected_once),
            "rejected_rows": len(raw["rejected"]), "queue_left": left,
            "duplicates_published": len(raw["republished"]),
            "ok": not problems and not unknown and len(rejected_once) == len(raw["malformed"])
            and len(raw["rejected"]) == len(raw["malformed"]) and left == 0}


def _fault_recovery(raw: dict, measured: list[dict]) -> list[dict]:
    """Per fault: its window, when files complete again, when the outstanding images are back to their level."""
    t0 = raw["t0"]
    events = raw["faults"]
    windows = []
    kill = next((e for e in events if e["fault"] == "daemon killed"), None)
    restart = next((e for e in events if e["fault"] == "daemon restarted"), None)
    if kill:
        windows.append(("daemon tree killed (SIGKILL), restarted", kill["t"], restart["t"] if restart else None))
    down = next((e for e in events if e["fault"] == "database down"), None)
    up = next((e for e in events if e["fault"] == "database up"), None)
    if down:
        windows.append(("RDMT database unreachable", down["t"], up["t"] if up else None))
    samples = [s for s in raw["backlog"] if "error" not in s]
    cadence_wall = CADENCE / raw["args"]["compression"]
    out = []
    for label, start, end in windows:
        pre = [s["outstanding"] for s in samples if start - max(60.0, 2 * cadence_wall) <= s["t"] - t0 < start]
        level = max(pre) if pre else None
        after = sorted(f["measured"] - t0 for f in measured if end is not None and f["measured"] - t0 >= end)
        resumed = after[0] - end if after else None
        back = None
        if level is not None and end is not None:
            back = next((s["t"] - t0 - end for s in samples if s["t"] - t0 >= end and s["outstanding"] <= level), None)
        peak = max((s["outstanding"] for s in samples if start <= s["t"] - t0 <= (end or start) + (back or 0)),
                   default=None)
        out.append({"fault": label, "start": start, "end": end, "level_before": level, "peak": peak,
                    "files_resume_after": resumed, "backlog_back_after": back})
    return out


def _stuck(raw: dict, rows: dict, runs_of_batch: dict) -> list[dict]:
    """Arrived images without results, by batch, with the state of the batch's runs and what will free them."""
    from rdmt_dagster.defs.l2.resources import L2Config

    timeout = L2Config().claim_timeout_minutes * 60.0
    t0 = raw["t0"]
    kill = next((e["t"] for e in raw["faults"] if e["fault"] == "daemon killed"), None)
    batches: dict = {}
    for image in raw["images"]:
        if image["published"] is None:
            continue
        found = [f for f in rows.get(image["name"], []) if f["reprocess_number"] == 0]
        if found and found[0]["status"] in ("ok", "error"):
            continue
        row = found[0] if found else None
        key = (row["status"], row["claimed_by"]) if row else ("no row", None)
        entry = batches.setdefault(key, {"status": key[0], "batch": key[1], "files": [],
                                         "claimed_at": row["claimed_at"] - t0 if row and row["claimed_at"] else None})
        entry["files"].append(image["name"])
    out = []
    for (status, batch), entry in batches.items():
        runs = runs_of_batch.get(batch, []) if batch else []
        entry["runs"] = [f"{r['run_id'][:8]} {r['status']}" for r in runs]
        active = [r for r in runs if r["status"] in ACTIVE_RUN]
        if status != "claimed":
            entry["why"] = "never claimed"
        elif any(r["status"] == "STARTED" and kill is not None and r["started"] and r["started"] - t0 < kill
                 for r in active):
            monitoring = ("run monitoring is off" if not raw["args"]["run_monitoring"] else
                          f"run monitoring fails it only {raw['args']['run_monitoring']:.0f} s after its start")
            entry["why"] = ("its run was STARTED when the daemon tree was killed and stays STARTED (the default run "
                            f"launcher has no worker health check; {monitoring}): it holds a run slot, "
                            "and release_stale_claims keeps the claims of a batch whose run is in progress, "
                            "so the files are not released")
        elif active:
            entry["why"] = "its run is still in progress"
        else:
            entry["why"] = (f"no run of the batch is in progress; release_stale_claims returns the files to pending "
                            f"{timeout / 60:.0f} min after the claim (claim_timeout_minutes), at "
                            f"{entry['claimed_at'] + timeout:.0f} s")
        out.append(entry)
    return out


# -- markdown -------------------------------------------------------------------------------------
def _f(value, digits: int = 1, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.{digits}f}"


def _n(value) -> str:
    return "-" if value is None else str(value)


def markdown(raw: dict, res: dict) -> list[str]:
    args = raw["args"]
    rate, comp = args["rate"], args["compression"]
    db = "PostgreSQL" if args["database"] == "postgresql" else "SQLite"
    title = (f"### L2 peak replay: {rate:g}x the survey peak "
             f"({GROUP * rate:g} images per 120 s), {args['minutes']:g} simulated minutes compressed "
             f"{comp:g}x, through S3, SNS, SQS, the sensors and the daemon "
             f"({db}{', faults' if args['faults'] else ''}; {os.cpu_count()} cores)")
    lat, cpu, b = res["latency"], res["cpu"], res["bounded"]
    verdict = {True: "**bounded**", False: "**growing**", None: "- (too few groups)"}[b["verdict"]]
    if args["faults"]:
        verdict = verdict.replace("**", "") + " (with the faults)"
    lines = [title, "",
             "| images arrived / with results | runs (retries) | latency median (s) | p95 (s) | max (s) "
             "| offered / achieved, first arrival to last result (images/min) "
             "| backlog before the last group; rise over the 2nd half "
             "| daemon tree CPU (core-s; mean cores) | CPU per image, all / monitors (core-s) "
             "| RSS peak / mean (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {res['arrived']} / {res['measured']} | {res['runs']['count']} ({res['runs']['retries']}) | "
             f"**{_f(lat['median'])}** | **{_f(lat['p95'])}** | {_f(lat['max'])} | {_f(res['offered_per_min'])} / "
             f"{_f(res['throughput_per_min'])} | {b.get('end', '-')}; {_f(b.get('rise_second_half'), 0)} images: "
             f"{verdict} | {_f(cpu['total'], 0)}; {_f(cpu['cores'], 2)} | {_f(cpu['per_image'], 2)} / "
             f"{_f(cpu['monitors_per_image'], 2)} | {_f(cpu['rss_peak_mb'], 0)} / {_f(cpu['rss_mean_mb'], 0)} |",
             ""]
    p, r = res["parts"], res["runs"]
    lines += ["Where an image's time goes (seconds, over the images announced by a notice):", "",
              "| stage | median | p95 | max | measured from |", "|---|---|---|---|---|"]
    labels = [
        ("recorded", "notice published -> recorded by the SQS sensor", "`l2_file.received_at`"),
        ("claimed", "recorded -> header read, claimed in a batch", "`l2_file.claimed_at`"),
        ("enqueued", "claimed -> run enqueued", "run stats `enqueued_time`"),
        ("queue_wait", "run queue: enqueued -> launched", "run stats `launch_time`"),
        ("launch", "run launch: launched -> run worker started", "run stats `start_time`"),
        ("in_run", "run started -> the image's results stored", "`l2_file.measured_at`"),
    ]
    for key, label, source in labels:
        s = p[key]
        lines.append(f"| {label} | {_f(s['median'])} | {_f(s['p95'])} | {_f(s['max'])} | {source} |")
    lines.append(f"| **arrival -> results** | **{_f(lat['median'])}** | **{_f(lat['p95'])}** | {_f(lat['max'])} | |")
    steps = r["steps"]
    lines += ["", "| run | median (s) | p95 (s) | max (s) |", "|---|---|---|---|",
              f"| duration (started -> ended; {_f(r['files_per_run']['median'], 0)} images per run that stored "
              f"results, "
              f"median) | "
              f"{_f(r['duration']['median'])} | {_f(r['duration']['p95'])} | {_f(r['duration']['max'])} |"]
    for step in ("l2_metrics", "l2_evaluations", "l2_reports", "l2_notifications"):
        s = steps[step]
        lines.append(f"| step `{step}` | {_f(s['median'])} | {_f(s['p95'])} | {_f(s['max'])} |")
    lines.append(f"| queue wait / launch (as above, per run) | {_f(r['queue_wait']['median'])} / "
                 f"{_f(r['launch']['median'])} | {_f(r['queue_wait']['p95'])} / {_f(r['launch']['p95'])} | "
                 f"{_f(r['queue_wait']['max'])} / {_f(r['launch']['max'])} |")
    lines += ["", "The course of the replay (a sample every "
              f"{_series_step(res['series']):.0f} s; outstanding: arrived, results not yet stored):", "",
              "| wall (s) | arrived | with results | outstanding | queue visible + in flight | pending | claimed "
              "| runs queued / running | daemon tree CPU (cores) | RSS (MB) | S3 (GiB) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += _series_rows(res["series"])
    if args["faults"]:
        lines += ["", "| fault | from (s) | to (s) | outstanding before / peak | files complete again after (s) "
                  "| outstanding back to its level after (s) |", "|---|---|---|---|---|---|"]
        for fault in res["faults"]:
            lines.append(f"| {fault['fault']} | {_f(fault['start'], 0)} | {_f(fault['end'], 0)} | "
                         f"{_n(fault['level_before'])} / {_n(fault['peak'])} | {_f(fault['files_resume_after'])} | "
                         f"{_f(fault['backlog_back_after'], 1, 'not within the run')} |")
        ck, lost = res["checks"], res["lost"]
        lines.append(f"| {len(raw['republished'])} notices published twice, {ck['malformed']} malformed bodies | "
                     f"| | | | {ck['rejected_once']} of {ck['malformed']} rejected once "
                     f"({ck['rejected_rows']} rejected rows) |")
        lines.append(f"| {lost['n']} images uploaded without a notice | | | | | {lost['found']} found by the catch-up "
                     f"sensor, registered {_f(lost['registered']['median'], 0)} s (median) after the upload, "
                     f"results {_f(lost['latency']['median'], 0)} s after |")
        lines += ["", f"Checks after the drain: {ck['one_ok_row']} of {ck['uploaded']} uploaded images have exactly "
                  f"one `l2_file` row, at reprocess number 0, status ok; {len(ck['unknown_rows'])} rows of images "
                  f"never uploaded; {ck['rejected_rows']} `rejected_message` rows for {ck['malformed']} malformed "
                  f"messages ({ck['rejected_once']} each exactly once); {ck['queue_left']} messages left in the "
                  f"queue: **{'passed' if ck['ok'] else 'failed'}**."]
        if ck["duplicated"]:
            lines += ["", f"Images with more than one `l2_file` row ({len(ck['duplicated'])}): "
                      + "; ".join(p for p in ck["problems"] if p.split(":")[0] in set(ck["duplicated"][:4]))
                      + (f"; and {len(ck['duplicated']) - 4} more" if len(ck["duplicated"]) > 4 else "") + "."]
        for entry in res["stuck"]:
            lines.append("")
            lines.append(f"Without results at the end: {len(entry['files'])} image(s) {entry['status']} by batch "
                         f"{entry['batch']} (claimed at {_f(entry['claimed_at'], 0)} s; runs: "
                         f"{', '.join(entry['runs']) or 'none'}): {entry['why']}.")
    lines += ["", _paragraph(raw, res)]
    return lines


def _series_step(series: list[dict]) -> float:
    span = max((s["t"] for s in series), default=0.0)
    return max(30.0, math.ceil(span / 40 / 30) * 30)


def _series_rows(series: list[dict]) -> list[str]:
    step = _series_step(series)
    rows, target = [], 0.0
    good = [s for s in series if "error" not in s]
    for s in good:
        if s["t"] + 1e-6 >= target:
            errors = sum(1 for e in series if "error" in e and target - step <= e["t"] < s["t"])
            cores = _cores_between(good, s["t"] - step, s["t"])
            rows.append(f"| {s['t']:.0f} | {s['arrived']} | {s['measured']} | {s['outstanding']} | "
                        f"{s['visible']} + {s['in_flight']} | {s['pending']} | {s['claimed']} | "
                        f"{s['runs_queued']} / {s['runs_running']} | {_f(cores, 2)} | {s['rss_mb']:.0f} | "
                        f"{s['s3_gb']:.1f}{' (database down: ' + str(errors) + ' samples failed)' if errors else ''} |")
            target = s["t"] + step
    if good and not rows[-1].startswith(f"| {good[-1]['t']:.0f} |"):
        s = good[-1]
        rows.append(f"| {s['t']:.0f} | {s['arrived']} | {s['measured']} | {s['outstanding']} | {s['visible']} + "
                    f"{s['in_flight']} | {s['pending']} | {s['claimed']} | {s['runs_queued']} / {s['runs_running']} | "
                    f"{_f(_cores_between(good, s['t'] - step, s['t']), 2)} | {s['rss_mb']:.0f} | {s['s3_gb']:.1f} |")
    return rows


def _cores_between(samples: list[dict], a: float, b: float) -> float | None:
    inside = [s for s in samples if a <= s["t"] <= b]
    if len(inside) < 2 or inside[-1]["t"] <= inside[0]["t"]:
        return None
    return (inside[-1]["cpu_cumulative"] - inside[0]["cpu_cumulative"]) / (inside[-1]["t"] - inside[0]["t"])


def _paragraph(raw: dict, res: dict) -> str:
    args, d = raw["args"], raw["dagster"]
    ticks = d["tick_period"]
    cpu, runs = res["cpu"], res["runs"]
    spacing = CADENCE / args["rate"] / args["compression"]
    roles = ", ".join(f"{role} {cpu['by_role'][role]:.0f}" for role in ROLES if cpu["by_role"][role] >= 0.5)
    text = (
        f"{raw['groups']} groups of {GROUP} full-size images ({raw['pool_mb'] / GROUP:.0f} MB each; the pool's "
        f"18 images with distinct names, exposure numbers and starts written into their ASDF trees; writing the "
        f"pool is not timed), one group every {spacing:.0f} wall s ({args['minutes']:.0f} simulated minutes at "
        f"{args['rate']:g}x the peak, compressed {args['compression']:g}x: {res['offered_per_min']:.1f} images per "
        f"wall minute offered). Latency: from the publication of an image's SNS notice (wall clock) to its "
        f"`l2_file` row's `measured_at` (status ok/error), over {res['latency']['n']} announced images. "
        f"`dagster-daemon run` with the repository's dagster.yaml (queued runs, at most "
        f"{d['max_concurrent_runs']} at a time, dequeued every {d['dequeue_interval']} s; run retries"
        f"{'; run monitoring ' + str(args['run_monitoring']) + ' s' if args['run_monitoring'] else ''}), "
        f"`RDMT_SENSOR_INTERVAL={args['sensor_interval']}`, `RDMT_L2_BATCH_SIZE={args['batch_size']}`, "
        f"{'`RDMT_L2_MAX_BATCH_SIZE=' + str(args['max_batch_size']) + '`, ' if 'max_batch_size' in args else ''}"
        f"`RDMT_L2_MAX_WAIT={args['max_wait']:g}`, 2 workers per run, moto S3/SNS/SQS on loopback, the RDMT "
        f"database in {'PostgreSQL' if args['database'] == 'postgresql' else 'SQLite'}"
        f"{' through a TCP proxy on loopback' if args['faults'] else ''}. Dagster's own limits: the sensors "
        f"tick every {_f(ticks.get('l2_sqs_sensor'))} s (SQS) and {_f(ticks.get('l2_batch_sensor'))} s (batch), "
        f"which bounds the recording and claiming delays; a queued run waits for the coordinator's loop and a "
        f"free slot ({_f(runs['queue_wait']['median'])} s median) and its launch, a new run worker process that "
        f"loads the code location, takes {_f(runs['launch']['median'])} s (median) before the run starts. "
        f"CPU (user + sys, core-seconds) of the daemon's tree over the replay and drain: {roles}; per image "
        f"{cpu['per_image']:.1f} core-s, of which the measurement pools' (download, read, monitors) "
        f"{cpu['monitors_per_image']:.1f}; moto {_f(cpu['moto'], 0)}, this script {_f(cpu['self'], 0)}"
        f"{', the proxy ' + _f(cpu['proxy'], 0) if cpu['proxy'] is not None else ''} core-s apart. "
        f"Peak S3 (moto's disk) {raw['s3_peak_gb']:.1f} GiB: objects are deleted once their results are stored. "
        f"Groups were published at most {max(raw['late'], default=0.0):.1f} s after their scheduled time. "
        f"The daemon started in {raw['startup_s'] + raw['first_tick_s']:.0f} s (not counted). Load average "
        f"{raw['load_at_start']:.1f} at the start (on {os.cpu_count()} cores)."
    )
    b = res["bounded"]
    if b["verdict"] is not None and not args["faults"]:
        text += (f" Backlog: {b['end']} images were outstanding before the last group (at most {b['max']}; bound "
                 f"{b['limit']:.0f}); a line through the second half rises {b['rise_second_half']:.0f} images "
                 f"(bound {b['rise_limit']:.0f}): "
                 f"{'bounded' if b['verdict'] else 'not bounded (the load is above what this machine sustains)'}.")
    if args.get("daemon_env"):
        text += f" Daemon environment set for this replay: {', '.join(f'`{e}`' for e in args['daemon_env'])}."
    if raw.get("pythonpath"):
        text += f" Code imported first from `PYTHONPATH={raw['pythonpath']}` (not the repository's)."
    if raw.get("overload"):
        text += f" Stopped early: {raw['overload']}."
    if not raw["drain"]["drained"]:
        text += f" The backlog did not drain: {raw['drain'].get('reason')}."
    return text


def write_section(lines: list[str], when: float) -> None:
    """Prepend the section to BENCHMARKS.md under a heading with the replay's UTC date and time and the machine
    line (as run.py writes its sections)."""
    from run import RESULTS, machine

    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([f"## {stamp}", "", f"Machine: {machine()}", "", *lines, ""]) + "\n"
    header = "# Benchmarks\n\nProduced by `benchmarks/run.py`; newest first.\n\n"
    old = RESULTS.read_text()[len(header):] if RESULTS.exists() and RESULTS.read_text().startswith(header) else ""
    RESULTS.write_text(header + text + ("\n" + old if old else ""))


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated minutes (default 30)")
    parser.add_argument("--compression", type=float, default=1.0,
                        help="simulated seconds per wall second (default 1: real time)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="multiple of the peak: groups of 18 images per 120 simulated s (default 1)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--faults", action="store_true",
                        help="kill and restart the daemon, a database outage, repeated, malformed and lost notices "
                             "(implies --database postgresql)")
    parser.add_argument("--restart-after", type=float, default=10.0, help="seconds the daemon stays dead (faults)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the database is unreachable (faults)")
    parser.add_argument("--outage-at", type=float, default=0.6,
                        help="start of the outage, as a fraction of the publication period (faults; default 0.6)")
    parser.add_argument("--lost", type=int, default=None, help="images uploaded without a notice (faults: 4)")
    parser.add_argument("--duplicates", type=int, default=None, help="notices published twice (faults: 6)")
    parser.add_argument("--malformed", type=int, default=None, help="malformed message bodies (faults: 6)")
    parser.add_argument("--run-monitoring", type=float, default=None, metavar="SECONDS",
                        help="add Dagster run monitoring to the instance (start timeout and maximum run time)")
    parser.add_argument("--sensor-interval", type=int, default=30, help="RDMT_SENSOR_INTERVAL (default 30)")
    parser.add_argument("--batch-size", type=int, default=GROUP, help="RDMT_L2_BATCH_SIZE (default 18)")
    parser.add_argument("--max-batch-size", type=int, default=72, help="RDMT_L2_MAX_BATCH_SIZE (default 72)")
    parser.add_argument("--max-wait", type=float, default=120.0, help="RDMT_L2_MAX_WAIT (default 120)")
    parser.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the daemon (repeatable), e.g. RDMT_L2_CLAIM_TIMEOUT=5")
    parser.add_argument("--epoch", default="2027-03-20T06:00:00", help="exposure start of the first group (UTC)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-every", type=float, default=3.0, help="seconds between queue/backlog samples")
    parser.add_argument("--cpu-every", type=float, default=1.0, help="seconds between process-tree samples")
    parser.add_argument("--print-every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--drain-timeout", type=float, default=1200.0,
                        help="seconds to wait for the backlog after the last group (default 1200)")
    parser.add_argument("--stall", type=float, default=300.0,
                        help="stop waiting when no image completed for this many seconds (default 300)")
    parser.add_argument("--max-s3-gb", type=float, default=12.0,
                        help="stop when the images waiting in S3 exceed this (default 12 GiB)")
    parser.add_argument("--keep-objects", action="store_true", help="do not delete measured images from S3")
    parser.add_argument("--write", action="store_true", help="prepend the section to BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="write every raw number to this file")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="no replay: print (and with --write, write) the section of an earlier --json file")
    args = parser.parse_args(argv)
    if args.faults:
        if args.database == "sqlite" and "--database" in (argv or sys.argv):
            parser.error("--faults runs on PostgreSQL (the outage is a TCP proxy in front of it)")
        args.database = "postgresql"
    for name, default in (("lost", 4), ("duplicates", 6), ("malformed", 6)):
        if getattr(args, name) is None:
            setattr(args, name, default if args.faults else 0)
    if any("=" not in item for item in args.daemon_env):
        parser.error("--daemon-env takes NAME=VALUE")
    if args.rate <= 0 or args.compression <= 0 or args.minutes <= 0:
        parser.error("--rate, --compression and --minutes must be positive")
    return args


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--proxy":
        proxy_main(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    if args.from_json:
        raw = json.loads(args.from_json.read_text())["raw"]
        lines = markdown(raw, analyse(raw))
        print("\n".join(lines))
        if args.write:
            write_section(lines, raw["t0"])
        return 0
    if args.database == "postgresql":
        from l2_arm import _reachable

        if not _reachable(PG_PORT):
            raise SystemExit(f"PostgreSQL is not reachable on 127.0.0.1:{PG_PORT}")
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, set(range(os.cpu_count())))
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        raw = replay(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    res = analyse(raw)
    lines = markdown(raw, res)
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"raw": raw, "results": res}, indent=1, default=str))
    if args.write:
        write_section(lines, raw["t0"])
    return 1 if args.faults and not res["checks"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
