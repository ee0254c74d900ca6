"""Proxy programs: the PROXY_OPS table, column evaluation (rank against a reference),
problem loading (Suite-Zero files, stores), splits, fitness and the cross-problem matrix."""

from __future__ import annotations

import gzip
import json
import keyword
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_bench, shared_path, tiny_ingest_config
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    ProgramError,
    StoreError,
    UnknownNameError,
)
from eznas_store.evaluate.columns import evaluate_columns
from eznas_store.fitness.correlations import kendall_tau, population_fitness, spearman_rho
from eznas_store.programs.ops import OPS
from eznas_store.programs.tree import Apply, Program, Terminal
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.codec import program_from_json, program_to_json
from eznas_store.programs.proxy_ops import PDIV_EPS, PROXY_OPS, rank_against
from eznas_store.fitness.matrix import cross_problem_matrix, format_matrix, write_matrix
from eznas_store.fitness.problems import ProxyProblem, load_problems, split_problem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.terminals import TERMINALS

NAN = math.nan
PROXY_NAMES = ("synflow", "nwot", "jacov", "flops", "params", "snip")


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def op(name: str, *args: torch.Tensor) -> list[float]:
    out = PROXY_OPS[name].fn(*args)
    assert out.dtype == torch.float64
    return out.tolist()


def same(a, b) -> bool:
    """Equal as float lists, NaN equal to NaN."""
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)


def prog(formula: str) -> Program:
    return Program(parse_formula(formula, ops=PROXY_OPS, terminals=None), terminal_set="proxies")


# ----------------------------------------------------------------------------- ops


def test_elementwise_ops_by_hand() -> None:
    a, b = t64(1.0, -2.0, 3.0), t64(4.0, 5.0, -0.5)
    assert op("add", a, b) == [5.0, 3.0, 2.5]
    assert op("sub", a, b) == [-3.0, -7.0, 3.5]
    assert op("mul", a, b) == [4.0, -10.0, -1.5]
    assert op("pdiv", a, b) == [0.25, -0.4, -6.0]
    assert op("neg", a) == [-1.0, 2.0, -3.0]
    assert op("abs", a) == [1.0, 2.0, 3.0]
    assert op("sqrt_abs", t64(4.0, -9.0, 0.0)) == [2.0, 3.0, 0.0]
    assert op("square", a) == [1.0, 4.0, 9.0]
    assert op("min", a, b) == [1.0, -2.0, -0.5]
    assert op("max", a, b) == [4.0, 5.0, 3.0]
    assert op("sigmoid", t64(0.0))[0] == 0.5
    assert op("sigmoid", t64(-800.0, 800.0)) == [0.0, 1.0]  # float64, no overflow
    assert op("inv", t64(4.0, -0.5)) == [0.25, -2.0]
    assert op("abslog", t64(math.e, -math.e**2, 1.0)) == pytest.approx([1.0, 2.0, 0.0])


def test_guards() -> None:
    # protected division: |b| < 1e-12 gives 1 (also for 0/0 and for a tiny negative b)
    assert op("pdiv", t64(5.0, 0.0, 3.0, 2.0), t64(0.0, 0.0, -1e-13, PDIV_EPS)) == [1.0, 1.0, 1.0, 2e12]
    assert op("inv", t64(0.0, 1e-13, -1e-13)) == [1.0, 1.0, 1.0]
    assert op("abslog", t64(0.0, -0.0)) == [0.0, 0.0]
    # overflow and non-finite inputs become NaN, the one failure mode
    assert same(op("square", t64(1e200, 2.0)), [NAN, 4.0])
    assert same(op("mul", t64(1e200, 1e60), t64(1e200, 1e60)), [NAN, 1e60 * 1e60])
    assert same(op("add", t64(math.inf, 1.0), t64(1.0, NAN)), [NAN, NAN])
    assert same(op("sigmoid", t64(math.inf)), [NAN])
    # synflow-sized values stay finite where the result fits
    assert op("abslog", t64(1e60))[0] == pytest.approx(60 * math.log(10))
    assert op("pdiv", t64(1e60), t64(1e-3))[0] == pytest.approx(1e63)


