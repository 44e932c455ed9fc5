"""Reports: Markdown/HTML/PNG per reference file and the index, from a real database.

Three synthetic darks of WFI01 (the third with a dark-current excess in amps
17-18) and one unreadable file are measured and evaluated into SQLite; the
expected numbers are read back from the tables with plain SQL, independently
of the report code.
"""

import re
import sqlite3
import struct
from pathlib import Path

import pytest

from rdmt_dagster.reports import report_folder_name, write_file_report, write_index, write_reports
from rdmt_dagster.science.measure import measure
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import Database, sqlite_url
from rdmt_dagster.synthetic import DarkAnomaly, dark_filename, write_dark

pytestmark = pytest.mark.slow

DELIVERIES = [
    (1, "2027-01-01T00:00:00", None),
    (2, "2027-02-01T00:00:00", None),
    (3, "2027-03-01T00:00:00", DarkAnomaly(first_amp=17, n_amps=2, factor=4.0)),
]
BROKEN = "roman_wfi_dark_9999.asdf"
HIDDEN_DIR = "internal_share_xq7"


def _monitor(db: Database, path: Path) -> None:
    standards = Standards()
    db.register(path.name, str(path))
    ms = measure(path, standards.for_monitor)
    db.write_metrics(ms)
    if not ms.ok:
        return
    st = standards.for_monitor(ms.info.monitor)
    db.write_standards(st)
    db.write_evaluations(evaluate(ms, st, db.history()), ms.monitor_version)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    files = tmp / HIDDEN_DIR
    db = Database(sqlite_url(tmp / "rdmt.db"))
    db.upgrade()
    names = []
    for delivery, useafter, anomaly in DELIVERIES:
        path = write_dark(files / dark_filename(delivery, "WFI01"), "WFI01", delivery, useafter, anomaly)
        _monitor(db, path)
        names.append(path.name)
    broken = files / BROKEN
    broken.write_bytes(b"#ASDF 1.0.0\nthis is not a data model\n")
    _monitor(db, broken)
    out = tmp / "home" / "reports"
    reports, errors = write_reports(db, names + [BROKEN], out)
    return {"tmp": tmp, "db": db, "names": names, "out": out, "reports": reports, "errors": errors,
            "sql": sqlite3.connect(tmp / "rdmt.db")}


def _values(sql, filename, metric):
    rows = sql.execute(
        "select m.region, m.value from metric_value m join reference_file f on f.id = m.file_id "
        "where f.filename = ? and m.metric = ?", (filename, metric)).fetchall()
    return dict(rows)


def _detector_verdicts(sql, filename):
    rows = sql.execute(
        "select e.metric, e.evaluator, e.passed from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.region = 0 and e.metric like 'detector%'", (filename,)).fetchall()
    return {(m, ev): bool(p) for m, ev, p in rows}


def _failing_metrics(sql, filename):
    rows = sql.execute(
        "select distinct e.metric from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.passed = 0", (filename,)).fetchall()
    return {r[0] for r in rows}


def _md(site, name):
    return (site["out"] / report_folder_name(name) / "report.md").read_text()


def _section(markdown, heading):
    return markdown.split(f"\n## {heading}\n")[1].split("\n## ")[0]


def _table_rows(markdown, first_cell_pattern):
    return [
        [c.strip() for c in line.strip().strip("|").split(" | ")]
        for line in markdown.splitlines()
        if re.match(r"\|\s*" + first_cell_pattern, line)
    ]


