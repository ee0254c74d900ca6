"""What an ingest job will cost before it runs: networks, bytes on disk and time.

``estimate_ingest`` sizes a plan from its search space's block shapes (the raw float32
bytes each network's stored tensors take) times a measured compression ratio, and its
time from a measured rate; ``check_estimate`` refuses a plan larger than the free disk
of the store's filesystem unless told ``yes``. Both run before the store is created.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.ingest.config import IngestConfig
from eznas_store.sources import get_space
from eznas_store.store import open_for_plan
from eznas_store.store import ARRAY_FAMILY, CHUNK_TARGET_BYTES, compute_layout
from eznas_store.store import ROUNDINGS, StorePlan, parse_codec
from eznas_store.terminals import STORED

#: stored / raw float32 bytes of the statistics (Blosc-zstd, lossless), rounded up from
#: measurements of random NB201 cells (C=16, N=5, 32 px, with the tables and metadata):
#: 0.73 at batch 1 (75 MB of 103 MB), 0.87 at batch 16 (746 MB of 862 MB); an earlier
#: store gave 0.56 (17.5 of 31.2 MB). The largest keeps the free-disk check on the safe side.
COMPRESSION_RATIO = 0.9

#: seconds per network = SECONDS_PER_SQRT_MB * sqrt(its raw MB), statistics and the 13
#: proxies on 2 shared CPU cores. Measured: 3 s at batch 1 (26 MB raw), 10 s at batch 16
#: (287 MB), 0.4 s for the tests' C=4, N=1, 8 px cells (0.24 MB); a GPU is much faster.
SECONDS_PER_SQRT_MB = 0.6
#: seconds per network and label set of a proxies-only store: a rough figure for the modern
#: proxies of a full-size NB201 cell (C=16, N=5) at batch 64 on 2 CPU cores; tiny cells are faster
PROXY_SECONDS = 3.0
#: networks whose block shapes are read to size a plan (evenly spaced; all of a smaller plan)
SIZE_SAMPLE = 64
#: ``estimate_ingest(free_bytes=MEASURE)``: read the free disk of the store's filesystem
MEASURE = object()


def compression_ratio(codec: str) -> float:
    """Stored / raw bytes to plan with: ``COMPRESSION_RATIO`` for lossless (and zfp, whose
    ratio depends on its tolerance), ``(9 + K) / 32`` for a ``bitround:K`` / ``sumround:K``
    store, the bits left per float32 value (sign, exponent, K mantissa bits) before Blosc
    squeezes the zeroed ones out: an upper bound (compact, K = 2, measured 0.17 at batch 1 and
    at batch 16 against this 0.34), where lossless's 0.9 overstated such a store ~5x."""
    kind, arg = parse_codec(codec)
    return min((9 + int(arg)) / 32, COMPRESSION_RATIO) if kind in ROUNDINGS else COMPRESSION_RATIO


@dataclass(frozen=True)
class IngestEstimate:
    """A plan's size: its networks, this shard's, those already complete, bytes and seconds."""

    store: str
    networks: int  # in the plan
    shard_networks: int  # this shard's
    complete: int  # of this shard's, already complete in an existing store
    raw_bytes_per_network: float  # float32 bytes of one network's stored tensors (mean)
    bytes: int  # estimated on disk for the networks still to collect
    seconds: float  # estimated wall time for them
    free_bytes: int | None  # free disk of the store's filesystem; None when not local
    disk_note: str = ""  # why the free-disk check was skipped

    @property
    def todo(self) -> int:
        return self.shard_networks - self.complete

    @property
    def fits(self) -> bool:
        return self.free_bytes is None or self.bytes <= self.free_bytes

    def line(self) -> str:
        free = f", {_size(self.free_bytes)} free" if self.free_bytes is not None else f" ({self.disk_note})"
        shard = f" ({self.shard_networks} in this shard)" if self.shard_networks != self.networks else ""
        return (f"ingest plan: {self.networks} networks{shard}, {self.complete} already complete, "
                f"{self.todo} to collect: about {_size(self.bytes)} on disk{free}, "
                f"about {_duration(self.seconds)} → {self.store}")


