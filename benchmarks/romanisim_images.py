"""Realistic full-size WFI level-2 images from romanisim, with the true star catalog.

    .venv/bin/python benchmarks/romanisim_images.py [--cache DIR] [--sca 1 7 13]
        [--romanisim-bin PATH]

romanisim is not a dependency of the project: it lives in its own virtual
environment (``--setup`` makes it: ``<cache root>/romanisim-venv`` with
``pip install romanisim``) and is run here as a subprocess, so this script
needs only the standard library, numpy and astropy.

Into the cache folder (``--cache``, default ``$RDMT_CACHE/romanisim`` or
``~/.cache/rdmt/romanisim``) it writes, each only if it is not there yet:

``catalog.ecsv``
    The romanisim input: stars only (``romanisim.catalog.make_stars``, point
    sources with fluxes in maggies), uniform on the sky around the WFI centre
    in the Galactic bulge, kept where they fall on (or within a margin of) any
    of the 18 detectors, so one catalog serves every detector.
``truth.ecsv``, ``truth.parquet``
    The true positions and magnitudes: ``id``, ``ra``, ``dec`` (degrees,
    ICRS) and ``mag_<band>`` (AB), the reference an astrometric or photometric
    monitor is checked against.
``r0000101001001001001_0001_wfiNN_<band>_cal.asdf``
    One full-size (4088 x 4088) level-2 image per requested detector, made by
    ``romanisim-make-image`` with the galsim PSF and without CRDS (nothing is
    downloaded at run time).
``truth_shift_<s>.ecsv``, ``truth_shift_<s>.parquet``
    The truth catalog moved by ``s`` arcsec in declination (0.1 and 0.5 by
    default), for checking that an astrometric monitor reports the shift.
``manifest.json``
    The parameters, romanisim's version, and per image the seconds it took and
    its size.

Each image is written into a private temporary folder and moved in place when
complete, so an interrupted run leaves nothing that looks finished. Simulating one
detector takes several minutes and a few GB of memory; run it with ``nice``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.table import Table

ROMANISIM_REQUIREMENT = "romanisim==0.15.0"

#: Pointing (WFI centre), date and filter of the simulated exposure.
RA, DEC = 270.0, -28.0
DATE = "2027-03-20T00:00:00"
BANDPASS = "F158"

#: Star catalog: stars per detector area (before the bright cut), faint end
#: and slope of the magnitude distribution (log10 N(<m) rises by MAG_INDEX per
#: magnitude; the band magnitude adds a 1-mag Gaussian scatter), brightest
#: magnitude kept, margin around each detector in pixels.
STARS_PER_SCA = 4000
FAINT_MAG = 22.5
MAG_INDEX = 0.25
BRIGHT_MAG = 12.0
MARGIN_PIX = 64
CATALOG_SEED = 2027

#: Declination shifts (arcsec) of the variant truth catalogs.
SHIFTS_ARCSEC = (0.1, 0.5)

#: Roman-style exposure name; romanisim fills ``meta.observation`` from it.
IMAGE_NAME = "r0000101001001001001_0001_wfi{sca:02d}_{band}_cal.asdf"

# Runs in romanisim's interpreter: make the star catalog and keep the stars
# on or near the 18 detectors, whose footprints come from the same WCS that
# romanisim-make-image builds for this pointing.
_CATALOG_CODE = r"""
import json, sys
import numpy as np
import galsim
from astropy import units as u
from astropy.coordinates import SkyCoord
import romanisim
from romanisim import catalog, ris_make_utils as ris
from romanisim.models import parameters, wcs

cfg = json.loads(sys.argv[1])
center = SkyCoord(cfg["ra"] * u.deg, cfg["dec"] * u.deg)
n_pix = parameters.n_pix
margin = cfg["margin"]
gcenter = galsim.CelestialCoord(cfg["ra"] * galsim.degrees, cfg["dec"] * galsim.degrees)
wcses, radius, centers = {}, 0.0, {}
for sca in range(1, 19):
    meta = ris.set_metadata(date=cfg["date"], bandpass=cfg["bandpass"], sca=sca)
    wcs.fill_in_parameters(meta, center, boresight=False, pa_aper=0.0)
    w = wcs.get_wcs(meta, usecrds=False)
    wcses[sca] = w
    for x, y in [(-margin, -margin), (n_pix + margin, -margin),
                 (-margin, n_pix + margin), (n_pix + margin, n_pix + margin)]:
        radius = max(radius, gcenter.distanceTo(w.toWorld(galsim.PositionD(x, y))).deg)
    c = w.toWorld(galsim.PositionD(n_pix / 2, n_pix / 2))
    centers[sca] = [c.ra.deg, c.dec.deg]
