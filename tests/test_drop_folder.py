"""Drop folder: ``*.asdf`` files copied into it are registered and handed off once, when complete."""

import os

import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.sensors import drop_folder_sensor
from rdmt_dagster.sensors.drop_folder import drop_folder, drop_folder_tick
from rdmt_dagster.submission import submit

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
