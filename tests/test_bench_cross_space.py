"""The cross-space benchmark (``benchmarks/bench_cross_space.py``) on tiny synthetic tables: it runs
end to end, uses only the columns both spaces share, reads no DARTS label when k = 0, and the
stem-less NB201 network it computes SWAP on is what it says."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas_store.sources.proxy_csv import write_proxy_table
from eznas_store.sources.spaces import darts_genotype, nb201

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_cross_space.py"
NB_SETS = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16": "imagenet16_test"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cross_space", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_cross_space"] = mod
    spec.loader.exec_module(mod)
    return mod


def _nb201_cells(n: int) -> list[str]:
    return [nb201.cell_from_index(i) for i in np.random.default_rng(0).choice(nb201.N_CELLS, n, replace=False)]


def _darts_cells(n: int) -> list[str]:
    rng, out = np.random.default_rng(1), []
    while len(out) < n:
        g = darts_genotype.random_cell(rng)
        if g not in out:
            out.append(g)
    return out


def _nb201_table(path: Path, n: int = 70) -> Path:
    """Three label sets; ``good`` tracks the accuracy, ``noise`` does not, ``nb_only`` is NB201's own."""
    rng = np.random.default_rng(2)
    latent = rng.normal(size=n)
    cols = {}
    for s, acc in NB_SETS.items():
        cols[acc] = 80 + 5 * latent + rng.normal(scale=0.5, size=n)
    for s in NB_SETS:
        cols[f"good@{s}"] = 1e3 * np.exp(latent + rng.normal(scale=0.3, size=n))  # NB201's scale
        cols[f"noise@{s}"] = rng.normal(size=n)
        cols[f"nb_only@{s}"] = latent
    meta = {"recipe": {"space": "nb201"}, "label_sets": {s: {"accuracy": a} for s, a in NB_SETS.items()}}
    return write_proxy_table(path, _nb201_cells(n), list(range(n)), cols, meta)


def _darts_table(path: Path, n: int = 80, *, pool_labels_seed: int | None = None, test_rows=None) -> Path:
    """One label set; ``good`` on another scale than NB201's; ``darts_only`` is DARTS's own.
    ``pool_labels_seed`` redraws the accuracies of the rows outside ``test_rows``."""
    rng = np.random.default_rng(3)
    latent = rng.normal(size=n)
    acc = 93 + latent + rng.normal(scale=0.2, size=n)
    if pool_labels_seed is not None:
        pool = np.setdiff1d(np.arange(n), test_rows)
        acc[pool] = np.random.default_rng(pool_labels_seed).normal(90, 3, size=len(pool))
    cols = {"cifar10_valid": acc, "good@cifar10": 1e-3 * np.exp(latent + rng.normal(scale=0.3, size=n)),
            "noise@cifar10": rng.normal(size=n), "darts_only@cifar10": latent}
    meta = {"recipe": {"space": "darts"}, "label_sets": {"cifar10": {"accuracy": "cifar10_valid"}}}
    return write_proxy_table(path, _darts_cells(n), list(range(n)), cols, meta)


def _argv(nb: Path, darts: Path, out: Path, *extra: str) -> list[str]:
    return ["--nb201", str(nb), "--darts", str(darts), "--out", str(out), "--train", "15", "--validation", "15",
            "--nb201-test", "30", "--darts-test", "40", "--seeds", "2", "--population", "12", "--generations", "2",
            "--candidates", "5", "--learned-trees", "10", *extra]


