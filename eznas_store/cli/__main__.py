"""``python -m eznas_store.cli``: the console script, for environments without it on PATH."""

from eznas_store.cli import _entry

_entry()
