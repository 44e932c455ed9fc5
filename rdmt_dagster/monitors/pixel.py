"""Pixel statistics of L2 slope images (``ImageModel``).

Every statistic uses the *good* pixels only: finite values without any of the
DQ flags in ``parameters.exclude_flags`` (default DO_NOT_USE and SATURATED:
pixels the pipeline marks unusable, and saturated star cores whose slopes
come from few or no reads). Values are in the image unit, ``DN / s`` before
romancal's flux step and ``MJy / sr`` after it (``meta.cal_step.flux``).

What it tells an instrument scientist
-------------------------------------
* ``pixel_min``, ``pixel_max``: the extremes of the good pixels. A very
  negative minimum means pixels the calibration broke but did not flag (a bad
  dark or bias, a snowball residual); a maximum beyond what a ramp can
  measure means a bad slope fit.
* ``pixel_mean``, ``pixel_std``: mean and population standard deviation.
  Both respond to the sources in the field as well as to the sky; next to
  the median they show how much of the light is in sources, and a jump of
  the standard deviation on one amp with a steady median points at that
  channel's noise or at residual artefacts.
* ``pixel_median``, ``pixel_percentile_5``, ``pixel_percentile_95``: the
  core of the distribution, exactly as ``np.percentile(values, q)`` (linear
  interpolation, ``q`` a Python number) over the good pixels of the region.
  In all but the most crowded fields the median is near the sky; the 5th
  percentile is a robust low end (under-subtracted bias or dark shows here),
  the 95th the bright end of the sky plus faint sources.
* ``num_saturated_pix``: pixels with the SATURATED flag (whatever the other
  flags): bright stars, and, when many appear without bright stars, a
  wrong saturation reference file or persistence.
* ``good_pixel_fraction``: good pixels over all pixels of the region. A
  drop means more pixels flagged (a mask update, many saturated stars) or
  non-finite slopes from a failing step; one amp dropping alone points at
  that channel.
* ``background_level``, ``background_noise``: the sky level and the pixel
  noise about it, by iterative clipping (see `clipped_background`). Unlike
  the mean and standard deviation they ignore stars, so they follow the
  zodiacal light and stray light, and the detector noise plus sky photon
  noise. A level that differs between amps means a residual bias offset
  between channels.
* ``plate_scale_center``, ``plate_scale_corner_min``,
  ``plate_scale_corner_max`` (arcsec/pixel, ``detector`` only): the local
  scale of the WCS (``meta.wcs``) at the image centre and the smallest and
  largest of the four corners. WFI's scale is ~0.11 arcsec/pixel and its
  distortion changes it by a few per cent across the field; a value far off
  means a wrong or missing distortion model, a corrupt WCS or a WCS from
  another instrument. An image without a WCS gives NaN, which fails the
  absolute standards: an L2 image without a WCS is itself a problem.

Regions: the detector and the 32 amps. Amp *k* covers frame columns
128(k-1) .. 128k-1; in a 4088x4088 science-area image (frame offset 4) that
is image columns 128(k-1)-4 .. 128k-5, so amps 1 and 32 have 124 columns.
An amp without good pixels gets NaN statistics and 0 counts.

Method
------
One read of the image gives a histogram, per amp, of the top 16 bits of the
float32 values after subtracting a rough sky level (the median of a
subsample of rows): sign, exponent and 7 mantissa bits, so every bin spans at
most 1/128 of its values' magnitude, and bins near the sky are much finer
than the noise. Subtracting a constant keeps the order of the values, so the
histogram tells in which bin, and at which rank inside it, each order
statistic of a region lies; the exact value is then selected
(``np.partition``) among the few pixels of that bin only. Extremes and
percentiles of the amps and the detector come from the same pass without
sorting; the background is measured on the same histograms. Means and
standard deviations are sums over the shifted values (float32 partial sums
over 64 rows, float64 beyond). All metrics of a 4088x4088 image take ~0.1 s
on one core, a fifth of ``np.percentile`` per amp and detector alone; an
image whose values are mostly equal (constant, integer-valued) takes longer
(~0.3-0.4 s), since a bin then holds most pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from ..l2.image import L2Image
from ..l2.monitor import L2Monitor
from ..l2.wcs import plate_scales
from ..science.dq import flag_bits
from ..science.metrics import Metric
from ..science.monitor import MonitoringError
from ..science.scales import AMP_WIDTH, FRAME_SIZE, N_AMPS, ScaleValues, dq_byte

COUNT_UNIT = "pix"
FRACTION_UNIT = ""
PLATE_SCALE_UNIT = "arcsec / pix"

#: percentiles reported besides the extremes: metric name -> q (the names are a contract)
PERCENTILE_METRICS = {"pixel_percentile_5": 5, "pixel_median": 50, "pixel_percentile_95": 95}


N_KEYS = 1 << 16
REGIONS = N_AMPS + 1  # the 32 amps, then the detector
DETECTOR = N_AMPS
#: sums of this many rows are accumulated in float32 before float64
SUM_BLOCK_ROWS = 64
_NORMAL = NormalDist()
#: median absolute deviation of a normal distribution, in sigma
MAD_OF_NORMAL = _NORMAL.inv_cdf(0.75)


# --- geometry and flags -------------------------------------------------------------------------------


def amp_edges(width: int, offset: int) -> np.ndarray:
    """Image-column boundaries of the 32 amps.

    Parameters
    ----------
    width : int
        Number of image columns.
    offset : int
        Frame column of image column 0 (4 for a 4088x4088 science area).

    Returns
    -------
    ndarray of 33 ints
        Amp ``k`` (1..32) covers image columns ``edges[k-1]:edges[k]``
        (empty where the image does not reach the amp).
    """
    return np.clip(np.arange(N_AMPS + 1) * AMP_WIDTH - offset, 0, width)


def _byte_of(bits: int) -> int:
    """Index (0 = least significant) of the byte that holds the lowest of ``bits``."""
    return ((bits & -bits).bit_length() - 1) // 8


def byte_plane(dq: np.ndarray, bits: int) -> np.ndarray | None:
    """`rdmt_dagster.science.scales.dq_byte` as a contiguous array (None when ``bits`` spans bytes)."""
    plane = dq_byte(dq, bits)
    return None if plane is None else np.ascontiguousarray(plane)


def dq_masks(dq: np.ndarray, exclude_bits: int, saturated_bit: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with any of ``exclude_bits``, and the number with ``saturated_bit`` in each column.

    Parameters
    ----------
    dq : ndarray of unsigned int
        Native-order DQ array.
    exclude_bits : int
        Flags that make a pixel bad (0 for none).
    saturated_bit : int
        One flag bit.

    Returns
    -------
    flagged : ndarray of bool, shape of ``dq``
    saturated : ndarray of int64, one count per column
    """
    # The default flags (DO_NOT_USE, SATURATED) share the first byte: one copy of it serves both.
    plane = byte_plane(dq, exclude_bits | saturated_bit) if exclude_bits else None
    if plane is not None:
        flagged = np.bitwise_and(plane, np.uint8(exclude_bits >> (8 * _byte_of(exclude_bits)))) != 0
    else:
        flagged = (np.bitwise_and(dq, np.asarray(exclude_bits, dtype=dq.dtype)) != 0 if exclude_bits
                   else np.zeros(dq.shape, dtype=bool))
        plane = byte_plane(dq, saturated_bit)
    shift = np.uint8((saturated_bit.bit_length() - 1) % 8)
    hits = np.bitwise_and(np.right_shift(plane, shift), np.uint8(1))
    # 0/1 values: a uint16 accumulator holds any column of an L2 image (4088 rows).
    accumulator = np.uint16 if dq.shape[0] < (1 << 16) else np.int64
    return flagged, hits.sum(axis=0, dtype=accumulator).astype(np.int64)


