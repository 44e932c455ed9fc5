"""Synthetic saturation reference files (``SaturationRefModel``).

A WFI H4RG-10 saturation map in DN, built from parts that persist between
deliveries of one detector (seeded by the detector name): a per-amp level of
55500-61500 DN (the RFP's development files use a flat 55000 DN; real levels
depend on the full well, the bias and the gain of each channel), a gentle
large-scale gradient (+/-300 DN across the detector) and a fixed
pixel-to-pixel scatter of 500 DN. About 0.05 % of the pixels have no
measurable level: they sit at the 16-bit ceiling (65535 DN) and carry
NO_SAT_CHECK (the RFP flags levels >= 64000 DN so), and ~0.02 % are unusable
(DO_NOT_USE, NO_SAT_CHECK, level 0). The reference border carries
REFERENCE_PIXEL and level 65535. Each delivery adds fresh measurement noise
(30 DN per pixel) and a small global drift (20 DN).

``anomalous=True`` adds one anomaly: a 300x300-pixel region whose levels drop
to 80 % (a low-full-well region, `SaturationAnomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, BORDER, FRAME_SIZE, N_AMPS
from ._common import save_reference, seed

REFTYPE = "saturation"
ADC_MAX = 65535.0


@dataclass(frozen=True)
class SaturationPopulation:
    """Per-detector saturation properties that persist between deliveries (DN)."""

    amp_level_range: tuple[float, float] = (55_500.0, 61_500.0)
    gradient: float = 300.0
    pixel_rms: float = 500.0
    no_sat_check: float = 0.0005  # fraction of science pixels at the ADC ceiling
    do_not_use: float = 0.0002
    noise_rms: float = 30.0  # fresh per delivery
    drift_rms: float = 20.0  # fresh per delivery, whole detector


@dataclass(frozen=True)
class SaturationAnomaly:
    """Levels multiplied by ``factor`` in a ``size`` x ``size`` region at (``y0``, ``x0``)."""

    y0: int = 2900
    x0: int = 700
    size: int = 300
    factor: float = 0.8



def saturation_arrays(detector: str, delivery: int, population: SaturationPopulation = SaturationPopulation(),
                      anomaly: SaturationAnomaly | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``data`` (float32, DN) and ``dq`` (uint32) of one delivery, both 4096x4096."""
    from roman_datamodels import dqflags

    flags = dqflags.pixel
    base = np.random.default_rng(seed("saturation", detector))
    noise = np.random.default_rng(seed("saturation", detector, delivery))

    amp_levels = base.uniform(*population.amp_level_range, N_AMPS).astype(np.float32)
    level = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    level *= np.float32(population.pixel_rms)
    level += np.repeat(amp_levels, AMP_WIDTH)[None, :]
    gy, gx = base.uniform(-1.0, 1.0, 2) * population.gradient
    ramp = np.linspace(-1.0, 1.0, FRAME_SIZE, dtype=np.float32)
    level += np.float32(gy) * ramp[:, None]
    level += np.float32(gx) * ramp[None, :]

    n_science = (FRAME_SIZE - 2 * BORDER) ** 2
    flat_index = base.integers(0, FRAME_SIZE - 2 * BORDER, size=(2, int(population.no_sat_check * n_science)))
    ceiling = (flat_index[0] + BORDER, flat_index[1] + BORDER)
    flat_index = base.integers(0, FRAME_SIZE - 2 * BORDER, size=(2, int(population.do_not_use * n_science)))
    unusable = (flat_index[0] + BORDER, flat_index[1] + BORDER)

    fresh = noise.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    fresh *= np.float32(population.noise_rms)
    level += fresh
    level += np.float32(noise.normal(0.0, population.drift_rms))
    if anomaly is not None:
        level[anomaly.y0 : anomaly.y0 + anomaly.size, anomaly.x0 : anomaly.x0 + anomaly.size] *= np.float32(anomaly.factor)
    np.minimum(level, np.float32(ADC_MAX), out=level)

    dq = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint32)
    level[ceiling] = ADC_MAX
    dq[ceiling] |= np.uint32(flags.NO_SAT_CHECK)
    level[unusable] = 0.0
    dq[unusable] |= np.uint32(flags.NO_SAT_CHECK | flags.DO_NOT_USE)
    border = np.ones((FRAME_SIZE, FRAME_SIZE), dtype=bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    level[border] = ADC_MAX
    dq[border] |= np.uint32(flags.REFERENCE_PIXEL)
    return level, dq


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``SaturationRefModel`` file."""
    level, dq = saturation_arrays(detector, delivery, anomaly=SaturationAnomaly() if anomalous else None)
    return save_reference("SaturationRefModel", path, detector, delivery, useafter, "saturation", {"data": level, "dq": dq},
                          anomalous=anomalous)
