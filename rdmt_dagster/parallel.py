"""Process-level parallelism for the files of one Dagster run.

Measuring, storing and reporting a file is mostly Python-level work (asdf
decoding, astropy ECSV formatting, matplotlib), so threads serialise on the
GIL: with two threads a dark delivery's reports took 16-20 s, with two
processes about half. The pool uses ``forkserver`` with RDMT's modules
preloaded: workers start in milliseconds, and nothing is forked from the
multi-threaded Dagster run process itself.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

PRELOAD = [
    "rdmt_dagster._warm",
    "rdmt_dagster.resources",
    "rdmt_dagster.science.measure",
    "rdmt_dagster.storage.files",
    "rdmt_dagster.reports",
]


def process_map(func, items, workers: int) -> list:
    """``[func(item) for item in items]`` in up to ``workers`` processes, in order.

    Runs inline for one worker or one item. ``func`` and the items must be
    picklable (top-level functions, plain data).
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context) as pool:
        return list(pool.map(func, items))
