"""Issue 24, the studies' part: nothing a user made is deleted or overwritten, every option is
checked before any work, one writer per output, seeds bounded alike (demo, seeds, transfer, label).

The heavy steps are replaced in-process by fakes that write what the real step would (or by
functions that record being called), so each case runs in seconds and shows *where* a refusal
came: before the first step ran, before anything was deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_bench

from eznas_store.cli import main
from eznas_store.errors import ConfigError, OutputError
from eznas_store.outputs import MARKER, exclusive, mark_owned

THESIS = "\\documentclass{article} my thesis\n"


def _err_line(capsys) -> str:
    """stderr of the last command, asserted to be exactly one line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _victim(tmp_path: Path) -> Path:
    d = tmp_path / "victim"
    d.mkdir()
    (d / "thesis.tex").write_text(THESIS)
    return d


# ----------------------------------------------------------------------------- demo
@pytest.fixture
def steps(monkeypatch):
    """The demo's steps replaced by fakes that write the entries the real ones would; ``calls``
    records each step as it starts."""
    import eznas_store.studies.demo as demo

    calls: list[str] = []

    def label(cfg):
        calls.append("label")
        Path(cfg.out).write_text("arch,digits_test\n")
        Path(cfg.out + ".meta.json").write_text("{}")
        return SimpleNamespace(line=lambda: "label: fake")

    def ingest(cfg):
        calls.append("ingest")
        Path(cfg.store).mkdir(exist_ok=True)
        (Path(cfg.store) / "zarr.json").write_text("{}")
        return SimpleNamespace(line=lambda: "ingest: fake")

    def evolve(cfg, resume=False):
        calls.append("evolve")
        (Path(cfg.out) / "programs").mkdir(parents=True, exist_ok=True)
        best = SimpleNamespace(meta={"fitness": 0.5}, formula=lambda: "l1_norm(act_D)")
        return SimpleNamespace(best_final=best)

    def report(run, title):
        calls.append("report")
        (Path(run) / "report.html").write_text("<html></html>")
        return Path(run) / "report.md", Path(run) / "report.html"

    monkeypatch.setattr(demo, "run_label", label)
    monkeypatch.setattr(demo, "run_ingest", ingest)
    monkeypatch.setattr(demo, "run_evolve", evolve)
    monkeypatch.setattr(demo, "write_report", report)
    monkeypatch.setattr(demo, "_score_lines", lambda run: [])
    return calls


@pytest.mark.parametrize("bad, says", [
    (["--networks", "0"], "--networks must be an integer from 2"),
    (["--networks", "1"], "--networks must be an integer from 2"),  # did all the work, then refused
    (["--networks", "15626"], "to 15625"),
    (["--seed", str(2**32)], "--seed must be an integer from 0 to 4294967295"),
    (["--seed", "-1"], "--seed must be an integer from 0"),
    (["--workers", "-1"], "--workers must be an integer from 0 to"),
])
def test_demo_fresh_with_a_bad_option_deletes_nothing(tmp_path, steps, capsys, bad, says):
    d = _victim(tmp_path)
    assert main(["demo", "--out", str(d), "--fresh", "--no-progress", *bad]) == 2
    assert (d / "thesis.tex").read_text() == THESIS and sorted(p.name for p in d.iterdir()) == ["thesis.tex"]
    assert steps == []
    assert says in _err_line(capsys)


def test_demo_fresh_on_a_folder_it_did_not_make_is_refused(tmp_path, steps, capsys):
    d = _victim(tmp_path)
    assert main(["demo", "--out", str(d), "--fresh", "--networks", "2", "--no-progress"]) == 2
    assert "eznas-store demo did not make it" in _err_line(capsys)
    assert sorted(p.name for p in d.iterdir()) == ["thesis.tex"] and steps == []


def test_demo_writes_beside_a_users_file_and_fresh_deletes_only_its_own(tmp_path, steps, capsys, monkeypatch):
    import eznas_store.studies.demo as demo

    d = tmp_path / "demo"
    assert main(["demo", "--out", str(d), "--networks", "2", "--no-progress"]) == 0
    assert steps == ["label", "ingest", "evolve", "report"]
    marker = json.loads((d / MARKER).read_text())
    assert marker["command"] == "demo"
    assert {"digits_labels.csv", "digits_labels.csv.meta.json", "store.zarr", "run", "demo.json"} <= set(marker["entries"])
    (d / "thesis.tex").write_text(THESIS)  # the user's, added afterwards

    def label_then_stop(cfg):  # the first step of the fresh run: what was deleted by then?
        steps.append("label")
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(demo, "run_label", label_then_stop)
    assert main(["demo", "--out", str(d), "--fresh", "--networks", "2", "--no-progress"]) == 2
    assert "stopped by the test" in _err_line(capsys)
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "demo.json", "thesis.tex"]
    assert (d / "thesis.tex").read_text() == THESIS


