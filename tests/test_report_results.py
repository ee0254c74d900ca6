"""The report's results: a proxies run shows its cross-problem matrix (no scores box, no
EZNAS-A), results come before the configuration, identical programs are shown once and
coarse programs (few distinct score values) are flagged."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eznas_store.programs.codec import load_program, save_program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.tree import Program
from eznas_store.report.results import coarseness
from eznas_store.report.run_report import write_report
from eznas_store.report.runs import read_run

from test_report import make_run

COARSE = "pdiv(nwot, abs(nwot))"  # the sign of nwot (normal around 0): two distinct values


def _zc(path: Path) -> Path:
    keys = [str(k) for k in itertools.islice(itertools.product(range(5), repeat=6), 7, 7 + 80)]
    rng = np.random.default_rng(4)
    doc: dict = {}
    for task in ("cifar10", "ImageNet16-120"):
        a, b, c = rng.lognormal(0, 3, 80), rng.normal(0, 1, 80), rng.uniform(0, 1, 80)
        acc = 60 + 5 * (np.argsort(np.argsort(a)) + np.argsort(np.argsort(b))) / 80 + rng.normal(0, 0.5, 80)
        doc[task] = {k: {"idx": str(i), "arch": k, "synflow": {"score": float(a[i])},
                         "nwot": {"score": float(b[i])}, "jacov": {"score": float(c[i])},
                         "val_accuracy": float(acc[i])} for i, k in enumerate(keys)}
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def proxies_run(tmp_path_factory) -> Path:
    """``evolve --over proxies`` on a Suite-Zero-shaped file; then best_ever_1 is made a copy
    of best_final and best_ever_2 the coarse sign of nwot, and the matrix recomputed for them."""
    from eznas_store.cli import main
    from eznas_store.fitness.matrix import cross_problem_matrix, write_matrix
    from eznas_store.fitness.problems import load_problems, split_problem

    root = tmp_path_factory.mktemp("proxies")
    zc = _zc(root / "zc_nasbench201.json.gz")
    out = root / "run"
    assert main(["evolve", str(zc), "--over", "proxies", "--problems", "nb201-cifar10", "--train-networks", "30",
                 "--out", str(out), "--population", "12", "--mu", "6", "--lambda", "12", "--generations", "2",
                 "--max-depth", "4", "--seed", "1", "--workers", "0", "--no-progress"]) == 0
    progs = out / "programs"
    best = load_program(progs / "best_final.json")
    twin = dataclasses.replace(best, name="best_ever_1", meta={**best.meta, "role": "best_ever_1"})
    coarse = Program(parse_formula(COARSE, ops=PROXY_OPS, terminals=None), terminal_set="proxies",
                     name="best_ever_2", meta={**best.meta, "role": "best_ever_2", "fitness": 0.1, "taus": [0.1]})
    save_program(twin, progs / "best_ever_1.json")
    save_program(coarse, progs / "best_ever_2.json")
    c10, i16 = load_problems(str(zc))
    _, test = split_problem(c10, 30, 1)
    write_matrix(cross_problem_matrix({"best_final": best, "best_ever_1": twin, "best_ever_2": coarse},
                                      [test, i16]), out / "cross_problem")
    return out


@pytest.fixture(scope="module")
def proxies_report(proxies_run: Path) -> tuple[str, str]:
    md, html = write_report(proxies_run, title="Proxies run")
    return md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")


def test_proxies_report_shows_the_matrix(proxies_run, proxies_report):
    md, html = proxies_report
    assert "### Cross-problem matrix" in md
    assert "![cross-problem matrix: Kendall tau per problem](cross_problem/matrix.png)" in md
    m = pd.read_csv(proxies_run / "cross_problem" / "matrix.csv")
    row = m[(m.problem == "nb201-ImageNet16-120") & (m.name == "best_final")].iloc[0]
    line = next(l for l in md.splitlines() if l.startswith("| `nb201-ImageNet16-120` |"))
    assert f"{row.kendall_tau:.3f}/{row.spearman_rho:.3f}" in line
    assert "`* nb201-cifar10[test]`" in md
    # the heat map is embedded, and not copied into plots/
    png = (proxies_run / "cross_problem" / "matrix.png").read_bytes()
    import base64
    assert base64.b64encode(png).decode("ascii") in html
    assert not (proxies_run / "plots" / "matrix.png").exists()
    # train and test tau per program
    assert "train tau (nb201-cifar10\\[train\\])" in md and "test tau (nb201-ImageNet16-120)" in md


def test_proxies_report_has_no_missing_box_nor_eznas_a(proxies_report):
    md, html = proxies_report
    assert "Missing or incomplete" not in md
    assert "is missing" not in md and "no scores" not in md
    assert "eznas-a" not in md.lower() and "eznas-a" not in html.lower()
    assert "Scores vs accuracy" not in md


@pytest.mark.parametrize("kind", ["md", "html"])
def test_results_come_before_the_configuration(proxies_report, tmp_path, kind):
    run = make_run(tmp_path)
    md, html = write_report(run)
    for text in (proxies_report[0] if kind == "md" else proxies_report[1],
                 md.read_text(encoding="utf-8") if kind == "md" else html.read_text(encoding="utf-8")):
        h2 = "## {}" if kind == "md" else "<h2>{}</h2>"
        results, config = text.index(h2.format("Results")), text.index(h2.format("Run configuration"))
        assert results < config
        for section in ("Programs", "Best program", "Fitness per generation"):
            h3 = ("### " if kind == "md" else "<h3>") + section
            assert results < text.index(h3) < config
        assert config < text.index("option")  # the configuration table is in its own section


def test_identical_programs_are_shown_once(proxies_report, tmp_path):
    md, _ = proxies_report
    assert md.count("| `best_final = best_ever_1` |") == 1
    assert "| `best_final` |" not in md and "| `best_ever_1` |" not in md
    assert "| best\\_final = best\\_ever\\_1 |" in md.split("### Cross-problem matrix")[1]  # one matrix column
    assert md.split("### Best program")[1].startswith("\n\n`best_final = best_ever_1` (fitness")
    # a statistics run: best_ever_2 made a copy of best_final
    run = make_run(tmp_path)
    shutil.copy(run / "programs" / "best_final.json", run / "programs" / "best_ever_2.json")
    shutil.copy(run / "scores" / "best_final.csv", run / "scores" / "best_ever_2.csv")
    text = write_report(run)[0].read_text(encoding="utf-8")
    assert text.count("| `best_final = best_ever_2` |") == 1
    assert not re.search(r"^\| `best_ever_2` \|", text, re.M)
    assert "| `best_ever_1` |" in text and "| `eznas-a` | reference |" in text


def test_coarse_program_is_flagged(proxies_report, tmp_path):
    md, html = proxies_report
    assert "best\\_ever\\_2 takes only 2 distinct values over 80 networks (nb201-ImageNet16-120): " \
           "a coarse proxy, ties hide ranking." in md
    assert "best_ever_2 takes only 2 distinct values over 80 networks" in html
    assert "best_final = best_ever_1 takes only" not in html
    # a statistics run: best_final's scores rounded to three values on one task
    run = make_run(tmp_path)
    frame = pd.read_csv(run / "scores" / "best_final.csv")
    c10 = frame.task == "nb201-cifar10"
    frame.loc[c10, "score"] = np.digitize(frame.loc[c10, "score"], np.quantile(frame.loc[c10, "score"], [0.3, 0.6]))
    frame.to_csv(run / "scores" / "best_final.csv", index=False)
    text = write_report(run)[0].read_text(encoding="utf-8")
    assert "> - best\\_final takes only 3 distinct values over 30 networks (nb201-cifar10)" in text
    assert text.count("takes only") == 1


def test_coarseness_rule():
    rng = np.random.default_rng(0)
    assert coarseness(rng.integers(0, 3, 100).astype(float)) == (3, 100)
    assert coarseness(rng.normal(size=100)) is None
    assert coarseness(np.array([1.0, 2.0, 3.0, 4.0])) is None  # every network its own value
    assert coarseness(rng.integers(0, 15, 200).astype(float)) == (15, 200)  # under 10% of the networks
    assert coarseness(rng.integers(0, 30, 200).astype(float)) is None
    assert coarseness(np.full(10, np.nan)) is None
    assert coarseness(np.array([1.0, 1.0, np.nan, np.inf])) == (1, 2)


def test_proxies_run_without_matrix(proxies_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(proxies_run, run)
    shutil.rmtree(run / "cross_problem")
    assert read_run(run).over == "proxies"
    md = write_report(run)[0].read_text(encoding="utf-8")
    assert "cross\\_problem/matrix.csv is missing" in md
    assert "eznas-a" not in md.lower()
