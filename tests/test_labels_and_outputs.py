"""Labels other than the one chosen at ingest, outputs that say what they are, storeless
proxies, and ``score_model`` on an ordinary CNN (issue "Every command behaves as a careful
user expects", items 4-6)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import eznas_store
from eznas_store.cli import main
from eznas_store.errors import UnknownNameError
from eznas_store.fitness.engine import load_task, score_store
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.store.store import open_store

from conftest import tiny_ingest_config

DEFAULT, REVERSED = "digits_test", "digits_reversed"
TINY_FLAGS = ["--dataset", "digits", "--channels", "4", "--cells", "1", "--image-size", "8",
              "--batch-size", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def two_label_store(tmp_path_factory) -> tuple[str, Path]:
    """8 tiny networks whose benchmark has two accuracy columns, the second reversing the first."""
    from eznas_store.ingest.driver import run_ingest
    from eznas_store.sources.spaces.nb201 import all_cells
    from eznas_store.sources.tables import write_benchmark

    d = tmp_path_factory.mktemp("labels")
    cells = list(all_cells())
    rng = np.random.default_rng(4)
    pick = sorted(rng.choice(len(cells), 8, replace=False))
    acc = rng.uniform(50, 95, 8)
    bench = write_benchmark(d / "bench.csv", [cells[i] for i in pick], {DEFAULT: acc, REVERSED: 100 - acc},
                            index=np.asarray(pick))
    url = str(d / "store.zarr")
    run_ingest(tiny_ingest_config(url, bench))
    return url, bench


def _out(capsys) -> str:
    return capsys.readouterr().out


# ---------------------------------------------------------------------------- item 4: labels
def test_score_against_each_label_column(two_label_store):
    url, _ = two_label_store
    prog = [NAMED_PROGRAMS["eznas-a"]]
    [a] = score_store(url, prog)
    [b] = score_store(url, prog, accuracy_column=REVERSED)
    assert a.label == DEFAULT and b.label == REVERSED
    assert np.isfinite(a.tau) and a.tau != 0
    assert b.tau == pytest.approx(-a.tau) and b.rho == pytest.approx(-a.rho)  # the labels are reversed
    np.testing.assert_array_equal(a.scores, b.scores)
    assert REVERSED in b.line() and DEFAULT in a.line()
    assert load_task(url, accuracy_column=DEFAULT).name == load_task(url).name
    assert load_task(url, accuracy_column=REVERSED).name.endswith(f"@{REVERSED}")


def test_unknown_label_column_lists_the_stores_columns(two_label_store, capsys):
    url, _ = two_label_store
    with pytest.raises(UnknownNameError, match=REVERSED):
        load_task(url, accuracy_column="digits_tset")
    for argv in (["score", url, "--accuracy-column", "digits_tset"],
                 ["compare", url, "--accuracy-column", "digits_tset"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and DEFAULT in err and REVERSED in err, err


def test_evolve_over_two_labels_takes_the_min(two_label_store, tmp_path, capsys):
    url, _ = two_label_store
    out = tmp_path / "run"
    argv = ["evolve", url, "--out", str(out), "--accuracy-column", DEFAULT, "--accuracy-column", REVERSED,
            "--population", "6", "--generations", "1", "--max-depth", "4", "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    assert "min over" in _out(capsys)
    tasks = json.loads((out / "run.json").read_text())["tasks"]
    assert [t["label"] for t in tasks] == [DEFAULT, REVERSED]
    meta = json.loads((out / "programs" / "best_final.json").read_text())["meta"]
    taus = meta["taus"]
    assert len(taus) == 2 and taus[1] == pytest.approx(-taus[0])
    assert meta["fitness"] == pytest.approx(min(taus))
    frame = pd.read_csv(out / "scores" / "best_final.csv")
    assert set(frame["label"]) == {DEFAULT, REVERSED}


# ---------------------------------------------------------------------------- item 5: outputs
def test_score_csv_tells_programs_and_labels_apart(two_label_store, tmp_path, capsys):
    from eznas_store.programs.codec import save_program
    from eznas_store.programs.formula import parse_formula
    from eznas_store.programs.tree import Program

    url, _ = two_label_store
    mine = tmp_path / "mine.json"
    save_program(Program(tree=parse_formula("l1_norm(product(act_D, actgrad_D))"), name="mine"), mine)
    csv = tmp_path / "scored" / "scores.csv"  # --out is a folder, as for every other command
    assert main(["score", url, "--program", "eznas-a", "--program", str(mine), "--proxy", "synflow",
                 "--accuracy-column", REVERSED, "--out", str(csv.parent), "--no-progress"]) == 0
    lines = _out(capsys).splitlines()
    assert all(REVERSED in line for line in lines if "Kendall tau" in line)
    frame = pd.read_csv(csv)
    assert {"program", "task", "label", "network", "arch", "accuracy", "score"} <= set(frame.columns)
    assert sorted(frame["program"].unique()) == ["eznas-a", "mine", "synflow"]
    assert set(frame["label"]) == {REVERSED}
    per = frame.groupby("program").size()
    assert (per == 8).all()
    assert not frame[frame["program"] == "eznas-a"]["score"].equals(frame[frame["program"] == "mine"]["score"])


def test_json_outputs_parse(two_label_store, capsys):
    url, _ = two_label_store
    assert main(["info", url, "--json"]) == 0
    info = json.loads(_out(capsys))
    assert info["n_networks"] == 8 and info["accuracy_column"] == DEFAULT
    assert set(info["accuracy_columns"]) == {DEFAULT, REVERSED}

    assert main(["score", url, "--program", "eznas-a", "--proxy", "nwot", "--json", "--no-progress"]) == 0
    rows = json.loads(_out(capsys))
    assert [r["program"] for r in rows] == ["nwot", "eznas-a"] and {r["label"] for r in rows} == {DEFAULT}
    [ref] = score_store(url, [NAMED_PROGRAMS["eznas-a"]])
    assert rows[1]["kendall_tau"] == ref.tau  # unrounded

    assert main(["compare", url, "--json", "--accuracy-column", REVERSED]) == 0
    doc = json.loads(_out(capsys))
    assert doc["label"] == REVERSED and {r["label"] for r in doc["rows"]} == {REVERSED}
    assert all(r["kendall_tau"] is None or math.isfinite(r["kendall_tau"]) for r in doc["rows"])


def test_json_writes_nan_as_null():
    from eznas_store.fitness.scores import json_text

    assert json.loads(json_text({"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, 2]})) == \
        {"a": None, "b": 1.5, "c": [None, 2]}


# ---------------------------------------------------------------------------- item 6: storeless proxies
def test_score_proxy_without_a_store(two_label_store, capsys):
    url, bench = two_label_store
    argv = ["score", "--proxy", "synflow", "--proxy", "nwot", "--benchmark", str(bench), "--networks", "3",
            "--json", *TINY_FLAGS]
    assert main(argv) == 0
    rows = json.loads(_out(capsys))
    assert [r["program"] for r in rows] == ["synflow", "nwot"]
    assert all(r["n"] == 3 and r["label"] == DEFAULT for r in rows)


def test_storeless_proxies_equal_the_stored_ones(two_label_store):
    from eznas_store.storeless.scoring import score_storeless_proxies

    url, bench = two_label_store
    store = open_store(url)
    archs = store.plan.archs[:3]
    cfg = tiny_ingest_config("", bench, networks=tuple(archs))
    got = score_storeless_proxies(cfg, ["synflow", "nwot"], progress=False)
    names = list(store.plan.proxies)
    stored = store.column("proxy_value")
    for r in got:
        assert r.archs == tuple(archs)
        np.testing.assert_array_equal(r.scores, stored[:3, names.index(r.program)])


# ---------------------------------------------------------------------------- item 6: score_model
class FunctionalCNN(nn.Module):
    """An ordinary CNN: ReLUs are F.relu calls, pooling a mean, no nn.Sequential units."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _cbr_twin() -> nn.Module:
    """The same network built from Conv-BN-ReLU nn.Sequential units."""
    class Twin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
            self.b2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.b2(self.b1(x)).mean((2, 3)))
    return Twin()


