"""End to end through the Dagster definitions: two deliveries, an anomaly, a bad file, a re-run."""

import dagster as dg
import pytest

from rdmt_dagster.assets.reference_files import EVALUATIONS_PASS, FILES_READABLE
from rdmt_dagster.definitions import build_definitions
from rdmt_dagster.resources import RDMTConfig

from .helpers import run_batch

pytestmark = pytest.mark.slow


def checks(result, name):
    """file -> the result of check ``name`` in ``result`` (one per file; the run's verdict has no partition)."""
    return {ev.partition: ev for ev in result.get_asset_check_evaluations()
            if ev.check_name == name and ev.partition is not None}


def test_two_deliveries_through_dagster(tmp_path, dark_pair, dark_normal_pair):
    rdmt = RDMTConfig(home=str(tmp_path / "home"))
    defs = build_definitions(rdmt)
    instance = dg.DagsterInstance.ephemeral()
    database = rdmt.database()

    first = run_batch(defs, instance, database, [dark_pair[0], dark_normal_pair[0]])
    assert first.success
    names = {dark_pair[0].name, dark_normal_pair[0].name}
    for name in (EVALUATIONS_PASS, FILES_READABLE):
        assert set(checks(first, name)) == names and all(ev.passed for ev in checks(first, name).values())

    broken = tmp_path / "roman_wfi_dark_9999.asdf"
    broken.write_bytes(b"#ASDF 1.0.0\nnot really\n")
    delivery = [dark_pair[1], dark_normal_pair[1], broken]
    second = run_batch(defs, instance, database, delivery)
    assert second.success  # a bad file fails a check, not the run
    passing = checks(second, EVALUATIONS_PASS)
    # The unreadable file gets no verdict on its evaluations (there were none), only on its readability.
    assert {name for name, ev in passing.items() if not ev.passed} == {dark_pair[1].name}
    assert set(passing) == {dark_pair[1].name, dark_normal_pair[1].name}
    readable = checks(second, FILES_READABLE)
    assert {name for name, ev in readable.items() if not ev.passed} == {broken.name}
    assert broken.name in readable[broken.name].metadata["error"].value
    assert database.file_status(broken.name)["status"] == "error"
    assert broken.name in database.file_status(broken.name)["error"]

    failed = database.failed_evaluations([p.name for p in delivery])
    assert failed and {r["filename"] for r in failed} == {dark_pair[1].name}
    assert {r["evaluator"] for r in failed} == {"change"}

    counts = {t: database.count_rows(t) for t in ("reference_file", "metric_value", "evaluation", "evaluation_run")}
    assert counts["metric_value"] == 4 * 8 * 1057
    again = run_batch(defs, instance, database, delivery)
    assert again.success
    assert {t: database.count_rows(t) for t in counts} == counts

    materialized = instance.get_materialized_partitions(dg.AssetKey("reference_file_evaluations"))
    assert {p.name for p in [dark_pair[0], dark_normal_pair[0], *delivery]} <= set(materialized)
    ecsv = list((tmp_path / "home" / "ecsv" / "dark").rglob("*.ecsv"))
    assert len(ecsv) == 4
    leaves = list((tmp_path / "home" / "parquet" / "metrics").rglob("*.parquet"))
    assert len(leaves) == 4


