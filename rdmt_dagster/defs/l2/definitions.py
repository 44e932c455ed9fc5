"""The L2 arm's definitions: assets, checks, the batch job and its sensors."""

from collections.abc import Sequence

import dagster as dg

from .assets import assets
from .jobs import monitor_l2_images
from .sensors import SENSORS


def l2_definitions(channels: Sequence[str] | None = None) -> dg.Definitions:
    """The arm's definitions; the notifications asset's kinds name ``channels`` (default: the environment's)."""
    return dg.Definitions(assets=assets(channels), jobs=[monitor_l2_images], sensors=SENSORS)
