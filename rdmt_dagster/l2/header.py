"""Identity and calibration of an L2 image from the YAML tree at the start of its ASDF file.

An L2 image in the archive is a 100-300 MB ``ImageModel`` ASDF object; its
daily partition and the reference files that calibrated it are in ``meta``,
which sits in the YAML tree at the start of the file::

    #ASDF 1.0.0
    #ASDF_STANDARD 1.6.0
    %YAML 1.1
    %TAG ! tag:stsci.edu:asdf/
    --- !core/asdf-1.1.0
    roman: !<asdf://stsci.edu/datamodels/roman/tags/wfi_image-2.2.0>
      meta: ...
    ...
    <binary blocks>

`read_header` fetches only those first bytes with ranged GETs, and
`header_from_bytes` reads them. The tree comes from other teams' pipelines and
is untrusted: it is checked for alias bombs and deep nesting first
(`rdmt_dagster.science.measure.check_yaml_bytes`), then parsed by a safe
loader that builds every tagged node as the plain mapping, list or string it
is written as, so no tag ever constructs an object. The identity follows the
same rules as `rdmt_dagster.l2.identity.l2_identity`, which reads an opened
model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import yaml

from ..science.identity import IdentityError
from ..science.measure import check_yaml_bytes
from ..science.monitor import MonitoringError
from .identity import identity_fields

ASDF_MAGIC = b"#ASDF"
#: The end of the YAML document, as asdf finds it: a line that is exactly ``...``.
_TREE_END = re.compile(rb"\r?\n\.\.\.(?:\r?\n|$)")
_BLOCK_MAGIC = b"\xd3BLK"
#: Values pipelines write for "no reference file".
_PLACEHOLDERS = {"", "?", "N/A", "NA", "NONE", "-999999"}
_REFTYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: A reference file name: it is stored and shown, so no separators, spaces or control characters.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
#: A CRDS context (``roman_0123.pmap``): stored in a 64-character column.
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
#: ASDF time formats that astropy spells differently ("iso" covers astropy's iso and isot: let it guess).
_ASTROPY_FORMAT = {"iso": None}


class HeaderError(ValueError):
    """An L2 file whose header cannot be read or cannot identify it; the message is ``<file name>: <problem>``."""

    def __init__(self, filename: str, problem: str):
        self.filename = filename
        self.problem = problem
        super().__init__(f"{filename}: {problem}")

    def __reduce__(self):
        # Exceptions are pickled with their message only; this one needs both parts (Dagster runs in processes).
        return type(self), (self.filename, self.problem)


@dataclass(frozen=True)
class L2Header:
    """What the YAML tree of an L2 image says about it.

    Attributes
    ----------
    filename : str
        The file (object) name.
    detector : str
        ``WFI01`` .. ``WFI18``.
    optical_element : str
        e.g. ``F158``; "" when absent.
    exposure_start : datetime or None
        Start of the exposure, UTC (naive); None when absent or unreadable.
    program, visit, exposure : str
        From ``meta.observation``, or the archive file name where it holds placeholders.
    ref_files : dict of str to str
        Reference type (lower case: ``dark``, ``flat``, ``refpix``, ...) -> reference file name
        (no directory); types without a reference file are left out.
    crds_context : str
        The CRDS context (``roman_0123.pmap``) that chose the reference files; "" when absent.
    """

    filename: str
    detector: str
    optical_element: str
    exposure_start: datetime | None
    program: str
    visit: str
    exposure: str
    # Excluded from the hash (a dict has none); equality still compares it.
    ref_files: dict[str, str] = field(default_factory=dict, hash=False)
    crds_context: str = ""

    @property
    def observation_day(self) -> str | None:
        """``YYYY-MM-DD`` (UTC) of the exposure start: the image's daily partition; None when unknown."""
        return self.exposure_start.date().isoformat() if self.exposure_start else None


