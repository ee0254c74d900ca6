"""The run report: files, embedded plots, correlations equal to scipy's, incomplete runs."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eznas_store.errors import DataNotFoundError, EznasError
from eznas_store.programs.tree import Program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.codec import save_program
from eznas_store.report.run_report import write_report
from eznas_store.report.runs import read_run, score_correlations
from eznas_store.report.sections import text_tree

TASKS = {"nb201-cifar10": 30, "nb201-cifar100": 24}
PROGRAMS = {
    "best_final": ("sum(frobenius(act_D), sign(wt))", 0.41, 15),
    "best_ever_1": ("frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))", 0.52, 9),
    "best_ever_2": ("normalized_sum(product(act_D, inpactgrad_N))", None, 4),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(rng: np.random.Generator, kind: str) -> pd.DataFrame:
    rows = []
    for task, n in TASKS.items():
        acc = rng.uniform(40, 95, n)
        if kind == "huge":  # spans ~20 decades: the scatter uses symlog
            score = np.sign(acc - 60) * 10 ** rng.uniform(-10, 10, n)
        else:
            score = acc + rng.normal(0, 15, n)
        if kind == "some_nan":
            score[[1, 5, 7]] = np.nan
        if kind == "all_nan":
            score[:] = np.nan
        for i in range(n):
            rows.append({"task": task, "network": str(i), "arch": f"|arch{i}|",
                         "accuracy": acc[i], "score": score[i]})
    return pd.DataFrame(rows)


def make_run(root: Path, *, finished: bool = True, score_kinds: dict[str, str] | None = None) -> Path:
    """A run directory in the format evolve writes, with made-up numbers."""
    rng = np.random.default_rng(0)
    run = root / "run"
    (run / "programs").mkdir(parents=True)
    (run / "scores").mkdir()
    info = {
        "config": {"population": 50, "generations": 3, "combine": "min", "abs_tau": False,
                   "tree_depth": [2, 10], "mutation": {"p": 0.4, "kind": "uniform"}},
        "stores": ["file:///data/nb201-c10.zarr", "s3://bucket/nb201-c100.zarr"],
        "tasks": [{"name": k, "n_networks": v} for k, v in TASKS.items()],
        "versions": {"eznas_store": "0.1.0", "numpy": np.__version__},
        "started": "2025-01-01T10:00:00+00:00",
        "finished": "2025-01-01T10:20:34+00:00" if finished else None,
        "seconds": 1234.4,
    }
    (run / "run.json").write_text(json.dumps(info))
    gens = [
        {"gen": 0, "best": 0.2, "median": None, "valid_fraction": 0.4, "evaluated": 50,
         "seconds": 10.0, "peak_rss_mb": 812.0, "best_formula": "frobenius(act_D)"},
        {"gen": 1, "best": 0.35, "median": 0.1, "valid_fraction": 0.6, "evaluated": 48,
         "seconds": 9.5, "peak_rss_mb": 830.0, "best_formula": "sum(frobenius(act_D), sign(wt))"},
    ]
    lines = [json.dumps(g) for g in gens]
    if not finished:
        lines.append('{"gen": 2, "best": 0.4')  # being written
    (run / "generations.jsonl").write_text("\n".join(lines) + "\n")
    kinds = {"best_final": "plain", "best_ever_1": "some_nan", "best_ever_2": "huge", "eznas-a": "plain"}
    kinds.update(score_kinds or {})
    for name, (formula, fitness, gen) in PROGRAMS.items():
        if not finished and name == "best_final":
            continue
        prog = Program(parse_formula(formula), name=name,
                       meta={"fitness": fitness, "taus": [fitness, fitness], "rhos": [0.5, 0.5],
                             "generation": gen, "role": name})
        save_program(prog, run / "programs" / f"{name}.json")
        _scores(rng, kinds[name]).to_csv(run / "scores" / f"{name}.csv", index=False)
    _scores(rng, kinds["eznas-a"]).to_csv(run / "scores" / "eznas-a.csv", index=False)
    (run / "transfer.csv").write_text("whatever,else\n1,2\n")  # unknown files are ignored
    return run


def _summary_row(md: str, name: str) -> list[str]:
    line = next(l for l in md.splitlines() if l.startswith(f"| `{name}` |"))
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    run = make_run(tmp_path_factory.mktemp("report"))
    md, html = write_report(run, title="Test run")
    return run, md.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")


def test_writes_markdown_html_and_plots(report):
    run, md, html = report
    assert (run / "report.md").is_file() and (run / "report.html").is_file()
    for name in ("fitness.png", "scatter.png", "tree.png"):
        assert (run / "plots" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"](plots/{name})" in md
    assert md.startswith("# Test run\n")
    assert "<title>Test run</title>" in html


def test_html_is_self_contained(report):
    _, _, html = report
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert not re.search(r'(src|href)="(?!data:)', html)  # no external assets


def test_summary_taus_equal_scipy(report):
    run, md, _ = report
    tasks = list(TASKS)
    header = _summary_row(md.replace("| program |", "| `program` |"), "program")
    for name in ("best_final", "best_ever_1", "best_ever_2", "eznas-a"):
        frame = pd.read_csv(run / "scores" / f"{name}.csv")
        row = dict(zip(header, _summary_row(md, name)))
        for task in tasks:
            part = frame[frame.task == task]
            ok = np.isfinite(part.score)
            tau = stats.kendalltau(part.score[ok], part.accuracy[ok]).statistic
            rho = stats.spearmanr(part.score[ok], part.accuracy[ok]).statistic
            assert row[f"tau ({task})"] == f"{tau:.4f}"
            assert row[f"rho ({task})"] == f"{rho:.4f}"
            assert row[f"valid ({task})"] == f"{ok.sum()}/{len(part)}"
    assert _summary_row(md, "best_ever_1")[3] == "0.5200"  # fitness from meta
    assert _summary_row(md, "best_ever_2")[3] == "NaN"  # null fitness
    assert "`frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))`" in md


def test_score_correlations_match_scipy(report):
    run, _, _ = report
    frame = read_run(run).scores["best_ever_1"]
    corr = score_correlations(frame, list(TASKS))
    for task in TASKS:
        part = frame[(frame.task == task) & np.isfinite(frame.score)]
        assert corr.loc[task, "tau"] == stats.kendalltau(part.score, part.accuracy).statistic
        assert corr.loc[task, "rho"] == stats.spearmanr(part.score, part.accuracy).statistic
        assert corr.loc[task, "n_valid"] == len(part)


def test_contents(report):
    _, md, html = report
    # header: stores, tasks, config (nested flattened), versions
    assert "`s3://bucket/nb201-c100.zarr`" in md
    assert "| `nb201-cifar100` | 24 |" in md
    assert "| mutation.kind | `uniform` |" in md and "| tree\\_depth | `[2, 10]` |" in md
    assert "| eznas\\_store | `0.1.0` |" in md
    # best program: the highest recorded fitness, as a text tree too
    best = md.split("## Best program", 1)[1]
    assert best.startswith("\n\n`best_ever_1` (fitness 0.5200")
    assert "frobenius\n└── sigmoid\n    └── logdet_lastdims\n        └── sign\n            └── inpactgrad_D" in best
    # generation log, NaN median shown as NaN
    assert "| 0 | 0.2000 | NaN | 0.400 | 50 | 10.0 | 812 | `frobenius(act_D)` |" in md
    assert "Missing or incomplete" not in md
    assert "&lt;" not in html.split("<main>")[0]


def test_text_tree_branches():
    tree = parse_formula("sum(frobenius(act_D), product(wt, sign(act_N)))")
    assert text_tree(tree) == (
        "sum\n├── frobenius\n│   └── act_D\n└── product\n    ├── wt\n    └── sign\n        └── act_N"
    )


def test_unfinished_run(tmp_path):
    run = make_run(tmp_path, finished=False)
    md_path, html_path = write_report(run)
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# EZNAS run run\n")
    assert "not finished" in md
    assert "programs/best\\_final.json is missing (not written yet" in md
    assert "generations.jsonl line 3 is not valid JSON" in md
    assert "| `best_final` |" not in md  # neither a program file nor scores
    assert "data:image/png;base64," in html_path.read_text(encoding="utf-8")


def test_run_with_only_run_json(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": {}, "finished": None}))
    (run / "plots").mkdir()
    (run / "plots" / "tree.png").write_bytes(b"stale")
    md, html = write_report(run)
    text = md.read_text(encoding="utf-8")
    assert "generations.jsonl is missing" in text
    assert "No generation logged yet" in text
    assert "No program saved and no best formula logged yet." in text
    assert "scores/eznas-a.csv is missing" in text
    assert "| `eznas-a` | reference |" in text
    assert not (run / "plots" / "tree.png").exists()
    assert "data:image/png" not in html.read_text(encoding="utf-8")


def test_all_nan_and_missing_scores(tmp_path):
    run = make_run(tmp_path, score_kinds={"best_final": "all_nan"})
    (run / "scores" / "best_ever_2.csv").unlink()
    (run / "scores" / "eznas-a.csv").write_text("task,network\nx,1\n")  # malformed
    md = write_report(run)[0].read_text(encoding="utf-8")
    row = _summary_row(md, "best_final")
    assert row[4:7] == ["NaN", "NaN", "0/30"]
    assert _summary_row(md, "best_ever_2")[6] == "no scores"
    assert "scores/best\\_ever\\_2.csv is missing" in md
    assert "scores/eznas-a.csv lacks the column(s) accuracy, score" in md
    assert (run / "plots" / "scatter.png").is_file()


def test_best_formula_fallback_when_no_program(tmp_path):
    run = make_run(tmp_path, finished=False)
    for f in (run / "programs").glob("*.json"):
        f.unlink()
    md = write_report(run)[0].read_text(encoding="utf-8")
    assert "`generation 1 best`" in md
    assert "sum\n├── frobenius\n│   └── act_D\n└── sign\n    └── wt" in md


def test_bad_program_file_is_reported(tmp_path):
    run = make_run(tmp_path)
    (run / "programs" / "best_ever_2.json").write_text('{"format": "eznas-program"}')
    md = write_report(run)[0].read_text(encoding="utf-8")
    assert "programs/best\\_ever\\_2.json could not be loaded" in md
    assert "could not be loaded |" in md


@pytest.mark.parametrize("make", ["missing_dir", "no_run_json", "bad_json"])
def test_not_a_run_dir(tmp_path, make):
    path = tmp_path / "run"
    if make != "missing_dir":
        path.mkdir()
    if make == "bad_json":
        (path / "run.json").write_text("{not json")
    with pytest.raises(DataNotFoundError) as info:
        write_report(path)
    assert isinstance(info.value, (EznasError, FileNotFoundError))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_symlog_axis_choice():
    from eznas_store.report.plots import score_axis as _score_axis

    assert _score_axis(np.array([1.0, 2.0, 3.0])) == "linear"
    assert _score_axis(np.array([1e-5, 1.0, 1e5])) == "log"
    assert _score_axis(np.array([-1e-5, 1.0, 1e5])) == "symlog"
    assert _score_axis(np.array([1e-200, 1.0, 1e200])) == "rank"
    assert math.isnan(score_correlations(pd.DataFrame(
        {"task": ["t"] * 3, "network": ["a", "b", "c"], "arch": "", "accuracy": [1.0, 2, 3],
         "score": [5.0, 5.0, 5.0]})).loc["t", "tau"])


def test_tree_layout_does_not_overlap_and_centres_parents():
    from eznas_store.programs.tree import Apply
    from eznas_store.report.plots import tree_layout as _tree_layout

    tree = parse_formula("sum(frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D)))), "
                         "product(normalize(act_D), difference(kl_div(act_N, preact_D), cosine(abs(wt), wtgrad_D))))")
    pos, total = _tree_layout(tree)
    label = {id(n): len(getattr(n, "op", None) or n.name) + 2 for n in tree.iter_nodes()}
    levels: dict[int, list] = {}
    for n in tree.iter_nodes():
        x, d = pos[id(n)]
        assert label[id(n)] / 2 <= x + 1e-9 and x + label[id(n)] / 2 <= total + 1e-9
        levels.setdefault(d, []).append((x, label[id(n)]))
        if isinstance(n, Apply):
            xs = [pos[id(c)][0] for c in n.args]
            assert x == pytest.approx((xs[0] + xs[-1]) / 2)
            assert xs == sorted(xs)
    for row in levels.values():
        row.sort()
        for (x0, w0), (x1, w1) in zip(row, row[1:]):
            assert x1 - x0 >= (w0 + w1) / 2


def test_too_wide_tree_is_given_as_text_only(tmp_path):
    from eznas_store.report.plots import tree_plot as _tree_plot

    def balanced(depth: int) -> str:
        return "act_D" if depth == 0 else f"sum({balanced(depth - 1)}, {balanced(depth - 1)})"

    assert _tree_plot(parse_formula(balanced(2))).startswith(PNG_MAGIC)
    assert _tree_plot(parse_formula(balanced(8))) is None
