"""The RDMT code location (``rdmt``): both arms on shared resources; ``dagster dev`` loads ``defs``."""

from __future__ import annotations

import dagster as dg

from .defs.l2.definitions import l2_definitions
from .defs.l2.resources import L2Config
from .defs.reference_files import monitor_reference_files, reference_file_definitions
from .defs.shared import config_from_env, shared_resources
from .resources import RDMTConfig
from .resources.notifications import NotificationsConfig, notifications_from_env
from .sensors.handoff import REFERENCE_FILE_JOB

__all__ = ["REFERENCE_FILE_JOB", "build_definitions", "config_from_env", "defs", "monitor_reference_files"]


def build_definitions(rdmt: RDMTConfig | None = None, notifications: NotificationsConfig | None = None,
                      l2: L2Config | None = None) -> dg.Definitions:
    """The code location's definitions; configured from the environment unless given.

    The notification assets' kinds name the channels of ``notifications``.
    """
    notifications = notifications or notifications_from_env()
    return dg.Definitions.merge(
        reference_file_definitions(notifications.channels),
        l2_definitions(notifications.channels),
        dg.Definitions(resources=shared_resources(rdmt, notifications, l2)),
    )


defs = build_definitions()
