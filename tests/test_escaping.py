"""Content is data, never markup; secrets stay secret.

Unit tests of the escapers (`rdmt_dagster.reports.escape`) and the secret
scrubber (`rdmt_dagster.notify.secrets`) with hostile inputs, then end to end:
a report and a notification of files whose name, detector, metric name, unit
and error text are hostile, delivered to a Slack stand-in on loopback and an
SMTP server (aiosmtpd), and the ECSV header of such a file.
"""

import email
import json
import logging
import re
from datetime import datetime
from email.message import EmailMessage
from html import unescape as _unescape
from html.parser import HTMLParser

import numpy as np
import pytest

from rdmt_dagster.notify import EmailNotifier, Notification, SlackNotifier, deliver, notify_failures
from rdmt_dagster.notify.secrets import SecretScrubber, redact_url, scrub_secrets
from rdmt_dagster.reports import write_reports
from rdmt_dagster.reports.site import FILTER_SCRIPT
from rdmt_dagster.reports.escape import (
    header_text,
    html_text,
    markdown_code,
    markdown_text,
    plain_text,
    relative_href,
    slack_text,
    sns_subject,
)
from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.storage.files import write_ecsv
from .conftest import SlackWebhook, free_port

IMG = "<img src=x onerror=alert(1)>"
CHANNEL = "<!channel>"
LINK = "<https://evil|click>"
BCC = "a\r\nBcc: x@y"
HOSTILE = [IMG, "a`b`c", "``", CHANNEL, LINK, BCC, "x|y", "line\nbreak", "*bold* _em_ [l](u) # h ~~s~~ $m$ \\"]

HOSTILE_NAME = f"roman_wfi_dark_{IMG}_`tick`_{CHANNEL}_0001.asdf"
BROKEN_NAME = "# roman_wfi_dark | *x* [click](javascript:alert(1))_0002.asdf"
HOSTILE_DETECTOR = f"WFI01 {LINK}"
HOSTILE_METRIC = "odd`<img src=x onerror=alert(2)>`/../x"
HOSTILE_ERROR = f"cannot read {IMG} {CHANNEL} `x`\nsecond line"

SLACK_TOKEN = "XXslackSECRETtoken4711"
SMTP_PASSWORD = "smtp-Secret-pw-0815"


def _rendered(markdown: str) -> str:
    """Markdown as GitLab/GitHub would render it before sanitising: raw HTML allowed, tables on."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


class _Tags(HTMLParser):
    """Every start tag of an HTML text, with its attributes, and the text of its scripts."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _assert_no_live_markup(html: str, where: str) -> None:
    """No event handler, foreign link or script but the index's own filter; images only the report's own PNGs."""
    parsed = _Tags(html)
    # The one script a page may hold is the platform's filter, to the character: no data in it.
    assert all(script == FILTER_SCRIPT for script in parsed.scripts), where
    assert len(parsed.scripts) <= (1 if str(where).endswith("index.html") else 0), where
    for tag, attrs in parsed.tags:
        assert tag not in ("iframe", "object", "embed"), (where, tag)
        assert tag != "script" or not attrs, (where, attrs)  # inline only: no src
        assert not any(a.startswith("on") for a in attrs), (where, tag, attrs)
        if tag == "img":
            assert re.fullmatch(r"[\w.-]+\.png", attrs.get("src", "")), (where, attrs)
        if tag == "a":
            href = attrs.get("href", "")
            assert "://" not in href and not href.startswith(("/", "javascript:")), (where, href)


# -- the escapers -----------------------------------------------------------------

@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_renders_as_the_text_itself(text):
    escaped = markdown_text(text, line_start=True)
    assert "<" not in escaped and ">" not in escaped and "\n" not in escaped and "\r" not in escaped
    html = _rendered(escaped)
    assert [t for t, _ in _Tags(html).tags] == ["p"], html
    inner = html.strip().removeprefix("<p>").removesuffix("</p>")
    assert _unescape(inner) == plain_text(text).strip()


@pytest.mark.parametrize("text", ["- item", "+ item", "1. item", "2) item", "# heading", "=== x", "    code",
                                  "> quote", "<div>block</div>", "| a | b |"])
def test_markdown_text_cannot_start_a_block(text):
    html = _rendered(markdown_text(text, line_start=True))
    assert [t for t, _ in _Tags(html).tags] == ["p"], html
    assert _unescape(html.strip()[3:-4]) == text.strip()


