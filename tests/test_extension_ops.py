"""The opt-in extension ops (channel statistics and spectra) and ``evolve --op-set``.

Each op is checked against an independent computation of what it claims to be (MeCo's
Pearson matrix via ``torch.corrcoef``, AZ-NAS's covariance entropy and the effective rank
in numpy), and by properties that must hold for any input.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eznas_store.cli import main
from eznas_store.errors import ConfigError, ProgramError
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.ops import EXTENSION_OPS, OPS, PAPER_OPS
from eznas_store.programs.tree import Program
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.evolution.representations import TreeRepresentation
from eznas_store.terminals import TERMINALS

SMALL = dict(population=8, mu=4, lambda_=8, generations=1, max_depth=4, workers=0, progress=False)


def _op(name: str, *args: torch.Tensor) -> torch.Tensor:
    return OPS[name].fn(*args)


def test_channel_corr_is_mecos_pearson_matrix_at_batch_1():
    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(1, 12, 6, 6, generator=gen, dtype=torch.float64)
    fmap[0, 3] = 2.5  # a constant channel: MeCo's NaN -> 0
    want = torch.corrcoef(fmap[0].reshape(12, -1))
    want = torch.where(torch.isfinite(want), want, torch.zeros_like(want))
    got = _op("channel_corr", fmap)
    torch.testing.assert_close(got, want.clamp(-1, 1))
    lam_min = torch.linalg.eigvals(want).real.min()
    torch.testing.assert_close(_op("eig_min", got), lam_min)


def test_eig_entropy_of_channel_cov_is_az_nas_expressivity():
    rng = np.random.default_rng(1)
    fmap = rng.normal(size=(4, 8, 5, 5)) * rng.uniform(0.1, 3, size=(1, 8, 1, 1))
    z = fmap.transpose(0, 2, 3, 1).reshape(-1, 8)  # AZ-NAS: one row per pixel
    z = z - z.mean(axis=0)
    lam = np.linalg.eigvalsh(z.T @ z / z.shape[0])
    p = lam / lam.sum()
    want = -(p * np.log(p + 1e-8)).sum()
    got = _op("eig_entropy", _op("channel_cov", torch.from_numpy(fmap)))
    assert math.isclose(float(got), want, rel_tol=1e-10)


def test_eff_rank_is_exp_entropy_of_singular_values():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(6, 3, 2, 2))  # a conv weight: rows are the 6 output channels
    s = np.linalg.svd(w.reshape(6, -1), compute_uv=False)
    p = s / s.sum()
    got = float(_op("eff_rank", torch.from_numpy(w)))
    assert math.isclose(got, math.exp(-(p * np.log(p + 1e-8)).sum()), rel_tol=1e-9)
    assert math.isclose(float(_op("eff_rank", torch.eye(5, dtype=torch.float64))), 5.0, rel_tol=1e-6)


def test_degenerate_inputs_give_numbers_or_nan_never_a_crash():
    zero = torch.zeros(1, 4, 3, 3)
    assert torch.equal(_op("channel_corr", zero), torch.zeros(4, 4))
    assert float(_op("eig_entropy", _op("channel_cov", zero))) == 0.0
    bad = torch.full((4, 4), float("nan"))
    assert math.isnan(float(_op("eig_min", bad))) and math.isnan(float(_op("eff_rank", bad)))
    for name, shape in [("channel_cov", (5,)), ("eig_min", (3, 4)), ("eig_max", (2, 3, 3))]:
        with pytest.raises(ValueError):
            _op(name, torch.ones(shape))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 6), st.integers(1, 4), st.integers(1, 4)),
              elements=st.floats(-1e3, 1e3)))
def test_spectra_of_channel_statistics_are_bounded(fmap):
    x = torch.from_numpy(fmap)
    corr = _op("channel_corr", x)
    c = corr.shape[0]
    assert torch.allclose(corr, corr.T) and corr.abs().max() <= 1.0
    lo, hi = float(_op("eig_min", corr)), float(_op("eig_max", corr))
    assert -1e-9 <= lo <= hi + 1e-12 and hi <= c + 1e-9  # PSD, trace <= C
    h = float(_op("eig_entropy", _op("channel_cov", x)))
    assert -1e-7 <= h <= math.log(c) + 1e-9  # -1e-8: AZ-NAS's guard inside the log, at p = 1


# ------------------------------------------------------------------------------ evolve --op-set


def test_paper_set_never_draws_extension_ops_and_extended_does():
    def drawn(ops) -> set[str]:
        rep = TreeRepresentation(TERMINALS, ops, "statistics", min_depth=2, max_depth=5, to_scalar="mean")
        rng = random.Random(0)
        names: set[str] = set()
        for _ in range(300):
            names |= {n.name for n in rep.new_individual(rng)}
        return names

    assert not drawn(PAPER_OPS) & set(EXTENSION_OPS)
    assert set(EXTENSION_OPS) <= drawn(OPS)


def test_extended_run_records_its_op_set_and_scores_extension_programs(tiny_store, tmp_path):
    out = tmp_path / "run"
    seed = tmp_path / "meco.json"
    seed.write_text(json.dumps({"format": "eznas-program", "version": 1, "representation": "tree",
                                "aggregate": "sum", "formula": "eig_min(channel_corr(act_D))",
                                "tree": {"op": "eig_min", "args": [{"op": "channel_corr",
                                                                    "args": [{"terminal": "act_D"}]}]}}))
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), op_set="extended", seed_programs=(str(seed),),
                            **SMALL))
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["op_set"] == "extended"
    best = json.loads((out / "programs" / "best_final.json").read_text())
    assert best["meta"]["op_set"] == "extended"
    ck = json.loads((out / "checkpoint.json").read_text())
    first = [e for e in ck["population"] if e["program"]["formula"] == "eig_min(channel_corr(act_D))"]
    assert not first or first[0]["fitness"]["value"] is not None


def test_a_paper_run_refuses_an_extension_seed_program(tiny_store, tmp_path):
    prog = Program(tree=parse_formula("eig_max(channel_cov(act_D))"))
    f = tmp_path / "p.json"
    from eznas_store.programs.codec import save_program
    save_program(prog, f)
    with pytest.raises(ProgramError, match="unknown operation 'eig_max'"):
        run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "r"), seed_programs=(str(f),),
                                **dict(SMALL, generations=0)))


@pytest.mark.parametrize("kw, match", [
    (dict(op_set="all"), "--op-set must be one of paper, extended"),
    (dict(op_set="extended", over="proxies"), "--op-set extended"),
    (dict(op_set="extended", representation="sequential"), "--op-set extended"),
])
def test_op_set_checked_at_the_edge(kw, match):
    with pytest.raises(ConfigError, match=match):
        EvolveConfig(stores=("s.zarr",), out="r", **kw)


def test_cli_bad_op_set_is_one_line_exit_2(tiny_store, tmp_path, capsys):
    rc = main(["evolve", tiny_store, "--out", str(tmp_path / "r"), "--op-set", "everything"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--op-set" in err


def test_named_statistics_twins_score_a_store_as_computed_by_hand(tiny_store):
    """meco-statistics on a store = the sum over blocks of lambda_min(corrcoef(act_D)) read back
    with ``Store.tensor``; both twins load by name and record what they are."""
    from eznas_store.fitness.engine import score_store
    from eznas_store.programs.codec import load_program
    from eznas_store.store.store import open_store

    meco = load_program("meco-statistics")
    az = load_program("az-expressivity-statistics")
    assert (meco.aggregate, az.aggregate) == ("sum", "sum") and meco.meta["op_set"] == "extended"
    [res] = score_store(tiny_store, [meco])
    store = open_store(tiny_store)
    nb = store.block_table()["n_blocks"]
    for net in range(2):
        total = 0.0
        for b in range(int(nb[net])):
            fmap = store.tensor(net, b, "act_D").astype(np.float64)
            c = fmap.shape[1]
            r = np.corrcoef(fmap.transpose(1, 0, 2, 3).reshape(c, -1))
            total += np.linalg.eigvalsh(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0))[0]
        pos = list(res.networks).index(net)
        assert math.isclose(res.scores[pos], total, rel_tol=1e-6, abs_tol=1e-9)


def test_a_named_extension_seed_in_a_paper_run_says_which_op_set(tiny_store, tmp_path, capsys):
    rc = main(["evolve", tiny_store, "--out", str(tmp_path / "r"), "--seed-programs", "meco-statistics",
               "--generations", "0", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--op-set extended" in err and "eig_min" in err