def test_demo_rerun_with_other_options_is_refused_before_any_step(tmp_path, steps, capsys):
    d = tmp_path / "demo"
    assert main(["demo", "--out", str(d), "--networks", "2", "--no-progress"]) == 0
    steps.clear()
    before = {p.name: p.stat().st_mtime_ns for p in d.rglob("*")}
    for change, says in ((["--networks", "3"], "--networks 2, not 3"), (["--seed", "1"], "--seed 0, not 1")):
        assert main(["demo", "--out", str(d), "--networks", "2", "--no-progress", *change]) == 2
        assert says in _err_line(capsys) and steps == []
    assert {p.name: p.stat().st_mtime_ns for p in d.rglob("*")} == before
    assert main(["demo", "--out", str(d), "--networks", "3", "--fresh", "--no-progress"]) == 0  # --fresh: starts over
    assert steps == ["label", "ingest", "evolve", "report"]


def test_demo_refuses_to_use_a_name_it_did_not_write(tmp_path, steps, capsys):
    d = _victim(tmp_path)
    (d / "run").mkdir()
    (d / "run" / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(d), "--networks", "2", "--no-progress"]) == 2
    assert "demo did not write it" in _err_line(capsys)
    assert (d / "run" / "notes.txt").read_text() == "mine" and steps == [] and not (d / MARKER).exists()


def test_demo_refuses_a_folder_another_command_marked(tmp_path, steps, capsys):
    d = tmp_path / "s"
    mark_owned(d, "seeds", ["seeds.csv"])
    assert main(["demo", "--out", str(d), "--networks", "2", "--no-progress"]) == 2
    assert "made by eznas-store seeds, not demo" in _err_line(capsys)
    assert steps == [] and json.loads((d / MARKER).read_text())["command"] == "seeds"


def test_demo_second_writer_is_refused_before_deleting(tmp_path, steps, capsys):
    d = tmp_path / "demo"
    mark_owned(d, "demo", ["run"])
    (d / "run").mkdir()
    with exclusive(d, "demo folder"):
        assert main(["demo", "--out", str(d), "--fresh", "--networks", "2", "--no-progress"]) == 2
    assert "is being written by another eznas-store" in _err_line(capsys)
    assert (d / "run").is_dir() and steps == []


def test_demo_out_that_is_a_file_is_one_line(tmp_path, steps, capsys):
    f = tmp_path / "thesis.tex"
    f.write_text(THESIS)
    assert main(["demo", "--out", str(f), "--fresh", "--networks", "2", "--no-progress"]) == 2
    _err_line(capsys)
    assert f.read_text() == THESIS and steps == []


# ----------------------------------------------------------------------------- seeds
@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return make_bench(tmp_path_factory.mktemp("rel_seeds") / "bench.csv", n=8, seed=3)


def _seeds_argv(bench: Path, out: Path, *extra: str) -> list[str]:
    return ["seeds", "--out", str(out), "--benchmark", str(bench), "--dataset", "digits", "--networks", "3",
            "--seeds", "2", "--batch-size", "2", "--image-size", "8", "--channels", "4", "--cells", "1",
            "--device", "cpu", "--modes", "fixed", "--no-progress", *extra]


@pytest.fixture
def scorings(monkeypatch):
    """Counts the storeless scorings a seeds study does (each one a real scoring)."""
    from eznas_store.studies import seeds as study

    calls = []
    real = study.score_storeless

    def counting(cfg, programs, **kw):
        calls.append(cfg.seed)
        return real(cfg, programs, **kw)

    monkeypatch.setattr(study, "score_storeless", counting)
    return calls


def test_seeds_with_other_options_in_the_same_folder_are_refused(bench, tmp_path, scorings, capsys):
    out = tmp_path / "study"
    assert main(_seeds_argv(bench, out)) == 0
    capsys.readouterr()
    assert len(scorings) == 2
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for change, flag in ((["--networks", "4"], "--networks was 3, now 4"), (["--first-seed", "5"], "--first-seed"),
                         (["--batch-size", "3"], "--batch-size was 2, now 3")):
        assert main(_seeds_argv(bench, out, *change)) == 2  # the option given last wins
        line = _err_line(capsys)
        assert flag in line and "other options" in line, line
    assert len(scorings) == 2  # refused before any scoring
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(_seeds_argv(bench, out)) == 0  # the same options: resumed from the finished scorings
    assert len(scorings) == 2


def test_seeds_refuses_to_overwrite_a_users_file(bench, tmp_path, scorings, capsys):
    out = _victim(tmp_path)
    (out / "seeds.csv").write_text("my own numbers\n")
    assert main(_seeds_argv(bench, out)) == 2
    assert "did not write it" in _err_line(capsys)
    assert (out / "seeds.csv").read_text() == "my own numbers\n" and scorings == []


@pytest.mark.parametrize("extra, says", [
    (["--seeds", "100000000"], "--seeds must be >= 2"),
    (["--seeds", "1"], "--seeds must be >= 2"),
    (["--first-seed", str(2**64)], "--first-seed must be an integer from 0 to 4294967295"),
    (["--first-seed", "-1"], "--first-seed must be an integer from 0"),
    (["--first-seed", str(2**32 - 1)], "reaches seed 4294967296"),
    (["--sample-seed", str(2**32)], "--sample-seed must be an integer from 0"),
])
def test_seeds_bounds_are_one_line(tmp_path, capsys, extra, says):
    assert main(_seeds_argv(tmp_path / "no-bench.csv", tmp_path / "o", *extra)) == 2
    assert says in _err_line(capsys)
    assert not (tmp_path / "o").exists()


