"""Monitors: one per reference-file type; measure metrics, then evaluate them.

A monitor is a subclass of `Monitor` in a module of ``rdmt_dagster.monitors``
with a block of the same name in ``rdmt_dagster/standards/<name>.yaml``.
Subclasses register themselves; nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from .evaluators import Evaluation, evaluate_absolute, evaluate_change, evaluate_trend
from .history import History, NoHistory
from .metrics import FileInfo, Metric, MetricSet
from .scales import FRAME_SIZE, SCALES, SCIENCE_SIZE, science_pixel_counts
from .standards import MonitorStandards

_REGISTRY: dict[str, "Monitor"] = {}


class MonitoringError(Exception):
    """A file (or one monitor on it) that cannot be monitored; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path) if path else ""
        self.problem = problem
        super().__init__(f"{Path(self.path).name}: {problem}" if self.path else problem)


ReferenceFileError = MonitoringError  # the name used before the L2 arm


class Monitor:
    """Base class of the reference-file monitors.

    Class attributes
    ----------------
    name : str
        Monitor name; also the name of its standards block.
    model : str
        roman_datamodels class it reads (``"DarkRefModel"``).
    version : str
        Bumped whenever a metric's definition changes; stored with every value.
    """

    name: ClassVar[str] = ""
    model: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    compares_previous_file: ClassVar[bool] = False
    #: spatial scales the monitor reports (names from `rdmt_dagster.science.scales`)
    scales: ClassVar[tuple[str, ...]] = ("detector", "amp", "superpixel")
    #: True for monitors that need the astrometric reference catalog
    needs_catalog: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls()

    def metrics(self, model, parameters: dict, previous=None) -> list[Metric]:
        """Compute the metrics of one opened data model.

        Parameters
        ----------
        model : roman_datamodels model
        parameters : dict
            The ``parameters`` of the monitor's standards block.
        previous : roman_datamodels model, optional
            The previous file of the same type and detector (by USEAFTER),
            opened, for monitors with ``compares_previous_file = True``
            (pixel-level comparisons such as newly flagged pixels); None when
            there is none.
        """
        raise NotImplementedError

    @staticmethod
    def frame_array(model, attribute: str, path: str = "") -> np.ndarray:
        """Return ``model.<attribute>`` as an array, checking its detector shape."""
        try:
            array = np.asarray(getattr(model, attribute))
        except AttributeError:
            raise ReferenceFileError(path, f"has no '{attribute}' array") from None
        if array.shape[-2:] not in ((FRAME_SIZE, FRAME_SIZE), (SCIENCE_SIZE, SCIENCE_SIZE)):
            raise ReferenceFileError(
                path,
                f"'{attribute}' has shape {array.shape}; expected {FRAME_SIZE}x{FRAME_SIZE} "
                f"(or the {SCIENCE_SIZE}x{SCIENCE_SIZE} science area)",
            )
        return array

    @staticmethod
    def require_valid(count, attribute: str, path: str = "") -> None:
        """Fail when ``attribute`` has no finite science pixel at all."""
        if int(np.asarray(count.detector)[0]) == 0:
            raise ReferenceFileError(path, f"'{attribute}' has no finite science pixels (all NaN or inf)")


def _load_monitor_modules() -> None:
    from .. import monitors

    for module in pkgutil.iter_modules(monitors.__path__):
        importlib.import_module(f"{monitors.__name__}.{module.name}")


@lru_cache(maxsize=1)
def registry() -> dict[str, Monitor]:
    """Monitor name -> monitor, for every module in ``rdmt_dagster.monitors``."""
    _load_monitor_modules()
    return dict(_REGISTRY)


def monitor_for_model(model_class: str) -> Monitor | None:
    for monitor in registry().values():
        if monitor.model == model_class:
            return monitor
    return None


def _useafter(model) -> datetime | None:
    value = getattr(model.meta, "useafter", None)
    if value is None:
        return None
    if hasattr(value, "to_datetime"):
        return value.to_datetime()
    return datetime.fromisoformat(str(value))


def open_model(path):
    """Open a Roman ASDF file with roman_datamodels (arrays load on access)."""
    import roman_datamodels.datamodels as rdm

    path = Path(path)
    if not path.exists():
        raise ReferenceFileError(path, "does not exist")
    try:
        return rdm.open(path)
    except Exception as exc:  # asdf, yaml, schema and I/O errors all mean "unreadable"
        raise ReferenceFileError(path, f"cannot be read as a Roman ASDF data model ({type(exc).__name__}: {exc})") from exc


