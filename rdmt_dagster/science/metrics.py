"""Metric records: what a monitor measures in one file, and the identity of that file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from datetime import datetime

import numpy as np

from .scales import ScaleValues, region_ids


@dataclass(frozen=True)
class FileInfo:
    """Identity of one monitored file, common to both arms.

    Attributes
    ----------
    filename : str
        Base name; the key of the file in Dagster and in every table.
    path : str
        Where it was read from.
    monitor : str
        Name of the monitor that measured it (``"dark"``, ``"astrometry"``, ...).
    detector : str
        ``WFI01`` .. ``WFI18``.

    Each arm's subclass says what orders its files in time (`when`) and
    which files form one history (`series`) for the relative evaluators.
    """

    filename: str
    path: str
    monitor: str
    detector: str = ""

    arm: ClassVar[str] = ""

    @property
    def when(self) -> datetime | None:
        """The time that orders files of one series (None: unknown)."""
        return None

    @property
    def series(self) -> tuple:
        """Files whose metrics form one history: same monitor and detector."""
        return (self.monitor, self.detector)

    @property
    def order_key(self) -> tuple:
        """Ordering of files of one series: `when`, then name."""
        return (self.when or datetime.min, self.filename)


@dataclass(frozen=True)
class ReferenceFileInfo(FileInfo):
    """A calibration reference file: type, detector and USEAFTER.

    Attributes
    ----------
    useafter : datetime or None
        ``meta.useafter`` (UTC, naive); orders files for relative evaluators.
    reftype : str
        ``meta.reftype`` (``DARK``, ...).
    """

    useafter: datetime | None = None
    reftype: str = ""

    arm: ClassVar[str] = "reference"

    @property
    def when(self) -> datetime | None:
        return self.useafter


@dataclass(frozen=True)
class L2FileInfo(FileInfo):
    """A Level-2 image: detector, optical element, exposure start, program / visit / exposure.

    "Previous" for an L2 metric is the previous exposure of the same monitor,
    detector and optical element.

    Attributes
    ----------
    optical_element : str
        ``meta.instrument.optical_element`` (``F158``, ...).
    exposure_start : datetime or None
        ``meta.exposure.start_time`` (UTC, naive).
    program, visit, exposure : str
        From ``meta.observation`` or, failing that, the file name
        (``r<program:5><execution plan:2><pass:3><segment:3><observation:3><visit:3>_<group..>_<exposure:4>_WFI01_cal.asdf``).
    """

    optical_element: str = ""
    exposure_start: datetime | None = None
    program: str = ""
    visit: str = ""
    exposure: str = ""

    arm: ClassVar[str] = "l2"

    @property
    def when(self) -> datetime | None:
        return self.exposure_start

    @property
    def series(self) -> tuple:
        return (self.monitor, self.detector, self.optical_element)


@dataclass(frozen=True)
class Metric:
    """One metric at the three spatial scales.

    ``name`` is the scale-free base name (``dark_current_mean``); the stored
    name is ``f"{scale}_{name}"`` (``detector_dark_current_mean``) as in the
    RDMT-local reports.
    """

    name: str
    unit: str
    values: ScaleValues
    description: str = ""

    def full_name(self, scale: str) -> str:
        return f"{scale}_{self.name}"


@dataclass
class MetricSet:
    """All metrics of one file, or the error that stopped them."""

    info: FileInfo
    monitor_version: str
    metrics: list[Metric] = field(default_factory=list)
    error: str | None = None
    reused: bool = False  # loaded from storage rather than measured again
    compared_with: str | None = None  # the previous file whose pixels the metrics were compared with

    @property
    def ok(self) -> bool:
        return self.error is None

    def values(self) -> dict[tuple[str, str], np.ndarray]:
        """(metric base name, scale) -> values, for relative evaluators."""
        return {(m.name, s): np.asarray(v, dtype=np.float64) for m in self.metrics for s, v in m.values.items()}

    def records(self) -> list[dict]:
        """One dict per metric value: metric, base, scale, region, value, unit."""
        cols = self.columns()
        names = list(cols)
        return [dict(zip(names, row)) for row in zip(*(cols[k].tolist() for k in names))]

    def columns(self) -> dict[str, np.ndarray]:
        """Column arrays of `records` (fast path for Arrow and SQL)."""
        cols: dict[str, list] = {k: [] for k in ("metric", "base", "scale", "region", "value", "unit")}
        for m in self.metrics:
            for scale, values in m.values.items():
                values = np.asarray(values, dtype=np.float64)
                n = values.size
                cols["metric"].append(np.full(n, m.full_name(scale), dtype=object))
                cols["base"].append(np.full(n, m.name, dtype=object))
                cols["scale"].append(np.full(n, scale, dtype=object))
                cols["region"].append(region_ids(scale))
                cols["value"].append(values)
                cols["unit"].append(np.full(n, m.unit, dtype=object))
        if not self.metrics:
            return {k: np.array([], dtype=object if k not in ("region", "value") else float) for k in cols}
        return {k: np.concatenate(v) for k, v in cols.items()}


@dataclass(frozen=True)
class PriorMetrics:
    """Metric values of an earlier file of the same series (monitor, detector, ...)."""

    filename: str
    when: datetime | None
    values: dict[tuple[str, str], np.ndarray]
