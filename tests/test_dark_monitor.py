"""The dark monitor on constructed files with known answers, and on synthetic deliveries."""

import numpy as np
import pytest
import roman_datamodels.datamodels as rdm
from astropy.time import Time
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.science.measure import measure
from rdmt_dagster.science.monitor import registry
from rdmt_dagster.science.standards import Standards

DEAD, HOT, WARM = (int(dqflags.pixel[f]) for f in ("DEAD", "HOT", "WARM"))


def write_constructed(path, detector="WFI05", useafter="2027-01-01"):
    """Amp k has rate 0.001 * k; super-pixel 100 holds 40 hot and 3 dead pixels; 7 warm on a reference row."""
    rate = np.repeat(0.001 * np.arange(1, 33, dtype=np.float32), 128)[None, :].repeat(4096, axis=0)
    dq = np.zeros((4096, 4096), dtype=np.uint32)
    y0, x0 = (100 // 32) * 128, (100 % 32) * 128  # super-pixel 100: rows 384.., cols 512.. (amp 5)
    dq[y0 + 10, x0 : x0 + 40] |= HOT
    rate[y0 + 10, x0 : x0 + 40] = 2.0
    dq[y0 + 20, x0 : x0 + 3] |= DEAD
    dq[2, 1000:1007] |= WARM  # reference pixels: not counted
    model = rdm.DarkRefModel.create_fake_data(shape=(4096, 4096))
    model.meta.instrument.detector = detector
    model.meta.useafter = Time(useafter)
    model.dark_slope = rate
    model.dark_slope_error = np.zeros_like(rate)
    model.dq = dq
    model.save(path)
    return rate


def by_name(metric_set):
    return {m.name: m.values for m in metric_set.metrics}


def test_dark_monitor_is_registered():
    assert registry()["dark"].model == "DarkRefModel"


def test_metrics_of_a_constructed_dark(tmp_path):
    rate = write_constructed(tmp_path / "constructed.asdf")
    ms = measure(tmp_path / "constructed.asdf", Standards().for_monitor)
    assert ms.ok, ms.error
    assert ms.info.detector == "WFI05" and ms.info.monitor == "dark" and ms.info.reftype == "DARK"
    m = by_name(ms)
    science = rate[4:-4, 4:-4].astype(np.float64)
    assert m["dark_current_mean"].detector[0] == pytest.approx(science.mean(), rel=1e-9)
    expected_amp = 0.001 * np.arange(1, 33)
    expected_amp_mean = expected_amp.copy()
    expected_amp_mean[4] = (0.005 * (4088 * 128 - 40) + 2.0 * 40) / (4088 * 128)
    np.testing.assert_allclose(m["dark_current_mean"].amp, expected_amp_mean, rtol=1e-6)
    np.testing.assert_allclose(m["dark_current_percentile_50"].amp, expected_amp, rtol=1e-6)
    assert m["dark_current_percentile_99"].detector[0] == pytest.approx(np.percentile(science, 99), rel=1e-6)
    assert m["dark_current_percentile_90"].superpixel[100] == pytest.approx(0.005, rel=1e-6)
    assert m["num_hot_pix"].detector[0] == 40 and m["num_hot_pix"].superpixel[100] == 40
    assert m["num_hot_pix"].amp[4] == 40 and m["num_hot_pix"].amp.sum() == 40
    assert m["num_dead_pix"].superpixel[100] == 3 and m["num_dead_pix"].superpixel.sum() == 3
    assert m["num_warm_pix"].detector[0] == 0
    units = {mm.name: mm.unit for mm in ms.metrics}
    assert units["dark_current_mean"] == "DN / s" and units["num_dead_pix"] == "pix"
    assert len(ms.records()) == 8 * 1057


def test_synthetic_delivery_matches_the_seed_table_1_scale(dark_normal_pair):
    ms = measure(dark_normal_pair[0], Standards().for_monitor)
    m = by_name(ms)
    assert m["dark_current_percentile_50"].detector[0] == pytest.approx(0.005, rel=0.05)
    assert m["dark_current_percentile_95"].detector[0] == pytest.approx(0.00665, rel=0.05)
    assert m["num_dead_pix"].detector[0] == 16891 and m["num_hot_pix"].detector[0] == 33636


def test_normal_deliveries_pass_and_an_anomalous_one_fails_only_where_injected(dark_normal_pair, dark_pair):
    normal = check_files(list(dark_normal_pair), Standards())
    assert [c.evaluation_set.n_failed for c in normal] == [0, 0]
    first, second = check_files(list(dark_pair), Standards())
    assert first.evaluation_set.n_failed == 0
    failures = second.evaluation_set.failures
    assert failures and {ev.evaluator for ev in failures} == {"change"}
    amp_fail = [ev for ev in failures if ev.scale == "amp" and ev.metric == "dark_current_mean"][0]
    assert (np.flatnonzero(~amp_fail.passed) + 1).tolist() == [5, 6]
    sp_fail = [ev for ev in failures if ev.scale == "superpixel" and ev.metric == "dark_current_mean"][0]
    failing_columns = set((np.flatnonzero(~sp_fail.passed) % 32).tolist())
    assert failing_columns == {4, 5}
    assert amp_fail.reference_files == dark_pair[0].name
