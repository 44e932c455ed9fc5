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


def drop_schema(database):
    """Drop every RDMT view and table, so that a test can build the database of an older revision."""
    import sqlalchemy as sa

    with database.engine.begin() as conn:
        for view in ("failures", "metric_history", "monitored_file"):
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {view}"))
        for table in ("l2_evaluation", "l2_metric_value", "l2_measurement", "rejected_message", "l2_file",
                      "evaluation_run", "evaluation", "metric_value", "standards", "reference_file",
                      "rdmt_alembic_version"):
            conn.execute(sa.text(f"DROP TABLE {table}"))


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
    drop_schema(old)
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
    drop_schema(old)
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


def _results_database_0004(database):
    """A revision-0004 database with both arms' results, as that revision stored them.

    Reference file a (first of its detector): change and trend could not run,
    stored as passes with no reference and noted in its evaluation run. File b:
    a failed change, a trend with too little history (pass, no reference, noted)
    and a trend that *failed* with no reference (history all NaN), plus an
    older run under other standards. One L2 image: change with no previous file.
    """
    from rdmt_dagster.storage import tables as t
    from rdmt_dagster.storage.l2_tables import l2_evaluation, l2_file, l2_measurement, l2_metric_value

    database.dispose()
    old = Database(database.url)
    drop_schema(old)
    old.upgrade("0004")
    f, m, e, r = t.reference_file, t.metric_value, t.evaluation, t.evaluation_run
    with old.engine.begin() as conn:
        ids = {}
        for name, day in (("a.asdf", 1), ("b.asdf", 2)):
            ids[name] = conn.execute(f.insert().values(
                filename=name, path=f"/in/{name}", monitor="dark", reftype="DARK", detector="WFI01",
                useafter=datetime(2027, day, 1), status="ok", monitor_version="1.0.0",
                registered_at=datetime(2027, day, 2), version=1)).inserted_primary_key[0]
        a, b = ids["a.asdf"], ids["b.asdf"]
        values = [(a, "detector", 0, 0.005), (a, "superpixel", 0, 0.007),
                  (b, "detector", 0, 0.009), (b, "superpixel", 0, 0.0071)]
        conn.execute(m.insert(), [dict(file_id=i, metric=f"{s}_dark_current_mean", region=g, scale=s, value=v,
                                       unit="DN / s", monitor_version="1.0.0") for i, s, g, v in values])
        rows = [  # file, hash, scale, evaluator, threshold, reference, passed
            (a, "h1", "detector", "mission", 1.0, None, True), (a, "h1", "detector", "change", 0.11, None, True),
            (a, "h1", "detector", "trend", 5.0, None, True), (a, "h1", "superpixel", "mission", 1.0, None, True),
            (a, "h1", "superpixel", "change", 0.11, None, True), (a, "h1", "superpixel", "trend", 5.0, None, True),
            (b, "h1", "detector", "mission", 1.0, None, True), (b, "h1", "detector", "change", 0.11, 0.005, False),
            (b, "h1", "detector", "trend", 5.0, None, True), (b, "h1", "superpixel", "mission", 1.0, None, True),
            (b, "h1", "superpixel", "change", 0.11, 0.007, True), (b, "h1", "superpixel", "trend", 5.0, None, False),
            (b, "h0", "detector", "change", 0.5, 0.005, True), (b, "h0", "detector", "trend", 5.0, None, True),
        ]
        conn.execute(e.insert(), [dict(file_id=i, standards_hash=h, metric=f"{s}_dark_current_mean", region=0,
                                       evaluator=ev, threshold=thr, lower=None, reference=ref, passed=p)
                                  for i, h, s, ev, thr, ref, p in rows])
        conn.execute(r.insert(), [
            dict(file_id=a, standards_hash="h1", monitor_version="1.0.0", evaluated_at=datetime(2027, 1, 2, 1),
                 n_evaluations=6, n_failed=0, compared_with="[]",
                 notes='["change: no previous file", "trend: 0 earlier files, trend needs 3"]'),
            dict(file_id=b, standards_hash="h1", monitor_version="1.0.0", evaluated_at=datetime(2027, 2, 2, 1),
                 n_evaluations=6, n_failed=2, compared_with='["a.asdf"]',
                 notes='["trend: 1 earlier files, trend needs 3"]'),
            dict(file_id=b, standards_hash="h0", monitor_version="1.0.0", evaluated_at=datetime(2027, 2, 2, 0),
                 n_evaluations=2, n_failed=0, compared_with='["a.asdf"]', notes="[]"),
        ])
        image = conn.execute(l2_file.insert().values(
            filename="r1_WFI01_cal.asdf", reprocess_number=0, notice_key="k1", bucket="bucket", s3_key="k/r1",
            received_at=datetime(2027, 3, 20, 0, 5), status="ok", detector="WFI01", optical_element="F158",
            exposure_start=datetime(2027, 3, 20), observation_day="2027-03-20", claimed_by="batch1",
            n_failed=1)).inserted_primary_key[0]
        conn.execute(l2_measurement.insert().values(
            file_id=image, monitor="pixel", status="ok", monitor_version="1", measured_at=datetime(2027, 3, 20, 0, 6),
            standards_hash="h2", evaluated_at=datetime(2027, 3, 20, 0, 6), n_evaluations=4, n_failed=1,
            compared_with="[]", notes='["change: no previous file"]'))
        conn.execute(l2_metric_value.insert(), [
            dict(file_id=image, monitor="pixel", metric="detector_pixel_mean", region=0, scale="detector", value=10.0,
                 unit="DN / s"),
            dict(file_id=image, monitor="pixel", metric="amp_pixel_mean", region=1, scale="amp", value=11.0,
                 unit="DN / s")])
        conn.execute(l2_evaluation.insert(), [
            dict(file_id=image, monitor="pixel", standards_hash="h2", metric=metric, region=region, evaluator=ev,
                 threshold=thr, lower=None, reference=None, passed=p)
            for metric, region, ev, thr, p in (("detector_pixel_mean", 0, "mission", 20.0, True),
                                               ("detector_pixel_mean", 0, "change", 0.1, True),
                                               ("amp_pixel_mean", 1, "change", 0.1, True),
                                               ("amp_pixel_mean", 1, "soc", 10.5, False))])
    return old, ids, image


