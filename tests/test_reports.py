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

from .browser import require_chromium

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
    """(metric, evaluator) -> True / False / None (not evaluated) of the detector-level evaluations."""
    rows = sql.execute(
        "select e.metric, e.evaluator, e.passed from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.region = 0 and e.metric like 'detector%'", (filename,)).fetchall()
    return {(m, ev): None if p is None else bool(p) for m, ev, p in rows}


def _verdict_counts(sql, filename):
    """(failed, passed, not evaluated, total) of a file's evaluations, from the table."""
    rows = dict(sql.execute(
        "select coalesce(e.passed, -1), count(*) from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? group by coalesce(e.passed, -1)", (filename,)).fetchall())
    failed, passed, not_evaluated = rows.get(0, 0), rows.get(1, 0), rows.get(-1, 0)
    return failed, passed, not_evaluated, failed + passed + not_evaluated


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
        html = paths.html.read_text()
        for image in paths.images:
            width, height = _png_size(image)
            # Shown at least ~600 CSS pixels wide, and drawn at twice that for zooming.
            shown = re.search(rf'src="{re.escape(image.name)}"[^>]* width="(\d+)" height="(\d+)"', html)
            assert shown, image.name
            css_width, css_height = int(shown.group(1)), int(shown.group(2))
            assert css_width >= 600, (image.name, css_width)
            assert (width, height) == (2 * css_width, 2 * css_height), (image.name, width, height)
            assert 20_000 < image.stat().st_size < 400_000
        md = paths.markdown.read_text()
        for image in paths.images:
            assert f"]({image.name})" in md


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
            # Evaluator columns: mission, soc, change, trend: pass / FAIL / not evaluated as in the database.
            for evaluator, cell in zip(("mission", "soc", "change", "trend"), row[3:]):
                passed = verdicts[(metric, evaluator)]
                if passed is None:
                    assert cell.strip("_").startswith("not evaluated ("), (name, metric, evaluator, cell)
                    assert "pass" not in cell and "FAIL" not in cell
                    continue
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
    # The first file has nothing to compare with: not evaluated, never "pass".
    assert first_row[5] == "not evaluated (no previous file)"
    assert "trend needs 3" in first_row[6] and "not evaluated" in first_row[6]


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
    # Failures, the detector table, the figures, then the long amp tables (folded in the HTML).
    order = [md.index(f"## {h}") for h in ("Failures", "Detector metrics", "Super-pixel maps", "Trends",
                                            "Amplifier metrics")]
    assert order == sorted(order)
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
    html = (site["out"] / report_folder_name(anomalous) / "report.html").read_text()
    assert html.index("Failures") < html.index("Detector metrics")
    assert 'class="fail' in html
    assert html.index("<details>") > html.index('id="trends"')  # amp tables folded below the figures


def _change_failures(sql, filename, metric):
    """region -> (value, previous value) of a metric's failing change evaluations, from the tables."""
    rows = sql.execute(
        "select e.region, m.value, e.reference from evaluation e join reference_file f on f.id = e.file_id "
        "join metric_value m on m.file_id = e.file_id and m.metric = e.metric and m.region = e.region "
        "where f.filename = ? and e.metric = ? and e.evaluator = 'change' and e.passed = 0", (filename, metric))
    return {region: (value, reference) for region, value, reference in rows}


def _percent(cell: str) -> tuple[float, float]:
    """(change %, tolerance %) from a "+19 % vs previous (tolerance 11 %)" cell."""
    match = re.search(r"([+-]\d+(?:\.\d+)?) % vs previous \(tolerance (\d+(?:\.\d+)?) %\)", cell)
    assert match, cell
    return float(match.group(1)), float(match.group(2))


def test_failures_state_their_size(site):
    sql = site["sql"]
    anomalous = site["names"][2]
    rows = {r[0].strip("`"): r for r in _table_rows(_section(_md(site, anomalous), "Failures"), "`")}
    tolerance = sql.execute("select distinct threshold from evaluation where evaluator = 'change' "
                            "and metric = 'detector_dark_current_mean'").fetchone()[0]
    # Detector: the relative change from the previous file, in percent, and the tolerance.
    (value, previous), = _change_failures(sql, anomalous, "detector_dark_current_mean").values()
    change, tol = _percent(rows["detector_dark_current_mean"][4])
    expected = 100 * (value - previous) / abs(previous)
    assert abs(change - expected) <= 0.5 and change > 0
    assert tol == pytest.approx(100 * tolerance)
    # Amps: the worst failing amp (largest relative change) is named with its value and size.
    failing = _change_failures(sql, anomalous, "amp_dark_current_mean")
    worst = max(failing, key=lambda a: abs(failing[a][0] - failing[a][1]) / abs(failing[a][1]))
    row = rows["amp_dark_current_mean"]
    assert f"worst amp {worst}:" in row[3]
    assert _number(row[3].split(":")[1].replace("DN / s", "")) == pytest.approx(failing[worst][0], rel=1e-3)
    change, _ = _percent(row[4])
    v, r = failing[worst]
    assert abs(change - 100 * (v - r) / abs(r)) <= 0.5


