"""Realistic synthetic WFI reference files (one module per reference type).

Used by ``rdmt demo``, the tests and the benchmarks. A detector keeps its
pixel population between deliveries (seeded by detector name); each delivery
adds fresh noise (seeded by detector and delivery number).
"""

from .dark import DarkAnomaly, DarkPopulation, dark_arrays, write_dark

DETECTORS = tuple(f"WFI{i:02d}" for i in range(1, 19))


def reference_filename(reftype: str, delivery: int, detector: str) -> str:
    """CRDS-style name; deliveries of 18 files are numbered consecutively."""
    number = (delivery - 1) * len(DETECTORS) + DETECTORS.index(detector) + 1
    return f"roman_wfi_{reftype.lower()}_{number:04d}.asdf"


def dark_filename(delivery: int, detector: str) -> str:
    return reference_filename("dark", delivery, detector)


__all__ = ["DETECTORS", "DarkAnomaly", "DarkPopulation", "dark_arrays", "dark_filename", "reference_filename", "write_dark"]