def _verdicts(conn, table):
    import sqlalchemy as sa

    key = [c for c in ("file_id", "standards_hash", "monitor", "metric", "evaluator") if c in table.c]
    rows = conn.execute(sa.select(*[table.c[c] for c in key], table.c.passed)).all()
    return {tuple(row[:-1]): (None if row[-1] is None else bool(row[-1])) for row in rows}


def test_not_evaluated_upgrade_keeps_every_row_and_turns_noted_passes_into_null(database):
    """Revision 0005: the passes that were never given become NULL, everything else stays as it was."""
    import sqlalchemy as sa

    from rdmt_dagster.storage import tables as t
    from rdmt_dagster.storage.l2_tables import l2_evaluation, l2_measurement

    old, ids, image = _results_database_0004(database)
    a, b = ids["a.asdf"], ids["b.asdf"]
    with old.engine.connect() as conn:
        before = {name: old.count_rows(name) for name in t.metadata.tables}
        reference_before = _verdicts(conn, t.evaluation)
        l2_before = _verdicts(conn, l2_evaluation)
    old.upgrade()
    assert {name: old.count_rows(name) for name in t.metadata.tables} == before
    with old.engine.connect() as conn:
        reference_after = _verdicts(conn, t.evaluation)
        l2_after = _verdicts(conn, l2_evaluation)
        runs = dict(((row.file_id, row.standards_hash), row.n_not_evaluated)
                    for row in conn.execute(sa.select(t.evaluation_run)))
        measured = conn.execute(sa.select(l2_measurement.c.n_not_evaluated)).scalar()
        files = conn.execute(sa.select(t.reference_file.c.id, t.reference_file.c.delivery,
                                       t.reference_file.c.delivered_by, t.reference_file.c.run_id)
                             .order_by(t.reference_file.c.id)).all()
    became_null = {key for key in reference_before if reference_after[key] is None}
    assert became_null == {
        (a, "h1", "detector_dark_current_mean", "change"), (a, "h1", "superpixel_dark_current_mean", "change"),
        (a, "h1", "detector_dark_current_mean", "trend"), (a, "h1", "superpixel_dark_current_mean", "trend"),
        (b, "h1", "detector_dark_current_mean", "trend")}
    assert {k: v for k, v in reference_after.items() if k not in became_null} == {
        k: v for k, v in reference_before.items() if k not in became_null}
    assert reference_after[(b, "h1", "superpixel_dark_current_mean", "trend")] is False  # a failure stays one
    assert runs == {(a, "h1"): 4, (b, "h1"): 1, (b, "h0"): 0}
    assert {k for k in l2_before if l2_after[k] is None} == {
        (image, "h2", "pixel", "detector_pixel_mean", "change"), (image, "h2", "pixel", "amp_pixel_mean", "change")}
    assert l2_after[(image, "h2", "pixel", "amp_pixel_mean", "soc")] is False and measured == 2
    assert [tuple(f) for f in files] == [(a, None, None, None), (b, None, None, None)]
    # Not-evaluated verdicts are no failures: two of file b's latest run, none of the older one.
    failed = old.failed_evaluations(["a.asdf", "b.asdf"])
    assert sorted((r["filename"], r["standards_hash"], r["metric"], r["evaluator"]) for r in failed) == [
        ("b.asdf", "h1", "detector_dark_current_mean", "change"),
        ("b.asdf", "h1", "superpixel_dark_current_mean", "trend")]
    old.dispose()


