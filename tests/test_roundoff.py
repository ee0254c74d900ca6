"""The round-off check: one float32 ulp on every statistic, and who moves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eznas_store.errors import RoundoffSkippedWarning
from eznas_store.fitness.engine import load_task, score_store
from eznas_store.fitness.roundoff import ROUNDOFF_LIMIT, Roundoff, nudge_ulp, nudged_scores, roundoff_check, shift_in_spread
from eznas_store.ingest.driver import run_ingest
from eznas_store.programs.codec import load_program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Program

from conftest import tiny_ingest_config

F32 = arrays(np.float32, st.integers(1, 64), elements=st.floats(width=32, allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(F32, st.integers(0, 2**32 - 1))
def test_nudge_moves_every_nonzero_finite_value_by_one_ulp_and_keeps_its_sign(x, seed):
    y = nudge_ulp(x, np.random.default_rng(seed))
    assert y.dtype == np.float32 and y.shape == x.shape
    fin = np.isfinite(x) & (x != 0)
    assert np.array_equal(x[~fin], y[~fin], equal_nan=True)  # zeros, inf and NaN untouched
    assert np.all(np.isfinite(y[fin])) and np.array_equal(np.sign(x[fin]), np.sign(y[fin]))
    with np.errstate(over="ignore"):
        up, down = np.nextafter(x[fin], np.float32(np.inf)), np.nextafter(x[fin], np.float32(-np.inf))
    assert np.all((y[fin] == up) | (y[fin] == down)) and not np.any(y[fin] == x[fin])


def test_nudge_goes_both_ways_and_follows_its_seed():
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    a, b = nudge_ulp(x, np.random.default_rng(1)), nudge_ulp(x, np.random.default_rng(1))
    assert np.array_equal(a, b)
    away = np.abs(a) > np.abs(x)
    assert 0.4 < away[x != 0].mean() < 0.6


def test_shift_is_in_units_of_the_spread():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    assert shift_in_spread(a, a) == 0.0
    assert shift_in_spread(a, a + np.array([0, 0, 0.1, 0])) == pytest.approx(0.1 / a.std())
    assert shift_in_spread(a, np.array([0.0, 1.0, np.nan, 3.0])) == float("inf")  # validity changed
    assert shift_in_spread(np.ones(3), np.array([1.0, 1.0, 1.5])) == float("inf")  # constant, yet moved
    assert shift_in_spread(np.full(3, np.nan), np.full(3, np.nan)) == 0.0


def test_verdict_and_json():
    ok, bad = Roundoff("a", ROUNDOFF_LIMIT / 2, 0.0), Roundoff("b", float("inf"), float("nan"))
    assert not ok.determined and "stable" in ok.line()
    assert bad.determined and "ROUND-OFF-DETERMINED" in bad.line()
    assert json.loads(json.dumps(bad.json())) == {"shift": None, "dtau": None, "round_off_determined": True}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from conftest import make_bench

    d = tmp_path_factory.mktemp("roundoff")
    url = str(d / "s.zarr")
    run_ingest(tiny_ingest_config(url, make_bench(d / "bench.csv"), networks=6))
    return url


def _programs() -> list[Program]:
    """EZNAS-A (signs: exact under any nudge), a norm (well conditioned) and the logdet of a
    channel correlation of input gradients, singular on these tiny networks (its value is
    round-off)."""
    return [load_program("eznas-a"), Program(tree=parse_formula("frobenius(act_D)"), name="norm"),
            Program(tree=parse_formula("logdet(channel_corr(inpactgrad_D))"), name="singular")]


def test_check_flags_the_singular_logdet_only(store):
    progs = _programs()
    checks = roundoff_check(store, progs, score_store(store, progs))
    by = {c.program: c for c in checks}
    assert by["eznas-a"].shift == 0 and by["eznas-a"].dtau == 0
    assert by["norm"].shift < 1e-4 and not by["norm"].determined
    assert by["singular"].determined


def test_nudged_scores_are_the_scores_when_nothing_moves(store, monkeypatch):
    """With the nudge made the identity the second scoring is the first: the check compares
    like with like (same chunks, same order, same programs)."""
    import eznas_store.fitness.roundoff as ro

    progs = _programs()
    base = np.stack([r.scores for r in score_store(store, progs)])
    monkeypatch.setattr(ro, "nudge_ulp", lambda x, rng: x)
    np.testing.assert_array_equal(nudged_scores(load_task(store), progs), base)


def test_score_command_prints_and_writes_the_check(store, tmp_path, capsys):
    from eznas_store.cli import main

    assert main(["score", store, "--program", "eznas-a", "--roundoff", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "round-off eznas-a: one float32 ulp" in out and "stable" in out
    doc = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert doc[0]["roundoff"]["round_off_determined"] is False


def test_evolve_says_what_the_check_found(store, tmp_path, capsys):
    from eznas_store.cli import main

    out = tmp_path / "run"
    assert main(["evolve", store, "--out", str(out), "--population", "4", "--generations", "1",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "round-off check (every statistic nudged by one float32 ulp):" in text
    metas = [json.loads(p.read_text())["meta"] for p in sorted((out / "programs").glob("*.json"))]
    assert metas and all("round_off_determined" in m["roundoff"] for m in metas)
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "Round-off check: " in html


def test_a_check_that_cannot_run_is_a_warning_not_a_lost_run(store, tmp_path, monkeypatch):
    import eznas_store.evolution.generalise as generalise
    from eznas_store.errors import StoreError
    from eznas_store.evolution.evolve import EvolveConfig, run_evolve

    def unreadable(*a, **k):
        raise StoreError("chunk 0 of act_D: no such file\nsecond line")

    monkeypatch.setattr(generalise, "roundoff_check", unreadable)
    out = tmp_path / "run"
    with pytest.warns(RoundoffSkippedWarning, match="round-off check of the saved programs skipped: chunk 0 of act_D"):
        res = run_evolve(EvolveConfig(stores=(store,), out=str(out), population=4, generations=1, progress=False))
    saved = sorted(p.name for p in (out / "programs").glob("*.json"))
    assert saved == ["best_ever_1.json", "best_ever_2.json", "best_final.json"]
    assert "roundoff" not in res.best_final.meta


def test_a_skipped_check_is_one_line_from_the_command(store, tmp_path, monkeypatch, capsys):
    import eznas_store.evolution.generalise as generalise
    from eznas_store.cli import main
    from eznas_store.errors import StoreError

    def unreadable(*a, **k):
        raise StoreError("chunk 0 of act_D: no such file\nsecond line")

    monkeypatch.setattr(generalise, "roundoff_check", unreadable)
    assert main(["evolve", store, "--out", str(tmp_path / "run"), "--population", "4", "--generations", "1",
                 "--no-progress"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "round-off" in ln]
    assert err == ["eznas-store: warning: round-off check of the saved programs skipped: chunk 0 of act_D: no such file"]
