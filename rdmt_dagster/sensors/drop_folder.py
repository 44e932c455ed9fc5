"""Drop-folder sensor: ASDF files copied into a folder are registered and monitored.

Folder: ``RDMT_DROPBOX``, default ``<RDMT home>/dropbox`` (created on the
first tick). A file is taken when its name ends with ``.asdf`` (so
``*.asdf.part``, ``*.tmp`` and hidden files are ignored: copy under such a
name and rename when complete, or simply copy) and its size and
modification time are the same, and non-zero, on two consecutive ticks. It
is registered where it lies, with the SHA-256 of its content (leave it there
until it has been measured), added as a partition and requested as a run. A
name that is already registered from another folder is not taken (one
partition per file name); a warning says so.

A copy that stalls for two ticks looks complete: it is taken and fails as
truncated. So a taken file is watched: once its size or modification time
has changed since it was taken and is stable again, a file whose monitoring
failed is taken again (registered as a new version, its error deleted, and
run again); a file still waiting for its run is looked at again on the next
tick; a file that was measured without error is left as it is, with a
warning (``rdmt submit --replace`` monitors the new content).

Cursor (JSON): the files seen last tick and not yet taken (``waiting``),
the size and mtime of each file of the folder when it was taken
(``taken``), the names registered from elsewhere (``conflicts``), and a
digest of the folder listing, so that an unchanged folder costs one
``scandir`` and no database query.
"""

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from ..resources import RDMTConfig
from ..storage.database import REGISTERED, REPLACED, ContentChangedError
from ..storage.tables import DROP_FOLDER
from ..submission import file_checksum, submit_delivery
from .handoff import REFERENCE_FILE_JOB, hand_off, sensor_interval

SUFFIX = ".asdf"
QUERY_CHUNK = 500


def drop_folder(rdmt: RDMTConfig) -> Path:
    return Path(os.environ.get("RDMT_DROPBOX") or rdmt.home_path / "dropbox").expanduser().resolve()


def _listing(folder: Path) -> dict[str, list[int]]:
    entries = {}
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.name.startswith(".") or not entry.name.lower().endswith(SUFFIX):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:  # vanished between scandir and stat
                continue
            entries[entry.name] = [st.st_size, st.st_mtime_ns]
    return entries


def _read_cursor(context) -> tuple[dict, dict, set, dict]:
    """``(state, waiting, conflicts, taken)`` of the cursor; empty when it is unreadable."""
    try:
        state = json.loads(context.cursor) if context.cursor else {}
        return state, dict(state.get("waiting", {})), set(state.get("conflicts", [])), dict(state.get("taken", {}))
    except (ValueError, AttributeError, TypeError):
        context.log.error(f"drop_folder_sensor: unreadable cursor {context.cursor!r}; starting afresh")
        return {}, {}, set(), {}


def _versioned(runs, version: int) -> list:
    """``runs`` with the file's version in their run keys: the sensor requests each key once."""
    return [run.with_replaced_attrs(run_key=f"{run.run_key}:v{version}") for run in runs]


