"""Programs as data: expression trees over per-block terminals, their text/prefix/JSON forms.

A program is never code. It is a tree of :class:`Terminal` leaves and :class:`Apply`
nodes naming operations of an op table (:data:`eznas_store.programs.ops.OPS` by
default); the evaluator interprets it. It can be written three ways, all lossless:

* readable text, ``frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))``, read back
  by :func:`parse_formula` (a small recursive-descent parser, no ``eval``);
* a flat prefix list of names, ``["frobenius", "sigmoid", ..., "inpactgrad_D"]``, the
  shape of DEAP's ``PrimitiveTree`` (:meth:`Node.to_prefix` / :func:`from_prefix`);
* JSON (``schemas/program.schema.json``), via :func:`program_to_json`,
  :func:`program_from_json`, :func:`save_program` and :func:`load_program`.

Every way in validates: unknown operation or terminal names, wrong arity, depth above
:data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes, and for JSON anything the schema
does not allow, end in one :class:`~eznas_store.errors.ProgramError` line that names the
problem and where it is (a JSON path such as ``$.tree.args[0]``, or a character
position in a formula).

Example
-------
>>> p = load_program("eznas-a")
>>> p.tree.formula()
'frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))'
>>> parse_formula(p.tree.formula()) == p.tree
True
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import keyword
import math
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from eznas_store.errors import ProgramError
from eznas_store.terminals import TERMINALS
from eznas_store.programs.ops import OPS, Op

if TYPE_CHECKING:  # a runtime import would be circular: sequential builds on this module
    from eznas_store.programs.sequential import SequentialProgram

__all__ = [
    "FORMAT",
    "MAX_DEPTH",
    "MAX_NODES",
    "NAMED_PROGRAMS",
    "SCHEMA_PATH",
    "TERMINAL_SETS",
    "TO_SCALAR",
    "VERSION",
    "Apply",
    "Node",
    "Program",
    "Terminal",
    "from_prefix",
    "load_program",
    "parse_formula",
    "program_from_json",
    "program_to_json",
    "save_program",
    "terminals_for",
    "tree_from_json",
    "tree_to_json",
    "validate_tree",
]

#: deepest tree accepted (a terminal has depth 0, as DEAP's ``PrimitiveTree.height``)
MAX_DEPTH = 64
#: most nodes accepted in one tree
MAX_NODES = 10_000
#: deepest nesting of JSON containers accepted anywhere in a document (a depth-64 tree
#: needs 131 levels); protects every recursive step that follows
MAX_JSON_NESTING = 200
#: longest formula text accepted
MAX_FORMULA_CHARS = 1_000_000

TO_SCALAR: tuple[str, ...] = ("mean", "l2")
TERMINAL_SETS: tuple[str, ...] = ("statistics", "proxies")
FORMAT = "eznas-program"
VERSION = 1
#: the schema file: ``schemas/`` at the repository root (a source checkout or editable
#: install), else a copy shipped inside the package as ``eznas_store/schemas/``
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "program.schema.json"

#: operation and terminal names: an identifier that starts with a letter, <= 64 chars
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: program labels such as "eznas-a"
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_STATISTICS = frozenset(TERMINALS)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
    if _NAME_RE.fullmatch(name) is None or keyword.iskeyword(name):
        raise ProgramError(
            f"invalid {what} name {_short(name)}: use letters, digits and '_', "
            "starting with a letter, at most 64 characters, not a Python keyword"
        )
    return name


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- nodes


class Node:
    """Base of tree nodes: immutable, hashable, compared by their canonical key.

    Key, depth and size are computed once at construction (children first), so hashing
    a node and caching shared subtrees across a population are O(1) per lookup.
    """

    __slots__ = ()

    def key(self) -> str:
        """Canonical text, e.g. ``sum(act_D,wt)``: equal keys mean equal trees."""
        return self._key  # type: ignore[attr-defined]

    def depth(self) -> int:
        """Edges on the longest root-to-leaf path (a terminal has depth 0)."""
        return self._depth  # type: ignore[attr-defined]

    def size(self) -> int:
        """Number of nodes."""
        return self._size  # type: ignore[attr-defined]

    def formula(self) -> str:
        """Readable text, e.g. ``sum(act_D, wt)``; :func:`parse_formula` reads it back."""
        # names hold no ',' so the canonical key only needs spacing
        return self._key.replace(",", ", ")  # type: ignore[attr-defined]

    def iter_nodes(self) -> Iterator[Node]:
        """Nodes in prefix (pre-)order, without recursion."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Apply):
                stack.extend(reversed(node.args))

    def to_prefix(self) -> list[str]:
        """Flat prefix list of names (DEAP's ``PrimitiveTree`` order)."""
        return [n.name if isinstance(n, Terminal) else n.op  # type: ignore[attr-defined]
                for n in self.iter_nodes()]

    def terminal_names(self) -> frozenset[str]:
        """Terminals the tree reads, so that an evaluator loads only those."""
        return frozenset(n.name for n in self.iter_nodes() if isinstance(n, Terminal))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self is other or self._key == other._key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key)  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return self.formula()


