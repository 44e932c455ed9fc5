"""Superbias monitor: metrics against independent numpy computations, evaluation of synthetic deliveries."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.monitors.superbias import SuperbiasMonitor
from rdmt_dagster.science.monitor import registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import superbias as synthetic

from .regions import amp_cols, failing, science, sp_slice

N = 4096
PARAMS = {"percentiles": [1, 50, 99], "count_flags": ["UNRELIABLE_BIAS", "DO_NOT_USE"]}


# --- independent reference computations (plain numpy on explicit slices) -------------


def robust_std(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return 1.4826 * np.median(np.abs(values - np.median(values)))


def parity_resid(profile):
    """Even/odd medians and the profile with each parity's median removed (profile index 0 = even column)."""
    profile = np.asarray(profile, dtype=np.float64)
    even, odd = np.nanmedian(profile[0::2]), np.nanmedian(profile[1::2])
    resid = profile.copy()
    resid[0::2] -= even
    resid[1::2] -= odd
    return even, odd, resid


def expected_structure_amp(s, k):
    """Documented definitions, per amp k: (even-odd, row structure, column structure)."""
    block = s[:, amp_cols(k)]
    rows = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in block])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # border columns are all NaN
        col_medians = np.array([np.nanmedian(block[128 * by:128 * (by + 1)], axis=0) for by in range(32)])
        profile = np.nanmedian(col_medians, axis=0)
    even, odd, resid = parity_resid(profile)
    return even - odd, robust_std(rows), robust_std(resid)


def expected_structure_sp(s, i):
    block = s[sp_slice(i)]
    rows = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in block])
    cols = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in block.T])
    even, odd, resid = parity_resid(cols)
    return even - odd, robust_std(rows), robust_std(resid)


@pytest.fixture(scope="module")
def constructed():
    """A bias frame with known features: amp levels, alternating even/odd offsets,
    row and column patterns, pixel noise, a few NaN/inf pixels and counted DQ flags."""
    rng = np.random.default_rng(42)
    levels = rng.uniform(11000, 14000, 32)
    even_odd = rng.uniform(2, 6, 32) * (-1.0) ** np.arange(32)
    parity = np.where(np.arange(N) % 2 == 0, 0.5, -0.5)
    columns = np.repeat(levels, 128) + np.repeat(even_odd, 128) * parity + rng.normal(0, 3, N)
    rows = rng.normal(0, 2, N) + 20 * np.exp(-np.arange(N) / 300)
    data = (rng.normal(0, 30, (N, N)) + columns[None, :] + rows[:, None]).astype(np.float32)
    data[1000:1003, 700:705] = np.nan
    data[2000, 3000] = np.inf
    data[2001, 3001] = -np.inf
    data[:4, :] = 99999.0  # reference pixels: must not count
    dq = np.zeros((N, N), dtype=np.uint32)
    dq[:4, :] = dqflags.pixel.REFERENCE_PIXEL | dqflags.pixel.DO_NOT_USE
    dq[140:150, 140:150] |= dqflags.pixel.UNRELIABLE_BIAS  # 100 in super-pixel 33, amp 2
    dq[4000:4003, 4050:4060] |= dqflags.pixel.DO_NOT_USE | dqflags.pixel.UNRELIABLE_BIAS  # 30 in sp 1023, amp 32
    dq[4093, 100:110] |= dqflags.pixel.UNRELIABLE_BIAS  # border: not counted
    original = data.copy()
    metrics = SuperbiasMonitor().metrics(SimpleNamespace(data=data, dq=dq), PARAMS)
    return {
        "data": data, "original": original, "levels": levels, "columns": columns,
        "metrics": {m.name: m for m in metrics}, "science": science(original),
    }


def test_registered():
    monitor = registry()["superbias"]
    assert isinstance(monitor, SuperbiasMonitor)
    assert monitor.model == "SuperbiasRefModel"


def test_metric_names_and_units(constructed):
    m = constructed["metrics"]
    assert set(m) == {
        "bias_mean", "bias_percentile_1", "bias_percentile_50", "bias_percentile_99",
        "bias_even_odd_difference", "bias_row_structure", "bias_column_structure",
        "num_unreliable_bias_pix", "num_do_not_use_pix",
    }
    assert all(m[n].unit == "DN" for n in m if n.startswith("bias_"))
    assert m["num_do_not_use_pix"].unit == "pix"
    for metric in m.values():
        assert metric.values.detector.shape == (1,)
        assert metric.values.amp.shape == (32,)
        assert metric.values.superpixel.shape == (1024,)


def test_input_array_not_modified(constructed):
    np.testing.assert_array_equal(constructed["data"], constructed["original"])


