"""Data-quality (DQ) flag helpers shared by the monitors (``roman_datamodels.dqflags.pixel``)."""

from __future__ import annotations

import numpy as np
from roman_datamodels import dqflags

from .monitor import Monitor, MonitoringError
from .scales import detector_frame


def flag_bits(names, where: str) -> dict[str, int]:
    """DQ flag name -> bit value, with a clear error for unknown names."""
    out = {}
    for name in names:
        key = str(name).upper()
        try:
            out[key] = int(dqflags.pixel[key])
        except KeyError:
            known = ", ".join(f.name for f in dqflags.pixel)
            raise ValueError(f"unknown DQ flag {name!r} in {where}; known flags: {known}") from None
    return out


def dq_frame(monitor: Monitor, model, attribute: str = "dq") -> np.ndarray:
    """A 2-D unsigned-integer DQ array in the 4096x4096 frame, or a `MonitoringError`."""
    dq = monitor.frame_array(model, attribute)
    if dq.ndim != 2:
        raise MonitoringError(None, f"'{attribute}' has shape {dq.shape}; expected a 2-D 4096x4096 array")
    if dq.dtype.kind not in "ui":
        raise MonitoringError(None, f"'{attribute}' has type {dq.dtype}; expected unsigned integers")
    return detector_frame(dq, fill=0)


def bad_pixels(dq: np.ndarray, bits: int) -> np.ndarray:
    """Boolean frame: any of ``bits`` set."""
    return np.bitwise_and(dq, np.asarray(bits, dtype=dq.dtype)) != 0
