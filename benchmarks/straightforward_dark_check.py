"""The dark metrics of ``rdmt check`` written the straightforward way: the baseline of the check benchmark.

    .venv/bin/python benchmarks/straightforward_dark_check.py FILE... > out.json

For each dark: the mean and the 50/90/95/99th percentiles of the science
pixels' dark rate and the DEAD / HOT / WARM counts, for the detector, the 32
amps and the 1024 super-pixels, with numpy's nan-aware functions, printed as
JSON. No evaluation: `rdmt check` does that work and more.
"""

import json
import sys

import numpy as np
import roman_datamodels.datamodels as rdm
from roman_datamodels.dqflags import pixel

FLAGS = {"dead": pixel.DEAD, "hot": pixel.HOT, "warm": pixel.WARM}


def regions():
    yield "detector", 0, (slice(4, 4092), slice(4, 4092))
    for k in range(32):
        yield "amp", k + 1, (slice(4, 4092), slice(max(4, 128 * k), min(4092, 128 * (k + 1))))
    for i in range(1024):
        y, x = divmod(i, 32)
        yield "superpixel", i, (slice(max(4, 128 * y), min(4092, 128 * (y + 1))), slice(max(4, 128 * x), min(4092, 128 * (x + 1))))


def metrics(path):
    with rdm.open(path) as model:
        rate = np.asarray(model.dark_slope, dtype=np.float64)
        dq = np.asarray(model.dq)
    rate[~np.isfinite(rate)] = np.nan
    rows = []
    for scale, region, window in regions():
        values = rate[window]
        row = {"scale": scale, "region": region, "mean": float(np.nanmean(values))}
        for q, v in zip((50, 90, 95, 99), np.nanpercentile(values, [50, 90, 95, 99])):
            row[f"p{q}"] = float(v)
        for name, bit in FLAGS.items():
            row[name] = int(np.count_nonzero(dq[window] & bit))
        rows.append(row)
    return {"file": path, "metrics": rows}


if __name__ == "__main__":
    json.dump([metrics(p) for p in sys.argv[1:]], sys.stdout)
