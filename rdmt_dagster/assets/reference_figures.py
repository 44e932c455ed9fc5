"""What the Dagster UI shows of each reference file: its event on `reference_files`, its partitions' figures, its checks.

Functions of `rdmt_dagster.assets.reference_files`, kept apart so that the
assets stay a sequence of steps. Everything here works on one file's
results (`MetricSet`, `EvaluationSet`) and returns Dagster metadata or a
`PartitionCheck`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import numpy as np

from ..science.metrics import MetricSet
from ..science.monitor import EvaluationSet
from .failures import FailureLine, failure_json, failure_lines, failure_table
from .partitioned import PartitionCheck, link_metadata


def file_metadata(result: MetricSet, registration: dict | None) -> dict:
    """Metadata of a file's `reference_files` event: where it is and what it is."""
    info = result.info
    registration = registration or {}
    path = registration.get("path") or info.path
    metadata = {"path": dg.MetadataValue.path(path)} if path else {}
    useafter = getattr(info, "useafter", None)
    for name, value in (("type", getattr(info, "reftype", "")), ("detector", info.detector),
                        ("useafter", useafter.isoformat() if useafter else ""),
                        ("sha256", registration.get("checksum") or "")):
        if value:
            metadata[name] = value
    metadata["version"] = int(registration.get("version") or 1)
    metadata["readable"] = result.ok
    return metadata


def _recorded_version(instance: dg.DagsterInstance, asset_key: dg.AssetKey, key: str) -> tuple | None:
    """(sha256, version) of the latest recorded event of partition ``key`` of ``asset_key``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1).records
    if not records:
        return None
    metadata = records[0].asset_materialization.metadata
    return tuple(metadata[k].value if k in metadata else None for k in ("sha256", "version"))


def report_files(instance: dg.DagsterInstance, asset_key: dg.AssetKey, results: dict[str, MetricSet],
                 registrations: dict) -> int:
    """Record each file version not recorded yet as a reported materialisation of ``asset_key`` (`reference_files`).

    The file was made outside Dagster (the RFP delivered it to CRDS): a
    runless event says so, and gives the external asset the file's path,
    type, detector, USEAFTER and SHA-256 instead of "never materialized".
    It carries no data version, so the downstream partitions measured in this
    run do not show as stale. Returns how many were recorded.
    """
    recorded = 0
    for key, result in results.items():
        metadata = file_metadata(result, registrations.get(key))
        if _recorded_version(instance, asset_key, key) == (metadata.get("sha256"), metadata["version"]):
            continue  # measured again (new standards, new monitor version): the same file
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=asset_key, partition=key, metadata=metadata,
            description="Reference file as registered in the RDMT database, recorded when first measured."))
        recorded += 1
    return recorded


def metrics_metadata(result: MetricSet) -> dict:
    """One file's figures on its `reference_file_metrics` materialisation."""
    if not result.ok:
        return {"status": "error", "error": result.error or ""}
    info = result.info
    useafter = getattr(info, "useafter", None)
    metadata = {
        "status": "reused (monitor version unchanged)" if result.reused else "measured",
        "monitor": info.monitor,
        "detector": info.detector,
        "useafter": useafter.isoformat() if useafter else "",
        "monitor_version": result.monitor_version,
        "metric_values": sum(np.size(v) for m in result.metrics for _, v in m.values.items()),
    }
    if result.compared_with:
        metadata["compared_with"] = result.compared_with
    return metadata


