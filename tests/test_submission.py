"""The RFP hand-off: ``submit`` registers, `registered_files_sensor` requests the runs."""

from datetime import datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.sensors import registered_files_sensor
from rdmt_dagster.sensors.handoff import RANGE_END, RANGE_START
from rdmt_dagster.sensors.registered import registered_tick
from rdmt_dagster.storage import tables as t
from rdmt_dagster.submission import SubmissionError, register_files, submit

PARTITIONS = reference_file_partitions.name


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(1, 4):
        (folder / f"roman_wfi_dark_000{i}.asdf").write_bytes(b"#ASDF 1.0.0\n")
    return folder


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(instance, home, cursor=None, grace_seconds=0.0):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"rdmt": RDMTConfig(home=str(home))})
    result = registered_tick(context, context.resources.rdmt, grace_seconds=grace_seconds)
    if isinstance(result, dg.SkipReason):
        return result, cursor
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, result.cursor


def test_submitting_twice_registers_once(home, files):
    paths = sorted(files.iterdir())
    assert submit(paths, str(home)) == [p.name for p in paths]
    assert submit([paths[0], paths[0]], RDMTConfig(home=str(home))) == [paths[0].name]
    database = RDMTConfig(home=str(home)).database()
    assert database.count_rows("reference_file") == 3
    status = database.file_status(paths[0].name)
    assert status["status"] == "registered" and status["path"] == str(paths[0].resolve())


def test_missing_file_is_named_and_nothing_is_registered(home, files):
    database = RDMTConfig(home=str(home)).database()
    good = files / "roman_wfi_dark_0001.asdf"
    with pytest.raises(FileNotFoundError, match="roman_wfi_dark_0099.asdf"):
        register_files([good, files / "roman_wfi_dark_0099.asdf"], database)
    with pytest.raises(SubmissionError, match="not a regular file"):
        register_files([files], database)
    other = files / "sub"
    other.mkdir()
    (other / good.name).write_bytes(b"x")
    with pytest.raises(SubmissionError, match="names must be unique"):
        register_files([good, other / good.name], database)
    assert database.count_rows("reference_file") == 0


def test_registered_files_are_handed_off_once(home, files, instance):
    paths = sorted(files.iterdir())
    names = submit(paths[:2], str(home))
    result, cursor = tick(instance, home)
    assert [k for r in result.dynamic_partitions_requests for k in r.partition_keys] == names
    (run,) = result.run_requests
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (names[0], names[1])
    assert instance.get_dynamic_partitions(PARTITIONS) == names

    # Resubmitting changes nothing; a restart with the cursor finds nothing.
    submit(paths[:2], str(home))
    result, cursor = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason)

    # A third file: only it.
    submit([paths[2]], str(home))
    result, cursor = tick(instance, home, cursor)
    (run,) = result.run_requests
    assert run.tags[RANGE_START] == run.tags[RANGE_END] == paths[2].name
    assert instance.get_dynamic_partitions(PARTITIONS) == [p.name for p in paths]
    assert cursor == "3"


def test_files_measured_or_already_partitions_are_passed_over(home, files, instance):
    paths = sorted(files.iterdir())
    database = RDMTConfig(home=str(home)).database()
    submit(paths, str(home))
    with database.engine.begin() as conn:  # measured already (e.g. by rdmt check)
        conn.execute(t.reference_file.update().where(t.reference_file.c.filename == paths[0].name)
                     .values(status="ok"))
    instance.add_dynamic_partitions(PARTITIONS, [paths[1].name])  # handed off by another sensor
    result, cursor = tick(instance, home)
    assert [k for r in result.dynamic_partitions_requests for k in r.partition_keys] == [paths[2].name]
    assert len(result.run_requests) == 1 and cursor == "3"


def test_fresh_registrations_wait_for_the_grace_period(home, files, instance):
    paths = sorted(files.iterdir())
    submit(paths[:1], str(home))
    database = RDMTConfig(home=str(home)).database()
    with database.engine.begin() as conn:
        conn.execute(t.reference_file.update().where(t.reference_file.c.id == 1)
                     .values(registered_at=datetime.utcnow() - timedelta(minutes=5)))
    submit(paths[1:], str(home))
    result, cursor = tick(instance, home, grace_seconds=60)
    assert [k for r in result.dynamic_partitions_requests for k in r.partition_keys] == [paths[0].name]
    assert cursor == "1"
    with database.engine.begin() as conn:
        conn.execute(t.reference_file.update().where(t.reference_file.c.id > 1)
                     .values(registered_at=sa.func.datetime("now", "-5 minutes")))
    result, cursor = tick(instance, home, cursor, grace_seconds=60)
    assert [k for r in result.dynamic_partitions_requests for k in r.partition_keys] == [p.name for p in paths[1:]]


def test_sensor_definition_targets_the_job(home):
    assert registered_files_sensor.job_name == "monitor_reference_files"
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                      resources={"rdmt": RDMTConfig(home=str(home))})
    assert isinstance(registered_files_sensor(context), dg.SkipReason)
