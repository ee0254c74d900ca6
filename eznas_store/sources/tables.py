"""Benchmark tables: which networks exist and how accurate they are once trained.

A table is a CSV (optionally gzip) with an ``arch`` column of cell strings and numeric
accuracy columns, e.g. ``nb201_accuracies.csv``::

    index,arch,cifar10_test,cifar100_test,imagenet16_test,cifar10_valid
    0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|...|,85.8633,52.9133,26.6333,81.9827

``index`` is optional (row number otherwise). A sidecar ``<path>.meta.json`` carries
whatever describes the labels (the ``label`` command writes its training recipe there),
because a bare accuracy column says nothing about how it was produced.

    >>> table = read_benchmark("nb201_accuracies.csv")  # doctest: +SKIP
    >>> acc = table.column(default_accuracy_column(table, "cifar10"))  # doctest: +SKIP
    >>> rows = select_networks(table, networks=100, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.config import check_seed
from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    UnknownNameError,
)
from eznas_store.outputs import ensure_dir, write_atomic
from eznas_store.sources.limits import open_capped_text

__all__ = [
    "DEFAULT_ACCURACY_COLUMNS",
    "BenchmarkTable",
    "default_accuracy_column",
    "meta_path",
    "parse_network_selection",
    "read_benchmark",
    "read_network_list",
    "select_networks",
    "write_benchmark",
]

#: dataset → accuracy columns to try, first present wins. CIFAR-10 prefers the
#: validation accuracy because that is the label EZNAS evolved and reported against.
DEFAULT_ACCURACY_COLUMNS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar10_valid", "cifar10_test"),
    "cifar100": ("cifar100_test",),
    "imagenet16-120": ("imagenet16_test",),
    "digits": ("digits_test",),
}

_RESERVED = ("index", "arch")


@dataclass(frozen=True, eq=False)
class BenchmarkTable:
    """An immutable benchmark table: cell strings, their indices and numeric columns.

    Arrays are read-only; ``columns`` keep the file's column order; ``meta`` is the
    sidecar JSON (empty when there is none). Equality is identity (arrays inside).
    """

    path: str
    archs: tuple[str, ...]
    index: np.ndarray
    columns: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    _rows: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.archs)
        if len(self.index) != n or any(len(v) != n for v in self.columns.values()):
            raise BenchmarkFormatError(f"{self.path}: columns differ in length")
        rows: dict[str, int] = {}
        for i, arch in enumerate(self.archs):
            if arch in rows:
                raise BenchmarkFormatError(
                    f"{self.path}: cell {arch} appears twice (rows {rows[arch]} and {i})"
                )
            rows[arch] = i
        object.__setattr__(self, "_rows", rows)
        for array in (self.index, *self.columns.values()):
            array.setflags(write=False)

    def __len__(self) -> int:
        return len(self.archs)

    def __repr__(self) -> str:
        return (
            f"BenchmarkTable({self.path!r}, {len(self)} networks, "
            f"columns={list(self.columns)})"
        )

    def column(self, name: str) -> np.ndarray:
        """One numeric column (float64), by name."""
        try:
            return self.columns[name]
        except KeyError:
            raise UnknownNameError(
                f"{self.path} has no column {name!r}; available columns: "
                f"{', '.join(self.columns) or '(none)'}"
            ) from None

    def lookup(self, arch: str) -> int:
        """Row position of a cell string (exact match)."""
        try:
            return self._rows[arch]
        except KeyError:
            raise UnknownNameError(f"cell {arch} is not in {self.path}") from None

    def __contains__(self, arch: object) -> bool:
        return arch in self._rows


def meta_path(path: str | Path) -> Path:
    """The sidecar metadata file of a table: ``<path>.meta.json``."""
    return Path(str(path) + ".meta.json")


def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8 (a leading BOM dropped), gunzipped if ``.gz``, at most ``MAX_DECOMPRESSED_BYTES``."""
    return open_capped_text(path, newline="")


def _parse_float(text: str, *, where: str, column: str) -> float:
    """Floats, with an empty cell read as NaN (a network without that label)."""
    text = text.strip()
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise BenchmarkFormatError(
            f"{where}: column {column} holds {text!r}, which is not a number"
        ) from None
    if math.isinf(value):
        raise BenchmarkFormatError(f"{where}: column {column} holds an infinite value")
    if math.isnan(value):  # an explicit NaN is a broken export, not "no label"
        raise BenchmarkFormatError(f"{where}: column {column} holds {text!r}; leave the cell empty "
                                   "for a network without that label")
    return value


@dataclass(frozen=True)
class _Layout:
    """Where a table's header puts the arch and index columns, and which are numeric."""

    width: int
    arch_at: int
    index_at: int | None
    numeric: list[tuple[int, str]]


#: the header-less DARTS table (``darts/darts_1000_cifar10_valid.csv``): quoted genotype, valid_acc %
_GENOTYPE_LAYOUT = _Layout(width=2, arch_at=0, index_at=None, numeric=[(1, "cifar10_valid")])


