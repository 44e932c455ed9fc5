"""The L2 arm's definitions: assets, checks, the batch job and its sensors."""

import dagster as dg

from .assets import ASSETS
from .jobs import monitor_l2_images
from .sensors import SENSORS


def l2_definitions() -> dg.Definitions:
    return dg.Definitions(assets=ASSETS, jobs=[monitor_l2_images], sensors=SENSORS)
