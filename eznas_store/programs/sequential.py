"""Sequential programs (AutoML-Zero style, EZNAS appendix 1.2): instructions over addresses.

A sequential program is a list of instructions ``[op id, write address, read address 1,
read address 2]`` executed in order over one flat memory. It is the second
representation behind the same fitness as the expression trees of
:mod:`eznas_store.programs.tree`: it is never run by an interpreter of its own. Instead
:meth:`SequentialProgram.to_tree` traces the output address back through the
instructions into a :class:`~eznas_store.programs.tree.Node` (a DAG: a value read twice is
one shared subtree object) and the evaluator scores that tree, so both representations
mean exactly the same thing. Tracing also finds the *live* instructions (those the
output depends on); the others are dead code (:meth:`SequentialProgram.live`,
:func:`code_stats`).

Example
-------
>>> p = SequentialProgram(((14, 22, 7, 0),    # t0 = sign(inpactgrad_D)
...                        (34, 23, 22, 0),   # t1 = logdet_lastdims(t0)
...                        (28, 24, 23, 0),   # t2 = sigmoid(t1)
...                        (17, 102, 24, 0))) # s0 = frobenius(t2)
>>> p.formula()
'frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))'

Choices (the appendix text is not at hand; each choice is written down here)
------------------------------------------------------------------------------
Memory. One flat address space of :data:`N_ADDRESSES` = 122 addresses:

* ``0..21`` static, read-only: the 22 statistics in :data:`eznas_store.terminals.TERMINALS`
  order (0 = ``wt``, 7 = ``inpactgrad_D``, ...). Reading one is the tree terminal of
  that name.
* ``22..101`` the 80 tensor addresses ``t0..t79``.
* ``102..121`` the 20 scalar addresses ``s0..s19``.

Operations. Op ids are those of :data:`~eznas_store.programs.ops.OPS_BY_ID`: the
paper's table 0..33 plus 34, ``logdet_lastdims``, the released code's logdet that
EZNAS-A uses (so EZNAS-A is expressible; the tree GP offers the same 35 ops).

Write typing. The ops that always return a 0-d tensor (:data:`SCALAR_OPS`: frobenius,
logdet, eig_ratio, normalized_sum, l1_norm, hamming, kl_div, cosine) write to scalar
addresses; every other op writes to a tensor address (even when its result happens to
be 0-d, e.g. ``sign`` of a scalar). A program that breaks this rule cannot be built.
Any address can be read by any op. Variation keeps the typing: MutateOP re-draws the
write address when the new op's type differs, MutateOPArg draws a write address of the
same type.

Arity. Every instruction has two read addresses; a unary op ignores read address 2
but keeps it (AutoML-Zero style), so a later MutateOP to a binary op revives it.

Output. The program's output is scalar address 102 (``s0``) after the last
instruction, i.e. the value written by the *last* instruction writing ``s0``; the block
score is ``to_scalar`` ("mean" or "l2") of it, as for trees. Because ``s0`` always holds
a 0-d tensor, "mean" is its value and "l2" its absolute value.

Validity. Memory starts *unwritten* (not zero: a zero has no tree form, and the
statistics are the only inputs). Tracing the output back: a live read of a dynamic
address that no earlier instruction wrote, or ``s0`` never written, makes the program
invalid (:meth:`~SequentialProgram.to_tree` raises :class:`ProgramError` naming the
instruction and address). Dead instructions may read anything: they are not evaluated.
The tree must also respect the tree limits of :mod:`eznas_store.programs.tree`: depth at
most ``MAX_DEPTH`` and at most ``MAX_NODES`` nodes when expanded (shared subtrees
counted each time they are used, which is what the evaluator and JSON see). Sizes are
counted as integers *before* any node is built, so a 64-instruction
``sum(x, x)`` doubling chain (2**64 nodes expanded) is a clean ProgramError, not a hang.
Structural rules (op ids, address ranges, write typing, 1..:data:`MAX_INSTRUCTIONS`
instructions) are checked on construction and when loading JSON.

Identity. Equality, hashing and :meth:`~SequentialProgram.key` are those of the
instruction list (the genotype) with ``to_scalar`` and ``terminal_set``; ``name`` and
``meta`` are labels, as for :class:`~eznas_store.programs.tree.Program`. Two programs that
differ only in dead code have different keys but equal ``to_program()`` keys: cache
fitness by the latter.

Variation (Mate, InsertOP, RemoveOP, MutateOP, MutateOPArg) lives in
:mod:`eznas_store.programs.sequential_variation`; :func:`code_stats` here measures what
it does to a population (length, dead code, bloat).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eznas_store.errors import ProgramError
from eznas_store.terminals import TERMINALS
from eznas_store.programs.identifiers import check_labels, short
from eznas_store.programs.ops import OPS_BY_ID, PAPER_OPS
from eznas_store.programs.tree import MAX_DEPTH, MAX_NODES, TO_SCALAR, Apply, Node, Program, Terminal

__all__ = [
    "MAX_INSTRUCTIONS",
    "MAX_LEN",
    "MIN_LEN",
    "N_ADDRESSES",
    "N_SCALAR",
    "N_STATIC",
    "N_TENSOR",
    "OP_IDS",
    "OUTPUT",
    "SCALAR",
    "SCALAR_OPS",
    "STATIC",
    "TENSOR",
    "Instruction",
    "SequentialProgram",
    "address_name",
    "check_instructions",
    "code_stats",
    "from_tree",
    "write_range",
]

N_STATIC = len(TERMINALS)  # 22
N_TENSOR = 80
N_SCALAR = 20
#: static (statistics, read-only), tensor, scalar addresses, in this order
STATIC = range(N_STATIC)
TENSOR = range(N_STATIC, N_STATIC + N_TENSOR)
SCALAR = range(N_STATIC + N_TENSOR, N_STATIC + N_TENSOR + N_SCALAR)
N_ADDRESSES = N_STATIC + N_TENSOR + N_SCALAR  # 122
#: the output address ``s0``
OUTPUT = SCALAR.start  # 102

#: op ids whose result is always a 0-d tensor: they write scalar addresses
SCALAR_OPS: frozenset[int] = frozenset({17, 19, 21, 22, 23, 24, 25, 26})
#: every op id a sequential program may use: the paper's table (the opt-in extension of
#: trees, ``--op-set extended``, is not offered to instruction lists)
OP_IDS: tuple[int, ...] = tuple(sorted(op.id for op in PAPER_OPS.values()))
assert SCALAR_OPS <= set(OP_IDS)
assert OPS_BY_ID[17].name == "frobenius" and OPS_BY_ID[19].name == "logdet"
assert OPS_BY_ID[26].name == "cosine" and OPS_BY_ID[34].name == "logdet_lastdims"

#: default length limits of evolution (``min_len``/``max_len`` of the variation ops)
MIN_LEN = 1
MAX_LEN = 64
#: hard limit on instructions (the schema's ``maxItems``)
MAX_INSTRUCTIONS = 10_000

Instruction = tuple[int, int, int, int]


def address_name(address: int) -> str:
    """``"inpactgrad_D"`` for a static address, ``"t3"``/``"s0"`` for dynamic ones."""
    if address in STATIC:
        return TERMINALS[address]
    if address in TENSOR:
        return f"t{address - TENSOR.start}"
    if address in SCALAR:
        return f"s{address - SCALAR.start}"
    raise ValueError(f"address {address} is outside 0..{N_ADDRESSES - 1}")


def write_range(op: int) -> range:
    """The addresses op ``op`` may write: scalar ones for :data:`SCALAR_OPS`, else tensor ones."""
    return SCALAR if op in SCALAR_OPS else TENSOR


def _write_kind(op: int) -> str:
    r = write_range(op)
    return f"a {'scalar' if r is SCALAR else 'tensor'} address {r.start}..{r.stop - 1}"


# --------------------------------------------------------------------------- validation


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProgramError(f"{path}: expected an integer, got {short(value)}")
    if isinstance(value, float):  # JSON Schema counts 3.0 as an integer
        if not value.is_integer():
            raise ProgramError(f"{path}: expected an integer, got {short(value)}")
        value = int(value)
    return int(value)


def check_instructions(instructions: Any, *, path: str = "$.instructions") -> tuple[Instruction, ...]:
    """The instructions as a tuple of 4-int tuples, or :class:`ProgramError` naming where not.

    Checks: a list of 1..:data:`MAX_INSTRUCTIONS` instructions, each ``[op id, write,
    read 1, read 2]`` of integers; op ids known; reads in ``0..121``; the write address
    of the op's type (scalar ops: ``102..121``, others ``22..101``).
    """
    if isinstance(instructions, (str, bytes, Mapping)) or not isinstance(instructions, Sequence):
        raise ProgramError(f"{path}: expected a list of instructions, got {type(instructions).__name__}")
    if len(instructions) < 1:
        raise ProgramError(f"{path}: a program needs at least 1 instruction")
    if len(instructions) > MAX_INSTRUCTIONS:
        raise ProgramError(
            f"{path}: {len(instructions)} instructions, more than the limit of {MAX_INSTRUCTIONS}"
        )
    out: list[Instruction] = []
    for i, ins in enumerate(instructions):
        p = f"{path}[{i}]"
        if isinstance(ins, (str, bytes, Mapping)) or not isinstance(ins, Sequence) or len(ins) != 4:
            raise ProgramError(
                f"{p}: an instruction is [op id, write address, read address 1, read address 2], "
                f"got {short(ins)}"
            )
        op, w, r1, r2 = (_int(v, f"{p}[{k}]") for k, v in enumerate(ins))
        if op not in OP_IDS:
            raise ProgramError(f"{p}[0]: unknown operation id {op} (ids are {OP_IDS[0]}..{OP_IDS[-1]})")
        if w not in write_range(op):
            name = OPS_BY_ID[op].name
            kind = "returns a 0-d tensor" if op in SCALAR_OPS else "returns a tensor"
            raise ProgramError(
                f"{p}[1]: {name} (op {op}) {kind}: its write address must be {_write_kind(op)}, "
                f"got {w}"
            )
        for k, r in ((2, r1), (3, r2)):
            if not 0 <= r < N_ADDRESSES:
                raise ProgramError(f"{p}[{k}]: read address {r} is outside 0..{N_ADDRESSES - 1}")
        out.append((op, w, r1, r2))
    return tuple(out)


# --------------------------------------------------------------------------- tracing


@dataclass(frozen=True)
class _Trace:
    live: tuple[int, ...]
    tree: Node | None
    error: str | None


def _analyse(instructions: tuple[Instruction, ...]) -> _Trace:
    """Dependencies, live set, validity and the shared tree of a checked instruction list."""
    # a dependency is an instruction index (>= 0), ~address for a static read (< 0),
    # or None for a read of an unwritten dynamic address
    last: dict[int, int] = {}
    deps: list[tuple[int | None, ...]] = []
    for op, w, r1, r2 in instructions:
        reads = (r1, r2) if OPS_BY_ID[op].arity == 2 else (r1,)
        deps.append(tuple(~r if r < N_STATIC else last.get(r) for r in reads))
        last[w] = len(deps) - 1
    out = last.get(OUTPUT)
    if out is None:
        return _Trace((), None, f"the output address s0 ({OUTPUT}) is never written")
    live: set[int] = {out}
    stack = [out]
    while stack:
        for d in deps[stack.pop()]:
            if d is not None and d >= 0 and d not in live:
                live.add(d)
                stack.append(d)
    order = tuple(sorted(live))
    for i in order:
        for slot, d in enumerate(deps[i]):
            if d is None:
                addr = instructions[i][2 + slot]
                return _Trace(order, None,
                              f"instruction {i} reads {address_name(addr)} (address {addr}), "
                              "which no earlier instruction writes")
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    for i in order:
        size[i] = 1 + sum(size[d] if d >= 0 else 1 for d in deps[i])  # type: ignore[operator]
        depth[i] = 1 + max(depth[d] if d >= 0 else 0 for d in deps[i])  # type: ignore[operator]
    if depth[out] > MAX_DEPTH:
        return _Trace(order, None, f"its tree has depth {depth[out]}, more than the limit of {MAX_DEPTH}")
    if size[out] > MAX_NODES:
        return _Trace(order, None, f"its tree has {size[out]} nodes, more than the limit of {MAX_NODES}")
    leaves: dict[int, Node] = {}
    nodes: dict[int, Node] = {}
    for i in order:
        args = []
        for d in deps[i]:
            if d >= 0:  # type: ignore[operator]
                args.append(nodes[d])  # type: ignore[index]
            else:
                a = ~d  # type: ignore[operator]
                if a not in leaves:
                    leaves[a] = Terminal(TERMINALS[a])
                args.append(leaves[a])
        nodes[i] = Apply(OPS_BY_ID[instructions[i][0]].name, tuple(args))
    return _Trace(order, nodes[out], None)


# --------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class SequentialProgram:
    """A list of ``(op id, write, read 1, read 2)`` instructions and its block reduction.

    ``to_scalar``, ``terminal_set`` (only "statistics": the static addresses are the 22
    statistics), ``name`` and ``meta`` mean what they mean for
    :class:`~eznas_store.programs.tree.Program`; ``name`` and ``meta`` are labels, left out
    of equality and hashing. Construction checks the structure
    (:func:`check_instructions`); whether the output can be computed is a property of
    the program, asked with :meth:`is_valid` / :meth:`to_tree`.
    """

    instructions: tuple[Instruction, ...]
    to_scalar: str = "mean"
    terminal_set: str = "statistics"
    name: str | None = field(default=None, compare=False)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "instructions", check_instructions(self.instructions, path="instructions"))
        if self.to_scalar not in TO_SCALAR:
            raise ProgramError(
                f"unknown to_scalar {short(self.to_scalar)}: use one of {', '.join(TO_SCALAR)}"
            )
        if self.terminal_set != "statistics":
            raise ProgramError(
                f"terminal set {short(self.terminal_set)}: the sequential representation "
                "addresses the 22 statistics, use terminal_set 'statistics'"
            )
        check_labels(self)

    def __reduce__(self) -> tuple[Any, ...]:  # leave the cached trace out of pickles
        return (_rebuild, (self.instructions, self.to_scalar, self.terminal_set, self.name, self.meta))

    def __len__(self) -> int:
        return len(self.instructions)

    @functools.cached_property
    def _trace(self) -> _Trace:
        return _analyse(self.instructions)

    def live(self) -> list[int]:
        """Sorted indices of the instructions the output depends on (the rest is dead code).

        For an invalid program, the instructions reached while tracing the output back
        (none if ``s0`` is never written).
        """
        return list(self._trace.live)

    def is_valid(self) -> bool:
        """Whether :meth:`to_tree` succeeds."""
        return self._trace.error is None

    def invalid_reason(self) -> str | None:
        """Why the program has no tree (one line), or None when it has one."""
        return self._trace.error

    def to_tree(self) -> Node:
        """The output as an expression tree over the statistics (subtrees shared, a DAG)."""
        t = self._trace
        if t.tree is None:
            raise ProgramError(f"invalid sequential program: {t.error}")
        return t.tree

    def to_program(self) -> Program:
        """The equivalent tree :class:`~eznas_store.programs.tree.Program` (same labels)."""
        return Program(tree=self.to_tree(), to_scalar=self.to_scalar,
                       terminal_set=self.terminal_set, name=self.name, meta=self.meta)

    def key(self) -> str:
        """Canonical identity text of the instruction list, e.g. ``sequential/statistics/mean:17,102,0,0``."""
        body = ";".join(",".join(map(str, ins)) for ins in self.instructions)
        return f"sequential/{self.terminal_set}/{self.to_scalar}:{body}"

    def formula(self) -> str:
        """The readable formula of the output (raises :class:`ProgramError` when invalid)."""
        return self.to_tree().formula()

    def listing(self) -> str:
        """One line per instruction, e.g. ``  3  s0 = frobenius(t2)``; dead ones marked."""
        live = set(self._trace.live)
        lines = []
        for i, (op, w, r1, r2) in enumerate(self.instructions):
            o = OPS_BY_ID[op]
            reads = [address_name(r1)] + ([address_name(r2)] if o.arity == 2 else [])
            mark = "" if i in live else "   # dead"
            lines.append(f"{i:3d}  {address_name(w)} = {o.name}({', '.join(reads)}){mark}")
        return "\n".join(lines)

    def with_meta(self, **values: Any) -> SequentialProgram:
        """A copy with ``values`` merged into ``meta``."""
        return replace(self, meta={**self.meta, **values})


def _rebuild(instructions: Any, to_scalar: str, terminal_set: str, name: str | None,
             meta: dict[str, Any]) -> SequentialProgram:
    return SequentialProgram(instructions, to_scalar, terminal_set, name, meta)


def from_tree(tree: Node, *, to_scalar: str = "mean", name: str | None = None) -> SequentialProgram:
    """A sequential program computing ``tree`` (e.g. to seed a population with EZNAS-A).

    Each distinct subtree gets one instruction (post-order) and its own address, the
    root writing ``s0``; raises :class:`ProgramError` if the root is not an op of
    :data:`SCALAR_OPS`, a name is not in the table, or the addresses run out.
    """
    if not isinstance(tree, Apply) or tree.op not in _OP_ID_BY_NAME or _OP_ID_BY_NAME[tree.op] not in SCALAR_OPS:
        raise ProgramError(
            "a sequential program outputs a scalar (s0): the tree's root must be one of "
            + ", ".join(OPS_BY_ID[i].name for i in sorted(SCALAR_OPS))
        )
    where: dict[str, int] = {}
    code: list[Instruction] = []
    free = {"tensor": iter(TENSOR), "scalar": iter(range(OUTPUT + 1, SCALAR.stop))}
    stack: list[tuple[Node, bool]] = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        k = node.key()
        if k in where:
            continue
        if isinstance(node, Terminal):
            if node.name not in TERMINALS:
                raise ProgramError(f"unknown terminal {node.name!r}: not one of the 22 statistics")
            where[k] = TERMINALS.index(node.name)
            continue
        assert isinstance(node, Apply)
        if not ready:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args))
            continue
        op = _OP_ID_BY_NAME.get(node.op)
        if op is None or OPS_BY_ID[op].arity != len(node.args):
            raise ProgramError(f"operation {node.op!r} is not in the table with {len(node.args)} argument(s)")
        if node is tree or k == tree.key():
            w = OUTPUT
        else:
            try:
                w = next(free["scalar" if op in SCALAR_OPS else "tensor"])
            except StopIteration:
                raise ProgramError("the tree needs more addresses than a sequential program has") from None
        reads = [where[a.key()] for a in node.args]
        code.append((op, w, reads[0], reads[-1] if len(reads) == 2 else 0))
        where[k] = w
    return SequentialProgram(tuple(code), to_scalar=to_scalar, name=name)


_OP_ID_BY_NAME: dict[str, int] = {OPS_BY_ID[i].name: i for i in OP_IDS}


# --------------------------------------------------------------------------- statistics


def code_stats(programs: Iterable[SequentialProgram], *, max_len: int = MAX_LEN) -> dict[str, float]:
    """Code statistics of a population, as the appendix reports them.

    ``n``; ``mean_length``; ``mean_live_length`` (instructions reaching the output);
    ``dead_code_fraction`` (mean over programs of dead / length); ``with_dead_code``
    (fraction of programs with at least one dead instruction); ``at_max_length``
    (fraction with ``len >= max_len``: bloat); ``invalid`` (fraction without a tree).
    Means are NaN for an empty population.
    """
    progs = list(programs)
    n = len(progs)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean_length": nan, "mean_live_length": nan, "dead_code_fraction": nan,
                "with_dead_code": nan, "at_max_length": nan, "invalid": nan}
    lengths = [len(p) for p in progs]
    lives = [len(p.live()) for p in progs]
    return {
        "n": n,
        "mean_length": sum(lengths) / n,
        "mean_live_length": sum(lives) / n,
        "dead_code_fraction": sum((ln - lv) / ln for ln, lv in zip(lengths, lives)) / n,
        "with_dead_code": sum(lv < ln for ln, lv in zip(lengths, lives)) / n,
        "at_max_length": sum(ln >= max_len for ln in lengths) / n,
        "invalid": sum(not p.is_valid() for p in progs) / n,
    }
