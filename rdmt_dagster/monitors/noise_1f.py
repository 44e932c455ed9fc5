"""Residual 1/f (correlated read) noise monitor for L2 slope images (``ImageModel``).

The 32 channels of a WFI detector are read at once, row after row; noise that
is correlated in time (1/f noise of the readout electronics) that the
reference-pixel correction did not remove shows as offsets between the rows
of a channel (banding): partly common to all channels, partly per channel.
The monitor compares the row-to-row scatter of each channel with what white
pixel noise alone would give, so that the numbers follow each image's own
noise and sky level rather than a fixed threshold.

Measurement
-----------
1. Pixels flagged in DQ (``parameters.mask_flags``) are masked, and so are
   pixels further than ``clip_sigma`` noise widths from their channel's sky
   level (stars, cosmic rays, cold pixels); the pixels within
   ``mask_radius`` of a bright one go too, because the faint wings of stars
   (several per channel row in bulge fields) would add light to a few rows
   and look like banding. Sky level and width come from a subsample of the
   rows (every ``subsample_step``-th row).
2. The white pixel noise ``sigma`` of each channel is estimated from the
   differences of unmasked pixels ``difference_lag`` apart along the rows
   of the subsample, ``sigma = 1.4826 median(|x[j+lag] - x[j]|) / sqrt(2)``.
   A row offset is the same for both pixels of a pair and cancels, so 1/f
   banding does not inflate it; the median ignores what the mask missed.
3. Per channel, the mean of the unmasked pixels of each row gives a series
   in reading order (rows are read 0..4095; the direction along a row does
   not change its mean, and the channels read their rows at the same
   time). A running mean over ``trend_window_s`` of readout time (its
   number of rows follows from the pixel time, from
   ``meta.exposure.frame_time`` when valid, and the row pad) is
   subtracted: this removes sky gradients and the slowest drifts and
   leaves the band from ~1 / ``trend_window_s`` to half the row frequency
   (~725 Hz), where 1/f banding lives.
4. Each residual ``r_i`` is compared with its white-noise variance
   ``e_i = sigma^2 (1 / n_i - 1 / N_i)``, exact for white noise, where
   ``n_i`` is the row's number of unmasked pixels and ``N_i`` the number in
   the running-mean window (which includes the row itself). Rows whose
   ``r_i^2 / e_i`` exceeds ``row_clip_sigma^2`` times its robust level (a
   cosmic-ray shower, a bright extended source) are dropped.

What it tells an instrument scientist
-------------------------------------
* ``noise_1f_excess`` (dimensionless): ``mean_i(r_i^2 / e_i)`` per channel
  (``amp``), and the *mean* of the 32 channel values for the ``detector``.
  It is ~1 for white noise at any sky level and grows with the residual
  1/f power: ``1 + n v / sigma^2`` for row offsets of variance ``v`` added
  to rows of ``n`` pixels. A rise over the whole detector means the
  reference-pixel correction no longer removes the correlated noise (a
  change of the readout electronics, of the reference pixels or of the
  IRRC reference file); one high channel points at that channel.
* ``noise_1f_common_excess`` (dimensionless, ``detector`` only): the same
  for the channel-averaged residual series, whose white expectation is
  ``sum_k e_ki / K_i^2`` over its ``K_i`` channels. It isolates the part of
  the banding common to all channels (noise on a voltage or ground the
  channels share): averaging divides the white noise and the independent
  banding of the channels by 32, but not this part, so it is seen at
  amplitudes ~6 times smaller than in a single channel.
* ``white_noise`` (image unit, e.g. DN/s): the ``sigma`` of each channel
  used for the normalisation; ``detector`` is the quadratic mean of the
  channel values. It is the pixel noise (read noise and sky photon noise)
  of the image; a change means a change of the read noise, the sky level or
  the exposure time, and tells whether a change of the excess comes from
  its denominator.

The array science is in plain numpy functions (no Dagster), fast enough to
run on every L2 image (~0.05 s for a 4088x4088 image on one core).
"""

from __future__ import annotations

import numpy as np

from ..l2.monitor import L2Monitor
from ..science.dq import flag_bits
from ..science.metrics import Metric
from ..science.monitor import MonitoringError
from ..science.scales import AMP_WIDTH, FRAME_SIZE, N_AMPS, ScaleValues, dq_byte

