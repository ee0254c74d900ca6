"""Programs as data: trees, formula text, prefix lists, JSON + schema, the registry."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from eznas_store.errors import EznasError, ProgramError
from eznas_store.programs.ops import OPS, Op
from eznas_store.programs.tree import (
    MAX_DEPTH,
    MAX_NODES,
    Apply,
    Node,
    Program,
    Terminal,
    terminals_for,
    validate_tree,
)
from eznas_store.programs.formula import from_prefix, parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.codec import (
    SCHEMA_PATH,
    load_program,
    program_from_json,
    program_to_json,
    save_program,
    tree_from_json,
    tree_to_json,
)
from eznas_store.terminals import TERMINALS

EZNAS_A = "frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))"
CODE_STRINGS = [
    "__import__('os').system('x')",
    "lambda x: x",
    "lambda",
    "exec('print(1)')",
    "os.system",
    "sign(wt); import os",
    "wt.__class__",
    "__builtins__",
    "eval",  # a valid-looking name that is neither an op nor a terminal
    "",
]

# a table of extra ops, as the proxy-regression issue will register (protected div, ...)
PROXY_OPS: dict[str, Op] = {
    **OPS,
    "protected_div": Op(100, "protected_div", 2, lambda a, b: a, "a / b, 1 where b == 0"),
    "neg": Op(101, "neg", 1, lambda a: -a, "-a"),
}


def chain(depth: int, leaf: str = "wt") -> Node:
    node: Node = Terminal(leaf)
    for _ in range(depth):
        node = Apply("sign", (node,))
    return node


def balanced(depth: int) -> Node:
    node: Node = Terminal("wt")
    for _ in range(depth):
        node = Apply("sum", (node, node))
    return node


def doc_of(tree: Node, **extra) -> dict:
    return {"format": "eznas-program", "version": 1, "representation": "tree",
            "tree": tree_to_json(tree), **extra}


def full_schema() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


# --------------------------------------------------------------------------- nodes


def test_node_basics():
    tree = parse_formula(EZNAS_A)
    assert tree == Apply("frobenius", (Apply("sigmoid", (Apply(
        "logdet_lastdims", (Apply("sign", (Terminal("inpactgrad_D"),)),)),)),))
    assert tree.formula() == EZNAS_A == str(tree)
    assert tree.key() == EZNAS_A
    assert (tree.depth(), tree.size()) == (4, 5)
    assert tree.to_prefix() == ["frobenius", "sigmoid", "logdet_lastdims", "sign", "inpactgrad_D"]
    assert tree.terminal_names() == {"inpactgrad_D"}
    two = parse_formula("sum( act_D ,sign(wt) )")
    assert two.key() == "sum(act_D,sign(wt))"
    assert two.formula() == "sum(act_D, sign(wt))"
    assert (two.depth(), two.size()) == (2, 4)
    assert [n.key() for n in two.iter_nodes()] == ["sum(act_D,sign(wt))", "act_D", "sign(wt)", "wt"]


def test_nodes_hash_and_compare_by_structure():
    a = Apply("sum", [Terminal("wt"), Terminal("act_D")])  # a list becomes a tuple
    b = parse_formula("sum(wt, act_D)")
    assert a == b and hash(a) == hash(b) and a.args == b.args and isinstance(a.args, tuple)
    assert a != parse_formula("sum(act_D, wt)")
    assert Terminal("wt") != Apply("sign", (Terminal("wt"),))
    assert len({a, b, Terminal("wt")}) == 2
    cache = {a.args[0]: 1}
    assert cache[Terminal("wt")] == 1  # shared subtrees hit one cache entry
    with pytest.raises(AttributeError):
        a.op = "difference"  # type: ignore[misc]


def test_nodes_pickle_without_stale_hash():
    tree = parse_formula("sum(sign(wt), act_D)")
    back = pickle.loads(pickle.dumps(tree))
    assert back == tree and hash(back) == hash(tree) and back.depth() == 2


@pytest.mark.parametrize("name", CODE_STRINGS[:4] + ["1abc", "a b", "_x", "x" * 65])
def test_nodes_reject_names_that_are_not_identifiers(name):
    with pytest.raises(ProgramError):
        Terminal(name)
    with pytest.raises(ProgramError):
        Apply(name, (Terminal("wt"),))


def test_apply_needs_node_arguments():
    with pytest.raises(ProgramError):
        Apply("sign", ())
    with pytest.raises(TypeError):
        Apply("sign", ("wt",))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validation


def test_validate_tree_names_problem_and_path():
    validate_tree(parse_formula(EZNAS_A))
    bad = Apply("sum", (Terminal("wt"), Apply("sign", (Terminal("act_Q"),))))
    with pytest.raises(ProgramError, match=r"^\$\.tree\.args\[1\]\.args\[0\]: unknown terminal 'act_Q'"):
        validate_tree(bad)
    with pytest.raises(ProgramError, match=r"^\$\.tree: operation 'sum' takes 2"):
        validate_tree(Apply("sum", (Terminal("wt"),)))
    with pytest.raises(ProgramError, match="unknown operation 'frobenius_norm'.*'frobenius'"):
        validate_tree(Apply("frobenius_norm", (Terminal("wt"),)))


def test_depth_and_size_limits():
    validate_tree(chain(MAX_DEPTH))
    with pytest.raises(ProgramError, match="depth 65 exceeds"):
        validate_tree(chain(MAX_DEPTH + 1))
    big = balanced(14)  # 32767 nodes, depth 14
    with pytest.raises(ProgramError, match="more than the limit of 10000"):
        validate_tree(big)
    assert big.size() > MAX_NODES


def test_limits_on_every_way_in():
    ok, deep = chain(MAX_DEPTH), chain(MAX_DEPTH + 1)
    assert parse_formula(ok.formula()) == ok
    assert from_prefix(ok.to_prefix()) == ok
    assert program_from_json(doc_of(ok)).tree == ok
    for load in (lambda: parse_formula(deep.formula()), lambda: from_prefix(deep.to_prefix()),
                 lambda: program_from_json(doc_of(deep))):
        with pytest.raises(ProgramError, match="deeper than 64|exceeds the limit of 64"):
            load()
    big = balanced(14)
    for load in (lambda: parse_formula(big.formula()), lambda: from_prefix(big.to_prefix())):
        with pytest.raises(ProgramError, match="10000"):
            load()
    with pytest.raises(ProgramError, match="10000"):
        program_to_json(Program(big))


def test_hostile_nesting_is_a_program_error_not_a_recursion_error(tmp_path):
    tree: dict = {"terminal": "wt"}
    for _ in range(5000):
        tree = {"op": "sign", "args": [tree]}
    with pytest.raises(ProgramError):
        program_from_json({"format": "eznas-program", "version": 1, "representation": "tree",
                           "tree": tree})
    meta: list = []
    for _ in range(5000):
        meta = [meta]
    with pytest.raises(ProgramError, match="nested deeper"):
        program_from_json(doc_of(Terminal("wt"), meta={"x": meta}))
    with pytest.raises(ProgramError, match="nesting deeper"):
        parse_formula("sign(" * 5000 + "wt" + ")" * 5000)  # "nesting deeper than 64"
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ProgramError):
        load_program(path)


# --------------------------------------------------------------------------- formula text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sum(wt, act_D", r"expected '\)', found end of formula at position 13"),
        ("sum(wt act_D)", r"expected '\)', found token 'act_D' at position 7"),
        ("__import__('os').system('x')", r"unexpected character \"'\" at position 11"),
        ("lambda x: x", r"unexpected character ':' at position 8"),
        ("sign", r"operation 'sign' is used without arguments at position 0"),
        ("sum(wt)", r"operation 'sum' takes 2 argument\(s\), got 1 at position 0"),
        ("foo(wt)", r"unknown operation 'foo' at position 0"),
        ("sign(act_Q)", r"unknown terminal 'act_Q'.* at position 5"),
        ("wt)", r"unexpected token '\)' at position 2"),
        ("sign(wt),", r"unexpected token ',' at position 8"),
        ("   ", r"empty formula"),
        ("_x", r"invalid name '_x' at position 0"),
        ("sign(wt)+wt", r"unexpected character '\+' at position 8"),
    ],
)
def test_parse_formula_errors_name_token_and_position(text, message):
    with pytest.raises(ProgramError, match=message):
        parse_formula(text)


@pytest.mark.parametrize("text", CODE_STRINGS)
def test_code_is_never_a_formula(text):
    with pytest.raises(ProgramError):
        parse_formula(text)


def test_proxy_terminal_set_and_extra_ops():
    assert terminals_for("statistics") == frozenset(TERMINALS)
    assert terminals_for("proxies") is None
    with pytest.raises(ProgramError, match="unknown terminal set"):
        terminals_for("pixels")
    tree = parse_formula("protected_div(synflow, neg(nwot))", ops=PROXY_OPS, terminals=None)
    assert tree.terminal_names() == {"synflow", "nwot"}
    with pytest.raises(ProgramError, match="unknown operation 'protected_div'"):
        parse_formula("protected_div(synflow, nwot)", terminals=None)  # not in the default table
    for bad in ["lambda", "__import__", "sum"]:
        with pytest.raises(ProgramError):
            parse_formula(f"neg({bad})", ops=PROXY_OPS, terminals=None)
    program = Program(tree, terminal_set="proxies", to_scalar="l2")
    program.validate(ops=PROXY_OPS)
    with pytest.raises(ProgramError):
        program.validate()
    back = program_from_json(program_to_json(program), ops=PROXY_OPS)
    assert back == program and back.terminal_set == "proxies"
    with pytest.raises(ProgramError, match=r"\$\.tree\.op: unknown operation 'protected_div'"):
        program_from_json(program_to_json(program))


# --------------------------------------------------------------------------- prefix lists


def test_prefix_errors():
    with pytest.raises(ProgramError, match="'sum' at index 0 takes 2 argument"):
        from_prefix(["sum", "wt"])
    with pytest.raises(ProgramError, match=r"1 name\(s\) after the end"):
        from_prefix(["sign", "wt", "act_D"])
    with pytest.raises(ProgramError, match="empty"):
        from_prefix([])
    with pytest.raises(ProgramError, match="invalid name"):
        from_prefix(["sign", 3])  # type: ignore[list-item]
    with pytest.raises(ProgramError, match="expected a list"):
        from_prefix("sign wt")  # type: ignore[arg-type]
    with pytest.raises(ProgramError, match="invalid name"):
        from_prefix(["sign", "__import__('os')"])
    with pytest.raises(ProgramError, match="unknown terminal 'eval' at index 1"):
        from_prefix(["sign", "eval"])


# --------------------------------------------------------------------------- programs


def test_program_identity_ignores_name_and_meta():
    tree = parse_formula(EZNAS_A)
    a = Program(tree, name="mine", meta={"fitness": 0.5})
    b = Program(tree)
    assert a == b and hash(a) == hash(b)
    assert a != Program(tree, to_scalar="l2") and a != Program(tree, terminal_set="proxies")
    c = a.with_meta(generation=3)
    assert c.meta == {"fitness": 0.5, "generation": 3} and a.meta == {"fitness": 0.5}
    assert a.key() == f"statistics/mean:{EZNAS_A}" and a.formula() == EZNAS_A
    with pytest.raises(ProgramError, match="to_scalar"):
        Program(tree, to_scalar="max")
    with pytest.raises(ProgramError, match="terminal set"):
        Program(tree, terminal_set="pixels")
    with pytest.raises(ProgramError, match="program name"):
        Program(tree, name="rm -rf /")
    with pytest.raises(TypeError):
        Program("sign(wt)")  # type: ignore[arg-type]


def test_eznas_a_is_registered():
    p = load_program("eznas-a")
    assert p is NAMED_PROGRAMS["eznas-a"]
    assert p.formula() == EZNAS_A
    assert (p.to_scalar, p.terminal_set, p.name) == ("mean", "statistics", "eznas-a")
    p.validate()


def test_eznas_a_json_document():
    doc = program_to_json(load_program("eznas-a"))
    assert doc["format"] == "eznas-program" and doc["version"] == 1
    assert doc["representation"] == "tree" and doc["name"] == "eznas-a"
    assert doc["formula"] == EZNAS_A
    assert doc["tree"] == {"op": "frobenius", "args": [{"op": "sigmoid", "args": [
        {"op": "logdet_lastdims", "args": [{"op": "sign", "args": [{"terminal": "inpactgrad_D"}]}]}]}]}
    assert not list(full_schema().iter_errors(doc))
    assert program_from_json(doc) == load_program("eznas-a")


def test_schema_file_is_valid_and_admits_sequential():
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["representation"]["enum"] == ["tree", "sequential"]
    sequential = {"format": "eznas-program", "version": 1, "representation": "sequential",
                  "instructions": [[18, 30, 5, 0]]}
    assert not list(full_schema().iter_errors(sequential))
    from eznas_store.programs.sequential import SequentialProgram

    loaded = program_from_json(sequential)
    assert isinstance(loaded, SequentialProgram) and loaded.instructions == ((18, 30, 5, 0),)
    assert program_to_json(loaded)["instructions"] == [[18, 30, 5, 0]]


def test_save_and_load(tmp_path: Path):
    p = Program(parse_formula("sum(act_D, sign(wt))"), to_scalar="l2", name="two",
                meta={"fitness": {"kendall_tau": 0.31}, "generation": 4, "ok": True, "note": None})
    path = save_program(p, tmp_path / "p.json")
    text = path.read_text()
    assert text.endswith("\n") and '"representation": "tree"' in text
    back = load_program(path)
    assert back == p and back.name == "two" and back.meta == p.meta
    assert load_program(str(path)) == p
    with pytest.raises(ProgramError, match="nan is not a JSON number"):
        save_program(p.with_meta(fitness=math.nan), tmp_path / "nan.json")


def test_load_errors(tmp_path: Path):
    with pytest.raises(ProgramError, match="neither a program file nor a registered program.*eznas-a"):
        load_program("eznas-z")
    with pytest.raises(ProgramError, match="neither a program file"):
        load_program("x" * 5000)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProgramError, match="bad.json: not valid JSON"):
        load_program(bad)
    bad.write_text('{"format": "eznas-program", "version": NaN}')
    with pytest.raises(ProgramError, match="not valid JSON"):
        load_program(bad)
    bad.write_text(json.dumps(doc_of(Terminal("wt"), extra=1)))
    with pytest.raises(ProgramError, match=r"bad.json: \$: Additional properties.*'extra'"):
        load_program(bad)
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProgramError):
        load_program(bad)


GOOD = doc_of(parse_formula("sum(act_D, sign(wt))"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], r"^\$: a program must be a JSON object, got an array$"),
        ("sign(wt)", r"^\$: a program must be a JSON object, got a string$"),
        (None, r"^\$: a program must be a JSON object, got null$"),
        ({**GOOD, "extra": 1}, r"^\$: Additional properties are not allowed \('extra' was unexpected\)"),
        ({k: v for k, v in GOOD.items() if k != "version"}, r"^\$: 'version' is a required property"),
        ({**GOOD, "version": 2}, r"^\$\.version: 1 was expected"),
        ({**GOOD, "version": True}, r"^\$\.version: 1 was expected"),
        ({**GOOD, "format": "deap"}, r"^\$\.format: "),
        ({**GOOD, "to_scalar": "max"}, r"^\$\.to_scalar: "),
        ({**GOOD, "representation": "graph"}, r"^\$\.representation: "),
        ({**GOOD, "instructions": [[1, 2, 3, 4]]}, r"^\$\.instructions: not allowed in this representation"),
        ({**GOOD, "meta": []}, r"^\$\.meta: \[\] is not of type 'object'"),
        ({**GOOD, "meta": {"f": math.inf}}, r"^\$\.meta\.f: inf is not a JSON number"),
        ({**GOOD, "meta": {"f": {1, 2}}}, r"^\$\.meta\.f: a set is not a JSON value"),
        ({**GOOD, "meta": {"a b": (1,)}}, r'^\$\.meta\["a b"\]: a tuple is not a JSON value'),
        ({**GOOD, 3: 1}, r"^\$: object keys must be strings"),
        ({**GOOD, "tree": {"op": "sum", "args": [{"terminal": "wt"}]}},
         r"^\$\.tree\.op: operation 'sum' takes 2 argument"),
        ({**GOOD, "tree": {"op": "sum", "args": [{"terminal": "wt"}, {"terminal": "act_Q"}]}},
         r"^\$\.tree\.args\[1\]\.terminal: unknown terminal 'act_Q'"),
        ({**GOOD, "tree": {"op": "sign", "args": [{"terminal": "wt", "x": 1}]}},
         r"^\$\.tree\.args\[0\]: Additional properties"),
        ({**GOOD, "tree": {"op": "sign"}}, r"^\$\.tree: 'args' is a required property"),
        ({**GOOD, "tree": {"op": "sign", "args": []}}, r"^\$\.tree\.args: \[\] should be non-empty"),
        ({**GOOD, "tree": {"op": "sign", "args": [5]}}, r"^\$\.tree\.args\[0\]: 5 is not of type 'object'"),
        ({**GOOD, "tree": {"terminal": 5}}, r"^\$\.tree\.terminal: 5 is not of type 'string'"),
        ({**GOOD, "tree": {"terminal": "wt\n"}}, r"^\$\.tree\.terminal: unknown terminal"),
        ({**GOOD, "tree": {"op": "__import__('os').system('x')", "args": [{"terminal": "wt"}]}},
         r"^\$\.tree\.op: .* does not match"),
        ({**GOOD, "tree": {"op": "eval", "args": [{"terminal": "wt"}]}},
         r"^\$\.tree\.op: unknown operation 'eval'"),
        ({**GOOD, "formula": "sign(wt)"}, r"^\$\.formula: 'sign\(wt\)' does not describe the tree"),
        ({**GOOD, "formula": "lambda x: x"}, r"^\$\.formula: unexpected character ':' at position 8"),
        ({**GOOD, "name": "../../etc/passwd"}, r"^\$\.name: "),
        ({**GOOD, "terminal_set": "proxies", "tree": {"terminal": "__import__"}},
         r"^\$\.tree\.terminal: .* does not match"),
    ],
)
def test_program_from_json_rejects_with_one_line_and_path(doc, message):
    with pytest.raises(ProgramError, match=message) as info:
        program_from_json(doc)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, (EznasError, ValueError))


def test_defaults_and_formula_whitespace():
    doc = {k: v for k, v in GOOD.items()}
    p = program_from_json({**doc, "formula": " sum( act_D , sign( wt ) ) "})
    assert (p.to_scalar, p.terminal_set, p.name, p.meta) == ("mean", "statistics", None, {})


def test_program_from_json_copies_its_input():
    doc = json.loads(json.dumps(doc_of(Terminal("wt"), meta={"runs": [1, 2]})))
    p = program_from_json(doc)
    doc["meta"]["runs"].append(3)
    assert p.meta == {"runs": [1, 2]}


# --------------------------------------------------------------------------- hypothesis


def trees(ops: dict[str, Op] = OPS, leaves: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Node]:
    names = sorted(ops)
    leaf = (leaves if leaves is not None else st.sampled_from(TERMINALS)).map(Terminal)

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.sampled_from(names).flatmap(
            lambda name: st.tuples(*[children] * ops[name].arity).map(
                lambda args, name=name: Apply(name, args)))

    return st.recursive(leaf, extend, max_leaves=24)


PROXY_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: s not in PROXY_OPS and s not in {"and", "or", "not", "if", "in", "is", "as", "def",
                                               "del", "for", "try", "with", "from", "else",
                                               "elif", "pass", "None", "True", "False"})
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(tree=trees(), to_scalar=st.sampled_from(["mean", "l2"]))
def test_random_trees_round_trip_json(tree, to_scalar, tmp_path_factory):
    p = Program(tree, to_scalar=to_scalar)
    doc = program_to_json(p)
    assert not list(full_schema().iter_errors(doc))
    assert program_from_json(doc) == p
    assert program_from_json(json.loads(json.dumps(doc))) == p
    assert tree_from_json(tree_to_json(tree)) == tree
    path = tmp_path_factory.mktemp("rt") / "p.json"
    assert load_program(save_program(p, path)) == p


@SETTINGS
@given(tree=trees())
def test_random_trees_round_trip_formula_and_prefix(tree):
    assert parse_formula(tree.formula()) == tree
    assert parse_formula(tree.key()) == tree
    assert from_prefix(tree.to_prefix()) == tree
    assert len(tree.to_prefix()) == tree.size()
    validate_tree(tree)


@SETTINGS
@given(tree=trees(PROXY_OPS, PROXY_NAMES))
def test_random_proxy_trees_round_trip(tree):
    p = Program(tree, terminal_set="proxies")
    assert program_from_json(program_to_json(p), ops=PROXY_OPS) == p
    assert parse_formula(tree.formula(), ops=PROXY_OPS, terminals=None) == tree
    assert from_prefix(tree.to_prefix(), ops=PROXY_OPS, terminals=None) == tree


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    JSON_LEAVES,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


def _accepted_or_program_error(obj) -> None:
    try:
        p = program_from_json(obj)
    except ProgramError as e:
        assert "\n" not in str(e)
        return
    from eznas_store.programs.sequential import SequentialProgram

    assert isinstance(p, (Program, SequentialProgram))
    # whatever the node-by-node loader accepts, the (recursive) schema file accepts too
    assert not list(full_schema().iter_errors(obj))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=JSON)
def test_arbitrary_json_is_a_program_or_a_program_error(obj):
    _accepted_or_program_error(obj)


NAMES = st.sampled_from([*OPS, *TERMINALS, "foo", "Sum", "_x", "", *CODE_STRINGS]) | st.text(max_size=6)
NODE_JSON = st.recursive(
    st.fixed_dictionaries({"terminal": NAMES}) | JSON_LEAVES,
    lambda c: st.fixed_dictionaries({"op": NAMES, "args": st.lists(c, max_size=3)})
    | st.dictionaries(st.sampled_from(["op", "args", "terminal", "x"]), c | NAMES, max_size=3),
    max_leaves=12,
)
HEADER = {"format": st.just("eznas-program"), "version": st.just(1),
          "representation": st.just("tree")}
TREE_VARIANTS = st.fixed_dictionaries(
    {**HEADER, "tree": NODE_JSON | trees().map(tree_to_json)},
    optional={
        "to_scalar": st.sampled_from(["mean", "l2"]),
        "terminal_set": st.sampled_from(["statistics", "statistics", "proxies"]),
        "formula": trees().map(lambda t: t.formula()) | NAMES,
        "meta": st.dictionaries(st.text(max_size=5), JSON, max_size=3),
    },
)
FREE_VARIANTS = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["eznas-program", "eznas"]),
        "version": st.sampled_from([1, 1.0, 2, True, "1"]),
        "representation": st.sampled_from(["tree", "tree", "sequential", "graph"]),
    },
    optional={
        "tree": NODE_JSON | trees().map(tree_to_json),
        "to_scalar": st.sampled_from(["mean", "l2", "max", None]),
        "terminal_set": st.sampled_from(["statistics", "proxies", "x"]),
        "formula": NAMES | trees().map(lambda t: t.formula()),
        "name": st.sampled_from(["eznas-a", "a b", "", "x" * 200]) | st.text(max_size=6),
        "meta": JSON,
        "instructions": JSON | st.lists(st.lists(st.integers(-1, 40), max_size=5), max_size=3),
        "extra": JSON,
    },
)
NEAR_VALID = TREE_VARIANTS | FREE_VARIANTS


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=NEAR_VALID)
def test_near_valid_documents_are_a_program_or_a_program_error(obj):
    _accepted_or_program_error(obj)


@pytest.mark.parametrize("code", CODE_STRINGS)
def test_code_strings_are_rejected_everywhere(code):
    good = doc_of(parse_formula("sign(wt)"))
    for doc in (
        {**good, "tree": {"op": code, "args": [{"terminal": "wt"}]}},
        {**good, "tree": {"op": "sign", "args": [{"terminal": code}]}},
        {**good, "formula": code},
        {**good, "to_scalar": code},
        {**good, "representation": code},
        code,
    ):
        with pytest.raises(ProgramError):
            program_from_json(doc)
    with pytest.raises(ProgramError):
        from_prefix(["sign", code])
    proxies = {**good, "terminal_set": "proxies", "tree": {"op": "abs", "args": [{"terminal": code}]}}
    if code == "eval":  # any plain identifier names a proxy value; it is data, never run
        assert program_from_json(proxies).tree.terminal_names() == {"eval"}
    else:
        with pytest.raises(ProgramError):
            program_from_json(proxies)


@pytest.mark.parametrize(
    "name", ["__import__('os').system('x')", "lambda x: x", "a b", "../x", "", "x" * 129, "a\n"]
)
def test_labels_are_plain(name):
    with pytest.raises(ProgramError, match=r"^\$\.name: "):
        program_from_json({**GOOD, "name": name})


@pytest.mark.parametrize("name", ["sign(wt)\n", "wt\n", "wt "])
def test_names_with_trailing_whitespace_are_not_names(name):
    # JSON-schema "$" also matches before a final newline; the loader is stricter
    with pytest.raises(ProgramError):
        program_from_json({**GOOD, "tree": {"op": "sign", "args": [{"terminal": name}]}})
    with pytest.raises(ProgramError):
        from_prefix(["sign", name])
