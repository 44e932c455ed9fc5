"""The failure summary of one delivery: one message for all of its files.

Only failures are reported: failed evaluations (file, detector, metric,
scale, how many regions, the worst value and its standard) and files that
could not be monitored at all. A delivery without failures gives no message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime

from ..reports import queries as q
from ..reports.escape import plain_text, slack_text, sns_subject
from ..reports.formatting import FailureGroup, change_reference_file, group_failures, scrub
from ..reports.site import report_relative_path

MAX_GROUPS_PER_FILE = 30
MAX_TEXT = 35_000  # Slack accepts 40k characters of text; SNS 256 KB; keep one size for all
# A link Slack can show as ``<url|text>``: no whitespace and none of the characters that end it.
_SLACK_URL = re.compile(r"https?://[^\s<>|]+")


@dataclass(frozen=True)
class FileFailures:
    """Failures of one reference file (or the error that stopped its monitoring)."""

    filename: str
    detector: str
    monitor: str
    useafter: datetime | None
    n_failed: int
    n_evaluations: int
    groups: tuple[FailureGroup, ...] = ()
    error: str | None = None
    report: str | None = None


@dataclass(frozen=True)
class Notification:
    """One message per channel: ``subject``, plain ``text`` and Slack ``slack_text`` (mrkdwn)."""

    subject: str
    text: str
    slack_text: str
    files: tuple[FileFailures, ...] = field(default_factory=tuple)
    n_files: int = 0

    @property
    def n_failed(self) -> int:
        return sum(f.n_failed for f in self.files)


def default_report_link(filename: str) -> str:
    """Report path relative to the RDMT home (``reports/<file>/report.html``)."""
    return f"reports/{report_relative_path(filename)}"


def base_url_report_link(base_url: str):
    """Links under a published copy of the report site."""
    base = base_url.rstrip("/")
    return lambda filename: f"{base}/{report_relative_path(filename)}"


def _block_params(block: dict):
    def params(base: str, scale: str, evaluator: str) -> dict:
        spec = (block.get("metrics") or {}).get(base) or {}
        value = spec.get(evaluator)
        per_scale = (spec.get("scales") or {}).get(scale) or {}
        if evaluator in per_scale:
            value = {**(value or {}), **(per_scale[evaluator] or {})}
        return dict(value) if isinstance(value, dict) else {}

    return params


def collect_failures(database, filenames, report_link=default_report_link) -> list[FileFailures]:
    """Failures of ``filenames`` under each file's latest evaluation run, in the given order."""
    out = []
    with database.engine.connect() as conn:
        for name in dict.fromkeys(filenames):
            record = q.file_record(conn, name)
            if record is None:
                continue
            link = report_link(name) if report_link else None
            if record.status == "error":
                error = scrub(record.error, os.path.dirname(record.path) + os.sep) or "could not be monitored"
                out.append(FileFailures(name, record.detector, record.monitor, record.useafter, 0, 0, (), error, link))
                continue
            run = q.latest_run(conn, record.id)
            if run is None or run.n_failed == 0:
                continue
            rows = q.failures(conn, record.id, run.standards_hash)
            block = q.standards_block(conn, run.standards_hash, record.monitor)
            groups = group_failures(rows, _block_params(block), change_reference_file(run.compared_with))
            out.append(FileFailures(name, record.detector, record.monitor, record.useafter, run.n_failed,
                                    run.n_evaluations, tuple(groups), None, link))
    return out


def _detail(g: FailureGroup) -> str:
    if g.scale == "detector":
        return f"value {g.value_text}; standard {g.standard}"
    return f"{g.where}; {g.value_text}; standard {g.standard}"


def _truncate(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 60].rsplit("\n", 1)[0] + "\n... (truncated; see the reports)\n"


def _slack_link(link: str | None) -> str | None:
    """A report URL usable inside Slack's ``<url|text>`` (the platform's own link, not escaped)."""
    return link if link and _SLACK_URL.fullmatch(link) else None


def build_notification(database, filenames, report_link=default_report_link) -> Notification | None:
    """The message for one delivery, or None when none of its files failed.

    File names, detectors, monitors, metric names, units and error texts come
    from the files: the plain text gets them on one line (`plain_text`), the
    Slack text escaped (`slack_text`), the subject as one short ASCII line
    (`sns_subject`).
    """
    filenames = list(dict.fromkeys(filenames))
    files = collect_failures(database, filenames, report_link)
    if not files:
        return None
    detectors = sorted({f.detector for f in files if f.detector})
    n_bad = len(files)
    det_text = ", ".join(detectors[:6]) + (", ..." if len(detectors) > 6 else "")
    # One subject for every channel, so it meets the strictest rules (SNS's).
    subject = sns_subject(
        f"RDMT: failures in {n_bad} of {len(filenames)} reference file{'s' if len(filenames) != 1 else ''}"
        + (f" ({det_text})" if det_text else "")
    )
    n_failed = sum(f.n_failed for f in files)
    head = f"{subject}: {n_failed} failed evaluations"
    n_errors = sum(1 for f in files if f.error)
    if n_errors:
        head += f", {n_errors} file{'s' if n_errors != 1 else ''} could not be monitored"
    text, slack = [head, ""], [f"*{slack_text(head)}*", ""]
    for f in files:
        when = f"USEAFTER {f.useafter:%Y-%m-%d}" if f.useafter else "no USEAFTER"
        about = f"{f.detector or '?'}, {f.monitor or '?'}, {when}"
        title = plain_text(f"{f.filename} ({about})")
        link = f.report
        if _slack_link(link):
            slack_title = f"*<{link}|{slack_text(f.filename)}>* ({slack_text(about)})"
        else:
            slack_title = f"*{slack_text(title)}*"
        if f.error:
            text += [f"{title}: COULD NOT BE MONITORED: {plain_text(f.error)}"]
            slack += [f"{slack_title}: could not be monitored: {slack_text(f.error)}"]
        else:
            text += [f"{title}: {f.n_failed} of {f.n_evaluations} evaluations failed"]
            slack += [f"{slack_title}: {f.n_failed} of {f.n_evaluations} evaluations failed"]
            for g in f.groups[:MAX_GROUPS_PER_FILE]:
                what = f"{g.metric} ({g.scale}) [{g.evaluator}]"
                text.append(f"  - {plain_text(what)}: {plain_text(_detail(g))}")
                slack.append(f"• `{slack_text(g.metric)}` {slack_text(f'({g.scale}) [{g.evaluator}]')}: "
                             f"{slack_text(_detail(g))}")
            if len(f.groups) > MAX_GROUPS_PER_FILE:
                more = len(f.groups) - MAX_GROUPS_PER_FILE
                text.append(f"  - ... and {more} more metric/evaluator pairs in the report")
                slack.append(f"• ... and {more} more in the report")
        if link:
            text.append(f"  report: {link}")
            if not _slack_link(link):
                slack.append(f"report: `{slack_text(link)}`")
        text.append("")
        slack.append("")
    return Notification(subject, _truncate("\n".join(text).rstrip() + "\n"), _truncate("\n".join(slack).rstrip()),
                        tuple(files), len(filenames))
