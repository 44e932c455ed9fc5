"""The L2 monitors through Dagster Pipes: the JSON codec, and real asset materialisations per runner.

The codec is checked for exact round trips (NaN, infinities, -0.0, every
dtype the monitors use, every `FileInfo` subclass). The runners are checked
end to end: a Dagster asset calls `measure_batch` on small synthetic L2
images in a moto S3 server on loopback, and the metric sets that come back
from the external monitors must equal, value for value, those of
`measure_object` run here; the pixel statistics are also recomputed from the
images' arrays.

moto accepts Lambda's ``Invoke`` and ECS's ``RunTask`` but runs neither
without Docker, so the tests stand in for those runtimes only: a botocore
hook starts the real monitor program (``lambda_handler`` in a fresh Python,
or ``python -m rdmt_dagster.pipes.monitor`` with the task's environment
overrides) with what the Dagster client sent, and the Pipes messages come
back through moto's S3 as they would through AWS's.
"""


import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from rdmt_dagster.defs.l2.runners import L2Runner, chunks, l2_runner_from_env, measure_batch
from rdmt_dagster.l2.fetch import L2MeasureTask, measure_object
from rdmt_dagster.pipes.codec import (
    CodecError,
    decode_array,
    decode_metric_set,
    decode_result,
    decode_tasks,
    encode_array,
    encode_metric_set,
    encode_result,
    encode_tasks,
)
from rdmt_dagster.science.measure import MeasureRequest
from rdmt_dagster.science.metrics import FileInfo, L2FileInfo, Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.scales import ScaleValues

from .conftest import moto_on_loopback

BUCKET = "roman-archive-l2"
PIPES_BUCKET = "rdmt-pipes"
SMALL = dict(shape=(512, 512), n_stars=200)
SATURATED, DO_NOT_USE = 2, 1


# ----------------------------------------------------------------------------- codec


def _same_array(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _same_metric_set(a: MetricSet, b: MetricSet, *, path: bool = True) -> bool:
    """Every field equal, arrays bit for bit (NaN equal to NaN); ``path=False`` ignores the download path."""
    info_a, info_b = (a.info, b.info) if path else (dataclasses.replace(a.info, path=""),
                                                    dataclasses.replace(b.info, path=""))
    if (type(info_a), info_a, a.monitor_version, a.error, a.reused, a.compared_with) != \
            (type(info_b), info_b, b.monitor_version, b.error, b.reused, b.compared_with):
        return False
    if [(m.name, m.unit, m.description, m.values.scales) for m in a.metrics] != \
            [(m.name, m.unit, m.description, m.values.scales) for m in b.metrics]:
        return False
    return all(_same_array(va, vb) for ma, mb in zip(a.metrics, b.metrics)
               for (_, va), (_, vb) in zip(ma.values.items(), mb.values.items()))


@pytest.mark.parametrize("values", [
    np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, np.finfo(np.float64).max, 1 / 3]),
    np.array([np.nan, 1.5, -np.inf], dtype=np.float32),
    np.array([0, 2**62, -(2**63)], dtype=np.int64),
    np.array([[1, 2, 3], [4, 5, 6]], dtype=">u4"),
    np.array([], dtype=np.float64),
    np.float64(2.5),
])
def test_arrays_round_trip_bit_for_bit(values):
    doc = json.loads(json.dumps(encode_array(values), allow_nan=False))  # standard JSON: no NaN token
    assert _same_array(decode_array(doc), values)


def test_nan_payload_bits_survive():
    odd_nan = np.array([0x7FF8_0000_0000_0001, 0xFFF8_0000_0000_0000], dtype=np.uint64).view(np.float64)
    assert np.isnan(odd_nan).all()
    assert decode_array(encode_array(odd_nan)).view(np.uint64).tolist() == [0x7FF8_0000_0000_0001,
                                                                           0xFFF8_0000_0000_0000]


