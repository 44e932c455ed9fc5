"""Storage round trips and migrations: SQLite, PostgreSQL and MariaDB; Parquet (pyarrow, pandas, duckdb); ECSV.

Also the Dagster instance configurations (run retries).
"""

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import (
    HEAD_REVISION,
    REGISTERED,
    REPLACED,
    ContentChangedError,
    Database,
    failed_evaluations_query,
    sqlite_url,
)
from rdmt_dagster.storage.files import ParquetStore, write_ecsv


def make_set(name, detector, useafter, level, nan_superpixel=None):
    rng = np.random.default_rng(abs(hash((name, level))) % 2**32)
    sp = level * (1 + 0.01 * rng.standard_normal(1024))
    if nan_superpixel is not None:
        sp[nan_superpixel] = np.nan
    info = ReferenceFileInfo(name, f"/data/{name}", "dark", detector, useafter, "DARK")
    metrics = [
        Metric("dark_current_mean", "DN / s", ScaleValues(np.array([level]), np.full(32, level), sp)),
        Metric("num_hot_pix", "pix", ScaleValues(np.array([33000.0]), np.full(32, 1030.0), np.full(1024, 32.0))),
        Metric("channel_only", "", ScaleValues(np.array([1.0]), np.arange(32.0), None)),
    ]
    return MetricSet(info, "1.0.0", metrics)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "rdmt.db")
    elif request.param == "postgresql":
        request.applymarker(pytest.mark.server)
        url = request.getfixturevalue("postgres_url")
    else:
        request.applymarker(pytest.mark.server)
        url = request.getfixturevalue("mariadb_url")
    db = Database(url)
    db.upgrade()
    yield db
    db.dispose()


def test_metrics_round_trip_and_rewrite_without_duplicates(database):
    ms = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005, nan_superpixel=7)
    database.write_metrics(ms)
    database.write_metrics(ms)
    assert database.count_rows("metric_value") == 1057 + 1057 + 33
    assert database.count_rows("reference_file") == 1
    back = database.load_metric_set("roman_wfi_dark_0001.asdf")
    assert back.ok and back.info.detector == "WFI01" and back.info.useafter == datetime(2027, 1, 1)
    got = {m.name: m for m in back.metrics}
    np.testing.assert_allclose(got["dark_current_mean"].values.superpixel, ms.metrics[0].values.superpixel, equal_nan=True)
    assert np.isnan(got["dark_current_mean"].values.superpixel[7])
    assert got["channel_only"].values.superpixel is None
    assert got["num_hot_pix"].unit == "pix"


def test_evaluations_replace_per_standards_and_keep_other_standards(database, tmp_path):
    first = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    second = make_set("roman_wfi_dark_0019.asdf", "WFI01", datetime(2027, 2, 1), 0.009)
    for ms in (first, second):
        database.write_metrics(ms)
    default = Standards().for_monitor("dark")
    result = evaluate(second, default, database.history())
    database.write_standards(default)
    database.write_evaluations(result, "1.0.0")
    database.write_evaluations(result, "1.0.0")
    n_rows = sum(e.passed.size for e in result.evaluations)
    assert database.count_rows("evaluation") == n_rows
    user = tmp_path / "strict.yaml"
    user.write_text("dark:\n  metrics:\n    dark_current_mean:\n      soc: {max: 0.001}\n")
    strict = Standards(user).for_monitor("dark")
    database.write_evaluations(evaluate(second, strict, database.history()), "1.0.0")
    assert database.count_rows("evaluation") == 2 * n_rows
    failed = database.failed_evaluations(["roman_wfi_dark_0019.asdf"], standards_hash=default.hash)
    change = [r for r in failed if r["evaluator"] == "change" and r["metric"] == "detector_dark_current_mean"]
    assert change and change[0]["reference"] == pytest.approx(0.005) and change[0]["value"] == pytest.approx(0.009)
    strict_failed = database.failed_evaluations(["roman_wfi_dark_0019.asdf"], standards_hash=strict.hash)
    assert any(r["evaluator"] == "soc" for r in strict_failed)
    assert not any(r["evaluator"] == "soc" for r in failed)


