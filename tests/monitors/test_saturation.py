"""Saturation monitor: level statistics, low / non-finite / flagged counts, synthetic deliveries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels import dqflags

from rdmt_dagster.checking import check_files
from rdmt_dagster.science.monitor import registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic import saturation as synthetic_saturation

from .regions import by_name, expected

F = dqflags.pixel
PARAMS = Standards().for_monitor("saturation").parameters


@pytest.fixture(scope="module")
def constructed():
    """Levels with a per-amp step, flagged ceiling pixels, a NaN, a low block, and border junk."""
    rng = np.random.default_rng(11)
    level = rng.normal(0.0, 400.0, (4096, 4096)).astype(np.float32)
    level += (52000.0 + 250.0 * np.arange(32, dtype=np.float32)).repeat(128)[None, :]
    dq = np.zeros((4096, 4096), dtype=np.uint32)
    ceiling = rng.random((4096, 4096)) < 0.001
    level[ceiling] = 65535.0
    dq[ceiling] |= np.uint32(F.NO_SAT_CHECK)
    unusable = rng.random((4096, 4096)) < 0.0003
    dq[unusable] |= np.uint32(F.DO_NOT_USE)
    # 30 x 40 low pixels (30000 DN, unflagged) in super-pixel (10, 5): counted as low.
    level[1290:1320, 650:690] = 30000.0
    level[1290:1320, 650:690][dq[1290:1320, 650:690] & np.uint32(F.NO_SAT_CHECK) != 0] = 65535.0
    # Non-finite unflagged levels (counted, left out of the statistics) and a flagged one (not counted).
    level[2000, 2000] = np.nan
    level[2001, 2001] = np.inf
    level[2002, 2002] = np.nan
    dq[2002, 2002] = F.NO_SAT_CHECK
    # Border junk must not count.
    level[:4, :] = 0.0
    dq[:4, :] = F.REFERENCE_PIXEL | F.NO_SAT_CHECK
    return level, dq


def test_monitor_is_registered():
    assert registry()["saturation"].model == "SaturationRefModel"


def test_level_statistics_match_numpy(constructed):
    level, dq = constructed
    metrics = by_name(registry()["saturation"].metrics(SimpleNamespace(data=level, dq=dq), PARAMS))
    checked = np.where((dq & np.uint32(F.NO_SAT_CHECK)) == 0, level.astype(np.float64), np.nan)
    checked[~np.isfinite(checked)] = np.nan
    means = expected(np.nanmean, checked)
    for scale in ("detector", "amp", "superpixel"):
        np.testing.assert_allclose(metrics["saturation_mean"].values[scale], means[scale], rtol=1e-9)
    for q in PARAMS["percentiles"]:
        want = expected(lambda block: np.nanpercentile(block, q), checked)
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_allclose(metrics[f"saturation_percentile_{q:g}"].values[scale], want[scale],
                                       rtol=1e-6, err_msg=f"p{q} {scale}")
    # The per-amp step shows at amp scale: amp 32 sits 31 x 250 DN above amp 1.
    median = metrics["saturation_percentile_50"].values.amp
    assert median[31] - median[0] == pytest.approx(31 * 250.0, abs=20.0)
    assert all(m.unit == "DN" for n, m in metrics.items() if n.startswith("saturation_"))


def test_counts_match_construction(constructed):
    level, dq = constructed
    metrics = by_name(registry()["saturation"].metrics(SimpleNamespace(data=level, dq=dq), PARAMS))
    low = metrics["num_low_saturation_pix"]
    flagged_in_block = np.count_nonzero(dq[1290:1320, 650:690] & np.uint32(F.NO_SAT_CHECK))
    assert low.values.detector[0] == 1200 - flagged_in_block
    assert low.values.superpixel[10 * 32 + 5] == 1200 - flagged_in_block
    assert low.values.amp[5] == 1200 - flagged_in_block
    nonfinite = metrics["num_nonfinite_level_pix"]
    assert nonfinite.values.detector[0] == 2
    assert nonfinite.values.superpixel[15 * 32 + 15] == 2
    for flag in PARAMS["count_flags"]:
        want = expected(lambda d: np.count_nonzero(d & np.uint32(F[flag])), dq)
        for scale in ("detector", "amp", "superpixel"):
            np.testing.assert_array_equal(metrics[f"num_{flag.lower()}_pix"].values[scale], want[scale])


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saturation")
    first = synthetic_saturation.write(folder / "roman_wfi_saturation_0002.asdf", "WFI02", 1, "2027-01-01T00:00:00")
    second = synthetic_saturation.write(folder / "roman_wfi_saturation_0020.asdf", "WFI02", 2, "2027-02-01T00:00:00")
    bad = synthetic_saturation.write(folder / "roman_wfi_saturation_0021.asdf", "WFI02", 2, "2027-02-01T00:00:00",
                                     anomalous=True)
    return first, second, bad


def test_synthetic_normal_deliveries_pass(deliveries):
    first, second, _ = deliveries
    results = check_files([first, second], Standards())
    assert [r.metric_set.error for r in results] == [None, None]
    assert [r.evaluation_set.n_failed for r in results] == [0, 0]
    metrics = by_name(results[1].metric_set.metrics)
    assert 55000 < metrics["saturation_percentile_50"].values.detector[0] < 62000


def test_synthetic_low_saturation_region_is_caught(deliveries):
    first, _, bad = deliveries
    results = check_files([first, bad], Standards())
    failures = {(ev.metric, ev.scale, ev.evaluator): ev for ev in results[1].evaluation_set.failures}
    anomaly = synthetic_saturation.SaturationAnomaly()
    inside = set()  # super-pixels entirely inside the low region
    for j in range(32):
        for i in range(32):
            if anomaly.y0 <= 128 * j and 128 * (j + 1) <= anomaly.y0 + anomaly.size and \
                    anomaly.x0 <= 128 * i and 128 * (i + 1) <= anomaly.x0 + anomaly.size:
                inside.add(j * 32 + i)
    assert inside
    touched = {j * 32 + i for j in range(anomaly.y0 // 128, (anomaly.y0 + anomaly.size - 1) // 128 + 1)
               for i in range(anomaly.x0 // 128, (anomaly.x0 + anomaly.size - 1) // 128 + 1)}
    change = set(np.flatnonzero(~failures[("saturation_mean", "superpixel", "change")].passed).tolist())
    assert inside <= change <= touched
    low = set(np.flatnonzero(~failures[("num_low_saturation_pix", "superpixel", "soc")].passed).tolist())
    assert inside <= low <= touched
    assert ("num_low_saturation_pix", "detector", "change") in failures


def _write(path, data, dq):
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    model = rdm.SaturationRefModel.create_fake_data(shape=data.shape)
    model.meta.useafter = Time("2027-01-01T00:00:00")
    model.data = data
    model.dq = dq
    model.save(path)
    return path


def test_wrong_shape_and_all_nan_files_name_the_file(tmp_path):
    small = _write(tmp_path / "roman_wfi_saturation_small.asdf", np.full((64, 64), 6e4, np.float32),
                   np.zeros((64, 64), np.uint32))
    nan = _write(tmp_path / "roman_wfi_saturation_nan.asdf", np.full((4096, 4096), np.nan, np.float32),
                 np.zeros((4096, 4096), np.uint32))
    errors = [r.metric_set.error for r in check_files([small, nan], Standards())]
    assert errors[0].startswith("roman_wfi_saturation_small.asdf") and "shape (64, 64)" in errors[0]
    assert errors[1].startswith("roman_wfi_saturation_nan.asdf") and "no finite" in errors[1]
