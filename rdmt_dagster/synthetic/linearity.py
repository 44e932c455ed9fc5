"""Synthetic classical-linearity reference files (``LinearityRefModel``).

The correction is a cubic in the raw value r (DN): ``c0 + c1 r + c2 r**2 +
c3 r**3`` (4 coefficients; the RFP fits up to 7, but 4 keep a file at ~270 MB
of float32 coefficients). An H4RG-10 loses ~5 % of its signal near full well
(~60000 DN), so ``c2 ~ 8e-7 / DN`` (+2900 DN at 60000 DN) and
``c3 ~ 2.5e-12 / DN**2`` (+540 DN) (illustrative values).

Parts that persist between deliveries of one detector (seeded by the
detector name): per-amp factors (c1: 0.2 %, c2: 4 %), a pixel-to-pixel
pattern (c0: 2 DN, c1: 0.3 %, c2: 8 %, c3: 12 %, one shared normal deviate:
pixels with a shallower well are more non-linear), ~0.05 % pixels whose fit
failed (NO_LIN_CORR, DO_NOT_USE, coefficients 0 as the RFP writes them) and
~0.02 % NONLINEAR pixels. Each delivery adds fresh fit noise (RMS c1:
0.05 %, c2: 1 %, c3: 1.5 %). The reference border carries REFERENCE_PIXEL and the
identity correction (c1 = 1).

``anomalous=True`` adds one anomaly: in one amp the fit went wrong and
coefficients 2 and 3 are 3 times too large (`LinearityAnomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import AMP_WIDTH, BORDER, FRAME_SIZE, N_AMPS
from ._common import save_reference, seed

REFTYPE = "linearity"
N_COEFFS = 4


@dataclass(frozen=True)
class LinearityPopulation:
    """Per-detector linearity properties that persist between deliveries."""

    c2: float = 8e-7  # 1/DN
    c3: float = 2.5e-12  # 1/DN^2
    amp_rms_c1: float = 0.002
    amp_rms_c2: float = 0.04
    pixel_rms_c0: float = 2.0  # DN
    pixel_rms_c1: float = 0.003
    pixel_rms_c2: float = 0.08
    pixel_rms_c3: float = 0.12
    noise_c1: float = 0.0005  # fresh per delivery
    noise_c2: float = 0.01
    noise_c3: float = 0.015
    no_lin_corr: float = 0.0005
    nonlinear: float = 0.0002


@dataclass(frozen=True)
class LinearityAnomaly:
    """Coefficients 2 and 3 multiplied by ``factor`` in one amp (1..32)."""

    amp: int = 21
    factor: float = 3.0



def linearity_arrays(detector: str, delivery: int, population: LinearityPopulation = LinearityPopulation(),
                     anomaly: LinearityAnomaly | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``coeffs`` (float32, 4x4096x4096) and ``dq`` (uint32, 4096x4096) of one delivery."""
    from roman_datamodels import dqflags

    flags = dqflags.pixel
    base = np.random.default_rng(seed("linearity", detector))
    noise = np.random.default_rng(seed("linearity", detector, delivery))
    f32 = np.float32

    amp_c1 = np.repeat((1.0 + population.amp_rms_c1 * base.standard_normal(N_AMPS)).astype(f32), AMP_WIDTH)
    amp_c2 = np.repeat((1.0 + population.amp_rms_c2 * base.standard_normal(N_AMPS)).astype(f32), AMP_WIDTH)
    pattern = base.standard_normal((FRAME_SIZE, FRAME_SIZE), dtype=f32)  # static, shared by all coefficients
    # This delivery's fit noise: uniform with unit variance (half the cost of normal deviates).
    fresh = noise.random((FRAME_SIZE, FRAME_SIZE), dtype=f32)
    fresh -= f32(0.5)
    fresh *= f32(np.sqrt(12.0))

    coeffs = np.empty((N_COEFFS, FRAME_SIZE, FRAME_SIZE), dtype=f32)
    np.multiply(pattern, f32(population.pixel_rms_c0), out=coeffs[0])
    # c1 = amp * (1 + pixel + noise)
    c = coeffs[1]
    np.multiply(pattern, f32(population.pixel_rms_c1), out=c)
    c += f32(1.0)
    c += fresh * f32(population.noise_c1)
    c *= amp_c1[None, :]
    c = coeffs[2]
    np.multiply(pattern, f32(population.pixel_rms_c2), out=c)
    c += f32(1.0)
    c += fresh * f32(population.noise_c2)
    c *= amp_c2[None, :] * f32(population.c2)
    c = coeffs[3]
    np.multiply(pattern, f32(population.pixel_rms_c3), out=c)
    c += f32(1.0)
    c -= fresh * f32(population.noise_c3)
    c *= f32(population.c3)

    if anomaly is not None:
        lo = (anomaly.amp - 1) * AMP_WIDTH
        coeffs[2:4, :, lo : lo + AMP_WIDTH] *= f32(anomaly.factor)

    dq = np.zeros((FRAME_SIZE, FRAME_SIZE), dtype=np.uint32)
    n_science = (FRAME_SIZE - 2 * BORDER) ** 2
    yx = base.integers(BORDER, FRAME_SIZE - BORDER, size=(2, int(population.no_lin_corr * n_science)))
    failed = (yx[0], yx[1])
    yx = base.integers(BORDER, FRAME_SIZE - BORDER, size=(2, int(population.nonlinear * n_science)))
    dq[yx[0], yx[1]] |= np.uint32(flags.NONLINEAR)
    dq[failed] |= np.uint32(flags.NO_LIN_CORR | flags.DO_NOT_USE)
    coeffs[:, failed[0], failed[1]] = 0.0

    border = np.ones((FRAME_SIZE, FRAME_SIZE), dtype=bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    dq[border] |= np.uint32(flags.REFERENCE_PIXEL)
    for k in range(N_COEFFS):
        coeffs[k][border] = 1.0 if k == 1 else 0.0
    return coeffs, dq


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``LinearityRefModel`` file (~340 MB before compression)."""
    coeffs, dq = linearity_arrays(detector, delivery, anomaly=LinearityAnomaly() if anomalous else None)
    return save_reference("LinearityRefModel", path, detector, delivery, useafter, "linearity", {"coeffs": coeffs, "dq": dq}, shape=(N_COEFFS, FRAME_SIZE, FRAME_SIZE),
                          anomalous=anomalous)
