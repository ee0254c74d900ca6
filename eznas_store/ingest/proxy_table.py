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
with another recipe is refused naming the option that differs. One writer at a time: a
second run on the same ``--out`` is refused in one line naming the holder
(:func:`~eznas_store.outputs.exclusive`). A damaged table (no or a broken ``.meta.json``, a
row of another width, an empty or non-numeric cell, a cell twice) is refused in one line
naming the file, both when read and when continued.
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

from eznas_store.config import check_seed
from eznas_store.errors import BenchmarkFormatError, ConfigError, DataNotFoundError
from eznas_store.outputs import ensure_dir, exclusive, write_atomic
from eznas_store.sources import (FORMAT, LABEL_SETS, csv_rows, is_proxy_table, proxy_meta_path, read_meta,
                                 read_proxy_table, table_body)

__all__ = ["FORMAT", "HEAD_FREE", "LABEL_SETS", "MAX_THREADS", "PER_HEAD", "ProxyTableConfig", "ProxyTableResult",
           "collect_proxy_table", "is_proxy_table", "plan_cells", "read_proxy_table"]

#: computed once per cell with the 10-class head (see the module docstring)
HEAD_FREE: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap")
#: computed (or derived) per label set's head
PER_HEAD: tuple[str, ...] = ("az_complexity", "zico", "swap_reg")
#: ``--threads`` of ``proxy-table``: 1 (bit-reproducible) up to this many torch threads
MAX_THREADS = 256
_RECIPE_KEYS = ("benchmark", "suitezero", "data_root", "seed", "batch_size", "proxies", "label_sets",
                "channels", "cells_per_stage", "swap_batch")


@dataclass(frozen=True)
class ProxyTableConfig:
    """What ``eznas-store proxy-table`` collects; validated once here."""

    out: str
    #: the three inputs have no default (the CLI passes None for one not given: refused here)
    benchmark: str | None
    suitezero: str | None
    data_root: str | None
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
        from eznas_store.collect import MODERN_PROXY_NAMES

        checks = [
            (str(self.out).endswith(".csv"), f"--out must name a .csv file, got {self.out!r}"),
            (isinstance(self.networks, int) and self.networks >= 1, f"--networks must be >= 1, got {self.networks!r}"),
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
        check_seed(self.seed)
        if "swap_reg" in self.proxies and "swap" not in self.proxies:
            raise ConfigError("--proxy swap_reg is derived from swap: name swap too")
        self._check_inputs()
        object.__setattr__(self, "label_sets", tuple(dict.fromkeys(self.label_sets)))
        object.__setattr__(self, "proxies", tuple(dict.fromkeys(self.proxies)))

    def _check_inputs(self) -> None:
        """Each input given must exist; then none may be missing (they have no default)."""
        given = (("--benchmark", self.benchmark), ("--suitezero", self.suitezero), ("--data-root", self.data_root))
        for _, p in given:
            if p and not Path(p).exists():
                raise DataNotFoundError(f"{p} not found")
        missing = [flag for flag, p in given if not p]
        if missing:
            raise ConfigError(f"proxy-table needs {', '.join(missing)}: the NB201 accuracy table (--benchmark), "
                              "Suite-Zero's zc_nasbench201.json[.gz] (--suitezero) and the CIFAR-10 images "
                              "(--data-root)")

    def recipe(self) -> dict[str, Any]:
        """What must match for a rerun to continue a table (everything but ``networks``)."""
        from eznas_store.collect import SWAP_BATCH

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
    from eznas_store.sources import read_zc
    from eznas_store.sources import read_benchmark

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


def _check_recipe(cfg: ProxyTableConfig, meta: dict[str, Any], out: Path) -> None:
    old, new = meta["recipe"], cfg.recipe()
    for k in _RECIPE_KEYS:
        if old.get(k) != new[k]:
            raise ConfigError(f"{out} was collected with {k}={old.get(k)!r}, this run asks for {new[k]!r}: "
                              f"rerun with the same {k} to continue it, or choose another --out")


def _done_rows(out: Path, columns: list[str]) -> list[str]:
    """Archs of the complete rows already in ``out``; a torn last row is cut off the file."""
    if not out.exists():
        return []
    if not out.is_file():
        raise ConfigError(f"{out} is not a file: choose another --out")
    raw = out.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
        with open(out, "r+b") as f:
            f.truncate(len(raw))
    rows = csv_rows(out, raw)
    if not rows:
        return []
    if rows[0] != columns:
        raise ConfigError(f"{out}: its header differs from this recipe's columns (another version wrote it?)")
    return [r[1] for _, r in table_body(out, rows)]


def _start(cfg: ProxyTableConfig, cells: list[str], columns: list[str], naslib: list[str]) -> list[str]:
    out = Path(cfg.out)
    meta_file = proxy_meta_path(out)
    if meta_file.exists():
        _check_recipe(cfg, read_meta(out), out)
    elif out.exists():
        raise ConfigError(f"{out} exists without its recipe {meta_file.name}: choose another --out")
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
    from eznas_store.collect import nb201_factory
    from eznas_store.collect import compute_all
    from eznas_store.collect import swap_regularised
    from eznas_store.collect import resolve_device

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
    """Fill (or continue) the table: one appended row per cell, a progress bar, a time cap.

    One writer at a time: the table is written under :func:`~eznas_store.outputs.exclusive`
    (a second run on the same ``--out`` is refused in one line naming the holder)."""
    from eznas_store.sources import sample_batch

    cells, plan = plan_cells(cfg)
    columns = _columns(cfg, plan["naslib"])
    out = Path(cfg.out)
    ensure_dir(out.parent, "folder of --out")
    with exclusive(out, "proxy table"):
        done = set(_start(cfg, cells, columns, plan["naslib"]))
        batch = sample_batch("cifar10", cfg.data_root, batch_size=2 * cfg.batch_size, seed=cfg.seed)
        return _append_rows(cfg, cells, done, columns, plan, batch)


def _append_rows(cfg: ProxyTableConfig, cells: list[str], done: set[str], columns: list[str], plan, batch
                 ) -> ProxyTableResult:
    """Compute and append the rows of the cells not ``done``, each flushed and fsynced."""
    from tqdm.auto import tqdm

    todo = [a for a in cells if a not in done]
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


