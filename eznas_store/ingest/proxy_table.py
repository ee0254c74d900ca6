"""A proxies-only collection: a network x proxy table (CSV + ``.meta.json``) of NB201 cells.

No statistics, no store: per cell the modern proxies (AZ-NAS components, MeCo, ZiCo, SWAP,
``swap_reg``; :data:`~eznas_store.collect.proxies.registry.MODERN_PROXY_NAMES`) are computed
on CIFAR-10 images, once per label set's classifier head where the head matters, and
NASLib's 13 proxies for the same cells are *joined* from Suite-Zero's
``zc_nasbench201.json[.gz]`` (not recomputed). ``evolve --over proxies`` reads the table
(:func:`read_proxy_table`; one problem per label set, the same cells in the same order).

Label sets (:data:`LABEL_SETS`): the head has 10 / 100 / 120 classes for CIFAR-10 /
CIFAR-100 / ImageNet16-120 test accuracy; NASLib's values come from Suite-Zero's task
``cifar10`` / ``cifar10`` (the final release has no CIFAR-100 task) / ``ImageNet16-120``.

Head dependence (checked in ``tests/test_proxy_table.py``):

- computed once per cell, 10-class head, used for every label set: ``meco`` (exact: the
  classifier is the last module reset, and its 2-D outputs add exactly 0), and
  ``az_expressivity`` / ``az_progressivity`` / ``az_trainability`` / ``swap``, which never
  read the classifier but are **not** bit-identical under another head: the head's init
  draws from the same generator before AZ-NAS's Gaussian input and before SWAP's next
  re-init, so a 100-class network gives another draw of the same distribution;
- per head: ``zico`` (cross-entropy through the head, CIFAR-10's labels), ``az_complexity``
  (FLOPs include the classifier) and ``swap_reg`` (= ``swap`` · exp(−(P − μ)²/σ) with P the
  head's parameter count: exact given ``swap``).

Columns: ``index, arch``, the three test-accuracy columns, ``<proxy>@<label set>`` for
every proxy (modern and NASLib's), ``seconds`` (collection wall time of the cell). Cells:
those in both Suite-Zero NB201 tasks (9,445: no branch cut off by ``none`` edges), in a
permutation seeded by ``seed``; ``networks`` takes its first N, so a larger N extends a
table. Resumable: each finished cell is one appended, flushed and fsynced CSV row; a rerun
with the same recipe continues after the last complete row (a torn last row is cut), one
with another recipe is refused naming the option that differs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.errors import BenchmarkFormatError, ConfigError, DataNotFoundError
from eznas_store.outputs import write_atomic

__all__ = ["FORMAT", "HEAD_FREE", "LABEL_SETS", "PER_HEAD", "ProxyTableConfig", "ProxyTableResult",
           "collect_proxy_table", "is_proxy_table", "plan_cells", "read_proxy_table"]

FORMAT = "eznas-proxy-table/1"
#: label set -> (classes of the head, benchmark column, Suite-Zero task of NASLib's values)
LABEL_SETS: dict[str, tuple[int, str, str]] = {
    "cifar10": (10, "cifar10_test", "cifar10"),
    "cifar100": (100, "cifar100_test", "cifar10"),
    "imagenet16": (120, "imagenet16_test", "ImageNet16-120"),
}
#: computed once per cell with the 10-class head (see the module docstring)
HEAD_FREE: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap")
#: computed (or derived) per label set's head
PER_HEAD: tuple[str, ...] = ("az_complexity", "zico", "swap_reg")
_RECIPE_KEYS = ("benchmark", "suitezero", "data_root", "seed", "batch_size", "proxies", "label_sets",
                "channels", "cells_per_stage", "swap_batch")


@dataclass(frozen=True)
class ProxyTableConfig:
    """What ``eznas-store proxy-table`` collects; validated once here."""

    out: str
    benchmark: str
    suitezero: str
    data_root: str
    networks: int = 1100
    seed: int = 0
    batch_size: int = 64
    label_sets: tuple[str, ...] = tuple(LABEL_SETS)
    proxies: tuple[str, ...] = HEAD_FREE + PER_HEAD
    channels: int = 16
    cells_per_stage: int = 5
    progress: bool = True
    max_seconds: float = 0.0
    #: auto, cpu or cuda[:k] (not part of the recipe: a table may be continued on a GPU)
    device: str = "auto"

    def __post_init__(self) -> None:
        from eznas_store.collect.proxies.registry import MODERN_PROXY_NAMES

        checks = [
            (str(self.out).endswith(".csv"), f"--out must name a .csv file, got {self.out!r}"),
            (isinstance(self.networks, int) and self.networks >= 1, f"--networks must be >= 1, got {self.networks!r}"),
            (isinstance(self.seed, int) and self.seed >= 0, f"--seed must be >= 0, got {self.seed!r}"),
            (isinstance(self.batch_size, int) and 2 <= self.batch_size <= 500,
             f"--batch-size must be from 2 to 500 (ZiCo uses two batches of it), got {self.batch_size!r}"),
            (bool(self.label_sets) and set(self.label_sets) <= set(LABEL_SETS),
             f"--label-set must be among {', '.join(LABEL_SETS)}, got {', '.join(self.label_sets)}"),
            (bool(self.proxies) and set(self.proxies) <= set(MODERN_PROXY_NAMES),
             f"--proxy must be among {', '.join(MODERN_PROXY_NAMES)}, got {', '.join(self.proxies)}"),
            (self.max_seconds >= 0, f"--max-seconds must be >= 0, got {self.max_seconds}"),
            (self.channels >= 1 and self.cells_per_stage >= 1, "--channels and --cells must be >= 1"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"--device must be auto, cpu or cuda[:k], got {self.device!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if "swap_reg" in self.proxies and "swap" not in self.proxies:
            raise ConfigError("--proxy swap_reg is derived from swap: name swap too")
        for p in (self.benchmark, self.suitezero, self.data_root):
            if not Path(p).exists():
                raise DataNotFoundError(f"{p} not found")
        object.__setattr__(self, "label_sets", tuple(dict.fromkeys(self.label_sets)))
        object.__setattr__(self, "proxies", tuple(dict.fromkeys(self.proxies)))

    def recipe(self) -> dict[str, Any]:
        """What must match for a rerun to continue a table (everything but ``networks``)."""
        from eznas_store.collect.proxies.swap import SWAP_BATCH

        d = asdict(self)
        d["benchmark"] = os.path.abspath(self.benchmark)
        d["suitezero"] = os.path.abspath(self.suitezero)
        d["data_root"] = os.path.abspath(self.data_root)
        d["proxies"], d["label_sets"] = list(self.proxies), list(self.label_sets)
        # SWAP's images (16 since issue 13's measurement; a table without it used the whole batch)
        d["swap_batch"] = min(SWAP_BATCH, self.batch_size) if "swap" in self.proxies else None
        return {k: d[k] for k in _RECIPE_KEYS}


@dataclass
class ProxyTableResult:
    out: Path
    done: int
    target: int
    new: int
    seconds: float
    cells_per_second: float
    stopped: str = ""
    columns: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- plan


def plan_cells(cfg: ProxyTableConfig) -> tuple[list[str], dict[str, Any]]:
    """The seeded cell order (first ``networks``) and per-cell joined values (labels + NASLib)."""
    from eznas_store.sources.suitezero import read_zc
    from eznas_store.sources.tables import read_benchmark

    bench = read_benchmark(cfg.benchmark)
    zc = read_zc(cfg.suitezero, space="nb201")
    tasks = {LABEL_SETS[s][2] for s in cfg.label_sets}
    missing = [t for t in tasks if t not in zc]
    if missing:
        raise BenchmarkFormatError(f"{cfg.suitezero}: no task {', '.join(missing)} (it has {', '.join(zc)})")
    common = set(bench.archs)
    for t in tasks:
        common &= set(zc[t].archs)
    ordered = sorted(common)  # a canonical order, so the permutation depends on the seed only
    perm = np.random.default_rng(cfg.seed).permutation(len(ordered))
    if cfg.networks > len(ordered):
        raise ConfigError(f"--networks {cfg.networks}: only {len(ordered)} cells are in both the benchmark "
                          "and every Suite-Zero task")
    cells = [ordered[i] for i in perm[:cfg.networks]]
    rows = {t: zc[t].index() for t in tasks}
    joined: dict[str, dict[str, float]] = {}
    for a in cells:
        r = bench.lookup(a)
        vals = {"index": float(bench.index[r])}
        for s in cfg.label_sets:
            _, col, task = LABEL_SETS[s]
            vals[col] = float(bench.column(col)[r])
            for name, arr in zc[task].proxies.items():
                vals[f"{name}@{s}"] = float(arr[rows[task][a]])
        joined[a] = vals
    naslib = sorted({k.split("@")[0] for v in joined.values() for k in v if "@" in k})
    return cells, {"values": joined, "naslib": naslib}


def _columns(cfg: ProxyTableConfig, naslib: list[str]) -> list[str]:
    acc = [LABEL_SETS[s][1] for s in cfg.label_sets]
    ours = [f"{p}@{s}" for s in cfg.label_sets for p in cfg.proxies]
    theirs = [f"{p}@{s}" for s in cfg.label_sets for p in naslib]
    return ["index", "arch", *acc, *ours, *theirs, "seconds"]


# ----------------------------------------------------------------------------- resume


def _meta_path(out: Path) -> Path:
    return out.with_name(out.name[:-4] + ".meta.json")


def _check_recipe(cfg: ProxyTableConfig, meta: dict[str, Any], out: Path) -> None:
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{out}: {_meta_path(out).name} is not a {FORMAT} recipe")
    old, new = meta.get("recipe", {}), cfg.recipe()
    for k in _RECIPE_KEYS:
        if old.get(k) != new[k]:
            raise ConfigError(f"{out} was collected with {k}={old.get(k)!r}, this run asks for {new[k]!r}: "
                              f"rerun with the same {k} to continue it, or choose another --out")


def _done_rows(out: Path, columns: list[str]) -> list[str]:
    """Archs of the complete rows already in ``out``; a torn last row is cut off the file."""
    if not out.exists():
        return []
    raw = out.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(out, "r+b") as f:
            f.truncate(len(raw))
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    if not rows:
        return []
    if rows[0] != columns:
        raise ConfigError(f"{out}: its header differs from this recipe's columns (another version wrote it?)")
    return [r[1] for r in rows[1:]]


def _start(cfg: ProxyTableConfig, cells: list[str], columns: list[str], naslib: list[str]) -> list[str]:
    out = Path(cfg.out)
    meta_file = _meta_path(out)
    if meta_file.exists():
        _check_recipe(cfg, json.loads(meta_file.read_text()), out)
    elif out.exists():
        raise ConfigError(f"{out} exists without its recipe {meta_file.name}: choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_rows(out, columns)
    if done != cells[: len(done)]:
        raise ConfigError(f"{out}: its {len(done)} rows are not the first cells of this recipe's order")
    meta = {"format": FORMAT, "recipe": cfg.recipe(), "networks": max(cfg.networks, len(done)),
            "columns": columns, "naslib_proxies": naslib, "head_free": [p for p in HEAD_FREE if p in cfg.proxies],
            "per_head": [p for p in PER_HEAD if p in cfg.proxies],
            "label_sets": {s: {"classes": LABEL_SETS[s][0], "accuracy": LABEL_SETS[s][1],
                               "naslib_task": LABEL_SETS[s][2]} for s in cfg.label_sets},
            "protocol": _PROTOCOL}
    write_atomic(meta_file, json.dumps(meta, indent=1) + "\n")
    if not done:
        write_atomic(out, ",".join(columns) + "\n")
    return done


_PROTOCOL = ("images: a seeded sample of 2*batch_size CIFAR-10 training images (normalised as NB201); "
             "az_nas: N(0,1) input of the first batch_size images' shape, Kaiming fan_in, train mode; "
             "meco: the first image, PyTorch default init, train mode; swap: the first 16 images, "
             "32 N(0,1) re-inits; zico: two batches of batch_size images with their CIFAR-10 labels, "
             "PyTorch default init, one head per label set; head-free proxies use the 10-class head; "
             "NASLib's 13 proxies joined from Suite-Zero (not recomputed)")


# ----------------------------------------------------------------------------- collect


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else repr(float(v))


def _cell_values(cfg: ProxyTableConfig, arch: str, images, labels) -> dict[str, float]:
    """Our proxies of one cell: ``{proxy@label_set: value}`` (NaN where a proxy failed)."""
    from eznas_store.collect.proxies.networks import nb201_factory
    from eznas_store.collect.proxies.runner import compute_all
    from eznas_store.collect.proxies.swap import swap_regularised
    from eznas_store.collect.statistics import resolve_device

    b = cfg.batch_size
    device = resolve_device(cfg.device)
    kw = {"C": cfg.channels, "N": cfg.cells_per_stage}
    once = [p for p in HEAD_FREE if p in cfg.proxies]
    per = [p for p in ("az_complexity", "zico") if p in cfg.proxies]
    free = compute_all(nb201_factory(arch, num_classes=10, **kw), images[:b], labels[:b], seed=cfg.seed,
                       names=once, device=device) if once else {}
    out: dict[str, float] = {}
    for s in cfg.label_sets:
        classes = LABEL_SETS[s][0]
        factory = nb201_factory(arch, num_classes=classes, **kw)
        vals = {k: v for k, (v, _) in free.items()}
        if per:
            vals |= {k: v for k, (v, _) in compute_all(factory, images, labels, seed=cfg.seed, names=per,
                                                           device=device).items()}
        if "swap_reg" in cfg.proxies:
            params_k = sum(p.numel() for p in factory(cfg.seed).parameters()) / 1e3
            sw = vals["swap"]
            vals["swap_reg"] = swap_regularised(sw, params_k) if math.isfinite(sw) else math.nan
        out |= {f"{p}@{s}": vals[p] for p in cfg.proxies}
    return out


def collect_proxy_table(cfg: ProxyTableConfig) -> ProxyTableResult:
    """Fill (or continue) the table: one appended row per cell, a progress bar, a time cap."""
    from tqdm.auto import tqdm

    from eznas_store.sources.datasets import sample_batch

    cells, plan = plan_cells(cfg)
    columns = _columns(cfg, plan["naslib"])
    done = set(_start(cfg, cells, columns, plan["naslib"]))
    todo = [a for a in cells if a not in done]
    batch = sample_batch("cifar10", cfg.data_root, batch_size=2 * cfg.batch_size, seed=cfg.seed)
    out, t0, new, stopped = Path(cfg.out), time.perf_counter(), 0, ""
    with open(out, "a", newline="") as f, tqdm(total=len(cells), initial=len(done), desc="proxy-table",
                                                unit="cell", disable=not cfg.progress) as bar:
        writer = csv.writer(f, lineterminator="\n")
        for arch in todo:
            if cfg.max_seconds and time.perf_counter() - t0 >= cfg.max_seconds:
                stopped = f"--max-seconds {cfg.max_seconds:g} reached"
                break
            c0 = time.perf_counter()
            vals = plan["values"][arch] | _cell_values(cfg, arch, batch.images, batch.labels)
            vals["seconds"] = time.perf_counter() - c0
            writer.writerow([str(int(vals["index"])), arch, *(_fmt(vals[c]) for c in columns[2:])])
            f.flush()
            os.fsync(f.fileno())
            new += 1
            bar.update(1)
    secs = time.perf_counter() - t0
    return ProxyTableResult(out=out, done=len(done) + new, target=len(cells), new=new, seconds=secs,
                            cells_per_second=new / secs if secs > 0 else 0.0, stopped=stopped, columns=columns)


# ----------------------------------------------------------------------------- read


def is_proxy_table(path: str | os.PathLike[str]) -> bool:
    """A ``.csv`` beside a ``.meta.json`` of this format."""
    p = Path(path)
    if p.suffix.lower() != ".csv" or not _meta_path(p).exists():
        return False
    try:
        return json.loads(_meta_path(p).read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_proxy_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"archs", "meta", "label_sets": {set: {"accuracy": (n,), "columns": {proxy: (n,)}}}}``."""
    p = Path(path)
    if not is_proxy_table(p):
        raise BenchmarkFormatError(f"{p}: not a proxy table (a .csv with a {FORMAT} .meta.json beside it)")
    meta = json.loads(_meta_path(p).read_text())
    raw = p.read_bytes()
    raw = raw[: raw.rfind(b"\n") + 1]  # a row being written (no newline yet) is not read
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    if not rows or rows[0] != meta["columns"]:
        raise BenchmarkFormatError(f"{p}: its header does not match {_meta_path(p).name}")
    body = [r for r in rows[1:] if len(r) == len(rows[0])]
    head = rows[0]
    data = np.array([[float(x) for x in r[2:]] for r in body], dtype=np.float64).reshape(len(body), len(head) - 2)
    col = {c: data[:, j] for j, c in enumerate(head[2:])}
    sets = {}
    for s, info in meta["label_sets"].items():
        proxies = {c.split("@")[0]: v for c, v in col.items() if c.endswith(f"@{s}")}
        sets[s] = {"accuracy": col[info["accuracy"]], "columns": proxies}
    return {"archs": tuple(r[1] for r in body), "meta": meta, "label_sets": sets}
