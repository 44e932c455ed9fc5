"""Verdicts that were not given, the delivery of each reference file, and two views for SQL users.

* ``evaluation.passed`` and ``l2_evaluation.passed`` become nullable: NULL is
  *not evaluated* (the evaluator could not run: no previous file, too little
  history), neither a pass nor a failure. Such verdicts were stored as passes
  until now, with a note in the file's ``evaluation_run`` / ``l2_measurement``
  row; those rows are turned into NULL here, using the notes (see
  `_not_evaluated_rows`), and every other row keeps its verdict.
  ``evaluation_run.n_not_evaluated`` and ``l2_measurement.n_not_evaluated``
  count them.
* ``reference_file.delivery`` (the CRDS context, ``submit:<UTC time>``, ...),
  ``delivered_by`` (the trigger: ``crds``, ``submit``, ``drop_folder``) and
  ``run_id`` (the Dagster run that measured it): NULL for files registered
  before.
* Views ``metric_history`` and ``failures`` over both arms (`METRIC_HISTORY`,
  `FAILURES`).

SQLite cannot change a column's nullability in place: the two evaluation
tables are rebuilt (copied into a new table, renamed). Nothing references
them, so no foreign key is left pointing at a dropped table, and their own
foreign keys (``ON DELETE CASCADE`` to their file) are declared again below.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Both arms, one row per metric value: reference files by USEAFTER, L2 images
# by exposure start (the newest measured reprocess number of each image).
# ``metric`` is the base name (``dark_current_mean``); ``scale`` and
# ``region`` say which value, so the detector (scale 'detector', region 0) is
# never mixed with super-pixel 0.
METRIC_HISTORY = """
CREATE VIEW metric_history AS
SELECT 'reference' AS arm, f.filename, f.version - 1 AS reprocess_number, f.detector, f.useafter AS observed_at,
       f.monitor, SUBSTR(m.metric, LENGTH(m.scale) + 2) AS metric, m.scale, m.region, m.value, m.unit,
       f.delivery
FROM reference_file f
JOIN metric_value m ON m.file_id = f.id
UNION ALL
SELECT 'l2' AS arm, f.filename, f.reprocess_number, f.detector, f.exposure_start AS observed_at,
       v.monitor, SUBSTR(v.metric, LENGTH(v.scale) + 2) AS metric, v.scale, v.region, v.value, v.unit,
       f.claimed_by AS delivery
FROM l2_file f
JOIN l2_metric_value v ON v.file_id = f.id
WHERE NOT EXISTS (SELECT 1 FROM l2_file newer
                  WHERE newer.filename = f.filename AND newer.status IN ('ok', 'error')
                    AND newer.reprocess_number > f.reprocess_number)
"""

# Failed verdicts (never the ones not given: NOT NULL is NULL) of each file's
# latest evaluation: for a reference file its newest evaluation_run (ties:
# the smallest standards hash, as the reports take it); for an L2 image and
# monitor the evaluation its l2_measurement row points at, of the newest
# measured reprocess number.
FAILURES = """
CREATE VIEW failures AS
SELECT 'reference' AS arm, f.filename, f.version - 1 AS reprocess_number, f.detector, f.useafter AS observed_at,
       f.delivery, f.monitor, SUBSTR(e.metric, LENGTH(m.scale) + 2) AS metric, m.scale, e.region, m.value, m.unit,
       e.evaluator, e.threshold, e.lower, e.reference, e.standards_hash
FROM reference_file f
JOIN evaluation_run r ON r.file_id = f.id
JOIN evaluation e ON e.file_id = r.file_id AND e.standards_hash = r.standards_hash
JOIN metric_value m ON m.file_id = e.file_id AND m.metric = e.metric AND m.region = e.region
WHERE NOT e.passed
  AND NOT EXISTS (SELECT 1 FROM evaluation_run later
                  WHERE later.file_id = r.file_id
                    AND (later.evaluated_at > r.evaluated_at
                         OR (later.evaluated_at = r.evaluated_at AND later.standards_hash < r.standards_hash)))
