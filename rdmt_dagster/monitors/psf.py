"""PSF monitor of L2 images (``ImageModel``): size and shape of the stars.

From the catalog stars that the astrometry monitor measures (shared, not
measured twice: `rdmt_dagster.l2.stars`), the adaptive second moments of
each star give its size and ellipticity.

What it tells an instrument scientist
-------------------------------------
* ``psf_fwhm_median`` (arcsec): the Gaussian-equivalent FWHM,
  ``2.3548 (det I)^(1/4)`` times the plate scale, of the observed
  (pixel-convolved) stars; grows with defocus, jitter or a smeared exposure.
* ``psf_fwhm_spread`` (arcsec): 1.4826 MAD of the FWHM over the stars: a
  field-dependent PSF (tilt, astigmatism across the detector) widens it.
* ``psf_ellipticity_median`` and ``psf_ellipticity_spread``:
  ``|e| = sqrt(e1^2 + e2^2)`` with ``e1 = (Ixx - Iyy) / (Ixx + Iyy)``,
  ``e2 = 2 Ixy / (Ixx + Iyy)``; guiding errors and trailing elongate every
  star in one direction.
* ``num_psf_stars``: stars used (bright, isolated, unflagged).

Detector scale only.
"""

from __future__ import annotations

import numpy as np

from ..l2.monitor import L2Monitor

from ..science.metrics import Metric
from ..science.monitor import MonitoringError
from ..science.scales import ScaleValues

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _spread(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


class PSFMonitor(L2Monitor):
    name = "psf"
    version = "1.0.0"
    scales = ("detector",)
    needs_catalog = True

    def metrics(self, model, parameters, previous=None):
        from ..l2.stars import stars_of  # scipy loads only when an L2 image is measured

        stars = stars_of(model, parameters.get("stars", {}))
        bright = stars.snr >= float(parameters.get("min_snr", 50.0))
        if np.count_nonzero(bright) < int(parameters.get("min_stars", 10)):
            raise MonitoringError(model.path, f"too few bright stars for the PSF ({np.count_nonzero(bright)})")
        fwhm = FWHM_PER_SIGMA * stars.sigma[bright] * stars.plate_scale
        ellipticity = np.hypot(stars.e1[bright], stars.e2[bright])
        return [
            Metric("psf_fwhm_median", "arcsec", ScaleValues.detector_only(np.median(fwhm)), "median Gaussian-equivalent FWHM"),
            Metric("psf_fwhm_spread", "arcsec", ScaleValues.detector_only(_spread(fwhm)), "1.4826 MAD of the FWHM over the stars"),
            Metric("psf_ellipticity_median", "", ScaleValues.detector_only(np.median(ellipticity)), "median |e| of the stars"),
            Metric("psf_ellipticity_spread", "", ScaleValues.detector_only(_spread(ellipticity)), "1.4826 MAD of |e|"),
            Metric("num_psf_stars", "stars", ScaleValues.detector_only(np.count_nonzero(bright)), "stars used"),
        ]
