"""A store that never lies: every chunk carries a CRC32C, and verify reads every chunk.

One tiny store (a copy of the session's ``tiny_store``) is corrupted one bit at a time;
each corrupted file is restored right after its check, so the tests share it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main as main_cli
from eznas_store.store.store import open_store
from eznas_store.store.verify import verify_store

#: random single-bit flips the property test makes (each one must be found)
N_FLIPS = 1000


@pytest.fixture(scope="module")
def store_copy(tiny_store, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("integrity") / "store.zarr")
    shutil.copytree(tiny_store, url)
    return url


def chunk_files(url: str) -> dict[Path, tuple[str, tuple[int, ...]]]:
    """Every chunk file of every array → (array, chunk index) (keys ``<array>/c/i/j``)."""
    out = {}
    for p in sorted(Path(url).rglob("*")):
        parts = p.relative_to(url).parts
        if p.is_file() and len(parts) >= 2 and parts[1] == "c" and parts[0] != "runs":
            out[p] = (parts[0], tuple(int(x) for x in parts[2:]))
    return out


def found(rep, array: str, chunk: tuple[int, ...]) -> bool:
    return any(c.array == array and c.chunk == chunk for c in rep.broken_chunks)


def test_every_array_ends_with_a_checksum(store_copy):
    g = open_store(store_copy).group
    for name in g.array_keys():
        codecs = g[name].metadata.codecs
        assert type(codecs[-1]).__name__ == "Crc32cCodec", (name, codecs)


def test_verify_reads_every_chunk_of_every_array(store_copy):
    s = open_store(store_copy)
    files = chunk_files(store_copy)
    t = time.perf_counter()
    rep = verify_store(s)
    seconds = time.perf_counter() - t
    assert rep.ok and rep.complete and rep.n_complete == rep.n_networks == 12, rep.lines(s.plan.archs)
    assert rep.partial_files == []
    assert rep.checked_chunks >= len(files)
    assert {a for a, _ in files.values()} <= set(s.group.array_keys())
    assert seconds < 5, f"verify of a tiny store took {seconds:.2f} s"


def test_every_single_bit_flip_in_any_chunk_is_found(store_copy):
    """>= 1,000 random single-bit flips over every array's chunk files (tables included): 0 missed."""
    s = open_store(store_copy)
    files = chunk_files(store_copy)
    paths = list(files)
    rng = np.random.default_rng(11)
    # every file at least once, then random ones
    order = paths + [paths[i] for i in rng.integers(len(paths), size=max(N_FLIPS - len(paths), 0))]
    missed = []
    for path in order:
        array, chunk = files[path]
        good = path.read_bytes()
        bit = int(rng.integers(len(good) * 8))
        bad = bytearray(good)
        bad[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(bad))
        try:
            rep = verify_store(s, arrays=[array])
            if rep.ok or not found(rep, array, chunk):
                missed.append((array, chunk, bit))
        finally:
            path.write_bytes(good)
    assert len(order) >= N_FLIPS
    assert not missed, f"{len(missed)} of {len(order)} flips missed, e.g. {missed[:5]}"
    assert verify_store(s).ok


@pytest.mark.parametrize("array", ["accuracy", "block_start", "complete"])
def test_truncated_table_chunk_is_reported_not_read_as_garbage(store_copy, array):
    s = open_store(store_copy)
    path = next(p for p, (a, _) in chunk_files(store_copy).items() if a == array)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    try:
        rep = verify_store(s)
        assert not rep.ok
        assert [c.array for c in rep.broken_chunks] == [array]
        assert rep.broken_chunks[0].networks, "the chunk's networks are named"
        assert any(array in line for line in rep.lines(s.plan.archs))
        if array != "complete":
            with pytest.raises(Exception):
                s.group[array][:]
        else:
            assert sorted(rep.broken) == list(rep.broken_chunks[0].networks)
        assert main_cli(["verify", store_copy, "--allow-incomplete"]) == 1
    finally:
        path.write_bytes(good)
    assert verify_store(s).ok


def test_partial_files_and_incompleteness_are_reported(store_copy, tmp_path, capsys):
    url = str(tmp_path / "s.zarr")
    shutil.copytree(store_copy, url)
    stray = Path(url) / "act_N" / "c" / "0" / "0.0123abcd.partial"
    stray.write_bytes(b"half a chunk")
    s = open_store(url)
    s.group["complete"][0:3] = np.zeros(3, dtype=bool)
    rep = verify_store(s)
    assert rep.ok and not rep.complete and (rep.n_complete, rep.n_networks) == (9, 12)
    assert rep.partial_files == ["act_N/c/0/0.0123abcd.partial"]
    capsys.readouterr()
    assert main_cli(["verify", url]) == 1
    out = capsys.readouterr().out
    assert "9 of 12 networks complete" in out and "0.0123abcd.partial" in out
    assert main_cli(["verify", url, "--allow-incomplete"]) == 0
