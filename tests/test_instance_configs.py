"""The Dagster instance configurations: the embedded default, PostgreSQL and ECS.

Each file is checked against Dagster's own instance schema (and each
configurable class's block against that class's schema); the production
variants are then loaded as real instances on the machine's PostgreSQL and
the queue's decision is taken by the daemon's own code on runs tagged as
ours, so the limits are shown to be in force, not only written down.
"""

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from .conftest import moto_on_loopback

ROOT = Path(__file__).resolve().parents[1]
FILES = {"embedded": ROOT / "dagster.yaml", "postgresql": ROOT / "deploy" / "dagster-postgres.yaml",
         "ecs": ROOT / "deploy" / "dagster-ecs.yaml"}
ECS_ENV = {
    "DAGSTER_ECS_RUN_TASK_DEFINITION": "rdmt-run",
    "DAGSTER_PG_URL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster-pg-AbCdEf",
    "RDMT_DATABASE_URL_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rdmt-db-AbCdEf",
    "DAGSTER_COMPUTE_LOG_BUCKET": "rdmt-compute-logs",
}
LIMITS = [{"key": "rdmt/arm", "value": "l2", "limit": 2}, {"key": "rdmt/arm", "value": "reference", "limit": 2},
          {"key": "dagster/backfill", "limit": 1}]


def _set_env(monkeypatch, pg_url="postgresql+psycopg2://postgres@127.0.0.1:5432/dagster"):
    monkeypatch.setenv("DAGSTER_PG_URL", pg_url)
    for name, value in ECS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", sorted(FILES))
def test_instance_files_pass_dagsters_instance_schema(name, tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    _set_env(monkeypatch)
    shutil.copy(FILES[name], tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["run_retries"] == {"enabled": True, "max_retries": 3, "retry_on_asset_or_op_failure": True}


@pytest.mark.parametrize("name", ["postgresql", "ecs"])
def test_each_configurable_class_block_passes_its_class_schema(name, monkeypatch):
    """The run coordinator, run launcher and compute log blocks, checked as each class will read them."""
    import importlib

    from dagster._config import process_config

    _set_env(monkeypatch)
    config = yaml.safe_load(FILES[name].read_text())
    blocks = [key for key in ("run_coordinator", "run_launcher", "compute_logs") if key in config]
    assert blocks == (["run_coordinator"] if name == "postgresql" else ["run_coordinator", "run_launcher", "compute_logs"])
    for key in blocks:
        cls = getattr(importlib.import_module(config[key]["module"]), config[key]["class"])
        result = process_config(cls.config_type(), config[key]["config"])
        assert result.success, (key, result.errors)
    if name == "ecs":
        launcher = process_config(_ecs_launcher().config_type(), config["run_launcher"]["config"]).value
        assert launcher["task_definition"] == {"env": "DAGSTER_ECS_RUN_TASK_DEFINITION"}
        assert [s["valueFrom"] for s in launcher["secrets"]] == [ECS_ENV["DAGSTER_PG_URL_SECRET_ARN"],
                                                                 ECS_ENV["RDMT_DATABASE_URL_SECRET_ARN"]]


def _ecs_launcher():
    from dagster_aws.ecs import EcsRunLauncher

    return EcsRunLauncher


def test_production_files_share_queue_limits_and_retries():
    postgres, ecs = (yaml.safe_load(FILES[name].read_text()) for name in ("postgresql", "ecs"))
    for key in ("storage", "run_coordinator", "concurrency", "run_retries"):
        assert postgres[key] == ecs[key], key
    assert postgres["concurrency"]["runs"]["tag_concurrency_limits"] == LIMITS


# ----------------------------------------------------------------------------- on PostgreSQL


def _pg_instance(postgres_url, tmp_path, monkeypatch, name: str) -> dg.DagsterInstance:
    url = sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    _set_env(monkeypatch, url.render_as_string(hide_password=False))
    shutil.copy(FILES[name], tmp_path / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(tmp_path))


def _queue(instance, name: str, **tags) -> str:
    """A run of the ``rdmt`` code location, queued with ``tags`` (as a sensor or the UI would submit it)."""
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    job = "monitor_l2_images" if tags.get("rdmt/arm") == "l2" else "monitor_reference_files"
    origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("rdmt"), "__repository__").get_job_origin(job)
    run_id = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name=job, run_id=run_id, status=DagsterRunStatus.QUEUED,
                                tags={"name": name, **tags}, remote_job_origin=origin))
    return run_id


