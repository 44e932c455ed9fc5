"""CRDS sensor: monitor the WFI reference files that each new default Roman context adds.

Each tick asks the CRDS server (``CRDS_SERVER_URL``) for the default Roman
context, one JSON-RPC call. When it differs from the last context the sensor
finished, the sensor reads the context history (``get_context_history``: the
contexts that were the default, in order) and walks it one step at a time
from the last context it finished to the current one, so that the files of a
context that was the default only between two ticks are monitored too. For
each step it syncs the mappings of both contexts into the CRDS cache
(``CRDS_PATH``) with the official client, compares the reference names of
the WFI rmaps of the monitored types (the reftypes of the roman_datamodels
classes that have a registered monitor: ``DarkRefModel`` -> ``dark``), and
queues the names the step adds, except files the RDMT database holds as
already monitored. Queued files are fetched into the CRDS cache (the client
checks size and sha1sum), registered in the RDMT database, added as
partitions of ``reference_files`` and requested as one run of
``monitor_reference_files`` per context.

The cursor (JSON) holds the last fully processed context, the context being
processed and its files still pending, with failed attempts per file. A tick
fetches at most ``RDMT_CRDS_MAX_FILES_PER_TICK`` files and starts no new
download or comparison after ``RDMT_CRDS_TICK_BUDGET_SECONDS``; the rest
stay pending. A server that is down or answers garbage is logged; the tick
ends without moving the cursor past any file that was not registered, and
the next tick retries. A file whose download failed
``RDMT_CRDS_MAX_ATTEMPTS`` times (gone from the server, corrupt) is given
up: it is registered under a path that does not exist and handed off, so
that its run records it as an error naming it (the ``files_readable`` check
fails, notifications report it) and later files are not held up.

A cursor that cannot be read (not JSON, wrong types) is logged and rebuilt:
from ``RDMT_CRDS_START_CONTEXT`` when it is set, else from the current
context as baseline with the files of that context that are registered but
not yet monitored pending again. In both cases the database decides which
files are already done.

URLs are logged without user name, password or query string.

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
``RDMT_CRDS_MAX_ATTEMPTS`` (5)
    Failed downloads of one file (at most one per tick) before it is
    recorded as an error.
"""

import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg

from ..resources import RDMTConfig
from ..storage.tables import CRDS
from .handoff import REFERENCE_FILE_JOB, env_float, env_int, hand_off, sensor_interval

OBSERVATORY = "roman"
INSTRUMENT = "wfi"
CONTEXT_STATE = "latest"
CONTEXT_RE = re.compile(rf"{OBSERVATORY}_(\d+)\.pmap")
REFERENCE_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
NO_CONTEXT = "none"
UNFETCHABLE_DIR = "rdmt-unfetchable"
DEFAULT_TIMEOUT_SECONDS = 20
MAX_FILES_PER_TICK = 40
TICK_BUDGET_SECONDS = 30.0
MAX_ATTEMPTS = 5


class CRDSError(Exception):
    """The CRDS server could not be used this tick (down, garbage, inconsistent)."""


class CursorError(ValueError):
    """A stored cursor that is not what this sensor writes."""


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


# -- logging --------------------------------------------------------------------

def _redact(url: str) -> str:
    """``url`` without user name, password, query string or fragment, fit for a log."""
    try:
        parts = urlsplit(url if "//" in url else "//" + url)
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _scrub(text: str) -> str:
    """``text`` with every URL redacted and the secrets of ``CRDS_SERVER_URL`` removed.

    Client errors can quote a URL, or only a piece of it (``nonnumeric port:
    'password@host'``), so the configured server's user information and
    query string are removed wherever they appear.
    """
    server = os.environ.get("CRDS_SERVER_URL", "")
    try:
        parts = urlsplit(server)
        secrets = [parts.netloc.rpartition("@")[0], parts.query, parts.password or ""]
    except ValueError:
        secrets = [server]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return URL_RE.sub(lambda match: _redact(match.group()), text)


def _short(exc: BaseException) -> str:
    text = _scrub(f"{type(exc).__name__}: {exc}")
    return text if len(text) < 400 else text[:400] + "..."


# -- cursor -------------------------------------------------------------------

def _context_serial(context: str) -> int:
    return int(CONTEXT_RE.fullmatch(context).group(1))


def _is_context(value) -> bool:
    return isinstance(value, str) and CONTEXT_RE.fullmatch(value) is not None


def _is_reference(value) -> bool:
    return isinstance(value, str) and REFERENCE_RE.fullmatch(value) is not None


