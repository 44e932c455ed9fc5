"""Concurrent writers of one file: two runs of the same delivery at once store one set of rows.

Each writer has its own `Database` (its own engine and connections), as two
run processes or two worker processes of the IO managers would, on SQLite,
PostgreSQL and MariaDB.
"""

import multiprocessing
import threading
from datetime import datetime

import pytest
import sqlalchemy as sa

from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import HEAD_REVISION, Database, sqlite_url

from .test_storage import make_set

ROUNDS = 3


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "rdmt.db")
    request.applymarker(pytest.mark.server)
    return request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mariadb_url")


@pytest.fixture
def writers(url):
    """Two migrated databases on one URL, standing for two processes."""
    databases = [Database(url) for _ in range(2)]
    databases[0].upgrade()
    databases[1].upgrade()
    yield databases
    for database in databases:
        database.dispose()


def at_once(*calls) -> list[BaseException]:
    """Start ``calls`` in threads released together; return what they raised."""
    barrier = threading.Barrier(len(calls))
    raised = []

    def run(call):
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            raised.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a writer is still blocked"
    return raised


def test_metrics_of_a_new_file_written_twice_at_once(writers):
    sets = [make_set(f"roman_wfi_dark_{i:04d}.asdf", "WFI01", datetime(2027, 1, 1 + i), 0.005)
            for i in range(ROUNDS)]
    for metric_set in sets:
        assert at_once(*(lambda db=db: db.write_metrics(metric_set) for db in writers)) == []
    assert writers[0].count_rows("reference_file") == ROUNDS
    assert writers[0].count_rows("metric_value") == ROUNDS * (1057 * 2 + 33)
    assert writers[0].load_metric_set(sets[-1].info.filename).ok


def test_evaluations_of_a_file_written_twice_at_once(writers):
    first = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    writers[0].write_metrics(first)
    standards = Standards().for_monitor("dark")
    for i in range(ROUNDS):
        metric_set = make_set(f"roman_wfi_dark_{i + 2:04d}.asdf", "WFI01", datetime(2027, 2, 1 + i), 0.009)
        writers[0].write_metrics(metric_set)
        result = evaluate(metric_set, standards, writers[0].history())

        def store(database, result=result, version=metric_set.monitor_version):
            database.write_standards(standards)
            database.write_evaluations(result, version)

        assert at_once(*(lambda db=db: store(db) for db in writers)) == []
    n_rows = sum(e.passed.size for e in result.evaluations)
    assert writers[0].count_rows("evaluation") == ROUNDS * n_rows
    assert writers[0].count_rows("evaluation_run") == ROUNDS
    assert writers[0].count_rows("standards") == 1


def test_metrics_and_evaluations_of_one_file_at_once(writers):
    """A run storing metrics while another stores evaluations of the same file."""
    metric_set = make_set("roman_wfi_dark_0001.asdf", "WFI01", datetime(2027, 1, 1), 0.005)
    writers[0].write_metrics(metric_set)
    standards = Standards().for_monitor("dark")
    writers[0].write_standards(standards)
    result = evaluate(metric_set, standards)
    for _ in range(ROUNDS):
        assert at_once(lambda: writers[0].write_metrics(metric_set),
                       lambda: writers[1].write_evaluations(result, metric_set.monitor_version)) == []
    assert writers[0].count_rows("metric_value") == 1057 * 2 + 33
    assert writers[0].count_rows("evaluation") == sum(e.passed.size for e in result.evaluations)


def test_one_file_registered_twice_at_once(writers):
    for i in range(ROUNDS):
        name = f"roman_wfi_dark_{i:04d}.asdf"
        assert at_once(*(lambda db=db: db.register(name, f"/in/{name}", "ab" * 32) for db in writers)) == []
    assert writers[0].count_rows("reference_file") == ROUNDS


def _upgrade(url: str, barrier, problems) -> None:
    """Body of one upgrading process: wait for the other, then upgrade."""
    database = Database(url)
    barrier.wait()
    try:
        database.upgrade()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        problems.put(repr(exc))
    finally:
        database.dispose()


def test_schema_upgraded_by_two_processes_at_once(url):
    """Every process opening the database upgrades it; the first deployment starts several."""
    spawn = multiprocessing.get_context("spawn")
    barrier, problems = spawn.Barrier(2), spawn.Queue()
    processes = [spawn.Process(target=_upgrade, args=(url, barrier, problems)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0, 0]
    assert problems.empty(), problems.get()
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("select version_num from rdmt_alembic_version")).scalar() == HEAD_REVISION
        database.register("x.asdf", "/in/x.asdf", "ab" * 32)
    finally:
        database.dispose()
