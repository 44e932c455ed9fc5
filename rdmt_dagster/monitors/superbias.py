"""Superbias reference-file monitor (``SuperbiasRefModel``).

What it tells an instrument scientist
-------------------------------------
* ``bias_mean`` and ``bias_percentile_{1,50,99}`` of ``data`` (DN): the bias
  level and its spread. A change of the detector bias voltage or of the
  SIDECAR/ACADIA preamp offsets moves the median; an offset jump in one
  readout channel moves that amp (and its 32 super-pixels) and only a little
  the detector; a bad combination of input frames (saturated or illuminated
  frames, a wrong frame averaged in) widens the 1st-99th percentile range.
  Flagged pixels are kept: a wild pixel value changes the mean of its region.
* ``bias_even_odd_difference`` (DN): per amp, the median of the amp's
  even-column profile minus the median of its odd-column profile (columns
  counted in the 4096 frame; see "Profiles" below); per super-pixel, the same
  from its own 128-row column medians. The H4RG preamps sample even and odd
  columns with slightly different offsets; a change shows a change in the
  readout electronics (clocking, preamp settings). Alternate channels read in
  opposite directions, so the sign of the pattern in frame columns may
  alternate from amp to amp: the detector value is therefore the **RMS over
  the 32 amps**, the amplitude of the pattern, which a sign pattern cannot
  cancel.
* ``bias_row_structure`` (DN): the robust standard deviation
  (1.4826 x MAD) of the row profile: per amp, of its 4088 row medians (each
  over the amp's 128 columns); per super-pixel, of its 128 row medians. It
  grows with horizontal banding (correlated/1-f noise not averaged out,
  too few input frames) and with a frame-start transient ("reset anomaly")
  spreading over more rows. Detector value: median over the 32 amps.
* ``bias_column_structure`` (DN): the robust standard deviation of the
  column profile after removing the even/odd offset (each parity's median
  subtracted), so that it measures column-to-column structure only and does
  not repeat ``bias_even_odd_difference``. Per super-pixel: its 128 column
  medians (each over the super-pixel's 128 rows); per amp: its 128 column
  values, each the median over the 32 super-pixel rows of those 128-row
  medians (a median of medians: robust to outliers, and it reuses the
  super-pixel column medians instead of sorting 4088-row columns again).
  It grows with column-wise pattern noise or a bad column in the bias
  electronics. Detector value: median over the 32 amps.
* ``num_unreliable_bias_pix``, ``num_do_not_use_pix`` (pix): pixels carrying
  the UNRELIABLE_BIAS and DO_NOT_USE DQ flags (configurable with the
  ``count_flags`` parameter). Growth means new unstable or dead pixels, or a
  change in the RFP's flagging thresholds.

Profiles
--------
Row and column medians use science pixels only (the 4-pixel reference border
and non-finite values are left out); a profile value with no valid pixel is
NaN and is ignored by the statistics above. Every metric is reported for the
detector, the 32 amps and the 1024 super-pixels
(`rdmt_dagster.science.scales`).
"""

from __future__ import annotations

import numpy as np
from roman_datamodels import dqflags

from ..science.metrics import Metric
from ..science.monitor import Monitor
from ..science.scales import (
    BORDER,
    FRAME_SIZE,
    N_AMPS,
    N_SP_SIDE,
    SUPERPIXEL_SIZE,
    RegionReducer,
    ScaleValues,
    count_flags,
    detector_frame,
)

DN = "DN"
COUNT_UNIT = "pix"
MAD_TO_SIGMA = 1.4826


