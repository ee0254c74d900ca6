"""Issue 24.4: every input read by ``sources/`` is bounded and checked at the edge.

Each hostile file of the issue's sweep is built here, small and fast: dataset pickles with a
huge label, a ragged ``data`` list or a 200,000-deep list; a 20000×20000 and a 10000×10000
PNG; a gzip bomb (the limit lowered, so a few MB prove it); a cells file with a BOM; DARTS
tables with invalid genotypes; seeds past 2**32. Each ends in one error naming the file, and
through the CLI in exactly one stderr line and exit 2.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.errors import BenchmarkFormatError, ConfigError
from eznas_store.sources import limits
from eznas_store.sources.datasets import load_images, sample_batch
from eznas_store.sources.unpickle import RestrictedUnpickler, restricted_load
from fixtures_data import write_cifar_fixture, write_image_folder_fixture


def _one_line(capsys, argv) -> str:
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1, (rc, err)
    return err[0]


def _bench(tmp_path: Path, column: str = "cifar10_valid") -> Path:
    from conftest import make_bench

    return make_bench(tmp_path / "bench.csv", n=4, column=column)


def _cifar_root(tmp_path: Path, test_batch: bytes) -> Path:
    """A CIFAR-10 folder whose every file is ``test_batch`` (the hostile one)."""
    folder = write_cifar_fixture(tmp_path / "data", kind="cifar10", n=2)
    for f in folder.iterdir():
        f.write_bytes(test_batch)
    return tmp_path / "data"


def _entry(**changes) -> bytes:
    entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "batch_label": "x"}
    entry.update(changes)
    return pickle.dumps(entry, protocol=2)


# ------------------------------------------------------------------------ dataset pickles


@pytest.mark.parametrize("labels, fragment", [
    ([10**30, 0], "integer of 100 bits"),
    ([-5, 0], "item 0 is -5"),
    ([0, 10], "item 1 is 10"),
    ([2**40, 0], f"item 0 is {2**40}"),
    ([0, "cat"], "item 1 is a str"),
    ([0, 1.5], "item 1 is a float"),
    ([0, [1]], "item 1 is a list"),
    (np.array([[0, 1]]), "found a int64 array of shape (1, 2)"),
    ("01", "found str"),
])
def test_hostile_labels_are_one_line_naming_the_file(tmp_path, labels, fragment):
    root = _cifar_root(tmp_path, _entry(labels=labels))
    with pytest.raises(BenchmarkFormatError) as info:
        load_images("cifar10", root, split="test")
    msg = str(info.value)
    assert "test_batch" in msg and fragment in msg and "\n" not in msg, msg


@pytest.mark.parametrize("data, fragment", [
    ([[0] * 3072, [0] * 5], "found a list"),
    (np.zeros((2, 3072), np.int64), "found int64 (2, 3072)"),
    (np.zeros((2, 3, 32, 32), np.uint8), "found uint8 (2, 3, 32, 32)"),
    (b"\x00" * 6144, "found a bytes"),
], ids=["ragged", "int64", "4d", "bytes"])
def test_ragged_or_mistyped_data_is_one_line(tmp_path, data, fragment):
    root = _cifar_root(tmp_path, _entry(data=data))
    with pytest.raises(BenchmarkFormatError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\)") as info:
        load_images("cifar10", root, split="test")
    assert fragment in str(info.value)


def _deep_list(depth: int) -> bytes:
    """A list nested ``depth`` deep, built on the unpickler's stack (pickle.dumps would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _deep_list_via_memo(depth: int) -> bytes:
    """The same nesting built through the memo, so the unpickler's stack stays two deep."""
    steps = (b"0]j" + struct.pack("<I", i - 1) + b"ar" + struct.pack("<I", i) for i in range(1, depth))
    return b"\x80\x02]r" + struct.pack("<I", 0) + b"".join(steps) + b"."  # each: POP, [], get, append, put


