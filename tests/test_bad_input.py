"""Bad input: a clear error naming the file, recorded, and the other files still processed."""

import asdf
import numpy as np
import roman_datamodels.datamodels as rdm
from astropy.time import Time

from rdmt_dagster.checking import check_files
from rdmt_dagster.science.standards import Standards


def write_dark(path, shape=(4096, 4096), fill=None):
    model = rdm.DarkRefModel.create_fake_data(shape=shape)
    model.meta.useafter = Time("2027-01-01")
    model.dark_slope = np.full(shape, 0.005 if fill is None else fill, dtype=np.float32)
    model.dark_slope_error = np.zeros(shape, dtype=np.float32)
    model.dq = np.zeros(shape, dtype=np.uint32)
    model.save(path)
    return path


def make_bad_files(folder, good_source):
    truncated = folder / "truncated_dark.asdf"
    truncated.write_bytes(good_source.read_bytes()[: good_source.stat().st_size // 2])
    not_roman = folder / "not_roman.asdf"
    asdf.AsdfFile({"hello": np.arange(3)}).write_to(not_roman)
    garbage = folder / "garbage.asdf"
    garbage.write_bytes(b"this is not an asdf file at all\n" * 10)
    wrong_shape = write_dark(folder / "small_dark.asdf", shape=(100, 100))
    all_nan = write_dark(folder / "nan_dark.asdf", fill=np.nan)
    missing = folder / "missing_dark.asdf"
    return {
        truncated.name: "truncated",
        not_roman.name: "not_roman",
        garbage.name: "garbage",
        wrong_shape.name: "shape",
        all_nan.name: "nan",
        missing.name: "missing",
    }


EXPECTED_WORDS = {
    "truncated": ["cannot"],
    "not_roman": ["not a monitored reference type", "cannot be read"],
    "garbage": ["cannot be read"],
    "shape": ["shape (100, 100)", "4096x4096"],
    "nan": ["no finite science pixels"],
    "missing": ["does not exist"],
}


def test_each_bad_file_gets_a_clear_error_and_the_good_one_is_monitored(tmp_path, dark_normal_pair):
    bad = make_bad_files(tmp_path, dark_normal_pair[0])
    paths = [dark_normal_pair[0]] + [tmp_path / name for name in bad]
    results = {c.metric_set.info.filename: c for c in check_files(paths, Standards())}
    good = results[dark_normal_pair[0].name]
    assert good.metric_set.ok and good.evaluation_set is not None and len(good.metric_set.metrics) == 8
    for name, kind in bad.items():
        ms = results[name].metric_set
        assert not ms.ok, name
        assert ms.error.startswith(name), ms.error
        assert any(word in ms.error for word in EXPECTED_WORDS[kind]), ms.error
        assert results[name].evaluation_set is None