@dataclass(frozen=True, eq=False)
class Terminal(Node):
    """A leaf naming a per-block statistic (``act_D``) or a proxy value (``synflow``)."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "terminal")
        object.__setattr__(self, "_key", self.name)
        object.__setattr__(self, "_depth", 0)
        object.__setattr__(self, "_size", 1)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Terminal, (self.name,))


@dataclass(frozen=True, eq=False)
class Apply(Node):
    """An operation applied to argument subtrees; ``args`` is always a tuple."""

    op: str
    args: tuple[Node, ...]

    def __post_init__(self) -> None:
        _check_name(self.op, "operation")
        args = tuple(self.args)
        if not args:
            raise ProgramError(f"operation {self.op!r} needs at least one argument")
        for a in args:
            if not isinstance(a, Node):
                raise TypeError(f"arguments of {self.op!r} must be Nodes, got {type(a).__name__}")
        object.__setattr__(self, "args", args)
        inner = ",".join(a._key for a in args)  # type: ignore[attr-defined]
        object.__setattr__(self, "_key", f"{self.op}({inner})")
        object.__setattr__(self, "_depth", 1 + max(a._depth for a in args))  # type: ignore[attr-defined]
        object.__setattr__(self, "_size", 1 + sum(a._size for a in args))  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Apply, (self.op, self.args))


# --------------------------------------------------------------------------- validation


def terminals_for(terminal_set: str) -> frozenset[str] | None:
    """The allowed terminal names of a terminal set; ``None`` means any proxy identifier."""
    if terminal_set == "statistics":
        return _STATISTICS
    if terminal_set == "proxies":
        return None
    raise ProgramError(
        f"unknown terminal set {_short(terminal_set)}: use one of {', '.join(TERMINAL_SETS)}"
    )


def _hint(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _terminal_problem(
    name: str, terminals: Collection[str] | None, ops: Mapping[str, Op]
) -> str | None:
    """Why ``name`` is not an allowed terminal, or None when it is."""
    if terminals is not None:
        if name in terminals:
            return None
        if name in ops:
            return f"operation {name!r} is used without arguments"
        return f"unknown terminal {_short(name)}{_hint(name, terminals)}"
    if _NAME_RE.fullmatch(name) is None or keyword.iskeyword(name):
        return f"invalid proxy terminal name {_short(name)}"
    if name in ops:
        return f"proxy terminal {name!r} clashes with the operation of that name"
    return None


def _op_problem(name: str, n_args: int, ops: Mapping[str, Op]) -> str | None:
    op = ops.get(name)
    if op is None:
        return f"unknown operation {_short(name)}{_hint(name, ops)}"
    if op.arity != n_args:
        return f"operation {name!r} takes {op.arity} argument(s), got {n_args}"
    return None


def validate_tree(
    node: Node,
    *,
    ops: Mapping[str, Op] = OPS,
    terminals: Collection[str] | None = TERMINALS,
    path: str = "$.tree",
) -> None:
    """Raise :class:`ProgramError` unless ``node`` is a valid tree over ``ops``/``terminals``.

    ``terminals=None`` accepts any proxy identifier (terminal set "proxies"). The
    message names the first problem in prefix order and its JSON path under ``path``.
    """
    if not isinstance(node, Node):
        raise ProgramError(f"{path}: expected a tree node, got {type(node).__name__}")
    if node.depth() > MAX_DEPTH:
        raise ProgramError(f"{path}: tree depth {node.depth()} exceeds the limit of {MAX_DEPTH}")
    if node.size() > MAX_NODES:
        raise ProgramError(f"{path}: tree has {node.size()} nodes, more than the limit of {MAX_NODES}")
    stack: list[tuple[Node, str]] = [(node, path)]
    while stack:
        n, p = stack.pop()
        if isinstance(n, Terminal):
            problem = _terminal_problem(n.name, terminals, ops)
        elif isinstance(n, Apply):
            problem = _op_problem(n.op, len(n.args), ops)
            stack.extend((a, f"{p}.args[{i}]") for i, a in reversed(list(enumerate(n.args))))
        else:
            problem = f"expected a tree node, got {type(n).__name__}"
        if problem:
            raise ProgramError(f"{p}: {problem}")


# --------------------------------------------------------------------------- formula text

_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """``(kind, value, position)`` with kind "name", "(", ")", "," or "end"."""
    tokens: list[tuple[str, str, int]] = []
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
    tokens = _tokenize(text)
    pos = 0
    count = 0

    def describe(tok: tuple[str, str, int]) -> str:
        return "end of formula" if tok[0] == "end" else f"token {tok[1]!r}"

    def expect(kind: str) -> tuple[str, str, int]:
        nonlocal pos
        tok = tokens[pos]
        if tok[0] != kind:
            want = "a name" if kind == "name" else repr(kind)
            raise ProgramError(f"formula: expected {want}, found {describe(tok)} at position {tok[2]}")
        pos += 1
        return tok

    def expr(depth: int) -> Node:
        nonlocal pos, count
        _, name, at = expect("name")
        if depth > MAX_DEPTH:
            raise ProgramError(f"formula: nesting deeper than {MAX_DEPTH} at position {at}")
        count += 1
        if count > MAX_NODES:
            raise ProgramError(f"formula: more than {MAX_NODES} nodes (at position {at})")
        if _NAME_RE.fullmatch(name) is None:
            raise ProgramError(f"formula: invalid name {_short(name)} at position {at}")
        if tokens[pos][0] != "(":
            problem = _terminal_problem(name, terminals, ops)
            if problem:
                raise ProgramError(f"formula: {problem} at position {at}")
            return Terminal(name)
        if name not in ops:
            raise ProgramError(f"formula: unknown operation {name!r}{_hint(name, ops)} at position {at}")
        pos += 1
        args = [expr(depth + 1)]
        while tokens[pos][0] == ",":
            pos += 1
            args.append(expr(depth + 1))
        expect(")")
        problem = _op_problem(name, len(args), ops)
        if problem:
            raise ProgramError(f"formula: {problem} at position {at}")
        return Apply(name, tuple(args))

    if tokens[0][0] == "end":
        raise ProgramError("formula: empty formula")
    tree = expr(0)
    if tokens[pos][0] != "end":
        tok = tokens[pos]
        raise ProgramError(f"formula: unexpected {describe(tok)} at position {tok[2]}")
    return tree


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
        if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
            raise ProgramError(f"prefix: invalid name {_short(name)} at index {i}")
        op = ops.get(name)
        if op is None:
            problem = _terminal_problem(name, terminals, ops)
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


# --------------------------------------------------------------------------- programs


def check_labels(program: Any) -> None:
    """Validate a program's ``name`` and copy its ``meta`` (shared by both representations)."""
    if program.name is not None and (
        not isinstance(program.name, str) or _LABEL_RE.fullmatch(program.name) is None
    ):
        raise ProgramError(
            f"invalid program name {_short(program.name)}: use letters, digits, '_', '.' "
            "and '-', starting with a letter or digit, at most 128 characters"
        )
    if not isinstance(program.meta, Mapping):
        raise TypeError(f"{type(program).__name__}.meta must be a dict, got {type(program.meta).__name__}")
    object.__setattr__(program, "meta", dict(program.meta))


