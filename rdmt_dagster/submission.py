"""The Reference File Pipeline hand-off: ``rdmt submit FILE...`` registers files.

Registration only records where each file is and the SHA-256 of its content
(``reference_file`` row with status ``registered``);
`rdmt_dagster.sensors.registered_files_sensor` then adds the partitions and
requests the run.

Submitting a file again is harmless when its content is the same: the row is
reused (its path updated) and no second partition or run is made. A file
whose content differs from what was monitored under its name is refused
(`ContentChangedError`, naming the file), since its name is its partition
key and the stored results would otherwise be taken for its own. With
``replace`` it is registered as a new version of that name instead: its
earlier metrics and evaluations are deleted (Parquet, ECSV and the report are
rewritten by the new run) and its status becomes ``replaced``, for which
`hand_off_replaced` makes the run request that measures it again (returned by
the registered-files sensor's tick).

A row registered before checksums were recorded has none; its checksum is
taken from the file at its registered path when that file is still there,
and otherwise its content counts as unknown, i.e. different.

The files of one ``rdmt submit`` are one delivery, ``submit:<UTC time>``
(``reference_file.delivery``, trigger ``submit``): `rdmt failures --delivery`
lists what failed in it.
"""

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

from .resources import RDMTConfig, config_from_environment
from .storage.database import REPLACED, Database
from .storage.tables import SUBMIT
from .storage.database import ContentChangedError as StoredContentChanged


class SubmissionError(ValueError):
    """A path that cannot be submitted; the message names it."""


class ContentChangedError(SubmissionError):
    """A file whose content differs from what is monitored under its name."""


def file_checksum(path) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check(paths) -> list[Path]:
    resolved, by_name = [], {}
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"cannot submit {given}: no such file")
        if not path.is_file():
            raise SubmissionError(f"cannot submit {given}: not a regular file")
        path = path.resolve()
        other = by_name.setdefault(path.name, path)
        if other != path:
            raise SubmissionError(f"cannot submit both {other} and {path}: a file name is its partition key, "
                                  "so names must be unique")
        if path not in resolved:
            resolved.append(path)
    return resolved


def _fill_missing_checksums(known: dict[str, dict], database: Database) -> None:
    """Record the checksum of rows that have none, from their file when it is still there."""
    for name, row in known.items():
        if row["checksum"] is None and Path(row["path"]).is_file():
            row["checksum"] = file_checksum(row["path"])
            database.record_checksum(name, row["checksum"])


def _refusal(path: Path, row: dict) -> str:
    name = path.name
    if row["checksum"] is None:
        what = (f"cannot tell whether its content differs from the {name} already monitored (registered "
                f"from {row['path']}, which is gone, before content checksums were recorded)")
    else:
        what = f"its content differs from the {name} already monitored (registered from {row['path']})"
    return (f"cannot submit {path}: {what}; give it a new name, or submit it with --replace to monitor "
            f"it as a new version of {name} (the results of the earlier content are replaced)")


def submit_delivery(now: datetime | None = None, trigger: str = "submit") -> str:
    """The delivery id of one ``rdmt submit`` (or drop-folder tick): ``<trigger>:<UTC time to the second>``.

    ``now`` defaults to the current time; a naive ``now`` is UTC.
    """
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return f"{trigger}:{now:%Y-%m-%dT%H:%M:%SZ}"


def register_files(paths, database: Database, replace: bool = False, *, delivery: str | None = None,
                   trigger: str | None = None) -> list[str]:
    """Register every file of ``paths``; return their names (partition keys).

    Every path is checked before anything is registered, so a missing file,
    or one whose content differs from what is monitored under its name,
    leaves the registrations untouched.

    Parameters
    ----------
    paths : iterable of path-like
        Files to register.
    database : Database
        The RDMT database.
    replace : bool
        Register a file whose content differs from what is monitored under
        its name as a new version of that name, to be measured again.
    delivery, trigger : str, optional
        The delivery the files came in and what brought them
        (`Database.register`).

    Raises
    ------
    FileNotFoundError, SubmissionError
        A path that does not exist, is not a file, or shares its name with
        another path of ``paths``.
    ContentChangedError
        Without ``replace``: a file whose content differs from the monitored
        one of its name, or cannot be compared with it.
    """
    resolved = _check(paths)
    checksums = {path: file_checksum(path) for path in resolved}
    known = database.registrations(path.name for path in resolved)
    _fill_missing_checksums(known, database)
    changed = [path for path in resolved if path.name in known and known[path.name]["checksum"] != checksums[path]]
    if changed and not replace:
        raise ContentChangedError("\n".join(_refusal(path, known[path.name]) for path in changed))
    for path in resolved:
        try:
            database.register(path.name, str(path), checksums[path], replace=replace, replaced_status=REPLACED,
                              delivery=delivery, trigger=trigger)
        except StoredContentChanged as exc:  # registered by someone else since the check above
            raise ContentChangedError(_refusal(path, {"path": exc.registered_path,
                                                      "checksum": exc.registered_checksum})) from exc
    return [p.name for p in resolved]


def _config(rdmt) -> RDMTConfig:
    return rdmt if isinstance(rdmt, RDMTConfig) else config_from_environment(rdmt)


def submit(paths, rdmt: "RDMTConfig | str | os.PathLike | None" = None, replace: bool = False) -> list[str]:
    """``rdmt submit``: register ``paths`` in the RDMT database of ``rdmt``.

    ``rdmt`` is an `RDMTConfig`, an RDMT home folder, or None for
    ``RDMT_HOME`` (default ``rdmt_data``); the database URL comes from
    ``RDMT_DATABASE_URL`` when set. ``replace`` registers changed files as
    new versions (`register_files`). The files are recorded as one delivery,
    ``submit:<UTC time>`` (`submit_delivery`). Raises `FileNotFoundError` or
    `SubmissionError` (`ContentChangedError` for changed content) naming the
    offending path.
    """
    return register_files(paths, _config(rdmt).database(), replace=replace, delivery=submit_delivery(),
                          trigger=SUBMIT)


def hand_off_replaced(instance, database: Database) -> tuple[list, list]:
    """Partitions and run requests for the files submitted with ``replace``; for a sensor tick.

    One run per file and version: its run key names the version, so a
    sensor that hands the same version off again on every tick until the
    run has measured it starts one run, and the next version another.

    Returns
    -------
    tuple of list
        ``(dynamic_partitions_requests, run_requests)``, as
        `rdmt_dagster.sensors.handoff.hand_off` returns them.
    """
    from .sensors.handoff import hand_off

    adds, runs = [], []
    for name, version in database.replaced_files():
        file_adds, file_runs = hand_off(instance, [name], source="replaced")
        adds.extend(file_adds)
        runs.extend(run.with_replaced_attrs(run_key=f"{run.run_key}:v{version}") for run in file_runs)
    return adds, runs