def _metric_sets() -> list[MetricSet]:
    amp = np.arange(32, dtype=np.float64)
    amp[5:] = np.nan
    metrics = [Metric("pixel_max", "DN/s", ScaleValues(detector=np.array([7.25]), amp=amp), "maximum"),
               Metric("num_saturated_pix", "pixels", ScaleValues(detector=np.array([3], dtype=np.int64),
                                                                 amp=np.zeros(32, dtype=np.int64))),
               Metric("plate_scale_center", "arcsec/pixel", ScaleValues.detector_only(0.11))]
    l2 = L2FileInfo("r0000101001001001001_01101_0001_WFI07_cal.asdf", "/tmp/x.asdf", "pixel", "WFI07", "F158",
                    datetime(2027, 3, 20, 0, 2, 20, 123456), "00001", "0000101001001001001", "0001")
    ref = ReferenceFileInfo("roman_wfi_dark_0042.asdf", "/r/d.asdf", "dark", "WFI03", datetime(2027, 1, 1), "DARK")
    superpixel = ScaleValues(detector=np.array([1.0]), amp=np.full(32, np.inf), superpixel=np.full(1024, -0.0))
    return [MetricSet(l2, "3", metrics, compared_with="previous.asdf"),
            MetricSet(ref, "2", [Metric("dark_current_mean", "DN/s", superpixel)], reused=True),
            MetricSet(FileInfo("bad.asdf", "s3://b/bad.asdf", "file"), "", error="bad.asdf: could not be fetched")]


def test_metric_sets_round_trip_exactly_through_json():
    for ms in _metric_sets():
        text = json.dumps(encode_metric_set(ms), allow_nan=False)
        back = decode_metric_set(json.loads(text))
        assert _same_metric_set(back, ms)
        assert type(back.info) is type(ms.info) and back.info == ms.info  # datetimes to the microsecond


def test_result_messages_carry_their_task_index():
    index, back = decode_result(json.loads(json.dumps(encode_result(7, _metric_sets()))))
    assert index == 7 and all(_same_metric_set(a, b) for a, b in zip(back, _metric_sets()))
    with pytest.raises(CodecError, match="codec version"):
        decode_result({"rdmt_codec": 99, "index": 0, "metric_sets": []})
    with pytest.raises(CodecError, match="unknown file identity class"):
        decode_metric_set({**encode_metric_set(_metric_sets()[2]), "info": {"class": "os.system", "fields": {}}})


def _task(i: int, parameters: dict, monitors=None) -> L2MeasureTask:
    return L2MeasureTask(i + 10, BUCKET, f"wfi/{i}.asdf", f"{i}.asdf",
                         MeasureRequest("", parameters, monitors, catalog_path="s3://cat/gaia.parquet"), "/tmp/w")


def test_tasks_round_trip_and_share_their_parameters():
    shared = {"pixel": {"clip_sigma": 3.0, "exclude_flags": ["DO_NOT_USE"]}, "psf": {"stars": {"min_snr": 20.0}}}
    other = {"pixel": {"clip_sigma": 4.0}}
    tasks = [(i, _task(i, shared if i != 2 else other, ("pixel",) if i == 1 else None)) for i in range(4)]
    doc = json.loads(json.dumps(encode_tasks(tasks)))
    assert doc["parameters"] == [shared, other]  # written once each
    assert decode_tasks(doc) == tasks


def test_chunks_are_contiguous_and_balanced():
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert chunks(list(range(2)), 5) == [[0], [1]]
    assert chunks([], 4) == []


# ----------------------------------------------------------------------------- runner configuration


