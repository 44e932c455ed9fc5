"""Read-noise reference-file monitor (``ReadnoiseRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``readnoise_mean`` and ``readnoise_percentile_{50,90,99}`` of ``data``
  (DN, the per-read noise of each pixel): the median is the typical read
  noise that sets the faint-source sensitivity, and is the value the
  standards compare with the WFI noise requirement; a rise of the whole
  distribution points to the readout electronics (preamp, ADC, grounding, a warmer ASIC) or to a
  bad input set (illuminated or too few darks). One amp rising alone is a
  channel problem. The 90th and 99th percentiles follow the noisy tail
  (random telegraph and other unstable pixels); the mean reacts to both.
* ``num_noisy_pix`` (pix): science pixels whose read noise exceeds
  ``noisy_multiple`` (a parameter, default 2) times the **detector** median
  of the same file. Using the file's own median makes the count measure the
  population of outliers, not the overall level: a cluster of noisy pixels
  (a new defect, a contaminated region of the input darks) shows in the
  super-pixels and amp that hold it, while an overall noise rise shows in the
  percentiles instead.

Every metric is reported for the detector, the 32 amps and the 1024
super-pixels (`rdmt_dagster.science.scales`); reference pixels and non-finite
values are left out.
"""

from __future__ import annotations

import numpy as np

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import RegionReducer, count_true

DN = "DN"
COUNT_UNIT = "pix"


class ReadnoiseMonitor(Monitor):
    name = "readnoise"
    model = "ReadnoiseRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        data = self.frame_array(model, "data")
        reducer = RegionReducer(data)
        self.require_valid(reducer.count, "data")
        out = [Metric("readnoise_mean", DN, reducer.mean, "mean read noise")]
        wanted = [float(q) for q in parameters.get("percentiles", [50, 90, 99])]
        percentiles = reducer.percentiles(list(dict.fromkeys(wanted + [50.0])))
        for q in wanted:
            out.append(Metric(f"readnoise_percentile_{q:g}", DN, percentiles[q], f"{q:g}th percentile read noise"))
        median = float(percentiles[50.0].detector[0])
        if not np.isfinite(median) or median <= 0:
            raise MonitoringError("", f"'data' has detector median read noise {median}; expected a positive value")
        multiple = float(parameters.get("noisy_multiple", 2.0))
        with np.errstate(invalid="ignore"):
            noisy = np.asarray(data) > multiple * median
        out.append(Metric("num_noisy_pix", COUNT_UNIT, count_true(noisy),
                          f"pixels with read noise above {multiple:g} x the detector median"))
        return out