@pytest.mark.parametrize("build", [_deep_list, _deep_list_via_memo])
def test_deeply_nested_pickle_is_refused(tmp_path, build):
    path = tmp_path / "deep"
    depth = 200_000 if build is _deep_list else 20_000  # the memo form runs 5 opcodes a level
    path.write_bytes(build(depth))
    with pytest.raises(BenchmarkFormatError, match=r"deep: nests containers more than 16 deep"):
        restricted_load(path)
    # and inside a published folder, through the loader
    root = _cifar_root(tmp_path, b"\x80\x02}(U\x04data" + build(depth)[2:-1] + b"u.")
    with pytest.raises(BenchmarkFormatError, match="test_batch: nests containers"):
        load_images("cifar10", root, split="test")


def test_memo_index_far_beyond_the_file_costs_nothing():
    # the C unpickler allocates and clears an array up to the index: 256 MB for this 10-byte
    # file (16 GB for index 2**31), which tracemalloc sees; ours keeps a dict
    import tracemalloc

    payload = b"\x80\x02]r" + struct.pack("<I", 2**24) + b"."
    tracemalloc.start()
    try:
        assert RestrictedUnpickler(io.BytesIO(payload)).load() == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak


@pytest.mark.parametrize("payload, fragment", [
    # _reconstruct(ndarray, (10**9,), 'b'): an array the 60-byte file cannot hold
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xca\x9a;\x85U\x01b\x87R.",
     "an array of shape (1000000000,) cannot come from a file of"),
    # numpy.ndarray((10**9,)) would allocate 8 GB
    (b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;\x85\x85R.", "refused to call numpy.ndarray"),
    # BYTEARRAY8 declaring 1 TB
    (b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b".", "declares a bytearray of 1099511627776 bytes"),
    # BUILD on a list (setting attributes of anything but an array or dtype)
    (b"\x80\x02]}b.", "refused to set the state of a list"),
    # an integer of 800 bits through LONG1
    (b"\x80\x02\x8a\x64" + b"\x01" * 100 + b".", "integer of 793 bits"),
], ids=["reconstruct", "ndarray", "bytearray8", "build", "long1"])
def test_unpickler_bounds(tmp_path, payload, fragment):
    path = tmp_path / "hostile"
    path.write_bytes(payload)
    with pytest.raises(BenchmarkFormatError) as info:
        restricted_load(path)
    assert fragment in str(info.value) and str(path) in str(info.value), str(info.value)


def test_published_files_still_load_and_object_arrays_do_not(tmp_path):
    folder = write_cifar_fixture(tmp_path, kind="cifar10", n=3)
    images, labels = load_images("cifar10", tmp_path, split="train")
    assert images.shape == (15, 32, 32, 3) and labels.dtype == np.int64
    path = folder / "test_batch"
    path.write_bytes(_entry(data=np.array([[1], "x"], dtype=object)))
    with pytest.raises(BenchmarkFormatError, match="holds a object array"):
        restricted_load(path)


def test_hostile_pickle_through_the_cli_is_one_line(tmp_path, capsys):
    root = _cifar_root(tmp_path, _entry(labels=[10**30, 0]))
    line = _one_line(capsys, ["ingest", "--store", str(tmp_path / "s.zarr"), "--dataset", "cifar10",
                              "--data-root", str(root), "--benchmark", str(_bench(tmp_path)),
                              "--networks", "2", "--no-progress", "--no-proxies"])
    assert "data_batch_1" in line and "integer of 100 bits" in line, line
    root = _cifar_root(tmp_path / "deep", b"\x80\x02}(U\x04data" + _deep_list(200_000)[2:-1] + b"u.")
    line = _one_line(capsys, ["ingest", "--store", str(tmp_path / "t.zarr"), "--dataset", "cifar10",
                              "--data-root", str(root), "--benchmark", str(_bench(tmp_path)),
                              "--networks", "2", "--no-progress", "--no-proxies"])
    assert "nests containers more than 16 deep" in line, line


# -------------------------------------------------------------------------- image folders


