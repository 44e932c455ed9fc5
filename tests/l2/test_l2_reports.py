"""L2 day pages, reprocessing changes and the L2 notification, from a real SQLite database.

Images of five days (WFI01, WFI02) build the history; on 2027-03-20 WFI01's
1/f excess is far above its limits and its header names a dark reference file
that failed its own checks, WFI02 is reprocessed (reprocess 1 changes its
values), a third image has a hostile name, detector and reference file name,
and a fifth cannot be measured. Every expected number is the value written
here, read back from the pages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from rdmt_dagster.l2.header import L2Header
from rdmt_dagster.l2.notices import parse_notice
from rdmt_dagster.notify.l2_message import base_url_site_link, build_l2_notification
from rdmt_dagster.reports import report_relative_path, write_file_report
from rdmt_dagster.reports.l2_page import write_l2_changes, write_l2_day_pages
from rdmt_dagster.science.metrics import L2FileInfo, Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.storage.l2_ledger import L2Ledger
from rdmt_dagster.storage.l2_store import L2Store
from rdmt_dagster.storage.l2_tables import l2_file

from ..browser import require_chromium

DAY = "2027-03-20"
HISTORY_DAYS = ["2027-03-15", "2027-03-16", "2027-03-17", "2027-03-18", "2027-03-19"]
BUCKET = "roman-archive"
DARK = "roman_wfi_dark_0042.asdf"
REFPIX = "roman_wfi_refpix_0007.asdf"
FLAT_NOT_MONITORED = "roman_wfi_flat_0003.asdf"
DISTORTION = "roman_wfi_distortion_0001.asdf"
CONTEXT = "roman_0042.pmap"
HOSTILE_NAME = "r0000101001001001001_01101_0003_<script>alert(1)</script>*bold*\nx_cal.asdf"
HOSTILE_DETECTOR = "WFI03 <img src=x onerror=alert(1)> *bold*\nnext"
HOSTILE_REF = "roman_wfi_flat_<script>alert(2)</script>_[x](javascript:y).asdf"
HOSTILE_ERROR = "cannot read <!channel> `x`\nsecond line"
NOISE_FAIL = 9.5  # detector noise_1f_excess of WFI01 on DAY: soc 1.5, mission 2.0
AMP5_FAIL = 12.25
BACKGROUND_FAIL = 50.0  # the hostile image's background: soc max 20
WFI02_NOISE = (1.02, 1.1)  # reprocess 0, 1
WFI02_RMS = (0.012, 0.045)  # astrometric offset RMS, reprocess 0, 1: the second fails soc (0.03)

STANDARDS = Standards()


def l2_name(exposure: int, detector: str) -> str:
    return f"r0000101001001001001_01101_{exposure:04d}_{detector}_cal.asdf"


def _values(detector, amps=None):
    return ScaleValues(detector=np.array([detector], dtype=float),
                       amp=None if amps is None else np.asarray(amps, dtype=float))


def metric_sets(info_for, noise=1.0, amps=None, rms=0.01, fwhm=0.2, background=0.5):
    amps = np.full(32, noise) if amps is None else amps
    return [
        MetricSet(info_for("astrometry"), "1.0.0", [Metric("astrometric_offset_rms", "arcsec", _values(rms))]),
        MetricSet(info_for("psf"), "1.0.0", [Metric("psf_fwhm_median", "arcsec", _values(fwhm))]),
        MetricSet(info_for("noise_1f"), "1.0.0", [Metric("noise_1f_excess", "", _values(noise, amps))]),
        MetricSet(info_for("pixel"), "1.0.0",
                  [Metric("background_level", "DN/s", _values(background, np.full(32, background)))]),
    ]


class Builder:
    def __init__(self, db: Database):
        self.db = db
        self.store = L2Store(db)
        self.ledger = L2Ledger(db)
        self.n = 0

    def announce(self, name: str, checksum: str, reprocessed: bool = False) -> int:
        body = {"Type": "Notification", "Message": json.dumps({
            "archiveBucket": BUCKET, "archiveObjectKey": f"wfi/{name}", "filename": name,
            "fileType": "science_wfi_level_2", "reprocessingState": "reprocessed" if reprocessed else "none",
            "checksum": checksum, "fileSize": 1000})}
        self.n += 1
        assert self.ledger.record_notices(parse_notice(json.dumps(body)), f"msg-{self.n}") == 1
        with self.db.engine.connect() as conn:
            return conn.execute(sa.select(l2_file.c.id).where(l2_file.c.filename == name)
                                .order_by(l2_file.c.reprocess_number.desc()).limit(1)).scalar()

    def header(self, file_id: int, name: str, detector: str, start: datetime, ref_files: dict) -> None:
        self.store.record_header(file_id, L2Header(name, detector, "F158", start, "00001", "0000101001001001001",
                                                   "0001", ref_files=ref_files, crds_context=CONTEXT))

    def measure(self, file_id: int, name: str, detector: str, start: datetime, **values) -> None:
        def info_for(monitor):
            return L2FileInfo(name, f"s3://{BUCKET}/wfi/{name}", monitor, detector, "F158", start, "00001",
                              "0000101001001001001", "0001")

        sets = metric_sets(info_for, **values)
        self.store.write_measurements(file_id, sets)
        for ms in sets:
            standards = STANDARDS.for_monitor(ms.info.monitor)
            self.db.write_standards(standards)
            self.store.write_evaluation(file_id, evaluate(ms, standards, self.store.history()))


def _reference_files(db: Database, site: Path) -> None:
    """A dark failing its own checks (12 failed evaluations), a refpix and a distortion passing theirs."""
    standards = STANDARDS.for_monitor("dark")
    db.write_standards(standards)
    for name, detector, detector_value, amps in ((DARK, "WFI01", 3.0, [3.0] * 5 + [0.2] * 27),
                                                 (REFPIX, "WFI02", 0.2, [0.2] * 32),
                                                 (DISTORTION, "WFI03", 0.2, [0.2] * 32)):
        db.register(name, f"/crds/{name}")
        info = ReferenceFileInfo(name, f"/crds/{name}", "dark", detector, datetime(2027, 1, 1), "DARK")
        ms = MetricSet(info, "1.0.0", [Metric("dark_current_mean", "DN/s", _values(detector_value, amps))])
        db.write_metrics(ms)
        db.write_evaluations(evaluate(ms, standards, db.history()), "1.0.0")
        write_file_report(db, name, site)


def build(db: Database, site: Path) -> dict:
    """The images, reference files and pages described in the module docstring, in ``db``."""
    db.upgrade()
    _reference_files(db, site)
    b = Builder(db)
    refs = {"dark": DARK, "refpix": REFPIX, "flat": FLAT_NOT_MONITORED, "distortion": DISTORTION}
    exposure = 0
    for k, day in enumerate(HISTORY_DAYS):
        for detector, noise in (("WFI01", 1.0 + 0.01 * (k % 2)), ("WFI02", (1.0, 1.01, 1.02, 1.01, 1.0)[k])):
            exposure += 1
            name = l2_name(exposure, detector)
            start = datetime.fromisoformat(day) + timedelta(hours=3 + k)
            fid = b.announce(name, f"c{exposure}")
            b.header(fid, name, detector, start, refs)
            assert b.store.claim(day, f"batch-{day}", 10)
            b.measure(fid, name, detector, start, noise=noise, rms=0.010 + 0.001 * k, fwhm=0.20 + 0.002 * k,
                      background=0.5 + 0.02 * k)

    start = datetime.fromisoformat(DAY) + timedelta(hours=5)
    ids = {}
    for key, detector, extra_refs in (("fail", "WFI01", {}), ("wfi02", "WFI02", {}),
                                      ("hostile", HOSTILE_DETECTOR, {"flat": HOSTILE_REF}),
                                      ("pass", "WFI04", {}), ("broken", "WFI05", {})):
        exposure += 1
        name = l2_name(exposure, detector[:5])
        fid = b.announce(name, f"c{exposure}")
        b.header(fid, name, detector, start, {**refs, **extra_refs})
        ids[key] = (fid, name)
    # The hostile name arrives through the header path, not the (validated) notice.
    with db.engine.begin() as conn:
        conn.execute(l2_file.update().where(l2_file.c.id == ids["hostile"][0]).values(filename=HOSTILE_NAME))
    ids["hostile"] = (ids["hostile"][0], HOSTILE_NAME)
    claimed = b.store.claim(DAY, "batch-day", 100)
    assert sorted(claimed) == sorted(fid for fid, _ in ids.values())
    amps = np.ones(32)
    amps[4], amps[5] = AMP5_FAIL, 3.0
    b.measure(ids["fail"][0], ids["fail"][1], "WFI01", start, noise=NOISE_FAIL, amps=amps)
    b.measure(ids["wfi02"][0], ids["wfi02"][1], "WFI02", start, noise=WFI02_NOISE[0], rms=WFI02_RMS[0])
    b.measure(ids["hostile"][0], HOSTILE_NAME, HOSTILE_DETECTOR, start, background=BACKGROUND_FAIL)
    b.measure(ids["pass"][0], ids["pass"][1], "WFI04", start)
    b.store.record_error(ids["broken"][0], HOSTILE_ERROR)

    # WFI02 is announced again (reprocessed): reprocess number 1, new values.
    name = ids["wfi02"][1]
    rid = b.announce(name, "c-reprocessed", reprocessed=True)
    b.header(rid, name, "WFI02", start, refs)
    assert b.store.claim(DAY, "reprocess-batch", 10) == [rid]
    b.measure(rid, name, "WFI02", start, noise=WFI02_NOISE[1], rms=WFI02_RMS[1])
    batch = [fid for key, (fid, _) in ids.items() if key != "wfi02"] + [rid]  # the batch after the reprocessing
    pages = write_l2_day_pages(db, [DAY], site, trend_days=7)
    changes = write_l2_changes(db, [rid], site)
    pages = write_l2_day_pages(db, [DAY], site, trend_days=7)  # again: now it links the changes page
    return {"db": db, "site": site, "ids": ids, "rid": rid, "batch": batch, "pages": pages, "changes": changes}


@pytest.fixture(scope="module")
def l2_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("l2_reports")
    db = Database(sqlite_url(tmp / "rdmt.db"))
    ctx = build(db, tmp / "home" / "reports")
    ctx.update(sql=sqlite3.connect(tmp / "rdmt.db"), tmp=tmp)
    yield ctx
    ctx["sql"].close()
    db.dispose()


def _md(ctx) -> str:
    return (ctx["site"] / "l2" / DAY / "index.md").read_text()


def _html(ctx) -> str:
    return ctx["pages"][DAY].read_text()


def _section(markdown: str, heading: str) -> str:
    return markdown.split(f"\n## {heading}\n")[1].split("\n## ")[0]


def _rows(markdown: str) -> list[list[str]]:
    """Body rows of the Markdown tables in ``markdown`` (header and rule lines left out)."""
    lines = markdown.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.startswith("| "):
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            continue  # a header
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def _rendered(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


class _Tags(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _assert_no_live_markup(html: str, where: str) -> None:
    for tag, attrs in _Tags(html).tags:
        assert tag not in ("script", "iframe", "object"), (where, tag)
        assert not any(a.startswith("on") for a in attrs), (where, tag, attrs)
        if tag == "img":
            assert re.fullmatch(r"[\w.-]+\.png", attrs.get("src", "")), (where, attrs)
        if tag == "a":
            href = attrs.get("href", "")
            assert "://" not in href and not href.startswith(("/", "javascript:")), (where, href)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# -- the day page -----------------------------------------------------------------------

def test_failures_come_first_with_the_values_written(l2_site):
    md = _md(l2_site)
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings[0] == "Failures"
    assert headings.index("Root cause: reference files of the failing images") < headings.index("Detectors")
    rows = _rows(_section(md, "Failures"))
    fail_name = l2_site["ids"]["fail"][1]
    assert fail_name in rows[0][0] and rows[0][1] == "WFI01"  # the failing WFI01 image leads
    assert not any(l2_site["ids"]["pass"][1] in r[0] for r in rows)  # the passing image is no failure
    # One row per failing metric; the image is named on its first row only.
    mine = rows[:next(i for i, r in enumerate(rows[1:], 1) if r[0])]
    noise = {r[3].strip("`"): r for r in mine}
    assert set(noise) == {"detector_noise_1f_excess", "amp_noise_1f_excess"}
    detector = noise["detector_noise_1f_excess"]
    assert detector[2] == "noise_1f" and detector[4] == "detector"
    assert float(detector[5].strip("*")) == NOISE_FAIL
    assert detector[6].startswith("mission ≤ 2; soc ≤ 1.5; change ±25% of 1; trend \\|z\\| ≤ 5 vs median 1")
    assert detector[7].startswith(f"{NOISE_FAIL - 1.5:g} above the maximum")  # soc: the limit furthest exceeded
    amp = noise["amp_noise_1f_excess"]
    assert amp[4].startswith("2 of 32 amps (5, 6)")
    assert float(amp[5].strip("*").split()[0]) == AMP5_FAIL and "amp 5" in amp[5]
    assert amp[7].startswith(f"{AMP5_FAIL - 1.5:g} above the maximum")
    # The numbers are the stored ones.
    stored = l2_site["sql"].execute(
        "select v.value from l2_metric_value v join l2_file f on f.id = v.file_id "
        "where f.filename = ? and v.metric = 'detector_noise_1f_excess'", (fail_name,)).fetchone()[0]
    assert stored == NOISE_FAIL
    # The reprocessed WFI02 shows its newest version (reprocess 1), failing astrometry soc.
    wfi02 = [r for r in rows if l2_site["ids"]["wfi02"][1] in r[0]]
    assert wfi02 and "reprocess 1" in wfi02[0][0] and float(wfi02[0][5].split()[0].strip("*")) == WFI02_RMS[1]
    assert wfi02[0][3].strip("`") == "detector_astrometric_offset_rms" and wfi02[0][6].startswith("soc ≤ 0.03")


def test_unmeasured_images_and_detector_table(l2_site):
    md = _md(l2_site)
    unmeasured = _rows(_section(md, "Images that could not be measured"))
    assert len(unmeasured) == 1 and l2_site["ids"]["broken"][1] in unmeasured[0][0]
    assert "cannot read" in unmeasured[0][3] and "second line" in unmeasured[0][3]
    detectors = _rows(_section(md, "Detectors"))
    header = [c for c in md.split("\n## Detectors\n")[1].splitlines() if c.startswith("| Detector")][0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["Detector", "Images", "astrometry", "psf", "noise\\_1f", "pixel"] or \
        columns == ["Detector", "Images", "astrometry", "psf", "noise_1f", "pixel"]
    by_detector = {r[0]: r for r in detectors}
    assert [r[0] for r in detectors][:4] == ["WFI01", "WFI02", "WFI04", "WFI05"]
    assert "1 of 1 failed" in by_detector["WFI01"][4] and by_detector["WFI01"][2] == "pass (1)"
    assert by_detector["WFI04"][2:] == ["pass (1)"] * 4
    assert by_detector["WFI05"][2:] == ["**1 error**"] * 4  # the image itself could not be read
    assert "1 of 1 failed" in by_detector["WFI02"][2]  # astrometry of reprocess 1


def test_root_cause_names_links_and_marks_the_failing_dark(l2_site):
    md, html = _md(l2_site), _html(l2_site)
    root = _section(md, "Root cause: reference files of the failing images")
    dark_link = f"[{DARK}](../../{report_relative_path(DARK, 'md')})"
    n_failed = l2_site["sql"].execute(
        "select r.n_failed from evaluation_run r join reference_file f on f.id = r.file_id where f.filename = ?",
        (DARK,)).fetchone()[0]
    assert n_failed == 12
    # The suspects: the dark, linked, marked failed with its own count, once.
    suspects = root.split("\n_Each failing image")[0]
    assert suspects.count(f"[{DARK}]") == 1 and dark_link in suspects
    assert f"**FAILED its own checks ({n_failed} failed evaluations)**" in suspects
    assert REFPIX not in suspects and DISTORTION not in suspects
    # Per failing image: the CRDS context and every reference file, the failing dark first and marked,
    # then refpix (a type that affects 1/f noise); the flat, not in the database, is named but not linked.
    items = {line for line in root.splitlines() if line.startswith("- ")}
    item = next(line for line in items if l2_site["ids"]["fail"][1] in line)
    assert f"CRDS context `{CONTEXT}`" in item and "failing: noise_1f" in item
    assert item.index(f"dark {dark_link} **(FAILED {n_failed} evaluations)**") < item.index(f"refpix [{REFPIX}]")
    assert item.index(f"refpix [{REFPIX}]") < item.index(f"distortion [{DISTORTION}]")
    assert f"refpix [{REFPIX}](../../{report_relative_path(REFPIX, 'md')}) (passed)" in item
    assert f"flat `{FLAT_NOT_MONITORED}` (not monitored)" in item
    assert f"[{FLAT_NOT_MONITORED}]" not in root  # no report, no link
    # For the astrometry failure of WFI02 the distortion comes before the refpix.
    item = next(line for line in items if l2_site["ids"]["wfi02"][1] in line)
    assert item.index(f"distortion [{DISTORTION}]") < item.index(f"refpix [{REFPIX}]")
    # HTML: the link goes to the dark's report, which exists.
    href = f"../../{report_relative_path(DARK)}"
    assert f'href="{href}"' in html
    assert (l2_site["pages"][DAY].parent / href).resolve().exists()


def test_trend_plots_are_readable_pngs(l2_site):
    folder = l2_site["pages"][DAY].parent
    html = _html(l2_site)
    for metric in ("detector_astrometric_offset_rms", "detector_psf_fwhm_median", "detector_noise_1f_excess",
                   "detector_background_level"):
        png = folder / f"trend_{metric}.png"
        width, height = _png_size(png)
        assert width >= 800 and height >= 300, (metric, width, height)
        assert f'src="{png.name}"' in html


def test_hostile_text_is_escaped_in_html_and_markdown(l2_site):
    md, html = _md(l2_site), _html(l2_site)
    for text in (md, html):
        assert "<script>" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text  # the hostile reference file name
        assert "\nnext" not in text and "\nsecond line" not in text and "\nx_cal" not in text
    assert "\\*bold\\*" in md
    _assert_no_live_markup(html, "day html")
    _assert_no_live_markup(_rendered(md), "day md")
    # Every Markdown table row keeps its columns: no value broke a row.
    for block in md.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if lines:
            counts = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
            assert len(counts) == 1, block[:300]


def test_changes_page_shows_both_values(l2_site):
    path = l2_site["changes"]
    assert path is not None and path.name == "changes-reprocess-batch.html" and path.parent.name == DAY
    md = path.with_suffix(".md").read_text()
    values = _rows(_section(md, "Detector-level values that changed"))
    by_metric = {r[4].strip("`"): r for r in values}
    noise = by_metric["detector_noise_1f_excess"]
    assert noise[2] == "0 → 1" and float(noise[5]) == WFI02_NOISE[0] and float(noise[6]) == WFI02_NOISE[1]
    rms = by_metric["detector_astrometric_offset_rms"]
    assert float(rms[5]) == WFI02_RMS[0] and float(rms[6]) == WFI02_RMS[1]
    # Largest relative change first: the RMS (x3.75) before the 1/f excess (+8%).
    assert [r[4].strip("`") for r in values][:2] == ["detector_astrometric_offset_rms", "detector_noise_1f_excess"]
    verdicts = _rows(_section(md, "Verdicts that changed"))
    soc = [r for r in verdicts if r[4].strip("`") == "detector_astrometric_offset_rms" and r[5] == "soc"]
    assert soc and soc[0][6] == "pass" and soc[0][7].strip("*") == "FAIL"
    assert "unchanged" not in md or "Unchanged detector-level values" in md
    # The day page links the changes page; nothing to compare gives no page.
    assert 'href="changes-reprocess-batch.html"' in _html(l2_site)
    assert write_l2_changes(l2_site["db"], [l2_site["ids"]["fail"][0]], l2_site["site"]) is None


def test_index_links_the_day_with_counts(l2_site):
    site = l2_site["site"]
    md, html = (site / "index.md").read_text(), (site / "index.html").read_text()
    assert f'href="l2/{DAY}/index.html"' in html
    row = next(line for line in md.splitlines() if f"(l2/{DAY}/index.md)" in line)
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
    # 5 images (WFI02 counted once, in its newest version); failing: WFI01, WFI02, hostile and the broken one.
    assert cells[1:] == ["5", "4", "1"]
    # The reference reports are still listed before the L2 days.
    assert md.index(DARK) < md.index("## L2 images by observation day")


# -- the notification -------------------------------------------------------------------

def test_notification_groups_failures_and_names_the_failing_dark(l2_site):
    note = build_l2_notification(l2_site["db"], l2_site["batch"], base_url_site_link("https://rdmt.example/reports/"))
    assert note is not None
    assert note.subject.startswith("RDMT L2: failures in 4 of 5 images") and len(note.subject) < 100
    text = note.text
    assert "WFI01 noise_1f: 1 failing image" in text
    assert f"- detector_noise_1f_excess: {NOISE_FAIL:g} (mission ≤ 2, soc ≤ 1.5; also change, trend)" in text
    assert f"- amp_noise_1f_excess 2 of 32 amps (5, 6): worst amp 5: {AMP5_FAIL:g} (mission ≤ 2, soc ≤ 1.5;" in text
    line = next(x for x in text.splitlines() if DARK in x)
    assert (f"calibrated with dark {DARK}: FAILED its own checks (12 failed evaluations)" in line
            and f"report: https://rdmt.example/reports/{report_relative_path(DARK)}" in line)
    assert "Could not be measured:" in text and "cannot read" in text
    assert f"day page {DAY}: https://rdmt.example/reports/l2/{DAY}/index.html" in text
    assert text.index("WFI01 noise_1f") < text.index("Root cause")
    assert note.n_failed == sum(f.n_failed for f in note.files) > 0
    # Slack: links for the platform's own URLs, every value escaped.
    slack = note.slack_text
    assert f"<https://rdmt.example/reports/{report_relative_path(DARK)}|{DARK}>" in slack
    assert "*FAILED its own checks (12 failed evaluations)*" in slack


def test_notification_escapes_hostile_text(l2_site):
    note = build_l2_notification(l2_site["db"], l2_site["batch"])
    slack, text = note.slack_text, note.text
    assert "<script>" not in slack and "<img" not in slack and "<!channel>" not in slack
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in slack and "&lt;!channel&gt;" in slack
    # Relative report links: nothing is left for Slack to read as a link or mention.
    assert "<" not in slack and ">" not in slack
    for out in (slack, text):
        assert "\nnext" not in out and "\nsecond line" not in out and "\nx_cal" not in out
    assert "\n" not in note.subject and "\r" not in note.subject and len(note.subject) < 100
    # Slack has no escape for its formatting: hostile names go into code spans, which it shows as they are.
    outside_code = re.sub(r"`[^`]*`", "", slack)
    assert "*bold*" not in outside_code and "alert(" not in outside_code


def test_no_notification_without_failures(l2_site):
    assert build_l2_notification(l2_site["db"], [l2_site["ids"]["pass"][0]]) is None


# -- the same pages from the database servers ----------------------------------------------

def _comparable(text: str) -> str:
    return re.sub(r"Generated by RDMT-Dagster on [0-9: -]+ UTC", "", text)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_same_pages_and_message_on_postgresql_and_mariadb(l2_site, backend, request, tmp_path):
    url = request.getfixturevalue("postgres_url" if backend == "postgresql" else "mariadb_url")
    db = Database(url)
    try:
        ctx = build(db, tmp_path / "reports")
        for path in (Path("l2") / DAY / "index.md", Path("l2") / DAY / "changes-reprocess-batch.md"):
            assert _comparable((ctx["site"] / path).read_text()) == _comparable((l2_site["site"] / path).read_text())
        index = (ctx["site"] / "index.md").read_text()
        assert index.split("## L2 images by observation day")[1] == \
            (l2_site["site"] / "index.md").read_text().split("## L2 images by observation day")[1]
        note, expected = build_l2_notification(db, ctx["batch"]), build_l2_notification(l2_site["db"], l2_site["batch"])
        assert (note.subject, note.text, note.slack_text) == (expected.subject, expected.text, expected.slack_text)
    finally:
        db.dispose()


# -- a look at the page -------------------------------------------------------------------

def test_day_page_renders_in_headless_chromium(l2_site, tmp_path):
    browser = require_chromium("the L2 page screenshot")
    shot = tmp_path / "l2_day.png"
    page = l2_site["pages"][DAY]
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1400,3200", "--hide-scrollbars", "--virtual-time-budget=10000", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    width, height = _png_size(shot)
    assert (width, height) == (1400, 3200) and shot.stat().st_size > 50_000
    target = os.environ.get("RDMT_L2_SCREENSHOT")
    if target:
        shutil.copy(shot, target)


def test_binned_medians_of_a_long_series():
    """1,000 values one minute apart in 10 bins: each bin's median is that of its 100 values."""
    from rdmt_dagster.reports.l2_page import binned_medians

    start = datetime(2027, 3, 1)
    times = [start + timedelta(minutes=k) for k in range(1000)]
    values = np.arange(1000.0) ** 2
    values[5] = np.nan  # left out of its bin's median
    centres, medians = binned_medians(times, values, 10)
    width = timedelta(minutes=999 / 10)
    expected = []
    for b in range(10):
        members = [values[k] for k in range(1000) if min(int(k / 99.9), 9) == b and not np.isnan(values[k])]
        expected.append(float(np.median(members)))
    assert medians.tolist() == pytest.approx(expected)
    assert centres[0] == start + width / 2 and centres[-1] == start + width * 9.5


