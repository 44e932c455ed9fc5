"""Linearity monitor: coefficient medians / spreads / means, non-finite and DQ counts, synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import linearity as synthetic_linearity

from .regions import by_name, expected

F = dqflags.pixel
PARAMS = Standards().for_monitor("linearity").parameters


@pytest.fixture(scope="module")
def constructed():
    """Three coefficients with per-amp structure, wild unflagged fits, flagged placeholders and NaN/inf."""
    rng = np.random.default_rng(3)
    coeffs = np.empty((3, 4096, 4096), dtype=np.float32)
    coeffs[0] = rng.normal(0.0, 2.0, (4096, 4096))
    coeffs[1] = rng.normal(1.0, 0.003, (4096, 4096))
    coeffs[2] = rng.normal(1.0, 0.1, (4096, 4096)) * (8e-7 * (1.0 + 0.05 * np.arange(32))).repeat(128)[None, :]
    dq = np.zeros((4096, 4096), dtype=np.uint32)
    failed = rng.random((4096, 4096)) < 0.002
    coeffs[:, failed] = 0.0
    dq[failed] |= np.uint32(F.NO_LIN_CORR)
    dq[rng.random((4096, 4096)) < 0.001] |= np.uint32(F.NONLINEAR)
    wild = rng.random((4096, 4096)) < 0.001  # unflagged bad fits: the robust statistics shrug them off
    coeffs[2, wild] = 1e-3
    # Non-finite: NaN in coefficient 0 (not a statistic, but counted), inf in coefficient 2,
    # a NaN in a flagged pixel (counted), all in super-pixel (3, 4) = index 100.
    coeffs[0, 400, 520] = np.nan
    coeffs[2, 401, 521] = np.inf
    coeffs[1, 402, 522] = np.nan
    dq[402, 522] |= np.uint32(F.NO_LIN_CORR)
    coeffs[0, 0, 0] = np.nan  # border: not counted
    return coeffs, dq


def test_monitor_is_registered():
    assert registry()["linearity"].model == "LinearityRefModel"


def test_coefficient_statistics_match_numpy(constructed):
    coeffs, dq = constructed
    params = dict(PARAMS, robust_coefficients=[1, 2], mean_coefficients=[1])
    metrics = by_name(registry()["linearity"].metrics(SimpleNamespace(coeffs=coeffs, dq=dq), params))
    keep = (dq & np.uint32(F.NO_LIN_CORR)) == 0
    for k in (1, 2):
        values = np.where(keep & np.isfinite(coeffs[k]), coeffs[k].astype(np.float64), np.nan)
        median = expected(np.nanmedian, values)
        spread = expected(lambda b: (np.nanpercentile(b, 84.13447460685429) - np.nanpercentile(b, 15.865525393145708)) / 2,
                          values)
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_allclose(metrics[f"coeff{k}_median"].values[scale], median[scale], rtol=1e-6)
            np.testing.assert_allclose(metrics[f"coeff{k}_spread"].values[scale], spread[scale], rtol=1e-4)
        if k == 1:
            mean = expected(np.nanmean, values)
            for scale in ("detector", "amp", "superpixel"):
                np.testing.assert_allclose(metrics["coeff1_mean"].values[scale], mean[scale], rtol=1e-9)
    # Known by construction: amp k's coefficient 2 is 8e-7 (1 + 0.05 (k-1)) with a 10 % pixel scatter.
    amp_median = metrics["coeff2_median"].values.amp
    np.testing.assert_allclose(amp_median, 8e-7 * (1 + 0.05 * np.arange(32)), rtol=0.005)
    np.testing.assert_allclose(metrics["coeff2_spread"].values.amp, 0.1 * amp_median, rtol=0.03)
    assert metrics["coeff1_median"].unit == "" and metrics["coeff2_median"].unit == "DN-1"


def test_counts_match_construction(constructed):
    coeffs, dq = constructed
    metrics = by_name(registry()["linearity"].metrics(SimpleNamespace(coeffs=coeffs, dq=dq), PARAMS))
    nonfinite = metrics["num_nonfinite_coeff_pix"]
    assert nonfinite.values.detector[0] == 3
    assert nonfinite.values.superpixel[3 * 32 + 4] == 3
    assert nonfinite.values.amp[4] == 3
    for flag in PARAMS["count_flags"]:
        want = expected(lambda d: np.count_nonzero(d & np.uint32(F[flag])), dq)
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_array_equal(metrics[f"num_{flag.lower()}_pix"].values[scale], want[scale])
    finite = np.nan_to_num(coeffs)
    clean = by_name(registry()["linearity"].metrics(SimpleNamespace(coeffs=finite, dq=dq), PARAMS))
    assert clean["num_nonfinite_coeff_pix"].values.superpixel.sum() == 0


def test_bad_arrays_raise_clear_errors(constructed):
    coeffs, dq = constructed
    monitor = registry()["linearity"]
    with pytest.raises(MonitoringError, match="holds 3 coefficient"):
        monitor.metrics(SimpleNamespace(coeffs=coeffs, dq=dq), dict(PARAMS, robust_coefficients=[3]))
    with pytest.raises(MonitoringError, match="shape"):
        monitor.metrics(SimpleNamespace(coeffs=coeffs[0], dq=dq), PARAMS)


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linearity")
    first = synthetic_linearity.write(folder / "roman_wfi_linearity_0009.asdf", "WFI09", 1, "2027-01-01T00:00:00")
    second = synthetic_linearity.write(folder / "roman_wfi_linearity_0027.asdf", "WFI09", 2, "2027-02-01T00:00:00")
    bad = synthetic_linearity.write(folder / "roman_wfi_linearity_0028.asdf", "WFI09", 2, "2027-02-01T00:00:00",
                                    anomalous=True)
    return first, second, bad


def test_synthetic_deliveries(deliveries):
    first, second, bad = deliveries
    results = check_files([first, second], Standards())
    assert [r.metric_set.error for r in results] == [None, None]
    assert [r.evaluation_set.n_failed for r in results] == [0, 0]

    results = check_files([first, bad], Standards())
    failures = {(ev.metric, ev.scale, ev.evaluator): ev for ev in results[1].evaluation_set.failures}
    amp = synthetic_linearity.LinearityAnomaly().amp
    change = failures[("coeff2_median", "amp", "change")]
    assert np.flatnonzero(~change.passed).tolist() == [amp - 1]
    superpixels = np.flatnonzero(~failures[("coeff2_median", "superpixel", "change")].passed)
    assert sorted(set(superpixels % 32)) == [amp - 1] and superpixels.size == 32
    assert ("coeff2_median", "detector", "change") not in failures


def _write(path, coeffs, dq):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    model = rdm.LinearityRefModel.create_fake_data(shape=coeffs.shape)
    model.meta.useafter = Time("2027-01-01T00:00:00")
    model.coeffs = coeffs
    model.dq = dq
    model.save(path)
    return path


def test_wrong_shape_and_all_nan_files_name_the_file(tmp_path):
    small = _write(tmp_path / "roman_wfi_linearity_small.asdf", np.ones((3, 64, 64), np.float32),
                   np.zeros((64, 64), np.uint32))
    nan = _write(tmp_path / "roman_wfi_linearity_nan.asdf", np.full((3, 4096, 4096), np.nan, np.float32),
                 np.zeros((4096, 4096), np.uint32))
    errors = [r.metric_set.error for r in check_files([small, nan], Standards())]
    assert errors[0].startswith("roman_wfi_linearity_small.asdf") and "shape (3, 64, 64)" in errors[0]
    assert errors[1].startswith("roman_wfi_linearity_nan.asdf") and "no finite" in errors[1]
