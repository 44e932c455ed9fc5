"""How a failure is told: its size in words and numbers, the same in the report, the message and the demo.

A series of five dark metric sets of one detector (no pixels: `MetricSet`s
built here) goes through the real evaluators into SQLite: four steady files,
then one whose mean dark current jumps (change and trend failures) and whose
hot-pixel count passes the SOC limit. The expected sizes (per cent from the
previous file, sigma from the median of the earlier files, distance above the
limit) are computed here with numpy from the values the test wrote; the
standards are read from the stored YAML of the run.
"""

import math
import re
import sqlite3
from datetime import datetime

import numpy as np
import pytest
import yaml

from rdmt_dagster.demo import summarise_failures
from rdmt_dagster.notify import build_notification
from rdmt_dagster.reports import write_file_report
from rdmt_dagster.reports.formatting import fmt_percent, trend_stats
from rdmt_dagster.reports.plots import trend_ylim
from rdmt_dagster.science.evaluators import evaluate_trend
from rdmt_dagster.science.metrics import Metric, MetricSet, PriorMetrics, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.storage.database import Database, sqlite_url

DETECTOR = "WFI05"
MEANS = [0.0050, 0.0051, 0.0049, 0.0050, 0.0090]  # DN/s; the last one jumps
HOT = [33000.0, 33100.0, 32900.0, 33000.0, 200000.0]  # pixels; the last one above the SOC maximum (100000)


def _metric_set(k: int) -> MetricSet:
    name = f"roman_wfi_dark_{k + 1:04d}.asdf"
    info = ReferenceFileInfo(name, f"/data/{name}", "dark", DETECTOR, datetime(2027, k + 1, 1), "DARK")
    mean, hot = MEANS[k], HOT[k]
    metrics = [
        Metric("dark_current_mean", "DN / s", ScaleValues(np.array([mean]), np.full(32, mean), np.full(1024, mean))),
        Metric("num_hot_pix", "pix", ScaleValues(np.array([hot]), np.full(32, hot / 32), np.full(1024, hot / 1024))),
    ]
    return MetricSet(info, "1.0.0", metrics)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wording")
    db = Database(sqlite_url(tmp / "rdmt.db"))
    db.upgrade()
    standards = Standards().for_monitor("dark")
    db.write_standards(standards)
    names = []
    for k in range(len(MEANS)):
        ms = _metric_set(k)
        db.write_metrics(ms)
        db.write_evaluations(evaluate(ms, standards, db.history()), ms.monitor_version)
        names.append(ms.info.filename)
    sql = sqlite3.connect(tmp / "rdmt.db")
    block = yaml.safe_load(sql.execute("select content from standards").fetchone()[0])["dark"]
    yield {"db": db, "names": names, "tmp": tmp, "sql": sql, "block": block}
    db.dispose()


def _failures_table(md: str) -> dict[tuple[str, str], list[str]]:
    section = md.split("\n## Failures\n")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in section.splitlines()
            if line.startswith("| `")]
    return {(r[0].strip("`"), r[1].strip("*")): r for r in rows}


def test_trend_failure_in_sigma_change_in_percent_limit_in_units(series, tmp_path):
    last = series["names"][-1]
    md = write_file_report(series["db"], last, tmp_path).markdown.read_text()
    table = _failures_table(md)
    spec = series["block"]["metrics"]

    # Trend: sigma = max(1.4826 MAD, min_scale |median|) of the four earlier files (min_scale 0.01 by default).
    history = np.array(MEANS[:-1])
    median = np.median(history)
    sigma = max(1.4826 * np.median(np.abs(history - median)), 0.01 * abs(median))
    z = (MEANS[-1] - median) / sigma
    limit = spec["dark_current_mean"]["trend"]["limit"]
    assert z > limit
    cell = table[("detector_dark_current_mean", "trend")][4]
    assert cell == f"**{z:.1f} σ above the median of the last 4 (limit {limit:g})**"

    # Change: per cent from the previous file, with the tolerance of the standard.
    change = 100 * (MEANS[-1] - MEANS[-2]) / MEANS[-2]
    tolerance = 100 * spec["dark_current_mean"]["change"]["tolerance"]
    cell = table[("detector_dark_current_mean", "change")][4]
    assert cell == f"**+{change:.0f} % vs previous (tolerance {tolerance:.0f} %)**"

    # SOC maximum of a count: how many pixels above it.
    soc = spec["num_hot_pix"]["soc"]["max"]
    cell = table[("detector_num_hot_pix", "soc")][4]
    assert cell == f"**{HOT[-1] - soc:.0f} above the SOC max {soc:.0f}**"
    assert ("detector_num_hot_pix", "mission") not in table  # 200000 is under the mission maximum


