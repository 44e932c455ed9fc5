"""Standards: the thresholds and tolerances the evaluators compare metrics with.

Defaults live in versioned YAML files in ``rdmt_dagster/standards/``, each
holding one or more top-level blocks named after their monitors (plus
``common``). A user file with the same shape overrides any part of them
(deep merge), e.g.::

    dark:
      metrics:
        dark_current_mean:
          soc: {max: 0.5}

Per metric, each key naming an evaluator (``mission``, ``soc``, ``change``,
``trend``, or one declared under ``evaluators:`` in ``common.yaml``) holds its
parameters; a ``scales:`` block overrides them per scale; ``extensive: true``
marks counts whose absolute limits are given for the whole detector and are
scaled to each region by its share of the science pixels.

The merged standards are validated when they are loaded: a misspelt key or
name would otherwise leave a standard silently unapplied. Every problem is
reported, as ``FILE: key.path: what is wrong``, in one `StandardsError`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

DEFAULTS_PACKAGE = "rdmt_dagster.standards"
COMMON = "common"
EVALUATORS = "evaluators"
BLOCK_KEYS = ("check_severity", "metrics", "parameters")
SEVERITIES = ("WARN", "ERROR")
METRIC_KEYS = ("extensive", "scales")  # besides the evaluator names
KINDS = ("absolute", "change", "trend")


class StandardsError(ValueError):
    """Standards files that cannot be read or do not follow the schema.

    Parameters
    ----------
    problems : list of str
        One line per problem, ``FILE: key.path: what is wrong`` (or
        ``FILE: what is wrong`` for a file that cannot be read at all).

    Attributes
    ----------
    problems : list of str
        As given; the message is these lines joined by newlines.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------- reading


class _Loader(yaml.SafeLoader):
    """Safe YAML loading that reads ``1e5`` and ``1.0e5`` as numbers.

    YAML 1.1 (PyYAML) needs a dot and a signed exponent for a float and reads
    these as strings; YAML 1.2, like the people who write them, reads them as
    numbers.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying where and why YAML parsing failed."""
    mark = getattr(exc, "problem_mark", None)
    what = "; ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
    if mark is not None and what:
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())


