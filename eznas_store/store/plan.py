"""The plan of a store: everything that fixes its layout, and its JSON form in the attributes.

Two jobs (or two shards of one job) may share a store when their plans agree on
``identity()``; paths on the node (benchmark file, data folder) may differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from eznas_store.errors import ConfigError
from eznas_store.terminals import CollectConfig

#: name of the store's attribute table and version of what it holds
FORMAT = "eznas-store"
#: version 2: raw P arrays named ``raw_<kind>_P``, ``long_name``/``description`` and
#: ``coordinates`` attributes on every array, block columns ``w_in``/``w_out``
FORMAT_VERSION = 2
#: versions ``open_store`` reads (version 1 by its array names: ``ARRAY_NAMES``)
READABLE_VERSIONS = (1, 2)
#: root attribute written before anything else: the plan's fingerprint and, once the
#: tables are filled, their commit marker (``tables_sha256``)
CREATION = "eznas-store-creation"
#: the tensor codec of every store made before ``--codec`` (Blosc zstd + CRC32C only)
LOSSLESS = "lossless"
#: mantissa bits ``bitround:K`` may keep (float32 has 23)
BITROUND_BITS = (1, 23)
#: the K-mantissa-bit codecs: ``bitround`` rounds each value to nearest (numcodecs' BitRound);
#: ``sumround`` rounds to nearest but for a few values per block tensor sent to their other
#: K-bit neighbour, so the block's sum keeps its value (``store.rounding``), then the same
#: BitRound filter (a no-op on it) records K
ROUNDINGS = ("bitround", "sumround")
#: Blosc zstd levels ``bitround:K+zstd:L`` may ask for; 3 is the level of every other array
ZSTD_LEVELS, DEFAULT_LEVEL = (1, 9), 3
#: the named lossy preset and the spec it stands for (recorded as the spec, never the name),
#: chosen from ``benchmarks/bench_codecs.py`` (docs/results.md "Lossy codecs"): 2 mantissa bits keep
#: every program not set by round-off within 0.005 tau; Blosc's zstd level 9 (zstd's
#: strongest) makes the same values 8 % smaller than level 3, which three 200-network samples
#: needed to stay under 4 MB per network at batch 1 (3.73-4.09 MB at level 3)
PRESET, COMPACT = "compact", "sumround:2+zstd:9"


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
    #: codec of the float32 tensor arrays (``parse_codec``): lossless, sumround:K, bitround:K or zfp:TOL;
    #: left out of the JSON (and so of the fingerprint) when lossless, as stores before it
    codec: str = LOSSLESS
    #: False: a proxies-only store (no tensor arrays, no block table); the fields below are left
    #: out of the JSON at their defaults, so the fingerprints of stores before them stay as they were
    statistics: bool = True
    #: the classifier heads proxies are computed with: (name, classes, accuracy column) each; a
    #: store made with them has dim ``label_set`` on its proxy arrays; () is one label set, the
    #: dataset's own head (``heads``), and proxy arrays of dims (network, proxy) as before
    label_sets: tuple[tuple[str, int, str], ...] = ()
    #: NAS-Bench-Suite-Zero file NASLib's proxy values were joined from (a path: not identity),
    #: the proxies joined and the sha256 of the joined values (table ``suitezero_value``)
    suitezero: str = ""
    suitezero_proxies: tuple[str, ...] = ()
    suitezero_sha256: str = ""

    def heads(self) -> tuple[tuple[str, int, str], ...]:
        """Every label set as (name, classes, accuracy column): ``label_sets``, else the dataset's own."""
        return self.label_sets or ((self.dataset, self.num_classes, self.accuracy_column),)

    @property
    def proxy_dims(self) -> tuple[str, ...]:
        """Dims of ``proxy_value``/``proxy_reason``: with ``label_set`` where label sets were given."""
        return ("network", "proxy", "label_set") if self.label_sets else ("network", "proxy")

    @property
    def p_difference(self) -> bool:
        """True when the P pass is stored as its difference from D (P − D, the P terminal
        itself): every lossy codec. Rounding P and D separately by 2^-K would be a ~10x larger
        error in their difference, which every P terminal is (docs/results.md "Lossy codecs")."""
        return self.codec != LOSSLESS

    def identity(self) -> dict[str, Any]:
        """The fields two shards must agree on (paths may differ between nodes)."""
        d = plan_to_json(self)
        for k in ("benchmark", "data_root", "suitezero"):
            d.pop(k, None)
        return d


def plan_to_json(plan: StorePlan) -> dict[str, Any]:
    """The plan as JSON values (tuples become lists), as the store's attributes hold it."""
    d = dataclasses.asdict(plan)
    d["archs"] = list(plan.archs)
    d["bench_index"] = list(plan.bench_index)
    d["accuracies"] = {k: list(v) for k, v in plan.accuracies.items()}
    d["batch_indices"] = list(plan.batch_indices)
    d["proxies"] = list(plan.proxies)
    d["label_sets"] = [list(s) for s in plan.label_sets]
    d["suitezero_proxies"] = list(plan.suitezero_proxies)
    if d.get("codec") == LOSSLESS:
        d.pop("codec")
    for k, default in _LATER_DEFAULTS.items():  # as stores before them: absent at the default
        if d.get(k) == default:
            d.pop(k)
    return d


