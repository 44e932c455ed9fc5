"""Synthetic Level-2 images with known truth: stars, PSF, sky, noise, saturation, 1/f noise, WCS errors.

`make_scene` draws stars uniformly over the detector with a power-law
magnitude distribution, places them through a *true* WFI-like gwcs, renders a
pixel-integrated PSF (a core plus wider wings, optionally elongated), adds sky
and noise, clips and flags saturated pixels, and can inject 1/f noise in
readout order and write the file with a WCS that is off by a known shift and
roll. The catalog of the true positions is written beside the image, so the
astrometric monitor can be checked against it. A 4088x4088 image takes a few
seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy.special import erf

from ..l2.catalog import write_catalog
from ..l2.wcs import NOMINAL_PLATE_SCALE, tangent_wcs
from ..science.scales import SCIENCE_SIZE

SATURATED = 2
DO_NOT_USE = 1
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class L2Scene:
    """What a synthetic L2 image shows, and how its file deviates from the truth.

    Fluxes are in DN/s: a star of magnitude ``m`` gives ``10**(-0.4 (m - zero_point))``.
    """

    detector: str = "WFI01"
    optical_element: str = "F158"
    ra: float = 270.0
    dec: float = -28.0
    roll: float = 0.0
    plate_scale: float = NOMINAL_PLATE_SCALE
    distortion: float = 0.003
    shape: tuple = (SCIENCE_SIZE, SCIENCE_SIZE)
    n_stars: int = 4000
    mag_range: tuple = (16.0, 24.0)
    zero_point: float = 26.0
    fwhm: float = 0.14                 # arcsec, of the PSF core
    ellipticity: float = 0.0           # (a^2 - b^2) / (a^2 + b^2) of the core, a along x
    wing_fraction: float = 0.1         # share of the flux in a 3x wider Gaussian
    sky: float = 1.0                   # DN/s per pixel
    read_noise: float = 0.03           # DN/s per pixel (white)
    exposure_time: float = 140.0       # s, sets the Poisson noise of sky and stars
    saturation: float = 600.0          # DN/s per pixel
    bad_pixel_fraction: float = 0.001
    one_over_f: float = 0.0            # RMS per pixel of injected 1/f noise (DN/s)
    wcs_shift: tuple = (0.0, 0.0)      # arcsec (east, north) error of the file's WCS
    wcs_roll: float = 0.0              # arcsec of displacement at the corners from a roll error
    start_time: str = "2027-03-20T00:00:00"
    exposure: int = 1
    data_quantum: float = 2.0**-7      # DN/s: written data rounded to this step, far below the noise
                                       # (~0.09 DN/s), so that the file compresses ~4x; 0 keeps every bit
    seed: int = 1                      # noise (and 1/f, bad pixels) of this exposure
    star_seed: int = 1                 # the stars of the field: same seed, same stars
    ref_file: dict = field(default_factory=dict)

    @property
    def sigma_pixels(self) -> float:
        return self.fwhm / self.plate_scale / FWHM_PER_SIGMA


@dataclass
class L2Truth:
    """The true stars of a scene: pixel positions, sky positions, magnitudes and fluxes."""

    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray
    flux: np.ndarray


def true_wcs(scene: L2Scene):
    return tangent_wcs(scene.ra, scene.dec, roll=scene.roll, plate_scale=scene.plate_scale,
                       shape=scene.shape, distortion=scene.distortion)


def file_wcs(scene: L2Scene):
    """The WCS written into the file: the true one moved by ``wcs_shift`` and rolled by ``wcs_roll``."""
    east, north = scene.wcs_shift
    dec = scene.dec + north / 3600.0
    ra = scene.ra + east / 3600.0 / np.cos(np.deg2rad(scene.dec))
    corner = np.hypot(*scene.shape) / 2.0 * scene.plate_scale  # arcsec from the centre
    roll = scene.roll + np.rad2deg(scene.wcs_roll / corner)
    return tangent_wcs(ra, dec, roll=roll, plate_scale=scene.plate_scale, shape=scene.shape,
                       distortion=scene.distortion)


def draw_stars(scene: L2Scene, rng: np.random.Generator) -> L2Truth:
    """Stars uniform over the image (and a 10-pixel margin), magnitudes from a rising power law."""
    ny, nx = scene.shape
    x = rng.uniform(-10, nx + 9, scene.n_stars)
    y = rng.uniform(-10, ny + 9, scene.n_stars)
    lo, hi = scene.mag_range
    # dN/dm ~ 10^(0.3 m): many faint stars, few bright ones, as in star counts.
    u = rng.uniform(size=scene.n_stars)
    a = 0.3 * np.log(10.0)
    mag = np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a
    ra, dec = (np.asarray(v, dtype=np.float64) for v in true_wcs(scene)(x, y))
    flux = 10.0 ** (-0.4 * (mag - scene.zero_point))
    return L2Truth(x, y, ra, dec, mag, flux)


def _pixel_integrated(offsets: np.ndarray, sigma: float) -> np.ndarray:
    """Share of a unit 1-D Gaussian's flux in pixels at ``offsets`` (pixel centre minus star)."""
    s = np.sqrt(2.0) * sigma
    return 0.5 * (erf((offsets + 0.5) / s) - erf((offsets - 0.5) / s))


