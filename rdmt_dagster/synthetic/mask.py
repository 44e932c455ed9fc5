"""Synthetic bad-pixel mask reference files (``MaskRefModel``).

A WFI H4RG-10 mask holds, as fractions of the 4088x4088 science pixels,
~0.1 % DEAD (also DO_NOT_USE, as the RFP's default ``do_not_use_flags``),
~0.2 % HOT, ~0.3 % WARM, ~0.05 % LOW_QE plus one static LOW_QE spot (a disk
of radius 4 pixels, like a small particle), ~0.02 % TELEGRAPH, ~0.02 %
NONLINEAR and ~0.01 % OTHER_BAD_PIXEL; the reference border carries
REFERENCE_PIXEL. That is ~0.7 % bad pixels, in the range of the TVAC2
operability tables (0.5-2 % for most SCAs).

The population persists between deliveries of one detector (seeded by the
detector name). Each delivery re-classifies a few pixels, cumulatively (the
state of delivery ``d`` is that of ``d - 1`` plus one step seeded by detector
and ``d``): 1 % of the HOT and WARM pixels and 2 % of the TELEGRAPH pixels
move to new positions, so that any two consecutive deliveries differ by the
same ~900 newly flagged and ~900 newly cleared pixels.

``anomalous=True`` adds one anomaly: a new cluster of DEAD (and DO_NOT_USE)
pixels, a 48x48 block in one super-pixel (`MaskAnomaly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..science.scales import BORDER, FRAME_SIZE, SCIENCE_SIZE
from ._common import save_reference, seed

REFTYPE = "mask"
N_SCIENCE = SCIENCE_SIZE * SCIENCE_SIZE


@dataclass(frozen=True)
class MaskPopulation:
    """Per-detector defect fractions (of the science pixels) and per-delivery churn."""

    dead: float = 0.001
    hot: float = 0.002
    warm: float = 0.003
    low_qe: float = 0.0005
    telegraph: float = 0.0002
    nonlinear: float = 0.0002
    other_bad: float = 0.0001
    low_qe_spot_radius: float = 4.0
    churn_hot_warm: float = 0.01
    churn_telegraph: float = 0.02


@dataclass(frozen=True)
class MaskAnomaly:
    """A new cluster of DEAD pixels: a ``size`` x ``size`` block at (``y0``, ``x0``)."""

    y0: int = 1420
    x0: int = 2600
    size: int = 48



def _science_index(flat_science: np.ndarray) -> np.ndarray:
    """Index into the science area (0..4088^2-1) -> index into the 4096 frame."""
    y, x = np.divmod(flat_science, SCIENCE_SIZE)
    return (y + BORDER) * FRAME_SIZE + (x + BORDER)


def mask_arrays(detector: str, delivery: int, population: MaskPopulation = MaskPopulation(),
                anomaly: MaskAnomaly | None = None) -> np.ndarray:
    """Return the ``dq`` array (uint32, 4096x4096) of one delivery."""
    from roman_datamodels import dqflags

    flags = dqflags.pixel
    base = np.random.default_rng(seed("mask", detector))
    counts = {name: int(round(getattr(population, name) * N_SCIENCE))
              for name in ("dead", "hot", "warm", "low_qe", "telegraph", "nonlinear", "other_bad")}
    # Distinct positions for every class: draw with replacement, then drop duplicates
    # (sampling without replacement from 16.7M would cost a permutation).
    total = sum(counts.values())
    draws = np.unique(base.integers(0, N_SCIENCE, size=int(total * 1.01) + 100))
    draws = base.permutation(draws)[:total]
    positions, start = {}, 0
    for name, n in counts.items():
        positions[name] = draws[start : start + n].copy()
        start += n

    # Re-classification, cumulative over deliveries 2..delivery.
    for step in range(2, delivery + 1):
        rng = np.random.default_rng(seed("mask", detector, step))
        for name, fraction in (("hot", population.churn_hot_warm), ("warm", population.churn_hot_warm),
                               ("telegraph", population.churn_telegraph)):
            n = int(round(fraction * positions[name].size))
            moved = rng.choice(positions[name].size, size=n, replace=False)
            positions[name][moved] = rng.integers(0, N_SCIENCE, size=n)

    dq = np.zeros(FRAME_SIZE * FRAME_SIZE, dtype=np.uint32)
    bits = {"dead": flags.DEAD | flags.DO_NOT_USE, "hot": flags.HOT, "warm": flags.WARM, "low_qe": flags.LOW_QE,
            "telegraph": flags.TELEGRAPH, "nonlinear": flags.NONLINEAR, "other_bad": flags.OTHER_BAD_PIXEL}
    for name, where in positions.items():
        dq[_science_index(where)] |= np.uint32(bits[name])
    dq = dq.reshape(FRAME_SIZE, FRAME_SIZE)

    # A static LOW_QE spot whose place depends on the detector.
    cy, cx = base.integers(600, FRAME_SIZE - 600, size=2)
    r = int(np.ceil(population.low_qe_spot_radius))
    yy, xx = np.mgrid[cy - r : cy + r + 1, cx - r : cx + r + 1]
    spot = (yy - cy) ** 2 + (xx - cx) ** 2 <= population.low_qe_spot_radius**2
    dq[cy - r : cy + r + 1, cx - r : cx + r + 1][spot] |= np.uint32(flags.LOW_QE)

    if anomaly is not None:
        block = dq[anomaly.y0 : anomaly.y0 + anomaly.size, anomaly.x0 : anomaly.x0 + anomaly.size]
        block |= np.uint32(flags.DEAD | flags.DO_NOT_USE)

    ref = np.uint32(flags.REFERENCE_PIXEL)
    dq[:BORDER, :] |= ref
    dq[-BORDER:, :] |= ref
    dq[BORDER:-BORDER, :BORDER] |= ref
    dq[BORDER:-BORDER, -BORDER:] |= ref
    return dq


def write(path: str | Path, detector: str, delivery: int, useafter: str, anomalous: bool = False) -> Path:
    """Write one schema-valid ``MaskRefModel`` file."""
    dq = mask_arrays(detector, delivery, anomaly=MaskAnomaly() if anomalous else None)
    return save_reference("MaskRefModel", path, detector, delivery, useafter, "mask", {"dq": dq},
                          anomalous=anomalous)
