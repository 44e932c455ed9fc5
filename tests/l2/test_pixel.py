"""The pixel monitor of L2 images against independent numpy computations on constructed images."""

from __future__ import annotations

from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.l2.image import L2Image
from rdmt_dagster.l2.wcs import tangent_wcs
from rdmt_dagster.monitors.pixel import PixelMonitor
from rdmt_dagster.science.evaluators import evaluate_absolute
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards

DO_NOT_USE = int(dqflags.pixel.DO_NOT_USE)
SATURATED = int(dqflags.pixel.SATURATED)
JUMP_DET = int(dqflags.pixel.JUMP_DET)
HOT = int(dqflags.pixel.HOT)
STATISTICS = ("pixel_min", "pixel_max", "pixel_mean", "pixel_median", "pixel_std",
              "pixel_percentile_5", "pixel_percentile_95", "background_level", "background_noise")
PERCENTILES = {"pixel_percentile_5": 5, "pixel_median": 50, "pixel_percentile_95": 95}
PLATE_SCALES = ("plate_scale_center", "plate_scale_corner_min", "plate_scale_corner_max")


def run(image, parameters=None):
    """Metric name -> `Metric` for the monitor with the packaged parameters (or ``parameters``)."""
    if parameters is None:
        parameters = Standards().for_monitor("pixel").parameters
    return {m.name: m for m in PixelMonitor().metrics(image, parameters)}


def amp_columns(width, offset):
    """Image-column slice of amps 1..32: frame columns 128(k-1)..128k-1, shifted by the frame offset."""
    out = []
    for k in range(1, 33):
        start, stop = 128 * (k - 1) - offset, 128 * k - offset
        out.append(slice(min(max(start, 0), width), min(max(stop, 0), width)))
    return out


def good_pixels(data, dq, bits=DO_NOT_USE | SATURATED):
    return np.isfinite(data) & ((dq & bits) == 0)


def expected_statistics(values):
    """Independent numpy statistics of one region's good values (NaN when there are none)."""
    if values.size == 0:
        return {name: np.nan for name in STATISTICS if not name.startswith("background")}
    wide = values.astype(np.float64)
    out = {"pixel_min": values.min(), "pixel_max": values.max(), "pixel_mean": wide.mean(), "pixel_std": wide.std()}
    for name, q in PERCENTILES.items():
        out[name] = np.percentile(values, q)
    return out


def assert_region(metrics, scale, index, values):
    """The statistics of region ``index`` at ``scale`` against `expected_statistics` of its good ``values``."""
    expected = expected_statistics(values)
    for name, value in expected.items():
        got = metrics[name].values[scale][index]
        if np.isnan(value):
            assert np.isnan(got), (name, scale, index, got)
        elif name in ("pixel_mean", "pixel_std"):
            assert got == pytest.approx(value, rel=1e-6, abs=1e-12), (name, scale, index)
        else:
            # Order statistics and percentiles: exactly numpy's values.
            assert got == float(value), (name, scale, index, got, value)


@pytest.fixture(scope="module")
def small():
    """A 96 x 512 image (frame offset 0: amps 1-4) with stars, NaN/inf, flagged and tied pixels."""
    rng = np.random.default_rng(11)
    rows, cols = 96, 512
    data = (0.7 + 0.06 * rng.standard_normal((rows, cols))).astype(np.float32)
    data[:, 128:256] += 0.25  # amp 2 brighter: a wrong amp boundary shows
    stars = rng.random((rows, cols)) < 0.02
    data[stars] += rng.uniform(1.0, 3000.0, stars.sum()).astype(np.float32)
    data[5, 300:340] = np.float32(0.75)  # ties
    data[7, 10] = -40.0  # an unflagged cold outlier sets amp 1's minimum
    dq = np.zeros((rows, cols), dtype=np.uint32)
    dq[rng.random((rows, cols)) < 0.03] |= DO_NOT_USE
    saturated = rng.random((rows, cols)) < 0.01
    dq[saturated] |= SATURATED
    data[saturated] = 5.0e4  # would set the maximum if not excluded
    dq[rng.random((rows, cols)) < 0.02] |= JUMP_DET  # valid slopes: not excluded
    dq[rng.random((rows, cols)) < 0.01] |= HOT  # not in exclude_flags: not excluded
    data[rng.random((rows, cols)) < 0.01] = np.nan
    data[3, 400] = np.inf
    data[4, 401] = -np.inf
    dq[:, 384:512] |= DO_NOT_USE  # amp 4 has no good pixel
    return data, dq


