"""Per-block output shapes of ops, found without touching data.

Table ops have pure-Python rules (``shape_rule``, microseconds); other ops run on meta
tensors. A failure that depends on shapes alone is confirmed by one real call on random
inputs. ``ShapeCache`` remembers the answers: its owner decides how long they live (one
population, or a whole search where the same shape combinations recur generation
after generation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from eznas_store.evaluate.interpret import first_line
from eznas_store.evaluate.table_ops import BINARY_BROADCAST, UNARY_SAME, UNARY_SCALAR, is_table_op
from eznas_store.programs import Op

__all__ = ["ShapeAnswer", "ShapeCache", "TensorSpec", "infer_shape", "shape_rule"]

#: a tensor's per-block shape and dtype
TensorSpec = tuple[tuple[int, ...], torch.dtype]

#: an op's output spec (None if unknown) and its shape failure message (None if none)
ShapeAnswer = tuple[TensorSpec | None, str | None]


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def _rows_shape(s: tuple[int, ...]) -> tuple[int, int]:
    return (1, 1) if not s else (s[0], math.prod(s[1:]))


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    a = a or (1,)  # the table's matmul promotes a 0-d operand to a 1-element vector
    b = b or (1,)
    if len(a) == 1 and len(b) == 1:
        return () if a == b else None
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        return None
    batch = _broadcast(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return out


def _unary_rule(name: str, s: tuple[int, ...], dtype: torch.dtype) -> TensorSpec | str | None:
    if name in UNARY_SAME:
        return (s, dtype)
    if name in UNARY_SCALAR:
        return ((), dtype)
    if name == "numel":
        return ((1,), dtype)
    if name in ("det", "logdet_lastdims"):
        if len(s) < 2 or s[-1] != s[-2]:
            return f"needs square matrices in the last two dims, got shape {s}"
        return (s[:-2], dtype)
    if name in ("channel_cov", "channel_corr"):
        if len(s) not in (2, 3, 4):
            return f"channel statistics need a 2-, 3- or 4-D feature map, got shape {s}"
        c = s[0] if len(s) == 3 else s[1]
        return ((c, c), dtype)
    if name in ("eig_min", "eig_max", "eig_entropy"):
        if len(s) != 2 or s[0] != s[1]:
            return f"needs a square matrix, got shape {s}"
        return ((), dtype)
    if name == "symeig_ratio":
        if len(s) < 2:
            return f"needs at least 2 dims, got shape {s}"
        b = _broadcast(s, s[:-2] + (s[-1], s[-2]))
        if b is None:
            return f"A + A^T is undefined for shape {s}"
        return (b[:-2], dtype)
    return None


def _binary_rule(name: str, s: tuple[int, ...], t: tuple[int, ...],
                 dtype: torch.dtype) -> TensorSpec | str | None:
    if name in BINARY_BROADCAST:
        b = _broadcast(s, t)
        return f"shapes {s} and {t} do not broadcast" if b is None else (b, dtype)
    if name == "matmul":
        m = _matmul_shape(s, t)
        return f"shapes {s} and {t} cannot be multiplied" if m is None else (m, dtype)
    if name == "hamming":
        na, nb = math.prod(s), math.prod(t)
        ok = na == nb or na == 1 or nb == 1
        return ((), dtype) if ok else f"{na} and {nb} elements do not broadcast"
    if name in ("kl_div", "cosine"):
        ra, rb = _rows_shape(s), _rows_shape(t)
        ok = _broadcast(ra, rb) is not None
        return ((), dtype) if ok else f"rows {ra} and {rb} do not broadcast"
    return None


def shape_rule(name: str, specs: tuple[TensorSpec, ...]) -> TensorSpec | str | None:
    """Shape rule of a table op: the output spec, a failure message, or None (unknown).

    Pure Python, so the shape pass costs microseconds; ``tests/test_evaluate.py`` checks
    every rule against the real op on many shapes. Unusual inputs (mixed or non-float
    dtypes, empty dimensions) are left to the generic path.
    """
    dtypes = {dt for _, dt in specs}
    shapes = [sh for sh, _ in specs]
    if len(dtypes) != 1 or any(0 in sh for sh in shapes):
        return None
    (dtype,) = dtypes
    if not dtype.is_floating_point:
        return None
    s = shapes[0]
    unary = _unary_rule(name, s, dtype)
    if unary is not None:
        return unary
    t = shapes[1] if len(shapes) > 1 else ()
    return _binary_rule(name, s, t, dtype)


def _probe(spec: TensorSpec, gen: torch.Generator) -> torch.Tensor:
    shape, dtype = spec
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


def _meta_call(op: Op, specs: tuple[TensorSpec, ...]) -> tuple[ShapeAnswer, bool]:
    """The op on meta tensors: (answer, whether a failure needs confirming)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = op.fn(*[torch.empty(sh, dtype=dt, device="meta") for sh, dt in specs])
        if isinstance(out, torch.Tensor) and out.device.type == "meta":
            return ((tuple(out.shape), out.dtype), None), False
    except NotImplementedError:
        pass
    except Exception as exc:  # noqa: BLE001
        return (None, None), "meta" not in str(exc).lower()
    return (None, None), False


