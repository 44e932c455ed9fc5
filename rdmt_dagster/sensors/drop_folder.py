"""Drop-folder sensor: ASDF files copied into a folder are registered and monitored.

Folder: ``RDMT_DROPBOX``, default ``<RDMT home>/dropbox`` (created on the
first tick). A file is taken when its name ends with ``.asdf`` (so
``*.asdf.part``, ``*.tmp`` and hidden files are ignored: copy under such a
name and rename when complete, or simply copy) and its size and
modification time are the same, and non-zero, on two consecutive ticks. It
is registered where it lies (leave it there until it has been measured),
added as a partition and requested as a run. A name that is already
registered is not taken again (one partition per file name); a warning says
so when it was registered from another folder.

Cursor (JSON): the files seen last tick and not yet taken, with their size
and mtime, and a digest of the folder listing, so that an unchanged folder
costs one ``scandir`` and no database query.
"""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from ..resources import RDMTConfig
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


def drop_folder_tick(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, folder: Path | None = None):
    """One evaluation of `drop_folder_sensor`."""
    folder = Path(folder) if folder else drop_folder(rdmt)
    try:
        state = json.loads(context.cursor) if context.cursor else {}
        waiting = dict(state.get("waiting", {}))
        conflicts = set(state.get("conflicts", []))
    except (ValueError, AttributeError, TypeError):
        context.log.error(f"drop_folder_sensor: unreadable cursor {context.cursor!r}; starting afresh")
        state, waiting, conflicts = {}, {}, set()
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
    stable, still_waiting, new_conflicts = [], {}, []
    for name in names:
        path = folder / name
        if name in known:
            if Path(known[name]) != path:
                if name not in conflicts:
                    context.log.warning(f"{path}: a file named {name} is already registered "
                                        f"({known[name]}); rename it to have it monitored")
                new_conflicts.append(name)
            continue
        signature = entries[name]
        if signature[0] > 0 and waiting.get(name) == signature:
            stable.append(name)
        else:
            still_waiting[name] = signature
    for name in stable:
        database.register(name, str(folder / name))
    adds, runs = hand_off(context.instance, stable, source="dropbox")
    if stable:
        context.log.info(f"drop folder {folder}: registered {len(stable)} file(s)")
    cursor = json.dumps({"listing": digest, "waiting": still_waiting, "conflicts": new_conflicts}, sort_keys=True)
    skip = None if runs else (f"{len(still_waiting)} file(s) in {folder} not yet stable" if still_waiting
                              else f"nothing new in {folder}")
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=adds, cursor=cursor, skip_reason=skip)


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