def test_pixel_monitor_is_registered():
    monitor = registry()["pixel"]
    assert isinstance(monitor, PixelMonitor)
    assert (monitor.model, monitor.version, monitor.scales) == ("ImageModel", "1.0.0", ("detector", "amp"))


def test_small_image_statistics_equal_numpy(small):
    data, dq = small
    metrics = run(L2Image(data=data, dq=dq))
    good = good_pixels(data, dq)
    for amp, columns in enumerate(amp_columns(data.shape[1], 0)):
        assert_region(metrics, "amp", amp, data[:, columns][good[:, columns]])
    assert_region(metrics, "detector", 0, data[good])
    assert metrics["pixel_min"].values.amp[0] == -40.0
    assert metrics["pixel_max"].values.detector[0] < 5.0e4  # saturated pixels left out


def test_counts_and_good_fraction_are_exact(small):
    data, dq = small
    metrics = run(L2Image(data=data, dq=dq))
    good = good_pixels(data, dq)
    saturated = (dq & SATURATED) != 0
    for amp, columns in enumerate(amp_columns(data.shape[1], 0)):
        assert metrics["num_saturated_pix"].values.amp[amp] == saturated[:, columns].sum()
        area = good[:, columns].size
        fraction = metrics["good_pixel_fraction"].values.amp[amp]
        if area:
            assert fraction == good[:, columns].sum() / area
        else:  # amps 5-32 are outside this small image
            assert np.isnan(fraction)
    assert metrics["num_saturated_pix"].values.detector[0] == saturated.sum()
    assert metrics["good_pixel_fraction"].values.detector[0] == good.sum() / good.size
    assert metrics["num_saturated_pix"].unit == "pix" and metrics["good_pixel_fraction"].unit == ""


def test_an_amp_without_good_pixels_gives_nan_statistics_and_zero_counts(small):
    data, dq = small
    data = data.copy()
    data[:, 256:384] = np.nan  # amp 3: no finite pixel; amp 4: all DO_NOT_USE
    dq = dq & ~np.uint32(SATURATED)
    metrics = run(L2Image(data=data, dq=dq))
    for amp in (2, 3):
        for name in STATISTICS:
            assert np.isnan(metrics[name].values.amp[amp]), (name, amp)
        assert metrics["num_saturated_pix"].values.amp[amp] == 0
        assert metrics["good_pixel_fraction"].values.amp[amp] == 0.0
    good = good_pixels(data, dq)
    assert_region(metrics, "detector", 0, data[good])
    assert np.isfinite(metrics["background_level"].values.amp[:2]).all()


def test_an_image_without_good_pixels_is_measured():
    """Finite but all flagged: nothing to take statistics of, but a good-pixel fraction of 0 to report."""
    data = np.ones((16, 256), dtype=np.float32)
    dq = np.full(data.shape, DO_NOT_USE | SATURATED, dtype=np.uint32)
    metrics = run(L2Image(data=data, dq=dq))
    for name in STATISTICS:
        assert np.isnan(metrics[name].values.detector[0]) and np.isnan(metrics[name].values.amp).all(), name
    assert metrics["good_pixel_fraction"].values.detector[0] == 0.0
    assert metrics["num_saturated_pix"].values.detector[0] == data.size
    np.testing.assert_array_equal(metrics["num_saturated_pix"].values.amp[:2], [16 * 128, 16 * 128])


