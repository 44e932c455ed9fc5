"""CRDS sensor: monitor the WFI reference files that each new default Roman context adds.

Each tick asks the CRDS server (``CRDS_SERVER_URL``) for the default Roman
context, one JSON-RPC call. When it differs from the last context the sensor
finished, the sensor syncs the mappings of both contexts into the CRDS cache
(``CRDS_PATH``) with the official client, compares the reference names of
the WFI rmaps of the monitored types (the reftypes of the roman_datamodels
classes that have a registered monitor: ``DarkRefModel`` -> ``dark``), and
queues the names the new context adds. Queued files are fetched into the
CRDS cache (the client checks size and sha1sum), registered in the RDMT
database, added as partitions of ``reference_files`` and requested as one
run of ``monitor_reference_files``.

The cursor (JSON) holds the last fully processed context, the context being
processed and its files still pending, with failed attempts per file. A tick
fetches at most ``RDMT_CRDS_MAX_FILES_PER_TICK`` files and starts no new
download after ``RDMT_CRDS_TICK_BUDGET_SECONDS``; the rest stay pending. A
server that is down or answers garbage is logged; the tick ends without
moving the cursor past any file that was not registered, and the next tick
retries.

Environment:

``CRDS_SERVER_URL``
    The CRDS server; without it the sensor skips (no network at all).
``CRDS_PATH``
    The CRDS cache; default ``<RDMT home>/crds_cache``.
``CRDS_CLIENT_TIMEOUT_SECONDS``
    Socket timeout of the client; set to 20 s when not set (the client's own
    default, 3600 s, would outlast the 60 s sensor limit).
``RDMT_CRDS_START_CONTEXT``
    Where a sensor without cursor starts: unset = the current default
    context is the baseline (nothing already operational is fetched); a
    context name = monitor what was added since that context; ``none`` =
    monitor every monitored file of the current context.
``RDMT_CRDS_MAX_FILES_PER_TICK`` (40: two deliveries), ``RDMT_CRDS_TICK_BUDGET_SECONDS`` (30)
    Bounds of one tick.
"""

import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import dagster as dg

from ..resources import RDMTConfig
from .handoff import REFERENCE_FILE_JOB, env_float, env_int, hand_off, sensor_interval

OBSERVATORY = "roman"
INSTRUMENT = "wfi"
CONTEXT_STATE = "latest"
CONTEXT_RE = re.compile(rf"{OBSERVATORY}_\d+\.pmap")
REFERENCE_RE = re.compile(r"[A-Za-z0-9_.\-]+")
NO_CONTEXT = "none"
DEFAULT_TIMEOUT_SECONDS = 20
MAX_FILES_PER_TICK = 40
TICK_BUDGET_SECONDS = 30.0


class CRDSError(Exception):
    """The CRDS server could not be used this tick (down, garbage, inconsistent)."""


@lru_cache(maxsize=None)
def model_reftype(model_class: str) -> str:
    """CRDS reftype of a roman_datamodels reference class: ``DarkRefModel`` -> ``dark``.

    Read from the class's schema (``meta.reftype`` of a tiny fake model:
    ``SuperbiasRefModel`` -> ``bias``), else derived from the class name.
    """
    try:
        import roman_datamodels.datamodels as rdm

        model = getattr(rdm, model_class).create_fake_data(shape=(8, 8))
        reftype = str(model.meta.reftype).strip().lower()
        if reftype:
            return reftype
    except Exception:  # noqa: BLE001 - unusual model: fall back on the naming convention
        pass
    return model_class.removesuffix("RefModel").lower()


def monitored_reftypes() -> set[str]:
    from ..science.monitor import arm_monitors

    return {model_reftype(monitor.model) for monitor in arm_monitors("reference").values() if monitor.model}


# -- cursor -------------------------------------------------------------------

@dataclass
class CRDSCursor:
    """What the sensor has done: survives daemon restarts as the sensor cursor."""

    context: str | None = None  # last context whose added files are all registered
    target: str | None = None  # context being processed
    pending: list[str] = field(default_factory=list)  # its files not yet registered
    attempts: dict[str, int] = field(default_factory=dict)  # failed fetches per pending file

    @classmethod
    def parse(cls, text: str | None) -> "CRDSCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data.get("context"), data.get("target"), list(data.get("pending", [])),
                   dict(data.get("attempts", {})))

    def dumps(self) -> str:
        return json.dumps({"context": self.context, "target": self.target, "pending": self.pending,
                           "attempts": self.attempts}, sort_keys=True)

    def queue(self) -> list[str]:
        """Pending files, those that failed least first (a broken file does not block the rest)."""
        order = {name: i for i, name in enumerate(self.pending)}
        return sorted(self.pending, key=lambda n: (self.attempts.get(n, 0), order[n]))


