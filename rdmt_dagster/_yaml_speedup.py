"""Parse the schema manifests of asdf and roman_datamodels with libyaml.

Both packages read their extension manifests with ``yaml.safe_load``, which
is PyYAML's pure-Python parser: about 0.35 s of every process's start-up
(``import roman_datamodels`` and the first file opened), measured here. The
same documents parsed by libyaml's ``CSafeLoader`` give the same Python
objects (the constructor is the same ``SafeConstructor``; only the scanner
and parser are in C) several times faster. `install` points ``yaml.safe_load``
at it when PyYAML was built with libyaml; it is called by the command line and
the worker processes before roman_datamodels is imported.
"""

from __future__ import annotations

import yaml


def _safe_load_with_libyaml(stream):
    return yaml.load(stream, Loader=yaml.CSafeLoader)  # noqa: S506 - CSafeLoader is the safe loader


def install() -> bool:
    """Use libyaml for ``yaml.safe_load`` (returns False when PyYAML has no libyaml)."""
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    yaml.safe_load = _safe_load_with_libyaml
    return True
