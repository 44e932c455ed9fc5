"""``rdmt status``: every monitored file of both arms and every rejected notice, for operators and scripts.

Reads any backend (``RDMT_DATABASE_URL``, or the SQLite file in ``RDMT_HOME``).
Times are UTC, ISO 8601: ``received_at`` is when the file's hand-off (reference
files) or notice (L2 images) was recorded, ``measured_at`` when its results
were stored.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .storage import tables as t
from .storage.l2_tables import l2_file, rejected_message


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def reference_rows(conn) -> list[dict]:
    """Reference files with the failures of their latest evaluation run."""
    f, r = t.reference_file, t.evaluation_run
    latest = sa.select(r.c.file_id, sa.func.max(r.c.evaluated_at).label("evaluated_at")).group_by(r.c.file_id).subquery()
    query = (
        sa.select(f.c.filename, f.c.status, f.c.error, f.c.version, f.c.registered_at, f.c.measured_at, r.c.n_failed)
        .select_from(f)
        .outerjoin(latest, latest.c.file_id == f.c.id)
        .outerjoin(r, (r.c.file_id == f.c.id) & (r.c.evaluated_at == latest.c.evaluated_at))
        .order_by(f.c.id)
    )
    out: dict[str, dict] = {}
    for row in conn.execute(query):
        out.setdefault(row.filename, {
            "file": row.filename, "arm": "reference", "status": row.status, "error": row.error,
            # A replaced reference file is monitored again: its versions count like reprocessings.
            "reprocess_number": max(int(row.version or 1) - 1, 0), "n_failed": row.n_failed,
            "received_at": _iso(row.registered_at), "measured_at": _iso(row.measured_at),
        })
    return list(out.values())


def l2_rows(conn) -> list[dict]:
    """L2 images, one row per file and reprocess number (``n_failed``: failed evaluations and monitors that
    could not run, once evaluated)."""
    query = sa.select(l2_file.c.filename, l2_file.c.status, l2_file.c.error, l2_file.c.reprocess_number,
                      l2_file.c.n_failed, l2_file.c.received_at, l2_file.c.measured_at).order_by(l2_file.c.id)
    return [{"file": row.filename, "arm": "l2", "status": row.status, "error": row.error,
             "reprocess_number": row.reprocess_number, "n_failed": row.n_failed,
             "received_at": _iso(row.received_at), "measured_at": _iso(row.measured_at)} for row in conn.execute(query)]


def status_document(database) -> dict:
    """``{"files": [...], "rejected_messages": [...]}`` (see ``rdmt status --json``)."""
    with database.engine.connect() as conn:
        files = reference_rows(conn) + l2_rows(conn)
        rejected = [{"message_id": row.message_id, "reason": row.reason, "received_at": _iso(row.received_at)}
                    for row in conn.execute(sa.select(rejected_message.c.message_id, rejected_message.c.reason,
                                                      rejected_message.c.received_at).order_by(rejected_message.c.id))]
    return {"files": files, "rejected_messages": rejected}


def format_status(document: dict) -> str:
    """The readable table of ``rdmt status``."""
    from .reports.escape import plain_text

    lines = [f"{'file':<52} {'arm':<9} {'status':<10} {'rep':>3} {'failed':>6}  {'received (UTC)':<20} {'measured (UTC)':<20}"]
    for f in document["files"]:
        failed = "" if f["n_failed"] is None else str(f["n_failed"])
        lines.append(f"{plain_text(f['file'])[:52]:<52} {f['arm']:<9} {plain_text(f['status'])[:10]:<10} "
                     f"{f['reprocess_number']:>3} {failed:>6}  {(f['received_at'] or '')[:19]:<20} {(f['measured_at'] or '')[:19]:<20}")
        if f["error"]:
            lines.append(f"    error: {plain_text(f['error'])[:200]}")
    lines.append(f"{len(document['files'])} file(s)")
    if document["rejected_messages"]:
        lines.append("")
        lines.append("rejected notices:")
        for m in document["rejected_messages"]:
            lines.append(f"  {(m['received_at'] or '')[:19]}  {plain_text(m['message_id'])[:40]}  {plain_text(m['reason'])[:160]}")
    return "\n".join(lines) + "\n"
