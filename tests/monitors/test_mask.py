"""Mask monitor: per-flag counts, bad / newly flagged / newly cleared pixels, synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import mask as synthetic_mask

from .regions import REGIONS, by_name

F = dqflags.pixel
PARAMS = Standards().for_monitor("mask").parameters
BAD_BITS = 0
for _name in PARAMS["bad_flags"]:
    BAD_BITS |= int(F[_name])


def expected_counts(mask: np.ndarray) -> dict[str, np.ndarray]:
    out = {"detector": np.zeros(1, int), "amp": np.zeros(32, int), "superpixel": np.zeros(1024, int)}
    for scale, index, rows, cols in REGIONS:
        out[scale][index] = int(np.count_nonzero(mask[rows, cols]))
    return out


def assert_counts(metric, expected):
    for scale in ("detector", "amp", "superpixel"):
        np.testing.assert_array_equal(np.asarray(metric.values[scale]), expected[scale], err_msg=f"{metric.name} {scale}")


@pytest.fixture(scope="module")
def constructed():
    """A mask with random flags, a known cluster, flags in the border, and a previous mask."""
    rng = np.random.default_rng(7)
    dq = np.zeros((4096, 4096), dtype=np.uint32)
    for name, fraction in (("DEAD", 0.001), ("HOT", 0.002), ("WARM", 0.003), ("LOW_QE", 0.0005),
                           ("TELEGRAPH", 0.0002), ("NONLINEAR", 0.0002), ("OTHER_BAD_PIXEL", 0.0001),
                           ("JUMP_DET", 0.001)):
        dq[rng.random((4096, 4096)) < fraction] |= np.uint32(F[name])
    dq[dq & np.uint32(F.DEAD) != 0] |= np.uint32(F.DO_NOT_USE)
    # 37 DEAD pixels in super-pixel (1, 2) = index 34, amp 3; 5 more in the border (not counted).
    ys, xs = 200 + np.arange(37) % 10, 300 + np.arange(37) // 10
    dq[ys, xs] |= np.uint32(F.DEAD)
    dq[1, 500:505] |= np.uint32(F.DEAD)
    dq[:4, :] |= np.uint32(F.REFERENCE_PIXEL)

    previous = dq.copy()
    # Newly flagged by construction: 50 pixels good before, HOT now, in super-pixel (20, 10).
    block = (slice(2600, 2605), slice(1300, 1310))
    previous[block] &= ~np.uint32(BAD_BITS)
    dq[block] = (dq[block] & ~np.uint32(BAD_BITS)) | np.uint32(F.HOT)
    # Newly cleared: 12 pixels bad before (WARM), good now, in super-pixel (31, 31) (rows/cols 3980..).
    cleared = (slice(3980, 3983), slice(4000, 4004))
    previous[cleared] |= np.uint32(F.WARM)
    dq[cleared] &= ~np.uint32(BAD_BITS)
    cleared2 = (slice(3990, 3992), slice(4010, 4014))
    previous[cleared2] |= np.uint32(F.WARM)
    dq[cleared2] &= ~np.uint32(BAD_BITS)
    # Neither: HOT -> WARM (bad both times), and a non-bad flag appearing.
    previous[100, 100] = F.HOT
    dq[100, 100] = F.WARM
    previous[101, 101] = 0
    dq[101, 101] = F.JUMP_DET
    return dq, previous


def test_monitor_is_registered():
    monitor = registry()["mask"]
    assert monitor.model == "MaskRefModel"
    assert monitor.compares_previous_file is True


def test_flag_counts_match_numpy_on_science_slices(constructed):
    dq, _ = constructed
    metrics = by_name(registry()["mask"].metrics(SimpleNamespace(dq=dq), PARAMS))
    for name in PARAMS["count_flags"]:
        expected = expected_counts((dq & np.uint32(F[name])) != 0)
        assert_counts(metrics[f"num_{name.lower()}_pix"], expected)
    assert_counts(metrics["num_bad_pix"], expected_counts((dq & np.uint32(BAD_BITS)) != 0))
    # The injected cluster: super-pixel 34 holds the 37 pixels plus the random ones.
    dead = metrics["num_dead_pix"]
    random_dead = np.count_nonzero(dq[128:256, 256:384] & np.uint32(F.DEAD)) - 37
    assert dead.values.superpixel[34] == 37 + random_dead
    assert dead.values.amp.sum() == dead.values.detector[0] == dead.values.superpixel.sum()
    # Border flags are not counted.
    assert dead.values.detector[0] == np.count_nonzero(dq[4:4092, 4:4092] & np.uint32(F.DEAD))
    assert all(m.unit == "pix" for m in metrics.values())


def test_newly_flagged_and_cleared_by_construction(constructed):
    dq, previous = constructed
    metrics = by_name(registry()["mask"].metrics(SimpleNamespace(dq=dq), PARAMS, SimpleNamespace(dq=previous)))
    flagged, cleared = metrics["num_newly_flagged_pix"], metrics["num_newly_cleared_pix"]
    assert flagged.values.detector[0] == 50
    assert flagged.values.superpixel[20 * 32 + 10] == 50
    assert flagged.values.amp[10] == 50 and flagged.values.amp.sum() == 50
    assert cleared.values.detector[0] == 20
    assert cleared.values.superpixel[31 * 32 + 31] == 20
    assert cleared.values.amp[31] == 20
    # And against an independent numpy computation.
    now, before = (dq & np.uint32(BAD_BITS)) != 0, (previous & np.uint32(BAD_BITS)) != 0
    assert_counts(flagged, expected_counts(now & ~before))
    assert_counts(cleared, expected_counts(before & ~now))


def test_no_previous_mask_omits_the_comparison(constructed):
    dq, _ = constructed
    monitor = registry()["mask"]
    names = {m.name for m in monitor.metrics(SimpleNamespace(dq=dq), PARAMS)}
    assert "num_newly_flagged_pix" not in names and "num_newly_cleared_pix" not in names
    assert "num_bad_pix" in names
    # An unusable previous mask does not stop the current one; the comparison is omitted.
    names = {m.name for m in monitor.metrics(SimpleNamespace(dq=dq), PARAMS, SimpleNamespace(dq=np.zeros((10, 10), np.uint32)))}
    assert "num_newly_flagged_pix" not in names and "num_dead_pix" in names


def test_bad_inputs_raise_clear_errors(constructed):
    monitor = registry()["mask"]
    with pytest.raises(MonitoringError, match="shape"):
        monitor.metrics(SimpleNamespace(dq=np.zeros((2, 4096, 4096), np.uint32)), PARAMS)
    with pytest.raises(MonitoringError, match="unsigned integers"):
        monitor.metrics(SimpleNamespace(dq=np.zeros((4096, 4096), np.float32)), PARAMS)
    with pytest.raises(ValueError, match="NOT_A_FLAG"):
        monitor.metrics(SimpleNamespace(dq=constructed[0]), {"count_flags": ["NOT_A_FLAG"]})


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masks")
    first = synthetic_mask.write(folder / "roman_wfi_mask_0005.asdf", "WFI05", 1, "2027-01-01T00:00:00")
    second = synthetic_mask.write(folder / "roman_wfi_mask_0023.asdf", "WFI05", 2, "2027-02-01T00:00:00")
    bad = synthetic_mask.write(folder / "roman_wfi_mask_0024.asdf", "WFI05", 2, "2027-02-01T00:00:00", anomalous=True)
    return first, second, bad


def test_synthetic_normal_deliveries_pass(deliveries):
    first, second, _ = deliveries
    results = check_files([first, second], Standards())
    assert [r.metric_set.error for r in results] == [None, None]
    assert [r.evaluation_set.n_failed for r in results] == [0, 0]
    metrics = by_name(results[1].metric_set.metrics)
    # One re-classification step: 1 % of HOT and WARM, 2 % of TELEGRAPH pixels moved.
    n_moved = round(0.01 * 33423) + round(0.01 * 50135) + round(0.02 * 3342)
    assert 0.9 * n_moved <= metrics["num_newly_flagged_pix"].values.detector[0] <= n_moved
    assert 0.9 * n_moved <= metrics["num_newly_cleared_pix"].values.detector[0] <= n_moved
    assert "num_newly_flagged_pix" not in by_name(results[0].metric_set.metrics)


def test_synthetic_anomaly_is_caught(deliveries):
    first, _, bad = deliveries
    results = check_files([first, bad], Standards())
    failures = {(ev.metric, ev.scale, ev.evaluator): ev for ev in results[1].evaluation_set.failures}
    anomaly = synthetic_mask.MaskAnomaly()
    sp = (anomaly.y0 // 128) * 32 + anomaly.x0 // 128
    change = failures[("num_dead_pix", "superpixel", "change")]
    assert np.flatnonzero(~change.passed).tolist() == [sp]
    newly = failures[("num_newly_flagged_pix", "superpixel", "soc")]
    assert np.flatnonzero(~newly.passed).tolist() == [sp]
    assert ("num_dead_pix", "amp", "change") in failures
    value = by_name(results[1].metric_set.metrics)["num_newly_flagged_pix"].values.superpixel[sp]
    assert value >= 0.98 * anomaly.size**2  # a few pixels of the block were bad already


def test_unreadable_and_wrong_shape_files_name_the_file(tmp_path):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    model = rdm.MaskRefModel.create_fake_data(shape=(100, 100))
    model.meta.useafter = Time("2027-01-01T00:00:00")
    model.save(tmp_path / "roman_wfi_mask_small.asdf")
    broken = tmp_path / "roman_wfi_mask_broken.asdf"
    broken.write_bytes(b"#ASDF 1.0.0\nnot really")
    results = check_files([tmp_path / "roman_wfi_mask_small.asdf", broken], Standards())
    small, corrupt = (r.metric_set for r in results)
    assert small.error.startswith("roman_wfi_mask_small.asdf") and "shape (100, 100)" in small.error
    assert corrupt.error.startswith("roman_wfi_mask_broken.asdf")
    assert results[0].evaluation_set is None
