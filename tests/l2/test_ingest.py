"""SQS ingest against a moto server on loopback (real boto3 over HTTP) and a real database."""

from __future__ import annotations

import json
import random
import time

import pytest

from rdmt_dagster.l2.ingest import ingest_tick
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.storage.l2_ledger import L2Ledger

from ..conftest import free_port, moto_on_loopback

BUCKET = "roman-archive"


@pytest.fixture(scope="module")
def aws():
    import boto3

    with moto_on_loopback() as endpoint:
        clients = {name: boto3.client(name, region_name="us-east-1", endpoint_url=endpoint) for name in ("sqs", "s3")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        yield clients


@pytest.fixture
def queue(aws):
    url = aws["sqs"].create_queue(QueueName=f"l2-{random.randrange(10**9)}",
                                  Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    yield url
    aws["sqs"].delete_queue(QueueUrl=url)


def _name(i: int) -> str:
    return f"r0000101001001001{i:03d}_01101_0001_WFI{i % 18 + 1:02d}_cal.asdf"


def _notice(i: int, state: str = "none", checksum: str | None = None) -> str:
    key = f"wfi/2027/03/20/{_name(i)}"
    message = {"archiveBucket": BUCKET, "archiveObjectKey": key, "filename": _name(i),
               "fileType": "science_wfi_level_2", "fileCreationTimestamp": "2027-03-20T00:02:19.149000Z",
               "reprocessingState": state, "checksum": checksum or f"sum{i}", "fileSize": 10}
    return json.dumps({"Type": "Notification", "Message": json.dumps(message)})


def _put_objects(aws, indices):
    for i in indices:
        aws["s3"].put_object(Bucket=BUCKET, Key=f"wfi/2027/03/20/{_name(i)}", Body=b"x")


def _send(aws, queue, bodies):
    for start in range(0, len(bodies), 10):
        aws["sqs"].send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(k), "MessageBody": body} for k, body in enumerate(bodies[start:start + 10])])


def _ledger(url: str) -> L2Ledger:
    database = Database(url)
    database.upgrade()
    return L2Ledger(database)


def _drain(aws, queue, ledger, **kwargs):
    reports = []
    for _ in range(20):
        report = ingest_tick(aws["sqs"], queue, ledger, **kwargs)
        reports.append(report)
        if report.received == 0:
            break
    return reports


def _backends(tmp_path, request):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "rdmt.db")
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.server),
                        pytest.param("mariadb", marks=pytest.mark.server)])
def database_url(tmp_path, request):
    return _backends(tmp_path, request)


def test_every_message_twice_with_malformed_ones_in_between(aws, queue, database_url):
    ledger = _ledger(database_url)
    _put_objects(aws, range(60))
    bodies = [_notice(i) for i in range(60)] * 2 + ["not json", json.dumps({"hello": 1}),
                                                    _notice(999)]  # 999: no such object
    random.Random(7).shuffle(bodies)
    _send(aws, queue, bodies)
    reports = _drain(aws, queue, ledger, s3=aws["s3"])
    files = ledger.files()
    assert sorted(f["filename"] for f in files) == sorted(_name(i) for i in range(60))  # none lost, none twice
    assert {f["reprocess_number"] for f in files} == {0} and {f["status"] for f in files} == {"pending"}
    reasons = sorted(r["reason"] for r in ledger.rejected())
    assert len(reasons) == 3 and any("does not exist" in r for r in reasons) and any("not JSON" in r for r in reasons)
    assert sum(r.new_files for r in reports) == 60 and sum(r.duplicates for r in reports) == 60
    time.sleep(1.2)  # past the visibility timeout: anything not deleted would come back
    assert aws["sqs"].receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []) == []


def test_reprocessed_notices_get_the_next_reprocess_number(aws, queue, tmp_path):
    ledger = _ledger(sqlite_url(tmp_path / "rdmt.db"))
    _send(aws, queue, [_notice(1)])
    _drain(aws, queue, ledger)
    _send(aws, queue, [_notice(1, "reprocessed", "sum1-b"), _notice(1, "reprocessed", "sum1-b")])
    _drain(aws, queue, ledger)
    _send(aws, queue, [_notice(1, "data_release", "sum1-c")])
    _drain(aws, queue, ledger)
    rows = ledger.files()
    assert [(r["reprocess_number"], r["reprocessing"]) for r in rows] == [(0, "none"), (1, "reprocessed"), (2, "data_release")]


def test_a_tick_is_bounded(aws, queue, tmp_path):
    ledger = _ledger(sqlite_url(tmp_path / "rdmt.db"))
    _send(aws, queue, [_notice(i) for i in range(35)])
    report = ingest_tick(aws["sqs"], queue, ledger, max_messages=20)
    assert report.received == 20 and report.new_files == 20 and report.deleted == 20
    report = ingest_tick(aws["sqs"], queue, ledger, budget_seconds=-1)
    assert report.received == 0 and report.stopped == "budget"


def test_database_outage_leaves_the_messages_in_the_queue(aws, queue, tmp_path):
    # A real connection failure: nothing listens on this port.
    down = L2Ledger(Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/rdmt"))
    _send(aws, queue, [_notice(i) for i in range(5)])
    report = ingest_tick(aws["sqs"], queue, down)
    assert report.stopped.startswith("ledger") and report.deleted == 0
    time.sleep(1.2)
    ledger = _ledger(sqlite_url(tmp_path / "rdmt.db"))
    _drain(aws, queue, ledger)
    assert len(ledger.files()) == 5


def test_a_notice_recorded_while_the_catch_up_registers_its_object_is_one_file(tmp_path):
    """The SQS sensor records a file between the catch-up sensor's look-up and its insert (both run at once)."""
    from rdmt_dagster.l2.notices import L2Notice

    database = Database(sqlite_url(tmp_path / "rdmt.db"))
    database.upgrade()
    ledger = L2Ledger(database)
    name = _name(7)
    key = f"wfi/2027/03/20/{name}"
    from_sqs = L2Notice("roman-archive", key, name, None, "none", "sum7", 10)
    from_listing = L2Notice("roman-archive", key, name, None, "none", "", 10)
    record_notices = ledger.record_notices

    def racing(notices, message_id, **kwargs):
        ledger.record_many([([from_sqs], "sqs-message")])
        return record_notices(notices, message_id, **kwargs)

    ledger.record_notices = racing
    assert ledger.record_unknown([from_listing], "s3-catchup:roman-archive/wfi/2027/03/20/") == 0
    assert [(f["reprocess_number"], f["checksum"]) for f in ledger.files()] == [(0, "sum7")]
    database.dispose()
