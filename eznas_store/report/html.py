"""Render a report's blocks as one self-contained HTML page (styles inline, PNGs as data URIs)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from eznas_store.report.document import (
    Block,
    BulletList,
    Code,
    Heading,
    Image,
    Inline,
    Notes,
    Paragraph,
    Preformatted,
    Table,
)

__all__ = ["to_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.5em 2em;background:#fff}
h1{font-size:1.6em;margin-top:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
pre{background:#f6f8fa;padding:.8em 1em;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d8d8d8;padding:.25em .6em;vertical-align:top}
th{background:#f0f3f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fbfbfb}
.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em 1em .4em 2em;margin:.6em 0}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.scroll{overflow-x:auto}
"""

_NUM_CLASS = ' class="n"'


def _inline(part: Inline) -> str:
    if isinstance(part, Code):
        return f"<code>{html.escape(part.text)}</code>"
    return html.escape(part)


def _table(b: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
    body = "".join(
        "<tr>" + "".join(f"<td{_NUM_CLASS if n else ''}>{_inline(c)}</td>" for c, n in zip(row, b.numeric)) + "</tr>"
        for row in b.rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _block(b: Block) -> str | None:
    if isinstance(b, Heading):
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"
    if isinstance(b, Paragraph):
        return "<p>" + "".join(_inline(p) for p in b.parts) + "</p>"
    if isinstance(b, Notes):
        return '<ul class="notes">' + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, BulletList):
        return "<ul>" + "".join("<li>" + "".join(_inline(p) for p in item) + "</li>" for item in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Image):
        data = base64.b64encode(b.png).decode("ascii")
        return f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">'
    if isinstance(b, Preformatted):
        return f"<pre>{html.escape(b.text)}</pre>"
    return None


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as a complete HTML page titled ``title``; it needs no other file."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>"]
    out += [text for text in map(_block, blocks) if text is not None]
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
