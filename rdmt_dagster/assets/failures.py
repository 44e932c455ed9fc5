"""Failed evaluations as the Dagster UI shows them: one line per failing metric, a Markdown table.

The lines use the wording of the reports and the notifications
(`rdmt_dagster.reports.formatting.group_failures`): a failing metric is named
with its scale and evaluator, where it failed (``2 of 32 amps (5, 6)``), the
value of its worst region with the unit, and the standard it broke
(``≤ 0.5``, ``±11% of 0.007287 (roman_wfi_dark_0007.asdf)``), so that the
numbers on an asset or check page are the ones at the top of the report.

File names, metric names, units and the previous file's name come from files
and the database: every cell of the Markdown table is escaped
(`rdmt_dagster.reports.escape`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from urllib.parse import quote

import numpy as np

from ..reports.escape import markdown_code, markdown_text
from ..reports.formatting import Failure, group_failures, split_metric
from ..science.metrics import MetricSet
from ..science.monitor import EvaluationSet
from ..science.scales import region_ids
from ..science.standards import MonitorStandards

MAX_TABLE_ROWS = 40  # a Markdown table longer than this is cut, saying how many rows were left out
MAX_JSON_ROWS = 200

ParamsFor = Callable[[str, str, str], dict]


@dataclass(frozen=True)
class FailureLine:
    """One failing metric of one file under one evaluator.

    Attributes
    ----------
    file, detector, monitor : str
        The file and what it is.
    metric, scale, evaluator : str
        Metric base name (``dark_current_mean``), scale and evaluator.
    where : str
        The failing regions (``detector``, ``2 of 32 amps (5, 6)``).
    value : str
        The value of the worst failing region, with its unit.
    limit : str
        The standard the value broke.
    n_regions : int
        How many regions failed.
    link : str or None
        The file's report (or the day page of an L2 image): a URL, or a path
        relative to the RDMT home.
    """

    file: str
    detector: str
    monitor: str
    metric: str
    scale: str
    evaluator: str
    where: str
    value: str
    limit: str
    n_regions: int
    link: str | None = None

    def as_json(self) -> dict:
        return asdict(self)

    @property
    def what(self) -> str:
        """The failure without the file: ``detector dark_current_mean [change]: 0.0087 DN / s, limit ...``."""
        where = "" if self.where == "detector" else f" in {self.where}"
        return f"{self.scale} {self.metric} [{self.evaluator}]{where}: {self.value}, limit {self.limit}"

    @property
    def summary(self) -> str:
        """One line of plain text naming the file: ``WFI07 roman_wfi_dark_0025.asdf: detector ...``."""
        return f"{self.detector} {self.file}: {self.what}"


def standards_params(standards: MonitorStandards) -> ParamsFor:
    """``params_for(base, scale, evaluator)`` of `group_failures` from a monitor's standards."""
    def params_for(base: str, scale: str, evaluator: str) -> dict:
        return standards.evaluator_params(base, scale).get(evaluator, {})

    return params_for


def _number(value) -> float | None:
    """A float for the formatting functions; NaN stays NaN (shown as ``NaN``)."""
    return None if value is None else float(value)


def _at(array, region: int) -> float | None:
    return None if array is None else _number(np.asarray(array)[region])


def _region_numbers(scale: str, n: int) -> list[int]:
    """The stored region numbers of a scale's values (amps are 1..32), as the reports name them."""
    try:
        numbers = [int(r) for r in region_ids(scale)]
    except ValueError:  # a scale of its own (per-channel values): its values' order
        return list(range(n))
    return numbers if len(numbers) == n else list(range(n))


def _failures_of(metric_set: MetricSet, evaluation_set: EvaluationSet) -> tuple[list[Failure], str | None]:
    """Every failed region of a file's evaluations, and the file the change evaluator compared with."""
    units = {m.name: m.unit for m in metric_set.metrics}
    values = {(m.name, scale): np.asarray(v, dtype=np.float64) for m in metric_set.metrics
              for scale, v in m.values.items()}
    failures, compared = [], None
    for ev in evaluation_set.failures:
        judged = values.get((ev.metric, ev.scale))
        numbers = _region_numbers(ev.scale, np.size(ev.failed))
        for index in np.flatnonzero(ev.failed):
            index = int(index)
            failures.append(Failure(
                f"{ev.scale}_{ev.metric}", ev.scale, numbers[index], _at(judged, index), units.get(ev.metric, ""),
                ev.evaluator, _at(ev.threshold, index), _at(ev.lower, index), _at(ev.reference, index)))
        # The change evaluator names one previous file; the trend evaluator a comma-separated history.
        if ev.reference_files and "," not in ev.reference_files:
            compared = ev.reference_files
    return failures, compared


def lines_from_failures(failures: Iterable[Failure], params_for: ParamsFor, *, file: str, detector: str,
                        monitor: str, link: str | None = None, compared_file: str | None = None) -> list[FailureLine]:
    """Group one file's failed regions (of one monitor) into lines, worst region first described."""
    groups = group_failures(list(failures), params_for, compared_file)
    return [FailureLine(file, detector, monitor, split_metric(g.metric)[1] or g.metric, g.scale, g.evaluator,
                        g.where, g.value_text, g.standard, g.n_regions, link) for g in groups]


def failure_lines(metric_set: MetricSet, evaluation_set: EvaluationSet | None, standards: MonitorStandards,
                  link: str | None = None) -> list[FailureLine]:
    """The failing metrics of one file measured and evaluated in this run (none when not evaluated)."""
    if evaluation_set is None or not evaluation_set.n_failed:
        return []
    failures, compared = _failures_of(metric_set, evaluation_set)
    info = metric_set.info
    return lines_from_failures(failures, standards_params(standards), file=info.filename, detector=info.detector,
                               monitor=info.monitor, link=link, compared_file=compared)


def markdown_link(link: str | None, text: str = "report") -> str:
    """A report link for a Markdown cell: a link when it is a URL, else the path as code."""
    if not link:
        return ""
    if "://" in link:
        # The base URL is configuration; the rest was built from a sanitised folder name.
        return f"[{text}]({quote(link, safe=':/?#&=%~._-+@!$,;')})"
    return markdown_code(link)


COLUMNS = ("file", "detector", "metric", "scale", "evaluator", "failing", "value", "limit", "report")


def _row(line: FailureLine) -> list[str]:
    return [markdown_text(line.file), markdown_text(line.detector), markdown_code(line.metric),
            markdown_text(line.scale), markdown_text(line.evaluator), markdown_text(line.where),
            markdown_text(line.value), markdown_text(line.limit), markdown_link(line.link)]


def failure_table(lines: list[FailureLine], max_rows: int = MAX_TABLE_ROWS) -> str:
    """A Markdown table of failing metrics (file, detector, metric, scale, evaluator, regions, value, limit, report)."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_row(line)) + " |" for line in lines[:max_rows]]
    if len(lines) > max_rows:
        out.append(f"\n{len(lines) - max_rows} more failing metric(s) not shown: see the report.")
    return "\n".join(out)


def failure_json(lines: list[FailureLine], max_rows: int = MAX_JSON_ROWS) -> list[dict]:
    return [line.as_json() for line in lines[:max_rows]]

