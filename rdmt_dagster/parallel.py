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
import os
from concurrent.futures import ProcessPoolExecutor

PRELOAD = [
    "rdmt_dagster._warm",
    "rdmt_dagster.resources",
    "rdmt_dagster.science.measure",
    "rdmt_dagster.storage.files",
    "rdmt_dagster.reports",
]


def _use_environment(environment: dict) -> None:
    """Worker initializer: the caller's environment, not the one the forkserver started with."""
    os.environ.clear()
    os.environ.update(environment)


def process_map(func, items, workers: int) -> list:
    """``[func(item) for item in items]`` in up to ``workers`` processes, in order.

    Runs inline for one worker or one item. ``func`` and the items must be
    picklable (top-level functions, plain data). The workers see the
    caller's environment as it is now: the forkserver is started once per
    process and would otherwise hand them the environment of that moment
    (an endpoint such as ``AWS_ENDPOINT_URL`` changed since, in tests).
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context,
                             initializer=_use_environment, initargs=(dict(os.environ),)) as pool:
        return list(pool.map(func, items))
