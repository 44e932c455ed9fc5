"""The L2 arm end to end on Dagster: SNS -> SQS -> sensors -> batch run -> database, Parquet, reports.

Real boto3 against a moto server on loopback (S3, SNS, SQS), real synthetic
full-size L2 images, a real Dagster instance in a temporary folder. The
expectations come from the scenes: the image with injected 1/f noise fails
its 1/f standards, the clean ones pass them.
"""

import json
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.dataset as ds
import pytest
import sqlalchemy as sa

from rdmt_dagster.defs.l2.jobs import BATCH_TAG, L2_JOB
from rdmt_dagster.defs.l2.resources import L2Config
from rdmt_dagster.defs.l2.sensors import batch_tick, sqs_tick
from rdmt_dagster.definitions import build_definitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.resources.notifications import NotificationsConfig
from rdmt_dagster.storage.l2_tables import l2_file, l2_measurement, l2_metric_value
from rdmt_dagster.synthetic.l2 import L2Scene, l2_filename, merge_catalogs, scene_for, write_l2

from ..conftest import moto_on_loopback

pytestmark = pytest.mark.slow

BUCKET = "roman-archive-l2"
DAY = "2027-03-20"
WHITE = float(np.sqrt(L2Scene().sky / L2Scene().exposure_time + L2Scene().read_noise ** 2))
DARK = "roman_wfi_dark_0042.asdf"


def _scenes():
    ref = {"dark": DARK, "crds_context": "roman_0042.pmap"}
    return [
        scene_for("WFI01", 1, ref_file=ref),
        scene_for("WFI01", 2, ref_file=ref),
        scene_for("WFI07", 1, ref_file=ref, one_over_f=50 * 0.02 * WHITE),  # 50x the base pattern: fails
    ]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("l2_images")
    paths = [write_l2(folder / l2_filename(scene), scene)[0] for scene in _scenes()]
    return paths, merge_catalogs(paths, folder / "catalog.parquet")


@pytest.fixture(scope="module")
def aws():
    import boto3

    with moto_on_loopback() as endpoint:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            clients = {name: boto3.client(name) for name in ("s3", "sqs", "sns")}
            clients["s3"].create_bucket(Bucket=BUCKET)
            queue = clients["sqs"].create_queue(QueueName="l2-notices")["QueueUrl"]
            arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            topic = clients["sns"].create_topic(Name="l2-archive")["TopicArn"]
            clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
            yield clients, queue, topic


def _announce(aws, path: Path, state: str = "none"):
    clients, _, topic = aws
    key = f"wfi/{DAY.replace('-', '/')}/{path.name}"
    clients["s3"].upload_file(str(path), BUCKET, key)
    notice = {"archiveBucket": BUCKET, "archiveObjectKey": key, "filename": path.name,
              "fileType": "science_wfi_level_2", "fileCreationTimestamp": "2027-03-20T01:00:00.000000Z",
              "reprocessingState": state, "checksum": f"{path.stat().st_size:x}", "fileSize": path.stat().st_size}
    clients["sns"].publish(TopicArn=topic, Message=json.dumps(notice))


@pytest.fixture(scope="module")
def arm(tmp_path_factory, images, aws):
    """Images announced, ingested, batched and run once through the job."""
    home = tmp_path_factory.mktemp("l2_home")
    paths, catalog = images
    rdmt = RDMTConfig(home=str(home), workers=2)
    l2 = L2Config(queue_url=aws[1], catalog=str(catalog), batch_size=3, max_wait_seconds=3600)
    notifications = NotificationsConfig(channels=["log"])
    defs = build_definitions(rdmt, notifications, l2)
    (home / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(home / "dagster"))
    for path in paths:
        _announce(aws, path)
        _announce(aws, path)  # SNS and SQS deliver at least once: the same notice twice is one file
    resources = {"rdmt": rdmt, "l2": l2}
    ingest = sqs_tick(dg.build_sensor_context(instance=instance, resources=resources), rdmt, l2)
    result = batch_tick(dg.build_sensor_context(instance=instance, resources=resources), rdmt, l2)
    job = defs.get_job_def(L2_JOB)
    runs = [job.execute_in_process(partition_key=r.partition_key, tags=r.tags, instance=instance)
            for r in result.run_requests]
    return dict(home=home, rdmt=rdmt, l2=l2, defs=defs, instance=instance, ingest=ingest, requests=result.run_requests,
                runs=runs, paths=paths)


def _rows(rdmt, table, *columns):
    with rdmt.database().engine.connect() as conn:
        return conn.execute(sa.select(*[table.c[c] for c in columns]).order_by(*[table.c[c] for c in columns])).all()


def test_notices_become_one_batch_run_of_the_observation_day(arm):
    assert "new files 3, duplicates 3" in arm["ingest"].skip_message
    assert [r.partition_key for r in arm["requests"]] == [DAY]
    assert all(run.success for run in arm["runs"])
    files = _rows(arm["rdmt"], l2_file, "filename", "reprocess_number", "status", "detector", "observation_day")
    assert [tuple(f) for f in files] == sorted((p.name, 0, "ok", p.name.split("_")[-2], DAY) for p in arm["paths"])


