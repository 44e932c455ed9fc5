"""Identity of a file as read from its metadata, validated where it enters.

Metadata comes from other teams' pipelines and is untrusted: the detector
name, for one, ends up in folder names of the Parquet and ECSV stores, so
only ``WFI01`` .. ``WFI18`` is accepted and anything else is a clear per-file
error.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from .metrics import ReferenceFileInfo

DETECTORS = tuple(f"WFI{i:02d}" for i in range(1, 19))
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")


class IdentityError(ValueError):
    """Metadata that cannot identify a file (the message says which field and why)."""


def valid_detector(value) -> str:
    """Return the detector name ``WFI01`` .. ``WFI18`` from a metadata value, or raise `IdentityError`."""
    text = str(value if value is not None else "").strip().upper()
    if text in DETECTORS:
        return text
    shown = repr(str(value))[:60]
    raise IdentityError(f"meta.instrument.detector is {shown}; expected one of WFI01..WFI18")


def valid_name(value, field: str, *, default: str = "") -> str:
    """A short identifier from metadata (letters, digits, ``_ . + -``; at most 32 characters)."""
    text = str(value if value is not None else "").strip()
    if not text or text in ("?", "-999999", "None"):
        return default
    if not _NAME.fullmatch(text):
        raise IdentityError(f"{field} is {repr(text)[:60]}; expected at most 32 letters, digits or _.+-")
    return text


def utc_naive(value) -> datetime | None:
    """An astropy `Time`, datetime or ISO string as a naive UTC datetime (None when absent or unreadable)."""
    if value is None:
        return None
    try:
        if hasattr(value, "utc") and hasattr(value, "to_datetime"):
            return value.utc.to_datetime()
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    except (ValueError, TypeError, OverflowError):
        return None


def reference_identity(model, path, monitor: str) -> ReferenceFileInfo:
    """Type, detector and USEAFTER of an opened reference file."""
    path = Path(path)
    meta = model.meta
    return ReferenceFileInfo(
        filename=path.name,
        path=str(path),
        monitor=monitor,
        detector=valid_detector(getattr(getattr(meta, "instrument", None), "detector", None)),
        useafter=utc_naive(getattr(meta, "useafter", None)),
        reftype=valid_name(getattr(meta, "reftype", ""), "meta.reftype"),
    )