def test_not_evaluated_is_neither_pass_nor_failure(site):
    sql = site["sql"]
    for name in site["names"]:
        failed, passed, not_evaluated, total = _verdict_counts(sql, name)
        md = _md(site, name)
        summary = next(line for line in md.splitlines() if line.startswith("| Evaluations |"))
        expected = f"{failed} failed, {passed} passed" + (f", {not_evaluated} not evaluated" if not_evaluated else "")
        assert f"{expected} (of {total})" in summary, summary
    # The first file compared with nothing: its change and trend evaluations were not evaluated.
    first = site["names"][0]
    failed, passed, not_evaluated, total = _verdict_counts(sql, first)
    assert not_evaluated > 0 and failed == 0
    top = _section(_md(site, first), "Failures")
    assert f"All {passed} evaluations that ran passed." in top and f"All {total}" not in top
    assert "change not evaluated" in top and "trend not evaluated" in top


def test_broken_file_report(site):
    md = _md(site, BROKEN)
    assert "could not be monitored" in md
    assert BROKEN in md
    assert "## Detector metrics" not in md


def _index_groups(md: str) -> list[tuple[str, list[list[str]]]]:
    """(heading, table rows) of each delivery of the Markdown index."""
    out = []
    for chunk in md.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        out.append((heading, _table_rows(body.split("\n## ")[0], r"(?!Detector\b)[^|\s-]")))
    return out


def test_index_groups_by_month_and_names_failed_metrics(site):
    sql = site["sql"]
    md = (site["out"] / "index.md").read_text()
    groups = _index_groups(md)
    # No delivery recorded: one group per USEAFTER month, newest first, the file without USEAFTER last.
    assert [g[0].split(":")[0] for g in groups] == ["USEAFTER 2027-03", "USEAFTER 2027-02", "USEAFTER 2027-01",
                                                     "No USEAFTER"]
    by_name = {re.search(r"\[([^\]]+)\]", r[2]).group(1): r for _, rows in groups for r in rows}
    assert set(by_name) == set(site["names"]) | {BROKEN}
    for name in site["names"]:
        row = by_name[name]
        failed, passed, not_evaluated, _ = _verdict_counts(sql, name)
        assert row[0] == "WFI01" and row[1] == "dark" and f"({report_folder_name(name)}/report.md)" in row[2]
        if failed:
            assert row[3] == f"**FAILED ({failed} evaluations)**"
            failing = {(m.split("_", 1)[1], ev) for m, ev in sql.execute(
                "select distinct e.metric, e.evaluator from evaluation e join reference_file f on f.id = e.file_id "
                "where f.filename = ? and e.passed = 0", (name,))}
            evaluator, _, names = row[4].partition(": ")
            assert {ev for _, ev in failing} == {evaluator}
            shown = [n.strip() for n in re.sub(r" \(\+\d+ more\)$", "", names).split(",")]
            more = int(re.search(r"\(\+(\d+) more\)$", names).group(1)) if "more)" in names else 0
            assert set(shown) <= {base for base, _ in failing} and len(shown) + more == len(failing)
        else:
            assert row[3] == (f"passed ({not_evaluated} not evaluated)" if not_evaluated else "passed")
            assert row[4] == ""
    assert "could not be monitored" in by_name[BROKEN][3]
    html = (site["out"] / "index.html").read_text()
    assert '<form class="filters" id="filters" hidden>' in html and html.count("<script>") == 1
    assert 'data-status="failed"' in html and 'data-detector="WFI01"' in html


def test_index_groups_by_recorded_delivery(site, tmp_path):
    """Where the database records the delivery of each file, the index groups by it."""
    import shutil

    copy = tmp_path / "rdmt.db"
    shutil.copy(site["tmp"] / "rdmt.db", copy)
    sql = sqlite3.connect(copy)
    names = site["names"]
    with sql:
        sql.execute("update reference_file set delivery = 'roman_0002.pmap' where filename in (?, ?)", names[:2])
        sql.execute("update reference_file set delivery = 'submit:2027-03-02T10:00:00' where filename = ?",
                    (names[2],))
    out = tmp_path / "reports"
    shutil.copytree(site["out"], out)
    write_index(Database(sqlite_url(copy)), out)
    groups = _index_groups((out / "index.md").read_text())
    headings = [g[0] for g in groups]
    assert headings[:2] == ["Delivery submit:2027-03-02T10:00:00: 1 file, 1 failing",
                            "Delivery roman_0002.pmap: 2 files, 0 failing"]
    assert [re.search(r"\[([^\]]+)\]", r[2]).group(1) for r in groups[1][1]] == names[:2]


def test_index_filter_works_from_a_file_url(site, tmp_path):
    """The inline filter runs from file:// in a real browser; its choice can be given in the address."""
    import subprocess

    browser = require_chromium("the index filter test")
    url = (site["out"] / "index.html").as_uri() + "#status=failed"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    shown = re.findall(r'<tr data-type="dark" data-detector="([^"]*)" data-status="(\w[\w ]*)">', dom)
    hidden = re.findall(r'<tr data-type="[^"]*" data-detector="[^"]*" data-status="([^"]*)" hidden="">', dom)
    n_failing = sum(1 for n in site["names"] if _verdict_counts(site["sql"], n)[0] > 0)
    assert [status for _, status in shown] == ["failed"] * n_failing
    assert len(hidden) == len(site["names"]) + 1 - n_failing and "failed" not in hidden
    assert f"{n_failing} of {len(site['names']) + 1} reports shown" in dom
    assert '<form class="filters" id="filters">' in dom  # shown once the script ran


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
