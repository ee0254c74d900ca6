"""The JSON form of programs (``schemas/program.schema.json``), for both representations.

A document says ``"representation": "tree"`` (a tree of ``{"op", "args"}`` /
``{"terminal"}`` nodes, plus the readable ``formula``, which must describe the same
tree) or ``"representation": "sequential"`` (``instructions``). :func:`program_to_json`
and :func:`program_from_json` convert, :func:`save_program` and :func:`load_program`
write and read files (``load_program`` also knows the registered names of
:mod:`eznas_store.programs.registered`).

Loading trusts nothing: anything that is not a valid program -- wrong types, extra keys,
unknown names, strings that are not names, hostile nesting -- ends in one
:class:`~eznas_store.errors.ProgramError` line naming the JSON path (``$.tree.args[0]``).
The recursive schema is checked node by node (:func:`program_validators`), so a deep
tree cannot exhaust the stack.

This module sits above :mod:`~eznas_store.programs.tree` and
:mod:`~eznas_store.programs.sequential`; neither imports it.

Example
-------
>>> p = load_program("eznas-a")
>>> program_from_json(program_to_json(p)) == p
True
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from eznas_store.config import SCHEMA_DIR, load_schema
from eznas_store.errors import ProgramError
from eznas_store.terminals import TERMINALS
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.identifiers import LABEL_RE, short
from eznas_store.programs.ops import OPS, Op
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.sequential import SequentialProgram, check_instructions
from eznas_store.programs.tree import (
    MAX_DEPTH,
    MAX_NODES,
    Apply,
    Node,
    Program,
    Terminal,
    op_problem,
    terminal_problem,
    terminals_for,
)

__all__ = [
    "FORMAT",
    "MAX_JSON_NESTING",
    "SCHEMA_PATH",
    "VERSION",
    "load_program",
    "program_from_json",
    "program_to_json",
    "program_validators",
    "save_program",
    "tree_from_json",
    "tree_to_json",
]

FORMAT = "eznas-program"
VERSION = 1
#: the schema file, shipped with the package (see :data:`eznas_store.config.SCHEMA_DIR`)
SCHEMA_PATH = SCHEMA_DIR / "program.schema.json"
#: deepest nesting of JSON containers accepted anywhere in a document (a depth-64 tree
#: needs 131 levels); protects every recursive step that follows
MAX_JSON_NESTING = 200


# --------------------------------------------------------------------------- plain JSON


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
                        raise ProgramError(f"{p}: object keys must be strings, got {short(k)}")
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


# --------------------------------------------------------------------------- schema


@functools.lru_cache(maxsize=1)
def program_validators() -> tuple[Draft202012Validator, Draft202012Validator, Draft202012Validator]:
    """(full schema, document with a shallow tree, one tree node with shallow args).

    The full schema is recursive over the tree; jsonschema validates it recursively
    (~10 Python frames per level), so a deep hostile tree could exhaust the stack.
    Loading therefore checks the document and then each node on its own, against the
    same schema file with the recursion cut. Memoised: the schema is a constant of the
    installation.
    """
    schema = load_schema("program")
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


# --------------------------------------------------------------------------- trees


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
    node_validator = program_validators()[2]
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
            problem = terminal_problem(o["terminal"], terminals, ops)
            if problem:
                raise ProgramError(f"{p}.terminal: {problem}")
            return Terminal(o["terminal"])
        problem = op_problem(o["op"], len(o["args"]), ops)
        if problem:
            raise ProgramError(f"{p}.op: {problem}")
        return Apply(o["op"], tuple(build(a, f"{p}.args[{i}]", depth + 1) for i, a in enumerate(o["args"])))

    return build(obj, path, 0)


# --------------------------------------------------------------------------- documents


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
    if name is not None and LABEL_RE.fullmatch(name) is None:
        raise ProgramError(f"$.name: invalid program name {short(name)}")
    return name


def _sequential_from_json(doc: dict[str, Any]) -> SequentialProgram:
    """A :class:`~eznas_store.programs.sequential.SequentialProgram` from a schema-checked document."""
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
    if program.aggregate != "mean":  # written only when set: older files stay byte-identical
        doc["aggregate"] = program.aggregate
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
    _schema_problem(program_validators()[1], doc, "$")
    if doc["representation"] == "sequential":
        return _sequential_from_json(doc)
    terminal_set = doc.get("terminal_set", "statistics")
    terminals = terminals_for(terminal_set)
    if ops is None:  # by default the document's terminal set picks the op table
        ops = PROXY_OPS if terminal_set == "proxies" else OPS
    tree = tree_from_json(doc["tree"], ops=ops, terminals=terminals, path="$.tree")
    if "formula" in doc:
        try:
            written = parse_formula(doc["formula"], ops=ops, terminals=terminals)
        except ProgramError as e:
            raise ProgramError(f"$.formula: {str(e).removeprefix('formula: ')}") from None
        if written != tree:
            raise ProgramError(
                f"$.formula: {short(doc['formula'])} does not describe the tree "
                f"{short(tree.formula())}"
            )
    name = _doc_name(doc)
    return Program(
        tree=tree,
        to_scalar=doc.get("to_scalar", "mean"),
        terminal_set=terminal_set,
        name=name,
        meta=doc.get("meta", {}),
        aggregate=doc.get("aggregate", "mean"),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def save_program(program: Program | SequentialProgram, path: str | os.PathLike[str]) -> Path:
    """Write ``program`` as indented JSON (a file :func:`load_program` reads back)."""
    doc = program_to_json(program)
    _schema_problem(program_validators()[1], doc, "$")
    text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    out = Path(path)
    out.write_text(text + "\n", encoding="utf-8")
    return out


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct (a second "tree" must not silently win)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ProgramError(f"key {key!r} appears twice in one JSON object")
        out[key] = value
    return out


#: a program file larger than this is refused before it is read (MAX_NODES nodes fit in ~1 MB)
MAX_PROGRAM_BYTES = 4 << 20


def read_program_document(path: str | os.PathLike[str]) -> Any:
    """The JSON document of a program file: size, encoding and nesting checked before parsing."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ProgramError(f"{path}: cannot read the program file ({e.strerror or e})") from None
    if size > MAX_PROGRAM_BYTES:
        raise ProgramError(f"{path}: {size:,} bytes is larger than any program ({MAX_PROGRAM_BYTES:,} at most)")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"), parse_constant=_reject_constant,
                          object_pairs_hook=_unique_keys)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProgramError(f"{path}: not valid JSON: {str(e)[:120]}") from None