def _number(cell: str) -> float:
    return float(cell.replace("*", "").strip())


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_reports_and_figures_exist(site):
    assert not site["errors"]
    assert set(site["reports"]) == set(site["names"]) | {BROKEN}
    sql = site["sql"]
    for name in site["names"]:
        paths = site["reports"][name]
        assert paths.markdown.exists() and paths.html.exists()
        assert paths.relative_html == f"{report_folder_name(name)}/report.html"
        metrics = {r[0] for r in sql.execute(
            "select distinct m.metric from metric_value m join reference_file f on f.id = m.file_id "
            "where f.filename = ?", (name,))}
        bases = {m[len("superpixel_"):] for m in metrics if m.startswith("superpixel_")}
        assert len(bases) == 8
        names = {p.name for p in paths.images}
        assert names == {f"superpixel_{b}.png" for b in bases} | {f"trend_{b}.png" for b in bases}
        for image in paths.images:
            width, height = _png_size(image)
            assert 200 <= width <= 800 and 120 <= height <= 600, (image.name, width, height)
            assert 5_000 < image.stat().st_size < 300_000
        md = paths.markdown.read_text()
        for image in paths.images:
            assert f"]({image.name})" in md
            assert f'src="{image.name}"' in paths.html.read_text()


def test_detector_table_matches_database(site):
    sql = site["sql"]
    for name in site["names"]:
        rows = _table_rows(_section(_md(site, name), "Detector metrics"), r"`detector_")
        assert len(rows) == 8
        verdicts = _detector_verdicts(sql, name)
        for row in rows:
            metric = row[0].strip("`")
            expected = _values(sql, name, metric)[0]
            assert _number(row[1]) == pytest.approx(expected, rel=1e-3), metric
            unit = sql.execute("select distinct unit from metric_value where metric = ?", (metric,)).fetchone()[0]
            assert row[2] == unit
            # Evaluator columns: mission, soc, change, trend, each ending in pass/FAIL as in the database.
            for evaluator, cell in zip(("mission", "soc", "change", "trend"), row[3:]):
                passed = verdicts[(metric, evaluator)]
                assert cell.rstrip("*").endswith("pass" if passed else "FAIL"), (name, metric, evaluator, cell)
                assert cell.startswith("**") == (not passed)


def test_mission_standard_and_change_reference(site):
    sql = site["sql"]
    first, second, _ = site["names"]
    row = {r[0]: r for r in _table_rows(_section(_md(site, second), "Detector metrics"), r"`detector_")}[
        "`detector_dark_current_mean`"]
    assert row[3] == "≤ 1: pass"  # mission {max: 1.0}
    # change: the previous value and the file it came from
    previous = _values(sql, first, "detector_dark_current_mean")[0]
    assert f"of {previous:.4g}" in row[5] and f"({first})" in row[5]
    assert "Compared with (change) | `" + first + "`" in _md(site, second)
    first_row = {r[0]: r for r in _table_rows(_section(_md(site, first), "Detector metrics"), r"`detector_")}[
        "`detector_dark_current_mean`"]
    assert "no previous" in first_row[5] and first_row[5].endswith("pass")


def test_amp_tables_laid_out_like_table_2(site):
    sql = site["sql"]
    anomalous = site["names"][2]
    md = _md(site, anomalous)
    section = md.split("### amp_dark_current_mean (DN / s)")[1].split("###")[0]
    assert "| Amp | Value | Amp | Value | Amp | Value | Amp | Value |" in section
    rows = _table_rows(section, r"\d")
    assert len(rows) == 8
    seen = {}
    for i, row in enumerate(rows, start=1):
        assert [int(row[c]) for c in (0, 2, 4, 6)] == [i, i + 8, i + 16, i + 24]
        for c in (0, 2, 4, 6):
            seen[int(row[c])] = row[c + 1]
    expected = _values(sql, anomalous, "amp_dark_current_mean")
    assert set(seen) == set(range(1, 33))
    for amp, cell in seen.items():
        assert _number(cell) == pytest.approx(expected[amp], rel=1e-3)
        assert cell.startswith("**") == (amp in (17, 18)), (amp, cell)
    for metric in ("amp_num_dead_pix", "amp_num_hot_pix", "amp_num_warm_pix"):
        section = md.split(f"### {metric} (pix)")[1].split("###")[0]
        values = _values(sql, anomalous, metric)
        cells = {int(r[c]): int(r[c + 1]) for r in _table_rows(section, r"\d") for c in (0, 2, 4, 6)}
        assert cells == {k: int(v) for k, v in values.items()}


