"""Reading files and running their monitors: a pure call, no database.

`measure_file` takes a `MeasureRequest` (a path, the monitors' parameters,
optionally the previous file to compare pixels with and the astrometric
reference catalog) and returns one `MetricSet` per monitor. Everything a
monitor needs is in the request, so the same call serves ``rdmt check``, a
worker process of a Dagster run, a Pipes subprocess or a Lambda.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .identity import IdentityError
from .metrics import FileInfo, MetricSet
from .monitor import Monitor, MonitoringError, monitored_models, monitors_for_model, registry


#: Bounds on an ASDF file's YAML tree, checked before asdf reads it: a few hundred
#: bytes of nested aliases ("billion laughs") expand to more nodes than any
#: memory holds, and asdf walks the expanded tree. Roman files have 10^3-10^5 nodes.
MAX_TREE_NODES = 5_000_000
MAX_TREE_DEPTH = 500
MAX_HEADER_BYTES = 256 * 2**20
_BLOCK_MAGIC = b"\xd3BLK"


def _yaml_header(path: Path) -> bytes:
    """The YAML part of an ASDF file (up to the end-of-document marker or the first block)."""
    markers = (b"\n...\r\n", b"\n...\n", _BLOCK_MAGIC)
    head = b""
    with open(path, "rb") as f:
        while len(head) <= MAX_HEADER_BYTES:
            chunk = f.read(2**20)
            # Search the new chunk and the few bytes before it, where a marker may straddle.
            start = max(0, len(head) - 8)
            head += chunk
            found = [head.find(m, start) for m in markers]
            ends = [at + (len(m) if m != _BLOCK_MAGIC else 0) for at, m in zip(found, markers) if at >= 0]
            if ends:
                return head[: min(ends)]
            if not chunk:
                return head
    raise MonitoringError(path, f"its YAML tree is larger than {MAX_HEADER_BYTES // 2**20} MB")


def check_yaml_tree(path) -> None:
    """Raise `MonitoringError` when an ASDF file's YAML tree is too deep or expands to too many nodes."""
    check_yaml_bytes(_yaml_header(Path(path)), path)


