"""Refpix (IRRC) monitor: band amplitudes per channel, non-finite counts, synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rdmt_dagster.checking import check_files
from rdmt_dagster.monitors.refpix import band_bins
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import refpix as synthetic_refpix

from .regions import by_name

PARAMS = Standards().for_monitor("refpix").parameters
N = 286_721
FREQ = np.arange(N) * 203125.0 / 573440.0  # Hz: 4096 rows x 140 pixel times per channel stream


@pytest.fixture(scope="module")
def constructed():
    """Random coefficients, one band with a known amplitude, and NaN/inf values in known channels."""
    rng = np.random.default_rng(5)
    arrays = {}
    for name in ("alpha", "gamma", "zeta"):
        arrays[name] = (rng.normal(size=(32, N)) + 1j * rng.normal(size=(32, N))) * (1 + np.arange(32))[:, None] / 10
    # alpha = (channel + 1) x e^{i phi} exactly in 10-100 Hz: the band mean is channel + 1.
    band = (FREQ >= 10) & (FREQ <= 100)
    arrays["alpha"][:, band] = (1 + np.arange(32))[:, None] * np.exp(1j * rng.uniform(0, 2 * np.pi, (32, band.sum())))
    arrays["gamma"][4, 10] = np.nan  # 3.54 Hz: in the lowest band
    arrays["gamma"][4, 200000] = complex(np.inf, 0)
    arrays["zeta"][30, 50000] = complex(0, np.nan)
    return arrays


def test_monitor_is_registered():
    assert registry()["refpix"].model == "RefpixRefModel"


def test_band_amplitudes_match_numpy(constructed):
    metrics = by_name(registry()["refpix"].metrics(SimpleNamespace(**constructed), PARAMS))
    for name, array in constructed.items():
        amplitude = np.abs(array)
        for band, (lo, hi) in PARAMS["bands_hz"].items():
            where = (FREQ >= lo) & (FREQ <= hi)
            want = np.nanmean(np.where(np.isfinite(amplitude[:, where]), amplitude[:, where], np.nan), axis=1)
            metric = metrics[f"{name}_abs_mean_{band}"]
            np.testing.assert_allclose(metric.values.amp, want, rtol=1e-10, err_msg=f"{name} {band}")
            assert metric.values.detector[0] == pytest.approx(want.mean(), rel=1e-10)
            assert metric.values.superpixel is None
            assert metric.unit == ""
    np.testing.assert_allclose(metrics["alpha_abs_mean_10_100hz"].values.amp, 1 + np.arange(32), rtol=1e-12)
    count = metrics["num_nonfinite_coeffs"]
    expected = np.zeros(32)
    expected[4], expected[30] = 2, 1
    np.testing.assert_array_equal(count.values.amp, expected)
    assert count.values.detector[0] == 3 and count.values.superpixel is None


def test_bands_follow_the_irrc_frequency_grid():
    bins = band_bins({"low": [0.3, 10.0], "row": [1450.0, 1452.0]}, N, 203125.0)
    assert bins["low"] == slice(1, 29)  # 0.354 .. 9.92 Hz
    assert FREQ[bins["row"]].tolist() == [f for f in FREQ if 1450 <= f <= 1452]
    assert 4096 in range(N)[bins["row"]]  # the row frequency, 203125 / 140 Hz
    with pytest.raises(ValueError, match="holds no frequency bin"):
        band_bins({"empty": [0.1, 0.2]}, N, 203125.0)


def test_bad_arrays_raise_clear_errors(constructed):
    monitor = registry()["refpix"]
    short = dict(constructed, zeta=constructed["zeta"][:, :1000])
    with pytest.raises(MonitoringError, match=r"'zeta' has shape \(32, 1000\)"):
        monitor.metrics(SimpleNamespace(**short), PARAMS)
    with pytest.raises(MonitoringError, match="has no 'gamma'"):
        monitor.metrics(SimpleNamespace(alpha=constructed["alpha"], zeta=constructed["zeta"]), PARAMS)


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refpix")
    first = synthetic_refpix.write(folder / "roman_wfi_refpix_0013.asdf", "WFI13", 1, "2027-01-01T00:00:00")
    second = synthetic_refpix.write(folder / "roman_wfi_refpix_0031.asdf", "WFI13", 2, "2027-02-01T00:00:00")
    bad = synthetic_refpix.write(folder / "roman_wfi_refpix_0032.asdf", "WFI13", 2, "2027-02-01T00:00:00",
                                 anomalous=True)
    return first, second, bad


def test_synthetic_deliveries(deliveries):
    first, second, bad = deliveries
    results = check_files([first, second], Standards())
    assert [r.metric_set.error for r in results] == [None, None]
    assert [r.evaluation_set.n_failed for r in results] == [0, 0]
    metrics = by_name(results[1].metric_set.metrics)
    assert metrics["gamma_abs_mean_1p5_100khz"].values.detector[0] == 0.0  # filtered above the row frequency
    assert 0.8 < metrics["alpha_abs_mean_0p3_10hz"].values.detector[0] < 1.1

    results = check_files([first, bad], Standards())
    failures = results[1].evaluation_set.failures
    channel = synthetic_refpix.RefpixAnomaly().channel
    assert {ev.metric for ev in failures} == {f"alpha_abs_mean_{band}" for band in PARAMS["bands_hz"]}
    for ev in failures:
        assert (ev.scale, ev.evaluator) == ("amp", "change")
        assert np.flatnonzero(~ev.passed).tolist() == [channel - 1]


def test_wrong_shape_and_all_nan_files_name_the_file(tmp_path):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    def write(path, shape, fill):
        model = rdm.RefpixRefModel.create_fake_data(shape=shape)
        model.meta.useafter = Time("2027-01-01T00:00:00")
        for name in ("alpha", "gamma", "zeta"):
            setattr(model, name, np.full(shape, fill, dtype=np.complex128))
        model.save(path)
        return path

    small = write(tmp_path / "roman_wfi_refpix_small.asdf", (16, 1000), 1.0)
    nan = write(tmp_path / "roman_wfi_refpix_nan.asdf", (32, N), complex(np.nan, np.nan))
    errors = [r.metric_set.error for r in check_files([small, nan], Standards())]
    assert errors[0].startswith("roman_wfi_refpix_small.asdf") and "shape (16, 1000)" in errors[0]
    assert errors[1].startswith("roman_wfi_refpix_nan.asdf") and "no finite" in errors[1]
