"""The failure summary of one L2 batch: one message for all of its images.

Only failures are reported, grouped by detector and monitor: each failing
image with its worst metric values and the standards they violated, the
images that could not be measured, and the **root cause** lines: the
reference files that calibrated the failing images (from their headers),
what the reference arm says of each (``FAILED its own checks (12 failed
evaluations)``) and a link to its report. A batch without failures gives no
message.

The message is the reference arm's `Notification`, so every channel
(`rdmt_dagster.notify.dispatch.deliver`) sends it as it is.
"""

from __future__ import annotations

import re

from ..reports import l2_queries as lq
from ..reports.escape import plain_text, slack_text, sns_subject
from ..reports.formatting import natural_key
from ..reports.l2_page import (
    DAY,
    MONITOR_ORDER,
    FileResult,
    MetricFailure,
    RefUse,
    collect_l2_results,
    day_relative_path,
    reference_uses,
)
from ..reports.site import report_relative_path
from .message import FileFailures, Notification, _slack_link, _truncate

MAX_FILES_PER_GROUP = 10
MAX_ROWS_PER_FILE = 3
MAX_ERRORS = 30
MAX_REFERENCE_LINES = 25


def default_site_link(relative: str) -> str:
    """A page of the report site relative to the RDMT home (``reports/<path under the site>``)."""
    return f"reports/{relative}"


def base_url_site_link(base_url: str):
    """Pages of a published copy of the report site (``<base_url>/<path under the site>``)."""
    base = base_url.rstrip("/")
    return lambda relative: f"{base}/{relative}"


def _when(r: FileResult) -> str:
    start = r.record.exposure_start
    return f"{start:%Y-%m-%d %H:%M}" if start else "no exposure start"


def _slack_code(text) -> str:
    """Untrusted text as a Slack code span: escaped, and no backtick left to end the span early."""
    return f"`{slack_text(text).replace('`', 'ˋ')}`"


def _slack_detector(detector: str) -> str:
    """A detector name for Slack: as it is when it is one (``WFI07``), else as code (no formatting)."""
    return detector if re.fullmatch(r"WFI\d\d", detector or "") else _slack_code(detector or "?")


def metric_line(mf: MetricFailure) -> str:
    """What one failing metric fails: its worst value, the absolute standards (else the first relative one), how far.

    ``worst amp 5: 12.25 (mission ≤ 2, soc ≤ 1.5; also change, trend): 10.25 above the maximum``
    """
    if mf.absolute:
        detail = ", ".join(f"{ev} {text}" for ev, _, text in mf.absolute)
        others = [ev for ev, _, _ in mf.relative]
    else:
        ev, _, text = mf.relative[0]
        detail = f"{ev} {text}"
        others = [ev for ev, _, _ in mf.relative[1:]]
    also = f"; also {', '.join(others)}" if others else ""
    return f"{mf.worst.value_text} ({detail}{also}): {mf.how_much}"


def _day_link(report_link, day: str | None) -> str | None:
    """The link to a day page; None for a day that cannot name one (the day comes from a header)."""
    if not report_link or not day or not DAY.fullmatch(day):
        return None
    return report_link(day_relative_path(day))


def _reference_line(use: RefUse, report_link) -> tuple[str, str]:
    """(plain, slack) root-cause line of one reference file."""
    link = report_link(report_relative_path(use.filename)) if (report_link and use.status is not None) else None
    n = len(use.images)
    users = f"used by {n} failing image{'s' if n != 1 else ''}"
    affects = f"; its type affects {', '.join(use.related)}" if use.related else ""
    plain = (plain_text(f"calibrated with {use.reftype} {use.filename}: {use.verdict()}")
             + (f", report: {link}" if link else "")
             + plain_text(f"; {users} ({', '.join(use.detectors)}){affects}"))
    verdict = f"*{slack_text(use.verdict())}*" if use.failed else slack_text(use.verdict())
    name = f"<{link}|{slack_text(use.filename)}>" if _slack_link(link) else _slack_code(use.filename)
    detectors = ", ".join(_slack_detector(d) for d in use.detectors)
    slack = (f"• calibrated with {_slack_code(use.reftype)} {name}: {verdict}"
             + (f", report: {_slack_code(link)}" if link and not _slack_link(link) else "")
             + f"; {users} ({detectors}){slack_text(affects)}")
    return plain, slack