def test_runs_end_to_end_on_the_common_columns(bench, tmp_path):
    nb, darts = _nb201_table(tmp_path / "nb.csv"), _darts_table(tmp_path / "d.csv")
    out = tmp_path / "out"
    bench.main(_argv(nb, darts, out, "--ks", "0,10"))
    doc = json.loads((out / "cross_space.json").read_text())
    assert doc["columns"]["common"] == ["good", "noise"]
    assert doc["columns"]["nb201_only"] == ["nb_only"] and doc["columns"]["darts_only"] == ["darts_only"]
    assert doc["cells"]["darts_test"] == 40 and doc["cells"]["nb201_test"] == 30
    assert [(r["k"], r["seed"]) for r in doc["runs"]] == [(0, 0), (0, 1), (10, 0), (10, 1)]
    for r in doc["runs"]:
        assert set(r["formula"].replace("(", " ").replace(")", " ").replace(",", " ").split()) & {"good", "noise"}
        assert "nb_only" not in r["formula"] and "darts_only" not in r["formula"]
        assert -1 <= r["darts"][0] <= 1 and set(r["nb201"]) == {f"nb201-{s}[test]" for s in NB_SETS}
    # the signal is there: every chosen program ranks the held-out DARTS cells well
    assert min(r["darts"][1] for r in doc["runs"]) > 0.5
    assert {(x["k"], x["model"]) for x in doc["learned"]} == {(k, m) for k in (0, 10) for m in ("forest", "boosting")}
    md = (out / "cross_space.md").read_text()
    assert "## Goals" in md and "k = 0:" in md and "k = 10:" in md and "evolved program (mean of 2)" in md
    assert (out / "cross_space.png").read_bytes()[:4] == b"\x89PNG"


def test_k0_reads_no_darts_label(bench, tmp_path):
    """With k = 0 the programs, the choice and the learned models are the same whatever the
    labels of the DARTS cells outside the held-out part say."""
    nb = _nb201_table(tmp_path / "nb.csv")
    test_rows, _ = bench.split_indices(80, 40, 1000 + 1, allow_small=False, need=0, what="x")
    docs = []
    for i, seed in enumerate((None, 7)):
        darts = _darts_table(tmp_path / f"d{i}.csv", pool_labels_seed=seed, test_rows=test_rows)
        bench.main(_argv(nb, darts, tmp_path / f"o{i}", "--ks", "0"))
        docs.append(json.loads((tmp_path / f"o{i}" / "cross_space.json").read_text()))
    a, b = docs
    assert [r["formula"] for r in a["runs"]] == [r["formula"] for r in b["runs"]]
    assert [r["darts"] for r in a["runs"]] == [r["darts"] for r in b["runs"]]
    assert [x["darts"] for x in a["learned"]] == [x["darts"] for x in b["learned"]]
    # and the test is able to fail: with k > 0 the pool labels are read
    c = _darts_table(tmp_path / "d2.csv", pool_labels_seed=None, test_rows=test_rows)
    d = _darts_table(tmp_path / "d3.csv", pool_labels_seed=7, test_rows=test_rows)
    runs = []
    for name, t in (("o2", c), ("o3", d)):
        bench.main(_argv(nb, t, tmp_path / name, "--ks", "20", "--no-learned", "--seeds", "1"))
        runs.append(json.loads((tmp_path / name / "cross_space.json").read_text())["runs"][0]["validation_min_tau"])
    assert runs[0] != runs[1]


def test_rank_terminals_remove_the_scale(bench, tmp_path):
    nb = bench.load_nb201(str(_nb201_table(tmp_path / "nb.csv")), None, [])
    p = bench.restrict(nb[0], ["good"], rank=True)
    v = p.columns["good"]
    assert v.min() == 0.0 and v.max() == 1.0
    raw = bench.restrict(nb[0], ["good"])
    assert np.array_equal(np.argsort(v, kind="stable"), np.argsort(raw.columns["good"], kind="stable"))


def test_small_tables_are_refused_in_one_line(bench, tmp_path):
    nb, darts = _nb201_table(tmp_path / "nb.csv"), _darts_table(tmp_path / "d.csv")
    with pytest.raises(SystemExit, match="fewer than 75 held out"):
        bench.main(_argv(nb, darts, tmp_path / "o", "--ks", "10", "--darts-test", "75"))
    with pytest.raises(SystemExit):
        bench.main(_argv(nb, darts, tmp_path / "o", "--ks", "1"))


