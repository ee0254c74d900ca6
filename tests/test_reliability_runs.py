"""Issue 24's hostile cases for the outputs that can be continued (stores, proxy tables, runs):
one writer at a time, proxy-table sidecars read defensively, bounds checked before any work,
and resume/test-store mistakes refused in one line.

Concurrent writers are made deterministic: the test process holds the output's lock
(``outputs.exclusive``) and runs the command in-process through ``cli.main``, so the second
writer meets the first at a known point, never by timing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.errors import BenchmarkFormatError
from eznas_store.outputs import exclusive
from conftest import make_bench, tiny_ingest_cmd

SMALL_EVOLVE = ["--population", "6", "--mu", "4", "--lambda", "6", "--max-depth", "4", "--workers", "0",
                "--no-progress"]


def _run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return rc, err


def _holder_line(err: list[str]) -> str:
    """The one line of a refusal that names this (the holding) process."""
    assert len(err) == 1, err
    assert f"pid {os.getpid()}" in err[0] and "being written by another eznas-store" in err[0], err
    return err[0]


def _digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or the file itself) by its sha256, to show nothing changed."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _ingest_argv(store: str, bench: Path, *extra: str) -> list[str]:
    return [*tiny_ingest_cmd(store, bench, chunk_networks=3)[3:], *extra]


# ----------------------------------------------------------------------------- one writer


def test_a_second_ingest_of_one_store_is_refused_and_writes_nothing(tmp_path, capsys):
    bench = make_bench(tmp_path / "bench.csv")
    store = tmp_path / "s.zarr"
    with exclusive(store, "store"):
        rc, err = _run(capsys, _ingest_argv(str(store), bench))
    assert rc == 2 and str(store) in _holder_line(err)
    assert not store.exists()
    assert _run(capsys, _ingest_argv(str(store), bench))[0] == 0  # the lock was given back
    before = _digest(store)
    with exclusive(store, "store"):
        rc, err = _run(capsys, _ingest_argv(str(store), bench))
    _holder_line(err)
    assert rc == 2 and _digest(store) == before  # not even a run record


def test_shards_of_one_store_run_side_by_side_but_one_shard_once(tmp_path, capsys):
    from eznas_store.ingest.driver import shard_lock
    from eznas_store.store.store import open_store

    bench = make_bench(tmp_path / "bench.csv")
    store = str(tmp_path / "s.zarr")
    with shard_lock(store, (0, 2)):  # shard 0/2 is being collected elsewhere
        assert _run(capsys, _ingest_argv(store, bench, "--shard", "1/2"))[0] == 0
        rc, err = _run(capsys, _ingest_argv(store, bench, "--shard", "0/2"))
        assert rc == 2 and "shard-0-of-2" in _holder_line(err)
        assert not open_store(store).complete().all()
    assert _run(capsys, _ingest_argv(store, bench, "--shard", "0/2"))[0] == 0
    assert open_store(store).complete().all()


def test_a_second_evolve_on_one_run_folder_is_refused(tiny_store, tmp_path, capsys):
    out = tmp_path / "run"
    with exclusive(out, "run"):
        rc, err = _run(capsys, ["evolve", tiny_store, "--out", out, "--generations", "1", *SMALL_EVOLVE])
    assert rc == 2 and str(out) in _holder_line(err)
    assert not out.exists()


# ----------------------------------------------------------------------------- proxy tables

CELLS = None


def _cells(n: int) -> list[str]:
    from eznas_store.sources.spaces.nb201 import all_cells

    cells = list(all_cells())
    return [cells[i] for i in np.random.default_rng(0).choice(len(cells), n, replace=False)]


def _table(tmp: Path, n: int = 12, name: str = "t") -> Path:
    """A valid hand-made proxy table (CSV + .meta.json) of ``n`` cells, one label set."""
    rng = np.random.default_rng(1)
    proxies = ("jacov", "meco", "synflow", "zico")
    columns = ["index", "arch", "cifar10_test", *(f"{p}@cifar10" for p in proxies), "seconds"]
    path = tmp / f"{name}.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for i, a in enumerate(_cells(n)):
            w.writerow([i, a, *(repr(float(v)) for v in rng.uniform(10, 90, len(proxies) + 1)), "0.1"])
    meta = {"format": "eznas-proxy-table/1", "recipe": {"seed": 0}, "columns": columns,
            "label_sets": {"cifar10": {"classes": 10, "accuracy": "cifar10_test", "naslib_task": "cifar10"}}}
    (tmp / f"{name}.meta.json").write_text(json.dumps(meta))
    return path


def _rewrite(path: Path, edit) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _empty_label(rows):
    rows[2][2] = ""
    return rows


def _meta(path: Path, edit) -> None:
    meta_file = path.with_name(path.stem + ".meta.json")
    meta_file.write_text(edit(json.loads(meta_file.read_text())))


@pytest.mark.parametrize("damage, needle", [
    (lambda p: _rewrite(p, _empty_label), "line 3, column cifar10_test is empty"),
    (lambda p: _rewrite(p, lambda rows: rows + [rows[4]]), "is in it twice (lines 5 and 14"),
    (lambda p: _rewrite(p, lambda rows: rows[:3] + [rows[3][:4]] + rows[4:]), "line 4 has 4 fields"),
    (lambda p: _rewrite(p, lambda rows: [*rows[:2], [rows[2][0], "", *rows[2][2:]], *rows[3:]]),
     "line 3 has no cell"),
    (lambda p: _meta(p, lambda m: json.dumps({k: v for k, v in m.items() if k != "columns"})), "lacks 'columns'"),
    (lambda p: _meta(p, lambda m: "{not json"), "t.meta.json cannot be read (not JSON)"),
    (lambda p: _meta(p, lambda m: "[1, 2]"), "is not a JSON object"),
    (lambda p: _meta(p, lambda m: json.dumps(m | {"label_sets": {"cifar10": {"accuracy": "x"}}})),
     "no accuracy column"),
    (lambda p: p.with_name("t.meta.json").unlink(), "a proxy table without its meta file t.meta.json"),
])
def test_a_damaged_proxy_table_is_one_line_naming_the_file(tmp_path, capsys, damage, needle):
    from eznas_store.fitness.problems import load_problems

    path = _table(tmp_path)
    assert len(load_problems(path)[0]) == 12  # the table is fine before the damage
    damage(path)
    with pytest.raises(BenchmarkFormatError, match=None) as e:
        load_problems(path)
    assert needle in str(e.value) and str(path) in str(e.value)
    out = tmp_path / "run"
    rc, err = _run(capsys, ["evolve", path, "--over", "proxies", "--train-networks", "6", "--out", out,
                            "--generations", "0", *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1 and needle in err[0] and str(path) in err[0], err
    assert not out.exists()


def test_a_proxies_only_store_being_written_is_not_written_twice(tmp_path, capsys):
    """proxy-table is ingest's proxies-only path: the store's lock is taken before the store is
    touched, and a second writer is refused in one line naming the holder."""
    from test_proxy_table import _cfg

    from eznas_store.ingest.driver import shard_lock

    cfg = _cfg(tmp_path, networks=2, proxies=("meco",), label_sets=("cifar10",))
    argv = ["proxy-table", "--store", cfg.store, "--benchmark", cfg.benchmark, "--suitezero", cfg.suitezero,
            "--dataset", "digits", "--image-size", "8", "--channels", "4", "--cells", "1", "--batch-size", "4",
            "--networks", "2", "--proxy", "meco", "--label-set", "cifar10", "--device", "cpu", "--no-progress"]
    with shard_lock(cfg.store, (0, 1)):
        rc, err = _run(capsys, argv)
    assert rc == 2 and cfg.store in _holder_line(err)
    assert sorted(os.listdir(tmp_path)) == ["bench.csv", "zc_nasbench201.json.gz"]


# ----------------------------------------------------------------------------- bounds, before any work


@pytest.mark.parametrize("extra, needle", [
    (["--threads", "100000"], "--threads must be from 1 to 256"),
    (["--threads", "0"], "--threads must be from 1 to 256"),
    (["--seed", str(2**64)], "--seed must be an integer from 0 to 4294967295"),
    (["--seed", str(2**32)], "--seed must be an integer from 0 to 4294967295"),
    ([], "proxy-table needs --benchmark, --data-root"),
])
def test_proxy_table_bounds_are_checked_before_anything_is_written(tmp_path, capsys, extra, needle):
    out = tmp_path / "sub" / "p.zarr"
    rc, err = _run(capsys, ["proxy-table", "--store", out, *extra])
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert os.listdir(tmp_path) == []


def test_ingest_and_evolve_seeds_are_bounded_before_anything_is_made(tmp_path, tiny_store, capsys):
    bench = make_bench(tmp_path / "bench.csv")
    store = tmp_path / "s.zarr"
    rc, err = _run(capsys, _ingest_argv(str(store), bench, "--seed", str(2**64)))
    assert rc == 2 and len(err) == 1 and "--seed must be an integer from 0 to 4294967295" in err[0], err
    assert not store.exists()
    out = tmp_path / "run"
    rc, err = _run(capsys, ["evolve", tiny_store, "--out", out, "--seed", str(2**64), *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1 and "--seed must be an integer" in err[0], err
    assert not out.exists()


# ----------------------------------------------------------------------------- evolve: resume, test store


def test_resume_with_fewer_generations_than_done_is_refused_and_rewrites_nothing(tiny_store, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, ["evolve", tiny_store, "--out", out, "--generations", "3", *SMALL_EVOLVE])[0] == 0
    before = _digest(out)
    rc, err = _run(capsys, ["evolve", tiny_store, "--out", out, "--resume", "--generations", "1", *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1, err
    assert "the run already has 3 generations; --generations must be >= 3 to continue it" in err[0]
    assert _digest(out) == before
    # as many as it has: nothing to evolve, the run's results are saved again (a killed run's last step)
    assert _run(capsys, ["evolve", tiny_store, "--out", out, "--resume", "--generations", "3", *SMALL_EVOLVE])[0] == 0
    log = (out / "generations.jsonl").read_text().splitlines()
    assert [json.loads(x)["gen"] for x in log] == [0, 1, 2, 3]


def test_a_test_store_that_is_a_train_store_is_refused(tiny_store, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.chdir(os.path.dirname(tiny_store))
    spelled = os.path.relpath(tiny_store) + "/"
    rc, err = _run(capsys, ["evolve", tiny_store, "--out", out, "--test-store", spelled, *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1 and "is also a train store" in err[0], err
    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny_store, copy)
    rc, err = _run(capsys, ["evolve", tiny_store, "--out", out, "--test-store", copy, *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1, err
    assert f"--test-store {copy} holds the networks and statistics of the train store {tiny_store}" in err[0]
    assert not out.exists()


def test_a_statistics_seed_program_in_a_proxies_run_is_not_told_to_use_the_extended_op_set(tmp_path, capsys):
    path = _table(tmp_path)
    rc, err = _run(capsys, ["evolve", path, "--over", "proxies", "--train-networks", "6", "--out", tmp_path / "r",
                            "--generations", "0", "--seed-programs", "eznas-a", *SMALL_EVOLVE])
    assert rc == 2 and len(err) == 1, err
    assert "--op-set extended" not in err[0]
    assert "it is a program over statistics, this run (--over proxies) evolves programs over proxies" in err[0]


# ----------------------------------------------------------------------------- found by the replay benchmark


def _one_line_exit_2(capsys, argv):
    from eznas_store.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_evolve_out_inside_a_store_and_negative_cache_are_refused(tiny_store, tmp_path, capsys):
    line = _one_line_exit_2(capsys, ["evolve", tiny_store, "--out", tiny_store, "--no-progress"])
    assert "inside the store" in line
    line = _one_line_exit_2(capsys, ["evolve", tiny_store, "--out", str(tmp_path / "r"), "--chunk-cache-mb", "-1"])
    assert "--chunk-cache-mb" in line and not (tmp_path / "r").exists()


def test_hostile_run_logs_and_job_files_are_one_line(tiny_store, tmp_path, capsys):
    from eznas_store.cli import main

    run = tmp_path / "run"
    assert main(["evolve", tiny_store, "--out", str(run), "--population", "4", "--generations", "1",
                 "--max-depth", "3", "--no-progress"]) == 0
    capsys.readouterr()
    with open(run / "generations.jsonl", "a") as f:
        f.write("[" * 100_000 + "\n")
        f.write('{"gen": "a"}\n')
    assert main(["report", str(run)]) == 0  # the bad lines become notes
    assert main(["evolve", tiny_store, "--out", str(run), "--population", "4", "--generations", "1",
                 "--max-depth", "3", "--no-progress", "--resume"]) == 0
    capsys.readouterr()
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "cannot be read as JSON" in _one_line_exit_2(capsys, ["report", str(run)])
    job = tmp_path / "deep.toml"
    job.write_text("[ingest]\nnetworks = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nests its values too deeply" in _one_line_exit_2(capsys, ["ingest", "--job", str(job)])