class _PlainLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A safe YAML loader that builds every tagged node (``!time/time-1.4.0``, ``!core/ndarray-1.1.0``,
    ``!<tag:stsci.edu:gwcs/wcs-1.4.0>``, ``!!python/...``) as the plain dict, list or str it is written as."""


def _plain(loader, tag_suffix, node):
    # A generator, as SafeConstructor's own: the container exists before its children, so
    # self-referencing aliases resolve and nesting costs no Python recursion.
    if isinstance(node, yaml.MappingNode):
        mapping: dict = {}
        yield mapping
        mapping.update(loader.construct_mapping(node))
    elif isinstance(node, yaml.SequenceNode):
        sequence: list = []
        yield sequence
        sequence.extend(loader.construct_sequence(node))
    else:
        yield loader.construct_scalar(node)


# "" is a prefix of every tag: it catches all tags the safe loader has no constructor of its own for.
_PlainLoader.add_multi_constructor("", _plain)
# Unquoted dates stay strings: astropy reads them, and an impossible one (2027-02-30) is no crash.
_PlainLoader.add_constructor("tag:yaml.org,2002:timestamp", _PlainLoader.construct_scalar)


def tree_end(data: bytes, *, complete: bool = True) -> int | None:
    """Where the YAML tree of an ASDF file's first bytes ends; None when it does not end in them.

    Parameters
    ----------
    data : bytes
        The first bytes of the file.
    complete : bool
        Whether ``data`` is the whole file: a ``...`` on the last line of a
        partial read may be the start of a longer line.

    Returns
    -------
    int or None
        The offset just past the end-of-document line ``...``, or of the first
        binary block when that comes first (the block magic cannot occur in
        YAML text, which is UTF-8).
    """
    ends = []
    match = _TREE_END.search(data)
    if match and (complete or match.group().endswith(b"\n")):
        ends.append(match.end())
    block = data.find(_BLOCK_MAGIC)
    if block >= 0:
        ends.append(block)
    return min(ends, default=None)


def _tree_starts(data: bytes) -> bool:
    """Whether a YAML document follows the ``#`` comment lines at the start of an ASDF file."""
    at = 0
    while data.startswith(b"#", at):
        at = data.find(b"\n", at) + 1
        if at == 0:
            return False
    return data.startswith(b"%YAML", at)


def tree_bytes(data: bytes, filename: str) -> bytes:
    """The start of an ASDF file through its YAML tree (the comment lines included: YAML skips them).

    Raises
    ------
    HeaderError
        When ``data`` is not ASDF, has no YAML tree, or its tree does not end in ``data``.
    """
    if not data.startswith(ASDF_MAGIC):
        raise HeaderError(filename, "is not an ASDF file (it does not start with '#ASDF')")
    if not _tree_starts(data):
        raise HeaderError(filename, "has no YAML tree (no '%YAML' line after the '#' comments)")
    end = tree_end(data)
    if end is None:
        raise HeaderError(filename, f"its YAML tree does not end (no line '...' in its first {len(data):,} bytes)")
    return data[:end]


def plain_tree(tree: bytes, filename: str):
    """The YAML tree as plain dicts, lists and scalars, after the bomb guard has passed it.

    Raises
    ------
    HeaderError
        When the tree is too deep, expands to too many nodes, or is not YAML.
    """
    try:
        check_yaml_bytes(tree, filename)
    except MonitoringError as exc:
        raise HeaderError(filename, exc.problem) from None
    try:
        return yaml.load(tree, Loader=_PlainLoader)
    except yaml.YAMLError as exc:
        raise HeaderError(filename, f"its YAML tree cannot be read ({str(exc)[:300]})") from None


def _get(tree, *names):
    """The value at a path of mapping keys; None where the path leaves the mappings."""
    for name in names:
        tree = tree.get(name) if isinstance(tree, dict) else None
    return tree


def time_of(node):
    """The astropy `Time` of a ``!time/time`` node; None when absent or unreadable.

    asdf-astropy writes a UTC time in a guessable format as a bare string
    (``2027-03-20T00:04:40.000``) and any other as a mapping
    ``{value, format, scale, base_format, location}``; ``base_format`` and
    ``location`` do not move the time.
    """
    from astropy.time import Time

    try:
        if isinstance(node, dict):
            fmt = node.get("format")
            time = Time(node.get("value"), format=_ASTROPY_FORMAT.get(fmt, fmt), scale=node.get("scale"))
        elif isinstance(node, str):
            time = Time(node)
        else:
            return None
    except Exception:  # astropy raises ValueError, TypeError, ScaleValueError, ... for values it cannot read
        return None
    return time if time.isscalar else None


