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
from ..science.metrics import FileInfo, MetricSet
from ..science.measure import MeasureRequest, measure_file, parameters_of, previous_among
from ..science.monitor import evaluate, registry

GROUP = "reference_files"

reference_file_partitions = dg.DynamicPartitionsDefinition(name="reference_files")

reference_files = dg.AssetSpec(
    "reference_files",
    partitions_def=reference_file_partitions,
    group_name=GROUP,
    description="WFI calibration reference files delivered to CRDS (one partition per file name).",
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


@dg.asset(
    partitions_def=reference_file_partitions,
    deps=[reference_files],
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="metrics_io_manager",
    group_name=GROUP,
    kinds={"numpy", "parquet", "sql"},
    description="Metrics of each reference file at detector, amp and super-pixel scale.",
)
def reference_file_metrics(context: dg.AssetExecutionContext, rdmt: RDMTConfig):
    keys = list(context.partition_keys)
    results = _measure_all(rdmt, keys, context.log)
    monitors = Counter(r.info.monitor for r in results.values() if r.ok and not r.reused)
    errors = {k: r.error for k, r in results.items() if not r.ok}
    return dg.Output(
        results,
        metadata={
            "files": len(keys),
            "measured": dict(monitors),
            "reused_unchanged_monitor_version": sum(r.reused for r in results.values()),
            "errors": dg.MetadataValue.json(errors),
            "metric_values": sum(v.size for r in results.values() for m in r.metrics for _, v in m.values.items()),
        },
    )


@dg.asset(
    partitions_def=reference_file_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="evaluations_io_manager",
    group_name=GROUP,
    kinds={"parquet", "sql", "ecsv"},
    description="Every metric value against the mission, SOC, change and trend standards.",
    check_specs=[
        dg.AssetCheckSpec(EVALUATIONS_PASS, asset="reference_file_evaluations",
                          description="Every evaluation of the run's reference files passed."),
        dg.AssetCheckSpec(FILES_READABLE, asset="reference_file_evaluations",
                          description="Every reference file of the run could be read and measured."),
    ],
)
def reference_file_evaluations(context: dg.AssetExecutionContext, rdmt: RDMTConfig, reference_file_metrics):
    database = rdmt.database()
    standards = rdmt.standards()
    history = database.history()
    outputs, failing, severities, by_monitor = {}, [], set(), {}
    # Oldest first, so that a batch holding several files of one detector
    # compares each with its predecessor.
    for key, metric_set in sorted(reference_file_metrics.items(), key=lambda kv: kv[1].info.order_key):
        if not metric_set.ok:
            outputs[key] = (metric_set, None)
            continue
        monitor = metric_set.info.monitor
        if monitor not in by_monitor:
            by_monitor[monitor] = standards.for_monitor(monitor)
            database.write_standards(by_monitor[monitor])
        monitor_standards = by_monitor[monitor]
        result = evaluate(metric_set, monitor_standards, history)
        outputs[key] = (metric_set, result)
        for ev in result.failures:
            severities.add(monitor_standards.check_severity)
            failing.append({
                "file": key, "detector": metric_set.info.detector, "metric": f"{ev.scale}_{ev.metric}",
                "evaluator": ev.evaluator, "failed_regions": ev.n_failed,
            })
    errors = {k: ms.error for k, (ms, _) in outputs.items() if not ms.ok}
    yield dg.Output(
        outputs,
        metadata={
            "files": len(outputs),
            "failed_evaluations": sum(r.n_failed for _, r in outputs.values() if r is not None),
            "files_with_failures": len({f["file"] for f in failing}),
        },
    )
    severity = dg.AssetCheckSeverity.ERROR if "ERROR" in severities else dg.AssetCheckSeverity.WARN
    yield dg.AssetCheckResult(
        check_name=EVALUATIONS_PASS,
        passed=not failing,
        severity=severity,
        metadata={"failing": dg.MetadataValue.json(failing[:200]), "n_failing_metrics": len(failing)},
    )
    yield dg.AssetCheckResult(
        check_name=FILES_READABLE,
        passed=not errors,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"errors": dg.MetadataValue.json(errors)},
    )