# -- the official client ------------------------------------------------------

_CONFIGURED: dict[str, str] = {}


class CRDSClient:
    """The sensor's use of the official ``crds`` client (public API only).

    JSON-RPC: ``get_default_context`` (each tick), ``get_mapping_names`` and
    ``get_server_info`` (for the download URLs and the size/sha1sum of every
    file) when a context changes. Files: ``dump_mappings`` and
    ``dump_references``, which GET ``<mapping_url>/<name>`` and
    ``<reference_url>/<name>`` into ``CRDS_PATH`` and verify them.
    """

    def __init__(self, server_url: str, crds_path: str):
        self.server_url = server_url.rstrip("/")
        self.crds_path = str(crds_path)
        self._configure()

    def _configure(self) -> None:
        """Point the client's module-level state at this server and cache.

        ``crds`` reads ``CRDS_SERVER_URL`` once at import (``api.set_crds_server``)
        and memoizes calls (``@utils.cached``); both are reset when the server or
        the cache changes, so that a long-lived process (the Dagster code server)
        follows its environment.
        """
        from crds.client import api
        from crds.core import config, utils

        os.environ["CRDS_PATH"] = self.crds_path
        os.environ.setdefault("CRDS_CLIENT_TIMEOUT_SECONDS", str(DEFAULT_TIMEOUT_SECONDS))
        wanted = {"url": self.server_url, "path": self.crds_path}
        if _CONFIGURED != wanted:
            api.set_crds_server(self.server_url)
            utils.clear_function_caches()
            config.CRDS_REF_SUBDIR_MODE = "None"  # re-read the subdirectory layout of the new cache
            _CONFIGURED.clear()
            _CONFIGURED.update(wanted)

    @staticmethod
    def refresh() -> None:
        """Forget the memoized server info (its download metadata lists the new files)."""
        from crds.client import api

        for cached in (api.get_server_info, api.get_download_metadata, api._get_file_info_map):
            cached.cache.clear()

    def default_context(self) -> str:
        from crds.client import api

        context = api.get_default_context.uncached(OBSERVATORY, CONTEXT_STATE)
        if not isinstance(context, str) or not CONTEXT_RE.fullmatch(context):
            raise CRDSError(f"CRDS answered {str(context)[:80]!r} for the default context")
        return context

    def _local(self, name: str) -> Path:
        from crds.core import config

        return Path(config.locate_file(name, OBSERVATORY))

    def sync_mappings(self, context: str):
        """Fetch the mappings of ``context`` into the cache and load its pmap."""
        from crds.client import api
        from crds.core import rmap

        names = api.get_mapping_names(context)
        if not isinstance(names, list) or context not in names or not all(
                isinstance(n, str) and REFERENCE_RE.fullmatch(n) for n in names):
            api.get_mapping_names.cache.pop((context,), None)
            raise CRDSError(f"CRDS answered garbage for the mappings of {context}")
        missing = [n for n in names if not self._local(n).exists()]
        try:
            if missing:
                api.dump_mappings(context, mappings=missing)
            return rmap.load_mapping(context)
        except Exception:
            # The client leaves a file that failed verification in the cache,
            # where the next sync would take it as good: remove what we fetched.
            for name in missing:
                self._local(name).unlink(missing_ok=True)
            raise

    def references(self, context: str | None, reftypes) -> dict[str, set[str]]:
        """``{reftype: reference names}`` of the WFI rmaps of ``reftypes`` in ``context``."""
        if context in (None, NO_CONTEXT):
            return {}
        from crds.core import exceptions

        pmap = self.sync_mappings(context)
        try:
            imap = pmap.get_imap(INSTRUMENT)
        except exceptions.CrdsUnknownInstrumentError:
            return {}
        out = {}
        for reftype in sorted(reftypes):
            if reftype not in imap.selector:
                continue
            try:
                out[reftype] = set(imap.get_rmap(reftype).reference_names())
            except (exceptions.IrrelevantReferenceTypeError, exceptions.OmitReferenceTypeError):
                continue
        return out

    def added_references(self, old: str | None, new: str, reftypes) -> list[str]:
        before = self.references(old, reftypes)
        after = self.references(new, reftypes)
        added = set()
        for reftype, names in after.items():
            added |= names - before.get(reftype, set())
        return sorted(added)

    def fetch(self, context: str, name: str) -> Path:
        """Download ``name`` into the CRDS cache (verified) and return its path."""
        from crds.client import api

        local = self._local(name)
        existed = local.exists()
        try:
            paths = api.dump_references(context, baserefs=[name])
            path = Path(paths[name])
            if not path.is_file():
                raise CRDSError(f"{name}: not in the CRDS cache after the download")
            return path
        except Exception:
            if not existed:
                local.unlink(missing_ok=True)
            raise