def test_exclude_flags_come_from_the_parameters(small):
    data, dq = small
    parameters = {**Standards().for_monitor("pixel").parameters, "exclude_flags": ["DO_NOT_USE"]}
    metrics = run(L2Image(data=data, dq=dq), parameters)
    good = good_pixels(data, dq, DO_NOT_USE)
    assert_region(metrics, "detector", 0, data[good])
    assert metrics["pixel_max"].values.detector[0] == 5.0e4  # the saturated pixels are in
    # Flags in two bytes of the DQ word (HOT is bit 11) take the general path.
    parameters["exclude_flags"] = ["DO_NOT_USE", "HOT"]
    metrics = run(L2Image(data=data, dq=dq), parameters)
    assert_region(metrics, "detector", 0, data[good_pixels(data, dq, DO_NOT_USE | HOT)])
    assert metrics["num_saturated_pix"].values.detector[0] == ((dq & SATURATED) != 0).sum()


def test_percentiles_exact_for_ties_signs_and_wide_ranges():
    """Values spanning many decades, both signs, zeros and heavy ties; float32 and float64 data."""
    rng = np.random.default_rng(2)
    rows, cols = 64, 256
    mantissa = rng.choice([0.0, -0.0, 1.0, -1.0, 0.5, 3.0], size=(rows, cols))
    scale = 10.0 ** rng.integers(-30, 30, size=(rows, cols))
    values = mantissa * scale
    narrow = rng.random((rows, cols)) < 0.5  # half the pixels within a few float32 steps of 1: heavy ties
    values[narrow] = rng.normal(1.0, 1e-6, narrow.sum())
    dq = np.zeros((rows, cols), dtype=np.uint32)
    for dtype in (np.float32, np.float64):
        data = values.astype(dtype)
        metrics = run(L2Image(data=data, dq=dq))
        for amp, columns in enumerate(amp_columns(cols, 0)[:2]):
            region = data[:, columns].ravel()
            for name, q in PERCENTILES.items():
                assert metrics[name].values.amp[amp] == float(np.percentile(region, q)), (dtype, name, amp)
            assert metrics["pixel_min"].values.amp[amp] == region.min()
            assert metrics["pixel_max"].values.amp[amp] == region.max()
            wide = region.astype(np.float64)
            assert metrics["pixel_mean"].values.amp[amp] == pytest.approx(wide.mean(), rel=1e-6)
            assert metrics["pixel_std"].values.amp[amp] == pytest.approx(wide.std(), rel=1e-6)
        for name, q in PERCENTILES.items():
            assert metrics[name].values.detector[0] == float(np.percentile(data, q)), (dtype, name)


def test_percentiles_of_many_sizes_equal_numpy():
    """Ranks and interpolation weights as numpy's for region sizes 1, 2, 3, ... ."""
    rng = np.random.default_rng(4)
    data = rng.standard_normal((40, 128)).astype(np.float32)
    for n in (1, 2, 3, 4, 7, 20, 21, 101, 1000, 4999):
        dq = np.full(data.shape, DO_NOT_USE, dtype=np.uint32)
        dq.ravel()[rng.choice(data.size, n, replace=False)] = 0
        metrics = run(L2Image(data=data, dq=dq))
        values = data[dq == 0]
        for name, q in PERCENTILES.items():
            assert metrics[name].values.amp[0] == float(np.percentile(values, q)), (n, name)


@pytest.fixture(scope="module")
def full_size():
    """A 4088x4088 image (amp k's sky 1 + 0.01 k, noise 0.05; stars, NaN, flags; a distorted WCS) and its metrics."""
    rng = np.random.default_rng(7)
    n = 4088
    data = rng.standard_normal((n, n), dtype=np.float32)
    data *= np.float32(0.05)
    sky = np.repeat(1.0 + 0.01 * np.arange(1, 33, dtype=np.float32), 128)[4:4 + n]  # image column c = frame c + 4
    data += sky
    flat_index = rng.choice(n * n, 200000, replace=False)
    data.ravel()[flat_index[:150000]] += rng.uniform(0.5, 2000.0, 150000).astype(np.float32)
    data.ravel()[flat_index[150000:160000]] = np.nan
    dq = np.zeros((n, n), dtype=np.uint32)
    dq.ravel()[flat_index[160000:]] |= DO_NOT_USE
    dq.ravel()[rng.choice(n * n, 20000, replace=False)] |= SATURATED
    wcs = tangent_wcs(266.4, -29.0, roll=30.0, plate_scale=0.11, shape=(n, n), distortion=FULL_DISTORTION)
    return data, dq, run(L2Image(data=data, dq=dq, wcs=wcs))


