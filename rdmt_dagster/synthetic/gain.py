"""Synthetic gain reference files (``GainRefModel``).

Gain in electron/DN of a WFI H4RG-10: one value per readout channel between
1.85 and 2.05 e/DN (the WFI gain is ~1.8-2.2 e/DN), a pixel-to-pixel spread
of 1.5 per cent (pixel capacitance) and 1,500 pixels with no gain value
(half NaN, half 0). These persist between deliveries of one detector
(seeded by its name); each delivery adds a 0.3 per cent measurement error
per pixel.

``anomalous=True`` adds one anomaly: amps 5 and 6 with a gain 25 per cent
too high (`GainAnomaly`), as from a wrong per-channel value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, FRAME_SIZE, N_AMPS
from ._common import save_reference, science_indices, seed

REFTYPE = "gain"


@dataclass(frozen=True)
class GainPopulation:
    """Per-detector gain properties that persist between deliveries."""

    amp_range: tuple[float, float] = (1.85, 2.05)  # electron / DN
    pixel_rms: float = 0.015
    n_no_gain: int = 1_500
    measurement_noise: float = 0.003


@dataclass(frozen=True)
class GainAnomaly:
    """A wrong gain in a group of consecutive amps (numbered 1..32)."""

    first_amp: int = 5
    n_amps: int = 2
    factor: float = 1.25




def gain_arrays(detector: str, delivery: int, population: GainPopulation = GainPopulation(),
                anomaly: GainAnomaly | None = None) -> np.ndarray:
    """Return the gain ``data`` array (electron/DN, float32) of one delivery."""
    p = population
    base = np.random.default_rng(seed("gain", detector))
    noise = np.random.default_rng(seed("gain", detector, delivery))

    amp = np.repeat(base.uniform(*p.amp_range, N_AMPS), AMP_WIDTH).astype(np.float32)
    data = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    data *= np.float32(p.pixel_rms)
    data += np.float32(1.0)
    data *= amp[None, :]
    fresh = noise.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    fresh *= np.float32(p.measurement_noise)
    fresh += np.float32(1.0)
    data *= fresh
    del fresh

    science = science_indices()
    missing = science[base.choice(science.size, size=p.n_no_gain, replace=False)]
    flat = data.reshape(-1)
    flat[missing[: p.n_no_gain // 2]] = np.nan
    flat[missing[p.n_no_gain // 2:]] = 0.0

    if anomaly is not None:
        lo = (anomaly.first_amp - 1) * AMP_WIDTH
        data[:, lo:lo + anomaly.n_amps * AMP_WIDTH] *= np.float32(anomaly.factor)
    return data


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``GainRefModel`` file."""
    data = gain_arrays(detector, delivery, anomaly=GainAnomaly() if anomalous else None)
    return save_reference("GainRefModel", path, detector, delivery, useafter, "gain", {"data": data},
                          anomalous=anomalous)
