"""The population evaluator against the reference evaluator, and by hand."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eznas_store.evaluate.chunk import BlockGroup, Chunk
from eznas_store.errors import CorruptChunkError, UnknownNameError
from eznas_store.evaluate.keys import node_key
from eznas_store.evaluate.population import ChunkScores, evaluate_population, merge_chunk_scores
from eznas_store.evaluate.reference import evaluate_reference
from eznas_store.evaluate.shapes import shape_rule as _rule
from eznas_store.programs.ops import OPS, Op
from eznas_store.programs.tree import Apply, Program, Terminal
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.evaluate.synthetic import synthetic_chunk
from eznas_store.terminals import TERMINALS

OP_NAMES = sorted(OPS)


def prog(formula: str, to_scalar: str = "mean", ops=None) -> Program:
    tree = parse_formula(formula) if ops is None else parse_formula(formula, ops=ops)
    return Program(tree, to_scalar=to_scalar)


def all_blocks(chunk: Chunk) -> list[list[dict[str, torch.Tensor]]]:
    return [chunk.network_blocks(i) for i in range(chunk.n_networks)]


def assert_agree(fast: np.ndarray, ref: np.ndarray, what: object = "") -> None:
    assert np.array_equal(np.isnan(fast), np.isnan(ref)), f"NaN pattern differs for {what}: {fast} vs {ref}"
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=str(what))


def hand_chunk(members: list[tuple[str, int, int, dict[str, torch.Tensor]]],
               n_blocks: list[int], network_ids: list[int] | None = None) -> Chunk:
    """A chunk from (group name, network, block, {terminal: tensor}) members.

    Terminals not given are zeros shaped like ``wt``.
    """
    by_group: dict[str, list[tuple[int, int, dict[str, torch.Tensor]]]] = {}
    for gname, net, blk, terms in members:
        by_group.setdefault(gname, []).append((net, blk, terms))
    groups = []
    for rows in by_group.values():
        like = rows[0][2]["wt"]
        stacked = {
            t: torch.stack([r[2].get(t, torch.zeros_like(like)) for r in rows]) for t in TERMINALS
        }
        groups.append(BlockGroup(
            network=torch.tensor([r[0] for r in rows]),
            block=torch.tensor([r[1] for r in rows]),
            terminals=stacked,
        ))
    ids = np.arange(len(n_blocks)) if network_ids is None else np.array(network_ids)
    return Chunk(network_ids=ids, n_blocks=np.array(n_blocks), groups=groups)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Single-threaded kernels: small tensors gain nothing from threads, and on a busy
    2-core machine OpenMP threads waiting on each other make these tests many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> Chunk:
    return synthetic_chunk(4, seed=3, channels=(2, 4, 8), image_size=8, cells_per_stage=1,
                           dtype=torch.float64)


@pytest.fixture(scope="module")
def tiny_blocks(tiny: Chunk) -> list[list[dict[str, torch.Tensor]]]:
    return all_blocks(tiny)


# ----------------------------------------------------------------------------- by hand
def test_scatter_mean_by_hand() -> None:
    # network 7: blocks 0, 1, 2; network 9: blocks 0, 1; group A interleaves both
    w = {
        (0, 0): torch.tensor([[1.0, 2.0], [3.0, 4.0]]),  # mean 2.5
        (0, 2): torch.tensor([[4.0, 4.0], [4.0, 4.0]]),  # mean 4
        (1, 1): torch.tensor([[1.0, 0.0], [3.0, 0.0]]),  # mean 1
        (0, 1): torch.tensor([10.0, 10.0, 10.0]),  # mean 10
        (1, 0): torch.tensor([-2.0, -4.0, 0.0]),  # mean -2
    }
    chunk = hand_chunk(
        [("A", 0, 0, {"wt": w[0, 0]}), ("A", 1, 1, {"wt": w[1, 1]}), ("A", 0, 2, {"wt": w[0, 2]}),
         ("B", 1, 0, {"wt": w[1, 0]}), ("B", 0, 1, {"wt": w[0, 1]})],
        n_blocks=[3, 2], network_ids=[7, 9],
    )
    mean = evaluate_population([prog("wt")], chunk)
    np.testing.assert_allclose(mean.scores[0], [(2.5 + 10 + 4) / 3, (-2 + 1) / 2])
    assert mean.reasons == [None]
    assert list(mean.network_ids) == [7, 9]
    l2 = evaluate_population([prog("wt")], chunk, to_scalar="l2")
    n = lambda t: float(torch.linalg.vector_norm(t))  # noqa: E731
    np.testing.assert_allclose(
        l2.scores[0],
        [(n(w[0, 0]) + n(w[0, 1]) + n(w[0, 2])) / 3, (n(w[1, 0]) + n(w[1, 1])) / 2],
    )
    # the program's own to_scalar is the default
    own = evaluate_population([prog("wt", "l2"), prog("wt")], chunk)
    np.testing.assert_allclose(own.scores, np.stack([l2.scores[0], mean.scores[0]]))
    for max_group in (1, 2, 64):
        again = evaluate_population([prog("wt"), prog("abs(wt)", "l2")], chunk, max_group=max_group)
        np.testing.assert_allclose(again.scores[0], mean.scores[0])
        np.testing.assert_allclose(again.scores[1], l2.scores[0])


def test_failure_in_one_block_invalidates_only_its_network() -> None:
    ok = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    zero = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    chunk = hand_chunk(
        [("A", 0, 0, {"wt": ok}), ("A", 0, 1, {"wt": zero}), ("A", 1, 0, {"wt": ok * 2})],
        n_blocks=[2, 1], network_ids=[17, 18],
    )
    res = evaluate_population([prog("invert(wt)"), prog("sigmoid(invert(wt))")], chunk)
    assert math.isnan(res.scores[0, 0])
    np.testing.assert_allclose(res.scores[0, 1], float((1 / (ok * 2)).mean()))
    assert res.reasons[0] == "invert: Inf at block 1 of network 17"
    # an Inf inside the tree is fine when the block's scalar is finite (EZNAS-A relies on it)
    expect0 = (torch.sigmoid(1 / ok).mean() + torch.sigmoid(1 / zero).mean()) / 2
    np.testing.assert_allclose(res.scores[1], [float(expect0), float(torch.sigmoid(1 / (ok * 2)).mean())])
    assert res.reasons[1] is None
    ref, why = evaluate_reference(prog("invert(wt)"), all_blocks(chunk), return_reason=True)
    assert_agree(res.scores[0], ref)
    assert why == "invert: Inf at block 1 of network 0"  # the reference names positions


def test_singular_matrices_and_logdet() -> None:
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    singular = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    chunk = hand_chunk(
        [("A", 0, 0, {"wt": a, "act_D": a}), ("A", 1, 0, {"wt": singular, "act_D": a}),
         ("A", 2, 0, {"wt": a, "act_D": singular})],
        n_blocks=[1, 1, 1],
    )
    programs = [prog("logdet_lastdims(wt)"), prog("sigmoid(logdet_lastdims(wt))"),
                prog("det(wt)"), prog("invert(det(act_D))"), prog("logdet(act_D)")]
    res = evaluate_population(programs, chunk)
    ld = math.log(5.0)
    np.testing.assert_allclose(res.scores[0, [0, 2]], [ld, ld])
    assert math.isnan(res.scores[0, 1])  # logdet of a singular matrix is -inf
    assert res.reasons[0] == "logdet_lastdims: Inf at block 0 of network 1"
    np.testing.assert_allclose(res.scores[1], [1 / (1 + math.exp(-ld)), 0.0, 1 / (1 + math.exp(-ld))])
    np.testing.assert_allclose(res.scores[2], [5.0, 0.0, 5.0], atol=1e-6)
    assert np.isnan(res.scores[3, 2]) and not np.isnan(res.scores[3, :2]).any()
    for p, row in zip(programs, res.scores):
        assert_agree(row, evaluate_reference(p, all_blocks(chunk)), p.formula())


def test_shape_failure_in_one_group_only() -> None:
    square = torch.ones(3, 3)
    wide = torch.ones(2, 3)
    chunk = hand_chunk(
        [("A", 0, 0, {"wt": square}), ("A", 1, 0, {"wt": square * 2}),
         ("B", 1, 1, {"wt": wide})],
        n_blocks=[1, 2],
    )
    res = evaluate_population([prog("matmul(wt,wt)"), prog("det(wt)"), prog("frobenius(wt)")], chunk)
    np.testing.assert_allclose(res.scores[0, 0], 3.0)
    assert np.isnan(res.scores[:2, 1]).all()
    assert res.reasons[0].startswith("matmul raised RuntimeError") and "network 1" in res.reasons[0]
    assert res.reasons[1].startswith("det raised")
    assert not np.isnan(res.scores[2]).any()
    assert res.stats["node_evaluations"] >= 1
    for p, row in zip([prog("matmul(wt,wt)"), prog("det(wt)")], res.scores):
        assert_agree(row, evaluate_reference(p, all_blocks(chunk)))


def test_non_finite_member_is_invalid_alone() -> None:
    """A NaN matrix makes symeig_ratio NaN for that member only (LAPACK never sees it)."""
    a = torch.eye(4) + 0.1
    nan = a.clone()
    nan[0, 0] = float("nan")
    members = [("A", i, 0, {"wt": a + i}) for i in range(6)]
    members[3] = ("A", 3, 0, {"wt": nan})
    chunk = hand_chunk(members, n_blocks=[1] * 6)
    p = prog("symeig_ratio(wt)")
    res = evaluate_population([p, prog("numel(symeig_ratio(wt))")], chunk)
    bad = np.isnan(res.scores)
    assert bad[0, 3] and not bad[0, [0, 1, 2, 4, 5]].any()
    assert not bad[1].any()  # numel of a NaN tensor is still 4 elements' count
    assert "network 3" in res.reasons[0]
    assert_agree(res.scores[0], evaluate_reference(p, all_blocks(chunk)))


def _picky(a: torch.Tensor) -> torch.Tensor:
    """Raises for blocks whose sum is positive: data-dependent Python control flow."""
    if float(a.sum()) > 0:
        raise ValueError("positive sum")
    return a * 2


@pytest.mark.parametrize("vmappable", [True, False])
def test_custom_op_fallback_loop(vmappable: bool) -> None:
    ops = dict(OPS)
    ops["picky"] = Op(99, "picky", 1, _picky, "test op", vmappable=vmappable)
    signs = [1, -1, -1, 1, -1, 1, -1]
    members = [("A", i, 0, {"wt": s * (i + 1) * torch.ones(2, 2), "act_D": torch.ones(2, 2)})
               for i, s in enumerate(signs)]
    members.append(("B", 0, 1, {"wt": -torch.ones(3), "act_D": torch.ones(3)}))
    chunk = hand_chunk(members, n_blocks=[2] + [1] * 6)
    programs = [prog("sigmoid(picky(wt))", ops=ops), prog("sum(picky(wt),act_D)", ops=ops),
                prog("picky(difference(zeros_like(act_D),wt))", ops=ops)]
    for max_group in (2, 64):
        res = evaluate_population(programs, chunk, ops=ops, max_group=max_group)
        assert res.stats["member_loops"] >= 1
        for p, row in zip(programs, res.scores):
            assert_agree(row, evaluate_reference(p, all_blocks(chunk), ops=ops), p.formula())
        positive = np.array(signs) > 0
        assert np.array_equal(np.isnan(res.scores[0]), positive)
        # network 0's second block (group B) has wt = -1: 0 - wt > 0 raises there
        assert np.array_equal(np.isnan(res.scores[2]), ~positive | (np.arange(7) == 0))
        assert res.reasons[0] == "picky raised ValueError: positive sum at block 0 of network 0"


def test_eznas_a_matches_reference() -> None:
    chunk = synthetic_chunk(3, seed=5, channels=(4, 8, 16), image_size=16, cells_per_stage=2)
    p = NAMED_PROGRAMS["eznas-a"]
    res = evaluate_population([p], chunk)
    assert not np.isnan(res.scores).any()
    assert_agree(res.scores[0], evaluate_reference(p, all_blocks(chunk)))


def test_shape_only_ops_skip_their_subtree(tiny: Chunk, tiny_blocks) -> None:
    programs = [prog("numel(eig_ratio(matmul(act_D,act_D)))"),
                prog("sum(ones_like(invert(wt)),zeros_like(exp(wt)))"),
                prog("numel(symeig_ratio(inpact_D))")]  # symeig may raise: evaluated
    res = evaluate_population(programs, tiny)
    assert res.stats["shape_only"] >= 1
    for p, row in zip(programs, res.scores):
        assert_agree(row, evaluate_reference(p, tiny_blocks), p.formula())
    np.testing.assert_allclose(res.scores[1], 1.0)


def test_unknown_terminal_and_bad_counts(tiny: Chunk) -> None:
    with pytest.raises(UnknownNameError):
        evaluate_population([Program(Terminal("synflow"), terminal_set="proxies")], tiny)
    broken = Chunk(network_ids=tiny.network_ids, n_blocks=tiny.n_blocks + 1, groups=tiny.groups)
    with pytest.raises(CorruptChunkError, match="n_blocks"):
        evaluate_population([prog("wt")], broken)


def test_empty_population_and_merge(tiny: Chunk) -> None:
    empty = evaluate_population([], tiny)
    assert empty.scores.shape == (0, tiny.n_networks)
    a = evaluate_population([prog("wt"), prog("invert(zeros_like(wt))")], tiny)
    b = ChunkScores(network_ids=np.array([100]), scores=np.array([[1.0], [2.0]]),
                    reasons=[None, None], stats={"vmap_calls": 1})
    m = merge_chunk_scores([a, b])
    assert m.scores.shape == (2, tiny.n_networks + 1)
    assert list(m.network_ids[-1:]) == [100]
    assert m.reasons[0] is None and m.reasons[1].startswith("invert: Inf")


def test_node_key_orders_commutative_args() -> None:
    a, b = Terminal("wt"), Terminal("act_D")
    assert node_key(Apply("sum", (a, b))) == node_key(Apply("sum", (b, a)))
    assert node_key(Apply("difference", (a, b))) != node_key(Apply("difference", (b, a)))
    assert node_key(Apply("equal", (a, b))) != node_key(Apply("equal", (b, a)))


def test_shared_subtrees_are_computed_once(tiny: Chunk, tiny_blocks) -> None:
    shared = "normalize(sigmoid(product(wtgrad_D,wtgrad_N)))"
    programs = [prog(f"abs({shared})"), prog(f"relu({shared})"), prog(shared, "l2"),
                prog(f"sum({shared},wt)"), prog(f"sum(wt,{shared})")]
    one = evaluate_population(programs, tiny, max_group=10_000)
    n_groups = len(tiny.groups)
    # unique op nodes: normalize, sigmoid, product, abs, relu, sum
    assert one.stats["unique_nodes"] == 6
    assert one.stats["node_evaluations"] == 6 * n_groups
    for p, row in zip(programs, one.scores):
        assert_agree(row, evaluate_reference(p, tiny_blocks), p.formula())


def test_peak_memory_is_bounded() -> None:
    # one group of 64 blocks with 16x32x32 activations: 4 MiB per intermediate tensor
    g = 64
    gen = torch.Generator().manual_seed(0)
    terms = {t: torch.randn(g, 1, 1, 1, 1, generator=gen) for t in TERMINALS}
    for t in ("act_D", "act_N", "act_P"):
        terms[t] = torch.randn(g, 1, 16, 32, 32, generator=gen)
    chunk = Chunk(network_ids=np.arange(g), n_blocks=np.ones(g, dtype=int),
                  groups=[BlockGroup(torch.arange(g), torch.zeros(g, dtype=torch.long), terms)])
    rng = np.random.default_rng(0)
    unary = ["relu", "sigmoid", "abs", "sign", "power", "gt0", "lt0", "heaviside"]

    def tree(depth: int):
        if depth == 0:
            return Terminal(str(rng.choice(["act_D", "act_N", "act_P"])))
        if rng.random() < 0.3:
            return Apply("sum", (tree(depth - 1), tree(depth - 1) if rng.random() < 0.2 else Terminal("act_D")))
        return Apply(str(rng.choice(unary)), (tree(depth - 1),))

    programs = [Program(tree(10)) for _ in range(50)]
    res = evaluate_population(programs, chunk)
    per_tensor = g * 16 * 32 * 32 * 4
    n_unique = res.stats["unique_nodes"]
    assert n_unique > 400
    # live: the path being evaluated plus the shared subtrees still awaited, not all
    assert res.stats["peak_live_values"] <= n_unique // 10
    assert res.stats["peak_live_bytes"] <= res.stats["peak_live_values"] * per_tensor
    # max_bytes makes slices smaller, and the results do not change
    small = evaluate_population(programs[:8], chunk, max_bytes=16 * per_tensor // g)
    assert small.stats["peak_live_bytes"] <= small.stats["peak_live_values"] * 16 * per_tensor // g
    np.testing.assert_allclose(small.scores, res.scores[:8], rtol=1e-6, equal_nan=True)


# ----------------------------------------------------------------------------- shape rules
SHAPES = [(), (1,), (3,), (1, 3), (3, 1), (3, 3), (4, 3), (2, 3, 3), (2, 1, 3), (1, 3, 4, 4),
          (2, 3, 4, 4), (3, 3, 1, 1), (4, 1, 4)]


@pytest.mark.parametrize("name", OP_NAMES)
def test_shape_rules_match_the_ops(name: str) -> None:
    op = OPS[name]
    combos = [(s,) for s in SHAPES] if op.arity == 1 else itertools.product(SHAPES, SHAPES)
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for combo in combos:
            for dt in (torch.float32, torch.float64):
                rule = _rule(name, tuple((s, dt) for s in combo))
                try:
                    out = op.fn(*[torch.randn(s, generator=gen, dtype=dt) for s in combo])
                    real = (tuple(out.shape), out.dtype)
                except Exception:  # noqa: BLE001
                    real = None
                assert rule is not None, (name, combo)  # every table op has a rule
                if isinstance(rule, str):
                    assert real is None, (name, combo, rule)
                else:
                    assert rule == real, (name, combo, rule, real)


# ----------------------------------------------------------------------------- random programs
_leaf = st.sampled_from(TERMINALS).map(Terminal)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.sampled_from(OP_NAMES).flatmap(
        lambda name: st.tuples(*[children] * OPS[name].arity).map(lambda args: Apply(name, args))
    )


_trees = st.recursive(_leaf, _extend, max_leaves=8)


@st.composite
def populations(draw) -> list[Program]:
    trees = draw(st.lists(_trees, min_size=1, max_size=4))
    # programs built on each other's subtrees, so that the cache is exercised
    for _ in range(draw(st.integers(0, 3))):
        a, b = draw(st.sampled_from(trees)), draw(st.sampled_from(trees))
        name = draw(st.sampled_from(OP_NAMES))
        trees.append(Apply(name, (a, b)[: OPS[name].arity]) if OPS[name].arity == 2
                     else Apply(name, (a,)))
    modes = draw(st.lists(st.sampled_from(["mean", "l2"]), min_size=len(trees), max_size=len(trees)))
    return [Program(t, to_scalar=m) for t, m in zip(trees, modes)]


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per network: both NaN, or equal up to float tolerance."""
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.isclose(a, b, rtol=1e-6, atol=1e-9)
    return both_nan | close


