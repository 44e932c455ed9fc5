"""Benchmarks of the L2 monitors (imported by ``benchmarks/run.py``).

* ``l2``: every L2 monitor on a synthetic 4088x4088 image on one core (the
  file read once, outside the timing), the read itself in a warm process,
  ``rdmt check`` on one image with its catalog (wall time including start-up,
  and its peak memory), for a bulge-like and a crowded field.
* ``noise_1f``: the 1/f metric on synthetic images with 0x, 25x and 50x a base
  1/f pattern injected in readout order, at three sky levels, and on a crowded
  field: the seed's test design.
* ``romanisim``: the astrometry and PSF monitors on romanisim images made by
  ``benchmarks/romanisim_images.py`` against their true catalogs (and the
  catalogs shifted by 0.1 and 0.5 arcsec), when those images are cached.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "_data"
L2_ORDER = ("astrometry", "psf", "noise_1f", "pixel")

SCENES = {
    "bulge-like (4,000 stars, 16-24 mag)": dict(n_stars=4000),
    "crowded (40,000 stars, 14-25 mag)": dict(n_stars=40000, mag_range=(14.0, 25.0)),
}


def _scene_file(label: str, changes: dict) -> Path:
    from rdmt_dagster.synthetic.l2 import L2Scene, write_l2

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"bench_l2_{changes['n_stars']}_WFI01_cal.asdf"
    if not path.exists():
        write_l2(path, L2Scene(**changes))
    return path


def _median(values):
    return statistics.median(values)


def bench_l2(repeat: int) -> list[str]:
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.l2.catalog import load_catalog
    from rdmt_dagster.l2.image import image_from_model
    from rdmt_dagster.science.monitor import arm_monitors
    from rdmt_dagster.science.standards import Standards
    from rdmt_dagster.synthetic.l2 import catalog_path

    standards = Standards()
    monitors = arm_monitors("l2")
    order = [m for m in L2_ORDER if m in monitors] + sorted(set(monitors) - set(L2_ORDER))
    header = "| field | " + " | ".join(f"{m} (s)" for m in order) + " | all monitors (s) | read (s) | `rdmt check` wall (s) | peak RSS (MB) |"
    lines = [header, "|" + "---|" * (len(order) + 5)]
    for label, changes in SCENES.items():
        path = _scene_file(label, changes)
        catalog = load_catalog(catalog_path(path))
        with rdm.open(path) as model:  # first open in the process: schemas load here, outside the timing
            image = image_from_model(model, path, catalog)
        reads = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with rdm.open(path) as model:
                image = image_from_model(model, path, catalog)
            reads.append(time.perf_counter() - t0)
        per_monitor = {m: [] for m in order}
        totals = []
        for _ in range(repeat):
            image._shared.clear()
            t_all = time.perf_counter()
            for name in order:
                t0 = time.perf_counter()
                monitors[name].metrics(image, standards.for_monitor(name).parameters)
                per_monitor[name].append(time.perf_counter() - t0)
            totals.append(time.perf_counter() - t_all)
        walls, rss = [], 0
        for _ in range(3):
            t0 = time.perf_counter()
            child = subprocess.Popen([str(ROOT / ".venv" / "bin" / "rdmt"), "check", "--json", "--catalog",
                                      str(catalog_path(path)), str(path)], stdout=subprocess.DEVNULL)
            _, _, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest child so far
            walls.append(time.perf_counter() - t0)
            rss = max(rss, usage.ru_maxrss / 1024)
        cells = " | ".join(f"{_median(per_monitor[m]):.3f}" for m in order)
        lines.append(f"| {label} | {cells} | {_median(totals):.3f} | {_median(reads):.3f} | {_median(walls):.2f} | {rss:.0f} |")
    lines += ["", f"Median of {repeat} (monitors, read) and of 3 (`rdmt check`). The psf monitor reuses the stars "
                  "the astrometry monitor measured (same parameters), so its time is the statistics alone. "
                  "Peak RSS is the largest of the `rdmt check` processes."]
    return lines


def bench_noise_1f() -> list[str]:
    """The 1/f excess and its verdicts against injected 1/f noise, sky level and crowding."""
    from dataclasses import replace

    from rdmt_dagster.l2.image import L2Image
    from rdmt_dagster.science.metrics import L2FileInfo, MetricSet
    from rdmt_dagster.science.monitor import evaluate, registry
    from rdmt_dagster.science.standards import Standards
    from rdmt_dagster.synthetic.l2 import L2Scene, make_scene

    standards = Standards().for_monitor("noise_1f")
    monitor = registry()["noise_1f"]
    base = L2Scene()
    # 1x: a 1/f pattern whose RMS is 2 per cent of the white noise at the nominal sky.
    white = float(np.sqrt(base.sky / base.exposure_time + base.read_noise**2))
    lines = ["| field | sky (DN/s) | injected | `noise_1f_excess` | `noise_1f_common_excess` | verdict (soc) |",
             "|---|---|---|---|---|---|"]
    cases = [("bulge-like, 4,000 stars", sky, level, {}) for sky in (0.25, 1.0, 4.0) for level in (0, 25, 50)]
    cases += [("crowded, 40,000 stars", 1.0, 0, dict(n_stars=40000, mag_range=(14.0, 25.0)))]
    for label, sky, level, changes in cases:
        scene = replace(base, sky=sky, one_over_f=level * 0.02 * white, **changes)
        data, dq, _ = make_scene(scene)
        metrics = monitor.metrics(L2Image(data, dq, path="synthetic_cal.asdf"), standards.parameters)
        info = L2FileInfo("synthetic_cal.asdf", "", "noise_1f", "WFI01", "F158")
        failed = evaluate(MetricSet(info, monitor.version, metrics), standards).failures
        soc = [e for e in failed if e.evaluator == "soc"]
        values = {m.name: float(m.values.detector[0]) for m in metrics}
        lines.append(f"| {label} | {sky:g} | {level}x | {values['noise_1f_excess']:.2f} | "
                     f"{values['noise_1f_common_excess']:.2f} | {'FAIL' if soc else 'pass'} |")
    return lines + ["", f"1x is a 1/f pattern of RMS 0.02 x the white noise at sky 1 DN/s ({0.02 * white:.4f} DN/s); "
                        "the soc limits are 1.5 (excess) and 3 (common excess)."]


def _cache() -> Path:
    base = os.environ.get("RDMT_CACHE") or str(Path.home() / ".cache" / "rdmt")
    return Path(base) / "romanisim"


def _moved_catalog(catalog, wcs, shape, shift_arcsec=1.5, roll_arcsec_at_corner=1.0):
    """The catalog as a WCS off by ``shift`` (east) and a roll moving the corners by ``roll`` would see it."""
    from rdmt_dagster.l2.catalog import StarCatalog
    from rdmt_dagster.l2.wcs import gnomonic, sky

    ny, nx = shape
    ra0, dec0 = (float(v[0]) for v in sky(wcs, np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0])))
    xi, eta = (np.deg2rad(v) for v in gnomonic(catalog.ra, catalog.dec, ra0, dec0))
    corner = np.deg2rad(np.hypot(nx, ny) / 2.0 * 0.11 / 3600.0)
    theta = np.deg2rad(roll_arcsec_at_corner / 3600.0) / corner
    xi, eta = xi * np.cos(theta) - eta * np.sin(theta), xi * np.sin(theta) + eta * np.cos(theta)
    xi = xi + np.deg2rad(shift_arcsec / 3600.0)
    # Inverse gnomonic projection about (ra0, dec0).
    a0, d0 = np.deg2rad(ra0), np.deg2rad(dec0)
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, eta * np.sin(c) * np.cos(d0) / rho, 0.0))
        ra = a0 + np.arctan2(xi * np.sin(c), rho * np.cos(d0) * np.cos(c) - eta * np.sin(d0) * np.sin(c))
    return StarCatalog(np.rad2deg(ra) % 360.0, np.rad2deg(dec), catalog.mag, source="moved")


def bench_romanisim() -> list[str]:
    import roman_datamodels.datamodels as rdm

    from rdmt_dagster.l2.catalog import load_catalog
    from rdmt_dagster.l2.image import image_from_model
    from rdmt_dagster.science.monitor import registry
    from rdmt_dagster.science.standards import Standards

    cache = _cache()
    images = sorted(cache.glob("*.asdf"))
    if not images:
        return [f"No romanisim images in {cache}: run `.venv/bin/python benchmarks/romanisim_images.py` first."]
    standards = Standards()
    lines = ["| image | catalog | matched stars | in field | RMS offset (arcsec) | median RA (arcsec) | median Dec (arcsec) | PSF FWHM (arcsec) | astrometry + psf (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in images:
        for name in ("truth", "truth (PSF origin: centroid)", "truth_shift_0.1", "truth_shift_0.5",
                     "truth moved 1.5 arcsec + 1 arcsec roll"):
            catalog_file = path.parent / f"{name.split()[0]}.parquet"
            if not catalog_file.exists():
                continue
            catalog = load_catalog(catalog_file)
            with rdm.open(path) as model:
                image = image_from_model(model, path, catalog)
            if "moved" in name:
                image.catalog = _moved_catalog(catalog, image.wcs, image.data.shape)
            params = {m: standards.for_monitor(m).parameters for m in ("astrometry", "psf")}
            if "centroid" in name:
                params = {m: {**p, "stars": {**p["stars"], "psf_origin": "centroid"}} for m, p in params.items()}
            t0 = time.perf_counter()
            try:
                a = {m.name: float(m.values.detector[0]) for m in registry()["astrometry"].metrics(image, params["astrometry"])}
                p = {m.name: float(m.values.detector[0]) for m in registry()["psf"].metrics(image, params["psf"])}
            except Exception as exc:  # report, do not stop the benchmark
                lines.append(f"| {path.name} | {name} | error: {exc} |||||||")
                continue
            elapsed = time.perf_counter() - t0
            n_field = a["num_matched_stars"] / a["matched_fraction"] if a["matched_fraction"] else float("nan")
            lines.append(f"| {path.name} | {name} | {a['num_matched_stars']:.0f} | {n_field:.0f} | {a['astrometric_offset_rms']:.4f} | "
                         f"{a['astrometric_offset_median_ra']:+.4f} | {a['astrometric_offset_median_dec']:+.4f} | "
                         f"{p['psf_fwhm_median']:.3f} | {elapsed:.2f} |")
    return lines
