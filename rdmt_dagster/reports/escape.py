"""Escaping of untrusted text for every output format the platform writes.

Everything read from a reference file or its database row (file names,
detector, metadata strings, error texts, metric names, units) is data: it is
escaped where it is written so that it can never become markup, a link, a
mention, a header or a line of a YAML header. Text the platform builds itself
(table layout, emphasis, links to its own pages) is added around the escaped
pieces by the writers, never passed through these functions.

=======================  ==========================================================
`plain_text`              one line of plain text (log, e-mail body, ECSV meta)
`markdown_text`           Markdown (CommonMark / GitHub / GitLab) inline text
`markdown_code`           Markdown inline code
`html_text`               HTML text and double- or single-quoted attribute values
`slack_text`              Slack mrkdwn text
`header_text`             e-mail header value (and, with ``ascii_only``, SNS)
`sns_subject`             AWS SNS ``Subject``
`relative_href`           a link or image source of the report site
=======================  ==========================================================
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

# C0 and C1 controls (newlines and tabs included), DEL, the Unicode line and
# paragraph separators and the bidirectional overrides and isolates: they
# break a line-oriented format or make a file name display as another one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")

# ASCII punctuation that starts or ends Markdown inline markup (code, emphasis,
# links, table cells, headings, GFM strikethrough, GitLab/GitHub math).
_MD_PUNCTUATION = re.compile(r"[\\`*\[\]|#~$]")
# An underscore between two letters or digits can neither open nor close
# emphasis (CommonMark "flanking" rules), so ``roman_wfi_dark`` stays readable.
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# What makes a line a list item, a setext heading underline or an ordered list.
_MD_BLOCK_START = re.compile(r"^(?:([-+=])|(\d+)([.)]))")
# Text safe inside a Markdown code span as is: no backtick (ends the span),
# no ``|`` (ends a table cell even inside code) and nothing a reader of the raw
# file could take for HTML.
_MD_CODE_SAFE = re.compile(r"[^`|\\<>&\s]+(?: [^`|\\<>&\s]+)*")

_HEADER_SPACE = re.compile(r"\s+")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

SNS_SUBJECT_MAX = 99  # SNS: "less than 100 characters"


def plain_text(text) -> str:
    """One line of plain text: control characters and line breaks become a space.

    Parameters
    ----------
    text : object
        Untrusted text (``None`` gives ``""``; other objects their ``str``).

    Returns
    -------
    str
        The text on one line, with every run of control characters, line
        breaks and bidirectional overrides replaced by a single space.
    """
    if text is None:
        return ""
    return _CONTROL.sub(" ", str(text))


def markdown_text(text, line_start: bool = False) -> str:
    """Untrusted text as Markdown that renders as exactly that text.

    ``&``, ``<`` and ``>`` become HTML entities (no raw HTML, no autolinks);
    backslash, backtick, ``*``, ``[``, ``]``, ``|``, ``#``, ``~`` and ``$``
    are backslash-escaped, and so is every ``_`` not between two letters or
    digits. Line breaks become spaces.

    Parameters
    ----------
    text : object
        Untrusted text.
    line_start : bool
        The text starts a line (a paragraph or list item): leading spaces
        are dropped and a leading ``-``, ``+``, ``=`` or ``1.`` is escaped,
        so it cannot start a list, a heading or a code block.

    Returns
    -------
    str
        Markdown inline text; safe in paragraphs, headings, list items, table
        cells, link texts and image descriptions.
    """
    text = plain_text(text)
    text = _MD_PUNCTUATION.sub(r"\\\g<0>", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if line_start:
        # Markdown drops the leading spaces of a paragraph anyway; four of them
        # would make an indented code block.
        text = _MD_BLOCK_START.sub(_escape_block_start, text.lstrip(), count=1)
    return text


def _escape_block_start(match: re.Match) -> str:
    marker, digits, delimiter = match.groups()
    if marker:
        return f"\\{marker}"
    return f"{digits}\\{delimiter}"


def markdown_code(text) -> str:
    """Untrusted text as Markdown inline code.

    Text that a code span shows as is becomes a code span (`` `text` ``);
    anything else (backticks, ``|``, ``<``, ``&``, leading or doubled spaces)
    becomes ``<code>`` around `markdown_text`, which renders the same and
    cannot be broken out of.

    Parameters
    ----------
    text : object
        Untrusted text.

    Returns
    -------
    str
        Markdown inline code, safe in table cells too.
    """
    text = plain_text(text)
    if _MD_CODE_SAFE.fullmatch(text):
        return f"`{text}`"
    return f"<code>{markdown_text(text)}</code>"


def html_text(text) -> str:
    """Untrusted text as HTML text or attribute value.

    Parameters
    ----------
    text : object
        Untrusted text.

    Returns
    -------
    str
        The text with ``& < > " '`` as character references and control
        characters as spaces: safe between tags and inside quoted attributes.
    """
    return html.escape(plain_text(text), quote=True)


def slack_text(text) -> str:
    """Untrusted text as Slack mrkdwn text.

    Slack reads ``<...>`` as links, mentions (``<@U123>``) and broadcasts
    (``<!channel>``), and asks for exactly ``&``, ``<`` and ``>`` to be
    escaped as ``&amp;``, ``&lt;`` and ``&gt;``. Line breaks become spaces so
    that a value cannot start a line of its own (a quote, a fake entry).

    Parameters
    ----------
    text : object
        Untrusted text.

    Returns
    -------
    str
        Text that Slack shows as is, without links, mentions or broadcasts.
    """
    return plain_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_text(text, max_length: int | None = None, ascii_only: bool = False) -> str:
    """Untrusted text as the value of one e-mail header.

    Parameters
    ----------
    text : object
        Untrusted text.
    max_length : int, optional
        Cut the value to at most this many characters.
    ascii_only : bool
        Drop every character outside printable ASCII.

    Returns
    -------
    str
        One line without CR, LF or other control characters, whitespace runs
        collapsed to one space and stripped, so it cannot end the header and
        start another one (``Bcc:``).
    """
    text = _HEADER_SPACE.sub(" ", plain_text(text))
    if ascii_only:
        text = _NOT_PRINTABLE_ASCII.sub("", text)
        text = _HEADER_SPACE.sub(" ", text)
    text = text.strip()
    if max_length is not None:
        text = text[:max_length].rstrip()
    return text


def sns_subject(text, fallback: str = "RDMT") -> str:
    """An AWS SNS ``Subject``: printable ASCII, one line, fewer than 100 characters.

    Parameters
    ----------
    text : object
        Untrusted text.
    fallback : str
        The subject when nothing of ``text`` is left.

    Returns
    -------
    str
    """
    return header_text(text, SNS_SUBJECT_MAX, ascii_only=True) or fallback


def relative_href(href: str) -> str:
    """A link or image source of the report site, checked and percent-encoded.

    The site links only to its own pages and figures, by relative paths it
    built itself; anything else is a bug that must not reach a reader.

    Parameters
    ----------
    href : str
        A relative path (``WFI01_dark/report.html``, ``../index.md``,
        ``trend_dark_current_mean.png``), optionally with a ``#fragment``.

    Returns
    -------
    str
        The path with every character outside ``A-Z a-z 0-9 / . _ - ~ #``
        percent-encoded: safe in a Markdown link destination and (after
        `html_text`) in an HTML attribute.

    Raises
    ------
    ValueError
        For an absolute path, a URL with a scheme or host, a backslash or a
        control character.
    """
    if (not href or href.startswith(("/", "\\")) or "\\" in href or _SCHEME.match(href)
            or _CONTROL.search(href)):
        raise ValueError(f"not a relative link of the report site: {plain_text(href)!r}")
    return quote(href, safe="/._-~#")
