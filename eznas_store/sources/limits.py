"""The bounds on what ``sources/`` reads: every input is checked at the edge, before it can
exhaust memory, and refused in one line that names the file.

- **Decompressed bytes** (:data:`MAX_DECOMPRESSED_BYTES`, 256 MiB): a gzip input (a
  Suite-Zero ``zc_*.json.gz``, a ``.csv.gz`` benchmark table) is read as a stream and
  refused once it has produced more; a plain file larger than that is refused the same
  way. The real inputs are far below it (measured): Suite-Zero's
  ``zc_nasbench201.json.gz`` is 10.5 MB decompressed (its other files 0.4-4.5 MB), the
  NB201 table 1.9 MB, the DARTS table 0.4 MB; even a table 100 times the NB201 one fits.
  A gzip bomb (8.7 MB that inflate to 2 GB) stops at the limit instead of at a
  MemoryError, having held at most the limit in memory.
- **Dataset pickles** (:mod:`~eznas_store.sources.unpickle`): nesting at most
  :data:`MAX_PICKLE_DEPTH` containers deep (the published files nest 2), integers of at
  most :data:`MAX_PICKLE_INT_BITS` bits, arrays no larger than the file that holds them,
  memo indices and declared lengths within the file.
- **Images** (:mod:`~eznas_store.sources.datasets`): an image's size is read from its
  header and must be the dataset's own (32×32 for CIFAR) before any pixel is decoded, so
  a 20000×20000 PNG costs a header read; Pillow's decompression-bomb check (a warning
  above 89 Mpx, an error above 179 Mpx, both raised while opening) becomes the same one
  line, never a Python warning.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import IO

from eznas_store.errors import BenchmarkFormatError

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_PICKLE_DEPTH",
    "MAX_PICKLE_INT_BITS",
    "human_bytes",
    "open_capped_text",
]

#: bytes a text input may hold once decompressed (module attribute: tests lower it)
MAX_DECOMPRESSED_BYTES = 256 * 2**20
#: containers a dataset pickle may nest (dict → list → bytes is 2 in the published files)
MAX_PICKLE_DEPTH = 16
#: bits of an integer a dataset pickle may hold (labels, shapes and lengths fit 64)
MAX_PICKLE_INT_BITS = 64


def human_bytes(n: int) -> str:
    """``268435456`` → ``'256 MiB'`` (binary units, no decimals for whole values)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


class _Capped(io.RawIOBase):
    """A raw stream that raises once more than ``limit`` bytes have come through it."""

    def __init__(self, raw: IO[bytes], path: Path, limit: int, compressed: bool) -> None:
        super().__init__()
        self._raw, self._path, self._limit, self._compressed = raw, path, limit, compressed
        self._seen = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)
        self._seen += n or 0
        if self._seen > self._limit:
            verb = "decompresses to" if self._compressed else "holds"
            raise BenchmarkFormatError(
                f"{self._path} {verb} more than {self._limit} bytes "
                f"({human_bytes(self._limit)}, the limit for an input file); refusing it"
                + (" (a gzip bomb?)" if self._compressed else "")
            )
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def open_capped_text(path: str | os.PathLike[str], *, limit: int | None = None,
                     newline: str | None = None) -> io.TextIOWrapper:
    """``path`` (gunzipped if it ends in ``.gz``) as UTF-8 text, a leading BOM dropped;
    reading past ``limit`` bytes (default :data:`MAX_DECOMPRESSED_BYTES`) raises a
    one-line :class:`~eznas_store.errors.BenchmarkFormatError`."""
    path = Path(path)
    cap = MAX_DECOMPRESSED_BYTES if limit is None else limit
    compressed = path.name.endswith(".gz")
    raw: IO[bytes] = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115
    buffered = io.BufferedReader(_Capped(raw, path, cap, compressed), buffer_size=1 << 16)
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", newline=newline)
