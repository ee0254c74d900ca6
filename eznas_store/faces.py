"""A stage's face: the few names other stages import from it, loaded on first use.

Each stage's ``__init__.py`` lists what it offers (``_FACE``: name -> module that defines it)
and takes its module ``__getattr__``/``__dir__`` from :func:`lazy_face` (PEP 562), so
``from eznas_store.<stage> import name`` imports only the module that defines ``name``, and
``eznas-store -h`` loads no torch. The attribute is looked up at every access, not kept, so a
test that patches the defining module is seen through the face.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_face"]


def lazy_face(package: str, face: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` offering the names of ``face``."""

    def __getattr__(name: str) -> Any:
        if name in face:
            return getattr(importlib.import_module(face[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(face))

    return __getattr__, __dir__
