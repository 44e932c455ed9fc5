"""``rdmt history`` and ``rdmt failures``: values, verdicts (not evaluated included), deliveries, both arms,
every backend; the SQL views agree with them.

The data: five weekly WFI07 darks (detector dark rate 0.0050, 0.0051, 0.0049,
0.0050, then 0.0080; super-pixel 0 ten times that, so that mixing it with the
detector shows), two WFI08 darks, and three L2 images of WFI07 (the first
reprocessed once) measured by the pixel monitor. The expected verdicts are
worked out by hand from the dark and pixel standards in the comments.
"""

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from rdmt_dagster.history import (check_scale_region, database_url, excess, failed_groups, format_failures,
                                  format_history, history_csv, metric_history, parse_since, read_upgraded)
from rdmt_dagster.science.metrics import L2FileInfo, Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import HEAD_REVISION, Database, sqlite_url
from rdmt_dagster.storage.tables import CRDS
from rdmt_dagster.storage.l2_store import L2Store
from rdmt_dagster.storage.l2_tables import l2_file

BIN = Path(sys.executable).parent
STANDARDS = Standards()
WFI07 = [0.0050, 0.0051, 0.0049, 0.0050, 0.0080]
WFI08 = [0.0060, 0.0061]
START = datetime(2027, 1, 4)
BACKGROUND = [0.5, 0.6, 25.0]  # the third above the pixel monitor's SOC max of 20
L2_START = datetime(2027, 3, 20)


def dark_name(detector: str, week: int) -> str:
    return f"roman_wfi_dark_{detector}_{week:02d}.asdf"


def context(week: int) -> str:
    return f"roman_{week + 40:04d}.pmap"


def l2_name(exposure: int) -> str:
    return f"r0000101001001001001_01101_{exposure:04d}_WFI07_cal.asdf"


def _dark(detector: str, week: int, level: float) -> MetricSet:
    info = ReferenceFileInfo(dark_name(detector, week), f"/crds/{dark_name(detector, week)}", "dark", detector,
                             START + timedelta(weeks=week), "DARK")
    values = ScaleValues(np.array([level]), np.full(32, level), np.full(1024, 10 * level))
    return MetricSet(info, "1.0.0", [Metric("dark_current_mean", "DN / s", values)])


def _reference_arm(db: Database) -> None:
    standards = STANDARDS.for_monitor("dark")
    db.write_standards(standards)
    for detector, levels in (("WFI07", WFI07), ("WFI08", WFI08)):
        for week, level in enumerate(levels):
            ms = _dark(detector, week, level)
            db.register(ms.info.filename, ms.info.path, "c" * 64, delivery=context(week), trigger=CRDS)
            db.write_metrics(ms)
            db.write_evaluations(evaluate(ms, standards, db.history()), "1.0.0")


def _l2_row(conn, name: str, number: int, start: datetime) -> int:
    return conn.execute(l2_file.insert().values(
        filename=name, reprocess_number=number, notice_key=f"{name}:{number}", bucket="archive",
        s3_key=f"wfi/{name}", received_at=start + timedelta(minutes=1), status="claimed", detector="WFI07",
        optical_element="F158", exposure_start=start, observation_day=start.strftime("%Y-%m-%d"),
        claimed_by=f"batch-{number}")).inserted_primary_key[0]


def _l2_arm(db: Database) -> dict:
    """Three exposures 2 minutes apart; the first measured again as reprocess number 1 (value 0.55)."""
    store = L2Store(db)
    standards = STANDARDS.for_monitor("pixel")
    db.write_standards(standards)
    ids = {}
    rows = [(k, 0, L2_START + timedelta(minutes=2 * k), level) for k, level in enumerate(BACKGROUND)]
    rows.append((0, 1, L2_START, 0.55))
    for exposure, number, start, level in rows:
        with db.engine.begin() as conn:
            file_id = _l2_row(conn, l2_name(exposure), number, start)
        ids[(exposure, number)] = file_id
        info = L2FileInfo(l2_name(exposure), f"s3://archive/wfi/{l2_name(exposure)}", "pixel", "WFI07", "F158",
                          start, "00001", "0000101001001001001", f"{exposure:04d}")
        values = ScaleValues(detector=np.array([level]), amp=np.full(32, level))
        ms = MetricSet(info, "1.0.0", [Metric("background_level", "DN/s", values)])
        store.write_measurements(file_id, [ms])
        store.write_evaluation(file_id, evaluate(ms, standards, store.history()))
    return ids


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def filled(request, tmp_path):
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "rdmt.db")
    else:
        request.applymarker(pytest.mark.server)
        url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mariadb_url")
    db = Database(url)
    db.upgrade()
    _reference_arm(db)
    ids = _l2_arm(db)
    yield db, ids
    db.dispose()