def _png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG of any size, all black: a few KB for 400 Mpx."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def big_pngs(tmp_path_factory):
    d = tmp_path_factory.mktemp("png")
    return {"bomb": _png(d / "bomb.png", 20000, 20000), "big": _png(d / "big.png", 10000, 10000)}


@pytest.mark.parametrize("which, fragment", [
    ("bomb", "image has more than 178956970 pixels"),
    ("big", "image is 10000x10000 px but cifar10 images are 32x32"),
])
def test_oversized_images_are_refused_before_decoding(tmp_path, big_pngs, which, fragment):
    root = write_image_folder_fixture(tmp_path / "img", per_class=1)
    target = root / "train" / "cat" / "0000.png"
    target.write_bytes(big_pngs[which].read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        with pytest.raises(BenchmarkFormatError) as info:
            load_images("cifar10", root, split="train")
        assert time.perf_counter() - start < 2  # no 100-400 Mpx decode
    assert str(target) in str(info.value) and fragment in str(info.value), str(info.value)
    assert not caught, [str(w.message) for w in caught]


def test_broken_png_is_one_line(tmp_path):
    root = write_image_folder_fixture(tmp_path / "img", per_class=1)
    target = root / "train" / "dog" / "0000.png"
    blob = target.read_bytes()
    target.write_bytes(blob[:60] + b"\x00" * 40 + blob[100:])  # IDAT bytes overwritten
    with pytest.raises(BenchmarkFormatError, match=r"dog/0000\.png: not a readable image"):
        load_images("cifar10", root, split="train")


@pytest.mark.parametrize("which", ["bomb", "big"])
def test_oversized_image_through_the_cli_is_one_line(tmp_path, capsys, big_pngs, which):
    root = write_image_folder_fixture(tmp_path / "img", per_class=1)
    (root / "train" / "frog" / "0000.png").write_bytes(big_pngs[which].read_bytes())
    line = _one_line(capsys, ["ingest", "--store", str(tmp_path / "s.zarr"), "--dataset", "cifar10",
                              "--data-root", str(root), "--benchmark", str(_bench(tmp_path)),
                              "--networks", "2", "--no-progress", "--no-proxies"])
    assert "frog/0000.png" in line, line


# ---------------------------------------------------------------------------- gzip inputs


def _gzip_of_zeros(path: Path, n_bytes: int, prefix: bytes = b"") -> Path:
    """A gzip file that inflates to ``prefix`` + ``n_bytes`` zeros, written in 1 MiB pieces."""
    block = b"0" * 2**20
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(prefix)
        for _ in range(n_bytes // len(block)):
            f.write(block)
    return path


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED_BYTES", 2**20)
    return 2**20


def test_limit_is_documented_and_generous():
    assert limits.MAX_DECOMPRESSED_BYTES == 256 * 2**20
    assert "256 MiB" in limits.__doc__ and limits.human_bytes(limits.MAX_DECOMPRESSED_BYTES) == "256 MiB"


def test_suitezero_gzip_bomb_is_one_line(tmp_path, small_cap):
    from eznas_store.sources.suitezero import read_zc

    bomb = _gzip_of_zeros(tmp_path / "zc_nasbench201.json.gz", 4 * 2**20, prefix=b'{"cifar10": ')
    assert bomb.stat().st_size < 50_000
    with pytest.raises(BenchmarkFormatError, match=r"zc_nasbench201\.json\.gz decompresses to more than "
                                                   r"1048576 bytes \(1 MiB"):
        read_zc(bomb)
    plain = tmp_path / "zc_plain.json"
    plain.write_bytes(b" " * (2**20 + 1))
    with pytest.raises(BenchmarkFormatError, match=r"zc_plain\.json holds more than 1048576 bytes"):
        read_zc(plain)


def test_table_gzip_bomb_and_corrupt_gzip_are_one_line(tmp_path, small_cap):
    from eznas_store.sources.tables import read_benchmark, read_network_list

    bomb = _gzip_of_zeros(tmp_path / "t.csv.gz", 4 * 2**20, prefix=b"index,arch,x\n0,")
    with pytest.raises(BenchmarkFormatError, match=r"t\.csv\.gz decompresses to more than 1048576 bytes"):
        read_benchmark(bomb)
    cells = tmp_path / "cells.txt"
    cells.write_bytes(b"|x|\n" * (2**18 + 1))
    with pytest.raises(ConfigError, match=r"network list .*cells\.txt holds more than 1048576 bytes"):
        read_network_list(cells)
    good = gzip.compress(b"index,arch,x\n" + b"".join(b"%d,|c%d|,1.0\n" % (i, i) for i in range(2000)))
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(good[:40] + bytes([good[40] ^ 0xFF]) + good[41:])
    with pytest.raises(BenchmarkFormatError, match="broken.csv.gz: not a readable CSV table"):
        read_benchmark(broken)


def test_corrupt_suitezero_gzip_is_one_line(tmp_path):
    from eznas_store.sources.suitezero import read_zc

    good = gzip.compress(json.dumps({"cifar10": {str(i): {"synflow": {"score": i}} for i in range(500)}}).encode())
    p = tmp_path / "zc_x.json.gz"
    p.write_bytes(good[:30] + bytes([good[30] ^ 0xFF]) + good[31:])
    with pytest.raises(BenchmarkFormatError, match="is not readable gzip-compressed JSON"):
        read_zc(p)


def test_gzip_bombs_through_the_cli_are_one_line(tmp_path, capsys, small_cap):
    bomb = _gzip_of_zeros(tmp_path / "zc_nasbench201.json.gz", 4 * 2**20, prefix=b'{"cifar10": ')
    argv = ["proxy-table", "--store", str(tmp_path / "t.zarr"), "--benchmark", str(_bench(tmp_path)),
            "--suitezero", str(bomb), "--data-root", str(tmp_path), "--no-progress"]
    line = _one_line(capsys, argv)
    assert "zc_nasbench201.json.gz decompresses to more than 1048576 bytes" in line, line
    table_bomb = _gzip_of_zeros(tmp_path / "b.csv.gz", 4 * 2**20, prefix=b"index,arch,cifar10_valid\n0,")
    line = _one_line(capsys, ["ingest", "--store", str(tmp_path / "s.zarr"), "--dataset", "digits",
                              "--benchmark", str(table_bomb), "--networks", "2", "--no-progress"])
    assert "b.csv.gz decompresses to more than 1048576 bytes" in line, line


# ------------------------------------------------------------------------------ UTF-8 BOM


def test_files_with_a_utf8_bom_are_read(tmp_path):
    from eznas_store.sources.suitezero import read_zc
    from eznas_store.sources.tables import read_benchmark, select_networks

    table = read_benchmark(_bench(tmp_path))
    cells = tmp_path / "cells.txt"
    cells.write_bytes(b"\xef\xbb\xbf" + "\n".join(table.archs[:2]).encode() + b"\n")
    assert select_networks(table, archs=str(cells)).tolist() == [0, 1]
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "bench.csv").read_bytes())
    (tmp_path / "bom.csv.meta.json").write_bytes(b'\xef\xbb\xbf{"recipe": "x"}')
    again = read_benchmark(bom_csv)
    assert again.archs == table.archs and again.meta == {"recipe": "x"}
    zc = tmp_path / "zc_raw.json"
    zc.write_bytes(b"\xef\xbb\xbf" + json.dumps({"cifar10": {"k": {"synflow": {"score": 1.0}}}}).encode())
    assert read_zc(zc)["cifar10"].keys == ("k",)