def test_runner_configuration_from_the_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("RDMT_L2_", "RDMT_PIPES_")):
            monkeypatch.delenv(name)
    assert l2_runner_from_env().kind == "in_process" and l2_runner_from_env().problems() == []
    monkeypatch.setenv("RDMT_L2_RUNNER", "Lamda")
    assert "is not one of in_process, subprocess, lambda, ecs" in l2_runner_from_env().problems()[0]
    monkeypatch.setenv("RDMT_L2_RUNNER", "ecs")
    problems = l2_runner_from_env().problems()
    assert {p.split(" needs ")[1].split(" ")[0] for p in problems} == {
        "RDMT_PIPES_BUCKET", "RDMT_L2_ECS_CLUSTER", "RDMT_L2_ECS_TASK_DEFINITION", "RDMT_L2_ECS_SUBNETS"}
    monkeypatch.setenv("RDMT_PIPES_BUCKET", PIPES_BUCKET)
    monkeypatch.setenv("RDMT_L2_ECS_CLUSTER", "rdmt")
    monkeypatch.setenv("RDMT_L2_ECS_TASK_DEFINITION", "rdmt-monitor:3")
    monkeypatch.setenv("RDMT_L2_ECS_SUBNETS", "subnet-1, subnet-2")
    monkeypatch.setenv("RDMT_L2_ECS_SECURITY_GROUPS", "sg-1")
    monkeypatch.setenv("RDMT_L2_RUNNER_CONCURRENCY", "18")
    runner = l2_runner_from_env()
    assert runner.problems() == [] and runner.concurrency == 18
    assert runner.ecs_run_task_params() == {
        "cluster": "rdmt", "taskDefinition": "rdmt-monitor:3", "count": 1, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1", "subnet-2"],
                                                         "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}}}


def test_misconfigured_runner_fails_the_step_before_launching_anything():
    @dg.asset
    def measured(context: dg.AssetExecutionContext, runner: L2Runner):
        return measure_batch(context, [_task(0, {})], runner, 1)

    with pytest.raises(dg.Failure, match="needs RDMT_L2_LAMBDA_FUNCTION"):
        dg.materialize([measured], resources={"runner": L2Runner(kind="lambda", pipes_bucket=PIPES_BUCKET)})


def test_monitor_refuses_to_run_outside_pipes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PIPES")}
    done = subprocess.run([sys.executable, "-m", "rdmt_dagster.pipes.monitor"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2 and "not launched by Dagster Pipes" in done.stderr


# ----------------------------------------------------------------------------- images in moto S3


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small exposures (two of WFI01, one of WFI07) and the catalog of both fields."""
    from rdmt_dagster.synthetic.l2 import l2_filename, merge_catalogs, scene_for, write_l2

    folder = tmp_path_factory.mktemp("pipes_images")
    scenes = [scene_for("WFI01", 1, **SMALL), scene_for("WFI01", 2, **SMALL), scene_for("WFI07", 1, **SMALL)]
    paths = [write_l2(folder / l2_filename(scene), scene)[0] for scene in scenes]
    return paths, merge_catalogs(paths, folder / "catalog.parquet")


@pytest.fixture(scope="module")
def aws(images):
    """moto on loopback with the images and the catalog in S3; yields the S3 client."""
    import boto3

    paths, catalog = images
    with moto_on_loopback() as endpoint, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        s3 = boto3.client("s3")
        for bucket in (BUCKET, PIPES_BUCKET):
            s3.create_bucket(Bucket=bucket)
        for path in paths:
            s3.upload_file(str(path), BUCKET, f"wfi/2027/03/20/{path.name}")
        s3.upload_file(str(catalog), BUCKET, "catalogs/gaia.parquet")
        yield s3


def _tasks(images, workdir, catalog: str) -> list[L2MeasureTask]:
    from rdmt_dagster.resources import RDMTConfig
    from rdmt_dagster.science.measure import parameters_of

    parameters = parameters_of(RDMTConfig().standards())
    return [L2MeasureTask(i + 1, BUCKET, f"wfi/2027/03/20/{p.name}", p.name,
                          MeasureRequest("", parameters, catalog_path=catalog), str(workdir))
            for i, p in enumerate(images[0])]


@pytest.fixture(scope="module")
def expected(images, aws, tmp_path_factory):
    """`measure_object` on each task, here, with the local catalog."""
    return [measure_object(t) for t in _tasks(images, tmp_path_factory.mktemp("direct"), str(images[1]))]


DAYS = ["2025-03-20", "2025-03-21"]  # a fixed past range: the partitions exist whatever the clock says


def _materialize(tasks, runner: L2Runner, workers: int = 2):
    """Materialise, in one run over two daily partitions (as a data release), an asset shaped like
    ``l2_metrics`` that measures ``tasks`` with ``runner``; its output and each day's metadata."""
    days = dg.DailyPartitionsDefinition(start_date=DAYS[0], end_date="2025-04-01")

    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def l2_metrics_via_pipes(context: dg.AssetExecutionContext, runner: L2Runner):
        start = time.perf_counter()
        results = measure_batch(context, tasks, runner, workers)
        for day in context.partition_keys:  # as add_partition_metadata does
            context.add_asset_metadata({"images_measured": len(results)}, partition_key=day)
        return dg.Output(results, metadata={"run_files": len(results),
                                            "run_seconds": round(time.perf_counter() - start, 3)})

    kept = KeepOutput()
    job = dg.define_asset_job("measure", [l2_metrics_via_pipes])
    defs = dg.Definitions(assets=[l2_metrics_via_pipes], jobs=[job], resources={
        "runner": runner, "io_manager": dg.IOManagerDefinition.hardcoded_io_manager(kept)})
    result = defs.resolve_job_def("measure").execute_in_process(
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[1]})
    assert result.success
    materializations = result.asset_materializations_for_node("l2_metrics_via_pipes")
    assert sorted(m.partition for m in materializations) == DAYS
    metadata = {m.partition: m.metadata for m in materializations}
    return kept.value, metadata


class KeepOutput(dg.IOManager):
    """Keeps the output of a run over several partitions in memory (as L2IOManager hands on its batch)."""

    value = None

    def handle_output(self, context, obj):
        self.value = obj

    def load_input(self, context):
        return self.value


def _check_against(results, expected):
    """Equal to ``expected`` in everything but the download folder (each runner has its own)."""
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert [ms.info.monitor for ms in got] == ["astrometry", "noise_1f", "pixel", "psf"]
        assert all(_same_metric_set(a, b, path=False) for a, b in zip(got, want))
        assert all(Path(a.info.path).name == a.info.filename for a in got)


def _pixel_truth(path):
    """Detector and amp-2 pixel maximum and saturated count, from the file's arrays."""
    import roman_datamodels.datamodels as rdm

    with rdm.open(path) as model:
        data, dq = np.asarray(model.data), np.asarray(model.dq)
    good = np.isfinite(data) & ((dq & (SATURATED | DO_NOT_USE)) == 0)
    amp2 = slice(128 - 4, 256 - 4)  # amp k holds image columns 128(k-1)-4 .. 128k-5
    return {"detector_max": float(data[good].max()), "amp2_max": float(data[:, amp2][good[:, amp2]].max()),
            "detector_saturated": int(np.count_nonzero(dq & SATURATED))}


def _pixel_values(metric_sets) -> dict:
    pixel = next(ms for ms in metric_sets if ms.info.monitor == "pixel")
    by_name = {m.name: m.values for m in pixel.metrics}
    return {"detector_max": float(by_name["pixel_max"].detector[0]), "amp2_max": float(by_name["pixel_max"].amp[1]),
            "detector_saturated": int(by_name["num_saturated_pix"].detector[0]),
            "amp10_max": by_name["pixel_max"].amp[9]}


@pytest.mark.slow
def test_subprocess_runner_materializes_the_same_metric_sets(images, aws, expected, tmp_path):
    # The monitors fetch the catalog from S3 themselves; here it was read from the local copy.
    tasks = _tasks(images, tmp_path / "work", f"s3://{BUCKET}/catalogs/gaia.parquet")
    results, metadata = _materialize(tasks, L2Runner(kind="subprocess"))
    _check_against(results, expected)
    assert all(m["run_files"].value == 3 and m["images_measured"].value == 3 for m in metadata.values())
    for path, metric_sets in zip(images[0], results):
        values = _pixel_values(metric_sets)
        assert np.isnan(values.pop("amp10_max"))  # a 512-column image reaches amp 5 only
        assert values == _pixel_truth(path)
    # noise_1f needs a full detector: its error came back as an error, the other monitors ran.
    assert [ms.ok for ms in results[0]] == [True, False, True, True]
    assert "expected 4096x4096" in results[0][1].error


@pytest.mark.slow
def test_in_process_runner_is_the_process_pool(images, aws, expected, tmp_path):
    results, _ = _materialize(_tasks(images, tmp_path / "work", str(images[1])), L2Runner())
    _check_against(results, expected)


@pytest.mark.slow
def test_files_of_a_failed_invocation_get_errors_and_the_others_are_kept(images, aws, expected, tmp_path):
    tasks = _tasks(images, tmp_path / "work", str(images[1]))
    # A task whose file name is not an L2 name makes measure_object raise: that monitor
    # process exits non-zero, its chunk has no results, the other chunk's file is stored.
    bad = dataclasses.replace(tasks[1], filename="../escape.asdf")
    results, _ = _materialize([tasks[0], bad], L2Runner(kind="subprocess"))
    assert all(_same_metric_set(a, b, path=False) for a, b in zip(results[0], expected[0]))
    (error,) = results[1]
    assert not error.ok and error.info.filename == "../escape.asdf"
    assert "no result from the subprocess monitor" in error.error and "failed with code" in error.error


# ----------------------------------------------------------------------------- Lambda and ECS through moto


@pytest.fixture
def boto_hooks():
    """Register botocore event hooks on the default boto3 session (used by the runners' clients)."""
    import boto3

    boto3.setup_default_session()
    registered = []

    def register(event, hook):
        boto3.DEFAULT_SESSION.events.register(event, hook)
        registered.append((event, hook))

    yield register
    for event, hook in registered:
        boto3.DEFAULT_SESSION.events.unregister(event, hook)
    boto3.DEFAULT_SESSION = None


def _python_env() -> dict:
    env = dict(os.environ)
    env.pop("DAGSTER_PIPES_CONTEXT", None)
    env.pop("DAGSTER_PIPES_MESSAGES", None)
    return env


LAMBDA_RUNTIME = ("import json, sys; from rdmt_dagster.pipes.monitor import lambda_handler; "
                  "print(json.dumps(lambda_handler(json.load(sys.stdin), None)))")


class LambdaStandIn:
    """What AWS Lambda would do on ``Invoke``: run the handler on the event (moto only records the call).

    Cold (default): each invocation in a fresh Python process, as a new
    execution environment. Warm: in this process, as a reused one.
    """

    def __init__(self):
        self.events: list[dict] = []
        self.warm = False

    def __call__(self, params, **_):
        event = json.loads(params["Payload"])
        self.events.append(event)
        if self.warm:
            from rdmt_dagster.pipes.monitor import lambda_handler

            lambda_handler(event, None)
            return
        done = subprocess.run([sys.executable, "-c", LAMBDA_RUNTIME], input=json.dumps(event), text=True,
                              capture_output=True, env=_python_env(), timeout=600)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def lambda_in_moto(aws):
    """A function in moto's Lambda; without Docker moto accepts Invoke but runs no code."""
    import boto3
    import requests

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    requests.post(f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10).raise_for_status()
    role = boto3.client("iam").create_role(RoleName="rdmt-monitor", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return event\n")
    boto3.client("lambda").create_function(FunctionName="rdmt-monitor", Runtime="python3.11", Role=role,
                                           Handler="handler.handler", Code={"ZipFile": code.getvalue()}, Timeout=900)
    yield "rdmt-monitor"
    requests.post(f"{endpoint}/moto-api/config", json={"lambda": {"use_docker": True}}, timeout=10)


@pytest.fixture
def lambda_function(lambda_in_moto, boto_hooks):
    """The function's name; its invocations run the real handler (`LambdaStandIn`)."""
    runtime = LambdaStandIn()
    boto_hooks("before-parameter-build.lambda.Invoke", runtime)
    return runtime


@pytest.mark.slow
def test_lambda_runner_through_moto(images, aws, expected, lambda_function):
    tasks = _tasks(images, "", f"s3://{BUCKET}/catalogs/gaia.parquet")
    runner = L2Runner(kind="lambda", lambda_function="rdmt-monitor", pipes_bucket=PIPES_BUCKET, poll_seconds=1,
                      concurrency=2)
    results, _ = _materialize(tasks, runner)
    _check_against(results, expected)
    # Two invocations; each event held its tasks and Pipes' bootstrap parameters, messages in S3.
    events = lambda_function.events
    assert sorted(len(e["rdmt_tasks"]["tasks"]) for e in events) == [1, 2]
    assert all(json.loads(_decode_param(e["DAGSTER_PIPES_MESSAGES"]))["bucket"] == PIPES_BUCKET for e in events)


def _decode_param(value: str) -> str:
    import base64
    import zlib

    return zlib.decompress(base64.b64decode(value)).decode()


@pytest.mark.slow
def test_warm_lambda_serves_a_second_invocation(images, aws, expected, lambda_function):
    """A reused Lambda process runs the handler again: the first invocation's closed Pipes context is not reused."""
    lambda_function.warm = True
    runner = L2Runner(kind="lambda", lambda_function="rdmt-monitor", pipes_bucket=PIPES_BUCKET, poll_seconds=1,
                      concurrency=1)
    tasks = _tasks(images, "", str(images[1]))[:1]
    for _ in range(2):
        results, _ = _materialize(tasks, runner)
        _check_against(results, expected[:1])
    assert len(lambda_function.events) == 2


@pytest.fixture
def ecs_cluster(aws, boto_hooks):
    """A Fargate cluster and task definition in moto, and a container stand-in that runs the monitor image's command."""
    import boto3

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto names a task's network interface only in a VPC with DNS host names (and fails RunTask without).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="rdmt-monitor", Description="monitor", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="rdmt")
    ecs.register_task_definition(
        family="rdmt-monitor", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="2048",
        memory="8192",
        # moto needs the container's own cpu and memory (AWS takes the task's for Fargate).
        containerDefinitions=[{"name": "monitor", "image": "rdmt-monitor:latest", "essential": True,
                               "cpu": 2048, "memory": 8192}])
    launched = []

    def container(params, **_):
        # ECS would start the monitor image with these environment overrides; moto does not run images.
        (override,) = params["overrides"]["containerOverrides"]
        environment = {e["name"]: e["value"] for e in override["environment"]}
        launched.append(params)
        done = subprocess.run([sys.executable, "-m", "rdmt_dagster.pipes.monitor"], capture_output=True, text=True,
                              env={**_python_env(), **environment}, timeout=600)
        assert done.returncode == 0, done.stderr

    boto_hooks("before-parameter-build.ecs.RunTask", container)
    return {"subnet": subnet, "group": group, "launched": launched}


@pytest.mark.slow
def test_ecs_runner_through_moto(images, aws, expected, ecs_cluster):
    tasks = _tasks(images, "", f"s3://{BUCKET}/catalogs/gaia.parquet")
    runner = L2Runner(kind="ecs", ecs_cluster="rdmt", ecs_task_definition="rdmt-monitor",
                      ecs_subnets=[ecs_cluster["subnet"]], ecs_security_groups=[ecs_cluster["group"]],
                      pipes_bucket=PIPES_BUCKET, poll_seconds=1, concurrency=3)
    results, _ = _materialize(tasks, runner)
    _check_against(results, expected)
    launched = ecs_cluster["launched"]
    assert len(launched) == 3 and {p["launchType"] for p in launched} == {"FARGATE"}
    # The context (with the tasks) went through S3, not the 8 kB run-task override.
    for params in launched:
        (override,) = params["overrides"]["containerOverrides"]
        context = {e["name"]: e["value"] for e in override["environment"]}["DAGSTER_PIPES_CONTEXT"]
        assert json.loads(_decode_param(context))["bucket"] == PIPES_BUCKET
        assert {t["key"] for t in params["tags"]} >= {"dagster/run-id", "dagster/job"}
    assert aws.list_objects_v2(Bucket=PIPES_BUCKET, Prefix="rdmt-pipes/").get("KeyCount", 0) == 0  # contexts removed
