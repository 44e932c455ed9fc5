"""The monitor process of the Pipes runners: one entry point for a subprocess, an ECS task and a Lambda.

``python -m rdmt_dagster.pipes.monitor`` (a subprocess, an ECS task) and
`lambda_handler` (AWS Lambda) open Dagster Pipes, read their tasks (an
`rdmt_dagster.pipes.codec.encode_tasks` payload) from the Pipes context
extras under ``rdmt_tasks`` or, for Lambda, from the event (the Lambda
client of dagster-aws passes no extras), run
`rdmt_dagster.l2.fetch.measure_object` on each, and send each task's
metric sets back as one custom message (`report_custom_message`).

Why custom messages and not a results file: one L2 image's metric sets
(four monitors, ~450 values at detector and amp scale) encode to ~13 kB of
JSON, 18 images to ~230 kB. Neither transport used here limits a message:
the subprocess's messages go through a temporary file, Lambda's and ECS's
through S3 objects (`PipesS3MessageWriter`). The limits that do exist
nearby are avoided by that choice: Lambda's log tail (4 kB, dagster-aws's
default reader) and CloudWatch's 256 kB per log event (ECS's default).

Where Pipes put its context and expects messages is read from the
bootstrap parameters, so one program serves every runner: parameters
naming a ``bucket`` mean S3 (`PipesS3ContextLoader`, `PipesS3MessageWriter`),
anything else the defaults (a temporary file, or the Lambda event).

Environment
-----------
``RDMT_MONITOR_WORKDIR``
    Folder for downloads (default: the task's, else the system's temporary
    folder, which is the only writable place in a Lambda).
``AWS_*``
    boto3's usual sources for S3 (``AWS_ENDPOINT_URL`` for a local server).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dagster_pipes import (
    PipesContext,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesEnvVarParamsLoader,
    PipesMappingParamsLoader,
    PipesParamsLoader,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from .._yaml_speedup import install as install_yaml_speedup
from ..l2.fetch import L2MeasureTask, measure_object
from .codec import decode_tasks, encode_result

__all__ = ["TASKS_EXTRA", "lambda_handler", "main", "measure_tasks"]

#: Key of the task payload in the Pipes extras (subprocess, ECS) or the Lambda event.
TASKS_EXTRA = "rdmt_tasks"
WORKDIR_ENV = "RDMT_MONITOR_WORKDIR"
#: Seconds between uploads of buffered messages to S3; the last ones go when Pipes closes.
S3_UPLOAD_INTERVAL = 5.0


def _s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _pipes_io(params_loader: PipesParamsLoader):
    """The context loader and message writer that the orchestration side's parameters ask for."""
    on_s3 = "bucket" in params_loader.load_context_params()
    writes_s3 = "bucket" in params_loader.load_messages_params()
    context_loader = PipesS3ContextLoader(_s3_client()) if on_s3 else PipesDefaultContextLoader()
    writer = (PipesS3MessageWriter(_s3_client(), interval=S3_UPLOAD_INTERVAL) if writes_s3
              else PipesDefaultMessageWriter())
    return context_loader, writer


def _local_task(task: L2MeasureTask, catalogs: dict[str, str]) -> L2MeasureTask:
    """The task with this process's download folder and a local copy of an ``s3://`` catalog."""
    workdir = os.environ.get(WORKDIR_ENV) or task.workdir or str(Path(tempfile.gettempdir(), "rdmt_l2"))
    request = task.request
    catalog = request.catalog_path
    if catalog and catalog.startswith("s3://"):
        if catalog not in catalogs:
            catalogs[catalog] = _download_catalog(catalog, Path(workdir, "catalogs"))
        request = replace(request, catalog_path=catalogs[catalog])
    return replace(task, workdir=workdir, request=request)


def _download_catalog(uri: str, folder: Path) -> str:
    """Fetch an ``s3://bucket/key`` catalog once per process (a Lambda or container has no shared disk)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(key).name
    if not path.exists():
        _s3_client().download_file(bucket, key, str(path))
    return str(path)


def measure_tasks(pipes: PipesContext, payload) -> int:
    """Measure every task of ``payload`` and report each one's metric sets; the number of tasks.

    A task's own problems (download, unreadable file, a monitor failing)
    come back as error metric sets, as in the run's process pool.
    """
    tasks = decode_tasks(payload)
    catalogs: dict[str, str] = {}
    for index, task in tasks:
        start = time.perf_counter()
        metric_sets = measure_object(_local_task(task, catalogs))
        pipes.report_custom_message(encode_result(index, metric_sets))
        errors = sum(not ms.ok for ms in metric_sets)
        pipes.log.info(f"{task.filename}: {len(metric_sets)} metric sets, {errors} errors, "
                       f"{time.perf_counter() - start:.2f} s")
    return len(tasks)


def _open(params_loader: PipesParamsLoader) -> PipesContext:
    context_loader, writer = _pipes_io(params_loader)
    return open_dagster_pipes(context_loader=context_loader, message_writer=writer, params_loader=params_loader)


def _forget_context() -> None:
    # open_dagster_pipes keeps its context in a class attribute and returns it, closed, to the
    # next call in the same process: a warm Lambda's second invocation then fails with "Cannot
    # send message after pipes context is closed" (dagster-io/dagster#22094). Forget it.
    PipesContext._instance = None  # noqa: SLF001


def lambda_handler(event: dict, _lambda_context=None) -> dict:
    """AWS Lambda entry point (``rdmt_dagster.pipes.monitor.lambda_handler``).

    ``event`` is what `PipesLambdaClient` sends: the Pipes bootstrap
    parameters beside ``rdmt_tasks``. Returns the number of tasks measured
    (the results themselves went to S3 as Pipes messages).
    """
    install_yaml_speedup()
    try:
        with _open(PipesMappingParamsLoader(event)) as pipes:
            payload = pipes.extras.get(TASKS_EXTRA) or event[TASKS_EXTRA]
            return {"measured": measure_tasks(pipes, payload)}
    finally:
        _forget_context()


def main(argv=None) -> int:
    """``python -m rdmt_dagster.pipes.monitor``: measure the tasks of the Pipes session that launched us.

    Exits with 2 when not launched through Dagster Pipes (``open_dagster_pipes``
    would otherwise hand back a mock that silently drops every result).
    """
    install_yaml_speedup()  # before roman_datamodels loads its manifests: ~0.3 s of each start
    params_loader = PipesEnvVarParamsLoader()
    if not params_loader.is_dagster_pipes_process():
        print("rdmt_dagster.pipes.monitor: not launched by Dagster Pipes (no DAGSTER_PIPES_CONTEXT)",
              file=sys.stderr)
        return 2
    with _open(params_loader) as pipes:
        measure_tasks(pipes, pipes.get_extra(TASKS_EXTRA))
    return 0


if __name__ == "__main__":
    sys.exit(main())
