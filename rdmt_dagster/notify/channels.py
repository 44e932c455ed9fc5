"""Notification channels: log file, Slack incoming webhook, e-mail (SMTP), AWS SNS.

Each channel sends one `Notification` and raises on failure; `deliver`
(``dispatch.py``) retries it and never lets an error reach the monitoring.
Secrets (webhook URL, SMTP password) are given by the caller from the
environment and listed in ``secrets`` so that error texts can be scrubbed
(`rdmt_dagster.notify.secrets`); AWS credentials are never passed at all:
boto3 takes them from its usual chain (``AWS_ACCESS_KEY_ID``/
``AWS_SECRET_ACCESS_KEY``, profile, instance role).

The message's subject and texts are built from file contents: each channel
makes its own headers safe (`header_text`, `sns_subject`) whatever the
message holds.
"""

from __future__ import annotations

import logging
import smtplib
import ssl as ssl_module
import threading
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

from ..reports.escape import header_text, sns_subject
from .message import Notification
from .secrets import ScrubbingLogger, SecretScrubber

_LOCK = threading.Lock()
logger = logging.getLogger("rdmt_dagster.notify")

# slack_sdk logs request URLs (the webhook secret) at DEBUG: give it a logger that never does.
_slack_logger = logging.getLogger("rdmt_dagster.notify.slack_sdk")
_slack_logger.setLevel(logging.WARNING)


class NotifierError(Exception):
    """A channel refused or could not take the message."""


class LogNotifier:
    """Appends the message to a log file and logs its subject and text (the embedded default)."""

    name = "log"
    secrets: tuple[str, ...] = ()

    def __init__(self, path: str | Path | None = None, log=None):
        self.path = Path(path) if path else None
        self.log = log or logger

    def send(self, notification: Notification) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            with _LOCK, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"===== {stamp} {notification.subject}\n{notification.text}\n")
        self.log.warning(f"{notification.subject}\n{notification.text}")


class SlackNotifier:
    """Posts the message to a Slack incoming webhook (``slack_sdk.webhook.WebhookClient``)."""

    name = "slack"

    def __init__(self, webhook_url: str, timeout: float = 10.0):
        # A copied secret often carries a trailing newline or space.
        webhook_url = (webhook_url or "").strip()
        if not webhook_url:
            raise ValueError("Slack notifications need a webhook URL (RDMT_SLACK_WEBHOOK_URL)")
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.secrets = (webhook_url,)

    def send(self, notification: Notification) -> None:
        from slack_sdk.webhook import WebhookClient

        # slack_sdk logs its errors, which may quote the webhook path: scrub them.
        log = ScrubbingLogger(_slack_logger, SecretScrubber(self.secrets))
        client = WebhookClient(self.webhook_url, timeout=max(1, int(round(self.timeout))), logger=log,
                               retry_handlers=[])
        response = client.send(text=notification.slack_text, unfurl_links=False, unfurl_media=False)
        if response.status_code != 200:
            raise NotifierError(f"Slack webhook answered HTTP {response.status_code}: {str(response.body)[:200]}")


class EmailNotifier:
    """Sends the message by SMTP (optionally SMTPS or STARTTLS, and login)."""

    name = "email"

    def __init__(self, host: str, recipients: list[str], sender: str = "rdmt@localhost", port: int = 587,
                 starttls: bool = True, use_ssl: bool = False, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0):
        if not host:
            raise ValueError("e-mail notifications need an SMTP host (RDMT_SMTP_HOST)")
        if not recipients:
            raise ValueError("e-mail notifications need recipients (RDMT_SMTP_TO)")
        self.host, self.port, self.sender, self.recipients = host, int(port), sender, list(recipients)
        self.starttls, self.use_ssl = starttls, use_ssl
        self.username, self.password, self.timeout = username, password, timeout
        self.secrets = tuple(s for s in (password,) if s)

    def send(self, notification: Notification) -> None:
        msg = EmailMessage()
        msg["Subject"] = header_text(notification.subject) or "RDMT"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(notification.text)
        context = ssl_module.create_default_context()
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            # The envelope comes from the configuration, never from the headers.
            refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
        if refused:
            raise NotifierError(f"SMTP server refused recipients {sorted(refused)}")


class SNSNotifier:
    """Publishes the message to an AWS SNS topic (subscribers: e-mail, SQS, Lambda, ...)."""

    name = "sns"
    secrets: tuple[str, ...] = ()

    def __init__(self, topic_arn: str, region: str | None = None, endpoint_url: str | None = None,
                 timeout: float = 10.0):
        if not topic_arn:
            raise ValueError("SNS notifications need a topic ARN (RDMT_SNS_TOPIC_ARN)")
        self.topic_arn = topic_arn
        parts = topic_arn.split(":")
        self.region = region or (parts[3] if len(parts) > 5 and parts[3] else None)
        self.endpoint_url = endpoint_url or None
        self.timeout = timeout

    def send(self, notification: Notification) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "sns", region_name=self.region, endpoint_url=self.endpoint_url,
            config=Config(connect_timeout=self.timeout, read_timeout=self.timeout, retries={"max_attempts": 1}),
        )
        client.publish(
            TopicArn=self.topic_arn,
            Subject=sns_subject(notification.subject),
            Message=notification.text,
            MessageAttributes={
                "rdmt_files_failed": {"DataType": "Number", "StringValue": str(len(notification.files))},
            },
        )
