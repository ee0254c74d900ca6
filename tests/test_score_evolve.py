"""Scoring (store and storeless agree), evolution outputs, resume, Dask, and the CLI around them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.programs.tree import Program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.codec import load_program
from eznas_store.fitness.engine import Engine, score_store
from eznas_store.storeless.scoring import score_storeless
from eznas_store.store.store import open_store

from conftest import tiny_ingest_config

SMALL = dict(population=6, mu=4, lambda_=6, generations=2, max_depth=4, workers=0, progress=False)


def _programs():
    return [NAMED_PROGRAMS["eznas-a"],
            Program(tree=parse_formula("l1_norm(product(act_D, actgrad_D))")),
            Program(tree=parse_formula("invert(zeros_like(wt))"))]  # invalid everywhere (1/0)


def test_storeless_scores_equal_store_scores(tiny_store):
    s = open_store(tiny_store)
    from_store = score_store(tiny_store, _programs())
    cfg = tiny_ingest_config("", Path(s.plan.benchmark))
    direct = score_storeless(cfg, _programs(), progress=False)
    for a, b in zip(from_store, direct):
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.tau == b.tau or (np.isnan(a.tau) and np.isnan(b.tau))
    assert np.isnan(from_store[2].scores).all() and from_store[2].reason


def test_dask_engine_equals_in_process(tiny_store):
    progs = _programs()[:2]
    a = score_store(tiny_store, progs)
    with Engine(workers=2) as engine:
        b = score_store(tiny_store, progs, engine=engine)
        assert engine.worker_rss_mb()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.scores, y.scores)


def test_evolve_writes_programs_that_score_accepts(tiny_store, tmp_path, capsys):
    out = tmp_path / "run"
    res = run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), seed=0, **SMALL))
    names = sorted(p.name for p in (out / "programs").glob("*.json"))
    assert names == ["best_ever_1.json", "best_ever_2.json", "best_final.json"]
    log = [json.loads(ln) for ln in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["gen"] for r in log] == [0, 1, 2]
    assert all(r["peak_rss_mb"] > 0 for r in log)
    best = load_program(out / "programs" / "best_final.json")
    assert best.meta["fitness"] == res.best_final.meta["fitness"]
    # every saved program carries its round-off check, and it agrees with the check run alone
    from eznas_store.fitness.roundoff import roundoff_check

    [alone] = roundoff_check(tiny_store, [best])
    assert best.meta["roundoff"] == alone.json()
    assert (out / "scores" / "eznas-a.csv").exists()
    assert main(["score", tiny_store, "--program", str(out / "programs" / "best_final.json")]) == 0
    assert "Kendall tau" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists()


@pytest.mark.parametrize("representation", ["tree", "sequential"])
def test_evolve_leaves_the_global_random_state_alone(tiny_store, tmp_path, representation):
    """The run draws from its own random.Random: the caller's global random stream is untouched."""
    import random

    random.seed(1234)
    before = random.getstate()
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "run"), seed=0,
                            representation=representation, **SMALL))
    assert random.getstate() == before


def test_resume_continues_the_same_run(tiny_store, tmp_path):
    full = run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "a"), seed=3, **SMALL))
    part = dict(SMALL, generations=1)
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "b"), seed=3, **part))
    resumed = run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "b"), seed=3, **SMALL), resume=True)
    assert [p.key() for p in [full.best_final, *full.best_ever]] == \
           [p.key() for p in [resumed.best_final, *resumed.best_ever]]
    a = (tmp_path / "a" / "generations.jsonl").read_text().splitlines()
    b = (tmp_path / "b" / "generations.jsonl").read_text().splitlines()
    assert [json.loads(x)["best_formula"] for x in a] == [json.loads(x)["best_formula"] for x in b]