def _medians_of_sorted(rows: np.ndarray) -> np.ndarray:
    """Medians along the last axis of rows already sorted (NaN last).

    Equals ``np.nanmedian`` over each row; NaN where a row has no valid value.
    Only rows whose last element is NaN need counting, which keeps this cheap.
    """
    n = rows.shape[-1]
    flat = rows.reshape(-1, n)
    counts = np.full(flat.shape[0], n, dtype=np.int64)
    partial = np.flatnonzero(np.isnan(flat[:, -1]))
    if partial.size:
        counts[partial] = np.count_nonzero(~np.isnan(flat[partial]), axis=1)
    lo = np.maximum((counts - 1) // 2, 0)
    hi = np.minimum(counts // 2, n - 1)
    idx = np.arange(flat.shape[0])
    with np.errstate(invalid="ignore"):
        med = 0.5 * (flat[idx, lo].astype(np.float64) + flat[idx, hi].astype(np.float64))
    med[counts == 0] = np.nan
    return med.reshape(rows.shape[:-1])


def _nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=-1)`` without warnings, via one sort."""
    return _medians_of_sorted(np.sort(values, axis=-1))


def _robust_std(values: np.ndarray) -> np.ndarray:
    """1.4826 x median absolute deviation along the last axis, ignoring NaN."""
    med = _nanmedian_rows(values)
    return MAD_TO_SIGMA * _nanmedian_rows(np.abs(values - med[..., None]))


def _parity_split(profile: np.ndarray):
    """Even/odd medians of column profiles (last axis = 128 columns of one amp or block)."""
    even = _nanmedian_rows(profile[..., 0::2])
    odd = _nanmedian_rows(profile[..., 1::2])
    residual = profile.astype(np.float64, copy=True)
    residual[..., 0::2] -= even[..., None]
    residual[..., 1::2] -= odd[..., None]
    return even, odd, residual


def _working_copy(view: np.ndarray, dtype) -> np.ndarray:
    """C-contiguous copy of ``view`` (never the input itself) with +/-inf turned into NaN."""
    out = np.array(view, dtype=dtype, order="C", copy=True)
    if out.dtype.kind == "f":
        inf = np.isinf(out)
        if inf.any():
            out[inf] = np.nan
    return out


def bias_profiles(data: np.ndarray) -> dict[str, np.ndarray]:
    """Row and column profiles of a bias frame.

    Returns
    -------
    dict
        ``row`` (4096 rows, 32 amps): median of each amp's row segment;
        ``block_column`` (32 block rows, 32 amps, 128 columns): median of each
        column within each 128x128 super-pixel. Reference pixels and
        non-finite values are left out (NaN where nothing is left).
    """
    frame = detector_frame(np.asarray(data))
    dtype = np.float32 if frame.dtype in (np.float32, np.float16) or frame.dtype.itemsize <= 2 else np.float64

    rows = _working_copy(frame.reshape(FRAME_SIZE, N_AMPS, SUPERPIXEL_SIZE), dtype)
    rows[:BORDER] = np.nan
    rows[-BORDER:] = np.nan
    rows[:, 0, :BORDER] = np.nan
    rows[:, -1, -BORDER:] = np.nan
    rows.sort(axis=-1)
    row_profile = _medians_of_sorted(rows)
    del rows

    # (block row, amp, column, row within block): columns contiguous for sorting.
    blocks = _working_copy(
        frame.reshape(N_SP_SIDE, SUPERPIXEL_SIZE, N_AMPS, SUPERPIXEL_SIZE).transpose(0, 2, 3, 1), dtype
    )
    blocks[0, :, :, :BORDER] = np.nan
    blocks[-1, :, :, -BORDER:] = np.nan
    blocks[:, 0, :BORDER, :] = np.nan
    blocks[:, -1, -BORDER:, :] = np.nan
    blocks.sort(axis=-1)
    block_column = _medians_of_sorted(blocks)
    return {"row": row_profile, "block_column": block_column}


def structure_metrics(data: np.ndarray) -> dict[str, ScaleValues]:
    """Even/odd difference and row/column structure at the three scales (DN)."""
    profiles = bias_profiles(data)
    row = profiles["row"]  # (4096, 32)
    block_column = profiles["block_column"]  # (32 block rows, 32 amps, 128)

    # Super-pixel index = block_row * 32 + amp, i.e. C order of (block row, amp).
    sp_columns = block_column.reshape(N_SP_SIDE * N_AMPS, SUPERPIXEL_SIZE)
    sp_rows = row.reshape(N_SP_SIDE, SUPERPIXEL_SIZE, N_AMPS).transpose(0, 2, 1).reshape(-1, SUPERPIXEL_SIZE)
    amp_columns = _nanmedian_rows(np.ascontiguousarray(block_column.transpose(1, 2, 0)))  # (32, 128)

    sp_even, sp_odd, sp_resid = _parity_split(sp_columns)
    amp_even, amp_odd, amp_resid = _parity_split(amp_columns)
    amp_eo = amp_even - amp_odd
    amp_row = _robust_std(np.ascontiguousarray(row.T))
    amp_col = _robust_std(amp_resid)

    with np.errstate(invalid="ignore"):
        eo_detector = np.sqrt(np.nanmean(amp_eo**2)) if np.isfinite(amp_eo).any() else np.nan
    return {
        "even_odd": ScaleValues(np.array([eo_detector]), amp_eo, sp_even - sp_odd),
        "row": ScaleValues(np.atleast_1d(_nanmedian_rows(amp_row)), amp_row, _robust_std(sp_rows)),
        "column": ScaleValues(np.atleast_1d(_nanmedian_rows(amp_col)), amp_col, _robust_std(sp_resid)),
    }


class SuperbiasMonitor(Monitor):
    name = "superbias"
    model = "SuperbiasRefModel"
    version = "1.0.0"

    def metrics(self, model, parameters, previous=None):
        data = self.frame_array(model, "data")
        dq = self.frame_array(model, "dq")
        reducer = RegionReducer(data)
        self.require_valid(reducer.count, "data")
        out = [Metric("bias_mean", DN, reducer.mean, "mean bias level")]
        for q, values in reducer.percentiles(parameters.get("percentiles", [1, 50, 99])).items():
            out.append(Metric(f"bias_percentile_{q:g}", DN, values, f"{q:g}th percentile of the bias level"))
        structure = structure_metrics(data)
        out.append(Metric("bias_even_odd_difference", DN, structure["even_odd"],
                          "median even-column minus median odd-column bias (detector: RMS over amps)"))
        out.append(Metric("bias_row_structure", DN, structure["row"],
                          "robust std of the row-median profile (detector: median over amps)"))
        out.append(Metric("bias_column_structure", DN, structure["column"],
                          "robust std of the column-median profile after even/odd removal (detector: median over amps)"))
        flags = {f"num_{flag.lower()}_pix": int(dqflags.pixel[flag])
                 for flag in parameters.get("count_flags", ["UNRELIABLE_BIAS", "DO_NOT_USE"])}
        for name, values in count_flags(dq, flags).items():
            out.append(Metric(name, COUNT_UNIT, values, f"pixels flagged {name[4:-4].upper()}"))
        return out