EXCESS_UNIT = ""
#: median of the chi-square distribution with one degree of freedom
CHI2_1_MEDIAN = 0.454936423119572
#: sigma of a normal distribution per unit of its median absolute deviation
MAD_TO_SIGMA = 1.482602218505602
#: fraction of a normal distribution below -1 sigma (its 15.87th percentile)
ONE_SIGMA_BELOW = 0.15865525393145707

# --- readout geometry ---------------------------------------------------------------------------------


def readout_order(frame: np.ndarray) -> np.ndarray:
    """Return a detector-frame array as 32 channel streams in reading order.

    Channel ``k`` (amp ``k + 1``) holds frame columns ``128 k .. 128 k + 127``;
    even channels (amps 1, 3, ...) are read left to right, odd channels right
    to left, and rows in order 0..4095.

    Parameters
    ----------
    frame : ndarray, shape (rows, 4096)
        Values in the detector frame (a 4088x4088 science-area image must be
        embedded first, e.g. with `rdmt_dagster.science.scales.detector_frame`).

    Returns
    -------
    ndarray, shape (32, rows, 128)
        ``out[k, r, t]`` is the ``t``-th pixel channel ``k`` reads in row ``r``
        (a copy).
    """
    frame = np.asarray(frame)
    if frame.ndim != 2 or frame.shape[1] != FRAME_SIZE:
        raise ValueError(f"expected a (rows, {FRAME_SIZE}) detector-frame array, got shape {frame.shape}")
    channels = frame.reshape(frame.shape[0], N_AMPS, AMP_WIDTH).transpose(1, 0, 2).copy()
    channels[1::2] = channels[1::2, :, ::-1]
    return channels


def frame_from_readout(channels: np.ndarray) -> np.ndarray:
    """Inverse of `readout_order`: channel streams in reading order -> detector-frame array.

    Parameters
    ----------
    channels : ndarray, shape (32, rows, 128)

    Returns
    -------
    ndarray, shape (rows, 4096)
    """
    channels = np.asarray(channels)
    if channels.ndim != 3 or channels.shape[0] != N_AMPS or channels.shape[2] != AMP_WIDTH:
        raise ValueError(f"expected ({N_AMPS}, rows, {AMP_WIDTH}) channel streams, got shape {channels.shape}")
    frame = np.empty((channels.shape[1], N_AMPS, AMP_WIDTH), dtype=channels.dtype)
    frame[:, 0::2, :] = channels[0::2].transpose(1, 0, 2)
    frame[:, 1::2, :] = channels[1::2, :, ::-1].transpose(1, 0, 2)
    return frame.reshape(channels.shape[1], FRAME_SIZE)


def pixel_time(meta, default: float, row_pad: int) -> float:
    """Pixel time (s) from ``meta.exposure.frame_time`` when it is valid, else ``default``.

    Parameters
    ----------
    meta : object or None
        ``model.meta`` of the image; ``frame_time`` is valid when finite and > 0
        (roman_datamodels fills unset values with -999999).
    default : float
        Pixel time (s) to use otherwise.
    row_pad : int
        Pad pixel times per row: a frame is 4096 rows of ``128 + row_pad``
        pixel times.

    Returns
    -------
    float
    """
    try:
        frame_time = float(meta.exposure.frame_time)
    except (AttributeError, TypeError, ValueError):
        return float(default)
    if not np.isfinite(frame_time) or frame_time <= 0:
        return float(default)
    return frame_time / (FRAME_SIZE * (AMP_WIDTH + row_pad))


