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
architecture) and top-1 accuracy (%) on the ``test`` split in eval mode.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eznas_store.collect.statistics import resolve_device
from eznas_store.errors import ConfigError

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
#: batch size for evaluation (no gradients, so larger is fine)
_EVAL_BATCH = 512


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
        if isinstance(self.networks, (str, bytes)):
            raise ConfigError(
                "networks must be a count or a sequence of cell strings, not one string "
                "(wrap a single cell in a tuple)"
            )
        if _is_int(self.networks):
            if self.networks < 1:
                raise ConfigError(f"--networks must be at least 1, not {self.networks}")
            object.__setattr__(self, "networks", int(self.networks))
        elif isinstance(self.networks, Sequence):
            cells = tuple(str(c).strip() for c in self.networks)
            if not cells:
                raise ConfigError("--networks names no cells")
            dupes = sorted({c for c in cells if cells.count(c) > 1})
            if dupes:
                raise ConfigError(f"cell {dupes[0]} is listed twice in --networks")
            object.__setattr__(self, "networks", cells)
        else:
            raise ConfigError(
                f"networks must be a count or a sequence of cell strings, not {self.networks!r}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, not {self.seed!r}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ConfigError(f"--epochs must be a positive integer, not {self.epochs!r}")
        if not _is_int(self.batch_size) or self.batch_size < 2:
            raise ConfigError(
                f"--batch-size must be an integer >= 2 (BatchNorm needs 2 samples), "
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
        for name in ("C", "N", "image_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                flag = "--image-size" if name == "image_size" else f"--{name}"
                raise ConfigError(f"{flag} must be a positive integer, not {value!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise ConfigError(f"--threads must be a positive integer, not {self.threads!r}")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu") or self.device.startswith("cuda")
        ):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], not {self.device!r}")
        # names: unknown space/dataset raise UnknownNameError naming the known ones
        from eznas_store.sources.datasets import get_spec
        from eznas_store.sources.spaces import get_space

        get_space(self.space)
        object.__setattr__(self, "dataset", get_spec(self.dataset).name)


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


# ----------------------------------------------------------------------------- training


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for lo in range(0, len(x), _EVAL_BATCH):
            logits = model(x[lo : lo + _EVAL_BATCH])
            correct += int((logits.argmax(1) == y[lo : lo + _EVAL_BATCH]).sum())
    return 100.0 * correct / max(len(x), 1)


def train_network(
    build: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    init_seed: int,
    data_seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    device: torch.device,
) -> tuple[float, float, float]:
    """Train ``build()`` and return (test top-1 %, last-epoch train top-1 %, last-epoch loss).

    The model is built under ``torch.manual_seed(init_seed)`` inside ``fork_rng``, so the
    caller's global random state is untouched; batches are drawn with a
    ``torch.Generator`` seeded with ``data_seed``. A final batch of one sample is dropped
    (BatchNorm cannot train on it).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = build()
    model = model.to(device)
    x_train, y_train = train
    n = len(x_train)
    steps_per_epoch = sum(1 for lo in range(0, n, batch_size) if n - lo >= 2)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs * steps_per_epoch, 1), eta_min=0.0
    )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(data_seed)
    loss_sum = correct = seen = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = correct = seen = 0.0
        for lo in range(0, n, batch_size):
            rows = order[lo : lo + batch_size]
            if len(rows) < 2:
                continue
            xb, yb = x_train[rows], y_train[rows]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(rows)
            correct += float((logits.detach().argmax(1) == yb).sum())
            seen += len(rows)
    train_acc = 100.0 * correct / seen if seen else math.nan
    train_loss = loss_sum / seen if seen else math.nan
    _precise_bn(model, x_train, batch_size=batch_size)
    return _accuracy(model, *test), train_acc, train_loss


def _precise_bn(model: nn.Module, x: torch.Tensor, *, batch_size: int) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``x`` (pycls' precise BN).

    The running averages left by training trail the final weights; after a few epochs
    that lag, not the architecture, decides much of the test accuracy. One forward pass
    in train mode with ``momentum=None`` (cumulative average) over the training images,
    in training-sized batches, replaces them with the statistics of the final weights.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            if len(x) - lo >= 2:
                model(x[lo : lo + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


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
    from eznas_store.sources.tables import meta_path, read_benchmark

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
    from eznas_store.sources.tables import write_benchmark

    order = sorted(rows)
    write_benchmark(
        out,
        [rows[i][0] for i in order],
        {c: [rows[i][1][k] for i in order] for k, c in enumerate(columns)},
        index=order,
        meta=meta,
    )


def run_label(cfg: LabelConfig) -> LabelReport:
    """Train every selected cell ``out`` does not hold yet and write the table.

    Raises ``ConfigError`` when ``out`` exists with a different recipe (or is not a
    ``label`` table), so labels from two recipes never mix in one file. ``threads``, when
    given, sets torch's intra-op threads for the run and restores them afterwards.
    """
    from eznas_store.sources.datasets import get_spec, load_split_tensors
    from eznas_store.sources.spaces import get_space

    t0 = time.perf_counter()
    space = get_space(cfg.space)
    spec = get_spec(cfg.dataset)
    device = resolve_device(cfg.device)
    C = cfg.C or space.skeleton["C"]
    N = cfg.N or space.skeleton["N"]
    everything = list(space.all_archs())
    selected = _select(cfg, everything, space.canonical)
    image_size = cfg.image_size or spec.image_size
    recipe = _recipe(cfg, C=C, N=N, image_size=image_size)
    columns = (f"{spec.name}_test", f"{spec.name}_train", f"{spec.name}_train_loss")
    out = Path(cfg.out).expanduser()
    rows, seconds_before = _load_existing(out, recipe, columns)
    todo = [i for i in selected if i not in rows]
    threads_before = torch.get_num_threads()
    threads = cfg.threads or threads_before

    def meta(seconds: float) -> dict[str, Any]:
        return {
            "command": "label",
            "recipe": recipe,
            "device": str(device),
            # CPU results are bit-identical only at the same thread count
            "threads": threads,
            "data_root": str(Path(cfg.data_root).expanduser().resolve())
            if cfg.data_root else None,
            "seconds": round(seconds_before + seconds, 3),
            "networks": len(rows),
        }

    def build(arch: str) -> nn.Module:
        return space.build(arch, num_classes=spec.num_classes, C=C, N=N, structure="rcb")

    trained = 0
    if todo:
        train, test = (
            tuple(t.to(device) for t in load_split_tensors(
                spec.name, cfg.data_root, split=split, image_size=image_size))
            for split in ("train", "test")
        )
        from tqdm.auto import tqdm

        last_save_t, last_save_n = time.perf_counter(), 0
        torch.set_num_threads(threads)
        try:
            with tqdm(total=len(selected), initial=len(selected) - len(todo), desc="label",
                      unit="net", disable=not cfg.progress) as bar:
                for index in todo:
                    arch = everything[index]
                    init_seed, data_seed = label_seeds(cfg.seed, index)
                    values = train_network(
                        lambda arch=arch: build(arch), train, test,
                        init_seed=init_seed, data_seed=data_seed, epochs=cfg.epochs,
                        batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                        weight_decay=cfg.weight_decay, device=device,
                    )
                    rows[index] = (arch, values)
                    trained += 1
                    bar.update(1)
                    bar.set_postfix(acc=f"{values[0]:.1f}")
                    now = time.perf_counter()
                    if (trained - last_save_n >= _SAVE_EVERY_CELLS
                            or now - last_save_t >= _SAVE_EVERY_SECONDS):
                        _write(out, rows, columns, meta(now - t0))
                        last_save_t, last_save_n = now, trained
        finally:
            torch.set_num_threads(threads_before)
        _write(out, rows, columns, meta(time.perf_counter() - t0))
    return LabelReport(
        out=str(out), trained=trained, skipped=len(selected) - len(todo), rows=len(rows),
        seconds=time.perf_counter() - t0, accuracy_column=columns[0],
        accuracies={everything[i]: rows[i][1][0] for i in selected},
    )