def test_history_is_ordered_by_useafter_and_skips_errors(database):
    a = make_set("b.asdf", "WFI02", datetime(2027, 1, 1), 1.0)
    b = make_set("a.asdf", "WFI02", datetime(2027, 3, 1), 3.0)
    c = make_set("c.asdf", "WFI02", datetime(2027, 2, 1), 2.0)
    bad = MetricSet(ReferenceFileInfo("z.asdf", "/data/z.asdf", "dark", "WFI02", datetime(2027, 2, 15)), "1.0.0", error="z.asdf: broken")
    for ms in (b, a, c, bad):
        database.write_metrics(ms)
    earlier = database.history().before(b.info, 10)
    assert [p.filename for p in earlier] == ["b.asdf", "c.asdf"]
    assert database.history().before(b.info, 1)[0].values[("dark_current_mean", "detector")][0] == 2.0
    assert database.file_status("z.asdf")["status"] == "error"
    assert database.previous_path(b.info) == "/data/c.asdf"


def test_registration_is_idempotent(database):
    first = database.register("x.asdf", "/in/x.asdf")
    assert database.register("x.asdf", "/in/x.asdf") == first
    database.register("x.asdf", "/moved/x.asdf")
    assert database.paths(["x.asdf", "y.asdf"]) == {"x.asdf": "/moved/x.asdf"}
    assert database.count_rows("reference_file") == 1


