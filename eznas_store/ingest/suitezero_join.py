"""NASLib's proxy values joined from NAS-Bench-Suite-Zero by cell, one task per label set.

``IngestConfig.suitezero`` (``proxy-table --suitezero``): Suite-Zero published NASLib's 13
proxies for NB201 cells; they are not computed again but joined by cell string per label
set's task (``sources.LABEL_SETS``: cifar10 → ``cifar10``, cifar100 → ``cifar10``, the final
release having no CIFAR-100 task, imagenet16 → ``ImageNet16-120``) into a table of the store
(``suitezero_value``, written at creation and covered by its commit marker; the plan records
its sha256). A seeded sample (or ``all``) is drawn from the cells every such task holds; a
cell named explicitly that a task lacks is NaN there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eznas_store.errors import BenchmarkFormatError, ConfigError
from eznas_store.sources import LABEL_SETS, SearchSpace, read_zc

__all__ = ["common_cells", "join_values", "read_join"]


def read_join(path: str | None, label_sets: Sequence[str], space: SearchSpace) -> dict | None:
    """The Suite-Zero tasks the label sets join from (task → ``ZcTable``), or None without ``path``."""
    if not path:
        return None
    tables = read_zc(path)
    tasks = list(dict.fromkeys(LABEL_SETS[s][2] for s in label_sets))
    missing = [t for t in tasks if t not in tables]
    if missing:
        raise BenchmarkFormatError(f"{path}: no task {', '.join(missing)} (it has {', '.join(tables)})")
    for t in tasks:
        if tables[t].space != space.name:
            raise ConfigError(f"{path} holds {tables[t].space} keys, not cells of --space {space.name}")
    return {t: tables[t] for t in tasks}


def common_cells(join: dict) -> set[str]:
    """The cells every joined task holds."""
    cells = [set(t.archs) for t in join.values()]
    return set.intersection(*cells) if cells else set()


def join_values(join: dict, archs: Sequence[str], label_sets: Sequence[str],
                computed: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """(proxy names, values (network, proxy, label set)): every proxy all joined tasks hold, per
    cell of ``archs`` and label set; NaN where a task lacks the cell. A name also in ``computed``
    (the proxies the store computes) is a one-line ``ConfigError``: one name, one meaning."""
    names = sorted(set.intersection(*(set(t.proxies) for t in join.values())))
    clash = [n for n in names if n in computed]
    if clash:
        raise ConfigError(f"--proxy {', '.join(clash)}: also joined from --suitezero under the same name; "
                          "compute it or join it, not both")
    values = np.full((len(archs), len(names), len(label_sets)), np.nan)
    for k, s in enumerate(label_sets):
        table = join[LABEL_SETS[s][2]]
        index = table.index()
        for i, arch in enumerate(archs):
            row = index.get(arch)
            if row is not None:
                values[i, :, k] = [float(table.proxies[p][row]) for p in names]
    return tuple(names), values
