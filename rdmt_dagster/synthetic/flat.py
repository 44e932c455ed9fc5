"""Synthetic flat-field reference files (``FlatRefModel``).

Relative response of a WFI H4RG-10: a smooth large-scale pattern (a tilt
and a bowl of a few per cent plus a low-order ripple), a 2 per cent
pixel-to-pixel QE spread, 33,000 low-QE pixels (0.2 per cent; response
0.05-0.5, flagged LOW_QE) and 1,500 pixels with no flat value (NaN, flagged
NO_FLAT_FIELD and DO_NOT_USE). These persist between deliveries of one
detector (seeded by its name); each delivery adds 0.3 per cent of fresh
noise per pixel (photon noise of the stacked flats). The file is normalised
to a median of 1.

``anomalous=True`` adds one anomaly: a dust spot, a disc of radius 45 pixels
with 25 per cent less response and a soft edge, centred in one super-pixel
(`FlatAnomaly`). Its DQ flags are left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import BORDER, FRAME_SIZE
from ._common import save_reference, science_indices, seed

REFTYPE = "flat"


@dataclass(frozen=True)
class FlatPopulation:
    """Per-detector flat-field properties that persist between deliveries."""

    large_scale: float = 0.03  # amplitude of the smooth pattern
    pixel_rms: float = 0.02
    n_low_qe: int = 33_000
    n_no_flat: int = 1_500
    measurement_noise: float = 0.003


@dataclass(frozen=True)
class FlatAnomaly:
    """A dust spot: a disc of lower response (centre row, column in the 4096 frame)."""

    y: int = 20 * 128 + 64
    x: int = 10 * 128 + 64
    radius: float = 45.0
    edge: float = 5.0
    depth: float = 0.25




def flat_arrays(detector: str, delivery: int, population: FlatPopulation = FlatPopulation(),
                anomaly: FlatAnomaly | None = None, science_area_only: bool = False):
    """Return ``data`` (float32, median 1), ``dq`` (uint32) and ``err`` of one delivery.

    With ``science_area_only`` the arrays are the 4088x4088 science area (as
    in some flat versions); otherwise the 4096x4096 frame with reference
    pixels set to 1 and flagged REFERENCE_PIXEL.
    """
    from roman_datamodels import dqflags

    p = population
    base = np.random.default_rng(seed("flat", detector))
    noise = np.random.default_rng(seed("flat", detector, delivery))

    u = np.linspace(-1.0, 1.0, FRAME_SIZE, dtype=np.float32)
    a = (p.large_scale * base.uniform(-1.0, 1.0, 5)).astype(np.float32)
    phase = base.uniform(0, 2 * np.pi, 2).astype(np.float32)
    along_x = a[0] * u + a[2] * u * u + 0.3 * a[4] * np.cos(3.0 * u + phase[0])
    along_y = a[1] * u + a[3] * u * u + 0.3 * a[4] * np.cos(2.0 * u + phase[1])
    data = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    data *= np.float32(p.pixel_rms)
    data += np.float32(1.0)
    data *= (1.0 + along_y)[:, None]
    data *= (1.0 + along_x)[None, :]
    fresh = noise.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    fresh *= np.float32(p.measurement_noise)
    fresh += np.float32(1.0)
    data *= fresh
    del fresh

    science = science_indices()
    chosen = science[base.choice(science.size, size=p.n_low_qe + p.n_no_flat, replace=False)]
    low_qe, no_flat = chosen[: p.n_low_qe], chosen[p.n_low_qe:]
    flat = data.reshape(-1)
    flat[low_qe] *= base.uniform(0.05, 0.5, low_qe.size).astype(np.float32)

    if anomaly is not None:
        r0, r1 = int(anomaly.y - anomaly.radius - 4 * anomaly.edge), int(anomaly.y + anomaly.radius + 4 * anomaly.edge) + 1
        c0, c1 = int(anomaly.x - anomaly.radius - 4 * anomaly.edge), int(anomaly.x + anomaly.radius + 4 * anomaly.edge) + 1
        yy, xx = np.mgrid[r0:r1, c0:c1]
        r = np.hypot(yy - anomaly.y, xx - anomaly.x)
        profile = 1.0 / (1.0 + np.exp((r - anomaly.radius) / anomaly.edge))
        data[r0:r1, c0:c1] *= (1.0 - anomaly.depth * profile).astype(np.float32)

    sci = data[BORDER:-BORDER, BORDER:-BORDER]
    sci /= np.float32(np.median(sci))
    flat[no_flat] = np.nan

    dq = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint32)
    dq[:BORDER, :] = dq[-BORDER:, :] = dqflags.pixel.REFERENCE_PIXEL
    dq[:, :BORDER] = dq[:, -BORDER:] = dqflags.pixel.REFERENCE_PIXEL
    data[:BORDER, :] = data[-BORDER:, :] = 1.0
    data[:, :BORDER] = data[:, -BORDER:] = 1.0
    dqf = dq.reshape(-1)
    dqf[low_qe] |= dqflags.pixel.LOW_QE
    dqf[no_flat] |= dqflags.pixel.NO_FLAT_FIELD | dqflags.pixel.DO_NOT_USE
    err = np.full((FRAME_SIZE, FRAME_SIZE), np.float32(p.measurement_noise), dtype=np.float32)
    if science_area_only:
        cut = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
        return np.ascontiguousarray(data[cut]), np.ascontiguousarray(dq[cut]), np.ascontiguousarray(err[cut])
    return data, dq, err


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid 4096x4096 ``FlatRefModel`` file."""
    data, dq, err = flat_arrays(detector, delivery, anomaly=FlatAnomaly() if anomalous else None)
    return save_reference("FlatRefModel", path, detector, delivery, useafter, "flat", {"data": data, "dq": dq, "err": err},
                          anomalous=anomalous)
