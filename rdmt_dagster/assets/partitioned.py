"""One run, many partitions: what each partition's materialisation and check result say, and the run's tags.

A delivery is one run over many partitions (``BackfillPolicy.single_run``).
Dagster copies an asset's output metadata onto the materialisation of every
partition of the run, so:

* a file's (or a day's) own figures go in partition-scoped metadata
  (`dagster.AssetExecutionContext.add_asset_metadata` with ``partition_key``);
  the output metadata holds only what is true of the whole run, under
  ``run_*`` keys, so that no partition shows another file's numbers as its own;
* asset checks are partitioned like their asset and give one result per
  partition. `dagster.AssetCheckResult` cannot name a partition when a run
  covers several (it takes the run's single partition or none), so the
  assets yield `dagster.AssetCheckEvaluation` events themselves, after their
  output, each pointing at its partition's materialisation in this run (what
  Dagster compares with the latest materialisation to show the result as
  current), then the empty check outputs the step must still produce;
* a run over several partitions ends each check with one result *without*
  a partition: the run's verdict (failed when any partition failed, naming
  them). Dagster shows a check's newest result as its "latest execution"
  (on the check page, in the asset graph's side panel), and the per-partition
  rows of a run are stored in an arbitrary order, so without it a passing
  file could stand for a run in which another file failed. Per-partition
  status ignores partition-less results;
* the run gets tags saying whether it found failures (``rdmt/failures``)
  and how many, so that the runs list can be filtered on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

# Dagster has no public constructor for the pointer from a check evaluation to
# the materialisation it checked; AssetCheckResult builds the same record
# internally, but only for a run of one partition.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

TAG_FAILURES = "rdmt/failures"
TAG_FAILED_EVALUATIONS = "rdmt/failed_evaluations"
TAG_FILES_WITH_FAILURES = "rdmt/files_with_failures"
TAG_FILES_NOT_MONITORED = "rdmt/files_not_monitored"
TAG_FAILING_FILES = "rdmt/failing_files"
TAG_FIRST_FAILURE = "rdmt/first_failure"
TAG_NOT_MONITORED = "rdmt/not_monitored"
MAX_TAG_LENGTH = 200  # a tag is read in the runs list: long lists are cut, saying how many were left out
IN_CHUNK = 500  # partition keys per event-log query (SQLite's limit on bound parameters)


@dataclass(frozen=True)
class PartitionCheck:
    """The result of one asset check on one partition (None: the run's verdict over its partitions)."""

    partition: str | None
    passed: bool
    description: str
    metadata: Mapping = field(default_factory=dict)
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping],
                           public_api: bool = False) -> None:
    """Give each partition's materialisation its own metadata (call before yielding the output).

    Same as `dagster.AssetExecutionContext.add_asset_metadata` with
    ``partition_key`` for each partition, which checks its key against the
    partitions definition with three event-log queries per call (0.1 s on
    SQLite, so minutes for a backfill of a thousand files, per asset). The
    keys are checked here once, against the run's, and the metadata goes to
    the step's metadata accumulator that method fills; ``public_api`` (or a
    Dagster without that accumulator) takes the documented way.
    """
    by_partition = {key: dict(metadata) for key, metadata in by_partition.items() if metadata}
    unknown = set(by_partition) - set(context.partition_keys)
    if unknown:
        raise ValueError(f"not partitions of this run: {sorted(unknown)[:5]}")
    step = getattr(context, "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if public_api or not hasattr(accumulator, "with_additional_asset_metadata"):
        for key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return
    for key, metadata in by_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(
            asset_key=context.assets_def.key, partition_key=key, metadata=metadata)
    step._metadata_accumulator = accumulator


def run_materializations(context: dg.AssetExecutionContext, asset_key: dg.AssetKey,
                         partitions: Iterable[str]) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """partition -> its materialisation of ``asset_key`` in this run (stored once the output was yielded)."""
    keys = list(dict.fromkeys(partitions))
    out = {}
    for start in range(0, len(keys), IN_CHUNK):
        chunk = keys[start:start + IN_CHUNK]
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=chunk), limit=len(chunk)).records
        for record in records:
            if record.run_id == context.run_id and record.partition_key not in out:
                out[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
    return out


def run_verdict(results: list[PartitionCheck], noun: str, metadata: Mapping | None = None) -> PartitionCheck:
    """The run's verdict over its partitions' results: failed when any failed, naming them first."""
    failed = [r for r in results if not r.passed]
    severity = (dg.AssetCheckSeverity.ERROR if any(r.severity == dg.AssetCheckSeverity.ERROR for r in failed)
                else dg.AssetCheckSeverity.WARN)
    if not failed:
        return PartitionCheck(None, True, f"All {len(results)} {noun} of the run passed.", metadata or {}, severity)
    shown = "; ".join(r.description.rstrip(".") for r in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return PartitionCheck(None, False, f"{len(failed)} of {len(results)} {noun} of the run failed: {shown}{more}.",
                          {"failed": dg.MetadataValue.json([r.partition for r in failed]), **(metadata or {})},
                          severity)


def check_evaluations(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, check_name: str,
                      results: Iterable[PartitionCheck],
                      verdict: PartitionCheck | None = None) -> Iterator[dg.AssetCheckEvaluation]:
    """One `AssetCheckEvaluation` per partition, each targeting this run's materialisation of it.

    Then, when the run covers several partitions, ``verdict`` (the run's
    verdict, without a partition) as the check's newest result. Nothing is
    yielded when the check is not selected for this run. A partition with no
    result (a file that could not be evaluated) shows as skipped: the check
    was planned for it and never gave a verdict.
    """
    if dg.AssetCheckKey(asset_key, check_name) not in context.selected_asset_check_keys:
        return
    results = list(results)
    targets = run_materializations(context, asset_key, [r.partition for r in results])
    last = [verdict] if verdict is not None and len(context.partition_keys) > 1 else []
    for r in results + last:
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=r.passed, metadata=dict(r.metadata),
            severity=r.severity, description=r.description, partition=r.partition,
            target_materialization_data=targets.get(r.partition), blocking=False)


def check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """The (empty) outputs of the selected checks, which the step must produce once their results are out."""
    for key in context.selected_asset_check_keys:
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


def _names(names: list[str], limit: int = MAX_TAG_LENGTH) -> str:
    """Comma-separated names within ``limit`` characters, ending with how many were left out."""
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        if len(", ".join(shown + [name]) + (f", +{rest} more" if rest else "")) > limit:
            return ", ".join(shown + [f"+{len(names) - len(shown)} more"])
        shown.append(name)
    return ", ".join(shown)


def tag_run(context: dg.AssetExecutionContext, failed_evaluations: int, failing: list[str],
            not_monitored: list[str] = (), first_failure: str = "") -> dict[str, str]:
    """Tag the run with what it found; returns the tags.

    ``rdmt/failures`` (``true`` when an evaluation failed or a file could not
    be monitored, else ``false``) filters the runs list; the counts, the
    failing files (or days) and the first failure tell what at a glance, in
    the runs list and on the sensor page that launched the run.
    """
    found = failed_evaluations > 0 or bool(not_monitored)
    tags = {
        TAG_FAILURES: "true" if found else "false",
        TAG_FAILED_EVALUATIONS: str(failed_evaluations),
        TAG_FILES_WITH_FAILURES: str(len(failing)),
        TAG_FILES_NOT_MONITORED: str(len(not_monitored)),
    }
    if failing:
        tags[TAG_FAILING_FILES] = _names(list(failing))
    if first_failure:
        tags[TAG_FIRST_FAILURE] = first_failure[:MAX_TAG_LENGTH]
    if not_monitored:
        tags[TAG_NOT_MONITORED] = _names(list(not_monitored))
    context.instance.add_run_tags(context.run_id, tags)
    return tags


def link_metadata(link: str | None, home: Path) -> dg.MetadataValue | None:
    """A report link as Dagster metadata: a URL under ``RDMT_REPORT_BASE_URL``, else the local file's path."""
    if not link:
        return None
    if "://" in link:
        return dg.MetadataValue.url(link)
    return dg.MetadataValue.path(str(Path(home) / link))
