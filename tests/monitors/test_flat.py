"""Flat monitor: metrics against independent numpy computations, evaluation of synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.monitors.flat import FlatMonitor
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import flat as synthetic

from .regions import amp_cols, by_name, failing, science, sp_slice

N = 4096
Q = [1, 5, 50, 95, 99]
PARAMS = {"percentiles": Q, "count_flags": ["LOW_QE", "NO_FLAT_FIELD"]}
LOW_QE = int(dqflags.pixel.LOW_QE)
NO_FLAT = int(dqflags.pixel.NO_FLAT_FIELD)


@pytest.fixture(scope="module")
def constructed():
    """A flat at an arbitrary scale (2.5) with a gradient along x, 2 per cent pixel spread,
    a 20 per cent low-response square in super-pixel 100, and counted DQ flags and NaN/inf."""
    rng = np.random.default_rng(5)
    x = np.linspace(-1, 1, N)
    data = (2.5 * (1 + 0.05 * x)[None, :] * (1 + 0.02 * rng.standard_normal((N, N)))).astype(np.float32)
    data[3 * 128 + 10:3 * 128 + 60, 4 * 128 + 10:4 * 128 + 60] *= np.float32(0.8)  # 2500 pix in super-pixel 100
    dq = np.zeros((N, N), dtype=np.uint32)
    dq[:4, :] = dqflags.pixel.REFERENCE_PIXEL | LOW_QE  # border: never counted
    dq[480:500, 600:610] |= LOW_QE  # 200 in super-pixel 3*32+4 = 100, amp 5
    dq[4090, 1990:2040] |= LOW_QE  # 50 in super-pixel 31*32+15, amp 16
    dq[1000:1003, 3000:3007] |= NO_FLAT  # 21 in super-pixel 7*32+23, amp 24
    data[1000:1003, 3000:3007] = np.nan
    data[1200, 3000:3003] = np.inf  # 3 more non-finite, not flagged
    metrics = by_name(FlatMonitor().metrics(SimpleNamespace(data=data, dq=dq), PARAMS))
    return {"data": data, "dq": dq, "metrics": metrics, "science": science(data)}


def test_registered():
    monitor = registry()["flat"]
    assert isinstance(monitor, FlatMonitor)
    assert monitor.model == "FlatRefModel"


def test_metric_names_and_units(constructed):
    m = constructed["metrics"]
    assert set(m) == {f"flat_response_percentile_{q}" for q in Q} | {
        "num_low_qe_pix", "num_no_flat_field_pix", "num_nonfinite_pix"}
    assert m["flat_response_percentile_50"].unit == "" and m["num_low_qe_pix"].unit == "pix"


def test_normalised_percentiles_match_nanpercentile(constructed):
    s, m = constructed["science"], constructed["metrics"]
    median = np.nanmedian(s)
    det = np.nanpercentile(s, Q) / median
    amp = np.array([np.nanpercentile(s[:, amp_cols(k)], Q) for k in range(1, 33)]) / median
    sp = np.array([np.nanpercentile(s[sp_slice(i)], Q) for i in range(1024)]) / median
    for i, q in enumerate(Q):
        values = m[f"flat_response_percentile_{q}"].values
        np.testing.assert_allclose(values.detector, [det[i]], rtol=1e-6)
        np.testing.assert_allclose(values.amp, amp[:, i], rtol=1e-6)
        np.testing.assert_allclose(values.superpixel, sp[:, i], rtol=1e-6)
    assert m["flat_response_percentile_50"].values.detector[0] == pytest.approx(1.0, abs=1e-12)
    # By construction: the 5 per cent gradient along x shows in the amp medians ...
    amp50 = m["flat_response_percentile_50"].values.amp
    assert amp50[0] == pytest.approx(1 - 0.05 * 31 / 32, abs=0.003)
    assert amp50[31] == pytest.approx(1 + 0.05 * 31 / 32, abs=0.003)
    # ... and the low-response square (15 per cent of super-pixel 100) pulls down its 5th percentile only.
    sp5 = m["flat_response_percentile_5"].values.superpixel
    assert sp5[100] < 0.85 < np.min(np.delete(sp5, 100))


def test_scale_invariance_and_science_area_input(constructed):
    """Same metrics for the flat x 0.37 given as its 4088x4088 science area."""
    data, dq = constructed["data"], constructed["dq"]
    area = SimpleNamespace(data=np.ascontiguousarray(data[4:-4, 4:-4] * np.float32(0.37)),
                           dq=np.ascontiguousarray(dq[4:-4, 4:-4]))
    other = by_name(FlatMonitor().metrics(area, PARAMS))
    for name, metric in constructed["metrics"].items():
        for scale, values in metric.values.items():
            np.testing.assert_allclose(other[name].values[scale], values, rtol=2e-6, err_msg=f"{name} {scale}")


def test_dq_and_nonfinite_counts_by_construction(constructed):
    m = constructed["metrics"]
    low, no_flat, nonfinite = (m[n].values for n in ("num_low_qe_pix", "num_no_flat_field_pix", "num_nonfinite_pix"))
    assert low.detector[0] == 250 and low.amp[4] == 200 and low.amp[15] == 50
    assert low.superpixel[100] == 200 and low.superpixel[31 * 32 + 15] == 50 and low.superpixel.sum() == 250
    assert no_flat.detector[0] == 21 and no_flat.amp[23] == 21 and no_flat.superpixel[7 * 32 + 23] == 21
    assert nonfinite.detector[0] == 24 and nonfinite.amp[23] == 24
    assert nonfinite.superpixel[7 * 32 + 23] == 21 and nonfinite.superpixel[9 * 32 + 23] == 3


def test_non_positive_median_is_an_error():
    with pytest.raises(MonitoringError, match="positive median"):
        FlatMonitor().metrics(SimpleNamespace(data=np.zeros((N, N), np.float32), dq=np.zeros((N, N), np.uint32)), PARAMS)


# --- files, synthetic deliveries and evaluation ---------------------------------------

@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    d = tmp_path_factory.mktemp("flat")
    return {
        "first": synthetic.write(d / "flat_1.asdf", "WFI08", 1, "2026-01-01T00:00:00"),
        "second": synthetic.write(d / "flat_2.asdf", "WFI08", 2, "2026-02-01T00:00:00"),
        "anomalous": synthetic.write(d / "flat_2a.asdf", "WFI08", 2, "2026-02-01T00:00:00", anomalous=True),
        "dir": d,
    }


def test_synthetic_arrays_are_realistic_and_stable():
    a, dq, _ = synthetic.flat_arrays("WFI08", 1)
    b, _, _ = synthetic.flat_arrays("WFI08", 2)
    assert a.dtype == np.float32 and a.shape == (N, N)
    assert np.nanmedian(a[4:-4, 4:-4]) == pytest.approx(1.0, abs=1e-3)
    assert np.count_nonzero(dq & LOW_QE) == 33_000
    assert np.count_nonzero(dq & NO_FLAT) == np.count_nonzero(np.isnan(a)) == 1_500
    assert np.nanmedian(np.abs(b / a - 1)) < 0.005
    area, area_dq, _ = synthetic.flat_arrays("WFI08", 1, science_area_only=True)
    assert area.shape == (4088, 4088) and np.array_equal(area, a[4:-4, 4:-4], equal_nan=True)


def test_normal_deliveries_pass(deliveries):
    checked = check_files([deliveries["first"], deliveries["second"]], Standards())
    assert all(c.metric_set.ok for c in checked)
    for c in checked:
        assert c.evaluation_set.n_failed == 0, failing(c)


def test_dust_spot_fails(deliveries):
    checked = check_files([deliveries["first"], deliveries["anomalous"]], Standards())
    first = next(c for c in checked if c.metric_set.info.filename == "flat_1.asdf")
    second = next(c for c in checked if c.metric_set.info.filename == "flat_2a.asdf")
    assert first.evaluation_set.n_failed == 0
    fails = failing(second)
    spot_superpixel, spot_amp = 20 * 32 + 10, 10  # centre (2624, 1344): super-pixel 650, amp 11
    assert fails[("change", "flat_response_percentile_1", "superpixel")] == {spot_superpixel}
    assert fails[("change", "flat_response_percentile_1", "amp")] == {spot_amp}
    for (evaluator, metric, scale), regions in fails.items():
        assert scale != "detector" and metric.startswith("flat_response")
        assert regions == ({spot_amp} if scale == "amp" else {spot_superpixel})


def test_wrong_shape_and_all_nan_files_give_clear_errors(deliveries):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    small = rdm.FlatRefModel.create_fake_data(shape=(4096, 4088))
    small.meta.useafter = Time("2026-01-01T00:00:00")
    small_path = deliveries["dir"] / "flat_small.asdf"
    small.save(small_path)
    nan = rdm.FlatRefModel.create_fake_data(shape=(4088, 4088))
    nan.meta.useafter = Time("2026-01-01T00:00:00")
    nan.data = np.full((4088, 4088), np.nan, dtype=np.float32)
    nan_path = deliveries["dir"] / "flat_nan.asdf"
    nan.save(nan_path)
    checked = {c.metric_set.info.filename: c.metric_set for c in check_files([small_path, nan_path], Standards())}
    assert "flat_small.asdf" in checked["flat_small.asdf"].error and "(4096, 4088)" in checked["flat_small.asdf"].error
    assert "flat_nan.asdf" in checked["flat_nan.asdf"].error and "no finite science pixels" in checked["flat_nan.asdf"].error
