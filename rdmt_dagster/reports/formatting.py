"""Wording shared by the reports and the notifications: values, standards, failures.

Both describe a failed evaluation the same way, so an instrument scientist
reading a Slack message finds the same numbers at the top of the report (and
the demo's terminal summary quotes them too): `fmt_value` rounds every value,
`failure_size` says how far a failing value lies from its standard, in words
and numbers, and `FailureGroup.phrase` puts both on one line.

An evaluation has three verdicts (`verdict`): ``pass``, ``FAIL`` and ``not
evaluated`` (an evaluator that could not run: no previous file, too little
history), stored as a NULL ``passed`` and never counted as a pass.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..science.scales import N_AMPS, N_SP_SIDE, N_SUPERPIXELS

SCALE_SIZES = {"detector": 1, "amp": N_AMPS, "superpixel": N_SUPERPIXELS}
SCALE_NAMES = {"detector": "detector", "amp": "amps", "superpixel": "super-pixels"}
EVALUATOR_ORDER = ("mission", "soc", "change", "trend")
PASS, FAIL, NOT_EVALUATED = "pass", "FAIL", "not evaluated"
#: how an absolute evaluator is named in a sentence ("0.3 above the SOC max 0.1")
EVALUATOR_WORDS = {"soc": "SOC"}


def fmt_value(value) -> str:
    """4 significant digits; integral values (counts) in full; None/NaN as ``NaN``."""
    if value is None:
        return "NaN"
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"


def fmt_percent(fraction, signed: bool = True) -> str:
    """A fraction as a percentage for people: ``+19 %``, ``-3.2 %``, ``+300 %``; two digits below 10 %.

    Parameters
    ----------
    fraction : float
        0.19 for 19 %.
    signed : bool
        Prefix ``+`` or ``-`` (a tolerance is written unsigned).
    """
    if fraction is None or math.isnan(float(fraction)):
        return "NaN %"
    pct = float(fraction) * 100.0
    if math.isinf(pct):
        return ("+" if pct > 0 else "-") + "inf %" if signed else "inf %"
    size = abs(pct)
    # Whole percents from 10 % on: "+19 %" reads better than "+19.3 %", and a
    # tolerance is never set more finely than that.
    digits = f"{size:.0f}" if size >= 9.95 else f"{size:.2g}"
    if not signed:
        return f"{digits} %"
    return f"{'-' if pct < 0 and digits != '0' else '+'}{digits} %"


def signed_value(value: float) -> str:
    """`fmt_value` with an explicit ``+`` on positive numbers."""
    text = fmt_value(value)
    return text if text.startswith("-") or text in ("NaN", "0") else f"+{text}"


def evaluator_sort_key(name: str) -> tuple:
    return (EVALUATOR_ORDER.index(name) if name in EVALUATOR_ORDER else len(EVALUATOR_ORDER), name)


def natural_key(text: str) -> tuple:
    """``percentile_5`` before ``percentile_50``: digit runs compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def split_metric(metric: str) -> tuple[str, str]:
    """``amp_num_dead_pix`` -> (``amp``, ``num_dead_pix``)."""
    for scale in SCALE_SIZES:
        if metric.startswith(scale + "_"):
            return scale, metric[len(scale) + 1 :]
    return "", metric


def region_name(scale: str, region: int) -> str:
    if scale == "amp":
        return f"amp {region}"
    if scale == "superpixel":
        return f"super-pixel {region} (amp {region % N_SP_SIDE + 1}, row {region // N_SP_SIDE})"
    return "detector"


def evaluator_kind(name: str, params: dict | None) -> str:
    """``absolute``, ``change`` or ``trend``, from the standard's keys (or its usual name)."""
    params = params or {}
    if {"max", "min"} & set(params):
        return "absolute"
    if "tolerance" in params:
        return "change"
    if {"limit", "min_history", "n"} & set(params):
        return "trend"
    if name in ("mission", "soc"):
        return "absolute"
    if name in ("change", "trend"):
        return name
    return "unknown"


def change_reference_file(compared_with: list[str]) -> str | None:
    """The file the change evaluator compared with, from ``evaluation_run.compared_with``.

    That column holds the change evaluator's previous file and the trend
    evaluator's comma-separated history (oldest first, ending with the same
    previous file).
    """
    singles = [c for c in compared_with if c and "," not in c]
    if len(singles) == 1:
        return singles[0]
    lists = [c.split(",") for c in compared_with if "," in c]
    if lists:
        return max(lists, key=len)[-1]
    return None


