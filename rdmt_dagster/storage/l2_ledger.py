"""The RDMT database as the L2 arm's ledger of announced files (`rdmt_dagster.l2.ingest.NoticeLedger`).

Recording is idempotent and safe when two ticks race: a notice's
``notice_key`` (bucket, key, checksum) and each file's (filename, reprocess
number) are unique in the table, so a repeated notice, or the loser of a
race, finds the row already there.
"""

from __future__ import annotations

import hashlib
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..l2.notices import L2Notice
from .database import utcnow
from .l2_tables import l2_file, rejected_message

ATTEMPTS = 4


def notice_key(notice: L2Notice) -> str:
    """SHA-256 of the notice's identity (bucket, key, checksum)."""
    return hashlib.sha256("\0".join(notice.identity).encode()).hexdigest()


class L2Ledger:
    """Announced L2 files and rejected notices in the RDMT database.

    Parameters
    ----------
    database : rdmt_dagster.storage.database.Database
        Migrated (``Database.upgrade``).
    """

    def __init__(self, database):
        self.engine = database.engine

    def _record_one(self, conn, notice: L2Notice, key: str, message_id: str, new_objects_only: bool = False) -> bool:
        if conn.execute(sa.select(l2_file.c.id).where(l2_file.c.notice_key == key)).first() is not None:
            return False
        # Read before the checks below: a row of this file committed after this read collides with the insert
        # on (filename, reprocess_number) and the caller looks again; one committed before it is seen by them.
        latest = conn.execute(sa.select(sa.func.max(l2_file.c.reprocess_number))
                              .where(l2_file.c.filename == notice.filename)).scalar()
        if new_objects_only and latest is not None and conn.execute(sa.select(l2_file.c.id).where(
                (l2_file.c.bucket == notice.bucket) & (l2_file.c.s3_key == notice.key))).first() is not None:
            # Found by listing the bucket, and recorded meanwhile by its notice (the SQS sensor runs
            # beside the catch-up sensor): the same file, not a new version of it.
            return False
        if latest is not None and notice.reprocessing == "none" and notice.checksum:
            # The notice of a file the S3 catch-up found first (registered without a checksum):
            # the same file, which now gets its checksum.
            found = conn.execute(sa.select(l2_file.c.id).where(
                (l2_file.c.bucket == notice.bucket) & (l2_file.c.s3_key == notice.key) & (l2_file.c.checksum == "")
                & (l2_file.c.message_id.like("s3-catchup:%")))).first()
            if found is not None:
                conn.execute(l2_file.update().where(l2_file.c.id == found.id).values(checksum=notice.checksum,
                                                                                   notice_key=key))
                return False
        # The first notice of a file is reprocess number 0; every later version (reprocessed,
        # a data release, or new content under the same name) the next number.
        number = 0 if latest is None else int(latest) + 1
        conn.execute(l2_file.insert().values(
            filename=notice.filename, reprocess_number=number, notice_key=key, bucket=notice.bucket,
            s3_key=notice.key, checksum=notice.checksum, size=notice.size, reprocessing=notice.reprocessing,
            monitors=",".join(notice.monitors) if notice.monitors else None, message_id=message_id[:128],
            created_at=notice.created, received_at=utcnow(), status="pending",
        ))
        return True

    def record_notices(self, notices: list[L2Notice], message_id: str, new_objects_only: bool = False) -> int:
        """Record the files of one message (committed when this returns); how many were new.

        With ``new_objects_only``, a notice whose object (bucket and key) has a row already is not recorded.
        """
        new = 0
        for notice in notices:
            key = notice_key(notice)
            for attempt in range(ATTEMPTS):
                try:
                    with self.engine.begin() as conn:
                        new += self._record_one(conn, notice, key, message_id, new_objects_only)
                    break
                except IntegrityError:
                    # Another tick recorded this notice, or took the reprocess number: look again.
                    if attempt == ATTEMPTS - 1:
                        raise
        return new

    def record_many(self, items: list[tuple[list[L2Notice], str]]) -> list[int]:
        """Record the notices of several messages in one transaction; new files per message.

        One commit for a receive of ten messages instead of one per notice.
        When another tick races for the same rows (a unique key taken), the
        messages are recorded one by one instead (`record_notices`).
        """
        try:
            with self.engine.begin() as conn:
                return [sum(self._record_one(conn, n, notice_key(n), message_id) for n in notices)
                        for notices, message_id in items]
        except IntegrityError:
            return [self.record_notices(notices, message_id) for notices, message_id in items]

    def record_unknown(self, notices: list[L2Notice], message_id: str) -> int:
        """Record the notices whose object (bucket and key) no notice announced yet; how many were new.

        For files found by listing the bucket: their notice may have been lost,
        or may still be on its way (then `record_notices` recognises the file).
        """
        if not notices:
            return 0
        known = set()
        with self.engine.connect() as conn:
            for bucket in {n.bucket for n in notices}:
                keys = [n.key for n in notices if n.bucket == bucket]
                for start in range(0, len(keys), 500):
                    known.update((bucket, k) for k in conn.execute(
                        sa.select(l2_file.c.s3_key).where((l2_file.c.bucket == bucket)
                                                          & l2_file.c.s3_key.in_(keys[start:start + 500]))).scalars())
        # Checked again inside each insert's transaction: a notice may be recorded between this look-up and
        # the insert, and the file would otherwise be taken for a new version (reprocess number 1).
        return self.record_notices([n for n in notices if (n.bucket, n.key) not in known], message_id,
                                   new_objects_only=True)

    def record_rejected(self, message_id: str, reason: str, body: str) -> None:
        """Record a rejected message (once per message id)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(rejected_message.insert().values(
                    message_id=message_id[:128], reason=reason, body=body, received_at=utcnow()))
        except IntegrityError:
            pass  # the same message again (its deletion failed last time): already recorded

    def files(self, status: str | None = None) -> list[dict]:
        """Announced files (optionally of one status), oldest first."""
        query = sa.select(l2_file).order_by(l2_file.c.id)
        if status is not None:
            query = query.where(l2_file.c.status == status)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def rejected(self) -> list[dict]:
        """Rejected messages, oldest first."""
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.select(rejected_message).order_by(rejected_message.c.id))]
