"""Gain reference-file monitor (``GainRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``gain_mean`` and ``gain_percentile_{1,50,99}`` of ``data`` (electron/DN,
  valid pixels only: finite and > 0): the conversion from DN to electrons.
  The gain is set by the readout chain (preamp gain, ADC reference) and by
  the pixel capacitance; it should hardly change between deliveries. A shift
  of one amp (or of a pair of amps sharing electronics) is a channel gain
  change or a wrong per-channel value in the file; a shift of the whole
  detector a change of the readout electronics or of the method. Every
  photometric measurement scales with it, so even a few per cent matter. The
  1st and 99th percentiles follow the pixel-to-pixel spread and outliers
  (a bad fit in a region widens them).
* ``num_no_gain_pix`` (pix): science pixels with no usable gain value
  (non-finite or <= 0). Growth means the RFP could not measure more pixels
  (dead, saturated or unstable in the input flats) or an input problem.

Every metric is reported for the detector, the 32 amps and the 1024
super-pixels (`rdmt_dagster.science.scales`); reference pixels are left out.
"""

from __future__ import annotations

import numpy as np

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import RegionReducer, count_true

GAIN_UNIT = "electron / DN"
COUNT_UNIT = "pix"


class GainMonitor(Monitor):
    name = "gain"
    model = "GainRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        data = self.frame_array(model, "data")
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(data) & (data > 0)
        reducer = RegionReducer(data, exclude=~valid)
        if int(reducer.count.detector[0]) == 0:
            raise MonitoringError("", "'data' has no valid gain value (finite and > 0) in the science area")
        out = [Metric("gain_mean", GAIN_UNIT, reducer.mean, "mean gain of pixels with a valid gain")]
        for q, values in reducer.percentiles(parameters.get("percentiles", [1, 50, 99])).items():
            out.append(Metric(f"gain_percentile_{q:g}", GAIN_UNIT, values, f"{q:g}th percentile gain"))
        out.append(Metric("num_no_gain_pix", COUNT_UNIT, count_true(~valid),
                          "pixels with no gain value (non-finite or <= 0)"))
        return out
