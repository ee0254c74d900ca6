"""Where a store lives: its URL, its root Zarr v3 group, and how big it is on disk.

Zarr warns about things this package handles on purpose (consolidated metadata written
after the arrays, string dtypes without a v3 spec); ``quiet_zarr`` silences those for one
call only, so the caller's warning filters stay as they were.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from eznas_store.store.plan import FORMAT


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Ignore warnings inside the block only (zarr's consolidated-metadata and dtype notes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def compressors() -> list[Any]:
    """The codecs of every numeric array: Blosc zstd with byte shuffle of 4-byte values, then
    a CRC32C checksum (last, so a flipped bit anywhere in a chunk file fails to decode)."""
    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=4), Crc32cCodec()]


def string_compressors() -> list[Any]:
    """The codecs of every string array: zarr's default zstd, then a CRC32C checksum."""
    return [ZstdCodec(level=0), Crc32cCodec()]


def normalise_url(url: str) -> str:
    """``file://`` URLs become plain paths (zarr's LocalStore creates folders; fsspec's
    local filesystem does not); every other fsspec URL is passed through."""
    url = str(url)
    return url[len("file://"):] if url.startswith("file://") else url


def open_group(url: str, mode: str, storage_options: dict | None = None) -> zarr.Group:
    """The root group at ``url`` (a path or fsspec URL) in Zarr format 3."""
    url = normalise_url(url)
    kw: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options:
        kw["storage_options"] = storage_options
    with quiet_zarr():
        return zarr.open_group(url, **kw)


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    """Whether ``url`` holds an eznas store (a group with the format's attributes)."""
    try:
        g = open_group(url, "r", storage_options)
    except Exception:
        return False
    return FORMAT in g.attrs


def dir_bytes(url: str) -> int | None:
    """Bytes under a local store path (or one of its arrays); None for remote URLs."""
    if "://" in url and not url.startswith("file://"):
        return None
    path = url[len("file://"):] if url.startswith("file://") else url
    total = 0
    for dirpath, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total