def _is_genotype_csv(path: Path) -> bool:
    """Whether the file starts with a DARTS genotype instead of a header row."""
    with _open_text(path) as f:
        return f.read(16).lstrip().lstrip("\"'").startswith("Genotype(")


def _read_header(reader: Any, path: Path) -> _Layout:
    header = next(reader, None)
    if header is None:
        raise BenchmarkFormatError(f"{path} is empty; expected a CSV header")
    header = [h.strip() for h in header]
    if "arch" not in header:
        raise BenchmarkFormatError(
            f"{path} line 1: no 'arch' column (columns: {', '.join(header)})"
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise BenchmarkFormatError(f"{path} line 1: repeated columns {dupes}")
    return _Layout(
        width=len(header),
        arch_at=header.index("arch"),
        index_at=header.index("index") if "index" in header else None,
        numeric=[(i, h) for i, h in enumerate(header) if h not in _RESERVED],
    )


def _row_index(row: list[str], layout: _Layout, where: str, default: int) -> int:
    if layout.index_at is None:
        return default
    try:
        return int(row[layout.index_at])
    except ValueError:
        raise BenchmarkFormatError(
            f"{where}: index {row[layout.index_at]!r} is not an integer"
        ) from None


def _read_rows(
    reader: Any, path: Path, layout: _Layout
) -> tuple[list[str], list[int], list[list[float]]]:
    """(archs, index, values) of every non-blank row, each row checked."""
    archs: list[str] = []
    index: list[int] = []
    values: list[list[float]] = []
    first_line: dict[str, int] = {}
    for row in reader:
        where = f"{path} line {reader.line_num}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != layout.width:
            raise BenchmarkFormatError(
                f"{where}: {len(row)} fields, the header has {layout.width}"
            )
        arch = row[layout.arch_at].strip()
        if not arch:
            raise BenchmarkFormatError(f"{where}: empty arch")
        if arch in first_line:
            raise BenchmarkFormatError(
                f"{where}: cell {arch} already appears on line {first_line[arch]}"
            )
        first_line[arch] = reader.line_num
        index.append(_row_index(row, layout, where, len(archs)))
        archs.append(arch)
        values.append([_parse_float(row[i], where=where, column=h) for i, h in layout.numeric])
    return archs, index, values


def read_benchmark(path: str | Path) -> BenchmarkTable:
    """Read a benchmark CSV (``.gz`` too) and its sidecar metadata, checking every row.

    Errors name the file and line: a missing ``arch`` column, a non-numeric value, a
    short or long row, or a cell listed twice. A header-less file whose first field is a
    DARTS ``Genotype(...)`` is read as (genotype, ``cifar10_valid``) rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"benchmark table {path} does not exist")
    try:
        genotypes = _is_genotype_csv(path)
        with _open_text(path) as f:
            reader = csv.reader(f)
            layout = _GENOTYPE_LAYOUT if genotypes else _read_header(reader, path)
            archs, index, values = _read_rows(reader, path, layout)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as exc:
        raise BenchmarkFormatError(f"{path}: not a readable CSV table ({exc})") from exc
    index_array = np.asarray(index, dtype=np.int64)
    if len(np.unique(index_array)) != len(index_array):
        raise BenchmarkFormatError(f"{path}: the index column repeats values")
    matrix = np.asarray(values, dtype=np.float64).reshape(len(archs), len(layout.numeric))
    columns = {h: np.ascontiguousarray(matrix[:, j]) for j, (_, h) in enumerate(layout.numeric)}
    return BenchmarkTable(
        path=str(path),
        archs=tuple(archs),
        index=index_array,
        columns=columns,
        meta=_read_meta(path),
    )


def _read_meta(path: Path) -> dict[str, Any]:
    sidecar = meta_path(path)
    if not sidecar.is_file():
        return {}
    try:
        with open_capped_text(sidecar) as f:
            meta = json.load(f)
    except BenchmarkFormatError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise BenchmarkFormatError(f"{sidecar}: not valid JSON ({why})") from None
    if not isinstance(meta, dict):
        raise BenchmarkFormatError(f"{sidecar}: expected a JSON object")
    return meta


def _format(value: float) -> str:
    # repr is the shortest string that reads back to the same float64
    return "" if math.isnan(value) else repr(float(value))


def write_benchmark(
    path: str | Path,
    archs: Sequence[str],
    columns: Mapping[str, Iterable[float]],
    *,
    index: Iterable[int] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a table that :func:`read_benchmark` reads back exactly (``.gz`` if named so).

    Floats are written with ``repr`` (exact round trip), NaN as an empty cell. The file
    is replaced atomically. ``meta`` goes to ``<path>.meta.json``; without it a stale
    sidecar is removed, since it would describe a different table.
    """
    path = Path(path).expanduser()
    archs = [str(a) for a in archs]
    n = len(archs)
    index_list = list(range(n)) if index is None else [int(i) for i in index]
    data = {str(k): np.asarray(list(v), dtype=np.float64) for k, v in columns.items()}
    clash = [k for k in data if k in _RESERVED]
    if clash:
        raise ConfigError(f"column names {clash} are reserved for the table's key columns")
    if len(index_list) != n or any(len(v) != n for v in data.values()):
        raise ConfigError(
            f"write_benchmark: {n} archs, {len(index_list)} index values and column "
            f"lengths {[len(v) for v in data.values()]} must agree"
        )
    # build the table first: it checks duplicate cells, as reading would
    BenchmarkTable(str(path), tuple(archs), np.asarray(index_list, np.int64), data)
    if len(set(index_list)) != n:
        raise ConfigError("write_benchmark: index values repeat")
    ensure_dir(path.parent)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "arch", *data])
    for i in range(n):
        writer.writerow([index_list[i], archs[i], *(_format(v[i]) for v in data.values())])
    payload = buffer.getvalue().encode("utf-8")
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime 0: same table, same bytes
    write_atomic(path, payload)
    sidecar = meta_path(path)
    if meta is not None:
        text = json.dumps(dict(meta), indent=2, sort_keys=True) + "\n"
        write_atomic(sidecar, text.encode("utf-8"))
    elif sidecar.exists():
        sidecar.unlink()
    return path



