"""Tables of the L2 arm's ingest: announced files and rejected notices.

* ``l2_file``: one row per L2 file and reprocess number: where it is in S3,
  the notice's checksum and size, its identity once read (detector, optical
  element, exposure start, program / visit / exposure), and its state
  (``pending`` until a run claims it, then ``claimed``, ``ok`` or ``error``).
  ``notice_key`` (SHA-256 of bucket, key and checksum) makes a repeated
  notice (SQS delivers at least once) the same row.
* ``rejected_message``: one row per SQS message that announced nothing
  monitorable, with the reason and the raw body.
* ``l2_measurement``: one row per file (and reprocess number) and monitor:
  whether the monitor ran, its version, and the summary of the file's latest
  evaluation under it.
* ``l2_metric_value``: one row per metric value (detector and amp scales), as
  ``metric_value`` of the reference arm.
* ``l2_evaluation``: one row per evaluator per metric value per standards
  hash, as ``evaluation`` of the reference arm (``passed`` NULL: not evaluated).

Every result row hangs off an ``l2_file`` row, i.e. a file *and* its
reprocess number: re-running a file with the same number replaces its rows,
a reprocessing (next number) adds rows beside the earlier ones.

``monitored_file`` (a view, revision 0004) shows the files of both arms in
one shape: arm, file name, reprocess number, detector, optical element, time
of observation (USEAFTER for reference files), status, error, received and
measured times. Per L2 monitor a view in the seed's Table 3 shape (one row
per file, one column per detector-scale metric, the evaluation result) is
kept by `rdmt_dagster.storage.l2_views`.
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
    # Revision 0004: what the file's header says (read before it is measured).
    sa.Column("observation_day", sa.String(10), nullable=True),  # UTC day of exposure_start: its partition
    sa.Column("ref_files", sa.Text, nullable=True),  # JSON: reference type -> reference file that calibrated it
    sa.Column("crds_context", SHORT, nullable=False, server_default=""),
    sa.Column("n_failed", sa.Integer, nullable=True),  # failed evaluations + monitors that could not run
    sa.UniqueConstraint("filename", "reprocess_number", name="uq_l2_file_reprocess"),
    sa.Index("ix_l2_file_status", "status", "received_at"),
    sa.Index("ix_l2_file_history", "detector", "optical_element", "exposure_start"),
    sa.Index("ix_l2_file_day", "observation_day", "status"),
    sa.Index("ix_l2_file_claim", "claimed_by"),
    sa.Index("ix_l2_file_detector_time", "detector", "exposure_start"),  # revision 0006
    sa.Index("ix_l2_file_object", "bucket", "s3_key", mysql_length={"s3_key": 255}),  # revision 0006
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

l2_measurement = sa.Table(
    "l2_measurement",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("monitor", SHORT, primary_key=True),
    sa.Column("status", SHORT, nullable=False),  # ok | error
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("monitor_version", SHORT, nullable=False, server_default=""),
    sa.Column("measured_at", sa.DateTime, nullable=False),
    sa.Column("standards_hash", sa.String(16), nullable=True),  # of the latest evaluation
    sa.Column("evaluated_at", sa.DateTime, nullable=True),
    sa.Column("n_evaluations", sa.Integer, nullable=True),
    sa.Column("n_failed", sa.Integer, nullable=True),
    sa.Column("n_not_evaluated", sa.Integer, nullable=True),  # revision 0005
    sa.Column("compared_with", sa.Text, nullable=True),  # JSON list of earlier files
    sa.Column("notes", sa.Text, nullable=True),  # JSON list of evaluator notes
    # revision 0006: the latest evaluation of each monitor, read without the (wide) rows
    sa.Index("ix_l2_measurement_latest", "file_id", "monitor", "status", "standards_hash", "n_failed"),
)

l2_metric_value = sa.Table(
    "l2_metric_value",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("monitor", SHORT, primary_key=True),
    sa.Column("metric", SHORT, primary_key=True),
    sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scale", sa.String(16), nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("unit", sa.String(32), nullable=False),
)

l2_evaluation = sa.Table(
    "l2_evaluation",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("monitor", SHORT, primary_key=True),
    sa.Column("standards_hash", sa.String(16), primary_key=True),
    sa.Column("metric", SHORT, primary_key=True),
    sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("evaluator", sa.String(32), primary_key=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("lower", sa.Double, nullable=True),
    sa.Column("reference", sa.Double, nullable=True),
    sa.Column("passed", sa.Boolean, nullable=True),  # NULL: not evaluated (revision 0005)
)


#: ``l2_file.status`` of the rows whose results are in (`rdmt_dagster.storage.l2_store`).
MEASURED = ("ok", "error")


def newest_measured_row():
    """A condition on ``l2_file``: no measured row of the same image has a higher reprocess number.

    Reached by ``uq_l2_file_reprocess`` (filename, reprocess_number), one look-up per row.
    """
    newer = l2_file.alias("newer")
    return ~sa.exists().where((newer.c.filename == l2_file.c.filename) & newer.c.status.in_(MEASURED)
                              & (newer.c.reprocess_number > l2_file.c.reprocess_number))
