"""Synthetic 1/f (correlated read) noise for L2 images, generated in readout time order.

The 32 channels of a WFI detector are read at once: each row of a channel
takes 128 pixel times plus ``row_pad`` pad pixel times, rows follow each
other (0..4095), and alternate channels read a row in opposite directions
(`rdmt_dagster.monitors.noise_1f.readout_order`). A 1/f^alpha time series
per channel (an independent part) plus one shared by all channels (the
common part), sampled at every pixel time, is laid out on the detector in
that order; the pad samples are read but not stored, so they are dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from ..monitors.noise_1f import frame_from_readout
from ..science.scales import AMP_WIDTH, BORDER, FRAME_SIZE, N_AMPS, SCIENCE_SIZE

PIXEL_TIME = 1.0 / 203_125.0  # s; the SIDECAR ASIC pixel rate of 203.125 kHz


def power_law_series(rng: np.random.Generator, n_series: int, n_samples: int, *, sample_time: float,
                     alpha: float = 1.0) -> np.ndarray:
    """Gaussian time series with power spectrum ``P(f) ~ f^-alpha``, each of unit variance.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_series : int
        Number of independent series.
    n_samples : int
        Samples per series.
    sample_time : float
        Time between samples (s); sets the frequency axis ``f = k / (n_samples sample_time)``.
    alpha : float
        Spectral index (1 for 1/f noise, 0 for white noise).

    Returns
    -------
    ndarray, shape (n_series, n_samples), float32
        Zero mean (no power at f = 0), unit variance per series.
    """
    frequency = fft.rfftfreq(n_samples, d=sample_time)[1:]
    amplitude = (frequency / frequency[0]) ** (-alpha / 2.0)
    spectrum = np.zeros((n_series, frequency.size + 1), dtype=np.complex64)
    spectrum[:, 1:].real = rng.standard_normal((n_series, frequency.size), dtype=np.float32)
    spectrum[:, 1:].imag = rng.standard_normal((n_series, frequency.size), dtype=np.float32)
    spectrum[:, 1:] *= amplitude.astype(np.float32)
    series = fft.irfft(spectrum, n=n_samples, axis=1, workers=1)
    series /= np.sqrt(np.mean(np.square(series, dtype=np.float64), axis=1, keepdims=True)).astype(series.dtype)
    return series.astype(np.float32, copy=False)


def readout_1f_pattern(rng: np.random.Generator, *, amplitude: float, shape=(SCIENCE_SIZE, SCIENCE_SIZE),
                       common_fraction: float = 0.5, pixel_time: float = PIXEL_TIME, row_pad: int = 12,
                       alpha: float = 1.0) -> np.ndarray:
    """An image of 1/f^alpha read noise generated in readout order.

    Parameters
    ----------
    rng : numpy.random.Generator
    amplitude : float
        Per-pixel RMS of the returned image (image units, e.g. DN/s).
    shape : tuple
        ``(4088, 4088)`` for the L2 science area (frame rows and columns
        4..4091) or ``(4096, 4096)`` for the whole detector frame.
    common_fraction : float
        Fraction (0..1) of the variance shared by all 32 channels; the rest
        is independent per channel.
    pixel_time : float
        Time per pixel (s). A pure power law looks the same at any sampling
        rate, so it fixes only the frequency axis; the image does not depend
        on it.
    row_pad : int
        Pad pixel times at the end of each row of a channel: read, not stored.
    alpha : float
        Spectral index of the noise power, ``P(f) ~ f^-alpha``.

    Returns
    -------
    ndarray, float32, shape ``shape``
        Zero-mean pattern whose RMS over the image is ``amplitude``.
    """
    shape = tuple(int(s) for s in shape)
    if shape not in ((SCIENCE_SIZE, SCIENCE_SIZE), (FRAME_SIZE, FRAME_SIZE)):
        raise ValueError(f"shape must be ({SCIENCE_SIZE}, {SCIENCE_SIZE}) or ({FRAME_SIZE}, {FRAME_SIZE}), got {shape}")
    if not 0.0 <= common_fraction <= 1.0:
        raise ValueError(f"common_fraction must be in [0, 1], got {common_fraction}")
    if row_pad < 0:
        raise ValueError(f"row_pad must be >= 0, got {row_pad}")
    row_length = AMP_WIDTH + int(row_pad)
    n_samples = FRAME_SIZE * row_length
    common = power_law_series(rng, 1, n_samples, sample_time=pixel_time, alpha=alpha)
    streams = power_law_series(rng, N_AMPS, n_samples, sample_time=pixel_time, alpha=alpha)
    streams *= np.float32(np.sqrt(1.0 - common_fraction))
    streams += np.float32(np.sqrt(common_fraction)) * common
    channels = streams.reshape(N_AMPS, FRAME_SIZE, row_length)[:, :, :AMP_WIDTH]
    frame = frame_from_readout(channels)
    image = frame[BORDER:-BORDER, BORDER:-BORDER] if shape == (SCIENCE_SIZE, SCIENCE_SIZE) else frame
    image = np.ascontiguousarray(image, dtype=np.float32)
    image -= np.float32(image.mean(dtype=np.float64))
    image *= np.float32(amplitude / np.sqrt(np.mean(np.square(image, dtype=np.float64))))
    return image
