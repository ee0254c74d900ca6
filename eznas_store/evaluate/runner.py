"""The slice runner: a population plan's nodes on the stacked blocks of one group slice.

An op runs once on the G stacked members of a slice: directly where ``stacked`` knows
that is exact, else through ``torch.func.vmap(op.fn)``. If that raises, the op is
retried member by member, so only the members that really fail are invalid. Shared
subtrees are computed once per slice, depth first, with reference counts: a tensor is
freed as soon as its last consumer has run, so memory holds a few live subtrees.
"""

from __future__ import annotations

import sys
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from eznas_store.evaluate.interpret import block_scalar, first_line, reduce
from eznas_store.evaluate.subtree_plan import PopulationPlan
from eznas_store.evaluate.shapes import ShapeCache, TensorSpec
from eznas_store.evaluate.stacked import call_stacked
from eznas_store.programs import Op

__all__ = ["SliceRunner", "SliceValue", "SubtreeCache"]

#: vmap warns once per op without a batching rule; the result is still right
_VMAP_FALLBACK_WARNING = "There is a performance drop because we have not yet implemented"


class SliceValue:
    """A node's output on the G members of a group slice.

    ``data`` is a stacked tensor (G, ...), a list of per-member tensors when their
    shapes differ, or ``None`` when every member failed. ``bad`` (G,) marks members for
    which the node raised (``None``: none did); their slots hold a copy of a good
    member's output so that later batched calls see only values some good member has.
    ``err`` is (member, message) of the first failure.
    """

    __slots__ = ("bad", "data", "err", "nbytes")

    def __init__(self, data: torch.Tensor | list[torch.Tensor | None] | None,
                 bad: np.ndarray | None, err: tuple[int, str] | None, owned: bool) -> None:
        self.data = data
        self.bad = bad
        self.err = err
        self.nbytes = 0
        if owned and isinstance(data, torch.Tensor):
            self.nbytes = data.numel() * data.element_size()
        elif owned and isinstance(data, list):
            self.nbytes = sum(t.numel() * t.element_size() for t in data if t is not None)


def _inherited_failures(args: list[SliceValue]) -> tuple[np.ndarray | None, tuple[int, str] | None]:
    """Members already invalid in some argument, and the first argument failure."""
    bad: np.ndarray | None = None
    err: tuple[int, str] | None = None
    for a in args:
        if a.bad is not None:
            bad = a.bad.copy() if bad is None else bad | a.bad
        if err is None and a.err is not None:
            err = a.err
    return bad, err


def _stack_results(results: list[torch.Tensor | None]) -> torch.Tensor | list:
    """One (G, ...) tensor if the members agree in shape and dtype (failed slots take a
    good member's value), else the list."""
    first = next(r for r in results if r is not None)
    if all(r is None or (r.shape == first.shape and r.dtype == first.dtype) for r in results):
        return torch.stack([first if r is None else r for r in results])
    return results


