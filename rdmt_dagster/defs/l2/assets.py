"""L2 assets: images (by observation day) -> metrics -> evaluations -> reports -> notifications.

A run is one batch: the files the batch sensor claimed under the run's
``rdmt/l2_batch`` tag (one day's partition), measured in parallel worker
processes inside the run. A run without the tag, i.e. a backfill over a
range of days (a data release) or a day materialised by hand, takes every
image observed on those days and measures it again under its next
reprocess number, keeping the earlier results; the report then shows what
changed.

Each day's materialisation carries that day's own figures (the images this
run measured and evaluated on it, the failing ones with metric, value and
limit, the day page); the checks give one result per day, for every image
of the day as stored (`rdmt_dagster.defs.l2.days`); the run is tagged with
what it found (``rdmt/failures``).
"""

import time
from collections import Counter

import dagster as dg

from ...assets.partitioned import (
    add_partition_metadata,
    check_evaluations,
    check_outputs,
    run_verdict,
    tag_run,
)
from ...assets.reports import channel_kinds
from ...l2.fetch import L2MeasureTask
from ...resources import RDMTConfig
from ...resources.notifications import NotificationsConfig
from ...science.measure import MeasureRequest, parameters_of
from ...science.monitor import evaluate
from .days import day_measured_check, day_metadata, day_pass_check, run_day_summaries, stored_day_summary
from .io_managers import L2Batch, batch_of_run, l2_store
from .jobs import BATCH_TAG
from .partitions import l2_day_partitions
from .resources import L2Config
from .runners import L2Runner, measure_batch

GROUP = "l2_images"
L2_EVALUATIONS_PASS = "l2_evaluations_pass"
L2_FILES_MEASURED = "l2_files_measured"
REPORTS_FOLDER = "reports"

l2_images = dg.AssetSpec(
    "l2_images",
    partitions_def=l2_day_partitions,
    group_name=GROUP,
    description="WFI Level-2 images in S3, announced by the archive's notices, by observation day (UTC). "
                "Per-file state (detector, optical element, exposure start, status, reprocess number) is in "
                "the RDMT database (rdmt status).",
    kinds={"asdf", "s3"},
)


def _batch_rows(context: dg.AssetExecutionContext, store):
    batch = batch_of_run(context.run)
    if BATCH_TAG in context.run.tags:
        return batch, store.batch_files(batch)
    days = list(context.partition_keys)
    store.reprocess(days, batch)
    context.log.info(f"reprocessing {len(days)} day(s) {days[0]} .. {days[-1]} as batch {batch}")
    return batch, store.batch_files(batch)


def _tasks(rows, rdmt: RDMTConfig, l2: L2Config, parameters: dict) -> list[L2MeasureTask]:
    workdir = l2.workdir or str(rdmt.home_path / "l2_downloads")
    return [L2MeasureTask(row.id, row.bucket, row.s3_key, row.filename,
                          MeasureRequest("", parameters, row.monitors, catalog_path=l2.catalog), workdir)
            for row in rows]


@dg.asset(
    partitions_def=l2_day_partitions,
    deps=[l2_images],
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="l2_io_manager",
    group_name=GROUP,
    kinds={"numpy", "sql"},
    description="Metrics of each L2 image of the run (astrometry, PSF, 1/f noise, pixel statistics) at "
                "detector and amp scale.",
)
def l2_metrics(context: dg.AssetExecutionContext, rdmt: RDMTConfig, l2: L2Config, l2_runner: L2Runner):
    store = l2_store(rdmt)
    parameters = parameters_of(rdmt.standards())  # invalid standards fail the run here, listing the problems
    batch, rows = _batch_rows(context, store)
    start = time.perf_counter()
    results = measure_batch(context, _tasks(rows, rdmt, l2, parameters), l2_runner, rdmt.workers)
    seconds = time.perf_counter() - start
    metric_sets = {row.id: sets for row, sets in zip(rows, results)}
    errors = {}
    for row, sets in zip(rows, results):
        for ms in sets:
            if not ms.ok:
                context.log.error(ms.error)
                errors.setdefault(row.filename, []).append(ms.error)
    measured = Counter(ms.info.monitor for sets in results for ms in sets if ms.ok)
    add_partition_metadata(context, _measured_by_day(context.partition_keys, rows, errors))
    return dg.Output(
        L2Batch(batch, rows, metric_sets),
        metadata={
            "run_batch": batch,
            "run_files": len(rows),
            "run_days": dg.MetadataValue.json(sorted({r.observation_day or "" for r in rows})),
            "run_measured": dg.MetadataValue.json(dict(measured)),
            "run_errors": len(errors),
            "run_seconds": round(seconds, 2),
        },
    )


