"""``label``: a tiny real training run writes a table the rest of the pipeline reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eznas_store.sources.tables import default_accuracy_column, meta_path, read_benchmark
from eznas_store.errors import ConfigError, EznasError, InvalidArchError, UnknownNameError
from eznas_store.collect.label import DEMO_LABEL, LabelConfig, label_seeds, run_label
from eznas_store.sources.spaces.nb201 import all_cells

ALL = list(all_cells())
#: three cells with different capacity: all-conv, a mix, and one with no input→output path
CELLS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
)
#: a tiny recipe: every network trains in well under a second on one CPU thread
TINY = dict(dataset="digits", C=4, N=1, image_size=8, epochs=1, batch_size=64, lr=0.1,
            seed=0, threads=1, progress=False)
COLUMNS = ["digits_test", "digits_train", "digits_train_loss"]


def label(tmp_path, name="labels.csv", **kw):
    cfg = LabelConfig(out=str(tmp_path / name), **{**TINY, "networks": CELLS, **kw})
    return run_label(cfg), tmp_path / name


def test_table_columns_recipe_and_range(tmp_path):
    report, out = label(tmp_path)
    assert (report.trained, report.skipped, report.rows) == (3, 0, 3)
    table = read_benchmark(out)
    assert list(table.columns) == COLUMNS
    assert default_accuracy_column(table, "digits") == "digits_test"
    # rows sorted by the cell's index in all_cells(), and that index is written
    assert list(table.index) == sorted(ALL.index(c) for c in CELLS)
    assert [ALL[i] for i in table.index] == list(table.archs)
    for name in ("digits_test", "digits_train"):
        assert np.all((table.column(name) >= 0) & (table.column(name) <= 100))
    assert np.all(np.isfinite(table.column("digits_train_loss")))
    # the cell without a path cannot beat chance by much; the all-conv cell learns
    acc = dict(zip(table.archs, table.column("digits_test")))
    assert acc[CELLS[2]] < 25 < min(acc[CELLS[0]], acc[CELLS[1]])
    assert report.accuracies == pytest.approx(acc)
    meta = table.meta
    assert meta["command"] == "label" and meta["seconds"] > 0 and meta["threads"] == 1
    recipe = meta["recipe"]
    assert {k: recipe[k] for k in ("C", "N", "image_size", "epochs", "batch_size", "seed")} == {
        "C": 4, "N": 1, "image_size": 8, "epochs": 1, "batch_size": 64, "seed": 0}
    assert recipe["lr"] == 0.1 and recipe["momentum"] == 0.9 and recipe["weight_decay"] == 5e-4
    assert recipe["dataset"] == "digits" and recipe["torch"] == torch.__version__
    assert "digits_test" in report.line()


def test_deterministic_and_order_free(tmp_path):
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    _, a = label(tmp_path, "a.csv")
    # the caller's global RNG and thread count are left as they were
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    _, b = label(tmp_path, "b.csv", networks=tuple(reversed(CELLS)))
    assert a.read_bytes() == b.read_bytes()
    # a cell's label does not depend on what it was sampled with
    _, c = label(tmp_path, "c.csv", networks=CELLS[:1])
    one = read_benchmark(c)
    full = read_benchmark(a)
    assert one.column("digits_test")[0] == full.column("digits_test")[full.lookup(CELLS[0])]


def test_resume_trains_only_missing(tmp_path):
    first, out = label(tmp_path, networks=CELLS[:2])
    assert first.trained == 2
    second, _ = label(tmp_path, networks=CELLS)
    assert (second.trained, second.skipped, second.rows) == (1, 2, 3)
    third, _ = label(tmp_path, networks=CELLS)
    assert (third.trained, third.skipped) == (0, 3)
    # resumed table == one run over all three cells, byte for byte
    _, fresh = label(tmp_path, "fresh.csv")
    assert out.read_bytes() == fresh.read_bytes()
    assert read_benchmark(out).meta["networks"] == 3


def test_resume_refuses_other_recipe(tmp_path):
    _, out = label(tmp_path, networks=CELLS[:1])
    with pytest.raises(ConfigError, match="different recipe.*epochs 1 -> 2"):
        label(tmp_path, networks=CELLS[:1], epochs=2)
    meta_path(out).unlink()
    with pytest.raises(ConfigError, match="no label recipe"):
        label(tmp_path, networks=CELLS[:1])


def test_sampled_networks(tmp_path):
    report, out = label(tmp_path, networks=2, seed=3)
    table = read_benchmark(out)
    pick = sorted(np.random.default_rng(3).permutation(len(ALL))[:2])
    assert list(table.index) == pick and report.trained == 2
    # a larger sample of the same seed extends the smaller one: only the new cell trains
    more, _ = label(tmp_path, networks=3, seed=3)
    assert (more.trained, more.skipped) == (1, 2)


def test_seeds_depend_on_seed_and_index_only():
    assert label_seeds(0, 5) == label_seeds(0, 5)
    assert len({label_seeds(0, 5), label_seeds(0, 6), label_seeds(1, 5)}) == 3
    init, data = label_seeds(0, 5)
    assert init != data and 0 <= init < 2**63 and 0 <= data < 2**63


def test_demo_defaults_are_a_valid_config():
    cfg = LabelConfig(out="demo.csv", **DEMO_LABEL)
    assert cfg.networks == DEMO_LABEL["networks"] and cfg.dataset == "digits"


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"epochs": 0}, ConfigError, "--epochs"),
        ({"batch_size": 1}, ConfigError, "--batch-size"),
        ({"lr": -0.1}, ConfigError, "--lr"),
        ({"lr": math.nan}, ConfigError, "--lr"),
        ({"momentum": 0.0}, ConfigError, "--momentum"),
        ({"weight_decay": -1.0}, ConfigError, "--weight-decay"),
        ({"C": 0}, ConfigError, "--C"),
        ({"image_size": 2.5}, ConfigError, "--image-size"),
        ({"seed": -1}, ConfigError, "--seed"),
        ({"networks": 0}, ConfigError, "--networks"),
        ({"networks": ()}, ConfigError, "names no cells"),
        ({"networks": CELLS[0]}, ConfigError, "not one string"),
        ({"networks": (CELLS[0], CELLS[0])}, ConfigError, "listed twice"),
        ({"device": "tpu"}, ConfigError, "--device"),
        ({"threads": 0}, ConfigError, "--threads"),
        ({"dataset": "mnist"}, UnknownNameError, "unknown dataset"),
        ({"space": "nb101"}, UnknownNameError, "unknown search space"),
        ({"out": ""}, ConfigError, "--out"),
    ],
)
def test_bad_config(tmp_path, kw, error, match):
    base = {"out": str(tmp_path / "x.csv"), **TINY, "networks": CELLS}
    with pytest.raises(error, match=match) as info:
        LabelConfig(**{**base, **kw})
    assert isinstance(info.value, EznasError)
    assert "\n" not in str(info.value)


def test_bad_cells_and_sizes(tmp_path):
    with pytest.raises(InvalidArchError, match="unknown operation"):
        label(tmp_path, networks=("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",))
    with pytest.raises(ConfigError, match="cannot sample"):
        label(tmp_path, networks=len(ALL) + 1)
    with pytest.raises(ConfigError, match="only 'digits' can be resized"):
        label(tmp_path, dataset="cifar10", data_root=str(tmp_path), networks=CELLS[:1])
    assert not (tmp_path / "labels.csv").exists()


def test_killed_run_keeps_finished_cells(tmp_path, monkeypatch):
    import eznas_store.collect.label as label_module

    real = label_module.train_network
    calls = []

    def dies_on_third(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(label_module, "_SAVE_EVERY_CELLS", 1)
    monkeypatch.setattr(label_module, "train_network", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        label(tmp_path)
    assert len(read_benchmark(tmp_path / "labels.csv")) == 2
    monkeypatch.setattr(label_module, "train_network", real)
    report, out = label(tmp_path)
    assert (report.trained, report.skipped) == (1, 2)
    _, fresh = label(tmp_path, "fresh.csv")
    assert out.read_bytes() == fresh.read_bytes()
