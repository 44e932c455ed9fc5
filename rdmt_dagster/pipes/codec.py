"""JSON for what crosses a Pipes boundary: measurement tasks out, `MetricSet` results back.

Arrays travel as the base64 of their bytes with dtype and shape, not as
lists of numbers, for three reasons:

* exactness: every value, NaN and infinities included (their bit patterns,
  -0.0 too), comes back identical and in the same dtype;
* standard JSON: Python writes NaN as a bare ``NaN`` token that strict
  readers refuse; base64 never produces one;
* size: 8 bytes of float64 take 10.7 base64 characters against ~19 for a
  repr. An L2 image's four metric sets (~1,000 values) encode to ~15 kB.

`FileInfo` subclasses travel under their class name (only subclasses of
`FileInfo` are rebuilt) and their datetimes as ISO 8601 strings.

Examples
--------
>>> import numpy as np
>>> from rdmt_dagster.science.metrics import FileInfo, Metric, MetricSet
>>> from rdmt_dagster.science.scales import ScaleValues
>>> ms = MetricSet(FileInfo("a.asdf", "/a.asdf", "pixel"), "1",
...                [Metric("m", "DN", ScaleValues(detector=np.array([np.nan])))])
>>> back = decode_metric_set(encode_metric_set(ms))
>>> np.isnan(back.metrics[0].values.detector[0])
True
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Any

import numpy as np

from ..l2.fetch import L2MeasureTask
from ..science.measure import MeasureRequest
from ..science.metrics import FileInfo, Metric, MetricSet
from ..science.scales import ScaleValues

__all__ = [
    "CODEC_VERSION",
    "CodecError",
    "decode_array",
    "decode_metric_set",
    "decode_result",
    "decode_tasks",
    "encode_array",
    "encode_metric_set",
    "encode_result",
    "encode_tasks",
]

#: Written into every payload; a reader refuses another version rather than misread it.
CODEC_VERSION = 1


class CodecError(ValueError):
    """A payload that is not what this codec writes (another version, an unknown class, a bad field)."""


# ----------------------------------------------------------------------------- arrays


def encode_array(values) -> dict:
    """An array as ``{"dtype", "shape", "b64"}``: its C-order bytes in base64.

    Parameters
    ----------
    values : array_like
        Numbers of a fixed-size dtype (object arrays are refused).

    Returns
    -------
    dict
        ``dtype`` is numpy's ``dtype.str`` (byte order included, ``"<f8"``).
    """
    array = np.asarray(values)
    if array.dtype.hasobject:
        raise CodecError(f"cannot encode an array of dtype {array.dtype}")
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "b64": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")}


def decode_array(doc: dict) -> np.ndarray:
    """The array `encode_array` wrote (a writable copy, dtype and shape as encoded)."""
    try:
        raw = base64.b64decode(doc["b64"], validate=True)
        dtype = np.dtype(doc["dtype"])
        return np.frombuffer(raw, dtype=dtype).reshape(doc["shape"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"not an encoded array ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------- file identities


def _file_info_classes() -> dict[str, type[FileInfo]]:
    """`FileInfo` and all its subclasses by class name (whatever module defines them)."""
    found, pending = {}, [FileInfo]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _encode_value(value):
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise CodecError(f"cannot encode a file identity field of type {type(value).__name__}")


def _decode_value(value):
    if isinstance(value, dict):
        return datetime.fromisoformat(value["datetime"])
    return value


def encode_info(info: FileInfo) -> dict:
    """A file identity as ``{"class": name, "fields": {...}}``."""
    fields = {f.name: _encode_value(getattr(info, f.name)) for f in dataclasses.fields(info)}
    return {"class": type(info).__name__, "fields": fields}


def decode_info(doc: dict) -> FileInfo:
    """The `FileInfo` (subclass) `encode_info` wrote."""
    cls = _file_info_classes().get(doc.get("class"))
    if cls is None:
        raise CodecError(f"unknown file identity class {doc.get('class')!r}")
    try:
        return cls(**{name: _decode_value(value) for name, value in doc["fields"].items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"bad {cls.__name__} fields ({exc})") from None


# ----------------------------------------------------------------------------- metrics


def encode_metric(metric: Metric) -> dict:
    values = {scale: encode_array(v) for scale, v in metric.values.items()}
    return {"name": metric.name, "unit": metric.unit, "description": metric.description, "values": values}


def decode_metric(doc: dict) -> Metric:
    values = ScaleValues(**{scale: decode_array(v) for scale, v in doc["values"].items()})
    return Metric(doc["name"], doc["unit"], values, doc.get("description", ""))


def encode_metric_set(ms: MetricSet) -> dict:
    """One `MetricSet` as JSON-ready data (see the module docstring for the array form)."""
    return {"info": encode_info(ms.info), "monitor_version": ms.monitor_version,
            "metrics": [encode_metric(m) for m in ms.metrics], "error": ms.error,
            "reused": ms.reused, "compared_with": ms.compared_with}


def decode_metric_set(doc: dict) -> MetricSet:
    """The `MetricSet` `encode_metric_set` wrote, equal in every field and value."""
    try:
        return MetricSet(decode_info(doc["info"]), doc["monitor_version"],
                         [decode_metric(m) for m in doc["metrics"]], error=doc["error"],
                         reused=doc["reused"], compared_with=doc["compared_with"])
    except KeyError as exc:
        raise CodecError(f"metric set without {exc}") from None


def encode_result(index: int, metric_sets: list[MetricSet]) -> dict:
    """The message of one measured task: its index in the batch and its metric sets."""
    return {"rdmt_codec": CODEC_VERSION, "index": int(index),
            "metric_sets": [encode_metric_set(ms) for ms in metric_sets]}


def decode_result(doc: Any) -> tuple[int, list[MetricSet]]:
    """``(index, metric sets)`` of a message `encode_result` wrote.

    Raises
    ------
    CodecError
        ``doc`` is not such a message (e.g. another sender's custom message).
    """
    _check_version(doc)
    return int(doc["index"]), [decode_metric_set(d) for d in doc["metric_sets"]]


# ----------------------------------------------------------------------------- tasks


def _check_version(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("rdmt_codec") != CODEC_VERSION:
        found = doc.get("rdmt_codec") if isinstance(doc, dict) else type(doc).__name__
        raise CodecError(f"not an RDMT payload of codec version {CODEC_VERSION} (found {found!r})")


def _encode_task(task: L2MeasureTask, parameters: list[dict]) -> dict:
    """One task; its monitor parameters by position in the shared ``parameters`` list."""
    request = task.request
    if request.parameters not in parameters:
        parameters.append(request.parameters)
    return {"file_id": int(task.file_id), "bucket": task.bucket, "key": task.key, "filename": task.filename,
            "workdir": task.workdir, "path": request.path, "parameters": parameters.index(request.parameters),
            "monitors": list(request.monitors) if request.monitors is not None else None,
            "previous_path": request.previous_path, "catalog_path": request.catalog_path}


def encode_tasks(tasks: list[tuple[int, L2MeasureTask]]) -> dict:
    """Indexed tasks as one payload; parameter sets shared by several tasks are written once.

    Every task of a batch carries the same ~2.3 kB of standards parameters:
    written once, 18 tasks take ~8 kB of JSON instead of ~48 kB (measured
    with the packaged standards), which keeps a Lambda event small.

    Parameters
    ----------
    tasks : list of (int, L2MeasureTask)
        Each task with its index in the batch (the index comes back with its result).
    """
    parameters: list[dict] = []
    encoded = [{"index": int(index), **_encode_task(task, parameters)} for index, task in tasks]
    return {"rdmt_codec": CODEC_VERSION, "parameters": parameters, "tasks": encoded}


def decode_tasks(doc: Any) -> list[tuple[int, L2MeasureTask]]:
    """The indexed tasks `encode_tasks` wrote."""
    _check_version(doc)
    out = []
    try:
        for t in doc["tasks"]:
            request = MeasureRequest(t["path"], doc["parameters"][t["parameters"]],
                                     tuple(t["monitors"]) if t["monitors"] is not None else None,
                                     t["previous_path"], t["catalog_path"])
            out.append((int(t["index"]), L2MeasureTask(int(t["file_id"]), t["bucket"], t["key"], t["filename"],
                                                       request, t["workdir"])))
    except (KeyError, IndexError, TypeError) as exc:
        raise CodecError(f"bad task payload ({type(exc).__name__}: {exc})") from None
    return out