def reference_name(value, field: str, pattern: re.Pattern = _FILE_NAME) -> str:
    """The file name of a ``meta.ref_file`` entry: a bare name, a path or a ``crds://`` URI ("" for placeholders).

    Raises
    ------
    IdentityError
        When the last part of the value is not a plain file name (a Windows path,
        ``..``, spaces or control characters).
    """
    text = str(value if value is not None else "").strip()
    if text.upper() in _PLACEHOLDERS:
        return ""
    name = text.rsplit("/", 1)[-1]
    if not pattern.fullmatch(name):
        raise IdentityError(f"{field} is {repr(text)[:60]}; expected a short file name of letters, digits and _.+-"
                            " (or a path or crds:// URI ending in one)")
    return name


def ref_files(ref_file) -> dict[str, str]:
    """Reference type -> reference file name from ``meta.ref_file``, types without a file left out.

    An entry is a name, or a mapping holding it as ``file`` or ``name``; the
    ``crds`` entry is the context (`crds_context`), not a reference file.
    """
    files: dict[str, str] = {}
    if not isinstance(ref_file, dict):
        return files
    for key, entry in ref_file.items():
        reftype = str(key).strip().lower()
        if reftype == "crds":
            continue
        if isinstance(entry, dict):
            entry = entry.get("file") or entry.get("name")
        if isinstance(entry, (dict, list)):
            continue  # no name in it: nothing calibrated the file from this entry
        name = reference_name(entry, f"meta.ref_file.{str(key)[:40]}")
        if not name:
            continue
        if not _REFTYPE.fullmatch(reftype):
            raise IdentityError(f"meta.ref_file has the key {repr(str(key))[:60]}; expected a reference type such as 'dark'")
        files[reftype] = name
    return files


def crds_context(ref_file) -> str:
    """The CRDS context of ``meta.ref_file.crds`` (``context``, else ``context_used``); "" when absent."""
    for key in ("context", "context_used"):
        name = reference_name(_get(ref_file, "crds", key), f"meta.ref_file.crds.{key}", _CONTEXT_NAME)
        if name:
            return name
    return ""


def header_from_tree(tree, filename: str) -> L2Header:
    """The `L2Header` of a plain YAML tree (as `plain_tree` gives).

    Raises
    ------
    HeaderError
        When the tree holds no ``roman.meta`` mapping, or its metadata cannot identify the file.
    """
    meta = _get(tree, "roman", "meta")
    if not isinstance(meta, dict):
        raise HeaderError(filename, "is not a Roman data model (its YAML tree has no roman.meta mapping)")
    observation = _get(meta, "observation")
    try:
        fields = identity_fields(
            filename,
            detector=_get(meta, "instrument", "detector"),
            optical_element=_get(meta, "instrument", "optical_element"),
            start_time=time_of(_get(meta, "exposure", "start_time")),
            program=_get(observation, "program"),
            visit_id=_get(observation, "visit_id"),
            exposure=_get(observation, "exposure"),
        )
        references = meta.get("ref_file")
        return L2Header(filename=filename, **fields, ref_files=ref_files(references),
                        crds_context=crds_context(references))
    except IdentityError as exc:
        raise HeaderError(filename, str(exc)) from None


def header_from_bytes(data: bytes, filename: str) -> L2Header:
    """The `L2Header` of an L2 image from the first bytes of its ASDF file.

    Parameters
    ----------
    data : bytes
        The file's first bytes, through the end of its YAML tree (the whole file will do).
    filename : str
        The file name: for the identity fallbacks and the error messages.

    Raises
    ------
    HeaderError
        When ``data`` is not ASDF, its YAML tree is missing, unterminated,
        hostile (alias bomb, deep nesting) or not YAML, it is not a Roman data
        model, or its metadata cannot identify the file (detector not
        WFI01..WFI18, a reference file name that is a path, ...).
    """
    return header_from_tree(plain_tree(tree_bytes(data, filename), filename), filename)