def channel_blocks(width: int, offset: int) -> list[tuple[slice, slice]]:
    """Split image columns into runs of whole channels.

    Parameters
    ----------
    width : int
        Number of image columns (4088 for an L2 science area, 4096 for a frame).
    offset : int
        Frame column of image column 0 (4 for the science area).

    Returns
    -------
    list of (channel slice, column slice)
        Each column run holds ``128 * n`` columns of ``n`` consecutive
        channels, except the partial first and last channels of the science
        area (124 columns each), which get a run of their own.
    """
    first = offset // AMP_WIDTH
    last = (offset + width - 1) // AMP_WIDTH
    head = (-offset) % AMP_WIDTH  # image columns before the first whole channel
    tail = (offset + width) % AMP_WIDTH  # image columns after the last whole channel
    blocks = []
    if head:
        blocks.append((slice(first, first + 1), slice(0, head)))
        first += 1
    whole_end = width - tail
    if whole_end > head:
        blocks.append((slice(first, first + (whole_end - head) // AMP_WIDTH), slice(head, whole_end)))
    if tail:
        blocks.append((slice(last, last + 1), slice(whole_end, width)))
    return blocks


def channel_rows(array: np.ndarray, offset: int, fill=np.nan) -> np.ndarray:
    """Return image rows as (channel, row, 128), with ``fill`` where a channel has no image column.

    Parameters
    ----------
    array : ndarray, shape (rows, width)
        A few image rows (a copy is made: meant for subsamples).
    offset : int
        Frame column of image column 0 (4 for the science area).
    fill : scalar
        Value of the frame columns outside the image (reference pixels).

    Returns
    -------
    ndarray, shape (32, rows, 128)
        In frame column order within each channel (not reading order: the
        statistics computed from it do not depend on the direction).
    """
    rows, width = array.shape
    frame = np.full((rows, FRAME_SIZE), fill, dtype=np.result_type(array.dtype, np.min_scalar_type(fill)))
    frame[:, offset:offset + width] = array
    return frame.reshape(rows, N_AMPS, AMP_WIDTH).transpose(1, 0, 2)


def subsample(data: np.ndarray, good: np.ndarray, rows: slice, offset: int) -> np.ndarray:
    """Some rows of the image per channel, NaN where not ``good`` or not finite.

    Parameters
    ----------
    data, good : ndarray, shape (rows, width)
        Image and its usable pixels.
    rows : slice
        The rows to take (e.g. every 32nd).
    offset : int
        Frame column of image column 0.

    Returns
    -------
    ndarray, shape (32, n_rows, 128), float32
    """
    values = data[rows]
    keep = good[rows] & np.isfinite(values)
    return channel_rows(np.where(keep, values, np.nan).astype(np.float32, copy=False), offset)


# --- masks --------------------------------------------------------------------------------------------


def unflagged(dq: np.ndarray, bits: int) -> np.ndarray:
    """Boolean array: none of ``bits`` set in ``dq``.

    When all bits lie in one byte of the DQ word, only that byte is tested
    (about twice as fast as the full uint32 test on a 4088x4088 array).

    Parameters
    ----------
    dq : ndarray of unsigned int
    bits : int
        OR of the DQ flag values to test.

    Returns
    -------
    ndarray of bool, shape of ``dq``
    """
    dq = np.asarray(dq)
    bits = int(bits)
    if bits == 0:
        return np.ones(dq.shape, dtype=bool)
    plane = dq_byte(dq, bits) if dq.dtype.kind == "u" and dq.ndim == 2 and dq.flags.c_contiguous else None
    if plane is not None:
        byte = ((bits & -bits).bit_length() - 1) // 8
        scratch = np.bitwise_and(plane, np.uint8(bits >> (8 * byte)))
        return np.equal(scratch, 0, out=scratch.view(bool))
    return np.bitwise_and(dq, np.asarray(bits).astype(dq.dtype)) == 0


def _shift_columns(packed: np.ndarray, shift: int) -> np.ndarray:
    """Bit-packed rows (``bitorder="little"``) moved ``shift`` columns to the right (left if negative), zero-filled."""
    out = np.zeros_like(packed)
    nbytes, nbits = divmod(abs(shift), 8)
    width = packed.shape[1]
    if nbytes >= width:
        return out
    if shift > 0:
        source, target = packed[:, :width - nbytes], out[:, nbytes:]
        target |= source << nbits
        if nbits:
            target[:, 1:] |= source[:, :-1] >> (8 - nbits)
    else:
        source, target = packed[:, nbytes:], out[:, :width - nbytes]
        target |= source >> nbits
        if nbits:
            target[:, :-1] |= source[:, 1:] << (8 - nbits)
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a 2-D boolean mask by ``radius`` pixels (a square of ``2 radius + 1`` pixels a side).

    Works on the mask packed eight pixels a byte, by shifted ORs whose
    reach doubles each round (``ceil(log2(radius + 1))`` rounds): a few
    milliseconds for a 4088x4088 mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (rows, columns)
    radius : int

    Returns
    -------
    ndarray of bool
        True within ``radius`` pixels (Chebyshev distance) of a True pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    packed = np.packbits(mask, axis=1, bitorder="little")
    reach = 0
    while reach < radius:
        step = min(reach + 1, radius - reach)
        tall = packed.copy()
        tall[step:] |= packed[:-step]
        tall[:-step] |= packed[step:]
        packed = tall | _shift_columns(tall, step)
        packed |= _shift_columns(tall, -step)
        reach += step
    return np.unpackbits(packed, axis=1, count=mask.shape[1], bitorder="little").view(bool)


# --- robust statistics of a row subsample -------------------------------------------------------------


def sorted_quantiles(values: np.ndarray, q) -> tuple[np.ndarray, np.ndarray]:
    """Per row, linear-interpolation quantiles of the finite values, ignoring NaN.

    Parameters
    ----------
    values : ndarray, shape (n_rows, n)
    q : float or sequence of float
        Quantiles in [0, 1].

    Returns
    -------
    quantiles : ndarray, shape (len(q), n_rows)
        NaN for a row without finite values.
    count : ndarray, shape (n_rows,)
        Number of finite values per row.
    """
    ordered = np.sort(values, axis=1)  # NaN sorts last
    count = np.count_nonzero(np.isfinite(ordered), axis=1)
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    position = q[:, None] * np.maximum(count - 1, 0)[None, :]
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, np.maximum(count - 1, 0)[None, :])
    weight = position - lower
    rows = np.arange(values.shape[0])[None, :]
    low_values = ordered[rows, lower].astype(np.float64)
    high_values = ordered[rows, upper].astype(np.float64)
    out = low_values + weight * (high_values - low_values)
    out[:, count == 0] = np.nan
    return out, count


def sky_and_spread(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky level and lower-side noise width of each channel from a row subsample.

    Parameters
    ----------
    channels : ndarray, shape (32, rows, 128)
        Subsampled pixels, NaN where masked.

    Returns
    -------
    sky : ndarray, shape (32,)
        Median.
    spread : ndarray, shape (32,)
        Median minus the 15.87th percentile: one sigma for Gaussian noise
        (including any row offsets), unaffected by stars, which only add
        light above the sky.
    """
    (low, median), _ = sorted_quantiles(channels.reshape(channels.shape[0], -1), [ONE_SIGMA_BELOW, 0.5])
    return median, median - low


def difference_sigma(channels: np.ndarray, lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """White pixel noise of each channel from differences of pixels ``lag`` apart along a row.

    ``sigma = 1.4826 median(|x[j+lag] - x[j]|) / sqrt(2)``: a row offset is
    common to both pixels and cancels, and the median ignores stars.
    Differences are taken only within a channel. Interpixel capacitance
    correlates neighbouring pixels by a few per cent, which makes lag-1
    differences smaller than two independent pixels would give; at lag 2
    that correlation is ~100 times weaker.

    Parameters
    ----------
    channels : ndarray, shape (32, rows, 128)
        Pixels, NaN where masked.
    lag : int
        Separation of the two pixels of a pair (1..127).

    Returns
    -------
    sigma : ndarray, shape (32,)
        NaN for a channel without a valid pair.
    pairs : ndarray, shape (32,)
        Number of pixel pairs used.
    """
    differences = np.abs(channels[:, :, lag:] - channels[:, :, :-lag]).reshape(channels.shape[0], -1)
    (median,), pairs = sorted_quantiles(differences, [0.5])
    return MAD_TO_SIGMA * median / np.sqrt(2.0), pairs


def clip_limits(channels: np.ndarray, clip_sigma: float, lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the range of pixel values taken as sky: ``sky -/+ clip_sigma`` noise widths.

    The width is the larger of the lower-side spread of the pixel values
    (which includes row offsets) and the pair-difference noise (`difference_sigma`).

    Parameters
    ----------
    channels : ndarray, shape (32, rows, 128)
        A row subsample, NaN where flagged.
    clip_sigma : float
    lag : int
        Pixel separation of the pairs of `difference_sigma`.

    Returns
    -------
    low, high : ndarray, shape (32,)
    """
    sky, spread = sky_and_spread(channels)
    sigma, _ = difference_sigma(channels, lag)
    width = float(clip_sigma) * np.fmax(spread, sigma)
    return sky - width, sky + width


def unmasked_sources(data: np.ndarray, good: np.ndarray, low: np.ndarray, high: np.ndarray, offset: int,
                     radius: int) -> np.ndarray:
    """Remove from ``good`` (in place) pixels outside their channel's sky range and pixels near bright ones.

    Pixels above ``high`` (stars, cosmic rays, hot pixels) are masked with
    everything within ``radius`` pixels: the faint wings of a star, below
    the clip, would otherwise add light to a few rows and mimic banding.
    Pixels below ``low`` (cold pixels) and NaN are masked alone.

    Parameters
    ----------
    data : ndarray, shape (rows, width)
    good : ndarray of bool, same shape
        Pixels usable so far (not flagged); updated in place.
    low, high : ndarray, shape (32,)
        Per-channel limits (`clip_limits`).
    offset : int
        Frame column of image column 0.
    radius : int
        Growth of the bright-pixel mask (pixels).

    Returns
    -------
    ndarray of bool
        ``good``.
    """
    columns = slice(offset, offset + data.shape[1])
    dtype = data.dtype if data.dtype.kind == "f" else np.float64
    low_columns = np.repeat(low, AMP_WIDTH)[columns].astype(dtype)
    high_columns = np.repeat(high, AMP_WIDTH)[columns].astype(dtype)
    scratch = np.greater(data, low_columns)  # False for NaN
    good &= scratch
    np.greater(data, high_columns, out=scratch)
    near_bright = dilate(scratch, radius)
    del scratch
    return np.greater(good, near_bright, out=good)  # good and not near_bright


# --- per-channel row series ---------------------------------------------------------------------------


def channel_row_sums(data: np.ndarray, good: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and number of the good pixels of each channel in each image row.

    Parameters
    ----------
    data : ndarray, shape (rows, width)
        Image (science area with ``offset = 4``, or a frame with ``offset = 0``).
    good : ndarray of bool, same shape
        Pixels to use.
    offset : int
        Frame column of image column 0.

    Returns
    -------
    sums : ndarray, shape (32, rows), float64
    counts : ndarray, shape (32, rows), int64
        Zero for a channel with no column in the image.
    """
    rows, width = data.shape
    sums = np.zeros((N_AMPS, rows), dtype=np.float64)
    counts = np.zeros((N_AMPS, rows), dtype=np.int64)
    good_bytes = good.view(np.uint8)
    for channels, columns in channel_blocks(width, offset):
        n = channels.stop - channels.start
        block = data[:, columns].reshape(rows, n, -1)
        mask = good[:, columns].reshape(rows, n, -1)
        sums[channels] = np.sum(block, axis=2, where=mask).T
        counts[channels] = good_bytes[:, columns].reshape(rows, n, -1).sum(axis=2, dtype=np.uint16).T
    return sums, counts


def running_window_sums(values: np.ndarray, half_width: int) -> np.ndarray:
    """Sums over ``[i - half_width, i + half_width]`` along the last axis, truncated at the ends.

    Parameters
    ----------
    values : ndarray, shape (..., n)
    half_width : int

    Returns
    -------
    ndarray, same shape, float64
    """
    n = values.shape[-1]
    cumulative = np.zeros(values.shape[:-1] + (n + 1,), dtype=np.float64)
    np.cumsum(values, axis=-1, out=cumulative[..., 1:])
    index = np.arange(n)
    start = np.maximum(index - half_width, 0)
    stop = np.minimum(index + half_width + 1, n)
    return cumulative[..., stop] - cumulative[..., start]


def detrended_rows(sums: np.ndarray, counts: np.ndarray, variance: np.ndarray, half_width: int,
                   min_pixels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Row means minus their running mean, and the white-noise variance of each residual.

    The running mean weights each row by its number of pixels and includes
    the row itself, so for white pixel noise of variance ``s2`` the residual
    of a row of ``n`` pixels in a window of ``N`` pixels has variance
    exactly ``s2 (1 / n - 1 / N)``.

    Parameters
    ----------
    sums, counts : ndarray, shape (channels, rows)
        Sum and number of the pixels of each row.
    variance : ndarray, shape (channels,)
        White pixel variance of each channel.
    half_width : int
        The running mean spans ``2 half_width + 1`` rows.
    min_pixels : int
        Rows with fewer pixels are left out (residual and expectation NaN).

    Returns
    -------
    residual, expectation : ndarray, shape (channels, rows)
        NaN where a row is left out or alone in its window.
    """
    weight = np.where(counts >= max(int(min_pixels), 1), counts, 0).astype(np.float64)
    total = np.where(weight > 0, sums, 0.0)
    window_sum = running_window_sums(total, half_width)
    window_count = running_window_sums(weight, half_width)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = total / weight - window_sum / window_count
        expectation = np.asarray(variance, dtype=np.float64)[:, None] * (1.0 / weight - 1.0 / window_count)
    usable = (weight > 0) & (window_count > weight) & (expectation > 0)
    return np.where(usable, residual, np.nan), np.where(usable, expectation, np.nan)


def clipped_mean_square(z2: np.ndarray, clip_sigma: float) -> np.ndarray:
    """Mean of normalised squared residuals per row of ``z2``, after dropping outliers.

    Values above ``clip_sigma^2`` times the robust level
    ``median(z2) / median(chi2_1)`` are dropped; for Gaussian residuals that
    removes a negligible fraction (6e-7 at 5 sigma) and leaves the mean
    unbiased. NaN entries are ignored.

    Parameters
    ----------
    z2 : ndarray, shape (n_series, n)
    clip_sigma : float

    Returns
    -------
    ndarray, shape (n_series,)
        NaN for a series without finite values.
    """
    z2 = np.atleast_2d(z2)
    (median,), _ = sorted_quantiles(z2, [0.5])
    limit = float(clip_sigma) ** 2 * median / CHI2_1_MEDIAN
    keep = np.isfinite(z2) & (z2 <= limit[:, None])
    n = np.count_nonzero(keep, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.sum(np.where(keep, z2, 0.0), axis=1) / n, np.nan)


def row_noise_excess(residual: np.ndarray, expectation: np.ndarray, clip_sigma: float) -> np.ndarray:
    """Row-to-row variance over its white-noise expectation, per channel.

    Parameters
    ----------
    residual, expectation : ndarray, shape (channels, rows)
        From `detrended_rows`.
    clip_sigma : float
        Outlier rows are dropped (see `clipped_mean_square`).

    Returns
    -------
    ndarray, shape (channels,)
        ~1 for white noise; ``1 + n v / s2`` for extra independent row
        offsets of variance ``v`` on rows of ``n`` pixels of white variance
        ``s2`` (the running mean lowers both terms by the same factor).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return clipped_mean_square(residual**2 / expectation, clip_sigma)


def common_rows(residual: np.ndarray, expectation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel-averaged residual series and its white-noise variance.

    Parameters
    ----------
    residual, expectation : ndarray, shape (channels, rows)
        NaN where a channel's row is left out.

    Returns
    -------
    mean, variance : ndarray, shape (rows,)
        ``mean_i = sum_k r_ki / K_i`` and ``sum_k e_ki / K_i^2`` over the
        ``K_i`` channels with a residual in row ``i``; NaN where ``K_i = 0``.
    """
    usable = np.isfinite(residual)
    n = np.count_nonzero(usable, axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(np.where(usable, residual, 0.0), axis=0) / n
        variance = np.sum(np.where(usable, expectation, 0.0), axis=0) / n**2
    return mean, variance


def common_noise_excess(residual: np.ndarray, expectation: np.ndarray, clip_sigma: float) -> float:
    """`row_noise_excess` of the channel-averaged series (`common_rows`)."""
    mean, variance = common_rows(residual, expectation)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(clipped_mean_square((mean**2 / variance)[None, :], clip_sigma)[0])


# --- the monitor --------------------------------------------------------------------------------------


_FLOAT_PARAMETERS = ("pixel_time_s", "clip_sigma", "trend_window_s", "row_clip_sigma")
_INT_PARAMETERS = {"row_pad": 0, "subsample_step": 1, "min_row_pixels": 1, "mask_radius": 0, "difference_lag": 1}


def _parameters(parameters: dict) -> dict:
    """The monitor's tunables from its standards block, checked."""
    parameters = parameters or {}
    missing = [k for k in (*_FLOAT_PARAMETERS, *_INT_PARAMETERS, "mask_flags") if k not in parameters]
    if missing:
        raise ValueError(f"noise_1f parameters lack {', '.join(missing)} (see standards/noise_1f.yaml)")
    out = dict(parameters)
    for key in _FLOAT_PARAMETERS:
        value = float(parameters[key])
        if not value > 0:
            raise ValueError(f"noise_1f parameters.{key} must be > 0, got {parameters[key]!r}")
        out[key] = value
    for key, least in _INT_PARAMETERS.items():
        value = int(parameters[key])
        if value < least:
            raise ValueError(f"noise_1f parameters.{key} must be >= {least}, got {parameters[key]!r}")
        out[key] = value
    if out["difference_lag"] >= AMP_WIDTH:
        raise ValueError(f"noise_1f parameters.difference_lag must be < {AMP_WIDTH}, got {out['difference_lag']}")
    return out


class Noise1fMonitor(L2Monitor):
    """Residual 1/f noise of an L2 image, relative to its own white noise (see the module docstring)."""

    name = "noise_1f"
    version = "1.0.0"
    scales = ("detector", "amp")

    def metrics(self, model, parameters, previous=None):
        """The three metrics of one `rdmt_dagster.l2.image.L2Image` (see the module docstring).

        Raises
        ------
        MonitoringError
            When the image has no finite pixel, no usable pixel in the rows
            sampled for the noise, or no pixel-to-pixel noise at all.
        """
        p = _parameters(parameters)
        path = getattr(model, "path", "") or ""
        data = self.frame_array(model, "data", path)
        dq = self.frame_array(model, "dq", path)
        if data.ndim != 2 or dq.shape != data.shape:
            raise MonitoringError(path, f"'data' {data.shape} and 'dq' {dq.shape} are not one 2-D image")
        if dq.dtype.kind not in "ui":
            raise MonitoringError(path, f"'dq' has type {dq.dtype}; expected unsigned integers")
        offset = getattr(model, "frame_offset", 0)
        bits = 0
        for bit in flag_bits(p["mask_flags"], "noise_1f parameters.mask_flags").values():
            bits |= bit
        rows = slice(0, None, p["subsample_step"])

        good = unflagged(dq, bits)
        sample = subsample(data, good, rows, offset)
        if not np.isfinite(sample).any():
            if not np.isfinite(data).any():
                raise MonitoringError(path, "'data' has no finite science pixels (all NaN or inf)")
            raise MonitoringError(path, f"no unflagged finite pixel in the rows sampled every "
                                        f"{p['subsample_step']} rows to estimate the noise")
        low, high = clip_limits(sample, p["clip_sigma"], p["difference_lag"])
        unmasked_sources(data, good, low, high, offset, p["mask_radius"])
        sigma, _ = difference_sigma(subsample(data, good, rows, offset), p["difference_lag"])
        if not (np.nan_to_num(sigma) > 0).any():
            raise MonitoringError(path, "'data' has no pixel-to-pixel noise after masking (constant values); "
                                        "the 1/f excess over white noise is undefined")
        sigma = np.where(sigma > 0, sigma, np.nan)
        sums, counts = channel_row_sums(data, good, offset)

        seconds_per_pixel = pixel_time(getattr(model, "meta", None), p["pixel_time_s"], p["row_pad"])
        row_time = (AMP_WIDTH + p["row_pad"]) * seconds_per_pixel
        half_width = max(1, int(round(p["trend_window_s"] / row_time / 2.0)))
        residual, expectation = detrended_rows(sums, counts, sigma**2, half_width, p["min_row_pixels"])
        amp_excess = row_noise_excess(residual, expectation, p["row_clip_sigma"])
        common = common_noise_excess(residual, expectation, p["row_clip_sigma"])
        with np.errstate(invalid="ignore"):
            detector_excess = np.nanmean(amp_excess) if np.isfinite(amp_excess).any() else np.nan
            detector_sigma = np.sqrt(np.nanmean(sigma**2))
        return [
            Metric("noise_1f_excess", EXCESS_UNIT,
                   ScaleValues(detector=np.array([detector_excess]), amp=amp_excess),
                   "row-to-row variance of the detrended row means over its white-noise expectation "
                   "(detector: mean of the amps)"),
            Metric("noise_1f_common_excess", EXCESS_UNIT, ScaleValues.detector_only(common),
                   "the same for the row means averaged over the 32 channels (banding common to all channels)"),
            Metric("white_noise", model.unit, ScaleValues(detector=np.array([detector_sigma]), amp=sigma),
                   "white pixel noise from pixel-pair differences along rows (detector: quadratic mean of the amps)"),
        ]