def test_markdown_text_in_a_table_cell_stays_in_its_cell():
    row = "| " + " | ".join(markdown_text(t) for t in ("a|b", IMG, "c")) + " |"
    html = _rendered("| h1 | h2 | h3 |\n|---|---|---|\n" + row + "\n")
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert [_unescape(c) for c in cells] == ["a|b", IMG, "c"]
    _assert_no_live_markup(html, "table")


def test_markdown_keeps_ordinary_names_readable():
    assert markdown_text("roman_wfi_dark_0001.asdf") == "roman_wfi_dark_0001.asdf"
    assert markdown_text("≤ 1: pass") == "≤ 1: pass"
    assert markdown_code("detector_dark_current_mean") == "`detector_dark_current_mean`"


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_code_cannot_be_broken_out_of(text):
    html = _rendered(markdown_code(text))
    assert [t for t, _ in _Tags(html).tags] == ["p", "code"], html
    code = re.fullmatch(r"<p><code>(.*)</code></p>", html.strip()).group(1)
    assert _unescape(code) == plain_text(text)


@pytest.mark.parametrize("text", HOSTILE + ['" onmouseover="x', "' onfocus='y"])
def test_html_text_is_text_and_attribute_safe(text):
    escaped = html_text(text)
    assert not set("<>\"'\n\r") & set(escaped)
    assert _Tags(f'<p title="{escaped}">{escaped}</p>').tags == [("p", {"title": plain_text(text)})]


def test_html_text_of_a_tag():
    assert html_text(IMG) == "&lt;img src=x onerror=alert(1)&gt;"


def test_slack_text_escapes_links_mentions_and_ampersands():
    assert slack_text(CHANNEL) == "&lt;!channel&gt;"
    assert slack_text(LINK) == "&lt;https://evil|click&gt;"
    assert slack_text("a & <@U123> > b") == "a &amp; &lt;@U123&gt; &gt; b"
    assert slack_text("two\nlines") == "two lines"
    for text in HOSTILE:
        assert not set("<>\n\r") & set(slack_text(text))


def test_header_text_cannot_start_another_header():
    value = header_text(BCC)
    assert value == "a Bcc: x@y"
    msg = EmailMessage()
    msg["Subject"] = value
    assert len(msg.get_all("Subject")) == 1 and msg["Bcc"] is None
    assert header_text("  x\t\x00y\u2028z  ") == "x y z"
    assert header_text("é" * 5 + "abc", ascii_only=True) == "abc"


def test_sns_subject_is_short_ascii_on_one_line():
    subject = sns_subject("RDMT: failures (WFI01\r\nBcc: x@y) ≤ " + "x" * 200)
    assert len(subject) < 100 and subject.isascii() and "\n" not in subject and "\r" not in subject
    assert subject.startswith("RDMT: failures (WFI01 Bcc: x@y)")
    assert sns_subject("\r\n\t") == "RDMT"


@pytest.mark.parametrize("href", ["javascript:alert(1)", "https://evil.example/x", "//evil.example/x", "/etc/passwd",
                                  "\\\\evil\\share", "a\nb", ""])
def test_relative_href_refuses_foreign_links(href):
    with pytest.raises(ValueError):
        relative_href(href)


def test_relative_href_encodes_the_site_paths():
    assert relative_href("WFI01_x/report.html") == "WFI01_x/report.html"
    assert relative_href("../index.md") == "../index.md"
    assert relative_href("a b)(<.png") == "a%20b%29%28%3C.png"


# -- secrets ---------------------------------------------------------------------------

WEBHOOK = f"https://hooks.slack.com/services/T0ABCDEF/B0GHIJKL/{SLACK_TOKEN}"
SECRET_PARTS = ("T0ABCDEF", "B0GHIJKL", SLACK_TOKEN)


