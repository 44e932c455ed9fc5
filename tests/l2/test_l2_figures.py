"""The L2 arm in the Dagster UI: each day's materialisation and check results name its failing images.

Reuses the end-to-end fixtures of `test_l2_dagster` (moto S3/SNS/SQS, three
full-size synthetic images, one with injected 1/f noise) in a fresh instance.
The expected figures are read back from the L2 tables.
"""

import dagster as dg
import pytest
import sqlalchemy as sa

from rdmt_dagster.defs.l2.assets import L2_EVALUATIONS_PASS, L2_FILES_MEASURED
from rdmt_dagster.storage.l2_tables import l2_file, l2_measurement, l2_metric_value

from .test_l2_dagster import DAY, arm, aws, images  # noqa: F401  (module-scoped fixtures, run again here)

pytestmark = pytest.mark.slow


def _stored(rdmt):
    with rdmt.database().engine.connect() as conn:
        failed = conn.execute(sa.select(l2_file.c.filename, sa.func.sum(l2_measurement.c.n_failed))
                              .join(l2_measurement, l2_measurement.c.file_id == l2_file.c.id)
                              .group_by(l2_file.c.filename)).all()
        excess = conn.execute(sa.select(l2_file.c.filename, l2_metric_value.c.value)
                              .join(l2_metric_value, l2_metric_value.c.file_id == l2_file.c.id)
                              .where((l2_metric_value.c.metric == "detector_noise_1f_excess"))).all()
    return {f: int(n or 0) for f, n in failed}, dict(excess)


def _day_materialization(run, asset: str):
    (event,) = [e for e in run.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    assert event.materialization.partition == DAY
    return event.materialization.metadata


def test_the_days_materialisation_names_the_failing_image_with_value_and_limit(arm):
    failed, excess = _stored(arm["rdmt"])
    failing = [name for name, n in failed.items() if n]
    assert len(failing) == 1 and "WFI07" in failing[0]
    meta = _day_materialization(arm["runs"][0], "l2_evaluations")
    assert meta["images_evaluated"].value == 3
    assert meta["failed_evaluations"].value == sum(failed.values())
    assert meta["images_with_failures"].value == 1
    table = meta["failing_images"].value
    rows = [line for line in table.splitlines() if "`noise_1f_excess`" in line and "| detector |" in line]
    assert rows  # one row per evaluator that failed it
    assert all(failing[0] in row and f"{excess[failing[0]]:.4g}" in row for row in rows)
    assert meta["day_page"].value == str(arm["home"] / "reports" / "l2" / DAY / "index.html")
    assert all(name not in table for name in failed if name not in failing)


def test_the_days_check_results_cover_the_whole_day(arm):
    failed, _ = _stored(arm["rdmt"])
    failing = next(name for name, n in failed.items() if n)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
              for e in arm["runs"][0].all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    passing = checks[L2_EVALUATIONS_PASS]
    assert passing.partition == DAY and not passing.passed
    assert passing.metadata["images"].value == 3 and passing.metadata["failed_evaluations"].value == failed[failing]
    assert failing in passing.description and "noise_1f" in passing.description
    assert {r["file"] for r in passing.metadata["failing_images_json"].value} == {failing}
    assert checks[L2_FILES_MEASURED].passed and checks[L2_FILES_MEASURED].partition == DAY


def test_the_run_is_tagged_and_the_report_links_to_the_day_page(arm):
    failed, _ = _stored(arm["rdmt"])
    run = arm["runs"][0]
    tags = arm["instance"].get_run_by_id(run.run_id).tags
    assert tags["rdmt/failures"] == "true" and tags["rdmt/failed_evaluations"] == str(sum(failed.values()))
    assert tags["rdmt/files_with_failures"] == "1" and tags["rdmt/files_not_monitored"] == "0"
    assert tags["rdmt/failing_files"] == next(name for name, n in failed.items() if n)
    report = _day_materialization(run, "l2_reports")
    assert report["day_page"].value == str(arm["home"] / "reports" / "l2" / DAY / "index.html")
    assert (report["images"].value, report["images_failing"].value) == (3, 1)