def test_suitezero_nb201_source_joins_the_accuracy_csv(bench, tmp_path):
    cells = _nb201_cells(12)
    rng = np.random.default_rng(4)
    data = {"cifar10": {nb201.nb201_cell_to_key(c): {"idx": str(i), "arch": c, "nwot": {"score": float(rng.normal())},
                                                     "synflow": {"score": float(rng.normal())},
                                                     "val_accuracy": 80.0} for i, c in enumerate(cells)}}
    zc = tmp_path / "zc_nasbench201.json.gz"
    with gzip.open(zc, "wt") as f:
        json.dump(data, f)
    acc = tmp_path / "acc.csv"
    acc.write_text("index,arch,cifar10_test,cifar100_test,imagenet16_test\n"
                   + "".join(f"{i},{c},{90 - i},{70 - i},{40 - i}\n" for i, c in enumerate(cells[:10])))
    probs = bench.load_nb201(str(zc), str(acc), [])
    assert [p.name for p in probs] == ["nb201-cifar10", "nb201-cifar100", "nb201-imagenet16"]
    assert all(len(p) == 10 and sorted(p.columns) == ["nwot", "synflow"] for p in probs)
    i = probs[1].archs.index(cells[3])
    assert probs[1].accuracy[i] == 67.0
    extra = tmp_path / "extra.csv"
    extra.write_text("arch,swap\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells[:6])))
    probs = bench.load_nb201(str(zc), str(acc), [str(extra)])
    assert len(probs[0]) == 6 and probs[0].columns["swap"][probs[0].archs.index(cells[4])] == 4.0


def test_graph_features_shared_by_name(bench):
    nb = bench.graph_feature_columns("nb201", _nb201_cells(5))
    da = bench.graph_feature_columns("darts", _darts_cells(5))
    common = set(nb) & set(da)
    assert {"graph_op_conv", "graph_op_none", "graph_op_skip_connect", "graph_paths", "graph_depth"} <= common
    assert not any("nor_conv" in c or "sep_conv" in c for c in common)
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|"
    assert bench.graph_feature_columns("nb201", [cell])["graph_op_conv"][0] == 3


def test_stem_less_nb201_network_and_its_swap():
    from eznas_store.collect.proxies.swap import SwapState

    net = nb201.build_swap("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|",
                           stride=2)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert net(x).shape == (16, 10)
    assert sum(p.numel() for p in net.parameters()) < 500  # tiny: one 3-channel cell
    convs = SwapState(nb201.build_swap("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
                                       "nor_conv_3x3~1|nor_conv_3x3~2|", stride=2), x, 0).mean_patterns()
    pools = SwapState(nb201.build_swap("|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|"
                                       "avg_pool_3x3~1|avg_pool_3x3~2|", stride=2), x, 0).mean_patterns()
    assert convs > pools > 0  # conv edges add ReLU units; a pool-only cell has the preprocessing's only
    with pytest.raises(Exception, match="stride"):
        nb201.build_swap("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", stride=3)


def test_darts_sources_join_on_the_genotype(bench, tmp_path):
    a = _darts_table(tmp_path / "a.csv")
    cells = _darts_cells(80)
    meta = {"recipe": {"space": "darts"}, "label_sets": {"cifar10": {"accuracy": "cifar10_valid"}}}
    b = write_proxy_table(tmp_path / "b.csv", cells[10:][::-1], list(range(70)),
                          {"cifar10_valid": np.zeros(70), "swap@cifar10": np.arange(70.0), "noise@cifar10": np.ones(70)},
                          meta)
    one, both = bench.load_darts(str(a)), bench.load_darts([str(a), str(b)])
    assert len(both) == 70 and set(both.archs) == set(cells[10:])
    assert sorted(both.columns) == ["darts_only", "good", "noise", "swap"]
    i, j = both.archs.index(cells[20]), one.archs.index(cells[20])
    assert both.accuracy[i] == one.accuracy[j] and both.columns["noise"][i] == one.columns["noise"][j]
    assert both.columns["swap"][i] == 70 - 1 - (20 - 10)
