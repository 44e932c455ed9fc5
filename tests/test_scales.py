"""The reduction layer against independent numpy computations on constructed arrays."""

import warnings

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


# --- exact percentiles ------------------------------------------------------------------------------

Q_EXACT = [0, 1, 12.5, 50, 90, 95, 99, 100]


def nanpercentile_per_region(frame, q):
    """``np.nanpercentile`` of every region, the values kept in ``frame``'s dtype (inf and the border as NaN).

    One call per region (a call along an axis takes the output dtype from
    its first row, float32 for an empty one). Amps and super-pixels are
    sorted first, which changes nothing but numpy's time to select.
    """
    f = np.array(frame, copy=True)
    f[~np.isfinite(f)] = np.nan
    f[:4], f[-4:], f[:, :4], f[:, -4:] = np.nan, np.nan, np.nan, np.nan
    amps = [f[:, x : x + 128] for x in range(0, 4096, 128)]
    superpixels = [f[y : y + 128, x : x + 128] for y in range(0, 4096, 128) for x in range(0, 4096, 128)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty regions

        def each(regions):
            return np.array([np.nanpercentile(np.sort(r, axis=None), q) for r in regions], dtype=np.float64).T

        return {"detector": np.nanpercentile(f, q)[:, None], "amp": each(amps), "superpixel": each(superpixels)}


def assert_exact_percentiles(frame, q=Q_EXACT):
    """RegionReducer percentiles equal to np.nanpercentile, bit for bit, at every scale."""
    got = S.RegionReducer(frame).percentiles(q)
    expected = nanpercentile_per_region(frame, q)
    for i, qi in enumerate(q):
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_array_equal(got[float(qi)][scale], expected[scale][i], err_msg=f"q={qi} {scale}")
    return got


def test_percentiles_equal_nanpercentile_float32_with_nan_inf_odd_regions_and_embedding(rates):
    a = rates.copy()
    a[128 * 7 : 128 * 8, 128 * 3 : 128 * 4] = np.nan
    a[128 * 7 + 5, 128 * 3 + 9] = 0.25  # a super-pixel with one pixel
    a[128 * 8 : 128 * 9, 128 * 3 : 128 * 4] = np.inf  # only infinities: empty
    a[128 * 8, 128 * 3 : 128 * 3 + 2] = [-0.0, 0.0]  # ... but for two zeros
    a[3000:3100, 4000:4050] = -np.inf
    a[:, 128 * 20 : 128 * 21] = np.nan  # an empty amp
    got = assert_exact_percentiles(a)
    embedded = S.RegionReducer(a[4:-4, 4:-4].copy()).percentiles(Q_EXACT)  # the 4088x4088 science area
    for qi in Q_EXACT:
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_array_equal(embedded[float(qi)][scale], got[float(qi)][scale])


def test_percentiles_equal_nanpercentile_float64_signed_and_tied():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4096, 4096))
    kind = rng.integers(0, 100, a.shape, dtype=np.uint8)
    a[kind < 20] = 0.0
    a[(kind >= 20) & (kind < 40)] = -0.0
    a[kind == 40] = np.nan
    a[:128, 128:256] = 7.0  # a constant super-pixel
    a[:, 256:384] = -2.5  # a constant amp
    a[500, 600] = np.inf
    assert_exact_percentiles(a, q=[0, 1, 50, 99, 100])


def test_percentiles_equal_nanpercentile_with_heavy_ties():
    """Integer values: each of the few distinct values is shared by millions of pixels."""
    rng = np.random.default_rng(4)
    a = np.minimum(rng.integers(0, 16, (4096, 4096), dtype=np.uint8), 3).astype(np.float32)
    a[1000:3000, 1000:1100] = 1e30  # a far tail
    assert_exact_percentiles(a)
    b = np.full((4096, 4096), 5.0, dtype=np.float32)
    b[rng.random(b.shape) < 1e-4] = 4.0  # nearly everything in one value
    assert_exact_percentiles(b, q=[0, 0.001, 0.005, 50, 100])


def test_sparse_frame_and_an_all_nan_frame():
    """Most regions empty (NaN, count 0); a few with a handful of pixels, including one."""
    rng = np.random.default_rng(8)
    a = np.full((4096, 4096), np.nan, dtype=np.float32)
    ys, xs = rng.integers(4, 4092, 300), rng.integers(4, 4092, 300)
    a[ys, xs] = rng.normal(0, 1, 300).astype(np.float32)
    assert_exact_percentiles(a)
    r = S.RegionReducer(np.full((4096, 4096), np.nan))
    assert r.count.detector[0] == 0
    pct = r.percentiles([50])[50.0]
    assert np.isnan(pct.detector).all() and np.isnan(pct.amp).all() and np.isnan(pct.superpixel).all()


def test_counts_and_means_where_a_float64_sum_overflows():
    """A block whose finite values overflow a float64 sum still counts all its pixels."""
    data = np.ones((4096, 4096))
    data[128:256, 128:256] = 1e308  # super-pixel 33: 16384 finite values, sum beyond float64
    data[128, 129] = np.nan
    r = S.RegionReducer(data)
    with pytest.warns(RuntimeWarning, match="overflow"):  # as np.sum warns: the true sum is beyond float64
        assert r.count.superpixel[33] == 128 * 128 - 1
    assert r.count.detector[0] == 4088 * 4088 - 1
    assert r.mean.superpixel[34] == 1.0 and np.isposinf(r.mean.superpixel[33])


def test_percentiles_outside_0_100_are_rejected():
    with pytest.raises(ValueError, match="100"):
        S.RegionReducer(np.ones((4096, 4096), dtype=np.float32)).percentiles([50, 101])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kth_of_sorted_runs_small_chunks_ties_and_signed_zeros(dtype):
    """Random groups, lengths, ties and zeros of both signs, against a full sort, for several chunk sizes."""
    rng = np.random.default_rng(13)
    for trial in range(30):
        n_runs, length = int(rng.integers(1, 12)), int(rng.integers(1, 200))
        values = rng.integers(-3, 4, (n_runs, length)).astype(dtype) if trial % 2 else rng.normal(
            0, 1, (n_runs, length)).astype(dtype)
        values[rng.random(values.shape) < 0.2] = -0.0
        n = rng.integers(0, length + 1, n_runs)
        runs = np.full((n_runs, length), np.nan, dtype=dtype)
        for i in range(n_runs):
            runs[i, : n[i]] = np.sort(values[i, : n[i]])
        groups = rng.integers(0, 3, n_runs)
        ranks, expected = [], []
        for g in range(3):
            merged = np.sort(np.concatenate([runs[i, : n[i]] for i in np.flatnonzero(groups == g)] + [runs[:0, 0]]))
            r = rng.integers(0, max(merged.size, 1), 5)
            ranks.append(r)
            expected.append(merged[r] if merged.size else np.full(5, np.nan))
        for chunk in (1, 2, 5, 32):
            got = S.kth_of_sorted_runs(runs, n, np.array(ranks), groups, chunk=chunk)
            for g in range(3):
                if not np.isnan(expected[g]).all():
                    np.testing.assert_array_equal(got[g], expected[g])
