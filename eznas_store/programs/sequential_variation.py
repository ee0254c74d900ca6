"""Variation of sequential programs: Mate, InsertOP, RemoveOP, MutateOP, MutateOPArg.

The operators of AutoML-Zero / EZNAS appendix 1.2 over
:class:`~eznas_store.programs.sequential.SequentialProgram` instruction lists, and
:func:`random_program` to start a population.

Example
-------
>>> import random
>>> from eznas_store.programs.sequential import SequentialProgram
>>> p = SequentialProgram(((14, 22, 7, 0), (17, 102, 22, 0)))
>>> child = mutate(p, random.Random(0), min_len=1, max_len=64)

Variation (all pure: they return new programs, with ``name=None`` and empty ``meta``,
since a parent's fitness does not carry over; ``rng`` is anything with ``random()``,
``randrange()`` and ``choice()``, e.g. Python's :mod:`random` module, which is how DEAP
runs stay reproducible from one seed; nothing here keeps random state of its own):

* New instructions (:func:`random_program`, InsertOP) draw the op uniformly from the 35
  ids, a write address uniformly from the addresses of the op's type, and each read
  address uniformly from the addresses *readable at that position*: the 22 statistics
  and the dynamic addresses some earlier instruction writes. So an inserted
  instruction never adds an unwritten read (AutoML-Zero draws from all addresses; its
  memory starts at zero, ours starts unwritten).
* :func:`random_program`: length uniform in ``[min_len, max_len]``; the last
  instruction is a scalar op writing ``s0``, so every random program is valid (unless
  the tree limits are exceeded, possible only for long programs).
* Mate (:func:`mate`): one-point crossover of the two instruction lists with one common
  cut ``k`` in ``1..min(len)-1`` (DEAP's ``cxOnePoint``): children ``a[:k] + b[k:]``
  and ``b[:k] + a[k:]``, so lengths are swapped, never outside the parents' limits. If
  a parent has a single instruction the parents come back unchanged (as copies).
  Children keep the ``to_scalar`` of the parent they start with.
* InsertOP (:func:`insert_op`): a new random instruction at a random position
  ``0..len``; at ``max_len`` the program comes back unchanged.
* RemoveOP (:func:`remove_op`): delete a random instruction; at ``min_len`` unchanged.
* MutateOP (:func:`mutate_op`): a random instruction gets a different op (uniform
  over the other 34); its reads are kept; its write address is re-drawn only when the
  write type changes.
* MutateOPArg (:func:`mutate_op_arg`): a random instruction gets one of the addresses
  its op uses (write, read 1, and read 2 only for binary ops) replaced by a different
  one: a write by another address of the same type, a read by another address
  readable at that position.
* :func:`mutate`: one of the four, uniformly among those that can change the program
  (InsertOP is left out at ``max_len``, RemoveOP at ``min_len``).

Removal, crossover and MutateOP/MutateOPArg on a write can leave a live read unwritten
(or ``s0`` unwritten); such a child is invalid, gets no fitness and selection removes it
(AutoML-Zero would compute on with zero-initialised memory instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eznas_store.programs.sequential import (
    MAX_INSTRUCTIONS,
    MAX_LEN,
    MIN_LEN,
    OP_IDS,
    OUTPUT,
    SCALAR_OPS,
    STATIC,
    Instruction,
    SequentialProgram,
    write_range,
)
from eznas_store.programs.ops import OPS_BY_ID

__all__ = ["Rng", "insert_op", "mate", "mutate", "mutate_op", "mutate_op_arg", "random_program", "remove_op"]

#: ops the last instruction of a random program draws from (it writes the output ``s0``)
_OUTPUT_OPS: tuple[int, ...] = tuple(sorted(SCALAR_OPS))


class Rng(Protocol):
    """What the variation operators need of a random source (``random`` fits)."""

    def random(self) -> float: ...
    def randrange(self, start: int, stop: int = ..., step: int = ...) -> int: ...
    def choice(self, seq: Sequence[Any]) -> Any: ...


def _check_limits(min_len: int, max_len: int) -> None:
    if not 1 <= min_len <= max_len <= MAX_INSTRUCTIONS:
        raise ValueError(f"need 1 <= min_len <= max_len <= {MAX_INSTRUCTIONS}, got {min_len}, {max_len}")


def _readable(instructions: Sequence[Instruction], pos: int) -> list[int]:
    """Addresses readable before instruction ``pos``: statistics + dynamic ones written so far."""
    written = sorted({ins[1] for ins in instructions[:pos]})
    return list(STATIC) + written


def _random_write(rng: Rng, op: int) -> int:
    r = write_range(op)
    return r.start + rng.randrange(len(r))


def _random_instruction(rng: Rng, readable: Sequence[int], *, output: bool = False) -> Instruction:
    op = rng.choice(_OUTPUT_OPS if output else OP_IDS)
    w = OUTPUT if output else _random_write(rng, op)
    return (op, w, rng.choice(readable), rng.choice(readable))


def _child(parent: SequentialProgram, instructions: Sequence[Instruction]) -> SequentialProgram:
    return SequentialProgram(tuple(instructions), to_scalar=parent.to_scalar,
                             terminal_set=parent.terminal_set)


def random_program(rng: Rng, *, min_len: int = MIN_LEN, max_len: int = MAX_LEN,
                   to_scalar: str = "mean") -> SequentialProgram:
    """A random program of ``min_len..max_len`` instructions whose last one writes ``s0``."""
    _check_limits(min_len, max_len)
    n = min_len + rng.randrange(max_len - min_len + 1)
    code: list[Instruction] = []
    for i in range(n):
        code.append(_random_instruction(rng, _readable(code, i), output=i == n - 1))
    return SequentialProgram(tuple(code), to_scalar=to_scalar)


def mate(a: SequentialProgram, b: SequentialProgram, rng: Rng, *,
         min_len: int = MIN_LEN, max_len: int = MAX_LEN) -> tuple[SequentialProgram, SequentialProgram]:
    """One-point crossover at a common cut: ``(a[:k] + b[k:], b[:k] + a[k:])``.

    Lengths are swapped, so children stay within the limits their parents met
    (``min_len``/``max_len`` are accepted for a uniform signature).
    """
    _check_limits(min_len, max_len)
    m = min(len(a), len(b))
    if m < 2:
        return _child(a, a.instructions), _child(b, b.instructions)
    k = 1 + rng.randrange(m - 1)
    return (_child(a, a.instructions[:k] + b.instructions[k:]),
            _child(b, b.instructions[:k] + a.instructions[k:]))


def insert_op(p: SequentialProgram, rng: Rng, *, min_len: int = MIN_LEN,
              max_len: int = MAX_LEN) -> SequentialProgram:
    """InsertOP: a random instruction at a random position (unchanged at ``max_len``)."""
    _check_limits(min_len, max_len)
    code = list(p.instructions)
    if len(code) >= max_len:
        return _child(p, code)
    pos = rng.randrange(len(code) + 1)
    code.insert(pos, _random_instruction(rng, _readable(code, pos)))
    return _child(p, code)


def remove_op(p: SequentialProgram, rng: Rng, *, min_len: int = MIN_LEN,
              max_len: int = MAX_LEN) -> SequentialProgram:
    """RemoveOP: delete a random instruction (unchanged at ``min_len``)."""
    _check_limits(min_len, max_len)
    code = list(p.instructions)
    if len(code) <= min_len:
        return _child(p, code)
    del code[rng.randrange(len(code))]
    return _child(p, code)


def mutate_op(p: SequentialProgram, rng: Rng, *, min_len: int = MIN_LEN,
              max_len: int = MAX_LEN) -> SequentialProgram:
    """MutateOP: a random instruction gets another op; write re-drawn if its type changes."""
    _check_limits(min_len, max_len)
    code = list(p.instructions)
    i = rng.randrange(len(code))
    op, w, r1, r2 = code[i]
    new = rng.choice([o for o in OP_IDS if o != op])
    if (new in SCALAR_OPS) != (op in SCALAR_OPS):
        w = _random_write(rng, new)
    code[i] = (new, w, r1, r2)
    return _child(p, code)


def _other(rng: Rng, options: Sequence[int], current: int) -> int:
    rest = [o for o in options if o != current]
    return rng.choice(rest) if rest else current


def mutate_op_arg(p: SequentialProgram, rng: Rng, *, min_len: int = MIN_LEN,
                  max_len: int = MAX_LEN) -> SequentialProgram:
    """MutateOPArg: one address its op uses (write, read 1, read 2 if binary) of a random
    instruction replaced by a different one of the same kind."""
    _check_limits(min_len, max_len)
    code = list(p.instructions)
    i = rng.randrange(len(code))
    ins = list(code[i])
    slot = rng.choice((1, 2, 3) if OPS_BY_ID[ins[0]].arity == 2 else (1, 2))
    if slot == 1:
        ins[1] = _other(rng, write_range(ins[0]), ins[1])
    else:
        ins[slot] = _other(rng, _readable(code, i), ins[slot])
    code[i] = (ins[0], ins[1], ins[2], ins[3])
    return _child(p, code)


def mutate(p: SequentialProgram, rng: Rng, *, min_len: int = MIN_LEN,
           max_len: int = MAX_LEN) -> SequentialProgram:
    """One of InsertOP, RemoveOP, MutateOP, MutateOPArg, uniformly among those that apply."""
    _check_limits(min_len, max_len)
    ops = ([insert_op] if len(p) < max_len else []) + ([remove_op] if len(p) > min_len else [])
    ops += [mutate_op, mutate_op_arg]
    return rng.choice(ops)(p, rng, min_len=min_len, max_len=max_len)
