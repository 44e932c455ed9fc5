"""Monitors and their evaluation: the core shared by the reference-file and L2 arms.

A monitor is a subclass of `Monitor` (or of `rdmt_dagster.l2.monitor.L2Monitor`)
in a module of ``rdmt_dagster.monitors`` with a block of the same name in
``rdmt_dagster/standards/<name>.yaml``. Subclasses register themselves;
nothing else needs editing. Several monitors may read one data model (the L2
``ImageModel`` has four); `monitors_for_model` returns all of them.

Reading files and running monitors on them is `rdmt_dagster.science.measure`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
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



class Monitor:
    """Base class of the monitors.

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

    #: "reference" or "l2": which arm's files the monitor reads
    arm: ClassVar[str] = "reference"

    def identify(self, model, path) -> FileInfo:
        """The identity of an opened file as this monitor's arm sees it (no arrays are read)."""
        from .identity import reference_identity

        return reference_identity(model, path, self.name)

    @staticmethod
    def prepare(model, path, catalog=None):
        """What `metrics` receives for an opened file (reference monitors: the model itself)."""
        return model

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
            raise MonitoringError(path, f"has no '{attribute}' array") from None
        if array.shape[-2:] not in ((FRAME_SIZE, FRAME_SIZE), (SCIENCE_SIZE, SCIENCE_SIZE)):
            raise MonitoringError(
                path,
                f"'{attribute}' has shape {array.shape}; expected {FRAME_SIZE}x{FRAME_SIZE} "
                f"(or the {SCIENCE_SIZE}x{SCIENCE_SIZE} science area)",
            )
        return array

    @staticmethod
    def require_valid(count, attribute: str, path: str = "") -> None:
        """Fail when ``attribute`` has no finite science pixel at all."""
        if int(np.asarray(count.detector)[0]) == 0:
            raise MonitoringError(path, f"'{attribute}' has no finite science pixels (all NaN or inf)")


def _load_monitor_modules() -> None:
    from .. import monitors

    for module in pkgutil.iter_modules(monitors.__path__):
        importlib.import_module(f"{monitors.__name__}.{module.name}")


@lru_cache(maxsize=1)
def registry() -> dict[str, Monitor]:
    """Monitor name -> monitor, for every module in ``rdmt_dagster.monitors``."""
    _load_monitor_modules()
    return dict(_REGISTRY)


def monitors_for_model(model_class: str) -> list[Monitor]:
    """Every registered monitor that reads ``model_class`` (``"ImageModel"``, ``"DarkRefModel"``, ...)."""
    return [monitor for monitor in registry().values() if monitor.model == model_class]


def arm_monitors(arm: str) -> dict[str, Monitor]:
    """Monitor name -> monitor, for the monitors of one arm (``"reference"`` or ``"l2"``)."""
    return {name: monitor for name, monitor in registry().items() if monitor.arm == arm}


def monitored_models() -> list[str]:
    """The data model classes some monitor reads."""
    return sorted({monitor.model for monitor in registry().values()})


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
        """The evaluations with at least one failed region."""
        return [e for e in self.evaluations if e.n_failed]

    @property
    def n_failed(self) -> int:
        """Failed verdicts (regions times evaluators); not-evaluated ones are not failures."""
        return sum(e.n_failed for e in self.evaluations)

    @property
    def n_not_evaluated(self) -> int:
        """Verdicts an evaluator could not give (no previous file, too little history)."""
        return sum(e.n_not_evaluated for e in self.evaluations)

    @property
    def n_evaluations(self) -> int:
        """Every verdict, whatever its state: passed + failed + not evaluated."""
        return sum(e.passed.size for e in self.evaluations)


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
