"""File outputs: a hive-partitioned Parquet dataset and one ECSV file per reference file.

Parquet layout (readable by pyarrow, pandas and duckdb with hive partitioning)::

    <root>/metrics/monitor=dark/detector=WFI01/filename=<file>/part-0.parquet
    <root>/evaluations/monitor=dark/detector=WFI01/filename=<file>/standards=<hash>/part-0.parquet

Each leaf is rewritten whole, so re-running a file replaces its rows.
ECSV: ``<root>/<monitor>/<detector>/<file stem>.ecsv`` with one row per metric
value and, per evaluator, its threshold, reference and verdict.

A verdict that was not given (the evaluator could not run: no previous file,
too little history) is null in Parquet and masked in ECSV, never True.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..reports.escape import plain_text
from ..science.metrics import MetricSet
from ..science.monitor import EvaluationSet
from ..science.scales import region_ids


def _replace_leaf(directory: Path, table: pa.Table) -> Path:
    """Write ``table`` as the only file of ``directory`` (atomically replaced)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    pq.write_table(table, staging / "part-0.parquet", compression="zstd")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory / "part-0.parquet"


def _leaf(root: Path, kind: str, info, *extra: str) -> Path:
    parts = [f"monitor={info.monitor or 'unknown'}", f"detector={info.detector or 'unknown'}", f"filename={info.filename}"]
    return Path(root, kind, *parts, *extra)


def metric_arrays(metric_set: MetricSet) -> dict[str, pa.Array]:
    """The long metric columns of one file (metric, scale, region, value, unit, monitor version), both arms."""
    cols = metric_set.columns()
    n = len(cols["value"])
    return {
        "metric": pa.array(cols["metric"].tolist(), pa.string()),
        "scale": pa.array(cols["scale"].tolist(), pa.string()),
        "region": pa.array(np.asarray(cols["region"], dtype=np.int32)),
        "value": pa.array(np.asarray(cols["value"], dtype=np.float64)),
        "unit": pa.array(cols["unit"].tolist(), pa.string()),
        "monitor_version": pa.array([metric_set.monitor_version] * n, pa.string()),
    }


def metrics_table(metric_set: MetricSet) -> pa.Table:
    arrays = metric_arrays(metric_set)
    n = len(arrays["value"])
    return pa.table({**arrays, "useafter": pa.array([metric_set.info.useafter] * n, pa.timestamp("us"))})


def evaluation_columns(evaluation_set: EvaluationSet) -> dict[str, np.ndarray]:
    """Long columns: one row per evaluator per metric value.

    ``passed`` is an object array of True, False and None (not evaluated).
    """
    cols: dict[str, list] = {k: [] for k in ("metric", "scale", "region", "evaluator", "threshold", "lower", "reference", "passed", "compared_with")}
    for ev in evaluation_set.evaluations:
        regions = region_ids(ev.scale)
        n = regions.size
        cols["metric"].append(np.full(n, f"{ev.scale}_{ev.metric}", dtype=object))
        cols["scale"].append(np.full(n, ev.scale, dtype=object))
        cols["region"].append(regions)
        cols["evaluator"].append(np.full(n, ev.evaluator, dtype=object))
        cols["threshold"].append(np.asarray(ev.threshold, dtype=np.float64))
        cols["lower"].append(np.full(n, np.nan) if ev.lower is None else np.asarray(ev.lower, dtype=np.float64))
        cols["reference"].append(np.full(n, np.nan) if ev.reference is None else np.asarray(ev.reference, dtype=np.float64))
        cols["passed"].append(np.array(ev.verdicts(), dtype=object))
        cols["compared_with"].append(np.full(n, ev.reference_files or "", dtype=object))
    if not evaluation_set.evaluations:
        return {k: np.array([]) for k in cols}
    return {k: np.concatenate(v) for k, v in cols.items()}


