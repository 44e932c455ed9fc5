"""Relational schema of the RDMT database (SQLAlchemy Core).

The schema is created and upgraded by Alembic (``storage/migrations``); this
module is the single description both the migrations and the code use.

* ``reference_file``: one row per monitored file: where it is, what it is,
  whether it could be measured, the SHA-256 of the content registered under
  its name and how many times that content was replaced (``version``), and
  the delivery it came in (``delivery``: the CRDS context, ``submit:<UTC
  time>``, ...; ``delivered_by``: the trigger, `TRIGGERS`; ``run_id``: the
  Dagster run that measured it).
* ``metric_value``: one row per metric value (1057 per metric per file).
* ``evaluation``: one row per evaluator per metric value, per standards hash,
  so re-evaluating history with new standards keeps the earlier verdicts.
  ``passed`` is NULL where the evaluator could not run (not evaluated: no
  previous file, too little history), which is neither a pass nor a failure.
* ``evaluation_run``: one row per file and standards hash: when, by which
  monitor version, how many failures and verdicts not given, which earlier
  files were compared.
* ``standards``: the YAML text behind each standards hash.

NaN is stored as NULL (MySQL has no NaN).

Views (revision 0005; README, "Storage"): ``metric_history`` and ``failures``
over both arms, for people who query with SQL.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
VERSION_TABLE = "rdmt_alembic_version"  # Alembic's bookkeeping; Dagster's storage uses "alembic_version"

NAME = sa.String(255)
SHORT = sa.String(64)

#: How a reference file came in: ``reference_file.delivered_by``.
CRDS, SUBMIT, DROP_FOLDER = "crds", "submit", "drop_folder"
TRIGGERS = (CRDS, SUBMIT, DROP_FOLDER)

reference_file = sa.Table(
    "reference_file",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("filename", NAME, nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("monitor", SHORT, nullable=False, server_default=""),
    sa.Column("reftype", SHORT, nullable=False, server_default=""),
    sa.Column("detector", SHORT, nullable=False, server_default=""),
    sa.Column("useafter", sa.DateTime, nullable=True),
    sa.Column("status", SHORT, nullable=False, server_default="registered"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("monitor_version", SHORT, nullable=False, server_default=""),
    sa.Column("registered_at", sa.DateTime, nullable=False),
    sa.Column("measured_at", sa.DateTime, nullable=True),
    # NULL for rows registered before checksums were recorded (revision 0002),
    # or by a registrar that does not compute one.
    sa.Column("checksum", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # Revision 0005: the delivery the file (its current version) came in. NULL
    # for rows registered before, or by a registrar that does not say.
    sa.Column("delivery", SHORT, nullable=True),
    sa.Column("delivered_by", sa.String(32), nullable=True),
    sa.Column("run_id", SHORT, nullable=True),
    sa.Index("ix_reference_file_history", "monitor", "detector", "useafter"),
    sa.Index("ix_reference_file_status", "status"),  # files waiting for a hand-off, on every sensor tick
    sa.Index("ix_reference_file_delivery", "delivery"),  # rdmt failures --delivery
)

metric_value = sa.Table(
    "metric_value",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("metric", SHORT, primary_key=True),
    sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scale", sa.String(16), nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("unit", sa.String(32), nullable=False),
    sa.Column("monitor_version", SHORT, nullable=False),
)

evaluation = sa.Table(
    "evaluation",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("standards_hash", sa.String(16), primary_key=True),
    sa.Column("metric", SHORT, primary_key=True),
    sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("evaluator", sa.String(32), primary_key=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("lower", sa.Double, nullable=True),
    sa.Column("reference", sa.Double, nullable=True),
    sa.Column("passed", sa.Boolean, nullable=True),  # NULL: not evaluated (revision 0005)
)

evaluation_run = sa.Table(
    "evaluation_run",
    metadata,
    sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("standards_hash", sa.String(16), primary_key=True),
    sa.Column("monitor_version", SHORT, nullable=False),
    sa.Column("evaluated_at", sa.DateTime, nullable=False),
    sa.Column("n_evaluations", sa.Integer, nullable=False),
    sa.Column("n_failed", sa.Integer, nullable=False),
    sa.Column("n_not_evaluated", sa.Integer, nullable=True),  # revision 0005
    sa.Column("compared_with", sa.Text, nullable=True),
    sa.Column("notes", sa.Text, nullable=True),
)

standards = sa.Table(
    "standards",
    metadata,
    sa.Column("hash", sa.String(16), primary_key=True),
    sa.Column("monitor", SHORT, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
