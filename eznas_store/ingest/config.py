"""One ingest job's options, validated at the edge (CLI or job file) and recorded in the store."""

from __future__ import annotations

from dataclasses import dataclass

from eznas_store.errors import ConfigError
from eznas_store.terminals import DEFAULT_PERTURB_SCALE


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
    progress: bool = True

    def __post_init__(self) -> None:
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {i}/{n}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], got {self.device!r}")
        if isinstance(self.networks, int) and self.networks < 1:
            raise ConfigError(f"--networks must be at least 1, got {self.networks}")
        if self.chunk_networks < 0:
            raise ConfigError("--chunk-networks must be >= 0 (0 chooses automatically)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → ``(2, 8)``; shards count from 0 like Slurm array indices."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return i, n
