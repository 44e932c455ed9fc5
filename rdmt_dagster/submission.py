"""The Reference File Pipeline hand-off: ``rdmt submit FILE...`` registers files.

Registration only records where each file is (``reference_file`` row with
status ``registered``); `rdmt_dagster.sensors.registered_files_sensor` then
adds the partitions and requests the run. Submitting a file again is
harmless: the row is reused (its path updated) and no second partition or
run is made.
"""

import os
from pathlib import Path

from .resources import RDMTConfig
from .storage.database import Database


class SubmissionError(ValueError):
    """A path that cannot be submitted; the message names it."""


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


def register_files(paths, database: Database) -> list[str]:
    """Register every file of ``paths``; return their names (partition keys).

    Every path is checked before anything is registered, so a missing file
    leaves the database untouched.
    """
    resolved = _check(paths)
    for path in resolved:
        database.register(path.name, str(path))
    return [p.name for p in resolved]


def _config(rdmt) -> RDMTConfig:
    if isinstance(rdmt, RDMTConfig):
        return rdmt
    home = str(rdmt) if rdmt is not None else os.environ.get("RDMT_HOME", "rdmt_data")
    return RDMTConfig(home=home, database_url=os.environ.get("RDMT_DATABASE_URL") or None)


def submit(paths, rdmt: "RDMTConfig | str | os.PathLike | None" = None) -> list[str]:
    """``rdmt submit``: register ``paths`` in the RDMT database of ``rdmt``.

    ``rdmt`` is an `RDMTConfig`, an RDMT home folder, or None for
    ``RDMT_HOME`` (default ``rdmt_data``); the database URL comes from
    ``RDMT_DATABASE_URL`` when set. Raises `FileNotFoundError` or
    `SubmissionError` naming the offending path.
    """
    return register_files(paths, _config(rdmt).database())
