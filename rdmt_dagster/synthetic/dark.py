"""Synthetic dark reference files (``DarkRefModel``).

A detector keeps its pixel population from one delivery to the next (the
same hot, warm and dead pixels, the same per-amp offsets), as real detectors
do; each delivery adds fresh measurement noise and a little churn of defects.
The dark-rate distribution follows Roman-STScI-000704 Table 1 (median
0.005 DN/s, 95th percentile ~0.0066, 99th ~0.0073: a log-normal with
sigma 0.165) and its defect counts (~16.9k dead, ~33.6k hot, ~50.4k warm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, BORDER, FRAME_SIZE, N_AMPS
from ._common import save_reference, seed

@dataclass(frozen=True)
class DarkPopulation:
    """Per-detector dark properties that persist between deliveries."""

    median_rate: float = 0.005  # DN/s
    sigma: float = 0.165  # log-normal width
    n_dead: int = 16_891
    n_hot: int = 33_636
    n_warm: int = 50_393
    amp_offset_rms: float = 0.03  # fractional per-amp rate offset
    measurement_noise: float = 0.02  # fractional per-pixel noise of one delivery
    churn: float = 0.01  # fraction of hot/warm pixels that change between deliveries


@dataclass(frozen=True)
class DarkAnomaly:
    """Elevated dark current in a block of amps (glow, light leak, warm focal plane)."""

    first_amp: int = 17
    n_amps: int = 2
    factor: float = 4.0


def dark_arrays(detector: str, delivery: int, population: DarkPopulation = DarkPopulation(),
                anomaly: DarkAnomaly | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``dark_slope`` (DN/s), ``dark_slope_error`` and ``dq`` for one delivery.

    Reference pixels get rate 0 and the REFERENCE_PIXEL flag; dead pixels rate
    ~0 and DEAD; hot pixels 0.25-2.5 DN/s and HOT; warm 0.025-0.25 DN/s and WARM.
    """
    from roman_datamodels import dqflags

    base = np.random.default_rng(seed("dark", detector))
    noise = np.random.default_rng(seed("dark", detector, delivery))
    n_pix = FRAME_SIZE * FRAME_SIZE

    rate = base.standard_normal(n_pix, dtype=np.float32)
    rate *= np.float32(population.sigma)
    rate += np.float32(np.log(population.median_rate))
    np.exp(rate, out=rate)
    rate = rate.reshape(FRAME_SIZE, FRAME_SIZE)
    offsets = 1.0 + population.amp_offset_rms * base.standard_normal(N_AMPS)
    rate *= np.repeat(offsets.astype(np.float32), AMP_WIDTH)[None, :]

    sci = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=bool)
    sci[BORDER:-BORDER, BORDER:-BORDER] = True
    sci_index = np.flatnonzero(sci)
    n_def = population.n_dead + population.n_hot + population.n_warm
    defects = sci_index[base.choice(sci_index.size, size=n_def, replace=False)]
    dead = defects[: population.n_dead]
    hot = defects[population.n_dead : population.n_dead + population.n_hot]
    warm = defects[population.n_dead + population.n_hot :]
    hot_rate = base.uniform(np.log(0.25), np.log(2.5), hot.size)
    warm_rate = base.uniform(np.log(0.025), np.log(0.25), warm.size)

    # A few defects appear or heal between deliveries.
    n_churn = int(population.churn * hot.size)
    if delivery > 1 and n_churn:
        swap = noise.choice(hot.size, size=n_churn, replace=False)
        hot = hot.copy()
        hot[swap] = sci_index[noise.choice(sci_index.size, size=n_churn, replace=False)]

    flat = rate.reshape(-1)
    flat *= 1.0 + np.float32(population.measurement_noise) * noise.standard_normal(n_pix, dtype=np.float32)
    flat[warm] = np.exp(warm_rate)
    flat[hot] = np.exp(hot_rate)
    flat[dead] = np.abs(noise.normal(0.0, 1e-4, dead.size))

    if anomaly is not None:
        lo = (anomaly.first_amp - 1) * AMP_WIDTH
        rate[:, lo : lo + anomaly.n_amps * AMP_WIDTH] *= np.float32(anomaly.factor)

    rate[~sci] = 0.0
    error = (np.float32(0.05) * rate + np.float32(2e-4)).astype(np.float32)

    dq = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint32)
    dq[~sci] = dqflags.pixel.REFERENCE_PIXEL
    dqf = dq.reshape(-1)
    dqf[dead] |= dqflags.pixel.DEAD | dqflags.pixel.DO_NOT_USE
    dqf[hot] |= dqflags.pixel.HOT
    dqf[warm] |= dqflags.pixel.WARM
    return rate, error, dq


def write_dark(path: str | Path, detector: str, delivery: int, useafter: str,
               anomaly: DarkAnomaly | None = None, population: DarkPopulation = DarkPopulation()) -> Path:
    """Write one schema-valid ``DarkRefModel`` file (lz4-compressed, as roman_datamodels saves)."""
    rate, error, dq = dark_arrays(detector, delivery, population, anomaly)
    arrays = {"dark_slope": rate, "dark_slope_error": error, "dq": dq}
    return save_reference("DarkRefModel", path, detector, delivery, useafter, "dark", arrays,
                          anomalous=anomaly is not None)


REFTYPE = "dark"


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """The common synthetic-module interface: the anomaly is a 4x dark-current excess in amps 17-18."""
    return write_dark(path, detector, delivery, useafter, DarkAnomaly() if anomalous else None)
