"""Daily partitions of the L2 images, by observation day (UTC).

One partition per day whatever the number of files (~13,000 a day at the
survey peak): per-file state lives in the ``l2_file`` table. The range runs
from ``RDMT_L2_FIRST_DAY`` (default 2026-09-01, before launch) to
``RDMT_L2_DAYS_AHEAD`` days after today (default 150): until launch most
images are simulations observed months ahead (romanisim's 2027 bulge
season), and they need a partition too. 150 days keep the set within 2,000
keys per asset over five years of operations (1,827 + 150). Both are read when the code
location loads, as a partition set must be fixed then.
"""

import os
from datetime import date

import dagster as dg

FIRST_DAY = "2026-09-01"
DAYS_AHEAD = 150


def _first_day() -> str:
    value = os.environ.get("RDMT_L2_FIRST_DAY", FIRST_DAY)
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return FIRST_DAY


def _days_ahead() -> int:
    try:
        return max(0, int(os.environ.get("RDMT_L2_DAYS_AHEAD", DAYS_AHEAD)))
    except ValueError:
        return DAYS_AHEAD


l2_day_partitions = dg.DailyPartitionsDefinition(
    start_date=_first_day(), end_offset=_days_ahead() + 1, timezone="UTC", fmt="%Y-%m-%d")


def is_partition(day: str) -> bool:
    """True when ``day`` (``YYYY-MM-DD``) is one of the partitions today."""
    first = l2_day_partitions.start.date().isoformat()
    last = l2_day_partitions.get_last_partition_key()
    return first <= day <= (last or first)
