"""Report and notification assets of the reference files (one run per delivery).

``reference_file_reports`` writes the public report of every file of the run
and the index of ``<home>/reports/``; ``reference_file_notifications`` then
sends ONE failure summary per channel for the whole run (nothing when no
file failed). Neither lets a report or a channel error fail the monitoring:
errors are logged and shown in the materialisation metadata.

Each partition's materialisation links to its own report (a URL under
``RDMT_REPORT_BASE_URL``, else the local file) and says whether the file's
failures went into the run's message; what is true of the whole run (the
index, the channels) is under ``run_*`` keys.
"""

import time
from collections.abc import Sequence

import dagster as dg

from ..notify import CHANNELS
from ..reports import write_reports
from ..resources import RDMTConfig
from ..resources.notifications import NotificationsConfig, notifications_from_env
from .partitioned import add_partition_metadata
from .reference_files import GROUP, reference_file_evaluations, reference_file_partitions

REPORTS_FOLDER = "reports"


def channel_kinds(channels: Sequence[str] | None = None) -> set[str]:
    """The asset kinds of a notifications asset: the configured channels (``RDMT_NOTIFY_CHANNELS`` by default).

    An unknown name is left out: the resource reports it when it sends.
    """
    channels = notifications_from_env().channels if channels is None else channels
    return {name for name in (c.strip().lower() for c in channels) if name in CHANNELS}


def report_link_metadata(notifications: NotificationsConfig, home, filename: str, html_path) -> dg.MetadataValue:
    """A file's report: its URL under ``report_base_url`` when set, else the path of the local HTML file."""
    if notifications.report_base_url:
        return dg.MetadataValue.url(notifications.report_link(filename))
    return dg.MetadataValue.path(str(html_path))


@dg.asset(
    partitions_def=reference_file_partitions,
    deps=[reference_file_evaluations],
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    kinds={"html", "markdown"},
    description="Public Markdown/HTML report of each reference file (failures, detector and amp tables, "
                "super-pixel maps, trend plots) and the index of the report site.",
)
def reference_file_reports(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                           notifications: NotificationsConfig) -> dg.MaterializeResult:
    keys = list(context.partition_keys)
    site = rdmt.home_path / REPORTS_FOLDER
    start = time.perf_counter()
    reports, errors = write_reports(rdmt.database(), keys, site, log=context.log, workers=rdmt.workers)
    seconds = time.perf_counter() - start
    context.log.info(f"{len(reports)} reports written in {seconds:.1f} s")
    per_file = {name: {"report": report_link_metadata(notifications, rdmt.home_path, name, p.html),
                       "report_markdown": dg.MetadataValue.path(str(p.markdown)),
                       "failed_evaluations": p.n_failed,
                       "seconds": round(p.seconds, 3)}
                for name, p in reports.items()}
    per_file.update({name: {"error": error} for name, error in errors.items()})
    add_partition_metadata(context, per_file)
    return dg.MaterializeResult(
        metadata={
            "run_index": dg.MetadataValue.path(str(site / "index.html")),
            "run_reports": len(reports),
            "run_files_with_failures": sum(1 for p in reports.values() if p.n_failed),
            "run_errors": dg.MetadataValue.json(errors),
            "run_seconds": round(seconds, 2),
        }
    )


def notifications_asset(kinds: set[str]) -> dg.AssetsDefinition:
    """`reference_file_notifications` with the kinds of the configured channels."""

    @dg.asset(
        name="reference_file_notifications",
        partitions_def=reference_file_partitions,
        deps=[reference_file_reports],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds=kinds or None,
        description="One failure summary per configured channel (log, Slack, e-mail, SNS) for the run's "
                    "reference files; nothing is sent when no file failed.",
    )
    def reference_file_notifications(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                                     notifications: NotificationsConfig) -> dg.MaterializeResult:
        keys = list(context.partition_keys)
        report = notifications.notify(rdmt.database(), keys, rdmt.home_path, log=context.log)
        files = report.notification.files if report.notification else ()
        notified = {f.filename: f for f in files}
        add_partition_metadata(context, {
            key: {"in_message": key in notified,
                  "failed_evaluations_notified": notified[key].n_failed if key in notified else 0}
            for key in keys})
        return dg.MaterializeResult(
            metadata={
                "channels_sent": dg.MetadataValue.json(report.sent),
                "channels_failed": dg.MetadataValue.json(report.failed),
                "attempts": dg.MetadataValue.json(report.attempts),
                "skipped": report.skipped or "",
                "run_files_with_failures": len(files),
                "run_failed_evaluations": sum(f.n_failed for f in files),
            }
        )

    return reference_file_notifications


reference_file_notifications = notifications_asset(channel_kinds())