class SubtreeCache:
    """Per-block outputs of small subtrees, kept across populations (a run's generations).

    Keyed by (chunk key, group index, canonical subtree key); an entry holds the node's
    output for every member of the group (filled slice by slice) and is used for a slice
    only when all its members are there. Only outputs of at most ``max_member_bytes`` per
    block are kept (the results of reductions: norms, eigenvalue ratios, ...), and only
    clean ones (no member raised, contiguous): a hit stands for exactly the value the
    subtree would compute. GP children share most subtrees with their parents, so their
    linear algebra is not redone.

    Entries are small (a few hundred bytes of data), so what surrounds the data counts:
    ``nbytes`` is the data plus :data:`ENTRY_OVERHEAD` per entry plus each distinct key
    text once, and stays within ``max_bytes`` (least recently used dropped). Data live in
    ``bytearray``s and fill masks in Python ints: Python's small-object allocator keeps them
    apart from the big tensors of chunks, whose freed space they would otherwise split
    (a torch tensor or numpy array per entry cost ~1 KB, and pinned hundreds of MB of freed
    memory between chunks).
    """

    #: bytes around one entry's data: key tuple, dict and LRU slots, value list, array
    #: object, allocator headers (measured with psutil over 100k entries; see the tests)
    ENTRY_OVERHEAD = 600

    def __init__(self, max_bytes: int, *, max_member_bytes: int = 256) -> None:
        self.max_bytes, self.max_member_bytes = int(max_bytes), int(max_member_bytes)
        #: (group, key id) -> [data bytes, dtype, member shape, size, bitmask of filled members, cost]
        self._entries: OrderedDict[tuple, list] = OrderedDict()
        #: subtree key text -> [id, entries using it]; each text counted once
        self._names: dict[str, list[int]] = {}
        self._texts: dict[int, str] = {}
        self._ids = 0
        self.nbytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple, lo: int, hi: int) -> torch.Tensor | None:
        """The members ``lo:hi`` of an entry, if all are there."""
        group, name = key
        ref = self._names.get(name)
        entry = None if ref is None else self._entries.get((group, ref[0]))
        want = ((1 << (hi - lo)) - 1) << lo
        if entry is None or (entry[4] & want) != want:
            return None
        self._entries.move_to_end((group, ref[0]))
        self.hits += 1
        return torch.from_numpy(self._view(entry)[lo:hi])

    @staticmethod
    def _view(entry: list) -> np.ndarray:
        """An entry's data as a (size, *member shape) array over its bytes."""
        return np.frombuffer(entry[0], dtype=entry[1]).reshape(entry[3], *entry[2])

    def put(self, key: tuple, lo: int, hi: int, size: int, data: torch.Tensor) -> None:
        """Keep members ``lo:hi`` (of ``size``) of a node's clean, contiguous output."""
        if data.dim() == 0 or data.shape[0] != hi - lo or not data.is_contiguous() or data.dtype == torch.bfloat16:
            return
        per = data[:1].numel() * data.element_size()
        cost = size * per + size // 8 + self.ENTRY_OVERHEAD  # data, fill mask, objects
        if per > self.max_member_bytes or cost > self.max_bytes:
            return
        group, name = key
        ref = self._names.get(name)
        entry = None if ref is None else self._entries.get((group, ref[0]))
        values = data.numpy()
        if entry is None or entry[2] != values.shape[1:] or entry[1] != values.dtype or entry[3] != size:
            if entry is not None:
                self._drop((group, ref[0]))
            ref = self._name(name)
            entry = [bytearray(size * per), values.dtype, values.shape[1:], size, 0, cost]
            self._entries[(group, ref[0])] = entry
            ref[1] += 1
            self.nbytes += cost
            while self.nbytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))
        self._view(entry)[lo:hi] = values
        entry[4] |= ((1 << (hi - lo)) - 1) << lo

    def _name(self, name: str) -> list[int]:
        """The id record of a subtree key text (its bytes counted when first kept)."""
        ref = self._names.get(name)
        if ref is None:
            self._ids += 1
            ref = self._names[name] = [self._ids, 0]
            self._texts[self._ids] = name
            self.nbytes += sys.getsizeof(name) + 120  # the text, its dict slot and record
        return ref

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.nbytes -= entry[5]
        name = self._texts[key[1]]
        ref = self._names[name]
        ref[1] -= 1
        if ref[1] == 0:
            del self._names[name], self._texts[key[1]]
            self.nbytes -= sys.getsizeof(name) + 120

    def clear(self) -> None:
        self._entries.clear()
        self._names.clear()
        self._texts.clear()
        self.nbytes = 0