def test_op_names_fit_program_rules() -> None:
    import re

    assert not set(PROXY_OPS) & set(TERMINALS)
    for name, o in PROXY_OPS.items():
        assert o.name == name and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name)
        assert not keyword.iskeyword(name)
    assert len({o.id for o in PROXY_OPS.values()}) == len(PROXY_OPS)
    with pytest.raises(ProgramError, match="clashes"):  # a terminal may not be named like an op
        Program(Apply("add", (Terminal("rank"), Terminal("nwot"))), terminal_set="proxies").validate(ops=PROXY_OPS)


# ----------------------------------------------------------------------------- rank


def test_rank_by_hand() -> None:
    assert op("rank", t64(10.0, 30.0, 20.0, 20.0)) == [0.0, 1.0, 0.5, 0.5]
    assert same(op("rank", t64(3.0, NAN, 1.0, 2.0)), [1.0, NAN, 0.0, 0.5])
    assert op("rank", t64(7.0, 7.0, 7.0)) == [0.5, 0.5, 0.5]
    assert same(op("rank", t64(NAN, NAN)), [NAN, NAN])
    assert op("rank", t64(4.0)) == [0.5]
    # against a reference: halfway between neighbours, clipped at the ends, ties averaged
    ref = t64(1.0, 2.0, 2.0, 3.0, NAN)
    assert rank_against(t64(2.0, 2.5, 0.0, 9.0, 1.0, 3.0), ref).tolist() == [0.5, 5 / 6, 0.0, 1.0, 0.0, 1.0]


def _scipy_rank(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    out = np.full(len(x), NAN)
    r = stats.rankdata(x[ok])
    out[ok] = (r - 1) / (ok.sum() - 1) if ok.sum() > 1 else 0.5
    return out


ints = st.lists(st.integers(-1000, 1000), min_size=1, max_size=40)


@given(ints, st.lists(st.booleans(), max_size=40))
def test_rank_matches_scipy_average_ranks(values, holes) -> None:
    x = np.array(values, dtype=float)
    x[[i for i, h in enumerate(holes[: len(x)]) if h]] = NAN
    assert np.allclose(op("rank", torch.from_numpy(x)), _scipy_rank(x), equal_nan=True, atol=1e-12)


@pytest.mark.parametrize("wrap", [
    "add(x, x)", "mul(x, square(x))", "add(mul(x, square(x)), x)", "sigmoid(pdiv(x, params))",
    "rank(x)", "neg(neg(x))", "max(x, x)",
])
@given(values=ints)
@settings(max_examples=40)
def test_rank_is_invariant_under_increasing_maps(wrap: str, values) -> None:
    """rank(f(x)) == rank(x) for strictly increasing f (exact on integers of this size)."""
    x = np.array(values, dtype=float)
    cols = {"x": x, "params": np.full(len(x), 40.0)}  # sigmoid(x/40) is strictly increasing on these
    direct, _ = evaluate_columns(prog("rank(x)"), cols, ops=PROXY_OPS)
    wrapped, reason = evaluate_columns(prog(f"rank({wrap})"), cols, ops=PROXY_OPS)
    assert reason is None
    assert np.array_equal(direct, wrapped)
    assert np.array_equal(direct, _scipy_rank(x))


columns_st = st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.sampled_from([0.0, 1.0, 2.5, -3.0, 1e-3, 1e9]), min_size=n, max_size=n),
))
REFERENCE_PROGRAMS = ["rank(a)", "add(rank(a), rank(b))", "rank(mul(a, rank(b)))",
                      "pdiv(rank(sub(a, b)), add(rank(b), sigmoid(a)))", "a"]