def default_accuracy_column(table: BenchmarkTable, dataset: str) -> str:
    """The accuracy column fitness uses for ``dataset`` unless told otherwise."""
    key = str(dataset).strip().lower()
    if key not in DEFAULT_ACCURACY_COLUMNS:
        raise UnknownNameError(
            f"no default accuracy column for dataset {dataset!r}; known datasets: "
            f"{', '.join(DEFAULT_ACCURACY_COLUMNS)}"
        )
    for name in DEFAULT_ACCURACY_COLUMNS[key]:
        if name in table.columns:
            return name
    raise UnknownNameError(
        f"{table.path} has none of the {key} accuracy columns "
        f"{', '.join(DEFAULT_ACCURACY_COLUMNS[key])}; available columns: "
        f"{', '.join(table.columns) or '(none)'} (name one explicitly)"
    )


# ------------------------------------------------------------------------- selection


def _existing_file(text: str | os.PathLike[str]) -> Path | None:
    """``text`` as a path to an existing file, or None (also for unusable names)."""
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError, RuntimeError):  # "~nobody", NUL bytes, over-long names
        return None


def read_network_list(path: str | Path) -> list[str]:
    """Cell strings from a text file, one per line; blank lines and ``#`` lines skipped."""
    found = _existing_file(path)
    if found is None:
        raise DataNotFoundError(f"network list {path} does not exist")
    cells = []
    try:
        with open_capped_text(found) as f:
            text = f.read()
    except BenchmarkFormatError as e:
        raise ConfigError(f"network list {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"network list {path} is not UTF-8 text (byte {e.start}): one cell string per line") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            cells.append(line)
    if not cells:
        raise ConfigError(f"network list {path} names no networks")
    return cells


def parse_network_selection(text: str) -> int | None | list[str]:
    """Parse ``--networks``: an integer (random sample size), ``all`` (None), a path to a
    file of cell strings, or one literal cell string (starting with ``|``)."""
    value = str(text).strip()
    if value.lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        pass
    else:
        if count < 1:
            raise ConfigError(f"--networks must be at least 1, not {count}")
        return count
    if value.startswith("|"):
        return [value]
    if value and _existing_file(value) is not None:
        return read_network_list(value)
    raise ConfigError(
        f"--networks takes an integer, 'all' or a file of cell strings; {value!r} is none "
        "of these (no such file)"
    )


def select_networks(
    table: BenchmarkTable,
    *,
    networks: int | None = None,
    archs: Sequence[str] | str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Row positions (int64, ascending) of the networks to work on.

    ``networks``: a seeded sample without replacement
    (``numpy.random.default_rng(seed).choice``); ``archs``: explicit cells, or a path to
    a file of them (a single ``str`` starting with ``|`` is one cell); neither: all rows.
    Rows are sorted so that the same selection always lays a store out the same way.
    """
    if networks is not None and archs is not None:
        raise ConfigError("give either a number of networks or a list of cells, not both")
    if archs is not None:
        if isinstance(archs, os.PathLike) or (
            isinstance(archs, str) and not archs.startswith("|")
        ):
            cells = read_network_list(archs)
        elif isinstance(archs, str):
            cells = [archs]
        else:
            cells = [str(a).strip() for a in archs]
        positions: list[int] = []
        seen: set[str] = set()
        for cell in cells:
            if cell in seen:
                raise ConfigError(f"cell {cell} is listed twice")
            seen.add(cell)
            if cell not in table:
                raise UnknownNameError(f"cell {cell} is not in {table.path}")
            positions.append(table.lookup(cell))
        return np.sort(np.asarray(positions, dtype=np.int64))
    if networks is None:
        return np.arange(len(table), dtype=np.int64)
    if isinstance(networks, bool) or not isinstance(networks, (int, np.integer)):
        raise ConfigError(f"networks must be an integer, not {networks!r}")
    if not 1 <= networks <= len(table):
        raise ConfigError(
            f"cannot select {networks} networks from {table.path}, which has {len(table)}"
        )
    seed = check_seed(seed, "seed")
    chosen = np.random.default_rng(seed).choice(len(table), size=int(networks), replace=False)
    return np.sort(chosen.astype(np.int64))
