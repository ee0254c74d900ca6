"""Kendall tau / Spearman rho fitness, task combination, invalid programs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from eznas_store.errors import BenchmarkFormatError, ConfigError
from eznas_store.fitness.correlations import (
    Fitness,
    combine_tasks,
    kendall_tau,
    population_fitness,
    selection_value,
    spearman_rho,
)

ACC = np.array([10.0, 20.0, 40.0, 30.0])


def test_kendall_and_spearman_by_hand() -> None:
    s = np.array([1.0, 2.0, 3.0, 4.0])
    # 6 pairs, only (3rd, 4th) discordant: (5 - 1) / 6
    assert kendall_tau(s, ACC) == pytest.approx(4 / 6)
    # rank differences 0, 0, -1, 1: 1 - 6 * 2 / (4 * 15)
    assert spearman_rho(s, ACC) == pytest.approx(0.8)
    # ties: tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = 5 / sqrt(5 * 6)
    assert kendall_tau([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau(-s, ACC) == pytest.approx(-4 / 6)


def test_invalid_scores_give_nan() -> None:
    assert math.isnan(kendall_tau([1.0, np.nan, 3.0, 4.0], ACC))
    assert math.isnan(spearman_rho([1.0, np.inf, 3.0, 4.0], ACC))
    assert math.isnan(kendall_tau([2.0, 2.0, 2.0, 2.0], ACC))  # constant
    assert math.isnan(spearman_rho([2.0, 2.0, 2.0, 2.0], ACC))
    assert math.isnan(kendall_tau([1.0], [1.0]))
    with pytest.raises(ValueError, match="shape"):
        kendall_tau([1.0, 2.0], ACC)
    with pytest.raises(BenchmarkFormatError, match="not finite"):
        kendall_tau([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 2.0, 3.0])


def test_population_matches_scipy_row_by_row() -> None:
    rng = np.random.default_rng(0)
    acc = rng.normal(size=30)
    scores = rng.normal(size=(12, 30))
    scores[3] = np.round(scores[3])  # ties
    scores[5, 7] = np.nan
    scores[6] = 1.5
    fits = population_fitness(scores, acc)
    for i, f in enumerate(fits):
        if i in (5, 6):
            assert math.isnan(f.value) and math.isnan(f.taus[0]) and math.isnan(f.rhos[0])
            continue
        assert f.value == pytest.approx(stats.kendalltau(scores[i], acc).statistic)
        assert f.taus[0] == f.value
        assert f.rhos[0] == pytest.approx(stats.spearmanr(scores[i], acc).statistic)
        assert f.reason is None and f.valid_fraction == 1.0
    assert fits[5].reason == "task 0: invalid for 1 of 30 networks"
    assert fits[5].valid_fraction == pytest.approx(29 / 30)
    assert fits[6].reason.startswith("task 0: constant scores (1.5)")


def test_reasons_from_the_evaluator_are_quoted() -> None:
    scores = np.array([[1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    fits = population_fitness(scores, ACC, reasons=["invert: Inf at block 3 of network 17", None])
    assert fits[0].reason == "task 0: invalid for 1 of 4 networks (invert: Inf at block 3 of network 17)"
    assert fits[1].reason is None


def test_combine_min_mean_and_abs() -> None:
    s0 = np.array([1.0, 2.0, 3.0, 4.0])  # tau 2/3 against ACC
    acc1 = np.array([3.0, 2.0, 1.0])
    s1 = np.array([1.0, 2.0, 3.0])  # tau -1 against acc1
    f = combine_tasks([s0, s1], [ACC, acc1])
    assert f.taus == pytest.approx((2 / 3, -1.0))
    assert f.value == pytest.approx(-1.0)
    assert f.rhos == pytest.approx((0.8, -1.0))
    assert combine_tasks([s0, s1], [ACC, acc1], combine="mean").value == pytest.approx((2 / 3 - 1) / 2)
    assert combine_tasks([s0, s1], [ACC, acc1], abs_tau=True).value == pytest.approx(2 / 3)
    assert combine_tasks([s0, s1], [ACC, acc1], combine="mean", abs_tau=True).value == pytest.approx(5 / 6)
    # taus stay signed whatever abs_tau says
    assert combine_tasks([s0, s1], [ACC, acc1], abs_tau=True).taus == pytest.approx((2 / 3, -1.0))
    with pytest.raises(ConfigError):
        combine_tasks([s0], [ACC], combine="max")


def test_one_invalid_task_invalidates_the_program() -> None:
    s0 = np.array([1.0, 2.0, 3.0, 4.0])
    s1 = np.array([1.0, np.nan, 3.0])
    f = combine_tasks([s0, s1], [ACC, np.array([1.0, 2.0, 3.0])], combine="mean",
                      reasons=[None, "logdet: NaN at block 3 of network 17"])
    assert math.isnan(f.value)
    assert f.taus[0] == pytest.approx(2 / 3) and math.isnan(f.taus[1])
    assert f.reason == "task 1: invalid for 1 of 3 networks (logdet: NaN at block 3 of network 17)"
    assert f.valid_fraction == pytest.approx(6 / 7)
    assert not f.valid


def test_population_multi_task() -> None:
    rng = np.random.default_rng(1)
    acc = [rng.normal(size=8), rng.normal(size=5)]
    scores = [rng.normal(size=(3, 8)), rng.normal(size=(3, 5))]
    fits = population_fitness(scores, acc, combine="min", abs_tau=True)
    for i, f in enumerate(fits):
        one = combine_tasks([scores[0][i], scores[1][i]], acc, abs_tau=True)
        assert f == one
        assert f.value == pytest.approx(min(abs(stats.kendalltau(scores[t][i], acc[t]).statistic)
                                            for t in range(2)))
    with pytest.raises(ValueError, match="programs"):
        population_fitness([scores[0], scores[1][:2]], acc)


def test_selection_value() -> None:
    valid = Fitness(value=0.5, taus=(0.5,), rhos=(0.7,), reason=None, valid_fraction=1.0)
    invalid = Fitness(value=math.nan, taus=(math.nan,), rhos=(math.nan,),
                      reason="task 0: constant scores", valid_fraction=1.0)
    assert selection_value(valid) == 0.5
    assert selection_value(invalid) == -math.inf
    assert sorted([invalid, valid], key=selection_value) == [invalid, valid]
