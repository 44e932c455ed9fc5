"""Classical-linearity reference-file monitor (``LinearityRefModel``).

romancal corrects a raw ramp value ``r`` (DN) to ``sum_k coeffs[k] * r**k``,
so ``coeffs[k]`` has the unit DN**(1-k): coefficient 0 is an offset (DN),
coefficient 1 the linear term (dimensionless, 1 for the RFP's constrained
fits), coefficient 2 the leading quadratic correction of the H4RG's
compressive non-linearity (1/DN, positive), higher ones refine the curve near
full well.

What it tells an instrument scientist
-------------------------------------
* ``coeff<k>_median`` for each ``k`` of ``parameters.robust_coefficients``
  (default 2): the typical correction. A change of the median of
  coefficient 2 means the detector's non-linearity changed (a different bias,
  hence well depth, or a different gain) or the RFP fit changed (more or
  fewer reads, another polynomial order); one amp moving alone points at its
  readout channel or at a failed fit for that channel.
* ``coeff<k>_spread``: half the 15.87-84.13 percentile range (a robust
  1-sigma that ignores the few wild fits), the pixel-to-pixel scatter of the
  correction. It grows when fits become noisy (too few or too faint inputs)
  or when pixel populations split.
* ``coeff<k>_mean`` for each ``k`` of ``parameters.mean_coefficients``
  (default 1): the mean of a coefficient, for the cheap watch of the linear
  term (1 for the RFP's constrained fits; a shift means the reference level
  of the fit moved). Wild fits are flagged NO_LIN_CORR and left out, so the
  mean is not dominated by them.
* ``num_nonfinite_coeff_pix``: science pixels with a NaN or infinite value in
  any coefficient. romancal would propagate it into every corrected ramp of
  that pixel; the RFP replaces failed fits by 0 and flags NO_LIN_CORR, so a
  non-finite value means a broken delivery.
* ``num_<flag>_pix`` for each flag of ``parameters.count_flags`` (default
  NO_LIN_CORR, NONLINEAR): pixels with no linearity correction, and pixels
  too non-linear to be trusted. Growth means more failed fits.

Pixels flagged with ``parameters.exclude_flags`` (default NO_LIN_CORR: their
coefficients are placeholders) and non-finite values are left out of the
coefficient statistics. Every metric is reported for the detector, the 32
amps and the 1024 super-pixels; the reference border is excluded.

Cost per detector: ~0.2 s per robust coefficient (two sorts of 16.7 Mpix),
~0.05 s per mean coefficient; the defaults (robust 2, mean 1) keep a
detector under ~0.4 s.
"""

from __future__ import annotations

import numpy as np

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import (
    FRAME_SIZE,
    N_SUPERPIXELS,
    SCALES,
    RegionReducer,
    ScaleValues,
    count_flags,
    count_true,
    detector_frame,
)
from ..science.dq import bad_pixels, dq_frame, flag_bits

COUNT_UNIT = "pix"
SPREAD_PERCENTILES = (15.865525393145708, 50.0, 84.13447460685429)  # median and +/- 1 sigma of a normal


def coefficient_unit(k: int) -> str:
    """Unit of coefficient ``k`` of a DN -> DN polynomial: DN**(1-k)."""
    power = 1 - int(k)
    if power == 0:
        return ""
    return "DN" if power == 1 else f"DN{power}"


class LinearityMonitor(Monitor):
    name = "linearity"
    model = "LinearityRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        coeffs = self.frame_array(model, "coeffs")
        if coeffs.ndim != 3 or coeffs.shape[0] < 1:
            raise MonitoringError(
                None, f"'coeffs' has shape {coeffs.shape}; expected (n_coefficients, {FRAME_SIZE}, {FRAME_SIZE})")
        if coeffs.dtype.kind not in "fiu":
            raise MonitoringError(None, f"'coeffs' has type {coeffs.dtype}; expected real numbers")
        n_coeffs = coeffs.shape[0]
        robust = [int(k) for k in parameters.get("robust_coefficients", [2])]
        means = [int(k) for k in parameters.get("mean_coefficients", [1])]
        missing = sorted({k for k in robust + means if not 0 <= k < n_coeffs})
        if missing:
            raise MonitoringError(
                None, f"'coeffs' holds {n_coeffs} coefficient(s); the standards ask for coefficient(s) {missing}")
        dq = dq_frame(self, model)

        excluded_flags = flag_bits(parameters.get("exclude_flags", ["NO_LIN_CORR"]), "linearity parameters.exclude_flags")
        exclude_bits = 0
        for bit in excluded_flags.values():
            exclude_bits |= bit
        excluded = bad_pixels(dq, exclude_bits) if exclude_bits else None
        if excluded is not None and not excluded.any():
            excluded = None  # nothing flagged: skip the masking copy

        out = []
        for k in robust:
            reducer = RegionReducer(coeffs[k], exclude=excluded)
            self.require_valid(reducer.count, f"coeffs[{k}]")
            stats = reducer.percentiles(SPREAD_PERCENTILES)
            low, median, high = (stats[float(q)] for q in SPREAD_PERCENTILES)
            unit = coefficient_unit(k)
            out.append(Metric(f"coeff{k}_median", unit, median, f"median of linearity coefficient {k}"))
            spread = ScaleValues(*(None if high[s] is None else (high[s] - low[s]) / 2.0 for s in SCALES))
            out.append(Metric(f"coeff{k}_spread", unit, spread,
                              f"robust pixel-to-pixel spread of linearity coefficient {k} (half the 16-84 % range)"))
        for k in means:
            reducer = RegionReducer(coeffs[k], exclude=excluded)
            self.require_valid(reducer.count, f"coeffs[{k}]")
            out.append(Metric(f"coeff{k}_mean", coefficient_unit(k), reducer.mean, f"mean of linearity coefficient {k}"))

        out.append(Metric("num_nonfinite_coeff_pix", COUNT_UNIT, self._nonfinite_pixels(coeffs),
                          "science pixels with a NaN or infinite linearity coefficient"))

        counted = flag_bits(parameters.get("count_flags", ["NO_LIN_CORR", "NONLINEAR"]), "linearity parameters.count_flags")
        names = {f"num_{flag.lower()}_pix": bit for flag, bit in counted.items()}
        for (name, values), flag in zip(count_flags(dq, names).items(), counted):
            out.append(Metric(name, COUNT_UNIT, values, f"science pixels flagged {flag}"))
        return out

    @staticmethod
    def _nonfinite_pixels(coeffs: np.ndarray) -> ScaleValues:
        """Science pixels with a non-finite value in any coefficient, per region."""
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(coeffs.reshape(-1))
        if np.isfinite(total):
            # A NaN or inf anywhere makes the sum non-finite, so all values are
            # finite (~0.03 s instead of ~0.09 s for the pixel-by-pixel test).
            # A non-finite sum may also be an overflow: then count exactly.
            return ScaleValues.from_superpixel_sums(np.zeros(N_SUPERPIXELS, dtype=np.int64))
        nonfinite = np.zeros(coeffs.shape[-2:], dtype=bool)
        for plane in coeffs:
            nonfinite |= ~np.isfinite(plane)
        return count_true(detector_frame(nonfinite, fill=False))