def _history(db, *args, **kwargs):
    with db.engine.connect() as conn:
        return metric_history(conn, *args, **kwargs)


def _failures(db, **kwargs):
    with db.engine.connect() as conn:
        return failed_groups(conn, **kwargs)


def test_detector_history_with_every_verdict(filled):
    db, _ = filled
    points = _history(db, "dark_current_mean", detector="WFI07")
    assert [p.filename for p in points] == [dark_name("WFI07", k) for k in range(5)]
    assert [p.value for p in points] == pytest.approx(WFI07)
    assert {(p.scale, p.region, p.unit, p.monitor, p.arm) for p in points} == {
        ("detector", 0, "DN / s", "dark", "reference")}
    assert [p.observed_at for p in points] == [START + timedelta(weeks=k) for k in range(5)]
    assert [p.delivery for p in points] == [context(k) for k in range(5)]
    # change (11 %): none for the first file; +2 %, -3.9 %, +2 %, then +60 % fails.
    assert [p.evaluations["change"].passed for p in points] == [None, True, True, True, False]
    assert [p.evaluations["change"].reference for p in points[1:]] == pytest.approx(WFI07[:-1])
    # trend (min_history 3): not evaluated for the first three; then z = 0 against median 0.005
    # (passes), then |0.008 - 0.005| / (1.4826 * 5e-5) = 40 > 5 (fails).
    assert [p.evaluations["trend"].passed for p in points] == [None, None, None, True, False]
    assert [p.evaluations["trend"].reference for p in points[3:]] == pytest.approx([0.005, 0.005])
    assert all(p.evaluations["mission"].passed and p.evaluations["soc"].passed for p in points)


def test_superpixel_zero_is_never_the_detector(filled):
    db, _ = filled
    superpixel = _history(db, "dark_current_mean", detector="WFI07", scale="superpixel", region=0)
    assert [p.value for p in superpixel] == pytest.approx([10 * v for v in WFI07])
    assert {(p.scale, p.region) for p in superpixel} == {("superpixel", 0)}
    amps = _history(db, "dark_current_mean", detector="WFI08", scale="amp")
    assert len(amps) == 2 * 32 and sorted({p.region for p in amps}) == list(range(1, 33))
    assert [p.value for p in amps[:32]] == pytest.approx([WFI08[0]] * 32)
    with pytest.raises(ValueError, match="regions 1..32"):
        check_scale_region("amp", 0)


def test_history_filters(filled):
    db, _ = filled
    both = _history(db, "dark_current_mean")
    assert [p.detector for p in both] == ["WFI07", "WFI08", "WFI07", "WFI08", "WFI07", "WFI07", "WFI07"]
    since = _history(db, "dark_current_mean", detector="WFI07", since=START + timedelta(weeks=3))
    assert [p.value for p in since] == pytest.approx(WFI07[3:])
    assert _history(db, "dark_current_mean", arms=("l2",)) == []
    assert _history(db, "no_such_metric") == []