def test_level_metrics_match_nanpercentile(constructed):
    s, m = constructed["science"], constructed["metrics"]
    q = [1, 50, 99]
    np.testing.assert_allclose(m["bias_mean"].values.detector, [np.nanmean(s)], rtol=1e-9)
    det = np.nanpercentile(s, q)
    for i, qi in enumerate(q):
        np.testing.assert_allclose(m[f"bias_percentile_{qi}"].values.detector, [det[i]], rtol=1e-6)
    amp = np.array([np.nanpercentile(s[:, amp_cols(k)], q) for k in range(1, 33)])
    amp_mean = np.array([np.nanmean(s[:, amp_cols(k)]) for k in range(1, 33)])
    sp = np.array([np.nanpercentile(s[sp_slice(i)], q) for i in range(1024)])
    sp_mean = np.array([np.nanmean(s[sp_slice(i)]) for i in range(1024)])
    np.testing.assert_allclose(m["bias_mean"].values.amp, amp_mean, rtol=1e-9)
    np.testing.assert_allclose(m["bias_mean"].values.superpixel, sp_mean, rtol=1e-9)
    for i, qi in enumerate(q):
        np.testing.assert_allclose(m[f"bias_percentile_{qi}"].values.amp, amp[:, i], rtol=1e-6)
        np.testing.assert_allclose(m[f"bias_percentile_{qi}"].values.superpixel, sp[:, i], rtol=1e-6)
    # The amp medians follow the constructed amp levels (+ row pattern median and noise).
    np.testing.assert_allclose(m["bias_percentile_50"].values.amp, constructed["levels"], atol=5)


def test_structure_metrics_match_definitions(constructed):
    s, m = constructed["science"], constructed["metrics"]
    amps = [1, 2, 6, 17, 31, 32]
    expected = np.array([expected_structure_amp(s, k) for k in amps])
    for j, name in enumerate(["bias_even_odd_difference", "bias_row_structure", "bias_column_structure"]):
        np.testing.assert_allclose(m[name].values.amp[np.array(amps) - 1], expected[:, j], rtol=1e-6, atol=1e-6)
    sps = [0, 1, 31, 33, 100, 250, 531, 700, 992, 1023]  # corners, edges and inside
    sps += [7 * 32 + 5, 15 * 32 + 23]  # hold the NaN block (rows 1000-1002, cols 700-704) and the +/-inf pixels
    expected = np.array([expected_structure_sp(s, i) for i in sps])
    for j, name in enumerate(["bias_even_odd_difference", "bias_row_structure", "bias_column_structure"]):
        np.testing.assert_allclose(m[name].values.superpixel[sps], expected[:, j], rtol=1e-6, atol=1e-6)


def test_structure_metrics_by_construction(constructed):
    m = constructed["metrics"]
    columns = constructed["columns"].copy()  # noise-free column pattern: level + even/odd + column offsets
    columns[:4] = columns[-4:] = np.nan
    injected = np.array([np.nanmedian(columns[amp_cols(k)][0::2]) - np.nanmedian(columns[amp_cols(k)][1::2])
                         for k in range(1, 33)])
    # Amp values recover the injected 2-6 DN pattern to within the scatter that the
    # 30 DN pixel noise leaves on medians of 64 column values (~0.3 DN RMS).
    np.testing.assert_allclose(m["bias_even_odd_difference"].values.amp, injected, atol=1.2)
    assert np.all(np.sign(m["bias_even_odd_difference"].values.amp) == (-1.0) ** np.arange(32))
    # Detector value: RMS over the amps (the injected signs alternate, a median would be ~0).
    amp = m["bias_even_odd_difference"].values.amp
    np.testing.assert_allclose(m["bias_even_odd_difference"].values.detector, [np.sqrt(np.mean(amp**2))], rtol=1e-12)
    for name in ("bias_row_structure", "bias_column_structure"):
        np.testing.assert_allclose(m[name].values.detector, [np.median(m[name].values.amp)], rtol=1e-12)


