"""The L2 IO manager: a batch's results to the database (long tables, Table 3 views) and Parquet.

The value passed between the L2 assets is an `L2Batch`: the run's batch id,
its files, and per file one `MetricSet` (and, after evaluation, one
`EvaluationSet`) per monitor. Each file is stored in its own transaction:
one file's storage failure is recorded against that file and the others go on.
"""

import threading
from dataclasses import dataclass, field

import dagster as dg

from ...resources import RDMTConfig
from ...resources.io_managers import record_failure
from ...science.metrics import MetricSet
from ...science.monitor import EvaluationSet
from ...storage.l2_parquet import L2ParquetStore
from ...storage.l2_store import L2FileRow, L2Store
from ...storage.l2_views import ensure_l2_views
from .jobs import BATCH_TAG

EVALUATIONS = "l2_evaluations"  # the asset whose output holds evaluations; every other holds metrics
_VIEWS_READY: set[str] = set()
_LOCK = threading.Lock()


@dataclass
class L2Batch:
    """The files of one run and what was measured and evaluated in them."""

    batch: str
    rows: list[L2FileRow]
    metric_sets: dict[int, list[MetricSet]] = field(default_factory=dict)
    evaluations: dict[int, list[EvaluationSet]] = field(default_factory=dict)

    @property
    def file_ids(self) -> list[int]:
        return [row.id for row in self.rows]

    @property
    def days(self) -> list[str]:
        return sorted({row.observation_day for row in self.rows if row.observation_day})


def batch_of_run(run) -> str:
    """The batch of a run: its ``rdmt/l2_batch`` tag, else (a backfill) the id of its first attempt.

    A retry of a failed run (``run_retries``, or a re-execution) is a new run
    with the first attempt's tags and root run id: it takes the same files,
    and a reprocessing retried does not number the files again.
    """
    return run.tags.get(BATCH_TAG) or run.tags.get("dagster/root_run_id") or run.run_id


def l2_store(rdmt: RDMTConfig) -> L2Store:
    """The migrated store, with the per-monitor views in place (checked once per process)."""
    database = rdmt.database()
    with _LOCK:
        if database.url not in _VIEWS_READY:
            ensure_l2_views(database.engine, rdmt.standards())
            _VIEWS_READY.add(database.url)
    return L2Store(database)


def _record_failure(store: L2Store, row: L2FileRow, exc: Exception, log) -> bool:
    return record_failure(row.filename, exc, lambda error: store.record_error(row.id, error), log)


def _fail_unrecorded(batch: str, what: str, filenames: list[str]) -> None:
    """Fail the step when neither a file's results nor its error could be written (the database is down).

    The files would stay claimed with nothing stored, and a run retried from
    its failed step would not store them: failing this step makes the retry
    do it again.
    """
    if filenames:
        raise dg.Failure(description=f"batch {batch}: the {what} of {len(filenames)} file(s) could not be stored "
                                     f"nor their error recorded: {', '.join(filenames[:5])}")


class L2IOManager(dg.ConfigurableIOManager):
    """Stores `L2Batch` values: metrics after measuring, evaluations and Parquet after evaluating."""

    rdmt: dg.ResourceDependency[RDMTConfig]

    def handle_output(self, context: dg.OutputContext, obj: L2Batch) -> None:
        store = l2_store(self.rdmt)
        if context.asset_key.path[-1] == EVALUATIONS:
            self._store_evaluations(context, store, obj)
        else:
            unrecorded = []
            for row in obj.rows:
                try:
                    store.write_measurements(row.id, obj.metric_sets.get(row.id, []))
                except Exception as exc:  # per-file isolation
                    if not _record_failure(store, row, exc, context.log):
                        unrecorded.append(row.filename)
            _fail_unrecorded(obj.batch, "measurements", unrecorded)

    def _store_evaluations(self, context, store: L2Store, obj: L2Batch) -> None:
        results, unrecorded = [], []
        for row in obj.rows:
            try:
                for evaluation_set in obj.evaluations.get(row.id, []):
                    store.write_evaluation(row.id, evaluation_set)
            except Exception as exc:  # per-file isolation
                if not _record_failure(store, row, exc, context.log):
                    unrecorded.append(row.filename)
                continue
            by_monitor = {es.info.monitor: es for es in obj.evaluations.get(row.id, [])}
            results += [(row, ms, by_monitor.get(ms.info.monitor)) for ms in obj.metric_sets.get(row.id, [])]
        _fail_unrecorded(obj.batch, "evaluations", unrecorded)
        try:
            L2ParquetStore(self.rdmt.parquet().root).write_batch(obj.batch, results)
        except Exception as exc:  # the database holds the results; Parquet is a copy for analysis
            context.log.error(f"batch {obj.batch}: Parquet not written ({type(exc).__name__}: {exc})")

    def load_input(self, context: dg.InputContext) -> L2Batch:
        """The run's batch with its stored measurements."""
        store = l2_store(self.rdmt)
        batch = batch_of_run(context.step_context.dagster_run)
        rows = store.batch_files(batch)
        return L2Batch(batch, rows, store.load_metric_sets([row.id for row in rows]))
