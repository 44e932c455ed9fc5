"""Evaluator semantics: absolute limits, change against the previous file by USEAFTER, trend."""

from datetime import datetime

import numpy as np
import pytest

from rdmt_dagster.science.evaluators import evaluate_absolute, evaluate_change, evaluate_trend
from rdmt_dagster.science.history import MemoryHistory
from rdmt_dagster.science.metrics import Metric, MetricSet, PriorMetrics, ReferenceFileInfo
from rdmt_dagster.science.monitor import evaluate, region_area_fractions
from rdmt_dagster.science.scales import ScaleValues
from rdmt_dagster.science.standards import Standards


def prior(values, name="prev.asdf"):
    return PriorMetrics(name, datetime(2027, 1, 1), {("m", "detector"): np.asarray(values, float)})


def test_absolute_max_min_and_nan():
    v = np.array([0.5, 1.0, 1.5, np.nan])
    ev = evaluate_absolute("mission", "m", "amp", v, {"max": 1.0})
    assert ev.passed.tolist() == [True, True, False, False]
    assert ev.threshold.tolist() == [1.0] * 4
    ev = evaluate_absolute("soc", "m", "amp", v, {"min": 0.8, "max": 1.2})
    assert ev.passed.tolist() == [False, True, False, False]
    assert ev.lower.tolist() == [0.8] * 4
    with pytest.raises(ValueError, match="unknown keys"):
        evaluate_absolute("soc", "m", "amp", v, {"maximum": 1})


def test_extensive_limits_scale_with_region_area():
    fractions = region_area_fractions()
    assert fractions["detector"][0] == 1.0
    assert fractions["amp"][1] == pytest.approx(128 * 4088 / 4088**2)
    counts = np.full(32, 4000.0)
    ev = evaluate_absolute("soc", "num_hot_pix", "amp", counts, {"max": 100_000}, fractions["amp"])
    # 100000 * 124/4088 = 3033 for the edge amps, 3131 for the others: 4000 fails everywhere
    assert not ev.passed.any()
    ev = evaluate_absolute("soc", "num_hot_pix", "amp", np.full(32, 3100.0), {"max": 100_000}, fractions["amp"])
    assert not ev.passed[0] and ev.passed[1] and not ev.passed[31]


def test_change_without_previous_is_not_evaluated_and_says_so():
    ev = evaluate_change("change", "m", "amp", np.ones(3), {"tolerance": 0.11}, None)
    assert "no previous" in ev.note and np.isnan(ev.reference).all()
    # Neither a pass nor a failure.
    assert ev.verdicts() == [None, None, None]
    assert not ev.passed.any() and not ev.failed.any()
    assert (ev.n_passed, ev.n_failed, ev.n_not_evaluated) == (0, 0, 3)
    lacking = evaluate_change("change", "m", "amp", np.ones(3), {"tolerance": 0.11}, prior([1.0], "old.asdf"))
    assert lacking.verdicts() == [None] * 3 and lacking.note == "old.asdf lacks this metric"


def test_an_evaluation_has_three_verdicts():
    from rdmt_dagster.science.evaluators import Evaluation

    ev = Evaluation("e", "m", "amp", np.ones(4), passed=[True, False, True, False],
                    evaluated=[True, True, False, False])
    assert ev.verdicts() == [True, False, None, None]
    assert ev.passed.tolist() == [True, False, False, False]  # a verdict not given is never a pass
    assert ev.failed.tolist() == [False, True, False, False]
    assert (ev.n_passed, ev.n_failed, ev.n_not_evaluated) == (1, 1, 2)
    assert Evaluation("e", "m", "amp", np.ones(2), passed=[True, False]).verdicts() == [True, False]


def test_change_tolerance_boundary_and_allowances():
    values = np.array([111.0, 111.5, 89.0, 0.0, np.nan, np.nan])
    p = PriorMetrics("prev.asdf", None, {("m", "x"): np.array([100.0, 100.0, 100.0, 0.0, np.nan, 5.0])})
    ev = evaluate_change("change", "m", "x", values, {"tolerance": 0.11}, p)
    assert ev.passed.tolist() == [True, False, True, True, True, False]
    assert ev.reference_files == "prev.asdf"
    counts_prev = PriorMetrics("p", None, {("n", "x"): np.array([16.0, 16.0])})
    ev = evaluate_change("change", "n", "x", np.array([24.0, 70.0]), {"tolerance": 0.11, "poisson_nsigma": 5}, counts_prev)
    # allowed = 1.76 + 5 * sqrt(16 + new): 24 -> 33.4 >= 8 passes; 70 -> 48.1 < 54 fails
    assert ev.passed.tolist() == [True, False]
    ev = evaluate_change("change", "n", "x", np.array([0.5]), {"tolerance": 0.11, "floor": 1.0},
                         PriorMetrics("p", None, {("n", "x"): np.array([0.0])}))
    assert ev.passed.tolist() == [True]


