"""The astrometric reference catalog: positions (and optionally magnitudes, proper motions).

ECSV (astropy) or Parquet (pyarrow), with columns ``ra`` and ``dec`` in
degrees; optionally a magnitude (``mag`` or the first column whose name
starts with ``mag``), proper motions ``pmra`` (mas/yr, including cos Dec) and
``pmdec`` (mas/yr) with their ``epoch`` (Julian year, as a column or in the
table metadata). Loaded catalogs are kept per process: a long-lived worker
reads one once (Parquet ~30x faster than ECSV for 150k rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

MAS_PER_DEG = 3.6e6
JULIAN_YEAR_DAYS = 365.25


class CatalogError(ValueError):
    """A catalog that cannot be used (the message names the file and the problem)."""


@dataclass(frozen=True)
class StarCatalog:
    """Reference stars.

    Attributes
    ----------
    ra, dec : ndarray
        Degrees (ICRS) at ``epoch``.
    mag : ndarray or None
        Magnitudes (any band; only their order is used).
    pmra, pmdec : ndarray or None
        Proper motions, mas/yr (``pmra`` includes cos Dec).
    epoch : float or None
        Julian year of the positions (needed with proper motions).
    source : str
        File name, for messages.
    """

    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray | None = None
    pmra: np.ndarray | None = None
    pmdec: np.ndarray | None = None
    epoch: float | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.ra.size)

    def positions_at(self, when: datetime | None) -> tuple[np.ndarray, np.ndarray]:
        """(RA, Dec) in degrees, moved by the proper motions to ``when`` (naive UTC)."""
        if self.pmra is None or when is None:
            return self.ra, self.dec
        years = _julian_year(when) - float(self.epoch)
        dec = self.dec + np.nan_to_num(self.pmdec) * years / MAS_PER_DEG
        ra = self.ra + np.nan_to_num(self.pmra) * years / MAS_PER_DEG / np.cos(np.deg2rad(self.dec))
        return ra, dec


def _julian_year(when: datetime) -> float:
    j2000 = datetime(2000, 1, 1, 12, 0, 0)
    return 2000.0 + (when - j2000).total_seconds() / 86400.0 / JULIAN_YEAR_DAYS


def _columns(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if not k.startswith(b"pandas")}
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}, meta
    if suffix in (".ecsv", ".csv", ".fits", ".fit"):
        from astropy.table import Table

        table = Table.read(path)
        return {name: np.asarray(table[name]) for name in table.colnames}, dict(table.meta)
    raise CatalogError(f"{path.name}: unknown catalog format {suffix!r} (expected .ecsv or .parquet)")


def _find(columns: dict, *names) -> np.ndarray | None:
    lower = {k.lower(): k for k in columns}
    for name in names:
        if name in lower:
            return np.asarray(columns[lower[name]], dtype=np.float64)
    return None


def read_catalog(path) -> StarCatalog:
    """Read a catalog file.

    Raises
    ------
    CatalogError
        Unreadable file, no ``ra`` / ``dec`` columns, no finite position, or
        proper motions without an epoch.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path.name}: no such catalog file")
    try:
        columns, meta = _columns(path)
    except CatalogError:
        raise
    except Exception as exc:  # astropy / pyarrow raise many kinds for a corrupt file
        raise CatalogError(f"{path.name}: cannot be read as a catalog ({type(exc).__name__}: {exc})") from exc
    ra, dec = _find(columns, "ra", "ra_deg", "raj2000"), _find(columns, "dec", "dec_deg", "dej2000")
    if ra is None or dec is None:
        raise CatalogError(f"{path.name}: needs columns 'ra' and 'dec' (degrees); has {sorted(columns)[:12]}")
    mag = _find(columns, "mag")
    if mag is None:
        names = [k for k in columns if k.lower().startswith("mag")]
        mag = np.asarray(columns[names[0]], dtype=np.float64) if names else None
    pmra, pmdec = _find(columns, "pmra", "pm_ra"), _find(columns, "pmdec", "pm_dec")
    epoch = None
    if pmra is not None and pmdec is not None:
        epochs = _find(columns, "epoch", "ref_epoch")
        if epochs is not None and np.isfinite(epochs).any():
            epoch = float(np.nanmedian(epochs))
        elif any(k.lower() in ("epoch", "ref_epoch") for k in meta):
            key = next(k for k in meta if k.lower() in ("epoch", "ref_epoch"))
            try:
                epoch = float(str(meta[key]).lstrip("JjBb"))
            except ValueError:
                raise CatalogError(f"{path.name}: epoch {meta[key]!r} is not a Julian year") from None
        else:
            raise CatalogError(f"{path.name}: has proper motions but no epoch (column or metadata 'epoch')")
    else:
        pmra = pmdec = None
    good = np.isfinite(ra) & np.isfinite(dec)
    if not good.any():
        raise CatalogError(f"{path.name}: no star with a finite position")

    def keep(a):
        return None if a is None else a[good]

    return StarCatalog(ra[good], dec[good], keep(mag), keep(pmra), keep(pmdec), epoch, path.name)


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, size: int) -> StarCatalog:
    return read_catalog(path)


def load_catalog(path) -> StarCatalog:
    """`read_catalog`, cached per process while the file is unchanged."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        raise CatalogError(f"{path.name}: no such catalog file") from None
    return _cached(str(path), st.st_mtime_ns, st.st_size)


def write_catalog(path, ra, dec, mag=None, **columns) -> Path:
    """Write a catalog as ECSV or Parquet (by the suffix of ``path``)."""
    from astropy.table import Table

    path = Path(path)
    table = Table({"ra": np.asarray(ra, float), "dec": np.asarray(dec, float)})
    if mag is not None:
        table["mag"] = np.asarray(mag, float)
    for name, values in columns.items():
        table[name] = np.asarray(values)
    if path.suffix.lower() in (".parquet", ".pq"):
        table.write(path, format="parquet", overwrite=True)
    else:
        table.write(path, format="ascii.ecsv", overwrite=True)
    return path