radius += 0.01
sca_area = (n_pix * parameters.pixel_scale / 3600.0) ** 2
cap_area = 2 * np.pi * (1 - np.cos(np.radians(radius))) * (180 / np.pi) ** 2
n = int(round(cfg["stars_per_sca"] * cap_area / sca_area))
cat = catalog.make_stars(center, n, radius=radius, index=cfg["index"],
                         faintmag=cfg["faintmag"], bandpasses=[cfg["bandpass"]],
                         seed=cfg["seed"])
keep = np.asarray(cat[cfg["bandpass"]]) <= 10 ** (-0.4 * cfg["brightmag"])
near_any = np.zeros(len(cat), bool)
inside = {}
for sca, w in wcses.items():
    x, y = w.radecToxy(np.asarray(cat["ra"]), np.asarray(cat["dec"]), units="deg")
    near = (x >= -margin) & (x < n_pix + margin) & (y >= -margin) & (y < n_pix + margin)
    near_any |= near
    inside[sca] = int(np.sum(keep & (x >= 0) & (x < n_pix) & (y >= 0) & (y < n_pix)))
keep &= near_any
cat = cat[keep]
cat.meta.update(romanisim_version=romanisim.__version__, ra=cfg["ra"], dec=cfg["dec"],
                date=cfg["date"], bandpass=cfg["bandpass"], cap_radius_deg=radius,
                stars_generated=n, faintmag=cfg["faintmag"], index=cfg["index"],
                brightmag=cfg["brightmag"],
                seed=cfg["seed"], margin_pix=margin)
cat.write(cfg["path"], format="ascii.ecsv", overwrite=True)
print(json.dumps(dict(romanisim=romanisim.__version__, radius=radius, generated=n,
                      kept=int(keep.sum()), inside=inside, centers=centers)))
