"""Resume is keyed on what options mean, names the option that differs, and refuses damaged checkpoints in one line."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from eznas_store.cli import main
from eznas_store.errors import ConfigError
from eznas_store.evolution.checkpoint import first_difference, normalised


def test_paths_compare_by_meaning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = {"stores": ["S.zarr"], "out": "R", "seed": 0}
    b = {"stores": [str(tmp_path / "S.zarr") + "/"], "out": str(tmp_path / "moved"), "seed": 0}
    assert normalised(a)["stores"] == normalised(b)["stores"]
    assert first_difference(a, b) is None  # the run folder may move; the store is the same
    assert first_difference(a, dict(b, seed=1)) == "seed"
    assert first_difference({"stores": ["s3://b/S.zarr/"]}, {"stores": ["s3://b/S.zarr"]}) is None


def _short_run(store, out, *extra):
    return main(["evolve", store, "--out", out, "--generations", "1", "--population", "6",
                 "--workers", "0", "--no-progress", "--max-depth", "4", *extra])


def test_resume_after_a_move_and_another_spelling(tiny_store, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _short_run(tiny_store, str(out)) == 0
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(out), str(moved))
    monkeypatch.chdir(os.path.dirname(tiny_store))
    rel = os.path.relpath(tiny_store) + "/"
    assert _short_run(rel, str(moved), "--resume", "--generations", "2") == 0
    capsys.readouterr()
    assert _short_run(tiny_store, str(moved), "--resume", "--generations", "3", "--max-depth", "5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-depth was 4, now 5" in err[0]


@pytest.mark.parametrize("content", ["", '{"config": {', "[" * 100_000, '{"config": {}}', "null",
                                     '{"config": {}, "generation": 0, "population": [1], "hall_of_fame": [],'
                                     ' "random_state": []}'])
def test_damaged_checkpoint_is_a_one_line_error(tiny_store, tmp_path, capsys, content):
    out = tmp_path / "run"
    assert _short_run(tiny_store, str(out)) == 0
    ck = out / "checkpoint.json"
    if content.startswith('{"config": {}, "generation"'):
        doc = json.loads(ck.read_text())
        doc["population"] = [1]
        content = json.dumps(doc)
    ck.write_text(content)
    capsys.readouterr()
    assert _short_run(tiny_store, str(out), "--resume", "--generations", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("checkpoint" in err[0] or "resume" in err[0]), err


def test_resume_without_a_checkpoint(tmp_path):
    from eznas_store.evolution.checkpoint import _load_checkpoint_json

    with pytest.raises(ConfigError, match="no checkpoint.json to resume from"):
        _load_checkpoint_json(tmp_path / "checkpoint.json")
