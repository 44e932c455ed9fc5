"""A CRDS stand-in server on loopback, for the tests and ``rdmt demo``.

It speaks the part of the CRDS protocol that the official ``crds`` client
(14.x) uses, so that the real client code runs against it:

* JSON-RPC 1.0 over HTTP POST at ``<url>/json/<method>/<id>/`` (the client's
  ``CheckingProxy``): ``get_default_context``, ``get_server_info``,
  ``get_mapping_names``, ``get_reference_names``, ``get_file_info``,
  ``get_file_info_map``, ``get_url``, ``get_context_history``,
  ``list_mappings``, ``list_references``. As on the real server, the context
  history lists when each context became the default (microsecond dates), not
  every context written: a delivery with ``make_default=False`` enters it
  when `set_default` makes it the default. Answers are
  ``{"jsonrpc": "1.0", "id": ..., "result": ..., "error": null}``; failures
  put ``{"message": ...}`` in ``error``.
* ``get_server_info`` carries what ``crds.client.api`` needs to download:
  ``mapping_url`` / ``reference_url`` per observatory (the files are served
  by GET at ``/unchecked_get/mappings/roman/<name>`` and
  ``/unchecked_get/references/roman/<name>``, as on the real server), and
  ``download_metadata`` (``crds_encode``-d ``{name: {size, sha1sum}}``), which
  the client uses to verify every download.
* Mapping files (``roman_NNNN.pmap`` -> ``roman_wfi_NNNN.imap`` ->
  ``roman_wfi_dark_NNNN.rmap``) in the real CRDS syntax, with the CRDS
  ``sha1sum`` header; rmap headers come from the rmap templates packaged in
  ``crds/roman/specs`` (parkeys, classes ``Match``/``UseAfter``).

`CRDSStandIn.deliver` adds reference files and makes a new default context,
as a CRDS delivery does. Failure modes for tests: `stop` (connection
refused; `start` again binds the same port), ``mode = "unavailable"`` (HTTP
503 for everything), ``mode = "garbage"`` (HTML instead of JSON, corrupted
file bytes), ``mode = "garbage_files"`` (JSON-RPC fine, file bytes
corrupted) and ``delay`` (seconds before every answer).

Example::

    with CRDSStandIn(root) as crds:
        os.environ["CRDS_SERVER_URL"] = crds.url
        context = crds.deliver(["roman_wfi_dark_0001.asdf"])
"""

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OBSERVATORY = "roman"
MAPPINGS_ROUTE = f"/unchecked_get/mappings/{OBSERVATORY}/"
REFERENCES_ROUTE = f"/unchecked_get/references/{OBSERVATORY}/"
MODES = ("ok", "unavailable", "garbage", "garbage_files")
DEFAULT_USEAFTER = "2020-01-01 00:00:00"
GARBAGE_HTML = b"<html><body><h1>Proxy error</h1>upstream sent garbage</body></html>"


@dataclass(frozen=True)
class Delivered:
    """One reference file known to the stand-in and its place in the rules."""

    name: str
    instrument: str  # lower case, e.g. "wfi"
    reftype: str  # lower case, e.g. "dark"
    match: tuple  # values of the rmap's Match parkeys
    useafter: str  # "YYYY-MM-DD HH:MM:SS"
    size: int
    sha1sum: str


def _sha1_file(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum_text(text: str) -> str:
    """The CRDS mapping checksum: sha1 of every line except the sha1sum line."""
    body = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
    return hashlib.sha1(body.encode("utf-8")).hexdigest()


def _format_dict(values: dict, indent: int = 0) -> str:
    pad = " " * 4 * indent
    lines = ["{"]
    for key, value in sorted(values.items()):
        text = _format_dict(value, indent + 1) if isinstance(value, dict) else repr(value)
        lines.append(f"{pad}    {key!r} : {text},")
    lines.append(pad + "}")
    return "\n".join(lines)


def _with_checksum(header: dict, selector_text: str) -> str:
    header = dict(header, sha1sum="0" * 40)
    text = f"header = {_format_dict(header)}\n\nselector = {selector_text}\n"
    return text.replace("0" * 40, _checksum_text(text), 1)


def _lookup(tree, dotted: str):
    """``tree['meta']['exposure']['type']`` for ``"meta.exposure.type"``, or None."""
    node = tree
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _useafter_text(value) -> str:
    if value is None:
        return DEFAULT_USEAFTER
    if isinstance(value, dict):  # an untagged astropy Time
        value = value.get("value", value.get("base"))
    if hasattr(value, "datetime"):
        value = value.datetime
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "").split(".")[0].replace(" ", "T"))
    return value.strftime("%Y-%m-%d %H:%M:%S")


