"""Notifications of failed evaluations (plain Python, no Dagster).

One delivery (one run, many files) gives one `Notification` and one message
per configured channel; nothing is sent when nothing failed::

    from rdmt_dagster.notify import LogNotifier, SlackNotifier, notify_failures
    report = notify_failures(database, filenames, [LogNotifier(home / "notifications.log")])
"""

from .channels import EmailNotifier, LogNotifier, NotifierError, SlackNotifier, SNSNotifier
from .dispatch import DeliveryReport, deliver, notify_failures
from .message import (
    FileFailures,
    Notification,
    base_url_report_link,
    build_notification,
    collect_failures,
    default_report_link,
)
from .secrets import SecretScrubber, redact_url, scrub_secrets

CHANNELS = ("log", "slack", "email", "sns")

__all__ = [
    "CHANNELS",
    "DeliveryReport",
    "EmailNotifier",
    "FileFailures",
    "LogNotifier",
    "Notification",
    "NotifierError",
    "SNSNotifier",
    "SecretScrubber",
    "SlackNotifier",
    "base_url_report_link",
    "build_notification",
    "collect_failures",
    "default_report_link",
    "deliver",
    "notify_failures",
    "redact_url",
    "scrub_secrets",
]
