"""A store re-encoded with another tensor codec: ingest once losslessly, make it lossy later.

Collecting statistics is the expensive step (GPU hours); choosing a codec should not mean
collecting again. ``transcode_store`` copies every table, flag and proxy as it is and
re-encodes only the float32 tensor arrays, one chunk of networks at a time (bounded RAM),
then rewrites the plan and fingerprint: the result is the store ``ingest --codec`` would have
written (BitRound is elementwise; ``tests/test_codecs.py`` checks them bit-equal), layout
included: a lossy store keeps the P pass as P − D (``StorePlan.p_difference``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import zarr

from eznas_store.errors import StoreError
from eznas_store.store.create import stored_attributes
from eznas_store.store.describe import array_attributes
from eznas_store.store.group import normalise_url, quiet_zarr, store_exists, tensor_codecs
from eznas_store.store.plan import CREATION, FORMAT, canonical_codec, plan_fingerprint, plan_to_json
from eznas_store.store.reader import Store, open_store
from eznas_store.store.writer import write_tensors
from eznas_store.terminals import STORED


def transcode_store(src: str, dst: str, codec: str) -> Store:
    """``src`` (a complete local store, any codec) re-encoded into the new local store ``dst``
    with ``codec`` on its tensor arrays; the opened result."""
    codec = canonical_codec(codec)
    s = open_store(src)
    src, dst = normalise_url(src), normalise_url(dst)
    if "://" in src or "://" in dst:
        raise StoreError("transcode works on local stores only")
    if store_exists(dst) or os.path.exists(dst):
        raise StoreError(f"{dst} exists; transcode writes a new store")
    if not s.complete().all():
        raise StoreError(f"store {src} is not complete ({int((~s.complete()).sum())} networks missing); "
                         "finish its ingest first")
    plan = dataclasses.replace(s.plan, codec=codec)
    old_names = s.array_names
    shutil.copytree(src, dst, ignore=lambda d, names: list(old_names.values()) if os.path.samefile(d, src) else [])
    g = zarr.open_group(dst, mode="r+")
    new = Store(url=dst, group=g, plan=plan, meta={**s.meta, "plan": plan_to_json(plan)})
    arrays = {name: _create(s, new, name) for name in STORED}
    for lo, hi in s.chunk_ranges():  # each chunk read once (read_rows gives the raw P pass)
        write_tensors(new, lo, s.read_rows(lo, hi), arrays)
    _rewrite_attributes(g, plan)
    return open_store(dst)


def _create(old: Store, new: Store, name: str) -> zarr.Array:
    """``new``'s array for ``STORED`` tensor ``name``: ``old``'s shape and chunks, ``new``'s name,
    attributes and codec."""
    a = old.group[old.array_names[name]]
    dims = tuple(a.metadata.dimension_names)
    target = new.array_names[name]
    with quiet_zarr():
        return new.group.create_array(target, shape=a.shape, chunks=a.chunks, dtype=a.dtype, fill_value=a.fill_value,
                                      dimension_names=dims, attributes=array_attributes(target, new.plan, dims),
                                      **tensor_codecs(new.plan.codec))


def _rewrite_attributes(g: zarr.Group, plan) -> None:
    """Plan, fingerprint and tensor-array list of the transcoded store; metadata consolidated."""
    want = plan_fingerprint(plan)
    attrs = dict(g.attrs[FORMAT])
    attrs.update(plan=plan_to_json(plan), fingerprint=want["fingerprint"], **stored_attributes(plan))
    g.attrs.update({FORMAT: attrs, CREATION: {**dict(g.attrs[CREATION]), **want}})
    with quiet_zarr():
        zarr.consolidate_metadata(g.store)
