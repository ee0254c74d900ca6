"""Read NAS-Bench-Suite-Zero's precomputed zero-cost proxy tables (``zc_<space>.json``).

NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022 Datasets & Benchmarks) publishes,
per search space, one JSON file read by NASLib's ``get_zc_benchmark_api``::

    data[task][arch_key] = {"idx": str, "arch": str,                 # both optional here
                            "<proxy>": {"score": float[, "time": seconds]}, ...,
                            "val_accuracy": float}

For NAS-Bench-201 the ``arch_key`` is NASLib's op-index tuple string, e.g.
``"(4, 0, 3, 1, 4, 3)"``: one op index per edge (1,2),(1,3),(1,4),(2,3),(2,4),(3,4)
(NASLib numbers the cell's nodes 1..4), with ops ``0 skip_connect, 1 none,
2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3``. In NB201's cell string the edges run
(1,2) | (1,3),(2,3) | (1,4),(2,4),(3,4), so the string is
``|o0~0|+|o1~0|o3~1|+|o2~0|o4~1|o5~2|`` — o3 comes before o2 (NASLib
``convert_op_indices_to_str``). :func:`nb201_key_to_cell` and :func:`nb201_cell_to_key`
convert both ways.

Example
-------
>>> tables = read_zc("../shared/data/suite-zero/zc_nasbench201.json.gz")  # doctest: +SKIP
>>> t = tables["cifar10"]
>>> t.archs[0], t.proxies["synflow"][0], t.val_accuracy[0]               # doctest: +SKIP
('|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|',
 44.48..., 84.99)

Files are parsed with :mod:`json` only (``.gz`` is decompressed on the fly); nothing is
unpickled.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas_store.errors import BenchmarkFormatError, DataNotFoundError, InvalidArchError

__all__ = [
    "NASLIB_FAILED",
    "NB201_KEY_OPS",
    "ZcTable",
    "nb201_cell_to_key",
    "nb201_key_to_cell",
    "read_zc",
]

#: NASLib's op index → NB201 op name (``naslib/search_spaces/nasbench201/conversions.py``)
NB201_KEY_OPS: tuple[str, ...] = (
    "skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3",
)
#: key position of each cell-string edge: the string lists o0 | o1, o3 | o2, o4, o5
_CELL_ORDER: tuple[int, ...] = (0, 1, 3, 2, 4, 5)
#: NASLib's ``ZeroCost.query`` writes this for a NaN/Inf score
NASLIB_FAILED = -1e8

_KEY_RE = re.compile(r"^\(\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*\)$")


def nb201_key_to_cell(key: str) -> str:
    """``"(4, 0, 3, 1, 4, 3)"`` → ``|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|``."""
    m = _KEY_RE.match(str(key).strip())
    if m is None:
        raise InvalidArchError(
            f"{key!r} is not a NASLib NB201 key: expected six op indices 0..4 like "
            "'(4, 0, 3, 1, 4, 3)'"
        )
    o = [NB201_KEY_OPS[int(g)] for g in m.groups()]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[3]}~1|+|{o[2]}~0|{o[4]}~1|{o[5]}~2|"


def nb201_cell_to_key(cell: str) -> str:
    """Inverse of :func:`nb201_key_to_cell`: a NB201 cell string → NASLib's key string."""
    from eznas_store.sources.spaces.nb201 import parse_cell

    ops = parse_cell(cell).ops  # cell-string order: (1,2) (1,3) (2,3) (1,4) (2,4) (3,4)
    idx = [0] * 6
    for pos_in_string, key_pos in enumerate(_CELL_ORDER):
        idx[key_pos] = NB201_KEY_OPS.index(ops[pos_in_string])
    return "(" + ", ".join(str(i) for i in idx) + ")"


@dataclass(frozen=True)
class ZcTable:
    """One task of a Suite-Zero file, one row per architecture, in file order.

    ``archs``: NB201 cell strings when the space is NB201, else the raw keys; ``keys``:
    the raw keys; ``idx``: the records' ``idx`` (``""`` when absent); ``proxies`` /
    ``times``: proxy name → float64 array (NaN where a record lacks the proxy or its time);
    ``val_accuracy``: float64 array (NaN where absent).
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
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        kind = "gzip-compressed JSON" if path.suffix == ".gz" else "JSON"
        raise BenchmarkFormatError(f"{path} is not readable {kind}: {exc}") from exc


def _guess_space(path: Path) -> str:
    # by file name only: TransNAS-Bench-101-micro keys look like NB201 keys (six op
    # indices) but name a different space
    name = path.name.lower()
    return "nb201" if ("nasbench201" in name or "nb201" in name) else "raw"


def _number(value: object, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchmarkFormatError(f"{where} must be a number, got {value!r}")
    return float(value)


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
    if space not in (None, "nb201", "raw"):
        raise BenchmarkFormatError(f"space must be 'nb201' or 'raw', not {space!r}")
    tables: dict[str, ZcTable] = {}
    for task, records in data.items():
        if not isinstance(records, dict):
            raise BenchmarkFormatError(
                f"{path}: task {task!r} must map architecture keys to records, "
                f"got {type(records).__name__}"
            )
        keys = list(records)
        sp = space or _guess_space(path)
        archs: list[str] = []
        idx: list[str] = []
        scores: dict[str, dict[int, float]] = {}
        times: dict[str, dict[int, float]] = {}
        acc = np.full(len(keys), np.nan)
        for row, key in enumerate(keys):
            rec = records[key]
            where = f"{path}: task {task!r}, architecture {key!r}"
            if not isinstance(rec, dict):
                raise BenchmarkFormatError(f"{where}: record must be an object, got {type(rec).__name__}")
            if sp == "nb201":
                try:
                    archs.append(nb201_key_to_cell(key))
                except InvalidArchError as exc:
                    raise BenchmarkFormatError(f"{where}: {exc}") from None
            else:
                archs.append(key)
            idx.append(str(rec.get("idx", "")))
            for field, value in rec.items():
                if field in ("idx", "arch"):
                    continue
                if field == "val_accuracy":
                    acc[row] = _number(value, f"{where}: val_accuracy")
                    continue
                if not isinstance(value, dict) or "score" not in value:
                    raise BenchmarkFormatError(
                        f"{where}: field {field!r} must be {{\"score\": number[, \"time\": s]}}, "
                        f"got {value!r}"[:300]
                    )
                s = _number(value["score"], f"{where}: {field} score")
                if failed_to_nan and s == NASLIB_FAILED:
                    s = math.nan
                scores.setdefault(field, {})[row] = s
                if "time" in value:
                    times.setdefault(field, {})[row] = _number(value["time"], f"{where}: {field} time")
        if len(set(archs)) != len(archs):
            raise BenchmarkFormatError(f"{path}: task {task!r} lists an architecture twice")

        def to_arrays(d: dict[str, dict[int, float]]) -> dict[str, np.ndarray]:
            out = {}
            for name in sorted(d):
                a = np.full(len(keys), np.nan)
                for r, v in d[name].items():
                    a[r] = v
                out[name] = a
            return out

        tables[str(task)] = ZcTable(
            task=str(task), space=sp, archs=tuple(archs), keys=tuple(keys), idx=tuple(idx),
            proxies=to_arrays(scores), times=to_arrays(times), val_accuracy=acc,
        )
    return tables
