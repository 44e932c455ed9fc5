"""Evaluators: boolean comparisons of metric values with standards (True = pass).

Each evaluator works on all values of one metric at one scale at once and
returns an `Evaluation` holding, per region, the threshold used, the reference
value it was compared with (relative evaluators) and the verdict.

A verdict has three states: passed, failed, or *not evaluated* (the
evaluator could not run: a change evaluator with no previous file, a trend
evaluator with too little history). Not evaluated is neither a pass nor a
failure: `Evaluation.evaluated` is False there, `Evaluation.passed` is False
(never counted as passed) and `Evaluation.failed` is False (never counted as
failed); `Evaluation.verdicts` gives True / False / None per region.

* ``absolute`` (``mission``, ``soc``): ``min <= value <= max``; limits of
  ``extensive`` metrics (counts) are given for the whole detector and scaled
  by the region's share of science pixels. A NaN value fails.
* ``change``: ``|new - previous| <= tolerance * |previous| + poisson_nsigma *
  sqrt(|previous| + |new|) + floor``, against the previous file of the same
  type and detector by USEAFTER. ``poisson_nsigma`` (default 0) allows for
  counting noise in small regions; ``floor`` (default 0) for values near zero.
  With no previous file (or one without this metric) it is not evaluated,
  and says why.
* ``trend``: robust z-score ``|new - median| / (1.4826 MAD)`` of the last
  ``n`` files must stay within ``limit``; not evaluated (and says so) while
  fewer than ``min_history`` files exist. The scale is at least ``min_scale`` times
  ``|median|`` (default 0.01), at least ``floor`` (default 0), and, with
  ``poisson: true`` (counts), at least ``sqrt(|median|)``, so that a flat
  history of small counts does not flag a change of one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import PriorMetrics


@dataclass
class Evaluation:
    """One evaluator's verdicts on one metric at one scale.

    Attributes
    ----------
    evaluator, metric, scale : str
        Evaluator name, metric base name and scale.
    threshold : numpy.ndarray
        Per region: the upper limit (absolute), tolerance (change) or z limit (trend).
    passed : numpy.ndarray of bool
        Per region: True where the evaluator ran and the value passed. False
        where it failed *and* where it was not evaluated: use `failed` to
        count failures and `verdicts` for the three states.
    lower : numpy.ndarray, optional
        Per region: the lower limit of an absolute evaluator with both limits.
    reference : numpy.ndarray, optional
        Per region: the value compared with (previous value, history median).
    reference_files : str, optional
        The files compared with (comma-separated).
    note : str
        Why the evaluator could not run (or other remarks).
    evaluated : numpy.ndarray of bool, optional
        Per region: whether the evaluator ran. Default: everywhere.
    """

    evaluator: str
    metric: str
    scale: str
    threshold: np.ndarray
    passed: np.ndarray
    lower: np.ndarray | None = None
    reference: np.ndarray | None = None
    reference_files: str | None = None
    note: str = ""
    evaluated: np.ndarray | None = None

    def __post_init__(self):
        passed = np.asarray(self.passed, dtype=bool)
        if self.evaluated is None:
            self.evaluated = np.ones(passed.shape, dtype=bool)
        else:
            self.evaluated = np.broadcast_to(np.asarray(self.evaluated, dtype=bool), passed.shape).copy()
        # A region that was not evaluated did not pass: no reader of `passed` may count it as a pass.
        # (A new array: the caller's is left as it was.)
        self.passed = passed & self.evaluated

    @property
    def failed(self) -> np.ndarray:
        """Per region: True where the evaluator ran and the value failed."""
        return self.evaluated & ~self.passed

    @property
    def n_failed(self) -> int:
        return int(np.count_nonzero(self.failed))

    @property
    def n_passed(self) -> int:
        return int(np.count_nonzero(self.passed))

    @property
    def n_not_evaluated(self) -> int:
        return int(np.count_nonzero(~self.evaluated))

    def verdicts(self) -> list[bool | None]:
        """Per region: True (passed), False (failed) or None (not evaluated)."""
        return [bool(p) if e else None for p, e in zip(self.passed.tolist(), self.evaluated.tolist())]


def not_evaluated(name, metric, scale, threshold, note: str) -> Evaluation:
    """An evaluator that could not run on any region of one metric and scale, with the reason."""
    n = np.size(threshold)
    return Evaluation(name, metric, scale, threshold, np.zeros(n, bool), reference=np.full(n, np.nan), note=note,
                      evaluated=np.zeros(n, bool))


def _broadcast(value, n) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


def evaluate_absolute(name, metric, scale, values, params, area_fraction=None) -> Evaluation:
    """Fixed limits ``{max, min}``; see the module docstring."""
    values = np.asarray(values, dtype=np.float64)
    unknown = set(params) - {"max", "min"}
    if unknown:
        raise ValueError(f"{name} standard of {metric}: unknown keys {sorted(unknown)} (expected max/min)")
    scale_by = 1.0 if area_fraction is None else np.asarray(area_fraction, dtype=np.float64)
    upper = _broadcast(params["max"], values.size) * scale_by if "max" in params else None
    lower = _broadcast(params["min"], values.size) * scale_by if "min" in params else None
    passed = np.isfinite(values)
    if upper is not None:
        passed &= values <= upper
    if lower is not None:
        passed &= values >= lower
    threshold = upper if upper is not None else lower
    if threshold is None:
        raise ValueError(f"{name} standard of {metric} needs max and/or min")
    return Evaluation(name, metric, scale, threshold, passed, lower=lower if upper is not None else None)


def evaluate_change(name, metric, scale, values, params, previous: PriorMetrics | None) -> Evaluation:
    """Fractional difference from the previous file; see the module docstring."""
    values = np.asarray(values, dtype=np.float64)
    tolerance = float(params["tolerance"])
    threshold = _broadcast(tolerance, values.size)
    prior = None if previous is None else previous.values.get((metric, scale))
    if prior is None or np.shape(prior) != values.shape:
        note = "no previous file" if previous is None else f"{previous.filename} lacks this metric"
        return not_evaluated(name, metric, scale, threshold, note)
    prior = np.asarray(prior, dtype=np.float64)
    allowed = tolerance * np.abs(prior) + float(params.get("floor", 0.0))
    nsigma = float(params.get("poisson_nsigma", 0.0))
    if nsigma:
        allowed = allowed + nsigma * np.sqrt(np.abs(prior) + np.abs(values))
    both_nan = np.isnan(values) & np.isnan(prior)
    with np.errstate(invalid="ignore"):
        passed = both_nan | (np.abs(values - prior) <= allowed)
    return Evaluation(
        name, metric, scale, threshold, passed, reference=prior, reference_files=previous.filename
    )


def evaluate_trend(name, metric, scale, values, params, history: list[PriorMetrics]) -> Evaluation:
    """Robust z-score against recent history; see the module docstring."""
    values = np.asarray(values, dtype=np.float64)
    limit = float(params.get("limit", 5.0))
    n = int(params.get("n", 10))
    min_history = int(params.get("min_history", 3))
    min_scale = float(params.get("min_scale", 0.01))
    floor = float(params.get("floor", 0.0))
    poisson = bool(params.get("poisson", False))
    threshold = _broadcast(limit, values.size)
    usable = [h for h in history[-n:] if np.shape(h.values.get((metric, scale))) == values.shape]
    if len(usable) < min_history:
        return not_evaluated(name, metric, scale, threshold, f"{len(usable)} earlier files, trend needs {min_history}")
    stack = np.vstack([np.asarray(h.values[(metric, scale)], dtype=np.float64) for h in usable])
    # A zero spread (identical history, zero floor) is handled by the equality clause below.
    with np.errstate(invalid="ignore", divide="ignore"):
        median = np.nanmedian(stack, axis=0)
        sigma = 1.4826 * np.nanmedian(np.abs(stack - median), axis=0)
        sigma = np.maximum(np.maximum(sigma, min_scale * np.abs(median)), floor)
        if poisson:
            sigma = np.maximum(sigma, np.sqrt(np.abs(median)))
        z = np.abs(values - median) / sigma
        passed = (z <= limit) | ((values == median) & (sigma == 0)) | (np.isnan(values) & np.isnan(median))
    return Evaluation(
        name, metric, scale, threshold, passed, reference=median,
        reference_files=",".join(h.filename for h in usable),
    )
