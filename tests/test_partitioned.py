"""Per-partition metadata, check verdicts, run tags and failure tables, on small in-process runs (fast)."""

import re

import dagster as dg
import numpy as np
import pytest

from rdmt_dagster.assets.failures import FailureLine, failure_lines, failure_table
from rdmt_dagster.assets.partitioned import (
    PartitionCheck,
    _names,
    add_partition_metadata,
    check_evaluations,
    check_outputs,
    run_verdict,
    tag_run,
)
from rdmt_dagster.science.metrics import Metric, MetricSet, ReferenceFileInfo
from rdmt_dagster.science.monitor import EvaluationSet
from rdmt_dagster.science.evaluators import Evaluation
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards

FILES = dg.DynamicPartitionsDefinition(name="files")
KEYS = ["a.asdf", "b.asdf", "c.asdf"]
RANGE = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}


def _materialize(public_api: bool, failing=("b.asdf",)):
    @dg.asset(partitions_def=FILES, backfill_policy=dg.BackfillPolicy.single_run(),
              check_specs=[dg.AssetCheckSpec("ok", asset="files_asset", partitions_def=FILES)])
    def files_asset(context: dg.AssetExecutionContext):
        add_partition_metadata(context, {k: {"file": k, "n": len(k) + i} for i, k in enumerate(context.partition_keys)},
                               public_api=public_api)
        yield dg.MaterializeResult(metadata={"run_files": len(context.partition_keys)})
        results = [PartitionCheck(k, k not in failing, f"{k} {'fails' if k in failing else 'passes'}",
                                  severity=dg.AssetCheckSeverity.WARN) for k in context.partition_keys]
        yield from check_evaluations(context, context.assets_def.key, "ok", results, run_verdict(results, "files"))
        yield from check_outputs(context)
        tag_run(context, len(failing), list(failing))

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(FILES.name, KEYS)
    result = dg.materialize([files_asset], instance=instance, tags=RANGE)
    assert result.success
    return result, instance


def _metadata(result):
    return {e.materialization.partition: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def test_each_partition_gets_its_own_metadata_the_same_way_as_through_the_public_api():
    fast, _ = _materialize(public_api=False)
    public, _ = _materialize(public_api=True)
    expected = {k: {"run_files": 3, "file": k, "n": len(k) + i} for i, k in enumerate(KEYS)}
    assert _metadata(fast) == _metadata(public) == expected


def test_a_key_outside_the_run_is_refused():
    @dg.asset(partitions_def=FILES, backfill_policy=dg.BackfillPolicy.single_run())
    def files_asset(context: dg.AssetExecutionContext):
        add_partition_metadata(context, {"z.asdf": {"file": "z"}})

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(FILES.name, KEYS + ["z.asdf"])
    result = dg.materialize([files_asset], instance=instance, tags=RANGE, raise_on_error=False)
    assert not result.success


def test_one_check_result_per_partition_then_the_runs_verdict_and_tags():
    result, instance = _materialize(public_api=False)
    evaluations = result.get_asset_check_evaluations()
    assert [(e.partition, e.passed) for e in evaluations] == [
        ("a.asdf", True), ("b.asdf", False), ("c.asdf", True), (None, False)]
    assert evaluations[-1].description == "1 of 3 files of the run failed: b.asdf fails."
    assert evaluations[-1].metadata["failed"].value == ["b.asdf"]
    # each partition's result points at its materialisation in this run
    storage = {r.partition_key: r.storage_id for r in instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("files_asset")), limit=10).records}
    assert {e.partition: e.target_materialization_data.storage_id for e in evaluations[:3]} == storage
    status = {r.partition: r.status.value for r in instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("files_asset"), "ok"), limit=10)}
    assert status == {"a.asdf": "SUCCEEDED", "b.asdf": "FAILED", "c.asdf": "SUCCEEDED", None: "FAILED"}
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["rdmt/failures"], tags["rdmt/failed_evaluations"], tags["rdmt/failing_files"]) == ("true", "1", "b.asdf")