def load_program(
    path_or_name: str | os.PathLike[str], *, ops: Mapping[str, Op] | None = None,
    require_output: bool = False,
) -> Program | SequentialProgram:
    """A registered program by name (e.g. ``"eznas-a"``), or one read from a JSON file.

    A file holding a sequential program gives a
    :class:`~eznas_store.programs.sequential.SequentialProgram` (see :func:`program_from_json`).
    ``require_output``: the program is to be scored, so a sequential one must compute an output
    (``s0`` written, every live read written before); else a :class:`ProgramError` naming the file.
    """
    program = _load_program(path_or_name, ops)
    if require_output and isinstance(program, SequentialProgram) and not program.is_valid():
        raise ProgramError(f"{path_or_name}: the sequential program computes nothing to score: "
                           f"{program.invalid_reason()}")
    return program


def _load_program(path_or_name: str | os.PathLike[str], ops: Mapping[str, Op] | None
                  ) -> Program | SequentialProgram:
    """:func:`load_program` without its ``require_output`` check."""
    if isinstance(path_or_name, str) and path_or_name in NAMED_PROGRAMS:
        program = NAMED_PROGRAMS[path_or_name]
        if ops is not None:  # a registered program is held to ``ops`` like a file (e.g. an op set)
            try:
                program.validate(ops=ops)
            except ProgramError as e:
                raise ProgramError(f"{path_or_name}: {e}") from None
        return program
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
    obj = read_program_document(path)
    try:
        return program_from_json(obj, ops=ops)
    except ProgramError as e:
        raise ProgramError(f"{path}: {e}") from None
