"""Content checksum and version of each reference file; an index on its status.

Existing rows keep everything they had: their checksum is NULL (unknown
until the file is registered again) and their version is 1.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # Adding columns is a plain ALTER TABLE on every backend, SQLite included:
    # batch mode copies no table here, so the foreign keys keep pointing at it.
    with op.batch_alter_table("reference_file") as batch:
        batch.add_column(sa.Column("checksum", sa.String(64), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.create_index("ix_reference_file_status", "reference_file", ["status"])


def downgrade():
    op.drop_index("ix_reference_file_status", table_name="reference_file")
    with op.batch_alter_table("reference_file") as batch:
        batch.drop_column("version")
        batch.drop_column("checksum")