def test_rebuilt_evaluation_tables_keep_their_keys_and_foreign_keys(database):
    """SQLite rebuilds the evaluation tables; their keys and ON DELETE CASCADE work as before on every backend."""
    import sqlalchemy as sa

    from rdmt_dagster.storage import tables as t
    from rdmt_dagster.storage.l2_tables import l2_evaluation, l2_file

    old, ids, image = _results_database_0004(database)
    old.upgrade()
    e = t.evaluation
    row = dict(file_id=ids["a.asdf"], standards_hash="h9", metric="detector_dark_current_mean", region=0,
               evaluator="change", threshold=0.11, lower=None, reference=None, passed=None)
    with old.engine.begin() as conn:
        conn.execute(e.insert().values(**row))  # NULL is a verdict now: not evaluated
    with pytest.raises(sa.exc.IntegrityError):  # the primary key
        with old.engine.begin() as conn:
            conn.execute(e.insert().values(**row))
    with pytest.raises(sa.exc.IntegrityError):  # the foreign key to the file
        with old.engine.begin() as conn:
            conn.execute(e.insert().values(**{**row, "file_id": 9999}))
    with pytest.raises(sa.exc.IntegrityError):
        with old.engine.begin() as conn:
            conn.execute(l2_evaluation.insert().values(file_id=9999, monitor="pixel", standards_hash="h", metric="m",
                                                       region=0, evaluator="soc", passed=False))
    with old.engine.begin() as conn:
        conn.execute(t.reference_file.delete().where(t.reference_file.c.id == ids["a.asdf"]))
        conn.execute(l2_file.delete().where(l2_file.c.id == image))
    with old.engine.connect() as conn:
        left = conn.execute(sa.select(e.c.file_id).distinct()).scalars().all()
        assert left == [ids["b.asdf"]]  # cascaded from the deleted file
        assert conn.execute(sa.select(sa.func.count()).select_from(l2_evaluation)).scalar() == 0
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            for table, parent in (("evaluation", "reference_file"), ("l2_evaluation", "l2_file")):
                keys = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})").mappings().all()
                assert [(k["table"], k["from"], k["to"], k["on_delete"]) for k in keys] == [
                    (parent, "file_id", "id", "CASCADE")]
    old.dispose()


def test_not_evaluated_migration_downgrades_and_upgrades_again(database):
    """Down to 0004 (a verdict not given is a pass again, as 0004 stored it) and back up: the same verdicts."""
    from rdmt_dagster.storage import tables as t

    old, ids, _ = _results_database_0004(database)
    old.upgrade()
    with old.engine.connect() as conn:
        upgraded = _verdicts(conn, t.evaluation)
    _downgrade(old, "0004")
    with old.engine.connect() as conn:
        assert None not in _verdicts(conn, t.evaluation).values()
    old.upgrade()
    with old.engine.connect() as conn:
        assert _verdicts(conn, t.evaluation) == upgraded
    old.dispose()


