"""The RDMT code location: ``dagster dev`` loads ``defs`` from here."""

from __future__ import annotations

import dagster as dg

from .assets.reference_files import (
    reference_file_evaluations,
    reference_file_metrics,
    reference_files,
)
from .assets.reports import reference_file_notifications, reference_file_reports
from .resources import RDMTConfig, env_or
from .resources.io_managers import EvaluationsIOManager, MetricsIOManager
from .resources.notifications import NotificationsConfig, notifications_from_env
from .sensors import SENSORS

REFERENCE_FILE_JOB = "monitor_reference_files"

monitor_reference_files = dg.define_asset_job(
    REFERENCE_FILE_JOB,
    selection=dg.AssetSelection.assets(
        reference_file_metrics, reference_file_evaluations, reference_file_reports, reference_file_notifications
    ),
    description="Measure, evaluate, report and notify a batch of reference files (one delivery per run).",
)


def config_from_env() -> RDMTConfig:
    """`RDMTConfig` from ``RDMT_HOME``, ``RDMT_DATABASE_URL`` and ``RDMT_STANDARDS``."""
    return RDMTConfig(
        home=env_or("RDMT_HOME", "rdmt_data"),
        database_url=env_or("RDMT_DATABASE_URL", None),
        standards_file=env_or("RDMT_STANDARDS", None),
    )


def build_definitions(rdmt: RDMTConfig | None = None, notifications: NotificationsConfig | None = None) -> dg.Definitions:
    """The code location's definitions; configured from the environment unless given."""
    rdmt = rdmt or config_from_env()
    return dg.Definitions(
        assets=[
            reference_files,
            reference_file_metrics,
            reference_file_evaluations,
            reference_file_reports,
            reference_file_notifications,
        ],
        jobs=[monitor_reference_files],
        sensors=SENSORS,
        resources={
            "rdmt": rdmt,
            "notifications": notifications or notifications_from_env(),
            "metrics_io_manager": MetricsIOManager(rdmt=rdmt),
            "evaluations_io_manager": EvaluationsIOManager(rdmt=rdmt),
        },
    )


defs = build_definitions()
