"""One ingest job's options, validated at the edge (CLI or job file) and recorded in the store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from eznas_store.config import MAX_BATCH, check_sizes, is_int
from eznas_store.errors import ConfigError
from eznas_store.terminals import DEFAULT_PERTURB_SCALE

__all__ = ["IngestConfig", "parse_shard"]


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """One ingest job, validated at the edge (CLI or job file) and recorded in the store."""

    store: str
    dataset: str
    space: str = "nb201"
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
    #: batch of the proxies (0: the statistics batch); NASLib/Suite-Zero used 64 on CIFAR-10
    proxy_batch_size: int = 0
    #: recollect the networks ``verify`` finds broken (unreadable chunks), even if flagged
    redo_broken: bool = False
    #: codec of the float32 tensor arrays: lossless, sumround:K, bitround:K or zfp:TOL (``store.plan.parse_codec``)
    codec: str = "lossless"
    progress: bool = True

    def __post_init__(self) -> None:
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
        if self.structure not in ("rcb", "cbr"):
            raise ConfigError(f"--structure must be rcb or cbr, got {self.structure!r}")
        if not (isinstance(self.perturb_scale, (int, float)) and math.isfinite(self.perturb_scale)
                and self.perturb_scale >= 0):
            raise ConfigError(f"--perturb-scale must be a finite number >= 0, got {self.perturb_scale!r}")


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
