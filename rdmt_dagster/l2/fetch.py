"""Measuring one L2 image held in S3: fetch, measure, remove (runs in a worker process).

The request is plain data, so the same call serves the run's process pool
and, later, a Pipes subprocess or a Lambda: no database, no Dagster.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..science.measure import MeasureRequest, measure_file
from ..science.metrics import FileInfo, MetricSet
from .notices import valid_filename


@dataclass(frozen=True)
class L2MeasureTask:
    """One file of a batch: where it is and how to measure it.

    Attributes
    ----------
    file_id : int
        Its ``l2_file`` row (file and reprocess number).
    bucket, key, filename : str
        The S3 object and its (validated) base name.
    request : MeasureRequest
        Parameters, monitors and catalog; its ``path`` is filled in here.
    workdir : str
        Local folder for the download (removed afterwards).
    """

    file_id: int
    bucket: str
    key: str
    filename: str
    request: MeasureRequest
    workdir: str


def _s3_client():
    import boto3
    from botocore.config import Config

    # Endpoint (AWS_ENDPOINT_URL), region and credentials from boto3's usual sources.
    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def measure_object(task: L2MeasureTask) -> list[MetricSet]:
    """Download the object, run its monitors, delete the download; one `MetricSet` per monitor.

    A download that fails gives one error `MetricSet` naming the file and the problem.
    """
    folder = Path(task.workdir, str(int(task.file_id)))
    try:
        name = valid_filename(task.filename, task.key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        try:
            _s3_client().download_file(task.bucket, task.key, str(path))
        except Exception as exc:  # missing object, denied, network: the file's error, not the run's
            text = f"{name}: could not be fetched from s3://{task.bucket}/{task.key} ({type(exc).__name__}: {exc})"
            return [MetricSet(FileInfo(name, f"s3://{task.bucket}/{task.key}", "file"), "", error=text[:2000])]
        return measure_file(replace(task.request, path=str(path)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
