"""``evolve --fitness weighted_tau`` (issue 13, item 5): a fitness that weighs the top of the ranking.

Hand-made data only: the weighted tau rewards getting the top right where plain tau cannot
tell two orders apart; the default stays plain Kendall tau (seeded default runs give the
programs they always gave); a bad value is a one-line usage error with exit code 2.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from eznas_store.errors import ConfigError
from eznas_store.fitness.correlations import (
    FITNESSES,
    kendall_tau,
    population_fitness,
    weighted_tau,
)
from eznas_store.fitness.problems import ProxyProblem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.tree import Program

ACC = np.arange(20, dtype=np.float64)  # network i has accuracy i: the best is the last


def _swapped(i: int, j: int) -> np.ndarray:
    s = ACC.copy()
    s[[i, j]] = s[[j, i]]
    return s


def test_weighted_tau_rewards_the_top_where_plain_tau_is_blind() -> None:
    top_wrong, bottom_wrong = _swapped(18, 19), _swapped(0, 1)  # one adjacent swap each
    assert kendall_tau(top_wrong, ACC) == pytest.approx(kendall_tau(bottom_wrong, ACC))
    assert weighted_tau(bottom_wrong, ACC) > weighted_tau(top_wrong, ACC)
    assert weighted_tau(ACC, ACC) == pytest.approx(1.0) and weighted_tau(-ACC, ACC) == pytest.approx(-1.0)


def test_weighted_tau_punishes_a_poor_network_put_on_top_of_the_scores() -> None:
    """Weights from the score ranking too: the worst network scored highest costs more than
    the best network scored lowest would under accuracy weights alone (the symmetric choice)."""
    poor_on_top = ACC.copy()
    poor_on_top[0] = 100.0  # the worst network gets the best score
    mid_on_top = ACC.copy()
    mid_on_top[10] = 100.0  # a middling one does
    assert kendall_tau(poor_on_top, ACC) < kendall_tau(mid_on_top, ACC)
    assert weighted_tau(poor_on_top, ACC) < weighted_tau(mid_on_top, ACC)
    assert weighted_tau(poor_on_top, ACC) == pytest.approx(
        stats.weightedtau(poor_on_top, ACC, rank=True).statistic)


def test_weighted_tau_invalid_scores_are_nan() -> None:
    assert np.isnan(weighted_tau(np.full(20, 3.0), ACC))
    bad = ACC.copy()
    bad[4] = np.nan
    assert np.isnan(weighted_tau(bad, ACC))


def test_population_fitness_default_is_plain_tau_and_weighted_is_opt_in() -> None:
    scores = np.stack([_swapped(18, 19), _swapped(0, 1)])
    plain = population_fitness(scores, ACC)
    assert [f.value for f in plain] == pytest.approx([kendall_tau(s, ACC) for s in scores])
    assert population_fitness(scores, ACC, fitness="tau") == plain
    weighted = population_fitness(scores, ACC, fitness="weighted_tau")
    assert [f.value for f in weighted] == pytest.approx([weighted_tau(s, ACC) for s in scores])
    assert weighted[1].value > weighted[0].value  # the top right beats the bottom right
    # taus and rhos stay the plain Kendall tau / Spearman rho whatever the fitness measures
    assert [f.taus for f in weighted] == [f.taus for f in plain]
    assert [f.rhos for f in weighted] == [f.rhos for f in plain]
    with pytest.raises(ConfigError, match="fitness must be one of"):
        population_fitness(scores, ACC, fitness="top_k")
    assert FITNESSES == ("tau", "weighted_tau")


def test_proxy_table_scorer_uses_the_chosen_fitness() -> None:
    rng = np.random.default_rng(0)
    problem = ProxyProblem(name="p", archs=tuple(f"a{i}" for i in range(20)),
                           columns={"good_top": _swapped(0, 1), "good_bottom": _swapped(18, 19),
                                    "noise": rng.normal(size=20)},
                           accuracy=ACC, source="hand-made")
    progs = [Program(parse_formula(f, ops=PROXY_OPS, terminals=None), terminal_set="proxies")
             for f in ("good_top", "good_bottom")]
    plain = ProxyTableScorer([problem]).fitness(progs)
    assert plain[0].value == pytest.approx(plain[1].value)
    top, bottom = ProxyTableScorer([problem], fitness="weighted_tau").fitness(progs)
    assert top.value > bottom.value
    with pytest.raises(ConfigError, match="fitness must be one of"):
        ProxyTableScorer([problem], fitness="rho")


def _zc(tmp_path: Path) -> Path:
    keys = [str(k) for k in itertools.islice(itertools.product(range(5), repeat=6), 7, 7 + 60)]
    rng = np.random.default_rng(4)
    a, b = rng.lognormal(0, 3, 60), rng.normal(0, 1, 60)
    acc = 60 + 5 * (np.argsort(np.argsort(a)) + np.argsort(np.argsort(b))) / 60 + rng.normal(0, 0.5, 60)
    doc = {"cifar10": {k: {"idx": str(i), "arch": k, "synflow": {"score": float(a[i])},
                           "nwot": {"score": float(b[i])}, "val_accuracy": float(acc[i])}
                       for i, k in enumerate(keys)}}
    path = tmp_path / "zc_nasbench201.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(doc))
    return path


def _evolve(zc: Path, out: Path, *extra: str) -> int:
    from eznas_store.cli import main

    return main(["evolve", str(zc), "--over", "proxies", "--train-networks", "30", "--out", str(out),
                 "--population", "12", "--mu", "6", "--lambda", "12", "--generations", "2",
                 "--max-depth", "3", "--seed", "3", "--workers", "0", "--no-progress", *extra])


def test_evolve_records_the_fitness_and_default_stays_tau(tmp_path: Path, capsys) -> None:
    zc = _zc(tmp_path)
    assert _evolve(zc, tmp_path / "default") == 0
    assert _evolve(zc, tmp_path / "tau", "--fitness", "tau") == 0
    assert _evolve(zc, tmp_path / "wt", "--fitness", "weighted_tau") == 0
    capsys.readouterr()
    run = lambda d: json.loads((tmp_path / d / "run.json").read_text())
    prog = lambda d: json.loads((tmp_path / d / "programs" / "best_final.json").read_text())
    assert run("default")["config"]["fitness"] == "tau" and run("wt")["config"]["fitness"] == "weighted_tau"
    assert prog("default")["meta"]["fitness_measure"] == "tau"
    assert prog("wt")["meta"]["fitness_measure"] == "weighted_tau"
    # the default is exactly --fitness tau: same programs, same fitness
    assert prog("default")["formula"] == prog("tau")["formula"]
    assert prog("default")["meta"]["fitness"] == prog("tau")["meta"]["fitness"]
    # a tau run's fitness is the Kendall tau it reports
    assert prog("default")["meta"]["fitness"] == pytest.approx(prog("default")["meta"]["taus"][0])


def test_bad_fitness_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from eznas_store.cli import main

    rc = main(["evolve", "S.zarr", "--out", str(tmp_path / "r"), "--over", "proxies", "--fitness", "top1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "--fitness must be one of tau, weighted_tau" in err[0], err
    rc = main(["evolve", "S.zarr", "--out", str(tmp_path / "r"), "--fitness", "weighted_tau"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "with --over proxies only" in err[0], err


def test_job_file_takes_the_fitness_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from eznas_store.config import load_job

    job = tmp_path / "j.toml"
    job.write_text('[evolve]\nover = "proxies"\nfitness = "weighted_tau"\n')
    assert load_job(job, "evolve")["fitness"] == "weighted_tau"
    job.write_text('[evolve]\nfitness = "top1"\n')
    with pytest.raises(ConfigError, match="evolve.fitness"):
        load_job(job, "evolve")
