"""The reference-file arm's definitions: assets, checks, the delivery job and its sensors."""

from collections.abc import Sequence

import dagster as dg

from ..assets.reference_files import (
    reference_file_evaluations,
    reference_file_metrics,
    reference_files,
)
from ..assets.reports import channel_kinds, notifications_asset, reference_file_reports
from ..sensors import SENSORS
from ..sensors.handoff import REFERENCE_FILE_JOB

monitor_reference_files = dg.define_asset_job(
    REFERENCE_FILE_JOB,
    selection=dg.AssetSelection.assets(
        reference_file_metrics, reference_file_evaluations, reference_file_reports,
        dg.AssetKey("reference_file_notifications"),
    ),
    description="Measure, evaluate, report and notify a batch of reference files (one delivery per run).",
    # The production instance (deploy/dagster-postgres.yaml) limits concurrent runs per arm by this tag.
    run_tags={"rdmt/arm": "reference"},
)


def reference_file_definitions(channels: Sequence[str] | None = None) -> dg.Definitions:
    """The arm's definitions; the notifications asset's kinds name ``channels`` (default: the environment's)."""
    return dg.Definitions(
        assets=[reference_files, reference_file_metrics, reference_file_evaluations, reference_file_reports,
                notifications_asset(channel_kinds(channels))],
        jobs=[monitor_reference_files],
        sensors=SENSORS,
    )