@pytest.mark.parametrize("formula", REFERENCE_PROGRAMS)
@given(cols=columns_st)
@settings(max_examples=30)
def test_reference_equal_to_columns_is_within_problem_rank(formula: str, cols) -> None:
    c = {"a": np.array(cols[0]), "b": np.array(cols[1])}
    p = prog(formula)
    within, r1 = evaluate_columns(p, c, ops=PROXY_OPS)
    ref_all, r2 = evaluate_columns(p, c, ops=PROXY_OPS, reference=c)
    assert (r1 is None) == (r2 is None)
    assert np.allclose(within, ref_all, equal_nan=True, rtol=1e-12, atol=0)
    # one network at a time against the reference: the same scores (how search scores a newcomer)
    for i in range(len(c["a"])):
        one, _ = evaluate_columns(p, {k: v[i:i + 1] for k, v in c.items()}, ops=PROXY_OPS, reference=c)
        assert np.allclose(one, within[i:i + 1], equal_nan=True, rtol=1e-12, atol=0)


def test_reference_ranks_unseen_values_between_neighbours() -> None:
    ref = {"a": np.array([10.0, 20.0, 30.0, 40.0, 50.0])}
    new = {"a": np.array([25.0, 5.0, 99.0, 30.0, NAN])}
    out, reason = evaluate_columns(prog("rank(a)"), new, ops=PROXY_OPS, reference=ref)
    assert same(out, [0.375, 0.0, 1.0, 0.5, NAN])
    assert reason == "terminal a: NaN at network 4"
    # the reference, not the evaluated rows, decides: the same value scores the same in any company
    out2, _ = evaluate_columns(prog("rank(a)"), {"a": np.array([25.0])}, ops=PROXY_OPS, reference=ref)
    assert out2[0] == out[0]


# ----------------------------------------------------------------------------- evaluate_columns


def test_evaluate_columns_reasons_and_errors() -> None:
    cols = {"synflow": np.array([1.0, NAN, 1e200]), "nwot": np.array([2.0, 3.0, 4.0])}
    s, why = evaluate_columns(prog("add(nwot, synflow)"), cols, ops=PROXY_OPS)
    assert same(s, [3.0, NAN, 1e200]) and why == "terminal synflow: NaN at network 1"
    s, why = evaluate_columns(prog("square(synflow)"), {"synflow": np.array([1.0, 1e200])}, ops=PROXY_OPS)
    assert same(s, [1.0, NAN]) and why == "square: NaN at network 1"
    s, why = evaluate_columns(prog("nwot"), cols, ops=PROXY_OPS)
    assert list(s) == [2.0, 3.0, 4.0] and why is None
    # a bare tree and tensors work too
    s, _ = evaluate_columns(parse_formula("neg(nwot)", ops=PROXY_OPS, terminals=None),
                            {"nwot": torch.tensor([1.0, 2.0])}, ops=PROXY_OPS)
    assert list(s) == [-1.0, -2.0]
    with pytest.raises(UnknownNameError, match="jacov"):
        evaluate_columns(prog("jacov"), cols, ops=PROXY_OPS)
    with pytest.raises(ValueError, match="different lengths"):
        evaluate_columns(prog("add(nwot, jacov)"), {"nwot": [1.0, 2.0], "jacov": [1.0]}, ops=PROXY_OPS)
    with pytest.raises(UnknownNameError, match="unknown operation"):
        evaluate_columns(Apply("frobenius", (Terminal("nwot"),)), cols, ops=PROXY_OPS)


def _trees(depth: int) -> st.SearchStrategy:
    leaf = st.sampled_from(PROXY_NAMES).map(Terminal)
    if depth == 0:
        return leaf
    sub = _trees(depth - 1)
    ops = sorted(PROXY_OPS)
    return st.one_of(leaf, st.sampled_from(ops).flatmap(
        lambda o: st.tuples(*[sub] * PROXY_OPS[o].arity).map(lambda args, o=o: Apply(o, args))))


