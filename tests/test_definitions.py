"""The whole code location loads, and its asset keys, checks, jobs, sensors and resources are the documented ones."""

import dagster as dg
import pytest

from rdmt_dagster.defs.l2.partitions import DAYS_AHEAD, l2_day_partitions
from rdmt_dagster.definitions import build_definitions
from rdmt_dagster.resources import RDMTConfig

ASSETS = {
    "reference_files", "reference_file_metrics", "reference_file_evaluations", "reference_file_reports",
    "reference_file_notifications",
    "l2_images", "l2_metrics", "l2_evaluations", "l2_reports", "l2_notifications",
}
CHECKS = {
    ("reference_file_evaluations", "evaluations_pass"), ("reference_file_evaluations", "files_readable"),
    ("l2_evaluations", "l2_evaluations_pass"), ("l2_evaluations", "l2_files_measured"),
}
JOBS = {"monitor_reference_files", "monitor_l2_images"}
SENSORS = {"crds_sensor", "registered_files_sensor", "drop_folder_sensor",
           "l2_sqs_sensor", "l2_s3_catchup_sensor", "l2_batch_sensor"}
RESOURCES = {"rdmt", "notifications", "l2", "metrics_io_manager", "evaluations_io_manager", "l2_io_manager",
             "l2_runner"}


@pytest.fixture(scope="module")
def repository():
    return build_definitions(RDMTConfig(home="unused")).get_repository_def()


def test_asset_keys_checks_jobs_sensors_and_resources_are_pinned(repository):
    graph = repository.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == CHECKS
    assert {j.name for j in repository.get_all_jobs() if not j.name.startswith("__")} == JOBS
    assert {s.name for s in repository.sensor_defs} == SENSORS
    assert set(repository.get_top_level_resources()) == RESOURCES


def test_each_arm_has_its_group_and_the_l2_assets_are_daily(repository):
    graph = repository.asset_graph
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {g for k, g in groups.items() if k.startswith("l2_")} == {"l2_images"}
    assert {g for k, g in groups.items() if k.startswith("reference_")} == {"reference_files"}
    for key in ("l2_images", "l2_metrics", "l2_evaluations", "l2_reports", "l2_notifications"):
        assert graph.get(dg.AssetKey(key)).partitions_def == l2_day_partitions


def test_l2_partitions_are_days_and_include_today_and_simulated_seasons():
    from datetime import date, timedelta

    keys = l2_day_partitions.get_partition_keys()
    today = date.today()
    assert today.isoformat() in keys
    assert "2027-03-20" in keys  # romanisim's and the demo's bulge season
    first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
    assert len(keys) == (last - first).days + 1  # one per day, whatever the number of files
    assert last >= today + timedelta(days=DAYS_AHEAD)


def test_five_years_of_l2_partitions_stay_within_2000_keys():
    from datetime import datetime

    five_years_on = datetime(2031, 9, 1)  # five years after the first day, 2026-09-01
    days = (five_years_on - datetime(2026, 9, 1)).days + 1  # both ends included
    assert len(l2_day_partitions.get_partition_keys(current_time=five_years_on)) == days + DAYS_AHEAD <= 2000


def test_sensor_defaults_follow_the_environment(monkeypatch):
    import importlib

    import rdmt_dagster.defs.l2.sensors as sensors

    status = {s.name: s.default_status for s in sensors.SENSORS}
    assert status["l2_batch_sensor"] == dg.DefaultSensorStatus.RUNNING
    assert status["l2_s3_catchup_sensor"] == dg.DefaultSensorStatus.STOPPED
    monkeypatch.setenv("RDMT_L2_QUEUE_URL", "http://127.0.0.1:1/queue/l2")
    try:
        reloaded = importlib.reload(sensors)
        assert {s.name: s.default_status for s in reloaded.SENSORS}["l2_sqs_sensor"] == dg.DefaultSensorStatus.RUNNING
        monkeypatch.delenv("RDMT_L2_QUEUE_URL")
        reloaded = importlib.reload(sensors)
        assert {s.name: s.default_status for s in reloaded.SENSORS}["l2_sqs_sensor"] == dg.DefaultSensorStatus.STOPPED
    finally:
        importlib.reload(sensors)