@pytest.mark.parametrize("text", [
    f"InvalidURL: URL can't contain control characters. '/services/T0ABCDEF/B0GHIJKL /{SLACK_TOKEN}'",
    f"Invalid URL detected:  {WEBHOOK} ",
    f"POST {WEBHOOK.replace('SECRET', '%53ECRET')} failed",
    f"POST {WEBHOOK.replace('/', '%2F')} failed",
    f"only the path: /services/T0ABCDEF/B0GHIJKL/{SLACK_TOKEN}.",
    f"a copy: https://hooks.slack.com/services/T0ABCDEF/B0GHIJKL/{SLACK_TOKEN}?x=1",
])
def test_webhook_secret_is_scrubbed_in_any_shape(text):
    scrubbed = SecretScrubber([f" {WEBHOOK} \n"])(text)
    for part in SECRET_PARTS:
        assert part not in scrubbed, scrubbed
    assert "***" in scrubbed


def test_urls_lose_credentials_and_tokens():
    scrub = SecretScrubber([f"  {SMTP_PASSWORD}  "])
    text = scrub(f"postgresql://rdmt:pa55word@db.example.org:5432/rdmt?sslpassword=hunter22 failed; "
                 f"login {SMTP_PASSWORD} refused; see https://example.org/page.")
    assert "pa55word" not in text and "hunter22" not in text and SMTP_PASSWORD not in text
    assert "postgresql://***@db.example.org:5432/rdmt?sslpassword=***" in text
    assert "https://example.org/page." in text
    # Any other Slack webhook is a secret too.
    assert scrub_secrets("https://hooks.slack.com/services/T1/B2/otherSECRET") == "https://hooks.slack.com/services/***"


def test_redact_url():
    url = "https://user:pw@crds.example.org:8443/crds/x?token=abc#f"
    assert redact_url(url) == "https://crds.example.org:8443/crds/x"
    assert redact_url("https://roman-crds.stsci.edu") == "https://roman-crds.stsci.edu"
    assert redact_url("http://[::1") == "[url]"


# -- end to end: storage, reports, notifications ---------------------------------------------

def _metric_set(name, detector, unit="DN / s", extra_metric=None, level=2.5):
    info = ReferenceFileInfo(name, f"/data/secret_dir/{name}", "dark", detector, datetime(2027, 1, 1), "DARK")
    sp = np.full(1024, level)
    metrics = [
        Metric("dark_current_mean", unit, ScaleValues(np.array([level]), np.full(32, level), sp)),
        Metric("num_hot_pix", "pix", ScaleValues(np.array([33000.0]), np.full(32, 1030.0), np.full(1024, 32.0))),
    ]
    if extra_metric:
        metrics.append(Metric(extra_metric, "<b>u</b>", ScaleValues(np.array([1.0]), np.ones(32), np.ones(1024))))
    return MetricSet(info, "1.0.0", metrics)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory):
    """A database with a failing file of hostile name, detector, metric and unit, and a broken file."""
    tmp = tmp_path_factory.mktemp("hostile")
    db = Database(sqlite_url(tmp / "rdmt.db"))
    db.upgrade()
    ms = _metric_set(HOSTILE_NAME, HOSTILE_DETECTOR, unit="DN <i>s</i>", extra_metric=HOSTILE_METRIC)
    db.write_metrics(ms)
    standards = Standards().for_monitor("dark")
    db.write_standards(standards)
    db.write_evaluations(evaluate(ms, standards, db.history()), ms.monitor_version)
    broken = ReferenceFileInfo(BROKEN_NAME, f"/data/secret_dir/{BROKEN_NAME}", "dark", "WFI02", None, "DARK")
    db.write_metrics(MetricSet(broken, "1.0.0", error=HOSTILE_ERROR))
    db.names = [HOSTILE_NAME, BROKEN_NAME]
    db.tmp = tmp
    yield db
    db.dispose()


def test_reports_show_hostile_text_as_text(hostile_db):
    out = hostile_db.tmp / "reports"
    reports, errors = write_reports(hostile_db, hostile_db.names, out)
    assert not errors and set(reports) == set(hostile_db.names)
    # Figures named after the hostile metric stay inside the report folder.
    written = [p for p in hostile_db.tmp.rglob("*") if p.is_file() and p.suffix in (".md", ".html", ".png")]
    assert written and all(out in p.parents for p in written)
    pages = [(p.markdown, p.html) for p in reports.values()] + [(out / "index.md", out / "index.html")]
    for md_path, html_path in pages:
        md, html = md_path.read_text(), html_path.read_text()
        for text, where in ((md, md_path), (html, html_path)):
            assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text, where
            assert CHANNEL not in text and LINK not in text and "<b>" not in text and "<i>" not in text, where
        _assert_no_live_markup(html, html_path)
        _assert_no_live_markup(_rendered(md), md_path)
    # Rendered, the Markdown shows the file name as it is.
    for md_path in (reports[HOSTILE_NAME].markdown, out / "index.md"):
        shown = _unescape(re.sub(r"<[^>]+>", "", _rendered(md_path.read_text())))
        assert HOSTILE_NAME in shown and HOSTILE_DETECTOR in shown, md_path
    broken_md = reports[BROKEN_NAME].markdown.read_text()
    assert "cannot read &lt;img src=x onerror=alert(1)&gt; &lt;!channel&gt; \\`x\\` second line" in broken_md