extreme = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                    st.sampled_from([0.0, -0.0, 1e-300, 1e60, -1e60, 1e-13]))


@given(tree=_trees(4), data=st.data())
@settings(max_examples=80, deadline=None)
def test_evaluation_never_raises_and_is_finite_or_nan(tree, data) -> None:
    n = data.draw(st.integers(1, 6))
    cols = {k: np.array(data.draw(st.lists(extreme, min_size=n, max_size=n))) for k in PROXY_NAMES}
    s, why = evaluate_columns(tree, cols, ops=PROXY_OPS)
    assert s.shape == (n,) and not np.isinf(s).any()
    assert (why is None) == bool(np.isfinite(s).all())


@given(tree=_trees(5), to_scalar=st.sampled_from(["mean", "l2"]),
       name=st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)))
@settings(max_examples=60, deadline=None)
def test_proxy_programs_round_trip_through_json(tree, to_scalar, name) -> None:
    p = Program(tree, to_scalar=to_scalar, terminal_set="proxies", name=name, meta={"fitness": 0.5})
    doc = json.loads(json.dumps(program_to_json(p)))
    back = program_from_json(doc, ops=PROXY_OPS)
    assert back == p and back.name == p.name and back.meta == p.meta
    assert parse_formula(p.formula(), ops=PROXY_OPS, terminals=None) == tree
    assert program_from_json(doc) == p  # a proxies document picks the proxy op table itself
    if any(isinstance(n, Apply) and n.op not in OPS for n in tree.iter_nodes()):
        with pytest.raises(ProgramError, match="unknown operation"):
            program_from_json(doc, ops=OPS)  # the EZNAS table does not know these ops


# ----------------------------------------------------------------------------- loading

NB201_KEYS = ["(0, 0, 0, 0, 0, 0)", "(2, 2, 2, 2, 2, 2)", "(4, 0, 3, 1, 4, 3)", "(3, 3, 2, 0, 1, 4)",
              "(1, 1, 1, 1, 1, 1)", "(2, 3, 4, 0, 2, 3)"]


