"""Reference-file assets: files -> metrics -> evaluations, one partition per file.

A delivery (18 detectors) is one run: the assets take every partition key of
the run (``BackfillPolicy.single_run``) and measure the files in parallel
worker processes inside it (`rdmt_dagster.parallel`), since a run costs
seconds to start and a file ~0.5 s to measure.

Re-evaluation: a backfill over the partitions after the standards changed
re-evaluates every file with the new standards (new rows under the new
standards hash; the earlier evaluations stay) and measures again only the
files whose monitor version changed (``RDMTConfig.remeasure`` forces it).
"""


from collections import Counter

import dagster as dg

from ..parallel import process_map
from ..resources import RDMTConfig
from ..resources.notifications import NotificationsConfig
from ..science.metrics import FileInfo, MetricSet
from ..science.measure import MeasureRequest, measure_file, parameters_of, previous_among
from ..science.monitor import evaluate, registry
from .partitioned import add_partition_metadata, check_evaluations, check_outputs, run_verdict, tag_run
from .reference_figures import (
    evaluation_metadata,
    evaluations_pass_check,
    file_verdict,
    files_readable_check,
    metrics_metadata,
    report_files,
    run_failures_metadata,
)

GROUP = "reference_files"

reference_file_partitions = dg.DynamicPartitionsDefinition(name="reference_files")

reference_files = dg.AssetSpec(
    "reference_files",
    partitions_def=reference_file_partitions,
    group_name=GROUP,
    description="WFI calibration reference files delivered to CRDS (one partition per file name). Each version "
                "of a file is recorded, when it is first measured, as a reported materialisation with its path, "
                "type, detector, USEAFTER and SHA-256.",
    kinds={"asdf"},
)

EVALUATIONS_PASS = "evaluations_pass"
FILES_READABLE = "files_readable"


def _stored_if_current(database, key: str, path: str | None) -> MetricSet | None:
    """The stored metrics of ``key`` when neither its file nor its monitor's version changed since."""
    status = database.file_status(key)
    if not status or status["status"] != "ok" or status["path"] != path:
        return None
    monitor = registry().get(status["monitor"])
    if monitor is None or monitor.version != status["monitor_version"]:
        return None
    stored = database.load_metric_set(key)
    stored.reused = True
    return stored


def _first(metric_sets: list[MetricSet]) -> MetricSet:
    """A reference file has one monitor: its metric set."""
    return metric_sets[0]


def previous_files(results: dict[str, MetricSet], database) -> dict[str, str]:
    """Files to measure again against the previous file of their series: key -> that file's path.

    Monitors that compare pixels with the previous file (the mask) are first
    measured without it (files are measured in parallel, before their
    identity is known); the previous file is then the newer of the newest
    earlier file in the database and the predecessor in this very batch.
    Stored metrics are kept unless a predecessor arrived in the batch.
    """
    among = previous_among([r.info for r in results.values() if r.ok])
    monitors = registry()
    redo = {}
    for key, result in results.items():
        monitor = monitors.get(result.info.monitor) if result.ok else None
        if monitor is None or not monitor.compares_previous_file:
            continue
        in_batch = among(result.info)
        if result.reused and in_batch is None:
            continue
        candidates = [p for p in (in_batch, database.previous_info(result.info)) if p is not None]
        if not candidates:
            continue
        chosen = max(candidates, key=lambda p: p.order_key)
        if result.reused or result.compared_with != chosen.filename:
            redo[key] = chosen.path
    return redo


def _measure_all(rdmt: RDMTConfig, keys: list[str], log) -> dict[str, MetricSet]:
    """Measure the run's files in worker processes; reuse, previous files and storage are decided here."""
    paths = rdmt.locate(keys)
    database = rdmt.database()
    parameters = parameters_of(rdmt.standards())  # an invalid standards file fails the run here, with its problems
    results: dict[str, MetricSet] = {}
    todo = []
    for key in keys:
        path = paths.get(key)
        if path is None:
            results[key] = MetricSet(FileInfo(key, "", ""), "", error=f"{key}: file not found (not registered, not in reference_dirs)")
            continue
        stored = None if rdmt.remeasure else _stored_if_current(database, key, path)
        if stored is not None:
            results[key] = stored
        else:
            todo.append(key)
    requests = [MeasureRequest(paths[key], parameters) for key in todo]
    results.update(zip(todo, map(_first, process_map(measure_file, requests, rdmt.workers))))
    redo = previous_files(results, database)
    if redo:
        log.info(f"comparing {len(redo)} file(s) with the previous file of their detector")
        requests = [MeasureRequest(paths[key], parameters, (results[key].info.monitor,), previous_path=previous)
                    for key, previous in redo.items()]
        results.update(zip(redo, map(_first, process_map(measure_file, requests, rdmt.workers))))
    for result in results.values():
        if result.error:
            log.error(result.error)
    return {key: results[key] for key in keys}


# -- assets -------------------------------------------------------------------------------------