def test_seeds_second_writer_is_refused(bench, tmp_path, scorings, capsys):
    out = tmp_path / "study"
    with exclusive(out, "seeds study"):
        assert main(_seeds_argv(bench, out)) == 2
    assert "seeds study" in (line := _err_line(capsys)) and "being written by another eznas-store" in line
    assert scorings == [] and not out.exists()


# ----------------------------------------------------------------------------- transfer
def test_transfer_seed_is_bounded(tmp_path, capsys):
    assert main(["transfer", "a=a.zarr", "b=b.zarr", "--out", str(tmp_path / "t"), "--seed", str(2**32)]) == 2
    assert "--seed must be an integer from 0 to 4294967295" in _err_line(capsys)


def test_transfer_second_writer_is_refused(tmp_path, capsys):
    out = tmp_path / "t"
    with exclusive(out, "transfer study"):
        assert main(["transfer", "a=a.zarr", "b=b.zarr", "--out", str(out), "--no-progress"]) == 2
    assert "transfer study" in (line := _err_line(capsys)) and "being written by another" in line


def test_transfer_checks_every_tasks_run_before_evolving_any(tmp_path, monkeypatch, capsys):
    """Task b's run was made with another seed: refused before task a (new) evolves."""
    import eznas_store.studies.transfer as transfer
    from eznas_store.evolution.checkpoint import config_json
    from eznas_store.studies.transfer import TransferConfig

    evolved = []
    monkeypatch.setattr(transfer, "load_task", lambda url, name, max_networks: SimpleNamespace(name=name))
    monkeypatch.setattr(transfer, "run_evolve", lambda cfg, resume=False: evolved.append(cfg.out))
    out = tmp_path / "t"
    old = TransferConfig(stores=("a=a.zarr", "b=b.zarr"), out=str(out), seed=7).evolve_config("b", "b.zarr")
    (out / "evolve" / "b").mkdir(parents=True)
    (out / "evolve" / "b" / "checkpoint.json").write_text(json.dumps({
        "config": config_json(old), "generation": 0, "population": [], "hall_of_fame": [], "random_state": []}))
    assert main(["transfer", "a=a.zarr", "b=b.zarr", "--out", str(out), "--no-progress"]) == 2
    line = _err_line(capsys)
    assert "task b" in line and "--seed" in line and "delete" in line, line
    assert evolved == []


# ----------------------------------------------------------------------------- label
def test_label_seed_is_bounded(tmp_path, capsys):
    assert main(["label", "--out", str(tmp_path / "l.csv"), "--seed", str(2**64), "--networks", "2"]) == 2
    assert "--seed must be an integer from 0 to 4294967295" in _err_line(capsys)
    assert not (tmp_path / "l.csv").exists()


def test_label_second_writer_is_refused(tmp_path, monkeypatch, capsys):
    import eznas_store.collect.label as label

    trained = []
    monkeypatch.setattr(label, "_train_missing", lambda job, rows, todo: trained.append(todo))
    table = tmp_path / "l.csv"
    with exclusive(table, "label table"):
        assert main(["label", "--out", str(table), "--networks", "2", "--no-progress"]) == 2
    assert "label table" in (line := _err_line(capsys)) and "being written by another" in line
    assert trained == [] and not table.exists()


def test_config_objects_refuse_the_same_bounds():
    from eznas_store.collect.label import LabelConfig
    from eznas_store.studies.demo import DemoConfig
    from eznas_store.studies.seeds import SeedsConfig
    from eznas_store.studies.transfer import TransferConfig

    for make in (lambda: LabelConfig(out="l.csv", seed=2**32), lambda: DemoConfig(seed=2**32),
                 lambda: TransferConfig(stores=("a.zarr", "b.zarr"), out="o", seed=2**32),
                 lambda: SeedsConfig(out="o", dataset="digits", benchmark="b.csv", first_seed=2**32)):
        with pytest.raises(ConfigError, match="must be an integer from 0 to 4294967295"):
            make()
    with pytest.raises(ConfigError, match="at most 1000"):
        SeedsConfig(out="o", dataset="digits", benchmark="b.csv", seeds=1001)
    assert issubclass(OutputError, OSError)


@pytest.mark.parametrize("argv", [
    ["demo", "--workers", "100000"],
    ["score", "S.zarr", "--workers", "100000"],
])
def test_absurd_worker_counts_are_one_line_before_any_work(tmp_path, capsys, argv):
    """Each worker is a process: a count no machine has is refused before anything starts."""
    from eznas_store.cli import main

    argv = [a if a != "S.zarr" else str(tmp_path / "S.zarr") for a in argv]
    if argv[0] == "demo":
        argv += ["--out", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers must be an integer from 0 to 256" in err[0]
    assert not (tmp_path / "d").exists()
