"""Astrometry monitor of L2 images (``ImageModel``): is the image's WCS where the stars are?

The stars of a reference catalog are projected through the file's own WCS,
found in the image (even when the WCS is off by arcseconds), fitted with the
image's own effective PSF, and their measured positions are taken back to
the sky through the same WCS (`rdmt_dagster.l2.stars`).

What it tells an instrument scientist
-------------------------------------
* ``astrometric_offset_rms`` (arcsec): root mean square of the measured minus
  catalog positions (of the brightest ``max_fit_stars`` matched stars). A few milliarcseconds when the WCS is right; it grows
  with a pointing error, a wrong distortion solution, a failed alignment
  step or a wrong guide-star solution.
* ``astrometric_offset_median_ra`` / ``_dec`` (arcsec, RA including cos Dec):
  the systematic part: a WCS shifted on the sky shows here.
* ``num_matched_stars``: isolated, unflagged catalog stars with enough signal
  found where the aligned catalog puts them; a sudden drop
  means defocus, trailing, a wrong catalog or a WCS off by more than the search radius.
* ``matched_fraction``: matched over catalog stars in the field; stable for a
  given catalog depth, so its history flags images that lost stars.
* ``wcs_correction`` (arcsec): how far the coarse alignment had to move the
  catalog at the image centre before the fit (how far the WCS was off).

All values are per detector (detector scale only).
"""

from __future__ import annotations

import numpy as np

from ..l2.monitor import L2Monitor

from ..science.metrics import Metric
from ..science.scales import ScaleValues

ARCSEC = "arcsec"


class AstrometryMonitor(L2Monitor):
    name = "astrometry"
    version = "1.0.0"
    scales = ("detector",)
    needs_catalog = True

    def metrics(self, model, parameters, previous=None):
        from ..l2.stars import stars_of  # scipy loads only when an L2 image is measured

        stars = stars_of(model, parameters.get("stars", {}))
        rms = np.sqrt(np.mean(stars.dra**2 + stars.ddec**2))
        return [
            Metric("astrometric_offset_rms", ARCSEC, ScaleValues.detector_only(rms), "RMS of measured minus catalog positions"),
            Metric("astrometric_offset_median_ra", ARCSEC, ScaleValues.detector_only(np.median(stars.dra)), "median RA offset (x cos Dec)"),
            Metric("astrometric_offset_median_dec", ARCSEC, ScaleValues.detector_only(np.median(stars.ddec)), "median Dec offset"),
            Metric("num_matched_stars", "stars", ScaleValues.detector_only(stars.n_matched), "catalog stars found where expected"),
            Metric("matched_fraction", "", ScaleValues.detector_only(stars.n_matched / stars.n_in_field), "matched / catalog stars in the field"),
            Metric("wcs_correction", ARCSEC, ScaleValues.detector_only(stars.coarse_shift), "coarse alignment at the image centre"),
        ]
