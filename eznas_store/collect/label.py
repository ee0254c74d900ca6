"""``eznas-store label``: train sampled cells to produce a real accuracy table.

For a space/dataset pair that no published benchmark covers (``digits``, a reduced NB201
skeleton, another image size) this trains each sampled network from a seeded
initialisation and writes its top-1 accuracy in the NB201 table format, so ``ingest``,
``evolve`` and ``report`` read it like any published table::

    >>> cfg = LabelConfig(out="digits_labels.csv", **DEMO_LABEL)  # doctest: +SKIP
    >>> run_label(cfg).line()  # doctest: +SKIP
    'label: 40 networks trained, 0 already labelled, digits_test 10.0-97.5 %, ...'

Training recipe (NB201's, minus data augmentation): SGD with Nesterov momentum, a
cosine learning-rate schedule stepped every batch down to 0 over ``epochs`` epochs,
cross-entropy, the dataset's ``train`` split shuffled every epoch; then BatchNorm
statistics recomputed exactly over the train split ("precise BN", as pycls does: the
running averages trail the final weights, which after a few epochs is noise, not
architecture) and top-1 accuracy (%) on the ``test`` split in eval mode (the loop is
:func:`eznas_store.collect.training.train_network`; this module is the run around it).
``<dataset>_train`` and ``<dataset>_train_loss`` are the running accuracy and mean loss
of the last epoch, as NB201 reports them.

Every network's initial weights and data order come from seeds derived from the run seed
and the cell's index in ``all_cells()`` alone, so a cell gets the same label whatever it
is sampled with and in whatever order. The sidecar ``<out>.meta.json`` holds the
``recipe``; a rerun with the same recipe keeps the rows already in ``out`` and trains
only the missing cells. The table is rewritten atomically every few cells, so a killed
run keeps what it finished.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tqdm.auto import tqdm

from eznas_store.collect.statistics import resolve_device
from eznas_store.collect.training import train_network
from eznas_store.config import MAX_C, MAX_IMAGE_SIZE, MAX_N, check_seed, is_int
from eznas_store.errors import ConfigError, OutputError
from eznas_store.outputs import ensure_dir, exclusive
from eznas_store.sources import get_spec, load_split_tensors
from eznas_store.sources import get_space
from eznas_store.sources import SearchSpace
from eznas_store.sources import meta_path, read_benchmark, write_benchmark

__all__ = [
    "DEMO_LABEL",
    "LabelConfig",
    "LabelReport",
    "label_seeds",
    "run_label",
    "train_network",
]

#: The demo's recipe: 40 sampled cells of a reduced NB201 skeleton (C=8, N=2) on the
#: native 8×8 digits, 3 epochs, one CPU thread. Measured on a shared 2-core box (load ~5,
#: torch 2.13): ~70 s for the 40 cells. Test accuracy runs from chance (cells with no
#: input-output path) to ~98 %; retraining the same 40 cells from other initial weights
#: reproduces their ranking with Kendall tau 0.47 (0.41 without the chance cells), and
#: ranks agree with the cells' NB201 CIFAR-10 accuracy at tau ~0.2. N=2 over N=1 and 8 px
#: over 16 px because they made the labels more repeatable at the same cost; one thread
#: because these networks are too small to gain from two, and two threads on a busy
#: machine ran 7x slower.
DEMO_LABEL: dict[str, Any] = {
    "space": "nb201",
    "dataset": "digits",
    "networks": 40,
    "seed": 0,
    "epochs": 3,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "C": 8,
    "N": 2,
    "image_size": 8,
    "threads": 1,
}

#: rewrite the table after this many newly trained cells, or this many seconds
_SAVE_EVERY_CELLS = 10
_SAVE_EVERY_SECONDS = 30.0


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """One labelling job; defaults are NB201's 12-epoch recipe on the space's skeleton.

    ``networks`` is a sample size (the first ``networks`` of
    ``numpy.random.default_rng(seed).permutation`` over ``all_cells()``, so samples of
    one seed nest) or a sequence of cell strings. ``C``/``N`` default to the space's
    skeleton (16/5 for NB201); ``image_size`` to the dataset's size (only ``digits`` can
    be resized). ``device`` is ``cpu``, ``cuda``/``cuda:k`` or ``auto``.
    """

    out: str
    space: str = "nb201"
    dataset: str = "digits"
    data_root: str | None = None
    networks: int | tuple[str, ...] = 40
    seed: int = 0
    epochs: int = 12
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    C: int | None = None
    N: int | None = None
    image_size: int | None = None
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.out, (str, Path)) or not str(self.out).strip():
            raise ConfigError("--out must name the CSV file to write")
        object.__setattr__(self, "out", str(self.out))
        object.__setattr__(self, "networks", _checked_networks(self.networks))
        check_seed(self.seed, "--seed")
        if not is_int(self.epochs) or self.epochs < 1:
            raise ConfigError(f"--epochs must be a positive integer, not {self.epochs!r}")
        if not is_int(self.batch_size) or not 2 <= self.batch_size <= 4096:
            raise ConfigError(
                f"--batch-size must be an integer from 2 (BatchNorm needs 2 samples) to 4096, "
                f"not {self.batch_size!r}"
            )
        if not _is_real(self.lr) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, not {self.lr!r}")
        if not _is_real(self.momentum) or not 0 < self.momentum < 1:
            # Nesterov needs a momentum strictly above 0
            raise ConfigError(f"--momentum must lie in (0, 1), not {self.momentum!r}")
        if not _is_real(self.weight_decay) or not (
            math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            raise ConfigError(f"--weight-decay must be >= 0, not {self.weight_decay!r}")
        # the bounds every command shares (``config.check_sizes``), named as LabelConfig's fields too
        for name, flag, hi in (("C", "--channels/--C", MAX_C), ("N", "--cells/--N", MAX_N),
                               ("image_size", "--image-size", MAX_IMAGE_SIZE)):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or not 1 <= value <= hi):
                raise ConfigError(f"{flag} must be an integer from 1 to {hi}, not {value!r}")
        if self.threads is not None and (not is_int(self.threads) or self.threads < 1):
            raise ConfigError(f"--threads must be a positive integer, not {self.threads!r}")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu") or self.device.startswith("cuda")
        ):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], not {self.device!r}")
        # names: unknown space/dataset raise UnknownNameError naming the known ones
        get_space(self.space)
        object.__setattr__(self, "dataset", get_spec(self.dataset).name)


def _checked_networks(networks: Any) -> int | tuple[str, ...]:
    """``--networks`` as a positive count or a tuple of distinct stripped cell strings."""
    if isinstance(networks, (str, bytes)):
        raise ConfigError(
            "networks must be a count or a sequence of cell strings, not one string "
            "(wrap a single cell in a tuple)"
        )
    if is_int(networks):
        if networks < 1:
            raise ConfigError(f"--networks must be at least 1, not {networks}")
        return int(networks)
    if isinstance(networks, Sequence):
        cells = tuple(str(c).strip() for c in networks)
        if not cells:
            raise ConfigError("--networks names no cells")
        dupes = sorted({c for c in cells if cells.count(c) > 1})
        if dupes:
            raise ConfigError(f"cell {dupes[0]} is listed twice in --networks")
        return cells
    raise ConfigError(
        f"networks must be a count or a sequence of cell strings, not {networks!r}"
    )


@dataclass
class LabelReport:
    """What a ``label`` run did: ``trained`` now, ``skipped`` (already in ``out``)."""

    out: str
    trained: int
    skipped: int
    rows: int
    seconds: float
    accuracy_column: str
    accuracies: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        values = [v for v in self.accuracies.values() if math.isfinite(v)]
        spread = f"{min(values):.1f}-{max(values):.1f} %" if values else "no accuracies"
        return (
            f"label: {self.trained} networks trained, {self.skipped} already labelled, "
            f"{self.accuracy_column} {spread}, {self.seconds:.1f} s -> {self.out} "
            f"({self.rows} rows)"
        )


# ----------------------------------------------------------------------------- seeds


def label_seeds(seed: int, cell_index: int) -> tuple[int, int]:
    """(weight-init seed, data-order seed) of one cell: from the run seed and its index only.

    ``numpy.random.SeedSequence([seed, cell_index])`` gives two independent 63-bit seeds,
    so the init and the shuffling never share a random stream.
    """
    sequence = np.random.SeedSequence([int(seed), int(cell_index)])
    state = sequence.generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1)), int(state[1] >> np.uint64(1))


# ----------------------------------------------------------------------------- the run


def _recipe(cfg: LabelConfig, *, C: int, N: int, image_size: int) -> dict[str, Any]:
    """Everything that decides a label, as JSON would read it back (for resume checks)."""
    recipe = {
        "space": cfg.space,
        "dataset": cfg.dataset,
        "train_split": "train",
        "test_split": "test",
        "structure": "rcb",
        "C": C,
        "N": N,
        "image_size": image_size,
        "seed": int(cfg.seed),
        "epochs": int(cfg.epochs),
        "batch_size": int(cfg.batch_size),
        "optimizer": "sgd-nesterov",
        "lr": float(cfg.lr),
        "momentum": float(cfg.momentum),
        "weight_decay": float(cfg.weight_decay),
        "schedule": "cosine-per-step",
        "loss": "cross-entropy",
        "augmentation": "none",
        "bn_stats": "precise",
        "torch": torch.__version__,
    }
    return json.loads(json.dumps(recipe))


def _select(cfg: LabelConfig, everything: list[str], canonical: Callable[[str], str]) -> list[int]:
    """Enumeration indices of the cells to label, ascending."""
    if isinstance(cfg.networks, int):
        if cfg.networks > len(everything):
            raise ConfigError(
                f"cannot sample {cfg.networks} networks from the {len(everything)} "
                f"cells of {cfg.space}"
            )
        # a prefix of one seeded permutation: a larger count extends a smaller one's
        # sample, so ``networks=100`` after ``networks=40`` trains only 60 more cells
        order = np.random.default_rng(cfg.seed).permutation(len(everything))
        return sorted(int(i) for i in order[: cfg.networks])
    lookup = {a: i for i, a in enumerate(everything)}
    chosen: list[int] = []
    for text in cfg.networks:
        arch = canonical(text)  # InvalidArchError names the bad token
        if arch not in lookup:
            raise ConfigError(f"cell {arch} is not in the {cfg.space} space")
        chosen.append(lookup[arch])
    if len(set(chosen)) != len(chosen):
        raise ConfigError("--networks names the same cell twice (in different spellings)")
    return sorted(chosen)


def _load_existing(
    out: Path, recipe: dict[str, Any], columns: tuple[str, ...]
) -> tuple[dict[int, tuple[str, tuple[float, ...]]], float]:
    """Rows already labelled with this recipe, as {index: (arch, values)}, and their seconds."""
    if not out.exists():
        return {}, 0.0
    table = read_benchmark(out)
    old = table.meta.get("recipe")
    if table.meta.get("command") != "label" or not isinstance(old, dict):
        raise ConfigError(
            f"{out} exists but its sidecar {meta_path(out).name} holds no label recipe; "
            "remove it or choose another --out"
        )
    if old != recipe:
        diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
        shown = ", ".join(f"{k} {old.get(k)!r} -> {recipe.get(k)!r}" for k in diff)
        raise ConfigError(
            f"{out} was labelled with a different recipe ({shown}); remove it or choose "
            "another --out"
        )
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{out} lacks the label columns {missing}; remove it or choose another --out"
        )
    rows = {
        int(table.index[r]): (table.archs[r], tuple(float(table.columns[c][r]) for c in columns))
        for r in range(len(table))
    }
    seconds = table.meta.get("seconds", 0.0)
    return rows, float(seconds) if _is_real(seconds) else 0.0


def _write(out: Path, rows: dict, columns: tuple[str, ...], meta: dict[str, Any]) -> None:
    """Rewrite the whole table (atomically, by ``write_benchmark``) in index order."""
    order = sorted(rows)
    write_benchmark(
        out,
        [rows[i][0] for i in order],
        {c: [rows[i][1][k] for i in order] for k, c in enumerate(columns)},
        index=order,
        meta=meta,
    )



# ----------------------------------------------------------------------------- the run


@dataclass
class _LabelJob:
    """What a run fixed before training: its cells, recipe, table and how to build a cell."""

    cfg: LabelConfig
    space: SearchSpace
    dataset: str
    num_classes: int
    device: torch.device
    C: int
    N: int
    image_size: int
    everything: list[str]
    selected: list[int]
    recipe: dict[str, Any]
    columns: tuple[str, ...]
    out: Path
    threads: int
    t0: float
    seconds_before: float = 0.0

    def build(self, arch: str) -> nn.Module:
        return self.space.build(arch, num_classes=self.num_classes, C=self.C, N=self.N,
                                structure="rcb")

    def meta(self, rows: dict, seconds: float) -> dict[str, Any]:
        """The sidecar: the recipe, where and how long it ran, how many rows the table holds."""
        cfg = self.cfg
        return {
            "command": "label",
            "recipe": self.recipe,
            "device": str(self.device),
            # CPU results are bit-identical only at the same thread count
            "threads": self.threads,
            "data_root": str(Path(cfg.data_root).expanduser().resolve())
            if cfg.data_root else None,
            "seconds": round(self.seconds_before + seconds, 3),
            "networks": len(rows),
        }

    def save(self, rows: dict) -> None:
        _write(self.out, rows, self.columns, self.meta(rows, time.perf_counter() - self.t0))


def _plan(cfg: LabelConfig, t0: float) -> _LabelJob:
    """Resolve the space, dataset, device, skeleton, cells and recipe of a run."""
    space = get_space(cfg.space)
    spec = get_spec(cfg.dataset)
    device = resolve_device(cfg.device)
    C = cfg.C or space.skeleton["C"]
    N = cfg.N or space.skeleton["N"]
    everything = list(space.all_archs())
    selected = _select(cfg, everything, space.canonical)
    image_size = cfg.image_size or spec.image_size
    return _LabelJob(
        cfg=cfg, space=space, dataset=spec.name, num_classes=spec.num_classes, device=device,
        C=C, N=N, image_size=image_size, everything=everything, selected=selected,
        recipe=_recipe(cfg, C=C, N=N, image_size=image_size),
        columns=(f"{spec.name}_test", f"{spec.name}_train", f"{spec.name}_train_loss"),
        out=Path(cfg.out).expanduser(), threads=cfg.threads or torch.get_num_threads(), t0=t0,
    )


def _train_missing(job: _LabelJob, rows: dict, todo: list[int]) -> int:
    """Train the ``todo`` cells into ``rows``, saving every few cells; returns how many."""
    cfg = job.cfg
    train, test = (
        tuple(t.to(job.device) for t in load_split_tensors(
            job.dataset, cfg.data_root, split=split, image_size=job.image_size))
        for split in ("train", "test")
    )
    trained = 0
    last_save_t, last_save_n = time.perf_counter(), 0
    threads_before = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        with tqdm(total=len(job.selected), initial=len(job.selected) - len(todo), desc="label",
                  unit="net", disable=not cfg.progress) as bar:
            for index in todo:
                arch = job.everything[index]
                init_seed, data_seed = label_seeds(cfg.seed, index)
                values = train_network(
                    lambda arch=arch: job.build(arch), train, test,
                    init_seed=init_seed, data_seed=data_seed, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay, device=job.device,
                )
                rows[index] = (arch, values)
                trained += 1
                bar.update(1)
                bar.set_postfix(acc=f"{values[0]:.1f}")
                now = time.perf_counter()
                if (trained - last_save_n >= _SAVE_EVERY_CELLS
                        or now - last_save_t >= _SAVE_EVERY_SECONDS):
                    job.save(rows)
                    last_save_t, last_save_n = now, trained
    finally:
        torch.set_num_threads(threads_before)
    job.save(rows)
    return trained


def _check_out(out: Path) -> None:
    """Refuse, before any training, an ``--out`` the table could not be written to at the end
    (a folder, a path under a file, a folder without write permission)."""
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder: label writes a CSV file (e.g. --out {out / 'labels.csv'})")
    parent = ensure_dir(out.parent, "folder of --out")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise OutputError(f"--out {out} cannot be written (permission denied)")


def run_label(cfg: LabelConfig) -> LabelReport:
    """Train every selected cell ``out`` does not hold yet and write the table.

    Raises ``ConfigError`` when ``out`` exists with a different recipe (or is not a
    ``label`` table), so labels from two recipes never mix in one file. ``threads``, when
    given, sets torch's intra-op threads for the run and restores them afterwards. The
    table is written by one ``label`` at a time (a second is refused in one line).
    """
    t0 = time.perf_counter()
    _check_out(Path(cfg.out).expanduser())
    with exclusive(Path(cfg.out).expanduser(), "label table"):
        return _label(cfg, t0)


def _label(cfg: LabelConfig, t0: float) -> LabelReport:
    job = _plan(cfg, t0)
    rows, job.seconds_before = _load_existing(job.out, job.recipe, job.columns)
    todo = [i for i in job.selected if i not in rows]
    trained = _train_missing(job, rows, todo) if todo else 0
    return LabelReport(
        out=str(job.out), trained=trained, skipped=len(job.selected) - len(todo),
        rows=len(rows), seconds=time.perf_counter() - t0, accuracy_column=job.columns[0],
        accuracies={job.everything[i]: rows[i][1][0] for i in job.selected},
    )
