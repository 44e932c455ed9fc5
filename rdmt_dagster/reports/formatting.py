"""Wording shared by the reports and the notifications: values, standards, failures.

Both describe a failed evaluation the same way, so an instrument scientist
reading a Slack message finds the same numbers at the top of the report.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from ..science.scales import N_AMPS, N_SP_SIDE, N_SUPERPIXELS

SCALE_SIZES = {"detector": 1, "amp": N_AMPS, "superpixel": N_SUPERPIXELS}
SCALE_NAMES = {"detector": "detector", "amp": "amps", "superpixel": "super-pixels"}
EVALUATOR_ORDER = ("mission", "soc", "change", "trend")


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


def group_failures(failures, params_for, compared_file: str | None = None) -> list[FailureGroup]:
    """Group failures by metric and evaluator, detector scale first, and describe the worst region.

    ``params_for(base, scale, evaluator)`` returns the evaluator's standard parameters.
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