class SliceRunner:
    """Runs one population plan slice after slice; lives for one ``evaluate_population``.

    Holds what is worth keeping between slices (vmapped functions, signatures where
    vmap fails, shape-only values) and the evaluator counters of ``ChunkScores.stats``.
    """

    def __init__(self, plan: PopulationPlan, shape_cache: ShapeCache,
                 subtree_cache: SubtreeCache | None = None) -> None:
        self.plan = plan
        self.shape_cache = shape_cache
        self.subtree_cache = subtree_cache
        #: (group key, lo, hi, group size) of the slice being run, for the subtree cache
        self.at: tuple | None = None
        self.vmapped: dict[str, Any] = {}
        #: (op, arg specs) where vmap raised but every member succeeded alone
        self.no_vmap: set[tuple] = set()
        self.stats = {
            "unique_nodes": sum(1 for n in plan.nodes.values() if n.op is not None),
            "node_evaluations": 0, "direct_calls": 0, "vmap_calls": 0, "member_loops": 0,
            "shape_failures": 0, "shape_only": 0, "peak_live_values": 0, "peak_live_bytes": 0,
            "subtree_hits": 0,
        }
        self.live_values = 0
        self.live_bytes = 0
        self.shape_only_cache: dict[tuple, torch.Tensor] = {}

    # -- one op on a slice ----------------------------------------------------------
    def apply(self, op: Op, args: list[SliceValue], g: int) -> SliceValue:
        """``op`` on a slice: one batched call, or member by member if that raises."""
        self.stats["node_evaluations"] += 1
        bad, err = _inherited_failures(args)
        if bad is not None and bad.all():
            return SliceValue(None, bad, err, owned=False)
        sig = None
        if all(isinstance(a.data, torch.Tensor) for a in args):
            datas = [a.data for a in args]
            sig = (op.name, op.fn, tuple((tuple(d.shape[1:]), d.dtype) for d in datas))
            out = self._batched(op, datas, g, sig)
            if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] == g:
                return SliceValue(out, bad, err, owned=True)
        return self._member_by_member(op, args, g, bad, err, sig)

    def _batched(self, op: Op, datas: list[torch.Tensor], g: int, sig: tuple) -> Any:
        """One call on the stacked members (direct or vmap); None if that raises."""
        try:
            out = call_stacked(op, datas, g)
            if out is not None:
                self.stats["direct_calls"] += 1
            elif op.vmappable and sig not in self.no_vmap:
                fn = self.vmapped.get(op.name)
                if fn is None:
                    fn = self.vmapped[op.name] = torch.func.vmap(op.fn)
                self.stats["vmap_calls"] += 1
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_VMAP_FALLBACK_WARNING,
                                            category=UserWarning)
                    out = fn(*datas)
        except Exception:  # noqa: BLE001 - retried member by member
            out = None
        return out

    def _member_by_member(self, op: Op, args: list[SliceValue], g: int, bad: np.ndarray | None,
                          err: tuple[int, str] | None, sig: tuple | None) -> SliceValue:
        """Only the members that really fail are invalid."""
        self.stats["member_loops"] += 1
        bad = np.zeros(g, dtype=bool) if bad is None else bad
        results: list[torch.Tensor | None] = [None] * g
        n_ok = n_failed = 0
        for m in range(g):
            if bad[m]:
                continue
            try:
                r = op.fn(*[a.data[m] for a in args])
                if not isinstance(r, torch.Tensor):
                    r = torch.as_tensor(r)
            except Exception as exc:  # noqa: BLE001
                bad[m] = True
                n_failed += 1
                if err is None:
                    err = (m, f"{op.name} raised {first_line(exc)}")
                if n_ok == 0 and sig is not None and self.shape_cache.infer(op, sig[2])[1] is not None:
                    self.stats["shape_failures"] += 1  # fails for every member alike
                    return SliceValue(None, np.ones(g, dtype=bool), err, owned=False)
                continue
            results[m] = r
            n_ok += 1
        if n_ok == 0:
            return SliceValue(None, bad, err, owned=False)
        if sig is not None and n_failed == 0 and op.vmappable:
            self.no_vmap.add(sig)  # the batched call itself was the problem
        return SliceValue(_stack_results(results), bad if bad.any() else None, err, owned=True)

    # -- scalars of a root ----------------------------------------------------------
    @staticmethod
    def scalars(v: SliceValue, mode: str, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(G,) float64 scalars and (G,) bool "invalid" (raised or non-finite)."""
        if v.data is None:
            return np.full(g, np.nan), np.ones(g, dtype=bool)
        if isinstance(v.data, torch.Tensor):
            x = v.data.reshape(g, -1)
            if x.dtype not in (torch.float32, torch.float64):
                x = x.to(torch.float32)
            if x.shape[1] == 0:
                s = np.full(g, np.nan)
            else:  # as block_scalar: float32, redone in float64 where that overflows
                s = reduce(x, mode, 1).to(torch.float64).numpy()
                redo = np.flatnonzero(~np.isfinite(s))
                if redo.size and x.dtype != torch.float64:
                    rows = x[torch.from_numpy(redo)].to(torch.float64)
                    s[redo] = reduce(rows, mode, 1).numpy()
        else:
            s = np.array([np.nan if y is None else block_scalar(y, mode) for y in v.data])
        bad = ~np.isfinite(s)
        if v.bad is not None:
            bad |= v.bad
        return s, bad

    # -- a whole slice ----------------------------------------------------------------
    def from_shape(self, op: Op, spec: TensorSpec, g: int) -> SliceValue:
        """A shape-only op's value: computed once on zeros of the argument's shape."""
        self.stats["shape_only"] += 1
        key = (op.name, spec)
        one = self.shape_only_cache.get(key)
        if one is None:
            one = self.shape_only_cache[key] = op.fn(torch.zeros(spec[0], dtype=spec[1]))
        return SliceValue(one.expand(g, *one.shape), None, None, owned=False)

    def _ref_counts(self, roots: list[str], fixed: Mapping[str, TensorSpec],
                    hits: Mapping[str, SliceValue]) -> dict[str, int]:
        """How many consumers (parents, or being a root) each needed node has (nothing
        below a shape-only node or a subtree-cache hit is needed)."""
        remaining: dict[str, int] = {}
        stack = list(roots)
        while stack:
            k = stack.pop()
            if k in remaining:
                remaining[k] += 1
                continue
            remaining[k] = 1
            if k not in fixed and k not in hits:
                stack.extend(self.plan.nodes[k].children)
        return remaining

    def _cache_hits(self, roots: list[str], fixed: Mapping[str, TensorSpec]) -> dict[str, SliceValue]:
        """The topmost needed nodes whose output on this slice the subtree cache holds."""
        cache, at = self.subtree_cache, self.at
        if cache is None or at is None:
            return {}
        group, lo, hi, _ = at
        hits: dict[str, SliceValue] = {}
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            node = self.plan.nodes[k]
            if node.op is None or k in fixed:
                continue
            data = cache.get((group, k), lo, hi)
            if data is not None:
                hits[k] = SliceValue(data, None, None, owned=False)
            else:
                stack.extend(node.children)
        self.stats["subtree_hits"] += len(hits)
        return hits

    def _keep(self, k: str, v: SliceValue) -> None:
        """Offer a clean computed value to the subtree cache."""
        if (self.subtree_cache is not None and self.at is not None and v.bad is None
                and v.err is None and isinstance(v.data, torch.Tensor)):
            group, lo, hi, size = self.at
            self.subtree_cache.put((group, k), lo, hi, size, v.data)

    def _hold(self, v: SliceValue) -> None:
        if v.nbytes:
            self.live_values += 1
            self.live_bytes += v.nbytes
            st = self.stats
            st["peak_live_values"] = max(st["peak_live_values"], self.live_values)
            st["peak_live_bytes"] = max(st["peak_live_bytes"], self.live_bytes)

    def _release(self, k: str, remaining: dict[str, int], values: dict[str, SliceValue]) -> None:
        remaining[k] -= 1
        if remaining[k] == 0:
            v = values.pop(k)
            if v.nbytes:
                self.live_values -= 1
                self.live_bytes -= v.nbytes

    def _compute(self, root: str, terms: Mapping[str, torch.Tensor], g: int,
                 fixed: Mapping[str, TensorSpec], remaining: dict[str, int],
                 values: dict[str, SliceValue], hits: Mapping[str, SliceValue]) -> None:
        """Put ``root``'s value in ``values``, depth first, releasing consumed children."""
        nodes = self.plan.nodes
        stack = [root]
        while stack:
            k = stack[-1]
            if k in values:
                stack.pop()
                continue
            if k in hits:
                values[k] = hits[k]
                stack.pop()
                continue
            node = nodes[k]
            if node.op is None:
                values[k] = SliceValue(terms[node.name], None, None, owned=False)
                stack.pop()
                continue
            if k in fixed:
                values[k] = self.from_shape(node.op, fixed[k], g)
                stack.pop()
                continue
            todo = [c for c in node.children if c not in values]
            if todo:
                stack.extend(reversed(todo))
                continue
            stack.pop()
            values[k] = v = self.apply(node.op, [values[c] for c in node.children], g)
            self._hold(v)
            self._keep(k, v)
            for c in node.children:
                self._release(c, remaining, values)

    def run_slice(self, terms: Mapping[str, torch.Tensor], g: int, roots: list[str],
                  fixed: Mapping[str, TensorSpec]) -> Iterator[tuple[str, SliceValue]]:
        """Yield (root key, value) for each of ``roots``, depth first, freeing as it goes.

        ``fixed`` maps the shape-only nodes to their argument's spec: their subtrees are
        not evaluated. With a subtree cache and ``self.at`` set, cached subtrees are not
        evaluated either, and clean small outputs are kept for later populations.
        """
        hits = self._cache_hits(roots, fixed)
        remaining = self._ref_counts(roots, fixed, hits)
        values: dict[str, SliceValue] = {}
        for root in roots:
            self._compute(root, terms, g, fixed, remaining, values, hits)
            yield root, values[root]
            self._release(root, remaining, values)
        assert not values, "reference counts out of balance"
