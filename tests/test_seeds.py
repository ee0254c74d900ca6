"""Seed study (EZNAS Fig. 2): fixed vs resampled architectures over k seeds, files, config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, make_bench

from eznas_store.sources.tables import read_benchmark, select_networks
from eznas_store.errors import ConfigError
from eznas_store.programs.tree import Program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.codec import save_program
from eznas_store.storeless.scoring import score_storeless
from eznas_store.studies.seeds import SeedsConfig, format_seeds, run_seeds, seed_plan

SMALL = dict(TINY, networks=4, seeds=2, first_seed=1, sample_seed=0, batch_size=2, device="cpu", progress=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return make_bench(tmp_path_factory.mktemp("seeds") / "bench.csv", n=12, seed=4)


@pytest.fixture(scope="module")
def study(bench, tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds_out")
    other = save_program(Program(tree=parse_formula("l1_norm(product(act_D, actgrad_D))"), name="l1act"),
                         d / "l1act.json")
    cfg = SeedsConfig(out=str(d / "out"), benchmark=str(bench), programs=("eznas-a", str(other)), **SMALL)
    return cfg, run_seeds(cfg)


def _runs(res, mode, program="eznas-a"):
    return [r for r in res.runs if r.mode == mode and r.program == program]


def test_fixed_mode_keeps_the_sample_and_changes_the_init(study, bench):
    _, res = study
    fixed = _runs(res, "fixed")
    assert [r.seed for r in fixed] == [1, 2]
    table = read_benchmark(bench)
    want = tuple(table.archs[i] for i in select_networks(table, networks=4, seed=0))
    assert all(r.archs == want for r in fixed)  # the same cells at every seed ...
    assert not np.array_equal(fixed[0].scores, fixed[1].scores)  # ... scored under another init/batch
    np.testing.assert_array_equal(fixed[0].accuracy, fixed[1].accuracy)


def test_resampled_mode_changes_the_sample(study, bench):
    _, res = study
    rs = _runs(res, "resampled")
    assert rs[0].archs != rs[1].archs
    table = read_benchmark(bench)
    for r in rs:
        assert r.archs == tuple(table.archs[i] for i in select_networks(table, networks=4, seed=r.seed))
        assert r.sample_seed == r.seed


def test_scores_equal_a_direct_storeless_run(study):
    cfg, res = study
    for r in _runs(res, "fixed") + _runs(res, "resampled"):
        icfg = cfg.ingest_config(seed=r.seed, networks=r.archs)
        [direct] = score_storeless(icfg, [NAMED_PROGRAMS["eznas-a"]], progress=False)
        np.testing.assert_array_equal(direct.scores, r.scores)
        assert direct.tau == r.tau or (np.isnan(direct.tau) and np.isnan(r.tau))


def test_summary_and_files(study):
    cfg, res = study
    out = Path(cfg.out)
    rows = list(csv.DictReader((out / "seeds.csv").open()))
    assert len(rows) == 2 * 2 * 2
    assert {(r["mode"], r["program"]) for r in rows} == {(m, p) for m in ("fixed", "resampled")
                                                        for p in ("eznas-a", "l1act")}
    assert len({r["archs_sha1"] for r in rows if r["mode"] == "fixed"}) == 1
    assert len({r["archs_sha1"] for r in rows if r["mode"] == "resampled"}) == 2
    meta = json.loads((out / "seeds.json").read_text())
    assert meta["config"]["networks"] == 4 and "torch" in meta["versions"] and meta["seeds"] == [1, 2]
    assert len(meta["summary"]) == 4 and len(meta["runs"]) == 8
    for s in meta["summary"]:
        taus = np.array([r.tau for r in res.runs if r.mode == s["mode"] and r.program == s["program"]])
        if np.isfinite(taus).all():
            assert s["tau_mean"] == pytest.approx(taus.mean())
            assert s["tau_std"] == pytest.approx(taus.std(ddof=1))
            assert s["tau_min"] == taus.min() and s["tau_max"] == taus.max()
    assert set(meta["samples"]) == {r["archs_sha1"] for r in rows}
    assert (out / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = format_seeds(res)
    assert "fixed" in text and "resampled" in text and "l1act" in text


def test_shared_experiment_is_computed_once(bench, tmp_path, monkeypatch):
    from eznas_store.storeless import scoring as score
    from eznas_store.studies import seeds as seeds_study  # run_seeds looks score_storeless up here

    calls = []
    real = score.score_storeless

    def counting(cfg, programs, **kw):
        calls.append(cfg.seed)
        return real(cfg, programs, **kw)

    monkeypatch.setattr(seeds_study, "score_storeless", counting)
    cfg = SeedsConfig(out=str(tmp_path / "o"), benchmark=str(bench), **{**SMALL, "first_seed": 0})
    res = run_seeds(cfg)
    assert sorted(calls) == [0, 1, 1]  # (fixed, 0) and (resampled, 0) are one experiment
    a, b = _runs(res, "fixed")[0], _runs(res, "resampled")[0]
    assert a.archs == b.archs
    np.testing.assert_array_equal(a.scores, b.scores)


def test_killed_study_resumes_from_its_finished_scorings(bench, tmp_path, monkeypatch):
    """A study that died after two scorings redoes only the rest, and ends with the same numbers."""
    from eznas_store.storeless import scoring as score
    from eznas_store.studies import seeds as seeds_study  # run_seeds looks score_storeless up here

    ref = run_seeds(SeedsConfig(out=str(tmp_path / "ref"), benchmark=str(bench), **SMALL))
    real, calls = score.score_storeless, []

    def dies_on_third(cfg, programs, **kw):
        calls.append(cfg.seed)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is killed mid-study
        return real(cfg, programs, **kw)

    monkeypatch.setattr(seeds_study, "score_storeless", dies_on_third)
    cfg = SeedsConfig(out=str(tmp_path / "o"), benchmark=str(bench), **SMALL)
    with pytest.raises(KeyboardInterrupt):
        run_seeds(cfg)
    assert not (tmp_path / "o" / "seeds.json").exists()
    with open(tmp_path / "o" / "seeds.partial.jsonl", "a") as f:
        f.write('{"torn": ')  # killed while writing a line
    calls.clear()
    monkeypatch.setattr(seeds_study, "score_storeless", lambda cfg, programs, **kw: (calls.append(cfg.seed),
                                                                                 real(cfg, programs, **kw))[1])
    res = run_seeds(cfg)
    assert len(calls) == 2  # 4 scorings in all, 2 were kept
    assert [(r.mode, r.seed, r.tau) for r in res.runs] == [(r.mode, r.seed, r.tau) for r in ref.runs]


def test_seed_plan_without_networks(bench, tmp_path):
    cfg = SeedsConfig(out=str(tmp_path), benchmark=str(bench), modes=("resampled",), **{**SMALL, "seeds": 3})
    plan = seed_plan(cfg)
    assert [(m, s) for m, s, _, _ in plan] == [("resampled", 1), ("resampled", 2), ("resampled", 3)]


@pytest.mark.parametrize("kw, msg", [
    (dict(seeds=1), "--seeds must be >= 2"),
    (dict(networks=1), "--networks must be a number >= 2"),
    (dict(modes=("fixed", "both")), "unknown mode 'both'"),
    (dict(modes=()), "--modes must name"),
    (dict(programs=()), "at least one --program"),
    (dict(benchmark=""), "needs --benchmark"),
    (dict(device="tpu"), "--device"),
])
def test_config_errors(kw, msg):
    base = dict(out="o", dataset="digits", benchmark="b.csv")
    with pytest.raises(ConfigError, match=msg):
        SeedsConfig(**{**base, **kw})


def test_unknown_program_is_a_clear_error(bench, tmp_path):
    from eznas_store.errors import ProgramError

    cfg = SeedsConfig(out=str(tmp_path), benchmark=str(bench), programs=("no-such-program",), **SMALL)
    with pytest.raises(ProgramError, match="neither a program file nor a registered program"):
        run_seeds(cfg)


def test_cli(bench, tmp_path, capsys):
    from eznas_store.cli import main

    out = tmp_path / "cli"
    argv = ["seeds", "--out", str(out), "--benchmark", str(bench), "--dataset", "digits", "--networks", "4",
            "--seeds", "2", "--first-seed", "1", "--batch-size", "2", "--image-size", "8", "--channels", "4",
            "--cells", "1", "--device", "cpu", "--modes", "fixed", "--no-progress"]
    assert main(argv) == 0
    assert "fixed" in capsys.readouterr().out
    assert (out / "seeds.png").exists() and (out / "seeds.csv").read_text().count("\n") == 3
    assert main([a if a != "fixed" else "sideways" for a in argv]) == 2
