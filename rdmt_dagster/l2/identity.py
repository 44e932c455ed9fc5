"""Identity of an L2 image: detector, optical element, exposure start, program / visit / exposure.

Read from ``meta`` and, where ``meta`` holds only placeholders, from the file
name, whose form is fixed by the archive::

    r<program:5><plan:2><pass:3><segment:3><observation:3><visit:3>_<group:2><activity:1><sequence:2>_<exposure:4>_<detector>_cal.asdf
    r0000101001001001001_01101_0001_WFI01_cal.asdf
"""

from __future__ import annotations

import re
from pathlib import Path

from ..science.identity import IdentityError, utc_naive, valid_detector, valid_name
from ..science.metrics import L2FileInfo

FILENAME = re.compile(
    r"r(?P<program>\d{5})(?P<plan>\d{2})(?P<pass>\d{3})(?P<segment>\d{3})(?P<observation>\d{3})(?P<visit>\d{3})"
    r"_(?P<group>\d{2})(?P<activity>\d)(?P<sequence>\d{2})_(?P<exposure>\d{4})_(?P<detector>WFI\d{2})"
)


def _meta(meta, *names):
    for name in names:
        meta = getattr(meta, name, None) if meta is not None else None
    return meta


def _number(value, width: int) -> str:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a float infinity
        return ""
    return f"{number:0{width}d}" if 0 <= number < 10**width else ""


def parse_filename(name: str) -> dict[str, str]:
    """Program, visit, exposure and detector from an archive file name ({} when it has another form)."""
    match = FILENAME.search(name)
    if not match:
        return {}
    g = match.groupdict()
    visit = "".join(g[k] for k in ("program", "plan", "pass", "segment", "observation", "visit"))
    return {"program": g["program"], "visit": visit, "exposure": g["exposure"], "detector": g["detector"]}


def identity_fields(name: str, *, detector, optical_element, start_time, program, visit_id, exposure) -> dict:
    """Validated identity of an L2 image from its ``meta`` values, the archive file name filling placeholders.

    Parameters
    ----------
    name : str
        The file name (of the archive form, for the fallbacks).
    detector, optical_element, start_time, program, visit_id, exposure
        ``meta.instrument.detector``, ``meta.instrument.optical_element``,
        ``meta.exposure.start_time`` (astropy `Time`, datetime or ISO string),
        ``meta.observation.program``, ``.visit_id`` and ``.exposure``; None when absent.

    Returns
    -------
    dict
        ``detector``, ``optical_element``, ``exposure_start``, ``program``, ``visit``, ``exposure``.

    Raises
    ------
    IdentityError
        When the detector is not one of WFI01..WFI18 (in ``meta`` or the name),
        or a metadata field is not a short identifier.
    """
    from_name = parse_filename(name)
    detector = detector or from_name.get("detector")
    program = _number(program, 5) or from_name.get("program", "")
    visit = valid_name(visit_id, "meta.observation.visit_id") or from_name.get("visit", "")
    exposure = _number(exposure, 4) or from_name.get("exposure", "")
    return dict(
        detector=valid_detector(detector),
        optical_element=valid_name(optical_element, "meta.instrument.optical_element"),
        exposure_start=utc_naive(start_time),
        program=program,
        visit=visit,
        exposure=exposure,
    )


def l2_identity(model, path, monitor: str) -> L2FileInfo:
    """The identity of an opened L2 image (``ImageModel``) for one monitor.

    Raises
    ------
    IdentityError
        When the detector is not one of WFI01..WFI18 (in ``meta`` or the name),
        or a metadata field is not a short identifier.
    """
    path = Path(path)
    meta = model.meta
    observation = _meta(meta, "observation")
    fields = identity_fields(
        path.name,
        detector=_meta(meta, "instrument", "detector"),
        optical_element=_meta(meta, "instrument", "optical_element"),
        start_time=_meta(meta, "exposure", "start_time"),
        program=_meta(observation, "program"),
        visit_id=_meta(observation, "visit_id"),
        exposure=_meta(observation, "exposure"),
    )
    return L2FileInfo(filename=path.name, path=str(path), monitor=monitor, **fields)


__all__ = ["IdentityError", "identity_fields", "l2_identity", "parse_filename"]
