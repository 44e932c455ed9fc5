"""Spatial scales of the WFI detector: detector, amplifier and super-pixel.

Every RDMT-local metric is reported at three scales (Roman-STScI-000704, §4.2):

* ``detector``: one value for the whole science area (region 0);
* ``amp``: the 32 science channels, each 128 columns wide, numbered 1..32
  from column 0 of the 4096x4096 frame;
* ``superpixel``: 32x32 blocks of 128x128 pixels, indexed
  ``(y // 128) * 32 + x // 128`` (0..1023).

That is 1 + 32 + 1024 = 1057 values per metric.

Pixel rule
----------
Only *science pixels* contribute: the 4-pixel reference-pixel border of the
4096x4096 frame is excluded by geometry, and so are non-finite values (NaN,
+/-inf). A 4088x4088 science-area array is embedded into the 4096 frame first.
A region with no valid pixel gets NaN for statistics and 0 for counts.
Percentiles use numpy's default ("linear") definition, so they equal
``np.nanpercentile`` over the same pixels.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np

FRAME_SIZE = 4096
BORDER = 4
SCIENCE_SIZE = FRAME_SIZE - 2 * BORDER
AMP_WIDTH = 128
N_AMPS = FRAME_SIZE // AMP_WIDTH
SUPERPIXEL_SIZE = 128
N_SP_SIDE = FRAME_SIZE // SUPERPIXEL_SIZE
N_SUPERPIXELS = N_SP_SIDE * N_SP_SIDE


#: Region numbers of each spatial scale, in report order. A scale is data:
#: `register_scale` adds one (a monitor declares the scales it reports).
SCALE_REGIONS: dict[str, np.ndarray] = {
    "detector": np.zeros(1, dtype=np.int64),
    "amp": np.arange(1, N_AMPS + 1, dtype=np.int64),
    "superpixel": np.arange(N_SUPERPIXELS, dtype=np.int64),
}
SCALES = tuple(SCALE_REGIONS)


def register_scale(name: str, regions) -> None:
    """Declare a spatial scale and its region numbers."""
    SCALE_REGIONS[name] = np.asarray(regions, dtype=np.int64)


def region_ids(scale: str) -> np.ndarray:
    """Return the region numbers used at ``scale`` (0; 1..32; 0..1023; ...)."""
    try:
        return SCALE_REGIONS[scale]
    except KeyError:
        raise ValueError(f"unknown scale {scale!r}; expected one of {tuple(SCALE_REGIONS)}") from None


class ScaleValues:
    """One metric's values per spatial scale: ``{scale: array of one value per region}``.

    Constructed as ``ScaleValues(detector=..., amp=..., superpixel=...)`` (or
    any registered scale as a keyword); a scale left out (or None) has no
    value, e.g. per-channel coefficients have no super-pixel value and L2
    monitors report the detector and the amps only. ``values.amp`` and
    ``values["amp"]`` are the same array (None when absent).
    """

    __slots__ = ("_values",)

    def __init__(self, detector=None, amp=None, superpixel=None, **scales):
        given = {"detector": detector, "amp": amp, "superpixel": superpixel, **scales}
        unknown = set(given) - set(SCALE_REGIONS)
        if unknown:
            raise ValueError(f"unknown scale(s) {sorted(unknown)}; expected some of {tuple(SCALE_REGIONS)}")
        object.__setattr__(self, "_values", {k: v for k, v in given.items() if v is not None})

    def __getitem__(self, scale: str) -> np.ndarray | None:
        return self._values.get(scale)

    def __getattr__(self, scale: str):
        if scale.startswith("_") or scale not in SCALE_REGIONS:
            raise AttributeError(scale)
        return self._values.get(scale)

    def __setattr__(self, name, value):
        raise AttributeError("ScaleValues is immutable")

    def __reduce__(self):  # worker processes receive metrics pickled
        return (_scale_values, (dict(self._values),))

    def __repr__(self) -> str:
        return "ScaleValues(" + ", ".join(f"{k}=<{np.size(v)} values>" for k, v in self.items()) + ")"

    @property
    def scales(self) -> tuple[str, ...]:
        """The scales at which this metric has values, in report order."""
        return tuple(s for s in SCALE_REGIONS if s in self._values)

    def items(self):
        return ((s, self._values[s]) for s in self.scales)

    @classmethod
    def from_superpixel_sums(cls, sums: np.ndarray) -> "ScaleValues":
        """Aggregate additive per-super-pixel quantities (counts, sums) upwards."""
        grid = np.asarray(sums).reshape(N_SP_SIDE, N_SP_SIDE)
        return cls(
            detector=np.array([grid.sum()]),
            amp=grid.sum(axis=0),
            superpixel=grid.ravel().copy(),
        )

    def map(self, func) -> "ScaleValues":
        return ScaleValues(**{s: func(v) for s, v in self.items()})


def _scale_values(values: dict) -> ScaleValues:
    return ScaleValues(**values)


def detector_frame(array: np.ndarray, fill=np.nan) -> np.ndarray:
    """Return ``array`` in the 4096x4096 frame.

    A 4088x4088 science-area array is embedded with ``fill`` in the
    reference-pixel border; a 4096x4096 array is returned unchanged.
    """
    array = np.asarray(array)
    if array.shape == (FRAME_SIZE, FRAME_SIZE):
        return array
    if array.shape == (SCIENCE_SIZE, SCIENCE_SIZE):
        # Keep the array's own type (float32 stays float32, uint32 DQ stays uint32)
        # unless the fill cannot be represented in it (NaN in an integer array).
        dtype = array.dtype if np.can_cast(np.min_scalar_type(fill), array.dtype) or array.dtype.kind == "f" else np.float64
        frame = np.full((FRAME_SIZE, FRAME_SIZE), fill, dtype=dtype)
        frame[BORDER:-BORDER, BORDER:-BORDER] = array
        return frame
    raise ValueError(
        f"array shape {array.shape} is neither the {FRAME_SIZE}x{FRAME_SIZE} detector frame "
        f"nor the {SCIENCE_SIZE}x{SCIENCE_SIZE} science area"
    )


def _blocks(frame: np.ndarray) -> np.ndarray:
    """View ``frame`` as (amp column, block row, 128, 128)."""
    return frame.reshape(N_SP_SIDE, SUPERPIXEL_SIZE, N_SP_SIDE, SUPERPIXEL_SIZE).transpose(2, 0, 1, 3)


def _amp_major_to_superpixel(values: np.ndarray) -> np.ndarray:
    """Reorder per-block values from (amp column, block row) to super-pixel index order."""
    return np.asarray(values).reshape(N_SP_SIDE, N_SP_SIDE, *np.shape(values)[1:]).swapaxes(0, 1).reshape(
        N_SUPERPIXELS, *np.shape(values)[1:]
    )


def science_mask_border(mask: np.ndarray) -> np.ndarray:
    """Clear the reference-pixel border of a boolean frame in place and return it."""
    mask[:BORDER, :] = False
    mask[-BORDER:, :] = False
    mask[:, :BORDER] = False
    mask[:, -BORDER:] = False
    return mask


def count_true(mask: np.ndarray) -> ScaleValues:
    """Count true science pixels of a boolean 4096x4096 (or 4088x4088) mask per region."""
    frame = detector_frame(np.asarray(mask, dtype=bool), fill=False)
    if frame is mask:
        frame = frame.copy()
    science_mask_border(frame)
    per_block = frame.view(np.uint8).reshape(N_SP_SIDE, SUPERPIXEL_SIZE, N_SP_SIDE, SUPERPIXEL_SIZE).sum(
        axis=(1, 3), dtype=np.int64
    )
    return ScaleValues.from_superpixel_sums(per_block.ravel())


@lru_cache(maxsize=1)
def science_pixel_counts() -> ScaleValues:
    """Number of science pixels in each region, fixed by the geometry (computed once).

    The arrays are shared between callers: do not modify them.
    """
    return count_true(np.ones((FRAME_SIZE, FRAME_SIZE), dtype=bool))


def _flag_byte(dq: np.ndarray, bit_number: int) -> np.ndarray:
    """The byte of each DQ word that holds ``bit_number``, as a strided uint8 view."""
    itemsize = dq.dtype.itemsize
    byte = bit_number // 8
    big_endian = dq.dtype.byteorder == ">" or (dq.dtype.byteorder == "=" and np.little_endian is False)
    if big_endian:
        byte = itemsize - 1 - byte
    return np.ascontiguousarray(dq).view(np.uint8)[:, byte::itemsize]


def count_flags(dq: np.ndarray, flags: dict[str, int]) -> dict[str, ScaleValues]:
    """Count science pixels with each DQ flag set, per region.

    Reads only the byte of each DQ word that holds the flag: about 4x
    faster than ``(dq & bit) != 0`` on a 4096x4096 uint32 array.

    Parameters
    ----------
    dq : ndarray of unsigned int
        4096x4096 (or 4088x4088) data-quality array.
    flags : dict
        Name -> single-bit value (e.g. ``{"dead": 1024}``).
    """
    dq = detector_frame(np.asarray(dq), fill=0)
    if dq.dtype.kind not in "ui":
        raise ValueError(f"DQ array has type {dq.dtype}; expected unsigned integers")
    out = {}
    bytes_cache: dict[int, np.ndarray] = {}
    for name, bit in flags.items():
        bit = int(bit)
        if bit <= 0 or bit & (bit - 1):
            raise ValueError(f"flag {name!r} value {bit} is not a single bit")
        number = bit.bit_length() - 1
        if number // 8 not in bytes_cache:
            plane = np.array(_flag_byte(dq, number))
            plane[:BORDER, :] = 0
            plane[-BORDER:, :] = 0
            plane[:, :BORDER] = 0
            plane[:, -BORDER:] = 0
            bytes_cache[number // 8] = plane
        mask_value = np.uint8(1 << (number % 8))
        hits = np.bitwise_and(bytes_cache[number // 8], mask_value)
        # Two steps with a uint16 accumulator: 128 x 128 (the largest bit value) fits.
        per_row = hits.reshape(FRAME_SIZE, N_SP_SIDE, SUPERPIXEL_SIZE).sum(axis=2, dtype=np.uint16)
        per_block = per_row.reshape(N_SP_SIDE, SUPERPIXEL_SIZE, N_SP_SIDE).sum(axis=1, dtype=np.int64) // int(
            mask_value
        )
        out[name] = ScaleValues.from_superpixel_sums(per_block.ravel())
    return out


def _sortable_keys(values: np.ndarray) -> np.ndarray:
    """Map floats to unsigned integers that sort in the same order."""
    uint = np.uint32 if values.dtype == np.float32 else np.uint64
    bits = values.view(uint)
    sign = uint(1) << uint(8 * values.dtype.itemsize - 1)
    return np.where(bits & sign, ~bits, bits | sign)


def _from_sortable_keys(keys: np.ndarray, dtype) -> np.ndarray:
    uint = np.uint32 if np.dtype(dtype) == np.float32 else np.uint64
    keys = keys.astype(uint)
    sign = uint(1) << uint(8 * np.dtype(dtype).itemsize - 1)
    bits = np.where(keys & sign, keys ^ sign, ~keys)
    return bits.view(dtype)


def _counts_not_above(runs: np.ndarray, lo: np.ndarray, hi: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per run, how many of its sorted values are <= each of ``values``, known to lie in [lo, hi].

    ``values``, ``lo`` and ``hi`` have one row per run. One binary search per
    (run, value), vectorised over all of them: a few numpy steps in total
    rather than one ``searchsorted`` call per run.
    """
    rows = np.arange(runs.shape[0])[:, None]
    last = runs.shape[1] - 1
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        right = active & (runs[rows, np.minimum(mid, last)] <= values)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def _rank_bounds(runs, n_valid, ranks, groups):
    """Sortable keys bracketing each order statistic of each group, from its runs' own order statistics.

    With ``N`` values in a group and ``n`` in one of its runs, the statistic
    of rank ``r`` is at least the smallest, over the runs, of each run's value
    of rank ``floor(r n / N)``, and at most the largest of each run's value of
    rank ``ceil((r + 1) n / N) - 1``: the counts below and up to those values
    add up to at most ``r`` and at least ``r + 1``. The bracket is much
    narrower than the runs' full range, so the bisection needs fewer rounds.
    """
    rows = np.flatnonzero(n_valid > 0)
    total = np.zeros(ranks.shape[0], dtype=np.int64)
    np.add.at(total, groups[rows], n_valid[rows])
    group = groups[rows]
    n = n_valid[rows][:, None]
    big_n = np.maximum(total[group], 1)[:, None]
    r = ranks[group]
    below = np.clip((r * n) // big_n, 0, n - 1)
    up_to = np.clip(-(-(r + 1) * n // big_n) - 1, 0, n - 1)
    at = rows[:, None]
    lo = np.full(ranks.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    hi = np.zeros(ranks.shape, dtype=np.uint64)
    np.minimum.at(lo, group, _sortable_keys(runs[at, below]).astype(np.uint64))
    np.maximum.at(hi, group, _sortable_keys(runs[at, up_to]).astype(np.uint64))
    return lo, hi


def kth_of_sorted_runs(runs: np.ndarray, n_valid: np.ndarray, ranks: np.ndarray, groups=None) -> np.ndarray:
    """Return the order statistics ``ranks`` (0-based) of the union of sorted runs, per group of runs.

    Bisection over the sortable integer image of the float values (at most
    32 rounds for float32, 64 for float64, fewer from the bracket of
    `_rank_bounds`); each round counts, in every run at once, the values not
    above the candidate. Selecting the amp and detector
    statistics from the 1024 sorted super-pixel blocks this way takes tens
    of milliseconds, where sorting the amp columns or the detector again
    takes 0.1-0.6 s and ``np.partition`` ~0.3 s, depending on the CPU.

    Parameters
    ----------
    runs : ndarray, shape (n_runs, length)
        Rows sorted ascending over their first ``n_valid`` values.
    n_valid : array of int, shape (n_runs,)
    ranks : array of int, shape (n_ranks,) or (n_groups, n_ranks)
        Order statistics wanted in each group; each below the group's count.
    groups : array of int, shape (n_runs,), optional
        Group (0 .. n_groups-1) of each run; by default all runs are one group.

    Returns
    -------
    ndarray
        The order statistics, shaped like ``ranks``, in the dtype of ``runs``.
    """
    n_valid = np.asarray(n_valid, dtype=np.int64)
    groups = np.zeros(runs.shape[0], dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.int64)
    shape = ranks.shape
    ranks = ranks.reshape(-1, shape[-1]) if ranks.ndim > 1 else ranks[None, :]
    dtype = runs.dtype
    uint = np.uint32 if dtype == np.float32 else np.uint64
    lo, hi = _rank_bounds(runs, n_valid, ranks, groups)
    # Where in each run the values between lo and hi start and end: the
    # searches of later rounds look only there.
    start = np.zeros((runs.shape[0], ranks.shape[1]), dtype=np.int64)
    stop = np.repeat(n_valid[:, None], ranks.shape[1], axis=1)
    while np.any(lo < hi):
        mid = lo + (hi - lo) // np.uint64(2)
        values = _from_sortable_keys(mid.astype(uint), dtype)
        per_run = _counts_not_above(runs, start, stop, values[groups])
        counts = np.zeros(ranks.shape, dtype=np.int64)
        np.add.at(counts, groups, per_run)
        enough = counts >= ranks + 1
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid + np.uint64(1))
        stop = np.where(enough[groups], per_run, stop)
        start = np.where(enough[groups], start, per_run)
    return _from_sortable_keys(lo.astype(uint), dtype).reshape(shape)


def _interpolate(lower: np.ndarray, upper: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's linear interpolation between neighbouring order statistics."""
    lower = lower.astype(np.float64)
    upper = upper.astype(np.float64)
    diff = upper - lower
    return np.where(gamma >= 0.5, upper - diff * (1 - gamma), lower + diff * gamma)


def _percentile_ranks(n: np.ndarray, q: np.ndarray):
    """Lower/upper ranks and weights of numpy's linear percentile for ``n`` values."""
    n = np.asarray(n, dtype=np.int64)[..., None]
    index = q / 100.0 * np.maximum(n - 1, 0)
    lower = np.floor(index).astype(np.int64)
    upper = np.minimum(lower + 1, np.maximum(n - 1, 0))
    return lower, upper, index - lower


class RegionReducer:
    """Statistics of one 4096x4096 (or 4088x4088) array at the three scales.

    The array is copied once into a block layout (amp column, block row,
    128, 128) with excluded pixels set to NaN; means, standard deviations and
    exact percentiles for all 1057 regions are then computed from that copy.

    Parameters
    ----------
    array : ndarray
        Pixel values (DN/s, DN, e/DN, ...), any float or integer type.
    exclude : ndarray of bool, optional
        Extra pixels to leave out (e.g. flagged pixels), same shape as ``array``.
    """

    def __init__(self, array: np.ndarray, exclude: np.ndarray | None = None):
        array = np.asarray(array)
        frame = detector_frame(array)
        dtype = np.float32 if frame.dtype in (np.float32, np.float16) or frame.dtype.itemsize <= 2 else np.float64
        work = np.empty((N_SP_SIDE, N_SP_SIDE, SUPERPIXEL_SIZE, SUPERPIXEL_SIZE), dtype=dtype)
        np.copyto(work, _blocks(frame), casting="unsafe")
        work[:, 0, :BORDER, :] = np.nan
        work[:, -1, -BORDER:, :] = np.nan
        work[0, :, :, :BORDER] = np.nan
        work[-1, :, :, -BORDER:] = np.nan
        if exclude is not None:
            excluded = _blocks(detector_frame(np.asarray(exclude, dtype=bool), fill=True))
            work[excluded] = np.nan
        self._work = work.reshape(N_SP_SIDE * N_SP_SIDE, SUPERPIXEL_SIZE * SUPERPIXEL_SIZE)
        self._finite = np.isfinite(self._work)
        self._valid_blocks = self._finite.view(np.uint8).sum(axis=1, dtype=np.int64)
        self._percentiles = None

    @cached_property
    def count(self) -> ScaleValues:
        """Number of valid pixels per region."""
        return ScaleValues.from_superpixel_sums(_amp_major_to_superpixel(self._valid_blocks))

    def _finite_mask(self) -> np.ndarray:
        # Sorting the blocks reorders their pixels, so the mask is made again after it.
        if self._finite is None:
            self._finite = np.isfinite(self._work)
        return self._finite

    @cached_property
    def _block_sums(self) -> np.ndarray:
        return np.sum(self._work, axis=1, dtype=np.float64, where=self._finite_mask())

    @cached_property
    def _block_square_sums(self) -> np.ndarray:
        return np.sum(np.square(self._work, dtype=np.float64), axis=1, where=self._finite_mask())

    @cached_property
    def sum(self) -> ScaleValues:
        """Sum of the valid pixels per region."""
        return ScaleValues.from_superpixel_sums(_amp_major_to_superpixel(self._block_sums))

    @cached_property
    def mean(self) -> ScaleValues:
        """Mean of the valid pixels per region (NaN where none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return ScaleValues(*(self.sum[s] / np.where(self.count[s] > 0, self.count[s], np.nan) for s in SCALES))

    @cached_property
    def std(self) -> ScaleValues:
        """Population standard deviation of the valid pixels per region (NaN where none)."""
        squares = ScaleValues.from_superpixel_sums(_amp_major_to_superpixel(self._block_square_sums))
        out = []
        with np.errstate(invalid="ignore", divide="ignore"):
            for s in SCALES:
                n = np.where(self.count[s] > 0, self.count[s], np.nan)
                mean = self.sum[s] / n
                out.append(np.sqrt(np.maximum(squares[s] / n - mean * mean, 0.0)))
        return ScaleValues(*out)

    def percentiles(self, q) -> dict[float, ScaleValues]:
        """Exact percentiles ``q`` (0-100) per region, as ``np.nanpercentile``.

        Sorts every super-pixel block, then selects the amp and detector
        order statistics from the 1024 sorted blocks (`kth_of_sorted_runs`)
        without sorting again. Ask for all percentiles in one call.

        Returns
        -------
        dict
            Percentile -> `ScaleValues`.
        """
        q = tuple(float(x) for x in np.atleast_1d(q))
        if self._percentiles is not None:
            if self._percentiles[0] != q:
                raise ValueError("ask for all percentiles of a RegionReducer in one call")
            return self._percentiles[1]
        qa = np.array(q)
        self._finite = None
        self._work.sort(axis=1)
        self._drop_infinities()
        n_blocks = self._valid_blocks
        superpixel = _amp_major_to_superpixel(self._select_rows(self._work, n_blocks, qa))
        # Blocks are stored amp column by amp column: block b belongs to amp b // 32.
        amp_of_block = np.arange(n_blocks.size) // N_SP_SIDE
        amp = self._select_from_blocks(n_blocks.reshape(N_AMPS, N_SP_SIDE).sum(axis=1), qa, amp_of_block)
        detector = self._select_from_blocks(np.array([n_blocks.sum()]), qa, None)
        result = {qi: ScaleValues(detector[:, i], amp[:, i], superpixel[:, i]) for i, qi in enumerate(q)}
        self._percentiles = (q, result)
        return result

    def _drop_infinities(self) -> None:
        """Turn +/-inf into NaN in the sorted blocks (rare: checked on the sorted ends)."""
        work, n = self._work, self._valid_blocks
        rows = np.arange(work.shape[0])
        after_valid = work[rows, np.minimum(n, work.shape[1] - 1)]
        bad = np.isneginf(work[:, 0]) | ((n < work.shape[1]) & np.isposinf(after_valid))
        for row in np.flatnonzero(bad):
            block = work[row]
            block[np.isinf(block)] = np.nan
            block.sort()

    def _select_from_blocks(self, n_region: np.ndarray, q: np.ndarray, region_of_block) -> np.ndarray:
        """Percentiles ``q`` of regions made of whole sorted blocks, NaN for empty regions."""
        lower, upper, gamma = _percentile_ranks(n_region, q)
        stats = kth_of_sorted_runs(self._work, self._valid_blocks, np.concatenate([lower, upper], axis=1),
                                   region_of_block)
        values = _interpolate(stats[:, : q.size], stats[:, q.size :], gamma)
        values[n_region == 0] = np.nan
        return values

    @staticmethod
    def _select_rows(rows: np.ndarray, n_valid: np.ndarray, q: np.ndarray) -> np.ndarray:
        lower, upper, gamma = _percentile_ranks(n_valid, q)
        idx = np.arange(rows.shape[0])[:, None]
        values = _interpolate(rows[idx, lower], rows[idx, upper], gamma)
        values[np.asarray(n_valid) == 0] = np.nan
        return values