def _object_size(response) -> int:
    """The whole object's size from a GET response (``Content-Range: bytes 0-1023/<size>``)."""
    content_range = response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else int(response["ContentLength"])


def _get_range(s3, bucket: str, key: str, start: int, stop: int, etag: str | None, filename: str):
    """Bytes ``start`` .. ``stop - 1`` of an object, with the object's size and ETag.

    Raises
    ------
    HeaderError
        When the object does not exist or is empty.
    botocore.exceptions.ClientError
        Any other S3 error (a missing bucket, no access, an outage, the object
        replaced between two reads): not a problem of the file.
    """
    from botocore.exceptions import ClientError

    request = {"Bucket": bucket, "Key": key, "Range": f"bytes={start}-{stop - 1}"}
    if etag:
        # Parts of two versions of an object are no file: a replaced object fails this read (412).
        request["IfMatch"] = etag
    try:
        response = s3.get_object(**request)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            raise HeaderError(filename, f"does not exist (s3://{bucket}/{key})") from None
        if code == "InvalidRange" and start == 0:
            raise HeaderError(filename, "is empty, not an ASDF file") from None
        raise
    ranged = "ContentRange" in response
    body = response["Body"]
    try:
        # Read no more than asked for, even from a server that ignores Range and sends the whole object.
        chunk = body.read(stop - start) if ranged else body.read(stop)[start:]
    finally:
        body.close()
    return chunk, _object_size(response), response.get("ETag")


def head_of_object(s3, bucket: str, key: str, *, first_bytes: int = 262144, max_bytes: int = 16 * 2**20) -> bytes:
    """The first bytes of an S3 object through its ASDF YAML tree, by ranged GETs of doubling size.

    Reading stops when the tree's end is in the bytes read, the bytes are not
    ASDF, or the object ends.

    Raises
    ------
    HeaderError
        When the object does not exist or is empty, or its tree is not within ``max_bytes``.
    """
    filename = key.rsplit("/", 1)[-1] or key
    if first_bytes < 1 or max_bytes < 1:
        raise ValueError(f"first_bytes and max_bytes must be positive, not {first_bytes} and {max_bytes}")
    data = b""
    etag = None
    want = min(first_bytes, max_bytes)
    while True:
        chunk, size, etag = _get_range(s3, bucket, key, len(data), want, etag, filename)
        data += chunk
        complete = len(data) >= size or not chunk
        if complete or tree_end(data, complete=False) is not None:
            return data
        if len(data) >= len(ASDF_MAGIC) and not data.startswith(ASDF_MAGIC):
            return data  # not ASDF: no need to read on to say so
        if len(data) >= max_bytes:
            raise HeaderError(filename, f"YAML tree longer than {max_bytes:,} bytes (no line '...' within them)")
        want = min(2 * len(data), max_bytes)


def read_header(s3, bucket: str, key: str, *, first_bytes: int = 262144, max_bytes: int = 16 * 2**20) -> L2Header:
    """The `L2Header` of an L2 image in S3, reading only the first bytes of the object.

    Parameters
    ----------
    s3 : botocore client
        ``boto3.client("s3")``.
    bucket, key : str
        The object; its file name is the last part of ``key``.
    first_bytes : int
        Bytes of the first ranged GET (a Roman L2 tree is some tens of kB);
        each further GET doubles the bytes read.
    max_bytes : int
        Give up when the YAML tree has not ended within this many bytes.

    Raises
    ------
    HeaderError
        When the object does not exist, its tree is longer than ``max_bytes``,
        or `header_from_bytes` refuses its first bytes.
    botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
        Other S3 errors, which say nothing about the file.
    """
    filename = key.rsplit("/", 1)[-1] or key
    data = head_of_object(s3, bucket, key, first_bytes=first_bytes, max_bytes=max_bytes)
    return header_from_bytes(data, filename)


__all__ = ["HeaderError", "L2Header", "header_from_bytes", "read_header"]
