"""A store that lies by omission (issue 24): a missing chunk is lost data, never fill values.

Zarr reads an absent chunk key as the fill value, so a deleted chunk file, or a directory in
its place, used to pass ``verify`` and score as zeros or NaN. Each test damages a copy of the
session's tiny store (12 networks, chunks of 3) and checks that ``verify``, scoring and the
proxy readers name the chunk, and that ``transcode`` neither trusts a damaged source nor
leaves a target before every chunk of it is written and checked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.errors import CorruptChunkError, StoreError
from eznas_store.store import transcode as transcode_mod
from eznas_store.store.chunks import WRITTEN, chunk_indices, chunk_keys
from eznas_store.store.store import open_store
from eznas_store.store.transcode import partial_path, transcode_store
from eznas_store.store.verify import verify_store

from conftest import store_arrays


@pytest.fixture
def store(tiny_store, tmp_path) -> str:
    url = str(tmp_path / "store.zarr")
    shutil.copytree(tiny_store, url)
    return url


def chunk_file(url: str, array: str, *idx: int) -> Path:
    path = Path(url, array, "c", *map(str, idx))
    assert path.is_file(), path
    return path


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_chunk_of_a_new_store_has_a_key(tiny_store):
    """The writer keeps chunks equal to their fill value (all-empty proxy reasons) too."""
    s = open_store(tiny_store)
    for name in s.group.array_keys():
        a = s.group[name]
        want = {a.metadata.encode_chunk_key(i) for i in chunk_indices(a)}
        assert want <= chunk_keys(a), (name, sorted(want - chunk_keys(a)))
    assert "proxy_reason" in WRITTEN and verify_store(s).ok


def test_missing_tensor_chunk_fails_verify_and_scoring(store, capsys):
    chunk_file(store, "act_D", 1, 0).unlink()
    s = open_store(store)
    rep = verify_store(s)
    assert not rep.ok
    assert [(c.array, c.chunk, c.networks) for c in rep.broken_chunks] == [("act_D", (1, 0), (3, 4, 5))]
    assert sorted(rep.broken) == [3, 4, 5]
    capsys.readouterr()
    assert main(["verify", store]) == 1
    assert "chunk act_D/1.0 (networks 3..5): missing" in capsys.readouterr().out
    assert s.read_rows(0, 3)["act_D"].shape[0] == 3  # the other chunks still read
    with pytest.raises(CorruptChunkError, match=r"act_D/1\.0 \(networks 3\.\.5\) is missing.*verify"):
        open_store(store).read_rows(3, 6)
    assert main(["score", store, "--program", "eznas-a", "--no-progress"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "act_D/1.0" in err[0] and "--redo-broken" in err[0], err


def test_a_missing_chunk_is_collected_again_by_redo_broken(store):
    from eznas_store.ingest.driver import run_ingest

    from conftest import tiny_ingest_config

    good = open_store(store).read_rows(3, 6)["act_D"]
    chunk_file(store, "act_D", 1, 0).unlink()
    rep = run_ingest(tiny_ingest_config(store, Path(open_store(store).plan.benchmark), redo_broken=True))
    assert rep.done == 3
    assert verify_store(open_store(store)).ok
    np.testing.assert_array_equal(open_store(store).read_rows(3, 6)["act_D"], good)


def test_chunk_replaced_by_a_directory(store, capsys):
    path = chunk_file(store, "wt", 2, 0)
    path.unlink()
    path.mkdir()
    rep = verify_store(open_store(store))
    assert [(c.array, c.chunk) for c in rep.broken_chunks] == [("wt", (2, 0))]
    assert "directory" in rep.broken_chunks[0].reason and sorted(rep.broken) == [6, 7, 8]
    with pytest.raises(CorruptChunkError, match="directory"):
        open_store(store).read_rows(6, 9)
    from eznas_store.ingest.driver import run_ingest

    from conftest import tiny_ingest_config

    bench = Path(open_store(store).plan.benchmark)
    with pytest.raises(StoreError, match=f"is a directory, not a chunk file; remove {path}"):
        run_ingest(tiny_ingest_config(store, bench, redo_broken=True))  # zarr cannot write over it


def test_missing_proxy_value_chunk(store, capsys):
    chunk_file(store, "proxy_value", 2, 0).unlink()
    rep = verify_store(open_store(store))
    assert [(c.array, c.networks) for c in rep.broken_chunks] == [("proxy_value", (6, 7, 8))]
    with pytest.raises(CorruptChunkError, match="proxy_value/2.0"):
        open_store(store).proxy_table()
    capsys.readouterr()
    assert main(["score", store, "--proxy", "synflow"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "proxy_value/2.0" in err[0], err


def test_proxy_reasons_absent_from_an_older_store(store):
    """Before every chunk was written, an all-empty ``proxy_reason`` chunk had no key: that is
    no loss where every value is finite; where a value is NaN its reason is lost."""
    s = open_store(store)
    values = s.proxy_table().values
    finite = [i for i, (lo, hi) in enumerate(s.chunk_ranges()) if np.isfinite(values[lo:hi]).all()]
    nan = [i for i, (lo, hi) in enumerate(s.chunk_ranges()) if not np.isfinite(values[lo:hi]).all()]
    assert nan, "the tiny store has a proxy that fails (a NaN with its reason)"
    if finite:
        chunk_file(store, "proxy_reason", finite[0], 0).unlink()
        assert verify_store(open_store(store)).ok
        lo, hi = s.chunk_ranges()[finite[0]]
        assert (open_store(store).proxy_reasons()[lo:hi] == "").all()
    chunk_file(store, "proxy_reason", nan[0], 0).unlink()
    rep = verify_store(open_store(store))
    assert [(c.array, c.chunk) for c in rep.broken_chunks] == [("proxy_reason", (nan[0], 0))]
    with pytest.raises(CorruptChunkError, match="proxy_reason"):
        open_store(store).proxy_reasons()


def test_missing_table_chunk(store, capsys):
    chunk_file(store, "block_start", 0).unlink()
    rep = verify_store(open_store(store))
    assert [c.array for c in rep.broken_chunks] == ["block_start"]
    with pytest.raises(CorruptChunkError, match="block_start"):
        open_store(store).block_table()
    assert main(["info", store]) == 0
    assert "1 table chunk(s) missing" in capsys.readouterr().out


def test_an_absent_chunk_that_held_only_its_fill_value_is_no_loss(tmp_path, tiny_bench):
    """Stores written before every chunk was kept have no key for a table chunk of fill values
    (one network: ``block_start`` is [0]); their tables' commit marker shows nothing is lost."""
    from eznas_store.ingest.driver import run_ingest

    from conftest import tiny_ingest_config

    url = str(tmp_path / "one.zarr")
    run_ingest(tiny_ingest_config(url, tiny_bench, networks=1))
    assert open_store(url).column("block_start").tolist() == [0]
    chunk_file(url, "block_start", 0).unlink()
    s = open_store(url)
    assert verify_store(s).ok and s.block_table()["block_start"].tolist() == [0]
    chunk_file(url, "bench_index", 0).unlink()  # a table that held data: the marker no longer matches
    rep = verify_store(open_store(url))
    assert {c.array for c in rep.broken_chunks} == {"block_start", "bench_index"} and not rep.ok