def describe(model, path) -> tuple[Monitor, FileInfo]:
    """The monitor for an opened model and the file's identity."""
    path = Path(path)
    model_class = type(model).__name__
    monitor = monitor_for_model(model_class)
    if monitor is None:
        known = ", ".join(sorted(m.model for m in registry().values()))
        raise ReferenceFileError(path, f"data model {model_class} is not a monitored reference type (monitored: {known})")
    meta = model.meta
    info = FileInfo(
        filename=path.name,
        path=str(path),
        monitor=monitor.name,
        detector=str(getattr(getattr(meta, "instrument", None), "detector", "") or ""),
        useafter=_useafter(model),
        reftype=str(getattr(meta, "reftype", "") or ""),
    )
    return monitor, info


def measure(path, standards_for, previous_file=None) -> MetricSet:
    """Read one reference file and compute its monitor's metrics.

    Parameters
    ----------
    path : path-like
    standards_for : callable
        Monitor name -> `MonitorStandards` (its ``parameters`` drive the metrics).
    previous_file : callable, optional
        `FileInfo` -> path of the previous file of the same type and detector
        (or None); consulted only for monitors that compare pixels with it.

    Returns
    -------
    MetricSet
        With ``error`` set (and no metrics) when the file cannot be monitored.
    """
    path = Path(path)
    info = FileInfo(filename=path.name, path=str(path), monitor="")
    version = ""
    try:
        with open_model(path) as model:
            monitor, info = describe(model, path)
            version = monitor.version
            parameters = standards_for(monitor.name).parameters
            previous_path = previous_file(info) if (monitor.compares_previous_file and previous_file) else None
            if previous_path:
                with open_model(previous_path) as previous:
                    metrics = monitor.metrics(model, parameters, previous)
            else:
                metrics = monitor.metrics(model, parameters)
        return MetricSet(info, version, metrics, compared_with=Path(previous_path).name if previous_path else None)
    except ReferenceFileError as exc:
        message = str(exc) if exc.path else f"{path.name}: {exc.problem}"
        return MetricSet(info, version, error=message)
    except Exception as exc:  # corrupt blocks surface only when an array is read
        return MetricSet(info, version, error=f"{path.name}: cannot be monitored ({type(exc).__name__}: {exc})")


def previous_among(infos: list[FileInfo]):
    """A function `FileInfo` -> the preceding file (by USEAFTER, then name) of the same type and detector in ``infos``."""

    def previous(info: FileInfo) -> FileInfo | None:
        earlier = [i for i in infos if i.monitor == info.monitor and i.detector == info.detector
                   and i.order_key < info.order_key]
        return max(earlier, key=lambda i: i.order_key) if earlier else None

    return previous


@lru_cache(maxsize=1)
def region_area_fractions() -> dict[str, np.ndarray]:
    """Share of the detector's science pixels in each region, per scale."""
    counts = science_pixel_counts()
    total = float(counts.detector[0])
    return {scale: counts[scale] / total for scale in SCALES}


@dataclass
class EvaluationSet:
    """All evaluations of one file under one set of standards."""

    info: FileInfo
    standards_hash: str
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def failures(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.n_failed]

    @property
    def n_failed(self) -> int:
        return sum(e.n_failed for e in self.evaluations)


def evaluate(metric_set: MetricSet, standards: MonitorStandards, history: History | None = None) -> EvaluationSet:
    """Run every configured evaluator on every metric value of one file."""
    history = history or NoHistory()
    result = EvaluationSet(metric_set.info, standards.hash)
    if not metric_set.ok:
        return result
    kinds = standards.evaluator_kinds
    depth = 1
    for spec in standards.metrics.values():
        for name, params in spec.items():
            if kinds.get(name) == "trend" and isinstance(params, dict):
                depth = max(depth, int(params.get("n", 10)))
    earlier = history.before(metric_set.info, depth)
    previous = earlier[-1] if earlier else None
    fractions = region_area_fractions()
    for metric in metric_set.metrics:
        for scale, values in metric.values.items():
            values = np.asarray(values, dtype=np.float64)
            for name, params in standards.evaluator_params(metric.name, scale).items():
                kind = kinds[name]
                if kind == "absolute":
                    area = fractions[scale] if standards.is_extensive(metric.name) else None
                    ev = evaluate_absolute(name, metric.name, scale, values, params, area)
                elif kind == "change":
                    ev = evaluate_change(name, metric.name, scale, values, params, previous)
                elif kind == "trend":
                    ev = evaluate_trend(name, metric.name, scale, values, params, earlier)
                else:
                    raise ValueError(f"evaluator {name!r} has unknown kind {kind!r}")
                result.evaluations.append(ev)
    return result