@dataclass(frozen=True)
class Program:
    """A per-block program and how its output becomes a block score.

    ``to_scalar`` is "mean" (mean of all entries, the EZNAS default) or "l2" (their L2
    norm, the alternative of the paper's Fig. 3). ``terminal_set`` says what the leaves
    name: "statistics" (the 22 EZNAS terminals) or "proxies" (hand-crafted proxy
    values). ``name`` and ``meta`` (plain JSON values: fitness, provenance, ...) are
    labels: equality and hashing ignore them, so a cache keyed by programs is keyed by
    what they compute.
    """

    tree: Node
    to_scalar: str = "mean"
    terminal_set: str = "statistics"
    name: str | None = field(default=None, compare=False)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tree, Node):
            raise TypeError(f"Program.tree must be a Node, got {type(self.tree).__name__}")
        if self.to_scalar not in TO_SCALAR:
            raise ProgramError(
                f"unknown to_scalar {_short(self.to_scalar)}: use one of {', '.join(TO_SCALAR)}"
            )
        terminals_for(self.terminal_set)
        check_labels(self)

    def key(self) -> str:
        """Canonical identity text, e.g. ``statistics/mean:frobenius(act_D)``."""
        return f"{self.terminal_set}/{self.to_scalar}:{self.tree.key()}"

    def formula(self) -> str:
        return self.tree.formula()

    def validate(self, *, ops: Mapping[str, Op] = OPS) -> None:
        """Raise :class:`ProgramError` unless every name is known to ``ops``/the terminal set."""
        validate_tree(self.tree, ops=ops, terminals=terminals_for(self.terminal_set))

    def with_meta(self, **values: Any) -> Program:
        """A copy with ``values`` merged into ``meta`` (e.g. a fitness after evaluation)."""
        return replace(self, meta={**self.meta, **values})