def test_bom_cells_file_through_the_cli(tmp_path, capsys):
    bench = _bench(tmp_path, column="digits_test")
    from eznas_store.sources.tables import read_benchmark

    cells = tmp_path / "cells.txt"
    cells.write_bytes(b"\xef\xbb\xbf" + read_benchmark(bench).archs[0].encode() + b"\n")
    rc = main(["ingest", "--store", str(tmp_path / "s.zarr"), "--dataset", "digits", "--benchmark", str(bench),
               "--networks", str(cells), "--channels", "4", "--cells", "1", "--image-size", "8",
               "--device", "cpu", "--no-progress", "--no-proxies"])
    assert rc == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------- DARTS tables


def _darts_table(tmp_path: Path, bad: dict[int, str] | None = None):
    from eznas_store.sources.spaces.darts_genotype import random_cell
    from eznas_store.sources.tables import read_benchmark, write_benchmark

    rng = np.random.default_rng(0)
    archs = [random_cell(rng) for _ in range(6)]
    for i, text in (bad or {}).items():
        archs[i] = text
    path = write_benchmark(tmp_path / "darts.csv", archs, {"cifar10_valid": np.arange(6.0)})
    return read_benchmark(path), archs


def test_darts_table_rows_are_checked(tmp_path):
    from eznas_store.sources.spaces import get_space
    from eznas_store.sources.table_rows import find_bad_rows, table_cells

    space = get_space("darts")
    table, archs = _darts_table(tmp_path)
    assert table_cells(table, space) == [space.canonical(a) for a in archs]
    table, archs = _darts_table(tmp_path, {2: archs[1].replace("(", "( ", 1), 4: archs[0].replace("_conv_", "_conv9_", 1),
                                           5: "Genotype(normal=[])"})
    cells, bad = find_bad_rows(table, space)
    assert len(cells) == 3 and bad is not None and (bad.count, bad.total, bad.row) == (3, 6, 2)
    assert "the same cell as row 2" in bad.reason
    with pytest.raises(BenchmarkFormatError) as info:
        table_cells(table, space)
    msg = str(info.value)
    assert "darts.csv: 3 of 6 rows are not valid darts cells; the first, row 3 (index 2)" in msg and "\n" not in msg


