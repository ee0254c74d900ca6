"""``eznas-store proxy-table``: the proxies-only collection of NB201 cells into a store (ingest's
proxies-only path with label sets and the Suite-Zero join), its CSV export, and reading both as
``evolve --over proxies`` problems. Digits images, a tiny skeleton: no data outside the repository."""

from __future__ import annotations

import csv
import gzip
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas_store.collect.proxies.networks import nb201_factory
from eznas_store.collect.proxies.runner import compute_all
from eznas_store.errors import ConfigError, DataNotFoundError, StoreError, UnknownNameError
from eznas_store.fitness.problems import load_problems, split_problem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.ingest.proxy_table import (
    HEAD_FREE,
    LABEL_SETS,
    PER_HEAD,
    ProxyTableConfig,
    collect_proxy_table,
    export_proxy_csv,
    is_proxy_table,
    read_proxy_table,
)
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Program
from eznas_store.sources.spaces import get_space
from eznas_store.sources.tables import write_benchmark
from eznas_store.store import open_store

TINY = dict(channels=4, cells_per_stage=1, batch_size=4, dataset="digits", image_size=8, device="cpu")
NASLIB = ("flops", "jacov", "synflow")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sources(tmp: Path, n: int = 8) -> tuple[Path, Path]:
    """A benchmark CSV with the three test columns and a Suite-Zero file for the same n cells."""
    rng = np.random.default_rng(0)
    space = get_space("nb201")
    keys = sorted({str(tuple(int(x) for x in rng.choice([0, 2, 3, 4], 6))) for _ in range(4 * n)})[:n]
    archs = [space.from_naslib_key(k) for k in keys]
    cols = {c: rng.uniform(10, 90, len(archs)) for c in ("cifar10_test", "cifar100_test", "imagenet16_test")}
    bench = write_benchmark(tmp / "bench.csv", archs, cols, index=np.arange(len(archs)))
    data = {task: {k: {p: {"score": float(rng.normal())} for p in NASLIB} | {"val_accuracy": 50.0}
                   for k in keys} for task in ("cifar10", "ImageNet16-120")}
    zc = tmp / "zc_nasbench201.json.gz"
    zc.write_bytes(gzip.compress(json.dumps(data).encode()))
    return bench, zc


def _cfg(tmp: Path, **kw) -> ProxyTableConfig:
    if not (tmp / "bench.csv").exists():
        _sources(tmp)
    base = dict(store=str(tmp / "t.zarr"), benchmark=str(tmp / "bench.csv"), suitezero=str(tmp / "zc_nasbench201.json.gz"),
                data_root=None, networks=3, progress=False, **TINY)
    return ProxyTableConfig(**(base | kw))


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_collect_resume_and_recipe_check(tmp_path):
    cfg = _cfg(tmp_path)
    first = collect_proxy_table(cfg)
    assert first.done == 3 and open_store(cfg.store).complete().all()
    again = collect_proxy_table(cfg)  # complete: nothing to do
    assert again.done == 0
    # the same recipe in a fresh store gives the same values
    fresh = collect_proxy_table(replace(cfg, store=str(tmp_path / "u.zarr")))
    assert fresh.done == 3
    a, b = open_store(cfg.store).proxy_values().values, open_store(str(tmp_path / "u.zarr")).proxy_values().values
    assert np.array_equal(a, b, equal_nan=True)
    with pytest.raises(StoreError, match="different configuration"):
        collect_proxy_table(replace(cfg, seed=1))
    with pytest.raises(StoreError, match="option 'collect.batch_size' differs"):
        collect_proxy_table(replace(cfg, batch_size=6))


def test_store_reads_as_one_problem_per_label_set_over_the_same_cells(tmp_path):
    cfg = _cfg(tmp_path, networks=6, export=str(tmp_path / "t.csv"))
    collect_proxy_table(cfg)
    table = read_proxy_table(cfg.export)
    assert set(table["label_sets"]) == set(LABEL_SETS) and is_proxy_table(cfg.export)
    for source in (cfg.store, cfg.export):
        problems = load_problems(source)
        assert [p.name for p in problems] == ["nb201-cifar10:t", "nb201-cifar100:t", "nb201-imagenet16:t"]
        assert len({p.archs for p in problems}) == 1
        assert {"meco", "zico", "swap", "az_expressivity", *NASLIB} <= set(problems[0].columns)
    bench = {r[1]: r for r in _rows(Path(cfg.benchmark))[1:]}
    for p, col in zip(problems, (2, 3, 4)):
        assert np.allclose(p.accuracy, [float(bench[a][col]) for a in p.archs])
    # the NASLib values are Suite-Zero's own, per task (CIFAR-100 reads the cifar10 task)
    zc = json.loads(gzip.decompress(Path(cfg.suitezero).read_bytes()))
    key = {get_space("nb201").from_naslib_key(k): k for k in zc["cifar10"]}
    a = problems[0].archs[0]
    assert problems[1].columns["jacov"][0] == zc["cifar10"][key[a]]["jacov"]["score"]
    assert problems[2].columns["jacov"][0] == zc["ImageNet16-120"][key[a]]["jacov"]["score"]
    # head-free proxies are shared, zico is per head
    assert np.array_equal(problems[0].columns["meco"], problems[2].columns["meco"])
    assert not np.array_equal(problems[0].columns["zico"], problems[1].columns["zico"])
    prog = Program(parse_formula("add(rank(meco), rank(jacov))", ops=PROXY_OPS, terminals=None),
                   terminal_set="proxies")
    fit = ProxyTableScorer(problems, combine="min").fitness([prog])[0]
    assert len(fit.taus) == 3 and math.isclose(fit.value, min(fit.taus))
    held = {split_problem(p, 3, seed=7)[1].archs for p in problems}
    assert len(held) == 1