def test_failures_listed_first(site):
    sql = site["sql"]
    anomalous = site["names"][2]
    md = _md(site, anomalous)
    failures_at, detector_at = md.index("## Failures"), md.index("## Detector metrics")
    assert failures_at < detector_at < md.index("## Amplifier metrics") < md.index("## Super-pixel maps")
    top = _section(md, "Failures")
    failing = _failing_metrics(sql, anomalous)
    assert "amp_dark_current_mean" in failing and "superpixel_dark_current_mean" in failing
    listed = {r[0].strip("`") for r in _table_rows(top, "`")}
    assert listed == failing
    n_failed = sql.execute("select n_failed from evaluation_run r join reference_file f on f.id = r.file_id "
                           "where f.filename = ?", (anomalous,)).fetchone()[0]
    assert n_failed > 0 and f"{n_failed} failed evaluations" in top
    assert "2 of 32 amps (17, 18)" in top
    n_sp = len({r[0] for r in sql.execute(
        "select e.region from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.metric = 'superpixel_dark_current_mean' and e.passed = 0", (anomalous,))})
    assert f"{n_sp} of 1024 super-pixels" in top
    # The clean files say so at the top.
    assert "All 33824 evaluations passed." in _md(site, site["names"][0])
    html = (site["out"] / report_folder_name(anomalous) / "report.html").read_text()
    assert html.index("Failures") < html.index("Detector metrics")
    assert 'class="fail' in html


def test_broken_file_report(site):
    md = _md(site, BROKEN)
    assert "could not be monitored" in md
    assert BROKEN in md
    assert "## Detector metrics" not in md


def test_index_newest_first_with_failure_counts(site):
    sql = site["sql"]
    md = (site["out"] / "index.md").read_text()
    rows = _table_rows(md, r"\d{4}-\d\d-\d\d")
    listed = [re.search(r"\[([^\]]+)\]", r[3]).group(1) for r in rows]
    assert listed == list(reversed(site["names"]))  # newest USEAFTER first; BROKEN has none
    for row, name in zip(rows, listed):
        n_failed = sql.execute("select n_failed from evaluation_run r join reference_file f on f.id = r.file_id "
                               "where f.filename = ?", (name,)).fetchone()[0]
        assert _number(row[4]) == n_failed
        assert f"({report_folder_name(name)}/report.md)" in row[3]
    assert BROKEN in md and "could not be monitored" in md
    html = (site["out"] / "index.html").read_text()
    positions = [html.index(f'href="{report_folder_name(n)}/report.html"') for n in reversed(site["names"])]
    assert positions == sorted(positions)


def test_site_is_publishable(site):
    forbidden = [str(site["tmp"]), "/tmp", "http://127", "https://", "file:", HIDDEN_DIR, str(Path.home())]
    files = [p for p in site["out"].rglob("*") if p.is_file()]
    assert len(files) >= 3 * 18 + 2
    for path in files:
        data = path.read_bytes()
        for bad in forbidden:
            assert bad.encode() not in data, (path.name, bad)
        if path.suffix == ".html":
            for link in re.findall(r'(?:href|src)="([^"]+)"', data.decode()):
                assert not link.startswith("/") and "://" not in link and ".." not in link.replace("../index", ""), link
        if path.suffix == ".md":
            for link in re.findall(r"\]\(([^)]+)\)", data.decode()):
                assert not link.startswith("/") and "://" not in link, link


def test_rewriting_a_report_is_idempotent(site):
    name = site["names"][1]
    before = sorted(p.name for p in (site["out"] / report_folder_name(name)).iterdir())
    again = write_file_report(site["db"], name, site["out"])
    write_index(site["db"], site["out"])
    assert sorted(p.name for p in again.folder.iterdir()) == before
    with pytest.raises(KeyError):
        write_file_report(site["db"], "not_registered.asdf", site["out"])
