"""Initial schema: reference files, metric values, evaluations, standards.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reference_file",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("filename", sa.String(255), nullable=False, unique=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("monitor", sa.String(64), nullable=False, server_default=""),
        sa.Column("reftype", sa.String(64), nullable=False, server_default=""),
        sa.Column("detector", sa.String(64), nullable=False, server_default=""),
        sa.Column("useafter", sa.DateTime, nullable=True),
        sa.Column("status", sa.String(64), nullable=False, server_default="registered"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("monitor_version", sa.String(64), nullable=False, server_default=""),
        sa.Column("registered_at", sa.DateTime, nullable=False),
        sa.Column("measured_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_reference_file_history", "reference_file", ["monitor", "detector", "useafter"])
    op.create_table(
        "metric_value",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("scale", sa.String(16), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("monitor_version", sa.String(64), nullable=False),
    )
    op.create_table(
        "evaluation",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("standards_hash", sa.String(16), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("evaluator", sa.String(32), primary_key=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("lower", sa.Double, nullable=True),
        sa.Column("reference", sa.Double, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=False),
    )
    op.create_table(
        "evaluation_run",
        sa.Column("file_id", sa.Integer, sa.ForeignKey("reference_file.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("standards_hash", sa.String(16), primary_key=True),
        sa.Column("monitor_version", sa.String(64), nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
        sa.Column("n_evaluations", sa.Integer, nullable=False),
        sa.Column("n_failed", sa.Integer, nullable=False),
        sa.Column("compared_with", sa.Text, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
    )
    op.create_table(
        "standards",
        sa.Column("hash", sa.String(16), primary_key=True),
        sa.Column("monitor", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade():
    for table in ("standards", "evaluation_run", "evaluation", "metric_value", "reference_file"):
        op.drop_table(table)