@pytest.fixture
def slack():
    server = SlackWebhook(SLACK_TOKEN)
    yield server
    server.close()


def test_slack_payload_has_no_mentions_or_links(hostile_db, slack):
    report = notify_failures(hostile_db, hostile_db.names, [SlackNotifier(slack.url)])
    assert report.sent == ["slack"], report.failed
    text = slack.bodies[0]["text"]
    assert "&lt;!channel&gt;" in text and CHANNEL not in text
    assert "&lt;https://evil|click&gt;" in text and LINK not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # The report links are relative here: no "<" or ">" at all is left for Slack to read.
    assert "<" not in text and ">" not in text
    # One line per entry: the error's line break does not start a line of its own.
    assert "\nsecond line" not in text
    note = report.notification
    assert "\n" not in note.subject and "\r" not in note.subject and len(note.subject) < 100


@pytest.fixture(scope="module")
def smtp_server():
    from aiosmtpd.controller import Controller

    class Recorder:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8")))
            return "250 OK"

    recorder = Recorder()
    recorder.port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    yield recorder
    controller.stop()


def test_email_subject_cannot_inject_headers(smtp_server):
    note = Notification(subject=f"RDMT: failures (WFI01){BCC}\r\nX-Evil: 1", text=f"body {IMG}\n",
                        slack_text="")
    notifier = EmailNotifier("127.0.0.1", ["is-team@example.org"], sender="rdmt@example.org",
                             port=smtp_server.port, starttls=False)
    report = deliver(note, [notifier], attempts=1)
    assert report.sent == ["email"], report.failed
    mail_from, rcpt, content = smtp_server.messages[-1]
    assert mail_from == "rdmt@example.org" and rcpt == ["is-team@example.org"]
    message = email.message_from_string(content)
    assert len(message.get_all("Subject")) == 1
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "RDMT: failures (WFI01)a Bcc: x@y X-Evil: 1"


def test_webhook_path_never_reaches_errors_or_logs(hostile_db, slack, caplog):
    """A webhook URL with a stray space fails inside http.client, whose error quotes only the path."""
    url = f"{slack.base}/services/T0ABCDEF/B0GHIJKL /{SLACK_TOKEN}"
    note = Notification("RDMT: test", "text", "text")
    with caplog.at_level(logging.DEBUG):
        report = deliver(note, [SlackNotifier(url, timeout=2)], attempts=2, backoff=0.01)
    assert report.failed["slack"] and not slack.bodies
    stored = json.dumps(report.failed)
    for part in SECRET_PARTS:
        assert part not in caplog.text, part
        assert part not in stored, part
    assert "***" in stored


def test_webhook_with_surrounding_whitespace_still_delivers(slack):
    report = deliver(Notification("RDMT: test", "text", "text"), [SlackNotifier(f" {slack.url}\n")], attempts=1)
    assert report.sent == ["slack"], report.failed


def test_ecsv_header_keeps_each_value_on_its_line(tmp_path):
    from astropy.table import Table

    ms = _metric_set("roman_wfi_dark_0003.asdf", "WFI03")
    info = ms.info
    hostile = ReferenceFileInfo(info.filename, info.path, info.monitor, info.detector, info.useafter,
                                "DARK\n# injected: true\n- {x: \x1b[31m}")
    ms = MetricSet(hostile, ms.monitor_version, ms.metrics)
    path = write_ecsv(tmp_path, ms, evaluate(ms, Standards().for_monitor("dark")))
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert all("injected" not in line or "reftype" in line for line in header), header
    assert "\x1b" not in text
    table = Table.read(path, format="ascii.ecsv")
    assert table.meta["reftype"] == "DARK # injected: true - {x:  [31m}"
    assert len(table) == 1057 * 2
