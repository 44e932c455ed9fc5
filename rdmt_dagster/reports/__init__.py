"""Public reports of the reference-file monitors (Markdown + HTML + PNG, no Dagster).

``write_reports(database, filenames, out_dir)`` writes one report per file and
the index; see `rdmt_dagster.reports.site` for the layout of the site.
"""

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
    "report_folder_name",
    "report_relative_path",
    "write_file_report",
    "write_index",
    "write_reports",
]
