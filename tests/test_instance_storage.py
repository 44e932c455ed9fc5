"""Dagster instance storage in PostgreSQL, with the RDMT tables in MariaDB: a real deployment shape."""

import dagster as dg
import pytest
import sqlalchemy as sa

from rdmt_dagster.assets.reference_files import reference_file_partitions
from rdmt_dagster.definitions import REFERENCE_FILE_JOB, build_definitions
from rdmt_dagster.resources import RDMTConfig

from .helpers import run_batch

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_pipeline_on_postgres_instance_and_mariadb_tables(tmp_path, postgres_url, mariadb_url, dark_normal_pair, monkeypatch):
    url = sa.engine.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    monkeypatch.setenv("DAGSTER_PG_URL", url.render_as_string(hide_password=False))
    from pathlib import Path

    config = (Path(__file__).resolve().parents[1] / "deploy" / "dagster-postgres.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(config)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"

    rdmt = RDMTConfig(home=str(tmp_path / "home"), database_url=mariadb_url)
    database = rdmt.database()
    names = [p.name for p in dark_normal_pair]
    assert run_batch(build_definitions(rdmt), instance, database, list(dark_normal_pair)).success
    # A fresh instance object reads the run and the materialisations back from PostgreSQL.
    again = dg.DagsterInstance.from_config(str(tmp_path))
    runs = again.get_runs()
    assert [r.job_name for r in runs] == [REFERENCE_FILE_JOB] and runs[0].is_success
    assert set(again.get_materialized_partitions(dg.AssetKey("reference_file_evaluations"))) == set(names)
    assert set(again.get_dynamic_partitions(reference_file_partitions.name)) == set(names)
    assert database.count_rows("metric_value") == 2 * 8 * 1057
    assert database.failed_evaluations(names) == []
    assert "mysql" in database.engine.dialect.name or database.engine.dialect.name == "mariadb"
    instance.dispose()
    again.dispose()
