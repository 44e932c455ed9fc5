"""IO managers: persist metrics and evaluations to the database, Parquet and ECSV.

Both handle several partitions per run (a delivery is one run): the value is
a dict partition key -> `MetricSet` / `EvaluationSet`. Loading rebuilds the
metric sets from the database, so any later run can pick them up.
"""


import dagster as dg

from ..parallel import process_map
from ..science.metrics import FileInfo, MetricSet
from ..storage.files import ParquetStore, write_ecsv
from . import RDMTConfig, open_database


def _as_dict(context, obj) -> dict:
    if isinstance(obj, dict):
        return obj
    return {context.asset_partition_key: obj}


def record_failure(filename: str, exc: Exception, record, log) -> bool:
    """Record against a file that its results could not be stored; never raise. Whether it was recorded.

    One file's storage failure (a value the database refuses, a dropped
    connection that outlived the retries) must not stop the other files of
    the run, and must not vanish either: ``record(error)`` marks the file as
    an error, which fails the run's readable/measured check and is reported.
    """
    error = f"{filename}: results could not be stored ({type(exc).__name__}: {exc})"[:2000]
    log.error(error)
    try:
        record(error)
        return True
    except Exception as again:  # the database itself is unusable: the log line is all that is left
        log.error(f"{filename}: the failure could not be recorded either ({type(again).__name__}: {again})")
        return False


def record_storage_failure(database, metric_set: MetricSet, exc: Exception, log) -> None:
    """`record_failure` for a reference file: its metrics are replaced by the error."""
    info = metric_set.info

    def record(error: str) -> None:
        database.write_metrics(MetricSet(FileInfo(info.filename, info.path, info.monitor),
                                         metric_set.monitor_version, error=error))

    record_failure(info.filename, exc, record, log)


class MetricsIOManager(dg.ConfigurableIOManager):
    """Writes `MetricSet` values to the database and the Parquet dataset."""

    rdmt: dg.ResourceDependency[RDMTConfig]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        database, parquet = self.rdmt.database(), self.rdmt.parquet()
        for metric_set in _as_dict(context, obj).values():
            if metric_set.reused:
                continue
            try:
                database.write_metrics(metric_set)
                parquet.write_metrics(metric_set)
            except Exception as exc:  # per-file isolation: see record_storage_failure
                record_storage_failure(database, metric_set, exc, context.log)

    def load_input(self, context: dg.InputContext) -> dict[str, MetricSet]:
        database = self.rdmt.database()
        return {key: database.load_metric_set(key) for key in context.asset_partition_keys}


def write_evaluation_outputs(task: tuple) -> str | None:
    """Store one file's evaluations (runs in a worker process); the error text when that failed.

    ``task`` is ``(metric_set, evaluation_set, database_url, parquet_root, ecsv_root)``.
    """
    metric_set, evaluation_set, database_url, parquet_root, ecsv_root = task
    try:
        open_database(database_url).write_evaluations(evaluation_set, metric_set.monitor_version)
        ParquetStore(parquet_root).write_evaluations(evaluation_set, metric_set.monitor_version)
        write_ecsv(ecsv_root, metric_set, evaluation_set)
    except Exception as exc:  # per-file isolation: the caller records it against the file
        return f"{type(exc).__name__}: {exc}"
    return None


class EvaluationsIOManager(dg.ConfigurableIOManager):
    """Writes `EvaluationSet` values to the database, the Parquet dataset and ECSV files."""

    rdmt: dg.ResourceDependency[RDMTConfig]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        url, parquet, ecsv = self.rdmt.resolved_database_url(), self.rdmt.parquet().root, self.rdmt.ecsv_root
        tasks = [(ms, es, url, parquet, ecsv) for ms, es in _as_dict(context, obj).values() if es is not None]
        for task, error in zip(tasks, process_map(write_evaluation_outputs, tasks, self.rdmt.workers)):
            if error is not None:
                record_storage_failure(self.rdmt.database(), task[0], RuntimeError(error), context.log)

    def load_input(self, context: dg.InputContext) -> dict[str, list[dict]]:
        """Failed evaluations per partition (the full rows are in the database and Parquet)."""
        database = self.rdmt.database()
        return {key: database.failed_evaluations([key]) for key in context.asset_partition_keys}