def read_reference_meta(path) -> dict:
    """The ``roman.meta`` tree of an ASDF reference file (YAML only, no arrays read)."""
    import asdf.util

    tree = asdf.util.load_yaml(str(path), tagged=False)
    meta = _lookup(tree, "roman.meta")
    if not isinstance(meta, dict):
        raise ValueError(f"{Path(path).name}: no roman.meta in its ASDF tree")
    return meta


def _rmap_template(instrument: str, reftype: str) -> dict:
    """The packaged CRDS rmap header of ``instrument``/``reftype``, or a generic one."""
    try:
        from crds.core import rmap

        spec = Path(rmap.__file__).parents[1] / OBSERVATORY / "specs" / f"{instrument}_{reftype}.rmap"
        if spec.exists():
            return dict(rmap.ReferenceMapping.from_string(spec.read_text(), spec.name, ignore_checksum=True).header)
    except Exception:  # noqa: BLE001 - fall back to a generic header
        pass
    return {
        "classes": ("Match", "UseAfter"),
        "file_ext": ".asdf",
        "filekind": reftype.upper(),
        "filetype": reftype.upper(),
        "instrument": instrument.upper(),
        "mapping": "REFERENCE",
        "observatory": OBSERVATORY.upper(),
        "parkey": (("ROMAN.META.INSTRUMENT.DETECTOR",), ("ROMAN.META.EXPOSURE.START_TIME",)),
        "suffix": reftype,
        "text_descr": reftype,
    }


def _match_value(parkey: str, meta: dict, detector: str | None):
    """Value of one Match parkey (``ROMAN.META.INSTRUMENT.DETECTOR``) for a file."""
    dotted = parkey.lower().removeprefix("roman.meta.")
    if dotted == "instrument.detector" and detector:
        return detector.upper()
    if dotted == "exposure.type":
        pattern = _lookup(meta, "exposure.p_exptype")
        if pattern:
            return str(pattern).rstrip("|")
    value = _lookup(meta, dotted)
    return "N/A" if value in (None, "") else str(value)


