"""Held-out networks for statistics programs: train / validation / test splits of tasks.

``--split TRAIN/VAL/TEST`` names three parts of each task's usable networks, each a count
(``100``), a fraction (``0.25``) or ``rest`` (what the others leave; at most one part).
The split is a seeded permutation (seed = the run's seed, one stream per task), so a run
and its resume, or two runs with the same seed, see the same networks in each part, and
the parts are disjoint. Fitness (selection) reads the train part only; the hall of fame
is chosen on the validation part; the final programs are scored on the test part.

Racing (:func:`race_parts`) splits a train task at chunk boundaries: the evaluator scores
whole chunks, so a subset only saves work when it is made of whole chunks.

Example
-------
>>> parse_split("100/200/rest")
(100, 200, 'rest')
>>> part_sizes(parse_split("0.5/0.25/rest"), 40)
(20, 10, 10)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.fitness import Task

Part = int | float | str
PART_NAMES = ("train", "validation", "test")


def parse_split(text: str) -> tuple[Part, Part, Part]:
    """``"TRAIN/VAL/TEST"``: each a count, a fraction in (0, 1), or ``rest`` (at most once)."""
    bits = str(text).strip().split("/")
    if len(bits) != 3:
        raise ConfigError(f"--split must be TRAIN/VAL/TEST (e.g. 100/200/rest or 0.5/0.25/rest), got {text!r}")
    parts: list[Part] = []
    for name, b in zip(PART_NAMES, bits):
        b = b.strip().lower()
        try:
            if b == "rest":
                parts.append("rest")
            elif b.isdigit():
                parts.append(int(b))
            else:
                v = float(b)
                if not 0 < v < 1:
                    raise ValueError
                parts.append(v)
        except ValueError:
            raise ConfigError(f"--split {text!r}: the {name} part must be a count, a fraction in (0, 1) "
                              f"or 'rest', got {b!r}") from None
    if parts.count("rest") > 1:
        raise ConfigError(f"--split {text!r}: only one part can be 'rest'")
    return parts[0], parts[1], parts[2]


def part_sizes(parts: tuple[Part, Part, Part], n: int) -> tuple[int, int, int]:
    """Network counts of the three parts for a task of ``n`` networks (refused if they do not fit)."""
    sizes = [p if isinstance(p, int) else (math.floor(p * n) if isinstance(p, float) else 0) for p in parts]
    if "rest" in parts:
        sizes[parts.index("rest")] = n - sum(sizes)
    if min(sizes) < 0 or sum(sizes) > n:
        raise ConfigError(f"--split {'/'.join(map(str, parts))} asks for {sum(s for s in sizes if s > 0)} "
                          f"networks but the task has {n} usable ones")
    if sizes[0] < 2:
        raise ConfigError(f"--split leaves {sizes[0]} train networks of {n}; fitness needs at least 2")
    for name, s in zip(PART_NAMES[1:], sizes[1:]):
        if s == 1:
            raise ConfigError(f"--split leaves 1 {name} network of {n}; a tau needs at least 2 (or 0: none)")
    return sizes[0], sizes[1], sizes[2]


def subset_task(task: Task, positions: np.ndarray, name: str | None = None) -> Task:
    """The task restricted to ``positions`` (into ``task.networks``), in store order, with
    only the chunks that hold them."""
    pos = np.sort(np.asarray(positions, dtype=np.int64))
    networks = task.networks[pos]
    keep = set(networks.tolist())
    chunks = tuple((lo, hi) for lo, hi in task.chunks if any(n in keep for n in range(lo, hi)))
    return dataclasses.replace(task, name=name or task.name, networks=networks, accuracy=task.accuracy[pos],
                               archs=tuple(task.archs[i] for i in pos), chunks=chunks)


def split_task(task: Task, parts: tuple[Part, Part, Part], seed: int, index: int = 0
               ) -> tuple[Task, Task | None, Task | None]:
    """(train, validation or None, test or None) of one task: a seeded permutation of its
    networks cut into the three sizes. The train part keeps the task's name."""
    n_train, n_val, n_test = part_sizes(parts, task.n)
    order = np.random.default_rng([seed, index]).permutation(task.n)
    train = subset_task(task, order[:n_train])
    val = subset_task(task, order[n_train:n_train + n_val], f"{task.name}[validation]") if n_val else None
    test = (subset_task(task, order[n_train + n_val:n_train + n_val + n_test], f"{task.name}[test]")
            if n_test else None)
    return train, val, test


def race_parts(task: Task, fraction: float, seed: int, index: int = 0) -> tuple[Task, Task | None]:
    """(first part, rest or None) of a train task for racing, cut at chunk boundaries: whole
    chunks in a seeded order until they hold ``fraction`` of the networks (at least 2)."""
    need = max(2, math.ceil(fraction * task.n))
    order = np.random.default_rng([seed, index, 1]).permutation(len(task.chunks))
    in_chunk = [np.flatnonzero((task.networks >= lo) & (task.networks < hi)) for lo, hi in task.chunks]
    taken: list[np.ndarray] = []
    count = 0
    for c in order:
        if count >= need:
            break
        taken.append(in_chunk[c])
        count += len(in_chunk[c])
    first = np.concatenate(taken) if taken else np.arange(0)
    rest = np.setdiff1d(np.arange(task.n), first)
    if len(rest) == 0 or len(first) < 2:
        return task, None
    return subset_task(task, first, f"{task.name}[race]"), subset_task(task, rest, f"{task.name}[race rest]")