def render_stars(truth: L2Truth, scene: L2Scene) -> np.ndarray:
    """Noise-free star image (DN/s): pixel-integrated core + wings, separable in x and y."""
    ny, nx = scene.shape
    sigma = scene.sigma_pixels
    e = scene.ellipticity
    sx, sy = sigma * np.sqrt((1 + e) / (1 - e)) ** 0.5, sigma * np.sqrt((1 - e) / (1 + e)) ** 0.5
    radius = int(np.ceil(3 * 4 * max(sx, sy))) + 1 if scene.wing_fraction else int(np.ceil(4 * max(sx, sy))) + 1
    k = np.arange(-radius, radius + 1)
    cx, cy = np.rint(truth.x).astype(np.int64), np.rint(truth.y).astype(np.int64)
    ox = (cx[:, None] + k[None, :]) - truth.x[:, None]
    oy = (cy[:, None] + k[None, :]) - truth.y[:, None]
    core = (1 - scene.wing_fraction) * _pixel_integrated(oy, sy)[:, :, None] * _pixel_integrated(ox, sx)[:, None, :]
    if scene.wing_fraction:
        core += scene.wing_fraction * (_pixel_integrated(oy, 3 * sy)[:, :, None] * _pixel_integrated(ox, 3 * sx)[:, None, :])
    stamps = core * truth.flux[:, None, None]
    rows = cy[:, None, None] + k[None, :, None]
    cols = cx[:, None, None] + k[None, None, :]
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    flat = (rows * nx + cols)[inside]
    image = np.bincount(flat, weights=stamps[inside], minlength=nx * ny)
    return image.reshape(ny, nx).astype(np.float32)


def make_scene(scene: L2Scene) -> tuple[np.ndarray, np.ndarray, L2Truth]:
    """Data (DN/s, float32), DQ (uint32) and the true stars of ``scene``."""
    data, dq, truth, _ = simulate(scene)
    return data, dq, truth


def simulate(scene: L2Scene) -> tuple[np.ndarray, np.ndarray, L2Truth, np.ndarray]:
    """`make_scene` and the expected variance of each pixel (DN/s squared, noiseless)."""
    truth = draw_stars(scene, np.random.default_rng(scene.star_seed))
    rng = np.random.default_rng(scene.seed)
    signal = render_stars(truth, scene) + np.float32(scene.sky)
    variance = np.maximum(signal, 0) / scene.exposure_time + scene.read_noise**2
    noise = rng.standard_normal(signal.shape, dtype=np.float32) * np.sqrt(variance, dtype=np.float32)
    data = signal + noise
    if scene.one_over_f:
        from .one_over_f import readout_1f_pattern

        data += readout_1f_pattern(rng, amplitude=scene.one_over_f, shape=scene.shape)
    dq = np.zeros(scene.shape, dtype=np.uint32)
    saturated = signal >= scene.saturation
    dq[saturated] |= SATURATED | DO_NOT_USE
    data[saturated] = np.float32(scene.saturation)
    n_bad = int(scene.bad_pixel_fraction * data.size)
    if n_bad:
        bad = rng.choice(data.size, n_bad, replace=False)
        dq.ravel()[bad] |= DO_NOT_USE
        data.ravel()[bad] = np.float32(np.nan)
    return data.astype(np.float32), dq, truth, variance


