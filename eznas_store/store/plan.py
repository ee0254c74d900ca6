"""The plan of a store: everything that fixes its layout, and its JSON form in the attributes.

Two jobs (or two shards of one job) may share a store when their plans agree on
``identity()``; paths on the node (benchmark file, data folder) may differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from eznas_store.terminals import CollectConfig

#: name of the store's attribute table and version of what it holds
FORMAT = "eznas-store"
FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class StorePlan:
    """Everything that fixes a store's layout; equal plans may share a store."""

    space: str
    dataset: str
    archs: tuple[str, ...]
    bench_index: tuple[int, ...]
    accuracy_column: str
    accuracies: dict[str, tuple[float, ...]]
    collect: CollectConfig
    image_size: int
    num_classes: int
    C: int
    N: int
    benchmark: str = ""
    data_root: str = ""
    batch_indices: tuple[int, ...] = ()
    chunk_networks: int = 0  # 0: choose from CHUNK_TARGET_BYTES
    #: hand-crafted proxies computed during ingest on the same networks, batch and init
    proxies: tuple[str, ...] = ()
    #: 0: proxies used the statistics batch; else their own seeded batch of this size
    proxy_batch_size: int = 0

    def identity(self) -> dict[str, Any]:
        """The fields two shards must agree on (paths may differ between nodes)."""
        d = plan_to_json(self)
        for k in ("benchmark", "data_root"):
            d.pop(k)
        return d


def plan_to_json(plan: StorePlan) -> dict[str, Any]:
    """The plan as JSON values (tuples become lists), as the store's attributes hold it."""
    d = dataclasses.asdict(plan)
    d["archs"] = list(plan.archs)
    d["bench_index"] = list(plan.bench_index)
    d["accuracies"] = {k: list(v) for k, v in plan.accuracies.items()}
    d["batch_indices"] = list(plan.batch_indices)
    d["proxies"] = list(plan.proxies)
    return d


def plan_from_json(d: dict[str, Any]) -> StorePlan:
    """Inverse of ``plan_to_json``; fields added after version 1 get their defaults."""
    d = dict(d)
    d["collect"] = CollectConfig(**d["collect"])
    d["archs"] = tuple(d["archs"])
    d["bench_index"] = tuple(int(i) for i in d["bench_index"])
    d["accuracies"] = {k: tuple(float(x) for x in v) for k, v in d["accuracies"].items()}
    d["batch_indices"] = tuple(d.get("batch_indices", ()))
    d["proxies"] = tuple(d.get("proxies", ()))
    d.setdefault("proxy_batch_size", 0)
    return StorePlan(**d)