@dataclass
class CRDSCursor:
    """What the sensor has done: survives daemon restarts as the sensor cursor."""

    context: str | None = None  # last context whose added files are all registered
    target: str | None = None  # context being processed
    pending: list[str] = field(default_factory=list)  # its files not yet registered
    attempts: dict[str, int] = field(default_factory=dict)  # failed fetches per pending file
    steps: list[str] = field(default_factory=list)  # later contexts of the walk towards the default, oldest first

    @classmethod
    def parse(cls, text: str | None) -> "CRDSCursor":
        """Read a stored cursor.

        Raises
        ------
        CursorError
            When ``text`` is not the JSON object this sensor writes (a string
            where the list of pending files belongs would otherwise be read
            as a list of one-letter files).
        """
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CursorError(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CursorError(f"a JSON {type(data).__name__}, not an object")
        context, target = data.get("context"), data.get("target")
        pending, attempts, steps = data.get("pending", []), data.get("attempts", {}), data.get("steps", [])
        if context is not None and context != NO_CONTEXT and not _is_context(context):
            raise CursorError(f"context {context!r} is not a context name")
        if target is not None and not _is_context(target):
            raise CursorError(f"target {target!r} is not a context name")
        if not isinstance(pending, list) or not all(_is_reference(name) for name in pending):
            raise CursorError("pending is not a list of reference file names")
        if not isinstance(steps, list) or not all(_is_context(step) for step in steps):
            raise CursorError("steps is not a list of context names")
        if pending and target is None:
            raise CursorError("files are pending but no context is being processed")
        if not isinstance(attempts, dict) or not all(
                isinstance(name, str) and type(count) is int and count >= 0 for name, count in attempts.items()):
            raise CursorError("attempts is not a mapping of file names to counts")
        pending = list(dict.fromkeys(pending))
        return cls(context, target, pending, {n: c for n, c in attempts.items() if n in pending}, steps)

    def dumps(self) -> str:
        return json.dumps({"context": self.context, "target": self.target, "pending": self.pending,
                           "attempts": self.attempts, "steps": self.steps}, sort_keys=True)

    def queue(self) -> list[str]:
        """Pending files, those that failed least first (a broken file does not block the rest)."""
        order = {name: i for i, name in enumerate(self.pending)}
        return sorted(self.pending, key=lambda n: (self.attempts.get(n, 0), order[n]))


def context_steps(history: list[str], start: str | None, current: str) -> list[str]:
    """The contexts to process after ``start`` to reach ``current``, oldest first.

    Parameters
    ----------
    history : list of str
        The contexts that were the default, in the order they became it
        (one context may appear more than once: a rollback).
    start : str or None
        The last context processed (``None`` or ``"none"``: nothing).
    current : str
        The default context now.

    Returns
    -------
    list of str
        Ends with ``current``. Without ``start`` only ``current`` (all of its
        files are wanted, not those of earlier contexts). A ``start`` that
        never was the default is placed by its serial number. The history may
        lag behind the default (the server caches it), hence ``current`` is
        appended when the history does not reach it.
    """
    if start in (None, NO_CONTEXT):
        return [current]
    if start in history:
        after = history[len(history) - history[::-1].index(start):]
    else:
        after = [c for c in history if _context_serial(c) > _context_serial(start)]
    if current in after:
        return after[:len(after) - after[::-1].index(current)]
    return [*after, current]


# -- the official client ------------------------------------------------------

_CONFIGURED: dict[str, str] = {}


class CRDSClient:
    """The sensor's use of the official ``crds`` client (public API only).

    JSON-RPC: ``get_default_context`` (each tick), ``get_context_history``,
    ``get_mapping_names`` and ``get_server_info`` (for the download URLs and
    the size/sha1sum of every file) when a context changes. Files:
    ``dump_mappings`` and ``dump_references``, which GET
    ``<mapping_url>/<name>`` and ``<reference_url>/<name>`` into
    ``CRDS_PATH`` and verify them.
    """

    def __init__(self, server_url: str, crds_path: str):
        self.server_url = server_url.rstrip("/")
        self.crds_path = str(crds_path)
        self._references: dict[tuple, dict[str, set[str]]] = {}
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

    def history(self) -> list[str]:
        """The contexts that were the default, in the order they became it."""
        from crds.client import api

        try:
            eras = api.get_context_history(OBSERVATORY)
        except TypeError:  # the client sorts the answer: entries that do not compare
            eras = None
        if not isinstance(eras, list) or not all(
                isinstance(era, tuple) and len(era) >= 2 and _is_context(era[1]) for era in eras):
            raise CRDSError(f"CRDS answered {str(eras)[:80]!r} for the context history")
        return [era[1] for era in eras]

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
        """``{reftype: reference names}`` of the WFI rmaps of ``reftypes`` in ``context``.

        Remembered for the life of the client (one tick): a walk through the
        history reads each context as the new side of one step and the old
        side of the next, and a published context never changes.
        """
        if context in (None, NO_CONTEXT):
            return {}
        key = (context, frozenset(reftypes))
        if key not in self._references:
            self._references[key] = self._read_references(context, reftypes)
        return self._references[key]

    def _read_references(self, context: str, reftypes) -> dict[str, set[str]]:
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


def _statuses(database, names) -> dict[str, str]:
    """Status (``registered``, ``ok``, ``error``) of each of ``names`` that the database holds."""
    statuses = {}
    for name in database.paths(list(names)):
        row = database.file_status(name)
        statuses[name] = row["status"] if row else "registered"
    return statuses


def _not_monitored(database, names: list[str]) -> list[str]:
    """``names`` less the files the database holds as monitored (measured, or recorded as errors).

    Files registered but not yet monitored stay: their run may never have
    been requested (a rebuilt cursor, a rollback to an earlier context).
    """
    if not names:
        return []
    statuses = _statuses(database, names)
    return [name for name in names if statuses.get(name, "registered") == "registered"]


def _unfetchable_path(crds_path: str, name: str) -> Path:
    """Where a file given up on is registered: nothing is ever stored there.

    The run of the file then records ``<name>: does not exist`` as its error,
    as for any file that cannot be read.
    """
    return Path(crds_path) / UNFETCHABLE_DIR / name


def _start_context() -> str | None:
    """``RDMT_CRDS_START_CONTEXT`` (``None`` when unset).

    Raises
    ------
    ValueError
        When it is neither a context name nor ``none``: stored in the cursor,
        it would fail every tick.
    """
    start = os.environ.get("RDMT_CRDS_START_CONTEXT") or None
    if start is not None and start != NO_CONTEXT and not _is_context(start):
        raise ValueError(f"RDMT_CRDS_START_CONTEXT={start!r} is neither a {OBSERVATORY} context name nor 'none'")
    return start


def _rebuilt_cursor(client: CRDSClient, current: str, start: str | None, database) -> CRDSCursor:
    """A cursor in place of one that cannot be read; the database says which files are done.

    With a start context the walk begins again there, and the files the
    database holds as monitored are skipped as on any step. Without, the
    current context is the baseline, as for a new sensor, and its monitored
    files that are registered but not yet monitored are pending again: their
    run may have been lost with the cursor.
    """
    if start:
        return CRDSCursor(context=start)
    names = sorted(set().union(*client.references(current, monitored_reftypes()).values()))
    statuses = _statuses(database, names)
    pending = [name for name in names if statuses.get(name) == "registered"]
    return CRDSCursor(context=current, target=current if pending else None, pending=pending)


@dataclass
class _Tick:
    """Bounds of one tick and what it hands off."""

    max_files: int
    budget_seconds: float
    max_attempts: int
    started: float = field(default_factory=time.monotonic)
    fetched: int = 0
    compared: bool = False
    failed: bool = False  # a download failed: the server may be in trouble, leave the rest to the next tick
    adds: list = field(default_factory=list)
    runs: list = field(default_factory=list)
    handed: set[str] = field(default_factory=set)  # a rollback may add a file again within one tick

    def may_fetch(self) -> bool:
        return (not self.failed and self.fetched < self.max_files
                and time.monotonic() - self.started <= self.budget_seconds)

    def may_compare(self) -> bool:
        """The first comparison of a tick always runs, or a slow server would never be followed."""
        return not self.compared or self.may_fetch()


def _next_step(log, client: CRDSClient, cursor: CRDSCursor, current: str, tick: _Tick, database) -> str | None:
    """Make the next context of the walk the target, with the files it adds pending.

    Returns
    -------
    str or None
        Why the server could not be used (the cursor keeps its place), else None.
    """
    try:
        if not cursor.steps:
            cursor.steps = context_steps(client.history(), cursor.context, current)
        step = cursor.steps[0]
        added = client.added_references(cursor.context, step, monitored_reftypes())
    except Exception as exc:  # noqa: BLE001 - any failure of the server is retried next tick
        log.warning(f"CRDS: could not compare {cursor.context} with the next default context "
                    f"(now {current}), retrying next tick: {_short(exc)}")
        return f"could not follow the CRDS contexts to {current}"
    tick.compared = True
    cursor.steps.pop(0)
    pending = _not_monitored(database, added)
    later = f" ({len(cursor.steps)} later context(s) to go)" if cursor.steps else ""
    log.info(f"CRDS default context {cursor.context} -> {step}: {len(pending)} new monitored WFI file(s)"
             + (f", {len(added) - len(pending)} already monitored" if len(pending) < len(added) else "") + later)
    cursor.target, cursor.pending, cursor.attempts = step, pending, {}
    return None


def _fetch_pending(log, client: CRDSClient, cursor: CRDSCursor, tick: _Tick) -> tuple[dict[str, Path], list[str]]:
    """Download pending files of the target within the tick's bounds.

    Returns
    -------
    fetched : dict
        Name -> path in the CRDS cache.
    given_up : list of str
        Files whose download failed ``tick.max_attempts`` times.
    """
    fetched: dict[str, Path] = {}
    given_up: list[str] = []
    for name in cursor.queue():
        if not tick.may_fetch():
            break
        try:
            fetched[name] = client.fetch(cursor.target, name)
            tick.fetched += 1
        except Exception as exc:  # noqa: BLE001 - the file stays pending, up to the limit
            tick.failed = True
            attempts = cursor.attempts[name] = cursor.attempts.get(name, 0) + 1
            if attempts >= tick.max_attempts:
                given_up.append(name)
                log.error(f"CRDS: {name} of {cursor.target} could not be fetched in {attempts} attempt(s); "
                          f"recording it as an error and moving on: {_short(exc)}")
            else:
                log.warning(f"CRDS: fetching {name} failed (attempt {attempts} of {tick.max_attempts}), "
                            f"retrying next tick: {_short(exc)}")
    return fetched, given_up


def _process_target(context: dg.SensorEvaluationContext, client: CRDSClient, cursor: CRDSCursor,
                    tick: _Tick, database, crds_path: str) -> None:
    """Fetch, register and hand off what the tick's bounds allow of the target's pending files."""
    fetched, given_up = _fetch_pending(context.log, client, cursor, tick)
    # Register last, just before handing off, so that no other sensor sees a
    # registered file long before its partition exists.
    # The delivery is the CRDS context that brought the files (recorded once per content).
    delivery = cursor.target if len(cursor.target) <= 64 else None
    for name, path in fetched.items():
        database.register(name, str(path), delivery=delivery, trigger=CRDS)
    # A file registered from elsewhere keeps its path: it can still be read there.
    known = database.paths(given_up) if given_up else {}
    for name in given_up:
        if name not in known:
            database.register(name, str(_unfetchable_path(crds_path, name)), delivery=delivery, trigger=CRDS)
    done = [*fetched, *given_up]
    cursor.pending = [name for name in cursor.pending if name not in done]
    for name in done:
        cursor.attempts.pop(name, None)

    names = sorted(name for name in done if name not in tick.handed)
    tick.handed.update(names)
    adds, runs = hand_off(context.instance, names, source=f"crds:{cursor.target}",
                          tags={"rdmt/crds_context": cursor.target})
    tick.adds += adds
    tick.runs += runs
    if names:
        context.log.info(f"CRDS {cursor.target}: registered {len(names)} file(s)"
                         + (f" ({len(given_up)} that could not be fetched)" if given_up else "")
                         + f", {len(cursor.pending)} pending")


def _advance(context: dg.SensorEvaluationContext, client: CRDSClient, cursor: CRDSCursor, current: str,
             tick: _Tick, database, crds_path: str) -> str | None:
    """Walk the contexts towards ``current`` and process their files, within the tick's bounds.

    Returns
    -------
    str or None
        Why the walk stopped on a failure of the server, else None.
    """
    while True:
        if cursor.target is None:
            if cursor.context == current and not cursor.steps:
                return None
            if not tick.may_compare():
                return None
            problem = _next_step(context.log, client, cursor, current, tick, database)
            if problem:
                return problem
        _process_target(context, client, cursor, tick, database, crds_path)
        if cursor.pending:
            return None
        cursor.context, cursor.target, cursor.attempts = cursor.target, None, {}


def _limits(max_files: int | None, budget_seconds: float | None, max_attempts: int | None) -> _Tick:
    """The tick's bounds: the arguments, else the environment, else the defaults."""
    if max_files is None:
        max_files = env_int("RDMT_CRDS_MAX_FILES_PER_TICK", MAX_FILES_PER_TICK)
    if budget_seconds is None:
        budget_seconds = env_float("RDMT_CRDS_TICK_BUDGET_SECONDS", TICK_BUDGET_SECONDS)
    if max_attempts is None:
        max_attempts = env_int("RDMT_CRDS_MAX_ATTEMPTS", MAX_ATTEMPTS)
    return _Tick(max_files, budget_seconds, max(1, max_attempts))


def _working_cursor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, client: CRDSClient, current: str,
                    cursor: CRDSCursor | None):
    """The cursor this tick works from: the stored one, a new one, or one rebuilt in place of an invalid one.

    Parameters
    ----------
    cursor : CRDSCursor or None
        The stored cursor; None when it could not be read.

    Returns
    -------
    CRDSCursor, or the `dg.SkipReason` or `dg.SensorResult` that ends the tick
        (a new sensor's baseline, a start context that is not one, a server
        that fails during a rebuild).
    """
    fresh = cursor is None or (cursor.context is None and cursor.target is None)
    try:
        start = _start_context() if fresh else None
    except ValueError as exc:
        context.log.error(f"CRDS sensor: {exc}")
        return dg.SkipReason(str(exc))
    if cursor is None:
        try:
            cursor = _rebuilt_cursor(client, current, start, rdmt.database())
        except Exception as exc:  # noqa: BLE001 - any failure of the server is retried next tick
            context.log.warning(f"CRDS: could not read the mappings of {current} to rebuild the cursor, "
                                f"retrying next tick: {_short(exc)}")
            return dg.SkipReason(f"could not read the mappings of {current}")
        context.log.info(f"CRDS cursor rebuilt: walking again from {start}, skipping the files already monitored"
                         if start else f"CRDS cursor rebuilt with {current} as baseline: {len(cursor.pending)} "
                         "of its file(s) registered but not yet monitored are pending again")
    elif fresh:
        if not start:
            cursor.context = current
            context.log.info(f"CRDS sensor starts at {current}: files delivered after it will be monitored")
            return dg.SensorResult(cursor=cursor.dumps(), skip_reason=f"baseline context {current}")
        cursor.context = start
    return cursor