UNION ALL
SELECT 'l2' AS arm, f.filename, f.reprocess_number, f.detector, f.exposure_start AS observed_at,
       f.claimed_by AS delivery, e.monitor, SUBSTR(e.metric, LENGTH(v.scale) + 2) AS metric, v.scale, e.region,
       v.value, v.unit, e.evaluator, e.threshold, e.lower, e.reference, e.standards_hash
FROM l2_file f
JOIN l2_measurement ms ON ms.file_id = f.id
JOIN l2_evaluation e ON e.file_id = ms.file_id AND e.monitor = ms.monitor AND e.standards_hash = ms.standards_hash
JOIN l2_metric_value v ON v.file_id = e.file_id AND v.monitor = e.monitor AND v.metric = e.metric
                      AND v.region = e.region
WHERE NOT e.passed
  AND NOT EXISTS (SELECT 1 FROM l2_file newer
                  WHERE newer.filename = f.filename AND newer.status IN ('ok', 'error')
                    AND newer.reprocess_number > f.reprocess_number)
"""

# The notes an evaluator left when it could not run (rdmt_dagster.science.evaluators).
_WHOLE_FILE = "no previous file"  # change: nothing of the file was compared
_SOME_VALUES = ("lacks this metric", "trend needs")  # change / trend: the values with no reference


def _evaluation_table(name: str, parent: str, monitor: bool, passed_nullable: bool) -> sa.Table:
    """The evaluation table as revision 0004 (``passed_nullable`` False) or 0005 declares it."""
    columns = [sa.Column("file_id", sa.Integer, sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"), primary_key=True)]
    if monitor:
        columns.append(sa.Column("monitor", sa.String(64), primary_key=True))
    columns += [
        sa.Column("standards_hash", sa.String(16), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("region", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("evaluator", sa.String(32), primary_key=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("lower", sa.Double, nullable=True),
        sa.Column("reference", sa.Double, nullable=True),
        sa.Column("passed", sa.Boolean, nullable=passed_nullable),
    ]
    return sa.Table(name, sa.MetaData(), *columns)


def _set_passed_nullable(name: str, parent: str, monitor: bool, nullable: bool) -> None:
    # copy_from: the table as declared, not as reflected, so that the rebuilt
    # SQLite table keeps its foreign key with ON DELETE CASCADE and its key.
    with op.batch_alter_table(name, copy_from=_evaluation_table(name, parent, monitor, not nullable)) as batch:
        batch.alter_column("passed", existing_type=sa.Boolean(), nullable=nullable)


def _notes(text) -> list[tuple[str, str]]:
    """(evaluator, note) pairs of a stored JSON list of ``"evaluator: note"`` texts."""
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return []
    pairs = []
    for item in items if isinstance(items, list) else []:
        evaluator, sep, note = str(item).partition(":")
        if sep:
            pairs.append((evaluator.strip(), note.strip()))
    return pairs


def _not_evaluated_rows(notes) -> list[tuple[str, bool]]:
    """(evaluator, whole) for each evaluator whose notes say it could not run.

    ``whole``: every verdict of the evaluator on the file was not given (no
    previous file); otherwise only those with no reference value (a previous
    file without the metric, too little history for a trend), which are the
    ones it could not give.
    """
    out: dict[str, bool] = {}
    for evaluator, note in notes:
        if note == _WHOLE_FILE:
            out[evaluator] = True
        elif any(marker in note for marker in _SOME_VALUES):
            out.setdefault(evaluator, False)
    return sorted(out.items())


def _mark_not_evaluated(conn, table: sa.Table, key: dict, notes_text) -> int:
    """Turn the stored passes of one file's evaluation that were never given into NULL; the count of NULLs."""
    where = sa.and_(*[table.c[name] == value for name, value in key.items()])
    for evaluator, whole in _not_evaluated_rows(_notes(notes_text)):
        condition = where & (table.c.evaluator == evaluator)
        if not whole:
            condition &= table.c.reference.is_(None) & table.c.passed.is_(True)
        conn.execute(table.update().where(condition).values(passed=None))
    return conn.execute(sa.select(sa.func.count()).select_from(table).where(where & table.c.passed.is_(None))).scalar()


