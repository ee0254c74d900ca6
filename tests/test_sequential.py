"""Sequential programs: addresses, tracing to trees, dead code, variation, JSON, evaluation."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from eznas_store.errors import ProgramError
from eznas_store.evaluate.reference import evaluate_reference
from eznas_store.programs.ops import OPS_BY_ID
from eznas_store.programs.tree import MAX_DEPTH, MAX_NODES, Apply, Program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.codec import (
    SCHEMA_PATH,
    load_program,
    program_from_json,
    program_to_json,
    save_program,
)
from eznas_store.programs.sequential import (
    MAX_INSTRUCTIONS,
    N_ADDRESSES,
    OP_IDS,
    OUTPUT,
    SCALAR,
    SCALAR_OPS,
    STATIC,
    TENSOR,
    SequentialProgram,
    address_name,
    check_instructions,
    code_stats,
    from_tree,
)
from eznas_store.programs.sequential_variation import (
    insert_op,
    mate,
    mutate,
    mutate_op,
    mutate_op_arg,
    random_program,
    remove_op,
)
from eznas_store.terminals import TERMINALS

ID = {op.name: i for i, op in OPS_BY_ID.items()}
T = {name: i for i, name in enumerate(TERMINALS)}


def t(k: int) -> int:
    return TENSOR.start + k


def s(k: int) -> int:
    return SCALAR.start + k


EZNAS_A = SequentialProgram((
    (ID["sign"], t(0), T["inpactgrad_D"], 0),
    (ID["logdet_lastdims"], t(1), t(0), 0),
    (ID["sigmoid"], t(2), t(1), 0),
    (ID["frobenius"], s(0), t(2), 0),
))

SEEDS = st.integers(0, 2**32 - 1)
LIMITS = st.tuples(st.integers(1, 12), st.integers(0, 20)).map(lambda a: (a[0], a[0] + a[1]))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed(p: SequentialProgram) -> bool:
    """Every instruction writes an address of its op's type and reads addresses in range."""
    for op, w, r1, r2 in p.instructions:
        if op not in OPS_BY_ID or not (0 <= r1 < N_ADDRESSES and 0 <= r2 < N_ADDRESSES):
            return False
        if w not in (SCALAR if op in SCALAR_OPS else TENSOR):
            return False
    return True


# --------------------------------------------------------------------------- layout


def test_address_layout():
    assert (len(STATIC), len(TENSOR), len(SCALAR), N_ADDRESSES) == (22, 80, 20, 122)
    assert (STATIC.start, TENSOR.start, SCALAR.start, OUTPUT) == (0, 22, 102, 102)
    assert [address_name(a) for a in (0, 7, 21, 22, 101, 102, 121)] == [
        "wt", "inpactgrad_D", "actgrad_P", "t0", "t79", "s0", "s19"]
    assert OP_IDS == tuple(range(35))
    with pytest.raises(ValueError):
        address_name(122)