def per_amp(column_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum per-column values over the columns of each amp (0 for an amp without columns)."""
    column_values = np.asarray(column_values)
    out = np.zeros(N_AMPS, dtype=column_values.dtype)
    present = edges[1:] > edges[:-1]
    if present.any():
        # The amps an image covers are consecutive and the last ends at the last column,
        # so reduceat over their first columns sums exactly their columns.
        out[present] = np.add.reduceat(column_values, edges[:-1][present])
    return out


# --- the histogram of shifted values ------------------------------------------------------------------


def rough_centre(data: np.ndarray, flagged: np.ndarray, sample_rows: int) -> float:
    """Median of the good pixels of about ``sample_rows`` evenly spaced rows (0 when there are none).

    Only the speed of the exact statistics and the resolution of the
    background histogram depend on it, not their values.
    """
    step = max(1, data.shape[0] // max(1, int(sample_rows)))
    sample = data[::step]
    values = sample[np.isfinite(sample) & ~flagged[::step]]
    return float(np.median(values)) if values.size else 0.0


def shifted_values(data: np.ndarray, flagged: np.ndarray, centre: float) -> np.ndarray:
    """``data - centre`` as float32, NaN where flagged.

    Subtracting a constant and rounding to float32 never reverses the order
    of two values, so ranks counted on the result hold for ``data``.
    """
    out = np.empty(data.shape, dtype=np.float32)
    np.subtract(data, data.dtype.type(centre), out=out, casting="unsafe")
    np.copyto(out, np.float32(np.nan), where=flagged)
    return out


def high_halves(values: np.ndarray) -> np.ndarray:
    """The top 16 bits (sign, exponent, 7 mantissa bits) of each float32 value, as a uint16 view."""
    if values.dtype != np.float32 or not values.dtype.isnative or not values.flags.c_contiguous:
        raise ValueError("expected a native, C-contiguous float32 array")
    halves = values.view(np.uint16)
    return halves[:, 1::2] if np.little_endian else halves[:, 0::2]


def _amp_keys(keys: np.ndarray, c0: int, c1: int, buffer: np.ndarray) -> np.ndarray:
    """The keys of image columns ``c0:c1``, row by row, as intp in ``buffer`` (bincount and take want intp)."""
    n = keys.shape[0] * (c1 - c0)
    np.copyto(buffer[:n].reshape(keys.shape[0], c1 - c0), keys[:, c0:c1])
    return buffer[:n]


def key_buffer(keys: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """An intp buffer for the keys of the widest amp (reused amp after amp, so it stays in cache)."""
    return np.empty(keys.shape[0] * int(np.diff(edges).max(initial=0)), dtype=np.intp)


def amp_histograms(keys: np.ndarray, edges: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """Counts of each 16-bit key per amp.

    Parameters
    ----------
    keys : ndarray of uint16, shape (rows, columns)
    edges : ndarray
        Amp column boundaries (`amp_edges`).
    buffer : ndarray of intp
        `key_buffer`.

    Returns
    -------
    ndarray of int64, shape (32, 65536)
    """
    hist = np.zeros((N_AMPS, N_KEYS), dtype=np.int64)
    for amp in np.flatnonzero(np.diff(edges)):
        hist[amp] = np.bincount(_amp_keys(keys, int(edges[amp]), int(edges[amp + 1]), buffer), minlength=N_KEYS)
    return hist


@lru_cache(maxsize=1)
def _finite_keys() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 65280 keys of finite float32 values in increasing order of value, and each key's value range.

    Returns
    -------
    keys, lower, upper : ndarrays
        A value ``v`` with key ``keys[i]`` has ``lower[i] <= v <= upper[i]``
        (``upper[i] == lower[i + 1]``); the outermost edges are the largest
        finite float32 values.
    """
    negative = np.arange(0xFF7F, 0x7FFF, -1, dtype=np.int64)  # larger key, more negative value
    positive = np.arange(0, 0x7F80, dtype=np.int64)
    keys = np.concatenate([negative, positive])
    magnitude = keys & 0x7FFF
    big = float(np.finfo(np.float32).max)

    def value(bits):
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)

    low = value(magnitude << 16)
    high = np.minimum(value((magnitude + 1) << 16), big)  # the top key's upper edge would be inf
    negative_key = keys >= 0x8000
    lower = np.where(negative_key, -high, low)
    upper = np.where(negative_key, -low, high)
    for array in (keys, lower, upper):
        array.setflags(write=False)
    return keys, lower, upper


