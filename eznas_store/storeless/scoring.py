"""Scoring without a store: collect a network's statistics, evaluate the programs, discard.

The statistics go through the same chunk builder as store reads, so a network scores
the same collected or stored (``tests/test_score_evolve.py`` checks it). Hand-crafted
proxies (``score_storeless_proxies``) are computed by the function ingest stores them
with, on the same batch and per-network init seed, so they equal a store's values too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from eznas_store.collect import check_proxy_names
from eznas_store.collect import resolve_device, stored_subset
from eznas_store.errors import ConfigError
from eznas_store.evaluate import chunk_from_raw
from eznas_store.evaluate import TO_SCALARS
from eznas_store.evaluate import ChunkScores, evaluate_population
from eznas_store.fitness import require_statistics_programs
from eznas_store.fitness import ScoreResult, summarise
from eznas_store.ingest import collect_network, proxies_for_network
from eznas_store.ingest import own_proxy_batch, plan_ingest, proxy_batch
from eznas_store.programs import Program


def score_collected(blocks: Sequence[Any], programs: Sequence[Program], *, structure: str,
                    to_scalar: str | None = None) -> ChunkScores:
    """Evaluate programs on one freshly collected network (its statistics ``blocks``)."""
    require_statistics_programs(programs)
    raw = [stored_subset(b) for b in blocks]
    return evaluate_population(list(programs), chunk_from_raw([raw], structure=structure), to_scalar=to_scalar)


def score_storeless(cfg, programs: Sequence[Program], *, to_scalar: str | None = None,
                    progress: bool = True, labelled_only: bool = False) -> list[ScoreResult]:
    """Collect → evaluate → discard, network by network: no store, same numbers as from one.

    ``cfg`` is an ``ingest.IngestConfig`` (its ``store`` field is ignored): the same
    network sample, batch, seeds and init as ingest would use. Every check is made before the
    first network is collected: ``labelled_only`` collects only the selected networks with a
    finite accuracy (those a store's task keeps); without it each must have one.
    """
    require_statistics_programs(programs)
    check_to_scalar(to_scalar)
    plan, batch, _ = plan_ingest(cfg)
    nets, acc = usable_networks(plan, labelled_only)
    device = resolve_device(cfg.device)
    data = torch.from_numpy(batch)
    scores = np.full((len(programs), len(nets)), np.nan)
    reasons: list[str | None] = [None] * len(programs)
    with tqdm(total=len(nets), desc="score", unit="net", disable=not progress) as bar:
        for k, i in enumerate(nets):
            stats = collect_network(plan, int(i), data, device)
            res = score_collected(stats.blocks, programs, structure=plan.collect.structure, to_scalar=to_scalar)
            scores[:, k] = res.scores[:, 0]
            for p, r in enumerate(res.reasons):
                reasons[p] = reasons[p] or r
            bar.update(1)
    name = f"{plan.space}-{plan.dataset} ({len(nets)} networks, batch {plan.collect.batch_size}, no store)"
    archs = [plan.archs[i] for i in nets]
    return [summarise(p.name or p.formula(), name, scores[k], acc, archs, nets, reasons[k],
                      label=plan.accuracy_column)
            for k, p in enumerate(programs)]


def check_to_scalar(to_scalar: str | None) -> None:
    """``--to-scalar`` is mean, l2 or not given (each program's own): a one-line ``ConfigError``."""
    if to_scalar not in (None, *TO_SCALARS):
        raise ConfigError(f"--to-scalar must be one of {', '.join(TO_SCALARS)}, got {to_scalar!r}")


def usable_networks(plan, labelled_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the plan, accuracies) of the networks to collect: those with a finite
    accuracy, as a store's task keeps them (``fitness.engine.load_task``). A one-line
    ``ConfigError``, before any network is collected, when fewer than 2 have one or, without
    ``labelled_only``, when any selected network lacks one."""
    acc = np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64)
    nets = np.flatnonzero(np.isfinite(acc))
    where = (f"column {plan.accuracy_column!r} of {plan.benchmark}" if plan.benchmark
             else "no benchmark table (give --benchmark)")
    if len(nets) < 2:
        raise ConfigError(f"{len(nets)} of the {len(acc)} selected networks have an accuracy ({where}); "
                          "tau needs at least 2: nothing was collected")
    if not labelled_only and len(nets) < len(acc):
        first = int(np.flatnonzero(~np.isfinite(acc))[0])
        raise ConfigError(f"{len(acc) - len(nets)} of the {len(acc)} selected networks have no accuracy "
                          f"({where}), first {plan.archs[first]}: select networks with one; nothing was collected")
    return nets, acc[nets]


def score_storeless_proxies(cfg, names: Sequence[str], *, progress: bool = True,
                            labelled_only: bool = False) -> list[ScoreResult]:
    """Hand-crafted proxies (``synflow``, ``nwot``, ...) of the networks ``cfg`` selects, computed
    on the fly as ingest would store them (its batch, labels, per-network seeds); no store.

    ``cfg`` is an ``ingest.IngestConfig``; ``cfg.proxy_batch_size`` > 0 gives the proxies
    their own seeded batch, as ingest does. A proxy that fails on a network is NaN there,
    and its result's ``reason`` says why (the first failure). ``labelled_only``: as for
    :func:`score_storeless`.
    """
    wanted = check_proxy_names(list(names))
    plan, batch, labels = plan_ingest(cfg)
    plan = dataclasses.replace(plan, proxies=tuple(wanted))
    nets, acc = usable_networks(plan, labelled_only)
    device = resolve_device(cfg.device)
    data, data_labels = torch.from_numpy(batch), torch.from_numpy(labels)
    if own_proxy_batch(plan):
        pb = proxy_batch(cfg, plan)
        data, data_labels = pb.images, pb.labels
    values = np.full((len(wanted), len(nets)), np.nan)
    reasons: list[str | None] = [None] * len(wanted)
    with tqdm(total=len(nets), desc="score", unit="net", disable=not progress) as bar:
        for j, i in enumerate(nets):
            got = proxies_for_network(plan, int(i), data, data_labels, device)
            for k, proxy in enumerate(wanted):
                values[k, j], why = got[proxy]
                reasons[k] = reasons[k] or why
            bar.update(1)
    name = f"{plan.space}-{plan.dataset} ({len(nets)} networks, batch {data.shape[0]}, no store)"
    archs = [plan.archs[i] for i in nets]
    return [summarise(proxy, name, values[k], acc, archs, nets, reasons[k],
                      label=plan.accuracy_column) for k, proxy in enumerate(wanted)]