def test_table_of_another_space_is_refused(tmp_path):
    from eznas_store.sources.spaces import get_space
    from eznas_store.sources.table_rows import table_cells
    from eznas_store.sources.tables import read_benchmark

    nb201 = read_benchmark(_bench(tmp_path))
    with pytest.raises(BenchmarkFormatError, match=r"4 of 4 rows are not valid darts cells"):
        table_cells(nb201, get_space("darts"))
    darts, _ = _darts_table(tmp_path)
    with pytest.raises(BenchmarkFormatError, match=r"6 of 6 rows are not valid nb201 cells"):
        table_cells(darts, get_space("nb201"))


# ---------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", [2**64, 2**32, -1, 1.5, "3"])
def test_seeds_outside_the_range_are_one_line(tmp_path, seed):
    from eznas_store.sources.tables import read_benchmark, select_networks

    table = read_benchmark(_bench(tmp_path))
    with pytest.raises(ConfigError, match="seed must be an integer from 0 to 4294967295"):
        select_networks(table, networks=2, seed=seed)
    with pytest.raises(ConfigError, match="seed must be an integer from 0 to 4294967295"):
        sample_batch("digits", None, batch_size=2, seed=seed)
    assert len(select_networks(table, networks=2, seed=2**32 - 1)) == 2


def test_an_oversized_proxy_table_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from eznas_store.errors import BenchmarkFormatError
    from eznas_store.sources import limits
    from eznas_store.sources.proxy_csv import read_proxy_table

    table = tmp_path / "T.csv"
    table.write_text("index,arch\n")
    (tmp_path / "T.meta.json").write_text("{" + " " * 4096 + "}")
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED_BYTES", 1024)
    with pytest.raises(BenchmarkFormatError, match="T.meta.json holds more than"):
        read_proxy_table(table)
    (tmp_path / "T.meta.json").write_text("{}")
    table.write_text("index,arch\n" + "x" * 4096 + "\n")
    with pytest.raises(BenchmarkFormatError, match="T.csv holds more than"):
        read_proxy_table(table)
