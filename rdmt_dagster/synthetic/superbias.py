"""Synthetic superbias reference files (``SuperbiasRefModel``).

A WFI H4RG-10 bias frame is built from parts that persist between
deliveries of one detector (seeded by the detector name): a bias level of
11000-16000 DN, per-amp offsets (RMS 300 DN), an even/odd column offset of
2-6 DN per amp whose sign alternates from amp to amp (alternate channels read
in opposite directions), column offsets (RMS 3 DN), row offsets (RMS 1.5 DN)
plus a frame-start transient (20 DN decaying over ~300 rows), a fixed
pixel-to-pixel pattern (RMS 50 DN), and a few thousand unreliable
(UNRELIABLE_BIAS, wild values) and unusable (DO_NOT_USE, low values) pixels.
Each delivery adds fresh noise (2 DN per pixel), a small global drift (2 DN)
and a 1 per cent churn of the unreliable pixels.

``anomalous=True`` adds one anomaly: a bias jump of +250 DN in one amp
(`SuperbiasAnomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, BORDER, FRAME_SIZE, N_AMPS
from ._common import save_reference, science_indices, seed

REFTYPE = "superbias"


@dataclass(frozen=True)
class SuperbiasPopulation:
    """Per-detector bias properties that persist between deliveries (DN)."""

    level_range: tuple[float, float] = (11_000.0, 16_000.0)
    amp_offset_rms: float = 300.0
    even_odd_range: tuple[float, float] = (2.0, 6.0)
    column_rms: float = 3.0
    row_rms: float = 1.5
    transient: float = 20.0
    transient_rows: float = 300.0
    pixel_rms: float = 50.0
    noise_rms: float = 2.0  # fresh per delivery
    drift_rms: float = 2.0  # fresh per delivery, whole detector
    n_unreliable: int = 8_000
    n_do_not_use: int = 3_000
    churn: float = 0.01


@dataclass(frozen=True)
class SuperbiasAnomaly:
    """An offset jump in one readout channel (amp numbered 1..32)."""

    amp: int = 9
    jump: float = 250.0




def superbias_arrays(detector: str, delivery: int, population: SuperbiasPopulation = SuperbiasPopulation(),
                     anomaly: SuperbiasAnomaly | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``data`` (DN, float32), ``dq`` (uint32) and ``err`` (DN) of one delivery."""
    from roman_datamodels import dqflags

    p = population
    base = np.random.default_rng(seed("superbias", detector))
    noise = np.random.default_rng(seed("superbias", detector, delivery))

    level = base.uniform(*p.level_range)
    amp_offsets = np.repeat(base.normal(0.0, p.amp_offset_rms, N_AMPS), AMP_WIDTH)
    even_odd = np.repeat(base.uniform(*p.even_odd_range, N_AMPS) * (-1.0) ** np.arange(N_AMPS), AMP_WIDTH)
    parity = np.where(np.arange(FRAME_SIZE) % 2 == 0, 0.5, -0.5)
    columns = level + amp_offsets + even_odd * parity + base.normal(0.0, p.column_rms, FRAME_SIZE)
    rows = base.normal(0.0, p.row_rms, FRAME_SIZE) + p.transient * np.exp(-np.arange(FRAME_SIZE) / p.transient_rows)

    data = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    data *= np.float32(p.pixel_rms)
    data += columns.astype(np.float32)[None, :]
    data += rows.astype(np.float32)[:, None]
    fresh = noise.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    fresh *= np.float32(p.noise_rms)
    fresh += np.float32(noise.normal(0.0, p.drift_rms))
    data += fresh
    del fresh

    science = science_indices()
    chosen = science[base.choice(science.size, size=p.n_unreliable + p.n_do_not_use, replace=False)]
    unreliable, do_not_use = chosen[: p.n_unreliable].copy(), chosen[p.n_unreliable:]
    unreliable_values = base.uniform(0.3, 1.7, unreliable.size) * level
    n_churn = int(round(p.churn * unreliable.size))
    if delivery > 1 and n_churn:
        swap = noise.choice(unreliable.size, size=n_churn, replace=False)
        unreliable[swap] = science[noise.choice(science.size, size=n_churn, replace=False)]
    flat = data.reshape(-1)
    flat[unreliable] = unreliable_values
    flat[do_not_use] = base.uniform(0.0, 2_000.0, do_not_use.size)

    if anomaly is not None:
        lo = (anomaly.amp - 1) * AMP_WIDTH
        data[:, lo:lo + AMP_WIDTH] += np.float32(anomaly.jump)

    dq = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint32)
    dq[:BORDER, :] = dq[-BORDER:, :] = dqflags.pixel.REFERENCE_PIXEL
    dq[:, :BORDER] = dq[:, -BORDER:] = dqflags.pixel.REFERENCE_PIXEL
    dqf = dq.reshape(-1)
    dqf[unreliable] |= dqflags.pixel.UNRELIABLE_BIAS
    dqf[do_not_use] |= dqflags.pixel.DO_NOT_USE
    err = np.full((FRAME_SIZE, FRAME_SIZE), np.float32(p.noise_rms), dtype=np.float32)
    return data, dq, err


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``SuperbiasRefModel`` file."""
    data, dq, err = superbias_arrays(detector, delivery, anomaly=SuperbiasAnomaly() if anomalous else None)
    return save_reference("SuperbiasRefModel", path, detector, delivery, useafter, "superbias", {"data": data, "dq": dq, "err": err},
                          anomalous=anomalous)