def test_score_model_on_a_functional_relu_cnn():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net = FunctionalCNN()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = eznas_store.score_model(net, x, "eznas-a")
    assert math.isfinite(s) and s.reason is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's model untouched
    # exact: the Conv->BN pairs are what structure="cbr" records of C-B-R units
    assert float(s) == float(eznas_store.score_model(_cbr_twin(), x, "eznas-a", structure="cbr"))


def test_score_model_nan_comes_with_a_reason():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for proxy, why in (("nwot", "ReLU"), ("zen", "AdaptiveAvgPool2d")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = eznas_store.score_model(FunctionalCNN(), x, proxy)
        assert math.isnan(s) and s.reason and why in s.reason
        assert any(why in str(w.message) for w in caught)


def test_score_model_errors_are_one_line_and_name_things():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(UnknownNameError) as e:
        eznas_store.score_model(FunctionalCNN(), x, "synflwo")
    msg = str(e.value)
    assert "synflow" in msg and "nwot" in msg and "eznas-a" in msg and "\n" not in msg

    class NoBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).mean((2, 3)))

    with pytest.raises(eznas_store.errors.ConfigError, match="BatchNorm2d") as e:
        eznas_store.score_model(NoBN(), x, "eznas-a")
    assert "\n" not in str(e.value)
