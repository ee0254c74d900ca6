"""Trees from text: readable formulas and DEAP-style prefix lists, validated as they are read.

* :func:`parse_formula` reads ``sum(act_D, sign(wt))`` with a small recursive-descent
  parser (no ``eval``, names only: a formula can never run code);
* :func:`from_prefix` rebuilds a tree from ``["sum", "act_D", "sign", "wt"]``, the
  order of DEAP's ``PrimitiveTree`` and of :meth:`~eznas_store.programs.tree.Node.to_prefix`.

Both check names, arity and the tree limits while reading, and say where a problem is
(a character position in a formula, an index in a prefix list).

Example
-------
>>> parse_formula("frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))").depth()
4
>>> from_prefix(["sum", "act_D", "wt"]).formula()
'sum(act_D, wt)'
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

from eznas_store.errors import ProgramError
from eznas_store.terminals import TERMINALS
from eznas_store.programs.identifiers import NAME_RE, short
from eznas_store.programs.ops import OPS, Op
from eznas_store.programs.tree import (
    MAX_DEPTH,
    MAX_NODES,
    Apply,
    Node,
    Terminal,
    name_hint,
    op_problem,
    terminal_problem,
)

__all__ = ["MAX_FORMULA_CHARS", "from_prefix", "parse_formula"]

#: longest formula text accepted
MAX_FORMULA_CHARS = 1_000_000

_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")

Token = tuple[str, str, int]


# --------------------------------------------------------------------------- formula text


def _tokenize(text: str) -> list[Token]:
    """``(kind, value, position)`` with kind "name", "(", ")", "," or "end"."""
    tokens: list[Token] = []
    pos = 0
    while True:
        m = _TOKEN_RE.match(text, pos)
        if m is None:  # only whitespace left
            break
        if m.group(1) is not None:
            tokens.append(("name", m.group(1), m.start(1)))
        else:
            ch, at = m.group(2), m.start(2)
            if ch not in "(),":
                raise ProgramError(f"formula: unexpected character {ch!r} at position {at}")
            tokens.append((ch, ch, at))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


def _describe(tok: Token) -> str:
    return "end of formula" if tok[0] == "end" else f"token {tok[1]!r}"


class _FormulaParser:
    """One pass of recursive descent over a token list; counts nodes as it builds them."""

    def __init__(self, tokens: list[Token], ops: Mapping[str, Op], terminals: Collection[str] | None):
        self.tokens, self.ops, self.terminals = tokens, ops, terminals
        self.pos = 0
        self.count = 0

    def parse(self) -> Node:
        """The whole formula as one tree (nothing may follow it)."""
        if self.tokens[0][0] == "end":
            raise ProgramError("formula: empty formula")
        tree = self.expr(0)
        tok = self.tokens[self.pos]
        if tok[0] != "end":
            raise ProgramError(f"formula: unexpected {_describe(tok)} at position {tok[2]}")
        return tree

    def expect(self, kind: str) -> Token:
        tok = self.tokens[self.pos]
        if tok[0] != kind:
            want = "a name" if kind == "name" else repr(kind)
            raise ProgramError(f"formula: expected {want}, found {_describe(tok)} at position {tok[2]}")
        self.pos += 1
        return tok

    def expr(self, depth: int) -> Node:
        """``NAME`` or ``NAME "(" expr ("," expr)* ")"`` at nesting ``depth``."""
        _, name, at = self.expect("name")
        if depth > MAX_DEPTH:
            raise ProgramError(f"formula: nesting deeper than {MAX_DEPTH} at position {at}")
        self.count += 1
        if self.count > MAX_NODES:
            raise ProgramError(f"formula: more than {MAX_NODES} nodes (at position {at})")
        if NAME_RE.fullmatch(name) is None:
            raise ProgramError(f"formula: invalid name {short(name)} at position {at}")
        if self.tokens[self.pos][0] != "(":
            problem = terminal_problem(name, self.terminals, self.ops)
            if problem:
                raise ProgramError(f"formula: {problem} at position {at}")
            return Terminal(name)
        if name not in self.ops:
            raise ProgramError(f"formula: unknown operation {name!r}{name_hint(name, self.ops)} at position {at}")
        self.pos += 1
        args = [self.expr(depth + 1)]
        while self.tokens[self.pos][0] == ",":
            self.pos += 1
            args.append(self.expr(depth + 1))
        self.expect(")")
        problem = op_problem(name, len(args), self.ops)
        if problem:
            raise ProgramError(f"formula: {problem} at position {at}")
        return Apply(name, tuple(args))


def parse_formula(
    text: str,
    *,
    ops: Mapping[str, Op] = OPS,
    terminals: Collection[str] | None = TERMINALS,
) -> Node:
    """Parse readable text such as ``sum(act_D, sign(wt))`` into a validated tree.

    Grammar: ``expr := NAME | NAME "(" expr ("," expr)* ")"``; whitespace is free.
    Errors name the bad token and its character position (0-based).
    """
    if not isinstance(text, str):
        raise ProgramError(f"formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise ProgramError(f"formula is longer than {MAX_FORMULA_CHARS} characters")
    return _FormulaParser(_tokenize(text), ops, terminals).parse()


# --------------------------------------------------------------------------- prefix lists


def from_prefix(
    tokens: Sequence[str],
    *,
    ops: Mapping[str, Op] = OPS,
    terminals: Collection[str] | None = TERMINALS,
) -> Node:
    """Rebuild a tree from a prefix list of names (inverse of :meth:`Node.to_prefix`).

    A name in ``ops`` is an operation taking ``ops[name].arity`` following subtrees;
    any other name must be a terminal. Built with a stack, without recursion.
    """
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise ProgramError(f"prefix: expected a list of names, got {type(tokens).__name__}")
    if not tokens:
        raise ProgramError("prefix: empty list")
    if len(tokens) > MAX_NODES:
        raise ProgramError(f"prefix: {len(tokens)} names, more than the limit of {MAX_NODES} nodes")
    stack: list[Node] = []
    for i in range(len(tokens) - 1, -1, -1):
        name = tokens[i]
        if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
            raise ProgramError(f"prefix: invalid name {short(name)} at index {i}")
        op = ops.get(name)
        if op is None:
            problem = terminal_problem(name, terminals, ops)
            if problem:
                raise ProgramError(f"prefix: {problem} at index {i}")
            stack.append(Terminal(name))
            continue
        if len(stack) < op.arity:
            raise ProgramError(
                f"prefix: operation {name!r} at index {i} takes {op.arity} argument(s), "
                f"only {len(stack)} follow"
            )
        args = tuple(stack.pop() for _ in range(op.arity))
        node = Apply(name, args)
        if node.depth() > MAX_DEPTH:
            raise ProgramError(f"prefix: tree depth exceeds the limit of {MAX_DEPTH} at index {i}")
        stack.append(node)
    if len(stack) != 1:
        extra = len(tokens) - stack[-1].size()
        raise ProgramError(
            f"prefix: {extra} name(s) after the end of the first tree (index {stack[-1].size()})"
        )
    return stack[0]