def trend_reference_files(compared_with: list[str]) -> list[str]:
    """The trend evaluator's earlier files (oldest first), from ``evaluation_run.compared_with``.

    The longest comma-separated entry: each metric names the files it used,
    and they are the same files unless a metric is missing from some.
    A single name is taken as a history of one only when no change file is
    told apart from it (one entry only).
    """
    lists = [c.split(",") for c in compared_with if c and "," in c]
    if lists:
        return max(lists, key=len)
    singles = [c for c in compared_with if c]
    return singles if len(singles) == 1 else []


def describe_standard(kind: str, params: dict | None, threshold, lower, reference, compared_file: str | None = None,
                      note: str = "", value=None, passed: bool | None = None) -> str:
    """One evaluator's standard as a short text (``≤ 1``, ``±11% of 0.005 (file)``, ``|z| ≤ 5 vs median 0.005``).

    ``params`` are the evaluator's standard (from the stored standards);
    without them a single absolute limit is read as a maximum unless
    ``value`` and ``passed`` show it is a minimum.
    """
    params = params or {}
    if kind == "absolute":
        if threshold is None:
            return "no limit"
        if lower is not None:
            return f"{fmt_value(lower)} – {fmt_value(threshold)}"
        if "min" in params and "max" not in params:
            return f"≥ {fmt_value(threshold)}"
        if "max" not in params and value is not None and passed is not None and not math.isnan(value):
            if (value <= threshold) != passed:
                return f"≥ {fmt_value(threshold)}"
        return f"≤ {fmt_value(threshold)}"
    if kind == "change":
        tol = params.get("tolerance", threshold)
        text = f"±{float(tol) * 100:g}%" if tol is not None else "change"
        if reference is None:
            return f"{text} (no previous file)" if not note else f"{text} ({note})"
        text += f" of {fmt_value(reference)}"
        if params.get("poisson_nsigma"):
            text += f" + {float(params['poisson_nsigma']):g}σ counting noise"
        if params.get("floor"):
            text += f" + {fmt_value(params['floor'])}"
        if compared_file:
            text += f" ({compared_file})"
        return text
    if kind == "trend":
        limit = params.get("limit", threshold)
        text = f"|z| ≤ {float(limit):g}" if limit is not None else "trend"
        if reference is None:
            return f"{text} ({note})" if note else f"{text} (not enough history)"
        return text + f" vs median {fmt_value(reference)}"
    parts = [f"threshold {fmt_value(threshold)}"] if threshold is not None else []
    if reference is not None:
        parts.append(f"reference {fmt_value(reference)}")
    return ", ".join(parts) or "—"


def verdict(passed: bool | None) -> str:
    """``pass``, ``FAIL`` or ``not evaluated`` (NULL: the evaluator could not run) of one stored evaluation."""
    if passed is None:
        return NOT_EVALUATED
    return PASS if passed else FAIL


def _isnan(value) -> bool:
    return value is None or math.isnan(float(value))


@dataclass(frozen=True)
class TrendStats:
    """The centre and scale a trend evaluator compared a value with."""

    median: float
    sigma: float
    n: int  # earlier files used


def trend_stats(history: Sequence[float | None], params: dict | None) -> TrendStats | None:
    """Median and robust sigma of the earlier values, as `rdmt_dagster.science.evaluators.evaluate_trend` has them.

    ``sigma = max(1.4826 MAD, min_scale |median|, floor)``, and at least
    ``sqrt(|median|)`` with ``poisson: true``. The evaluator stores the median
    but not sigma, so a report rebuilds it from the same earlier values (the
    files named by the evaluation run) to say how many sigma a value lies out.

    Returns None when there is no finite earlier value.
    """
    params = params or {}
    recent = list(history)[-int(params.get("n", 10)):]
    # NaN is stored as NULL: the evaluator's nanmedian skips both.
    arr = [float(v) for v in recent if v is not None and not math.isnan(float(v))]
    if not arr:
        return None
    median = _median(arr)
    sigma = 1.4826 * _median([abs(v - median) for v in arr])
    sigma = max(sigma, float(params.get("min_scale", 0.01)) * abs(median), float(params.get("floor", 0.0)))
    if params.get("poisson"):
        sigma = max(sigma, math.sqrt(abs(median)))
    return TrendStats(median, sigma, len(recent))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def absolute_bounds(params: dict | None, value, threshold, lower) -> tuple[float | None, float | None]:
    """(minimum, maximum) of an absolute evaluation as stored.

    ``threshold`` is the maximum when the standard has one, else the
    minimum; ``lower`` the minimum beside a maximum. Without the standard's
    parameters a single limit is taken as the side the value is on.
    """
    params = params or {}
    if threshold is None:
        return None, None
    if "max" in params or lower is not None:
        return lower, threshold
    if "min" in params:
        return threshold, None
    if value is not None and not _isnan(value) and float(value) < threshold:
        return threshold, None
    return None, threshold