def _read_yaml(path, label: str | None = None) -> dict:
    """The top-level mapping of one standards file.

    Parameters
    ----------
    path : Path or importlib Traversable
    label : str, optional
        How messages name the file (default ``str(path)``).

    Raises
    ------
    StandardsError
        The file cannot be read, is not UTF-8 text, is not YAML, or its top
        level is not a mapping.
    """
    label = label or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StandardsError([f"{label}: cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StandardsError(
            [f"{label}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise StandardsError([f"{label}: not valid YAML: {_yaml_problem(exc)}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StandardsError(
            [f"{label}: expected a mapping of monitor name -> block at the top level, got {_describe(data)}"]
        )
    return data


def default_files() -> list[tuple[str, dict]]:
    """Each packaged default file, as (its path, its content), in merge order."""
    entries = sorted(resources.files(DEFAULTS_PACKAGE).iterdir(), key=lambda p: p.name)
    return [(str(entry), _read_yaml(entry)) for entry in entries if entry.name.endswith(".yaml")]


def _merge_files(files: list[tuple[str, dict]]) -> dict:
    blocks: dict = {}
    for _, data in files:
        blocks = _deep_merge(blocks, data)
    return blocks


def default_blocks() -> dict:
    """All packaged default blocks, keyed by monitor name (and ``common``)."""
    return _merge_files(default_files())


# ----------------------------------------------------------------------------- schema


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _is_number(value) -> bool:
    # bool is a subclass of int: YAML's true would otherwise pass as the limit 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


# A value check returns what is wrong with a value, or None when it is fine.


def _number(minimum: float | None = None, above: float | None = None):
    """A real number (not a boolean, not NaN), optionally ``>= minimum`` or ``> above``."""

    def check(value) -> str | None:
        if not _is_number(value):
            return f"expected a number, got {_describe(value)}"
        if minimum is not None and value < minimum:
            return f"must be >= {minimum}, got {value}"
        if above is not None and value <= above:
            return f"must be > {above}, got {value}"
        return None

    return check


def _integer(minimum: int):
    """A whole number ``>= minimum`` (evaluators use it as a count of files)."""

    def check(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {_describe(value)}"
        if value < minimum:
            return f"must be >= {minimum}, got {value}"
        return None

    return check


def _boolean(value) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {_describe(value)}"


#: Parameters each evaluator kind reads (`rdmt_dagster.science.evaluators`), with their checks.
PARAMETERS = {
    "absolute": {"max": _number(), "min": _number()},
    "change": {"tolerance": _number(minimum=0), "floor": _number(minimum=0), "poisson_nsigma": _number(minimum=0)},
    "trend": {
        "n": _integer(1),
        "limit": _number(above=0),
        "min_history": _integer(1),
        "min_scale": _number(minimum=0),
        "floor": _number(minimum=0),
        "poisson": _boolean,
    },
}

# Defaults of `evaluate_trend`, needed to compare min_history with n when one is left out.
_TREND_DEFAULTS = {"n": 10, "min_history": 3}


def _absolute_needs(params: dict) -> list[str]:
    if "min" not in params and "max" not in params:
        return ["needs min and/or max"]
    lo, hi = params.get("min"), params.get("max")
    if _is_number(lo) and _is_number(hi) and lo > hi:
        return [f"min {lo} is above max {hi}"]
    return []


def _change_needs(params: dict) -> list[str]:
    return [] if "tolerance" in params else ["needs tolerance"]


def _trend_needs(params: dict) -> list[str]:
    # Only the last n files are looked at, so a larger min_history never lets the trend run.
    full = {**_TREND_DEFAULTS, **params}
    n, min_history = full["n"], full["min_history"]
    if _integer(1)(n) is None and _integer(1)(min_history) is None and min_history > n:
        return [f"min_history {min_history} is above n {n}: the trend would never be evaluated"]
    return []


#: What a complete set of parameters of each kind needs (after merging a scale's override).
NEEDS = {"absolute": _absolute_needs, "change": _change_needs, "trend": _trend_needs}


# ----------------------------------------------------------------------------- validation


class _Problems:
    """Problems found so far, each as (key path, what is wrong)."""

    def __init__(self):
        self.found: list[tuple[tuple, str]] = []

    def add(self, path: tuple, message: str) -> None:
        self.found.append((path, message))

    def mapping(self, path: tuple, value, what: str) -> bool:
        """Whether ``value`` is a mapping; a problem when it is not."""
        if isinstance(value, dict):
            return True
        self.add(path, f"expected a mapping of {what}, got {_describe(value)}")
        return False

    def keys(self, path: tuple, value: dict, allowed) -> None:
        """A problem for each key of ``value`` not in ``allowed``."""
        expected = ", ".join(sorted(map(str, allowed))) or "none"
        for key in value:
            if key not in allowed:
                self.add((*path, key), f"unknown key (expected {expected})")


def _suggestion(name, known) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_evaluators(problems: _Problems, common) -> dict[str, str | None] | None:
    """Check the ``common`` block.

    Returns
    -------
    dict or None
        Evaluator name -> kind, None for a declaration with a bad kind (the
        name is still declared). None when there is no usable declaration at
        all: the evaluator keys of the metrics are then left unchecked rather
        than every one of them reported.
    """
    if not problems.mapping((COMMON,), common, f"keys ({EVALUATORS})"):
        return None
    problems.keys((COMMON,), common, (EVALUATORS,))
    declared = common.get(EVALUATORS, {})
    if not problems.mapping((COMMON, EVALUATORS), declared, f"evaluator name -> kind ({', '.join(KINDS)})"):
        return None
    kinds = {}
    for name, kind in declared.items():
        path = (COMMON, EVALUATORS, name)
        if not isinstance(name, str) or name in METRIC_KEYS:
            problems.add(path, f"not a usable evaluator name ({', '.join(METRIC_KEYS)} are reserved)")
            continue
        if kind not in KINDS:
            problems.add(path, f"expected one of {', '.join(KINDS)}, got {_describe(kind)}")
        kinds[name] = kind if kind in KINDS else None
    return kinds


def _check_parameters(problems: _Problems, path: tuple, kind: str, params: dict) -> None:
    """Types and ranges of one evaluator's parameters, key by key."""
    schema = PARAMETERS[kind]
    problems.keys(path, params, schema)
    for key, value in params.items():
        message = schema[key](value) if key in schema else None
        if message:
            problems.add((*path, key), message)


def _check_evaluator(problems: _Problems, path: tuple, kind: str, params) -> bool:
    """One evaluator's block: null (off) or a mapping of parameters; whether it is a mapping."""
    if params is None:
        return False
    if not problems.mapping(path, params, f"{kind} parameters ({', '.join(PARAMETERS[kind])}) or null"):
        return False
    _check_parameters(problems, path, kind, params)
    return True


def _check_scales(problems: _Problems, path: tuple, scales, spec: dict, kinds: dict | None, scale_names) -> None:
    """A metric's per-scale overrides, and the parameters they make at each scale."""
    if not problems.mapping(path, scales, "scale name -> evaluator overrides"):
        return
    for scale, overrides in scales.items():
        where = (*path, scale)
        if scale not in scale_names:
            expected = ", ".join(sorted(scale_names))
            problems.add(where, f"unknown scale (expected {expected}){_suggestion(scale, scale_names)}")
            continue
        if not problems.mapping(where, overrides, "evaluator name -> parameters or null"):
            continue
        if kinds is not None:
            problems.keys(where, overrides, kinds)
        for name, params in overrides.items():
            kind = (kinds or {}).get(name)
            if kind and _check_evaluator(problems, (*where, name), kind, params):
                _check_scale_needs(problems, (*where, name), kind, spec.get(name), params)


def _check_scale_needs(problems: _Problems, path: tuple, kind: str, base, override: dict) -> None:
    # As `MonitorStandards.evaluator_params` merges them; what the base lacks was reported with the base.
    base = base if isinstance(base, dict) else {}
    already = set(NEEDS[kind](base)) if base else set()
    for message in NEEDS[kind](_deep_merge(base, override)):
        if message not in already:
            problems.add(path, message)


def _check_metric(problems: _Problems, path: tuple, spec, kinds: dict | None, scale_names) -> None:
    """One metric: its evaluators, ``extensive`` and ``scales``."""
    if not problems.mapping(path, spec, "evaluator name -> parameters"):
        return
    if kinds is not None:
        problems.keys(path, spec, (*kinds, *METRIC_KEYS))
    for name, params in spec.items():
        kind = (kinds or {}).get(name)
        if kind and _check_evaluator(problems, (*path, name), kind, params):
            for message in NEEDS[kind](params):
                problems.add((*path, name), message)
    if "extensive" in spec and (message := _boolean(spec["extensive"])):
        problems.add((*path, "extensive"), message)
    if "scales" in spec:
        _check_scales(problems, (*path, "scales"), spec["scales"], spec, kinds, scale_names)


def _check_block(problems: _Problems, monitor: str, block, vocabulary, kinds: dict | None, scale_names) -> None:
    """One monitor's block; ``vocabulary`` is the metric names it may configure (None: any)."""
    if not problems.mapping((monitor,), block, f"keys ({', '.join(BLOCK_KEYS)})"):
        return
    problems.keys((monitor,), block, BLOCK_KEYS)
    if "check_severity" in block:
        severity = block["check_severity"]
        if not isinstance(severity, str) or severity.upper() not in SEVERITIES:
            problems.add((monitor, "check_severity"), f"expected WARN or ERROR (any case), got {_describe(severity)}")
    if "parameters" in block:
        problems.mapping((monitor, "parameters"), block["parameters"], "parameter name -> value")
    metrics = block.get("metrics", {})
    if not problems.mapping((monitor, "metrics"), metrics, "metric name -> standards"):
        return
    for metric, spec in metrics.items():
        path = (monitor, "metrics", metric)
        if vocabulary is not None and metric not in vocabulary:
            problems.add(path, f"no such metric of monitor {monitor}{_suggestion(metric, vocabulary)}")
        else:
            _check_metric(problems, path, spec, kinds, scale_names)


def _metric_vocabulary(defaults: dict, monitor: str) -> set | None:
    """The metric names of ``monitor``: those of its packaged default block (None if that is unusable)."""
    block = defaults.get(monitor, {})
    metrics = block.get("metrics", {}) if isinstance(block, dict) else None
    return set(metrics) if isinstance(metrics, dict) else None


def _find_problems(blocks: dict, defaults: dict) -> list[tuple[tuple, str]]:
    """Every way the merged ``blocks`` break the schema; ``defaults`` define the metric names."""
    # Imported here: the monitor module imports this one.
    from .monitor import registry
    from .scales import SCALE_REGIONS

    monitors = registry()
    problems = _Problems()
    kinds = _check_evaluators(problems, blocks.get(COMMON, {}))
    scale_names = tuple(SCALE_REGIONS)
    for name, block in blocks.items():
        if name == COMMON:
            continue
        if name not in monitors:
            hint = _suggestion(name, monitors) or f" (known: {', '.join(sorted(monitors))})"
            problems.add((name,), f"no such monitor{hint}")
            continue
        _check_block(problems, name, block, _metric_vocabulary(defaults, name), kinds, scale_names)
    return problems.found


def _holds(data, path: tuple) -> bool:
    """Whether the key path exists in one file's content."""
    node = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _origin(files: list[tuple[str, dict]], path: tuple) -> str:
    """The file that gave ``path`` its merged value: the last one (in merge order) holding it."""
    for label, data in reversed(files):
        if _holds(data, path):
            return label
    return DEFAULTS_PACKAGE


def validate(files: list[tuple[str, dict]], defaults: dict | None = None) -> dict:
    """Merge standards files and check the result against the schema.

    Parameters
    ----------
    files : list of (str, dict)
        Each file's name and top-level mapping, in merge order (packaged
        defaults first, a user's file last).
    defaults : dict, optional
        The merged packaged defaults, whose blocks define each monitor's
        metric names (default: the merge of ``files``).

    Returns
    -------
    dict
        The merged blocks.

    Raises
    ------
    StandardsError
        Listing every problem, one per line, as ``FILE: key.path: problem``,
        FILE being the file that set the offending key.
    """
    blocks = _merge_files(files)
    found = _find_problems(blocks, blocks if defaults is None else defaults)
    if found:
        raise StandardsError(
            [f"{_origin(files, path)}: {'.'.join(map(str, path))}: {message}" for path, message in found]
        )
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
    """Packaged defaults, optionally overridden by a user's YAML file.

    Parameters
    ----------
    user_file : str or Path, optional
        YAML file deep-merged over the packaged defaults.

    Raises
    ------
    StandardsError
        A file cannot be read, or the merged standards break the schema
        (every problem listed; see `validate`).
    """

    def __init__(self, user_file: str | Path | None = None):
        files = default_files()
        defaults = _merge_files(files)
        self.source = "defaults"
        if user_file:
            files.append((str(user_file), _read_yaml(Path(user_file), str(user_file))))
            self.source = f"defaults+{Path(user_file).name}"
        self._blocks = validate(files, defaults)
        self.evaluator_kinds = dict(self._blocks.get(COMMON, {}).get(EVALUATORS, {}))

    def for_monitor(self, monitor: str) -> MonitorStandards:
        if monitor not in self._blocks:
            raise KeyError(f"no standards block for monitor {monitor!r}")
        return MonitorStandards(monitor, self._blocks[monitor], self.evaluator_kinds, self.source)

    def monitors(self) -> list[str]:
        return [k for k in self._blocks if k != COMMON]
