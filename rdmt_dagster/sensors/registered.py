"""Registered-files sensor: the hand-off of ``rdmt submit`` (and of anything else that registers).

The Reference File Pipeline (or a person) registers files in the RDMT
database (`rdmt_dagster.submission.submit`, ``rdmt submit FILE...``); this
sensor finds the rows with status ``registered`` (never measured) whose name
is not a partition yet, adds them as partitions of ``reference_files`` and
requests one run for them.

Cursor: the highest ``reference_file.id`` handed off (or passed over: rows
already measured, or already partitions because another sensor or the demo
handed them off). A row registered less than ``RDMT_HANDOFF_GRACE_SECONDS``
(15 s) ago is left for the next tick, so that a sensor that registers a file
and adds its partition in the same tick (CRDS, drop folder) is never raced
when the daemon evaluates sensors in parallel threads.

Environment: ``RDMT_HANDOFF_GRACE_SECONDS`` (15), ``RDMT_HANDOFF_BATCH`` (200
rows per tick).
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import sqlalchemy as sa

from ..assets.reference_files import reference_file_partitions
from ..resources import RDMTConfig
from ..submission import hand_off_replaced
from ..storage import tables as t
from .handoff import REFERENCE_FILE_JOB, env_float, env_int, hand_off, sensor_interval

GRACE_SECONDS = 15.0
BATCH = 200


def registered_tick(context: dg.SensorEvaluationContext, rdmt: RDMTConfig,
                    grace_seconds: float | None = None, batch: int | None = None):
    """One evaluation of `registered_files_sensor`."""
    grace = env_float("RDMT_HANDOFF_GRACE_SECONDS", GRACE_SECONDS) if grace_seconds is None else grace_seconds
    batch = batch or env_int("RDMT_HANDOFF_BATCH", BATCH)
    try:
        last_id = int(context.cursor or 0)
    except ValueError:
        context.log.error(f"registered_files_sensor: unreadable cursor {context.cursor!r}; not touching it")
        return dg.SkipReason("unreadable cursor")
    f = t.reference_file
    query = (sa.select(f.c.id, f.c.filename, f.c.status, f.c.registered_at)
             .where(f.c.id > last_id).order_by(f.c.id).limit(batch))
    with rdmt.database().engine.connect() as conn:
        rows = conn.execute(query).all()
    replaced_adds, replaced_runs = hand_off_replaced(context.instance, rdmt.database())
    if not rows and not replaced_runs:
        return dg.SkipReason("no newly registered file")

    fresh_after = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=grace)
    partitions = reference_file_partitions.name
    names, passed = [], last_id
    for row in rows:
        if row.status == "registered":
            if row.registered_at is not None and row.registered_at > fresh_after:
                break  # just registered: its registrar may be adding the partition right now
            if not context.instance.has_dynamic_partition(partitions, row.filename):
                names.append(row.filename)
        passed = row.id
    adds, runs = hand_off(context.instance, names, source="registered")
    adds, runs = adds + replaced_adds, runs + replaced_runs
    if names:
        context.log.info(f"handing off {len(names)} registered file(s): {names[0]} .. {names[-1]}")
    skip = None if runs else "no registered file to hand off"
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=adds, cursor=str(passed),
                           skip_reason=skip)


@dg.sensor(
    name="registered_files_sensor",
    job_name=REFERENCE_FILE_JOB,
    minimum_interval_seconds=sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Files registered in the RDMT database (rdmt submit) -> partitions and one run.",
)
def registered_files_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig):
    return registered_tick(context, rdmt)