FULL_DISTORTION = 0.02


def test_full_size_image_per_amp_and_detector(full_size):
    data, dq, metrics = full_size
    good = good_pixels(data, dq)
    saturated = (dq & SATURATED) != 0
    columns = amp_columns(4088, 4)
    assert columns[0] == slice(0, 124) and columns[31] == slice(3964, 4088)
    for amp, cols in enumerate(columns):
        region = good[:, cols]
        assert_region(metrics, "amp", amp, data[:, cols][region])
        assert metrics["num_saturated_pix"].values.amp[amp] == saturated[:, cols].sum()
        assert metrics["good_pixel_fraction"].values.amp[amp] == region.sum() / region.size
    assert_region(metrics, "detector", 0, data[good])
    assert metrics["num_saturated_pix"].values.detector[0] == saturated.sum()
    assert metrics["good_pixel_fraction"].values.detector[0] == good.sum() / good.size
    # Every star pixel is >= 10 noise widths above the sky, so the clipped sky of each amp
    # (0.01 apart) is its level to the median's statistical error, 1.2533 * 0.05 / sqrt(5e5)
    # = 9e-5 (5e-4 allowed); the noise's error is 1.166 / sqrt(5e5) = 0.17 per cent (2 allowed).
    np.testing.assert_allclose(metrics["background_level"].values.amp, 1.0 + 0.01 * np.arange(1, 33), atol=5e-4)
    np.testing.assert_allclose(metrics["background_noise"].values.amp, 0.05, rtol=0.02)
    assert metrics["pixel_median"].unit == "DN / s"


def test_background_level_and_noise_ignore_stars():
    """Known sky and noise under a crowded star field.

    Stars only add light. If a fraction ``f`` of the pixels carries star light
    above ``eps`` (the rest below it), the median can move by at most
    ``sigma * Phi^-1(0.5 / (1 - f)) + eps`` (clipping at 3 sigma removes sky
    pixels nearly evenly from both sides and does not change this); its
    statistical error is ``1.2533 sigma / sqrt(n)``. The MAD-based noise moves by at most ~1.17 f
    sigma (the MAD's gross-error sensitivity; 2 f sigma is allowed) and has a
    statistical error of ``1.166 sigma / sqrt(n)``. Five standard errors are
    allowed on top.
    """
    rng = np.random.default_rng(21)
    rows, cols = 1024, 1024
    sky, sigma = 0.8, 0.05
    yy, xx = np.mgrid[0:rows, 0:cols]
    stars = np.zeros((rows, cols))
    n_stars = 1500
    ys, xs = rng.uniform(0, rows, n_stars), rng.uniform(0, cols, n_stars)
    peaks = sigma * 10.0 ** rng.uniform(0.5, 4.0, n_stars)
    for y, x, peak in zip(ys, xs, peaks):
        y0, x0 = int(y), int(x)
        window = (slice(max(y0 - 12, 0), y0 + 13), slice(max(x0 - 12, 0), x0 + 13))
        stars[window] += peak * np.exp(-((yy[window] - y) ** 2 + (xx[window] - x) ** 2) / (2 * 1.3**2))
    data = (sky + sigma * rng.standard_normal((rows, cols)) + stars).astype(np.float32)
    dq = np.zeros((rows, cols), dtype=np.uint32)
    metrics = run(L2Image(data=data, dq=dq))

    eps = 0.01 * sigma
    for amp, columns in enumerate(amp_columns(cols, 0)[:8]):
        lit = stars[:, columns] > eps
        f = lit.mean()
        n = lit.size
        assert 0.05 < f < 0.5  # a crowded field
        level_tolerance = sigma * NormalDist().inv_cdf(0.5 / (1 - f)) + eps + 5 * 1.2533 * sigma / np.sqrt(n)
        noise_tolerance = 2 * f * sigma + 5 * 1.166 * sigma / np.sqrt(n)
        assert abs(metrics["background_level"].values.amp[amp] - sky) < level_tolerance
        assert abs(metrics["background_noise"].values.amp[amp] - sigma) < noise_tolerance
        # the plain statistics are pulled by the stars, the clipped level much less
        assert metrics["pixel_mean"].values.amp[amp] - sky > 10 * level_tolerance
        median = metrics["pixel_median"].values.amp[amp]
        assert abs(metrics["background_level"].values.amp[amp] - sky) < 0.5 * (median - sky)
    f = (stars > eps).mean()
    n = stars.size
    assert abs(metrics["background_level"].values.detector[0] - sky) < (
        sigma * NormalDist().inv_cdf(0.5 / (1 - f)) + eps + 5 * 1.2533 * sigma / np.sqrt(n))
    assert abs(metrics["background_noise"].values.detector[0] - sigma) < 2 * f * sigma + 5 * 1.166 * sigma / np.sqrt(n)


