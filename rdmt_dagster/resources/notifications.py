"""Dagster resource of the notification channels.

Channels are switched on by ``channels`` (``RDMT_NOTIFY_CHANNELS``, comma
separated: ``log``, ``slack``, ``email``, ``sns``). Secrets come only from the
environment: the Slack webhook URL and the SMTP password are `dg.EnvVar`
values (the UI shows the variable's name, never its value), and AWS
credentials are left to boto3's own chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, instance role).

Environment variables read by `notifications_from_env`:

=============================  ==============================================
``RDMT_NOTIFY_CHANNELS``        ``log`` (default), e.g. ``log,slack,email,sns``
``RDMT_REPORT_BASE_URL``        public URL of the report site, for links
``RDMT_NOTIFY_LOG``             log file (default ``<RDMT home>/notifications.log``)
``RDMT_SLACK_WEBHOOK_URL``      Slack incoming webhook (secret)
``RDMT_SMTP_HOST``, ``_PORT``   SMTP server (port default 587)
``RDMT_SMTP_STARTTLS``          ``true`` (default) / ``false``
``RDMT_SMTP_SSL``               ``true`` for SMTPS (port 465); default ``false``
``RDMT_SMTP_USERNAME``          login (optional)
``RDMT_SMTP_PASSWORD``          password (secret)
``RDMT_SMTP_FROM``, ``_TO``     sender; comma-separated recipients
``RDMT_SNS_TOPIC_ARN``          topic to publish to
``RDMT_SNS_REGION``             default: from the ARN
``RDMT_SNS_ENDPOINT_URL``       e.g. a VPC endpoint or a local test server
``RDMT_NOTIFY_ATTEMPTS``        tries per channel (default 3)
``RDMT_NOTIFY_BACKOFF``         seconds before the 2nd try, doubling (default 1)
``RDMT_NOTIFY_TIMEOUT``         seconds per network call (default 10)
=============================  ==============================================

Every text this resource logs or returns (channel errors, configuration
problems) is scrubbed of the secrets above and of URL credentials
(`rdmt_dagster.notify.secrets`).
"""


import os
from pathlib import Path

import dagster as dg

from ..notify import CHANNELS, EmailNotifier, LogNotifier, SlackNotifier, SNSNotifier, notify_failures
from ..notify.dispatch import DeliveryReport
from ..notify.message import base_url_report_link, default_report_link
from ..notify.secrets import SecretScrubber
from . import env_or

NOTIFICATIONS_LOG = "notifications.log"


