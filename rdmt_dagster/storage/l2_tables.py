"""Tables of the L2 arm's ingest: announced files and rejected notices.

* ``l2_file``: one row per L2 file and reprocess number: where it is in S3,
  the notice's checksum and size, its identity once read (detector, optical
  element, exposure start, program / visit / exposure), and its state
  (``pending`` until a run claims it, then ``claimed``, ``ok`` or ``error``).
  ``notice_key`` (SHA-256 of bucket, key and checksum) makes a repeated
  notice (SQS delivers at least once) the same row.
* ``rejected_message``: one row per SQS message that announced nothing
  monitorable, with the reason and the raw body.
"""

from __future__ import annotations

import sqlalchemy as sa

from .tables import NAME, SHORT, metadata

l2_file = sa.Table(
    "l2_file",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("filename", NAME, nullable=False),
    sa.Column("reprocess_number", sa.Integer, nullable=False, server_default="0"),
    sa.Column("notice_key", sa.String(64), nullable=False, unique=True),
    sa.Column("bucket", SHORT, nullable=False),
    sa.Column("s3_key", sa.Text, nullable=False),
    sa.Column("checksum", sa.String(128), nullable=False, server_default=""),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("reprocessing", SHORT, nullable=False, server_default="none"),
    sa.Column("monitors", sa.Text, nullable=True),  # comma-separated, when the notice chose some
    sa.Column("message_id", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime, nullable=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("detector", SHORT, nullable=False, server_default=""),
    sa.Column("optical_element", SHORT, nullable=False, server_default=""),
    sa.Column("exposure_start", sa.DateTime, nullable=True),
    sa.Column("program", SHORT, nullable=False, server_default=""),
    sa.Column("visit", SHORT, nullable=False, server_default=""),
    sa.Column("exposure", SHORT, nullable=False, server_default=""),
    sa.Column("status", SHORT, nullable=False, server_default="pending"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("claimed_by", SHORT, nullable=True),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    sa.Column("measured_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("filename", "reprocess_number", name="uq_l2_file_reprocess"),
    sa.Index("ix_l2_file_status", "status", "received_at"),
    sa.Index("ix_l2_file_history", "detector", "optical_element", "exposure_start"),
)

rejected_message = sa.Table(
    "rejected_message",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(128), nullable=False, unique=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
)
