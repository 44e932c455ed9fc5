"""Sensors of the L2 arm: notices in, batches out.

* `l2_sqs_sensor` receives notices from ``RDMT_L2_QUEUE_URL`` (bounded tick,
  recorded before acknowledged: `rdmt_dagster.l2.ingest.ingest_tick`). Runs
  by default whenever the queue is configured.
* `l2_s3_catchup_sensor` (off by default) lists ``RDMT_L2_BUCKET_PREFIXES``
  and registers objects no notice announced.
* `l2_batch_sensor` reads the headers of newly announced files (observation
  day, detector, the reference files that calibrated them), then claims
  batches of pending files and requests one run per batch: a day with
  ``batch_size`` files waiting, or whose oldest file has waited
  ``max_wait_seconds``; a backlog of several batches goes in runs of up to
  ``max_batch_size`` files. A claim is made here, under a batch id that is the
  run's key and its ``rdmt/l2_batch`` tag, so a file belongs to one run
  only; the claims of a batch whose run never started or failed for good
  return to pending after ``claim_timeout_minutes``.
"""

import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import dagster as dg

from ...l2.ingest import ingest_tick
from ...resources import RDMTConfig
from ...sensors.handoff import sensor_interval
from ...storage.l2_ledger import L2Ledger
from ...storage.l2_store import L2Store
from .jobs import BATCH_TAG, L2_JOB
from .partitions import is_partition, l2_day_partitions
from .resources import L2Config

MAX_RUNS_PER_TICK = 20
IN_PROGRESS = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# -- SQS ---------------------------------------------------------------------
def sqs_tick(context, rdmt: RDMTConfig, l2: L2Config):
    """One evaluation of `l2_sqs_sensor`."""
    if not l2.queue_url:
        return dg.SkipReason("RDMT_L2_QUEUE_URL is not set")
    report = ingest_tick(l2.sqs(), l2.queue_url, L2Ledger(rdmt.database()), s3=l2.s3() if l2.check_objects else None,
                         max_messages=l2.max_messages, budget_seconds=l2.tick_budget_seconds,
                         delete_rejected=l2.delete_rejected)
    summary = (f"received {report.received}, new files {report.new_files}, duplicates {report.duplicates}, "
               f"rejected {report.rejected}, acknowledged {report.deleted} in {report.seconds:.2f} s")
    if report.stopped:
        summary += f"; stopped early ({report.stopped})"
        context.log.warning(summary)
    elif report.received:
        context.log.info(summary)
    return dg.SkipReason(summary if report.received or report.stopped else "no message")


@dg.sensor(
    name="l2_sqs_sensor",
    minimum_interval_seconds=sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING if os.environ.get("RDMT_L2_QUEUE_URL")
    else dg.DefaultSensorStatus.STOPPED,
    description="L2 notices from the SQS queue (RDMT_L2_QUEUE_URL) -> pending files in the RDMT database.",
)
def l2_sqs_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, l2: L2Config):
    return sqs_tick(context, rdmt, l2)


# -- S3 catch-up ---------------------------------------------------------------
def expand_prefixes(entries: list[str], days: int, today: datetime) -> list[tuple[str, str]]:
    """``bucket/prefix`` entries as (bucket, prefix), date codes expanded for ``today`` and ``days`` before."""
    out = []
    for entry in entries:
        bucket, _, prefix = entry.partition("/")
        if "%" in prefix:
            for back in range(days, -1, -1):
                out.append((bucket, (today - timedelta(days=back)).strftime(prefix)))
        else:
            out.append((bucket, prefix))
    return list(dict.fromkeys(out))


def catchup_tick(context, rdmt: RDMTConfig, l2: L2Config, today: datetime | None = None, max_keys: int = 1000):
    """One evaluation of `l2_s3_catchup_sensor`: register objects under the prefixes not known yet."""
    from ...l2.notices import L2Notice, NoticeError, valid_bucket, valid_filename, valid_key

    if not l2.bucket_prefixes:
        return dg.SkipReason("RDMT_L2_BUCKET_PREFIXES is not set")
    try:
        cursor = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        cursor = {}
    s3, ledger = l2.s3(), L2Ledger(rdmt.database())
    registered, skipped = 0, 0
    prefixes = expand_prefixes(l2.bucket_prefixes, l2.catchup_days, today or _utcnow())
    for bucket, prefix in prefixes:
        place = f"{bucket}/{prefix}"
        kwargs = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if cursor.get(place):
            kwargs["StartAfter"] = cursor[place]
        try:
            answer = s3.list_objects_v2(**kwargs)
        except Exception as exc:  # one unreachable bucket must not stop the others
            context.log.warning(f"l2_s3_catchup_sensor: cannot list {place}: {type(exc).__name__}: {exc}")
            continue
        notices = []
        for item in answer.get("Contents", []):
            key = item["Key"]
            cursor[place] = key
            try:
                notices.append(L2Notice(valid_bucket(bucket), valid_key(key),
                                        valid_filename(key.rsplit("/", 1)[-1], key), None, "none", "",
                                        int(item.get("Size") or 0) or None, None))
            except NoticeError:
                skipped += 1  # not an L2 image (catalogs, logs, other products)
        registered += ledger.record_unknown(notices, message_id=f"s3-catchup:{place}"[:128])
        if not answer.get("IsTruncated"):
            # The listing reached the end of the prefix: the next tick lists it again from the start, so that
            # keys that arrived after the cursor had passed their place in the (lexicographic) order are seen.
            cursor.pop(place, None)
    # Prefixes that rolled out of the window leave the cursor.
    cursor = {k: v for k, v in cursor.items() if k in {f"{b}/{p}" for b, p in prefixes}}
    summary = f"{registered} file(s) registered from {len(prefixes)} prefix(es), {skipped} other object(s)"
    if registered:
        context.log.info(summary)
    return dg.SensorResult(cursor=json.dumps(cursor, sort_keys=True), skip_reason=summary)


