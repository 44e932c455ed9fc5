"""Keeping secrets out of error texts and logs.

A secret can reach an error text in many shapes: the configured value with a
stray space, percent-encoded by an HTTP library, only the path of a webhook
URL, or a URL with ``user:password@`` or a token in its query. Exact string
matching misses most of them, so `SecretScrubber` works on parsed URLs:

* every URL in a text loses its userinfo (``***@``), its query values
  (``?token=***``) and its fragment;
* a URL on the host of a configured secret URL (or on ``hooks.slack.com``)
  keeps only the first segment of its path
  (``https://hooks.slack.com/services/***``);
* every configured secret value, and every path segment, userinfo and query
  value of a configured secret URL, is replaced wherever it appears, also
  percent-encoded, after stripping whitespace.

`redact_url` gives a URL that can be logged (no userinfo, no query).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
# Secret URL parts shorter than this are not replaced in free text: a path
# segment such as ``T`` would otherwise mask every capital T of the message.
MIN_PART_LENGTH = 4

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_URL_TRAILING = ".,;:!?)]}"
_SEGMENTS = re.compile(r"[/\s]+")


def redact_url(url: str) -> str:
    """A URL that can be logged: without userinfo, query and fragment.

    Parameters
    ----------
    url : str
        E.g. ``https://user:pw@crds.example.org/path?token=abc``.

    Returns
    -------
    str
        ``https://crds.example.org/path``; ``[url]`` when ``url`` cannot be
        parsed (it is then not logged at all).
    """
    try:
        parts = urlsplit(str(url).strip())
        parts.port  # raises ValueError for a malformed port
    except ValueError:
        return "[url]"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class _SecretURL:
    """A configured secret URL: its host and the public start of its path."""

    host: str
    prefix: str  # "/services/" for a Slack webhook; "/" when the whole path is secret


# Slack incoming webhooks carry their secret in the path: treat every one as
# secret, also one that was never configured here (a stale copy in a message).
_WELL_KNOWN = (_SecretURL("hooks.slack.com", "/services/"),)


def _variants(value: str) -> set[str]:
    """The value as written and as an HTTP library may have percent-encoded it."""
    return {value, quote(value, safe=""), quote(value, safe="/")}


class SecretScrubber:
    """Removes configured secrets and URL credentials from texts.

    Parameters
    ----------
    secrets : iterable of str or None
        Configured secret values: URLs (a Slack webhook) and plain values (an
        SMTP password). ``None`` and blank values are ignored.

    Examples
    --------
    >>> scrub = SecretScrubber(["https://hooks.slack.com/services/T0001/B0001/abcdSECRET"])
    >>> scrub("InvalidURL: '/services/T0001/B0001 /abcdSECRET'")
    "InvalidURL: '/services/***/*** /***'"
    """

    def __init__(self, secrets: Iterable[str | None] = ()):
        self._urls: list[_SecretURL] = list(_WELL_KNOWN)
        values: set[str] = set()
        for secret in secrets:
            secret = (secret or "").strip()
            if secret:
                values |= self._add(secret)
        # Longest first, so that a value containing another one goes whole.
        self._values = sorted((v for v in values if v), key=len, reverse=True)

    def _add(self, secret: str) -> set[str]:
        parts = _split_url(secret)
        if parts is None:
            return _variants(secret)
        values = _variants(secret)
        segments = [s for s in _SEGMENTS.split(unquote(parts.path)) if s]
        public, private = (segments[:1], segments[1:]) if len(segments) > 1 else ([], segments)
        self._urls.append(_SecretURL((parts.hostname or "").lower(), "/" + "".join(f"{s}/" for s in public)))
        if private:
            values |= _variants("/".join(private))
        userinfo = parts.netloc.rpartition("@")[0]
        pieces = private + userinfo.split(":") + _query_values(parts.query) + [parts.fragment]
        for piece in pieces:
            if len(piece) >= MIN_PART_LENGTH:
                values |= _variants(piece)
        return values

    def __call__(self, text) -> str:
        """``text`` with every secret and URL credential replaced by ``***``."""
        text = _URL.sub(self._scrub_url, "" if text is None else str(text))
        for value in self._values:
            text = text.replace(value, MASK)
        return text

    def _scrub_url(self, match: re.Match) -> str:
        url = match.group(0)
        stripped = url.rstrip(_URL_TRAILING)
        url, tail = stripped, url[len(stripped):]
        parts = _split_url(url)
        if parts is None:
            return MASK + tail
        userinfo, at, host = parts.netloc.rpartition("@")
        netloc = f"{MASK}@{host}" if at else host
        path = parts.path
        hostname, decoded = (parts.hostname or "").lower(), unquote(path)
        for secret in self._urls:
            if hostname == secret.host and decoded.startswith(secret.prefix) and decoded != secret.prefix:
                path = secret.prefix + MASK
                break
        query = "&".join(_mask_query_item(item) for item in parts.query.split("&")) if parts.query else ""
        fragment = MASK if parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, path, query, fragment)) + tail


def _split_url(text: str):
    """``urlsplit`` of an absolute URL with a host, else None."""
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError for a malformed port
    except ValueError:
        return None
    return parts if parts.scheme and parts.netloc else None


def _query_values(query: str) -> list[str]:
    return [item.partition("=")[2] or item for item in query.split("&") if item]


def _mask_query_item(item: str) -> str:
    key, eq, _ = item.partition("=")
    return f"{key}={MASK}" if eq else (MASK if item else item)


def scrub_secrets(text, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secrets or any URL credentials (see `SecretScrubber`)."""
    return SecretScrubber(secrets)(text)


class ScrubbingLogger(logging.LoggerAdapter):
    """A logger that scrubs every message (and traceback) before it is emitted.

    Given to third-party clients (``slack_sdk``) that log request URLs or
    errors containing them.

    Parameters
    ----------
    logger : logging.Logger
    scrub : callable
        Text -> scrubbed text, e.g. a `SecretScrubber`.
    """

    def __init__(self, logger: logging.Logger, scrub):
        super().__init__(logger, {})
        self.scrub = scrub

    @property
    def level(self) -> int:
        # slack_sdk reads ``logger.level`` before building its debug messages.
        return self.logger.level

    def log(self, level, msg, *args, exc_info=None, stack_info=False, stacklevel=1, extra=None):
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (msg, *args))
        if isinstance(exc_info, BaseException):
            text += "\n" + "".join(traceback.format_exception(exc_info))
        elif isinstance(exc_info, tuple):
            text += "\n" + "".join(traceback.format_exception(*exc_info))
        elif exc_info:
            text += "\n" + traceback.format_exc()
        # The traceback goes in scrubbed as text: a formatter would print exception messages as they are.
        self.logger.log(level, self.scrub(text), extra=extra, stack_info=stack_info, stacklevel=stacklevel + 1)
