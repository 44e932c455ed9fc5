"""The ingest's idempotency under load: every notice twice, malformed ones in between, bounded ticks.

300 files are announced, each by two SQS messages with the same body (SNS and
SQS deliver at least once), shuffled together with ~10 % malformed bodies,
notices of objects that are not in the bucket, and bodies of a known kind
that announce nothing to monitor. Repeated `ingest_tick` calls of at most 100
messages, with the objects' existence checked as the sensor does, drain the
queue. Real boto3 against a moto server on loopback and a SQLite RDMT
database. (moto's SQS takes time in proportion to the queue's depth on
every call, so the ~700 messages take about 30 s, most of it in moto; the
database servers are tested for the same property with 60 files in
``test_ingest.py``.)

Expected: every announced file exactly one ``l2_file`` row (none lost, none
twice), every malformed body and every notice of a missing object exactly
one ``rejected_message`` row (its body stored as sent), nothing else
recorded, and the queue empty at the end.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from urllib.parse import quote_plus

import pytest

from rdmt_dagster.l2.ingest import ingest_tick
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.storage.l2_ledger import L2Ledger

from ..conftest import moto_on_loopback

BUCKET = "roman-archive-load"
N_FILES = 300
N_MALFORMED = 70  # ~10 % of the ~690 messages
N_MISSING = 6
VISIBILITY_TIMEOUT = 1

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def aws():
    import boto3

    with moto_on_loopback() as endpoint:
        clients = {name: boto3.client(name, region_name="us-east-1", endpoint_url=endpoint) for name in ("sqs", "s3")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        for i in range(N_FILES):
            clients["s3"].put_object(Bucket=BUCKET, Key=_key(i), Body=b"x")
        yield clients


@pytest.fixture
def queue(aws):
    url = aws["sqs"].create_queue(QueueName=f"l2-load-{uuid.uuid4().hex[:12]}",
                                  Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT)})["QueueUrl"]
    yield url
    aws["sqs"].delete_queue(QueueUrl=url)


def _name(i: int) -> str:
    return f"r0000101001001001{i % 1000:03d}_01101_{i // 1000 + 1:04d}_WFI{i % 18 + 1:02d}_cal.asdf"


def _key(i: int) -> str:
    return f"wfi/2027/03/20/{_name(i)}"


def _sns(message: dict | str) -> str:
    text = message if isinstance(message, str) else json.dumps(message)
    return json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": "arn:aws:sns:l2",
                       "Message": text})


def _archive(i: int, **changes) -> dict:
    message = {"archiveBucket": BUCKET, "archiveObjectKey": _key(i), "filename": _name(i),
               "fileType": "science_wfi_level_2", "fileCreationTimestamp": "2027-03-20T00:02:19.149000Z",
               "reprocessingState": "none", "checksum": f"sum{i}", "fileSize": 10}
    message.update(changes)
    return message


def _s3_event(i: int, **obj) -> dict:
    return {"Records": [{"eventTime": "2027-03-20T00:02:20.000Z",
                         "s3": {"bucket": {"name": BUCKET},
                                "object": {"key": quote_plus(_key(i), safe="/"), "size": 10, "eTag": f"etag{i}",
                                           **obj}}}]}


def _announcement(i: int) -> str:
    """The body announcing file ``i``: mostly the archive's notice via SNS, some S3 events (raw and via SNS)."""
    if i % 10 == 7:
        return json.dumps(_s3_event(i))
    if i % 10 == 8:
        return _sns(_s3_event(i))
    return _sns(_archive(i))


def _malformed(k: int) -> str:
    """The ``k``-th malformed body (each kind of rejection in turn; every body distinct)."""
    i = 5000 + k
    kinds = [
        lambda: f"not json {k}",
        lambda: json.dumps({"hello": k}),
        lambda: json.dumps([k, "list"]),
        lambda: json.dumps({"Type": "Notification", "Message": f"{{not json {k}"}),
        lambda: _sns(_archive(i, fileType="science_wfi_level_9")),
        lambda: _sns(_archive(i, archiveBucket="Not_A_Bucket")),
        lambda: _sns(_archive(i, archiveObjectKey=f"wfi/../{_name(i)}")),
        lambda: _sns(_archive(i, filename=_name(i + 1))),  # does not end the key
        lambda: _sns(_archive(i, fileCreationTimestamp=f"yesterday {k}")),
        lambda: _sns(_archive(i, reprocessingState="maybe")),
        lambda: _sns(_archive(i, fileSize=-k - 1)),
        lambda: _sns(_archive(i, archiveObjectKey=f"wfi/2027/\u0001/{_name(i)}")),
        lambda: _sns(_archive(i, filename=f"image_{k}.fits", archiveObjectKey=f"wfi/image_{k}.fits")),
        lambda: json.dumps({"Records": [{"no_s3": k}]}),
        lambda: json.dumps({"bucket": BUCKET, "key": _key(i), "monitors": "all"}),
        lambda: _sns(_archive(i, checksum=f"bad checksum {k}!")),
    ]
    return kinds[k % len(kinds)]()


