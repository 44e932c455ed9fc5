"""Flat-field reference-file monitor (``FlatRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``flat_response_percentile_{1,5,50,95,99}`` (dimensionless): percentiles
  of ``data`` divided by the detector median of the same file, i.e. of the
  relative pixel response. Normalising by the file's own median removes the
  arbitrary scale of a flat, so a change means the *shape* of the response
  changed. Per super-pixel, the 50th percentile maps the large-scale
  response (illumination pattern, QE variation); the 1st and 5th catch new
  low-response features (dust or contamination spots, a scratch, a
  condensation patch), which pull them down locally while the detector
  barely moves; the 95th and 99th catch bright artefacts (a bad input frame,
  a persistence or light-leak residual). Per amp, the 50th percentile shows
  a channel whose response or normalisation is off. At detector scale the
  50th percentile is 1 by construction; the other percentiles there measure
  the overall width of the response distribution.
* ``num_low_qe_pix``, ``num_no_flat_field_pix`` (pix): pixels carrying the
  LOW_QE and NO_FLAT_FIELD DQ flags (configurable with ``count_flags``):
  growth means new low-sensitivity pixels or more pixels the RFP could not
  calibrate.
* ``num_nonfinite_pix`` (pix): science pixels whose flat value is NaN or
  infinite; romancal cannot flat-field those pixels.

The flat may be 4096x4096 or the 4088x4088 science area; both are handled.
Every metric is reported for the detector, the 32 amps and the 1024
super-pixels (`rdmt_dagster.science.scales`); reference pixels and
non-finite values are left out of the percentiles.
"""

from __future__ import annotations

import numpy as np
from roman_datamodels import dqflags

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import RegionReducer, count_flags, count_true, detector_frame

RESPONSE_UNIT = ""
COUNT_UNIT = "pix"


def _embed(array: np.ndarray, fill) -> np.ndarray:
    """The 4096x4096 frame of ``array``, embedded once and in its own dtype.

    (`detector_frame` with a Python ``nan``/``0`` fill promotes float32 to
    float64 and uint32 to int64, which doubles the memory and the sort time.)
    """
    array = np.asarray(array)
    kind_fill = np.array(fill, dtype=array.dtype if array.dtype.kind in "fc" or fill == 0 else np.float64)
    return detector_frame(array, fill=kind_fill)


class FlatMonitor(Monitor):
    name = "flat"
    model = "FlatRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        data = _embed(self.frame_array(model, "data"), np.nan)
        dq = _embed(self.frame_array(model, "dq"), 0)
        reducer = RegionReducer(data)
        self.require_valid(reducer.count, "data")
        wanted = [float(q) for q in parameters.get("percentiles", [1, 5, 50, 95, 99])]
        percentiles = reducer.percentiles(list(dict.fromkeys(wanted + [50.0])))
        median = float(percentiles[50.0].detector[0])
        if not np.isfinite(median) or median <= 0:
            raise MonitoringError("", f"'data' has detector median {median}; a flat needs a positive median")
        out = [
            Metric(f"flat_response_percentile_{q:g}", RESPONSE_UNIT, percentiles[q].map(lambda v: v / median),
                   f"{q:g}th percentile of the flat divided by its detector median")
            for q in wanted
        ]
        flags = {f"num_{flag.lower()}_pix": int(dqflags.pixel[flag])
                 for flag in parameters.get("count_flags", ["LOW_QE", "NO_FLAT_FIELD"])}
        for name, values in count_flags(dq, flags).items():
            out.append(Metric(name, COUNT_UNIT, values, f"pixels flagged {name[4:-4].upper()}"))
        out.append(Metric("num_nonfinite_pix", COUNT_UNIT, count_true(~np.isfinite(data)),
                          "science pixels with a NaN or infinite flat value"))
        return out
