"""Job files: schema validation, one-line errors, and command-line precedence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eznas_store.cli import main
from eznas_store.config import load_job, merge_options
from eznas_store.errors import ConfigError, DataNotFoundError


def test_job_files_shipped_in_jobs_are_valid():
    from pathlib import Path

    for path in Path(__file__).resolve().parents[1].joinpath("jobs").glob("*.toml"):
        for section in ("ingest", "evolve"):
            load_job(path, section)


def test_programs_shipped_in_jobs_load():
    from pathlib import Path

    from eznas_store.programs.codec import load_program

    files = sorted(Path(__file__).resolve().parents[1].joinpath("jobs", "programs").glob("*.json"))
    assert files
    for path in files:
        assert load_program(path).formula()


def _suitezero_job(tmp_path, suitezero_dir):
    """The repository's job file in a checkout-like folder whose data/suite-zero is the real data."""
    from pathlib import Path

    (tmp_path / "checkout" / "jobs").mkdir(parents=True)
    (tmp_path / "checkout" / "data").mkdir()
    (tmp_path / "checkout" / "data" / "suite-zero").symlink_to(suitezero_dir)
    job = tmp_path / "checkout" / "jobs" / "evolve-proxies-suitezero.toml"
    job.write_text((Path(__file__).resolve().parents[1] / "jobs" / job.name).read_text())
    return job


def test_proxy_job_runs_on_suite_zero(tmp_path):
    """The measured proxy-program job, shortened: it reads the real Suite-Zero files it names."""
    from pathlib import Path

    from conftest import shared_path

    job = _suitezero_job(tmp_path, shared_path("suite-zero", "zc_nasbench201.json.gz").parent)
    import os

    cwd = os.getcwd()
    os.chdir(job.parents[1])  # its source paths are relative to the project root
    try:
        assert main(["evolve", "--job", str(job), "--out", str(tmp_path / "r"), "--population", "20",
                     "--mu", "10", "--lambda", "20", "--generations", "2", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    assert "nb201-cifar10[test]" in (tmp_path / "r" / "cross_problem" / "matrix.txt").read_text()


def test_unknown_key_and_bad_values_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[evolve]\npopulaton = 3\n')
    with pytest.raises(ConfigError, match="'populaton' was unexpected"):
        load_job(bad, "evolve")
    bad.write_text('[ingest]\nbatch_size = -1\n')
    with pytest.raises(ConfigError, match="ingest.batch_size"):
        load_job(bad, "ingest")
    bad.write_text('[ingest\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job(bad, "ingest")
    with pytest.raises(DataNotFoundError):
        load_job(tmp_path / "missing.toml", "ingest")


def test_command_line_wins_over_job_file():
    merged = merge_options({"seed": 3, "lambda": 7}, {"seed": 0, "lambda_": 50, "out": "x"}, explicit={"seed"})
    assert merged == {"seed": 0, "lambda_": 7, "out": "x"}


def test_cli_job_file_precedence(tiny_store, tmp_path):
    job = tmp_path / "j.toml"
    job.write_text('[evolve]\npopulation = 4\nmu = 2\nlambda = 4\ngenerations = 3\nmax_depth = 3\nworkers = 0\nseed = 9\n')
    out = tmp_path / "run"
    assert main(["evolve", tiny_store, "--out", str(out), "--job", str(job), "--generations", "0",
                 "--no-progress"]) == 0
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert (cfg["population"], cfg["generations"], cfg["seed"], cfg["lambda_"]) == (4, 0, 9, 4)


_values = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False), st.booleans(), st.text(max_size=12),
                    st.lists(st.text(max_size=5), max_size=3))


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from(["ingest", "evolve", "other"]),
                       st.dictionaries(st.sampled_from(["seed", "batch_size", "population", "stores", "device",
                                                         "shard", "networks", "cxpb", "bogus"]), _values,
                                       max_size=4), max_size=2))
def test_any_job_document_is_a_config_or_a_clear_error(tmp_path_factory, doc):
    """1000 generated job files: each either loads or raises ConfigError, never anything else."""
    import tomllib

    def toml(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    text = "\n".join(f"[{sec}]\n" + "\n".join(f"{k} = {toml(v)}" for k, v in tbl.items()) for sec, tbl in doc.items())
    try:
        tomllib.loads(text)
    except Exception:
        return  # our serialiser produced invalid TOML (e.g. huge floats); nothing to test
    path = tmp_path_factory.mktemp("job") / "j.toml"
    path.write_text(text)
    try:
        load_job(path, "ingest")
    except ConfigError as e:
        assert "\n" not in str(e)


def test_job_file_paths_resolve_beside_the_job_file(tmp_path, monkeypatch):
    from eznas_store.config import job_options

    jobs = tmp_path / "campaign" / "jobs"
    jobs.mkdir(parents=True)
    (tmp_path / "campaign" / "cells.txt").write_text("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    job = jobs / "ingest.toml"
    job.write_text('[ingest]\nstore = "../s.zarr"\nbenchmark = "/abs/b.csv"\nnetworks = "../cells.txt"\n'
                   'data_root = "s3://bucket/data"\n')
    monkeypatch.chdir(tmp_path)  # run from elsewhere: paths still mean "beside the job file"
    o = job_options(job, "ingest", {"store": None, "benchmark": None, "networks": "all", "data_root": None}, set())
    assert o["store"] == str((tmp_path / "campaign" / "s.zarr"))
    assert o["benchmark"] == "/abs/b.csv" and o["data_root"] == "s3://bucket/data"
    assert o["networks"] == str(tmp_path / "campaign" / "cells.txt")
    job.write_text('[ingest]\nnetworks = 20\n')
    assert job_options(job, "ingest", {"networks": "all"}, set())["networks"] == 20


def test_evolve_job_without_out_gets_a_run_folder_per_seed(tmp_path, monkeypatch):
    from conftest import shared_path

    job = _suitezero_job(tmp_path, shared_path("suite-zero", "zc_nasbench201.json.gz").parent)
    monkeypatch.chdir(tmp_path)
    assert main(["evolve", "--job", str(job), "--seed", "3", "--population", "10", "--mu", "5",
                 "--lambda", "10", "--generations", "1", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "evolve-proxies-suitezero-seed3" / "run.json").is_file()


def test_job_config_gives_dataclass_keywords(tmp_path):
    from eznas_store.config import job_config

    job = tmp_path / "e.toml"
    job.write_text('[evolve]\nstores = ["s.zarr"]\nlambda = 7\nproblems = ["a"]\n')
    cfg = job_config(job, "evolve")
    assert cfg == {"stores": (str(tmp_path / "s.zarr"),), "lambda_": 7, "problems": ("a",)}
