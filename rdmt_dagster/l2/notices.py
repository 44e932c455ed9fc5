"""Notices of new L2 files, as they arrive in the SQS queue: parsed and validated.

Three bodies are accepted, all untrusted:

* the archive's notice inside an SNS envelope: ``{"Type": "Notification",
  "Message": "<JSON>"}`` whose message holds ``archiveBucket``,
  ``archiveObjectKey``, ``filename``, ``fileType`` (``science_wfi_level_2``
  is monitored; ``guide_window_wfi_level_1`` is known and ignored),
  ``fileCreationTimestamp`` (``%Y-%m-%dT%H:%M:%S.%fZ``), ``reprocessingState``
  (``none``, ``reprocessed``, ``data_release``), ``checksum`` and
  ``fileSize``;
* an S3 event notification, ``{"Records": [{"s3": {"bucket": {"name"},
  "object": {"key", "size", "eTag"}}}]}`` (raw, or inside an SNS envelope);
* the minimal ``{"bucket", "key", "monitors"}``.

`parse_notice` returns the notices of one message body or raises
`NoticeError` with the reason; nothing from a body is used before it is
validated (bucket names by S3's rules, keys of printable characters without
``..`` segments, file names of L2 images).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote_plus

MONITORED_TYPE = "science_wfi_level_2"
KNOWN_TYPES = (MONITORED_TYPE, "guide_window_wfi_level_1")
REPROCESSING_STATES = ("none", "reprocessed", "data_release")
MAX_BODY_BYTES = 256 * 1024  # SQS's own limit

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}_cal\.asdf")
_CHECKSUM = re.compile(r"[A-Za-z0-9+/=:_-]{1,128}")
_MONITOR = re.compile(r"[a-z][a-z0-9_]{0,63}")


class NoticeError(ValueError):
    """A message body that announces no monitorable file (the message says why)."""


@dataclass(frozen=True)
class L2Notice:
    """One announced L2 file.

    Attributes
    ----------
    bucket, key : str
        Where the file is in S3.
    filename : str
        Its base name (``r..._WFI07_cal.asdf``).
    created : datetime or None
        ``fileCreationTimestamp`` (naive UTC).
    reprocessing : str
        ``none``, ``reprocessed`` or ``data_release``.
    checksum : str
        The archive's checksum, or the S3 ETag; "" when the notice has none.
    size : int or None
        Bytes.
    monitors : tuple of str or None
        Monitors to run (the minimal notice); None for all.
    """

    bucket: str
    key: str
    filename: str
    created: datetime | None = None
    reprocessing: str = "none"
    checksum: str = ""
    size: int | None = None
    monitors: tuple[str, ...] | None = None

    @property
    def identity(self) -> tuple[str, ...]:
        """What makes two notices the same file: at-least-once delivery repeats it.

        A reprocessing announces the file again, usually with a new checksum,
        but not necessarily: its state and creation time keep it apart from
        the first notice (and from the next release), while a repeat of the
        same notice stays the same.
        """
        if self.reprocessing == "none":
            return (self.bucket, self.key, self.checksum)
        created = self.created.isoformat() if self.created else ""
        return (self.bucket, self.key, self.checksum, self.reprocessing, created)


def _text(value, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise NoticeError(f"{field} is missing or not a string")
    return value


def valid_bucket(value) -> str:
    bucket = _text(value, "bucket")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise NoticeError(f"bucket {bucket[:70]!r} is not a valid S3 bucket name")
    return bucket


def valid_key(value) -> str:
    key = _text(value, "key")
    if len(key) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise NoticeError(f"key {key[:70]!r} is too long or holds control characters")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise NoticeError(f"key {key[:70]!r} has an empty, '.' or '..' segment")
    return key


def valid_filename(value, key: str) -> str:
    name = _text(value, "filename")
    if not _FILENAME.fullmatch(name):
        raise NoticeError(f"filename {name[:70]!r} is not an L2 image name (*_cal.asdf)")
    if key.rsplit("/", 1)[-1] != name:
        raise NoticeError(f"filename {name!r} does not end the key {key[:70]!r}")
    return name


def _timestamp(value) -> datetime | None:
    if value in (None, ""):
        return None
    text = _text(value, "fileCreationTimestamp")
    for form in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    raise NoticeError(f"fileCreationTimestamp {text[:40]!r} is not %Y-%m-%dT%H:%M:%S.%fZ")


def _checksum(value) -> str:
    if value in (None, ""):
        return ""
    text = str(value).strip('"')
    if not _CHECKSUM.fullmatch(text):
        raise NoticeError(f"checksum {text[:40]!r} is not a checksum")
    return text


def _size(value) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise NoticeError("fileSize is not an integer")
    try:
        size = int(value)
    except ValueError:
        raise NoticeError(f"fileSize {str(value)[:20]!r} is not an integer") from None
    if size < 0:
        raise NoticeError("fileSize is negative")
    return size


def _archive_notice(message: dict) -> list[L2Notice]:
    file_type = _text(message.get("fileType"), "fileType")
    if file_type not in KNOWN_TYPES:
        raise NoticeError(f"fileType {file_type[:40]!r} is unknown (known: {', '.join(KNOWN_TYPES)})")
    if file_type != MONITORED_TYPE:
        return []
    state = message.get("reprocessingState", "none") or "none"
    if state not in REPROCESSING_STATES:
        raise NoticeError(f"reprocessingState {str(state)[:30]!r} is not one of {', '.join(REPROCESSING_STATES)}")
    bucket = valid_bucket(message.get("archiveBucket"))
    key = valid_key(message.get("archiveObjectKey"))
    return [L2Notice(bucket, key, valid_filename(message.get("filename"), key),
                     _timestamp(message.get("fileCreationTimestamp")), state,
                     _checksum(message.get("checksum")), _size(message.get("fileSize")))]


def _s3_event(records: list) -> list[L2Notice]:
    out = []
    for record in records:
        s3 = record.get("s3") if isinstance(record, dict) else None
        if not isinstance(s3, dict):
            raise NoticeError("an S3 event record has no 's3' part")
        bucket = valid_bucket((s3.get("bucket") or {}).get("name"))
        obj = s3.get("object") or {}
        key = valid_key(unquote_plus(_text(obj.get("key"), "object key")))  # S3 URL-encodes keys in events
        name = key.rsplit("/", 1)[-1]
        if not name.endswith("_cal.asdf"):
            continue  # other products in the bucket are not L2 images
        when = record.get("eventTime")
        created = None
        if isinstance(when, str):
            try:
                created = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None)
            except ValueError:
                created = None
        out.append(L2Notice(bucket, key, valid_filename(name, key), created, "none",
                            _checksum(obj.get("eTag")), _size(obj.get("size"))))
    return out


def _minimal(message: dict) -> list[L2Notice]:
    bucket, key = valid_bucket(message.get("bucket")), valid_key(message.get("key"))
    monitors = message.get("monitors")
    if monitors is not None:
        if not isinstance(monitors, list) or not all(isinstance(m, str) and _MONITOR.fullmatch(m) for m in monitors):
            raise NoticeError("monitors is not a list of monitor names")
        monitors = tuple(monitors)
    return [L2Notice(bucket, key, valid_filename(key.rsplit("/", 1)[-1], key), monitors=monitors)]


def parse_notice(body: str | bytes) -> list[L2Notice]:
    """The L2 files a message body announces ([] for a known type that is not monitored).

    Raises
    ------
    NoticeError
        Malformed JSON, an unknown body shape or file type, or a field that fails validation.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NoticeError("body is not UTF-8 text") from None
    if len(body) > MAX_BODY_BYTES:
        raise NoticeError(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise NoticeError(f"body is not JSON ({exc})") from None
    if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
        try:
            message = json.loads(_text(message["Message"], "SNS Message"))
        except ValueError as exc:
            raise NoticeError(f"the SNS Message is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise NoticeError("body is not a JSON object")
    if "Records" in message and isinstance(message["Records"], list):
        return _s3_event(message["Records"])
    if "archiveObjectKey" in message or "fileType" in message:
        return _archive_notice(message)
    if "bucket" in message and "key" in message:
        return _minimal(message)
    if message.get("Event") == "s3:TestEvent":
        return []
    raise NoticeError("body is neither an archive notice, an S3 event nor {bucket, key, monitors}")