def metric_set(name, useafter, value, detector="WFI01"):
    info = ReferenceFileInfo(name, name, "dark", detector, useafter, "DARK")
    m = Metric("dark_current_mean", "DN / s", ScaleValues(np.array([value]), np.full(32, value), np.full(1024, value)))
    return MetricSet(info, "1.0.0", [m])


def test_change_compares_with_previous_by_useafter_not_by_arrival():
    jan = metric_set("b_jan.asdf", datetime(2027, 1, 1), 0.0050)
    mar = metric_set("a_mar.asdf", datetime(2027, 3, 1), 0.0100)
    feb = metric_set("c_feb.asdf", datetime(2027, 2, 1), 0.0052)
    other = metric_set("d_other.asdf", datetime(2027, 2, 15), 0.5, detector="WFI02")
    history = MemoryHistory([mar, jan, feb, other])  # arrival order is not USEAFTER order
    standards = Standards().for_monitor("dark")
    result = evaluate(mar, standards, history)
    change = [e for e in result.evaluations if e.evaluator == "change" and e.scale == "detector"][0]
    assert change.reference_files == "c_feb.asdf"
    assert change.reference[0] == pytest.approx(0.0052)
    assert not change.passed[0]  # 0.0100 vs 0.0052: +92%
    feb_result = evaluate(feb, standards, history)
    change = [e for e in feb_result.evaluations if e.evaluator == "change" and e.scale == "detector"][0]
    assert change.reference_files == "b_jan.asdf" and change.passed[0]  # +4%
    jan_result = evaluate(jan, standards, history)
    first = [e for e in jan_result.evaluations if e.evaluator == "change"]
    assert first and all(e.n_not_evaluated == e.passed.size and e.n_failed == 0 for e in first)
    # 3 scales x (1 + 32 + 1024) values, change and trend (no history): none counted as failed or passed.
    assert jan_result.n_not_evaluated == 2 * 1057 and jan_result.n_failed == 0
    assert jan_result.n_evaluations == 4 * 1057


def test_every_value_gets_every_configured_evaluator():
    ms = metric_set("x.asdf", datetime(2027, 1, 1), 0.005)
    result = evaluate(ms, Standards().for_monitor("dark"))
    got = {(e.evaluator, e.scale): e.passed.size for e in result.evaluations}
    for evaluator in ("mission", "soc", "change", "trend"):
        assert got[(evaluator, "detector")] == 1
        assert got[(evaluator, "amp")] == 32
        assert got[(evaluator, "superpixel")] == 1024


def test_trend_flags_departure_from_history():
    hist = [PriorMetrics(f"f{i}", None, {("m", "x"): np.array([10.0 + d, 5.0])}) for i, d in enumerate([0.1, -0.1, 0.05, 0.0, -0.05])]
    ev = evaluate_trend("trend", "m", "x", np.array([10.1, 5.0]), {"n": 10, "limit": 5.0, "min_history": 3}, hist)
    assert ev.passed.tolist() == [True, True]
    ev = evaluate_trend("trend", "m", "x", np.array([11.0, 5.2]), {"n": 10, "limit": 5.0, "min_history": 3}, hist)
    # MAD of the first = 0.05 -> sigma 0.074: z = 13.5 fails; the second is flat history:
    # sigma floor = 0.01 * 5 = 0.05 -> z = 4 passes
    assert ev.passed.tolist() == [False, True]
    assert ev.reference_files == "f0,f1,f2,f3,f4"
    ev = evaluate_trend("trend", "m", "x", np.array([99.0, 99.0]), {"n": 10, "limit": 5.0, "min_history": 6}, hist)
    assert ev.verdicts() == [None, None] and ev.n_failed == 0 and "5 earlier files, trend needs 6" == ev.note
    ev = evaluate_trend("trend", "m", "x", np.array([11.0, 5.0]), {"n": 2, "limit": 5.0, "min_history": 2}, hist)
    assert ev.reference_files == "f3,f4"


def test_trend_allowances_for_small_counts():
    flat = [PriorMetrics(f"f{i}", None, {("n", "x"): np.array([4.0, 0.0])}) for i in range(5)]
    params = {"n": 10, "limit": 5.0, "min_history": 3}
    ev = evaluate_trend("trend", "n", "x", np.array([5.0, 1.0]), params, flat)
    assert ev.passed.tolist() == [False, False]  # zero MAD: any change is an infinite z
    ev = evaluate_trend("trend", "n", "x", np.array([5.0, 1.0]), {**params, "poisson": True}, flat)
    assert ev.passed.tolist() == [True, False]  # sigma >= sqrt(4) = 2 for the first; sqrt(0) for the second
    ev = evaluate_trend("trend", "n", "x", np.array([5.0, 1.0]), {**params, "poisson": True, "floor": 0.5}, flat)
    assert ev.passed.tolist() == [True, True]  # |1 - 0| / 0.5 = 2 <= 5
    ev = evaluate_trend("trend", "n", "x", np.array([20.0, 4.0]), {**params, "poisson": True, "floor": 0.5}, flat)
    assert ev.passed.tolist() == [False, False]  # 16 / 2 = 8 and 4 / 0.5 = 8 > 5