@dataclass
class _Tick:
    """What one tick found: files to take, to take again, to wait for, and the cursor's next state."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    waiting: dict[str, list[int]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    taken: dict[str, list[int]] = field(default_factory=dict)


def _sort(context, folder: Path, entries: dict, known: dict, cursor: tuple) -> _Tick:
    """Sort the files of the listing by what is to be done with them."""
    _, waiting, conflicts, taken = cursor
    tick = _Tick()
    for name, signature in sorted(entries.items()):
        path = folder / name
        if name in known and Path(known[name]) != path:
            if name not in conflicts:
                context.log.warning(f"{path}: a file named {name} is already registered "
                                    f"({known[name]}); rename it to have it monitored")
            tick.conflicts.append(name)
            continue
        if name in known:
            # A file registered here before the cursor kept its size and time
            # (with `rdmt submit`, or before this cursor format) is watched from now.
            before = taken.get(name, signature)
            tick.taken[name] = before
            if signature == before:
                continue
        if signature[0] > 0 and waiting.get(name) == signature:
            (tick.changed if name in known else tick.new).append(name)
        else:
            tick.waiting[name] = signature
    return tick


def _take(context, database, folder: Path, entries: dict, tick: _Tick) -> list[str]:
    """Register the new stable files; return their names."""
    taken = []
    delivery = submit_delivery(trigger=DROP_FOLDER)  # the files a tick takes are one delivery
    for name in tick.new:
        path = folder / name
        try:
            database.register(name, str(path), file_checksum(path), delivery=delivery, trigger=DROP_FOLDER)
        except OSError:  # vanished since the listing: it leaves the cursor with it
            continue
        except ContentChangedError as exc:  # registered from elsewhere since the listing
            context.log.warning(f"{path}: a file named {name} is already registered ({exc.registered_path}); "
                                "rename it to have it monitored")
            tick.conflicts.append(name)
            continue
        tick.taken[name] = entries[name]
        taken.append(name)
    return taken


def _take_again(context, database, folder: Path, entries: dict, tick: _Tick) -> dict[str, int]:
    """Decide on the taken files that changed and are stable again; return those taken again, with their version."""
    again = {}
    for name in tick.changed:
        path, signature = folder / name, entries[name]
        status = database.file_status(name)
        if status is None:
            continue
        if status["status"] == "error":
            try:
                again[name] = database.new_version(name, str(path), file_checksum(path))
            except OSError:
                continue
            tick.taken[name] = signature
            context.log.info(f"{path} changed after its monitoring failed; taking it again")
        elif status["status"] == REGISTERED:
            # Its run has not stored a result yet: look again next tick. Should
            # this tick be evaluated a second time because the first one's run
            # request was lost, the request is repeated under the same key
            # (the daemon drops a key it has already seen).
            tick.waiting[name] = signature
            if status["version"] > 1:
                again[name] = status["version"]
        elif status["status"] == REPLACED:  # `rdmt submit --replace` of this very file: its run is on the way
            tick.taken[name] = signature
        else:
            context.log.warning(f"{path} changed after it was monitored and is not taken again; copy it under "
                                f"a new name, or `rdmt submit --replace {path}` to monitor it as a new version")
            tick.taken[name] = signature
    return again


def drop_folder_tick(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, folder: Path | None = None):
    """One evaluation of `drop_folder_sensor`."""
    folder = Path(folder) if folder else drop_folder(rdmt)
    cursor = _read_cursor(context)
    state, waiting = cursor[0], cursor[1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = _listing(folder)
    except OSError as exc:
        context.log.warning(f"drop folder {folder} unreadable: {exc}")
        return dg.SkipReason(f"drop folder {folder} unreadable")
    digest = hashlib.sha1(json.dumps([str(folder), sorted(entries.items())]).encode()).hexdigest()
    if digest == state.get("listing") and not waiting:
        return dg.SkipReason(f"nothing new in {folder}")

    database = rdmt.database()
    names = sorted(entries)
    known: dict[str, str] = {}
    for start in range(0, len(names), QUERY_CHUNK):
        known.update(database.paths(names[start:start + QUERY_CHUNK]))
    tick = _sort(context, folder, entries, known, cursor)
    taken = _take(context, database, folder, entries, tick)
    again = _take_again(context, database, folder, entries, tick)
    adds, runs = hand_off(context.instance, taken, source="dropbox")
    for name, version in again.items():
        file_adds, file_runs = hand_off(context.instance, [name], source="dropbox")
        adds.extend(file_adds)
        runs.extend(_versioned(file_runs, version))
    if taken:
        context.log.info(f"drop folder {folder}: registered {len(taken)} file(s)")
    next_cursor = json.dumps({"listing": digest, "waiting": tick.waiting, "conflicts": tick.conflicts,
                              "taken": tick.taken}, sort_keys=True)
    skip = None if runs else (f"{len(tick.waiting)} file(s) in {folder} not yet stable" if tick.waiting
                              else f"nothing new in {folder}")
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=adds, cursor=next_cursor,
                           skip_reason=skip)


@dg.sensor(
    name="drop_folder_sensor",
    job_name=REFERENCE_FILE_JOB,
    minimum_interval_seconds=sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="*.asdf files copied into the drop folder (RDMT_DROPBOX, default <home>/dropbox) "
                "-> registered, partitions and one run.",
)
def drop_folder_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig):
    return drop_folder_tick(context, rdmt)
