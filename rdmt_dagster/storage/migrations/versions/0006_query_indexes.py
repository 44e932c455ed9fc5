"""Indexes for five years of L2 images: a detector's history by time, the latest evaluations, an S3 object.

Found with ``benchmarks/five_year_scale.py`` (a year of L2 images at the
survey peak, SQLite and PostgreSQL):

* ``ix_l2_file_detector_time`` (detector, exposure_start): ``rdmt history
  --detector --since`` and the ``metric_history`` view read one detector's
  images of a time range; ``ix_l2_file_history`` also has the optical element
  between the two and serves the evaluators' history of one detector *and*
  filter.
* ``ix_l2_measurement_latest`` (file_id, monitor, status, standards_hash,
  n_failed): which evaluation of each monitor is the latest, and whether it
  failed, from the index alone (the history and failure queries, the day
  pages join it once per image; the table's rows also hold the evaluators'
  notes and are ~700 bytes). A year of one detector: 1.2 -> 1.1 s (SQLite),
  2.1 -> 1.4 s (PostgreSQL, which read the whole table without it).
* ``ix_l2_file_object`` (bucket, s3_key): the ledger finds an object's rows
  by its bucket and key (the S3 catch-up sensor's ``record_unknown``, a late
  notice for a file it registered): a scan of the whole table without it,
  0.38 s per batch after a year. MariaDB indexes the first 255 characters of
  the key (a TEXT column).

Each index is created only if it is missing: SQLite commits a CREATE INDEX at
once (the driver opens its transactions at the first write), so a process
stopped between two of them leaves the first behind, and the next upgrade
must not fail on it.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_l2_file_detector_time", "l2_file", ["detector", "exposure_start"], if_not_exists=True)
    op.create_index("ix_l2_file_object", "l2_file", ["bucket", "s3_key"], mysql_length={"s3_key": 255},
                    if_not_exists=True)
    op.create_index("ix_l2_measurement_latest", "l2_measurement",
                    ["file_id", "monitor", "status", "standards_hash", "n_failed"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_l2_measurement_latest", table_name="l2_measurement", if_exists=True)
    op.drop_index("ix_l2_file_object", table_name="l2_file", if_exists=True)
    op.drop_index("ix_l2_file_detector_time", table_name="l2_file", if_exists=True)
