"""Each file's partition carries its own figures; checks give one result per file; runs are tagged.

A delivery is one Dagster run over several partitions. What the UI shows for
one partition must be that file's: its failed evaluations, the failing
metrics with value and limit, its report; the `reference_files` asset records
the file it observed; the run says in its tags whether it found failures.
Expected numbers are read back from the RDMT database or computed here.
"""

import hashlib

import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import EVALUATIONS_PASS, FILES_READABLE
from rdmt_dagster.definitions import build_definitions
from rdmt_dagster.resources import RDMTConfig
from rdmt_dagster.resources.notifications import NotificationsConfig

from .helpers import run_batch

pytestmark = pytest.mark.slow

BASE_URL = "https://rdmt.example.org/site"


def _by_partition(result, asset: str) -> dict:
    return {e.materialization.partition: e.materialization.metadata for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey(asset)}


def _checks(result, name: str) -> dict:
    """partition -> the result of check ``name``; None -> the run's verdict over its files."""
    return {ev.partition: ev for ev in result.get_asset_check_evaluations() if ev.check_name == name}


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory, dark_pair, dark_normal_pair):
    """Delivery 1 (two clean darks), then delivery 2 (one with an amp glow, one clean, one unreadable)."""
    home = tmp_path_factory.mktemp("figures")
    rdmt = RDMTConfig(home=str(home))
    defs = build_definitions(rdmt, NotificationsConfig(channels=["log"], report_base_url=BASE_URL))
    instance = dg.DagsterInstance.ephemeral()
    database = rdmt.database()
    broken = home / "roman_wfi_dark_9998.asdf"
    broken.write_bytes(b"#ASDF 1.0.0\nnot a dark\n")
    checksums = {}
    for path in (*dark_pair, *dark_normal_pair, broken):
        checksums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        database.register(path.name, str(path), checksums[path.name])
    first = run_batch(defs, instance, database, [dark_pair[0], dark_normal_pair[0]])
    second = run_batch(defs, instance, database, [dark_pair[1], dark_normal_pair[1], broken])
    again = run_batch(defs, instance, database, [dark_normal_pair[1]])  # the same file measured again
    assert first.success and second.success and again.success
    return dict(first=first, second=second, again=again, instance=instance, database=database, bad=dark_pair[1],
                good=dark_normal_pair[1], broken=broken, checksums=checksums, home=home)


def test_a_failing_files_partition_shows_its_failing_metrics_with_value_and_limit(deliveries):
    bad, good = deliveries["bad"].name, deliveries["good"].name
    failed = deliveries["database"].failed_evaluations([bad])
    meta = _by_partition(deliveries["second"], "reference_file_evaluations")
    assert meta[bad]["failed_evaluations"].value == len(failed) > 0
    assert meta[good]["failed_evaluations"].value == 0 and "failing_metrics" not in meta[good]
    table = meta[bad]["failing_metrics"].value
    groups = {(r["metric"], r["evaluator"]) for r in failed}
    rows = [line for line in table.splitlines() if line.startswith("| ") and bad in line]
    assert len(rows) == len(groups)  # one row per failing metric and evaluator
    detector = [r for r in failed if r["scale"] == "detector"]
    assert detector
    for r in detector:
        base = r["metric"].removeprefix("detector_")
        (row,) = [line for line in rows if f"`{base}`" in line and "| detector |" in line]
        assert f"{r['value']:.4g}" in row  # the value judged
        assert f"±{r['threshold'] * 100:g}% of {r['reference']:.4g}" in row  # the change limit it broke
    assert f"[report]({BASE_URL}/{bad}/report.html)" in table
    assert meta[bad]["report"].value == f"{BASE_URL}/{bad}/report.html"
    # Nothing of one file shows on another's partition.
    assert all(bad not in str(v.value) for v in meta[good].values())


def test_checks_give_one_result_per_file_with_the_same_figures(deliveries):
    bad, good, broken = deliveries["bad"].name, deliveries["good"].name, deliveries["broken"].name
    failed = deliveries["database"].failed_evaluations([bad])
    passing = _checks(deliveries["second"], EVALUATIONS_PASS)
    assert set(passing) == {bad, good, None}  # the unreadable file has no evaluation to judge
    assert not passing[bad].passed and passing[good].passed
    assert passing[bad].metadata["failed_evaluations"].value == len(failed)
    rows = passing[bad].metadata["failing_metrics_json"].value
    assert {(f"{r['scale']}_{r['metric']}", r["evaluator"]) for r in rows} == {
        (r["metric"], r["evaluator"]) for r in failed}
    assert sum(r["n_regions"] for r in rows) == len(failed)
    # Amps are named by their number (1..32), as in the database and the report.
    amps = sorted(r["region"] for r in failed if r["metric"] == "amp_dark_current_mean")
    (row,) = [r for r in rows if r["scale"] == "amp" and r["metric"] == "dark_current_mean"]
    assert row["where"] == f"{len(amps)} of 32 amps ({', '.join(map(str, amps))})"
    assert passing[bad].description.startswith(f"WFI03 {bad}: {len(failed)} failed evaluations")
    assert "no evaluation failed" in passing[good].description
    readable = _checks(deliveries["second"], FILES_READABLE)
    assert {n for n, ev in readable.items() if not ev.passed} == {broken, None}
    assert broken in readable[broken].description
    # Each result points at its partition's materialisation in this run, so Dagster shows it as current.
    records = deliveries["instance"].fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("reference_file_evaluations"), asset_partitions=[bad]),
        limit=1).records
    assert passing[bad].target_materialization_data.storage_id == records[0].storage_id


