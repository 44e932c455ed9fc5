"""The reduction layer against independent numpy computations on constructed arrays."""

import numpy as np
import pytest

from rdmt_dagster.science import scales as S

Q = [1, 50, 90, 95, 99]


def science_frame(array):
    """The array in the 4096 frame with everything outside the science area set to NaN."""
    out = np.full((4096, 4096), np.nan)
    out[4:-4, 4:-4] = np.asarray(array, dtype=np.float64)[4:-4, 4:-4]
    out[~np.isfinite(out)] = np.nan
    return out


def blocks(frame):
    """(1024, 16384) super-pixel blocks in super-pixel index order, (32, 4096*128) amp columns."""
    sp = frame.reshape(32, 128, 32, 128).transpose(0, 2, 1, 3).reshape(1024, -1)
    amp = frame.reshape(4096, 32, 128).transpose(1, 0, 2).reshape(32, -1)
    return sp, amp


@pytest.fixture(scope="module")
def rates():
    rng = np.random.default_rng(11)
    a = rng.lognormal(np.log(0.005), 0.3, (4096, 4096)).astype(np.float32)
    a[:4, :] = 1e6  # reference pixels must not count
    a[:, -4:] = -1e6
    a[1000:1010, 300:700] = np.nan
    a[2000, 2000] = np.inf
    a[2001, 2001] = -np.inf
    a[128 * 5 : 128 * 6, 128 * 9 : 128 * 10] = np.nan  # super-pixel 5*32+9 entirely invalid
    return a


@pytest.fixture(scope="module")
def reduced(rates):
    r = S.RegionReducer(rates)
    mean, std, count = r.mean, r.std, r.count
    return r, mean, std, count, r.percentiles(Q)


def test_percentiles_match_nanpercentile_at_every_scale(rates, reduced):
    frame = science_frame(rates)
    sp, amp = blocks(frame)
    _, _, _, _, pct = reduced
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected_sp = np.nanpercentile(sp, Q, axis=1)
    expected_amp = np.nanpercentile(amp, Q, axis=1)
    expected_det = np.nanpercentile(frame, Q)
    for i, q in enumerate(Q):
        np.testing.assert_allclose(pct[float(q)].detector, [expected_det[i]], rtol=1e-6)
        np.testing.assert_allclose(pct[float(q)].amp, expected_amp[i], rtol=1e-6)
        np.testing.assert_allclose(pct[float(q)].superpixel, expected_sp[i], rtol=1e-6, equal_nan=True)