def change_allowance(params: dict | None, value, reference) -> float:
    """How far a value may move from the previous one: ``tolerance |prev| + floor + n sqrt(|prev| + |new|)``."""
    params = params or {}
    prev = abs(float(reference))
    allowed = float(params.get("tolerance", 0.0)) * prev + float(params.get("floor", 0.0))
    nsigma = float(params.get("poisson_nsigma", 0.0))
    if nsigma and value is not None and not _isnan(value):
        allowed += nsigma * math.sqrt(prev + abs(float(value)))
    return allowed


def failure_size(kind: str, params: dict | None, value, threshold, lower, reference, evaluator: str = "",
                 trend: TrendStats | None = None) -> str:
    """How far a failing value lies from its standard, in words and numbers.

    ``+19 % vs previous (tolerance 11 %)``, ``3.2 σ above the median of the
    last 10 (limit 5)``, ``0.2 above the mission max 0.1``. The one wording
    of a failure's size: the report, the notification and the demo's summary
    all quote it.

    Parameters
    ----------
    kind : str
        ``absolute``, ``change`` or ``trend`` (`evaluator_kind`).
    params : dict
        The evaluator's standard.
    value, threshold, lower, reference : float or None
        As stored (``reference``: the previous value, or the trend median).
    evaluator : str
        Its name, to say which limit (``mission``, ``SOC``).
    trend : TrendStats, optional
        The trend evaluator's median and sigma (`trend_stats`); without it a
        trend failure is told as a distance from the median.
    """
    params = params or {}
    if value is None or _isnan(value):
        return "no finite value"
    value = float(value)
    if kind == "absolute":
        return _absolute_size(params, value, threshold, lower, evaluator)
    if kind == "change":
        return _change_size(params, value, threshold, reference)
    if kind == "trend":
        return _trend_size(params, value, threshold, reference, trend)
    return "—"


def _absolute_size(params: dict, value: float, threshold, lower, evaluator: str) -> str:
    low, high = absolute_bounds(params, value, threshold, lower)
    name = EVALUATOR_WORDS.get(evaluator, evaluator)
    name = f"{name} " if name and evaluator not in ("", "absolute") else ""
    if high is not None and value > high:
        return f"{fmt_value(value - high)} above the {name}max {fmt_value(high)}"
    if low is not None and value < low:
        return f"{fmt_value(low - value)} below the {name}min {fmt_value(low)}"
    return "outside the limits"


def _change_size(params: dict, value: float, threshold, reference) -> str:
    if reference is None or _isnan(reference):
        return "no previous value"
    reference = float(reference)
    params = {"tolerance": threshold or 0.0, **params}
    allowed = change_allowance(params, value, reference)
    extras = []
    if params.get("poisson_nsigma"):
        extras.append(f"{float(params['poisson_nsigma']):g} σ counting noise")
    if params.get("floor"):
        extras.append(fmt_value(params["floor"]))
    if reference == 0:
        return f"{signed_value(value)} vs previous 0 (allowed ±{fmt_value(allowed)})"
    tolerance = f"tolerance {fmt_percent(float(params['tolerance']), signed=False)}"
    if extras:
        tolerance += " + " + " + ".join(extras) + f" = ±{fmt_percent(allowed / abs(reference), signed=False)}"
    return f"{fmt_percent((value - reference) / abs(reference))} vs previous ({tolerance})"


def _trend_size(params: dict, value: float, threshold, reference, trend: TrendStats | None) -> str:
    limit = params.get("limit", threshold)
    limit_text = f"limit {float(limit):g}" if limit is not None else "no limit"
    if trend is not None and trend.sigma > 0:
        z = (value - trend.median) / trend.sigma
        side = "above" if z > 0 else "below"
        return f"{abs(z):.1f} σ {side} the median of the last {trend.n} ({limit_text})"
    if reference is None or _isnan(reference):
        return "no median to compare with"
    diff = value - float(reference)
    side = "above" if diff > 0 else "below"
    return f"{fmt_value(abs(diff))} {side} the median {fmt_value(reference)} ({limit_text} σ)"


