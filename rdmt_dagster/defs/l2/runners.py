"""Where the L2 monitors run: the run's process pool, or external processes through Dagster Pipes.

`measure_batch` is what ``l2_metrics`` calls instead of ``process_map``. The
`L2Runner` resource chooses the engine:

``in_process`` (default)
    The run's own process pool (`rdmt_dagster.parallel.process_map`), as before.
``subprocess``
    ``python -m rdmt_dagster.pipes.monitor`` on this machine through
    `PipesSubprocessClient`: a monitor that crashes or exhausts memory takes
    its subprocess down, not the run; also the local stand-in for the two below.
``lambda``
    The monitor image as an AWS Lambda function through `PipesLambdaClient`.
``ecs``
    The monitor image as an ECS task (Fargate by default) through `PipesECSClient`.

The batch is cut into up to ``concurrency`` (default: the run's ``workers``)
contiguous chunks, one external invocation each, all in flight at once.
Each invocation's tasks travel as a `rdmt_dagster.pipes.codec` payload and
each task's metric sets come back as a Pipes custom message. For Lambda and
ECS, the Pipes messages go through S3 (`PipesS3MessageReader`): dagster-aws's
defaults would read the Lambda log's 4 kB tail (one image's metric sets are
~13 kB) or CloudWatch (256 kB per event, slower to appear). ECS's context
goes through S3 as well (`PipesS3ContextInjector`): the overrides of an ECS
run-task call hold at most 8,192 characters, and 18 tasks alone encode to
~8.2 kB (`rdmt_dagster.pipes.codec.encode_tasks`). Use a bucket of its own with
an expiration rule: the Pipes message chunks are not deleted by dagster-aws.

Failures: a file's own problem comes back as an error `MetricSet` (as in
the process pool). A failed invocation (non-zero exit, Lambda error or
timeout, ECS task that did not start) gives an error `MetricSet` to each of
its files that had no result, so the other invocations' files are still
stored; when no invocation returned anything the step fails (a
configuration or infrastructure problem, for which the run is retried).
A run that is terminated waits for the invocations in flight (minutes at
most) and discards their results; they are not stopped.

For Lambda and ECS the tasks carry no download folder (the monitor uses
its own temporary one) and the catalog should be an ``s3://`` URI, which
the monitor fetches once per process.

Environment (read by `l2_runner_from_env`)
------------------------------------------
``RDMT_L2_RUNNER``
    ``in_process``, ``subprocess``, ``lambda`` or ``ecs``.
``RDMT_L2_RUNNER_CONCURRENCY``
    External invocations at once (default: the run's workers). For Lambda,
    the batch size (18) gives one image per invocation.
``RDMT_PIPES_BUCKET``, ``RDMT_PIPES_PREFIX``
    S3 bucket (and key prefix of the ECS context objects) for Pipes (lambda, ecs).
``RDMT_PIPES_POLL_SECONDS``
    Seconds between reads of Pipes messages in S3 and between ECS status checks (5).
``RDMT_L2_LAMBDA_FUNCTION``
    Function name or ARN (lambda).
``RDMT_L2_ECS_CLUSTER``, ``RDMT_L2_ECS_TASK_DEFINITION``
    Cluster and task definition (family[:revision] or ARN) of the monitor image.
``RDMT_L2_ECS_SUBNETS``, ``RDMT_L2_ECS_SECURITY_GROUPS``, ``RDMT_L2_ECS_PUBLIC_IP``, ``RDMT_L2_ECS_LAUNCH_TYPE``
    awsvpc networking (comma-separated ids), a public IP (``1``) and the launch type (``FARGATE``).

AWS endpoint, region and credentials come from boto3's usual sources.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import dagster as dg

from ...l2.fetch import L2MeasureTask, measure_object
from ...parallel import process_map
from ...pipes.codec import CodecError, decode_result, encode_tasks
from ...pipes.monitor import TASKS_EXTRA
from ...science.metrics import FileInfo, MetricSet

__all__ = ["RUNNER_KINDS", "L2Runner", "l2_runner_from_env", "measure_batch"]

RUNNER_KINDS = ("in_process", "subprocess", "lambda", "ecs")
#: Runners whose monitors see neither this machine's folders nor its files.
REMOTE_KINDS = ("lambda", "ecs")
MONITOR_MODULE = "rdmt_dagster.pipes.monitor"
#: A synchronous Lambda invocation may last the function's whole timeout (15 min at most);
#: botocore's default read timeout (60 s) would give up on it, and a retry would run it twice.
LAMBDA_READ_TIMEOUT = 15 * 60 + 10


class L2Runner(dg.ConfigurableResource):
    """Where ``l2_metrics`` runs the monitors (see the module docstring).

    Attributes
    ----------
    kind : str
        One of `RUNNER_KINDS`.
    concurrency : int, optional
        External invocations at once (default: the run's ``workers``).
    pipes_bucket, pipes_prefix : str
        S3 bucket and key prefix for Pipes context and messages (lambda, ecs).
    poll_seconds : float
        Seconds between reads of the Pipes messages in S3 and between ECS status checks.
    lambda_function : str
        Function name or ARN.
    ecs_cluster, ecs_task_definition : str
        Where the monitor task runs, and what (the monitor image's entry point is the monitor).
    ecs_subnets, ecs_security_groups : list of str
        awsvpc networking of the task (Fargate needs subnets).
    ecs_public_ip : bool
        Give the task a public IP (a public subnet without a NAT gateway needs one to reach S3).
    ecs_launch_type : str
        ``FARGATE`` or ``EC2``.
    """

    kind: str = "in_process"
    concurrency: int | None = None
    pipes_bucket: str | None = None
    pipes_prefix: str = "rdmt-pipes/"
    poll_seconds: float = 5.0
    lambda_function: str | None = None
    ecs_cluster: str | None = None
    ecs_task_definition: str | None = None
    ecs_subnets: list[str] = []
    ecs_security_groups: list[str] = []
    ecs_public_ip: bool = False
    ecs_launch_type: str = "FARGATE"

    def problems(self) -> list[str]:
        """What keeps this configuration from running (empty when it can run)."""
        if self.kind not in RUNNER_KINDS:
            return [f"RDMT_L2_RUNNER={self.kind!r} is not one of {', '.join(RUNNER_KINDS)}"]
        needed = {
            "lambda": {"RDMT_PIPES_BUCKET": self.pipes_bucket, "RDMT_L2_LAMBDA_FUNCTION": self.lambda_function},
            "ecs": {"RDMT_PIPES_BUCKET": self.pipes_bucket, "RDMT_L2_ECS_CLUSTER": self.ecs_cluster,
                    "RDMT_L2_ECS_TASK_DEFINITION": self.ecs_task_definition},
        }.get(self.kind, {})
        out = [f"the {self.kind} runner needs {name}" for name, value in needed.items() if not value]
        if self.kind == "ecs" and self.ecs_launch_type == "FARGATE" and not self.ecs_subnets:
            out.append("the ecs runner on FARGATE needs RDMT_L2_ECS_SUBNETS (awsvpc networking)")
        if self.concurrency is not None and self.concurrency < 1:
            out.append(f"RDMT_L2_RUNNER_CONCURRENCY must be at least 1, got {self.concurrency}")
        return out

    # ----------------------------------------------------------------- clients

    def subprocess_client(self) -> dg.PipesSubprocessClient:
        return dg.PipesSubprocessClient()

    def lambda_client(self):
        """A `PipesLambdaClient` whose messages come back through S3 (a new one per invocation)."""
        import boto3
        from botocore.config import Config
        from dagster_aws.pipes import PipesLambdaClient

        client = boto3.client("lambda", config=Config(read_timeout=LAMBDA_READ_TIMEOUT, connect_timeout=10,
                                                      retries={"total_max_attempts": 1}))
        return PipesLambdaClient(client=client, message_reader=self._s3_reader())

    def ecs_client(self):
        """A `PipesECSClient` with context and messages in S3 (a new one per invocation)."""
        import boto3
        from dagster_aws.pipes import PipesECSClient, PipesS3ContextInjector

        injector = PipesS3ContextInjector(bucket=self.pipes_bucket, client=boto3.client("s3"),
                                          key_prefix=self.pipes_prefix)
        return PipesECSClient(client=boto3.client("ecs"), context_injector=injector,
                              message_reader=self._s3_reader())

    def _s3_reader(self):
        # One reader per invocation: it counts the message chunks it has read in an attribute.
        import boto3
        from dagster_aws.pipes import PipesS3MessageReader

        return PipesS3MessageReader(bucket=self.pipes_bucket, client=boto3.client("s3"),
                                    interval=self.poll_seconds)

    def ecs_run_task_params(self) -> dict:
        """``run_task`` arguments of one monitor task (the image's entry point is the monitor)."""
        params = {"cluster": self.ecs_cluster, "taskDefinition": self.ecs_task_definition, "count": 1,
                  "launchType": self.ecs_launch_type}
        if self.ecs_subnets:
            params["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": list(self.ecs_subnets), "securityGroups": list(self.ecs_security_groups),
                "assignPublicIp": "ENABLED" if self.ecs_public_ip else "DISABLED"}}
        return params

    def ecs_waiter_config(self) -> dict:
        # dagster-aws polls every 6 s for up to 70 days by default; a monitor task takes minutes.
        return {"Delay": max(1, int(self.poll_seconds)), "MaxAttempts": int(6 * 3600 / max(1, self.poll_seconds))}

    # ----------------------------------------------------------------- one invocation

    def invoke(self, context, payload: dict):
        """Run one external monitor on ``payload``; the completed Pipes invocation."""
        if self.kind == "subprocess":
            return self.subprocess_client().run(context=context, extras={TASKS_EXTRA: payload},
                                                command=[sys.executable, "-m", MONITOR_MODULE])
        if self.kind == "lambda":
            return self.lambda_client().run(context=context, function_name=self.lambda_function,
                                            event={TASKS_EXTRA: payload})
        if self.kind == "ecs":
            return self.ecs_client().run(context=context, extras={TASKS_EXTRA: payload},
                                         run_task_params=self.ecs_run_task_params(),
                                         waiter_config=self.ecs_waiter_config())
        raise ValueError(f"runner {self.kind!r} has no external invocation")


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _optional_int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def l2_runner_from_env() -> L2Runner:
    """`L2Runner` from ``RDMT_L2_RUNNER`` and the variables of the module docstring."""
    env = os.environ
    try:
        poll = float(env.get("RDMT_PIPES_POLL_SECONDS", "5"))
    except ValueError:
        poll = 5.0
    return L2Runner(
        kind=(env.get("RDMT_L2_RUNNER") or "in_process").strip().lower(),
        concurrency=_optional_int(env.get("RDMT_L2_RUNNER_CONCURRENCY")),
        pipes_bucket=env.get("RDMT_PIPES_BUCKET") or None,
        pipes_prefix=env.get("RDMT_PIPES_PREFIX", "rdmt-pipes/"),
        poll_seconds=poll,
        lambda_function=env.get("RDMT_L2_LAMBDA_FUNCTION") or None,
        ecs_cluster=env.get("RDMT_L2_ECS_CLUSTER") or None,
        ecs_task_definition=env.get("RDMT_L2_ECS_TASK_DEFINITION") or None,
        ecs_subnets=_list(env.get("RDMT_L2_ECS_SUBNETS")),
        ecs_security_groups=_list(env.get("RDMT_L2_ECS_SECURITY_GROUPS")),
        ecs_public_ip=env.get("RDMT_L2_ECS_PUBLIC_IP", "0").strip().lower() in ("1", "true", "yes"),
        ecs_launch_type=(env.get("RDMT_L2_ECS_LAUNCH_TYPE") or "FARGATE").strip().upper(),
    )


# ----------------------------------------------------------------------------- the batch


def chunks(items: list, n: int) -> list[list]:
    """``items`` in ``min(n, len(items))`` contiguous parts whose sizes differ by at most one."""
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return [part for part in out if part]


def _not_returned(task: L2MeasureTask, kind: str, problem: str) -> MetricSet:
    text = f"{task.filename}: no result from the {kind} monitor ({problem})"
    return MetricSet(FileInfo(task.filename, f"s3://{task.bucket}/{task.key}", "file"), "", error=text[:2000])


def _results(context, invocation) -> dict[int, list[MetricSet]]:
    """Task index -> metric sets, from the custom messages of one completed invocation."""
    out = {}
    for message in invocation.get_custom_messages():
        try:
            index, metric_sets = decode_result(message)
        except CodecError as exc:
            context.log.warning(f"ignored a Pipes message that is not a result: {exc}")
            continue
        out[index] = metric_sets
    return out


def _for_remote(context, tasks: list[L2MeasureTask]) -> list[L2MeasureTask]:
    """Tasks without this machine's download folder (the monitor uses its own temporary folder)."""
    local = sorted({t.request.catalog_path for t in tasks
                    if t.request.catalog_path and not t.request.catalog_path.startswith("s3://")})
    if local:
        context.log.warning(f"catalog {', '.join(local)} is a local path: the remote monitors find it only if "
                            "their image holds it; give RDMT_L2_CATALOG as an s3:// URI")
    return [replace(t, workdir="") for t in tasks]


def _run_external(context, tasks: list[L2MeasureTask], runner: L2Runner, workers: int) -> list[list[MetricSet]]:
    if runner.kind in REMOTE_KINDS:
        tasks = _for_remote(context, tasks)
    parts = chunks(list(enumerate(tasks)), runner.concurrency or workers)
    context.log.info(f"measuring {len(tasks)} files in {len(parts)} {runner.kind} monitor invocation(s)")

    def run(part):
        try:
            return _results(context, runner.invoke(context, encode_tasks(part))), None
        except Exception as exc:  # the invocation's failure becomes its files' errors (module docstring)
            context.log.error(f"{runner.kind} monitor for {[t.filename for _, t in part]} failed: "
                              f"{type(exc).__name__}: {exc}")
            return {}, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        outcomes = list(pool.map(run, parts))
    results: dict[int, list[MetricSet]] = {}
    for received, _ in outcomes:
        results.update(received)
    if tasks and not results:
        problems = sorted({problem or "no result message" for _, problem in outcomes})
        raise dg.Failure(description=f"no {runner.kind} monitor returned a result: {'; '.join(problems)}")
    problem_of = {index: problem or "it ended without sending one"
                  for part, (_, problem) in zip(parts, outcomes) for index, _ in part}
    return [results[i] if i in results else [_not_returned(task, runner.kind, problem_of[i])]
            for i, task in enumerate(tasks)]


def measure_batch(context, tasks: list[L2MeasureTask], runner: L2Runner, workers: int) -> list[list[MetricSet]]:
    """The metric sets of each task, in the order of ``tasks``, measured where ``runner`` says.

    Parameters
    ----------
    context : dagster.AssetExecutionContext or dagster.OpExecutionContext
        The step's context (Pipes sessions report to it).
    tasks : list of L2MeasureTask
    runner : L2Runner
    workers : int
        Processes of the in-process pool; the default number of external invocations.

    Returns
    -------
    list of list of MetricSet
        As ``[measure_object(t) for t in tasks]``.

    Raises
    ------
    dagster.Failure
        The runner's configuration is incomplete, or no external monitor returned anything.
    """
    problems = runner.problems()
    if problems:
        raise dg.Failure(description="L2 runner misconfigured: " + "; ".join(problems))
    if runner.kind == "in_process" or not tasks:
        return process_map(measure_object, tasks, workers)
    return _run_external(context, tasks, runner, workers)