def build_l2_notification(database, file_ids, report_link=default_site_link) -> Notification | None:
    """The message for one L2 batch (``l2_file`` ids), or None when none of its images failed.

    Parameters
    ----------
    database : rdmt_dagster.storage.database.Database
    file_ids : iterable of int
        The batch's ``l2_file`` rows.
    report_link : callable, optional
        Path under the report site (``l2/<day>/index.html``,
        ``<reference file>/report.html``) -> the link to show
        (`default_site_link`, `base_url_site_link`); None for no links. The
        day pages and the reports of the reference files in RDMT are linked.

    File names, detectors, reference file names, CRDS contexts and error
    texts come from the images' headers: the plain text gets them on one line
    (`plain_text`), the Slack text escaped (`slack_text`), the subject as one
    short ASCII line (`sns_subject`).
    """
    ids = list(dict.fromkeys(int(i) for i in file_ids))
    with database.engine.connect() as conn:
        files = lq.files_by_id(conn, ids)
        results = collect_l2_results(conn, lq.sort_files(files))
        failing = [r for r in results if r.rows or r.n_failed > 0]
        unmeasured = [r for r in results if r.unmeasured]
        if not failing and not unmeasured:
            return None
        _, uses = reference_uses(conn, results)

    n_images = len(results)
    detectors = sorted({r.record.detector for r in failing + unmeasured if r.record.detector}, key=natural_key)
    more = ", ..." if len(detectors) > 6 else ""
    bad = {r.record.id for r in failing + unmeasured}
    what = f"RDMT L2: failures in {len(bad)} of {n_images} image{'s' if n_images != 1 else ''}"
    # One subject for every channel, so it meets the strictest rules (SNS's).
    subject = sns_subject(what + (f" ({', '.join(detectors[:6])}{more})" if detectors else ""))
    n_failed = sum(r.n_failed for r in failing)
    tail = f": {n_failed} failed evaluations"
    if unmeasured:
        tail += f", {len(unmeasured)} image{'s' if len(unmeasured) != 1 else ''} could not be measured"
    head = plain_text(what + (f" ({', '.join(detectors)})" if detectors else "") + tail)
    slack_head = what + (f" ({', '.join(_slack_detector(d) for d in detectors)})" if detectors else "") + tail
    days = sorted({r.record.observation_day for r in results if r.record.observation_day})
    text, slack = [head], [f"*{slack_head}*"]
    for day in days:
        link = _day_link(report_link, day)
        if link:
            text.append(f"day page {day}: {link}")
            slack.append(f"<{link}|day page {day}>" if _slack_link(link) else f"day page {day}: `{slack_text(link)}`")
    text.append("")
    slack.append("")

    # Failing images by detector and monitor.
    groups: dict[tuple[str, str], list[FileResult]] = {}
    for r in failing:
        for monitor in r.failing_monitors or ["?"]:
            groups.setdefault((r.record.detector, monitor), []).append(r)
    def group_key(key):
        detector, monitor = key
        rank = MONITOR_ORDER.index(monitor) if monitor in MONITOR_ORDER else len(MONITOR_ORDER)
        return (natural_key(detector), rank, monitor)

    for key in sorted(groups, key=group_key):
        detector, monitor = key
        rs = groups[key]
        count = f"{len(rs)} failing image{'s' if len(rs) != 1 else ''}"
        text.append(plain_text(f"{detector or '?'} {monitor}: {count}"))
        slack.append(f"*{_slack_detector(detector)} {slack_text(monitor)}: {count}*")
        for r in rs[:MAX_FILES_PER_GROUP]:
            lines = [mf for mf in r.metric_failures if mf.monitor == monitor]
            details = f"({r.record.optical_element or '?'}, {_when(r)})"
            text.append(f"  {plain_text(r.record.filename)} {plain_text(details)}")
            slack.append(f"  {_slack_code(r.record.filename)} {slack_text(details)}")
            for mf in lines[:MAX_ROWS_PER_FILE]:
                where = f" {mf.where}" if mf.scale != "detector" else ""
                text.append(f"    - {plain_text(mf.metric)}{where}: {plain_text(metric_line(mf))}")
                slack.append(f"    • {_slack_code(mf.metric)}{where}: {slack_text(metric_line(mf))}")
            if len(lines) > MAX_ROWS_PER_FILE:
                more = len(lines) - MAX_ROWS_PER_FILE
                text.append(f"    - ... and {more} more failing metrics on the day page")
                slack.append(f"    • ... and {more} more on the day page")
        if len(rs) > MAX_FILES_PER_GROUP:
            more = len(rs) - MAX_FILES_PER_GROUP
            text.append(f"  ... and {more} more images on the day page")
            slack.append(f"  ... and {more} more images on the day page")
    if groups:
        text.append("")
        slack.append("")

    if unmeasured:
        text.append("Could not be measured:")
        slack.append("*Could not be measured:*")
        for r in unmeasured[:MAX_ERRORS]:
            for monitor, error in r.errors:
                who = f"{r.record.filename} ({r.record.detector or '?'}, {monitor or 'all monitors'})"
                text.append(f"  - {plain_text(who)}: {plain_text(error)}")
                where = f"({_slack_detector(r.record.detector)}, {slack_text(monitor or 'all monitors')})"
                slack.append(f"  • {_slack_code(r.record.filename)} {where}: {slack_text(error)}")
        if len(unmeasured) > MAX_ERRORS:
            text.append(f"  - ... and {len(unmeasured) - MAX_ERRORS} more on the day page")
            slack.append(f"  • ... and {len(unmeasured) - MAX_ERRORS} more on the day page")
        text.append("")
        slack.append("")

    # Root cause: reference files that failed their own checks, and those of types that affect the failing monitors.
    shown = [u for u in uses if u.failed or u.related]
    if shown:
        text.append("Root cause (reference files of the failing images):")
        slack.append("*Root cause (reference files of the failing images):*")
        for use in shown[:MAX_REFERENCE_LINES]:
            plain, sl = _reference_line(use, report_link)
            text.append(f"  - {plain}")
            slack.append(f"  {sl}")
        if len(shown) > MAX_REFERENCE_LINES:
            text.append(f"  - ... and {len(shown) - MAX_REFERENCE_LINES} more on the day page")
            slack.append(f"  • ... and {len(shown) - MAX_REFERENCE_LINES} more on the day page")
        contexts = sorted({r.record.crds_context for r in failing + unmeasured if r.record.crds_context})
        if contexts:
            text.append(f"  CRDS context: {plain_text(', '.join(contexts))}")
            slack.append(f"  CRDS context: {', '.join(_slack_code(c) for c in contexts)}")
    elif failing:
        text.append("Root cause: no reference file of the failing images is known to have failed its own checks.")
        slack.append("Root cause: no reference file of the failing images is known to have failed its own checks.")

    entries = []
    for r in failing + [u for u in unmeasured if u not in failing]:
        link = _day_link(report_link, r.record.observation_day)
        error = "; ".join(f"{m or 'all monitors'}: {e}" for m, e in r.errors) or None
        groups_ = tuple(row.group for row in r.rows)
        entries.append(FileFailures(r.record.filename, r.record.detector, ",".join(r.failing_monitors),
                                    r.record.exposure_start, r.n_failed, r.n_evaluations, groups_, error, link))
    return Notification(subject, _truncate("\n".join(text).rstrip() + "\n"), _truncate("\n".join(slack).rstrip()),
                        tuple(entries), n_images)
