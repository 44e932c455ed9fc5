"""Reference-pixel (IRRC) reference-file monitor (``RefpixRefModel``).

The file holds the frequency-dependent weights of the Improved Reference
Row Correction (IRRC, Rauscher et al.): for each of the 32 science channels,
complex coefficients over the real-FFT frequencies of one channel's read
stream, ``alpha`` for the reference output (amp 33), ``gamma`` for the left
and ``zeta`` for the right reference columns. romancal subtracts
``alpha * F(amp33) + gamma * F(left) + zeta * F(right)`` from each channel's
spectrum. The stream of one channel and frame is 4096 rows x (128 + 12 pad)
pixels = 573440 samples read at 203.125 kHz, so a coefficient array is 32 x
286721 and bin ``k`` is at ``k * 203125 / 573440`` Hz (0.354 Hz steps up to
the 101.6 kHz Nyquist frequency); these are the RFP's IRRC constants.

What it tells an instrument scientist
-------------------------------------
* ``<coef>_abs_mean_<band>`` for each coefficient of
  ``parameters.coefficients`` (alpha, gamma, zeta) and each frequency band of
  ``parameters.bands_hz``: the mean amplitude ``|coef|`` over the band, per
  channel (the ``amp`` scale, channel k = amp k) and averaged over the 32
  channels (``detector``). The low bands carry the 1/f (correlated) noise
  that the correction removes: a drop of the amplitude there means the
  reference streams no longer track the channel's noise (a bias/clocking
  change, a failed or noisy calibration), a jump in one channel means that
  channel's coupling to the references changed. The RFP's weight
  generation zeroes ``gamma`` and ``zeta`` above the row frequency
  (~1.45 kHz; a cosine roll-off from 1.27 kHz), so their high-band amplitude
  must stay ~0: a non-zero value there means the filter was not applied.
  ``alpha`` is used at all frequencies (alternating-column and
  pickup noise). Amplitudes are dimensionless gains (DN per DN).
* ``num_nonfinite_coeffs``: NaN or infinite values among the three arrays
  (per channel; detector = total). One such value spoils the inverse FFT of
  the whole channel, so it must be 0.

A phase change (e.g. a sign flip) keeps ``|coef|`` unchanged and is not seen
by these metrics. There are no spatial super-pixels: ``superpixel`` values
are not defined for this monitor.
"""

from __future__ import annotations

import math

import numpy as np

from ..science.metrics import Metric
from ..science.monitor import Monitor, MonitoringError
from ..science.scales import N_AMPS, ScaleValues

COEFFICIENTS = ("alpha", "gamma", "zeta")
N_FREQUENCIES = 286_721  # 4096 * (128 + 12) / 2 + 1 (RFP irrc_constants COEFF_SHAPE)
PIXEL_RATE_HZ = 203_125.0  # RFP irrc_constants PIXEL_READ_FREQ_HZ
DEFAULT_BANDS = {"0p3_10hz": (0.3, 10.0), "10_100hz": (10.0, 100.0), "100_1200hz": (100.0, 1200.0),
                 "1p5_100khz": (1500.0, 100_000.0)}


def frequency_step(n_frequencies: int, pixel_rate_hz: float) -> float:
    """Spacing (Hz) of the real-FFT bins of a stream of ``2 (n - 1)`` samples."""
    return pixel_rate_hz / (2.0 * (n_frequencies - 1))


def band_bins(bands: dict, n_frequencies: int, pixel_rate_hz: float) -> dict[str, slice]:
    """Band name -> slice of the frequency bins with ``lo <= f <= hi``."""
    step = frequency_step(n_frequencies, pixel_rate_hz)
    out = {}
    for name, edges in bands.items():
        try:
            lo, hi = (float(e) for e in edges)
        except (TypeError, ValueError):
            raise ValueError(f"refpix parameters.bands_hz.{name}: expected [low, high] in Hz, got {edges!r}") from None
        first = max(0, math.ceil(lo / step - 1e-9))
        last = min(n_frequencies - 1, math.floor(hi / step + 1e-9))
        if last < first:
            raise ValueError(f"refpix parameters.bands_hz.{name} = [{lo:g}, {hi:g}] Hz holds no frequency bin "
                             f"(bins are {step:.4g} Hz apart, up to {step * (n_frequencies - 1):.6g} Hz)")
        out[str(name)] = slice(first, last + 1)
    return out


class RefpixMonitor(Monitor):
    name = "refpix"
    model = "RefpixRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        n_freq = int(parameters.get("n_frequencies", N_FREQUENCIES))
        rate = float(parameters.get("pixel_rate_hz", PIXEL_RATE_HZ))
        bins = band_bins(parameters.get("bands_hz", DEFAULT_BANDS), n_freq, rate)
        names = [str(c) for c in parameters.get("coefficients", COEFFICIENTS)]
        unknown = sorted(set(names) - set(COEFFICIENTS))
        if unknown:
            raise ValueError(f"refpix parameters.coefficients: unknown {unknown}; expected some of {list(COEFFICIENTS)}")

        out = []
        nonfinite = np.zeros(N_AMPS, dtype=np.int64)
        for name in COEFFICIENTS:
            array = self._coefficients(model, name, n_freq)
            amplitude = np.abs(array)
            finite = np.isfinite(amplitude)
            n_bad = amplitude.size - np.count_nonzero(finite)
            if n_bad == amplitude.size:
                raise MonitoringError(None, f"'{name}' has no finite coefficients (all NaN or inf)")
            if n_bad:
                nonfinite += (~finite).sum(axis=1)
                amplitude[~finite] = 0.0
            if name not in names:
                continue
            for band, where in bins.items():
                with np.errstate(invalid="ignore", divide="ignore"):
                    if n_bad:
                        n = finite[:, where].sum(axis=1)
                        per_channel = amplitude[:, where].sum(axis=1) / np.where(n > 0, n, np.nan)
                    else:
                        per_channel = amplitude[:, where].mean(axis=1)
                detector = np.array([np.nanmean(per_channel)]) if np.isfinite(per_channel).any() else np.array([np.nan])
                out.append(Metric(f"{name}_abs_mean_{band}", "", ScaleValues(detector, per_channel, None),
                                  f"mean |{name}| over {band} (per channel; detector = mean of the 32 channels)"))
        out.append(Metric("num_nonfinite_coeffs", "", ScaleValues(np.array([nonfinite.sum()]), nonfinite, None),
                          "NaN or infinite values among alpha, gamma and zeta (per channel; detector = total)"))
        return out

    @staticmethod
    def _coefficients(model, name: str, n_freq: int) -> np.ndarray:
        """``model.<name>`` as a (32, n_freq) array, or a `MonitoringError`."""
        try:
            array = np.asarray(getattr(model, name))
        except AttributeError:
            raise MonitoringError(None, f"has no '{name}' array") from None
        expected = (N_AMPS, n_freq)
        if array.shape != expected:
            raise MonitoringError(
                None, f"'{name}' has shape {array.shape}; expected {expected[0]}x{expected[1]} "
                      f"(32 channels x IRRC frequency bins)")
        if array.dtype.kind not in "cfiu":
            raise MonitoringError(None, f"'{name}' has type {array.dtype}; expected complex numbers")
        return array