#: plan fields added after format 2's first stores, left out of the JSON at these values
_LATER_DEFAULTS: dict[str, Any] = {"statistics": True, "label_sets": [], "suitezero": "", "suitezero_proxies": [],
                                   "suitezero_sha256": ""}


def _sha256(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def plan_fingerprint(plan: StorePlan) -> dict[str, Any]:
    """The fingerprint of ``plan.identity()`` and one digest per option (``collect.*`` flattened),
    so a mismatch can name the first option that differs."""
    ident = plan.identity()
    options: dict[str, str] = {}
    for k, v in ident.items():
        if k == "collect" and isinstance(v, dict):
            options.update({f"collect.{ck}": _sha256(cv) for ck, cv in v.items()})
        else:
            options[k] = _sha256(v)
    return {"fingerprint": _sha256(ident), "options": options}


def first_difference(mine: dict[str, Any], theirs: Any) -> str | None:
    """The first option whose digest differs between two ``plan_fingerprint`` records, or None."""
    if not isinstance(theirs, dict) or theirs.get("fingerprint") == mine["fingerprint"]:
        return None
    other = theirs.get("options") if isinstance(theirs.get("options"), dict) else {}
    for k, digest in mine["options"].items():
        if other.get(k) != digest:
            return k
    extra = sorted(set(other) - set(mine["options"]))
    return extra[0] if extra else "fingerprint"


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
    d.setdefault("codec", LOSSLESS)
    d["label_sets"] = tuple((str(n), int(c), str(col)) for n, c, col in d.get("label_sets", ()))
    d["suitezero_proxies"] = tuple(d.get("suitezero_proxies", ()))
    return StorePlan(**d)


def parse_codec(text: str) -> tuple[str, float | int | None]:
    """``"lossless"`` → ``("lossless", None)``, ``"bitround:K[+zstd:L]"`` → ``("bitround", K)`` (K
    mantissa bits kept, 1..23; the Blosc zstd level after it is ``codec_level``), ``"zfp:TOL"`` →
    ``("zfp", TOL)`` (absolute error bound > 0), ``"compact"`` → its ``COMPACT`` spec; anything
    else is a one-line ``ConfigError``."""
    return _parse(text)[:2]


def codec_level(text: str) -> int:
    """The Blosc zstd level of the tensor arrays: ``L`` of ``bitround:K+zstd:L``, else 3."""
    return _parse(text)[2]


def _parse(text: str) -> tuple[str, float | int | None, int]:
    """``(kind, arg, zstd level)`` of a ``--codec`` spec (grammar in ``parse_codec``)."""
    text = str(text).strip()
    if text == PRESET:
        text = COMPACT
    head, plus, stage = text.partition("+")
    kind, _, arg = head.partition(":")
    if text == LOSSLESS:
        return LOSSLESS, None, DEFAULT_LEVEL
    lo, hi = BITROUND_BITS
    if kind in ROUNDINGS:
        if not (arg.isascii() and arg.isdigit()) or not lo <= int(arg) <= hi:
            raise ConfigError(f"--codec {kind}:K needs K, the mantissa bits kept, an integer from {lo} to "
                              f"{hi}; got {text!r}")
        return kind, int(arg), _level(text, stage) if plus else DEFAULT_LEVEL
    if kind == "zfp" and not plus:
        try:
            tol = float(arg)
        except ValueError:
            tol = float("nan")
        if not (tol > 0 and tol < float("inf")):
            raise ConfigError(f"--codec zfp:TOL needs TOL, the absolute error bound, a finite number > 0; "
                              f"got {text!r}")
        return "zfp", tol, DEFAULT_LEVEL
    raise ConfigError(f"--codec must be lossless, {PRESET}, sumround:K[+zstd:L] or bitround:K[+zstd:L] (K = 1..{hi} "
                      f"mantissa bits kept, L = zstd level 1..9) or zfp:TOL (absolute error bound > 0); got {text!r}")


def _level(text: str, stage: str) -> int:
    """``L`` of the ``zstd:L`` stage after ``+`` (Blosc's clevel, 1..9), else a one-line error."""
    name, _, level = stage.partition(":")
    lo, hi = ZSTD_LEVELS
    if name != "zstd" or not (level.isascii() and level.isdigit()) or not lo <= int(level) <= hi:
        raise ConfigError(f"--codec {text.partition(':')[0]}:K+zstd:L needs L, the Blosc zstd level, an integer from {lo} to "
                          f"{hi}; got {text!r}")
    return int(level)


def canonical_codec(text: str) -> str:
    """The codec string as plans record it (``zfp:1e-3`` → ``zfp:0.001``, ``bitround:07`` →
    ``bitround:7``, ``bitround:7+zstd:3`` → ``bitround:7``, ``compact`` → ``COMPACT``), so equal
    codecs give equal fingerprints."""
    kind, arg, level = _parse(text)
    spec = kind if arg is None else f"{kind}:{arg!r}"
    return spec if level == DEFAULT_LEVEL else f"{spec}+zstd:{level}"