def test_backfill_with_new_standards_keeps_old_evaluations_and_reuses_metrics(tmp_path, dark_pair, monkeypatch):
    home = str(tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()
    default = RDMTConfig(home=home, workers=1)  # in-process, so the monkeypatch below reaches the monitor
    database = default.database()
    assert run_batch(build_definitions(default), instance, database, [dark_pair[0]]).success
    assert run_batch(build_definitions(default), instance, database, [dark_pair[1]]).success
    measured = {p.name: database.file_status(p.name)["measured_at"] for p in dark_pair}
    n_default = database.count_rows("evaluation")

    strict_file = tmp_path / "strict.yaml"
    strict_file.write_text("dark:\n  metrics:\n    dark_current_mean:\n      soc: {max: 0.006}\n")
    strict = RDMTConfig(home=home, standards_file=str(strict_file), workers=1)
    backfill = run_batch(build_definitions(strict), instance, database, list(dark_pair))
    assert backfill.success
    assert {p.name: database.file_status(p.name)["measured_at"] for p in dark_pair} == measured
    metrics_event = [e for e in backfill.get_asset_materialization_events()
                     if e.asset_key == dg.AssetKey("reference_file_metrics")][0]
    assert metrics_event.materialization.metadata["run_reused_unchanged_monitor_version"].value == 2
    statuses = {e.materialization.partition: e.materialization.metadata["status"].value
                for e in backfill.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey("reference_file_metrics")}
    assert statuses == {p.name: "reused (monitor version unchanged)" for p in dark_pair}
    assert database.count_rows("evaluation") == 2 * n_default
    hashes = {s.hash for s in (default.standards().for_monitor("dark"), strict.standards().for_monitor("dark"))}
    old = database.failed_evaluations([dark_pair[1].name], standards_hash=default.standards().for_monitor("dark").hash)
    new = database.failed_evaluations([dark_pair[1].name], standards_hash=strict.standards().for_monitor("dark").hash)
    assert {r["evaluator"] for r in old} == {"change"}
    assert {r["evaluator"] for r in new} == {"change", "soc"}  # the mean (~0.0073 DN/s) exceeds 0.006
    assert len(hashes) == 2 and database.count_rows("standards") == 2

    from rdmt_dagster.monitors.dark import DarkMonitor

    monkeypatch.setattr(DarkMonitor, "version", "9.9.9")  # a changed metric definition
    again = run_batch(build_definitions(strict), instance, database, list(dark_pair))
    assert again.success
    assert all(database.file_status(p.name)["measured_at"] > measured[p.name] for p in dark_pair)
    assert all(database.file_status(p.name)["monitor_version"] == "9.9.9" for p in dark_pair)


def test_masks_in_one_batch_compare_with_their_predecessor_in_the_batch(tmp_path):
    """Three masks of one detector in one run: each one's new and cleared pixels are counted
    against the mask just before it, although the three are measured in parallel."""
    import numpy as np
    import roman_datamodels.datamodels as rdm
    from roman_datamodels import dqflags

    from rdmt_dagster.science.standards import Standards
    from rdmt_dagster.synthetic import mask as synthetic_mask

    folder = tmp_path / "masks"
    paths = [synthetic_mask.write(folder / f"roman_wfi_mask_{n:04d}.asdf", "WFI06", n, f"2027-0{n}-01T00:00:00")
             for n in (1, 2, 3)]
    bad_bits = 0
    for name in Standards().for_monitor("mask").parameters["bad_flags"]:
        bad_bits |= int(dqflags.pixel[name])
    bad = []
    for path in paths:
        with rdm.open(path) as model:
            bad.append((np.asarray(model.dq)[4:-4, 4:-4] & bad_bits) != 0)
    expected_new = [int(np.count_nonzero(bad[k] & ~bad[k - 1])) for k in (1, 2)]
    expected_cleared = [int(np.count_nonzero(bad[k - 1] & ~bad[k])) for k in (1, 2)]

    rdmt = RDMTConfig(home=str(tmp_path / "home"))
    database = rdmt.database()
    result = run_batch(build_definitions(rdmt), dg.DagsterInstance.ephemeral(), database, list(reversed(paths)))
    assert result.success

    def detector_value(path, metric):
        values = database.load_metric_set(path.name).values()
        return None if (metric, "detector") not in values else int(values[(metric, "detector")][0])

    assert detector_value(paths[0], "num_newly_flagged_pix") is None
    assert [detector_value(p, "num_newly_flagged_pix") for p in paths[1:]] == expected_new
    assert [detector_value(p, "num_newly_cleared_pix") for p in paths[1:]] == expected_cleared


def test_one_files_storage_failure_does_not_stop_the_others(tmp_path, dark_pair, dark_normal_pair):
    """A file whose results cannot be stored is recorded as an error; the file beside it is stored."""
    rdmt = RDMTConfig(home=str(tmp_path / "home"))
    defs = build_definitions(rdmt)
    instance = dg.DagsterInstance.ephemeral()
    database = rdmt.database()
    # A real failure for one detector only: a plain file where its Parquet folder must go.
    blocked = tmp_path / "home" / "parquet" / "metrics" / "monitor=dark" / "detector=WFI11"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    result = run_batch(defs, instance, database, [dark_pair[0], dark_normal_pair[0]])
    assert result.success
    statuses = {p.name: database.file_status(p.name) for p in (dark_pair[0], dark_normal_pair[0])}
    failed = [name for name, s in statuses.items() if s["status"] == "error"]
    stored = [name for name, s in statuses.items() if s["status"] == "ok"]
    assert len(failed) == 1 and len(stored) == 1
    assert "could not be stored" in statuses[failed[0]]["error"]
    readable = checks(result, FILES_READABLE)
    assert not readable[failed[0]].passed and readable[stored[0]].passed
    assert "could not be stored" in readable[failed[0]].metadata["error"].value