# --------------------------------------------------------------------------- JSON


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _plain_json(value: Any, path: str = "$") -> Any:
    """A copy of ``value`` if it is plain JSON, else :class:`ProgramError` naming where not.

    Plain JSON: dicts with str keys, lists, str, int, finite float, bool, None, nested at
    most :data:`MAX_JSON_NESTING` deep. Iterative, so hostile nesting cannot overflow
    the stack; copying keeps a Program independent of the caller's objects.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, str, int]] = [(value, root, 0, path, 1)]
    while stack:
        v, parent, slot, p, level = stack.pop()
        if v is None or isinstance(v, bool):
            parent[slot] = v
        elif isinstance(v, str):
            parent[slot] = str.__str__(v)
        elif isinstance(v, int):
            parent[slot] = int(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ProgramError(f"{p}: {v} is not a JSON number (store a missing value as null)")
            parent[slot] = float(v)
        elif isinstance(v, (dict, list)):
            if level >= MAX_JSON_NESTING:
                raise ProgramError(f"{p}: JSON nested deeper than {MAX_JSON_NESTING} levels")
            if isinstance(v, dict):
                for k in v:
                    if not isinstance(k, str):
                        raise ProgramError(f"{p}: object keys must be strings, got {_short(k)}")
                out: Any = dict.fromkeys(v)
                items: Any = v.items()
            else:
                out = [None] * len(v)
                items = enumerate(v)
            parent[slot] = out
            stack.extend((item, out, k, _child_path(p, k), level + 1) for k, item in items)
        else:
            raise ProgramError(f"{p}: a {type(v).__name__} is not a JSON value")
    return root[0]


@functools.lru_cache(maxsize=1)
def _validators() -> tuple[Draft202012Validator, Draft202012Validator, Draft202012Validator]:
    """(full schema, document with a shallow tree, one tree node with shallow args).

    The full schema is recursive over the tree; jsonschema validates it recursively
    (~10 Python frames per level), so a deep hostile tree could exhaust the stack.
    Loading therefore checks the document and then each node on its own, against the
    same schema file with the recursion cut.
    """
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as e:  # pragma: no cover - packaging problem
        raise ProgramError(f"cannot read the program schema at {SCHEMA_PATH}: {e}") from e
    Draft202012Validator.check_schema(schema)
    top = copy.deepcopy(schema)
    top["properties"]["tree"] = {"type": "object"}
    defs = copy.deepcopy(schema["$defs"])
    defs["apply"]["properties"]["args"]["items"] = True
    node = {"$ref": "#/$defs/node", "$defs": defs}
    return Draft202012Validator(schema), Draft202012Validator(top), Draft202012Validator(node)


def _schema_problem(validator: Draft202012Validator, instance: Any, path: str) -> None:
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return
    where = path + error.json_path[1:]
    if error.validator == "not" and error.validator_value == {}:  # {"not": {}}: key forbidden
        message = "not allowed in this representation"
    else:
        message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:197] + "..."
    raise ProgramError(f"{where}: {message}")


def tree_to_json(node: Node) -> dict[str, Any]:
    """``{"terminal": name}`` or ``{"op": name, "args": [...]}``."""
    if node.depth() > MAX_DEPTH:
        raise ProgramError(f"$.tree: tree depth {node.depth()} exceeds the limit of {MAX_DEPTH}")
    if isinstance(node, Terminal):
        return {"terminal": node.name}
    if isinstance(node, Apply):
        return {"op": node.op, "args": [tree_to_json(a) for a in node.args]}
    raise TypeError(f"expected a tree node, got {type(node).__name__}")


def tree_from_json(
    obj: Any,
    *,
    ops: Mapping[str, Op] = OPS,
    terminals: Collection[str] | None = TERMINALS,
    path: str = "$.tree",
) -> Node:
    """Build and validate a tree from its JSON form (schema and names, node by node)."""
    obj = _plain_json(obj, path)
    node_validator = _validators()[2]
    count = 0

    def build(o: Any, p: str, depth: int) -> Node:
        nonlocal count
        if depth > MAX_DEPTH:
            raise ProgramError(f"{p}: tree depth exceeds the limit of {MAX_DEPTH}")
        count += 1
        if count > MAX_NODES:
            raise ProgramError(f"{p}: tree has more than the limit of {MAX_NODES} nodes")
        _schema_problem(node_validator, o, p)
        if "terminal" in o:
            problem = _terminal_problem(o["terminal"], terminals, ops)
            if problem:
                raise ProgramError(f"{p}.terminal: {problem}")
            return Terminal(o["terminal"])
        problem = _op_problem(o["op"], len(o["args"]), ops)
        if problem:
            raise ProgramError(f"{p}.op: {problem}")
        return Apply(o["op"], tuple(build(a, f"{p}.args[{i}]", depth + 1) for i, a in enumerate(o["args"])))

    return build(obj, path, 0)


def _sequential_to_json(program: SequentialProgram) -> dict[str, Any]:
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "representation": "sequential"}
    if program.name is not None:
        doc["name"] = program.name
    doc["to_scalar"] = program.to_scalar
    doc["terminal_set"] = program.terminal_set
    doc["instructions"] = [list(ins) for ins in program.instructions]
    if program.meta:
        doc["meta"] = _plain_json(program.meta, "$.meta")
    return doc


def _doc_name(doc: dict[str, Any]) -> str | None:
    """The document's label, checked again: the schema's ``$`` pattern admits a final newline."""
    name = doc.get("name")
    if name is not None and _LABEL_RE.fullmatch(name) is None:
        raise ProgramError(f"$.name: invalid program name {_short(name)}")
    return name


def _sequential_from_json(doc: dict[str, Any]) -> SequentialProgram:
    """A :class:`~eznas_store.programs.sequential.SequentialProgram` from a schema-checked document."""
    from eznas_store.programs.sequential import SequentialProgram, check_instructions

    terminal_set = doc.get("terminal_set", "statistics")
    if terminal_set != "statistics":
        raise ProgramError(
            "$.terminal_set: the sequential representation addresses the 22 statistics; "
            "use 'statistics'"
        )
    instructions = check_instructions(doc["instructions"], path="$.instructions")
    name = _doc_name(doc)
    return SequentialProgram(
        instructions=instructions,
        to_scalar=doc.get("to_scalar", "mean"),
        terminal_set=terminal_set,
        name=name,
        meta=doc.get("meta", {}),
    )


def program_to_json(program: Program | SequentialProgram) -> dict[str, Any]:
    """The JSON document of ``program`` (always valid against the schema).

    A :class:`~eznas_store.programs.sequential.SequentialProgram` is written with
    ``"representation": "sequential"`` and its ``instructions``.
    """
    from eznas_store.programs.sequential import SequentialProgram

    if isinstance(program, SequentialProgram):
        return _sequential_to_json(program)
    if not isinstance(program, Program):
        raise TypeError(f"expected a Program, got {type(program).__name__}")
    if program.tree.size() > MAX_NODES:
        raise ProgramError(
            f"$.tree: tree has {program.tree.size()} nodes, more than the limit of {MAX_NODES}"
        )
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "representation": "tree"}
    if program.name is not None:
        doc["name"] = program.name
    doc["to_scalar"] = program.to_scalar
    doc["terminal_set"] = program.terminal_set
    doc["formula"] = program.tree.formula()
    doc["tree"] = tree_to_json(program.tree)
    if program.meta:
        doc["meta"] = _plain_json(program.meta, "$.meta")
    return doc


def program_from_json(obj: Any, *, ops: Mapping[str, Op] | None = None) -> Program | SequentialProgram:
    """Validate a JSON document (schema, then names/arity/limits) and build its Program.

    Anything that is not a valid program -- wrong types, extra keys, unknown names,
    strings that are not names -- raises :class:`ProgramError`, never another exception.
    A ``"representation": "sequential"`` document gives a
    :class:`~eznas_store.programs.sequential.SequentialProgram` (op ids of the standard table
    :data:`~eznas_store.programs.ops.OPS_BY_ID`, whatever ``ops`` is; address ranges,
    write typing and 1..10000 instructions checked).
    """
    if not isinstance(obj, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(obj), f"a {type(obj).__name__}"
        )
        raise ProgramError(f"$: a program must be a JSON object, got {kind}")
    doc = _plain_json(obj)
    _schema_problem(_validators()[1], doc, "$")
    if doc["representation"] == "sequential":
        return _sequential_from_json(doc)
    terminal_set = doc.get("terminal_set", "statistics")
    terminals = terminals_for(terminal_set)
    if ops is None:  # by default the document's terminal set picks the op table
        from eznas_store.programs.proxy_ops import PROXY_OPS

        ops = PROXY_OPS if terminal_set == "proxies" else OPS
    tree = tree_from_json(doc["tree"], ops=ops, terminals=terminals, path="$.tree")
    if "formula" in doc:
        try:
            written = parse_formula(doc["formula"], ops=ops, terminals=terminals)
        except ProgramError as e:
            raise ProgramError(f"$.formula: {str(e).removeprefix('formula: ')}") from None
        if written != tree:
            raise ProgramError(
                f"$.formula: {_short(doc['formula'])} does not describe the tree "
                f"{_short(tree.formula())}"
            )
    name = _doc_name(doc)
    return Program(
        tree=tree,
        to_scalar=doc.get("to_scalar", "mean"),
        terminal_set=terminal_set,
        name=name,
        meta=doc.get("meta", {}),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def save_program(program: Program | SequentialProgram, path: str | os.PathLike[str]) -> Path:
    """Write ``program`` as indented JSON (a file :func:`load_program` reads back)."""
    doc = program_to_json(program)
    _schema_problem(_validators()[1], doc, "$")
    text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    out = Path(path)
    out.write_text(text + "\n", encoding="utf-8")
    return out


def load_program(
    path_or_name: str | os.PathLike[str], *, ops: Mapping[str, Op] | None = None
) -> Program | SequentialProgram:
    """A registered program by name (e.g. ``"eznas-a"``), or one read from a JSON file.

    A file holding a sequential program gives a
    :class:`~eznas_store.programs.sequential.SequentialProgram` (see :func:`program_from_json`).
    """
    if isinstance(path_or_name, str) and path_or_name in NAMED_PROGRAMS:
        return NAMED_PROGRAMS[path_or_name]
    path = Path(path_or_name)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a name too long to be a path
        is_file = False
    if not is_file:
        raise ProgramError(
            f"{str(path_or_name)!r} is neither a program file nor a registered program "
            f"(registered: {', '.join(sorted(NAMED_PROGRAMS))})"
        )
    try:
        obj = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProgramError(f"{path}: not valid JSON: {e}") from None
    try:
        return program_from_json(obj, ops=ops)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None


# --------------------------------------------------------------------------- registry


def _eznas_a() -> Program:
    """EZNAS-A, the program published with EZNAS (Akhauri et al., NeurIPS 2022).

    Per block ``frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))``, block score
    the mean of that output (a 0-d tensor, so mean = value), network score the mean over
    blocks. Read from the released code (IntelLabs/Hardware-Aware-Automated-Machine-
    Learning, ``EZNAS/verify_scores.py`` + ``EZNAS/evol_utilities.py``): it evaluates the
    hand-built individual ``[OP18, OP29, OP20, OP14, ARG8]`` = frobenius, sigmoid,
    ``torch.logdet`` (on the last two dims as they are, NaN -> 0: our
    ``logdet_lastdims``), sign. ``populate`` maps argument ``i`` to
    ``fixed_ordering[i - 1]``, so ARG8 is key 1 of the block's statistics dict,
    ``inpactgraddata`` -- the gradient w.r.t. the block input on the *data* batch;
    without that off-by-one it would be the noise-input gradient, which is one reading
    of the paper. DESIGN §3's independent check on 150 NB201 cells (batch 16) gave
    tau 0.59 with the data-input gradient vs 0.50 with the noise-input one, close to
    the released 0.620, so ``inpactgrad_D`` it is.
    """
    tree = parse_formula("frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))")
    return Program(
        tree=tree,
        to_scalar="mean",
        terminal_set="statistics",
        name="eznas-a",
        meta={
            "source": "EZNAS (Akhauri et al., NeurIPS 2022), released code verify_scores.py",
            "released_nb201_cifar10_batch16": {"kendall_tau": 0.6195, "spearman_rho": 0.8085},
        },
    )


#: registered programs, loadable by name with :func:`load_program`
NAMED_PROGRAMS: dict[str, Program] = {"eznas-a": _eznas_a()}
