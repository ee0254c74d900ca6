"""Collect: run untrained networks of a search space and measure what they do.

Three jobs, one module (or package) each: the 22 EZNAS statistics per block of a network
(:mod:`~eznas_store.collect.statistics`), the 13 hand-crafted zero-cost proxies of
NAS-Bench-Suite-Zero (:mod:`~eznas_store.collect.proxies`), and training labels for
spaces or datasets no benchmark covers (:mod:`~eznas_store.collect.label`, with the loop
in :mod:`~eznas_store.collect.training`).

In: an architecture of a space (or any torch model) and a batch of images (and labels).
Out: per-block statistic tensors, proxy values ``(value, None)`` / ``(nan, reason)``, and
accuracy tables in the NB201 benchmark format. Reads sources/ only; never writes a store.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.collect import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "AZ_COMPONENTS": "eznas_store.collect.proxies.az_nas",
    "DEMO_LABEL": "eznas_store.collect.label",
    "HEAD_FREE": "eznas_store.collect.proxies.registry",
    "LabelConfig": "eznas_store.collect.label",
    "MODERN_PROXY_NAMES": "eznas_store.collect.proxies.registry",
    "NetworkStats": "eznas_store.collect.statistics",
    "OPT_IN_PROXY_NAMES": "eznas_store.collect.proxies.registry",
    "PROXIES": "eznas_store.collect.proxies.registry",
    "PROXY_NAMES": "eznas_store.collect.proxies.registry",
    "SWAP_BATCH": "eznas_store.collect.proxies.swap",
    "VKDNW_AGG_TERMS": "eznas_store.collect.proxies.vkdnw",
    "VKDNW_PROXY_NAMES": "eznas_store.collect.proxies.registry",
    "az_nas_against": "eznas_store.collect.proxies.az_nas",
    "check_proxy_names": "eznas_store.collect.proxies.registry",
    "collect": "eznas_store.collect.statistics",
    "compute_all": "eznas_store.collect.proxies.runner",
    "deterministic": "eznas_store.collect.statistics",
    "find_blocks": "eznas_store.collect.statistics",
    "floor_failed": "eznas_store.collect.proxies.az_nas",
    "nb201_factory": "eznas_store.collect.proxies.networks",
    "network_factory": "eznas_store.collect.proxies.networks",
    "network_seed": "eznas_store.collect.statistics",
    "resolve_device": "eznas_store.collect.statistics",
    "proxy_card": "eznas_store.collect.proxies.registry",
    "run_label": "eznas_store.collect.label",
    "stored_subset": "eznas_store.collect.statistics",
    "swap_regularised": "eznas_store.collect.proxies.swap",
    "vkdnw_aggregate": "eznas_store.collect.proxies.vkdnw",
    "vkdnw_single": "eznas_store.collect.proxies.vkdnw",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