def estimate_ingest(cfg: IngestConfig, plan: StorePlan, *, free_bytes: int | None | object = MEASURE) -> IngestEstimate:
    """Size ``plan`` for ``cfg``'s shard; ``free_bytes`` is measured unless given (tests)."""
    raw, widest = _raw_bytes(plan) if plan.statistics else (_proxy_bytes(plan), 0)
    existing = open_for_plan(cfg.store, plan)
    total = len(plan.archs)
    i, n_shards = cfg.shard
    if existing is not None:
        mine = [r for c, r in enumerate(existing.chunk_ranges()) if c % n_shards == i]
        done = existing.complete()
        complete = sum(int(done[lo:hi].sum()) for lo, hi in mine)
    else:
        k = cfg.chunk_networks or int(np.clip(CHUNK_TARGET_BYTES // max(widest, 1), 1, 64))
        mine = [(lo, min(lo + k, total)) for c, lo in enumerate(range(0, total, k)) if c % n_shards == i]
        complete = 0
    shard_networks = sum(hi - lo for lo, hi in mine)
    todo = shard_networks - complete
    note = ""
    if free_bytes is MEASURE:
        free_bytes, note = free_disk_bytes(cfg.store)
    seconds = todo * (SECONDS_PER_SQRT_MB * math.sqrt(raw / 1e6) if plan.statistics
                      else PROXY_SECONDS * len(plan.heads()))
    return IngestEstimate(store=cfg.store, networks=total, shard_networks=shard_networks, complete=complete,
                          raw_bytes_per_network=raw, bytes=int(math.ceil(todo * raw * compression_ratio(plan.codec))),
                          seconds=seconds, free_bytes=free_bytes, disk_note=note)


def check_estimate(est: IngestEstimate, *, yes: bool) -> None:
    """Refuse a plan larger than the free disk, unless ``yes``."""
    if not est.fits and not yes:
        raise ConfigError(
            f"the plan needs about {_size(est.bytes)} but the disk of {est.store} has {_size(est.free_bytes)} "
            "free; choose fewer --networks (e.g. --networks 100), shard it, or pass --yes to ingest anyway")


def plan_announcer(echo: Callable[[str], None], *, yes: bool) -> Callable[[IngestEstimate], None]:
    """``run_ingest``'s ``on_plan`` for the CLI: print the plan's line, then check it."""
    def announce(est: IngestEstimate) -> None:
        echo(est.line())
        check_estimate(est, yes=yes)
    return announce


def free_disk_bytes(url: str) -> tuple[int | None, str]:
    """Free bytes of the filesystem holding local path ``url`` (its nearest existing
    parent), or ``(None, why)`` for a non-local URL (``memory://``, ``s3://``, ...)."""
    url = str(url)
    if "://" in url and not url.startswith("file://"):
        return None, f"free disk not checked: {url.split('://')[0]}:// is not a local path"
    path = os.path.abspath(url[len("file://"):] if url.startswith("file://") else url)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return int(shutil.disk_usage(path).free), ""


def _raw_bytes(plan: StorePlan) -> tuple[float, int]:
    """Mean raw float32 bytes of one network's stored tensors, and the widest row's bytes,
    from the block shapes of up to ``SIZE_SAMPLE`` evenly spaced networks of ``plan``."""
    if not plan.archs:
        return 0.0, 0
    space = get_space(plan.space)
    B = plan.collect.batch_size
    pick = np.unique(np.linspace(0, len(plan.archs) - 1, min(SIZE_SAMPLE, len(plan.archs))).astype(int))
    sizes = []
    for n in pick:
        specs = space.block_specs(plan.archs[n], batch_size=B, image_size=plan.image_size, C=plan.C,
                                  N=plan.N, structure=plan.collect.structure)
        widths = compute_layout([specs], batch_size=B).widths
        sizes.append(4 * sum(widths[ARRAY_FAMILY[a]] for a in STORED))
    return float(np.mean(sizes)), int(max(sizes))


def _proxy_bytes(plan: StorePlan) -> float:
    """Bytes of one network's row of a proxies-only store: a value (8 bytes) and a short reason
    per proxy and label set, before compression."""
    return 16.0 * max(len(plan.proxies), 1) * len(plan.heads())


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