def test_a_detector_with_more_values_than_bins_is_drawn_as_medians_with_every_failure_ringed(tmp_path):
    from rdmt_dagster.reports import l2_page
    from rdmt_dagster.reports.l2_queries import TrendPoint

    start = datetime(2027, 3, 1)
    n = l2_page.TREND_BINS * 5
    points = [TrendPoint(start + timedelta(minutes=2 * k), 1.0 + 0.001 * (k % 7), k in (10, 2000), f"f{k}")
              for k in range(n)]
    from matplotlib.figure import Figure

    drawn = []
    original = Figure.savefig

    def keep(fig, *args, **kwargs):  # the figure is not returned: keep it to look at what was drawn
        drawn.append(fig)
        return original(fig, *args, **kwargs)

    Figure.savefig = keep
    try:
        path = l2_page.trend_figure(tmp_path / "trend.png", "PSF FWHM", "arcsec", {"WFI07": points}, [], start,
                                    start + timedelta(minutes=2 * n))
    finally:
        Figure.savefig = original
    assert _png_size(path)[0] >= 1000
    ax = drawn[0].axes[0]
    line = next(line for line in ax.get_lines() if "WFI07" in line.get_label())
    assert len(line.get_xdata()) == l2_page.TREND_BINS and "medians" in drawn[0].legends[0].get_title().get_text()
    rings = [c for c in ax.collections if len(c.get_offsets())]
    assert sum(len(c.get_offsets()) for c in rings) == 2  # both failing values, one by one
