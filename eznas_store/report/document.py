"""The document model of a report: a list of blocks that Markdown and HTML both render.

Sections build blocks (headings, paragraphs, notes, lists, tables, images, preformatted
text) once; :mod:`eznas_store.report.markdown` and :mod:`eznas_store.report.html` turn the
same list into ``.md`` and ``.html``, so the two files always say the same thing. Also
here: how a number, a duration or an absent value is written in a cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DASH", "MISSING", "Block", "BulletList", "Code", "Heading", "Image", "Inline", "Notes", "Paragraph",
    "Preformatted", "Table", "as_float", "format_duration", "format_number", "paragraph", "table",
]

DASH = "—"
#: marks an absent value (shown as a dash), as opposed to a null one (shown as NaN)
MISSING: Any = object()


@dataclass(frozen=True)
class Code:
    """Inline code (a formula, a path, a value): monospace, never escaped away."""

    text: str


Inline = str | Code


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Notes:
    """What is missing or incomplete: set apart so a reader sees it first."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class BulletList:
    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


@dataclass(frozen=True)
class Image:
    """A PNG: linked from Markdown by ``file``, embedded in HTML as a data URI."""

    file: str  # relative to the report's directory, e.g. "plots/fitness.png"
    alt: str
    png: bytes


@dataclass(frozen=True)
class Preformatted:
    text: str


Block = Heading | Paragraph | Notes | BulletList | Table | Image | Preformatted


def paragraph(*parts: Inline) -> Paragraph:
    return Paragraph(tuple(parts))


def table(header: Sequence[str], rows: Iterable[Sequence[Inline]], numeric: Sequence[bool] | None = None) -> Table:
    header = tuple(header)
    return Table(header, tuple(tuple(r) for r in rows), tuple(numeric) if numeric else (False,) * len(header))


def as_float(value: Any) -> float:
    """A JSON number as float; None, bools and anything else are NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def format_number(value: Any, digits: int = 4) -> str:
    """``—`` when absent, ``NaN`` for null/NaN, else fixed-point."""
    if value is MISSING:
        return DASH
    x = as_float(value)
    return "NaN" if math.isnan(x) else f"{x:.{digits}f}"


def format_duration(seconds: Any) -> str:
    """Seconds, with minutes/hours beside them when there are any; a dash when unknown."""
    x = as_float(seconds)
    if math.isnan(x):
        return DASH
    m, s = divmod(int(round(x)), 60)
    h, m = divmod(m, 60)
    human = f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{x:.1f} s"
    return f"{x:.1f} s ({human})" if (h or m) else human
