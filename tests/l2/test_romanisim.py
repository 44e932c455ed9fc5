"""The L2 monitors on full-size romanisim images against their true catalogs (slow; cached images).

The images come from ``benchmarks/romanisim_images.py`` (``.ci/run`` makes
them once per machine); without them these tests skip with a warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _cache() -> Path:
    root = os.environ.get("RDMT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "rdmt") / "romanisim"


def _images() -> list[Path]:
    return sorted(_cache().glob("r*_wfi*_cal.asdf"))


@pytest.fixture(scope="module")
def romanisim_image():
    images = _images()
    if not images or not (_cache() / "truth.parquet").exists():
        message = f"no romanisim images in {_cache()} (benchmarks/romanisim_images.py --setup): SKIPPING"
        warnings.warn(message)
        pytest.skip(message)
    return images[0]


def _astrometry(path: Path, catalog: Path) -> dict[str, float]:
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.l2.catalog import load_catalog
    from rdmt_dagster.l2.image import image_from_model
    from rdmt_dagster.science.monitor import registry
    from rdmt_dagster.science.standards import Standards

    with rdm.open(path) as model:
        image = image_from_model(model, path, load_catalog(catalog))
    params = Standards().for_monitor("astrometry").parameters
    return {m.name: float(m.values.detector[0]) for m in registry()["astrometry"].metrics(image, params)}


def test_astrometry_against_the_true_catalog(romanisim_image):
    m = _astrometry(romanisim_image, _cache() / "truth.parquet")
    assert m["num_matched_stars"] >= 1800
    assert m["astrometric_offset_rms"] <= 0.005


@pytest.mark.parametrize("shift", [0.1, 0.5])
def test_shifted_catalog_is_reported(romanisim_image, shift):
    catalog = _cache() / f"truth_shift_{shift}.parquet"
    if not catalog.exists():
        pytest.skip(f"{catalog.name} missing")
    base = _astrometry(romanisim_image, _cache() / "truth.parquet")
    m = _astrometry(romanisim_image, catalog)
    # The catalog moved north by `shift`: the image's stars appear south of it.
    assert m["astrometric_offset_median_dec"] == pytest.approx(-shift, abs=0.005)
    assert m["num_matched_stars"] == pytest.approx(base["num_matched_stars"], rel=0.01)


def test_clean_images_of_every_detector_pass_every_monitor(romanisim_image, capsys):
    """No false alarm: clean simulated images of the cached detectors pass every evaluator."""
    import json

    from rdmt_dagster.cli import main

    images = _images()
    code = main(["check", "--json", "--catalog", str(_cache() / "truth.parquet"), *map(str, images)])
    entries = json.loads(capsys.readouterr().out)["files"]
    assert len(entries) == 4 * len(images)
    assert {e["monitor"] for e in entries} == {"astrometry", "psf", "noise_1f", "pixel"}
    assert all(e["status"] == "ok" for e in entries), [e["error"] for e in entries]
    failed = [(e["file"], m["metric"], k) for e in entries for m in e["metrics"]
              for k, ev in m["evaluations"].items() if ev["passed"] is False]  # None: not evaluated
    assert failed == [] and code == 0
    # One image per detector: only the evaluators that compare with earlier images could not run.
    skipped = {k for e in entries for m in e["metrics"] for k, ev in m["evaluations"].items() if ev["passed"] is None}
    assert skipped <= {"change", "trend"}
    for e in entries:
        values = {m["metric"]: m["value"] for m in e["metrics"]}
        if e["monitor"] == "pixel":
            assert 0.10 < values["detector_plate_scale_center"] < 0.115
        if e["monitor"] == "psf":
            assert 0.1 < values["detector_psf_fwhm_median"] < 0.25
        if e["monitor"] == "astrometry":
            assert np.isfinite(values["detector_astrometric_offset_rms"])
