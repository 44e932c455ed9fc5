"""Pieces shared by the synthetic reference-file generators."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ..science.scales import BORDER, FRAME_SIZE


def seed(*parts) -> int:
    """A stable random seed from names (detector; detector and delivery)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def science_indices() -> np.ndarray:
    """Flat indices of the 4088x4088 science pixels in the 4096x4096 frame."""
    idx = np.arange(FRAME_SIZE * FRAME_SIZE).reshape(FRAME_SIZE, FRAME_SIZE)
    return idx[BORDER:-BORDER, BORDER:-BORDER].ravel()


def save_reference(model_class: str, path, detector: str, delivery: int, useafter: str, label: str,
                   arrays: dict, shape=(FRAME_SIZE, FRAME_SIZE), anomalous: bool = False) -> Path:
    """Write one schema-valid reference file of ``model_class`` holding ``arrays``.

    Saved with roman_datamodels' defaults (lz4-compressed blocks), as CRDS files are.
    """
    import roman_datamodels.datamodels as rdm
    from astropy.time import Time

    model = getattr(rdm, model_class).create_fake_data(shape=shape)
    model.meta.instrument.detector = detector
    model.meta.useafter = Time(useafter)
    model.meta.description = f"Synthetic {label} for {detector}, delivery {delivery}" + (" (anomalous)" if anomalous else "")
    model.meta.author = "rdmt_dagster.synthetic"
    model.meta.pedigree = "DUMMY"
    for name, value in arrays.items():
        setattr(model, name, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path
