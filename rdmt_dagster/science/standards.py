"""Standards: the thresholds and tolerances the evaluators compare metrics with.

Defaults live in versioned YAML files in ``rdmt_dagster/standards/``, one per
monitor, each a single top-level block named after its monitor. A user file
with the same shape overrides any part of them (deep merge), e.g.::

    dark:
      metrics:
        dark_current_mean:
          soc: {max: 0.5}

Per metric, each key naming an evaluator (``mission``, ``soc``, ``change``,
``trend``, or one declared under ``evaluators:`` in ``common.yaml``) holds its
parameters; a ``scales:`` block overrides them per scale; ``extensive: true``
marks counts whose absolute limits are given for the whole detector and are
scaled to each region by its share of the science pixels.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

DEFAULTS_PACKAGE = "rdmt_dagster.standards"
COMMON = "common"


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path) -> dict:
    text = Path(path).read_text() if not hasattr(path, "read_text") else path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of monitor name -> block, got {type(data).__name__}")
    return data


def default_blocks() -> dict:
    """All packaged default blocks, keyed by monitor name (and ``common``)."""
    blocks: dict = {}
    for entry in sorted(resources.files(DEFAULTS_PACKAGE).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            blocks = _deep_merge(blocks, _read_yaml(entry))
    return blocks


@dataclass(frozen=True)
class MonitorStandards:
    """The merged standards of one monitor, with a content hash for provenance."""

    monitor: str
    block: dict
    evaluator_kinds: dict
    source: str

    @property
    def metrics(self) -> dict:
        return self.block.get("metrics", {})

    @property
    def parameters(self) -> dict:
        return self.block.get("parameters", {})

    @property
    def check_severity(self) -> str:
        return str(self.block.get("check_severity", "WARN")).upper()

    @cached_property
    def hash(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON of the block."""
        canonical = json.dumps(
            {"block": self.block, "evaluators": self.evaluator_kinds}, sort_keys=True, default=str
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def evaluator_params(self, metric: str, scale: str) -> dict[str, dict]:
        """Evaluator name -> parameters for one metric at one scale."""
        spec = self.metrics.get(metric, {})
        per_scale = spec.get("scales", {}).get(scale, {})
        out = {}
        for name in self.evaluator_kinds:
            params = spec.get(name)
            if name in per_scale:
                params = _deep_merge(params or {}, per_scale[name]) if per_scale[name] is not None else None
            if params is not None:
                out[name] = dict(params)
        return out

    def is_extensive(self, metric: str) -> bool:
        return bool(self.metrics.get(metric, {}).get("extensive", False))

    def as_yaml(self) -> str:
        return yaml.safe_dump({self.monitor: self.block}, sort_keys=True)


class Standards:
    """Packaged defaults, optionally overridden by a user's YAML file."""

    def __init__(self, user_file: str | Path | None = None):
        blocks = default_blocks()
        self.source = "defaults"
        if user_file:
            blocks = _deep_merge(blocks, _read_yaml(Path(user_file)))
            self.source = f"defaults+{Path(user_file).name}"
        self._blocks = blocks
        self.evaluator_kinds = dict(blocks.get(COMMON, {}).get("evaluators", {}))

    def for_monitor(self, monitor: str) -> MonitorStandards:
        if monitor not in self._blocks:
            raise KeyError(f"no standards block for monitor {monitor!r}")
        return MonitorStandards(monitor, self._blocks[monitor], self.evaluator_kinds, self.source)

    def monitors(self) -> list[str]:
        return [k for k in self._blocks if k != COMMON]
