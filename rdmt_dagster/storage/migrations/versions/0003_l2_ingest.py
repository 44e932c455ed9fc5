"""L2 ingest: announced L2 files and rejected notices (new tables; nothing existing changes).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "l2_file",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("reprocess_number", sa.Integer, nullable=False, server_default="0"),
        sa.Column("notice_key", sa.String(64), nullable=False, unique=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("s3_key", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("reprocessing", sa.String(64), nullable=False, server_default="none"),
        sa.Column("monitors", sa.Text, nullable=True),
        sa.Column("message_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("detector", sa.String(64), nullable=False, server_default=""),
        sa.Column("optical_element", sa.String(64), nullable=False, server_default=""),
        sa.Column("exposure_start", sa.DateTime, nullable=True),
        sa.Column("program", sa.String(64), nullable=False, server_default=""),
        sa.Column("visit", sa.String(64), nullable=False, server_default=""),
        sa.Column("exposure", sa.String(64), nullable=False, server_default=""),
        sa.Column("status", sa.String(64), nullable=False, server_default="pending"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("measured_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("filename", "reprocess_number", name="uq_l2_file_reprocess"),
    )
    op.create_index("ix_l2_file_status", "l2_file", ["status", "received_at"])
    op.create_index("ix_l2_file_history", "l2_file", ["detector", "optical_element", "exposure_start"])
    op.create_table(
        "rejected_message",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(128), nullable=False, unique=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )


def downgrade():
    op.drop_table("rejected_message")
    op.drop_index("ix_l2_file_history", "l2_file")
    op.drop_index("ix_l2_file_status", "l2_file")
    op.drop_table("l2_file")