@dg.asset(
    partitions_def=reference_file_partitions,
    deps=[reference_files],
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="metrics_io_manager",
    group_name=GROUP,
    kinds={"numpy", "parquet", "sql"},
    description="Metrics of each reference file at detector, amp and super-pixel scale. Each file version "
                "measured for the first time is recorded on reference_files (path, type, detector, USEAFTER, "
                "SHA-256).",
)
def reference_file_metrics(context: dg.AssetExecutionContext, rdmt: RDMTConfig):
    keys = list(context.partition_keys)
    results = _measure_all(rdmt, keys, context.log)
    rdmt.database().record_run(keys, context.run.run_id)
    report_files(context.instance, reference_files.key, results, rdmt.database().registrations(keys))
    add_partition_metadata(context, {key: metrics_metadata(result) for key, result in results.items()})
    monitors = Counter(r.info.monitor for r in results.values() if r.ok and not r.reused)
    return dg.Output(
        results,
        metadata={
            "run_files": len(keys),
            "run_measured": dg.MetadataValue.json(dict(monitors)),
            "run_reused_unchanged_monitor_version": sum(r.reused for r in results.values()),
            "run_errors": sum(not r.ok for r in results.values()),
        },
    )


EVALUATIONS_PASS_DESCRIPTION = (
    "Every evaluation of the reference file passed: each metric, at detector, amp and super-pixel scale, against "
    "the mission and SOC limits, the change from the previous file of the same type and detector (by USEAFTER) "
    "and the trend of the earlier files. A verdict that could not be given (no previous file, too little "
    "history) is neither a pass nor a failure: it is counted as not evaluated. One result per file; a failure lists each failing metric with its value, "
    "limit and the report.")
FILES_READABLE_DESCRIPTION = (
    "The reference file could be read as its Roman data model, and its metrics measured and stored; "
    "a failure gives the error. One result per file.")


def _evaluate_all(metrics: dict[str, MetricSet], rdmt: RDMTConfig):
    """Evaluate every file, oldest first; key -> (metric set, evaluation set or None), and standards by monitor."""
    database, standards, history = rdmt.database(), rdmt.standards(), rdmt.database().history()
    outputs, by_monitor = {}, {}
    # Oldest first, so that a batch holding several files of one detector
    # compares each with its predecessor.
    for key, metric_set in sorted(metrics.items(), key=lambda kv: kv[1].info.order_key):
        if not metric_set.ok:
            outputs[key] = (metric_set, None)
            continue
        monitor = metric_set.info.monitor
        if monitor not in by_monitor:
            by_monitor[monitor] = standards.for_monitor(monitor)
            database.write_standards(by_monitor[monitor])
        outputs[key] = (metric_set, evaluate(metric_set, by_monitor[monitor], history))
    return outputs, by_monitor


def _stored_errors(rdmt: RDMTConfig, keys) -> dict[str, str]:
    """Files recorded as errors once the run's results were stored (unreadable, or storage failed)."""
    database = rdmt.database()
    out = {}
    for key in keys:
        status = database.file_status(key)
        if status is None or status["status"] == "error":
            out[key] = (status or {}).get("error") or "not recorded in the RDMT database"
    return out


@dg.asset(
    partitions_def=reference_file_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="evaluations_io_manager",
    group_name=GROUP,
    kinds={"parquet", "sql", "ecsv"},
    description="Every metric value against the mission, SOC, change and trend standards. Each file's "
                "materialisation gives its failed evaluations, the failing metrics (value, limit) and its report.",
    check_specs=[
        dg.AssetCheckSpec(EVALUATIONS_PASS, asset="reference_file_evaluations", partitions_def=reference_file_partitions,
                          description=EVALUATIONS_PASS_DESCRIPTION),
        dg.AssetCheckSpec(FILES_READABLE, asset="reference_file_evaluations", partitions_def=reference_file_partitions,
                          description=FILES_READABLE_DESCRIPTION),
    ],
)
def reference_file_evaluations(context: dg.AssetExecutionContext, rdmt: RDMTConfig,
                               notifications: NotificationsConfig, reference_file_metrics):
    outputs, by_monitor = _evaluate_all(reference_file_metrics, rdmt)
    home = rdmt.home_path
    verdicts = {key: file_verdict(key, ms, result, by_monitor.get(ms.info.monitor), notifications.report_link(key))
                for key, (ms, result) in outputs.items()}
    add_partition_metadata(context, {key: evaluation_metadata(v, home) for key, v in verdicts.items()})
    failing = [v for v in verdicts.values() if v.n_failed]
    for v in failing:
        context.log.warning(v.headline)
    yield dg.Output(outputs)

    asset_key = context.assets_def.key
    evaluated = [v for v in verdicts.values() if not v.error]
    passing = [evaluations_pass_check(v, home) for v in evaluated]
    yield from check_evaluations(context, asset_key, EVALUATIONS_PASS, passing,
                                 run_verdict(passing, "files", run_failures_metadata(evaluated)))
    errors = _stored_errors(rdmt, verdicts)
    readable = [files_readable_check(key, errors.get(key)) for key in verdicts]
    yield from check_evaluations(context, asset_key, FILES_READABLE, readable,
                                 run_verdict(readable, "files", {"errors": dg.MetadataValue.json(errors)}))
    yield from check_outputs(context)
    tag_run(context, sum(v.n_failed for v in verdicts.values()), [v.key for v in failing], sorted(errors),
            failing[0].lines[0].summary if failing else "")