def test_pure_patterns_give_exact_structure():
    """Noise-free frames: row pattern only, then column pattern only."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 4, N)
    data = (10000.0 + z[:, None] + np.zeros((1, N))).astype(np.float32)
    m = {x.name: x for x in SuperbiasMonitor().metrics(SimpleNamespace(data=data, dq=np.zeros((N, N), np.uint32)), PARAMS)}
    zf = data[:, 10].astype(np.float64)
    np.testing.assert_allclose(m["bias_row_structure"].values.amp, robust_std(zf[4:-4]), rtol=1e-9)
    np.testing.assert_allclose(m["bias_row_structure"].values.superpixel[5 * 32 + 3], robust_std(zf[640:768]), rtol=1e-9)
    np.testing.assert_allclose(m["bias_column_structure"].values.amp, 0.0, atol=1e-9)
    np.testing.assert_allclose(m["bias_even_odd_difference"].values.amp, 0.0, atol=1e-9)

    c = rng.normal(0, 5, N)
    c[0::2] += 3.0  # even/odd offset of +3 DN in every amp
    data = (20000.0 + c[None, :] + np.zeros((N, 1))).astype(np.float32)
    m = {x.name: x for x in SuperbiasMonitor().metrics(SimpleNamespace(data=data, dq=np.zeros((N, N), np.uint32)), PARAMS)}
    cf = data[10].astype(np.float64)
    np.testing.assert_allclose(m["bias_row_structure"].values.amp, 0.0, atol=1e-9)
    k = 7
    even, odd, resid = parity_resid(cf[amp_cols(k)])
    assert m["bias_even_odd_difference"].values.amp[k - 1] == pytest.approx(even - odd, rel=1e-6)
    assert m["bias_column_structure"].values.amp[k - 1] == pytest.approx(robust_std(resid), rel=1e-6)
    assert abs(m["bias_even_odd_difference"].values.detector[0] - 3.0) < 2.0


def test_dq_counts_by_construction(constructed):
    m = constructed["metrics"]
    unreliable = m["num_unreliable_bias_pix"].values
    dnu = m["num_do_not_use_pix"].values
    assert unreliable.detector[0] == 130 and dnu.detector[0] == 30
    assert unreliable.amp[1] == 100 and unreliable.amp[31] == 30 and unreliable.amp.sum() == 130
    assert unreliable.superpixel[33] == 100 and unreliable.superpixel[1023] == 30
    assert dnu.superpixel[1023] == 30 and dnu.superpixel.sum() == 30 and dnu.amp[31] == 30


# --- files, synthetic deliveries and evaluation ---------------------------------------

@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    d = tmp_path_factory.mktemp("superbias")
    return {
        "first": synthetic.write(d / "sb_1.asdf", "WFI04", 1, "2026-01-01T00:00:00"),
        "second": synthetic.write(d / "sb_2.asdf", "WFI04", 2, "2026-02-01T00:00:00"),
        "anomalous": synthetic.write(d / "sb_2a.asdf", "WFI04", 2, "2026-02-01T00:00:00", anomalous=True),
        "dir": d,
    }


def test_synthetic_arrays_are_realistic_and_stable():
    d1, q1, _ = synthetic.superbias_arrays("WFI04", 1)
    d2, q2, _ = synthetic.superbias_arrays("WFI04", 2)
    assert d1.dtype == np.float32 and d1.shape == (N, N)
    assert 10000 < np.median(d1) < 20000
    diff = (d2 - d1)[4:-4, 4:-4]
    assert np.median(np.abs(diff)) < 10  # same pixel population, fresh noise only
    a, _, _ = synthetic.superbias_arrays("WFI04", 2, anomaly=synthetic.SuperbiasAnomaly())
    assert np.median(a[:, 1024:1152] - d2[:, 1024:1152]) == pytest.approx(250, abs=1)
    assert np.array_equal(a[:, :1024], d2[:, :1024])


def test_normal_deliveries_pass(deliveries):
    checked = check_files([deliveries["first"], deliveries["second"]], Standards())
    assert all(c.metric_set.ok for c in checked)
    second = next(c for c in checked if c.metric_set.info.filename == "sb_2.asdf")
    assert any(e.reference_files == "sb_1.asdf" for e in second.evaluation_set.evaluations)
    for c in checked:
        assert c.evaluation_set.n_failed == 0, failing(c)


def test_bias_jump_in_one_amp_fails_change(deliveries):
    checked = check_files([deliveries["first"], deliveries["anomalous"]], Standards())
    first = next(c for c in checked if c.metric_set.info.filename == "sb_1.asdf")
    second = next(c for c in checked if c.metric_set.info.filename == "sb_2a.asdf")
    assert first.evaluation_set.n_failed == 0
    fails = failing(second)
    amp9_superpixels = {y * 32 + 8 for y in range(32)}
    assert fails[("change", "bias_mean", "amp")] == {8}  # amp 9 (index 8)
    assert fails[("change", "bias_percentile_50", "superpixel")] == amp9_superpixels
    for (evaluator, metric, scale), regions in fails.items():
        assert evaluator == "change" and metric in {"bias_mean", "bias_percentile_1", "bias_percentile_50", "bias_percentile_99"}
        assert scale != "detector"
        assert regions <= ({8} if scale == "amp" else amp9_superpixels)


def test_wrong_shape_and_all_nan_files_give_clear_errors(deliveries):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    small = rdm.SuperbiasRefModel.create_fake_data(shape=(64, 64))
    small.meta.useafter = Time("2026-01-01T00:00:00")
    small_path = deliveries["dir"] / "sb_small.asdf"
    small.save(small_path)
    nan = rdm.SuperbiasRefModel.create_fake_data(shape=(N, N))
    nan.meta.useafter = Time("2026-01-01T00:00:00")
    nan.data = np.full((N, N), np.nan, dtype=np.float32)
    nan_path = deliveries["dir"] / "sb_nan.asdf"
    nan.save(nan_path)
    checked = {c.metric_set.info.filename: c.metric_set for c in check_files([small_path, nan_path], Standards())}
    assert not checked["sb_small.asdf"].ok
    assert "sb_small.asdf" in checked["sb_small.asdf"].error and "(64, 64)" in checked["sb_small.asdf"].error
    assert not checked["sb_nan.asdf"].ok
    assert "sb_nan.asdf" in checked["sb_nan.asdf"].error and "no finite science pixels" in checked["sb_nan.asdf"].error
