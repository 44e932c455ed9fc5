"""Metric records: what a monitor measures in one reference file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from .scales import ScaleValues, region_ids


@dataclass(frozen=True)
class FileInfo:
    """Identity of one monitored file.

    Attributes
    ----------
    filename : str
        Base name; the partition key in Dagster and the key in every table.
    path : str
        Where it was read from.
    monitor : str
        Name of the monitor that measured it (``"dark"``, ...).
    detector : str
        ``WFI01`` .. ``WFI18``.
    useafter : datetime or None
        ``meta.useafter`` (UTC, naive); orders files for relative evaluators.
    reftype : str
        ``meta.reftype`` (``DARK``, ...).
    """

    filename: str
    path: str
    monitor: str
    detector: str = ""
    useafter: datetime | None = None
    reftype: str = ""

    @property
    def order_key(self) -> tuple:
        """Ordering of files of one type and detector: USEAFTER, then name."""
        return (self.useafter or datetime.min, self.filename)


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
    """Metric values of an earlier file of the same type and detector."""

    filename: str
    useafter: datetime | None
    values: dict[tuple[str, str], np.ndarray]