def test_run_verdicts_word_passes_and_failures():
    ok = [PartitionCheck(k, True, f"{k} ok") for k in KEYS]
    assert run_verdict(ok, "files").description == "All 3 files of the run passed."
    bad = [PartitionCheck(f"f{i}", False, f"f{i} broke.", severity=dg.AssetCheckSeverity.WARN) for i in range(5)]
    verdict = run_verdict(bad, "days")
    assert verdict.description == "5 of 5 days of the run failed: f0 broke; f1 broke; f2 broke; and 2 more."
    assert verdict.severity == dg.AssetCheckSeverity.WARN and not verdict.passed
    mixed = bad[:1] + [PartitionCheck("e", False, "e", severity=dg.AssetCheckSeverity.ERROR)]
    assert run_verdict(mixed, "files").severity == dg.AssetCheckSeverity.ERROR


@pytest.mark.parametrize("names, expected", [
    ([], ""),
    (["one.asdf"], "one.asdf"),
    (["x" * 300], "+1 more"),
])
def test_tag_lists_stay_short_and_say_how_many_are_left_out(names, expected):
    assert _names(names) == expected


def test_a_long_tag_list_is_cut_within_the_limit():
    names = [f"roman_wfi_dark_{i:04d}.asdf" for i in range(40)]
    text = _names(names, 200)
    shown = text.split(", ")[:-1]
    assert len(text) <= 200 and shown == names[:len(shown)]
    assert text.endswith(f"+{40 - len(shown)} more")


def _dark_with_a_glowing_amp(filename: str, unit: str = "DN / s") -> tuple[MetricSet, EvaluationSet]:
    """A metric set with amps 5 and 6 (indices 4, 5) over the previous file's value by 3x."""
    amp = np.full(32, 0.01)
    amp[4:6] = 0.03
    info = ReferenceFileInfo(filename, "/data/" + filename, "dark", "WFI07", reftype="DARK")
    metric = Metric("dark_current_mean", unit, ScaleValues(detector=np.array([0.0125]), amp=amp))
    passed = np.ones(32, bool)
    passed[4:6] = False
    change = Evaluation("change", "dark_current_mean", "amp", np.full(32, 0.11), passed,
                        reference=np.full(32, 0.01), reference_files="roman_wfi_dark_0001.asdf")
    return MetricSet(info, "1.0.0", [metric]), EvaluationSet(info, "h", [change])


def test_failure_lines_name_amps_by_number_and_give_the_worst_value_and_the_limit():
    metric_set, evaluations = _dark_with_a_glowing_amp("roman_wfi_dark_0002.asdf")
    (line,) = failure_lines(metric_set, evaluations, Standards().for_monitor("dark"), "reports/x/report.html")
    assert (line.metric, line.scale, line.evaluator, line.n_regions) == ("dark_current_mean", "amp", "change", 2)
    assert line.where == "2 of 32 amps (5, 6)"
    assert line.value == "worst amp 5: 0.03 DN / s"
    assert line.limit.startswith("±11% of 0.01 (roman_wfi_dark_0001.asdf)")


def test_the_failure_table_escapes_names_and_units_from_files():
    hostile = "evil|name](http://x.example)<b>_*.asdf"
    metric_set, evaluations = _dark_with_a_glowing_amp(hostile, unit="DN|s <script>")
    lines = failure_lines(metric_set, evaluations, Standards().for_monitor("dark"), "reports/evil/report.html")
    table = failure_table(lines)
    header, rule, row = table.splitlines()
    assert row.count(" | ") == header.count(" | ")  # no cell broken by a "|" from the file
    for bad in ("<b>", "<script>"):
        assert bad not in row
    # Markdown punctuation from the file stays text: escaped, never a link or a cell border.
    assert not re.search(r"(?<!\\)\]\(http", row) and not re.search(r"(?<!\\)\|name", row)
    assert "`reports/evil/report.html`" in row  # a local path is shown as code, never as a link


def test_a_report_url_becomes_a_link_and_long_tables_say_what_they_left_out():
    line = FailureLine("f.asdf", "WFI01", "dark", "m", "detector", "mission", "detector", "2", "≤ 1", 1,
                       "https://rdmt.example.org/site/f.asdf/report.html")
    table = failure_table([line] * 45, max_rows=40)
    assert "[report](https://rdmt.example.org/site/f.asdf/report.html)" in table
    assert table.count("| f.asdf |") == 40 and table.endswith("5 more failing metric(s) not shown: see the report.")

