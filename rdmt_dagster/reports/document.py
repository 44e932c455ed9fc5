"""A tiny document model rendered to both Markdown and HTML.

A report is built once as a list of blocks and written twice, so that the
Markdown (read in GitLab/GitHub or a terminal) and the HTML (the public static
site) always say the same thing. The HTML is self-contained: inline CSS, no
scripts, no external resources, relative links only. Every text of a block
is data, escaped by the renderer (`rdmt_dagster.reports.escape`); links and
image sources must be relative paths of the site.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .escape import html_text, markdown_code, markdown_text, relative_href


@dataclass(frozen=True)
class Cell:
    """A table cell or a piece of text; ``fail`` highlights it, ``href`` links it."""

    text: str
    fail: bool = False
    href: str | None = None
    code: bool = False


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


@dataclass
class Image:
    src: str
    alt: str
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

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


def to_markdown(doc: Document) -> str:
    out = [f"# {markdown_text(doc.title)}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {markdown_text(block.text)}", ""]
        elif isinstance(block, Paragraph):
            if block.kind == "note":
                text = f"_{''.join(_md_inline(p) for p in block.parts)}_"
            else:
                text = _md_line(block.parts)
                if block.kind in ("fail", "ok"):
                    text = f"> {text}"
            out += [text, ""]
        elif isinstance(block, BulletList):
            out += [f"- {_md_line(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"*{markdown_text(block.caption)}*", ""]
            out.append("| " + " | ".join(markdown_text(h) for h in block.header) + " |")
            out.append("|" + "|".join("---" for _ in block.header) + "|")
            for row in block.rows:
                out.append("| " + " | ".join(_md_inline(c) for c in row) + " |")
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{markdown_text(block.alt)}]({relative_href(block.src)})", ""]
            if block.caption:
                out += [f"_{markdown_text(block.caption)}_", ""]
    return "\n".join(out).rstrip() + "\n"


# -- HTML ----------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:70em;
padding:0 1em;color:#1b1f24;line-height:1.4}
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
figure{display:inline-block;margin:.3em .6em .8em 0;vertical-align:top}
figcaption{font-size:.85em;color:#444;max-width:34em}
code{font-size:.95em}
"""


def _html_inline(part) -> str:
    if isinstance(part, str):
        return html_text(part)
    text = f"<code>{html_text(part.text)}</code>" if part.code else html_text(part.text)
    if part.href:
        text = f'<a href="{html_text(relative_href(part.href))}">{text}</a>'
    if part.fail:
        text = f'<span class="fail">{text}</span>'
    return text


def _html_cell(part, tag: str = "td") -> str:
    classes = []
    if isinstance(part, Cell):
        inner = _html_inline(Cell(part.text, False, part.href, part.code))
        if part.fail:
            classes.append("fail")
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
        if isinstance(block, Heading):
            anchor = f' id="{html_text(block.anchor)}"' if block.anchor else ""
            out.append(f"<h{block.level}{anchor}>{html_text(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p{_html_class(block.kind)}>{''.join(_html_inline(p) for p in block.parts)}</p>")
        elif isinstance(block, BulletList):
            out.append("<ul>")
            out += [f"<li>{''.join(_html_inline(p) for p in item)}</li>" for item in block.items]
            out.append("</ul>")
        elif isinstance(block, Table):
            out.append(f"<table{_html_class(block.kind)}>")
            if block.caption:
                out.append(f"<caption>{html_text(block.caption)}</caption>")
            out.append("<thead><tr>" + "".join(f"<th>{html_text(h)}</th>" for h in block.header) + "</tr></thead>")
            out.append("<tbody>")
            for row in block.rows:
                out.append("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            out.append(
                f'<figure><img src="{html_text(relative_href(block.src))}" alt="{html_text(block.alt)}" '
                f'loading="lazy">'
                + (f"<figcaption>{html_text(block.caption)}</figcaption>" if block.caption else "")
                + "</figure>"
            )
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