def test_history_reads_the_latest_evaluation(filled, tmp_path):
    """Evaluated again under stricter standards: the new verdicts are the ones shown."""
    db, _ = filled
    if db.engine.dialect.name in ("mysql", "mariadb"):
        time.sleep(1.1)  # DATETIME keeps whole seconds there: the new run must be later, not a tie
    strict = tmp_path / "strict.yaml"
    strict.write_text("dark:\n  metrics:\n    dark_current_mean:\n      soc: {max: 0.00495}\n")
    standards = Standards(strict).for_monitor("dark")
    db.write_standards(standards)
    ms = db.load_metric_set(dark_name("WFI07", 2))
    db.write_evaluations(evaluate(ms, standards, db.history()), "1.0.0")
    points = _history(db, "dark_current_mean", detector="WFI07")
    assert [p.evaluations["soc"].passed for p in points] == [True, True, True, True, True]
    assert points[2].standards_hash == standards.hash  # 0.0049 <= 0.00495
    db.write_evaluations(evaluate(db.load_metric_set(dark_name("WFI07", 1)), standards, db.history()), "1.0.0")
    points = _history(db, "dark_current_mean", detector="WFI07")
    assert points[1].evaluations["soc"].passed is False and points[1].evaluations["soc"].threshold == 0.00495


def test_l2_history_takes_the_newest_reprocessing(filled):
    db, ids = filled
    points = _history(db, "background_level", detector="WFI07", arms=("l2",))
    assert [(p.filename, p.reprocess_number) for p in points] == [(l2_name(0), 1), (l2_name(1), 0), (l2_name(2), 0)]
    assert [p.value for p in points] == pytest.approx([0.55, 0.6, 25.0])
    assert [p.delivery for p in points] == ["batch-1", "batch-0", "batch-0"]
    # soc 20; trend (min_history 3) has at most two earlier exposures: not evaluated.
    assert [p.evaluations["soc"].passed for p in points] == [True, True, False]
    assert [p.evaluations["trend"].passed for p in points] == [None, None, None]
    assert "change" not in points[0].evaluations
    amps = _history(db, "background_level", scale="amp", region=7)
    assert [(p.region, p.value) for p in amps] == [(7, 0.55), (7, 0.6), (7, 25.0)]


def _failed_regions(db) -> dict:
    """(file, metric, evaluator) -> failing regions, from `Database.failed_evaluations` (the other query)."""
    out = {}
    for row in db.failed_evaluations():
        out.setdefault((row["filename"], row["metric"], row["evaluator"]), []).append(row["region"])
    return out


def test_failures_of_a_delivery_and_since_a_date(filled):
    db, _ = filled
    groups = _failures(db, delivery=context(4), arms=("reference",))
    expected = {key: regions for key, regions in _failed_regions(db).items() if key[0] == dark_name("WFI07", 4)}
    got = {(g.filename, f"{g.scale}_{g.metric}", g.evaluator): g for g in groups}
    assert set(got) == set(expected) and {g.delivery for g in groups} == {context(4)}
    for key, group in got.items():
        assert group.n_regions == len(expected[key])
    detector = got[(dark_name("WFI07", 4), "detector_dark_current_mean", "change")]
    assert (detector.worst_region, detector.worst_value, detector.reference, detector.threshold) == (
        0, pytest.approx(0.008), pytest.approx(0.005), 0.11)
    # Every super-pixel changed by the same +60 %: 1024 of them, the worst is the first.
    superpixel = got[(dark_name("WFI07", 4), "superpixel_dark_current_mean", "change")]
    assert (superpixel.n_regions, superpixel.worst_region) == (1024, 0)
    assert _failures(db, delivery=context(0)) == []  # a first delivery: not evaluated is not failed
    everything = _failures(db)
    assert sum(g.n_regions for g in everything) == sum(len(r) for r in _failed_regions(db).values()) + 33
    l2 = _failures(db, arms=("l2",))
    assert [(g.filename, g.metric, g.scale, g.evaluator, g.n_regions, g.worst_value, g.threshold) for g in l2] == [
        (l2_name(2), "background_level", "detector", "soc", 1, 25.0, 20.0),
        (l2_name(2), "background_level", "amp", "soc", 32, 25.0, 20.0)]
    assert _failures(db, delivery="batch-0", arms=("l2",)) == l2
    # Every reference file was registered now: all of them arrived since yesterday, none since tomorrow.
    today = datetime.now(timezone.utc).replace(tzinfo=None)
    assert len(_failures(db, since=today - timedelta(days=1), arms=("reference",))) == len(
        _failures(db, arms=("reference",)))
    assert _failures(db, since=today + timedelta(days=1), arms=("reference",)) == []
    # The L2 images were announced on 2027-03-20 00:05 (their received_at).
    assert len(_failures(db, since=datetime(2027, 3, 20), arms=("l2",))) == 2
    assert _failures(db, since=datetime(2027, 3, 21), arms=("l2",)) == []