def l2_filename(scene: L2Scene, program: int = 1, visit: int = 1) -> str:
    """An archive-style name: ``r<program><plan><pass><segment><observation><visit>_<group>_<exposure>_<detector>_cal.asdf``."""
    return f"r{program:05d}01001001001{visit:03d}_01101_{scene.exposure:04d}_{scene.detector}_cal.asdf"


def write_l2(path, scene: L2Scene, *, catalog: bool = True, compress: bool = True) -> tuple[Path, L2Truth]:
    """Write ``scene`` as a schema-valid ``ImageModel`` file (and its true catalog beside it).

    Returns
    -------
    (path, truth)
        The catalog, when written, is ``<stem>_catalog.parquet`` with ``ra``,
        ``dec`` (degrees) and ``mag``.
    """
    import roman_datamodels.datamodels as rdm
    from astropy import units as u
    from astropy.time import Time

    path = Path(path)
    data, dq, truth, variance = simulate(scene)
    if scene.data_quantum:
        data = (np.round(data / scene.data_quantum) * scene.data_quantum).astype(np.float32)
    model = rdm.ImageModel.create_fake_data(shape=scene.shape)
    model.data = data
    model.dq = dq
    # The expected (noiseless) errors: smooth, so they compress to almost nothing.
    model.err = np.sqrt(variance).astype(np.float16)
    model.var_poisson = (variance - scene.read_noise**2).astype(np.float16)
    meta = model.meta
    meta.filename = path.name
    meta.instrument.detector = scene.detector
    meta.instrument.optical_element = scene.optical_element
    start = Time(scene.start_time)
    meta.exposure.start_time = start
    meta.exposure.end_time = start + scene.exposure_time * u.s
    meta.exposure.exposure_time = scene.exposure_time
    meta.exposure.frame_time = 3.04
    meta.observation.program = 1
    meta.observation.exposure = scene.exposure
    meta.wcs = file_wcs(scene)
    for name, value in scene.ref_file.items():
        if name == "crds_context":
            meta.ref_file.crds.context = value
        else:
            setattr(meta.ref_file, name, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        model.save(path, all_array_compression="lz4")
    else:
        model.save(path)
    if catalog:
        inside = (truth.x >= 0) & (truth.x < scene.shape[1]) & (truth.y >= 0) & (truth.y < scene.shape[0])
        write_catalog(catalog_path(path), truth.ra[inside], truth.dec[inside], truth.mag[inside])
    return path, truth


def catalog_path(image_path) -> Path:
    """Where `write_l2` writes the true catalog of an image."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name.removesuffix(".asdf") + "_catalog.parquet")


def scene_for(detector: str, exposure: int = 1, **changes) -> L2Scene:
    """The default scene of one detector and exposure (each detector its own stars and noise)."""
    import zlib

    number = int(detector[3:])
    start = datetime(2027, 3, 20) + timedelta(seconds=140.0 * (exposure - 1))
    return replace(L2Scene(detector=detector, exposure=exposure, seed=zlib.crc32(f"{detector}/{exposure}".encode()),
                           star_seed=zlib.crc32(detector.encode()),
                           ra=270.0 + 0.15 * ((number - 1) % 6), dec=-28.0 + 0.15 * ((number - 1) // 6),
                           start_time=start.isoformat()), **changes)


def merge_catalogs(image_paths, out) -> Path:
    """One catalog of every field among ``image_paths`` (their `catalog_path` files, each field once).

    Exposures of one detector share their stars (`scene_for`), so only the
    first catalog of each detector's field is used.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen, tables = set(), []
    for image in image_paths:
        field_name = Path(image).name.rsplit("_", 2)[-2]  # the detector
        if field_name in seen:
            continue
        seen.add(field_name)
        tables.append(pq.read_table(catalog_path(image)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), out)
    return out
