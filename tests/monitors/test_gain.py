"""Gain monitor: metrics against independent numpy computations, evaluation of synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rdmt_dagster.checking import check_files
from rdmt_dagster.monitors.gain import GainMonitor
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import gain as synthetic

from .regions import amp_cols, by_name, failing, sp_slice

N = 4096
PARAMS = {"percentiles": [1, 50, 99]}


def valid_science(frame):
    """float64 copy with the border, non-finite and <= 0 values as NaN (pixels with a valid gain)."""
    s = np.array(frame, dtype=np.float64)
    s[~np.isfinite(s) | (s <= 0)] = np.nan
    s[:4, :] = s[-4:, :] = np.nan
    s[:, :4] = s[:, -4:] = np.nan
    return s


@pytest.fixture(scope="module")
def constructed():
    """Per-amp gains 1.80 + 0.01 k with 1 per cent pixel spread, and counted pixels with no gain:
    super-pixel 40 (amp 9): 10 NaN, 5 zero, 5 negative, 2 +inf; amp 32: one full column of zeros
    (4088 science pixels); border: zeros that must not count."""
    rng = np.random.default_rng(11)
    amp_gain = 1.80 + 0.01 * np.arange(32)
    data = (np.repeat(amp_gain, 128)[None, :] * (1 + 0.01 * rng.standard_normal((N, N)))).astype(np.float32)
    data[130, 1030:1040] = np.nan
    data[131, 1030:1035] = 0.0
    data[132, 1030:1035] = -1.5
    data[133, 1030:1032] = np.inf
    data[:, 4000] = 0.0  # 4088 science pixels in amp 32 (plus 8 reference pixels)
    data[:4, :50] = 0.0
    metrics = by_name(GainMonitor().metrics(SimpleNamespace(data=data), PARAMS))
    return {"data": data, "metrics": metrics, "science": valid_science(data), "amp_gain": amp_gain}


def test_registered():
    monitor = registry()["gain"]
    assert isinstance(monitor, GainMonitor)
    assert monitor.model == "GainRefModel"


def test_metric_names_and_units(constructed):
    m = constructed["metrics"]
    assert set(m) == {"gain_mean", "gain_percentile_1", "gain_percentile_50", "gain_percentile_99", "num_no_gain_pix"}
    assert m["gain_mean"].unit == "electron / DN" and m["num_no_gain_pix"].unit == "pix"


def test_statistics_of_valid_gains_match_nanpercentile(constructed):
    s, m = constructed["science"], constructed["metrics"]
    q = [1, 50, 99]
    det = np.nanpercentile(s, q)
    amp = np.array([np.nanpercentile(s[:, amp_cols(k)], q) for k in range(1, 33)])
    sp = np.array([np.nanpercentile(s[sp_slice(i)], q) for i in range(1024)])
    for i, qi in enumerate(q):
        values = m[f"gain_percentile_{qi}"].values
        np.testing.assert_allclose(values.detector, [det[i]], rtol=1e-6)
        np.testing.assert_allclose(values.amp, amp[:, i], rtol=1e-6)
        np.testing.assert_allclose(values.superpixel, sp[:, i], rtol=1e-6)
    np.testing.assert_allclose(m["gain_mean"].values.detector, [np.nanmean(s)], rtol=1e-9)
    np.testing.assert_allclose(m["gain_mean"].values.amp, [np.nanmean(s[:, amp_cols(k)]) for k in range(1, 33)], rtol=1e-9)
    np.testing.assert_allclose(m["gain_mean"].values.superpixel, [np.nanmean(s[sp_slice(i)]) for i in range(1024)], rtol=1e-9)
    # By construction: the amp medians are the injected per-amp gains (1 per cent spread, 0.5 Mpix).
    np.testing.assert_allclose(m["gain_percentile_50"].values.amp, constructed["amp_gain"], rtol=1e-3)
    # Zeros and negatives are left out: the 1st percentile of amp 32 stays near its gain.
    assert m["gain_percentile_1"].values.amp[31] > 0.95 * constructed["amp_gain"][31]


def test_no_gain_count_by_construction(constructed):
    counts = constructed["metrics"]["num_no_gain_pix"].values
    assert counts.superpixel[1 * 32 + 8] == 22  # 10 NaN + 5 zero + 5 negative + 2 inf
    assert counts.amp[8] == 22
    assert counts.amp[31] == 4088
    assert counts.detector[0] == 22 + 4088
    assert counts.superpixel[31] == 124 and counts.superpixel[31 * 32 + 31] == 124  # rows 4-127 / 3968-4091
    assert counts.superpixel.sum() == 22 + 4088


def test_no_valid_gain_is_a_clear_error():
    with pytest.raises(MonitoringError, match="no valid gain value"):
        GainMonitor().metrics(SimpleNamespace(data=np.zeros((N, N), np.float32)), PARAMS)


# --- files, synthetic deliveries and evaluation ---------------------------------------

@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    d = tmp_path_factory.mktemp("gain")
    return {
        "first": synthetic.write(d / "gain_1.asdf", "WFI16", 1, "2026-01-01T00:00:00"),
        "second": synthetic.write(d / "gain_2.asdf", "WFI16", 2, "2026-02-01T00:00:00"),
        "anomalous": synthetic.write(d / "gain_2a.asdf", "WFI16", 2, "2026-02-01T00:00:00", anomalous=True),
        "dir": d,
    }


def test_synthetic_arrays_are_realistic_and_stable():
    a = synthetic.gain_arrays("WFI16", 1)
    b = synthetic.gain_arrays("WFI16", 2)
    assert a.dtype == np.float32 and a.shape == (N, N)
    amp_medians = np.nanmedian(a[4:-4].reshape(4088, 32, 128), axis=(0, 2))
    assert np.all((amp_medians > 1.8) & (amp_medians < 2.2))
    assert np.count_nonzero(~(np.isfinite(a) & (a > 0))) == 1500
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (b / a)[4:-4, 4:-4]
    assert np.nanmedian(np.abs(ratio - 1)) < 0.005


def test_normal_deliveries_pass(deliveries):
    checked = check_files([deliveries["first"], deliveries["second"]], Standards())
    assert all(c.metric_set.ok for c in checked)
    for c in checked:
        assert c.evaluation_set.n_failed == 0, failing(c)


def test_wrong_gain_in_two_amps_fails(deliveries):
    checked = check_files([deliveries["first"], deliveries["anomalous"]], Standards())
    first = next(c for c in checked if c.metric_set.info.filename == "gain_1.asdf")
    second = next(c for c in checked if c.metric_set.info.filename == "gain_2a.asdf")
    assert first.evaluation_set.n_failed == 0
    fails = failing(second)
    amps = {4, 5}  # amps 5 and 6
    superpixels = {y * 32 + x for y in range(32) for x in (4, 5)}
    assert fails[("change", "gain_mean", "amp")] == amps
    assert fails[("change", "gain_percentile_50", "superpixel")] == superpixels
    for (evaluator, metric, scale), regions in fails.items():
        if scale == "detector":
            # Only the high tail moves at detector scale: 2 of 32 amps now hold the top 1 per cent.
            assert metric == "gain_percentile_99"
        else:
            assert regions <= (amps if scale == "amp" else superpixels)
    assert ("change", "gain_mean", "detector") not in fails  # a 1.6 per cent shift, within tolerance


def test_wrong_shape_and_all_nan_files_give_clear_errors(deliveries):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    small = rdm.GainRefModel.create_fake_data(shape=(2048, 2048))
    small.meta.useafter = Time("2026-01-01T00:00:00")
    small_path = deliveries["dir"] / "gain_small.asdf"
    small.save(small_path)
    nan = rdm.GainRefModel.create_fake_data(shape=(N, N))
    nan.meta.useafter = Time("2026-01-01T00:00:00")
    nan.data = np.full((N, N), np.nan, dtype=np.float32)
    nan_path = deliveries["dir"] / "gain_nan.asdf"
    nan.save(nan_path)
    checked = {c.metric_set.info.filename: c.metric_set for c in check_files([small_path, nan_path], Standards())}
    assert "gain_small.asdf" in checked["gain_small.asdf"].error and "(2048, 2048)" in checked["gain_small.asdf"].error
    assert "gain_nan.asdf" in checked["gain_nan.asdf"].error and "no valid gain value" in checked["gain_nan.asdf"].error
