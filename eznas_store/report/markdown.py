"""Render a report's blocks as GitHub-flavoured Markdown (``report.md``, ``comparison.md``)."""

from __future__ import annotations

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

__all__ = ["to_markdown"]

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _inline(part: Inline, *, in_table: bool = False) -> str:
    """Plain text escaped, code fenced (with a double fence when it holds a backtick)."""
    if isinstance(part, Code):
        text = " ".join(part.text.split("\n"))
        fence = "``" if "`" in text else "`"
        pad = " " if fence == "``" else ""
        out = f"{fence}{pad}{text}{pad}{fence}"
        return out.replace("|", "\\|") if in_table else out
    return " ".join(part.split("\n")).translate(_MD_SPECIAL)


def _table(b: Table) -> str:
    lines = ["| " + " | ".join(_inline(h, in_table=True) for h in b.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in b.numeric) + "|"]
    lines += ["| " + " | ".join(_inline(c, in_table=True) for c in row) + " |" for row in b.rows]
    return "\n".join(lines)


def _block(b: Block) -> str | None:
    if isinstance(b, Heading):
        return f"{'#' * b.level} {_inline(b.text)}"
    if isinstance(b, Paragraph):
        return "".join(_inline(p) for p in b.parts)
    if isinstance(b, Notes):
        return "\n".join(f"> - {_inline(i)}" for i in b.items)
    if isinstance(b, BulletList):
        return "\n".join("- " + "".join(_inline(p) for p in item) for item in b.items)
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Image):
        return f"![{_inline(b.alt)}]({b.file})"
    if isinstance(b, Preformatted):
        return "```text\n" + b.text + "\n```"
    return None


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as one Markdown document, a blank line between blocks."""
    out = [text for text in map(_block, blocks) if text is not None]
    return "\n\n".join(out) + "\n"
