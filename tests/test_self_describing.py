"""A store that explains itself: attributes on every array, coordinates on ``network`` and
``block``, raw P arrays that cannot be mistaken for terminals, ``Store.tensor``, a README
snippet that needs only xarray, and bad ``--store`` locations as one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas_store.cli import main as main_cli
from eznas_store.errors import StoreError, UnknownNameError
from eznas_store.evaluate.chunk import network_tensors, read_chunk
from eznas_store.store.group import quiet_zarr
from eznas_store.store.store import open_store
from eznas_store.store.verify import verify_store
from eznas_store.terminals import STORED, TERMINALS, numpy_relu, terminal_value
from conftest import make_bench

README = Path(__file__).resolve().parents[1] / "README.md"
NETWORK_COORDS = {"arch", "bench_index", "n_blocks", "block_start"}
BLOCK_COORDS = {"block_network", "block_index", "c_in", "c_out", "kernel", "stride", "h_in", "h_out",
                "w_in", "w_out"}


def test_every_array_has_a_long_name_and_description(tiny_store):
    import xarray as xr

    g = open_store(tiny_store).group
    for name in g.array_keys():
        attrs = dict(g[name].attrs)
        assert attrs.get("long_name") and attrs.get("description"), name
    ds = xr.open_zarr(tiny_store)
    for name in [*ds.data_vars, *ds.coords]:
        assert ds[name].attrs.get("long_name") and ds[name].attrs.get("description"), name


def test_network_and_block_carry_their_coordinates(tiny_store):
    import xarray as xr

    s = open_store(tiny_store)
    ds = xr.open_zarr(tiny_store)
    assert NETWORK_COORDS | BLOCK_COORDS <= set(ds.coords)
    assert NETWORK_COORDS <= set(ds["act_D"].coords) and NETWORK_COORDS <= set(ds["accuracy"].coords)
    assert BLOCK_COORDS <= set(ds["off_act"].coords)
    assert list(ds["arch"].values) == list(s.plan.archs)
    assert list(ds["bench_index"].values) == list(s.plan.bench_index)
    assert np.array_equal(ds["w_out"].values, ds["h_out"].values)
    net3 = ds["act_D"].isel(network=3)
    assert str(net3["arch"].values) == s.plan.archs[3]
    blocks = ds["off_act"].load().where(ds["block_network"].load() == 3, drop=True)
    assert list(blocks["block_index"].values) == list(range(int(ds["n_blocks"][3])))


def test_raw_arrays_cannot_be_mistaken_for_terminals(tiny_store):
    s = open_store(tiny_store)
    arrays = set(s.group.array_keys())
    tensors = set(s.array_names.values())
    assert tensors <= arrays and len(tensors) == len(STORED)
    assert not any(t.endswith("_P") for t in TERMINALS if t in arrays), "a P terminal name holds a raw pass"
    assert {t for t in tensors if t.endswith("_P")} == {f"raw_{n}" for n in STORED if n.endswith("_P")}
    assert tensors - {f"raw_{n}" for n in STORED} <= set(TERMINALS)  # every other one is its terminal
    for name in tensors:
        attrs = dict(s.group[name].attrs)
        if name.startswith("raw_"):
            assert attrs["terminal"] == "" and "not a terminal" in attrs["description"]
            assert f"{name[4:]} is {name} - {name[4:-1]}D" in attrs["description"]
        else:
            assert attrs["terminal"] == name
    assert s.meta["stored"] == [s.array_names[n] for n in STORED]
    assert set(s.lazy(slice(0, 2)).data_vars) == tensors


@pytest.mark.parametrize("terminal", ["act_D", "wtgrad_N", "act_P", "preact_P", "inpactgrad_D", "wt"])
def test_tensor_is_the_terminal_the_evaluator_sees(tiny_store, terminal):
    s = open_store(tiny_store)
    n, b = 4, 3  # network 4 is the second of its chunk (chunk_networks 3)
    lo, hi = next(r for r in s.chunk_ranges() if r[0] <= n < r[1])
    want = read_chunk(s, lo, hi).network_blocks(n - lo)[b][terminal].numpy()
    got = s.tensor(n, b, terminal)
    assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == np.float32
    assert np.array_equal(got, want)
    bt = s.block_table()
    row = int(bt["block_start"][n]) + b
    B = s.plan.collect.batch_size
    if terminal.startswith("act"):
        assert got.shape == (B, int(bt["c_out"][row]), int(bt["h_out"][row]), int(bt["h_out"][row]))


def test_tensor_reads_raw_arrays_and_refuses_unknown_names(tiny_store):
    s = open_store(tiny_store)
    raw = network_tensors(s, 2)[1]["act_P"].numpy()
    assert np.array_equal(s.tensor(2, 1, "raw_act_P"), raw)
    assert np.array_equal(s.tensor(2, 1, "act_P"), raw - s.tensor(2, 1, "act_D"))
    with pytest.raises(UnknownNameError, match="unknown terminal 'act_Q'"):
        s.tensor(0, 0, "act_Q")
    with pytest.raises(StoreError, match="blocks 0.."):
        s.tensor(0, 10**6, "act_D")
    with pytest.raises(StoreError, match="networks 0..11"):
        s.tensor(12, 0, "act_D")


@pytest.mark.parametrize("structure", ["rcb", "cbr"])
def test_numpy_and_torch_rules_agree(structure):
    """The one rule set (``terminals.terminal_value``) in numpy and torch gives equal terminals."""
    rng = np.random.default_rng(3)
    raw = {k: rng.standard_normal((2, 3, 4)).astype(np.float32) for k in STORED}
    for t in TERMINALS:
        a = terminal_value(t, raw.__getitem__, structure, numpy_relu)
        b = terminal_value(t, lambda k: torch.from_numpy(raw[k]), structure, torch.relu)
        assert a.dtype == np.float32 and np.array_equal(a, b.numpy()), t


def _readme_snippet() -> str:
    text = README.read_text()
    section = text.split("### Read one block's tensor with xarray alone", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 4  # import + 3 lines
    return code


def test_readme_snippet_needs_only_xarray(tiny_store, tmp_path):
    code = _readme_snippet().replace('"S.zarr"', repr(tiny_store))
    out = tmp_path / "act.npy"
    script = (code + f"\nnp.save({str(out)!r}, act_D)\nimport sys\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('eznas_store', 'torch'))\n"
              "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.array_equal(np.load(out), open_store(tiny_store).tensor(3, 5, "act_D"))


def test_format_1_stores_are_still_read(tiny_store, tmp_path):
    """A store of format 1 (raw P arrays named like the P terminals) reads and verifies as before."""
    import zarr

    url = str(tmp_path / "v1.zarr")
    shutil.copytree(tiny_store, url)
    new = open_store(url)
    for stored, array in new.array_names.items():
        if array != stored:
            (Path(url) / array).rename(Path(url) / stored)
    meta_path = Path(url) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["eznas-store"]["format_version"] = 1
    meta["attributes"]["eznas-store"]["stored"] = list(STORED)
    meta.pop("consolidated_metadata", None)
    meta_path.write_text(json.dumps(meta))
    with quiet_zarr():
        zarr.consolidate_metadata(url)
    old = open_store(url)
    assert old.format_version == 1 and old.array_names["act_P"] == "act_P"
    assert verify_store(old).ok
    assert np.array_equal(old.tensor(4, 2, "preact_P"), open_store(tiny_store).tensor(4, 2, "preact_P"))
    assert torch.equal(read_chunk(old, 0, 3).network_blocks(1)[0]["act_P"],
                       read_chunk(open_store(tiny_store), 0, 3).network_blocks(1)[0]["act_P"])


def test_a_newer_format_is_refused_in_one_line(tiny_store, tmp_path):
    import zarr

    url = str(tmp_path / "v9.zarr")
    shutil.copytree(tiny_store, url)
    g = zarr.open_group(url, mode="r+", use_consolidated=False)
    meta = dict(g.attrs["eznas-store"])
    meta["format_version"] = 9
    g.attrs["eznas-store"] = meta
    with quiet_zarr():
        zarr.consolidate_metadata(url)
    with pytest.raises(StoreError, match="format version 9.*upgrade eznas-store"):
        open_store(url)


# ----------------------------------------------------------------------------- bad --store
def _ingest_args(store: str, bench: Path) -> list[str]:
    return ["ingest", "--store", store, "--dataset", "digits", "--benchmark", str(bench), "--batch-size", "2",
            "--chunk-networks", "3", "--channels", "4", "--cells", "1", "--image-size", "8", "--device", "cpu",
            "--no-progress"]


def _one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    capsys.readouterr()
    assert main_cli(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_store_under_a_file_is_one_line(tmp_path, capsys):
    bench = make_bench(tmp_path / "bench.csv")
    (tmp_path / "afile").write_text("x")
    _one_line_error(capsys, _ingest_args(str(tmp_path / "afile"), bench), "not a directory")
    _one_line_error(capsys, _ingest_args(str(tmp_path / "afile" / "sub" / "s.zarr"), bench),
                    "which is a file, not a folder")
    _one_line_error(capsys, ["info", str(tmp_path / "afile" / "s.zarr")], "which is a file")


def test_unknown_url_scheme_is_one_line(tmp_path, capsys):
    bench = make_bench(tmp_path / "bench.csv")
    _one_line_error(capsys, _ingest_args("bogus://x", bench), "unknown URL scheme 'bogus://'")
    _one_line_error(capsys, ["info", "bogus://x"], "unknown URL scheme")


def test_s3_without_s3fs_is_one_line(tmp_path, capsys):
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed (no network here to test an unreachable bucket with it)")
    except ImportError:
        pass
    bench = make_bench(tmp_path / "bench.csv")
    _one_line_error(capsys, _ingest_args("s3://no-such-bucket/s.zarr", bench), "s3fs")


def test_unreachable_remote_store_is_one_line(tmp_path, capsys):
    """A remote filesystem whose every call fails (no network) during ingest: one line, exit 2."""
    import fsspec
    from fsspec.spec import AbstractFileSystem

    class Unreachable(AbstractFileSystem):
        protocol = "eznas-unreachable"

        def _fail(self, *args, **kwargs):
            raise ConnectionError("could not connect to the endpoint")

        ls = info = cat_file = pipe_file = _open = mkdir = makedirs = rm_file = exists = _fail

    fsspec.register_implementation("eznas-unreachable", Unreachable, clobber=True)
    bench = make_bench(tmp_path / "bench.csv")
    _one_line_error(capsys, _ingest_args("eznas-unreachable://bucket/s.zarr", bench),
                    "cannot be opened or written", "ConnectionError")
