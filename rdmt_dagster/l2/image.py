"""The L2 image as the L2 monitors see it.

An L2 slope image (``ImageModel``, ``*_cal.asdf``) covers the 4088x4088
science area of one detector; its pixel (row, col) sits at (row + 4, col + 4)
of the 4096x4096 detector frame, so amp *k* (frame columns 128(k-1) ..
128k-1) holds image columns 128(k-1)-4 .. 128k-5 (amps 1 and 32 are 124
columns wide here).

Several monitors run on one file; `L2Image.shared` lets them share work
(the star measurements of the astrometry and PSF monitors) without knowing
about each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..science.scales import BORDER, SCIENCE_SIZE


@dataclass
class L2Image:
    """Arrays, metadata and WCS of one L2 image, plus the reference catalog if one was given.

    Attributes
    ----------
    data : ndarray
        ``float32`` slope image (DN/s or MJy/sr), 4088x4088 for a full detector.
    dq : ndarray
        ``uint32`` DQ flags (`roman_datamodels.dqflags.pixel`), same shape.
    path : str
        Where the file was read from (for error messages).
    meta : object or None
        ``model.meta`` of the file.
    wcs : gwcs.WCS or None
        ``meta.wcs``: pixel (x = column, y = row, zero-based) -> (RA, Dec) in degrees.
    catalog : StarCatalog or None
        The astrometric reference catalog, when the caller supplied one.
    """

    data: np.ndarray
    dq: np.ndarray
    path: str = ""
    meta: Any = None
    wcs: Any = None
    catalog: Any = None
    _shared: dict = field(default_factory=dict, repr=False)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """Return ``compute()``, computed once per image and key (errors are re-raised each time)."""
        if key not in self._shared:
            try:
                self._shared[key] = (True, compute())
            except Exception as exc:  # a monitor that shares the product must see the same error
                self._shared[key] = (False, exc)
        ok, value = self._shared[key]
        if not ok:
            raise value
        return value

    @property
    def frame_offset(self) -> int:
        """Offset of image pixel (0, 0) in the 4096x4096 detector frame (4 for a full 4088x4088 image)."""
        return BORDER if self.data.shape == (SCIENCE_SIZE, SCIENCE_SIZE) else 0

    def exposure_start(self):
        """``meta.exposure.start_time`` as a naive UTC datetime, or None."""
        from ..science.identity import utc_naive

        try:
            return utc_naive(self.meta.exposure.start_time)
        except AttributeError:
            return None

    @property
    def unit(self) -> str:
        """The data's unit: their own (an astropy Quantity), else ``MJy / sr`` once romancal's
        flux step has run (``meta.cal_step.flux``), ``DN / s`` before it or without ``meta``."""
        unit = getattr(self.data, "unit", None)
        if unit is not None:
            return str(unit)
        try:
            converted = str(self.meta.cal_step.flux).upper() == "COMPLETE"
        except AttributeError:
            converted = False
        return "MJy / sr" if converted else "DN / s"


def image_from_model(model, path="", catalog=None) -> L2Image:
    """The `L2Image` of an opened ``ImageModel`` (arrays are read here, once for all monitors).

    Raises
    ------
    MonitoringError
        When ``data`` or ``dq`` is missing or the two are not 2-D arrays of one shape.
    """
    from ..science.monitor import MonitoringError

    try:
        data = np.asarray(model.data)
        dq = np.asarray(model.dq)
    except AttributeError as exc:
        raise MonitoringError(path, f"has no {exc.name or 'data/dq'} array") from None
    if data.ndim != 2 or dq.shape != data.shape:
        raise MonitoringError(path, f"'data' has shape {data.shape} and 'dq' {dq.shape}; expected two 2-D arrays of one shape")
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    meta = model.meta
    wcs = getattr(meta, "wcs", None)
    return L2Image(data=data, dq=dq, path=str(path), meta=meta, wcs=wcs, catalog=catalog)