@pytest.mark.server
def test_postgres_instance_queues_runs_under_the_limits(postgres_url, tmp_path, monkeypatch):
    from dagster._core.instance.config import PoolGranularity
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    pytest.importorskip("dagster_postgres")
    instance = _pg_instance(postgres_url, tmp_path, monkeypatch, "postgresql")
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.dequeue_interval_seconds == 5
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == 4 and queue.tag_concurrency_limits == LIMITS
        assert queue.max_user_code_failure_retries == 3 and queue.user_code_failure_retry_delay == 60
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 3
        assert instance.run_retries_retry_on_asset_or_op_failure
        assert {"QUEUED_RUN_COORDINATOR", "EVENT_LOG_CONSUMER"} <= set(instance.get_required_daemon_types())

        # In queue order; with at most 2 runs per arm, 1 backfill run and 4 runs in all,
        # the daemon launches L1, L2 (arm l2 full: L3 waits), B1 (the backfill slot: B2
        # waits), R1 (arm reference full) and then nothing more (four runs): U waits.
        names = [("L1", {"rdmt/arm": "l2"}), ("L2", {"rdmt/arm": "l2"}), ("L3", {"rdmt/arm": "l2"}),
                 ("B1", {"rdmt/arm": "reference", "dagster/backfill": "b1"}),
                 ("B2", {"rdmt/arm": "reference", "dagster/backfill": "b2"}),
                 ("R1", {"rdmt/arm": "reference"}), ("U", {})]
        for name, tags in names:
            _queue(instance, name, **tags)
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=coordinator.dequeue_interval_seconds)
        chosen = daemon._get_runs_to_dequeue(instance, concurrency, fixed_iteration_time=None)  # noqa: SLF001
        assert [run.tags["name"] for run in chosen] == ["L1", "L2", "B1", "R1"]
    finally:
        instance.dispose()


@pytest.mark.server
def test_ecs_instance_builds_its_launcher_and_log_manager(postgres_url, tmp_path, monkeypatch):
    """The ECS file as a real instance: EcsRunLauncher and S3ComputeLogManager against moto."""
    import boto3

    pytest.importorskip("dagster_aws")
    with moto_on_loopback() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3").create_bucket(Bucket=ECS_ENV["DAGSTER_COMPUTE_LOG_BUCKET"])
        arn = boto3.client("ecs").register_task_definition(
            family="rdmt-run", containerDefinitions=[{"name": "run", "image": "rdmt:latest", "memory": 8192}],
        )["taskDefinition"]["taskDefinitionArn"]
        instance = _pg_instance(postgres_url, tmp_path, monkeypatch, "ecs")
        try:
            launcher = instance.run_launcher
            assert type(launcher).__name__ == "EcsRunLauncher"
            assert launcher.task_definition == arn  # looked up in ECS when the launcher was built
            assert launcher.container_name == "run" and launcher.use_current_ecs_task_config
            assert [s["valueFrom"] for s in launcher.secrets] == [ECS_ENV["DAGSTER_PG_URL_SECRET_ARN"],
                                                                  ECS_ENV["RDMT_DATABASE_URL_SECRET_ARN"]]
            assert launcher.secrets_tags == [] and launcher.run_resources == {"cpu": "2048", "memory": "8192"}
            logs = instance.compute_log_manager
            assert type(logs).__name__ == "S3ComputeLogManager"
            assert logs._s3_bucket == ECS_ENV["DAGSTER_COMPUTE_LOG_BUCKET"]  # noqa: SLF001
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == LIMITS
            assert instance.run_retries_max_retries == 3
            assert "MONITORING" in instance.get_required_daemon_types()  # tasks that never start fail
        finally:
            instance.dispose()
