"""A store re-encoded with another tensor codec: ingest once losslessly, make it lossy later.

Collecting statistics is the expensive step (GPU hours); choosing a codec should not mean
collecting again. ``transcode_store`` copies every table, flag and proxy as it is and
re-encodes only the float32 tensor arrays, one chunk of networks at a time (bounded RAM),
then rewrites the plan and fingerprint: the result is the store ``ingest --codec`` would have
written (BitRound is elementwise; ``tests/test_codecs.py`` checks them bit-equal), layout
included: a lossy store keeps the P pass as P − D (``StorePlan.p_difference``).

A derived store must not be more trusted than its source, nor called complete before it is:

* the source must verify: its tables, flags and proxies are read and checked first, and each
  tensor chunk is checked as it is read (a missing or undecodable chunk, NaN/Inf), so a
  damaged chunk is refused, never re-encoded with a fresh checksum;
* the target is written into ``.<name>.transcode-partial`` beside it (its root attribute
  ``eznas-store-transcode`` says from what, with which codec), every chunk read back after it
  is written, its completion flags written last, the whole checked for missing chunks, and
  only then renamed to the target: a failed or killed transcode leaves no target at all;
* a rerun resumes that folder (chunks already written and readable are kept) when it holds the
  same source and codec, else removes it (it is ours) and says so; a refused source or a chunk
  that reads back wrong removes it; anything else (a kill, a full disk) keeps it to resume;
* one transcode per target at a time (``outputs.exclusive``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable

import numpy as np
import zarr

from eznas_store.errors import CorruptChunkError, EznasError, StoreError
from eznas_store.outputs import ensure_dir, exclusive
from eznas_store.store.chunks import chunk_indices, chunk_keys, missing_chunks
from eznas_store.store.create import stored_attributes
from eznas_store.store.describe import array_attributes
from eznas_store.store.group import normalise_url, quiet_zarr, tensor_codecs, writable
from eznas_store.store.layout import TENSOR_ARRAYS
from eznas_store.store.plan import CREATION, FORMAT, canonical_codec, plan_fingerprint, plan_to_json
from eznas_store.store.store import Store, open_store
from eznas_store.store.verify import STRAY_SUFFIXES, _shape_problems, table_problems, verify_store
from eznas_store.store.writer import write_tensors
from eznas_store.terminals import STORED

#: root attribute of a transcode's folder (and, after, of the store it made): source and codec
TRANSCODE = "eznas-store-transcode"
#: name ending of the folder a transcode writes into before it renames it to the target
PARTIAL = ".transcode-partial"


def partial_path(dst: str) -> str:
    """``.<name>.transcode-partial`` beside the target ``dst``: where transcode writes first."""
    dst = os.path.abspath(dst)
    return os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}{PARTIAL}")


def transcode_store(src: str, dst: str, codec: str, *, say: Callable[[str], None] | None = None) -> Store:
    """``src`` (a complete local store that verifies, any codec) re-encoded into the new local
    store ``dst`` with ``codec`` on its tensor arrays; the opened result. ``say`` hears what
    is done with an interrupted transcode's folder (resumed, removed)."""
    codec, say = canonical_codec(codec), say or (lambda line: None)
    src, dst = normalise_url(src), normalise_url(dst)
    if "://" in src or "://" in dst:
        raise StoreError("transcode works on local stores only")
    dst = dst.rstrip("/") or dst
    s = open_store(src)
    if not s.plan.statistics:
        raise StoreError(f"store {src} holds proxies only: no tensor arrays to transcode (copy it as it is)")
    _refuse_target(dst)
    if os.path.commonpath([os.path.realpath(src), os.path.realpath(dst)]) == os.path.realpath(src):
        raise StoreError(f"target {dst} is inside the source store {src}; choose a target outside it")
    _check_source(s)  # before anything is made
    ensure_dir(os.path.dirname(os.path.abspath(dst)), "folder of the transcode target")
    with exclusive(dst, "store"):
        _refuse_target(dst)  # again, now that no other transcode can make it
        plan = dataclasses.replace(s.plan, codec=codec)
        creation = s.group.attrs.get(CREATION)
        state = {"source": os.path.abspath(src), "codec": codec, "fingerprint": plan_fingerprint(s.plan)["fingerprint"],
                 "tables_sha256": creation.get("tables_sha256") if isinstance(creation, dict) else None}
        tmp = partial_path(dst)
        resumed = _prepare(tmp, state, say)
        try:
            _fill(s, tmp, plan, state, resumed, say)
        except EznasError as e:  # a refused source or a chunk that reads back wrong: nothing to resume
            shutil.rmtree(tmp, ignore_errors=True)
            raise type(e)(f"transcode stopped, {dst} not written: {e}") from None
        except OSError as e:  # a full disk, no permission: the work so far is kept
            raise StoreError(f"transcode to {dst} failed ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                             f"what was written is kept in {tmp}: rerun the same command to resume") from None
        _refuse_target(dst)
        os.rename(tmp, dst)
    return open_store(dst)


def _refuse_target(dst: str) -> None:
    """A one-line refusal if ``dst`` exists (a broken symbolic link included), saying what to do."""
    if os.path.islink(dst) and not os.path.exists(dst):
        raise StoreError(f"target {dst} exists as a symbolic link to {os.readlink(dst)}, which does not exist; "
                         "transcode writes a new store: remove the link or choose another target")
    if os.path.lexists(dst):
        raise StoreError(f"target {dst} exists; transcode writes a new store: choose another target, or delete "
                         f"{dst} first if it is no longer needed")


def _check_source(s: Store) -> None:
    """Refuse a source that is not complete or does not verify: every array but the tensors is
    read here (tables, flags, proxies), the tensor chunks listed (each is checked when read)."""
    if not s.complete().all():
        raise StoreError(f"store {s.url} is not complete ({int((~s.complete()).sum())} networks missing); "
                         "finish its ingest first")
    rep = verify_store(s, arrays=[n for n in sorted(s.group.array_keys()) if n not in TENSOR_ARRAYS])
    found = rep.problems + _shape_problems(s, None) + table_problems(s) + [c.line() for c in rep.broken_chunks]
    found += [f"network {n}: {'; '.join(why)}" for n, why in sorted(rep.broken.items())]
    found += [f"chunk {name}/{'.'.join(map(str, idx))}: {why}"
              for name, idx, why in missing_chunks(s, [n for n in s.array_names.values() if s.has_array(n)])]
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise StoreError(f"source {s.url} does not verify ({found[0]}{more}); run 'eznas-store verify {s.url}' "
                         "and repair it (ingest --redo-broken) before transcoding it")


def _prepare(tmp: str, state: dict, say: Callable[[str], None]) -> bool:
    """Make the transcode's folder ``tmp``; True if an interrupted one of the same source and
    codec is resumed instead. A leftover of another is removed (it is ours: it holds the
    ``TRANSCODE`` attribute); anything else in the way is refused."""
    if os.path.lexists(tmp):
        old = _transcode_state(tmp)
        if old is not None and {k: old.get(k) for k in state} == state:
            say(f"resuming the interrupted transcode in {tmp}")
            return True
        if old is not None:
            shutil.rmtree(tmp)
            say(f"removed {tmp}, left by an interrupted transcode of {old.get('source')} with codec "
                f"{old.get('codec')}")
        elif os.path.isdir(tmp) and not os.path.islink(tmp) and not os.listdir(tmp):
            os.rmdir(tmp)
        else:
            raise StoreError(f"{tmp} is in the way and was not made by transcode (no {TRANSCODE} attribute); "
                             "remove it and rerun")
    with quiet_zarr():
        zarr.open_group(tmp, mode="w-", zarr_format=3, attributes={TRANSCODE: state})
    return False


def _transcode_state(tmp: str) -> dict | None:
    """The ``TRANSCODE`` attribute of a folder's root group, or None if it has none."""
    try:
        with open(os.path.join(tmp, "zarr.json"), encoding="utf-8") as f:
            state = json.load(f).get("attributes", {}).get(TRANSCODE)
    except (OSError, ValueError, AttributeError):
        return None
    return state if isinstance(state, dict) else None


def _fill(s: Store, tmp: str, plan, state: dict, resumed: bool, say: Callable[[str], None]) -> None:
    """Copy the source's tables into ``tmp``, write every tensor chunk (read back), then the
    flags and attributes, and check that no chunk is missing."""
    _copy(s, tmp)
    g = zarr.open_group(tmp, mode="r+", zarr_format=3, use_consolidated=False)
    new = Store(url=tmp, group=g, plan=plan, meta={**s.meta, "plan": plan_to_json(plan)})
    new._blocks = s.block_table()  # the same tables, checked with the source
    arrays = {name: writable(_create(s, new, name)) for name in STORED}
    keys = {name: chunk_keys(a) for name, a in arrays.items()} if resumed else None
    kept = 0
    for lo, hi in s.chunk_ranges():  # each chunk read once (read_rows gives the raw P pass)
        if keys is not None and _written(arrays, keys, lo, hi):
            kept += 1
            continue
        raw = s.read_rows(lo, hi)
        _refuse_non_finite(s, raw, lo, hi)
        write_tensors(new, lo, raw, arrays, read_back=True)
    if resumed:
        say(f"kept {kept} of {len(s.chunk_ranges())} chunks the interrupted transcode had written")
    writable(g["complete"])[:] = np.ones(s.n_networks, dtype=bool)
    _rewrite_attributes(g, s, plan, state)
    done = open_store(tmp)
    lacking = [f"{name}/{'.'.join(map(str, idx))}: {why}" for name, idx, why in missing_chunks(done)]
    lacking += table_problems(done)
    if lacking:
        raise StoreError(f"the transcoded store does not check out ({lacking[0]}); rerun the transcode")


def _copy(s: Store, tmp: str) -> None:
    """Every file of the source but its tensor arrays, root metadata, completion flags and
    stray temporary files (the flags are written last, once every chunk is)."""
    tensors = set(s.array_names.values())
    flags = os.path.join(s.url, "complete")

    def ignore(folder: str, names: list[str]) -> list[str]:
        skip = [n for n in names if n.endswith(STRAY_SUFFIXES)]
        if os.path.samefile(folder, s.url):
            skip += [n for n in names if n in tensors or n == "zarr.json"]
        elif os.path.samefile(folder, flags):
            skip += [n for n in names if n == "c"]
        return skip

    shutil.copytree(s.url, tmp, ignore=ignore, dirs_exist_ok=True)


def _written(arrays: dict[str, zarr.Array], keys: dict[str, frozenset[str]], lo: int, hi: int) -> bool:
    """Whether an interrupted transcode wrote networks ``lo..hi`` of every tensor array, readable."""
    for name, a in arrays.items():
        if any(a.metadata.encode_chunk_key(idx) not in keys[name] for idx in chunk_indices(a, lo, hi)):
            return False
        try:
            if not np.isfinite(np.asarray(a[lo:hi])).all():
                return False
        except Exception:  # cut short: written again
            return False
    return True


def _refuse_non_finite(s: Store, raw: dict[str, np.ndarray], lo: int, hi: int) -> None:
    """A source chunk holding NaN/Inf does not verify: a ``CorruptChunkError``, as verify says."""
    for name, rows in raw.items():
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=tuple(range(1, rows.ndim))))
        if bad.size:
            raise CorruptChunkError(f"store {s.url}: network {lo + int(bad[0])} holds NaN/Inf in {name!r}; run "
                                    f"'eznas-store verify {s.url}' and repair it (ingest --redo-broken)")


