"""DARTS genotype strings: a strict parser, the canonical form, NB301 keys, random cells and mutation.

A genotype is DARTS's ``Genotype`` namedtuple as Python prints it::

    Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

Pairs ``2k`` and ``2k+1`` are ``(op, input)`` of node ``k+2``, with ``input <= k+1`` (0: the
cell two back, 1: the previous cell, 2..: intermediate nodes). The text is data: a small
tokenizer and a recursive-descent parser read it, never ``eval``; every error names the
token and its character position. ``concat`` may also be written ``range(a, b)`` (what the
DARTS search model prints); the canonical form always lists it.

NASLib's NB301 compact key ``[[(input, op_index) x8], [x8]]`` (``nasbench301/conversions.py``)
has the pair reversed and numbers the ops without ``none`` (:data:`NB301_KEY_OPS`); its
concat is implicitly ``[2, 3, 4, 5]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import InvalidArchError

#: DARTS ``PRIMITIVES`` in their published order
PRIMITIVES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
#: NASLib's NB301 op index → op name (no ``none``)
NB301_KEY_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
#: the intermediate nodes DARTS concatenates (4 steps)
DARTS_CONCAT: tuple[int, ...] = (2, 3, 4, 5)
STEPS = 4

Pairs = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Genotype:
    """A parsed genotype; ``str()`` is the canonical string."""

    normal: Pairs
    normal_concat: tuple[int, ...]
    reduce: Pairs
    reduce_concat: tuple[int, ...]

    def __str__(self) -> str:
        return format_genotype(self.normal, self.normal_concat, self.reduce, self.reduce_concat)


def _pairs_text(pairs: Sequence[tuple[str, int]]) -> str:
    return "[" + ", ".join(f"('{op}', {j})" for op, j in pairs) + "]"


def _ints_text(ints: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in ints) + "]"


def format_genotype(normal: Sequence[tuple[str, int]], normal_concat: Sequence[int],
                    reduce: Sequence[tuple[str, int]], reduce_concat: Sequence[int]) -> str:
    """The canonical genotype string: Python's repr of DARTS's namedtuple with list fields."""
    return (f"Genotype(normal={_pairs_text(normal)}, normal_concat={_ints_text(normal_concat)}, "
            f"reduce={_pairs_text(reduce)}, reduce_concat={_ints_text(reduce_concat)})")


# ----------------------------------------------------------------------------- tokenizer
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<int>[0-9]+)
  | (?P<str>'[A-Za-z0-9_]*'|"[A-Za-z0-9_]*")
  | (?P<punct>[()\[\],=])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str, what: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidArchError(f"invalid {what}: unexpected character {text[pos]!r} at position {pos}")
        if m.lastgroup != "space":
            tokens.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the tokens; each method consumes one grammar item."""

    def __init__(self, text: str, what: str) -> None:
        self.what = what
        self.tokens = _tokenize(text, what)
        self.i = 0

    def fail(self, message: str, tok: _Tok | None = None) -> InvalidArchError:
        tok = tok or self.tokens[self.i]
        shown = repr(tok.text) if tok.kind != "end" else "the end of the text"
        return InvalidArchError(f"invalid {self.what}: {message}, found {shown} at position {tok.pos}")

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self, text: str | None = None, kind: str | None = None) -> _Tok:
        tok = self.tokens[self.i]
        if (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            raise self.fail(f"expected {text or kind!r}")
        self.i += 1
        return tok

    def done(self) -> None:
        if self.peek().kind != "end":
            raise self.fail("expected the end of the text")

    def seq(self, open_: str, close: str, item) -> list:
        """``open item (, item)* [,] close`` (empty allowed; callers check lengths)."""
        self.take(open_)
        out = []
        while self.peek().text != close:
            out.append(item())
            if self.peek().text == ",":
                self.take(",")
            elif self.peek().text != close:
                raise self.fail(f"expected ',' or {close!r}")
        self.take(close)
        return out

    def integer(self) -> tuple[int, _Tok]:
        tok = self.take(kind="int")
        return int(tok.text), tok

    def op_pair(self) -> tuple[str, int, _Tok]:
        self.take("(")
        tok = self.take(kind="str")
        op = tok.text[1:-1]
        if op not in PRIMITIVES:
            raise self.fail(f"unknown operation {op!r} (known: {', '.join(PRIMITIVES)})", tok)
        self.take(",")
        j, jtok = self.integer()
        self.take(")")
        return op, j, jtok

    def concat(self) -> list[tuple[int, _Tok]]:
        if self.peek().text == "range":
            self.take("range")
            self.take("(")
            (a, ta), _, (b, _) = self.integer(), self.take(","), self.integer()
            self.take(")")
            return [(v, ta) for v in range(a, b)]
        return self.seq("[", "]", self.integer)


# ----------------------------------------------------------------------------- genotypes
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _check_cell(name: str, pairs: list[tuple[str, int, _Tok]], concat: list[tuple[int, _Tok]],
                parser: _Parser, at: _Tok) -> tuple[Pairs, tuple[int, ...]]:
    if len(pairs) < 2 or len(pairs) % 2:
        raise parser.fail(f"{name} needs an even number (>= 2) of (op, input) pairs, got {len(pairs)}", at)
    for e, (op, j, tok) in enumerate(pairs):
        if j > e // 2 + 1:
            raise parser.fail(f"{name} pair {e} feeds node {e // 2 + 2} and may read inputs "
                              f"0..{e // 2 + 1}, not {j}", tok)
    n_states = len(pairs) // 2 + 2
    values = [v for v, _ in concat]
    if not values:
        raise parser.fail(f"{name}_concat must name at least one state", at)
    for k, (v, tok) in enumerate(concat):
        if v >= n_states or (k and v <= values[k - 1]):
            raise parser.fail(f"{name}_concat must list states 0..{n_states - 1} in increasing "
                              f"order, without repeats", tok)
    return tuple((op, j) for op, j, _ in pairs), tuple(values)


def parse_genotype(text: str) -> Genotype:
    """Parse a genotype string strictly (keywords in any order, each once; no other syntax)."""
    what = "DARTS genotype"
    if not isinstance(text, str):
        raise InvalidArchError(f"a {what} must be text, got {type(text).__name__}")
    p = _Parser(text, what)
    p.take("Genotype")
    p.take("(")
    got: dict[str, tuple[list, _Tok]] = {}
    while p.peek().text != ")":
        key = p.take(kind="name")
        if key.text not in _FIELDS:
            raise p.fail(f"unknown field (fields: {', '.join(_FIELDS)})", key)
        if key.text in got:
            raise p.fail("repeated field", key)
        p.take("=")
        value = p.concat() if key.text.endswith("_concat") else p.seq("[", "]", p.op_pair)
        got[key.text] = (value, key)
        if p.peek().text == ",":
            p.take(",")
        elif p.peek().text != ")":
            raise p.fail("expected ',' or ')'")
    close = p.take(")")
    p.done()
    missing = [f for f in _FIELDS if f not in got]
    if missing:
        raise p.fail(f"missing field(s) {', '.join(missing)}", close)
    normal = _check_cell("normal", got["normal"][0], got["normal_concat"][0], p, got["normal"][1])
    reduce = _check_cell("reduce", got["reduce"][0], got["reduce_concat"][0], p, got["reduce"][1])
    return Genotype(normal[0], normal[1], reduce[0], reduce[1])


def canonical(text: str) -> str:
    """The canonical string of a genotype string (raises InvalidArchError)."""
    return str(parse_genotype(text))


def as_genotype(arch: str | Genotype) -> Genotype:
    return arch if isinstance(arch, Genotype) else parse_genotype(arch)


# ----------------------------------------------------------------------------- NB301 keys
def _key_pair(p: _Parser) -> tuple[str, int, _Tok]:
    p.take("(")
    j, jtok = p.integer()
    p.take(",")
    k, tok = p.integer()
    p.take(")")
    if k >= len(NB301_KEY_OPS):
        raise p.fail(f"op index must be 0..{len(NB301_KEY_OPS) - 1}", tok)
    return NB301_KEY_OPS[k], j, jtok


def from_naslib_key(key: str) -> str:
    """NASLib's NB301 key ``[[(0, 0), (1, 5), ...], [...]]`` → the canonical genotype string."""
    p = _Parser(str(key), "NASLib NB301 key")
    start = p.peek()
    cells = p.seq("[", "]", lambda: (p.peek(), p.seq("[", "]", lambda: _key_pair(p))))
    p.done()
    if len(cells) != 2:
        raise p.fail(f"expected two cells (normal, reduce), got {len(cells)}", start)
    checked = []
    for name, (at, pairs) in zip(("normal", "reduce"), cells):
        if len(pairs) != 2 * STEPS:
            raise p.fail(f"the {name} cell needs {2 * STEPS} pairs, got {len(pairs)}", at)
        concat = [(v, at) for v in DARTS_CONCAT]
        checked.append(_check_cell(name, pairs, concat, p, at))
    return format_genotype(checked[0][0], DARTS_CONCAT, checked[1][0], DARTS_CONCAT)


def to_naslib_key(arch: str | Genotype) -> str:
    """Inverse of :func:`from_naslib_key`: a 4-step genotype without ``none`` → its NB301 key."""
    g = as_genotype(arch)
    cells = []
    for name, pairs, concat in (("normal", g.normal, g.normal_concat), ("reduce", g.reduce, g.reduce_concat)):
        if len(pairs) != 2 * STEPS or concat != DARTS_CONCAT:
            raise InvalidArchError(f"NB301 keys hold {STEPS}-step cells with concat "
                                   f"{list(DARTS_CONCAT)}; the {name} cell of {g} is not one")
        if any(op == "none" for op, _ in pairs):
            raise InvalidArchError(f"NB301 keys have no 'none' op; the {name} cell of {g} uses it")
        cells.append("[" + ", ".join(f"({j}, {NB301_KEY_OPS.index(op)})" for op, j in pairs) + "]")
    return "[" + ", ".join(cells) + "]"


# ----------------------------------------------------------------------------- walking the space
def random_pairs(rng: np.random.Generator, steps: int = STEPS) -> Pairs:
    """Uniform ops (all 8, ``none`` included) and uniform inputs per pair; a node may read one input twice."""
    pairs = []
    for e in range(2 * steps):
        op = PRIMITIVES[int(rng.integers(len(PRIMITIVES)))]
        pairs.append((op, int(rng.integers(e // 2 + 2))))
    return tuple(pairs)


def random_cell(rng: np.random.Generator) -> str:
    """A random genotype with normal == reduce and concat [2, 3, 4, 5], like the 1000-genotype set."""
    pairs = random_pairs(rng)
    return format_genotype(pairs, DARTS_CONCAT, pairs, DARTS_CONCAT)


def _mutate_pairs(pairs: Pairs, rng: np.random.Generator) -> Pairs:
    out = list(pairs)
    e = int(rng.integers(len(out)))
    op, j = out[e]
    if rng.integers(2) == 0:
        others = [o for o in PRIMITIVES if o != op]
        out[e] = (others[int(rng.integers(len(others)))], j)
    else:
        inputs = [i for i in range(e // 2 + 2) if i != j]
        out[e] = (op, inputs[int(rng.integers(len(inputs)))])
    return tuple(out)


def mutate(arch: str, rng: np.random.Generator) -> str:
    """One pair changes: its op (to one of the 7 others) or its input (to another valid one).

    A genotype with normal == reduce stays so (both cells change alike); otherwise one
    cell, chosen uniformly, changes.
    """
    g = parse_genotype(arch)
    if g.normal == g.reduce:
        pairs = _mutate_pairs(g.normal, rng)
        return format_genotype(pairs, g.normal_concat, pairs, g.reduce_concat)
    if rng.integers(2) == 0:
        return format_genotype(_mutate_pairs(g.normal, rng), g.normal_concat, g.reduce, g.reduce_concat)
    return format_genotype(g.normal, g.normal_concat, _mutate_pairs(g.reduce, rng), g.reduce_concat)


def distance(a: str | Genotype, b: str | Genotype) -> int:
    """Pairs that differ between two genotypes, position by position, normal and reduce cells
    counted apart (a pair missing from the shorter cell differs), plus one per differing concat.

    One :func:`mutate` of a normal == reduce genotype is distance 2; of another, 1.
    """
    ga, gb = as_genotype(a), as_genotype(b)
    d = 0
    for pa, pb in ((ga.normal, gb.normal), (ga.reduce, gb.reduce)):
        d += sum(x != y for x, y in zip(pa, pb)) + abs(len(pa) - len(pb))
    return d + (ga.normal_concat != gb.normal_concat) + (ga.reduce_concat != gb.reduce_concat)