def test_a_run_ends_each_check_with_its_verdict_over_its_files(deliveries):
    """Dagster shows a check's newest result as its latest execution: the run's verdict, not one file's."""
    bad = deliveries["bad"].name
    failed = deliveries["database"].failed_evaluations([bad])
    results = [ev for ev in deliveries["second"].get_asset_check_evaluations() if ev.check_name == EVALUATIONS_PASS]
    verdict = results[-1]
    assert verdict.partition is None and not verdict.passed
    assert verdict.description.startswith("1 of 2 files of the run failed: WFI03 " + bad)
    assert verdict.metadata["failed"].value == [bad]
    assert verdict.metadata["failed_evaluations"].value == len(failed)
    assert bad in verdict.metadata["failing_metrics"].value
    first = [ev for ev in deliveries["first"].get_asset_check_evaluations() if ev.check_name == EVALUATIONS_PASS]
    assert first[-1].partition is None and first[-1].passed
    assert first[-1].description == "All 2 files of the run passed."
    # A run of one file has its one result, no verdict beside it.
    again = [ev for ev in deliveries["again"].get_asset_check_evaluations() if ev.check_name == EVALUATIONS_PASS]
    assert [ev.partition for ev in again] == [deliveries["good"].name]


def test_runs_are_tagged_with_what_they_found(deliveries):
    instance, bad = deliveries["instance"], deliveries["bad"].name
    n_failed = len(deliveries["database"].failed_evaluations([bad]))
    first = instance.get_run_by_id(deliveries["first"].run_id).tags
    second = instance.get_run_by_id(deliveries["second"].run_id).tags
    assert (first["rdmt/failures"], first["rdmt/failed_evaluations"]) == ("false", "0")
    assert second["rdmt/failures"] == "true"
    assert second["rdmt/failed_evaluations"] == str(n_failed)
    assert second["rdmt/files_with_failures"] == "1" and second["rdmt/files_not_monitored"] == "1"
    assert second["rdmt/failing_files"] == bad and second["rdmt/not_monitored"] == deliveries["broken"].name
    detector_mean = next(r for r in deliveries["database"].failed_evaluations([bad])
                         if r["metric"] == "detector_dark_current_mean")
    assert second["rdmt/first_failure"].startswith(f"WFI03 {bad}: detector dark_current_mean [change]: "
                                                   f"{detector_mean['value']:.4g}")
    assert "rdmt/failing_files" not in first
    found = instance.get_runs(filters=dg.RunsFilter(tags={"rdmt/failures": "true"}))
    assert [run.run_id for run in found] == [deliveries["second"].run_id]


def _file_events(instance, name: str) -> list:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("reference_files"), asset_partitions=[name]), limit=10).records


def test_reference_files_records_each_file_once_with_what_it_is(deliveries):
    instance, bad, good, broken = (deliveries[k] for k in ("instance", "bad", "good", "broken"))
    for path in (bad, good, broken):
        (record,) = _file_events(instance, path.name)  # measured twice (good), recorded once
        assert record.run_id == ""  # a reported event: Dagster did not make the file
        meta = record.asset_materialization.metadata
        assert meta["path"].value == str(path)
        assert meta["sha256"].value == deliveries["checksums"][path.name]
        assert meta["version"].value == 1
    meta = _file_events(instance, bad.name)[0].asset_materialization.metadata
    assert (meta["type"].value, meta["detector"].value, meta["useafter"].value) == (
        "DARK", "WFI03", "2027-02-01T00:00:00")
    assert meta["readable"].value is True
    assert _file_events(instance, broken.name)[0].asset_materialization.metadata["readable"].value is False
    materialized = instance.get_materialized_partitions(dg.AssetKey("reference_files"))
    assert {bad.name, good.name, broken.name} <= materialized


def test_reports_and_notifications_partitions(deliveries):
    bad, good = deliveries["bad"].name, deliveries["good"].name
    reports = _by_partition(deliveries["second"], "reference_file_reports")
    assert reports[bad]["report"].value == f"{BASE_URL}/{bad}/report.html"
    assert reports[bad]["failed_evaluations"].value == len(deliveries["database"].failed_evaluations([bad]))
    notified = _by_partition(deliveries["second"], "reference_file_notifications")
    assert notified[bad]["in_message"].value is True and notified[good]["in_message"].value is False

