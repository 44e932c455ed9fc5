"""The L2 arm's Parquet datasets, partitioned by observation date.

Layout (hive partitioning; pyarrow, pandas and duckdb read it as one table)::

    <root>/l2_metrics/observation_date=2027-03-20/monitor=pixel/batch=<batch>/part-0.parquet
    <root>/l2_evaluations/observation_date=2027-03-20/monitor=pixel/batch=<batch>/part-0.parquet
    <root>/l2_table3/monitor=pixel/observation_date=2027-03-20/batch=<batch>/part-0.parquet

One leaf per batch (the run that measured the files), day and monitor: at
the survey peak a day is ~13,000 files, and a leaf per file would be ~50,000
small files a day. A file and reprocess number belongs to exactly one batch,
and a batch's leaf is rewritten whole when the batch runs again (a retried
run), so no row is ever written twice. ``l2_table3`` is the seed's Table 3:
one row per file, one column per detector-scale metric, the evaluation result
(``n_failed``, ``n_not_evaluated``, ``passed``: measured and nothing failed).
In ``l2_evaluations`` a verdict that was not given is null.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from .files import _replace_leaf, evaluation_arrays, evaluation_columns, metric_arrays

_BATCH = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _leaf(root: Path, dataset: str, day: str, monitor: str, batch: str) -> Path:
    if not _BATCH.match(batch):
        raise ValueError(f"batch id {batch!r} cannot name a folder")
    if dataset == "l2_table3":
        return Path(root, dataset, f"monitor={monitor}", f"observation_date={day}", f"batch={batch}")
    return Path(root, dataset, f"observation_date={day}", f"monitor={monitor}", f"batch={batch}")


def _identity(row, n: int) -> dict:
    return {
        "filename": pa.array([row.filename] * n, pa.string()),
        "reprocess_number": pa.array([row.reprocess_number] * n, pa.int32()),
        "detector": pa.array([row.detector] * n, pa.string()),
        "optical_element": pa.array([row.optical_element] * n, pa.string()),
        "exposure_start": pa.array([row.exposure_start] * n, pa.timestamp("us")),
    }


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables, promote_options="default") if tables else None


def metrics_rows(row, metric_set) -> pa.Table:
    arrays = metric_arrays(metric_set)
    return pa.table({**_identity(row, len(arrays["value"])), **arrays})


def evaluation_rows(row, evaluation_set) -> pa.Table:
    cols = evaluation_columns(evaluation_set)
    n = len(cols["passed"])
    return pa.table({
        **_identity(row, n),
        **evaluation_arrays(cols),
        "standards_hash": pa.array([evaluation_set.standards_hash] * n, pa.string()),
    })


def table3_row(row, metric_set, evaluation_set) -> dict:
    """One file's row of the Table 3 dataset: identity, detector-scale metrics, result."""
    out = {"filename": row.filename, "reprocess_number": row.reprocess_number, "detector": row.detector,
           "optical_element": row.optical_element, "exposure_start": row.exposure_start,
           "status": "ok" if metric_set.ok else "error", "error": metric_set.error}
    for metric in metric_set.metrics:
        out[metric.name] = float(np.asarray(metric.values["detector"])[0])
    n_failed = evaluation_set.n_failed if evaluation_set is not None else None
    out["n_failed"] = n_failed
    out["n_not_evaluated"] = evaluation_set.n_not_evaluated if evaluation_set is not None else None
    # The file passed when it was measured and nothing failed; verdicts that could
    # not be given (n_not_evaluated) are counted apart, not as passes.
    out["passed"] = bool(metric_set.ok and n_failed == 0)
    return out


class L2ParquetStore:
    """The L2 datasets under ``root`` (the RDMT home's ``parquet/``)."""

    def __init__(self, root):
        self.root = Path(root)

    def write_batch(self, batch: str, results) -> list[Path]:
        """Write one batch's results, grouped by observation day and monitor; the leaves written.

        ``results`` is an iterable of ``(row, metric_set, evaluation_set or None)``
        where ``row`` is the file's `rdmt_dagster.storage.l2_store.L2FileRow`.
        """
        groups: dict[tuple[str, str], list] = {}
        for row, metric_set, evaluation_set in results:
            day = row.observation_day or "unknown"
            groups.setdefault((day, metric_set.info.monitor or "file"), []).append((row, metric_set, evaluation_set))
        written = []
        for (day, monitor), items in sorted(groups.items()):
            metrics = _concat([metrics_rows(r, ms) for r, ms, _ in items if ms.ok])
            if metrics is not None:
                written.append(_replace_leaf(_leaf(self.root, "l2_metrics", day, monitor, batch), metrics))
            evaluations = _concat([evaluation_rows(r, es) for r, _, es in items if es is not None])
            if evaluations is not None:
                written.append(_replace_leaf(_leaf(self.root, "l2_evaluations", day, monitor, batch), evaluations))
            table3 = pa.Table.from_pylist([table3_row(r, ms, es) for r, ms, es in items])
            written.append(_replace_leaf(_leaf(self.root, "l2_table3", day, monitor, batch), table3))
        return written
