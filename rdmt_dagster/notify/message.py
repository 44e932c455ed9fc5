"""The failure summary of one delivery: one message for all of its files, short enough for a phone.

One line per failing file: its detector and type, its worst failure with its
size (``detector_dark_current_mean = 0.00868 DN / s: +19 % vs previous
(tolerance 11 %)``, `rdmt_dagster.reports.formatting.worst_group`) and how
many more metric/evaluator pairs fail (``+12 more``), then the link to its
report, where the full detail is. Evaluators that could not run on the file
are named ("trend not evaluated"): they are neither passes nor failures. A
file that could not be monitored says so with its error. A delivery without
failures gives no message.

The size of a failure is worded by the function the report and the demo's
summary use (`FailureGroup.phrase`), so all three quote the same numbers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime

from ..reports import queries as q
from ..reports.escape import plain_text, slack_text, sns_subject
from ..reports.formatting import (
    FailureGroup,
    change_reference_file,
    group_failures,
    scrub,
    summarise_verdicts,
    worst_group,
)
from ..reports.site import report_relative_path

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
    not_evaluated: str = ""  # "trend not evaluated": evaluators that could not run on the file

    @property
    def worst(self) -> FailureGroup | None:
        """The failure the message quotes (`worst_group`)."""
        return worst_group(self.groups)


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
            groups = group_failures(rows, _block_params(block), change_reference_file(run.compared_with),
                                    q.trend_lookup(conn, run.compared_with))
            verdicts = summarise_verdicts(q.verdict_counts(conn, record.id, run.standards_hash))
            out.append(FileFailures(name, record.detector, record.monitor, record.useafter, run.n_failed,
                                    run.n_evaluations, tuple(groups), None, link, verdicts.not_evaluated_text()))
    return out


def _more(f: FileFailures) -> str:
    more = len(f.groups) - 1
    return f"; +{more} more" if more > 0 else ""


def file_line(f: FileFailures) -> str:
    """The plain-text line of one file: ``WFI07 dark: <worst failure>; +12 more (trend not evaluated)``."""
    who = f"{f.detector or '?'} {f.monitor or '?'}"
    if f.error:
        return plain_text(f"{who}: could not be monitored: {f.error}")
    worst = f.worst
    what = worst.phrase if worst is not None else f"{f.n_failed} failed evaluations"
    tail = f" ({f.not_evaluated})" if f.not_evaluated else ""
    return plain_text(f"{who}: {what}{_more(f)}{tail}")


def _slack_line(f: FileFailures) -> str:
    """The Slack line of one file, with the link to its report at the end (named after the file)."""
    who = slack_text(f"{f.detector or '?'} {f.monitor or '?'}")
    link = _slack_link(f.report)
    name = f"<{link}|{slack_text(f.filename)}>" if link else slack_text(f.filename)
    if f.error:
        line = f"*{who}*: could not be monitored: {slack_text(f.error)}"
    elif f.worst is not None:
        metric, rest = f.worst.metric, f.worst.phrase[len(f.worst.metric):]
        tail = f" ({f.not_evaluated})" if f.not_evaluated else ""
        line = f"*{who}*: {_slack_code(metric)}{slack_text(rest + _more(f) + tail)}"
    else:
        line = f"*{who}*: {f.n_failed} failed evaluations"
    line += f" · {name}"
    if f.report and not link:
        line += f" · report: {_slack_code(f.report)}"
    return line


def _slack_code(text) -> str:
    """Untrusted text as a Slack code span: escaped, and no backtick left to end the span early."""
    return f"`{slack_text(text).replace('`', 'ˋ')}`"


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
        # One line per file, the link on the next: a phone shows both without scrolling sideways.
        text.append(file_line(f))
        text.append(f"  {plain_text(f.report)}" if f.report else f"  {plain_text(f.filename)}")
        slack.append(_slack_line(f))
    return Notification(subject, _truncate("\n".join(text).rstrip() + "\n"), _truncate("\n".join(slack).rstrip()),
                        tuple(files), len(filenames))