def test_mean_std_count_match_numpy(rates, reduced):
    frame = science_frame(rates)
    sp, amp = blocks(frame)
    _, mean, std, count, _ = reduced
    assert count.detector[0] == np.isfinite(frame).sum()
    np.testing.assert_array_equal(count.amp, np.isfinite(amp).sum(axis=1))
    np.testing.assert_array_equal(count.superpixel, np.isfinite(sp).sum(axis=1))
    np.testing.assert_allclose(mean.detector, [np.nanmean(frame)], rtol=1e-9)
    np.testing.assert_allclose(mean.amp, np.nanmean(amp, axis=1), rtol=1e-9)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        np.testing.assert_allclose(mean.superpixel, np.nanmean(sp, axis=1), rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(std.superpixel, np.nanstd(sp, axis=1), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(std.amp, np.nanstd(amp, axis=1), rtol=1e-6)


def test_empty_superpixel_is_nan_and_its_neighbours_are_not(reduced):
    _, mean, _, count, pct = reduced
    index = 5 * 32 + 9
    assert count.superpixel[index] == 0
    assert np.isnan(mean.superpixel[index]) and np.isnan(pct[50.0].superpixel[index])
    assert np.isfinite(mean.superpixel[index + 1])


def test_region_geometry():
    """Amp 1 starts at column 0 (4 reference columns); super-pixel index = (y//128)*32 + x//128."""
    ones = np.zeros((4096, 4096), dtype=bool)
    ones[200, 130] = True  # y=200, x=130 -> super-pixel 1*32+1, amp 2
    ones[4095, 0] = True  # a reference pixel: never counted
    c = S.count_true(ones)
    assert c.detector[0] == 1
    assert c.amp[1] == 1 and c.amp.sum() == 1
    assert c.superpixel[33] == 1 and c.superpixel.sum() == 1
    full = S.count_true(np.ones((4096, 4096), dtype=bool))
    assert full.detector[0] == 4088 * 4088
    assert full.amp[0] == 124 * 4088 and full.amp[1] == 128 * 4088 and full.amp[31] == 124 * 4088
    assert full.superpixel[0] == 124 * 124 and full.superpixel[1] == 124 * 128 and full.superpixel[33] == 128 * 128


def test_science_area_array_is_embedded(rates):
    science = rates[4:-4, 4:-4].copy()
    a = S.RegionReducer(science)
    b = S.RegionReducer(np.where(np.zeros((4096, 4096), bool), 0, rates))
    np.testing.assert_allclose(a.mean.amp, b.mean.amp)
    assert a.count.detector[0] == b.count.detector[0]


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        S.RegionReducer(np.zeros((100, 100)))


def test_exclude_mask_removes_pixels():
    data = np.ones((4096, 4096), dtype=np.float32)
    data[500:600, 500:600] = 100.0
    exclude = np.zeros((4096, 4096), dtype=bool)
    exclude[500:600, 500:600] = True
    r = S.RegionReducer(data, exclude=exclude)
    assert r.mean.detector[0] == pytest.approx(1.0)
    assert r.count.detector[0] == 4088 * 4088 - 100 * 100


def test_float64_and_integer_inputs():
    rng = np.random.default_rng(2)
    data = rng.normal(1e4, 30, (4096, 4096))
    pct = S.RegionReducer(data).percentiles([50])[50.0]
    np.testing.assert_allclose(pct.detector, [np.percentile(data[4:-4, 4:-4], 50)], rtol=1e-12)
    ints = rng.integers(0, 65535, (4096, 4096)).astype(np.uint16)
    pct = S.RegionReducer(ints).percentiles([99])[99.0]
    np.testing.assert_allclose(pct.amp[3], np.percentile(ints[4:-4, 384:512].astype(float), 99), rtol=1e-6)


def test_count_flags_counts_each_bit_in_the_science_area():
    rng = np.random.default_rng(5)
    dq = rng.integers(0, 2**16, (4096, 4096)).astype(np.uint32)
    dq[:4, :] |= 1024  # flags on reference pixels do not count
    flags = {"dead": 1024, "hot": 2048, "nonlinear": 65536, "do_not_use": 1}
    counts = S.count_flags(dq, flags)
    sci = dq[4:-4, 4:-4]
    for name, bit in flags.items():
        assert counts[name].detector[0] == np.count_nonzero(sci & bit)
        assert counts[name].amp[7] == np.count_nonzero(dq[4:-4, 896:1024] & bit)
        assert counts[name].superpixel[32 * 10 + 3] == np.count_nonzero(dq[1280:1408, 384:512] & bit)
    swapped = S.count_flags(dq.astype(">u4"), {"hot": 2048})
    np.testing.assert_array_equal(swapped["hot"].superpixel, counts["hot"].superpixel)
    with pytest.raises(ValueError, match="single bit"):
        S.count_flags(dq, {"two": 3})


def test_kth_of_sorted_runs_matches_a_full_sort():
    rng = np.random.default_rng(9)
    runs = np.sort(rng.normal(0, 1, (7, 1000)).astype(np.float32), axis=1)
    runs[2, 900:] = np.nan
    n = np.array([1000, 1000, 900, 1000, 1000, 1000, 1000])
    merged = np.sort(np.concatenate([runs[i, : n[i]] for i in range(7)]))
    ranks = np.array([0, 1, 3500, 6899])
    np.testing.assert_array_equal(S.kth_of_sorted_runs(runs, n, ranks), merged[ranks])


def test_kth_of_sorted_runs_per_group_matches_a_full_sort():
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        runs = np.sort(rng.lognormal(-3, 2, (12, 500)).astype(dtype), axis=1)
        runs[0] *= -1
        runs[0] = np.sort(runs[0])
        n = rng.integers(1, 501, 12)
        n[5] = 0
        for i in range(12):
            runs[i, n[i]:] = np.nan
        groups = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
        ranks = []
        merged = []
        for g in range(4):
            values = np.sort(np.concatenate([runs[i, : n[i]] for i in np.flatnonzero(groups == g)]))
            merged.append(values)
            ranks.append([0, values.size // 3, values.size - 1])
        got = S.kth_of_sorted_runs(runs, n, np.array(ranks), groups)
        assert got.dtype == dtype
        expected = np.array([merged[g][ranks[g]] for g in range(4)])
        np.testing.assert_array_equal(got, expected)


def test_percentiles_must_be_requested_together():
    r = S.RegionReducer(np.ones((4096, 4096), dtype=np.float32))
    r.percentiles([50, 99])
    assert r.percentiles([50, 99])[50.0].detector[0] == 1.0
    with pytest.raises(ValueError):
        r.percentiles([10])


def test_embedding_keeps_the_array_type():
    assert S.detector_frame(np.zeros((4088, 4088), np.float32)).dtype == np.float32
    assert S.detector_frame(np.zeros((4088, 4088), np.uint32), fill=0).dtype == np.uint32
    assert S.detector_frame(np.zeros((4088, 4088), np.uint16)).dtype == np.float64  # NaN border needs a float
    frame = S.detector_frame(np.ones((4088, 4088), np.float32))
    assert np.isnan(frame[:4]).all() and np.isnan(frame[:, -4:]).all() and frame[4:-4, 4:-4].all()