def _real_call(op: Op, specs: tuple[TensorSpec, ...], result: ShapeAnswer) -> ShapeAnswer:
    """Confirm a shape failure by calling the op on random inputs of these shapes."""
    gen = torch.Generator().manual_seed(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = op.fn(*[_probe(sp, gen) for sp in specs])
        if isinstance(out, torch.Tensor):
            return ((tuple(out.shape), out.dtype), None)
    except Exception as exc:  # noqa: BLE001
        return (None, first_line(exc))
    return result


def infer_shape(op: Op, specs: tuple[TensorSpec, ...]) -> ShapeAnswer:
    """Output spec of ``op`` on blocks of these shapes, or the message of a failure that
    depends on the shapes alone; ``(None, None)`` when unknown (then the evaluator finds
    out member by member).

    Table ops use ``shape_rule``; other ops run on meta tensors (no data). A failure (of
    the rule, or of the meta call for a reason other than missing data) is confirmed by
    calling the op on random inputs of these shapes, and the real message is kept; if
    that call succeeds, its output spec is used. An op that raises depending on values
    is never declared a shape failure: its meta call fails naming meta tensors (or is
    not implemented), and the table's only such op (``symeig_ratio`` on NaN) has a rule.
    """
    result: ShapeAnswer = (None, None)
    rule = shape_rule(op.name, specs) if is_table_op(op) else None
    confirm = isinstance(rule, str)
    if isinstance(rule, tuple):
        result = (rule, None)
    elif rule is None:
        result, confirm = _meta_call(op, specs)
    if confirm:
        result = _real_call(op, specs, result)
    return result


class ShapeCache:
    """Memo of ``infer_shape`` answers, keyed by (op name, op function, arg specs).

    Owned by its caller: pass one cache to many ``evaluate_population`` calls to reuse
    the answers across generations. Cleared when it reaches ``max_entries``.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._answers: dict[tuple, ShapeAnswer] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def remember(self, key: tuple, compute: Callable[[], TensorSpec]) -> TensorSpec:
        """``compute()`` once per ``key``: other shape answers its owner wants kept as long
        (the specs of derived terminals, whose meta calls cost milliseconds per chunk)."""
        hit = self._answers.get(key)
        if hit is None:
            hit = compute()
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[key] = hit
        return hit

    def infer(self, op: Op, specs: tuple[TensorSpec, ...]) -> ShapeAnswer:
        """``infer_shape(op, specs)``, computed once per distinct key."""
        key = (op.name, op.fn, specs)
        hit = self._answers.get(key)
        if hit is not None:
            return hit
        result = infer_shape(op, specs)
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[key] = result
        return result
