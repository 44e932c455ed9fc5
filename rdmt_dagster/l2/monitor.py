"""Base class of the L2 image monitors.

An L2 monitor is a subclass of `L2Monitor` in a module of
``rdmt_dagster.monitors`` plus a block in ``rdmt_dagster/standards/``: it
receives an `rdmt_dagster.l2.image.L2Image` (arrays read once per file for all
monitors, work shared through `L2Image.shared`) and reports detector and amp
values.
"""

from __future__ import annotations

from typing import ClassVar

from ..science.metrics import FileInfo
from ..science.monitor import Monitor
from .identity import l2_identity
from .image import L2Image, image_from_model


class L2Monitor(Monitor):
    """A monitor of Level-2 slope images (``ImageModel``)."""

    model: ClassVar[str] = "ImageModel"
    arm: ClassVar[str] = "l2"
    scales: ClassVar[tuple[str, ...]] = ("detector", "amp")

    def identify(self, model, path) -> FileInfo:
        return l2_identity(model, path, self.name)

    @staticmethod
    def prepare(model, path, catalog=None) -> L2Image:
        return image_from_model(model, path, catalog)
