"""L2 results (measurements, metric values, evaluations), header fields of L2 files, one view of both arms.

Nothing existing changes: a reference-arm database keeps every row; the
``monitored_file`` view shows its files beside the L2 images in one shape.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MONITORED_FILE = """
CREATE VIEW monitored_file AS
SELECT 'reference' AS arm, filename, version - 1 AS reprocess_number, detector,
       '' AS optical_element, useafter AS observed_at, status, error,
       registered_at AS received_at, measured_at
FROM reference_file
UNION ALL
SELECT 'l2' AS arm, filename, reprocess_number, detector, optical_element, exposure_start AS observed_at,
       status, error, received_at, measured_at
FROM l2_file
"""


def upgrade():
    with op.batch_alter_table("l2_file") as batch:
        batch.add_column(sa.Column("observation_day", sa.String(10), nullable=True))
        batch.add_column(sa.Column("ref_files", sa.Text, nullable=True))
        batch.add_column(sa.Column("crds_context", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("n_failed", sa.Integer, nullable=True))
    op.create_index("ix_l2_file_day", "l2_file", ["observation_day", "status"])
    op.create_index("ix_l2_file_claim", "l2_file", ["claimed_by"])
    op.create_table(
        "l2_measurement",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("monitor", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("monitor_version", sa.String(64), nullable=False, server_default=""),
        sa.Column("measured_at", sa.DateTime, nullable=False),
        sa.Column("standards_hash", sa.String(16), nullable=True),
        sa.Column("evaluated_at", sa.DateTime, nullable=True),
        sa.Column("n_evaluations", sa.Integer, nullable=True),
        sa.Column("n_failed", sa.Integer, nullable=True),
        sa.Column("compared_with", sa.Text, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
    )
    op.create_table(
        "l2_metric_value",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("monitor", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("scale", sa.String(16), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("unit", sa.String(32), nullable=False),
    )
    op.create_table(
        "l2_evaluation",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("l2_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("monitor", sa.String(64), primary_key=True),
        sa.Column("standards_hash", sa.String(16), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("evaluator", sa.String(32), primary_key=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("lower", sa.Double, nullable=True),
        sa.Column("reference", sa.Double, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
    )
    op.execute(MONITORED_FILE)


def downgrade():
    op.execute("DROP VIEW monitored_file")
    op.drop_table("l2_evaluation")
    op.drop_table("l2_metric_value")
    op.drop_table("l2_measurement")
    op.drop_index("ix_l2_file_claim", table_name="l2_file")
    op.drop_index("ix_l2_file_day", table_name="l2_file")
    with op.batch_alter_table("l2_file") as batch:
        for name in ("n_failed", "crds_context", "ref_files", "observation_day"):
            batch.drop_column(name)
