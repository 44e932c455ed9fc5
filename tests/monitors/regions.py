"""Independent region slicing for the monitor tests (plain numpy, not the code under test)."""

import numpy as np


def science(frame):
    """float64 copy with the reference border and non-finite values as NaN."""
    s = np.array(frame, dtype=np.float64)
    s[~np.isfinite(s)] = np.nan
    s[:4, :] = s[-4:, :] = np.nan
    s[:, :4] = s[:, -4:] = np.nan
    return s


def amp_cols(k):
    """Columns of amp k (1..32)."""
    return slice(128 * (k - 1), 128 * k)


def sp_slice(i):
    """Rows and columns of super-pixel i (0..1023)."""
    y, x = divmod(i, 32)
    return slice(128 * y, 128 * (y + 1)), slice(128 * x, 128 * (x + 1))


def by_name(metrics):
    return {m.name: m for m in metrics}


def failing(checked):
    """(evaluator, metric, scale) -> failing region indices of a checked file."""
    return {(e.evaluator, e.metric, e.scale): set(np.flatnonzero(~e.passed).tolist())
            for e in checked.evaluation_set.failures}


def regions():
    """(scale, index, rows, cols) of every region, cut to the science area rows/cols 4..4091."""
    out = [("detector", 0, slice(4, 4092), slice(4, 4092))]
    for k in range(32):
        out.append(("amp", k, slice(4, 4092), slice(max(128 * k, 4), min(128 * (k + 1), 4092))))
    for j in range(32):
        for i in range(32):
            out.append(("superpixel", j * 32 + i, slice(max(128 * j, 4), min(128 * (j + 1), 4092)),
                        slice(max(128 * i, 4), min(128 * (i + 1), 4092))))
    return out


REGIONS = regions()


def expected(func, *arrays) -> dict[str, np.ndarray]:
    """``func`` of the science pixels of every region, computed region by region."""
    out = {"detector": np.zeros(1), "amp": np.zeros(32), "superpixel": np.zeros(1024)}
    for scale, index, rows, cols in REGIONS:
        out[scale][index] = func(*(a[rows, cols] for a in arrays))
    return out
