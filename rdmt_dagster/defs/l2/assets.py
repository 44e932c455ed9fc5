"""L2 assets: images (by observation day) -> metrics -> evaluations -> reports -> notifications.

A run is one batch: the files the batch sensor claimed under the run's
``rdmt/l2_batch`` tag (one day's partition), measured in parallel worker
processes inside the run. A run without the tag, i.e. a backfill over a
range of days (a data release) or a day materialised by hand, takes every
image observed on those days and measures it again under its next
reprocess number, keeping the earlier results; the report then shows what
changed.
"""

import time
from collections import Counter

import dagster as dg

from ...l2.fetch import L2MeasureTask, measure_object
from ...parallel import process_map
from ...resources import RDMTConfig
from ...resources.notifications import NotificationsConfig
from ...science.measure import MeasureRequest, parameters_of
from ...science.monitor import evaluate
from .io_managers import L2Batch, batch_of_run, l2_store
from .jobs import BATCH_TAG
from .partitions import l2_day_partitions
from .resources import L2Config

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
def l2_metrics(context: dg.AssetExecutionContext, rdmt: RDMTConfig, l2: L2Config):
    store = l2_store(rdmt)
    parameters = parameters_of(rdmt.standards())  # invalid standards fail the run here, listing the problems
    batch, rows = _batch_rows(context, store)
    start = time.perf_counter()
    results = process_map(measure_object, _tasks(rows, rdmt, l2, parameters), rdmt.workers)
    seconds = time.perf_counter() - start
    metric_sets = {row.id: sets for row, sets in zip(rows, results)}
    errors = {}
    for row, sets in zip(rows, results):
        for ms in sets:
            if not ms.ok:
                context.log.error(ms.error)
                errors.setdefault(row.filename, []).append(ms.error)
    measured = Counter(ms.info.monitor for sets in results for ms in sets if ms.ok)
    return dg.Output(
        L2Batch(batch, rows, metric_sets),
        metadata={
            "batch": batch,
            "files": len(rows),
            "days": dg.MetadataValue.json(sorted({r.observation_day or "" for r in rows})),
            "measured": dg.MetadataValue.json(dict(measured)),
            "errors": dg.MetadataValue.json(errors),
            "seconds": round(seconds, 2),
        },
    )


def _severity(standards, monitors) -> dg.AssetCheckSeverity:
    levels = {standards.for_monitor(m).check_severity for m in monitors}
    return dg.AssetCheckSeverity.ERROR if "ERROR" in levels else dg.AssetCheckSeverity.WARN


@dg.asset(
    partitions_def=l2_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="l2_io_manager",
    group_name=GROUP,
    kinds={"parquet", "sql"},
    description="Every L2 metric value against the mission, SOC, change and trend standards "
                "(change and trend: the earlier exposures of the same detector and optical element).",
    check_specs=[
        dg.AssetCheckSpec(L2_EVALUATIONS_PASS, asset="l2_evaluations",
                          description="Every evaluation of the run's L2 images passed."),
        dg.AssetCheckSpec(L2_FILES_MEASURED, asset="l2_evaluations",
                          description="Every L2 image of the run could be read and every monitor ran on it."),
    ],
)
def l2_evaluations(context: dg.AssetExecutionContext, rdmt: RDMTConfig, l2_metrics: L2Batch):
    store = l2_store(rdmt)
    standards = rdmt.standards()
    history = store.history()
    database = rdmt.database()
    written_standards = set()
    evaluations: dict[int, list] = {}
    failing, failing_monitors, not_measured = [], set(), {}
    row_of = {row.id: row for row in l2_metrics.rows}
    # Oldest exposure first, so that the change evaluator compares each image of the
    # batch with its predecessor, which may be in the same batch.
    items = [(file_id, ms) for file_id, sets in l2_metrics.metric_sets.items() for ms in sets]
    for file_id, ms in sorted(items, key=lambda item: item[1].info.order_key):
        if not ms.ok:
            not_measured.setdefault(row_of[file_id].filename, []).append(ms.error)
            continue
        block = standards.for_monitor(ms.info.monitor)
        if block.hash not in written_standards:
            database.write_standards(block)
            written_standards.add(block.hash)
        result = evaluate(ms, block, history)
        evaluations.setdefault(file_id, []).append(result)
        for ev in result.failures:
            failing_monitors.add(ms.info.monitor)
            failing.append({"file": ms.info.filename, "detector": ms.info.detector, "monitor": ms.info.monitor,
                            "metric": f"{ev.scale}_{ev.metric}", "evaluator": ev.evaluator,
                            "failed_regions": ev.n_failed})
    out = L2Batch(l2_metrics.batch, l2_metrics.rows, l2_metrics.metric_sets, evaluations)
    yield dg.Output(out, metadata={
        "batch": l2_metrics.batch,
        "files": len(l2_metrics.rows),
        "failed_evaluations": sum(es.n_failed for sets in evaluations.values() for es in sets),
        "files_with_failures": len({f["file"] for f in failing}),
        "files_not_measured": len(not_measured),
    })
    yield dg.AssetCheckResult(
        check_name=L2_EVALUATIONS_PASS,
        passed=not failing,
        severity=_severity(standards, failing_monitors) if failing_monitors else dg.AssetCheckSeverity.WARN,
        metadata={"n_failing_metrics": len(failing), "failing": dg.MetadataValue.json(failing[:200])},
    )
    yield dg.AssetCheckResult(
        check_name=L2_FILES_MEASURED,
        passed=not not_measured,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"not_measured": dg.MetadataValue.json(not_measured)},
    )


@dg.asset(
    partitions_def=l2_day_partitions,
    deps=[l2_evaluations],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"html", "markdown"},
    description="The daily L2 page of each day of the run (failures first, per-detector table, trends, the "
                "reference files behind each failure) and, after a reprocessing, what changed.",
)
def l2_reports(context: dg.AssetExecutionContext, rdmt: RDMTConfig) -> dg.MaterializeResult:
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
    return dg.MaterializeResult(metadata={
        "pages": dg.MetadataValue.json({day: str(path.relative_to(site)) for day, path in pages.items()}),
        "changes": str(changes.relative_to(site)) if changes else "",
        "site": f"{REPORTS_FOLDER}/ (in the RDMT home)",
        "errors": dg.MetadataValue.json(errors),
        "seconds": round(time.perf_counter() - start, 2),
    })


@dg.asset(
    partitions_def=l2_day_partitions,
    deps=[l2_reports],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"slack", "email", "sns"},
    description="One failure summary per channel for the run's L2 images, naming the reference files that "
                "calibrated each failing image; nothing is sent when nothing failed.",
)
def l2_notifications(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                     notifications: NotificationsConfig) -> dg.MaterializeResult:
    store = l2_store(rdmt)
    rows = store.batch_files(batch_of_run(context.run))
    report = notifications.notify_l2(rdmt.database(), [row.id for row in rows], rdmt.home_path, log=context.log)
    files = report.notification.files if report.notification else ()
    return dg.MaterializeResult(metadata={
        "channels_sent": dg.MetadataValue.json(report.sent),
        "channels_failed": dg.MetadataValue.json(report.failed),
        "skipped": report.skipped or "",
        "files_with_failures": len(files),
    })


ASSETS = [l2_images, l2_metrics, l2_evaluations, l2_reports, l2_notifications]
