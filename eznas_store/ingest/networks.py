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
from eznas_store.store import NetworkArrays, NetworkProxies, ProxyValues
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


def proxies_for_network(plan: StorePlan, n: int, data: torch.Tensor, labels: torch.Tensor | None,
                        device: torch.device) -> ProxyValues:
    """The plan's hand-crafted proxies of network ``n`` on the run's batch and init seed, with
    the first label set's classifier head (the dataset's own, unless the plan has label sets).
    Each proxy reads the first ``B × batches`` images of ``data`` (``_by_batches``)."""
    return _compute(plan, n, plan.heads()[0][1], plan.proxies, data, labels, device)


def label_set_proxies(plan: StorePlan, n: int, data: torch.Tensor, labels: torch.Tensor | None,
                      device: torch.device) -> list[ProxyValues]:
    """Network ``n``'s proxies per label set of the plan (``plan.heads()``): the first as
    :func:`proxies_for_network`; under every other head, the proxies that read it computed
    again with that head's classes, the head-free ones (``ProxySpec.head_free``) kept. Where
    ``swap`` is computed, ``swap_reg`` under another head is derived from it (its formula with
    that head's parameter count) instead of a SWAP pass on another init draw."""
    from eznas_store.collect import PROXIES, swap_regularised

    first = proxies_for_network(plan, n, data, labels, device)
    out = [first]
    derive = "swap_reg" in plan.proxies and "swap" in plan.proxies
    again = [p for p in plan.proxies if not PROXIES[p].head_free and not (derive and p == "swap_reg")]
    for _, classes, _ in plan.heads()[1:]:
        values = dict(first)
        values.update(_compute(plan, n, classes, again, data, labels, device) if again else {})
        if derive:
            swap, why = first["swap"]
            params_k = sum(p.numel() for p in _factory(plan, n, classes, "swap_reg")(0).parameters()) / 1e3
            values["swap_reg"] = ((swap_regularised(swap, params_k), None) if why is None
                                  else (float("nan"), f"swap_reg: swap failed ({why})"))
        out.append(values)
    return out


def network_proxies(plan: StorePlan, n: int, data: torch.Tensor, labels: torch.Tensor | None,
                    device: torch.device) -> NetworkProxies:
    """What a store keeps of network ``n``'s proxies: one ``ProxyValues``, or one per label set
    where the plan has label sets (``write_chunk``/``write_proxy_rows`` take either)."""
    if plan.label_sets:
        return label_set_proxies(plan, n, data, labels, device)
    return proxies_for_network(plan, n, data, labels, device)


def proxy_cards(plan: StorePlan) -> dict[str, dict]:
    """Per proxy of the plan its card (``collect.proxy_card``) and the network it runs on
    (:func:`proxy_network_card`): kept in ``proxy_value``'s attributes."""
    from eznas_store.collect import proxy_card

    return {name: proxy_card(name, plan.proxy_batch_size or plan.collect.batch_size)
            | {"network": proxy_network_card(plan, name)} for name in plan.proxies}


def proxy_network(plan: StorePlan, name: str) -> tuple[str, int, int]:
    """(space, C, N) of the network proxy ``name`` runs on in a store of ``plan``: the plan's,
    unless the plan's space sends the proxy to another skeleton of its cells
    (``SearchSpace.proxy_networks``: on DARTS, SWAP runs on SWAP's stem-less one-cell network,
    its paper's protocol), at that skeleton's default size."""
    other = get_space(plan.space).proxy_networks.get(name)
    if other is None:
        return plan.space, plan.C, plan.N
    sk = get_space(other).skeleton
    return other, sk["C"], sk["N"]


def proxy_network_card(plan: StorePlan, name: str) -> dict[str, object]:
    """What a store records of the network proxy ``name`` runs on: space, skeleton, width C,
    layers or cells per stage N, and the network in words."""
    from eznas_store.sources import SPACES

    space, C, N = proxy_network(plan, name)
    named = {built: skeleton for base in SPACES.values() for skeleton, built in base.skeletons.items()}
    return {"space": space, "skeleton": named.get(space, "default"), "C": int(C), "N": int(N),
            "description": get_space(space).network or f"the {space} network at C={C}, N={N}"}


def _factory(plan: StorePlan, n: int, classes: int, name: str | None = None):
    """Network ``n``'s factory with a head of ``classes``, on the network of proxy ``name``
    (:func:`proxy_network`; the plan's network where None)."""
    space, C, N = proxy_network(plan, name) if name is not None else (plan.space, plan.C, plan.N)
    return network_factory(space, plan.archs[n], num_classes=classes, C=C, N=N,
                           structure=plan.collect.structure)


def _compute(plan: StorePlan, n: int, classes: int, names, data: torch.Tensor, labels: torch.Tensor | None,
             device: torch.device) -> ProxyValues:
    """``names`` of network ``n`` with a head of ``classes``; each group of proxies reading the
    same number of batches (``ProxySpec.batches``) on the first ``B × batches`` images, B the
    plan's proxy batch (``proxy_batch_size``, else the statistics batch)."""
    from eznas_store.collect import PROXIES

    B = plan.proxy_batch_size or plan.collect.batch_size
    groups: dict[tuple[int, tuple[str, int, int]], list[str]] = {}
    for name in names:
        groups.setdefault((PROXIES[name].batches, proxy_network(plan, name)), []).append(name)
    got: ProxyValues = {}
    # same pinned threads as the statistics: the values' last bits follow the reduction order
    with deterministic(plan.collect.threads):
        for (k, _), group in groups.items():
            images, lab = data[:B * k], None if labels is None else labels[:B * k]
            got.update(compute_all(_factory(plan, n, classes, group[0]), images, lab,
                                   seed=network_seed(plan.collect.seed, n), names=group, device=device))
    return {name: got[name] for name in names}


def network_arrays(stats: NetworkStats) -> NetworkArrays:
    """What the store keeps of a collected network: its ``STORED`` tensors as numpy arrays."""
    blocks = [{name: block.tensors[name].numpy() for name in STORED} for block in stats.blocks]
    return NetworkArrays(blocks=blocks, params=stats.params, flops=stats.flops, seconds=stats.seconds)
