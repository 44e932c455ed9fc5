"""Synthetic reference-pixel (IRRC) reference files (``RefpixRefModel``).

Three complex128 arrays of 32 channels x 286721 frequency bins (bin k at
``k * 203125 / 573440`` Hz), shaped like the RFP's IRRC weights:

* ``alpha`` (reference output): amplitude ``A_ch * (0.35 + 0.6 / (1 + (f /
  2 kHz)**2))`` (~0.95 in the 1/f regime, ~0.35 at high frequency), with a
  per-channel delay phase ``exp(-2 pi i f tau_ch)``;
* ``gamma`` / ``zeta`` (left / right reference columns): amplitude ``G_ch /
  (1 + (f / 800 Hz)**2)``, with ``G`` falling and ``Z`` rising across the
  channels (a channel leans on the nearer reference columns), times the
  RFP's reference-pixel power filter (1 up to bin 3584, a cosine roll-off
  to bin 4096 = the row frequency, 0 above, mirrored near Nyquist).

The smooth part persists between deliveries of one detector (seeded by the
detector name); each delivery adds fresh estimation noise to every non-zero
bin (complex, RMS 0.02 for alpha, 0.01 for gamma and zeta), as a new
calibration from new darks would.

``anomalous=True`` adds one anomaly: the ``alpha`` coefficients of one
channel jump by a factor 1.6 (`RefpixAnomaly`).

A file is ~440 MB of complex128 before compression (gamma and zeta compress
well: they are zero above the row frequency).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..monitors.refpix import N_FREQUENCIES, PIXEL_RATE_HZ, frequency_step
from ..science.scales import N_AMPS
from ._common import save_reference, seed

REFTYPE = "refpix"
FILTER_FLAT = 3584  # bins with weight 1 (RFP: NUM_ROWS - 512)
FILTER_ROLL = 512  # bins of the cosine roll-off


@dataclass(frozen=True)
class RefpixPopulation:
    """Per-detector IRRC properties that persist between deliveries."""

    alpha_channel_rms: float = 0.05
    max_delay_s: float = 2e-6
    gamma_range: tuple[float, float] = (0.6, 0.3)  # channel 1 -> channel 32
    zeta_range: tuple[float, float] = (0.3, 0.6)
    channel_rms: float = 0.05
    noise_alpha: float = 0.02  # fresh per delivery
    noise_refcols: float = 0.01


@dataclass(frozen=True)
class RefpixAnomaly:
    """``alpha`` of one channel (1..32) multiplied by ``factor``."""

    channel: int = 12
    factor: float = 1.6



def reference_pixel_filter(n_frequencies: int = N_FREQUENCIES) -> np.ndarray:
    """The RFP's power filter of the reference-column streams over the real-FFT bins."""
    roll = (np.cos(np.arange(FILTER_ROLL) * np.pi / FILTER_ROLL) + 1.0) / 2.0
    middle = n_frequencies - 1 - 2 * (FILTER_FLAT + FILTER_ROLL)
    half = np.concatenate([np.ones(FILTER_FLAT), roll, np.zeros(middle), roll[::-1], np.ones(FILTER_FLAT)])
    return np.append(half, 1.0)


def _complex_noise(rng, shape, rms) -> np.ndarray:
    out = np.empty(shape, dtype=np.complex128)
    out.real = rng.standard_normal(shape, dtype=np.float32)
    out.imag = rng.standard_normal(shape, dtype=np.float32)
    out *= rms / np.sqrt(2.0)
    return out


def refpix_arrays(detector: str, delivery: int, population: RefpixPopulation = RefpixPopulation(),
                  anomaly: RefpixAnomaly | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``alpha``, ``gamma``, ``zeta`` (complex128, 32 x 286721) of one delivery."""
    base = np.random.default_rng(seed("refpix", detector))
    noise = np.random.default_rng(seed("refpix", detector, delivery))
    n = N_FREQUENCIES
    freq = np.arange(n) * frequency_step(n, PIXEL_RATE_HZ)
    channel = np.arange(N_AMPS) / (N_AMPS - 1)

    amp_alpha = 1.0 + population.alpha_channel_rms * base.standard_normal(N_AMPS)
    delay = base.uniform(0.0, population.max_delay_s, N_AMPS)
    shape_alpha = 0.35 + 0.6 / (1.0 + (freq / 2000.0) ** 2)
    alpha = np.exp((-2j * np.pi) * delay[:, None] * freq[None, :])
    alpha *= (amp_alpha[:, None] * shape_alpha[None, :])
    alpha += _complex_noise(noise, alpha.shape, population.noise_alpha)
    if anomaly is not None:
        alpha[anomaly.channel - 1] *= anomaly.factor

    filt = reference_pixel_filter(n)
    used = np.flatnonzero(filt)  # gamma and zeta are exactly 0 elsewhere
    shape_ref = filt[used] / (1.0 + (freq[used] / 800.0) ** 2)
    out = []
    for (first, last) in (population.gamma_range, population.zeta_range):
        level = (first + (last - first) * channel) * (1.0 + population.channel_rms * base.standard_normal(N_AMPS))
        phase = base.uniform(-0.2, 0.2, N_AMPS)
        coef = np.zeros((N_AMPS, n), dtype=np.complex128)
        coef[:, used] = (level * np.exp(1j * phase))[:, None] * shape_ref[None, :]
        coef[:, used] += _complex_noise(noise, (N_AMPS, used.size), population.noise_refcols) * filt[used][None, :]
        out.append(coef)
    gamma, zeta = out
    return alpha, gamma, zeta


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``RefpixRefModel`` file."""
    alpha, gamma, zeta = refpix_arrays(detector, delivery, anomaly=RefpixAnomaly() if anomalous else None)
    return save_reference("RefpixRefModel", path, detector, delivery, useafter, "IRRC refpix", {"alpha": alpha, "gamma": gamma, "zeta": zeta}, shape=(1, 1),
                          anomalous=anomalous)