def test_message_quotes_the_worst_failure_as_the_report_does(series, tmp_path):
    note = build_notification(series["db"], series["names"])
    assert note is not None and [f.filename for f in note.files] == [series["names"][-1]]
    lines = note.text.splitlines()
    pairs = {(m, ev) for m, ev in series["sql"].execute(
        "select distinct e.metric, e.evaluator from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.passed = 0", (series["names"][-1],))}
    soc = series["block"]["metrics"]["num_hot_pix"]["soc"]["max"]
    # An absolute limit is worse than a change or a trend: the SOC failure leads.
    expected = (f"{DETECTOR} dark: detector_num_hot_pix = {HOT[-1]:.0f} pix: {HOT[-1] - soc:.0f} above the SOC max "
                f"{soc:.0f}; +{len(pairs) - 1} more")
    assert lines[2] == expected
    assert lines[3] == f"  reports/{series['names'][-1]}/report.html"
    # The demo's terminal summary words every failure as the report's table does.
    md = write_file_report(series["db"], series["names"][-1], tmp_path).markdown.read_text()
    table = _failures_table(md)
    summary = summarise_failures(series["db"].failed_evaluations(series["names"]), series["db"])
    assert len(summary) == len(pairs) == len(table)
    for line in summary:
        match = re.fullmatch(rf"  {DETECTOR} \S+ \[(\w+)\] (\w+)(?: in .*?)?(?:, worst .*?)? = (.+?): (.+)", line)
        assert match, line
        evaluator, metric, _, size = match.groups()
        assert table[(metric, evaluator)][4] == f"**{size}**", (line, table[(metric, evaluator)])


def test_first_file_is_not_evaluated_against_anything(series, tmp_path):
    md = write_file_report(series["db"], series["names"][0], tmp_path).markdown.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| `detector_dark_current_mean` |"))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[5] == "not evaluated (no previous file)"
    assert cells[6] == "not evaluated (0 earlier files, trend needs 3)"
    n_null = series["sql"].execute(
        "select count(*) from evaluation e join reference_file f on f.id = e.file_id "
        "where f.filename = ? and e.passed is null", (series["names"][0],)).fetchone()[0]
    assert n_null > 0 and f", {n_null} not evaluated (of " in md


# -- the wording functions ------------------------------------------------------------

@pytest.mark.parametrize("fraction, signed, text", [
    (0.19, True, "+19 %"), (-0.032, True, "-3.2 %"), (3.0, True, "+300 %"), (0.11, False, "11 %"),
    (0.004, True, "+0.4 %"), (-0.0996, True, "-10 %"), (0.0, True, "+0 %"),
])
def test_fmt_percent(fraction, signed, text):
    assert fmt_percent(fraction, signed) == text


def test_trend_stats_sigma_is_the_evaluators():
    """At ``limit`` sigma from the rebuilt median the evaluator flips from pass to fail."""
    rng = np.random.default_rng(7)
    params = {"n": 6, "limit": 5.0, "min_history": 3}
    history = list(rng.normal(100.0, 2.0, size=9))  # more than n: only the last 6 count
    stats = trend_stats(history, params)
    assert stats.n == 6
    prior = [PriorMetrics(f"f{k}", None, {("m", "detector"): np.array([v])}) for k, v in enumerate(history)]
    for factor, passes in ((0.999, True), (1.001, False)):
        value = stats.median + factor * params["limit"] * stats.sigma
        result = evaluate_trend("trend", "m", "detector", [value], params, prior)
        assert bool(result.passed[0]) is passes
        assert result.reference[0] == pytest.approx(stats.median, rel=1e-12)


def test_trend_ylim_never_turns_counting_noise_into_a_cliff():
    # Two nearly equal values: the range is at least +-10 % of them, not 0.001 wide.
    lo, hi = trend_ylim([1.000, 1.001])
    assert hi - lo >= 0.2 and lo < 1.0 < 1.001 < hi
    # The evaluator's band is inside the range however narrow the values.
    lo, hi = trend_ylim([16891.0, 16893.0], [(15033.0, 18749.0)])
    assert lo < 15033.0 and hi > 18749.0
    # Small counts: at least 3 sigma of counting noise (3 vs 4 pixels is no cliff), not far below zero.
    lo, hi = trend_ylim([3.0, 4.0])
    assert hi - lo >= 2 * 3 * math.sqrt(4.0) and -0.15 * (hi - lo) < lo < 0 and hi > 4.0
    # A real jump keeps its size on the axis.
    lo, hi = trend_ylim([0.0077, 0.0257], [(0.0069, 0.0086)])
    assert lo < 0.0069 and hi > 0.0257 and (hi - lo) < 2 * (0.0257 - 0.0069)
    assert trend_ylim([math.nan, None]) == (0.0, 1.0)
