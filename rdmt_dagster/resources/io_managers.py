"""IO managers: persist metrics and evaluations to the database, Parquet and ECSV.

Both handle several partitions per run (a delivery is one run): the value is
a dict partition key -> `MetricSet` / `EvaluationSet`. Loading rebuilds the
metric sets from the database, so any later run can pick them up.
"""


import dagster as dg

from ..parallel import process_map
from ..science.metrics import MetricSet
from ..storage.files import ParquetStore, write_ecsv
from . import RDMTConfig, open_database


def _as_dict(context, obj) -> dict:
    if isinstance(obj, dict):
        return obj
    return {context.asset_partition_key: obj}


class MetricsIOManager(dg.ConfigurableIOManager):
    """Writes `MetricSet` values to the database and the Parquet dataset."""

    rdmt: dg.ResourceDependency[RDMTConfig]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        database, parquet = self.rdmt.database(), self.rdmt.parquet()
        for metric_set in _as_dict(context, obj).values():
            if metric_set.reused:
                continue
            database.write_metrics(metric_set)
            parquet.write_metrics(metric_set)

    def load_input(self, context: dg.InputContext) -> dict[str, MetricSet]:
        database = self.rdmt.database()
        return {key: database.load_metric_set(key) for key in context.asset_partition_keys}


def write_evaluation_outputs(task: tuple) -> None:
    """Store one file's evaluations (runs in a worker process).

    ``task`` is ``(metric_set, evaluation_set, database_url, parquet_root, ecsv_root)``.
    """
    metric_set, evaluation_set, database_url, parquet_root, ecsv_root = task
    open_database(database_url).write_evaluations(evaluation_set, metric_set.monitor_version)
    ParquetStore(parquet_root).write_evaluations(evaluation_set, metric_set.monitor_version)
    write_ecsv(ecsv_root, metric_set, evaluation_set)


class EvaluationsIOManager(dg.ConfigurableIOManager):
    """Writes `EvaluationSet` values to the database, the Parquet dataset and ECSV files."""

    rdmt: dg.ResourceDependency[RDMTConfig]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        url, parquet, ecsv = self.rdmt.resolved_database_url(), self.rdmt.parquet().root, self.rdmt.ecsv_root
        tasks = [(ms, es, url, parquet, ecsv) for ms, es in _as_dict(context, obj).values() if es is not None]
        process_map(write_evaluation_outputs, tasks, self.rdmt.workers)

    def load_input(self, context: dg.InputContext) -> dict[str, list[dict]]:
        """Failed evaluations per partition (the full rows are in the database and Parquet)."""
        database = self.rdmt.database()
        return {key: database.failed_evaluations([key]) for key in context.asset_partition_keys}