def test_same_content_registered_again_is_harmless_and_other_content_is_refused(database):
    ms = make_set("x.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    first = database.register("x.asdf", "/in/x.asdf", "a" * 64)
    database.write_metrics(ms)
    assert database.register("x.asdf", "/moved/x.asdf", "a" * 64) == first
    with pytest.raises(ContentChangedError, match="x.asdf: its content differs") as raised:
        database.register("x.asdf", "/other/x.asdf", "b" * 64)
    assert raised.value.registered_path == "/moved/x.asdf"
    status = database.file_status("x.asdf")
    assert (status["path"], status["checksum"], status["status"], status["version"]) == (
        "/moved/x.asdf", "a" * 64, "ok", 1)
    assert database.count_rows("metric_value") == 1057 * 2 + 33


def test_new_version_deletes_the_earlier_results(database):
    ms = make_set("x.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    database.register("x.asdf", "/in/x.asdf", "a" * 64)
    database.write_metrics(ms)
    standards = Standards().for_monitor("dark")
    database.write_standards(standards)
    database.write_evaluations(evaluate(ms, standards), "1.0.0")
    database.register("x.asdf", "/new/x.asdf", "b" * 64, replace=True, replaced_status=REPLACED)
    status = database.file_status("x.asdf")
    assert (status["path"], status["checksum"], status["status"], status["version"], status["error"]) == (
        "/new/x.asdf", "b" * 64, REPLACED, 2, None)
    assert database.replaced_files() == [("x.asdf", 2)]
    for table in ("metric_value", "evaluation", "evaluation_run"):
        assert database.count_rows(table) == 0
    assert database.count_rows("reference_file") == 1 and database.count_rows("standards") == 1
    database.write_metrics(ms)  # measured again
    assert database.file_status("x.asdf")["status"] == "ok" and database.replaced_files() == []


def test_a_file_not_yet_measured_stays_registered_when_replaced(database):
    database.register("x.asdf", "/in/x.asdf", "a" * 64)
    assert database.new_version("x.asdf", "/in/x.asdf", "b" * 64, status=REPLACED) == 2
    assert database.file_status("x.asdf")["status"] == REGISTERED
    with pytest.raises(KeyError, match="y.asdf"):
        database.new_version("y.asdf", "/in/y.asdf", "c" * 64)


def test_existing_database_upgrades_without_loss(database):
    """A database made by revision 0001 keeps its rows; its files get an unknown checksum and version 1."""
    import sqlalchemy as sa

    database.dispose()
    old = Database(database.url)
    with old.engine.begin() as conn:
        conn.execute(sa.text("DROP VIEW monitored_file"))
        for table in ("l2_evaluation", "l2_metric_value", "l2_measurement", "rejected_message", "l2_file",
                      "evaluation_run", "evaluation", "metric_value", "standards", "reference_file",
                      "rdmt_alembic_version"):
            conn.execute(sa.text(f"DROP TABLE {table}"))
    old.upgrade("0001")
    with old.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO reference_file (filename, path, monitor, detector, status, "
                             "monitor_version, registered_at) VALUES ('x.asdf', '/in/x.asdf', 'dark', 'WFI01', "
                             "'ok', '1.0.0', '2027-01-01 00:00:00')"))
        file_id = conn.execute(sa.text("SELECT id FROM reference_file")).scalar()
        conn.execute(sa.text("INSERT INTO metric_value (file_id, metric, region, scale, value, unit, "
                             f"monitor_version) VALUES ({file_id}, 'detector_dark_current_mean', 0, 'detector', "
                             "0.005, 'DN / s', '1.0.0')"))
    old.upgrade()
    status = old.file_status("x.asdf")
    assert (status["id"], status["path"], status["status"], status["checksum"], status["version"]) == (
        file_id, "/in/x.asdf", "ok", None, 1)
    assert old.load_metric_set("x.asdf").values()[("dark_current_mean", "detector")][0] == pytest.approx(0.005)
    with pytest.raises(ContentChangedError):  # an unknown checksum is not a match
        old.register("x.asdf", "/in/x.asdf", "a" * 64)
    old.record_checksum("x.asdf", "a" * 64)
    assert old.register("x.asdf", "/in/x.asdf", "a" * 64) == file_id
    # Both arms in one shape (revision 0004): the reference file as it was, beside no L2 image yet.
    with old.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT arm, filename, reprocess_number, detector, status FROM monitored_file")).all()
    assert [tuple(r) for r in rows] == [("reference", "x.asdf", 0, "WFI01", "ok")]
    old.dispose()


def test_l2_ingest_database_upgrades_without_loss(database):
    """Announced L2 files of revision 0003 keep their rows and show up in the view of both arms."""
    import sqlalchemy as sa

    database.dispose()
    old = Database(database.url)
    with old.engine.begin() as conn:
        conn.execute(sa.text("DROP VIEW monitored_file"))
        for table in ("l2_evaluation", "l2_metric_value", "l2_measurement", "rejected_message", "l2_file",
                      "evaluation_run", "evaluation", "metric_value", "standards", "reference_file",
                      "rdmt_alembic_version"):
            conn.execute(sa.text(f"DROP TABLE {table}"))
    old.upgrade("0003")
    with old.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO l2_file (filename, reprocess_number, notice_key, bucket, s3_key, "
                             "received_at, status, detector) VALUES ('r1_cal.asdf', 0, 'k1', 'b', 'p/r1_cal.asdf', "
                             "'2027-03-20 00:01:00', 'pending', '')"))
        conn.execute(sa.text("INSERT INTO reference_file (filename, path, monitor, detector, status, "
                             "monitor_version, registered_at, version) VALUES ('d.asdf', '/d.asdf', 'dark', 'WFI02', "
                             "'ok', '1', '2027-01-01 00:00:00', 2)"))
    old.upgrade()
    with old.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT arm, filename, reprocess_number, status FROM monitored_file "
                                    "ORDER BY arm, filename")).all()
        l2 = conn.execute(sa.text("SELECT filename, s3_key, status, observation_day, crds_context FROM l2_file")).one()
    assert [tuple(r) for r in rows] == [("l2", "r1_cal.asdf", 0, "pending"), ("reference", "d.asdf", 1, "ok")]
    assert tuple(l2) == ("r1_cal.asdf", "p/r1_cal.asdf", "pending", None, "")
    old.dispose()


@pytest.mark.server
def test_failed_evaluations_plan_reaches_metric_values_by_primary_key(mariadb_url):
    """MariaDB reads the files, then their evaluations, then each metric value by its key.

    Driving the join from metric_value instead reaches evaluation through
    file_id alone, which is quadratic in the rows per file.
    """
    database = Database(mariadb_url)
    database.upgrade()
    ms = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    database.write_metrics(ms)
    database.write_evaluations(evaluate(ms, Standards().for_monitor("dark")), "1.0.0")
    query = failed_evaluations_query([ms.info.filename])
    sql = str(query.compile(dialect=database.engine.dialect, compile_kwargs={"literal_binds": True}))
    with database.engine.connect() as conn:
        plan = [dict(r._mapping) for r in conn.exec_driver_sql("EXPLAIN " + sql)]
    database.dispose()
    tables = [row["table"] for row in plan]
    assert tables == ["reference_file", "evaluation", "metric_value"], plan
    assert plan[2]["type"] == "eq_ref", plan