class CRDSStandIn:
    """A threaded HTTP server on 127.0.0.1 that behaves like a Roman CRDS server.

    Parameters
    ----------
    root : path, optional
        Where the served mappings and references are stored (a temporary
        folder, removed by `close`, when not given).
    port : int
        0 picks a free port; `start` after `stop` reuses the same one.
    """

    def __init__(self, root=None, host: str = "127.0.0.1", port: int = 0):
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="crds-standin-")).resolve()
        self.mapping_dir = self.root / "mappings" / OBSERVATORY
        self.reference_dir = self.root / "references" / OBSERVATORY
        self.mapping_dir.mkdir(parents=True, exist_ok=True)
        self.reference_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[str] = []  # RPC method names and GET paths, in order
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._serial: dict[str, int] = {}
        self._references: dict[str, Delivered] = {}
        self._rules: dict[tuple[str, str], dict[tuple, dict[str, str]]] = {}  # (instr, type) -> match -> ua -> name
        self._rmaps: dict[tuple[str, str], str] = {}
        self._imaps: dict[str, str] = {}
        self._contexts: list[tuple[str, str, str]] = []  # (date, pmap, description)
        self._history: list[tuple[str, str, str]] = []  # (date, pmap, description) of each new default
        self._last_stamp = ""
        self._mapping_closure: dict[str, list[str]] = {}
        self._mapping_meta: dict[str, tuple[int, str]] = {}
        self._make_default(self._new_context({}, "initial (empty) context"), "initial (empty) context")

    # -- life cycle -------------------------------------------------------
    @property
    def url(self) -> str:
        """Value for ``CRDS_SERVER_URL``."""
        if not self.port:
            raise RuntimeError("the stand-in has not been started")
        # "localhost" (resolved to 127.0.0.1) spares the client's warning about plain http.
        host = "localhost" if self.host == "127.0.0.1" else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "CRDSStandIn":
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="crds-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: clients get 'connection refused' until `start`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "CRDSStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- content ----------------------------------------------------------
    @property
    def contexts(self) -> list[str]:
        """Every context, oldest first."""
        with self._lock:
            return [c for _, c, _ in self._contexts]

    def references(self, context: str | None = None) -> list[str]:
        """Reference names of ``context`` (default: the default context)."""
        with self._lock:
            context = context or self.default_context
            names = set()
            for mapping in self._mapping_closure[context]:
                if mapping.endswith(".rmap"):
                    names.update(self._rmap_references(mapping))
            return sorted(names)

    def set_default(self, context: str, description: str = "set as the default") -> None:
        """Make ``context`` the default (also an earlier one: a rollback)."""
        with self._lock:
            if context not in self._mapping_closure:
                raise KeyError(f"unknown context {context}")
            self._make_default(context, description)

    def _make_default(self, context: str, description: str) -> None:
        self.default_context = context
        self._history.append((self._stamp(), context, description))

    def _stamp(self) -> str:
        """Now, strictly after the previous stamp: the client orders the history by date."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        if stamp <= self._last_stamp:
            last = datetime.strptime(self._last_stamp, "%Y-%m-%d %H:%M:%S.%f")
            stamp = (last + timedelta(microseconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        self._last_stamp = stamp
        return stamp

    def deliver(self, paths, reftype: str | None = None, detector: str | None = None,
                instrument: str | None = None, useafter: str | None = None,
                make_default: bool = True, description: str = "delivery") -> str:
        """Add reference files; write new rmaps, imaps and pmap; return the new context.

        Type, instrument, detector and USEAFTER are read from each file's
        ``roman.meta`` unless given. A file replaces the one with the same
        Match values and USEAFTER, as in CRDS.
        """
        entries = []
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file to deliver")
            meta = {} if (reftype and instrument and detector) else read_reference_meta(path)
            kind = (reftype or _lookup(meta, "reftype") or "").lower()
            instr = (instrument or _lookup(meta, "instrument.name") or "wfi").lower()
            if not kind:
                raise ValueError(f"{path.name}: no meta.reftype; pass reftype=")
            entries.append((path, meta, instr, kind))
        with self._lock:
            for path, _, _, _ in entries:
                if path.name in self._references:
                    raise ValueError(f"{path.name} is already in CRDS (names are never reused)")
            changed = set()
            for path, meta, instr, kind in entries:
                template = _rmap_template(instr, kind)
                match_keys = template["parkey"][0] if template["parkey"] else ()
                det = detector or _lookup(meta, "instrument.detector")
                match = tuple(_match_value(k, meta, det) for k in match_keys)
                when = _useafter_text(useafter or _lookup(meta, "useafter"))
                target = self.reference_dir / path.name
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
                self._references[path.name] = Delivered(
                    path.name, instr, kind, match, when, target.stat().st_size, _sha1_file(target))
                self._rules.setdefault((instr, kind), {}).setdefault(match, {})[when] = path.name
                changed.add((instr, kind))
            for key in sorted(changed):
                self._rmaps[key] = self._write_rmap(*key)
            for instr in sorted({i for i, _ in changed}):
                self._imaps[instr] = self._write_imap(instr)
            context = self._new_context(dict(self._imaps), description)
            if make_default:
                self._make_default(context, description)
            return context

    # -- mapping files ----------------------------------------------------
    def _next_name(self, base: str, ext: str) -> str:
        self._serial[base] = self._serial.get(base, 0) + 1
        return f"{base}_{self._serial[base]:04d}{ext}"

    def _store_mapping(self, name: str, text: str) -> None:
        (self.mapping_dir / name).write_text(text)
        data = text.encode("utf-8")
        self._mapping_meta[name] = (len(data), hashlib.sha1(data).hexdigest())

    def _write_rmap(self, instrument: str, reftype: str) -> str:
        previous = self._rmaps.get((instrument, reftype))
        name = self._next_name(f"{OBSERVATORY}_{instrument}_{reftype}", ".rmap")
        header = _rmap_template(instrument, reftype)
        header.pop("sha1sum", None)
        header.update(name=name, derived_from=previous or "generated by rdmt_dagster.crds_standin")
        lines = ["Match({"]
        for match, useafters in sorted(self._rules[(instrument, reftype)].items()):
            lines.append(f"    {match!r} : UseAfter({{")
            for when, ref in sorted(useafters.items()):
                lines.append(f"        {when!r} : {ref!r},")
            lines.append("    }),")
        lines.append("})")
        self._store_mapping(name, _with_checksum(header, "\n".join(lines)))
        self._mapping_closure[name] = [name]
        return name

    def _write_imap(self, instrument: str) -> str:
        previous = self._imaps.get(instrument)
        name = self._next_name(f"{OBSERVATORY}_{instrument}", ".imap")
        selector = {kind: rmap for (instr, kind), rmap in self._rmaps.items() if instr == instrument}
        header = {
            "derived_from": previous or "generated by rdmt_dagster.crds_standin",
            "instrument": instrument.upper(),
            "mapping": "INSTRUMENT",
            "name": name,
            "observatory": OBSERVATORY.upper(),
            "parkey": ("REFTYPE",),
        }
        self._store_mapping(name, _with_checksum(header, _format_dict(selector)))
        self._mapping_closure[name] = sorted([name, *selector.values()])
        return name

    def _new_context(self, imaps: dict, description: str) -> str:
        previous = self._contexts[-1][1] if self._contexts else None
        name = self._next_name(OBSERVATORY, ".pmap")
        header = {
            "derived_from": previous or "generated by rdmt_dagster.crds_standin",
            "mapping": "PIPELINE",
            "name": name,
            "observatory": OBSERVATORY.upper(),
            "parkey": ("ROMAN.META.INSTRUMENT.NAME",),
        }
        selector = {instr.upper(): imap for instr, imap in imaps.items()}
        self._store_mapping(name, _with_checksum(header, _format_dict(selector)))
        closure = {name}
        for imap in imaps.values():
            closure.update(self._mapping_closure[imap])
        self._mapping_closure[name] = sorted(closure)
        self._contexts.append((self._stamp(), name, description))
        return name

    def _rmap_references(self, rmap_name: str) -> set[str]:
        text = (self.mapping_dir / rmap_name).read_text()
        return set(re.findall(r"'([^']+\.asdf)'", text))

    # -- JSON-RPC ---------------------------------------------------------
    def _file_meta(self, name: str) -> tuple[int, str] | None:
        if name in self._mapping_meta:
            return self._mapping_meta[name]
        ref = self._references.get(name)
        return None if ref is None else (ref.size, ref.sha1sum)

    def _file_info(self, name: str) -> dict | str:
        meta = self._file_meta(name)
        if meta is None:
            return "NOT FOUND"
        ref = self._references.get(name)
        return {
            "name": name, "size": str(meta[0]), "sha1sum": meta[1], "observatory": OBSERVATORY,
            "instrument": ref.instrument if ref else "", "filekind": ref.reftype if ref else "",
            "type": "reference" if ref else "mapping", "state": "archived", "rejected": "false",
            "blacklisted": "false", "useafter_date": ref.useafter if ref else "",
        }

    def rpc(self, method: str, params):
        """Answer one JSON-RPC call (the dispatch behind ``/json/``)."""
        args, kwargs = (params, {}) if isinstance(params, list) else ([], dict(params or {}))
        handler = getattr(self, f"_rpc_{method}", None)
        if handler is None:
            raise LookupError(f"method {method!r} is not provided by the CRDS stand-in")
        with self._lock:
            return handler(*args, **kwargs)

    def _check_observatory(self, observatory):
        if observatory not in (None, OBSERVATORY):
            raise ValueError(f"this server serves {OBSERVATORY!r}, not {observatory!r}")

    def _check_context(self, context):
        if context not in self._mapping_closure:
            raise ValueError(f"unknown context {context!r}")

    def _rpc_get_default_context(self, observatory=None, state=None):
        self._check_observatory(observatory)
        if state == "edit":
            return self._contexts[-1][1]
        return self.default_context

    def _rpc_get_server_info(self):
        from crds.client.proxy import crds_encode

        base = self.url
        metadata = {name: {"size": str(size), "sha1sum": sha} for name, (size, sha) in self._mapping_meta.items()}
        metadata.update({r.name: {"size": str(r.size), "sha1sum": r.sha1sum} for r in self._references.values()})
        return {
            "observatory": OBSERVATORY,
            "operational_context": self.default_context,
            "latest_context": self.default_context,
            "edit_context": self._contexts[-1][1],
            "versions_context": self.default_context,
            "bad_files": "",
            "bad_files_list": [],
            "force_remote_mode": False,
            "max_headers_per_rpc": 500,
            "mappings": sorted(self._mapping_meta),
            "crds_version": {"str": "rdmt-crds-standin", "version": "14.0"},
            "mapping_url": {OBSERVATORY: base + MAPPINGS_ROUTE},
            "reference_url": {OBSERVATORY: base + REFERENCES_ROUTE},
            "download_metadata": crds_encode(metadata),
            "context_history": [list(c) for c in self._history],
        }

    def _rpc_get_mapping_names(self, context):
        self._check_context(context)
        return list(self._mapping_closure[context])

    def _rpc_get_reference_names(self, context):
        self._check_context(context)
        return self.references(context)

    def _rpc_get_file_info(self, context, filename):
        info = self._file_info(filename)
        if isinstance(info, str):
            raise ValueError(f"file {filename!r} is not known to CRDS")
        return info

    def _rpc_get_file_info_map(self, observatory=None, files=None, fields=None):
        self._check_observatory(observatory)
        names = files if files is not None else sorted({*self._mapping_meta, *self._references})
        out = {}
        for name in names:
            info = self._file_info(name)
            if isinstance(info, dict) and fields:
                info = {k: v for k, v in info.items() if k in fields}
            out[name] = info
        return out

    def _rpc_get_url(self, context, filename):
        if filename in self._mapping_meta:
            return self.url + MAPPINGS_ROUTE + filename
        if filename in self._references:
            return self.url + REFERENCES_ROUTE + filename
        raise ValueError(f"file {filename!r} is not known to CRDS")

    def _rpc_get_context_history(self, observatory=None):
        self._check_observatory(observatory)
        return [list(c) for c in self._history]

    def _rpc_list_mappings(self, observatory=None, glob_pattern="*"):
        return sorted(n for n in self._mapping_meta if fnmatch.fnmatch(n, glob_pattern))

    def _rpc_list_references(self, observatory=None, glob_pattern="*"):
        return sorted(n for n in self._references if fnmatch.fnmatch(n, glob_pattern))

    def file_path(self, route_path: str) -> Path | None:
        """Local path of a ``GET`` under the mapping or reference route."""
        for route, folder in ((MAPPINGS_ROUTE, self.mapping_dir), (REFERENCES_ROUTE, self.reference_dir)):
            if route_path.startswith(route):
                name = route_path[len(route):]
                if "/" in name or name.startswith("."):
                    return None
                path = folder / name
                return path if path.is_file() else None
        return None


class _Handler(BaseHTTPRequestHandler):
    standin: CRDSStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _failing(self) -> bool:
        standin = self.standin
        if standin.delay:
            threading.Event().wait(standin.delay)
        if standin.mode == "unavailable":
            self._send(503, b"<html><body>503 Service Unavailable</body></html>", "text/html")
            return True
        return False

    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.startswith("/json/"):
            self._send(404, b"not found", "text/plain")
            return
        try:
            request = json.loads(raw)
            method, params, rid = request["method"], request.get("params", []), request.get("id")
        except (ValueError, KeyError, TypeError):
            self._send(400, b"bad JSON-RPC request", "text/plain")
            return
        self.standin.requests.append(method)
        if self._failing():
            return
        if self.standin.mode == "garbage":
            self._send(200, GARBAGE_HTML, "text/html")
            return
        try:
            answer = {"jsonrpc": "1.0", "id": rid, "result": self.standin.rpc(method, params), "error": None}
        except Exception as exc:  # noqa: BLE001 - reported to the client as a JSON-RPC error
            answer = {"jsonrpc": "1.0", "id": rid, "result": None,
                      "error": {"name": type(exc).__name__, "message": str(exc)}}
        self._send(200, json.dumps(answer).encode("utf-8"), "application/json")

    def do_GET(self):  # noqa: N802 - http.server API
        self.standin.requests.append(self.path)
        if self._failing():
            return
        path = self.standin.file_path(self.path)
        if path is None:
            self._send(404, b"not found", "text/plain")
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.standin.mode in ("garbage", "garbage_files"):
            self.wfile.write((GARBAGE_HTML * (size // len(GARBAGE_HTML) + 1))[:size])
            return
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, self.wfile, 1 << 20)