def test_worst_region_is_farthest_from_its_standard():
    assert excess(0.008, 0.11, None, 0.005) == pytest.approx(0.6)
    assert excess(25.0, 20.0, None, None) == pytest.approx(0.25)
    assert excess(-0.5, 20.0, -0.2, None) == pytest.approx(1.5)
    assert excess(None, 1.0, None, None) == float("inf")


def test_views_agree_with_the_commands(filled):
    db, _ = filled
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT filename, value FROM metric_history WHERE metric = 'dark_current_mean' AND scale = 'detector' "
            "AND region = 0 AND detector = 'WFI07' ORDER BY observed_at")).all()
        l2 = conn.execute(sa.text("SELECT filename, reprocess_number, value FROM metric_history WHERE arm = 'l2' "
                                  "AND scale = 'detector' ORDER BY observed_at")).all()
        failures = conn.execute(sa.text("SELECT arm, filename, metric, scale, evaluator, COUNT(*) FROM failures "
                                        "GROUP BY arm, filename, metric, scale, evaluator")).all()
    points = _history(db, "dark_current_mean", detector="WFI07")
    assert [(r.filename, pytest.approx(r.value)) for r in rows] == [(p.filename, p.value) for p in points]
    assert [(r.filename, r.reprocess_number) for r in l2] == [(l2_name(0), 1), (l2_name(1), 0), (l2_name(2), 0)]
    groups = {(g.arm, g.filename, g.metric, g.scale, g.evaluator): g.n_regions for g in _failures(db)}
    assert {tuple(r[:5]): r[5] for r in failures} == groups


def test_delivery_is_recorded_once_per_content(filled):
    db, _ = filled
    name = dark_name("WFI07", 0)
    db.register(name, f"/crds/{name}", "c" * 64, delivery="submit:2027-05-01T00:00:00Z", trigger="submit")
    status = db.file_status(name)
    assert (status["delivery"], status["delivered_by"]) == (context(0), CRDS)  # the delivery it first came in
    db.register(name, f"/crds/{name}", "d" * 64, replace=True, delivery="roman_0099.pmap", trigger=CRDS)
    status = db.file_status(name)
    assert (status["delivery"], status["delivered_by"], status["version"]) == ("roman_0099.pmap", CRDS, 2)
    db.register("new.asdf", "/in/new.asdf")
    db.register("new.asdf", "/in/new.asdf", delivery="drop_folder:2027-05-02T00:00:00Z", trigger="drop_folder")
    assert db.file_status("new.asdf")["delivery"] == "drop_folder:2027-05-02T00:00:00Z"  # none known before
    db.record_run([dark_name("WFI07", 4)], "3f2a9c1e-run")
    assert [g.filename for g in _failures(db, delivery="3f2a9c1e-run")][:1] == [dark_name("WFI07", 4)]
    with pytest.raises(ValueError, match="longer than 64"):
        db.register("x.asdf", "/in/x.asdf", delivery="x" * 65)


# -- the commands ----------------------------------------------------------------------------

def rdmt(*args, env):
    return subprocess.run([str(BIN / "rdmt"), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if k != "RDMT_DATABASE_URL"}, **env})


@pytest.fixture
def sqlite_home(tmp_path):
    db = Database(sqlite_url(tmp_path / "rdmt.db"))
    db.upgrade()
    _reference_arm(db)
    _l2_arm(db)
    db.dispose()
    return tmp_path