@dataclass
class Bins:
    """The occupied finite bins of the amps and the detector, in increasing order of value.

    Attributes
    ----------
    keys : ndarray, shape (K,)
        16-bit key of each bin.
    lower, upper : ndarray, shape (K,)
        Value range of each bin (shifted values).
    counts : ndarray of int64, shape (33, K)
        Good pixels per bin of each amp (rows 0..31) and of the detector (row 32).
    cumulative : ndarray of int64, shape (33, K + 1)
        Good pixels below each bin; the last column is the region's total.
    """

    keys: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    cumulative: np.ndarray

    @classmethod
    def from_histograms(cls, hist: np.ndarray) -> "Bins":
        keys, lower, upper = _finite_keys()
        total = hist.sum(axis=0)
        occupied = total[keys] > 0
        keys, lower, upper = keys[occupied], lower[occupied], upper[occupied]
        counts = np.empty((REGIONS, keys.size), dtype=np.int64)
        counts[:N_AMPS] = hist[:, keys]
        counts[DETECTOR] = total[keys]
        cumulative = np.zeros((REGIONS, keys.size + 1), dtype=np.int64)
        np.cumsum(counts, axis=1, out=cumulative[:, 1:])
        return cls(keys, lower, upper, counts, cumulative)

    @property
    def n(self) -> np.ndarray:
        """Good pixels per region (33)."""
        return self.cumulative[:, -1]

    def locate(self, ranks: np.ndarray):
        """Bin index and rank inside the bin of order statistics.

        Parameters
        ----------
        ranks : ndarray of int, shape (33, R)
            0-based ranks, each below its region's count.

        Returns
        -------
        bins, within : ndarrays like ``ranks``
        """
        index = np.empty_like(ranks)
        for region in range(REGIONS):
            index[region] = np.searchsorted(self.cumulative[region], ranks[region], side="right") - 1
        index = np.clip(index, 0, self.keys.size - 1)
        return index, ranks - np.take_along_axis(self.cumulative, index, axis=1)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Pixels below ``x`` per region, spreading each bin's count evenly over its range.

        Parameters
        ----------
        x : ndarray, shape (33,) or (33, m)
        """
        x = np.asarray(x, dtype=np.float64)
        index = np.clip(np.searchsorted(self.lower, x, side="right") - 1, 0, self.keys.size - 1)
        lower, upper = self.lower[index], self.upper[index]
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.clip((x - lower) / (upper - lower), 0.0, 1.0)
        rows = np.arange(REGIONS).reshape((REGIONS,) + (1,) * (x.ndim - 1))
        return self.cumulative[rows, index] + fraction * self.counts[rows, index]

    def quantile(self, t: np.ndarray) -> np.ndarray:
        """Inverse of `cdf`: the value below which ``t`` pixels lie, per region (33,)."""
        t = np.asarray(t, dtype=np.float64)
        index = np.empty(REGIONS, dtype=np.int64)
        for region in range(REGIONS):
            index[region] = np.searchsorted(self.cumulative[region], t[region], side="left") - 1
        index = np.clip(index, 0, self.keys.size - 1)
        rows = np.arange(REGIONS)
        counts = self.counts[rows, index]
        fraction = np.clip((t - self.cumulative[rows, index]) / np.maximum(counts, 1), 0.0, 1.0)
        return self.lower[index] + fraction * (self.upper[index] - self.lower[index])


# --- exact order statistics ---------------------------------------------------------------------------


def order_statistics(data: np.ndarray, keys: np.ndarray, edges: np.ndarray, bins: Bins, ranks: np.ndarray,
                     buffer: np.ndarray) -> np.ndarray:
    """Exact order statistics of the good pixels of every amp and of the detector.

    Parameters
    ----------
    data : ndarray, shape (rows, columns)
        The image (values are taken from it).
    keys : ndarray of uint16
        `high_halves` of the shifted image the histograms were made from.
    edges : ndarray
        Amp column boundaries.
    bins : Bins
    ranks : ndarray of int, shape (33, R)
        0-based ranks per region (amps, then the detector); rows of empty
        regions are ignored.
    buffer : ndarray of intp
        `key_buffer`.

    Returns
    -------
    ndarray, shape (33, R), dtype of ``data``
        NaN for empty regions.
    """
    out = np.full(ranks.shape, np.nan, dtype=data.dtype)
    valid = bins.n > 0
    if not valid.any():
        return out
    safe = np.where(valid[:, None], ranks, 0)
    index, within = bins.locate(safe)
    target = bins.keys[index]
    detector_keys = np.unique(target[DETECTOR])
    detector_values: dict[int, list] = {int(k): [] for k in detector_keys}
    wanted = np.zeros(N_KEYS, dtype=bool)
    for amp in range(N_AMPS):
        c0, c1 = int(edges[amp]), int(edges[amp + 1])
        if c1 == c0 or not valid[amp]:
            continue  # an amp without good pixels holds no detector candidate either
        own = np.unique(target[amp])
        union = np.union1d(own, detector_keys)
        wanted[union] = True
        amp_keys = _amp_keys(keys, c0, c1, buffer)
        found = np.flatnonzero(np.take(wanted, amp_keys))
        wanted[union] = False
        value_keys = amp_keys[found]
        row, column = np.divmod(found, c1 - c0)
        values = data[row, column + c0]
        for key in own:
            _select_into(out[amp], values[value_keys == key], target[amp] == key, within[amp])
        for key in detector_keys:
            detector_values[int(key)].append(values[value_keys == key])
    for key, parts in detector_values.items():
        _select_into(out[DETECTOR], np.concatenate(parts), target[DETECTOR] == key, within[DETECTOR])
    return out


def _select_into(out_row: np.ndarray, candidates: np.ndarray, which: np.ndarray, within: np.ndarray) -> None:
    """Fill ``out_row[which]`` with the order statistics ``within[which]`` of ``candidates``."""
    ks = within[which]
    part = np.partition(candidates, np.unique(ks))
    out_row[which] = part[ks]


def percentile_ranks(n: np.ndarray, q: float):
    """Ranks and weight of numpy's linear percentile ``q`` (a number, 0..100) of ``n`` values.

    Returns
    -------
    lower, upper : ndarrays of int64
    gamma : ndarray of float64
    """
    n = np.asarray(n, dtype=np.int64)
    virtual = (n - 1) * (q / 100.0)
    lower = np.floor(virtual).astype(np.int64)
    top = np.maximum(n - 1, 0)
    above = virtual >= top
    lower = np.where(above, top, np.maximum(lower, 0))
    upper = np.where(above, top, np.minimum(lower + 1, top))
    return lower, upper, virtual - np.floor(virtual)


def lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's percentile interpolation between neighbouring order statistics, in their dtype.

    Matches ``np.percentile(values, q)`` for a Python-number ``q``: the weight
    is rounded to the values' dtype, as numpy's weak scalar promotion does.
    """
    diff = b - a
    t = gamma.astype(a.dtype)
    one_minus_t = (1.0 - gamma).astype(a.dtype)
    return np.where(gamma >= 0.5, b - diff * one_minus_t, a + diff * t)


