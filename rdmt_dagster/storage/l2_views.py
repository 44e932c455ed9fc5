"""One view per L2 monitor in the seed's Table 3 shape, beside the long metric table.

``l2_<monitor>`` has one row per file and reprocess number: the file's
identity, one column per detector-scale metric of the monitor, and the
evaluation result (``n_failed``; ``n_not_evaluated``, the verdicts an
evaluator could not give; ``passed``: measured and nothing failed; ``status`` /
``error`` when the monitor could not run). The metric columns are those of the monitor's
standards block, so a new metric shows up without a migration: the view is
rebuilt whenever its columns differ from the block's.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from ..science.monitor import arm_monitors

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def view_name(monitor: str) -> str:
    return f"l2_{monitor}"


def view_sql(monitor: str, metrics: list[str], quote) -> str:
    """``CREATE VIEW`` of one monitor (names checked: they become SQL identifiers)."""
    for name in [monitor, *metrics]:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} cannot name a column of the {view_name(monitor)} view")
    columns = ",\n  ".join(
        f"MAX(CASE WHEN v.metric = 'detector_{name}' THEN v.value END) AS {quote(name)}" for name in metrics)
    return f"""CREATE VIEW {quote(view_name(monitor))} AS
SELECT f.filename, f.reprocess_number, f.detector, f.optical_element, f.exposure_start, f.observation_day,
  m.status, m.error,
  {columns},
  m.n_failed, m.n_not_evaluated, CASE WHEN m.status = 'ok' AND m.n_failed = 0 THEN 1 ELSE 0 END AS passed
FROM l2_file f
JOIN l2_measurement m ON m.file_id = f.id AND m.monitor = '{monitor}'
LEFT JOIN l2_metric_value v ON v.file_id = f.id AND v.monitor = m.monitor AND v.scale = 'detector'
GROUP BY f.id, f.filename, f.reprocess_number, f.detector, f.optical_element, f.exposure_start,
  f.observation_day, m.status, m.error, m.n_failed, m.n_not_evaluated"""


def expected_columns(metrics: list[str]) -> list[str]:
    return ["filename", "reprocess_number", "detector", "optical_element", "exposure_start", "observation_day",
            "status", "error", *metrics, "n_failed", "n_not_evaluated", "passed"]


def ensure_l2_views(engine, standards) -> list[str]:
    """Create or rebuild the view of every L2 monitor whose columns changed; the views rebuilt.

    Several processes may do this at once; one that loses a race finds the
    view in place the next time.
    """
    rebuilt = []
    quote = engine.dialect.identifier_preparer.quote
    for monitor in sorted(arm_monitors("l2")):
        try:
            metrics = list(standards.for_monitor(monitor).metrics)
        except KeyError:
            continue
        name = view_name(monitor)
        inspector = sa.inspect(engine)
        if name in inspector.get_view_names():
            if [c["name"] for c in inspector.get_columns(name)] == expected_columns(metrics):
                continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP VIEW IF EXISTS {quote(name)}"))
                conn.execute(sa.text(view_sql(monitor, metrics, quote)))
            rebuilt.append(name)
        except sa.exc.DBAPIError:
            if name not in sa.inspect(engine).get_view_names():
                raise
    return rebuilt
