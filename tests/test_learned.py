"""Learned predictors (fitness.learned) and rank-normalised terminals of the proxy-table scorer."""

from __future__ import annotations

import numpy as np
import pytest

from eznas_store.errors import ConfigError
from eznas_store.fitness import (
    LearnedConfig,
    ProxyTableScorer,
    feature_matrix,
    fit_learned,
    fit_problems,
    kendall_tau,
    predict_learned,
    rank_columns,
)
from eznas_store.fitness.problems import ProxyProblem
from eznas_store.programs import PROXY_OPS, Program, parse_formula

SMALL = {"n_estimators": 30}


def _cells(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five features; accuracy a non-linear function of two of them (one only through a
    threshold), plus noise; the other three are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = 80 + 3 * np.tanh(x[:, 0]) + 2 * (x[:, 2] > 0.3) + 0.3 * rng.normal(size=n)
    return x * np.array([1.0, 1e3, 1e-4, 5.0, 1.0]), y


@pytest.mark.parametrize("model", ["forest", "boosting"])
def test_model_beats_a_random_ranking(model):
    x, y = _cells(600)
    m = fit_learned(x[:50], y[:50], x[50:100], y[50:100], LearnedConfig(model=model, seed=0, **SMALL))
    tau = kendall_tau(predict_learned(m, x[100:]), y[100:])
    rng = np.random.default_rng(1)
    chance = max(abs(kendall_tau(rng.permutation(500).astype(float), y[100:])) for _ in range(20))
    assert tau > 0.5 > chance + 0.3


def test_choice_is_the_best_validation_setting_and_the_final_model_is_refit_on_train_and_validation():
    from sklearn.ensemble import RandomForestRegressor

    x, y = _cells(200, seed=3)
    cfg = LearnedConfig(model="forest", seed=4, target="accuracy", **SMALL)
    m = fit_learned(x[:40], y[:40], x[40:80], y[40:80], cfg)
    assert len(m.tried) == len(cfg.grid()) == 6
    for t in m.tried:  # each setting is judged by tau on the validation cells, fitted on train only
        params = {k: t[k] for k in ("max_features", "min_samples_leaf")}
        est = RandomForestRegressor(n_estimators=30, random_state=4, n_jobs=1, **params).fit(x[:40], y[:40])
        assert t["validation_tau"] == pytest.approx(kendall_tau(est.predict(x[40:80]), y[40:80]))
    best = max(m.tried, key=lambda t: t["validation_tau"])
    assert m.validation_tau == best["validation_tau"]
    assert m.params == {k: best[k] for k in ("max_features", "min_samples_leaf")}
    final = RandomForestRegressor(n_estimators=30, random_state=4, n_jobs=1, **m.params).fit(x[:80], y[:80])
    np.testing.assert_allclose(predict_learned(m, x[80:]), final.predict(x[80:]))


def test_selection_depends_on_the_validation_cells_only():
    """Other test cells, or none, change nothing; other validation labels change the choice."""
    x, y = _cells(200, seed=5)
    cfg = LearnedConfig(model="boosting", seed=0, **SMALL)
    a = fit_learned(x[:40], y[:40], x[40:80], y[40:80], cfg)
    b = fit_learned(x[:40], y[:40], x[40:80], y[40:80], cfg)
    assert a.tried == b.tried and a.params == b.params
    flipped = fit_learned(x[:40], y[:40], x[40:80], -y[40:80] + 200, cfg)
    assert [t["validation_tau"] for t in flipped.tried] == pytest.approx([-t["validation_tau"] for t in a.tried])


def test_logit_target_can_be_chosen():
    x, y = _cells(120, seed=2)
    m = fit_learned(x[:40], y[:40], x[40:80], y[40:80], LearnedConfig(model="boosting", seed=0, **SMALL))
    assert {t["target"] for t in m.tried} == {"accuracy", "logit"}
    assert m.target in ("accuracy", "logit")
    only = fit_learned(x[:40], y[:40], x[40:80], y[40:80],
                       LearnedConfig(model="boosting", seed=0, target="logit", **SMALL))
    assert {t["target"] for t in only.tried} == {"logit"}


@pytest.mark.parametrize("model", ["forest", "boosting"])
def test_deterministic_by_seed(model):
    x, y = _cells(300, seed=7)
    fit = lambda seed: predict_learned(  # noqa: E731
        fit_learned(x[:60], y[:60], x[60:120], y[60:120],
                    LearnedConfig(model=model, seed=seed, target="accuracy", **SMALL)), x[120:])
    np.testing.assert_array_equal(fit(3), fit(3))
    if model == "forest":  # boosting without subsampling is deterministic whatever the seed
        assert not np.array_equal(fit(3), fit(4))


def test_rank_columns():
    r = rank_columns(np.array([[10.0, 1.0], [30.0, 1.0], [20.0, 2.0], [20.0, 3.0]]))
    np.testing.assert_allclose(r[:, 0], [0.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(r[:, 1], [1 / 6, 1 / 6, 2 / 3, 1.0])
    assert rank_columns(np.array([[5.0]])).tolist() == [[0.5]]


def _problem(x: np.ndarray, y: np.ndarray, name: str = "p") -> ProxyProblem:
    return ProxyProblem(name=name, archs=tuple(f"a{i}" for i in range(len(y))),
                        columns={f"f{j}": x[:, j] for j in range(x.shape[1])}, accuracy=y, source="test")


def test_feature_matrix_and_fit_problems():
    x, y = _cells(400, seed=9)
    p = _problem(x, y)
    m, names = feature_matrix(p)
    assert names == ("f0", "f1", "f2", "f3", "f4")
    np.testing.assert_array_equal(m, x)
    r, _ = feature_matrix(p, ("f1",), rank=True)
    assert r.min() == 0.0 and r.max() == 1.0
    with pytest.raises(ConfigError, match="no column nope"):
        feature_matrix(p, ("nope",))
    train, val, test = (p.subset(np.arange(lo, hi), name=f"p{lo}", split="test")
                        for lo, hi in ((0, 50), (50, 100), (100, 400)))
    for rank in (False, True):
        model = fit_problems(train, val, LearnedConfig(seed=0, rank_features=rank, **SMALL))
        assert model.features == names
        scores = predict_learned(model, feature_matrix(test, model.features, rank=rank)[0])
        assert kendall_tau(scores, test.accuracy) > 0.5


def test_rank_features_carry_to_cells_on_another_scale():
    """Cells whose proxies are on another scale (another dataset's images): a model on ranks keeps
    its ranking, one on raw values loses it."""
    x, y = _cells(500, seed=11)
    p = _problem(x, y)
    other = _problem(x * 1e3 + 7, y, name="other")
    train, val = p.subset(np.arange(0, 60), name="t", split="train"), p.subset(np.arange(60, 120), name="v",
                                                                                 split="test")
    test = other.subset(np.arange(120, 500), name="o", split="test")
    taus = {}
    for rank in (False, True):
        model = fit_problems(train, val, LearnedConfig(seed=0, rank_features=rank, **SMALL))
        taus[rank] = kendall_tau(predict_learned(model, feature_matrix(test, rank=rank)[0]), test.accuracy)
    assert taus[True] > 0.5 and taus[True] > taus[False] + 0.2


@pytest.mark.parametrize("bad, match", [({"model": "svm"}, "learned model"), ({"target": "log"}, "learned target"),
                                        ({"seed": -1}, "seed"), ({"n_estimators": 0}, "n_estimators"),
                                        ({"forest_min_samples_leaf": ()}, "empty axis")])
def test_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        LearnedConfig(**bad)


def test_fit_refuses_bad_shapes_and_non_finite_values():
    x, y = _cells(40)
    with pytest.raises(ConfigError, match="training cells"):
        fit_learned(x[:20], y[:19], x[20:], y[20:], LearnedConfig(**SMALL))
    x[25, 1] = np.nan
    with pytest.raises(ConfigError, match="validation cells"):
        fit_learned(x[:20], y[:20], x[20:], y[20:], LearnedConfig(**SMALL))


def test_scorer_rank_terminals():
    """With rank_terminals every column is its within-problem rank: an order-only program keeps its
    tau, a sum of two columns on very different scales changes (it no longer is the larger one)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    p = ProxyProblem(name="p", archs=tuple(map(str, range(200))), columns={"a": a * 1e6, "b": b},
                     accuracy=a + b, source="test")
    one = Program(parse_formula("a", ops=PROXY_OPS, terminals=None), terminal_set="proxies")
    two = Program(parse_formula("add(a, b)", ops=PROXY_OPS, terminals=None), terminal_set="proxies")
    raw, ranked = ProxyTableScorer([p]), ProxyTableScorer([p], rank_terminals=True)
    assert raw.fitness([one])[0].value == pytest.approx(ranked.fitness([one])[0].value)
    (s,), = ranked.scores([one])
    assert s.min() == 0.0 and s.max() == 1.0
    assert ranked.fitness([two])[0].value > raw.fitness([two])[0].value + 0.1
    assert not ProxyTableScorer([p]).rank_terminals


def test_bench_proxy_quality_learned_and_evolved_rows(tmp_path):
    """The benchmark on a small synthetic table: learned rows per label count and the CIFAR-10-only
    model, evolved rows, and a shipped program (rank terminals written as rank(t)) that reads raw columns."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from eznas_store.programs import load_program
    from eznas_store.sources import write_proxy_table

    rng = np.random.default_rng(0)
    n = 260
    a, b, c = rng.normal(size=(3, n))
    cols = {"cifar10_test": 80 + 3 * np.tanh(a) + b, "cifar100_test": 60 + 3 * np.tanh(a) + 0.8 * b,
            "imagenet16_test": 30 + 2 * np.tanh(a) + b + 0.3 * c}
    for lab, scale in (("cifar10", 1.0), ("cifar100", 1.0), ("imagenet16", 1e3)):
        cols |= {f"pa@{lab}": scale * np.exp(a), f"pb@{lab}": b + 0.1 * rng.normal(size=n), f"pc@{lab}": c}
    table = write_proxy_table(tmp_path / "t.csv", [f"|nor_conv_3x3~0|+|c{i}|" for i in range(n)], list(range(n)), cols,
                              {"recipe": {}, "label_sets": {lab: {"accuracy": f"{lab}_test"}
                                                            for lab in ("cifar10", "cifar100", "imagenet16")}})
    out, ship = tmp_path / "q", tmp_path / "ship.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_proxy_quality.py"
    run = subprocess.run([sys.executable, str(bench), "--table", str(table), "--out", str(out), "--no-eznas-a",
                          "--test", "150", "--seeds", "1", "--labels", "20", "40", "--gp-labels", "40",
                          "--population", "12", "--generations", "1", "--learned-trees", "15", "--rank-terminals", "--ensemble", "2",
                          "--learned", "forest", "--ship", str(ship)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads((out / "quality.json").read_text())
    rows = doc["rows"]
    for n_labels in (20, 40):
        for kind in ("per label", "CIFAR-10 only"):
            assert f"random forest, {kind}, {n_labels} labels (mean of 1 seeds)" in rows
    assert rows["random forest, per label, 40 labels (mean of 1 seeds)"]["cifar10"][0] > 0.4
    assert "evolved (rank terminals, ensemble ≤ 2), 40 labels (worst of 1 seeds)" in rows
    assert doc["cells"]["test"] == 150
    prog = load_program(ship)
    assert "rank(" in prog.formula() and "validation" in prog.meta["how_chosen"]
    missing = subprocess.run([sys.executable, str(bench), "--out", str(out)], capture_output=True, text=True)
    assert missing.returncode == 2 and "--table" in missing.stderr  # no default data path