# -- the sensor ---------------------------------------------------------------

def _crds_path(rdmt: RDMTConfig) -> str:
    return os.environ.get("CRDS_PATH") or str(rdmt.home_path / "crds_cache")


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 400 else text[:400] + "..."


def crds_tick(context: dg.SensorEvaluationContext, rdmt: RDMTConfig,
              max_files: int | None = None, budget_seconds: float | None = None):
    """One evaluation of `crds_sensor` (also callable from tests and scripts)."""
    started = time.monotonic()
    if max_files is None:
        max_files = env_int("RDMT_CRDS_MAX_FILES_PER_TICK", MAX_FILES_PER_TICK)
    if budget_seconds is None:
        budget_seconds = env_float("RDMT_CRDS_TICK_BUDGET_SECONDS", TICK_BUDGET_SECONDS)
    server_url = os.environ.get("CRDS_SERVER_URL")
    if not server_url:
        return dg.SkipReason("CRDS_SERVER_URL is not set: the CRDS sensor has nothing to poll")
    try:
        cursor = CRDSCursor.parse(context.cursor)
    except (ValueError, TypeError, AttributeError) as exc:
        context.log.error(f"CRDS sensor: unreadable cursor {context.cursor!r} ({exc}); not touching it")
        return dg.SkipReason("unreadable cursor")

    try:
        client = CRDSClient(server_url, _crds_path(rdmt))
        current = client.default_context()
    except Exception as exc:  # noqa: BLE001 - any failure of the server is retried next tick
        context.log.warning(f"CRDS server {server_url} unavailable, retrying next tick: {_short(exc)}")
        return dg.SkipReason(f"CRDS server unavailable: {_short(exc)}")

    if cursor.context is None and cursor.target is None:
        start = os.environ.get("RDMT_CRDS_START_CONTEXT")
        if not start:
            cursor.context = current
            context.log.info(f"CRDS sensor starts at {current}: files delivered after it will be monitored")
            return dg.SensorResult(cursor=cursor.dumps(), skip_reason=f"baseline context {current}")
        cursor.context = start

    if cursor.target is None:
        if current == cursor.context:
            return dg.SkipReason(f"default context is still {current}")
        client.refresh()
        try:
            added = client.added_references(cursor.context, current, monitored_reftypes())
        except Exception as exc:  # noqa: BLE001
            context.log.warning(f"CRDS: could not compare {cursor.context} with {current}, "
                                f"retrying next tick: {_short(exc)}")
            return dg.SkipReason(f"could not read the mappings of {current}")
        context.log.info(f"CRDS default context {cursor.context} -> {current}: "
                         f"{len(added)} new monitored WFI file(s)")
        cursor.target, cursor.pending, cursor.attempts = current, added, {}
    else:
        client.refresh()

    fetched: dict[str, Path] = {}
    for name in cursor.queue():
        if len(fetched) >= max_files or time.monotonic() - started > budget_seconds:
            break
        try:
            fetched[name] = client.fetch(cursor.target, name)
        except Exception as exc:  # noqa: BLE001 - the file stays pending
            cursor.attempts[name] = cursor.attempts.get(name, 0) + 1
            context.log.warning(f"CRDS: fetching {name} failed (attempt {cursor.attempts[name]}), "
                                f"retrying next tick: {_short(exc)}")
            break

    # Register last, just before handing off, so that no other sensor sees a
    # registered file long before its partition exists.
    database = rdmt.database()
    for name, path in fetched.items():
        database.register(name, str(path))
    cursor.pending = [n for n in cursor.pending if n not in fetched]
    for name in fetched:
        cursor.attempts.pop(name, None)
    target = cursor.target
    if not cursor.pending:
        cursor.context, cursor.target, cursor.attempts = cursor.target, None, {}

    names = sorted(fetched)
    adds, runs = hand_off(context.instance, names, source=f"crds:{target}", tags={"rdmt/crds_context": target})
    if names:
        context.log.info(f"CRDS {target}: registered {len(names)} file(s), {len(cursor.pending)} pending")
    skip = None if runs else (f"{len(cursor.pending)} file(s) of {target} pending" if cursor.pending
                              else f"{target}: no new monitored WFI file")
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=adds, cursor=cursor.dumps(),
                           skip_reason=skip)


@dg.sensor(
    name="crds_sensor",
    job_name=REFERENCE_FILE_JOB,
    minimum_interval_seconds=sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New default Roman CRDS context -> fetch, register and monitor the WFI reference "
                "files it adds (monitored types only).",
)
def crds_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig):
    return crds_tick(context, rdmt)
