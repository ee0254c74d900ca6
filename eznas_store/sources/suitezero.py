"""Read NAS-Bench-Suite-Zero's precomputed zero-cost proxy tables (``zc_<space>.json``).

NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022 Datasets & Benchmarks) publishes,
per search space, one JSON file read by NASLib's ``get_zc_benchmark_api``::

    data[task][arch_key] = {"idx": str, "arch": str,                 # both optional here
                            "<proxy>": {"score": float[, "time": seconds]}, ...,
                            "val_accuracy": float}

For NAS-Bench-201 the ``arch_key`` is NASLib's op-index tuple string, e.g.
``"(4, 0, 3, 1, 4, 3)"``: one op index per edge. The space converts its keys
(``SearchSpace.from_naslib_key``, for NB201
:func:`eznas_store.sources.spaces.nb201.nb201_key_to_cell`); this module only reads the
file, so a new space needs no edit here.

Example
-------
>>> tables = read_zc("zc_nasbench201.json.gz")  # doctest: +SKIP
>>> t = tables["cifar10"]
>>> t.archs[0], t.proxies["synflow"][0], t.val_accuracy[0]               # doctest: +SKIP
('|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|',
 44.48..., 84.99)

Files are parsed with :mod:`json` only (``.gz`` is decompressed on the fly, and refused
once it inflates past :data:`eznas_store.sources.limits.MAX_DECOMPRESSED_BYTES`); nothing
is unpickled.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas_store.errors import BenchmarkFormatError, DataNotFoundError, InvalidArchError
from eznas_store.sources.limits import open_capped_text
from eznas_store.sources.spaces import SPACES, get_space

__all__ = [
    "NASLIB_FAILED",
    "ZcTable",
    "read_zc",
]

#: NASLib's ``ZeroCost.query`` writes this for a NaN/Inf score
NASLIB_FAILED = -1e8
#: the ``space`` that keeps keys as they are
RAW = "raw"


@dataclass(frozen=True)
class ZcTable:
    """One task of a Suite-Zero file, one row per architecture, in file order.

    ``archs``: architecture strings when the space converts NASLib keys (NB201), else the
    raw keys; ``keys``: the raw keys; ``idx``: the records' ``idx`` (``""`` when absent);
    ``proxies`` / ``times``: proxy name → float64 array (NaN where a record lacks the
    proxy or its time); ``val_accuracy``: float64 array (NaN where absent).
    """

    task: str
    space: str
    archs: tuple[str, ...]
    keys: tuple[str, ...]
    idx: tuple[str, ...]
    proxies: dict[str, np.ndarray]
    times: dict[str, np.ndarray]
    val_accuracy: np.ndarray

    def __len__(self) -> int:
        return len(self.archs)

    def index(self) -> dict[str, int]:
        """arch → row."""
        return {a: i for i, a in enumerate(self.archs)}


def _load_json(path: Path) -> object:
    if not path.is_file():
        raise DataNotFoundError(f"Suite-Zero file {path} not found")
    try:
        with open_capped_text(path) as fh:  # a gzip bomb stops at the limit, in one line
            return json.load(fh)
    except BenchmarkFormatError:
        raise
    except (OSError, EOFError, ValueError, RecursionError, zlib.error) as exc:  # ValueError: bad JSON or UTF-8
        kind = "gzip-compressed JSON" if path.suffix == ".gz" else "JSON"
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise BenchmarkFormatError(f"{path} is not readable {kind}: {why}") from None


def _keyed_spaces() -> list[str]:
    """Registered spaces whose Suite-Zero keys convert to architecture strings."""
    return [name for name, sp in SPACES.items() if sp.from_naslib_key is not None]


def _guess_space(path: Path) -> str:
    # by file name only: TransNAS-Bench-101-micro keys look like NB201 keys (six op
    # indices) but name a different space
    name = path.name.lower()
    for space in _keyed_spaces():
        if any(tag in name for tag in get_space(space).suitezero_file_tags):
            return space
    return RAW


def _number(value: object, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchmarkFormatError(f"{where} must be a number, got {value!r}")
    return float(value)


class _TaskColumns:
    """The columns of one task, filled record by record."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.archs: list[str] = []
        self.idx: list[str] = []
        self.scores: dict[str, dict[int, float]] = {}
        self.times: dict[str, dict[int, float]] = {}
        self.acc = np.full(n, np.nan)

    def add_fields(self, row: int, rec: dict, where: str, failed_to_nan: bool) -> None:
        """The record's ``val_accuracy`` and ``{"score", "time"}`` proxy fields."""
        for field, value in rec.items():
            if field in ("idx", "arch"):
                continue
            if field == "val_accuracy":
                self.acc[row] = _number(value, f"{where}: val_accuracy")
                continue
            if not isinstance(value, dict) or "score" not in value:
                raise BenchmarkFormatError(
                    f"{where}: field {field!r} must be {{\"score\": number[, \"time\": s]}}, "
                    f"got {value!r}"[:300]
                )
            s = _number(value["score"], f"{where}: {field} score")
            if failed_to_nan and s == NASLIB_FAILED:
                s = math.nan
            self.scores.setdefault(field, {})[row] = s
            if "time" in value:
                self.times.setdefault(field, {})[row] = _number(value["time"], f"{where}: {field} time")

    def arrays(self, d: dict[str, dict[int, float]]) -> dict[str, np.ndarray]:
        out = {}
        for name in sorted(d):
            a = np.full(self.n, np.nan)
            for r, v in d[name].items():
                a[r] = v
            out[name] = a
        return out