def test_history_command_json_csv_and_table(sqlite_home):
    env = {"RDMT_HOME": str(sqlite_home)}
    proc = rdmt("history", "dark_current_mean", "--detector", "WFI07", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["metric"], doc["scale"], doc["region"], doc["detector"]) == ("dark_current_mean", "detector", 0,
                                                                             "WFI07")
    assert [p["value"] for p in doc["points"]] == pytest.approx(WFI07)
    assert [p["evaluations"]["change"]["passed"] for p in doc["points"]] == [None, True, True, True, False]
    assert doc["points"][0]["observed_at"] == "2027-01-04T00:00:00Z"
    proc = rdmt("history", "dark_current_mean", "--scale", "superpixel", "--region", "0", "--since", "2027-01-25",
                "--csv", env=env)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["file"], float(r["value"])) for r in rows] == [(dark_name("WFI07", 3), pytest.approx(0.05)),
                                                              (dark_name("WFI07", 4), pytest.approx(0.08))]
    assert [r["trend"] for r in rows] == ["pass", "fail"] and float(rows[0]["change_reference"]) == pytest.approx(0.049)
    table = rdmt("history", "dark_current_mean", "--detector", "WFI07", env=env).stdout
    lines = table.splitlines()
    assert "n/e" in lines[0] and lines[1].split() == ["observed", "(UTC)", "file", "detector", "value", "unit",
                                                      "mission", "soc", "change", "trend"]
    assert lines[2].split()[-4:] == ["PASS", "PASS", "n/e", "n/e"] and lines[6].split()[-4:] == [
        "PASS", "PASS", "FAIL", "FAIL"]
    bad = rdmt("history", "dark_current_mean", "--scale", "amp", "--region", "0", env=env)
    assert bad.returncode == 2 and "regions 1..32" in bad.stderr
    bad = rdmt("history", "dark_current_mean", "--since", "last week", env=env)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_failures_command(sqlite_home):
    env = {"RDMT_HOME": str(sqlite_home)}
    proc = rdmt("failures", "--delivery", context(4), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    detector = [f for f in doc["failures"] if f["scale"] == "detector"]
    assert [(f["evaluator"], f["n_regions"], f["worst_value"]) for f in detector] == [
        ("change", 1, pytest.approx(0.008)), ("trend", 1, pytest.approx(0.008))]
    table = rdmt("failures", "--arm", "l2", env=env).stdout
    assert "background_level" in table and "-0.2 – 20" in table and "32 (worst 1)" in table
    assert table.splitlines()[-1] == "33 failed evaluation(s) in 2 group(s) of 1 file(s)"
    assert "±11% of 0.005" in rdmt("failures", "--delivery", context(4), env=env).stdout


def test_commands_need_an_existing_database_and_upgrade_an_old_one(tmp_path, sqlite_home):
    proc = rdmt("history", "dark_current_mean", env={"RDMT_HOME": str(tmp_path / "nothing")})
    assert proc.returncode == 2 and "no RDMT database" in proc.stderr
    assert not (tmp_path / "nothing").exists()
    url = sqlite_url(tmp_path / "old.db")
    old = Database(url)
    old.upgrade("0004")
    old.dispose()
    proc = rdmt("failures", "--json", env={"RDMT_DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["failures"] == []
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM rdmt_alembic_version")).scalar() == HEAD_REVISION
    proc = rdmt("failures", "--delivery", context(4), "--json", env={"RDMT_HOME": str(sqlite_home)})
    assert len(json.loads(proc.stdout)["failures"]) == 6


def test_untrusted_names_are_escaped(tmp_path):
    db = Database(sqlite_url(tmp_path / "rdmt.db"))
    db.upgrade()
    standards = STANDARDS.for_monitor("dark")
    name = "=HYPERLINK(evil)\n\x1b[31m.asdf"
    info = ReferenceFileInfo(name, "/x", "dark", "WFI01\r\nforged", datetime(2027, 1, 1), "DARK")
    ms = MetricSet(info, "1.0.0", [Metric("dark_current_mean", "DN / s\n", ScaleValues(
        np.array([2.0]), np.full(32, 2.0), np.full(1024, 2.0)))])
    db.write_metrics(ms)
    db.write_evaluations(evaluate(ms, standards), "1.0.0")
    with db.engine.connect() as conn:
        points = metric_history(conn, "dark_current_mean")
        groups = failed_groups(conn)
    db.dispose()
    table = format_history(points, "dark_current_mean", "detector", 0)
    assert len(table.splitlines()) == 3 and "\x1b" not in table and "\r" not in table
    rows = list(csv.reader(io.StringIO(history_csv(points))))
    assert rows[1][1] == "'=HYPERLINK(evil) [31m.asdf" and rows[1][3] == "WFI01 forged"
    text = format_failures(groups)
    assert "\x1b" not in text and all(line.count("HYPERLINK") <= 1 for line in text.splitlines())


def test_database_url_follows_the_platform_rule(tmp_path, monkeypatch):
    from rdmt_dagster.resources import config_from_environment

    monkeypatch.delenv("RDMT_DATABASE_URL", raising=False)
    monkeypatch.setenv("RDMT_HOME", str(tmp_path))
    assert database_url() == config_from_environment().resolved_database_url()
    monkeypatch.setenv("RDMT_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url() == config_from_environment().resolved_database_url()
    assert parse_since("2027-03-01") == datetime(2027, 3, 1)
    assert parse_since("2027-03-01T12:00:00+02:00") == datetime(2027, 3, 1, 10)


def test_scales_of_the_commands_are_the_scales():
    from rdmt_dagster import history
    from rdmt_dagster.cli import SCALE_CHOICES
    from rdmt_dagster.science.scales import SCALES, region_ids

    assert SCALE_CHOICES == SCALES == history.SCALES
    for scale in SCALES:
        assert list(history.SCALE_REGIONS[scale]) == region_ids(scale).tolist()


def test_read_upgraded_runs_the_query_once_on_a_current_schema(tmp_path):
    db = Database(sqlite_url(tmp_path / "rdmt.db"))
    db.upgrade()
    db.dispose()
    calls = []
    assert read_upgraded(sqlite_url(tmp_path / "rdmt.db"), lambda conn: calls.append(1) or len(calls)) == 1


def test_readme_notebook_example_runs_on_the_parquet_dataset(tmp_path):
    """The README's duckdb / pandas example, run as printed on a dataset of three WFI07 darks."""
    import re

    from rdmt_dagster.storage.files import ParquetStore

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"The same from the Parquet dataset.*?```python\n(.*?)```", readme, re.S).group(1)
    store = ParquetStore(tmp_path / "parquet")
    standards = STANDARDS.for_monitor("dark")
    sets = [_dark("WFI07", week, level) for week, level in enumerate(WFI07[:3])]
    for k, ms in enumerate(sets):
        store.write_metrics(ms)
        store.write_evaluations(evaluate(ms, standards, history_of(sets[:k])), "1.0.0")
    namespace = {}
    exec(code.replace('"rdmt_data/parquet"', repr(str(tmp_path / "parquet"))), namespace)  # noqa: S102
    history = namespace["history"]
    table = history.pivot(index=["useafter", "filename", "value"], columns="evaluator", values="passed")
    assert [v for _, _, v in table.index] == pytest.approx(WFI07[:3])
    change = table["change"]
    assert change.isna().tolist() == [True, False, False]  # the first file: not evaluated (NULL, not False)
    assert change.tolist()[1:] == [True, True] and table["mission"].tolist() == [True] * 3
    metrics = namespace["metrics"]
    superpixel = metrics[metrics.metric == "superpixel_dark_current_mean"].pivot(index="useafter", columns="region",
                                                                                 values="value")
    assert superpixel.shape == (3, 1024) and superpixel[0].tolist() == pytest.approx([10 * v for v in WFI07[:3]])


def history_of(sets):
    from rdmt_dagster.science.history import MemoryHistory

    return MemoryHistory(sets)


def test_terminal_text_is_escaped_as_the_reports_escape_it():
    from rdmt_dagster.history import _text
    from rdmt_dagster.reports.escape import plain_text

    hostile = ["a\nb", "\x1b[31mred", "tab\there", "\u202eevil\u202c", "\u2028line", "del\x7f\x9f", None, 3.5,
               "".join(chr(c) for c in range(0, 0x2070)), "plain name.asdf"]
    for text in hostile:
        assert _text(text) == plain_text(text), repr(text)