"""


def cache_root() -> Path:
    """``$RDMT_CACHE`` or ``~/.cache/rdmt``."""
    root = os.environ.get("RDMT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "rdmt"


def default_cache() -> Path:
    """The cache folder: ``$RDMT_CACHE/romanisim`` or ``~/.cache/rdmt/romanisim``."""
    return cache_root() / "romanisim"


def default_romanisim_bin() -> Path:
    return cache_root() / "romanisim-venv" / "bin" / "romanisim-make-image"


def setup_romanisim(romanisim_bin: Path) -> None:
    """Make the romanisim virtual environment that holds ``romanisim_bin`` (nothing when it exists)."""
    if romanisim_bin.exists():
        return
    venv = romanisim_bin.parent.parent
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", ROMANISIM_REQUIREMENT], check=True)


def romanisim_python(romanisim_bin: Path) -> Path:
    """The interpreter of the virtual environment that holds ``romanisim_bin``."""
    return romanisim_bin.parent / "python"


def make_catalog(cache: Path, romanisim_bin: Path, *, ra: float = RA, dec: float = DEC,
                 date: str = DATE, bandpass: str = BANDPASS) -> dict:
    """Write ``catalog.ecsv`` with romanisim's star maker.

    Parameters
    ----------
    cache : Path
        Output folder.
    romanisim_bin : Path
        ``romanisim-make-image`` of the romanisim environment; its Python runs
        the catalog maker.
    ra, dec : float
        WFI centre, degrees.
    date, bandpass : str
        Exposure date (ISOT) and filter, as given to the simulator.

    Returns
    -------
    dict
        romanisim's version, the cap radius (deg), the numbers of stars made
        and kept, the number inside each detector, and each detector's centre.
    """
    cfg = dict(path=str(cache / "catalog.ecsv"), ra=ra, dec=dec, date=date, bandpass=bandpass,
               stars_per_sca=STARS_PER_SCA, faintmag=FAINT_MAG, index=MAG_INDEX,
               brightmag=BRIGHT_MAG, margin=MARGIN_PIX, seed=CATALOG_SEED)
    proc = subprocess.run([str(romanisim_python(romanisim_bin)), "-c", _CATALOG_CODE, json.dumps(cfg)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"catalog maker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def truth_table(catalog: Table, bandpass: str = BANDPASS) -> Table:
    """The true catalog: id, ra, dec (degrees) and AB magnitude in ``bandpass``.

    romanisim's fluxes are in maggies, so the magnitude is ``-2.5 log10(flux)``
    of exactly the flux that was simulated.
    """
    flux = np.asarray(catalog[bandpass], dtype=np.float64)
    truth = Table()
    truth["id"] = np.arange(len(catalog), dtype=np.int64)
    truth["ra"] = np.asarray(catalog["ra"], dtype=np.float64)
    truth["dec"] = np.asarray(catalog["dec"], dtype=np.float64)
    truth[f"mag_{bandpass.lower()}"] = -2.5 * np.log10(flux)
    truth["ra"].unit = truth["dec"].unit = "deg"
    truth[f"mag_{bandpass.lower()}"].unit = "mag"
    truth.meta.update({k: catalog.meta[k] for k in ("ra", "dec", "date", "bandpass", "seed",
                                                    "romanisim_version") if k in catalog.meta})
    return truth


def table_files(stem: Path) -> tuple[Path, Path]:
    """``stem.ecsv`` and ``stem.parquet`` (``stem`` may contain dots)."""
    return stem.parent / f"{stem.name}.ecsv", stem.parent / f"{stem.name}.parquet"


def write_table(table: Table, stem: Path) -> list[Path]:
    """Write ``table`` as ``stem.ecsv`` and ``stem.parquet``; returns the files written."""
    ecsv, parquet = table_files(stem)
    table.write(ecsv, format="ascii.ecsv", overwrite=True)
    written = [ecsv]
    try:
        table.write(parquet, format="parquet", overwrite=True)
        written.append(parquet)
    except ImportError as exc:  # pyarrow missing
        print(f"  no Parquet for {stem.name}: {exc}")
    return written


def shifted(truth: Table, arcsec: float) -> Table:
    """A copy of ``truth`` moved by ``arcsec`` in declination."""
    out = truth.copy()
    out["dec"] = out["dec"] + arcsec / 3600.0
    out.meta["dec_shift_arcsec"] = arcsec
    return out


def image_path(cache: Path, sca: int, bandpass: str = BANDPASS) -> Path:
    """Where the level-2 image of detector ``sca`` goes."""
    return cache / IMAGE_NAME.format(sca=sca, band=bandpass.lower())


def make_image(cache: Path, sca: int, romanisim_bin: Path, *, ra: float = RA, dec: float = DEC,
               date: str = DATE, bandpass: str = BANDPASS, seed: int | None = None) -> Path:
    """Simulate the level-2 image of one detector from ``catalog.ecsv``.

    Parameters
    ----------
    cache : Path
        Folder holding ``catalog.ecsv``; the image is written there.
    sca : int
        Detector, 1 to 18.
    romanisim_bin : Path
        ``romanisim-make-image``.
    ra, dec : float
        WFI centre, degrees (``--radec`` without ``--boresight``).
    date, bandpass : str
        Exposure start (ISOT) and filter.
    seed : int, optional
        Noise seed; default ``1000 + sca``.

    Returns
    -------
    Path
        The image.
    """
    final = image_path(cache, sca, bandpass)
    # A private scratch folder (the file name must keep its Roman prefix, which
    # romanisim parses into meta.observation) so concurrent runs do not collide.
    scratch = Path(tempfile.mkdtemp(prefix=f".partial-wfi{sca:02d}-", dir=cache))
    partial = scratch / final.name
    cmd = [str(romanisim_bin), str(partial), "--catalog", str(cache / "catalog.ecsv"),
           "--radec", repr(ra), repr(dec), "--date", date, "--bandpass", bandpass,
           "--sca", str(sca), "--level", "2", "--psftype", "galsim",
           "--rng_seed", str(1000 + sca if seed is None else seed)]
    log = cache / f"romanisim_wfi{sca:02d}.log"
    try:
        with open(log, "w") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0 or not partial.exists():
            raise RuntimeError(f"romanisim-make-image failed for SCA {sca} (exit {proc.returncode}); see {log}")
        os.replace(partial, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def load_manifest(cache: Path) -> dict:
    path = cache / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_manifest(cache: Path, manifest: dict) -> None:
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="output folder (default %(default)s)")
    parser.add_argument("--sca", type=int, nargs="+", default=[1], help="detectors to simulate (default 1)")
    parser.add_argument("--romanisim-bin", type=Path, default=default_romanisim_bin(),
                        help="romanisim-make-image of the romanisim environment (default %(default)s)")
    parser.add_argument("--setup", action="store_true",
                        help=f"make the romanisim environment first when it is missing ({ROMANISIM_REQUIREMENT})")
    args = parser.parse_args(argv)
    if args.setup:
        setup_romanisim(args.romanisim_bin)
    if any(not 1 <= s <= 18 for s in args.sca):
        parser.error("--sca takes detectors 1 to 18")
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(cache)
    did = []

    truth_stem = cache / "truth"
    if not (cache / "catalog.ecsv").exists():
        if not args.romanisim_bin.exists():
            parser.error(f"{args.romanisim_bin} not found (make the romanisim environment first)")
        t0 = time.perf_counter()
        info = make_catalog(cache, args.romanisim_bin)
        seconds = time.perf_counter() - t0
        inside = " ".join(f"{s}:{n}" for s, n in sorted(info["inside"].items(), key=lambda kv: int(kv[0])))
        print(f"catalog: {info['kept']} stars kept of {info['generated']} made within "
              f"{info['radius']:.3f} deg ({seconds:.1f} s); per detector {inside}")
        manifest.update(
            romanisim=info["romanisim"], pointing=dict(ra=RA, dec=DEC, date=DATE, bandpass=BANDPASS),
            catalog=dict(stars_per_sca=STARS_PER_SCA, faint_mag=FAINT_MAG, mag_index=MAG_INDEX,
                         bright_mag=BRIGHT_MAG, margin_pix=MARGIN_PIX, seed=CATALOG_SEED,
                         cap_radius_deg=info["radius"], generated=info["generated"], kept=info["kept"],
                         inside_per_sca=info["inside"], sca_centers=info["centers"]))
        save_manifest(cache, manifest)
        for stale in cache.glob("truth*"):
            stale.unlink()
        did.append("catalog")
    if not all(p.exists() for p in table_files(truth_stem)):
        truth = truth_table(Table.read(cache / "catalog.ecsv", format="ascii.ecsv"))
        write_table(truth, truth_stem)
        print(f"truth: {len(truth)} stars -> {truth_stem}.ecsv, .parquet")
        did.append("truth")

    for sca in args.sca:
        path = image_path(cache, sca)
        if path.exists():
            continue
        if not args.romanisim_bin.exists():
            parser.error(f"{args.romanisim_bin} not found (make the romanisim environment first)")
        print(f"SCA {sca}: simulating -> {path} ...", flush=True)
        t0 = time.perf_counter()
        make_image(cache, sca, args.romanisim_bin)
        seconds = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"SCA {sca}: {seconds:.0f} s, {size / 2**20:.0f} MiB", flush=True)
        manifest = load_manifest(cache)  # another run may have added images meanwhile
        manifest.setdefault("images", {})[path.name] = dict(
            sca=sca, seconds=round(seconds, 1), bytes=size,
            made=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        save_manifest(cache, manifest)
        did.append(f"SCA {sca}")

    if any(image_path(cache, s).exists() for s in range(1, 19)):
        truth = None
        for arcsec in SHIFTS_ARCSEC:
            stem = cache / f"truth_shift_{arcsec:g}"
            if all(p.exists() for p in table_files(stem)):
                continue
            if truth is None:
                truth = Table.read(table_files(truth_stem)[0], format="ascii.ecsv")
            write_table(shifted(truth, arcsec), stem)
            print(f"shifted truth: +{arcsec:g} arcsec in Dec -> {stem}.ecsv, .parquet")
            did.append(f"shift {arcsec:g}")

    if not did:
        print(f"nothing to do: catalog, truth and SCA {' '.join(map(str, args.sca))} already in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
