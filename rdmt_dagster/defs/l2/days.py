"""What the Dagster UI shows of each observation day: the images a run evaluated, and the day as a whole.

A day (partition) is evaluated by many runs, one per batch of its images. So:

* a day's materialisation of ``l2_evaluations`` gives the images *this run*
  evaluated on that day (`run_day_summaries`, from the run's results in memory);
* the day's check results give the whole day as stored once the run's
  results are in the database (`stored_day_summary`): every image observed
  that day, at its newest measured reprocess number, so that a clean batch
  never hides the failures of an earlier batch of the same day.

Both list the failing images with the failing metric, its value and limit,
and link to the day page of the report site.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from ...assets.failures import FailureLine, failure_json, failure_lines, failure_table, lines_from_failures
from ...assets.partitioned import PartitionCheck, link_metadata
from ...reports.formatting import Failure, change_reference_file
from ...science.standards import MonitorStandards, Standards


@dataclass
class DaySummary:
    """The images of one observation day and what their evaluations came to."""

    day: str
    images: int = 0
    n_failed: int = 0
    failing_images: set[str] = field(default_factory=set)
    lines: list[FailureLine] = field(default_factory=list)
    not_measured: dict[str, list[str]] = field(default_factory=dict)
    waiting: int = 0
    link: str | None = None
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN

    def add_lines(self, lines: list[FailureLine], severity: str) -> None:
        if lines:
            self.lines += lines
            self.failing_images.update(line.file for line in lines)
            if severity == "ERROR":
                self.severity = dg.AssetCheckSeverity.ERROR

    @property
    def headline(self) -> str:
        if self.n_failed:
            return (f"{self.day}: {len(self.failing_images)} of {self.images} image(s) failed {self.n_failed} "
                    f"evaluation(s); first: {self.lines[0].summary}.")
        return f"{self.day}: every evaluation of {self.images} image(s) passed."


def run_day_summaries(batch, standards: Standards, day_link, days) -> dict[str, DaySummary]:
    """Per day of the run: the images this run evaluated (an `L2Batch` with its evaluations)."""
    out = {day: DaySummary(day, link=day_link(day)) for day in days}
    for row in batch.rows:
        day = out.setdefault(row.observation_day or "", DaySummary(row.observation_day or ""))
        day.images += 1
        results = {es.info.monitor: es for es in batch.evaluations.get(row.id, [])}
        for ms in batch.metric_sets.get(row.id, []):
            if not ms.ok:
                day.not_measured.setdefault(row.filename, []).append(ms.error or "")
                continue
            es = results.get(ms.info.monitor)
            if es is None:
                continue
            block = standards.for_monitor(ms.info.monitor)
            day.n_failed += es.n_failed
            day.add_lines(failure_lines(ms, es, block, day.link), block.check_severity)
    return out


def day_metadata(summary: DaySummary, home) -> dict:
    """A day's `l2_evaluations` materialisation: what this run evaluated on that day."""
    metadata = {"images_evaluated": summary.images, "failed_evaluations": summary.n_failed,
                "images_with_failures": len(summary.failing_images),
                "images_not_measured": len(summary.not_measured)}
    if summary.lines:
        metadata["first_failure"] = summary.lines[0].summary
        metadata["failing_images"] = dg.MetadataValue.md(failure_table(summary.lines))
    if summary.not_measured:
        metadata["not_measured"] = dg.MetadataValue.json(summary.not_measured)
    link = link_metadata(summary.link, home)
    return {**metadata, **({"day_page": link} if link is not None else {})}


# -- the day as stored ----------------------------------------------------------------------------

class _StoredStandards:
    """Evaluator parameters of the standards each evaluation was made under (the current ones when not stored)."""

    def __init__(self, conn, current: Standards):
        self.conn, self.current = conn, current
        self.cache: dict[tuple[str | None, str], MonitorStandards] = {}

    def get(self, standards_hash: str | None, monitor: str) -> MonitorStandards:
        from ...reports.queries import standards_block

        key = (standards_hash, monitor)
        if key not in self.cache:
            block = standards_block(self.conn, standards_hash, monitor) if standards_hash else {}
            current = self.current.for_monitor(monitor)
            self.cache[key] = MonitorStandards(monitor, block, current.evaluator_kinds, "stored") if block else current
        return self.cache[key]


def _stored_lines(record, monitor: str, measurement, failures: list[Failure], stored: _StoredStandards,
                  link) -> tuple[list[FailureLine], str]:
    block = stored.get(measurement.standards_hash if measurement else None, monitor)
    compared = change_reference_file(measurement.compared_with) if measurement else None
    lines = lines_from_failures(failures, lambda base, scale, ev: block.evaluator_params(base, scale).get(ev, {}),
                                file=record.filename, detector=record.detector, monitor=monitor,
                                link=link, compared_file=compared)
    return lines, block.check_severity


def stored_day_summary(database, day: str, standards: Standards, link: str | None) -> DaySummary:
    """Every image observed on ``day`` (newest measured reprocess number), from the database."""
    from ...reports import l2_queries as q

    summary = DaySummary(day, link=link)
    with database.engine.connect() as conn:
        files = q.day_files(conn, day)
        ids = [f.id for f in files]
        failed, measured = q.failed_evaluations(conn, ids), q.measurements(conn, ids)
        summary.waiting = q.waiting_count(conn, day)
        stored = _StoredStandards(conn, standards)
        for record in files:
            summary.images += 1
            if record.status == "error":
                summary.not_measured[record.filename] = [record.error or "could not be measured"]
            by_monitor = {m.monitor: m for m in measured.get(record.id, [])}
            for m in by_monitor.values():
                if m.status == "error":
                    summary.not_measured.setdefault(record.filename, []).append(m.error or f"{m.monitor} did not run")
            for monitor, failures in failed.get(record.id, {}).items():
                summary.n_failed += len(failures)
                summary.add_lines(*_stored_lines(record, monitor, by_monitor.get(monitor), failures, stored, link))
    return summary


def day_pass_check(summary: DaySummary, home) -> PartitionCheck:
    """`l2_evaluations_pass` on one day: failed when any image of the day failed an evaluation."""
    metadata = {"day": summary.day, "images": summary.images, "images_with_failures": len(summary.failing_images),
                "failed_evaluations": summary.n_failed, "images_waiting": summary.waiting}
    if summary.lines:
        metadata["first_failure"] = summary.lines[0].summary
        metadata["failing_images"] = dg.MetadataValue.md(failure_table(summary.lines))
        metadata["failing_images_json"] = dg.MetadataValue.json(failure_json(summary.lines))
    link = link_metadata(summary.link, home)
    if link is not None:
        metadata["day_page"] = link
    return PartitionCheck(summary.day, not summary.n_failed, summary.headline, metadata, summary.severity)


def day_measured_check(summary: DaySummary) -> PartitionCheck:
    """`l2_files_measured` on one day: failed, naming the images and errors, when some image was not measured."""
    if summary.not_measured:
        first, errors = next(iter(summary.not_measured.items()))
        return PartitionCheck(
            summary.day, False,
            f"{summary.day}: {len(summary.not_measured)} of {summary.images} image(s) not (fully) measured; "
            f"first: {first}: {errors[0]}",
            {"day": summary.day, "not_measured": dg.MetadataValue.json(summary.not_measured)})
    return PartitionCheck(summary.day, True, f"{summary.day}: all {summary.images} image(s) measured by every monitor.",
                          {"day": summary.day, "images": summary.images})
