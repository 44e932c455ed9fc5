"""A tiny document model rendered to both Markdown and HTML.

A report is built once as a list of blocks and written twice, so that the
Markdown (read in GitLab/GitHub or a terminal) and the HTML (the public static
site) always say the same thing. The HTML is self-contained: inline CSS, no
external resources, relative links only, and no script but the one a
document may carry as code of the platform (the index's filter,
`Document.script`): never data. Every text of a block is data, escaped by the
renderer (`rdmt_dagster.reports.escape`); links and image sources must be
relative paths of the site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .escape import html_text, markdown_code, markdown_text, relative_href


@dataclass(frozen=True)
class Cell:
    """A table cell or a piece of text; ``fail`` highlights it, ``href`` links it."""

    text: str
    fail: bool = False
    href: str | None = None
    code: bool = False
    muted: bool = False  # e.g. "not evaluated": neither a pass nor a failure


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Paragraph:
    parts: list  # str or Cell
    kind: str = ""  # "" | "fail" | "ok" | "note"


@dataclass
class BulletList:
    items: list  # each: list of str/Cell


@dataclass
class Table:
    header: list[str]
    rows: list[list]  # str or Cell
    caption: str = ""
    kind: str = ""  # css class, e.g. "amps"
    row_data: list[dict[str, str]] | None = None  # per row, data-* attributes of the HTML (for the filter)


@dataclass
class Image:
    src: str
    alt: str
    caption: str = ""
    width: int | None = None  # CSS pixels of the HTML (the PNG may hold more, for zooming)
    height: int | None = None


@dataclass
class Details:
    """Blocks folded under a summary line in the HTML (``<details>``); shown as they are in Markdown."""

    summary: str
    blocks: list = field(default_factory=list)


@dataclass
class Filters:
    """HTML only: one drop-down per field, filtering the rows of the ``filterable`` tables by their data.

    ``fields`` holds (name, label, [(value, label), ...]); a row shows when,
    for every field with a value chosen, its ``data-<name>`` equals it. The
    bar stays hidden until the document's script shows it.
    """

    fields: list[tuple[str, str, list[tuple[str, str]]]]


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)
    script: str = ""  # code of the platform, never data: rendered as is at the end of the HTML body

    def add(self, *blocks) -> "Document":
        self.blocks.extend(blocks)
        return self


# -- Markdown ----------------------------------------------------------------
# Every text of the document is data: the renderer escapes all of it and adds
# the markup (emphasis, links, tables) around the escaped pieces.

def _md_inline(part, line_start: bool = False) -> str:
    if isinstance(part, str):
        return markdown_text(part, line_start)
    if part.code:
        text = markdown_code(part.text)
    else:
        text = markdown_text(part.text, line_start and not part.href and not part.fail)
    if part.href:
        text = f"[{text}]({relative_href(part.href)})"
    if part.fail:
        text = f"**{text}**"
    return text


def _md_line(parts) -> str:
    """Inline parts that start a line: the first non-empty one must not open a block."""
    out = []
    for part in parts:
        out.append(_md_inline(part, line_start=not any(out)))
    return "".join(out)


def _md_block(block) -> list[str]:
    if isinstance(block, Heading):
        return [f"{'#' * block.level} {markdown_text(block.text)}", ""]
    if isinstance(block, Paragraph):
        if block.kind == "note":
            text = f"_{''.join(_md_inline(p) for p in block.parts)}_"
        else:
            text = _md_line(block.parts)
            if block.kind in ("fail", "ok"):
                text = f"> {text}"
        return [text, ""]
    if isinstance(block, BulletList):
        return [f"- {_md_line(item)}" for item in block.items] + [""]
    if isinstance(block, Table):
        out = [f"*{markdown_text(block.caption)}*", ""] if block.caption else []
        out.append("| " + " | ".join(markdown_text(h) for h in block.header) + " |")
        out.append("|" + "|".join("---" for _ in block.header) + "|")
        for row in block.rows:
            out.append("| " + " | ".join(_md_inline(c) for c in row) + " |")
        return out + [""]
    if isinstance(block, Image):
        out = [f"![{markdown_text(block.alt)}]({relative_href(block.src)})", ""]
        return out + ([f"_{markdown_text(block.caption)}_", ""] if block.caption else [])
    if isinstance(block, Details):
        out = [f"**{markdown_text(block.summary)}**", ""]
        for child in block.blocks:
            out += _md_block(child)
        return out
    return []  # Filters: nothing to filter in a static Markdown page


def to_markdown(doc: Document) -> str:
    out = [f"# {markdown_text(doc.title)}", ""]
    for block in doc.blocks:
        out += _md_block(block)
    return "\n".join(out).rstrip() + "\n"


# -- HTML ----------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:90em;
padding:0 1em;color:#1b1f24;line-height:1.4}
[hidden]{display:none!important}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccd;padding-bottom:.2em;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em}
th,td{border:1px solid #c8ccd4;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.amps td:nth-child(odd){background:#f6f7f9;font-weight:600}
.fail{background:#ffe1e1;color:#8b0000;font-weight:600}
table.amps td.fail{background:#ffe1e1}
p.fail{border-left:4px solid #c00;padding:.4em .8em;background:#fff0f0}
p.ok{border-left:4px solid #2a7;padding:.4em .8em;background:#effaf3}
p.note{color:#555;font-size:.9em}
figure{display:inline-block;margin:.3em 1em 1em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #e2e5ea}
figcaption{font-size:.9em;color:#444;max-width:40em}
code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.95em}
caption{caption-side:bottom;text-align:left;font-size:.88em;color:#555;padding-top:.3em}
.na{color:#666;font-style:italic}
details{margin:.6em 0 1em}summary{cursor:pointer;font-weight:600;padding:.3em 0}
form.filters{display:flex;flex-wrap:wrap;gap:.6em 1.4em;align-items:center;margin:.6em 0 1em;padding:.5em .8em;
background:#f4f6f9;border:1px solid #d8dde5}
table.filterable{width:100%}
form.filters label{font-weight:600}form.filters select{margin-left:.4em;font-size:1em}
"""


