"""Drop folder: ``*.asdf`` files copied into it are registered and handed off once, when complete."""

import os
import re

import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.science.measure import MeasureRequest, measure_file, parameters_of
from rdmt_dagster.science.metrics import MetricSet
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.sensors import drop_folder_sensor
from rdmt_dagster.sensors.drop_folder import drop_folder, drop_folder_tick
from rdmt_dagster.submission import file_checksum, submit

PARTITIONS = reference_file_partitions.name


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("RDMT_DROPBOX", raising=False)
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        yield home, home / "dropbox", instance


def tick(instance, home, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"rdmt": RDMTConfig(home=str(home))})
    result = drop_folder_sensor(context)
    if isinstance(result, dg.SkipReason):
        return result, cursor
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, result.cursor


def keys(result):
    return [] if isinstance(result, dg.SkipReason) else [
        k for r in result.dynamic_partitions_requests for k in r.partition_keys]


def test_default_folder_and_override(env, monkeypatch, tmp_path):
    home, box, _ = env
    assert drop_folder(RDMTConfig(home=str(home))) == box.resolve()
    monkeypatch.setenv("RDMT_DROPBOX", str(tmp_path / "elsewhere"))
    assert drop_folder(RDMTConfig(home=str(home))) == (tmp_path / "elsewhere").resolve()


