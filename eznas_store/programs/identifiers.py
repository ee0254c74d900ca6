"""What a name may be in a program, and how an error message quotes a bad value.

Operation and terminal names are plain identifiers (never code), program labels are
file-name-like; every representation and every way in (tree, formula, prefix list,
JSON, instructions) checks against these same two patterns, so they live here once.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Any

from eznas_store.errors import ProgramError

__all__ = ["LABEL_RE", "NAME_RE", "check_labels", "check_name", "is_name", "short"]

#: operation and terminal names: an identifier that starts with a letter, <= 64 chars
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: program labels such as "eznas-a"
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a hostile value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_name(name: str) -> bool:
    """Whether ``name`` is an allowed operation/terminal name (pattern, not a keyword)."""
    return NAME_RE.fullmatch(name) is not None and not keyword.iskeyword(name)


def check_name(name: object, what: str) -> str:
    """``name`` if it is an allowed ``what`` ("operation"/"terminal") name, else an error."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
    if not is_name(name):
        raise ProgramError(
            f"invalid {what} name {short(name)}: use letters, digits and '_', "
            "starting with a letter, at most 64 characters, not a Python keyword"
        )
    return name


def check_labels(program: Any) -> None:
    """Validate a program's ``name`` and copy its ``meta`` (shared by both representations)."""
    if program.name is not None and (
        not isinstance(program.name, str) or LABEL_RE.fullmatch(program.name) is None
    ):
        raise ProgramError(
            f"invalid program name {short(program.name)}: use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit, at most 128 characters"
        )
    if not isinstance(program.meta, Mapping):
        raise TypeError(f"{type(program).__name__}.meta must be a dict, got {type(program.meta).__name__}")
    object.__setattr__(program, "meta", dict(program.meta))