class NotificationsConfig(dg.ConfigurableResource):
    """Which channels receive the failure summaries, and how to reach them."""

    channels: list[str] = ["log"]
    report_base_url: str | None = None
    log_file: str | None = None
    slack_webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "rdmt@localhost"
    smtp_recipients: list[str] = []
    sns_topic_arn: str | None = None
    sns_region: str | None = None
    sns_endpoint_url: str | None = None
    attempts: int = 3
    backoff_seconds: float = 1.0
    timeout_seconds: float = 10.0

    def report_link(self, filename: str) -> str:
        """Link to a file's report: under ``report_base_url``, else relative to the RDMT home."""
        if self.report_base_url:
            return base_url_report_link(self.report_base_url)(filename)
        return default_report_link(filename)

    def secret_values(self) -> tuple[str, ...]:
        """The configured secrets (Slack webhook URL, SMTP password), to scrub from every text."""
        return tuple(s for s in (self.slack_webhook_url, self.smtp_password) if s)

    def build_notifiers(self, home: str | Path, log=None) -> tuple[list, dict[str, str]]:
        """The enabled channels, and channel -> problem (scrubbed) for those that cannot be built."""
        scrub = SecretScrubber(self.secret_values())
        notifiers, problems = [], {}
        for raw in self.channels:
            name = raw.strip().lower()
            if not name or name in {n.name for n in notifiers} or name in problems:
                continue
            try:
                if name == "log":
                    path = Path(self.log_file) if self.log_file else Path(home) / NOTIFICATIONS_LOG
                    notifiers.append(LogNotifier(path, log))
                elif name == "slack":
                    notifiers.append(SlackNotifier(self.slack_webhook_url or "", self.timeout_seconds))
                elif name == "email":
                    notifiers.append(EmailNotifier(
                        self.smtp_host or "", list(self.smtp_recipients), self.smtp_sender, self.smtp_port,
                        self.smtp_starttls, self.smtp_ssl, self.smtp_username, self.smtp_password,
                        self.timeout_seconds))
                elif name == "sns":
                    notifiers.append(SNSNotifier(self.sns_topic_arn or "", self.sns_region, self.sns_endpoint_url,
                                                 self.timeout_seconds))
                else:
                    problems[name] = f"unknown channel (known: {', '.join(CHANNELS)})"
            except ValueError as exc:
                problems[name] = scrub(str(exc))
        return notifiers, problems

    def notify(self, database, filenames, home: str | Path, log=None) -> DeliveryReport:
        """Send the failure summary of ``filenames`` on every channel (never raises)."""
        notifiers, problems = self.build_notifiers(home, log)
        return notify_failures(database, list(filenames), notifiers, self.report_link, self.attempts,
                               self.backoff_seconds, log, problems, self.secret_values())

    def notify_l2(self, database, file_ids, home: str | Path, log=None) -> DeliveryReport:
        """Send the failure summary of one batch of L2 images on every channel (never raises)."""
        from ..notify.channels import logger as default_logger
        from ..notify.dispatch import deliver
        from ..notify.l2_message import build_l2_notification

        log = log or default_logger
        notifiers, problems = self.build_notifiers(home, log)
        try:
            notification = build_l2_notification(database, list(file_ids), self.l2_report_link)
        except Exception as exc:  # the monitoring must go on; a database error may quote its URL
            log.error(SecretScrubber(self.secret_values())(f"L2 notification not built: {type(exc).__name__}: {exc}"))
            return DeliveryReport(skipped=f"message not built: {type(exc).__name__}")
        if notification is None:
            log.info(f"no failures in {len(list(file_ids))} L2 images: no notification")
            return DeliveryReport(skipped="no failures")
        return deliver(notification, notifiers, self.attempts, self.backoff_seconds, log, problems,
                       self.secret_values())

    def l2_report_link(self, relative: str) -> str:
        """Link to a page of the report site given by its path under the site (``l2/<day>/index.html``)."""
        if self.report_base_url:
            return f"{self.report_base_url.rstrip('/')}/{relative}"
        return f"reports/{relative}"


def _env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return list(default)
    return [v.strip() for v in value.split(",") if v.strip()]


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_number(name: str, default, kind=int):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a valid {kind.__name__}") from exc


def notifications_from_env() -> NotificationsConfig:
    """`NotificationsConfig` from the ``RDMT_NOTIFY_*``, ``RDMT_SLACK_*``, ``RDMT_SMTP_*`` and ``RDMT_SNS_*`` variables."""
    return NotificationsConfig(
        channels=_env_list("RDMT_NOTIFY_CHANNELS", ["log"]),
        report_base_url=env_or("RDMT_REPORT_BASE_URL", None),
        log_file=env_or("RDMT_NOTIFY_LOG", None),
        slack_webhook_url=env_or("RDMT_SLACK_WEBHOOK_URL", None),
        smtp_host=env_or("RDMT_SMTP_HOST", None),
        smtp_port=_env_number("RDMT_SMTP_PORT", 587),
        smtp_starttls=_env_bool("RDMT_SMTP_STARTTLS", True),
        smtp_ssl=_env_bool("RDMT_SMTP_SSL", False),
        smtp_username=env_or("RDMT_SMTP_USERNAME", None),
        smtp_password=env_or("RDMT_SMTP_PASSWORD", None),
        smtp_sender=env_or("RDMT_SMTP_FROM", "rdmt@localhost"),
        smtp_recipients=_env_list("RDMT_SMTP_TO", []),
        sns_topic_arn=env_or("RDMT_SNS_TOPIC_ARN", None),
        sns_region=env_or("RDMT_SNS_REGION", None),
        sns_endpoint_url=env_or("RDMT_SNS_ENDPOINT_URL", None),
        attempts=_env_number("RDMT_NOTIFY_ATTEMPTS", 3),
        backoff_seconds=_env_number("RDMT_NOTIFY_BACKOFF", 1.0, float),
        timeout_seconds=_env_number("RDMT_NOTIFY_TIMEOUT", 10.0, float),
    )
