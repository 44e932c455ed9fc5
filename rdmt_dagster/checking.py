"""Stand-alone monitoring of files, without Dagster or a database (``rdmt check``)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .science.history import MemoryHistory
from .science.metrics import FileInfo, MetricSet
from .science.monitor import (
    EvaluationSet, ReferenceFileError, describe, evaluate, measure, open_model, previous_among,
)
from .science.scales import region_ids
from .science.standards import Standards


@dataclass
class CheckedFile:
    metric_set: MetricSet
    evaluation_set: EvaluationSet | None


def _identities(paths) -> list[FileInfo]:
    """Type, detector and USEAFTER of each readable file (arrays are not loaded)."""
    out = []
    for path in paths:
        try:
            with open_model(path) as model:
                out.append(describe(model, path)[1])
        except ReferenceFileError:
            continue
    return out


def check_files(paths, standards: Standards, workers: int = 2) -> list[CheckedFile]:
    """Measure and evaluate ``paths``; files of one type and detector are compared in USEAFTER order."""
    paths = [str(p) for p in paths]
    previous = None
    if len(paths) > 1:
        among = previous_among(_identities(paths))

        def previous(info: FileInfo) -> str | None:
            found = among(info)
            return found.path if found else None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        metric_sets = list(pool.map(lambda p: measure(p, standards.for_monitor, previous), paths))
    history = MemoryHistory(metric_sets)
    evaluated = {}
    for ms in sorted((m for m in metric_sets if m.ok), key=lambda m: m.info.order_key):
        evaluated[id(ms)] = evaluate(ms, standards.for_monitor(ms.info.monitor), history)
    return [CheckedFile(ms, evaluated.get(id(ms))) for ms in metric_sets]


def _finite(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def file_document(checked: CheckedFile) -> dict:
    """The JSON document of one file (see ``rdmt check --json``)."""
    ms, es = checked.metric_set, checked.evaluation_set
    doc = {
        "file": ms.info.path or ms.info.filename,
        "monitor": ms.info.monitor or None,
        "status": "ok" if ms.ok else "error",
        "error": ms.error,
        "detector": ms.info.detector or None,
        "useafter": ms.info.useafter.isoformat() if ms.info.useafter else None,
        "monitor_version": ms.monitor_version or None,
        "standards_hash": es.standards_hash if es else None,
        "n_failed": es.n_failed if es else None,
        "metrics": [],
    }
    if not ms.ok:
        return doc
    per_value: dict[tuple[str, int], dict] = {}
    for record in ms.records():
        row = {"metric": record["metric"], "scale": record["scale"], "region": record["region"],
               "value": _finite(record["value"]), "unit": record["unit"], "evaluations": {}}
        per_value[(row["metric"], row["region"])] = row
        doc["metrics"].append(row)
    for ev in es.evaluations if es else []:
        full = f"{ev.scale}_{ev.metric}"
        for i, region in enumerate(region_ids(ev.scale).tolist()):
            entry = {"threshold": _finite(float(ev.threshold[i])), "passed": bool(ev.passed[i])}
            if ev.lower is not None:
                entry["lower"] = _finite(float(ev.lower[i]))
            if ev.reference is not None:
                entry["reference"] = _finite(float(ev.reference[i]))
            if ev.reference_files:
                entry["compared_with"] = ev.reference_files
            if ev.note:
                entry["note"] = ev.note
            per_value[(full, region)]["evaluations"][ev.evaluator] = entry
    return doc


def format_table(checked: CheckedFile) -> str:
    """Readable summary: detector-level metrics with their standards, then failing regions."""
    ms, es = checked.metric_set, checked.evaluation_set
    head = f"{ms.info.filename}  monitor={ms.info.monitor or '?'}  detector={ms.info.detector or '?'}"
    if not ms.ok:
        return f"{head}\n  ERROR: {ms.error}\n"
    evaluators = sorted({ev.evaluator for ev in es.evaluations}, key=lambda n: ["mission", "soc", "change", "trend"].index(n) if n in ("mission", "soc", "change", "trend") else 9)
    det = {(ev.metric, ev.evaluator): ev for ev in es.evaluations if ev.scale == "detector"}
    lines = [f"{head}  useafter={ms.info.useafter:%Y-%m-%d %H:%M:%S}" if ms.info.useafter else head]
    header = f"  {'metric':<42}{'value':>14} {'unit':<7}" + "".join(f"{e:>18}" for e in evaluators)
    lines.append(header)
    for metric in ms.metrics:
        value = float(metric.values.detector[0])
        cells = []
        for name in evaluators:
            ev = det.get((metric.name, name))
            cells.append(f"{'':>18}" if ev is None else f"{('PASS' if ev.passed[0] else 'FAIL') + ' ' + format(float(ev.threshold[0]), '.4g'):>18}")
        lines.append(f"  {metric.full_name('detector'):<42}{value:>14.6g} {metric.unit:<7}" + "".join(cells))
    failing = [ev for ev in es.failures if ev.scale != "detector"]
    if failing:
        lines.append("  failing amp / super-pixel evaluations:")
        for ev in failing:
            regions = region_ids(ev.scale)[~ev.passed].tolist()
            shown = ", ".join(map(str, regions[:12])) + (" ..." if len(regions) > 12 else "")
            lines.append(f"    {ev.scale}_{ev.metric} [{ev.evaluator}]: {len(regions)} {ev.scale}(s): {shown}")
    notes = sorted({f"{ev.evaluator}: {ev.note}" for ev in es.evaluations if ev.note})
    for note in notes:
        lines.append(f"  note: {note}")
    lines.append(f"  {es.n_failed} failed evaluation(s)")
    return "\n".join(lines) + "\n"
