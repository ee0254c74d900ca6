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

from eznas_store.errors import StoreError
from eznas_store.store.plan import FORMAT, LOSSLESS, ROUNDINGS, codec_level, parse_codec


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Ignore warnings inside the block only (zarr's consolidated-metadata and dtype notes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def writable(a: Any) -> Any:
    """Array ``a`` set to write every chunk, also one equal to its fill value (zarr's default
    leaves that key out): a chunk key is then present for every chunk written, so an absent
    one is data lost (``store.chunks``). Zarr keeps this setting per opened array only."""
    return a.with_config({"write_empty_chunks": True})


#: Blosc block of the lossy tensor arrays: 1 MiB blocks instead of Blosc's default for level 3
#: compress rounded values 6 % smaller at the same speed (docs/results.md "Lossy codecs"); lossless
#: arrays keep the default, so they stay byte-identical to every store before
LOSSY_BLOCKSIZE = 1 << 20


def compressors(level: int = 3, blocksize: int = 0) -> list[Any]:
    """The codecs of every numeric array: Blosc zstd (``level``, 3 but for ``bitround:K+zstd:L``)
    with byte shuffle of 4-byte values, then a CRC32C checksum (last, so a flipped bit anywhere
    in a chunk file fails to decode). ``blocksize`` 0 is Blosc's own choice."""
    blosc = BloscCodec(cname="zstd", clevel=level, shuffle="shuffle", typesize=4, blocksize=blocksize)
    return [blosc, Crc32cCodec()]


def tensor_codecs(codec: str = LOSSLESS) -> dict[str, Any]:
    """``create_array`` keywords of the float32 tensor arrays for ``codec`` (``plan.parse_codec``).

    lossless: ``compressors()``, exactly as before ``--codec``. ``bitround:K``: numcodecs'
    BitRound (K mantissa bits kept, relative error <= 2^-K) as an array-to-array filter before
    them (``+zstd:L``: Blosc at level L). ``sumround:K``: the same chain; the writer rounded the
    values already (``store.rounding.sum_round``), so the filter changes nothing and says K. ``zfp:TOL``: numcodecs' ZFPY (fixed-accuracy mode,
    absolute error <= TOL) as the serializer, then the CRC32C alone (Blosc gains nothing on
    ZFP's output). All are registered zarr v3 codecs (``numcodecs.*``), so zarr and xarray read
    them without this package; the CRC32C stays last."""
    kind, arg = parse_codec(codec)
    if kind == LOSSLESS:
        return {"compressors": compressors()}
    numcodecs_v3 = _numcodecs_zarr3()
    if kind in ROUNDINGS:  # sumround's values arrive rounded (store.rounding); BitRound keeps them as they are
        with quiet_zarr():  # "numcodecs codecs are not in the v3 specification"
            return {"filters": [numcodecs_v3.BitRound(keepbits=int(arg))],
                    "compressors": compressors(codec_level(codec), LOSSY_BLOCKSIZE)}
    zfp_missing()
    import zfpy

    with quiet_zarr():
        return {"serializer": numcodecs_v3.ZFPY(mode=zfpy.mode_fixed_accuracy, tolerance=float(arg)),
                "compressors": [Crc32cCodec()]}


def zfp_missing() -> None:
    """A one-line ``StoreError`` if ``zfp:TOL`` cannot work here (no zfpy, or one numcodecs
    cannot import)."""
    try:
        import zfpy  # noqa: F401
        from numcodecs.zfpy import ZFPY  # noqa: F401
    except Exception as e:
        why = " ".join(str(e).split())[:120]
        raise StoreError(f"--codec zfp needs the zfpy package, which is missing or unusable here ({why}); "
                         "pip install 'zfpy==1.0.1' or use --codec compact") from None


def _numcodecs_zarr3() -> Any:
    """numcodecs' zarr v3 codecs: ``zarr.codecs.numcodecs`` (zarr >= 3.1.3), else
    ``numcodecs.zarr3`` (older zarr)."""
    try:
        import zarr.codecs.numcodecs as mod
    except ImportError:  # pragma: no cover - zarr < 3.1.3
        import numcodecs.zarr3 as mod
    return mod


def string_compressors() -> list[Any]:
    """The codecs of every string array: zarr's default zstd, then a CRC32C checksum."""
    return [ZstdCodec(level=0), Crc32cCodec()]


def normalise_url(url: str) -> str:
    """``file://`` URLs become plain paths (zarr's LocalStore creates folders; fsspec's
    local filesystem does not); every other fsspec URL is passed through. A URL that cannot
    name a store is a one-line ``StoreError`` (``url_problem``)."""
    url = str(url)
    url = url[len("file://"):] if url.startswith("file://") else url
    problem = url_problem(url)
    if problem:
        raise StoreError(problem)
    return url


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a store, before anything is opened: an unknown URL scheme, a
    scheme whose fsspec package is not installed (``s3://`` without s3fs), or a local path
    under a file; None if it may."""
    if "://" in url:
        import fsspec  # a zarr dependency

        for part in url.split("::"):
            if "://" not in part:
                continue
            scheme = part.split("://", 1)[0]
            try:
                fsspec.get_filesystem_class(scheme)
            except ImportError as e:
                hint = " ".join(str(e).split()) or f"a package for {scheme}:// is missing"
                return f"store {url}: {hint} (pip install {_PACKAGES.get(scheme, 'the fsspec package for it')})"
            except ValueError:
                return (f"store {url}: unknown URL scheme {scheme + '://'!r}; use a local path or an fsspec "
                        "URL such as s3://bucket/store.zarr, gs://..., memory://...")
        return None
    parent = os.path.abspath(url)
    while True:
        if os.path.lexists(parent):
            if parent != os.path.abspath(url) and not os.path.isdir(parent):
                return f"store {url} is under {parent}, which is a file, not a folder; use another --store path"
            return None
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up


#: fsspec URL scheme → the package that implements it
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp", "hf": "huggingface_hub"}


def open_group(url: str, mode: str, storage_options: dict | None = None) -> zarr.Group:
    """The root group at ``url`` (a path or fsspec URL) in Zarr format 3."""
    url = normalise_url(url)
    kw: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options:
        kw["storage_options"] = storage_options
    with quiet_zarr():
        return zarr.open_group(url, **kw)


#: top-level modules whose exceptions mean "cannot reach or use that remote store"
_REMOTE_ERROR_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "adlfs", "azure",
                         "requests", "urllib3", "fsspec")


def is_access_error(url: str, e: BaseException) -> bool:
    """Whether ``e``, raised opening or writing ``url``, means the location cannot be used: an
    ``OSError`` (no permission, no network, ...) or, for a remote URL, an error of its client."""
    if isinstance(e, OSError):
        return True
    return "://" in url and type(e).__module__.split(".")[0] in _REMOTE_ERROR_MODULES


def unreachable(url: str, e: BaseException) -> StoreError:
    """A one-line error for a store location that cannot be opened or written."""
    why = " ".join(str(e).split())[:200] or "no details"
    return StoreError(f"store {url} cannot be opened or written ({type(e).__name__}: {why}); check the "
                      "--store URL, its credentials (storage options) and the network")


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
