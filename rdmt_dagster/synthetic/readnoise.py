"""Synthetic read-noise reference files (``ReadnoiseRefModel``).

Per-read noise in DN of a WFI H4RG-10: a detector median of 5.0-6.0 DN
(romanisim's default read noise is 5 DN, "the median of the read noise image
from CRDS"), per-amp factors (RMS 3 per cent), a log-normal pixel-to-pixel
spread (sigma 0.08) and a tail of 50,000 noisy pixels (0.3 per cent; random
telegraph and similar) at 2.5-10x the median. These persist between
deliveries of one detector (seeded by its name); each delivery adds a 2 per
cent measurement error per pixel and a 2 per cent churn of the noisy pixels.

``anomalous=True`` adds one anomaly: a 200x100-pixel block of pixels at 4x
their read noise inside amp 20 (`ReadnoiseAnomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, FRAME_SIZE, N_AMPS
from ._common import save_reference, science_indices, seed

REFTYPE = "readnoise"


@dataclass(frozen=True)
class ReadnoisePopulation:
    """Per-detector read-noise properties that persist between deliveries."""

    median_range: tuple[float, float] = (5.0, 6.0)  # DN
    amp_rms: float = 0.03
    sigma: float = 0.08  # log-normal width
    n_noisy: int = 50_000
    noisy_range: tuple[float, float] = (2.5, 10.0)  # multiples of the median
    measurement_noise: float = 0.02
    churn: float = 0.02


@dataclass(frozen=True)
class ReadnoiseAnomaly:
    """A block of pixels with raised read noise (rows y0.., columns x0..)."""

    y0: int = 1500
    x0: int = 2440
    height: int = 200
    width: int = 100
    factor: float = 4.0




def readnoise_arrays(detector: str, delivery: int, population: ReadnoisePopulation = ReadnoisePopulation(),
                     anomaly: ReadnoiseAnomaly | None = None) -> np.ndarray:
    """Return the read-noise ``data`` array (DN, float32) of one delivery."""
    p = population
    base = np.random.default_rng(seed("readnoise", detector))
    noise = np.random.default_rng(seed("readnoise", detector, delivery))

    median = base.uniform(*p.median_range)
    amp = np.repeat(1.0 + p.amp_rms * base.standard_normal(N_AMPS), AMP_WIDTH).astype(np.float32)
    data = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    data *= np.float32(p.sigma)
    np.exp(data, out=data)
    data *= np.float32(median)
    data *= amp[None, :]

    science = science_indices()
    noisy = science[base.choice(science.size, size=p.n_noisy, replace=False)]
    noisy_values = median * np.exp(base.uniform(*np.log(p.noisy_range), noisy.size))
    n_churn = int(round(p.churn * noisy.size))
    if delivery > 1 and n_churn:
        swap = noise.choice(noisy.size, size=n_churn, replace=False)
        noisy[swap] = science[noise.choice(science.size, size=n_churn, replace=False)]
    data.reshape(-1)[noisy] = noisy_values

    fresh = noise.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    fresh *= np.float32(p.measurement_noise)
    fresh += np.float32(1.0)
    data *= fresh
    del fresh

    if anomaly is not None:
        data[anomaly.y0:anomaly.y0 + anomaly.height, anomaly.x0:anomaly.x0 + anomaly.width] *= np.float32(anomaly.factor)
    return data


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``ReadnoiseRefModel`` file."""
    data = readnoise_arrays(detector, delivery, anomaly=ReadnoiseAnomaly() if anomalous else None)
    return save_reference("ReadnoiseRefModel", path, detector, delivery, useafter, "read noise", {"data": data},
                          anomalous=anomalous)