def _arch_of(key: str, space: str, where: str) -> str:
    if space == RAW:
        return key
    try:
        return get_space(space).from_naslib_key(key)
    except InvalidArchError as exc:
        raise BenchmarkFormatError(f"{where}: {exc}") from None


def _read_task(path: Path, task: object, records: object, space: str,
               failed_to_nan: bool) -> ZcTable:
    if not isinstance(records, dict):
        raise BenchmarkFormatError(
            f"{path}: task {task!r} must map architecture keys to records, "
            f"got {type(records).__name__}"
        )
    keys = list(records)
    cols = _TaskColumns(len(keys))
    for row, key in enumerate(keys):
        rec = records[key]
        where = f"{path}: task {task!r}, architecture {key!r}"
        if not isinstance(rec, dict):
            raise BenchmarkFormatError(f"{where}: record must be an object, got {type(rec).__name__}")
        cols.archs.append(_arch_of(key, space, where))
        cols.idx.append(str(rec.get("idx", "")))
        cols.add_fields(row, rec, where, failed_to_nan)
    if len(set(cols.archs)) != len(cols.archs):
        raise BenchmarkFormatError(f"{path}: task {task!r} lists an architecture twice")
    return ZcTable(
        task=str(task), space=space, archs=tuple(cols.archs), keys=tuple(keys), idx=tuple(cols.idx),
        proxies=cols.arrays(cols.scores), times=cols.arrays(cols.times), val_accuracy=cols.acc,
    )


def read_zc(path: str | Path, *, space: str | None = None,
            failed_to_nan: bool = True) -> dict[str, ZcTable]:
    """Read a ``zc_*.json`` (or ``.json.gz``) file: ``{task: ZcTable}``.

    ``space``: ``"nb201"`` converts keys to cell strings (an unparsable key is an error),
    ``"raw"`` keeps keys; default: NB201 when the file name contains ``nasbench201`` (as
    Suite-Zero names it) or ``nb201``, else raw (keys alone cannot tell: the
    TransNAS-Bench-101-micro keys are six op indices too). ``failed_to_nan``: NASLib's failure value ``-1e8`` becomes
    NaN (set False to keep it).
    """
    path = Path(path).expanduser()
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise BenchmarkFormatError(
            f"{path}: expected a JSON object {{task: {{arch_key: record}}}}, "
            f"got {type(data).__name__}{' (empty)' if isinstance(data, dict) else ''}"
        )
    known = [*_keyed_spaces(), RAW]
    if space is not None and space not in known:
        raise BenchmarkFormatError(
            f"space must be {' or '.join(repr(k) for k in known)}, not {space!r}")
    sp = space or _guess_space(path)
    return {str(task): _read_task(path, task, records, sp, failed_to_nan)
            for task, records in data.items()}
