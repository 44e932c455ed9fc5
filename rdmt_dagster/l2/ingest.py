"""Receiving L2 notices from SQS: bounded, durable before acknowledged, never stalled.

One `ingest_tick` receives up to ``max_messages`` messages within
``budget_seconds`` (well inside Dagster's 60 s sensor timeout), parses each
body (`rdmt_dagster.l2.notices`), optionally checks that the announced object
exists, and records it in a `NoticeLedger` (the RDMT database) *before* the
message is deleted, so a crash between the two only repeats a notice, which
the ledger recognises (SQS delivers at least once). A body that announces
nothing monitorable is recorded as rejected, with the reason and the raw
body, and deleted (or, with ``delete_rejected=False``, left to the queue's
redrive policy); it is never retried forever. When the ledger itself fails
(database down), nothing more is deleted and the tick ends: the messages
become visible again and are taken by a later tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .notices import L2Notice, NoticeError, parse_notice

MAX_STORED_BODY = 64 * 1024


class NoticeLedger(Protocol):
    """Where received notices are recorded durably."""

    def record_many(self, items: list[tuple[list[L2Notice], str]]) -> list[int]:
        """Record the notices of several messages ``[(notices, message_id), ...]`` at once (one commit);
        returns how many files of each message were new (not seen before)."""

    def record_rejected(self, message_id: str, reason: str, body: str) -> None:
        """Record a message that announced nothing monitorable."""


@dataclass
class TickReport:
    """What one tick did."""

    received: int = 0
    new_files: int = 0
    duplicates: int = 0
    rejected: int = 0
    deleted: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the tick ended early: "budget", "ledger: ...", "s3: ..."
    announced: list[str] = field(default_factory=list)  # file names of the recorded notices, repeats included


def _object_exists(s3, notice: L2Notice) -> bool:
    """True when S3 has the object; False for a 404; other errors propagate (S3 unreachable)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=notice.bucket, Key=notice.key)
        return True
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _delete(sqs, queue_url: str, messages: list[dict]) -> int:
    deleted = 0
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        answer = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
        deleted += len(answer.get("Successful", []))
    return deleted


def _missing_objects(s3, notices: list[L2Notice], threads: int = 10) -> set[tuple[str, str]]:
    """(bucket, key) of the announced objects that do not exist, checked in parallel.

    One ``HeadObject`` is a round trip (~5 ms on loopback, more to AWS); ten
    at a time keep a tick of 100 messages well inside its budget. An error
    other than "not found" propagates: an S3 outage is not a missing object.
    """
    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(notices))
    if not unique:
        return set()
    with ThreadPoolExecutor(max_workers=min(threads, len(unique))) as pool:
        exists = list(pool.map(lambda n: _object_exists(s3, n), unique))
    return {(n.bucket, n.key) for n, ok in zip(unique, exists) if not ok}


def _parse_all(messages: list[dict]) -> list[tuple[dict, list[L2Notice] | NoticeError]]:
    out = []
    for message in messages:
        try:
            out.append((message, parse_notice(message.get("Body", ""))))
        except NoticeError as exc:
            out.append((message, exc))
    return out


def ingest_tick(sqs, queue_url: str, ledger: NoticeLedger, *, s3=None, max_messages: int = 100,
                budget_seconds: float = 20.0, delete_rejected: bool = True, clock=time.monotonic) -> TickReport:
    """Receive, record and acknowledge up to ``max_messages`` notices.

    Parameters
    ----------
    sqs : boto3 SQS client
    queue_url : str
    ledger : NoticeLedger
    s3 : boto3 S3 client, optional
        When given, a notice whose object does not exist is rejected.
    max_messages, budget_seconds : bounds of the tick.
    delete_rejected : bool
        Delete rejected messages (default) or leave them to the queue's redrive policy.

    Each receive (up to 10 messages) is checked and recorded as one batch:
    the objects' existence in parallel, the new files in one transaction,
    then the batch's messages deleted in one call.
    """
    report = TickReport()
    start = clock()
    while report.received < max_messages:
        if clock() - start > budget_seconds:
            report.stopped = "budget"
            break
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - report.received),
                                     WaitTimeSeconds=0, AttributeNames=["ApproximateReceiveCount"])
        messages = answer.get("Messages", [])
        if not messages:
            break
        report.received += len(messages)
        parsed = _parse_all(messages)
        if s3 is not None:
            try:
                missing = _missing_objects(s3, [n for _, notices in parsed if isinstance(notices, list)
                                                for n in notices])
            except Exception as exc:  # S3 unreachable: cannot tell a missing object from an outage
                report.stopped = f"s3: {type(exc).__name__}"
                break
            for i, (message, notices) in enumerate(parsed):
                if isinstance(notices, list):
                    gone = [n.key for n in notices if (n.bucket, n.key) in missing]
                    if gone:
                        parsed[i] = (message, NoticeError(f"object {gone[0][:200]!r} does not exist in the bucket"))
        done: list[dict] = []
        try:
            for message, error in [(m, e) for m, e in parsed if isinstance(e, NoticeError)]:
                ledger.record_rejected(message["MessageId"], str(error), message.get("Body", "")[:MAX_STORED_BODY])
                report.rejected += 1
                if delete_rejected:
                    done.append(message)
            accepted = [(m, notices) for m, notices in parsed if isinstance(notices, list)]
            new_counts = ledger.record_many([(notices, message["MessageId"]) for message, notices in accepted])
        except Exception as failure:  # database down: leave the messages for a later tick
            report.stopped = f"ledger: {type(failure).__name__}"
            report.deleted += _delete(sqs, queue_url, done) if done else 0
            break
        for (message, notices), new in zip(accepted, new_counts):
            report.new_files += new
            report.duplicates += len(notices) - new
            report.announced.extend(n.filename for n in notices)
            done.append(message)
        report.deleted += _delete(sqs, queue_url, done) if done else 0
    report.seconds = clock() - start
    return report