def test_head_dependence_as_documented(tmp_path):
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    val = {k: {n: v for n, (v, _) in compute_all(nb201_factory(arch, num_classes=k, C=4, N=1), x, y, seed=0,
                                                   names=list(HEAD_FREE) + ["zico"]).items()}
           for k in (10, 100)}
    assert val[10]["meco"] == val[100]["meco"]  # exact: the head is reset last and adds 0
    assert val[10]["az_expressivity"] != val[100]["az_expressivity"]  # another draw (documented)
    assert val[10]["zico"] != val[100]["zico"]
    assert set(HEAD_FREE) == {n for n in HEAD_FREE + PER_HEAD if get_registry()[n].head_free}


def get_registry():
    from eznas_store.collect.proxies.registry import PROXIES

    return PROXIES


@pytest.mark.parametrize("change, match, error", [
    (dict(export="t.txt"), "--export must name a .csv", ConfigError),
    (dict(networks=0), "--networks must be at least 1", ConfigError),
    (dict(batch_size=1), "--batch-size", ConfigError),
    (dict(label_sets=("cifar10", "svhn")), "--label-set", ConfigError),
    (dict(proxies=("swap_reg",)), "derived from swap", ConfigError),
    (dict(proxies=("mecco",)), "unknown proxy", UnknownNameError),
    (dict(benchmark=None), "needs --benchmark", ConfigError),
    (dict(dataset="cifar10"), "needs --data-root", ConfigError),
])
def test_config_is_validated_at_the_edge(tmp_path, change, match, error):
    with pytest.raises(error, match=match):
        _cfg(tmp_path, **change)


def test_missing_inputs_and_a_name_both_computed_and_joined(tmp_path):
    with pytest.raises(DataNotFoundError):
        _cfg(tmp_path, suitezero=str(tmp_path / "nope.json.gz"))
    with pytest.raises(ConfigError, match="also joined from --suitezero"):
        collect_proxy_table(_cfg(tmp_path, proxies=("meco", "synflow")))
    with pytest.raises(ConfigError, match="one --label-set"):
        _cfg(tmp_path, label_sets=())


def test_a_failed_az_component_keeps_its_cell_at_the_floor(tmp_path):
    """Pool-heavy cells whose float32 spectrum fails are AZ-NAS's lowest rank, not missing:
    the loader keeps them (a failed MeCo still drops its cell); an exported table reads so."""
    from eznas_store.collect.proxies.az_nas import AZ_FLOORS

    cfg = _cfg(tmp_path, networks=4, proxies=("az_expressivity", "az_progressivity", "az_trainability",
                                                "az_complexity", "meco"))
    collect_proxy_table(cfg)
    out = export_proxy_csv(cfg.store, tmp_path / "t.csv")
    rows = _rows(out)
    head = rows[0]
    rows[1][head.index("az_expressivity@cifar10")] = "nan"
    rows[2][head.index("meco@cifar10")] = "nan"
    with open(out, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    problems = load_problems(str(out))
    assert rows[1][1] in problems[0].archs and rows[2][1] not in problems[0].archs
    assert problems[0].dropped == 1
    i = problems[0].archs.index(rows[1][1])
    assert problems[0].columns["az_expressivity"][i] == AZ_FLOORS["az_expressivity"]
    assert problems[1].columns["az_expressivity"][i] != AZ_FLOORS["az_expressivity"]  # only that label set's cell


def test_an_export_never_overwrites_another_file(tmp_path):
    cfg = _cfg(tmp_path, networks=2, proxies=("meco",), label_sets=("cifar10",))
    collect_proxy_table(cfg)
    (tmp_path / "mine.csv").write_text("a,b\n")
    from eznas_store.errors import OutputError

    with pytest.raises(OutputError, match="not a proxy table"):
        export_proxy_csv(cfg.store, tmp_path / "mine.csv")
    assert (tmp_path / "mine.csv").read_text() == "a,b\n"
    export_proxy_csv(cfg.store, tmp_path / "t.csv")
    export_proxy_csv(cfg.store, tmp_path / "t.csv")  # its own export: rewritten


def test_the_store_records_swaps_images(tmp_path):
    """SWAP takes the reference's first 16 images (issue 13's measurement): its card says so."""
    cfg = _cfg(tmp_path, networks=1, batch_size=20, proxies=("swap",), label_sets=("cifar10",))
    collect_proxy_table(cfg)
    card = open_store(cfg.store).group["proxy_value"].attrs["proxies"]["swap"]
    assert "first 16 images" in card["protocol"] and card["images"] == 20


def test_swap_takes_the_first_16_images_of_the_batch():
    """The pass scores the reference's 16 images whatever batch it is given."""
    from eznas_store.collect.proxies.swap import SWAP_BATCH

    g = torch.Generator().manual_seed(0)
    images = torch.randn(20, 3, 8, 8, generator=g)
    factory = nb201_factory("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|",
                            num_classes=10, C=4, N=1)
    whole = compute_all(factory, images, None, seed=3, names=["swap"])["swap"][0]
    first = compute_all(factory, images[:SWAP_BATCH], None, seed=3, names=["swap"])["swap"][0]
    assert SWAP_BATCH == 16 and whole == first and 1.0 < whole <= 2 ** 16
