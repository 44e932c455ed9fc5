"""Stand-alone monitoring of files, without Dagster or a database (``rdmt check``).

Reference files and L2 images alike: each file is read once and every
monitor of its data model runs on it (``--monitors`` chooses); files of one
series (reference type and detector; L2 monitor, detector and optical
element) are compared in time order (USEAFTER; exposure start).

An evaluator that could not run on a value (a change evaluator with no
previous file, a trend evaluator with too little history) gives no verdict:
``"passed": null`` in the JSON document, ``n/e`` (not evaluated) in the
table; it is neither a pass nor a failure.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .science.history import MemoryHistory
from .science.measure import MeasureRequest, identities, measure_file, open_model, parameters_of, previous_among
from .science.metrics import FileInfo, MetricSet
from .science.monitor import EvaluationSet, MonitoringError, evaluate
from .science.scales import region_ids
from .science.standards import Standards

EVALUATOR_ORDER = ("mission", "soc", "change", "trend")


@dataclass
class CheckedFile:
    """One file measured by one monitor, with its evaluations (None when it could not be measured)."""

    metric_set: MetricSet
    evaluation_set: EvaluationSet | None


def _identities(paths, monitors) -> list[FileInfo]:
    """Identities of the readable files for each of their monitors (arrays are not loaded)."""
    out = []
    for path in paths:
        try:
            with open_model(path) as model:
                out.extend(identities(model, path, monitors))
        except MonitoringError:
            continue
    return out


def check_files(paths, standards: Standards, workers: int = 2, *, monitors=None,
                catalog: str | None = None) -> list[CheckedFile]:
    """Measure and evaluate ``paths``: one `CheckedFile` per file and monitor.

    Parameters
    ----------
    paths : list of path-like
    standards : Standards
    workers : int
        Files measured at once (threads).
    monitors : iterable of str, optional
        Run only these monitors.
    catalog : str, optional
        Astrometric reference catalog (ECSV or Parquet) for the L2 monitors that need one.
    """
    paths = [str(p) for p in paths]
    selected = tuple(monitors) if monitors else None
    parameters = parameters_of(standards)
    previous_path: dict[str, str] = {}
    if len(paths) > 1:
        infos = _identities(paths, selected)
        among = previous_among(infos)
        for info in infos:
            found = among(info)
            if found is not None:
                previous_path[info.path] = found.path

    def run(path: str) -> list[MetricSet]:
        return measure_file(MeasureRequest(path, parameters, selected, previous_path.get(path), catalog))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        metric_sets = [ms for sets in pool.map(run, paths) for ms in sets]
    history = MemoryHistory(metric_sets)
    evaluated = {}
    for ms in sorted((m for m in metric_sets if m.ok), key=lambda m: m.info.order_key):
        evaluated[id(ms)] = evaluate(ms, standards.for_monitor(ms.info.monitor), history)
    return [CheckedFile(ms, evaluated.get(id(ms))) for ms in metric_sets]


def _finite(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _iso(value):
    return value.isoformat() if value is not None else None


def identity_document(info: FileInfo) -> dict:
    """The identity fields of ``rdmt check --json`` (both arms' fields; None where they do not apply)."""
    return {
        "arm": info.arm or None,
        "detector": info.detector or None,
        "useafter": _iso(getattr(info, "useafter", None)),
        "optical_element": getattr(info, "optical_element", "") or None,
        "exposure_start": _iso(getattr(info, "exposure_start", None)),
        "program": getattr(info, "program", "") or None,
        "visit": getattr(info, "visit", "") or None,
        "exposure": getattr(info, "exposure", "") or None,
    }


def file_document(checked: CheckedFile) -> dict:
    """The JSON document of one file and monitor (see ``rdmt check --json``)."""
    ms, es = checked.metric_set, checked.evaluation_set
    doc = {
        "file": ms.info.path or ms.info.filename,
        "monitor": ms.info.monitor or None,
        "status": "ok" if ms.ok else "error",
        "error": ms.error,
        **identity_document(ms.info),
        "monitor_version": ms.monitor_version or None,
        "standards_hash": es.standards_hash if es else None,
        "n_failed": es.n_failed if es else None,
        "n_not_evaluated": es.n_not_evaluated if es else None,
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
        verdicts = ev.verdicts()
        for i, region in enumerate(region_ids(ev.scale)[: len(verdicts)].tolist()):
            entry = {"threshold": _finite(float(ev.threshold[i])), "passed": verdicts[i]}
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


def _when(info: FileInfo) -> str:
    if getattr(info, "useafter", None):
        return f"  useafter={info.useafter:%Y-%m-%d %H:%M:%S}"
    if getattr(info, "exposure_start", None):
        return f"  exposure_start={info.exposure_start:%Y-%m-%dT%H:%M:%S}  optical_element={info.optical_element or '?'}"
    return ""


def verdict_text(ev, index: int = 0) -> str:
    """``PASS``, ``FAIL`` or ``n/e`` (not evaluated) for one region of an evaluation."""
    if not ev.evaluated[index]:
        return "n/e"
    return "PASS" if ev.passed[index] else "FAIL"


def format_table(checked: CheckedFile) -> str:
    """Readable summary: detector-level metrics with their standards, then failing regions."""
    ms, es = checked.metric_set, checked.evaluation_set
    from .reports.escape import plain_text

    # The name and detector come from the file: one line each, whatever they hold.
    head = (f"{plain_text(ms.info.filename)}  monitor={ms.info.monitor or '?'}  "
            f"detector={plain_text(ms.info.detector) or '?'}")
    if not ms.ok:
        return f"{head}\n  ERROR: {ms.error}\n"
    evaluators = sorted({ev.evaluator for ev in es.evaluations},
                        key=lambda n: EVALUATOR_ORDER.index(n) if n in EVALUATOR_ORDER else len(EVALUATOR_ORDER))
    det = {(ev.metric, ev.evaluator): ev for ev in es.evaluations if ev.scale == "detector"}
    lines = [head + _when(ms.info)]
    header = f"  {'metric':<42}{'value':>14} {'unit':<9}" + "".join(f"{e:>18}" for e in evaluators)
    lines.append(header)
    for metric in ms.metrics:
        value = float(metric.values.detector[0])
        cells = []
        for name in evaluators:
            ev = det.get((metric.name, name))
            cells.append(f"{'':>18}" if ev is None else f"{verdict_text(ev) + ' ' + format(float(ev.threshold[0]), '.4g'):>18}")
        lines.append(f"  {metric.full_name('detector'):<42}{value:>14.6g} {metric.unit:<9}" + "".join(cells))
    failing = [ev for ev in es.failures if ev.scale != "detector"]
    if failing:
        lines.append("  failing amp / super-pixel evaluations:")
        for ev in failing:
            regions = region_ids(ev.scale)[ev.failed].tolist()
            shown = ", ".join(map(str, regions[:12])) + (" ..." if len(regions) > 12 else "")
            lines.append(f"    {ev.scale}_{ev.metric} [{ev.evaluator}]: {len(regions)} {ev.scale}(s): {shown}")
    notes = sorted({f"{ev.evaluator}: {ev.note}" for ev in es.evaluations if ev.note})
    for note in notes:
        lines.append(f"  note: {note}")
    not_evaluated = f", {es.n_not_evaluated} not evaluated (n/e)" if es.n_not_evaluated else ""
    lines.append(f"  {es.n_failed} failed evaluation(s){not_evaluated}")
    return "\n".join(lines) + "\n"
