"""One ingest job's options, validated at the edge (CLI or job file) and recorded in the store."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from eznas_store.config import MAX_BATCH, check_sizes, is_int
from eznas_store.errors import ConfigError, DataNotFoundError
from eznas_store.terminals import DEFAULT_PERTURB_SCALE

__all__ = ["IngestConfig", "parse_shard"]


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """One ingest job, validated at the edge (CLI or job file) and recorded in the store."""

    store: str
    dataset: str
    #: the search space; after validation, the one that builds the networks: ``<space>-<skeleton>``
    #: where ``skeleton`` names another network of the space's cells (``darts`` + ``swap`` →
    #: ``darts-swap``), so the store's plan says which network it holds
    space: str = "nb201"
    #: a named skeleton of the space (``--skeleton``; DARTS: ``eval``, the default NetworkCIFAR at
    #: ``C``/``N``, or ``swap``, SWAP's stem-less one-cell network); None: the space's own
    skeleton: str | None = None
    benchmark: str | None = None
    data_root: str | None = None
    networks: int | None | tuple[str, ...] = None  # count, explicit cells, or None (all)
    seed: int = 0
    batch_size: int = 1
    structure: str = "rcb"
    perturb_scale: float = DEFAULT_PERTURB_SCALE
    shard: tuple[int, int] = (0, 1)
    device: str = "auto"
    chunk_networks: int = 0
    accuracy_column: str | None = None
    image_size: int | None = None  # only for datasets whose size is free (digits)
    C: int | None = None
    N: int | None = None
    proxies: bool = True  # also compute the 13 hand-crafted proxies (same networks, batch, init)
    #: more proxies of the registry to compute (``--proxy``: the modern ones are opt-in); with
    #: ``proxies=False`` only these
    proxy_names: tuple[str, ...] = ()
    #: False: a proxies-only store (``--no-statistics``): no tensors, no block table
    statistics: bool = True
    #: classifier heads to compute proxies with (names of ``sources.LABEL_SETS``: NB201's
    #: cifar10, cifar100, imagenet16); () is one, the dataset's own
    label_sets: tuple[str, ...] = ()
    #: a NAS-Bench-Suite-Zero file to join NASLib's values from, per label set's task
    suitezero: str | None = None
    #: stop after this many seconds (between networks or chunks; 0: no cap); rerun to continue
    max_seconds: float = 0.0
    #: batch of the proxies (0: the statistics batch); NASLib/Suite-Zero used 64 on CIFAR-10
    proxy_batch_size: int = 0
    #: recollect the networks ``verify`` finds broken (unreadable chunks), even if flagged
    redo_broken: bool = False
    #: codec of the float32 tensor arrays: lossless, sumround:K, bitround:K or zfp:TOL (``store.plan.parse_codec``)
    codec: str = "lossless"
    progress: bool = True

    def __post_init__(self) -> None:
        _resolve_skeleton(self)
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {i}/{n}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], got {self.device!r}")
        if isinstance(self.networks, int) and self.networks < 1:
            raise ConfigError(f"--networks must be at least 1, got {self.networks}")
        if not is_int(self.chunk_networks) or self.chunk_networks < 0:
            raise ConfigError(f"--chunk-networks must be >= 0 (0 chooses automatically), got {self.chunk_networks!r}")
        check_sizes(C=self.C, N=self.N, image_size=self.image_size, batch_size=self.batch_size, seed=self.seed)
        if not is_int(self.proxy_batch_size) or not 0 <= self.proxy_batch_size <= MAX_BATCH:
            raise ConfigError(f"--proxy-batch-size must be an integer from 0 (the statistics batch) to "
                              f"{MAX_BATCH}, got {self.proxy_batch_size!r}")
        _check_codec(self)
        _check_proxies(self)
        if self.structure not in ("rcb", "cbr"):
            raise ConfigError(f"--structure must be rcb or cbr, got {self.structure!r}")
        if not (isinstance(self.perturb_scale, (int, float)) and math.isfinite(self.perturb_scale)
                and self.perturb_scale >= 0):
            raise ConfigError(f"--perturb-scale must be a finite number >= 0, got {self.perturb_scale!r}")


    def wanted_proxies(self) -> tuple[str, ...]:
        """The proxies to compute: the 13 default ones (unless ``proxies=False``), then ``proxy_names``."""
        from eznas_store.collect import PROXY_NAMES

        return tuple(dict.fromkeys((*(PROXY_NAMES if self.proxies else ()), *self.proxy_names)))


def _resolve_skeleton(cfg: IngestConfig) -> None:
    """``space`` becomes the space that builds ``skeleton``'s networks (one-line errors for an
    unknown space, a space without named skeletons or an unknown skeleton)."""
    from eznas_store.sources import get_space

    if cfg.skeleton is None:
        return
    space = get_space(cfg.space)
    if not space.skeletons:
        raise ConfigError(f"--skeleton picks a network of a space that has several (darts); {cfg.space} has one")
    if cfg.skeleton not in space.skeletons:
        raise ConfigError(f"unknown --skeleton {cfg.skeleton!r} for --space {cfg.space} "
                          f"(known: {', '.join(space.skeletons)})")
    object.__setattr__(cfg, "space", space.skeletons[cfg.skeleton])


def _check_proxies(cfg: IngestConfig) -> None:
    """Proxy names known, label sets known, a proxies-only store with proxies and no codec, the
    Suite-Zero file present (with label sets); names and label sets recorded deduplicated."""
    from eznas_store.collect import check_proxy_names
    from eznas_store.sources import LABEL_SETS

    names = tuple(check_proxy_names(list(cfg.proxy_names))) if cfg.proxy_names else ()
    object.__setattr__(cfg, "proxy_names", names)
    unknown = [s for s in cfg.label_sets if s not in LABEL_SETS]
    if unknown:
        raise ConfigError(f"--label-set must be among {', '.join(LABEL_SETS)}, got {', '.join(unknown)}")
    object.__setattr__(cfg, "label_sets", tuple(dict.fromkeys(cfg.label_sets)))
    if not cfg.statistics and not cfg.wanted_proxies():
        raise ConfigError("--no-statistics collects proxies only: keep the default 13 (no --no-proxies) or "
                          "name some with --proxy")
    if not cfg.statistics and cfg.codec != "lossless":
        raise ConfigError(f"--codec {cfg.codec} encodes statistics; a --no-statistics store has none")
    if cfg.suitezero is not None:
        if not cfg.label_sets:
            raise ConfigError("--suitezero joins NASLib's values per label set's task: give --label-set")
        if not os.path.exists(cfg.suitezero):
            raise DataNotFoundError(f"{cfg.suitezero} not found (--suitezero)")
    if not (isinstance(cfg.max_seconds, (int, float)) and math.isfinite(cfg.max_seconds) and cfg.max_seconds >= 0):
        raise ConfigError(f"--max-seconds must be a finite number >= 0, got {cfg.max_seconds!r}")


def _check_codec(cfg: IngestConfig) -> None:
    """Validate ``cfg.codec`` and record it in its canonical form."""
    object.__setattr__(cfg, "codec", check_codec(cfg.codec))


def check_codec(text: str) -> str:
    """A ``--codec`` spec in its canonical form (``zfp:1e-3`` → ``zfp:0.001``), or a one-line
    ``ConfigError``; ``zfp`` is refused at once where zfpy is missing."""
    from eznas_store.store import canonical_codec

    codec = canonical_codec(text)
    if codec.startswith("zfp:"):
        from eznas_store.store import zfp_missing

        try:
            zfp_missing()
        except Exception as e:
            raise ConfigError(str(e)) from None
    return codec


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → ``(2, 8)``; shards count from 0 like Slurm array indices."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return i, n