def test_background_of_pure_gaussian_noise_is_unbiased():
    """Without stars the clipped level and noise are those of the normal distribution, to their errors."""
    rng = np.random.default_rng(8)
    sky, sigma = 2.5, 0.3
    data = (sky + sigma * rng.standard_normal((512, 1024))).astype(np.float32)
    metrics = run(L2Image(data=data, dq=np.zeros(data.shape, dtype=np.uint32)))
    n = data.size
    assert abs(metrics["background_level"].values.detector[0] - sky) < 5 * 1.2533 * sigma / np.sqrt(n)
    assert abs(metrics["background_noise"].values.detector[0] - sigma) < 5 * 1.166 * sigma / np.sqrt(n)


def test_plate_scale_of_a_tangent_wcs(full_size):
    data, _, metrics = full_size
    assert metrics["plate_scale_center"].values.detector[0] == pytest.approx(0.11, abs=1e-6)
    # x' = x (1 + k r^2), y' = y (1 + k r^2): radial scale 1 + 3 k r^2, tangential 1 + k r^2.
    k = FULL_DISTORTION / (data.shape[1] / 2.0) ** 2
    r2 = ((data.shape[1] - 1) / 2.0) ** 2 + ((data.shape[0] - 1) / 2.0) ** 2
    corner = 0.11 * np.sqrt((1 + 3 * k * r2) * (1 + k * r2))
    assert corner > 0.11 * 1.05
    assert metrics["plate_scale_corner_min"].values.detector[0] == pytest.approx(corner, rel=1e-5)
    assert metrics["plate_scale_corner_max"].values.detector[0] == pytest.approx(corner, rel=1e-5)
    for name in PLATE_SCALES:
        assert metrics[name].unit == "arcsec / pix"
        assert metrics[name].values.amp is None  # detector only


def test_plate_scale_corners_differ_on_an_off_centre_image():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((64, 256)).astype(np.float32)
    wcs = tangent_wcs(10.0, 40.0, plate_scale=0.11, shape=(4088, 4088), distortion=0.02)
    metrics = run(L2Image(data=data, dq=np.zeros(data.shape, dtype=np.uint32), wcs=wcs))
    low, high = (metrics[n].values.detector[0] for n in ("plate_scale_corner_min", "plate_scale_corner_max"))
    k = 0.02 / 2044.0**2

    def expected(x, y):
        r2 = (x - 2043.5) ** 2 + (y - 2043.5) ** 2  # from the WCS's centre
        return 0.11 * np.sqrt((1 + 3 * k * r2) * (1 + k * r2))

    assert low == pytest.approx(expected(255, 63), rel=1e-5)
    assert high == pytest.approx(expected(0, 0), rel=1e-5)


def test_no_wcs_gives_nan_plate_scales_that_fail_and_the_rest(small):
    data, dq = small
    metrics = run(L2Image(data=data, dq=dq, wcs=None))
    standards = Standards().for_monitor("pixel")
    for name in PLATE_SCALES:
        value = metrics[name].values.detector
        assert np.isnan(value[0])
        for evaluator in ("mission", "soc"):
            params = standards.evaluator_params(name, "detector")[evaluator]
            assert not evaluate_absolute(evaluator, name, "detector", value, params).passed[0]
    good = good_pixels(data, dq)
    assert_region(metrics, "detector", 0, data[good])


