"""The residual 1/f noise monitor: readout geometry, known answers, injected 1/f noise, sky and crowding.

Noise model of the full-size images: white pixel noise of variance
``READ**2 + sky / EXPOSURE`` (read noise plus the photon noise of the sky,
Gaussian) on a 4088x4088 slope image in DN/s. At the nominal sky of 0.5 DN/s
that is SIGMA = 0.0995 DN/s. The 1/f injections use a base (1x) pattern from
`readout_1f_pattern` whose pixel RMS is 2 per cent of SIGMA (half of its
variance common to all channels), added 0x, 25x or 50x.

Statistical tolerances, for white noise: an amp's excess is the mean of
~4088 squared normal deviates (relative s.d. sqrt(2 / 4088) = 0.022) over a
white variance estimated from ~16000 pixel pairs (~0.02), together ~0.03
(0.028 measured over repeated images); the detector value averages 32 amps
(~0.005); the common excess is one series of ~4088 rows (0.022, ~0.04
measured with the noise estimate).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags
from scipy import ndimage

from rdmt_dagster.l2.image import L2Image
from rdmt_dagster.monitors import noise_1f
from rdmt_dagster.monitors.noise_1f import (
    Noise1fMonitor,
    channel_blocks,
    channel_row_sums,
    common_noise_excess,
    detrended_rows,
    dilate,
    frame_from_readout,
    pixel_time,
    readout_order,
    row_noise_excess,
    unflagged,
)
from rdmt_dagster.science.metrics import L2FileInfo, MetricSet
from rdmt_dagster.science.monitor import MonitoringError, evaluate, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic.one_over_f import readout_1f_pattern

SHAPE = (4088, 4088)
READ = 0.07  # DN/s
EXPOSURE = 100.0  # s
NOMINAL_SKY = 0.5  # DN/s
SIGMA = float(np.sqrt(READ**2 + NOMINAL_SKY / EXPOSURE))
BASE_RMS = 0.02 * SIGMA
SATURATED = int(dqflags.pixel["SATURATED"])
DO_NOT_USE = int(dqflags.pixel["DO_NOT_USE"])
# Pixels per channel row of the science area: amps 1 and 32 lose 4 reference columns.
CHANNEL_WIDTH = np.array([124] + [128] * 30 + [124])


@pytest.fixture(scope="module")
def standards():
    return Standards().for_monitor("noise_1f")


@pytest.fixture(scope="module")
def params(standards):
    return standards.parameters


@pytest.fixture(scope="module")
def base_pattern():
    return readout_1f_pattern(np.random.default_rng(2026), amplitude=BASE_RMS)


def white_image(rng, sky=NOMINAL_SKY, shape=SHAPE):
    sigma = np.sqrt(READ**2 + sky / EXPOSURE)
    data = rng.standard_normal(shape, dtype=np.float32)
    data *= np.float32(sigma)
    data += np.float32(sky)
    return data


def measure(data, params, dq=None, meta=None):
    dq = np.zeros(data.shape, dtype=np.uint32) if dq is None else dq
    return Noise1fMonitor().metrics(L2Image(data=data, dq=dq, path="synthetic_cal.asdf", meta=meta), params)


def by_name(metrics):
    return {m.name: m.values for m in metrics}


def limit_failures(metrics, standards):
    """(evaluator, metric, scale) of every failed absolute limit (mission, soc)."""
    info = L2FileInfo(filename="synthetic_cal.asdf", path="", monitor="noise_1f", detector="WFI01")
    result = evaluate(MetricSet(info, Noise1fMonitor.version, metrics), standards)
    return {(e.evaluator, e.metric, e.scale) for e in result.failures if e.evaluator in ("mission", "soc")}


def rows_to_image(offsets):
    """Per-channel row offsets (32, 4096), frame rows in reading order, as a 4088x4088 image (numpy only)."""
    frame = np.repeat(offsets.T, 128, axis=1)  # every pixel of a channel row gets its offset
    return frame[4:-4, 4:-4].astype(np.float32)


# --- readout geometry ------------------------------------------------------------------------------


def test_registered_as_an_l2_monitor_of_image_models():
    monitor = registry()["noise_1f"]
    assert isinstance(monitor, Noise1fMonitor)
    assert (monitor.model, monitor.arm, monitor.version, monitor.scales) == ("ImageModel", "l2", "1.0.0",
                                                                              ("detector", "amp"))


def test_readout_order_reverses_alternate_channels():
    frame = np.tile(np.arange(4096), (3, 1)) + 10000 * np.arange(3)[:, None]
    channels = readout_order(frame)
    assert channels.shape == (32, 3, 128)
    expected = np.empty((32, 3, 128), dtype=frame.dtype)
    for k in range(32):
        columns = np.arange(128 * k, 128 * k + 128)
        expected[k] = frame[:, columns if k % 2 == 0 else columns[::-1]]
    np.testing.assert_array_equal(channels, expected)
    assert channels[1, 0, 0] == 255 and channels[1, 0, -1] == 128  # amp 2 is read right to left
    np.testing.assert_array_equal(frame_from_readout(channels), frame)


def test_pattern_in_readout_order_is_recovered_and_unreversed_channels_differ(params):
    rng = np.random.default_rng(3)
    pattern = readout_1f_pattern(rng, amplitude=1.0, shape=(4096, 4096), common_fraction=1.0)
    assert pattern.dtype == np.float32
    assert np.sqrt(np.mean(pattern.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    # All noise common: every channel reads the same series, so in readout order they are identical.
    streams = readout_order(pattern)
    np.testing.assert_allclose(streams, np.broadcast_to(streams[0], streams.shape), rtol=0, atol=1e-5)
    # Laid out without reversing alternate channels, the same series is recovered for the even
    # channels only: the channel average (the common part) is no longer the series.
    unreversed = pattern.reshape(4096, 32, 128).copy()
    unreversed[:, 1::2] = unreversed[:, 1::2, ::-1]
    wrong = readout_order(unreversed.reshape(4096, 4096))
    np.testing.assert_allclose(wrong[0::2], streams[0::2], atol=1e-5)
    common_error = np.sqrt(np.mean((wrong.mean(axis=0) - streams[0]) ** 2))
    assert common_error > 0.01  # of a unit-RMS pattern; zero when the layout is right
    # A row mean does not depend on the direction the row is read in, nor do the differences of
    # pixel pairs along it, so the metrics do not: mirroring the alternate channels of an image
    # leaves them unchanged. Whole 4096-column frames here (the science area cuts 4 columns off
    # amp 32 at one end), and no growth of the bright-pixel mask, which crosses channel edges.
    within_channels = {**params, "mask_radius": 0}
    image = white_image(np.random.default_rng(4), shape=(4096, 4096)) + np.float32(0.05) * pattern
    mirrored = image.reshape(4096, 32, 128).copy()
    mirrored[:, 1::2] = mirrored[:, 1::2, ::-1]
    right = by_name(measure(image, within_channels))
    other = by_name(measure(mirrored.reshape(4096, 4096), within_channels))
    assert right["noise_1f_common_excess"].detector[0] > 10  # the pattern is seen
    for name in ("noise_1f_excess", "noise_1f_common_excess", "white_noise"):
        np.testing.assert_allclose(other[name].detector, right[name].detector, rtol=1e-6)


def test_independent_channels_of_the_pattern_are_uncorrelated_at_the_row_scale():
    pattern = readout_1f_pattern(np.random.default_rng(5), amplitude=1.0, shape=(4096, 4096), common_fraction=0.0)
    rows = readout_order(pattern).mean(axis=2)  # (32, 4096) row means in reading order
    rows -= ndimage.uniform_filter1d(rows, 65, axis=1, mode="nearest")
    correlation = np.corrcoef(rows)[np.triu_indices(32, 1)]
    assert abs(correlation.mean()) < 0.02
    common = readout_1f_pattern(np.random.default_rng(5), amplitude=1.0, shape=(4096, 4096), common_fraction=0.5)
    rows = readout_order(common).mean(axis=2)
    rows -= ndimage.uniform_filter1d(rows, 65, axis=1, mode="nearest")
    assert np.corrcoef(rows)[np.triu_indices(32, 1)].mean() == pytest.approx(0.5, abs=0.1)


def test_channel_blocks_of_the_science_area_and_of_a_frame():
    assert channel_blocks(4088, 4) == [(slice(0, 1), slice(0, 124)), (slice(1, 31), slice(124, 3964)),
                                       (slice(31, 32), slice(3964, 4088))]
    assert channel_blocks(4096, 0) == [(slice(0, 32), slice(0, 4096))]


def test_channel_row_sums_match_a_loop_over_amps():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((5, 4088)).astype(np.float32)
    good = rng.random((5, 4088)) > 0.3
    sums, counts = channel_row_sums(data, good, 4)
    for k in range(32):
        columns = slice(max(128 * k - 4, 0), 128 * k + 124)
        np.testing.assert_allclose(sums[k], np.where(good, data, 0)[:, columns].sum(axis=1), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(counts[k], good[:, columns].sum(axis=1))


def test_pixel_time_from_a_valid_frame_time_else_the_parameter():
    meta = SimpleNamespace(exposure=SimpleNamespace(frame_time=3.04))
    assert pixel_time(meta, 5e-6, 12) == pytest.approx(3.04 / (4096 * 140))
    assert pixel_time(SimpleNamespace(exposure=SimpleNamespace(frame_time=-999999.0)), 5e-6, 12) == 5e-6
    assert pixel_time(None, 5e-6, 12) == 5e-6


# --- masks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 6, 11])
def test_dilate_matches_a_square_binary_dilation(radius):
    mask = np.random.default_rng(radius).random((61, 203)) < 0.004
    expected = ndimage.binary_dilation(mask, structure=np.ones((2 * radius + 1,) * 2, bool)) if radius else mask
    np.testing.assert_array_equal(dilate(mask, radius), expected)


@pytest.mark.parametrize("bits", [0, 1 | 2 | 4 | 32, 1024 | 2048, 1 | 65536, 2**31])
@pytest.mark.parametrize("dtype", ["<u4", ">u4"])
def test_unflagged_reads_the_flag_bytes_right(bits, dtype):
    rng = np.random.default_rng(7)
    dq = rng.integers(0, 2**32, (40, 50), dtype=np.uint64) * (rng.random((40, 50)) < 0.5)  # half unflagged
    dq = dq.astype(dtype)
    np.testing.assert_array_equal(unflagged(dq, bits), (dq.astype(np.uint64) & np.uint64(bits)) == 0)


# --- the excess on row series with known answers -----------------------------------------------------


def test_white_row_series_give_one_and_known_offsets_add_n_v_over_sigma2():
    rng = np.random.default_rng(9)
    n, variance = 100, 4.0  # pixels per row, white pixel variance
    counts = np.full((32, 4088), n)
    white = rng.normal(0.0, np.sqrt(variance / n), (32, 4088))
    residual, expectation = detrended_rows(white * n, counts, np.full(32, variance), 32)
    assert row_noise_excess(residual, expectation, 5.0).mean() == pytest.approx(1.0, abs=0.02)
    assert common_noise_excess(residual, expectation, 5.0) == pytest.approx(1.0, abs=0.12)
    # Independent row offsets of variance v: 1 + n v / sigma^2 = 1 + 100 * 0.08 / 4 = 3.
    offsets = rng.normal(0.0, np.sqrt(0.08), (32, 4088))
    residual, expectation = detrended_rows((white + offsets) * n, counts, np.full(32, variance), 32)
    assert row_noise_excess(residual, expectation, 5.0).mean() == pytest.approx(3.0, rel=0.02)


# --- full-size images --------------------------------------------------------------------------------


def test_known_row_offsets_per_channel_give_the_hand_computed_excess(params):
    rng = np.random.default_rng(10)
    # Independent offsets per channel and row, variance v = 2 SIGMA^2 / 128: excess 1 + n v / SIGMA^2
    # = 3 for 128-pixel rows, 1 + 2 * 124 / 128 for amps 1 and 32.
    v = 2 * SIGMA**2 / 128
    image = white_image(rng) + rows_to_image(rng.normal(0.0, np.sqrt(v), (32, 4096)))
    values = by_name(measure(image, params))
    expected = 1 + CHANNEL_WIDTH * v / SIGMA**2
    np.testing.assert_allclose(values["noise_1f_excess"].amp, expected, rtol=0.15)  # 5 s.d. of one amp
    assert values["noise_1f_excess"].detector[0] == pytest.approx(expected.mean(), rel=0.03)
    # Independent offsets average like white noise: the common excess is the same ratio,
    # sum_k (SIGMA^2 / n_k + v) / sum_k SIGMA^2 / n_k.
    white_row = SIGMA**2 / CHANNEL_WIDTH
    assert values["noise_1f_common_excess"].detector[0] == pytest.approx(
        np.sum(white_row + v) / np.sum(white_row), rel=0.1)
    assert values["white_noise"].detector[0] == pytest.approx(SIGMA, rel=0.01)


def test_known_row_offsets_common_to_all_channels_give_the_hand_computed_common_excess(params):
    rng = np.random.default_rng(11)
    # One offset per row for all channels, v = SIGMA^2 / 1024: each channel gains n v / SIGMA^2
    # (0.125); the channel average gains v over its white variance sum_k (SIGMA^2 / n_k) / 32^2 (~5).
    v = SIGMA**2 / 1024
    image = white_image(rng) + rows_to_image(np.repeat(rng.normal(0.0, np.sqrt(v), (1, 4096)), 32, axis=0))
    values = by_name(measure(image, params))
    white_common = np.sum(SIGMA**2 / CHANNEL_WIDTH) / 32**2
    assert values["noise_1f_common_excess"].detector[0] == pytest.approx(1 + v / white_common, rel=0.1)
    assert values["noise_1f_excess"].detector[0] == pytest.approx(np.mean(1 + CHANNEL_WIDTH * v / SIGMA**2),
                                                                  rel=0.03)


def test_white_noise_gives_one_and_passes_the_limits(params, standards):
    values = measure(white_image(np.random.default_rng(12)), params)
    named = by_name(values)
    assert named["noise_1f_excess"].detector[0] == pytest.approx(1.0, abs=0.03)  # 6 s.d.
    np.testing.assert_allclose(named["noise_1f_excess"].amp, 1.0, atol=0.15)  # 5 s.d.
    assert named["noise_1f_common_excess"].detector[0] == pytest.approx(1.0, abs=0.2)  # 5 s.d.
    np.testing.assert_allclose(named["white_noise"].amp, SIGMA, rtol=0.05)
    assert limit_failures(values, standards) == set()
    assert {m.name for m in values} == {"noise_1f_excess", "noise_1f_common_excess", "white_noise"}
    assert named["white_noise"].amp.shape == (32,) and named["noise_1f_common_excess"].amp is None


@pytest.mark.parametrize("sky_factor", [0.25, 1.0, 4.0])
def test_injected_1f_fails_clean_passes_at_any_sky_level(sky_factor, params, standards, base_pattern):
    image = white_image(np.random.default_rng(13), sky=NOMINAL_SKY * sky_factor)
    excess, common = [], []
    for level in (0, 25, 50):
        metrics = measure(image + np.float32(level) * base_pattern, params)
        named = by_name(metrics)
        excess.append(named["noise_1f_excess"].detector[0])
        common.append(named["noise_1f_common_excess"].detector[0])
        failures = limit_failures(metrics, standards)
        if level == 0:
            assert failures == set(), (sky_factor, level, failures)
        else:
            for evaluator in ("mission", "soc"):
                assert (evaluator, "noise_1f_excess", "detector") in failures, (sky_factor, level)
                assert (evaluator, "noise_1f_common_excess", "detector") in failures, (sky_factor, level)
    assert excess[0] < excess[1] < excess[2]
    assert common[0] < common[1] < common[2]


def test_meta_frame_time_sets_the_trend_window(params, base_pattern):
    image = white_image(np.random.default_rng(14)) + 25 * base_pattern
    default = by_name(measure(image, params))["noise_1f_excess"].detector[0]
    same = SimpleNamespace(exposure=SimpleNamespace(frame_time=4096 * 140 * params["pixel_time_s"]))
    assert by_name(measure(image, params, meta=same))["noise_1f_excess"].detector[0] == default
    # Ten times slower rows: the window shrinks to ~6 rows and keeps less of the 1/f power.
    slow = SimpleNamespace(exposure=SimpleNamespace(frame_time=10 * 4096 * 140 * params["pixel_time_s"]))
    assert by_name(measure(image, params, meta=slow))["noise_1f_excess"].detector[0] < 0.8 * default


def star_field(rng, n_stars, sky, saturation):
    """White noise, sky and ``n_stars`` Moffat stars (FWHM 2 pixels, beta 2.5, 15x15 stamps)."""
    image = white_image(rng, sky)
    y, x = rng.uniform(0, SHAPE[0], n_stars), rng.uniform(0, SHAPE[1], n_stars)
    flux = np.exp(rng.uniform(np.log(1.0), np.log(1e4), n_stars))  # DN/s, 10 to 10^5 times SIGMA
    offsets = np.arange(-7, 8)
    rows = np.floor(y).astype(int)[:, None, None] + offsets[None, :, None]
    cols = np.floor(x).astype(int)[:, None, None] + offsets[None, None, :]
    r2 = (rows + 0.5 - y[:, None, None]) ** 2 + (cols + 0.5 - x[:, None, None]) ** 2
    beta, fwhm = 2.5, 2.0
    alpha2 = (fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))) ** 2
    stamps = flux[:, None, None] * (beta - 1) / (np.pi * alpha2) * (1 + r2 / alpha2) ** -beta
    inside = (rows >= 0) & (rows < SHAPE[0]) & (cols >= 0) & (cols < SHAPE[1])
    np.add.at(image.reshape(-1), (rows * SHAPE[1] + cols)[inside], stamps[inside].astype(np.float32))
    dq = np.zeros(SHAPE, dtype=np.uint32)
    saturated = image >= saturation
    dq[saturated] |= SATURATED
    image[saturated] = np.float32(saturation)
    return image, dq


def test_crowded_star_field_with_saturated_cores_passes(params, standards):
    image, dq = star_field(np.random.default_rng(15), 20000, NOMINAL_SKY, saturation=30.0)
    assert np.count_nonzero(dq & SATURATED) > 50000  # saturated cores of thousands of stars
    assert np.mean(image > NOMINAL_SKY + 3 * SIGMA) > 0.05  # and many more pixels on their wings
    metrics = measure(image, params, dq=dq)
    named = by_name(metrics)
    assert named["noise_1f_excess"].detector[0] < 1.1
    assert named["noise_1f_common_excess"].detector[0] < 1.3
    assert named["white_noise"].detector[0] == pytest.approx(SIGMA, rel=0.03)
    assert limit_failures(metrics, standards) == set()


def test_interpixel_capacitance_correlated_white_noise_passes(params, standards):
    # 2 per cent coupling to each of the 4 neighbours correlates adjacent pixels by ~4 per cent:
    # row means scatter ~8 per cent more than for independent pixels; still far below the limits.
    image = white_image(np.random.default_rng(16)) - np.float32(NOMINAL_SKY)
    kernel = np.array([[0, 0.02, 0], [0.02, 0.92, 0.02], [0, 0.02, 0]], dtype=np.float32)
    image = ndimage.convolve(image, kernel, mode="nearest") + np.float32(NOMINAL_SKY)
    metrics = measure(image, params)
    assert 1.0 < by_name(metrics)["noise_1f_excess"].detector[0] < 1.15
    assert limit_failures(metrics, standards) == set()


def test_flagged_and_nan_pixels_are_left_out(params):
    rng = np.random.default_rng(17)
    image = white_image(rng)
    dq = np.zeros(SHAPE, dtype=np.uint32)
    # Flagged pixels with wild values on every row of amp 5, NaN bad pixels scattered.
    dq[:, 520:530] = DO_NOT_USE
    image[:, 520:530] = 1e4 * rng.standard_normal((SHAPE[0], 10)).astype(np.float32)
    bad = rng.random(SHAPE) < 0.01
    image[bad] = np.nan
    named = by_name(measure(image, params, dq=dq))
    assert named["noise_1f_excess"].amp[4] == pytest.approx(1.0, abs=0.15)
    assert named["noise_1f_excess"].detector[0] == pytest.approx(1.0, abs=0.03)


def test_all_nan_data_is_a_monitoring_error_naming_the_problem(params):
    with pytest.raises(MonitoringError, match="no finite science pixels") as info:
        measure(np.full(SHAPE, np.nan, dtype=np.float32), params)
    assert "synthetic_cal.asdf" in str(info.value)


def test_constant_data_is_a_monitoring_error(params):
    with pytest.raises(MonitoringError, match="no pixel-to-pixel noise"):
        measure(np.ones(SHAPE, dtype=np.float32), params)


def test_missing_parameters_are_named(params):
    incomplete = {k: v for k, v in params.items() if k != "trend_window_s"}
    with pytest.raises(ValueError, match="trend_window_s"):
        measure(white_image(np.random.default_rng(18)), incomplete)


def test_module_keeps_tunables_in_the_standards(params):
    assert {"pixel_time_s", "row_pad", "mask_flags", "clip_sigma", "trend_window_s", "subsample_step",
            "mask_radius", "difference_lag", "row_clip_sigma", "min_row_pixels"} <= set(params)
    assert not hasattr(noise_1f, "DEFAULT_PARAMETERS")