def check_yaml_bytes(header: bytes, name) -> None:
    """Raise `MonitoringError` (naming ``name``) when an ASDF YAML tree is too deep or expands to too many nodes.

    ``header`` is the start of the file through its YAML tree; bytes that do
    not start with ``#ASDF`` pass (asdf, or the caller, says what they are).
    The tree is scanned as a stream of YAML events (libyaml): each anchor's
    expanded size is recorded and every alias adds it, so the expanded size
    is known without building the tree.
    """
    import yaml

    if not header.startswith(b"#ASDF"):
        return  # not ASDF: asdf itself says so
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    stack: list[list] = [[None, 0]]
    try:
        for event in yaml.parse(header, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_TREE_DEPTH:
                    raise MonitoringError(name, f"its YAML tree is nested deeper than {MAX_TREE_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, size = stack.pop()
                if anchor:
                    sizes[anchor] = size
                stack[-1][1] += size
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = 1
                stack[-1][1] += 1
            elif isinstance(event, yaml.AliasEvent):
                stack[-1][1] += sizes.get(event.anchor, 1)
            else:
                continue
            if stack[-1][1] > MAX_TREE_NODES:
                raise MonitoringError(name, f"its YAML tree expands to more than {MAX_TREE_NODES:,} nodes (nested aliases)")
    except yaml.YAMLError as exc:
        raise MonitoringError(name, f"cannot be read as a Roman ASDF data model (YAML: {exc})") from None


def open_model(path):
    """Open a Roman ASDF file with roman_datamodels (arrays load on access).

    Raises
    ------
    MonitoringError
        When the path does not exist, is not a regular file (a FIFO would block
        forever), holds a YAML tree that would take forever to walk, or cannot
        be read as a Roman data model.
    """
    import roman_datamodels.datamodels as rdm

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MonitoringError(path, "does not exist") from None
    except OSError as exc:
        raise MonitoringError(path, f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise MonitoringError(path, "is not a regular file")
    check_yaml_tree(path)
    try:
        return rdm.open(path)
    except Exception as exc:  # asdf, yaml, schema and I/O errors all mean "unreadable"
        raise MonitoringError(path, f"cannot be read as a Roman ASDF data model ({type(exc).__name__}: {exc})") from exc


def monitors_of(model, path, names=None) -> list[Monitor]:
    """The monitors that read ``model`` (restricted to ``names`` when given)."""
    model_class = type(model).__name__
    monitors = monitors_for_model(model_class)
    if not monitors:
        raise MonitoringError(
            path, f"data model {model_class} is not monitored (monitored: {', '.join(monitored_models())})"
        )
    if names is not None:
        monitors = [m for m in monitors if m.name in names]
    return monitors


def _identify(monitors: list[Monitor], model, path) -> list[FileInfo]:
    try:
        return [monitor.identify(model, path) for monitor in monitors]
    except IdentityError as exc:
        raise MonitoringError(path, str(exc)) from None


def identities(model, path, names=None) -> list[FileInfo]:
    """The identity of an opened file for each of its monitors (no arrays are read)."""
    return _identify(monitors_of(model, path, names), model, path)


def describe(model, path) -> tuple[Monitor, FileInfo]:
    """The (first) monitor of an opened model and the file's identity for it."""
    monitor = monitors_of(model, path)[0]
    return monitor, _identify([monitor], model, path)[0]


@dataclass(frozen=True)
class MeasureRequest:
    """Everything needed to measure one file.

    Attributes
    ----------
    path : str
        The file.
    parameters : dict
        Monitor name -> the ``parameters`` of its standards block.
    monitors : tuple of str, optional
        Run only these monitors (default: every monitor of the file's data model).
    previous_path : str, optional
        The previous file of the same series, for monitors that compare pixels with it.
    catalog_path : str, optional
        The astrometric reference catalog (ECSV or Parquet), for monitors that need it.
    """

    path: str
    parameters: dict = field(default_factory=dict)
    monitors: tuple[str, ...] | None = None
    previous_path: str | None = None
    catalog_path: str | None = None


def _error(path: Path, exc: Exception, monitor: str = "") -> str:
    where = f"{path.name}: {monitor}: " if monitor else f"{path.name}: "
    if isinstance(exc, MonitoringError):
        return where + exc.problem
    return where + f"cannot be monitored ({type(exc).__name__}: {exc})"


def _catalog(request: MeasureRequest, monitors: list[Monitor]):
    if request.catalog_path is None or not any(m.needs_catalog for m in monitors):
        return None
    from ..l2.catalog import load_catalog

    return load_catalog(request.catalog_path)


def measure_model(model, path, request: MeasureRequest) -> list[MetricSet]:
    """Run the requested monitors on an opened model; one `MetricSet` per monitor.

    A monitor that cannot run (no catalog, no WCS, all-NaN data, ...) gives a
    `MetricSet` with ``error`` set naming the file, the monitor and the
    problem; the other monitors still run.
    """
    path = Path(path)
    monitors = monitors_of(model, path, request.monitors)
    infos = _identify(monitors, model, path)
    try:
        catalog = _catalog(request, monitors)
        catalog_error = None
    except Exception as exc:  # the catalog's own problem belongs to the monitors that need it
        catalog, catalog_error = None, exc
    prepared: dict = {}
    out = []
    for monitor, info in zip(monitors, infos):
        try:
            if monitor.needs_catalog and catalog is None:
                if catalog_error is not None:
                    raise MonitoringError(path, f"reference catalog unusable: {catalog_error}")
                raise MonitoringError(path, "needs an astrometric reference catalog (rdmt check --catalog PATH, or RDMT_L2_CATALOG)")
            key = monitor.prepare
            if key not in prepared:
                prepared[key] = monitor.prepare(model, path, catalog)
            data = prepared[key]
            parameters = request.parameters.get(monitor.name, {})
            if monitor.compares_previous_file and request.previous_path:
                with open_model(request.previous_path) as previous:
                    metrics = monitor.metrics(data, parameters, previous)
                compared = Path(request.previous_path).name
            else:
                metrics = monitor.metrics(data, parameters)
                compared = None
            out.append(MetricSet(info, monitor.version, metrics, compared_with=compared))
        except Exception as exc:  # corrupt blocks surface only when an array is read
            out.append(MetricSet(info, monitor.version, error=_error(path, exc, monitor.name if len(monitors) > 1 else "")))
    return out


def measure_file(request: MeasureRequest) -> list[MetricSet]:
    """Open ``request.path`` and run its monitors; a file that cannot be read gives one error `MetricSet`."""
    path = Path(request.path)
    try:
        with open_model(path) as model:
            return measure_model(model, path, request)
    except Exception as exc:
        monitor = request.monitors[0] if request.monitors and len(request.monitors) == 1 else ""
        return [MetricSet(FileInfo(path.name, str(path), monitor), "", error=_error(path, exc))]


def parameters_of(standards) -> dict:
    """Monitor name -> parameters, for every registered monitor with a standards block."""
    out = {}
    for name in registry():
        try:
            out[name] = standards.for_monitor(name).parameters
        except KeyError:
            out[name] = {}
    return out


def measure(path, standards_for, previous_file=None) -> MetricSet:
    """Read one reference file and compute its monitor's metrics (one monitor per file).

    Parameters
    ----------
    path : path-like
    standards_for : callable
        Monitor name -> `MonitorStandards` (its ``parameters`` drive the metrics).
    previous_file : callable, optional
        `FileInfo` -> path of the previous file of the same type and detector
        (or None); consulted only for monitors that compare pixels with it.
    """
    path = Path(path)
    try:
        with open_model(path) as model:
            monitor, info = describe(model, path)
            previous = previous_file(info) if (monitor.compares_previous_file and previous_file) else None
            request = MeasureRequest(str(path), {monitor.name: standards_for(monitor.name).parameters},
                                     (monitor.name,), previous_path=previous)
            return measure_model(model, path, request)[0]
    except Exception as exc:
        return MetricSet(FileInfo(path.name, str(path), ""), "", error=_error(path, exc))


def previous_among(infos: list[FileInfo]):
    """A function `FileInfo` -> the preceding file (by `FileInfo.order_key`) of the same series in ``infos``."""

    def previous(info: FileInfo) -> FileInfo | None:
        earlier = [i for i in infos if i.series == info.series and i.order_key < info.order_key]
        return max(earlier, key=lambda i: i.order_key) if earlier else None

    return previous