def crds_tick(context: dg.SensorEvaluationContext, rdmt: RDMTConfig,
              max_files: int | None = None, budget_seconds: float | None = None,
              max_attempts: int | None = None):
    """One evaluation of `crds_sensor` (also callable from tests and scripts)."""
    tick = _limits(max_files, budget_seconds, max_attempts)
    server_url = os.environ.get("CRDS_SERVER_URL")
    if not server_url:
        return dg.SkipReason("CRDS_SERVER_URL is not set: the CRDS sensor has nothing to poll")
    try:
        stored = CRDSCursor.parse(context.cursor)
    except CursorError as exc:
        context.log.warning(f"CRDS sensor: invalid cursor {str(context.cursor)[:200]!r} ({exc}); "
                            "rebuilding it from the database")
        stored = None

    try:
        client = CRDSClient(server_url, _crds_path(rdmt))
        current = client.default_context()
    except Exception as exc:  # noqa: BLE001 - any failure of the server is retried next tick
        context.log.warning(f"CRDS server {_redact(server_url)} unavailable, retrying next tick: {_short(exc)}")
        return dg.SkipReason(f"CRDS server unavailable: {_short(exc)}")

    cursor = _working_cursor(context, rdmt, client, current, stored)
    if not isinstance(cursor, CRDSCursor):
        return cursor
    if cursor.target is None and cursor.context == current and not cursor.steps:
        if cursor.dumps() != context.cursor:
            return dg.SensorResult(cursor=cursor.dumps(), skip_reason=f"default context is still {current}")
        return dg.SkipReason(f"default context is still {current}")
    client.refresh()
    problem = _advance(context, client, cursor, current, tick, rdmt.database(), _crds_path(rdmt))
    if problem and not tick.runs and cursor.dumps() == context.cursor:
        return dg.SkipReason(problem)

    skip = None
    if not tick.runs:
        skip = (f"{len(cursor.pending)} file(s) of {cursor.target} pending" if cursor.pending
                else problem or f"{cursor.context}: no new monitored WFI file")
    return dg.SensorResult(run_requests=tick.runs, dynamic_partitions_requests=tick.adds, cursor=cursor.dumps(),
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