def _measured_by_day(days, rows, errors: dict[str, list[str]]) -> dict[str, dict]:
    """Per day of the run: the images measured on it in this run, and the errors of its images."""
    out = {day: {"images_measured": 0} for day in days}
    for row in rows:
        day = out.setdefault(row.observation_day or "", {"images_measured": 0})
        day["images_measured"] += 1
        if row.filename in errors:
            day.setdefault("errors", {})[row.filename] = errors[row.filename]
    for day in out.values():
        if "errors" in day:
            day["errors"] = dg.MetadataValue.json(day["errors"])
    return {day: metadata for day, metadata in out.items() if day in set(days)}


L2_EVALUATIONS_PASS_DESCRIPTION = (
    "Every evaluation of every L2 image observed on the day passed (each image at its newest measured "
    "reprocessing): astrometry, PSF, 1/f noise and pixel metrics against the mission and SOC limits, the change "
    "from the previous exposure of the same detector and optical element, and the trend. A verdict that could "
    "not be given is neither a pass nor a failure (counted as not evaluated). One result per day, renewed by each run of the day; a failure lists the "
    "failing images with metric, value, limit and the day page.")
L2_FILES_MEASURED_DESCRIPTION = (
    "Every L2 image observed on the day could be read and every monitor ran on it; a failure names the images "
    "and the errors. One result per day.")


def _day_link(notifications: NotificationsConfig):
    from ...reports.l2_page import day_relative_path

    return lambda day: notifications.l2_report_link(day_relative_path(day)) if day else None


@dg.asset(
    partitions_def=l2_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="l2_io_manager",
    group_name=GROUP,
    kinds={"parquet", "sql"},
    description="Every L2 metric value against the mission, SOC, change and trend standards "
                "(change and trend: the earlier exposures of the same detector and optical element). Each "
                "day's materialisation gives the images this run evaluated on it, the failing ones with "
                "metric, value and limit, and the day page.",
    check_specs=[
        dg.AssetCheckSpec(L2_EVALUATIONS_PASS, asset="l2_evaluations", partitions_def=l2_day_partitions,
                          description=L2_EVALUATIONS_PASS_DESCRIPTION),
        dg.AssetCheckSpec(L2_FILES_MEASURED, asset="l2_evaluations", partitions_def=l2_day_partitions,
                          description=L2_FILES_MEASURED_DESCRIPTION),
    ],
)
def l2_evaluations(context: dg.AssetExecutionContext, rdmt: RDMTConfig, notifications: NotificationsConfig,
                   l2_metrics: L2Batch):
    standards = rdmt.standards()
    out, not_measured = _evaluate_batch(l2_metrics, rdmt, standards)
    day_link, home = _day_link(notifications), rdmt.home_path
    days = list(context.partition_keys)
    summaries = run_day_summaries(out, standards, day_link, days)
    add_partition_metadata(context, {day: day_metadata(summaries[day], home) for day in days})
    n_failed = sum(es.n_failed for sets in out.evaluations.values() for es in sets)
    yield dg.Output(out, metadata={
        "run_batch": out.batch,
        "run_files": len(out.rows),
        "run_failed_evaluations": n_failed,
    })
    # The day as a whole, now that this run's results are stored beside the day's earlier batches.
    # A day without any image gets no verdict (it shows as skipped): there was nothing to check.
    stored = [stored_day_summary(rdmt.database(), day, standards, day_link(day)) for day in days]
    stored = [s for s in stored if s.images]
    asset_key = context.assets_def.key
    passing = [day_pass_check(s, home) for s in stored]
    yield from check_evaluations(context, asset_key, L2_EVALUATIONS_PASS, passing, run_verdict(passing, "days"))
    measured = [day_measured_check(s) for s in stored]
    yield from check_evaluations(context, asset_key, L2_FILES_MEASURED, measured, run_verdict(measured, "days"))
    yield from check_outputs(context)
    failing_images = sorted({name for s in summaries.values() for name in s.failing_images})
    lines = [line for s in summaries.values() for line in s.lines]
    tag_run(context, n_failed, failing_images, sorted(not_measured), lines[0].summary if lines else "")