@pytest.fixture(scope="module")
def perturbed_blocks(tiny_blocks) -> list[list[list[dict[str, torch.Tensor]]]]:
    """The tiny chunk's blocks with every value scaled by 1 + 1e-11 * noise (two draws)."""
    out = []
    for seed in (1, 2):
        gen = torch.Generator().manual_seed(seed)
        out.append([[{t: x * (1 + 1e-11 * torch.randn(x.shape, generator=gen, dtype=x.dtype))
                      for t, x in blk.items()} for blk in net] for net in tiny_blocks])
    return out


def check_agreement(p: Program, fast: np.ndarray, blocks, perturbed) -> None:
    """Fast and reference scores agree wherever the program is well conditioned.

    Batched kernels round differently from per-block ones (SIMD vs scalar paths, bmm vs
    mm), by ~1 ulp. Some programs amplify that into anything (the ratio of a Gram
    matrix's extreme eigenvalues when the smallest is rounding noise; the sign of a
    mean that is zero up to rounding). A network where the reference itself moves when
    the data moves by 1e-11 is such a case; everywhere else the two must agree.
    """
    ref = evaluate_reference(p, blocks)
    ok = _close(fast, ref)
    if ok.all():
        return
    unstable = np.zeros_like(ok)
    for pert in perturbed:
        unstable |= ~_close(evaluate_reference(p, pert), ref)
    bad = ~ok & ~unstable
    assert not bad.any(), f"{p.formula()}: fast {fast[bad]} vs reference {ref[bad]}"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=populations(), max_group=st.sampled_from([1, 3, 64]))
def test_population_agrees_with_reference(population, max_group, tiny, tiny_blocks,
                                          perturbed_blocks) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate_population(population, tiny, max_group=max_group)
        assert res.scores.shape == (len(population), tiny.n_networks)
        for p, row, why in zip(population, res.scores, res.reasons):
            check_agreement(p, row, tiny_blocks, perturbed_blocks)
            assert (why is None) == (not np.isnan(row).any())


def test_ill_conditioned_program_is_recognised(tiny: Chunk, tiny_blocks, perturbed_blocks) -> None:
    # the example hypothesis found: eigenvalue ratio of a rank-deficient Gram matrix
    p = prog("eig_ratio(det(wt))")
    fast = evaluate_population([p], tiny).scores[0]
    check_agreement(p, fast, tiny_blocks, perturbed_blocks)
    with pytest.raises(AssertionError):  # a wrong score on a well-conditioned program fails
        check_agreement(prog("frobenius(wt)"), fast, tiny_blocks, perturbed_blocks)
