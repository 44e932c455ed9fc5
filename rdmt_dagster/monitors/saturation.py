"""Saturation reference-file monitor (``SaturationRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``saturation_mean`` and ``saturation_percentile_{1,50,99}`` of ``data``
  (DN): the level above which romancal flags a pixel SATURATED. The median
  follows the full well and the bias/ADC set-up: a change of the detector bias
  (a different reset level) or of the gain chain shifts it for the whole
  detector or for one amp. The 1st percentile is the weak tail: a region of
  low-full-well pixels (a defect, a cosmetic feature, or a bad fit of the
  RFP) drops it first, and those pixels would saturate early and lose
  dynamic range. The 99th percentile and the mean follow the high tail
  (levels near the 16-bit ADC ceiling of 65535 DN are not measurable).
  Pixels flagged with ``parameters.exclude_flags`` (default NO_SAT_CHECK:
  romancal ignores their level) are left out of these statistics.
* ``num_low_saturation_pix``: checked pixels whose level is below
  ``parameters.low_level_dn`` (DN). Directly counts the pixels that would
  saturate early; a low-saturation region shows here at every scale.
* ``num_nonfinite_level_pix``: checked pixels (not excluded) whose level is
  NaN or infinite: romancal cannot compare a ramp with such a threshold, so
  these pixels would never be flagged SATURATED. Must be 0.
* ``num_<flag>_pix`` for each flag of ``parameters.count_flags`` (default
  NO_SAT_CHECK, DO_NOT_USE): pixels excused from the saturation check or
  unusable. Growth means more pixels whose level the RFP could not measure.

Every metric is reported for the detector, the 32 amps and the 1024
super-pixels; the reference border is excluded.
"""

from __future__ import annotations

import numpy as np

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import (
    SCALES,
    RegionReducer,
    ScaleValues,
    count_flags,
    count_true,
    detector_frame,
    science_pixel_counts,
)
from ..science.dq import bad_pixels, dq_frame, flag_bits

LEVEL_UNIT = "DN"
COUNT_UNIT = "pix"


class SaturationMonitor(Monitor):
    name = "saturation"
    model = "SaturationRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        level = self.frame_array(model, "data")
        if level.ndim != 2:
            raise MonitoringError(None, f"'data' has shape {level.shape}; expected a 2-D 4096x4096 array")
        if level.dtype.kind not in "fiu":
            raise MonitoringError(None, f"'data' has type {level.dtype}; expected real numbers (DN)")
        level = detector_frame(level)
        dq = dq_frame(self, model)

        excluded_flags = flag_bits(parameters.get("exclude_flags", ["NO_SAT_CHECK"]), "saturation parameters.exclude_flags")
        exclude_bits = 0
        for bit in excluded_flags.values():
            exclude_bits |= bit
        excluded = bad_pixels(dq, exclude_bits) if exclude_bits else None

        reducer = RegionReducer(level, exclude=excluded)
        self.require_valid(reducer.count, "data (pixels not flagged " + "|".join(excluded_flags) + ")")
        out = [Metric("saturation_mean", LEVEL_UNIT, reducer.mean, "mean saturation level of the checked pixels")]
        for q, values in reducer.percentiles(parameters.get("percentiles", [1, 50, 99])).items():
            out.append(Metric(f"saturation_percentile_{q:g}", LEVEL_UNIT, values,
                              f"{q:g}th percentile saturation level of the checked pixels"))

        low_level = float(parameters.get("low_level_dn", 50000.0))
        low = np.zeros(level.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            np.less(level, low_level, out=low, where=True if excluded is None else ~excluded)
        out.append(Metric("num_low_saturation_pix", COUNT_UNIT, count_true(low),
                          f"checked pixels with a saturation level below {low_level:g} DN"))
        # Checked science pixels that the reducer did not use are the non-finite ones.
        area = science_pixel_counts()
        n_excluded = count_true(excluded) if excluded is not None else None
        nonfinite = ScaleValues(*(area[s] - (0 if n_excluded is None else n_excluded[s]) - reducer.count[s]
                                  for s in SCALES))
        out.append(Metric("num_nonfinite_level_pix", COUNT_UNIT, nonfinite,
                          "checked pixels with a NaN or infinite saturation level"))

        counted = flag_bits(parameters.get("count_flags", ["NO_SAT_CHECK", "DO_NOT_USE"]), "saturation parameters.count_flags")
        names = {f"num_{flag.lower()}_pix": bit for flag, bit in counted.items()}
        for (name, values), flag in zip(count_flags(dq, names).items(), counted):
            out.append(Metric(name, COUNT_UNIT, values, f"science pixels flagged {flag}"))
        return out