def _convert_stored_passes(conn) -> None:
    evaluation = _evaluation_table("evaluation", "reference_file", False, True)
    l2_evaluation = _evaluation_table("l2_evaluation", "l2_file", True, True)
    run = sa.table("evaluation_run", sa.column("file_id"), sa.column("standards_hash"), sa.column("notes"),
                   sa.column("n_not_evaluated"))
    measurement = sa.table("l2_measurement", sa.column("file_id"), sa.column("monitor"),
                           sa.column("standards_hash"), sa.column("notes"), sa.column("n_not_evaluated"))
    conn.execute(run.update().values(n_not_evaluated=0))
    conn.execute(measurement.update().where(measurement.c.standards_hash.is_not(None)).values(n_not_evaluated=0))
    noted = sa.or_(*[run.c.notes.like(f"%{marker}%") for marker in (_WHOLE_FILE, *_SOME_VALUES)])
    for row in conn.execute(sa.select(run.c.file_id, run.c.standards_hash, run.c.notes).where(noted)).all():
        key = {"file_id": row.file_id, "standards_hash": row.standards_hash}
        n = _mark_not_evaluated(conn, evaluation, key, row.notes)
        conn.execute(run.update().where((run.c.file_id == row.file_id) & (run.c.standards_hash == row.standards_hash))
                     .values(n_not_evaluated=n))
    noted = sa.or_(*[measurement.c.notes.like(f"%{marker}%") for marker in (_WHOLE_FILE, *_SOME_VALUES)])
    query = (sa.select(measurement.c.file_id, measurement.c.monitor, measurement.c.standards_hash, measurement.c.notes)
             .where(noted & measurement.c.standards_hash.is_not(None)))
    for row in conn.execute(query).all():
        key = {"file_id": row.file_id, "monitor": row.monitor, "standards_hash": row.standards_hash}
        n = _mark_not_evaluated(conn, l2_evaluation, key, row.notes)
        conn.execute(measurement.update().where((measurement.c.file_id == row.file_id)
                                                & (measurement.c.monitor == row.monitor)).values(n_not_evaluated=n))


def upgrade():
    with op.batch_alter_table("reference_file") as batch:
        batch.add_column(sa.Column("delivery", sa.String(64), nullable=True))
        batch.add_column(sa.Column("delivered_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("run_id", sa.String(64), nullable=True))
    op.create_index("ix_reference_file_delivery", "reference_file", ["delivery"])
    with op.batch_alter_table("evaluation_run") as batch:
        batch.add_column(sa.Column("n_not_evaluated", sa.Integer, nullable=True))
    with op.batch_alter_table("l2_measurement") as batch:
        batch.add_column(sa.Column("n_not_evaluated", sa.Integer, nullable=True))
    _set_passed_nullable("evaluation", "reference_file", False, True)
    _set_passed_nullable("l2_evaluation", "l2_file", True, True)
    _convert_stored_passes(op.get_bind())
    op.execute(METRIC_HISTORY)
    op.execute(FAILURES)


def downgrade():
    op.execute("DROP VIEW failures")
    op.execute("DROP VIEW metric_history")
    # Revision 0004 stored a verdict that was not given as a pass.
    for name in ("evaluation", "l2_evaluation"):
        table = sa.table(name, sa.column("passed"))
        op.execute(table.update().where(table.c.passed.is_(None)).values(passed=True))
    _set_passed_nullable("l2_evaluation", "l2_file", True, False)
    _set_passed_nullable("evaluation", "reference_file", False, False)
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch rebuild: with
    # foreign keys on, dropping reference_file to rebuild it would cascade to
    # every result row.
    op.drop_column("l2_measurement", "n_not_evaluated")
    op.drop_column("evaluation_run", "n_not_evaluated")
    op.drop_index("ix_reference_file_delivery", table_name="reference_file")
    for name in ("run_id", "delivered_by", "delivery"):
        op.drop_column("reference_file", name)