def test_each_monitor_stored_once_per_file_and_the_1f_image_fails(arm):
    rdmt = arm["rdmt"]
    with rdmt.database().engine.connect() as conn:
        measured = conn.execute(sa.select(l2_measurement.c.monitor, l2_measurement.c.status, l2_measurement.c.n_failed,
                                          l2_file.c.detector).join(l2_file, l2_file.c.id == l2_measurement.c.file_id)).all()
        table3 = conn.execute(sa.text("SELECT detector, noise_1f_excess, passed FROM l2_noise_1f ORDER BY filename")).all()
    assert len(measured) == 3 * 4 and {m.status for m in measured} == {"ok"}
    noise = {m.detector: m.n_failed for m in measured if m.monitor == "noise_1f"}
    assert noise["WFI07"] > 0
    excess = {row.detector: row.noise_1f_excess for row in table3}
    # 50x the base 1/f pattern reads ~34 (benchmark noise_1f); clean images ~1 (soc limit 1.5).
    assert excess["WFI07"] > 10 and excess["WFI01"] < 1.5
    assert {row.detector: row.passed for row in table3 if row.detector == "WFI07"} == {"WFI07": 0}
    check = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
             for e in arm["runs"][0].all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert check == {"l2_evaluations_pass": False, "l2_files_measured": True}


def test_parquet_partitioned_by_observation_date(arm):
    root = Path(arm["home"], "parquet")
    table = ds.dataset(root / "l2_table3", partitioning="hive").to_table().to_pandas()
    assert sorted(table["observation_date"].astype(str).unique()) == [DAY]
    assert len(table) == 3 * 4  # one row per file per monitor
    metrics = ds.dataset(root / "l2_metrics", partitioning="hive").to_table()
    with arm["rdmt"].database().engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(l2_metric_value)).scalar()
    assert metrics.num_rows == stored


def test_rerunning_a_batch_duplicates_nothing(arm):
    rdmt = arm["rdmt"]
    before = {t: rdmt.database().count_rows(t) for t in ("l2_file", "l2_measurement", "l2_metric_value", "l2_evaluation")}
    request = arm["requests"][0]
    arm["defs"].get_job_def(L2_JOB).execute_in_process(partition_key=request.partition_key, tags=request.tags,
                                                        instance=arm["instance"])
    after = {t: rdmt.database().count_rows(t) for t in before}
    assert after == before
    table = ds.dataset(Path(arm["home"], "parquet", "l2_table3"), partitioning="hive").to_table()
    assert table.num_rows == 3 * 4


def test_a_backfill_of_the_day_reprocesses_every_file_and_keeps_the_earlier_results(arm):
    rdmt = arm["rdmt"]
    before = rdmt.database().count_rows("l2_metric_value")
    result = arm["defs"].get_job_def(L2_JOB).execute_in_process(partition_key=DAY, instance=arm["instance"])
    assert result.success
    files = _rows(rdmt, l2_file, "filename", "reprocess_number", "status")
    assert sorted((f.filename, f.reprocess_number) for f in files) == sorted(
        (p.name, n) for p in arm["paths"] for n in (0, 1))
    assert {f.status for f in files} == {"ok"}
    assert rdmt.database().count_rows("l2_metric_value") == 2 * before
    # A retry of that run (same root run) takes the same files again: no third number.
    retry = arm["defs"].get_job_def(L2_JOB).execute_in_process(
        partition_key=DAY, instance=arm["instance"], tags={"dagster/root_run_id": result.run_id})
    assert retry.success
    assert len(_rows(rdmt, l2_file, "filename", "reprocess_number")) == len(files)
    assert rdmt.database().count_rows("l2_metric_value") == 2 * before
    with rdmt.database().engine.connect() as conn:
        table3 = conn.execute(sa.text("SELECT filename, reprocess_number, noise_1f_excess FROM l2_noise_1f")).all()
    by_file = {}
    for row in table3:
        by_file.setdefault(row.filename, {})[row.reprocess_number] = row.noise_1f_excess
    # The same pixels measured twice give the same metric.
    assert all(v[0] == pytest.approx(v[1]) for v in by_file.values())
    changes = list(Path(arm["home"], "reports", "l2", DAY).glob("changes-*.md"))
    assert len(changes) == 1
    text = changes[0].read_text()  # the same pixels: nothing changed, and the page says so
    assert "| Reprocessed images | 3 |" in text and "| Changed detector-level values | 0 |" in text


def test_the_day_page_and_the_notification_name_the_failing_image_and_its_dark(arm):
    page = Path(arm["home"], "reports", "l2", DAY, "index.html").read_text()
    failing = next(p.name for p in arm["paths"] if "WFI07" in p.name)
    assert failing in page and "noise_1f_excess" in page and DARK in page
    markdown = Path(arm["home"], "reports", "l2", DAY, "index.md").read_text()
    assert markdown.index(failing) < markdown.index("## Detectors")  # failures first
    assert "| WFI01 | 2 | pass (2) | pass (2) | pass (2) | pass (2) |" in markdown
    log = Path(arm["home"], "notifications.log").read_text()
    assert failing in log and DARK in log
    assert "l2/" + DAY in Path(arm["home"], "reports", "index.html").read_text()


def test_a_reprocessed_notice_gives_the_next_number(arm, aws):
    path = arm["paths"][0]
    _announce(aws, path, state="reprocessed")
    rdmt, l2 = arm["rdmt"], arm["l2"]
    ctx = dg.build_sensor_context(instance=arm["instance"], resources={"rdmt": rdmt, "l2": l2})
    sqs_tick(ctx, rdmt, l2)
    numbers = [r.reprocess_number for r in _rows(rdmt, l2_file, "filename", "reprocess_number") if r.filename == path.name]
    assert numbers == [0, 1, 2]
