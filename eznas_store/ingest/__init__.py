"""Stage ``ingest``: collect the networks of a search space into a store, shard by shard, resumably.

In: an ``IngestConfig`` (dataset, benchmark table or space, network selection, batch,
seeds, shard ``i/n``). Out: a filled store (``store`` stage) and an ``IngestReport``.
The driver plans the job (``plan``: networks, accuracies, data batch → ``StorePlan``),
computes the layout from the search space and creates or joins the store (``layout``),
then collects each network (``networks``: statistics and proxies, as numpy rows) and
writes whole chunks, flags last; chunks already complete are skipped, so a killed job
resumes. A proxies-only store (``--no-statistics``; ``proxy-table`` is its NB201 front, with
label sets and the Suite-Zero join) is collected network by network instead
(``proxies_only``), each network written as it finishes.

Modules: ``config``, ``job`` (the plan), ``layout`` (and which chunks a shard still has to do),
``networks`` (one network: statistics, proxies per label set), ``driver``, ``proxies_only``,
``suitezero_join``, ``proxy_table`` (``proxy-table`` and the CSV export), ``estimate``,
``benchmark_check``.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.ingest import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "IngestConfig": "eznas_store.ingest.config",
    "LABEL_SETS": "eznas_store.ingest.proxy_table",
    "MAX_THREADS": "eznas_store.ingest.proxy_table",
    "ProxyTableConfig": "eznas_store.ingest.proxy_table",
    "check_benchmark": "eznas_store.ingest.benchmark_check",
    "check_codec": "eznas_store.ingest.config",
    "collect_network": "eznas_store.ingest.networks",
    "collect_proxy_table": "eznas_store.ingest.proxy_table",
    "export_proxy_csv": "eznas_store.ingest.proxy_table",
    "own_proxy_batch": "eznas_store.ingest.job",
    "parse_shard": "eznas_store.ingest.config",
    "plan_announcer": "eznas_store.ingest.estimate",
    "plan_ingest": "eznas_store.ingest.job",
    "plan_layout": "eznas_store.ingest.layout",
    "plan_store": "eznas_store.ingest.job",
    "proxies_for_network": "eznas_store.ingest.networks",
    "proxy_batch": "eznas_store.ingest.job",
    "run_ingest": "eznas_store.ingest.driver",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

