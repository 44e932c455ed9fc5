"""Reference stars measured in an L2 image: shared by the astrometry and PSF monitors.

Where the catalog says a star is, the image is measured (no blind detection):

1. catalog positions (moved by proper motions to the exposure) are projected
   through the file's own WCS (`rdmt_dagster.l2.wcs.PixelProjector`);
2. a coarse alignment finds the stars even when that WCS is off by tens of
   pixels: the brightest peaks of a 4x-binned image vote for their offsets
   to nearby catalog positions, and a similarity transform (shift, rotation,
   scale) is fitted to the winning pairs, then refined on closer matches;
3. isolated catalog stars with clean stamps (no flagged or non-finite pixel,
   enough signal) are fitted with an effective PSF built from the stars
   themselves (Anderson & King 2000): undersampled WFI stars need the PSF's
   own shape, since centroids and Gaussian fits are biased by the pixel phase
   at the level of a few hundredths of a pixel;
4. each star's Gaussian-weighted second moments, with the weight divided
   out, give its size and ellipticity.

Everything is vectorised over stars: a detector with a few thousand stars
takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..science.monitor import MonitoringError
from .image import L2Image
from .wcs import PixelProjector, plate_scales, sky


@dataclass
class StarMeasurements:
    """The catalog stars found and measured in one image.

    Attributes
    ----------
    n_in_field : int
        Catalog stars whose projected position falls inside the image.
    n_matched : int
        Isolated, unflagged catalog stars with enough signal whose centroid
        lies within the match radius of where the (aligned) catalog puts them.
    x, y : ndarray
        Fitted pixel positions (zero-based column, row) of the measured stars:
        the brightest ``max_fit_stars`` of the matched ones, less blends.
    ra, dec : ndarray
        Their catalog positions (degrees, at the exposure epoch).
    flux, snr : ndarray
        Fitted flux (image units x pixels) and signal-to-noise.
    dra, ddec : ndarray
        Measured minus catalog position on the sky through the file's WCS,
        arcsec (``dra`` includes cos Dec).
    sigma, e1, e2 : ndarray
        Second-moment size (determinant radius, pixels) and ellipticity
        components ``(Ixx - Iyy) / (Ixx + Iyy)``, ``2 Ixy / (Ixx + Iyy)``.
    plate_scale : float
        Arcsec per pixel at the image centre.
    coarse_shift : float
        Size of the coarse correction at the image centre, arcsec (how far
        the WCS was off before the fit).
    """

    n_in_field: int
    n_matched: int
    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray
    snr: np.ndarray
    dra: np.ndarray
    ddec: np.ndarray
    sigma: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    plate_scale: float
    coarse_shift: float


def stars_of(image: L2Image, parameters: dict) -> StarMeasurements:
    """The measured catalog stars of ``image``, computed once per image and set of parameters.

    The astrometry and PSF monitors carry the same ``stars`` parameters, so
    the stars are measured once for both.
    """
    key = "stars:" + repr(sorted(parameters.items()))
    return image.shared(key, lambda: measure_stars(image, parameters))


# -- pieces ---------------------------------------------------------------------

def _bad(data: np.ndarray, dq: np.ndarray, flags: int) -> np.ndarray:
    """Flagged or non-finite pixels of (views of) the image: only ever on a subsample or stamps."""
    return ((dq & np.uint32(flags)) != 0) | ~np.isfinite(data)


def sky_and_noise(data: np.ndarray, dq: np.ndarray, flags: int, step: int = 7) -> tuple[float, float]:
    """Median sky and its noise (1.4826 MAD of the faint side) from a sparse grid of pixels."""
    sub = data[::step, ::step]
    sample = sub[~_bad(sub, dq[::step, ::step], flags)]
    if sample.size < 100:
        return float("nan"), float("nan")
    sky = float(np.median(sample))
    below = sample[sample <= sky]
    # The faint side is free of stars: its MAD measures the noise even in crowded fields.
    noise = 1.4826 * float(np.median(sky - below))
    return sky, noise


def _bright_peaks(data: np.ndarray, sky: float, n: int, binning: int = 4) -> np.ndarray:
    """(x, y) of the ``n`` brightest local maxima of a binned, sky-subtracted image.

    Saturated stars keep their (clipped, finite) values: they are real bright
    peaks, good enough to align on.
    """
    ny, nx = data.shape
    by, bx = ny // binning, nx // binning
    cut = data[: by * binning, : bx * binning]
    # Bin first, then mend the few bins a non-finite pixel made NaN: one pass over the image.
    binned = cut.reshape(by, binning, bx, binning).sum(axis=(1, 3), dtype=np.float64) - sky * binning * binning
    binned[~np.isfinite(binned)] = 0.0
    peaks = (binned == ndimage.maximum_filter(binned, size=5)) & (binned > 0)
    iy, ix = np.nonzero(peaks)
    order = np.argsort(binned[iy, ix])[::-1][:n]
    iy, ix = iy[order], ix[order]
    # Centroid of the 3x3 binned neighbourhood to place each peak within ~1 pixel.
    pad = np.pad(binned, 1)
    offsets = np.arange(-1, 2)
    w = np.clip(pad[iy[:, None, None] + 1 + offsets[None, :, None], ix[:, None, None] + 1 + offsets[None, None, :]], 0, None)
    total = w.sum(axis=(1, 2))
    cy = iy + (w.sum(axis=2) * offsets).sum(axis=1) / total
    cx = ix + (w.sum(axis=1) * offsets).sum(axis=1) / total
    return np.column_stack([(cx + 0.5) * binning - 0.5, (cy + 0.5) * binning - 0.5])


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x2 matrix M with ``dst ~ [x, y, 1] @ M`` for a rotation, scale and shift (least squares)."""
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    design = np.vstack([np.column_stack([x, -y, one, zero]), np.column_stack([y, x, zero, one])])
    a, b, tx, ty = np.linalg.lstsq(design, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    return np.array([[a, b], [-b, a], [tx, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2] + matrix[2]


def coarse_transform(predicted: np.ndarray, peaks: np.ndarray, search: float) -> np.ndarray:
    """Similarity transform taking catalog-predicted pixel positions onto the image's stars.

    Parameters
    ----------
    predicted : (n, 2) array
        Catalog positions projected through the file's WCS (bright stars first when known).
    peaks : (m, 2) array
        Bright peaks of the image.
    search : float
        Largest offset (pixels) the WCS may be off by anywhere on the detector.

    Returns
    -------
    3x2 matrix (see `_fit_similarity`); the identity when nothing matches.
    """
    identity = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    if len(predicted) < 3 or len(peaks) < 3:
        return identity
    tree = cKDTree(predicted)
    pairs = tree.query_ball_point(peaks, r=search)
    peak_idx = np.repeat(np.arange(len(peaks)), [len(p) for p in pairs])
    cat_idx = np.fromiter((i for p in pairs for i in p), dtype=np.int64, count=len(peak_idx))
    if peak_idx.size < 3:
        return identity
    offsets = peaks[peak_idx] - predicted[cat_idx]
    # Vote: the true offset piles up (spread by a roll error), chance pairs spread evenly.
    bins = np.arange(-search, search + 2.0, 2.0)
    hist, _, _ = np.histogram2d(offsets[:, 0], offsets[:, 1], bins=[bins, bins])
    hist = ndimage.uniform_filter(hist, size=5, mode="constant")
    i, j = np.unravel_index(np.argmax(hist), hist.shape)
    mode = np.array([bins[i] + 1.0, bins[j] + 1.0])
    matrix = identity.copy()
    matrix[2] = mode
    for radius in (search / 2.0, 4.0, 2.0, 1.5):
        moved = _apply(matrix, predicted)
        dist, idx = cKDTree(moved).query(peaks, distance_upper_bound=radius)
        ok = np.isfinite(dist)
        if ok.sum() < 3:
            break
        matrix = _fit_similarity(predicted[idx[ok]], peaks[ok])
    return matrix


def _stamps(data: np.ndarray, dq: np.ndarray, flags: int, cx: np.ndarray, cy: np.ndarray, half: int):
    """(n, 2h+1, 2h+1) cutouts centred on integer pixels, and whether each holds a flagged or non-finite pixel."""
    k = np.arange(-half, half + 1)
    rows = cy[:, None, None] + k[None, :, None]
    cols = cx[:, None, None] + k[None, None, :]
    pixels = data[rows, cols]
    return pixels.astype(np.float64), _bad(pixels, dq[rows, cols], flags).any(axis=(1, 2))


def _centroids(stamps: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """First moments of the positive 3x3 core (offsets from the stamp centre)."""
    core = np.clip(stamps[:, half - 1: half + 2, half - 1: half + 2], 0, None)
    k = np.arange(-1, 2)
    total = core.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)
    return (core.sum(axis=1) * k).sum(axis=1) / total, (core.sum(axis=2) * k).sum(axis=1) / total


class EffectivePSF:
    """An oversampled, pixel-integrated PSF built from the stars of one image.

    ``value(dx, dy)`` is the share of a star's flux falling in a pixel whose
    centre is (dx, dy) pixels from the star.
    """

    def __init__(self, grid: np.ndarray, oversampling: int):
        self.oversampling = oversampling
        self.grid = grid
        self.center = (grid.shape[0] - 1) / 2.0
        self._spline = ndimage.spline_filter(grid, order=3)
        gy, gx = np.gradient(grid)
        self._spline_dx = ndimage.spline_filter(gx * oversampling, order=3)
        self._spline_dy = ndimage.spline_filter(gy * oversampling, order=3)

    @classmethod
    def build(cls, stamps, dx, dy, flux, *, oversampling: int = 4, half: int = 4) -> "EffectivePSF":
        """Average the stars' normalised pixels on an oversampled grid, then smooth lightly."""
        size = 2 * half * oversampling + 1
        u = np.rint((dx * oversampling) + half * oversampling).astype(np.int64)
        v = np.rint((dy * oversampling) + half * oversampling).astype(np.int64)
        values = stamps / flux[:, None, None]
        ok = (u >= 0) & (u < size) & (v >= 0) & (v < size) & np.isfinite(values)
        index, values = v[ok] * size + u[ok], values[ok]
        grid = np.zeros(size * size)
        keep = np.ones(index.size, bool)
        # Two passes: a neighbour or a cosmic ray in a stamp must not leave a ghost in the PSF.
        for _ in range(2):
            counts = np.bincount(index[keep], minlength=size * size)
            sums = np.bincount(index[keep], weights=values[keep], minlength=size * size)
            squares = np.bincount(index[keep], weights=values[keep] ** 2, minlength=size * size)
            n = np.maximum(counts, 1)
            grid = np.where(counts > 0, sums / n, 0.0)
            spread = np.sqrt(np.maximum(squares / n - grid**2, 0.0))
            keep = np.abs(values - grid[index]) <= 3.0 * spread[index] + 1e-12
        grid = grid.reshape(size, size)
        kernel = np.array([0.25, 0.5, 0.25])
        grid = ndimage.convolve1d(ndimage.convolve1d(grid, kernel, axis=0), kernel, axis=1)
        return cls(grid, oversampling)

    def _coords(self, dx, dy):
        return np.array([np.ravel(dy) * self.oversampling + self.center, np.ravel(dx) * self.oversampling + self.center])

    def value(self, dx, dy):
        c = self._coords(dx, dy)
        return ndimage.map_coordinates(self._spline, c, order=3, prefilter=False, mode="constant").reshape(np.shape(dx))

    def gradient(self, dx, dy):
        """d value / d dx and d value / d dy."""
        c = self._coords(dx, dy)
        gx = ndimage.map_coordinates(self._spline_dx, c, order=3, prefilter=False, mode="constant")
        gy = ndimage.map_coordinates(self._spline_dy, c, order=3, prefilter=False, mode="constant")
        return gx.reshape(np.shape(dx)), gy.reshape(np.shape(dx))

    def peak(self) -> tuple[float, float]:
        """Position (pixels) of the PSF's maximum, refined by a parabola through its neighbours."""
        g = self.grid
        # Only near the centre: the peak of a star is within a pixel of where the fits put it.
        k = np.arange(g.shape[0]) - self.center
        near = np.hypot(*np.meshgrid(k, k, indexing="ij")) <= self.oversampling
        iy, ix = np.unravel_index(np.argmax(np.where(near, g, -np.inf)), g.shape)
        iy, ix = min(max(iy, 1), g.shape[0] - 2), min(max(ix, 1), g.shape[1] - 2)

        def vertex(a, b, c):
            denom = a - 2 * b + c
            return 0.0 if denom == 0 else 0.5 * (a - c) / denom

        fx = vertex(g[iy, ix - 1], g[iy, ix], g[iy, ix + 1])
        fy = vertex(g[iy - 1, ix], g[iy, ix], g[iy + 1, ix])
        return (ix + fx - self.center) / self.oversampling, (iy + fy - self.center) / self.oversampling

    def centroid(self, radius: float = 2.0) -> tuple[float, float]:
        """Flux-weighted centre (pixels) of the PSF within ``radius``."""
        k = (np.arange(self.grid.shape[0]) - self.center) / self.oversampling
        yy, xx = np.meshgrid(k, k, indexing="ij")
        w = self.grid * (np.hypot(xx, yy) <= radius)
        return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


def fit_positions(stamps, x0, y0, flux0, psf: EffectivePSF, half: int, iterations: int = 5):
    """Gauss-Newton fit of position, flux and background of every star at once.

    Parameters
    ----------
    stamps : (n, s, s) array
        Pixels around each star (background included).
    x0, y0 : arrays
        Starting positions relative to the stamp centre.
    flux0 : array
        Starting fluxes.

    Returns
    -------
    x, y, flux : arrays
        The fitted positions (relative to the stamp centre) and fluxes; the
        background is fitted with them and dropped.
    """
    s = stamps.shape[1]
    k = np.arange(s) - (s - 1) // 2
    fit = np.abs(k) <= half
    pix = stamps[:, fit][:, :, fit]
    kk = k[fit]
    gy, gx = np.meshgrid(kk, kk, indexing="ij")
    x, y, flux = x0.copy(), y0.copy(), flux0.copy()
    bkg = np.zeros_like(x)
    n = len(x)
    for _ in range(iterations):
        dx = gx[None] - x[:, None, None]
        dy = gy[None] - y[:, None, None]
        model = psf.value(dx, dy)
        dmx, dmy = psf.gradient(dx, dy)
        resid = (pix - flux[:, None, None] * model - bkg[:, None, None]).reshape(n, -1)
        jac = np.stack([-flux[:, None, None] * dmx, -flux[:, None, None] * dmy, model, np.ones_like(model)], axis=-1).reshape(n, -1, 4)
        jtj = np.einsum("npi,npj->nij", jac, jac)
        jtr = np.einsum("npi,np->ni", jac, resid)
        try:
            step = np.linalg.solve(jtj + 1e-12 * np.eye(4), jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        step[:, :2] = np.clip(step[:, :2], -0.5, 0.5)
        x, y = x + step[:, 0], y + step[:, 1]
        flux, bkg = flux + step[:, 2], bkg + step[:, 3]
    return x, y, flux


def gaussian_moments(stamps, x, y, weight_sigma: float = 1.0):
    """Second moments (Ixx, Iyy, Ixy in pixels^2) of background-subtracted stamps.

    Moments weighted by a round Gaussian of ``weight_sigma`` pixels, with the
    weight divided out: for a Gaussian star of covariance C the weighted
    moments are ``M = (C^-1 + W^-1)^-1``, so ``C = (M^-1 - W^-1)^-1``. A
    weight about twice the star's size keeps the noise of the wings out and,
    unlike a weight matched to each star, stays stable on undersampled WFI stars.
    """
    s = stamps.shape[1]
    k = np.arange(s) - (s - 1) // 2
    gy, gx = np.meshgrid(k, k, indexing="ij")
    dx = gx[None] - x[:, None, None]
    dy = gy[None] - y[:, None, None]
    w = np.exp(-0.5 * (dx**2 + dy**2) / weight_sigma**2)
    f = w * stamps
    total = f.sum(axis=(1, 2))
    total = np.where(total > 0, total, np.nan)
    mxx = (f * dx**2).sum(axis=(1, 2)) / total
    myy = (f * dy**2).sum(axis=(1, 2)) / total
    mxy = (f * dx * dy).sum(axis=(1, 2)) / total
    # Invert M, subtract W^-1, invert back (2x2 in closed form).
    det = mxx * myy - mxy**2
    with np.errstate(invalid="ignore", divide="ignore"):
        axx, ayy, axy = myy / det - 1 / weight_sigma**2, mxx / det - 1 / weight_sigma**2, -mxy / det
        det_a = axx * ayy - axy**2
        return ayy / det_a, axx / det_a, -axy / det_a


def measure_stars(image: L2Image, parameters: dict) -> StarMeasurements:
    """Find and measure the catalog stars of one image (see the module docstring).

    Parameters
    ----------
    image : L2Image
        With ``wcs`` and ``catalog`` set.
    parameters : dict
        ``dq_flags`` (names of the DQ flags that disqualify a stamp),
        ``max_wcs_error`` (arcsec), ``isolation_radius`` (pixels),
        ``min_snr``, ``fit_half_width``, ``epsf_iterations``,
        ``n_alignment_peaks``, ``match_radius`` (pixels), ``clip_sigma``,
        ``max_fit_stars``.

    Raises
    ------
    MonitoringError
        No WCS, no catalog, no catalog star in the field, no star measured.
    """
    from ..science.dq import flag_bits

    if image.wcs is None:
        raise MonitoringError(image.path, "has no WCS (meta.wcs is empty)")
    if image.catalog is None:
        raise MonitoringError(image.path, "needs an astrometric reference catalog")
    ny, nx = image.data.shape
    flags = sum(flag_bits(parameters.get("dq_flags", ["DO_NOT_USE", "SATURATED"]), "stars dq_flags").values())

    ra, dec = image.catalog.positions_at(image.exposure_start())
    try:
        projector = PixelProjector(image.wcs, (ny, nx))
    except Exception as exc:  # a WCS that cannot be evaluated is the file's problem
        raise MonitoringError(image.path, f"its WCS cannot be evaluated ({type(exc).__name__}: {exc})") from None
    scale = float(plate_scales(image.wcs, np.array([[(nx - 1) / 2.0, (ny - 1) / 2.0]]))[0])
    search = float(parameters.get("max_wcs_error", 3.0)) / scale
    # Cheap pre-selection in the tangent plane, exact projection for the survivors.
    xi, eta = projector.standard(ra, dec)
    radius = np.hypot(nx, ny) / 2.0 * scale / 3600.0 * 1.2 + search * scale / 3600.0
    near = np.hypot(xi, eta) < radius
    px, py = projector(ra[near], dec[near])
    margin = -search
    inside = (px > margin) & (px < nx - 1 - margin) & (py > margin) & (py < ny - 1 - margin)
    index = np.flatnonzero(near)[inside]
    predicted = np.column_stack([px[inside], py[inside]])
    in_field = int(np.count_nonzero((predicted[:, 0] >= 0) & (predicted[:, 0] <= nx - 1)
                                    & (predicted[:, 1] >= 0) & (predicted[:, 1] <= ny - 1)))
    if in_field == 0:
        raise MonitoringError(image.path, f"no star of catalog {image.catalog.source} falls on the image (catalog and image do not overlap)")

    sky_level, noise = sky_and_noise(image.data, image.dq, flags)
    if not np.isfinite(noise):
        raise MonitoringError(image.path, "has no usable pixel (all flagged or non-finite)")
    mag = image.catalog.mag[index] if image.catalog.mag is not None else None
    order = np.argsort(mag) if mag is not None else np.arange(len(index))
    n_peaks = int(parameters.get("n_alignment_peaks", 300))
    peaks = _bright_peaks(image.data, sky_level, n_peaks)
    candidates = predicted[order[: max(4 * n_peaks, 1)]] if mag is not None else predicted
    matrix = coarse_transform(candidates, peaks, search)
    guess = _apply(matrix, predicted)
    centre = np.array([[(nx - 1) / 2.0, (ny - 1) / 2.0]])
    coarse_shift = float(np.hypot(*(_apply(matrix, centre) - centre)[0]) * scale)

    half_fit = int(parameters.get("fit_half_width", 2))
    half = half_fit + 2
    cx, cy = np.rint(guess[:, 0]).astype(np.int64), np.rint(guess[:, 1]).astype(np.int64)
    on_image = (cx >= half) & (cx < nx - half) & (cy >= half) & (cy < ny - half)
    isolation = float(parameters.get("isolation_radius", 4.0))
    tree = cKDTree(guess)
    crowded = np.zeros(len(guess), bool)
    for i, j in tree.query_pairs(isolation, output_type="ndarray"):
        # A much fainter neighbour barely moves the fit; only comparable ones disqualify.
        if mag is None or mag[j] - mag[i] < 3.0:
            crowded[i] = True
        if mag is None or mag[i] - mag[j] < 3.0:
            crowded[j] = True
    keep = np.flatnonzero(on_image & ~crowded)
    stamps, flagged = _stamps(image.data, image.dq, flags, cx[keep], cy[keep], half)
    keep, stamps = keep[~flagged], stamps[~flagged]
    ring = np.concatenate([stamps[:, 0, :], stamps[:, -1, :], stamps[:, 1:-1, 0], stamps[:, 1:-1, -1]], axis=1)
    local_sky = np.median(ring, axis=1)
    stamps = stamps - local_sky[:, None, None]
    core = stamps[:, half - 2: half + 3, half - 2: half + 3]
    flux0 = core.sum(axis=(1, 2))
    snr = flux0 / (noise * 5.0 + 1e-30)
    good = snr >= float(parameters.get("min_snr", 20.0))
    keep, stamps, flux0, snr = keep[good], stamps[good], flux0[good], snr[good]
    if len(keep) < 5:
        raise MonitoringError(image.path, f"too few catalog stars could be measured ({len(keep)} of {in_field} in the field)")

    x0, y0 = _centroids(stamps, half)
    match_radius = float(parameters.get("match_radius", 1.0))
    centred = np.hypot(cx[keep] + x0 - guess[keep, 0], cy[keep] + y0 - guess[keep, 1]) <= match_radius
    n_matched = int(np.count_nonzero(centred))
    # Fit the brightest matched stars only: beyond a few thousand, more stars no longer
    # sharpen a detector's offset statistics, but the fit's cost grows with each (crowded fields).
    chosen = np.flatnonzero(centred)
    chosen = chosen[np.argsort(snr[chosen])[::-1][: int(parameters.get("max_fit_stars", 3000))]]
    keep, stamps, flux0, snr, x0, y0 = (a[chosen] for a in (keep, stamps, flux0, snr, x0, y0))
    if len(keep) < 5:
        raise MonitoringError(image.path, f"too few catalog stars matched ({len(keep)} of {in_field} in the field)")
    x, y, flux = x0, y0, flux0
    k = np.arange(-half, half + 1)
    gy, gx = np.meshgrid(k, k, indexing="ij")
    psf = None
    rounds = int(parameters.get("epsf_iterations", 3))
    for round_ in range(rounds):
        psf_src = snr > np.percentile(snr, 25) if len(snr) > 40 else np.ones(len(snr), bool)
        psf = EffectivePSF.build(stamps[psf_src], gx[None] - x[psf_src, None, None], gy[None] - y[psf_src, None, None],
                                 flux[psf_src], half=half)
        # The PSF's zero point is arbitrary: tie it to its peak (or centroid). An aberrated PSF's
        # centroid lies up to ~0.2 pixel from where the optics put the star; its peak much closer.
        ox, oy = psf.peak() if parameters.get("psf_origin", "peak") == "peak" else psf.centroid()
        psf = EffectivePSF(ndimage.shift(psf.grid, (-oy * psf.oversampling, -ox * psf.oversampling), order=3, mode="constant"), psf.oversampling)
        # Early rounds only need positions good enough to sharpen the PSF.
        steps = int(parameters.get("fit_iterations", 4)) if round_ == rounds - 1 else 2
        x, y, flux = fit_positions(stamps, x, y, np.where(flux > 0, flux, flux0), psf, half_fit, steps)
    fitted_x, fitted_y = cx[keep] + x, cy[keep] + y
    moved = np.hypot(fitted_x - guess[keep, 0], fitted_y - guess[keep, 1])
    ok = (moved <= match_radius) & np.isfinite(fitted_x) & np.isfinite(fitted_y) & (flux > 0)
    keep, fitted_x, fitted_y, flux, snr, stamps, x, y = (a[ok] for a in (keep, fitted_x, fitted_y, flux, snr, stamps, x, y))
    if len(keep) < 5:
        raise MonitoringError(image.path, f"too few catalog stars matched ({len(keep)} of {in_field} in the field)")

    sky_ra, sky_dec = sky(image.wcs, fitted_x, fitted_y)
    cat_ra, cat_dec = ra[index[keep]], dec[index[keep]]
    dra = ((sky_ra - cat_ra + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(cat_dec)) * 3600.0
    ddec = (sky_dec - cat_dec) * 3600.0
    # Blends and mismatches: clip offsets far from the bulk (robust sigma).
    clip = float(parameters.get("clip_sigma", 5.0))
    for _ in range(3):
        mx, my = np.median(dra), np.median(ddec)
        r = np.hypot(dra - mx, ddec - my)
        limit = clip * np.median(r) / 1.1774 + 1e-4  # median radius of a 2-D Gaussian is 1.1774 sigma
        inlier = r <= limit
        if inlier.all():
            break
        keep, fitted_x, fitted_y, flux, snr, stamps, x, y, dra, ddec, cat_ra, cat_dec = (
            a[inlier] for a in (keep, fitted_x, fitted_y, flux, snr, stamps, x, y, dra, ddec, cat_ra, cat_dec))
    ixx, iyy, ixy = gaussian_moments(stamps, x, y, float(parameters.get("moment_weight_sigma", 1.0)))
    trace = ixx + iyy
    return StarMeasurements(
        n_in_field=in_field, n_matched=n_matched, x=fitted_x, y=fitted_y, ra=cat_ra, dec=cat_dec, flux=flux, snr=snr,
        dra=dra, ddec=ddec, sigma=np.sqrt(np.sqrt(np.maximum(ixx * iyy - ixy**2, 0))),
        e1=(ixx - iyy) / trace, e2=2 * ixy / trace, plate_scale=scale, coarse_shift=coarse_shift,
    )