def test_new_file_is_picked_up_once(env):
    home, box, instance = env
    result, cursor = tick(instance, home)  # creates the folder
    assert box.is_dir() and keys(result) == []
    (box / "roman_wfi_dark_0001.asdf").write_bytes(b"#ASDF 1.0.0\n" * 10)
    (box / "roman_wfi_dark_0002.asdf.part").write_bytes(b"#ASDF")  # still being copied
    (box / "notes.txt").write_text("not a reference file")

    result, cursor = tick(instance, home, cursor)  # seen once: not yet known to be complete
    assert keys(result) == [] and result.run_requests == []
    result, cursor = tick(instance, home, cursor)
    assert keys(result) == ["roman_wfi_dark_0001.asdf"]
    (run,) = result.run_requests
    assert run.tags["dagster/asset_partition_range_start"] == "roman_wfi_dark_0001.asdf"
    status = RDMTConfig(home=str(home)).database().file_status("roman_wfi_dark_0001.asdf")
    assert status["path"] == str((box / "roman_wfi_dark_0001.asdf").resolve())
    assert status["delivered_by"] == "drop_folder"
    assert re.fullmatch(r"drop_folder:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["delivery"])

    for _ in range(2):  # and never again
        result, cursor = tick(instance, home, cursor)
        assert keys(result) == [] and (isinstance(result, dg.SkipReason) or not result.run_requests)
    assert instance.get_dynamic_partitions(PARTITIONS) == ["roman_wfi_dark_0001.asdf"]

    # the .part file completes and is renamed
    os.rename(box / "roman_wfi_dark_0002.asdf.part", box / "roman_wfi_dark_0002.asdf")
    _, cursor = tick(instance, home, cursor)
    result, cursor = tick(instance, home, cursor)
    assert keys(result) == ["roman_wfi_dark_0002.asdf"]


def test_growing_file_waits_until_stable(env):
    home, box, instance = env
    box.mkdir(parents=True)
    path = box / "roman_wfi_dark_0003.asdf"
    path.write_bytes(b"")  # created empty
    result, cursor = tick(instance, home)
    result, cursor = tick(instance, home, cursor)
    assert keys(result) == []  # an empty file is never complete
    for size in (100, 200, 300):
        with open(path, "ab") as handle:
            handle.write(b"x" * size)
        result, cursor = tick(instance, home, cursor)
        assert keys(result) == []
    result, cursor = tick(instance, home, cursor)  # unchanged since the last tick
    assert keys(result) == ["roman_wfi_dark_0003.asdf"]


def test_name_already_registered_elsewhere_is_not_taken(env, tmp_path):
    home, box, instance = env
    elsewhere = tmp_path / "roman_wfi_dark_0004.asdf"
    elsewhere.write_bytes(b"#ASDF")
    submit([elsewhere], str(home))
    box.mkdir(parents=True)
    (box / elsewhere.name).write_bytes(b"#ASDF other")
    result, cursor = tick(instance, home)
    result, cursor = tick(instance, home, cursor)
    assert keys(result) == []
    database = RDMTConfig(home=str(home)).database()
    assert database.file_status(elsewhere.name)["path"] == str(elsewhere.resolve())
    assert database.count_rows("reference_file") == 1


def test_tick_function_accepts_a_folder(env, tmp_path):
    home, _, instance = env
    folder = tmp_path / "incoming"
    context = dg.build_sensor_context(instance=instance, resources={"rdmt": RDMTConfig(home=str(home))})
    result = drop_folder_tick(context, context.resources.rdmt, folder=folder)
    assert folder.is_dir() and not result.run_requests


def measure(home, path):
    """What the run of a taken file stores: its metrics, or the error that stopped them."""
    (result,) = measure_file(MeasureRequest(str(path), parameters_of(Standards())))
    RDMTConfig(home=str(home)).database().write_metrics(result)
    return result


def take(instance, home, cursor=None):
    """Two ticks: what a file stable over them gives."""
    _, cursor = tick(instance, home, cursor)
    return tick(instance, home, cursor)


def runs(result):
    return [] if isinstance(result, dg.SkipReason) else list(result.run_requests)


@pytest.fixture
def stalled(env):
    """A copy that stalled for two ticks, was taken and failed as truncated."""
    home, box, instance = env
    box.mkdir(parents=True)
    path = box / "roman_wfi_dark_0005.asdf"
    path.write_bytes(b"#ASDF 1.0.0\n%YAML 1.1\n--- !core/asdf-1.1.0\nroman: !<tag:stsci.edu:asdf")  # cut short
    result, cursor = take(instance, home)
    (first,) = runs(result)
    assert not measure(home, path).ok
    return home, path, instance, cursor, first


def test_stalled_copy_that_failed_is_taken_again_once_complete(stalled, dark_normal_pair):
    home, path, instance, cursor, first = stalled
    database = RDMTConfig(home=str(home)).database()
    for _ in range(2):  # failed and unchanged: not taken again
        result, cursor = tick(instance, home, cursor)
        assert runs(result) == []

    path.write_bytes(dark_normal_pair[0].read_bytes())  # the copy completes
    result, cursor = tick(instance, home, cursor)
    assert runs(result) == []  # changed: complete only once stable
    result, cursor = tick(instance, home, cursor)
    (again,) = runs(result)
    assert keys(result) == [] and again.run_key != first.run_key
    assert again.tags["dagster/asset_partition_range_start"] == path.name
    status = database.file_status(path.name)
    assert (status["status"], status["error"], status["version"], status["checksum"]) == (
        "registered", None, 2, file_checksum(path))

    assert measure(home, path).ok  # the run measures the complete file
    status = database.file_status(path.name)
    assert (status["status"], status["error"]) == ("ok", None) and database.count_rows("metric_value") > 0
    for _ in range(2):
        result, cursor = tick(instance, home, cursor)
        assert runs(result) == []
    assert database.count_rows("reference_file") == 1
    assert instance.get_dynamic_partitions(PARTITIONS) == [path.name]


def test_changed_file_whose_run_is_pending_is_taken_again_if_it_fails(env):
    home, box, instance = env
    box.mkdir(parents=True)
    path = box / "roman_wfi_dark_0006.asdf"
    path.write_bytes(b"#ASDF 1.0")
    _, cursor = take(instance, home)
    with open(path, "ab") as handle:
        handle.write(b" more")
    _, cursor = tick(instance, home, cursor)
    for _ in range(2):  # no result yet: looked at again on every tick
        result, cursor = tick(instance, home, cursor)
        assert runs(result) == []
    measure(home, path)  # its run read the file after all, and failed
    result, cursor = tick(instance, home, cursor)
    (again,) = runs(result)
    assert again.run_key.endswith(":v2")
    assert RDMTConfig(home=str(home)).database().file_status(path.name)["status"] == "registered"


def test_a_lost_request_to_take_a_file_again_is_repeated(stalled):
    """A tick evaluated again from the previous cursor (the daemon stopped before storing it)."""
    home, path, instance, cursor, _ = stalled
    with open(path, "ab") as handle:
        handle.write(b" the rest")
    _, cursor = tick(instance, home, cursor)
    before = cursor
    result, _ = tick(instance, home, before)
    (again,) = runs(result)
    result, _ = tick(instance, home, before)
    assert runs(result) == [again]


def test_file_changed_after_it_was_monitored_is_not_taken_again(env, capfd):
    home, box, instance = env
    box.mkdir(parents=True)
    path = box / "roman_wfi_dark_0007.asdf"
    path.write_bytes(b"#ASDF 1.0")
    _, cursor = take(instance, home)
    database = RDMTConfig(home=str(home)).database()
    database.write_metrics(MetricSet(database.load_metric_set(path.name).info, "1.0.0"))  # measured, no error
    path.write_bytes(b"#ASDF 1.0 other content")
    result, cursor = take(instance, home, cursor)
    assert runs(result) == []
    assert f"{path} changed after it was monitored" in capfd.readouterr().err
    status = database.file_status(path.name)
    assert (status["status"], status["version"]) == ("ok", 1)
    result, cursor = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason)


def test_file_replaced_with_rdmt_submit_is_left_to_its_hand_off(stalled, capfd):
    home, path, instance, cursor, _ = stalled
    with open(path, "ab") as handle:
        handle.write(b" the rest")
    submit([path], str(home), replace=True)
    result, cursor = take(instance, home, cursor)
    assert runs(result) == [] and "changed after" not in capfd.readouterr().err
    assert RDMTConfig(home=str(home)).database().file_status(path.name)["status"] == "replaced"
    result, cursor = tick(instance, home, cursor)
    assert isinstance(result, dg.SkipReason)
