"""Sources: everything read from outside the package, before anything is computed.

In: published files -- benchmark accuracy tables (CSV), dataset images (CIFAR/ImageNet16
pickles, image folders, embedded digits), NAS-Bench-Suite-Zero proxy tables -- and the
search spaces' own definitions. Out: immutable tables, normalised image batches, and per
space a :class:`~eznas_store.sources.spaces.base.SearchSpace` (parse, build, block layout,
enumeration, mutation) that every later stage uses instead of knowing a space itself.

Every input is bounded and checked here, at the edge (:mod:`eznas_store.sources.limits`:
decompressed bytes, pickle contents, image sizes), and a table's rows against a space
(:mod:`eznas_store.sources.table_rows`), so a hostile or careless file ends in one error
line naming it.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.sources import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "FORMAT": "eznas_store.sources.proxy_csv",
    "LABEL_SETS": "eznas_store.sources.proxy_csv",
    "csv_rows": "eznas_store.sources.proxy_csv",
    "proxy_meta_path": "eznas_store.sources.proxy_csv",
    "is_proxy_table": "eznas_store.sources.proxy_csv",
    "meta_path": "eznas_store.sources.tables",
    "read_meta": "eznas_store.sources.proxy_csv",
    "table_body": "eznas_store.sources.proxy_csv",
    "AZ_COMPONENTS": "eznas_store.sources.proxy_values",
    "AZ_FLOORS": "eznas_store.sources.proxy_values",
    "BenchmarkTable": "eznas_store.sources.tables",
    "DATASETS": "eznas_store.sources.datasets",
    "DEFAULT_ACCURACY_COLUMNS": "eznas_store.sources.tables",
    "SPACES": "eznas_store.sources.spaces",
    "az_nas_against": "eznas_store.sources.proxy_values",
    "az_nas_aggregate": "eznas_store.sources.proxy_values",
    "default_accuracy_column": "eznas_store.sources.tables",
    "floor_failed": "eznas_store.sources.proxy_values",
    "SearchSpace": "eznas_store.sources.spaces.base",
    "get_space": "eznas_store.sources.spaces",
    "GRAPH_SPACES": "eznas_store.sources.spaces.graph",
    "graph_columns": "eznas_store.sources.spaces.graph",
    "graph_feature_names": "eznas_store.sources.spaces.graph",
    "graph_features": "eznas_store.sources.spaces.graph",
    "get_spec": "eznas_store.sources.datasets",
    "load_split_tensors": "eznas_store.sources.datasets",
    "parse_network_selection": "eznas_store.sources.tables",
    "read_benchmark": "eznas_store.sources.tables",
    "read_proxy_table": "eznas_store.sources.proxy_csv",
    "read_zc": "eznas_store.sources.suitezero",
    "sample_batch": "eznas_store.sources.datasets",
    "select_networks": "eznas_store.sources.tables",
    "table_cells": "eznas_store.sources.table_rows",
    "write_benchmark": "eznas_store.sources.tables",
    "write_proxy_table": "eznas_store.sources.proxy_csv",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

