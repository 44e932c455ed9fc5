"""Dark reference-file monitor (``DarkRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``dark_current_mean`` and ``dark_current_percentile_{50,90,95,99}`` of
  ``dark_slope`` (DN/s): the level and the high tail of the dark rate. A
  warmer focal plane lifts the whole distribution; glow or a light leak lifts
  one amp or a group of super-pixels; a bad fit or a bad input ramp shows as
  a jump in the tail percentiles.
* ``num_dead_pix``, ``num_hot_pix``, ``num_warm_pix``: pixels carrying the
  DEAD, HOT and WARM DQ flags. Growth means new defects (radiation damage,
  cosmetic changes) or a change in the classification thresholds of the RFP.

Every metric is reported for the detector, the 32 amps and the 1024
super-pixels (`rdmt_dagster.science.scales`).
"""

from __future__ import annotations

from ..science.dq import flag_bits
from ..science.metrics import Metric
from ..science.monitor import Monitor
from ..science.scales import RegionReducer, count_flags

RATE_UNIT = "DN / s"
COUNT_UNIT = "pix"


class DarkMonitor(Monitor):
    name = "dark"
    model = "DarkRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        rates = self.frame_array(model, "dark_slope")
        dq = self.frame_array(model, "dq")
        reducer = RegionReducer(rates)
        self.require_valid(reducer.count, "dark_slope")
        out = [Metric("dark_current_mean", RATE_UNIT, reducer.mean, "mean dark rate")]
        for q, values in reducer.percentiles(parameters.get("percentiles", [50, 90, 95, 99])).items():
            out.append(Metric(f"dark_current_percentile_{q:g}", RATE_UNIT, values, f"{q:g}th percentile dark rate"))
        bits = flag_bits(parameters.get("count_flags", ["DEAD", "HOT", "WARM"]), "dark parameters.count_flags")
        flags = {f"num_{flag.lower()}_pix": bit for flag, bit in bits.items()}
        for name, values in count_flags(dq, flags).items():
            out.append(Metric(name, COUNT_UNIT, values, f"pixels flagged {name[4:-4].upper()}"))
        return out
