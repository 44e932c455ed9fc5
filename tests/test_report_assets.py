"""Dagster: metrics -> evaluations -> reports -> notifications in one run per delivery."""


import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import (
    reference_file_evaluations,
    reference_file_metrics,
    reference_file_partitions,
)
from rdmt_dagster.assets.reports import reference_file_notifications, reference_file_reports
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.resources.io_managers import EvaluationsIOManager, MetricsIOManager
from rdmt_dagster.resources.notifications import NotificationsConfig
from rdmt_dagster.synthetic import DarkAnomaly, dark_filename, write_dark
from .conftest import SlackWebhook

pytestmark = pytest.mark.slow

TOKEN = "hookSECRET9001"




def _metadata(result, asset_name):
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey(asset_name)]
    return events[-1].materialization.metadata


def test_reports_and_notifications_materialise(tmp_path):
    files = tmp_path / "incoming"
    paths = [
        write_dark(files / dark_filename(1, "WFI03"), "WFI03", 1, "2027-01-01T00:00:00"),
        write_dark(files / dark_filename(2, "WFI03"), "WFI03", 2, "2027-02-01T00:00:00", DarkAnomaly(9, 2, 4.0)),
        write_dark(files / dark_filename(2, "WFI04"), "WFI04", 2, "2027-02-01T00:00:00"),
    ]
    names = [p.name for p in paths]
    home = tmp_path / "home"
    rdmt = RDMTConfig(home=str(home))
    database = rdmt.database()
    for p in paths:
        database.register(p.name, str(p))
    hook = SlackWebhook(TOKEN)
    resources = {
        "rdmt": rdmt,
        "metrics_io_manager": MetricsIOManager(rdmt=rdmt),
        "evaluations_io_manager": EvaluationsIOManager(rdmt=rdmt),
        "notifications": NotificationsConfig(channels=["log", "slack"], slack_webhook_url=hook.url,
                                             backoff_seconds=0.05),
    }
    assets = [reference_file_metrics, reference_file_evaluations, reference_file_reports, reference_file_notifications]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(reference_file_partitions.name, names)
    try:
        # Delivery 1: one clean file -> a report, no message.
        first = dg.materialize(assets, instance=instance, resources=resources, partition_key=names[0])
        assert first.success
        meta = _metadata(first, "reference_file_notifications")
        assert meta["skipped"].value == "no failures" and meta["channels_sent"].value == []
        assert hook.bodies == [] and not (home / "notifications.log").exists()

        # Delivery 2: two files in ONE run (a partition range) -> one message per channel.
        second = dg.materialize(assets, instance=instance, resources=resources, tags={
            "dagster/asset_partition_range_start": names[1], "dagster/asset_partition_range_end": names[2]})
        assert second.success
    finally:
        hook.httpd.shutdown()
        hook.httpd.server_close()

    site = home / "reports"
    reports = {e.materialization.partition: e.materialization.metadata for e in second.get_asset_materialization_events()
               if e.asset_key == dg.AssetKey("reference_file_reports")}
    # Each file's materialisation links to its own report.
    assert {n: m["report"].value for n, m in reports.items()} == {n: str(site / n / "report.html") for n in names[1:]}
    assert reports[names[1]]["run_files_with_failures"].value == 1 and reports[names[1]]["run_errors"].value == {}
    for name in names:
        assert (site / name / "report.html").exists() and (site / name / "report.md").exists()
    index = (site / "index.md").read_text()
    assert [index.index(f"[{n}]") < index.index(f"[{names[0]}]") for n in names[1:]] == [True, True]

    meta = _metadata(second, "reference_file_notifications")
    assert sorted(meta["channels_sent"].value) == ["log", "slack"] and meta["channels_failed"].value == {}
    assert meta["run_files_with_failures"].value == 1
    assert len(hook.bodies) == 1
    text = hook.bodies[0]["text"]
    rows = database.failed_evaluations([names[1]])
    assert "amp_dark_current_mean" in {r["metric"] for r in rows}
    # One line for the failing file: its worst failure (a detector-level change) and how many more pairs fail.
    line = next(x for x in text.splitlines() if x.startswith("*WFI03 dark*: "))
    pairs = {(r["metric"], r["evaluator"]) for r in rows}
    assert "`detector_dark_current_" in line and " vs previous (tolerance 11 %)" in line
    assert f"; +{len(pairs) - 1} more" in line and line.endswith(f"report: `reports/{names[1]}/report.html`")
    assert "failures in 1 of 2 reference files (WFI03)" in text and names[2] not in text
    log = (home / "notifications.log").read_text()
    assert log.count("===== ") == 1 and f"reports/{names[1]}/report.html" in log

    # Nothing secret or local leaks into the publishable site.
    for path in site.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for bad in (TOKEN, str(tmp_path), "/tmp", "http://127"):
                assert bad.encode() not in data, (path.name, bad)
    assert TOKEN not in log