def _ratio(kind: str, params: dict | None, f: "Failure", trend: TrendStats | None) -> float:
    """How many times its allowance a failing value is off (to pick a file's worst failure)."""
    params = params or {}
    if f.value is None or _isnan(f.value):
        return math.inf
    value = float(f.value)
    if kind == "absolute":
        low, high = absolute_bounds(params, value, f.threshold, f.lower)
        for bound, beyond in ((high, value - (high or 0.0)), (low, (low or 0.0) - value)):
            if bound is not None and beyond > 0:
                return beyond / max(abs(bound), 1e-300)
        return 0.0
    if kind == "change" and f.reference is not None and not _isnan(f.reference):
        allowed = change_allowance({"tolerance": f.threshold or 0.0, **params}, value, f.reference)
        return abs(value - f.reference) / max(allowed, 1e-300)
    if kind == "trend" and trend is not None and trend.sigma > 0:
        limit = float(params.get("limit", f.threshold or 1.0)) or 1.0
        return abs(value - trend.median) / trend.sigma / limit
    return _excess(value, f.threshold, f.lower, f.reference)


def _excess(value, threshold, lower, reference) -> float:
    """How far a failing value lies from its standard, relative to it (for picking the worst)."""
    if value is None or math.isnan(value):
        return math.inf
    bounds = [reference] if reference is not None else [b for b in (threshold, lower) if b is not None]
    if not bounds:
        return 0.0
    return min(abs(value - b) / max(abs(b), 1e-300) for b in bounds)


@dataclass(frozen=True)
class Failure:
    """One failed evaluation of one region."""

    metric: str
    scale: str
    region: int
    value: float | None
    unit: str
    evaluator: str
    threshold: float | None
    lower: float | None
    reference: float | None


@dataclass
class FailureGroup:
    """All failed regions of one metric under one evaluator."""

    metric: str
    scale: str
    evaluator: str
    unit: str
    failures: list[Failure] = field(default_factory=list)
    worst: Failure | None = None
    standard: str = ""
    kind: str = ""
    size: str = ""  # `failure_size` of the worst region
    ratio: float = 0.0  # the worst region's distance from the standard in units of its allowance

    @property
    def n_regions(self) -> int:
        return len(self.failures)

    @property
    def n_total(self) -> int:
        return SCALE_SIZES.get(self.scale, self.n_regions)

    @property
    def where(self) -> str:
        if self.scale == "detector":
            return "detector"
        if self.scale == "amp":
            amps = ", ".join(str(f.region) for f in self.failures[:12])
            more = "" if self.n_regions <= 12 else ", ..."
            return f"{self.n_regions} of {self.n_total} amps ({amps}{more})"
        return f"{self.n_regions} of {self.n_total} {SCALE_NAMES.get(self.scale, self.scale)}"

    @property
    def value_text(self) -> str:
        w = self.worst
        if w is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        if self.scale == "detector":
            return f"{fmt_value(w.value)}{unit}"
        return f"worst {region_name(self.scale, w.region)}: {fmt_value(w.value)}{unit}"

    @property
    def phrase(self) -> str:
        """The failure on one line: where, the (worst) value and how far it is off.

        ``detector_dark_current_mean = 0.00868 DN / s: +19 % vs previous (tolerance 11 %)``
        """
        w = self.worst
        if w is None:
            return self.metric
        unit = f" {self.unit}" if self.unit else ""
        if self.scale == "detector":
            where = f"{self.metric} = {fmt_value(w.value)}{unit}"
        else:
            where = f"{self.metric} in {self.where}, worst {region_name(self.scale, w.region)} = " \
                    f"{fmt_value(w.value)}{unit}"
        return f"{where}: {self.size}" if self.size else where


def group_failures(failures, params_for, compared_file: str | None = None,
                   trend_for: Callable[[Failure, dict], TrendStats | None] | None = None) -> list[FailureGroup]:
    """Group failures by metric and evaluator, detector scale first, and describe the worst region.

    ``params_for(base, scale, evaluator)`` returns the evaluator's standard
    parameters; ``trend_for(failure, params)``, when given, the trend
    evaluator's median and sigma of a failing region (`trend_stats`), so that
    its size is told in sigma.
    """
    groups: dict[tuple[str, str], FailureGroup] = {}
    for f in failures:
        key = (f.metric, f.evaluator)
        if key not in groups:
            groups[key] = FailureGroup(f.metric, f.scale, f.evaluator, f.unit)
        groups[key].failures.append(f)
    scale_rank = {s: i for i, s in enumerate(SCALE_SIZES)}
    out = sorted(
        groups.values(),
        key=lambda g: (scale_rank.get(g.scale, 9), natural_key(split_metric(g.metric)[1]), evaluator_sort_key(g.evaluator)),
    )
    for g in out:
        g.failures.sort(key=lambda f: f.region)
        g.worst = max(g.failures, key=lambda f: _excess(f.value, f.threshold, f.lower, f.reference))
        base = split_metric(g.metric)[1]
        params = params_for(base, g.scale, g.evaluator)
        kind = evaluator_kind(g.evaluator, params)
        w = g.worst
        g.standard = describe_standard(kind, params, w.threshold, w.lower, w.reference,
                                       compared_file if kind == "change" else None, value=w.value, passed=False)
        trend = trend_for(w, params) if (kind == "trend" and trend_for is not None) else None
        g.kind = kind
        g.size = failure_size(kind, params, w.value, w.threshold, w.lower, w.reference, g.evaluator, trend)
        g.ratio = _ratio(kind, params, w, trend)
    return out