# --- sums ---------------------------------------------------------------------------------------------


def column_sums(values: np.ndarray, block: int = SUM_BLOCK_ROWS) -> np.ndarray:
    """Column sums of a float32 array: float32 over blocks of ``block`` rows, float64 across blocks."""
    rows, columns = values.shape
    full = rows - rows % block
    total = np.zeros(columns, dtype=np.float64)
    if full:
        total += values[:full].reshape(-1, block, columns).sum(axis=1).sum(axis=0, dtype=np.float64)
    if full < rows:
        total += values[full:].sum(axis=0, dtype=np.float64)
    return total


def moment_sums(shifted: np.ndarray, edges: np.ndarray, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sums of the good shifted values and of their squares per region (33 each).

    Parameters
    ----------
    shifted : ndarray of float32
        `shifted_values`; overwritten (non-finite values become 0, then it
        holds the squares).
    edges : ndarray
        Amp column boundaries.
    wide : bool
        Square in float64, for values whose float32 squares would overflow
        (beyond ~1e18).
    """
    np.copyto(shifted, np.float32(0.0), where=~np.isfinite(shifted))
    if wide:
        values = shifted.astype(np.float64)
        first = per_amp(values.sum(axis=0), edges)
        second = per_amp(np.square(values).sum(axis=0), edges)
    else:
        first = per_amp(column_sums(shifted), edges)
        np.multiply(shifted, shifted, out=shifted)
        second = per_amp(column_sums(shifted), edges)
    return np.append(first, first.sum()), np.append(second, second.sum())


# --- background ---------------------------------------------------------------------------------------


def truncated_mad(k: float) -> float:
    """Median absolute deviation, in sigma, of a normal distribution truncated at +/- ``k`` sigma."""
    inside = 2.0 * _NORMAL.cdf(k) - 1.0
    return _NORMAL.inv_cdf(0.5 + inside / 4.0)


def _clipped_mad(bins: Bins, centre, low, high, below, count, iterations: int = 40) -> np.ndarray:
    """Median absolute deviation from ``centre`` of the pixels in [low, high], by bisection on `Bins.cdf`.

    The root lies between the distances from ``centre`` to the set's first
    and third quartiles: a window reaching both quartiles holds at least
    half of the set, one inside both at most half.
    """
    q1 = bins.quantile(below + 0.25 * count)
    q3 = bins.quantile(below + 0.75 * count)
    a, b = np.minimum(centre - q1, q3 - centre), np.maximum(centre - q1, q3 - centre)
    a, b = np.maximum(a, 0.0), np.maximum(b, 0.0)
    half = 0.5 * count
    for _ in range(iterations):
        d = 0.5 * (a + b)
        inside = bins.cdf(np.minimum(centre + d, high)) - bins.cdf(np.maximum(centre - d, low))
        enough = inside >= half
        b = np.where(enough, d, b)
        a = np.where(enough, a, d)
    return 0.5 * (a + b)


def clipped_background(bins: Bins, clip_sigma: float, max_iterations: int, tolerance: float):
    """Sky level and noise per region by iterative clipping of the histograms.

    Starting from the median and ``MAD / 0.6745`` of all good pixels, the
    pixels within ``clip_sigma`` noise widths of the level are kept; the
    level becomes their median and the noise their MAD divided by the MAD
    of a normal distribution truncated at the same ``clip_sigma``
    (`truncated_mad`, 0.6725 for 3), so that pure Gaussian noise gives its
    own sigma. Stops when level and noise move by less than ``tolerance``
    times the noise, or after ``max_iterations``.

    Precision: the histograms are of the values minus the image's rough sky
    level (`rough_centre`), and a bin is at most 1/128 of its distance from
    that level wide; counts are spread evenly over each bin. Where an amp's
    sky lies within a few noise widths of the image's (any calibrated image)
    the bins near its level and clip limits are below 1/40 of the noise, and
    level and noise agree with the exact median and MAD to ~1e-3 of the
    noise, below their statistical errors (``1.25 sigma / sqrt(n)`` and
    ``1.17 sigma / sqrt(n)``: 0.002 sigma for an amp's ~520000 pixels). An
    amp 200 noise widths off the others gets bins of ~1.5 noise widths: its
    level stays within ~0.03 sigma, its noise reads ~15 per cent high.

    Returns
    -------
    level, noise : ndarrays of 33 values (amps, then the detector), shifted
        units (add the shift to get the level); NaN for empty regions.
    """
    n = bins.n.astype(np.float64)
    ok = n > 0
    if not ok.any():
        return np.full(REGIONS, np.nan), np.full(REGIONS, np.nan)
    below = np.zeros(REGIONS)
    low, high = np.full(REGIONS, -np.inf), np.full(REGIONS, np.inf)
    level = bins.quantile(0.5 * n)
    noise = _clipped_mad(bins, level, low, high, below, n) / MAD_OF_NORMAL
    mad_unit = truncated_mad(clip_sigma)
    active = ok & (noise > 0) & np.isfinite(noise)
    for _ in range(int(max_iterations)):
        if not active.any():
            break
        low = np.where(active, level - clip_sigma * noise, low)
        high = np.where(active, level + clip_sigma * noise, high)
        below = bins.cdf(low)
        count = bins.cdf(high) - below
        new_level = bins.quantile(below + 0.5 * count)
        new_noise = _clipped_mad(bins, new_level, low, high, below, count) / mad_unit
        moved = np.maximum(np.abs(new_level - level), np.abs(new_noise - noise))
        level = np.where(active, new_level, level)
        settled = moved <= tolerance * noise
        noise = np.where(active, new_noise, noise)
        active &= ~settled & (noise > 0) & np.isfinite(noise)
    return np.where(ok, level, np.nan), np.where(ok, noise, np.nan)


# --- WCS and units ------------------------------------------------------------------------------------


def corner_plate_scales(wcs, shape) -> tuple[float, float, float]:
    """Plate scale (arcsec/pixel) at the image centre and the smallest and largest at its four corners.

    NaN for all three without a WCS or when the WCS cannot be evaluated
    there (the absolute standards then fail, which is the point).
    """
    if wcs is None:
        return np.nan, np.nan, np.nan
    rows, columns = shape
    points = np.array([[(columns - 1) / 2.0, (rows - 1) / 2.0],
                       [0.0, 0.0], [columns - 1.0, 0.0], [0.0, rows - 1.0], [columns - 1.0, rows - 1.0]])
    try:
        scales = np.asarray(plate_scales(wcs, points), dtype=np.float64)
    except Exception:  # a corrupt or foreign WCS must not stop the pixel statistics
        return np.nan, np.nan, np.nan
    corners = scales[1:]
    if not np.all(np.isfinite(corners)):
        return float(scales[0]), np.nan, np.nan
    return float(scales[0]), float(corners.min()), float(corners.max())


# --- the monitor --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _packaged_parameters() -> dict:
    """The ``parameters`` of the packaged ``pixel.yaml``: the one place their values are written."""
    from ..science.standards import default_blocks

    return dict(default_blocks()["pixel"]["parameters"])


def _parameters(parameters: dict) -> dict:
    p = {**_packaged_parameters(), **(parameters or {})}
    out = dict(p)
    out["exclude_bits"] = 0
    for bit in flag_bits(p["exclude_flags"], "pixel parameters.exclude_flags").values():
        out["exclude_bits"] |= bit
    (out["saturated_bit"],) = flag_bits([p["saturated_flag"]], "pixel parameters.saturated_flag").values()
    for key, least in (("clip_sigma", 0.5), ("clip_max_iterations", 1), ("clip_tolerance", 0.0),
                       ("shift_sample_rows", 1)):
        value = float(p[key])
        if not value >= least:
            raise ValueError(f"pixel parameters.{key} must be >= {least}, got {p[key]!r}")
        out[key] = value
    return out


def _image_arrays(image: L2Image) -> tuple[np.ndarray, np.ndarray, int]:
    """Data (float), DQ (native unsigned integers) and frame offset, or a `MonitoringError`."""
    path = image.path
    data, dq = np.asarray(image.data), np.asarray(image.dq)
    if data.ndim != 2 or dq.shape != data.shape or data.size == 0:
        raise MonitoringError(path, f"'data' has shape {data.shape} and 'dq' {dq.shape}; "
                                    "expected two non-empty 2-D arrays of one shape")
    if dq.dtype.kind not in "ui":
        raise MonitoringError(path, f"'dq' has type {dq.dtype}; expected unsigned integers")
    offset = int(image.frame_offset)
    if data.shape[1] + offset > FRAME_SIZE:
        raise MonitoringError(path, f"'data' has {data.shape[1]} columns; at most {FRAME_SIZE - offset} fit "
                                    "the detector's amps")
    if data.dtype.kind != "f" or data.dtype.itemsize > 8:
        data = data.astype(np.float64)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if not dq.dtype.isnative:
        dq = dq.astype(dq.dtype.newbyteorder("="))
    return data, np.ascontiguousarray(dq), offset


def _values(per_region: np.ndarray) -> ScaleValues:
    per_region = np.asarray(per_region)
    return ScaleValues(detector=per_region[DETECTOR:DETECTOR + 1].copy(), amp=per_region[:N_AMPS].copy())


class PixelMonitor(L2Monitor):
    """DQ-masked pixel statistics, background and plate scale of an L2 image (see the module docstring)."""

    name = "pixel"
    version = "1.0.0"
    scales = ("detector", "amp")

    def metrics(self, image, parameters, previous=None):
        p = _parameters(parameters)
        data, dq, offset = _image_arrays(image)
        rows, columns = data.shape
        edges = amp_edges(columns, offset)
        unit = image.unit

        flagged, saturated_columns = dq_masks(dq, p["exclude_bits"], p["saturated_bit"])
        saturated = per_amp(saturated_columns, edges)
        centre = rough_centre(data, flagged, int(p["shift_sample_rows"]))
        shifted = shifted_values(data, flagged, centre)
        del flagged
        keys = high_halves(shifted)
        buffer = key_buffer(keys, edges)
        bins = Bins.from_histograms(amp_histograms(keys, edges, buffer))
        n = bins.n
        if n[DETECTOR] == 0 and not np.isfinite(data).any():
            raise MonitoringError(image.path, "'data' has no finite pixel (all NaN or inf)")

        # Order statistics: min, max and both neighbours of each percentile.
        lowers, uppers, gammas = zip(*(percentile_ranks(n, q) for q in PERCENTILE_METRICS.values()))
        last = np.maximum(n - 1, 0)
        ranks = np.stack([np.zeros_like(n), last, *lowers, *uppers], axis=1)
        stats = order_statistics(data, keys, edges, bins, ranks, buffer)
        del buffer
        n_q = len(PERCENTILE_METRICS)
        percentiles = {name: lerp(stats[:, 2 + i], stats[:, 2 + n_q + i], gammas[i])
                       for i, name in enumerate(PERCENTILE_METRICS)}

        level, noise = clipped_background(bins, p["clip_sigma"], int(p["clip_max_iterations"]),
                                          p["clip_tolerance"])
        # float32 squares overflow beyond ~1.8e19; such values are garbage but must not give inf.
        with np.errstate(invalid="ignore"):
            spread = np.nanmax(np.abs(stats[:, :2].astype(np.float64) - centre), initial=0.0)
        first, second = moment_sums(shifted, edges, wide=bool(spread > 1.0e18))
        del shifted, keys
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_shift = first / n
            mean = centre + mean_shift
            std = np.sqrt(np.maximum(second / n - mean_shift * mean_shift, 0.0))
            area = np.append(np.diff(edges) * rows, rows * columns).astype(np.float64)
            fraction = n / area
        saturated = np.append(saturated, saturated.sum())
        centre_scale, corner_min, corner_max = corner_plate_scales(image.wcs, data.shape)

        good = "good pixels (finite, none of " + "|".join(str(f).upper() for f in p["exclude_flags"]) + ")"
        out = [
            Metric("pixel_min", unit, _values(stats[:, 0].astype(np.float64)), f"minimum of the {good}"),
            Metric("pixel_max", unit, _values(stats[:, 1].astype(np.float64)), f"maximum of the {good}"),
            Metric("pixel_mean", unit, _values(mean), f"mean of the {good}"),
        ]
        descriptions = {"pixel_percentile_5": "5th percentile", "pixel_median": "median",
                        "pixel_percentile_95": "95th percentile"}
        for name in PERCENTILE_METRICS:
            out.append(Metric(name, unit, _values(percentiles[name].astype(np.float64)),
                              f"{descriptions[name]} of the {good} (numpy linear interpolation)"))
        out += [
            Metric("pixel_std", unit, _values(std), f"population standard deviation of the {good}"),
            Metric("num_saturated_pix", COUNT_UNIT, _values(saturated), "pixels flagged SATURATED"),
            Metric("good_pixel_fraction", FRACTION_UNIT, _values(fraction), f"{good} over all pixels"),
            Metric("background_level", unit, _values(centre + level),
                   f"sky level: median of the good pixels within {p['clip_sigma']:g} noise widths, iterated"),
            Metric("background_noise", unit, _values(noise),
                   "sky noise: MAD of the clipped good pixels over that of a clipped normal distribution"),
            Metric("plate_scale_center", PLATE_SCALE_UNIT, ScaleValues.detector_only(centre_scale),
                   "local plate scale of meta.wcs at the image centre (NaN without a WCS)"),
            Metric("plate_scale_corner_min", PLATE_SCALE_UNIT, ScaleValues.detector_only(corner_min),
                   "smallest local plate scale of meta.wcs at the four image corners (NaN without a WCS)"),
            Metric("plate_scale_corner_max", PLATE_SCALE_UNIT, ScaleValues.detector_only(corner_max),
                   "largest local plate scale of meta.wcs at the four image corners (NaN without a WCS)"),
        ]
        return out
