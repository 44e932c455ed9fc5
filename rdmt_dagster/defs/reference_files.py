"""The reference-file arm's definitions: assets, checks, the delivery job and its sensors."""

import dagster as dg

from ..assets.reference_files import (
    reference_file_evaluations,
    reference_file_metrics,
    reference_files,
)
from ..assets.reports import reference_file_notifications, reference_file_reports
from ..sensors import SENSORS
from ..sensors.handoff import REFERENCE_FILE_JOB

monitor_reference_files = dg.define_asset_job(
    REFERENCE_FILE_JOB,
    selection=dg.AssetSelection.assets(
        reference_file_metrics, reference_file_evaluations, reference_file_reports, reference_file_notifications
    ),
    description="Measure, evaluate, report and notify a batch of reference files (one delivery per run).",
)


def reference_file_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[reference_files, reference_file_metrics, reference_file_evaluations, reference_file_reports,
                reference_file_notifications],
        jobs=[monitor_reference_files],
        sensors=SENSORS,
    )