@dg.sensor(
    name="l2_s3_catchup_sensor",
    minimum_interval_seconds=max(60, sensor_interval()),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="L2 images in S3 under RDMT_L2_BUCKET_PREFIXES that no notice announced -> pending files.",
)
def l2_s3_catchup_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, l2: L2Config):
    return catchup_tick(context, rdmt, l2)


# -- batches ---------------------------------------------------------------------
def read_headers(store: L2Store, l2: L2Config, log, clock=time.monotonic) -> int:
    """Read the header of each newly announced file (within the tick's budget); how many were read."""
    from ...l2.header import HeaderError, read_header

    start, done = clock(), 0
    s3 = None
    while clock() - start < l2.header_budget_seconds:
        rows = store.unidentified(50)
        if not rows:
            break
        s3 = s3 or l2.s3()
        for row in rows:
            if clock() - start >= l2.header_budget_seconds:
                break
            try:
                header = read_header(s3, row.bucket, row.s3_key)
            except HeaderError as exc:
                log.warning(str(exc))
                store.record_unreadable(row.id, str(exc))
                done += 1
                continue
            except Exception as exc:  # S3 unreachable: try again next tick
                log.warning(f"{row.filename}: header not read ({type(exc).__name__}: {exc}); next tick")
                return done
            store.record_header(row.id, header)
            if header.observation_day and not is_partition(header.observation_day):
                store.record_error(row.id, f"{row.filename}: observation day {header.observation_day} is outside "
                                           f"the L2 partitions (RDMT_L2_FIRST_DAY, RDMT_L2_DAYS_AHEAD)")
            done += 1
    return done


def release_stale_claims(store: L2Store, instance, l2: L2Config, now: datetime) -> int:
    """Return to pending the files of batches claimed long ago whose run is not queued or running."""
    stale_before = now - timedelta(minutes=l2.claim_timeout_minutes)
    keep = []
    for batch in store.stale_batches(stale_before):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch}), limit=20)
        if any(run.status in IN_PROGRESS for run in runs):
            keep.append(batch)
    return store.release_stale(stale_before, keep)


def new_batch_id(day: str) -> str:
    return f"{day}_{uuid.uuid4().hex[:12]}"


def batch_tick(context, rdmt: RDMTConfig, l2: L2Config, now: datetime | None = None):
    """One evaluation of `l2_batch_sensor`."""
    now = now or _utcnow()
    store = L2Store(rdmt.database())
    read = read_headers(store, l2, context.log)
    released = release_stale_claims(store, context.instance, l2, now)
    if released:
        context.log.warning(f"{released} file(s) of batches whose run never finished returned to pending")
    runs = []
    largest = max(l2.batch_size, l2.max_batch_size)
    for day, (n, waited) in store.ready_days(l2.batch_size, timedelta(seconds=l2.max_wait_seconds), now).items():
        # Whole batches of batch_size (or everything once the oldest has waited), in runs of up to
        # max_batch_size: at the peak a run takes the 18 files of one readout as before; behind a backlog
        # it takes several, and pays Dagster's run launch and the worker pool's start once for them all.
        claimable = n if waited else n - n % l2.batch_size
        while claimable > 0:
            if len(runs) >= MAX_RUNS_PER_TICK:
                break
            batch = new_batch_id(day)
            claimed = store.claim(day, batch, min(claimable, largest))
            if not claimed:
                break
            claimable -= len(claimed)
            runs.append(dg.RunRequest(run_key=batch, partition_key=day,
                                      tags={BATCH_TAG: batch, "rdmt/source": "l2_batch_sensor",
                                            "dagster/max_runtime": str(int(l2.max_run_seconds))}))
            context.log.info(f"batch {batch}: {len(claimed)} file(s) observed on {day}")
    if not runs:
        return dg.SkipReason(f"no batch ready ({read} header(s) read)")
    return dg.SensorResult(run_requests=runs)


@dg.sensor(
    name="l2_batch_sensor",
    job_name=L2_JOB,
    minimum_interval_seconds=sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Pending L2 images -> headers read, batches claimed, one run per batch "
                "(RDMT_L2_BATCH_SIZE files of one day, or RDMT_L2_MAX_WAIT seconds).",
)
def l2_batch_sensor(context: dg.SensorEvaluationContext, rdmt: RDMTConfig, l2: L2Config):
    return batch_tick(context, rdmt, l2)


SENSORS = [l2_sqs_sensor, l2_s3_catchup_sensor, l2_batch_sensor]
__all__ = ["SENSORS", "batch_tick", "catchup_tick", "sqs_tick", "l2_day_partitions"]
