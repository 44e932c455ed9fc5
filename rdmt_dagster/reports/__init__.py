"""Public reports of the reference-file monitors (Markdown + HTML + PNG, no Dagster).

``write_reports(database, filenames, out_dir)`` writes one report per file and
the index; see `rdmt_dagster.reports.site` for the layout of the site.
``write_l2_day_pages(database, days, out_dir)`` writes the L2 arm's page of
each observation day and ``write_l2_changes(database, file_ids, out_dir)`` the
comparison of a reprocessing with the versions before
(`rdmt_dagster.reports.l2_page`).
"""

from .l2_page import day_relative_path, write_l2_changes, write_l2_day_pages
from .site import (
    INDEX_HTML,
    INDEX_MD,
    REPORT_HTML,
    REPORT_MD,
    ReportPaths,
    report_folder_name,
    report_relative_path,
    write_file_report,
    write_index,
    write_reports,
)

__all__ = [
    "INDEX_HTML",
    "INDEX_MD",
    "REPORT_HTML",
    "REPORT_MD",
    "ReportPaths",
    "day_relative_path",
    "report_folder_name",
    "report_relative_path",
    "write_file_report",
    "write_index",
    "write_l2_changes",
    "write_l2_day_pages",
    "write_reports",
]
