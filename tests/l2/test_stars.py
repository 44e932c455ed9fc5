"""Astrometry and PSF monitors against synthetic L2 images with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from rdmt_dagster.l2.catalog import StarCatalog
from rdmt_dagster.l2.image import L2Image
from rdmt_dagster.science.monitor import MonitoringError, registry
from rdmt_dagster.science.standards import Standards
from rdmt_dagster.synthetic.l2 import L2Scene, file_wcs, make_scene

SMALL = dict(shape=(1024, 1024), n_stars=700)


def _image(scene: L2Scene, catalog_shift=(0.0, 0.0)):
    """The image of ``scene`` with its true catalog (moved on the sky by ``catalog_shift`` arcsec)."""
    data, dq, truth = make_scene(scene)
    ny, nx = scene.shape
    inside = (truth.x >= 0) & (truth.x < nx) & (truth.y >= 0) & (truth.y < ny)
    dec = truth.dec[inside] + catalog_shift[1] / 3600.0
    ra = truth.ra[inside] + catalog_shift[0] / 3600.0 / np.cos(np.deg2rad(truth.dec[inside]))
    catalog = StarCatalog(ra, dec, truth.mag[inside], source="truth")
    return L2Image(data, dq, path="synthetic_cal.asdf", wcs=file_wcs(scene), catalog=catalog), truth


def _metrics(monitor: str, image: L2Image) -> dict[str, float]:
    params = Standards().for_monitor(monitor).parameters
    return {m.name: float(m.values.detector[0]) for m in registry()[monitor].metrics(image, params)}


def test_clean_image_offsets_at_the_noise_level():
    image, truth = _image(L2Scene(**SMALL))
    m = _metrics("astrometry", image)
    # Positions are fitted from pixels with S/N >= 20: a few mas per star.
    assert m["astrometric_offset_rms"] < 0.006
    assert abs(m["astrometric_offset_median_ra"]) < 0.002 and abs(m["astrometric_offset_median_dec"]) < 0.002
    in_field = np.count_nonzero((truth.x >= 0) & (truth.x < 1024) & (truth.y >= 0) & (truth.y < 1024))
    assert m["num_matched_stars"] >= 0.4 * in_field
    assert m["matched_fraction"] == pytest.approx(m["num_matched_stars"] / in_field, rel=0.02)


@pytest.mark.parametrize("shift", [(0.1, -0.05), (0.5, 0.3)])
def test_wcs_shift_is_reported(shift):
    image, _ = _image(L2Scene(**SMALL, wcs_shift=shift))
    m = _metrics("astrometry", image)
    assert m["astrometric_offset_median_ra"] == pytest.approx(shift[0], abs=0.003)
    assert m["astrometric_offset_median_dec"] == pytest.approx(shift[1], abs=0.003)
    assert m["astrometric_offset_rms"] == pytest.approx(np.hypot(*shift), abs=0.004)


def test_catalog_shift_is_reported_with_the_opposite_sign():
    image, _ = _image(L2Scene(**SMALL), catalog_shift=(0.0, 0.1))
    m = _metrics("astrometry", image)
    assert m["astrometric_offset_median_dec"] == pytest.approx(-0.1, abs=0.003)


def test_full_detector_found_through_a_wcs_off_by_shift_and_roll():
    scene = L2Scene(wcs_shift=(1.5, 0.0), wcs_roll=1.0)
    clean, _ = _image(L2Scene())
    off, truth = _image(scene)
    good, bad = _metrics("astrometry", clean), _metrics("astrometry", off)
    assert bad["num_matched_stars"] >= 0.97 * good["num_matched_stars"]
    # What the file's WCS says minus the truth, for every star in the field (independent of the monitor).
    inside = (truth.x >= 0) & (truth.x < 4088) & (truth.y >= 0) & (truth.y < 4088)
    ra, dec = (np.asarray(v) for v in file_wcs(scene)(truth.x[inside], truth.y[inside]))
    dra = (ra - truth.ra[inside]) * np.cos(np.deg2rad(truth.dec[inside])) * 3600
    ddec = (dec - truth.dec[inside]) * 3600
    assert np.max(np.hypot(dra - 1.5, ddec)) == pytest.approx(1.0, abs=0.1)  # the roll moves the corners 1 arcsec
    assert bad["astrometric_offset_median_ra"] == pytest.approx(np.median(dra), abs=0.03)
    assert bad["astrometric_offset_median_dec"] == pytest.approx(np.median(ddec), abs=0.03)
    assert bad["astrometric_offset_rms"] == pytest.approx(np.sqrt(np.mean(dra**2 + ddec**2)), rel=0.02)
    assert bad["wcs_correction"] == pytest.approx(1.5, abs=0.05)


def test_proper_motions_are_applied_at_the_exposure_epoch():
    image, _ = _image(L2Scene(**SMALL))
    cat = image.catalog
    # Stars moving 20 mas/yr north, catalogued at 2016.0: moved back by (2027.2 - 2016.0) years.
    years = 2027.0 + (31 + 28 + 19) / 365.25 - 2016.0
    pm = np.full(len(cat), 20.0)
    image.catalog = StarCatalog(cat.ra, cat.dec - pm * years / 3.6e6, cat.mag, np.zeros(len(cat)), pm, 2016.0)
    from astropy.time import Time

    image.meta = type("Meta", (), {"exposure": type("Exposure", (), {"start_time": Time("2027-03-20T00:00:00")})()})()
    m = _metrics("astrometry", image)
    assert abs(m["astrometric_offset_median_dec"]) < 0.002


def test_psf_size_and_ellipticity_of_a_known_gaussian():
    # A well-sampled Gaussian core, no wings: observed moments = sigma^2 + 1/12 (pixel box).
    scene = L2Scene(**SMALL, fwhm=0.30, wing_fraction=0.0, ellipticity=0.2)
    image, _ = _image(scene)
    m = _metrics("psf", image)
    sigma = scene.sigma_pixels
    a2 = sigma**2 * np.sqrt(1.2 / 0.8) + 1 / 12
    b2 = sigma**2 * np.sqrt(0.8 / 1.2) + 1 / 12
    fwhm = 2.3548 * (a2 * b2) ** 0.25 * 0.11
    assert m["psf_fwhm_median"] == pytest.approx(fwhm, rel=0.03)
    assert m["psf_ellipticity_median"] == pytest.approx((a2 - b2) / (a2 + b2), abs=0.02)


def test_psf_fwhm_grows_with_defocus():
    sharp, _ = _image(L2Scene(**SMALL, fwhm=0.14))
    blurred, _ = _image(L2Scene(**SMALL, fwhm=0.28))
    ratio = _metrics("psf", blurred)["psf_fwhm_median"] / _metrics("psf", sharp)["psf_fwhm_median"]
    assert 1.5 < ratio < 2.1


def test_stars_are_measured_once_for_both_monitors(monkeypatch):
    import rdmt_dagster.l2.stars as stars

    image, _ = _image(L2Scene(**SMALL))
    calls = []
    original = stars.measure_stars
    monkeypatch.setattr(stars, "measure_stars", lambda *a: calls.append(1) or original(*a))
    _metrics("astrometry", image)
    _metrics("psf", image)
    assert len(calls) == 1


@pytest.mark.parametrize("problem, expected", [
    ("no_wcs", "has no WCS"),
    ("no_catalog", "needs an astrometric reference catalog"),
    ("elsewhere", "do not overlap"),
    ("all_nan", "no usable pixel"),
])
def test_monitor_that_cannot_run_says_why(problem, expected):
    image, _ = _image(L2Scene(shape=(256, 256), n_stars=60))
    if problem == "no_wcs":
        image.wcs = None
    elif problem == "no_catalog":
        image.catalog = None
    elif problem == "elsewhere":
        image.catalog = StarCatalog(image.catalog.ra + 5.0, image.catalog.dec)
    else:
        image.data[:] = np.nan
    with pytest.raises(MonitoringError, match=expected):
        _metrics("astrometry", image)
