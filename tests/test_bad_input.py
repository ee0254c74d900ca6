"""Hostile or careless input ends in one stderr line and exit 2, before any work is spent."""

from __future__ import annotations

import gzip
import json

import pytest

from eznas_store.cli import main
from eznas_store.errors import BenchmarkFormatError, ConfigError, ProgramError


def _one_line(capsys, argv) -> str:
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, (rc, err)
    return err[0]


def test_huge_program_file_is_refused_before_it_is_read(tmp_path):
    from eznas_store.programs.codec import MAX_PROGRAM_BYTES, load_program

    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_PROGRAM_BYTES + 1)
    with pytest.raises(ProgramError, match="larger than any program"):
        load_program(big)


def test_deeply_nested_program_for_search_is_one_line(tmp_path):
    from eznas_store.archsearch.cell_scorers import load_fitness

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ProgramError, match="not valid JSON"):
        load_fitness(str(deep))
    with pytest.raises(ProgramError, match="neither a program file nor a registered program"):
        load_fitness(str(tmp_path / "missing.json"))


def test_deeply_nested_suitezero_file_is_one_line(tmp_path):
    from eznas_store.sources.suitezero import read_zc

    p = tmp_path / "zc_nasbench201.json.gz"
    p.write_bytes(gzip.compress(("[" * 200_000 + "]" * 200_000).encode()))
    with pytest.raises(BenchmarkFormatError, match="nested too deeply"):
        read_zc(p)


def test_non_utf8_network_list(tmp_path):
    from eznas_store.sources.tables import read_network_list

    p = tmp_path / "cells.txt"
    p.write_bytes(b"\xff\xfe|none~0|\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_network_list(p)


@pytest.mark.parametrize("command", ["evolve", "score", "compare", "transfer", "search"])
def test_out_that_is_a_file(tiny_store, tmp_path, capsys, command):
    f = tmp_path / "taken"
    f.write_text("x")
    argv = {
        "evolve": ["evolve", tiny_store, "--out", str(f), "--workers", "0", "--no-progress"],
        "score": ["score", tiny_store, "--program", "eznas-a", "--out", str(f), "--no-progress"],
        "compare": ["compare", tiny_store, "--out", str(f)],
        "transfer": ["transfer", f"a={tiny_store}", f"b={tiny_store}", "--out", str(f), "--workers", "0",
                     "--generations", "1", "--population", "4", "--no-progress"],
        "search": ["search", "--proxy", "params", "--benchmark", str(_bench(tmp_path)), "--dataset", "digits",
                   "--max-evaluations", "2", "--out", str(f), "--no-progress"],
    }[command]
    line = _one_line(capsys, argv)
    assert "taken" in line and ("is a file" in line or "cannot write" in line or "Not a directory" in line), line


def _bench(tmp_path):
    from conftest import make_bench

    return make_bench(tmp_path / "b.csv", n=4)


def test_report_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    line = _one_line(capsys, ["report", str(run), str(run), "--out", str(f)])
    assert "taken" in line, line


def test_checkpoint_json_nested_too_deeply_is_one_line(tmp_path):
    from eznas_store.evolution.checkpoint import _load_checkpoint_json

    p = tmp_path / "checkpoint.json"
    p.write_text(json.dumps({"a": 1})[:-1] + "[" * 100_000)
    with pytest.raises(ConfigError, match="cut short"):
        _load_checkpoint_json(p)


def test_a_partial_store_is_used_with_a_one_line_warning(tiny_store, tmp_path, capsys):
    import shutil

    import numpy as np

    from eznas_store.store.store import open_store

    partial = str(tmp_path / "partial.zarr")
    shutil.copytree(tiny_store, partial)
    open_store(partial).group["complete"][0:3] = np.zeros(3, dtype=bool)
    assert main(["score", partial, "--program", "eznas-a", "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"eznas-store: warning: store {partial}: only 9 of 12 networks are complete; using those "
                   "(finish it with ingest, or check it with verify)"], err


def test_duplicate_key_in_a_program_file(tmp_path):
    from eznas_store.programs.codec import load_program

    p = tmp_path / "dup.json"
    p.write_text('{"format": "eznas-program", "version": 1, "tree": {"terminal": "act_D"}, '
                 '"tree": {"terminal": "act_N"}}')
    with pytest.raises(ProgramError, match="'tree' appears twice"):
        load_program(p)


def test_explicit_nan_accuracy_in_a_benchmark_table(tmp_path):
    from eznas_store.sources.tables import read_benchmark

    p = tmp_path / "bench.csv"
    p.write_text("arch,cifar10_valid\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,nan\n")
    with pytest.raises(BenchmarkFormatError, match="leave the cell empty"):
        read_benchmark(p)


def test_negative_workers_for_score(tiny_store, capsys):
    line = _one_line(capsys, ["score", tiny_store, "--program", "eznas-a", "--workers", "-2", "--no-progress"])
    assert "--workers" in line


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_label_out_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, monkeypatch, where):
    import eznas_store.collect.label as label

    def no_training(*a, **k):  # the refusal must come before the first (42 s) training
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(label, "train_network", no_training)
    (tmp_path / "taken").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "taken" / "labels.csv"
    line = _one_line(capsys, ["label", "--out", str(out), "--networks", "2", "--epochs", "1", "--no-progress"])
    assert ("is a folder" in line) if where == "folder" else ("taken is a file" in line), line


def test_an_unreachable_s3_store_is_one_line(tmp_path, capsys):
    """No s3fs, or s3fs without a network (this project's machines): either way one line."""
    from conftest import make_bench

    bench = make_bench(tmp_path / "b.csv", n=2)
    line = _one_line(capsys, ["ingest", "--store", "s3://eznas-no-such-bucket/s.zarr", "--dataset", "digits",
                              "--benchmark", str(bench), "--channels", "4", "--cells", "1", "--image-size", "8",
                              "--no-progress", "--yes"])
    assert "s3://eznas-no-such-bucket/s.zarr" in line, line
