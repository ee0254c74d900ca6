"""The proxy-table CSV format (``eznas-proxy-table/1``): a network x proxy table and its ``.meta.json``.

Earlier versions of ``proxy-table`` wrote their product in this format; it stays readable
(``evolve --over proxies`` takes such a table) and is what ``proxy-table --export`` writes
(:func:`write_proxy_table`) from a store, whose proxies are the product now.
Columns: ``index, arch``, the accuracy columns, ``<proxy>@<label set>`` per proxy, ``seconds``.
A damaged table (no or a broken meta file, a row of another width, an empty or non-numeric
cell, a cell twice) is a one-line ``BenchmarkFormatError`` naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.errors import BenchmarkFormatError, OutputError
from eznas_store.outputs import write_atomic

__all__ = ["FORMAT", "LABEL_SETS", "csv_rows", "is_proxy_table", "proxy_meta_path", "read_meta", "read_proxy_table",
           "table_body", "write_proxy_table"]

FORMAT = "eznas-proxy-table/1"
#: label set -> (classes of the head, benchmark column, Suite-Zero task of NASLib's values)
LABEL_SETS: dict[str, tuple[int, str, str]] = {
    "cifar10": (10, "cifar10_test", "cifar10"),
    "cifar100": (100, "cifar100_test", "cifar10"),
    "imagenet16": (120, "imagenet16_test", "ImageNet16-120"),
}


def proxy_meta_path(out: Path) -> Path:
    return out.with_name(out.name[:-4] + ".meta.json")


def _check_size(path: Path) -> None:
    """A table or meta file larger than any input may be is refused before it is read whole."""
    from eznas_store.sources import limits

    if path.is_file() and path.stat().st_size > limits.MAX_DECOMPRESSED_BYTES:
        raise BenchmarkFormatError(f"{path} holds more than {limits.human_bytes(limits.MAX_DECOMPRESSED_BYTES)}, "
                                   "the limit for an input file; refusing it")


def read_meta(out: Path) -> dict[str, Any]:
    """The table's ``.meta.json``; one line naming the file and what is wrong with it."""
    path = proxy_meta_path(out)
    _check_size(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise BenchmarkFormatError(f"{out}: a proxy table without its meta file {path.name} (proxy-table writes "
                                   "the two together; copy it beside the table or collect a new one)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not JSON"
        raise BenchmarkFormatError(f"{out}: its meta file {path.name} cannot be read ({why})") from None
    problem = _meta_problem(doc)
    if problem:
        raise BenchmarkFormatError(f"{out}: its meta file {path.name} {problem}")
    return doc


def _meta_problem(doc: Any) -> str | None:
    """What a meta document lacks, or None."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    if doc.get("format") != FORMAT:
        return f"is not a {FORMAT} recipe (format {doc.get('format')!r})"
    columns = doc.get("columns")
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns) and columns[:2] == ["index", "arch"]):
        return "lacks 'columns' (the table's column names, beginning index, arch)"
    if not isinstance(doc.get("recipe"), dict):
        return "lacks 'recipe' (the options the table was collected with)"
    sets = doc.get("label_sets")
    if not isinstance(sets, dict) or not sets:
        return "lacks 'label_sets'"
    for name, info in sets.items():
        if not isinstance(info, dict) or info.get("accuracy") not in columns[2:]:
            return f"names no accuracy column of its columns for label set {name!r}"
    return None


def csv_rows(out: Path, raw: bytes) -> list[list[str]]:
    """The CSV's rows (blank lines as ``[]``, so a row's index is its line - 1)."""
    try:
        return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise BenchmarkFormatError(f"{out}: not a readable CSV ({str(e)[:80]})") from None


def table_body(out: Path, rows: list[list[str]]) -> list[tuple[int, list[str]]]:
    """(line, row) of the table's rows under its header: each as wide as the header, with a
    cell, and each cell once (a cell twice would put training cells into the held-out part)."""
    width, seen, body = len(rows[0]), {}, []
    for line, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        if len(r) != width:
            raise BenchmarkFormatError(f"{out}: line {line} has {len(r)} fields, its header {width}")
        if not r[1].strip():
            raise BenchmarkFormatError(f"{out}: line {line} has no cell in its arch column")
        if r[1] in seen:
            raise BenchmarkFormatError(f"{out}: cell {r[1]} is in it twice (lines {seen[r[1]]} and {line}; two runs "
                                       "writing one table at once?): collect it again into a new --out")
        seen[r[1]] = line
        body.append((line, r))
    return body


def is_proxy_table(path: str | os.PathLike[str]) -> bool:
    """A ``.csv`` beside a readable ``.meta.json`` of this format (:func:`read_proxy_table` says
    what is wrong with a ``.csv`` that is not)."""
    p = Path(path)
    if p.suffix.lower() != ".csv" or not proxy_meta_path(p).exists():
        return False
    try:
        read_meta(p)
    except BenchmarkFormatError:
        return False
    return True


def read_proxy_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"archs", "meta", "label_sets": {set: {"accuracy": (n,), "columns": {proxy: (n,)}}}}``.

    A damaged table (no or a broken meta file, a row of another width, an empty or
    non-numeric cell, a cell twice) is a one-line ``BenchmarkFormatError`` naming the file.
    """
    p = Path(path)
    if p.suffix.lower() != ".csv" or not p.is_file():
        raise BenchmarkFormatError(f"{p}: not a proxy table (a .csv file with a {FORMAT} .meta.json beside it)")
    _check_size(p)
    meta = read_meta(p)
    raw = p.read_bytes()
    rows = csv_rows(p, raw[: raw.rfind(b"\n") + 1])  # a row being written (no newline yet) is not read
    if not rows or rows[0] != meta["columns"]:
        raise BenchmarkFormatError(f"{p}: its header does not match {proxy_meta_path(p).name}")
    head, body = rows[0], table_body(p, rows)
    data = np.empty((len(body), len(head) - 2), dtype=np.float64)
    for i, (line, r) in enumerate(body):
        for j, x in enumerate(r[2:]):
            try:
                data[i, j] = float(x)
            except ValueError:
                what = "is empty" if not x.strip() else f"is not a number ({x[:20]!r})"
                raise BenchmarkFormatError(f"{p}: line {line}, column {head[j + 2]} {what}") from None
    col = {c: data[:, j] for j, c in enumerate(head[2:])}
    sets = {}
    for s, info in meta["label_sets"].items():
        proxies = {c.split("@")[0]: v for c, v in col.items() if c.endswith(f"@{s}")}
        sets[s] = {"accuracy": col[info["accuracy"]], "columns": proxies}
    return {"archs": tuple(r[1] for _, r in body), "meta": meta, "label_sets": sets}


def write_proxy_table(out: str | os.PathLike[str], archs: list[str], index: list[int],
                      columns: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write a table in this format: ``index, arch``, then ``columns`` in their order (accuracy
    columns, ``<proxy>@<label set>``, ``seconds``), and its ``.meta.json`` (``meta`` with
    ``format`` and ``columns`` set here; it must hold ``recipe`` and ``label_sets`` as
    :func:`read_meta` checks). Both are written atomically; a ``.csv`` there that is not such a
    table (no readable meta file beside it) is refused in one line, never overwritten."""
    p = Path(out)
    if p.suffix.lower() != ".csv":
        raise OutputError(f"{p}: a proxy table is a .csv file")
    if p.exists() and not is_proxy_table(p):
        raise OutputError(f"{p} exists and is not a proxy table ({FORMAT}); choose another path")
    head = ["index", "arch", *columns]
    doc = {**meta, "format": FORMAT, "columns": head}
    problem = _meta_problem(doc)
    if problem:
        raise OutputError(f"{p}: its meta {problem}")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    values = [np.asarray(v, dtype=np.float64) for v in columns.values()]
    for i, (arch, idx) in enumerate(zip(archs, index)):
        w.writerow([str(int(idx)), arch, *("nan" if not math.isfinite(v[i]) else repr(float(v[i])) for v in values)])
    write_atomic(proxy_meta_path(p), json.dumps(doc, indent=1) + "\n")
    write_atomic(p, buf.getvalue())
    return p