def zc_doc(tasks=("cifar10", "ImageNet16-120"), keys=NB201_KEYS, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    doc: dict = {}
    for t, task in enumerate(tasks):
        recs = {}
        for i, k in enumerate(keys):
            rec: dict = {"idx": str(i), "arch": k}
            for name in ("synflow", "nwot", "jacov", "flops"):
                rec[name] = {"score": float(rng.uniform(1, 100)), "time": 0.1}
            rec["val_accuracy"] = float(50 + 10 * i + t)
            recs[k] = rec
        doc[task] = recs
    doc[tasks[0]][keys[1]]["synflow"]["score"] = -1e8  # NASLib's failure value: row dropped
    doc[tasks[0]][keys[2]].pop("nwot")  # missing on one row: that row dropped
    return doc


def write_zc(path: Path, doc: dict) -> Path:
    text = json.dumps(doc)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_load_zc_plain_and_gzip(tmp_path: Path) -> None:
    doc = zc_doc()
    plain = load_problems(write_zc(tmp_path / "zc_nasbench201.json", doc))
    gz = load_problems(write_zc(tmp_path / "zc_nasbench201.json.gz", doc))
    assert [p.name for p in plain] == [p.name for p in gz] == ["nb201-cifar10", "nb201-ImageNet16-120"]
    for a, b in zip(plain, gz):
        assert a.archs == b.archs and np.array_equal(a.accuracy, b.accuracy)
        assert all(np.array_equal(a.columns[k], b.columns[k]) for k in a.columns)
    c10, in16 = plain
    assert len(c10) == 4 and c10.dropped == 2 and len(in16) == 6 and in16.dropped == 0
    assert sorted(c10.columns) == ["flops", "jacov", "nwot", "synflow"]
    # accuracy is val_accuracy, archs are NB201 cell strings, rows in file order
    assert list(c10.accuracy) == [50.0, 80.0, 90.0, 100.0]
    assert c10.archs[0] == "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert c10.columns["synflow"][1] == doc["cifar10"][NB201_KEYS[3]]["synflow"]["score"]
    assert c10.source.endswith("zc_nasbench201.json:cifar10")
    assert not c10.columns["nwot"].flags.writeable


def test_load_zc_tasks_accuracy_and_names(tmp_path: Path) -> None:
    f = write_zc(tmp_path / "zc_nasbench201.json", zc_doc())
    assert [p.name for p in load_problems(f, tasks=["ImageNet16-120"])] == ["nb201-ImageNet16-120"]
    assert [p.name for p in load_problems(f, tasks=["nb201-cifar10"])] == ["nb201-cifar10"]
    assert [p.name for p in load_problems(f, accuracy="val_accuracy")] == ["nb201-cifar10", "nb201-ImageNet16-120"]
    with pytest.raises(UnknownNameError, match="cifar100.*nb201-cifar10"):
        load_problems(f, tasks=["cifar100"])
    with pytest.raises(UnknownNameError, match="val_accuracy"):
        load_problems(f, accuracy="test_accuracy")
    scene = write_zc(tmp_path / "zc_transbench101_micro_class_scene.json.gz", zc_doc(tasks=("class_scene",)))
    assert [p.name for p in load_problems(scene)] == ["tnb101_micro-class_scene"]
    assert load_problems(scene)[0].archs[0] == NB201_KEYS[0]  # not NB201: raw keys


def test_load_zc_mostly_missing_column_is_dropped(tmp_path: Path) -> None:
    doc = zc_doc(tasks=("cifar10",))
    for k in NB201_KEYS[:3]:
        doc["cifar10"][k]["jacov"]["score"] = -1e8
    (p,) = load_problems(write_zc(tmp_path / "zc_x.json", doc))
    assert p.dropped_columns == ("jacov",) and "jacov" not in p.columns and len(p) == 4


@pytest.mark.parametrize("content, error", [
    (b"not json", BenchmarkFormatError),
    (b"\x1f\x8b\x08garbage", BenchmarkFormatError),
    (b"[1, 2]", BenchmarkFormatError),
    (json.dumps({"cifar10": {"(0, 0, 0, 0, 0, 0)": {"val_accuracy": 1.0}}}).encode(), BenchmarkFormatError),
    (json.dumps({"cifar10": {"(9, 9)": {"synflow": {"score": 1.0}, "val_accuracy": 1.0}}}).encode(),
     BenchmarkFormatError),
])
def test_load_zc_bad_files(tmp_path: Path, content: bytes, error: type) -> None:
    f = tmp_path / ("zc_nasbench201.json.gz" if content.startswith(b"\x1f") else "zc_nasbench201.json")
    f.write_bytes(content)
    with pytest.raises(error):
        load_problems(f)


def test_load_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        load_problems(tmp_path / "zc_nope.json.gz")
    with pytest.raises(DataNotFoundError):
        load_problems(tmp_path / "nope.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StoreError):
        load_problems(tmp_path / "empty.zarr")


def test_load_store(tiny_store: str) -> None:
    from eznas_store.store.store import open_store

    (p,) = load_problems(tiny_store)
    store = open_store(tiny_store)
    table = store.proxy_table()
    names = [str(x) for x in table["proxy"].values]
    assert p.name == f"{store.plan.space}-{store.plan.dataset}:store" and p.source == tiny_store
    ok = store.complete() & np.isfinite(store.accuracy()) & np.isfinite(table.values).all(axis=1)
    rows = np.flatnonzero(ok)
    assert len(p) == len(rows) >= 2 and p.dropped == store.n_networks - len(rows)
    assert p.archs == tuple(store.plan.archs[i] for i in rows)
    assert np.array_equal(p.accuracy, store.accuracy()[rows])
    assert sorted(p.columns) == sorted(names)
    for j, n in enumerate(names):
        assert np.array_equal(p.columns[n], np.asarray(table.values[rows, j], dtype=float))
    col = next(iter(store.plan.accuracies))
    (q,) = load_problems(tiny_store, accuracy=col)
    assert np.array_equal(q.accuracy, np.asarray(store.plan.accuracies[col])[rows])
    with pytest.raises(UnknownNameError, match="no accuracy column"):
        load_problems(tiny_store, accuracy="nope")


def test_load_store_without_proxies(tmp_path: Path) -> None:
    from eznas_store.ingest.driver import run_ingest

    url = str(tmp_path / "np.zarr")
    run_ingest(tiny_ingest_config(url, make_bench(tmp_path / "b.csv", n=3), proxies=False))
    with pytest.raises(StoreError, match="without hand-crafted proxies"):
        load_problems(url)


# ----------------------------------------------------------------------------- problems, scoring


def toy(name: str = "toy", n: int = 50, seed: int = 0, **extra: np.ndarray) -> ProxyProblem:
    rng = np.random.default_rng(seed)
    acc = rng.uniform(50, 95, n)
    cols = {"good": acc + rng.normal(0, 5, n), "bad": rng.normal(0, 1, n), "anti": -acc, **extra}
    return ProxyProblem(name=name, archs=tuple(f"a{i}" for i in range(n)), columns=cols,
                        accuracy=acc, source="test")


def test_split_problem() -> None:
    p = toy(n=30)
    tr, te = split_problem(p, 10, seed=3)
    assert (len(tr), len(te)) == (10, 20) and (tr.split, te.split) == ("train", "test")
    assert set(tr.archs).isdisjoint(te.archs) and set(tr.archs) | set(te.archs) == set(p.archs)
    assert tr.name == "toy[train]" and te.name == "toy[test]"
    for part in (tr, te):
        idx = [p.archs.index(a) for a in part.archs]
        assert idx == sorted(idx)
        assert np.array_equal(part.accuracy, p.accuracy[idx])
        assert np.array_equal(part.columns["good"], p.columns["good"][idx])
    assert split_problem(p, 10, seed=3)[0].archs == tr.archs
    assert split_problem(p, 10, seed=4)[0].archs != tr.archs
    for bad in (1, 29, 30, 2.5):
        with pytest.raises(ConfigError):
            split_problem(p, bad, seed=0)


def test_problem_validation() -> None:
    with pytest.raises(BenchmarkFormatError):
        ProxyProblem(name="x", archs=("a", "b"), columns={"s": np.ones(3)}, accuracy=np.ones(2), source="t")
    with pytest.raises(BenchmarkFormatError):
        ProxyProblem(name="x", archs=("a", "b"), columns={}, accuracy=np.ones(3), source="t")


def test_scorer_fitness_matches_fitness_module() -> None:
    a, b = toy("a", 40, 0, extra=np.zeros(40)), toy("b", 60, 1)
    sc = ProxyTableScorer([a, b])
    assert sc.terminals == ["anti", "bad", "good"]
    progs = [prog(f) for f in ["good", "neg(anti)", "add(rank(good), rank(bad))", "pdiv(good, sub(good, good))",
                               "bad", "good", "rank(good)", "sqrt_abs(good)", "sigmoid(pdiv(bad, sub(bad, bad)))"]]
    fits = sc.fitness(progs, desc="gen 0")  # the last four share fitness computations
    scores = sc.scores(progs)
    assert len(scores) == 2 and len(scores[0]) == len(progs) and scores[1][0].shape == (60,)
    ref = population_fitness([np.stack(s) for s in scores], [a.accuracy, b.accuracy])
    assert [repr(f) for f in fits] == [repr(f) for f in ref]
    for k, f in enumerate(fits[:3]):
        taus = [kendall_tau(scores[t][k], pr.accuracy) for t, pr in enumerate((a, b))]
        assert f.taus == pytest.approx(taus) and f.value == pytest.approx(min(taus))
        assert f.rhos[0] == pytest.approx(spearman_rho(scores[0][k], a.accuracy))
    assert fits[1].value == pytest.approx(1.0)
    assert not fits[3].valid and "constant" in fits[3].reason  # pdiv(x, 0) == 1 everywhere
    assert fits[5] == fits[0] == fits[6] == fits[7]  # same order of networks: same tau/rho
    assert fits[8].reason != fits[3].reason  # constants are not shared: reasons name the value
    mean = ProxyTableScorer([a, b], combine="mean").fitness(progs[:3])
    assert mean[2].value == pytest.approx(np.mean(fits[2].taus))
    assert ProxyTableScorer([a, b], abs_tau=True).fitness([prog("anti")])[0].value == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        ProxyTableScorer([a], combine="max")


def test_scorer_invalid_on_one_network() -> None:
    p = toy(n=20)
    cols = dict(p.columns)
    cols["good"] = cols["good"].copy()
    cols["good"][3] = 1e200
    q = ProxyProblem(name="q", archs=p.archs, columns=cols, accuracy=p.accuracy, source="t")
    ok, bad = ProxyTableScorer([q]).fitness([prog("abslog(good)"), prog("add(bad, square(good))")])
    assert ok.valid
    assert not bad.valid and bad.reason == "task 0: invalid for 1 of 20 networks (square: NaN at network 3)"


def test_scorer_is_fast_enough() -> None:
    """Vectorised: a population on a few thousand networks takes well under a second."""
    import time

    problems = [toy(f"p{i}", 3000, i) for i in range(2)]
    sc = ProxyTableScorer(problems)
    rng = np.random.default_rng(0)
    ops2 = ["add", "sub", "mul", "pdiv", "min", "max"]
    progs = [prog(f"{ops2[rng.integers(6)]}(rank({['good', 'bad', 'anti'][i % 3]}), abslog(bad))")
             for i in range(30)]
    t = time.perf_counter()
    fits = sc.fitness(progs)
    assert len(fits) == 30 and time.perf_counter() - t < 10  # ~0.1 s measured; loose for busy CI


# ----------------------------------------------------------------------------- cross-problem


def test_cross_problem_matrix_and_outputs(tmp_path: Path) -> None:
    base = toy("base", 60, 0)
    _, te = split_problem(base, 20, seed=0)
    other = ProxyProblem(name="other", archs=base.archs, columns={"good": base.columns["good"]},
                         accuracy=base.accuracy, source="t")
    programs = {"g": prog("rank(good)"), "mix": prog("add(rank(good), bad)")}
    m = cross_problem_matrix(programs, [te, other])
    assert m.problems == ("base[test]", "other") and m.train == (True, False)
    assert m.programs == ("g", "mix") and m.formulas[1] == "add(rank(good), bad)"
    assert m.tau.shape == (2, 2) and m.n_networks == (40, 60)
    assert m.tau[0, 0] == pytest.approx(kendall_tau(te.columns["good"], te.accuracy))
    assert m.rho[1, 0] == pytest.approx(spearman_rho(base.columns["good"], base.accuracy))
    assert math.isnan(m.tau[1, 1]) and "bad" in m.reasons[1][1]
    # best single proxy by tau, brute force
    taus = {k: kendall_tau(v, te.accuracy) for k, v in te.columns.items()}
    assert m.best_proxy[0] == max(taus, key=taus.get) == "good"
    assert m.best_tau[0] == pytest.approx(taus["good"])
    assert cross_problem_matrix(programs, [te, other], train=["other"]).train == (False, True)

    text = format_matrix(m)
    assert "* base[test]" in text and "other" in text and "mix = add(rank(good), bad)" in text
    assert f"{m.tau[0, 0]:.3f}" in text
    paths = write_matrix(m, tmp_path / "out" / "cross")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("problem,train,n_networks,kind,name") and len(rows) == 1 + 2 * 3
    assert "| \\* base[test] |" in paths["md"].read_text()


# ----------------------------------------------------------------------------- real data


def test_real_suite_zero_nb201() -> None:
    path = shared_path("suite-zero", "zc_nasbench201.json.gz")
    c10, in16 = load_problems(path)
    assert (c10.name, in16.name) == ("nb201-cifar10", "nb201-ImageNet16-120")
    assert len(c10) == len(in16) == 9444 and c10.dropped == 1  # the all-'none' cell has NaN proxies
    assert "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|" not in c10.archs
    assert len(c10.columns) == 13
    # SOURCES.md: Spearman with val_accuracy on C10, jacov 0.82, nwot 0.79, synflow 0.73
    for name, rho in (("jacov", 0.82), ("nwot", 0.79), ("synflow", 0.73)):
        assert spearman_rho(c10.columns[name], c10.accuracy) == pytest.approx(rho, abs=0.01)
    m = cross_problem_matrix({"j": prog("rank(jacov)")}, [c10])
    assert m.tau[0, 0] == pytest.approx(kendall_tau(c10.columns["jacov"], c10.accuracy))
    assert m.best_tau[0] >= m.tau[0, 0]


# ----------------------------------------------------------------------------- evolve --over proxies

def test_evolve_over_proxies_end_to_end(tmp_path: Path, capsys) -> None:
    """CLI: evolve on one problem's 30-network split, test on its other networks and on a
    second problem; the matrix's numbers are the saved program's, recomputed here."""
    import itertools

    from eznas_store.cli import main
    from eznas_store.programs.codec import load_program
    from eznas_store.fitness.problems import load_problems, split_problem

    keys = [str(k) for k in itertools.islice(itertools.product(range(5), repeat=6), 7, 7 + 80)]
    rng = np.random.default_rng(4)
    doc: dict = {}
    for task in ("cifar10", "ImageNet16-120"):
        a, b, c = rng.lognormal(0, 3, 80), rng.normal(0, 1, 80), rng.uniform(0, 1, 80)
        acc = 60 + 5 * (np.argsort(np.argsort(a)) + np.argsort(np.argsort(b))) / 80 + rng.normal(0, 0.5, 80)
        doc[task] = {k: {"idx": str(i), "arch": k, "synflow": {"score": float(a[i])}, "nwot": {"score": float(b[i])},
                         "jacov": {"score": float(c[i])}, "val_accuracy": float(acc[i])} for i, k in enumerate(keys)}
    zc = write_zc(tmp_path / "zc_nasbench201.json.gz", doc)
    out = tmp_path / "run"
    assert main(["evolve", str(zc), "--over", "proxies", "--problems", "nb201-cifar10", "--train-networks", "30",
                 "--out", str(out), "--population", "20", "--mu", "10", "--lambda", "20", "--generations", "4",
                 "--max-depth", "4", "--seed", "1", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    best = load_program(out / "programs" / "best_final.json")
    assert best.terminal_set == "proxies"
    table = (out / "cross_problem" / "matrix.csv").read_text()
    assert "nb201-cifar10[test]" in table and "nb201-ImageNet16-120" in table
    assert (out / "cross_problem" / "matrix.png").stat().st_size > 1000
    c10 = load_problems(str(zc), tasks=["cifar10"])[0]
    _, test = split_problem(c10, 30, 1)
    scores, _ = evaluate_columns(best, test.columns, ops=PROXY_OPS)
    from eznas_store.fitness.matrix import cross_problem_matrix

    m = cross_problem_matrix({"best_final": best}, [test])
    assert m.tau[0, 0] == pytest.approx(kendall_tau(scores, test.accuracy))
    assert main(["report", str(out)]) == 0