def test_info_does_not_call_a_store_with_a_missing_chunk_complete(store, capsys):
    import json

    chunk_file(store, "seconds", 3).unlink()
    capsys.readouterr()
    assert main(["info", store]) == 0
    out = capsys.readouterr().out
    assert "9 complete" in out and "3 flagged complete but missing chunks" in out and "verify" in out
    assert main(["info", store, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["complete"] == 9 and doc["complete_but_missing_chunks"] == 3


# ----------------------------------------------------------------------------- transcode
def no_target(dst: str) -> bool:
    return not os.path.lexists(dst) and not os.path.lexists(partial_path(dst))


def test_transcode_refuses_a_source_with_a_flipped_byte(store, tmp_path, capsys):
    flip_byte(chunk_file(store, "act_N", 2, 0))
    dst = str(tmp_path / "t.zarr")
    assert main(["transcode", store, dst]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "act_N" in err[0] and dst in err[0], err
    assert no_target(dst)


def test_transcode_refuses_a_source_with_a_damaged_table(store, tmp_path, capsys):
    flip_byte(chunk_file(store, "params", 1))
    dst = str(tmp_path / "t.zarr")
    assert main(["transcode", store, dst]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "does not verify" in err[0] and "params" in err[0], err
    assert no_target(dst)


def test_transcode_does_not_launder_a_missing_chunk(store, tmp_path, monkeypatch, capsys):
    """Refused up front (the chunk listing), and again as the chunk is read if that is skipped."""
    chunk_file(store, "raw_act_P", 0, 0).unlink()
    dst = str(tmp_path / "t.zarr")
    assert main(["transcode", store, dst]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "raw_act_P/0.0" in err[0], err
    assert no_target(dst)
    monkeypatch.setattr(transcode_mod, "missing_chunks", lambda s, names=None: [])
    with pytest.raises(CorruptChunkError, match=r"transcode stopped.*raw_act_P/0\.0.*missing"):
        transcode_store(store, dst, "bitround:7")
    assert no_target(dst)


def test_killed_transcode_leaves_no_target_and_a_rerun_resumes(store, tmp_path, monkeypatch, capsys):
    dst = str(tmp_path / "t.zarr")
    real, calls, kills = transcode_mod.write_tensors, [], []

    def dies_after_one_chunk(*args, **kw):
        calls.append(args[1])
        if len(calls) == 2 and not kills:
            kills.append(args[1])
            raise KeyboardInterrupt  # as a kill: nothing cleans up
        return real(*args, **kw)

    monkeypatch.setattr(transcode_mod, "write_tensors", dies_after_one_chunk)
    with pytest.raises(KeyboardInterrupt):
        transcode_store(store, dst, "bitround:7")
    assert not os.path.lexists(dst) and os.path.isdir(partial_path(dst))
    capsys.readouterr()
    assert main(["verify", dst]) == 2 and main(["info", partial_path(dst)]) == 2  # neither is a store
    calls.clear()
    assert main(["transcode", store, dst, "--codec", "bitround:7"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "kept 1 of 4 chunks" in out, out
    assert calls == [3, 6, 9]  # the first chunk was not written again
    assert verify_store(open_store(dst)).ok and not os.path.lexists(partial_path(dst))
    direct = str(tmp_path / "direct.zarr")
    monkeypatch.setattr(transcode_mod, "write_tensors", real)
    transcode_store(store, direct, "bitround:7")
    a, b = store_arrays(dst), store_arrays(direct)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_failed_transcode_leftover_of_another_codec_is_removed_and_said(store, tmp_path, monkeypatch, capsys):
    dst = str(tmp_path / "t.zarr")

    def fails(*args, **kw):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(transcode_mod, "write_tensors", fails)
    with pytest.raises(RuntimeError):
        transcode_store(store, dst, "bitround:7")
    monkeypatch.undo()
    assert os.path.isdir(partial_path(dst)) and not os.path.lexists(dst)
    capsys.readouterr()
    assert main(["transcode", store, dst, "--codec", "bitround:5"]) == 0
    assert f"removed {partial_path(dst)}" in capsys.readouterr().out
    assert open_store(dst).plan.codec == "bitround:5" and verify_store(open_store(dst)).ok


def test_transcode_refuses_a_foreign_folder_in_its_way(store, tmp_path, capsys):
    dst = str(tmp_path / "t.zarr")
    foreign = Path(partial_path(dst))
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    assert main(["transcode", store, dst]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "not made by transcode" in err[0], err
    assert (foreign / "thesis.tex").read_text() == "mine" and not os.path.lexists(dst)


def test_transcode_to_a_dangling_symlink_or_an_existing_target(store, tmp_path, capsys):
    link = tmp_path / "link.zarr"
    link.symlink_to(tmp_path / "nowhere")
    assert main(["transcode", store, str(link)]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "symbolic link" in err[0] and "remove the link" in err[0], err
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    assert main(["transcode", store, store]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "exists" in err[0] and "choose another target" in err[0], err


def test_second_transcode_to_the_same_target_is_refused(store, tmp_path, capsys):
    from eznas_store.outputs import exclusive

    dst = str(tmp_path / "t.zarr")
    with exclusive(dst, "store"):  # as another transcode holds it
        assert main(["transcode", store, dst]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "being written by another" in err[0], err
    assert no_target(dst)


def test_a_lost_array_metadata_file_fails_verify(tiny_store, tmp_path):
    """eznas-store reads the consolidated copy; a reader without it would lose the array."""
    import shutil as _sh

    from eznas_store.store.store import open_store as _open
    from eznas_store.store.verify import verify_store as _verify

    url = str(tmp_path / "s.zarr")
    _sh.copytree(tiny_store, url)
    assert _verify(_open(url)).ok
    (tmp_path / "s.zarr" / "act_D" / "zarr.json").unlink()
    report = _verify(_open(url))
    assert not report.ok and any("act_D/zarr.json is missing" in p for p in report.problems)