def test_killed_evolve_resumes_to_the_same_programs(tiny_store, tmp_path):
    args = ["--population", "6", "--mu", "4", "--lambda", "6", "--generations", "3", "--max-depth", "4",
            "--workers", "0", "--seed", "5", "--no-progress"]
    ref = tmp_path / "ref"
    assert main(["evolve", tiny_store, "--out", str(ref), *args]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "eznas_store.cli", "evolve", tiny_store, "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resume = ["--resume"] if (out / "checkpoint.json").exists() else []
    assert main(["evolve", tiny_store, "--out", str(out), *args, *resume]) == 0
    for name in ("best_final", "best_ever_1", "best_ever_2"):
        assert load_program(ref / "programs" / f"{name}.json") == load_program(out / "programs" / f"{name}.json")


@pytest.mark.parametrize("argv,needle", [
    (["evolve", "/nonexistent/store", "--out", "/tmp/x-eznas-run"], "not an eznas store"),
    (["evolve", "STORE", "--out", "OUT", "--cxpb", "0.9", "--mutpb", "0.9"], "sum to at most 1"),
    (["score", "STORE", "--program", "no-such-program"], "no-such-program"),
    (["score", "/nonexistent/store"], "not an eznas store"),
    (["report", "/nonexistent/run"], "/nonexistent/run"),
    (["score", "--program", "eznas-a"], "needs --dataset"),
])
def test_cli_errors_are_one_line(argv, needle, tiny_store, tmp_path, capsys):
    argv = [a.replace("STORE", tiny_store).replace("OUT", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_evolve_on_a_real_dask_cluster(tiny_store, tmp_path):
    """`dask scheduler` + two `dask worker` processes on loopback; evolve joins with --scheduler."""
    import shutil
    import socket

    dask_cli = shutil.which("dask")
    if dask_cli is None:
        pytest.skip("the 'dask' command (from distributed) is not on PATH")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        time.sleep(3)
        for i in range(2):
            procs.append(subprocess.Popen([dask_cli, "worker", addr, "--nthreads", "1", "--no-dashboard",
                                           "--name", f"w{i}"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env))
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        args = ["--population", "6", "--mu", "4", "--lambda", "6", "--generations", "1", "--max-depth", "4",
                "--seed", "2", "--no-progress"]
        assert main(["evolve", tiny_store, "--out", str(tmp_path / "cluster"), "--scheduler", addr, *args]) == 0
        assert main(["evolve", tiny_store, "--out", str(tmp_path / "local"), "--workers", "0", *args]) == 0
        for name in ("best_final", "best_ever_1", "best_ever_2"):
            assert load_program(tmp_path / "cluster" / "programs" / f"{name}.json") == \
                load_program(tmp_path / "local" / "programs" / f"{name}.json")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_proxy_program_on_statistics_is_a_clear_error(tiny_store, tmp_path, capsys):
    from eznas_store.programs.codec import save_program
    from eznas_store.programs.proxy_ops import PROXY_OPS

    prog = Program(tree=parse_formula("add(synflow, nwot)", ops=PROXY_OPS, terminals=None),
                   terminal_set="proxies", name="sn")
    path = save_program(prog, tmp_path / "sn.json")
    assert main(["score", tiny_store, "--program", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "reads hand-crafted proxy values" in err and "\n" not in err


def test_population_alone_derives_mu_and_lambda_and_bad_pairs_are_refused(tmp_path):
    """`--population 10` gives mu 5 / lambda 10 (the paper's 25/50 for 50); mu > population is refused."""
    from eznas_store.errors import ConfigError
    from eznas_store.evolution.evolve import EvolveConfig

    cfg = EvolveConfig(stores=("s",), out=str(tmp_path), population=10)
    assert (cfg.mu, cfg.lambda_) == (5, 10)
    paper = EvolveConfig(stores=("s",), out=str(tmp_path))
    assert (paper.population, paper.mu, paper.lambda_) == (50, 25, 50)
    with pytest.raises(ConfigError, match="at most --population"):
        EvolveConfig(stores=("s",), out=str(tmp_path), population=4, mu=10)
    with pytest.raises(ConfigError, match="--population must be >= 2"):
        EvolveConfig(stores=("s",), out=str(tmp_path), population=9223372036854775807)
    with pytest.raises(ConfigError, match="--seed must be an integer from 0"):
        EvolveConfig(stores=("s",), out=str(tmp_path), seed=-1)