def test_all_nan_data_is_a_monitoring_error():
    data = np.full((32, 256), np.nan, dtype=np.float32)
    with pytest.raises(MonitoringError, match="no finite pixel"):
        PixelMonitor().metrics(L2Image(data=data, dq=np.zeros(data.shape, dtype=np.uint32), path="x_cal.asdf"), {})


def test_malformed_arrays_are_monitoring_errors():
    dq = np.zeros((8, 8), dtype=np.uint32)
    with pytest.raises(MonitoringError, match="shape"):
        PixelMonitor().metrics(L2Image(data=np.zeros((8, 9), np.float32), dq=dq), {})
    with pytest.raises(MonitoringError, match="unsigned"):
        PixelMonitor().metrics(L2Image(data=np.zeros((8, 8), np.float32), dq=dq.astype(np.float32)), {})
    with pytest.raises(ValueError, match="unknown DQ flag"):
        PixelMonitor().metrics(L2Image(data=np.zeros((8, 8), np.float32), dq=dq), {"exclude_flags": ["NOPE"]})


def test_unit_follows_the_flux_step():
    data = np.ones((8, 128), dtype=np.float32)
    dq = np.zeros(data.shape, dtype=np.uint32)
    flux = SimpleNamespace(cal_step=SimpleNamespace(flux="COMPLETE"))
    rates = SimpleNamespace(cal_step=SimpleNamespace(flux="INCOMPLETE"))
    for meta, unit in ((None, "DN / s"), (rates, "DN / s"), (flux, "MJy / sr")):
        metrics = run(L2Image(data=data, dq=dq, meta=meta))
        assert metrics["pixel_median"].unit == metrics["background_noise"].unit == unit
    assert run(L2Image(data=data, dq=dq))["pixel_median"].values.detector[0] == 1.0


def test_standards_cover_every_metric_and_the_plate_scale_is_wfi_like(small):
    data, dq = small
    standards = Standards().for_monitor("pixel")
    metrics = run(L2Image(data=data, dq=dq))
    assert set(standards.metrics) == set(metrics)
    for name in metrics:
        assert {"mission", "soc"} <= set(standards.metrics[name]), name
    assert standards.is_extensive("num_saturated_pix")
    assert {"DO_NOT_USE", "SATURATED"} <= set(standards.parameters["exclude_flags"])
    for name in PLATE_SCALES:
        for evaluator in ("mission", "soc"):
            limits = standards.metrics[name][evaluator]
            assert limits["min"] < 0.11 < limits["max"] < 1.0
    assert standards.metrics["good_pixel_fraction"]["mission"] == {"min": 0.9}


def test_an_l2_file_end_to_end(tmp_path):
    """Through the L2 path of `measure_file` (identity, `L2Image`, standards parameters)."""
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.science.measure import MeasureRequest, measure_file
    from rdmt_dagster.synthetic.l2 import L2Scene, write_l2

    scene = L2Scene(shape=(256, 512), n_stars=60, detector="WFI03", distortion=0.0)
    path, _ = write_l2(tmp_path / "r0000101001001001001_01101_0001_WFI03_cal.asdf", scene, catalog=False,
                       compress=False)
    request = MeasureRequest(str(path), parameters={"pixel": Standards().for_monitor("pixel").parameters},
                             monitors=("pixel",))
    (result,) = measure_file(request)
    assert result.ok, result.error
    assert result.info.detector == "WFI03"
    metrics = {m.name: m for m in result.metrics}
    with rdm.open(path) as model:
        data, dq = np.asarray(model.data), np.asarray(model.dq)
    good = good_pixels(data, dq)
    assert_region(metrics, "detector", 0, data[good])
    assert metrics["plate_scale_center"].values.detector[0] == pytest.approx(scene.plate_scale, rel=1e-5)
    assert metrics["background_level"].values.detector[0] == pytest.approx(scene.sky, rel=0.01)