def _class_rank(g: FailureGroup) -> int:
    """Mission limits first, then SOC, other absolute limits, change, trend."""
    if g.kind == "absolute":
        return {"mission": 0, "soc": 1}.get(g.evaluator, 2)
    return {"change": 3, "trend": 4}.get(g.kind, 5)


def worst_group(groups: Sequence[FailureGroup]) -> FailureGroup | None:
    """The failure to quote first for a file.

    A violated absolute limit (mission before SOC) before a change, before a
    trend; at the detector scale before the amps and super-pixels (the whole
    detector is affected); then the furthest beyond its allowance.
    """
    if not groups:
        return None
    scale_rank = {s: i for i, s in enumerate(SCALE_SIZES)}
    return min(groups, key=lambda g: (_class_rank(g), scale_rank.get(g.scale, 9), -g.ratio))


def absolute_limits(params_for, base: str) -> list[tuple[str, str, float]]:
    """(evaluator, "min"/"max", value) of the absolute standards of a detector-scale metric."""
    out = []
    for evaluator in ("mission", "soc"):
        params = params_for(base, "detector", evaluator)
        if evaluator_kind(evaluator, params) != "absolute":
            continue
        for side in ("min", "max"):
            if isinstance(params.get(side), (int, float)) and not isinstance(params.get(side), bool):
                out.append((evaluator, side, float(params[side])))
    return out


@dataclass
class VerdictSummary:
    """A file's evaluations by verdict; "not evaluated" is neither passed nor failed."""

    n_failed: int = 0
    n_passed: int = 0
    n_not_evaluated: int = 0
    not_evaluated: dict[str, int] = field(default_factory=dict)  # evaluator -> evaluations not evaluated
    totals: dict[str, int] = field(default_factory=dict)  # evaluator -> evaluations

    @property
    def n_evaluations(self) -> int:
        return self.n_failed + self.n_passed + self.n_not_evaluated

    def not_evaluated_text(self) -> str:
        """``trend not evaluated`` / ``change not evaluated for 12 of 1057``; "" when everything ran."""
        parts = []
        for ev, n in sorted(self.not_evaluated.items(), key=lambda kv: evaluator_sort_key(kv[0])):
            total = self.totals.get(ev, n)
            parts.append(f"{ev} not evaluated" if n >= total else f"{ev} not evaluated for {n} of {total}")
        return ", ".join(parts)


def summarise_verdicts(counts) -> VerdictSummary:
    """Fold `rdmt_dagster.reports.queries.verdict_counts` rows into failed / passed / not evaluated."""
    out = VerdictSummary()
    for c in counts:
        v = verdict(c.passed)
        out.totals[c.evaluator] = out.totals.get(c.evaluator, 0) + c.count
        if v == FAIL:
            out.n_failed += c.count
        elif v == PASS:
            out.n_passed += c.count
        else:
            out.n_not_evaluated += c.count
            out.not_evaluated[c.evaluator] = out.not_evaluated.get(c.evaluator, 0) + c.count
    return out


def count_by_evaluator(failures) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for f in failures:
        counts[f.evaluator] += 1
    return dict(sorted(counts.items(), key=lambda kv: evaluator_sort_key(kv[0])))


_ABS_PATH = re.compile(r"(?<![\w:/.])(?:[A-Za-z]:)?(?:[/\\][^\s/\\'\"()<>,;]+)+[/\\]([^\s/\\'\"()<>,;]+)")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def scrub(text: str | None, *extra: str) -> str:
    """Remove folders, URLs and the given strings from a free text for publication.

    ``/data/crds/roman_wfi_dark_0001.asdf`` becomes ``roman_wfi_dark_0001.asdf``;
    URLs become ``[url]``.
    """
    if not text:
        return ""
    for value in extra:
        if value:
            text = text.replace(value, "")
    text = _URL.sub("[url]", text)
    return _ABS_PATH.sub(r"\1", text)
