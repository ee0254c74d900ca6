"""Result files: written whole, readable as the umask says, one-line errors where they cannot be."""

from __future__ import annotations

import os
import stat

import pytest

from eznas_store.errors import OutputError
from eznas_store.outputs import ensure_dir, write_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_open(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        p = write_atomic(tmp_path / "report.md", "# hi\n")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert p.read_text() == "# hi\n" and not list(tmp_path.glob(".*.tmp"))


def test_out_that_is_a_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ensure_dir(f)
    with pytest.raises(OutputError, match="is a file"):
        ensure_dir(f / "sub")
    with pytest.raises(OutputError, match="cannot write"):
        write_atomic(f / "report.md", "x")
    d = tmp_path / "folder"
    d.mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        write_atomic(d, "x")
    assert ensure_dir(tmp_path / "a" / "b").is_dir()


# ----------------------------------------------------------------------------- ownership and locks

import multiprocessing  # noqa: E402

from eznas_store.outputs import MARKER, exclusive, lock_path, mark_owned, remove_owned  # noqa: E402


def test_remove_owned_deletes_only_what_the_command_wrote(tmp_path):
    d = tmp_path / "demo"
    (d / "store.zarr").mkdir(parents=True)
    (d / "store.zarr" / "zarr.json").write_text("{}")
    (d / "table.csv").write_text("x")
    mark_owned(d, "demo", ["store.zarr", "table.csv"])
    (d / "thesis.tex").write_text("mine")  # the user's, added later
    assert sorted(remove_owned(d, "demo")) == ["store.zarr", "table.csv"]
    assert (d / "thesis.tex").read_text() == "mine" and not (d / MARKER).exists()


def test_remove_owned_refuses_an_unmarked_or_foreign_folder(tmp_path):
    d = tmp_path / "victim"
    d.mkdir()
    (d / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match="refuses to delete"):
        remove_owned(d, "demo")
    mark_owned(d, "seeds", ["thesis.tex"])  # marked by another command
    with pytest.raises(OutputError, match="did not make it"):
        remove_owned(d, "demo")
    assert (d / "thesis.tex").read_text() == "mine"
    assert remove_owned(tmp_path / "missing", "demo") == []
    (tmp_path / "empty").mkdir()
    assert remove_owned(tmp_path / "empty", "demo") == []


def test_marker_entries_cannot_escape_the_folder(tmp_path):
    d = tmp_path / "demo"
    d.mkdir()
    (tmp_path / "outside").write_text("keep")
    (d / MARKER).write_text('{"command": "demo", "entries": ["../outside", "..", "."]}')
    assert remove_owned(d, "demo") == []
    assert (tmp_path / "outside").read_text() == "keep"


def _hold(path, started, release):
    with exclusive(path, "store"):
        started.set()
        release.wait(60)


def test_exclusive_refuses_a_second_writer_naming_the_holder(tmp_path):
    out = tmp_path / "S.zarr"
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(out, started, release))
    p.start()
    try:
        assert started.wait(60)
        with pytest.raises(OutputError, match=f"being written by another eznas-store \\(pid {p.pid}"):
            with exclusive(out, "store"):
                pass
    finally:
        release.set()
        p.join(60)
    with exclusive(out, "store"):  # free again once the holder is gone
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "T.csv"
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(out, started, release))
    p.start()
    assert started.wait(60)
    p.kill()
    p.join(60)
    assert lock_path(out).exists()  # left behind by kill -9, but not held
    with exclusive(out, "proxy table"):
        pass


def test_claim_outputs_refuses_a_users_file_and_another_commands_folder(tmp_path):
    from eznas_store.outputs import claim_outputs

    d = tmp_path / "study"
    d.mkdir()
    (d / "transfer.csv").write_text("the user's own table")
    with pytest.raises(OutputError, match="already holds transfer.csv"):
        claim_outputs(d, "transfer", ["transfer.csv", "transfer.md"])
    assert (d / "transfer.csv").read_text() == "the user's own table" and not (d / MARKER).exists()
    e = tmp_path / "seeds"
    mark_owned(e, "seeds", ["seeds.csv"])
    with pytest.raises(OutputError, match="output of eznas-store seeds"):
        claim_outputs(e, "transfer", ["transfer.csv"])
    f = tmp_path / "mine"
    claim_outputs(f, "transfer", ["transfer.csv"])
    (f / "transfer.csv").write_text("written by transfer")
    claim_outputs(f, "transfer", ["transfer.csv"])  # a rerun continues its own folder
    g = tmp_path / "old"
    g.mkdir()
    (g / "transfer.json").write_text("{}")
    (g / "transfer.csv").write_text("an older version's table")
    claim_outputs(g, "transfer", ["transfer.csv", "transfer.json"], made_before_markers="transfer.json")