def _evaluate_batch(batch: L2Batch, rdmt: RDMTConfig, standards) -> tuple[L2Batch, dict[str, list[str]]]:
    """Evaluate every measured image of the batch; the batch with its evaluations, and file -> errors."""
    history = l2_store(rdmt).history()
    database = rdmt.database()
    written_standards = set()
    evaluations: dict[int, list] = {}
    not_measured: dict[str, list[str]] = {}
    row_of = {row.id: row for row in batch.rows}
    # Oldest exposure first, so that the change evaluator compares each image of the
    # batch with its predecessor, which may be in the same batch.
    items = [(file_id, ms) for file_id, sets in batch.metric_sets.items() for ms in sets]
    for file_id, ms in sorted(items, key=lambda item: item[1].info.order_key):
        if not ms.ok:
            not_measured.setdefault(row_of[file_id].filename, []).append(ms.error)
            continue
        block = standards.for_monitor(ms.info.monitor)
        if block.hash not in written_standards:
            database.write_standards(block)
            written_standards.add(block.hash)
        evaluations.setdefault(file_id, []).append(evaluate(ms, block, history))
    return L2Batch(batch.batch, batch.rows, batch.metric_sets, evaluations), not_measured


@dg.asset(
    partitions_def=l2_day_partitions,
    deps=[l2_evaluations],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"html", "markdown"},
    description="The daily L2 page of each day of the run (failures first, per-detector table, trends, the "
                "reference files behind each failure) and, after a reprocessing, what changed.",
)
def l2_reports(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
               notifications: NotificationsConfig) -> dg.MaterializeResult:
    from ...reports.l2_page import write_l2_changes, write_l2_day_pages

    store = l2_store(rdmt)
    batch = batch_of_run(context.run)
    rows = store.batch_files(batch)
    site = rdmt.home_path / REPORTS_FOLDER
    days = sorted({row.observation_day for row in rows if row.observation_day})
    start = time.perf_counter()
    pages, errors = {}, {}
    try:
        pages = write_l2_day_pages(rdmt.database(), days, site)
    except Exception as exc:  # a report problem must not fail the monitoring
        errors["day pages"] = f"{type(exc).__name__}: {exc}"
        context.log.error(f"L2 day pages not written: {errors['day pages']}")
    changes = None
    try:
        changes = write_l2_changes(rdmt.database(), [row.id for row in rows], site)
    except Exception as exc:
        errors["changes"] = f"{type(exc).__name__}: {exc}"
        context.log.error(f"L2 changes page not written: {errors['changes']}")
    add_partition_metadata(context, _pages_by_day(rdmt, notifications, pages, context.partition_keys))
    return dg.MaterializeResult(metadata={
        "run_changes": dg.MetadataValue.path(str(changes)) if changes else "",
        "run_errors": dg.MetadataValue.json(errors),
        "run_seconds": round(time.perf_counter() - start, 2),
    })


def _pages_by_day(rdmt: RDMTConfig, notifications: NotificationsConfig, pages: dict, days) -> dict[str, dict]:
    """Per day written: its page (URL under RDMT_REPORT_BASE_URL, else the local file) and its image counts."""
    from ...reports.l2_queries import day_summaries

    days = [day for day in days if day in pages]
    with rdmt.database().engine.connect() as conn:
        summaries = day_summaries(conn, days)
    link = _day_link(notifications)
    out = {}
    for day in days:
        entry = {"day_page": dg.MetadataValue.url(link(day)) if notifications.report_base_url
                 else dg.MetadataValue.path(str(pages[day]))}
        if day in summaries:
            entry.update(images=summaries[day].n_files, images_failing=summaries[day].n_failing,
                         images_not_measured=summaries[day].n_errors)
        out[day] = entry
    return out


def notifications_asset(kinds: set[str]) -> dg.AssetsDefinition:
    """`l2_notifications` with the kinds of the configured channels."""

    @dg.asset(
        name="l2_notifications",
        partitions_def=l2_day_partitions,
        deps=[l2_reports],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds=kinds or None,
        description="One failure summary per configured channel for the run's L2 images, naming the reference "
                    "files that calibrated each failing image; nothing is sent when nothing failed.",
    )
    def l2_notifications(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                         notifications: NotificationsConfig) -> dg.MaterializeResult:
        store = l2_store(rdmt)
        rows = store.batch_files(batch_of_run(context.run))
        report = notifications.notify_l2(rdmt.database(), [row.id for row in rows], rdmt.home_path,
                                         log=context.log)
        files = report.notification.files if report.notification else ()
        return dg.MaterializeResult(metadata={
            "channels_sent": dg.MetadataValue.json(report.sent),
            "channels_failed": dg.MetadataValue.json(report.failed),
            "skipped": report.skipped or "",
            "run_files_with_failures": len(files),
        })

    return l2_notifications


l2_notifications = notifications_asset(channel_kinds())


def assets(channels=None) -> list:
    """The arm's assets; the notifications asset's kinds name ``channels`` (default: the environment's)."""
    return [l2_images, l2_metrics, l2_evaluations, l2_reports, notifications_asset(channel_kinds(channels))]


ASSETS = [l2_images, l2_metrics, l2_evaluations, l2_reports, l2_notifications]