def evaluation_arrays(cols: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """`evaluation_columns` as Arrow arrays (metric .. passed), both arms."""
    return {
        "metric": pa.array([str(x) for x in cols["metric"].tolist()], pa.string()),
        "scale": pa.array([str(x) for x in cols["scale"].tolist()], pa.string()),
        "region": pa.array(np.asarray(cols["region"], dtype=np.int32)),
        "evaluator": pa.array([str(x) for x in cols["evaluator"].tolist()], pa.string()),
        "threshold": pa.array(np.asarray(cols["threshold"], dtype=np.float64)),
        "lower": pa.array(np.asarray(cols["lower"], dtype=np.float64)),
        "reference": pa.array(np.asarray(cols["reference"], dtype=np.float64)),
        "passed": pa.array(cols["passed"].tolist(), pa.bool_()),  # null: not evaluated
    }


def evaluations_table(evaluation_set: EvaluationSet, monitor_version: str) -> pa.Table:
    cols = evaluation_columns(evaluation_set)
    n = len(cols["passed"])
    return pa.table({
        **evaluation_arrays(cols),
        "compared_with": pa.array(cols["compared_with"].tolist(), pa.string()),
        "monitor_version": pa.array([monitor_version] * n, pa.string()),
    })


class ParquetStore:
    """The Parquet dataset under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def write_metrics(self, metric_set: MetricSet) -> Path | None:
        leaf = _leaf(self.root, "metrics", metric_set.info)
        if not metric_set.ok:
            shutil.rmtree(leaf, ignore_errors=True)
            return None
        return _replace_leaf(leaf, metrics_table(metric_set))

    def write_evaluations(self, evaluation_set: EvaluationSet, monitor_version: str) -> Path:
        leaf = _leaf(self.root, "evaluations", evaluation_set.info, f"standards={evaluation_set.standards_hash}")
        return _replace_leaf(leaf, evaluations_table(evaluation_set, monitor_version))


def _meta_text(value) -> str | None:
    """A metadata string on one line: the ECSV header is YAML in ``#`` comment lines."""
    return None if value is None else plain_text(value)


def write_ecsv(root: str | Path, metric_set: MetricSet, evaluation_set: EvaluationSet) -> Path:
    """One astropy-readable ECSV file with a file's metrics and their evaluations.

    The metadata strings (file name, detector, reference type, ...) come from
    the file: control characters and line breaks in them become spaces, so
    each stays one line of the YAML header.
    """
    from astropy.table import MaskedColumn, Table

    info = metric_set.info
    cols = metric_set.columns()
    table = Table(
        {"metric": cols["metric"].astype(str), "scale": cols["scale"].astype(str),
         "region": cols["region"].astype(np.int32), "value": cols["value"], "unit": cols["unit"].astype(str)}
    )
    index = {(m, r): i for i, (m, r) in enumerate(zip(cols["metric"].tolist(), cols["region"].tolist()))}
    for ev in evaluation_set.evaluations:
        prefix = ev.evaluator
        for suffix in ("threshold", "reference"):
            if f"{prefix}_{suffix}" not in table.colnames:
                table[f"{prefix}_{suffix}"] = np.full(len(table), np.nan)
        if f"{prefix}_passed" not in table.colnames:
            # Masked wherever no verdict was given: values this evaluator does not
            # judge, and those it could not judge (not evaluated).
            table[f"{prefix}_passed"] = MaskedColumn(np.zeros(len(table), bool), mask=np.ones(len(table), bool))
        rows = np.array([index[(f"{ev.scale}_{ev.metric}", r)] for r in region_ids(ev.scale).tolist()], dtype=np.int64)
        table[f"{prefix}_threshold"][rows] = ev.threshold
        if ev.reference is not None:
            table[f"{prefix}_reference"][rows] = ev.reference
        table[f"{prefix}_passed"][rows] = np.ma.array(ev.passed, mask=~ev.evaluated)
    table.meta.update({
        "filename": _meta_text(info.filename), "monitor": _meta_text(info.monitor),
        "detector": _meta_text(info.detector), "reftype": _meta_text(info.reftype),
        "useafter": info.useafter.isoformat() if info.useafter else None,
        "monitor_version": _meta_text(metric_set.monitor_version),
        "standards_hash": _meta_text(evaluation_set.standards_hash),
        "compared_with": sorted({_meta_text(e.reference_files) for e in evaluation_set.evaluations
                                 if e.reference_files}),
        "n_failed": evaluation_set.n_failed,
        "n_not_evaluated": evaluation_set.n_not_evaluated,
    })
    path = Path(root, info.monitor, info.detector or "unknown", Path(info.filename).stem + ".ecsv")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ecsv.tmp")
    table.write(tmp, format="ascii.ecsv", overwrite=True)
    tmp.replace(path)
    return path
