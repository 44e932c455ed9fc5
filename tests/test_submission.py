"""The RFP hand-off: ``submit`` registers, `registered_files_sensor` requests the runs."""

import hashlib
import re
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from rdmt_dagster import cli
from rdmt_dagster.assets.reference_files import _stored_if_current, reference_file_partitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.sensors import registered_files_sensor
from rdmt_dagster.sensors.handoff import RANGE_END, RANGE_START
from rdmt_dagster.sensors.registered import registered_tick
from rdmt_dagster.storage import tables as t
from rdmt_dagster.submission import (
    ContentChangedError,
    SubmissionError,
    file_checksum,
    hand_off_replaced,
    register_files,
    submit,
)

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


def measured(database, path, level=0.005):
    """Store metrics for the file at ``path``, as its run would."""
    info = ReferenceFileInfo(path.name, str(path), "dark", "WFI01", datetime(2027, 1, 1), "DARK")
    values = ScaleValues(np.array([level]), np.full(32, level), np.full(1024, level))
    database.write_metrics(MetricSet(info, "1.0.0", [Metric("dark_current_mean", "DN / s", values)]))


@pytest.fixture
def monitored(home, files):
    """A submitted file that was measured, and another file of the same name with other content."""
    path = files / "roman_wfi_dark_0001.asdf"
    submit([path], str(home))
    database = RDMTConfig(home=str(home)).database()
    measured(database, path)
    other = files / "other" / path.name
    other.parent.mkdir()
    other.write_bytes(b"#ASDF 1.0.0\nanother delivery\n")
    return database, path, other


def test_checksum_is_recorded_at_registration(home, files):
    path = files / "roman_wfi_dark_0001.asdf"
    submit([path], str(home))
    status = RDMTConfig(home=str(home)).database().file_status(path.name)
    assert status["checksum"] == file_checksum(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert status["version"] == 1


def test_changed_content_under_a_monitored_name_is_refused(monitored):
    database, path, other = monitored
    expected = f"cannot submit {other}: its content differs from the {path.name} already monitored"
    with pytest.raises(ContentChangedError, match=re.escape(expected)) as raised:
        register_files([other], database)
    assert "--replace" in str(raised.value)
    path.write_bytes(b"#ASDF 1.0.0\nrewritten in place\n")  # the same path, other content
    with pytest.raises(ContentChangedError, match="its content differs"):
        register_files([path], database)
    status = database.file_status(path.name)
    assert (status["path"], status["status"], status["version"]) == (str(path), "ok", 1)
    assert database.count_rows("reference_file") == 1 and database.count_rows("metric_value") == 1057


def test_a_refused_file_leaves_the_other_files_unregistered(monitored, files):
    database, _, other = monitored
    new = files / "roman_wfi_dark_0002.asdf"
    with pytest.raises(ContentChangedError):
        register_files([new, other], database)
    assert database.paths([new.name]) == {}


def test_rdmt_submit_of_changed_content_exits_2_naming_the_file(monitored, home, monkeypatch, capsys):
    _, path, other = monitored
    monkeypatch.setenv("RDMT_HOME", str(home))
    monkeypatch.delenv("RDMT_DATABASE_URL", raising=False)
    assert cli.main(["submit", str(other)]) == 2
    captured = capsys.readouterr()
    assert str(other) in captured.err and "content differs" in captured.err and "registered" not in captured.out


def test_same_content_from_another_path_is_harmless(monitored):
    database, path, _ = monitored
    copy = path.parent / "copy" / path.name
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert register_files([copy], database) == [path.name]
    status = database.file_status(path.name)
    assert (status["path"], status["status"], status["version"]) == (str(copy), "ok", 1)
    assert database.count_rows("reference_file") == 1 and database.count_rows("metric_value") == 1057


def test_replace_registers_a_new_version_that_is_measured_again(monitored, instance):
    database, path, other = monitored
    assert register_files([other], database, replace=True) == [path.name]
    status = database.file_status(path.name)
    assert (status["path"], status["checksum"], status["status"], status["version"]) == (
        str(other), file_checksum(other), "replaced", 2)
    assert database.count_rows("metric_value") == 0  # the earlier content's results are replaced
    assert _stored_if_current(database, path.name, str(other)) is None  # its run measures it

    instance.add_dynamic_partitions(PARTITIONS, [path.name])
    adds, runs = hand_off_replaced(instance, database)
    (run,) = runs
    assert adds == [] and run.tags[RANGE_START] == run.tags[RANGE_END] == path.name
    assert run.run_key.endswith(":v2") and hand_off_replaced(instance, database)[1] == runs  # one run per version
    measured(database, other, level=0.007)
    assert hand_off_replaced(instance, database) == ([], [])
    assert database.load_metric_set(path.name).metrics[0].values.detector[0] == pytest.approx(0.007)


def test_replace_with_the_same_content_changes_nothing(monitored):
    database, path, _ = monitored
    register_files([path], database, replace=True)
    status = database.file_status(path.name)
    assert (status["status"], status["version"]) == ("ok", 1) and database.count_rows("metric_value") == 1057


def test_a_row_without_a_checksum_takes_it_from_its_file(home, files):
    """Rows registered before checksums were recorded."""
    path, gone = files / "roman_wfi_dark_0001.asdf", files / "roman_wfi_dark_0002.asdf"
    database = RDMTConfig(home=str(home)).database()
    database.register(path.name, str(path))
    database.register(gone.name, "/deliveries/old/" + gone.name)
    assert register_files([path], database) == [path.name]
    assert database.file_status(path.name)["checksum"] == file_checksum(path)
    with pytest.raises(ContentChangedError, match="cannot tell whether its content differs"):
        register_files([gone], database)
    register_files([gone], database, replace=True)
    status = database.file_status(gone.name)
    assert (status["path"], status["checksum"]) == (str(gone), file_checksum(gone))


def test_one_submit_is_one_delivery(home, files):
    """The files of one ``rdmt submit`` share one delivery, ``submit:<UTC time>``, with trigger ``submit``."""
    from rdmt_dagster.submission import submit_delivery

    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    names = submit([files / "roman_wfi_dark_0001.asdf", files / "roman_wfi_dark_0002.asdf"], home)
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    database = RDMTConfig(home=str(home)).database()
    rows = [database.file_status(name) for name in names]
    deliveries = {(row["delivery"], row["delivered_by"]) for row in rows}
    assert len(deliveries) == 1
    delivery, trigger = deliveries.pop()
    assert trigger == "submit" and re.fullmatch(r"submit:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", delivery)
    assert before <= datetime.strptime(delivery, "submit:%Y-%m-%dT%H:%M:%SZ") <= after
    submit([files / "roman_wfi_dark_0001.asdf"], home)  # the same content again: still its first delivery
    assert database.file_status(names[0])["delivery"] == delivery
    assert submit_delivery(datetime(2027, 3, 1, 12, 0, 5, 999)) == "submit:2027-03-01T12:00:05Z"
    eastern = timezone(timedelta(hours=-5))
    assert submit_delivery(datetime(2027, 3, 1, 7, 0, 5, tzinfo=eastern)) == "submit:2027-03-01T12:00:05Z"
