"""Send one notification on every channel: in parallel, retried, never raising."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .channels import logger as default_logger
from .message import Notification, build_notification, default_report_link
from .secrets import SecretScrubber


@dataclass
class DeliveryReport:
    """What happened to one notification: channels sent and failed (with the last error)."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    notification: Notification | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def _scrubber(notifiers, secrets=()) -> SecretScrubber:
    """One scrubber for the secrets of every channel: an error of one channel may quote another's."""
    values = list(secrets or ())
    for notifier in notifiers:
        values += list(getattr(notifier, "secrets", ()) or ())
    return SecretScrubber(values)


def _send_with_retries(notifier, notification: Notification, attempts: int, backoff: float, scrub):
    """Returns (ok, attempts used, list of scrubbed error texts)."""
    errors = []
    for attempt in range(1, max(1, attempts) + 1):
        try:
            notifier.send(notification)
            return True, attempt, errors
        except Exception as exc:  # any channel error: retry, then report; never raise into the monitoring
            errors.append(scrub(f"{type(exc).__name__}: {exc}"))
            if attempt < attempts:
                time.sleep(backoff * 2 ** (attempt - 1))
    return False, max(1, attempts), errors


def deliver(notification: Notification, notifiers, attempts: int = 3, backoff: float = 1.0, log=None,
            misconfigured: dict[str, str] | None = None, secrets=()) -> DeliveryReport:
    """Send ``notification`` once per channel; each channel is tried up to ``attempts`` times.

    Channels run in parallel threads (a hung SMTP server does not delay Slack);
    the waits between attempts double from ``backoff`` seconds. Errors are
    logged with the channels' ``secrets``, the given ``secrets`` and any URL
    credentials replaced by ``***`` (`rdmt_dagster.notify.secrets`) and
    returned, never raised. ``misconfigured`` (channel -> problem) are
    reported as failed without trying.
    """
    log = log or default_logger
    report = DeliveryReport(notification=notification)
    notifiers = list(notifiers)
    scrub = _scrubber(notifiers, secrets)
    for name, problem in (misconfigured or {}).items():
        report.failed[name] = scrub(problem)
        log.error(f"notification channel {name} not sent: {report.failed[name]}")
    if notifiers:
        with ThreadPoolExecutor(max_workers=len(notifiers), thread_name_prefix="rdmt-notify") as pool:
            results = list(pool.map(lambda n: _send_with_retries(n, notification, attempts, backoff, scrub),
                                    notifiers))
        # Log from the calling thread (Dagster's context.log is not meant for worker threads).
        for notifier, (ok, used, errors) in zip(notifiers, results):
            report.attempts[notifier.name] = used
            for i, error in enumerate(errors, start=1):
                log.warning(f"notification via {notifier.name}: attempt {i} of {max(1, attempts)} failed: {error}")
            if ok:
                report.sent.append(notifier.name)
                log.info(f"notification sent via {notifier.name} ({used} attempt{'s' if used != 1 else ''})")
            else:
                report.failed[notifier.name] = errors[-1] if errors else "failed"
                log.error(f"notification via {notifier.name} failed after {used} attempts: {report.failed[notifier.name]}")
    return report


def notify_failures(database, filenames, notifiers, report_link=default_report_link, attempts: int = 3,
                    backoff: float = 1.0, log=None, misconfigured: dict[str, str] | None = None,
                    secrets=()) -> DeliveryReport:
    """Summarise the failures of one delivery and send them (nothing is sent when nothing failed).

    Never raises: a database error while building the message is logged
    (scrubbed like the channel errors, see `deliver`) and reported as ``skipped``.
    """
    log = log or default_logger
    notifiers = list(notifiers)
    try:
        notification = build_notification(database, filenames, report_link)
    except Exception as exc:  # the monitoring must go on
        # A database error may quote its connection URL, with the password.
        log.error(_scrubber(notifiers, secrets)(f"notification not built: {type(exc).__name__}: {exc}"))
        return DeliveryReport(skipped=f"message not built: {type(exc).__name__}")
    if notification is None:
        log.info(f"no failures in {len(list(filenames))} files: no notification")
        return DeliveryReport(skipped="no failures")
    return deliver(notification, notifiers, attempts, backoff, log, misconfigured, secrets)