@dataclass
class FileVerdict:
    """What the evaluations of one file came to."""

    key: str
    detector: str = ""
    monitor: str = ""
    n_failed: int = 0
    n_evaluations: int = 0
    n_not_evaluated: int = 0
    lines: list[FailureLine] = field(default_factory=list)
    error: str | None = None
    link: str | None = None
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN

    @property
    def headline(self) -> str:
        """One sentence on the file's evaluations (check description, log)."""
        if self.error:
            return f"{self.key} could not be monitored: {self.error}"
        if not self.n_failed:
            passed = self.n_evaluations - self.n_not_evaluated
            skipped = (f", {self.n_not_evaluated} not evaluated (no previous file or too little history)"
                       if self.n_not_evaluated else "")
            return f"{self.detector} {self.key}: no evaluation failed: {passed} passed{skipped}."
        return (f"{self.detector} {self.key}: {self.n_failed} failed evaluations in {len(self.lines)} metric(s); "
                f"first: {self.lines[0].what}.")


def file_verdict(key: str, metric_set: MetricSet, result: EvaluationSet | None, standards, link) -> FileVerdict:
    """Summarise one file's evaluation for its partition's metadata and check results."""
    info = metric_set.info
    verdict = FileVerdict(key, info.detector, info.monitor, link=link, error=metric_set.error)
    if result is None:
        return verdict
    verdict.n_failed, verdict.n_evaluations = result.n_failed, result.n_evaluations
    verdict.n_not_evaluated = result.n_not_evaluated
    verdict.lines = failure_lines(metric_set, result, standards, link)
    if standards.check_severity == "ERROR":
        verdict.severity = dg.AssetCheckSeverity.ERROR
    return verdict


def _report_entry(verdict: FileVerdict, home) -> dict:
    value = link_metadata(verdict.link, home)
    return {"report": value} if value is not None else {}


def evaluation_metadata(verdict: FileVerdict, home) -> dict:
    """One file's figures on its `reference_file_evaluations` materialisation."""
    if verdict.error:
        return {"status": "error", "error": verdict.error}
    metadata = {
        "detector": verdict.detector,
        "failed_evaluations": verdict.n_failed,
        "evaluations": verdict.n_evaluations,
        "not_evaluated": verdict.n_not_evaluated,
    }
    if verdict.lines:
        metadata["first_failure"] = verdict.lines[0].summary
        metadata["failing_metrics"] = dg.MetadataValue.md(failure_table(verdict.lines))
    return {**metadata, **_report_entry(verdict, home)}


def evaluations_pass_check(verdict: FileVerdict, home) -> PartitionCheck:
    """`evaluations_pass` on one file: failed when any evaluation failed, with a table of the failing metrics."""
    metadata = {"file": verdict.key, "failed_evaluations": verdict.n_failed,
                "evaluations": verdict.n_evaluations, "not_evaluated": verdict.n_not_evaluated}
    if verdict.lines:
        metadata["first_failure"] = verdict.lines[0].summary
        metadata["failing_metrics"] = dg.MetadataValue.md(failure_table(verdict.lines))
        metadata["failing_metrics_json"] = dg.MetadataValue.json(failure_json(verdict.lines))
    return PartitionCheck(verdict.key, not verdict.n_failed, verdict.headline,
                          {**metadata, **_report_entry(verdict, home)}, verdict.severity)


def run_failures_metadata(verdicts: list[FileVerdict]) -> dict:
    """The run's `evaluations_pass` verdict: every failing metric of every file of the run."""
    lines = [line for v in verdicts for line in v.lines]
    metadata = {"files": len(verdicts), "files_with_failures": sum(1 for v in verdicts if v.n_failed),
                "failed_evaluations": sum(v.n_failed for v in verdicts)}
    if lines:
        metadata["failing_metrics"] = dg.MetadataValue.md(failure_table(lines))
        metadata["failing_metrics_json"] = dg.MetadataValue.json(failure_json(lines))
    return metadata


def files_readable_check(key: str, error: str | None) -> PartitionCheck:
    """`files_readable` on one file: failed, with the error, when it could not be read, measured or stored."""
    if error:
        return PartitionCheck(key, False, f"{key} could not be monitored: {error}", {"file": key, "error": error})
    return PartitionCheck(key, True, f"{key} was read, measured and stored.", {"file": key})