def _downgrade(database, revision):
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("rdmt_dagster.storage") / "migrations"))
    with database.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def test_views_show_history_and_failures_of_both_arms(database):
    """``metric_history`` keeps the detector apart from super-pixel 0; ``failures`` has only failed verdicts
    of each file's latest evaluation."""
    import sqlalchemy as sa

    old, ids, image = _results_database_0004(database)
    old.upgrade()
    with old.engine.connect() as conn:
        history = conn.execute(sa.text(
            "SELECT arm, filename, observed_at, monitor, value, unit FROM metric_history "
            "WHERE metric = 'dark_current_mean' AND scale = 'detector' AND region = 0 ORDER BY observed_at")
            .columns(observed_at=sa.DateTime)).all()
        superpixel = conn.execute(sa.text(
            "SELECT value FROM metric_history WHERE metric = 'dark_current_mean' AND scale = 'superpixel' "
            "AND region = 0 ORDER BY observed_at")).scalars().all()
        l2 = conn.execute(sa.text("SELECT arm, filename, metric, scale, region, value, delivery FROM metric_history "
                                  "WHERE arm = 'l2' ORDER BY scale, region")).all()
        failures = conn.execute(sa.text(
            "SELECT arm, filename, monitor, metric, scale, region, value, evaluator, threshold, reference, "
            "standards_hash FROM failures ORDER BY arm, filename, metric, evaluator")).all()
    assert [(r.arm, r.filename, r.observed_at, r.monitor, r.unit) for r in history] == [
        ("reference", "a.asdf", datetime(2027, 1, 1), "dark", "DN / s"),
        ("reference", "b.asdf", datetime(2027, 2, 1), "dark", "DN / s")]
    assert [r.value for r in history] == [pytest.approx(0.005), pytest.approx(0.009)]
    assert superpixel == [pytest.approx(0.007), pytest.approx(0.0071)]
    assert [tuple(r) for r in l2] == [("l2", "r1_WFI01_cal.asdf", "pixel_mean", "amp", 1, 11.0, "batch1"),
                                      ("l2", "r1_WFI01_cal.asdf", "pixel_mean", "detector", 0, 10.0, "batch1")]
    assert [tuple(r) for r in failures] == [
        ("l2", "r1_WFI01_cal.asdf", "pixel", "pixel_mean", "amp", 1, 11.0, "soc", 10.5, None, "h2"),
        ("reference", "b.asdf", "dark", "dark_current_mean", "detector", 0, pytest.approx(0.009), "change", 0.11,
         pytest.approx(0.005), "h1"),
        ("reference", "b.asdf", "dark", "dark_current_mean", "superpixel", 0, pytest.approx(0.0071), "trend", 5.0,
         None, "h1")]
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
    n, failed, not_evaluated = con.execute(
        "select count(*), count(*) filter (where not passed), count(*) filter (where passed is null) "
        f"from read_parquet('{tmp_path}/parquet/evaluations/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert n == sum(e.passed.size for e in result.evaluations) and failed == result.n_failed
    # A first file: change and trend could not run on the 2 x 1057 values the dark standards judge.
    assert not_evaluated == 2 * 2 * 1057 == result.n_not_evaluated


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


def test_query_indexes_upgrade_after_an_interrupted_attempt_and_downgrade(database):
    """Revision 0006 on a database where an earlier, interrupted upgrade left one of its indexes: it completes;
    downgraded, the three indexes are gone, and upgraded again they are back."""
    import sqlalchemy as sa

    database.dispose()
    old = Database(database.url)
    drop_schema(old)
    old.upgrade("0005")
    with old.engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX ix_l2_file_detector_time ON l2_file (detector, exposure_start)"))
    old.upgrade()

    def indexes() -> set[str]:
        inspector = sa.inspect(old.engine)
        return {ix["name"] for table in ("l2_file", "l2_measurement") for ix in inspector.get_indexes(table)}

    new = {"ix_l2_file_detector_time", "ix_l2_file_object", "ix_l2_measurement_latest"}
    assert new <= indexes()
    _downgrade(old, "0005")
    assert not new & indexes()
    old.upgrade()
    assert new <= indexes()
    old.dispose()
