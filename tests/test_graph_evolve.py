"""``evolve --over proxies --graph-features``: the cells' graph features as formula terminals."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np

from eznas_store.cli import main
from eznas_store.fitness import load_problems
from eznas_store.programs import load_program


def _zc(tmp_path: Path) -> Path:
    """A Suite-Zero file of 60 NB201 cells whose accuracy follows the 3x3-conv count (a graph
    feature) and not the one proxy: only a formula that reads the graph can rank them."""
    rng = np.random.default_rng(0)
    keys = [str(k) for k in itertools.islice(
        (tuple(int(x) for x in rng.integers(0, 5, 6)) for _ in range(10_000)), 400)]
    keys = list(dict.fromkeys(keys))[:60]
    doc: dict = {"cifar10": {}}
    for i, k in enumerate(keys):
        ops = [int(x) for x in k.strip("()").split(",")]
        conv3 = sum(op == 2 for op in ops)
        doc["cifar10"][k] = {"idx": str(i), "arch": k, "synflow": {"score": float(rng.normal())},
                             "val_accuracy": float(60 + 5 * conv3 + rng.uniform(0, 0.1))}
    path = tmp_path / "zc_nasbench201.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(doc))
    return path


def test_graph_features_are_terminals_of_a_proxy_evolve(tmp_path: Path, capsys) -> None:
    zc = _zc(tmp_path)
    out = tmp_path / "run"
    assert main(["evolve", str(zc), "--over", "proxies", "--graph-features", "--train-networks", "40",
                 "--out", str(out), "--population", "20", "--mu", "10", "--lambda", "20", "--generations", "3",
                 "--max-depth", "3", "--seed", "0", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["graph_features"] is True
    best = load_program(out / "programs" / "best_final.json")
    assert any(t.startswith("graph_") for t in best.formula().replace("(", " ").replace(")", " ")
               .replace(",", " ").split()), best.formula()
    assert best.meta["fitness"] > 0.5
    (problem,) = load_problems(str(zc), graph_features=True)
    assert "graph_op_nor_conv_3x3" in problem.columns
    assert main(["report", str(out)]) == 0


def test_graph_features_with_statistics_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    zc = _zc(tmp_path)
    assert main(["evolve", str(zc), "--graph-features", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--graph-features" in err
