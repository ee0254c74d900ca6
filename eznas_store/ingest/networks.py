"""One network of a plan: built, collected, its proxies computed, its statistics as numpy rows.

The same functions serve ingest, storeless scoring and the tests, so a network collected
for any of them is bit-identical to what a store holds (per-network seeds, pinned threads).
"""

from __future__ import annotations

import torch

from eznas_store.collect import network_factory
from eznas_store.collect import compute_all
from eznas_store.collect import NetworkStats, collect, deterministic, network_seed
from eznas_store.sources import get_space
from eznas_store.store import StorePlan
from eznas_store.store import Store
from eznas_store.store import NetworkArrays, ProxyValues
from eznas_store.terminals import STORED


def collect_network(store_or_plan: Store | StorePlan, n: int, data: torch.Tensor,
                    device: torch.device) -> NetworkStats:
    """Build and collect network ``n`` of a plan (the same function ingest and tests use)."""
    plan = store_or_plan.plan if isinstance(store_or_plan, Store) else store_or_plan
    space = get_space(plan.space)
    model = space.build(plan.archs[n], num_classes=plan.num_classes, C=plan.C, N=plan.N,
                        structure=plan.collect.structure)
    return collect(model, data, config=plan.collect, init_seed=network_seed(plan.collect.seed, n),
                   device=device)


def proxies_for_network(plan: StorePlan, n: int, data: torch.Tensor, labels: torch.Tensor,
                        device: torch.device) -> ProxyValues:
    """The plan's hand-crafted proxies of network ``n`` on the run's batch and init seed."""
    factory = network_factory(plan.space, plan.archs[n], num_classes=plan.num_classes, C=plan.C, N=plan.N,
                              structure=plan.collect.structure)
    # same pinned threads as the statistics: the values' last bits follow the reduction order
    with deterministic(plan.collect.threads):
        return compute_all(factory, data, labels, seed=network_seed(plan.collect.seed, n),
                           names=plan.proxies, device=device)


def network_arrays(stats: NetworkStats) -> NetworkArrays:
    """What the store keeps of a collected network: its ``STORED`` tensors as numpy arrays."""
    blocks = [{name: block.tensors[name].numpy() for name in STORED} for block in stats.blocks]
    return NetworkArrays(blocks=blocks, params=stats.params, flops=stats.flops, seconds=stats.seconds)
