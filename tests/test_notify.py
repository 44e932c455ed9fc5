"""Notifications over real protocols on loopback: HTTP (Slack webhook), SMTP, SNS -> SQS (moto server).

Database: WFI01 delivery 1 (clean), WFI01 delivery 2 (dark-current excess in
amps 17-18: change failures; trend not evaluated, one earlier file) and WFI02
delivery 2 (a 300x excess: mission and SOC failures with no history). Expected
failures and their sizes are read from the tables with plain SQL.
"""

import json
import logging
import re
import sqlite3

import pytest

from .conftest import SlackWebhook, free_port, moto_on_loopback

from rdmt_dagster.notify import (
    EmailNotifier,
    LogNotifier,
    SlackNotifier,
    SNSNotifier,
    build_notification,
    deliver,
    notify_failures,
)
from rdmt_dagster.reports.formatting import fmt_value
from rdmt_dagster.resources.notifications import NotificationsConfig, notifications_from_env
from rdmt_dagster.science.measure import measure
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.synthetic import DarkAnomaly, dark_filename, write_dark

pytestmark = pytest.mark.slow

SLACK_TOKEN = "XXslackSECRETtoken4711"
SMTP_PASSWORD = "smtp-Secret-pw-0815"
AWS_SECRET = "aws-Secret-KEY-2342"


# -- fixtures: database -----------------------------------------------------------

@pytest.fixture(scope="module")
def db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notify")
    database = Database(sqlite_url(tmp / "rdmt.db"))
    database.upgrade()
    standards = Standards()
    names = []
    for detector, delivery, useafter, anomaly in (
        ("WFI01", 1, "2027-01-01T00:00:00", None),
        ("WFI01", 2, "2027-02-01T00:00:00", DarkAnomaly(17, 2, 4.0)),
        ("WFI02", 2, "2027-02-01T00:00:00", DarkAnomaly(5, 2, 300.0)),
    ):
        path = write_dark(tmp / "files" / dark_filename(delivery, detector), detector, delivery, useafter, anomaly)
        database.register(path.name, str(path))
        ms = measure(path, standards.for_monitor)
        database.write_metrics(ms)
        st = standards.for_monitor(ms.info.monitor)
        database.write_standards(st)
        database.write_evaluations(evaluate(ms, st, database.history()), ms.monitor_version)
        names.append(path.name)
    database.names = names
    database.sql = sqlite3.connect(tmp / "rdmt.db", check_same_thread=False)
    return database


def _failing(db, filename):
    """(metric, evaluator) -> failing regions, from the tables."""
    rows = db.sql.execute(
        "select e.metric, e.evaluator, e.region from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.passed = 0", (filename,)).fetchall()
    out = {}
    for metric, evaluator, region in rows:
        out.setdefault((metric, evaluator), []).append(region)
    return out


def _detector_value(db, filename, metric):
    return db.sql.execute(
        "select m.value from metric_value m join reference_file f on f.id = m.file_id "
        "where f.filename = ? and m.metric = ? and m.region = 0", (filename, metric)).fetchone()[0]


# -- fixtures: servers ----------------------------------------------------------------



@pytest.fixture
def slack():
    server = SlackWebhook(SLACK_TOKEN)
    yield server
    server.close()


@pytest.fixture
def failing_slack():
    server = SlackWebhook(SLACK_TOKEN, fail=10_000)
    yield server
    server.close()