def _outputs(op_id: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(op_id)
    shapes = [(), (5,), (3, 3), (2, 3, 3), (2, 3, 4, 4), (4, 6)]
    outs = []
    for shape in shapes:
        a = torch.randn(shape, generator=g)
        args = (a, torch.randn(shape, generator=g).abs()) if OPS_BY_ID[op_id].arity == 2 else (a,)
        try:
            out = OPS_BY_ID[op_id].fn(*args)
        except Exception:  # noqa: BLE001 - an op that does not apply to this shape
            out = None
        if out is not None:
            outs.append(out)
    return outs


@pytest.mark.parametrize("op_id", OP_IDS)
def test_scalar_ops_are_exactly_those_returning_0d(op_id):
    outs = _outputs(op_id)
    assert outs
    if op_id in SCALAR_OPS:
        assert all(o.dim() == 0 for o in outs)
    else:  # some input gives a tensor that is not 0-d: it must not write a scalar address
        assert any(o.dim() > 0 for o in outs)


# --------------------------------------------------------------------------- tracing


def test_eznas_a_by_hand():
    named = NAMED_PROGRAMS["eznas-a"]
    assert EZNAS_A.formula() == named.formula()
    assert EZNAS_A.to_program().key() == named.key()
    assert EZNAS_A.to_program() == named
    assert EZNAS_A.live() == [0, 1, 2, 3]
    assert from_tree(named.tree) == EZNAS_A
    assert from_tree(named.tree).formula() == named.formula()


def test_to_program_keeps_labels():
    p = SequentialProgram(EZNAS_A.instructions, to_scalar="l2", name="seq-a", meta={"g": 3})
    q = p.to_program()
    assert isinstance(q, Program)
    assert (q.to_scalar, q.terminal_set, q.name, q.meta) == ("l2", "statistics", "seq-a", {"g": 3})


def test_dead_code_overwrites_and_unary_read_two():
    p = SequentialProgram((
        (ID["relu"], t(0), T["act_D"], 121),       # 0 live; read 2 (s19, unwritten) ignored
        (ID["frobenius"], s(0), t(0), 0),          # 1 dead: s0 is overwritten by 4
        (ID["sign"], t(5), t(9), 0),               # 2 dead, and reads unwritten t9: harmless
        (ID["product"], t(1), t(0), T["wt"]),      # 3 live
        (ID["l1_norm"], s(0), t(1), 50),           # 4 live, the last write of s0
        (ID["sum"], t(0), t(1), t(1)),             # 5 dead: written after its last use
    ))
    assert p.live() == [0, 3, 4]
    assert p.formula() == "l1_norm(product(relu(act_D), wt))"
    assert p.is_valid() and p.invalid_reason() is None
    listing = p.listing().splitlines()
    assert listing[4] == "  4  s0 = l1_norm(t1)"
    assert [("# dead" in line) for line in listing] == [False, True, True, False, False, True]
    st_ = code_stats([p, EZNAS_A], max_len=6)
    assert st_["n"] == 2 and st_["mean_length"] == 5.0 and st_["mean_live_length"] == 3.5
    assert st_["dead_code_fraction"] == pytest.approx((3 / 6 + 0) / 2)
    assert st_["with_dead_code"] == 0.5 and st_["at_max_length"] == 0.5 and st_["invalid"] == 0.0
    assert code_stats([])["n"] == 0 and math.isnan(code_stats([])["mean_length"])


def test_values_read_twice_are_one_shared_subtree():
    p = SequentialProgram((
        (ID["sign"], t(0), T["wt"], 0),
        (ID["sum"], t(1), t(0), t(0)),
        (ID["cosine"], s(0), t(1), T["wt"]),
    ))
    tree = p.to_tree()
    assert tree.formula() == "cosine(sum(sign(wt), sign(wt)), wt)"
    inner = tree.args[0]
    assert isinstance(inner, Apply) and inner.args[0] is inner.args[1]
    assert tree.args[1] is inner.args[0].args[0]  # one Terminal object per statistic
    assert p.to_tree() is tree  # traced once


def test_invalid_programs_raise_program_error_with_a_reason():
    never = SequentialProgram(((ID["sign"], t(0), T["wt"], 0), (ID["frobenius"], s(1), t(0), 0)))
    assert not never.is_valid() and never.live() == []
    with pytest.raises(ProgramError, match=r"output address s0 \(102\) is never written"):
        never.to_tree()
    unwritten = SequentialProgram(((ID["sign"], t(0), T["wt"], 0), (ID["hamming"], s(0), t(0), t(3))))
    assert unwritten.live() == [0, 1]
    with pytest.raises(ProgramError, match=r"instruction 1 reads t3 \(address 25\), which no earlier"):
        unwritten.to_program()
    later = SequentialProgram(((ID["frobenius"], s(0), t(0), 0), (ID["sign"], t(0), T["wt"], 0)))
    with pytest.raises(ProgramError, match="instruction 0 reads t0"):
        later.formula()
    assert code_stats([never, unwritten, EZNAS_A])["invalid"] == pytest.approx(2 / 3)


def test_tree_limits_are_a_clean_program_error():
    # sum(x, x) doubled 40 times: 2**41 nodes expanded, 42 instructions
    code = [(ID["sign"], t(0), T["wt"], 0)] + [(ID["sum"], t(0), t(0), t(0))] * 40
    code.append((ID["frobenius"], s(0), t(0), 0))
    p = SequentialProgram(tuple(code))
    assert p.live() == list(range(42))
    with pytest.raises(ProgramError, match=rf"nodes, more than the limit of {MAX_NODES}"):
        p.to_tree()
    deep = [(ID["sign"], t(0), T["wt"], 0)] + [(ID["sign"], t(0), t(0), 0)] * MAX_DEPTH
    deep.append((ID["frobenius"], s(0), t(0), 0))
    with pytest.raises(ProgramError, match=rf"depth {MAX_DEPTH + 2}, more than the limit of {MAX_DEPTH}"):
        SequentialProgram(tuple(deep)).to_tree()
    at_limit = SequentialProgram(tuple(deep[:1] + deep[3:]))  # sign(wt), 62 signs, frobenius: depth 64
    assert at_limit.to_tree().depth() == MAX_DEPTH


def test_from_tree_shares_subtrees_and_rejects_non_scalar_roots():
    tree = parse_formula("cosine(sum(sign(wt), sign(wt)), l1_norm(sign(wt)))")
    p = from_tree(tree, to_scalar="l2", name="ft")
    assert p.to_tree() == tree and len(p) == 4 and (p.to_scalar, p.name) == ("l2", "ft")
    for bad in ("sign(wt)", "wt"):
        with pytest.raises(ProgramError, match="root must be one of"):
            from_tree(parse_formula(bad))


def test_identity_pickle_and_key():
    a = SequentialProgram(EZNAS_A.instructions, name="a", meta={"f": 1})
    assert a == EZNAS_A and hash(a) == hash(EZNAS_A)
    assert a != SequentialProgram(EZNAS_A.instructions, to_scalar="l2")
    assert EZNAS_A.key() == "sequential/statistics/mean:14,22,7,0;34,23,22,0;28,24,23,0;17,102,24,0"
    _ = a.to_tree()
    b = pickle.loads(pickle.dumps(a))
    assert b == a and b.name == "a" and b.meta == {"f": 1} and b.formula() == a.formula()
    assert a.with_meta(g=2).meta == {"f": 1, "g": 2}
    # lists are accepted and stored as tuples
    c = SequentialProgram([list(i) for i in EZNAS_A.instructions])
    assert c == EZNAS_A and isinstance(c.instructions[0], tuple)


@pytest.mark.parametrize(
    "instructions, match",
    [
        ((), r"at least 1 instruction"),
        (((35, t(0), 0, 0),), r"\[0\]\[0\]: unknown operation id 35"),
        (((-1, t(0), 0, 0),), r"unknown operation id -1"),
        (((ID["frobenius"], t(0), 0, 0),), r"\[0\]\[1\]: frobenius \(op 17\) returns a 0-d tensor: its write address must be a scalar address 102..121, got 22"),
        (((ID["sign"], s(0), 0, 0),), r"\[0\]\[1\]: sign \(op 14\) returns a tensor: its write address must be a tensor address 22..101"),
        (((ID["sign"], 3, 0, 0),), r"write address must be a tensor address"),
        (((ID["sign"], t(0), 122, 0),), r"\[0\]\[2\]: read address 122 is outside 0..121"),
        (((ID["sign"], t(0), 0, -1),), r"\[0\]\[3\]: read address -1"),
        (((ID["sign"], t(0), 0),), r"\[0\]: an instruction is \[op id"),
        (((ID["sign"], t(0), True, 0),), r"\[0\]\[2\]: expected an integer, got True"),
        (((ID["sign"], t(0), 1.5, 0),), r"expected an integer, got 1.5"),
        (((ID["sign"], t(0), "wt", 0),), r"expected an integer"),
        ("abcd", r"expected a list of instructions"),
        (((ID["sign"], t(0), 0, 0),) * (MAX_INSTRUCTIONS + 1), r"more than the limit of 10000"),
    ],
)
def test_structural_checks(instructions, match):
    with pytest.raises(ProgramError, match=match):
        SequentialProgram(instructions)
    with pytest.raises(ProgramError, match=r"^\$\.instructions"):
        check_instructions(instructions)


def test_labels_are_checked():
    with pytest.raises(ProgramError, match="to_scalar"):
        SequentialProgram(EZNAS_A.instructions, to_scalar="max")
    with pytest.raises(ProgramError, match="addresses the 22 statistics"):
        SequentialProgram(EZNAS_A.instructions, terminal_set="proxies")
    with pytest.raises(ProgramError, match="invalid program name"):
        SequentialProgram(EZNAS_A.instructions, name="a b")


# --------------------------------------------------------------------------- variation


@FAST
@given(seed=SEEDS, limits=LIMITS)
def test_random_programs_are_valid_typed_and_within_limits(seed, limits):
    lo, hi = limits
    p = random_program(random.Random(seed), min_len=lo, max_len=hi)
    assert lo <= len(p) <= hi and typed(p)
    assert p.instructions[-1][1] == OUTPUT and p.instructions[-1][0] in SCALAR_OPS
    assert p.is_valid() or "limit" in (p.invalid_reason() or "")
    assert len(p) - 1 in p.live()
    assert p == random_program(random.Random(seed), min_len=lo, max_len=hi)


VARIATIONS = [insert_op, remove_op, mutate_op, mutate_op_arg, mutate]


@FAST
@given(seed=SEEDS, limits=LIMITS, op=st.sampled_from(VARIATIONS))
def test_variation_keeps_typing_and_limits_and_is_deterministic(seed, limits, op):
    lo, hi = limits
    rng = random.Random(seed)
    p = random_program(rng, min_len=lo, max_len=hi).with_meta(fitness=0.5)
    state = rng.getstate()
    q = op(p, rng, min_len=lo, max_len=hi)
    rng.setstate(state)
    assert op(p, rng, min_len=lo, max_len=hi) == q  # same rng state, same child
    assert isinstance(q, SequentialProgram) and typed(q) and lo <= len(q) <= hi
    assert q.meta == {} and q.name is None and q.to_scalar == p.to_scalar
    assert p.meta == {"fitness": 0.5}  # the parent is untouched
    if op is insert_op:
        assert len(q) == min(len(p) + 1, hi)
        # an inserted instruction only reads addresses written before it
        assert q.is_valid() or "limit" in (q.invalid_reason() or "")
    elif op is remove_op:
        assert len(q) == max(len(p) - 1, lo)
    elif op in (mutate_op, mutate_op_arg):
        assert len(q) == len(p) and q != p
        assert sum(a != b for a, b in zip(p.instructions, q.instructions)) == 1
    else:
        assert q != p or len(p) == lo == hi


@FAST
@given(seed=SEEDS, limits=LIMITS)
def test_mate_is_one_point_crossover(seed, limits):
    lo, hi = limits
    rng = random.Random(seed)
    a = random_program(rng, min_len=lo, max_len=hi)
    b = random_program(rng, min_len=lo, max_len=hi, to_scalar="l2")
    state = rng.getstate()
    c, d = mate(a, b, rng, min_len=lo, max_len=hi)
    rng.setstate(state)
    assert mate(a, b, rng, min_len=lo, max_len=hi) == (c, d)
    assert (len(c), len(d)) == ((len(b), len(a)) if min(len(a), len(b)) >= 2 else (len(a), len(b)))
    assert typed(c) and typed(d) and lo <= len(c) <= hi and lo <= len(d) <= hi
    assert (c.to_scalar, d.to_scalar) == ("mean", "l2")
    if min(len(a), len(b)) >= 2:
        # some cut k in 1..min-1 explains both children
        assert any(
            c.instructions == a.instructions[:j] + b.instructions[j:]
            and d.instructions == b.instructions[:j] + a.instructions[j:]
            for j in range(1, min(len(a), len(b)))
        )
    else:
        assert (c, d) == (a, b)


def test_module_random_works_as_the_rng():
    random.seed(7)
    p = mutate(random_program(random, min_len=2, max_len=10), random, min_len=2, max_len=10)
    random.seed(7)
    assert mutate(random_program(random, min_len=2, max_len=10), random, min_len=2, max_len=10) == p


def test_mutate_picks_only_applicable_operators():
    p = SequentialProgram(((ID["frobenius"], s(0), 0, 0),))
    rng = random.Random(1)
    for _ in range(30):  # at min_len == max_len == 1 only MutateOP/MutateOPArg apply
        q = mutate(p, rng, min_len=1, max_len=1)
        assert len(q) == 1 and q != p
    with pytest.raises(ValueError):
        mutate(p, rng, min_len=3, max_len=2)


def test_mutate_op_retypes_the_write_address():
    p = SequentialProgram(((ID["frobenius"], s(0), T["wt"], T["act_D"]),))
    rng = random.Random(3)
    seen = set()
    for _ in range(200):
        (op, w, r1, r2), = mutate_op(p, rng).instructions
        assert (r1, r2) == (T["wt"], T["act_D"])
        assert w in (SCALAR if op in SCALAR_OPS else TENSOR)
        assert op in SCALAR_OPS or w != s(0)
        seen.add(op in SCALAR_OPS)
    assert seen == {True, False}


def test_code_stats_report_bloat():
    rng = random.Random(0)
    pop = [random_program(rng, min_len=4, max_len=8) for _ in range(50)]
    st_ = code_stats(pop, max_len=8)
    assert 4 <= st_["mean_length"] <= 8 and 1 <= st_["mean_live_length"] <= st_["mean_length"]
    assert 0 < st_["at_max_length"] < 1 and st_["invalid"] == 0.0
    assert 0 <= st_["dead_code_fraction"] <= 1 and 0 <= st_["with_dead_code"] <= 1


# --------------------------------------------------------------------------- JSON


def _schema() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def test_json_round_trip(tmp_path: Path):
    p = SequentialProgram(EZNAS_A.instructions, to_scalar="l2", name="seq-a",
                          meta={"fitness": {"kendall_tau": 0.6}, "generation": 3})
    doc = program_to_json(p)
    assert doc == {
        "format": "eznas-program", "version": 1, "representation": "sequential", "name": "seq-a",
        "to_scalar": "l2", "terminal_set": "statistics",
        "instructions": [[14, 22, 7, 0], [34, 23, 22, 0], [28, 24, 23, 0], [17, 102, 24, 0]],
        "meta": {"fitness": {"kendall_tau": 0.6}, "generation": 3},
    }
    assert not list(_schema().iter_errors(doc))
    back = program_from_json(json.loads(json.dumps(doc)))
    assert isinstance(back, SequentialProgram) and back == p
    assert (back.name, back.meta) == ("seq-a", p.meta)
    path = save_program(p, tmp_path / "seq.json")
    loaded = load_program(path)
    assert loaded == p and loaded.meta == p.meta
    # an invalid-but-well-formed program (s0 never written) still saves and loads
    q = SequentialProgram(((ID["sign"], t(0), 0, 0),))
    assert load_program(save_program(q, tmp_path / "q.json")) == q
    # defaults and integral floats (JSON Schema integers)
    minimal = {"format": "eznas-program", "version": 1, "representation": "sequential",
               "instructions": [[17.0, 102, 0, 0]]}
    assert program_from_json(minimal) == SequentialProgram(((17, 102, 0, 0),))


@FAST
@given(seed=SEEDS)
def test_json_round_trip_of_random_programs(seed):
    p = random_program(random.Random(seed), min_len=1, max_len=30)
    doc = program_to_json(p)
    assert not list(_schema().iter_errors(doc))
    assert program_from_json(json.loads(json.dumps(doc))) == p


GOOD = {"format": "eznas-program", "version": 1, "representation": "sequential",
        "instructions": [[14, 22, 7, 0], [17, 102, 22, 0]]}


@pytest.mark.parametrize(
    "doc, match",
    [
        ({**GOOD, "instructions": []}, r"^\$\.instructions: "),
        ({**GOOD, "instructions": [[14, 22, 7]]}, r"^\$\.instructions\[0\]: "),
        ({**GOOD, "instructions": [[14, 22, 7, 0, 1]]}, r"^\$\.instructions\[0\]: "),
        ({**GOOD, "instructions": [[14, 22, 7, 0], [99, 102, 0, 0]]}, r"^\$\.instructions\[1\]\[0\]: unknown operation id 99"),
        ({**GOOD, "instructions": [[14, 102, 7, 0]]}, r"^\$\.instructions\[0\]\[1\]: sign \(op 14\) returns a tensor"),
        ({**GOOD, "instructions": [[17, 22, 7, 0]]}, r"^\$\.instructions\[0\]\[1\]: frobenius"),
        ({**GOOD, "instructions": [[14, 22, 7, 500]]}, r"^\$\.instructions\[0\]\[3\]: read address 500"),
        ({**GOOD, "instructions": [[14, 22, -7, 0]]}, r"^\$\.instructions\[0\]\[2\]: "),
        ({**GOOD, "instructions": [[14, 22, 7, 0.5]]}, r"^\$\.instructions\[0\]\[3\]: "),
        ({**GOOD, "instructions": [[14, 22, "__import__('os')", 0]]}, r"^\$\.instructions\[0\]\[2\]: "),
        ({**GOOD, "instructions": [[14, 22, True, 0]]}, r"^\$\.instructions\[0\]\[2\]: "),
        ({**GOOD, "instructions": [[14, 22, 7, 0]] * 10001}, r"^\$\.instructions: "),
        ({**GOOD, "instructions": "sign(wt)"}, r"^\$\.instructions: "),
        ({**GOOD, "terminal_set": "proxies"}, r"^\$\.terminal_set: the sequential representation"),
        ({**GOOD, "formula": "sign(wt)"}, r"^\$\.formula: not allowed in this representation"),
        ({**GOOD, "tree": {"terminal": "wt"}}, r"^\$\.tree: not allowed in this representation"),
        ({**GOOD, "to_scalar": "max"}, r"^\$\.to_scalar: "),
        ({**GOOD, "name": "a b"}, r"^\$\.name: "),
        ({**GOOD, "meta": {"x": math.inf}}, r"^\$\.meta\.x: "),
        ({k: v for k, v in GOOD.items() if k != "instructions"}, r"^\$: "),
    ],
)
def test_bad_sequential_documents(doc, match):
    with pytest.raises(ProgramError, match=match):
        program_from_json(doc)


INTS = st.integers(-3, 130) | st.sampled_from([True, 1.5, 2.0, None, "1", 10**30])
INSTRUCTION = st.lists(INTS, min_size=0, max_size=5) | st.tuples(
    st.sampled_from(OP_IDS), st.integers(20, 125), st.integers(-1, 123), st.integers(-1, 123)).map(list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instructions=st.lists(INSTRUCTION, max_size=6) | st.none() | st.text(max_size=3) | st.integers(),
       extra=st.fixed_dictionaries({}, optional={
           "to_scalar": st.sampled_from(["mean", "l2", "x"]),
           "terminal_set": st.sampled_from(["statistics", "proxies"]),
           "name": st.sampled_from(["ok", "a b"])}))
def test_arbitrary_instructions_are_a_program_or_a_program_error(instructions, extra):
    doc = {**GOOD, **extra, "instructions": instructions}
    try:
        p = program_from_json(doc)
    except ProgramError as e:
        assert "\n" not in str(e) and str(e).startswith("$")
        return
    assert isinstance(p, SequentialProgram) and typed(p)
    assert not list(_schema().iter_errors(doc))
    try:  # tracing never raises anything but ProgramError
        p.to_tree()
    except ProgramError:
        assert not p.is_valid()


# --------------------------------------------------------------------------- evaluation


def test_evaluation_matches_a_hand_computed_value():
    # s0 = frobenius(act_D - wt), plus dead code that reads nothing written
    p = SequentialProgram((
        (ID["difference"], t(0), T["act_D"], T["wt"]),
        (ID["sign"], t(7), t(40), 0),                 # dead
        (ID["frobenius"], s(0), t(0), 0),
        (ID["normalized_sum"], s(1), t(7), 0),        # dead
    ))
    assert p.live() == [0, 2]
    blocks = [
        [{"act_D": torch.tensor([[3.0, 0.0]]), "wt": torch.tensor([[0.0, -4.0]])},   # 5
         {"act_D": torch.tensor([[1.0, 1.0]]), "wt": torch.tensor([[1.0, 0.0]])}],   # 1
        [{"act_D": torch.tensor([[0.0, 0.0]]), "wt": torch.tensor([[6.0, 8.0]])}],   # 10
    ]
    scores = evaluate_reference(p.to_program(), blocks)
    assert np.allclose(scores, [3.0, 10.0])
    # l2 of a 0-d output is its absolute value: same scores here
    l2 = SequentialProgram(p.instructions, to_scalar="l2").to_program()
    assert np.allclose(evaluate_reference(l2, blocks), [3.0, 10.0])
    # a value read twice: cosine(t, t) of one row is 1, minus l1_norm
    q = SequentialProgram((
        (ID["relu"], t(0), T["act_D"], 0),
        (ID["cosine"], s(1), t(0), t(0)),
        (ID["l1_norm"], s(2), T["wt"], 0),
        (ID["difference"], t(1), s(1), s(2)),
        (ID["normalized_sum"], s(0), t(1), 0),
    ))
    assert q.formula() == "normalized_sum(difference(cosine(relu(act_D), relu(act_D)), l1_norm(wt)))"
    assert np.allclose(evaluate_reference(q.to_program(), blocks[:1]), [((1 - 2) + (1 - 0.5)) / 2])
