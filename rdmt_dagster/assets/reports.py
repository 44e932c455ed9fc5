"""Report and notification assets of the reference files (one run per delivery).

``reference_file_reports`` writes the public report of every file of the run
and the index of ``<home>/reports/``; ``reference_file_notifications`` then
sends ONE failure summary per channel for the whole run (nothing when no
file failed). Neither lets a report or a channel error fail the monitoring:
errors are logged and shown in the materialisation metadata.
"""


import time

import dagster as dg

from ..reports import write_reports
from ..resources import RDMTConfig
from ..resources.notifications import NotificationsConfig
from .reference_files import GROUP, reference_file_evaluations, reference_file_partitions

REPORTS_FOLDER = "reports"


@dg.asset(
    partitions_def=reference_file_partitions,
    deps=[reference_file_evaluations],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"html", "markdown"},
    description="Public Markdown/HTML report of each reference file (failures, detector and amp tables, "
                "super-pixel maps, trend plots) and the index of the report site.",
)
def reference_file_reports(context: dg.AssetExecutionContext, rdmt: RDMTConfig) -> dg.MaterializeResult:
    keys = list(context.partition_keys)
    site = rdmt.home_path / REPORTS_FOLDER
    start = time.perf_counter()
    reports, errors = write_reports(rdmt.database(), keys, site, log=context.log, workers=rdmt.workers)
    seconds = time.perf_counter() - start
    per_file = {name: round(p.seconds, 3) for name, p in reports.items()}
    context.log.info(f"{len(reports)} reports written in {seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={
            "reports": dg.MetadataValue.json({name: p.relative_html for name, p in reports.items()}),
            "index": "index.html",
            "site": f"{REPORTS_FOLDER}/ (in the RDMT home)",
            "files_with_failures": sum(1 for p in reports.values() if p.n_failed),
            "errors": dg.MetadataValue.json(errors),
            "seconds": round(seconds, 2),
            "max_seconds_per_file": max(per_file.values(), default=0.0),
        }
    )


@dg.asset(
    partitions_def=reference_file_partitions,
    deps=[reference_file_reports],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"slack", "email", "sns"},
    description="One failure summary per channel (log, Slack, e-mail, SNS) for the run's reference files; "
                "nothing is sent when no file failed.",
)
def reference_file_notifications(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                                 notifications: NotificationsConfig) -> dg.MaterializeResult:
    keys = list(context.partition_keys)
    report = notifications.notify(rdmt.database(), keys, rdmt.home_path, log=context.log)
    files = report.notification.files if report.notification else ()
    return dg.MaterializeResult(
        metadata={
            "channels_sent": dg.MetadataValue.json(report.sent),
            "channels_failed": dg.MetadataValue.json(report.failed),
            "attempts": dg.MetadataValue.json(report.attempts),
            "skipped": report.skipped or "",
            "files_with_failures": len(files),
            "failed_evaluations": sum(f.n_failed for f in files),
        }
    )