@pytest.fixture(scope="module")
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class Recorder:
        def __init__(self):
            self.messages = []
            self.logins = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8")))
            return "250 OK"

    recorder = Recorder()

    def authenticator(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.password.decode() == SMTP_PASSWORD:
            recorder.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    recorder.port = port
    yield recorder
    controller.stop()


@pytest.fixture(scope="module")
def aws():
    """A moto server with an SNS topic and an SQS queue subscribed to it."""
    import boto3

    with moto_on_loopback(AWS_SECRET) as endpoint:
        sns = boto3.client("sns", region_name="us-east-1", endpoint_url=endpoint)
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        topic = sns.create_topic(Name="rdmt-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="rdmt-alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield {"endpoint": endpoint, "topic": topic, "queue": queue, "sqs": sqs}


def _drain(aws) -> list[dict]:
    messages = []
    while True:
        got = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = got.get("Messages", [])
        if not batch:
            return messages
        for m in batch:
            messages.append(json.loads(m["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])


# -- the message -------------------------------------------------------------------

def _pairs(db, filename):
    """Distinct failing (metric, evaluator) pairs of a file."""
    return {(m, ev) for m, ev in db.sql.execute(
        "select distinct e.metric, e.evaluator from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.passed = 0", (filename,))}


def _all_not_evaluated(db, filename):
    """Evaluators none of whose evaluations of the file could run (passed NULL everywhere)."""
    rows = db.sql.execute(
        "select e.evaluator, sum(e.passed is null), count(*) from evaluation e join reference_file f "
        "on f.id = e.file_id where f.filename = ? group by e.evaluator", (filename,)).fetchall()
    return {ev for ev, n_null, n in rows if n_null == n}


def _detector_failures(db, filename, evaluator):
    """metric -> (value, threshold, reference) of the failing detector-level evaluations of one evaluator."""
    rows = db.sql.execute(
        "select e.metric, m.value, e.threshold, e.reference from evaluation e "
        "join reference_file f on f.id = e.file_id "
        "join metric_value m on m.file_id = e.file_id and m.metric = e.metric and m.region = e.region "
        "where f.filename = ? and e.evaluator = ? and e.region = 0 and e.passed = 0", (filename, evaluator))
    return {metric: (value, threshold, reference) for metric, value, threshold, reference in rows}


def _entry(text, detector):
    """The line of one file in the plain text, and the line after it (the link)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"{detector} dark: "))
    return lines[i], lines[i + 1]


def test_message_one_line_per_file_with_its_worst_failure(db):
    clean, drift, hot = db.names
    note = build_notification(db, db.names)
    assert note is not None
    assert note.subject.startswith("RDMT: failures in 2 of 3 reference files (WFI01, WFI02)")
    assert [f.filename for f in note.files] == [drift, hot]
    n_failed = sum(len(_failing(db, n)[pair]) for n in (drift, hot) for pair in _failing(db, n))
    assert note.text.splitlines()[0].endswith(f": {n_failed} failed evaluations")
    # Two lines per failing file: what fails most, then the report.
    assert len([x for x in note.text.splitlines() if x]) == 1 + 2 * 2

    # The hot detector: its worst failure is a mission limit (before SOC) at detector scale, the value
    # furthest above its maximum relative to it.
    mission = _detector_failures(db, hot, "mission")
    metric = max(mission, key=lambda m: (mission[m][0] - mission[m][1]) / mission[m][1])
    value, limit, _ = mission[metric]
    line, link = _entry(note.text, "WFI02")
    assert line == (f"WFI02 dark: {metric} = {fmt_value(value)} DN / s: {fmt_value(value - limit)} above the "
                    f"mission max {fmt_value(limit)}; +{len(_pairs(db, hot)) - 1} more "
                    "(change not evaluated, trend not evaluated)")
    assert _all_not_evaluated(db, hot) == {"change", "trend"}
    assert link == f"  reports/{hot}/report.html"

    # The drifting one: only the change evaluator fails; the worst detector-level change, in percent.
    change = _detector_failures(db, drift, "change")
    metric = max(change, key=lambda m: abs(change[m][0] - change[m][2]) / abs(change[m][2]))
    value, tolerance, previous = change[metric]
    line, link = _entry(note.text, "WFI01")
    match = re.fullmatch(rf"WFI01 dark: {metric} = (\S+) DN / s: \+(\d+) % vs previous \(tolerance (\d+) %\); "
                         rf"\+(\d+) more \(trend not evaluated\)", line)
    assert match, line
    assert match.group(1) == fmt_value(value)
    assert abs(int(match.group(2)) - 100 * (value - previous) / abs(previous)) <= 0.5
    assert int(match.group(3)) == round(100 * tolerance)
    assert int(match.group(4)) == len(_pairs(db, drift)) - 1
    assert _all_not_evaluated(db, drift) == {"trend"}
    assert link == f"  reports/{drift}/report.html"


def test_demo_summary_report_and_message_quote_the_same_numbers(db, tmp_path):
    """The terminal summary of the demo, the report and the notification word a failure alike."""
    from rdmt_dagster.demo import summarise_failures
    from rdmt_dagster.reports import write_file_report

    note = build_notification(db, db.names)
    rows = db.failed_evaluations(db.names)
    for f in note.files:
        worst = f.worst
        summary = [x for x in summarise_failures(rows, db) if f" {f.filename} [" in x]
        # One summary line per failing (metric, evaluator), the same with or without the database.
        assert len(summary) == len(_pairs(db, f.filename))
        assert summary == [x for x in summarise_failures(rows) if f" {f.filename} [" in x]
        assert f"  {f.detector} {f.filename} [{worst.evaluator}] {worst.phrase}" in summary
        assert worst.phrase in _entry(note.text, f.detector)[0]
        report = write_file_report(db, f.filename, tmp_path).markdown.read_text()
        row = next(x for x in report.splitlines() if x.startswith(f"| `{worst.metric}` | **{worst.evaluator}**"))
        assert f"| **{worst.size}** |" in row and f"= {fmt_value(worst.worst.value)} " in worst.phrase
        assert fmt_value(worst.worst.value) in row


def test_no_failures_no_message(db, slack, tmp_path):
    log_file = tmp_path / "notifications.log"
    report = notify_failures(db, db.names[:1], [LogNotifier(log_file), SlackNotifier(slack.url)])
    assert report.skipped == "no failures" and report.sent == [] and not report.failed
    assert not log_file.exists()
    assert slack.requests == []


# -- channels ----------------------------------------------------------------------

def test_log_channel_one_entry_per_delivery(db, tmp_path, caplog):
    log_file = tmp_path / "home" / "notifications.log"
    with caplog.at_level(logging.INFO, logger="rdmt_dagster.notify"):
        report = notify_failures(db, db.names, [LogNotifier(log_file)])
    assert report.sent == ["log"] and not report.failed
    text = log_file.read_text()
    assert text.count("===== ") == 1
    assert db.names[1] in text and db.names[2] in text
    assert "WFI01 dark: detector_dark_current_percentile_" in text  # the worst failure of the drifting dark
    assert "RDMT: failures in 2 of 3" in caplog.text


def test_slack_one_post_with_the_failures(db, slack):
    report = notify_failures(db, db.names, [SlackNotifier(slack.url)])
    assert report.sent == ["slack"] and report.attempts == {"slack": 1}
    assert len(slack.requests) == 1
    path, body = slack.requests[0]
    assert path.endswith(SLACK_TOKEN)
    text = body["text"]
    lines = text.splitlines()
    assert len([x for x in lines if x]) == 1 + 2  # the heading, then one line per failing file
    note = build_notification(db, db.names)
    for f in note.files:
        line = next(x for x in lines if x.startswith(f"*{f.detector} dark*: "))
        assert f"`{f.worst.metric}`" in line and f.worst.size in line
        assert f"+{len(_pairs(db, f.filename)) - 1} more" in line
        # Relative links are no URL for Slack: the file named, the path as code.
        assert line.endswith(f" · {f.filename} · report: `reports/{f.filename}/report.html`")


def test_slack_500_is_retried_and_the_rest_continues(db, failing_slack, tmp_path, caplog):
    note = build_notification(db, db.names)
    log_file = tmp_path / "notifications.log"
    with caplog.at_level(logging.INFO, logger="rdmt_dagster.notify"):
        report = deliver(note, [SlackNotifier(failing_slack.url), LogNotifier(log_file)], attempts=3, backoff=0.05)
    assert report.sent == ["log"]
    assert "HTTP 500" in report.failed["slack"]
    assert report.attempts["slack"] == 3 and len(failing_slack.requests) == 3
    assert log_file.read_text().count("===== ") == 1
    assert "attempt 1 of 3 failed" in caplog.text and "failed after 3 attempts" in caplog.text
    assert SLACK_TOKEN not in caplog.text and SLACK_TOKEN not in log_file.read_text()


def test_slack_recovers_on_retry(db):
    server = SlackWebhook(SLACK_TOKEN, fail=1)
    try:
        report = deliver(build_notification(db, db.names), [SlackNotifier(server.url)], attempts=3, backoff=0.05)
    finally:
        server.close()
    assert report.sent == ["slack"] and report.attempts["slack"] == 2 and len(server.requests) == 2


def test_unreachable_channels_never_raise(db, caplog):
    dead = free_port()
    notifiers = [
        SlackNotifier(f"http://127.0.0.1:{dead}/services/T/B/{SLACK_TOKEN}", timeout=2),
        EmailNotifier("127.0.0.1", ["is@example.org"], port=dead, starttls=False, username="rdmt",
                      password=SMTP_PASSWORD, timeout=2),
    ]
    with caplog.at_level(logging.DEBUG):
        report = deliver(build_notification(db, db.names), notifiers, attempts=2, backoff=0.05)
    assert report.sent == [] and set(report.failed) == {"slack", "email"}
    assert SLACK_TOKEN not in caplog.text and SMTP_PASSWORD not in caplog.text
    assert SLACK_TOKEN not in json.dumps(report.failed)


def test_email_over_smtp_with_login(db, smtp_server):
    before = len(smtp_server.messages)
    notifier = EmailNotifier("127.0.0.1", ["is-team@example.org", "oncall@example.org"], sender="rdmt@example.org",
                             port=smtp_server.port, starttls=False, username="rdmt", password=SMTP_PASSWORD)
    report = notify_failures(db, db.names, [notifier])
    assert report.sent == ["email"]
    assert len(smtp_server.messages) == before + 1
    assert smtp_server.logins[-1] == "rdmt"
    mail_from, rcpt, content = smtp_server.messages[-1]
    assert mail_from == "rdmt@example.org" and rcpt == ["is-team@example.org", "oncall@example.org"]
    assert "Subject: RDMT: failures in 2 of 3 reference files" in content
    assert db.names[2] in content and "detector_dark_current_percentile_99" in content
    assert SMTP_PASSWORD not in content


def test_sns_topic_delivers_to_subscribed_queue(db, aws):
    _drain(aws)
    report = notify_failures(db, db.names, [SNSNotifier(aws["topic"], endpoint_url=aws["endpoint"])])
    assert report.sent == ["sns"], report.failed
    messages = _drain(aws)
    assert len(messages) == 1
    envelope = messages[0]
    assert envelope["Subject"].startswith("RDMT: failures in 2 of 3 reference files")
    assert envelope["Message"] == build_notification(db, db.names).text
    assert envelope["MessageAttributes"]["rdmt_files_failed"]["Value"] == "2"


# -- the resource --------------------------------------------------------------------

def test_every_channel_once_per_delivery_and_no_secrets(db, slack, smtp_server, aws, tmp_path, caplog):
    _drain(aws)
    mails_before = len(smtp_server.messages)
    config = NotificationsConfig(
        channels=["log", "slack", "email", "sns"],
        report_base_url="https://rdmt.example.org/reports/",
        slack_webhook_url=slack.url,
        smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_starttls=False, smtp_username="rdmt",
        smtp_password=SMTP_PASSWORD, smtp_recipients=["is-team@example.org"],
        sns_topic_arn=aws["topic"], sns_endpoint_url=aws["endpoint"], backoff_seconds=0.05,
    )
    with caplog.at_level(logging.DEBUG):
        report = config.notify(db, db.names, tmp_path)
    assert sorted(report.sent) == ["email", "log", "slack", "sns"] and not report.failed
    assert len(slack.requests) == 1
    assert len(smtp_server.messages) == mails_before + 1
    assert len(_drain(aws)) == 1
    log_text = (tmp_path / "notifications.log").read_text()
    assert log_text.count("===== ") == 1
    assert f"https://rdmt.example.org/reports/{db.names[2]}/report.html" in log_text
    assert f"<https://rdmt.example.org/reports/{db.names[1]}/report.html|{db.names[1]}>" in slack.requests[0][1]["text"]
    for secret in (SLACK_TOKEN, SMTP_PASSWORD, AWS_SECRET):
        assert secret not in caplog.text
        assert secret not in log_text
        assert secret not in report.notification.text
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes()


def test_unknown_and_unconfigured_channels_are_reported(db, tmp_path):
    config = NotificationsConfig(channels=["log", "pager", "slack", "email"])
    report = config.notify(db, db.names, tmp_path)
    assert report.sent == ["log"]
    assert "unknown channel" in report.failed["pager"]
    assert "RDMT_SLACK_WEBHOOK_URL" in report.failed["slack"]
    assert "RDMT_SMTP_HOST" in report.failed["email"]


def test_notifications_from_env(monkeypatch):
    monkeypatch.setenv("RDMT_NOTIFY_CHANNELS", "log, slack,email")
    monkeypatch.setenv("RDMT_SLACK_WEBHOOK_URL", f"https://hooks.slack.com/services/T/B/{SLACK_TOKEN}")
    monkeypatch.setenv("RDMT_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("RDMT_SMTP_PORT", "2525")
    monkeypatch.setenv("RDMT_SMTP_STARTTLS", "false")
    monkeypatch.setenv("RDMT_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("RDMT_SMTP_TO", "a@example.org, b@example.org")
    monkeypatch.setenv("RDMT_NOTIFY_ATTEMPTS", "5")
    config = notifications_from_env()
    assert config.channels == ["log", "slack", "email"]
    assert config.smtp_port == 2525 and config.smtp_starttls is False and config.attempts == 5
    assert config.smtp_recipients == ["a@example.org", "b@example.org"]
    # Secrets stay environment-variable references until Dagster resolves them.
    assert SLACK_TOKEN not in repr(config) and SMTP_PASSWORD not in repr(config)
    resolved = config.process_config_and_initialize()
    assert resolved.slack_webhook_url.endswith(SLACK_TOKEN) and resolved.smtp_password == SMTP_PASSWORD
    monkeypatch.delenv("RDMT_NOTIFY_CHANNELS")
    monkeypatch.delenv("RDMT_SLACK_WEBHOOK_URL")
    default = notifications_from_env()
    assert default.channels == ["log"] and default.slack_webhook_url is None


def test_report_base_url_from_the_environment_makes_links_absolute(db, monkeypatch, tmp_path):
    """``RDMT_REPORT_BASE_URL`` reaches the links of the notification through the resource."""
    monkeypatch.setenv("RDMT_REPORT_BASE_URL", "https://rdmt.example.org/site/reports/")
    monkeypatch.delenv("RDMT_NOTIFY_CHANNELS", raising=False)
    config = notifications_from_env().process_config_and_initialize()
    assert config.report_base_url == "https://rdmt.example.org/site/reports/"
    report = config.notify(db, db.names, tmp_path)
    assert report.sent == ["log"]
    text = (tmp_path / "notifications.log").read_text()
    for name in db.names[1:]:
        assert f"\n  https://rdmt.example.org/site/reports/{name}/report.html\n" in text
    monkeypatch.delenv("RDMT_REPORT_BASE_URL")
    assert notifications_from_env().report_link(db.names[1]) == f"reports/{db.names[1]}/report.html"
