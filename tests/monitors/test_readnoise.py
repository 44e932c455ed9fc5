"""Read-noise monitor: metrics against independent numpy computations, evaluation of synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rdmt_dagster.checking import check_files
from rdmt_dagster.monitors.readnoise import ReadnoiseMonitor
from rdmt_dagster.science.monitor import registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import readnoise as synthetic

from .regions import amp_cols, by_name, failing, science, sp_slice

N = 4096
PARAMS = {"percentiles": [50, 90, 99], "noisy_multiple": 2.0}


@pytest.fixture(scope="module")
def constructed():
    """Log-normal read noise with per-amp levels, a few NaN, and noisy pixels placed by hand:
    1000 at 3x the level in super-pixel 0 (amp 1), 37 at 11 DN in amp 20, 5 in the border."""
    rng = np.random.default_rng(7)
    amp_level = np.repeat(rng.uniform(4.8, 5.2, 32), 128)
    data = (np.exp(rng.normal(0, 0.05, (N, N))) * amp_level[None, :]).astype(np.float32)
    data[10:20, 10:110] = 15.0  # 1000 noisy pixels in super-pixel 0, amp 1
    data[2000, 2432:2469] = 11.0  # 37 noisy pixels in amp 20 (super-pixel 15*32+19)
    data[0:2, 100:103] = 50.0  # reference pixels: never counted
    data[3000:3002, 50:60] = np.nan
    metrics = by_name(ReadnoiseMonitor().metrics(SimpleNamespace(data=data), PARAMS))
    return {"data": data, "metrics": metrics, "science": science(data)}


def test_registered():
    monitor = registry()["readnoise"]
    assert isinstance(monitor, ReadnoiseMonitor)
    assert monitor.model == "ReadnoiseRefModel"


def test_metric_names_and_units(constructed):
    m = constructed["metrics"]
    assert set(m) == {"readnoise_mean", "readnoise_percentile_50", "readnoise_percentile_90",
                      "readnoise_percentile_99", "num_noisy_pix"}
    assert m["readnoise_mean"].unit == "DN" and m["num_noisy_pix"].unit == "pix"


def test_statistics_match_nanpercentile(constructed):
    s, m = constructed["science"], constructed["metrics"]
    q = [50, 90, 99]
    det = np.nanpercentile(s, q)
    amp = np.array([np.nanpercentile(s[:, amp_cols(k)], q) for k in range(1, 33)])
    sp = np.array([np.nanpercentile(s[sp_slice(i)], q) for i in range(1024)])
    for i, qi in enumerate(q):
        values = m[f"readnoise_percentile_{qi}"].values
        np.testing.assert_allclose(values.detector, [det[i]], rtol=1e-6)
        np.testing.assert_allclose(values.amp, amp[:, i], rtol=1e-6)
        np.testing.assert_allclose(values.superpixel, sp[:, i], rtol=1e-6)
    np.testing.assert_allclose(m["readnoise_mean"].values.detector, [np.nanmean(s)], rtol=1e-9)
    np.testing.assert_allclose(m["readnoise_mean"].values.amp,
                               [np.nanmean(s[:, amp_cols(k)]) for k in range(1, 33)], rtol=1e-9)
    np.testing.assert_allclose(m["readnoise_mean"].values.superpixel,
                               [np.nanmean(s[sp_slice(i)]) for i in range(1024)], rtol=1e-9)


def test_noisy_pixel_count_by_construction(constructed):
    m = constructed["metrics"]
    s = constructed["science"]
    # Independently: pixels above 2x the detector median.
    threshold = 2.0 * np.nanmedian(s)
    assert 9.5 < threshold < 10.5  # so 11 DN and 15 DN pixels are noisy, the log-normal body is not
    noisy = m["num_noisy_pix"].values
    assert noisy.detector[0] == 1037 == np.count_nonzero(s > threshold)
    assert noisy.amp[0] == 1000 and noisy.amp[19] == 37 and noisy.amp.sum() == 1037
    assert noisy.superpixel[0] == 1000 and noisy.superpixel[15 * 32 + 19] == 37
    assert noisy.superpixel.sum() == 1037


def test_noisy_multiple_is_a_parameter(constructed):
    m = by_name(ReadnoiseMonitor().metrics(SimpleNamespace(data=constructed["data"]),
                                           {"percentiles": [50], "noisy_multiple": 2.5}))
    # 2.5x the median (~12.5 DN): only the 1000 pixels at 15 DN remain.
    assert m["num_noisy_pix"].values.detector[0] == 1000
    assert set(m) == {"readnoise_mean", "readnoise_percentile_50", "num_noisy_pix"}


def test_non_positive_median_is_an_error():
    from rdmt_dagster.science.monitor import MonitoringError

    with pytest.raises(MonitoringError, match="median"):
        ReadnoiseMonitor().metrics(SimpleNamespace(data=np.zeros((N, N), np.float32)), PARAMS)


# --- files, synthetic deliveries and evaluation ---------------------------------------

@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    d = tmp_path_factory.mktemp("readnoise")
    return {
        "first": synthetic.write(d / "rn_1.asdf", "WFI12", 1, "2026-01-01T00:00:00"),
        "second": synthetic.write(d / "rn_2.asdf", "WFI12", 2, "2026-02-01T00:00:00"),
        "anomalous": synthetic.write(d / "rn_2a.asdf", "WFI12", 2, "2026-02-01T00:00:00", anomalous=True),
        "dir": d,
    }


def test_synthetic_arrays_are_realistic_and_stable():
    a = synthetic.readnoise_arrays("WFI12", 1)
    b = synthetic.readnoise_arrays("WFI12", 2)
    assert a.dtype == np.float32 and a.shape == (N, N)
    assert 5.0 * 0.9 < np.median(a) < 6.0 * 1.1
    noisy = a > 2 * np.median(a)
    assert 40_000 < np.count_nonzero(noisy) < 60_000  # ~0.3 per cent tail
    ratio = (b / a)[4:-4, 4:-4]
    assert np.median(np.abs(ratio - 1)) < 0.03  # same pixels, fresh 2 per cent noise


def test_normal_deliveries_pass(deliveries):
    checked = check_files([deliveries["first"], deliveries["second"]], Standards())
    assert all(c.metric_set.ok for c in checked)
    for c in checked:
        assert c.evaluation_set.n_failed == 0, failing(c)


def test_block_of_noisy_pixels_fails(deliveries):
    checked = check_files([deliveries["first"], deliveries["anomalous"]], Standards())
    first = next(c for c in checked if c.metric_set.info.filename == "rn_1.asdf")
    second = next(c for c in checked if c.metric_set.info.filename == "rn_2a.asdf")
    assert first.evaluation_set.n_failed == 0
    fails = failing(second)
    # Block: rows 1500-1699, columns 2440-2539 -> amp 20, super-pixels (11..13)*32 + 19.
    block_superpixels = {11 * 32 + 19, 12 * 32 + 19, 13 * 32 + 19}
    assert fails[("change", "num_noisy_pix", "detector")] == {0}
    assert fails[("change", "num_noisy_pix", "amp")] == {19}
    assert fails[("change", "num_noisy_pix", "superpixel")] == block_superpixels
    assert fails[("change", "readnoise_mean", "superpixel")] == block_superpixels
    for (evaluator, metric, scale), regions in fails.items():
        if scale == "detector":
            assert metric == "num_noisy_pix"
        else:
            assert regions <= ({19} if scale == "amp" else block_superpixels)


def test_wrong_shape_and_all_nan_files_give_clear_errors(deliveries):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    small = rdm.ReadnoiseRefModel.create_fake_data(shape=(4088, 100))
    small.meta.useafter = Time("2026-01-01T00:00:00")
    small_path = deliveries["dir"] / "rn_small.asdf"
    small.save(small_path)
    nan = rdm.ReadnoiseRefModel.create_fake_data(shape=(N, N))
    nan.meta.useafter = Time("2026-01-01T00:00:00")
    nan.data = np.full((N, N), np.nan, dtype=np.float32)
    nan_path = deliveries["dir"] / "rn_nan.asdf"
    nan.save(nan_path)
    checked = {c.metric_set.info.filename: c.metric_set for c in check_files([small_path, nan_path], Standards())}
    assert "rn_small.asdf" in checked["rn_small.asdf"].error and "(4088, 100)" in checked["rn_small.asdf"].error
    assert "rn_nan.asdf" in checked["rn_nan.asdf"].error and "no finite science pixels" in checked["rn_nan.asdf"].error