def _html_inline(part) -> str:
    if isinstance(part, str):
        return html_text(part)
    text = f"<code>{html_text(part.text)}</code>" if part.code else html_text(part.text)
    if part.href:
        text = f'<a href="{html_text(relative_href(part.href))}">{text}</a>'
    if part.fail:
        text = f'<span class="fail">{text}</span>'
    elif part.muted:
        text = f'<span class="na">{text}</span>'
    return text


def _html_cell(part, tag: str = "td") -> str:
    classes = []
    if isinstance(part, Cell):
        inner = _html_inline(Cell(part.text, False, part.href, part.code))
        if part.fail:
            classes.append("fail")
        elif part.muted:
            classes.append("na")
        text = part.text
    else:
        inner = html_text(part)
        text = str(part)
    if text and _looks_numeric(text):
        classes.append("num")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<{tag}{cls}>{inner}</{tag}>"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _html_class(kind: str) -> str:
    return f' class="{html_text(kind)}"' if kind else ""


_DATA_NAME = re.compile(r"[a-z][a-z0-9-]*")


def _data_attributes(data: dict[str, str] | None) -> str:
    """``data-*`` attributes of a table row: names from the platform, values escaped."""
    if not data:
        return ""
    parts = []
    for name, value in data.items():
        if not _DATA_NAME.fullmatch(name):
            raise ValueError(f"not a data attribute name: {name!r}")
        parts.append(f' data-{name}="{html_text(value)}"')
    return "".join(parts)


def _html_block(block) -> list[str]:
    if isinstance(block, Heading):
        anchor = f' id="{html_text(block.anchor)}"' if block.anchor else ""
        return [f"<h{block.level}{anchor}>{html_text(block.text)}</h{block.level}>"]
    if isinstance(block, Paragraph):
        return [f"<p{_html_class(block.kind)}>{''.join(_html_inline(p) for p in block.parts)}</p>"]
    if isinstance(block, BulletList):
        return ["<ul>"] + [f"<li>{''.join(_html_inline(p) for p in item)}</li>" for item in block.items] + ["</ul>"]
    if isinstance(block, Table):
        out = [f"<table{_html_class(block.kind)}>"]
        if block.caption:
            out.append(f"<caption>{html_text(block.caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{html_text(h)}</th>" for h in block.header) + "</tr></thead>")
        out.append("<tbody>")
        data = block.row_data or [None] * len(block.rows)
        for row, attrs in zip(block.rows, data):
            out.append(f"<tr{_data_attributes(attrs)}>" + "".join(_html_cell(c) for c in row) + "</tr>")
        out.append("</tbody></table>")
        return out
    if isinstance(block, Image):
        size = "".join(f' {name}="{int(v)}"' for name, v in (("width", block.width), ("height", block.height)) if v)
        return [
            f'<figure><img src="{html_text(relative_href(block.src))}" alt="{html_text(block.alt)}"{size} '
            f'loading="lazy">'
            + (f"<figcaption>{html_text(block.caption)}</figcaption>" if block.caption else "")
            + "</figure>"
        ]
    if isinstance(block, Details):
        out = [f"<details><summary>{html_text(block.summary)}</summary>"]
        for child in block.blocks:
            out += _html_block(child)
        return out + ["</details>"]
    if isinstance(block, Filters):
        out = ['<form class="filters" id="filters" hidden>']
        for name, label, options in block.fields:
            if not _DATA_NAME.fullmatch(name):
                raise ValueError(f"not a filter name: {name!r}")
            choices = "".join(f'<option value="{html_text(v)}">{html_text(text)}</option>' for v, text in options)
            out.append(f'<label>{html_text(label)}<select name="{name}"><option value="">all</option>{choices}'
                       "</select></label>")
        out.append('<span id="filter-count" class="na"></span></form>')
        return out
    return []


def to_html(doc: Document) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html_text(doc.title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html_text(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        out += _html_block(block)
    if doc.script:
        # The platform's own code: a "</" in it could end the element early.
        if "</" in doc.script or "<!--" in doc.script:
            raise ValueError("a document script must not contain '</' or '<!--'")
        out.append(f"<script>{doc.script}</script>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
