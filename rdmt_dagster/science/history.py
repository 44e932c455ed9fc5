"""Where relative evaluators find earlier metrics of the same series (monitor, detector, ...)."""

from __future__ import annotations

from typing import Protocol

from .metrics import FileInfo, MetricSet, PriorMetrics


class History(Protocol):
    """Earlier files of the same series (`FileInfo.series`), ordered by `FileInfo.when`."""

    def before(self, info: FileInfo, n: int) -> list[PriorMetrics]:
        """Up to ``n`` files preceding ``info``, oldest first."""


class NoHistory:
    """No earlier files: relative evaluators pass and say there was none."""

    def before(self, info: FileInfo, n: int) -> list[PriorMetrics]:
        return []


class MemoryHistory:
    """History from metric sets held in memory (``rdmt check`` on several files)."""

    def __init__(self, metric_sets: list[MetricSet] = ()):
        self._sets = [m for m in metric_sets if m.ok]

    def add(self, metric_set: MetricSet) -> None:
        if metric_set.ok:
            self._sets.append(metric_set)

    def before(self, info: FileInfo, n: int) -> list[PriorMetrics]:
        same = [
            m
            for m in self._sets
            if m.info.series == info.series and m.info.order_key < info.order_key
        ]
        same.sort(key=lambda m: m.info.order_key)
        return [PriorMetrics(m.info.filename, m.info.when, m.values()) for m in same[-n:]] if n > 0 else []
