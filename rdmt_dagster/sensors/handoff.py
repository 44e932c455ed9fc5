"""Hand reference files to the ``monitor_reference_files`` job: partitions and run requests.

Every sensor that finds files (CRDS, drop folder, ``rdmt submit``) ends the
same way: add the names as partitions of ``reference_files`` and request one
run per batch. A run covers a *range* of partition keys, and the range is
taken in the dynamic partitions' insertion order, so:

* names that are not partitions yet are added in one request, in order, and
  therefore form one contiguous range at the end: one run;
* names that already are partitions (a file submitted again, a file that
  came through another sensor first) are grouped into maximal contiguous
  runs of the existing order: one run per group.
"""

import hashlib
import os
from collections.abc import Sequence

import dagster as dg

from ..assets.reference_files import reference_file_partitions

REFERENCE_FILE_JOB = "monitor_reference_files"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def sensor_interval() -> int:
    """The ``minimum_interval_seconds`` that gives a tick every ``RDMT_SENSOR_INTERVAL`` seconds (default 30).

    The daemon looks at its sensors every few seconds and skips one whose
    last tick *started* less than the minimum interval ago; a tick starts a
    moment after the look, so a minimum equal to the wanted period skips
    every other look (ticks every 35 s for 30, every 10 s for 5). One
    second less keeps the period.
    """
    return max(1, env_int("RDMT_SENSOR_INTERVAL", 30) - 1)


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _run_request(keys: Sequence[str], source: str, tags: dict | None) -> dg.RunRequest:
    digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:12]
    return dg.RunRequest(
        run_key=f"{source}:{keys[0]}..{keys[-1]}:{len(keys)}:{digest}",
        tags={RANGE_START: keys[0], RANGE_END: keys[-1], "rdmt/source": source, **(tags or {})},
    )


def _groups(keys: list[str], order: dict[str, int]) -> list[list[str]]:
    """Split ``keys`` into runs of consecutive positions in ``order``."""
    groups: list[list[str]] = []
    for key in sorted(keys, key=order.__getitem__):
        if groups and order[key] == order[groups[-1][-1]] + 1:
            groups[-1].append(key)
        else:
            groups.append([key])
    return groups


def hand_off(instance: dg.DagsterInstance, names: Sequence[str], source: str, tags: dict | None = None):
    """Return ``(dynamic_partitions_requests, run_requests)`` for ``names``.

    The run requests carry a ``run_key`` built from the keys, so a tick that
    is evaluated twice (daemon restart before the cursor was stored) does not
    start the same run twice.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return [], []
    partitions = reference_file_partitions.name
    existing = {n for n in names if instance.has_dynamic_partition(partitions, n)}
    new = [n for n in names if n not in existing]
    adds, runs = [], []
    if new:
        adds.append(reference_file_partitions.build_add_request(new))
        runs.append(_run_request(new, source, tags))
    if existing:
        order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(partitions))}
        runs.extend(_run_request(group, source, tags) for group in _groups(list(existing), order))
    return adds, runs