def _missing(j: int) -> str:
    """A well-formed notice of an object that is not in the bucket."""
    i = 9000 + j
    return json.dumps({"bucket": BUCKET, "key": _key(i)}) if j % 2 else _sns(_archive(i))


IGNORED = [  # well-formed, but nothing to monitor: neither a file nor a rejection
    _sns({"archiveBucket": BUCKET, "archiveObjectKey": "wfi/guide/g1_cal.asdf", "filename": "g1_cal.asdf",
          "fileType": "guide_window_wfi_level_1"}),
    json.dumps({"Event": "s3:TestEvent", "Bucket": BUCKET}),
    json.dumps({"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": "wfi/2027/03/20/catalog.ecsv"}}}]}),
]


def _send(sqs, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        answer = sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(k), "MessageBody": body} for k, body in enumerate(bodies[start:start + 10])])
        assert not answer.get("Failed"), answer["Failed"]


def _queue_counts(sqs, queue: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_every_notice_twice_among_malformed_ones_gives_each_file_once(aws, queue, tmp_path):
    database = Database(sqlite_url(tmp_path / "rdmt.db"))
    database.upgrade()
    ledger = L2Ledger(database)

    announced = {_name(i): _announcement(i) for i in range(N_FILES)}
    rejected = [_malformed(k) for k in range(N_MALFORMED)] + [_missing(j) for j in range(N_MISSING)]
    bodies = [*announced.values(), *announced.values(), *rejected, *IGNORED]
    random.Random(20270320).shuffle(bodies)
    _send(aws["sqs"], queue, bodies)

    reports = []
    for _ in range(30 * len(bodies) // 100):  # far more ticks than needed: a stall fails below, not here
        report = ingest_tick(aws["sqs"], queue, ledger, s3=aws["s3"], max_messages=100)
        # A tick may end at its time budget on a loaded machine (that is the bound working);
        # it must never stop for the ledger or S3.
        assert report.stopped in ("", "budget"), report.stopped
        reports.append(report)
        if report.received == 0:
            visible, in_flight = _queue_counts(aws["sqs"], queue)
            if visible == 0 and in_flight == 0:
                break
            time.sleep(VISIBILITY_TIMEOUT)  # something not yet deleted: wait until it is visible again
    assert max(r.received for r in reports) <= 100

    files = ledger.files()
    # None lost, none twice: each announced file exactly one row, and nothing else.
    assert sorted(f["filename"] for f in files) == sorted(announced)
    assert {f["reprocess_number"] for f in files} == {0} and {f["status"] for f in files} == {"pending"}
    assert {f["bucket"] for f in files} == {BUCKET}
    assert sorted(f["s3_key"] for f in files) == sorted(_key(i) for i in range(N_FILES))
    # S3 events carry the ETag as the checksum, archive notices their checksum.
    checksums = {f["filename"]: f["checksum"] for f in files}
    assert checksums[_name(7)] == "etag7" and checksums[_name(8)] == "etag8" and checksums[_name(1)] == "sum1"

    # Every malformed body and every notice of a missing object: exactly one rejection, its body as sent.
    stored = ledger.rejected()
    assert Counter(r["body"] for r in stored) == Counter(rejected)
    assert len({r["message_id"] for r in stored}) == len(stored) == N_MALFORMED + N_MISSING
    missing = [r for r in stored if "does not exist" in r["reason"]]
    assert len(missing) == N_MISSING

    assert sum(r.new_files for r in reports) == N_FILES
    # A message may come back after its visibility timeout before it is deleted: only ever more duplicates.
    assert sum(r.duplicates for r in reports) >= N_FILES
    assert sum(r.rejected for r in reports) >= N_MALFORMED + N_MISSING
    assert sum(r.deleted for r in reports) >= len(bodies)

    time.sleep(VISIBILITY_TIMEOUT + 0.2)  # anything received but not deleted would be visible again
    again = aws["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    assert again.get("Messages", []) == []
    assert _queue_counts(aws["sqs"], queue) == (0, 0)
    database.dispose()