def _create(old: Store, new: Store, name: str) -> zarr.Array:
    """``new``'s array for ``STORED`` tensor ``name``: ``old``'s shape and chunks, ``new``'s name,
    attributes and codec (the one an interrupted transcode of the same codec made, if any)."""
    a = old.group[old.array_names[name]]
    dims = tuple(a.metadata.dimension_names)
    target = new.array_names[name]
    with quiet_zarr():  # numcodecs' codecs are not in the v3 specification: zarr says so on opening
        made = new.group[target] if target in new.group else None
    if made is not None:
        if tuple(made.shape) == tuple(a.shape) and tuple(made.chunks) == tuple(a.chunks):
            return made
        raise StoreError(f"{new.url} holds array {target!r} of another shape; remove {new.url} and rerun")
    with quiet_zarr():
        return new.group.create_array(target, shape=a.shape, chunks=a.chunks, dtype=a.dtype, fill_value=a.fill_value,
                                      dimension_names=dims, attributes=array_attributes(target, new.plan, dims),
                                      **tensor_codecs(new.plan.codec))


def _rewrite_attributes(g: zarr.Group, s: Store, plan, state: dict) -> None:
    """The source's root attributes with the new plan, fingerprint and tensor-array list, and
    where the store came from (``TRANSCODE``); metadata consolidated."""
    want = plan_fingerprint(plan)
    attrs = dict(s.group.attrs)
    fmt = dict(attrs[FORMAT])
    fmt.update(plan=plan_to_json(plan), fingerprint=want["fingerprint"], **stored_attributes(plan))
    creation = attrs.get(CREATION) if isinstance(attrs.get(CREATION), dict) else {}
    g.attrs.update({**attrs, FORMAT: fmt, CREATION: {**creation, **want}, TRANSCODE: {**state, "finished": True}})
    with quiet_zarr():
        zarr.consolidate_metadata(g.store)
