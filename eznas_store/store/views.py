"""xarray views of a store: the whole group as a lazy Dataset, its tables loaded, proxy values.

Every array carries ``dimension_names``, ``long_name``/``description`` and (along ``network``
or ``block``) a ``coordinates`` attribute, so plain ``xarray.open_zarr`` labels it and puts
``arch``, ``bench_index``, the block shapes, ... on its dims; these helpers add nothing but
the selection. xarray (and pandas under it) is imported inside
each function: it costs about a second of start-up that ingest and scoring never need.
"""

from __future__ import annotations

from typing import Any

from eznas_store.store.group import quiet_zarr
from eznas_store.terminals import STORED


def open_dataset(url: str, storage_options: dict | None = None) -> Any:
    """The whole store as a lazy ``xarray.Dataset`` (dask arrays, nothing read yet)."""
    import xarray as xr  # heavy: see the module docstring

    with quiet_zarr():
        return xr.open_zarr(url, storage_options=storage_options)


def table(ds: Any, dim: str) -> Any:
    """The variables of ``ds`` that have ``dim`` as their only dimension, loaded (small)."""
    names = [v for v in ds.data_vars if ds[v].dims == (dim,)]
    return ds[names].load()


def stored_rows(ds: Any, networks: slice | None = None, arrays: list[str] | None = None) -> Any:
    """Stored tensor rows (``arrays``, default the ``STORED`` names) of a network range, still
    lazy (dask-backed)."""
    rows = ds[list(arrays or STORED)]
    return rows.isel(network=networks) if networks is not None else rows


def proxy_values(ds: Any, label_sets: list[str]) -> Any:
    """Hand-crafted proxy values as a loaded ``xarray.DataArray`` (network × proxy × label_set):
    a store without dim ``label_set`` has one, ``label_sets[0]`` (its dataset)."""
    return _by_label_set(ds["proxy_value"], label_sets).assign_coords(proxy=ds["proxy"].values).load()


def suitezero_values(ds: Any, label_sets: list[str]) -> Any:
    """Joined Suite-Zero values, loaded (network × suitezero_proxy × label_set)."""
    values = _by_label_set(ds["suitezero_value"], label_sets)
    return values.assign_coords(suitezero_proxy=ds["suitezero_proxy"].values).load()


def _by_label_set(a: Any, label_sets: list[str]) -> Any:
    if "label_set" in a.dims:
        return a.assign_coords(label_set=list(label_sets))
    return a.expand_dims(label_set=list(label_sets), axis=-1)