def test_parquet_dataset_is_hive_partitioned_and_idempotent(tmp_path):
    import duckdb
    import pandas as pd
    import pyarrow.dataset as ds

    store = ParquetStore(tmp_path / "parquet")
    ms = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    other = make_set("roman_wfi_dark_0002.asdf", "WFI02", datetime(2027, 1, 1), 0.006)
    for m in (ms, ms, other):
        store.write_metrics(m)
    result = evaluate(ms, Standards().for_monitor("dark"))
    store.write_evaluations(result, "1.0.0")
    store.write_evaluations(result, "1.0.0")
    table = ds.dataset(tmp_path / "parquet" / "metrics", partitioning="hive").to_table()
    assert table.num_rows == 2 * (1057 * 2 + 33)
    assert set(table.column("detector").to_pylist()) == {"WFI01", "WFI02"}
    frame = pd.read_parquet(tmp_path / "parquet" / "metrics")
    det = frame[(frame.metric == "detector_dark_current_mean") & (frame.detector == "WFI02")]
    assert det.value.tolist() == [pytest.approx(0.006)]
    con = duckdb.connect()
    n, failed = con.execute(
        f"select count(*), sum(case when passed then 0 else 1 end) from read_parquet('{tmp_path}/parquet/evaluations/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert n == sum(e.passed.size for e in result.evaluations) and failed == result.n_failed


def test_ecsv_file_has_metrics_and_evaluations(tmp_path):
    from astropy.table import Table

    ms = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 2.5)
    result = evaluate(ms, Standards().for_monitor("dark"))
    path = write_ecsv(tmp_path / "ecsv", ms, result)
    table = Table.read(path, format="ascii.ecsv")
    assert len(table) == 1057 * 2 + 33
    row = table[(table["metric"] == "detector_dark_current_mean")][0]
    assert row["value"] == pytest.approx(2.5) and row["mission_threshold"] == 1.0 and not row["mission_passed"]
    assert table.meta["filename"] == "roman_wfi_dark_0001.asdf" and table.meta["standards_hash"] == result.standards_hash
    amp = table[(table["metric"] == "amp_num_hot_pix") & (table["region"] == 32)][0]
    assert amp["soc_threshold"] == pytest.approx(100000 * 124 * 4088 / 4088**2)


@pytest.mark.server
def test_rdmt_and_dagster_migrations_share_a_database(postgres_url, tmp_path):
    """RDMT keeps its Alembic revision apart from Dagster's, so both can live in one database."""
    import dagster as dg
    import sqlalchemy as sa

    pytest.importorskip("dagster_postgres")
    Database(postgres_url).upgrade()
    url = sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    (tmp_path / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {url.render_as_string(hide_password=False)}\n")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    instance.get_runs()
    Database(postgres_url).upgrade()
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from rdmt_alembic_version")).scalar() == HEAD_REVISION
        assert conn.execute(sa.text("select count(*) from alembic_version")).scalar() == 1
    engine.dispose()
    instance.dispose()



INSTANCE_FILES = {"embedded": "dagster.yaml", "postgresql": "deploy/dagster-postgres.yaml"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(INSTANCE_FILES))
def test_instance_configurations_retry_failed_runs(name, monkeypatch):
    """Both instance configurations retry a failed run (e.g. during a database outage) three times."""
    import yaml
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/dagster")
    config = yaml.safe_load((ROOT / INSTANCE_FILES[name]).read_text())
    assert process_config(dagster_instance_config_schema(), config).success
    assert config["run_retries"] == {"enabled": True, "max_retries": 3, "retry_on_asset_or_op_failure": True}


def test_embedded_instance_retries_failed_runs(tmp_path):
    import dagster as dg

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
        assert instance.run_retries_retry_on_asset_or_op_failure
        assert "EVENT_LOG_CONSUMER" in instance.get_required_daemon_types()  # the daemon that retries runs
    finally:
        instance.dispose()


@pytest.mark.server
def test_postgres_instance_retries_failed_runs(postgres_url, tmp_path, monkeypatch):
    import dagster as dg
    import sqlalchemy as sa

    pytest.importorskip("dagster_postgres")
    url = sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    monkeypatch.setenv("DAGSTER_PG_URL", url.render_as_string(hide_password=False))
    shutil.copy(ROOT / "deploy" / "dagster-postgres.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
    finally:
        instance.dispose()


def test_head_revision_is_the_newest_migration():
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("rdmt_dagster.storage") / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
