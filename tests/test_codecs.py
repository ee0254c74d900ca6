"""``ingest --codec``: lossy float32 tensor arrays (BitRound, ZFP) as registered zarr v3 codecs.

Lossless stays the default and writes exactly the codecs it wrote before; a lossy codec is
part of the plan (fingerprint, metadata, ``info``), reads back within its error bound through
every reader, and plain xarray opens it without this package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eznas_store.errors import ConfigError, StoreError
from eznas_store.ingest.driver import run_ingest
from eznas_store.store.plan import plan_fingerprint, plan_from_json, plan_to_json
from eznas_store.store.store import open_store

from conftest import store_arrays, tiny_ingest_config

K = 7


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same 5 tiny networks ingested lossless and with ``bitround:7``."""
    from conftest import make_bench

    d = tmp_path_factory.mktemp("codecs")
    bench = make_bench(d / "bench.csv")
    lossless, lossy = str(d / "lossless.zarr"), str(d / "bitround.zarr")
    run_ingest(tiny_ingest_config(lossless, bench, networks=5))
    run_ingest(tiny_ingest_config(lossy, bench, networks=5, codec=f"bitround:{K}"))
    return bench, lossless, lossy


def _tensor_codecs(url: str, name: str = "act_D") -> list[dict]:
    with open(os.path.join(url, name, "zarr.json")) as f:
        return json.load(f)["codecs"]


def test_bitround_reads_back_within_its_relative_error(pair):
    _, lossless, lossy = pair
    a, b = store_arrays(lossless), store_arrays(lossy)
    raw = open_store(lossless).meta["stored"]
    # the lossy store keeps the P pass as P - D, the terminal itself, under the terminal's name
    assert open_store(lossy).meta["stored"] == [n.removeprefix("raw_") for n in raw]
    changed = 0
    for name in raw:
        x = a[name]
        if name.startswith("raw_"):  # the lossless P terminal, as the evaluator computes it (float32)
            name = name.removeprefix("raw_")
            x = x - a[name.replace("_P", "_D")]
        x, y = x.astype(np.float64), b[name].astype(np.float64)
        assert np.all(np.abs(y - x) <= 2.0 ** -K * np.abs(x)), name
        changed += int((x != y).sum())
    assert changed > 0  # it did round
    for name in ("complete", "params", "flops", "proxy_value"):  # never the tables or flags
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    s_a, s_b = open_store(lossless), open_store(lossy)
    np.testing.assert_array_equal(s_a.group["data_batch"][...], s_b.group["data_batch"][...])


def test_p_terminals_keep_their_relative_error_through_every_reader(pair):
    """A lossy store keeps P - D (not P): rounding P and D apart would be a ~10x larger error in
    the P terminals, which are their difference. Store.tensor (and so the evaluator, through
    read_rows) gives the P terminals within 2^-K of the lossless ones, and the raw P pass back."""
    _, lossless, lossy = pair
    a, b = open_store(lossless), open_store(lossy)
    assert b.plan.p_difference and not a.plan.p_difference
    assert "raw_act_P" in a.group and "raw_act_P" not in b.group and "act_P" in b.group
    for n, blk in ((0, 0), (3, 2)):
        for t in ("act_P", "wtgrad_P", "preactgrad_P", "inpact_P", "preact_P"):
            x, y = a.tensor(n, blk, t).astype(np.float64), b.tensor(n, blk, t).astype(np.float64)
            d = np.abs(a.tensor(n, blk, "inpact_D" if t == "preact_P" else t.replace("_P", "_D"))).astype(np.float64)
            # 2^-K of the difference itself, plus the float32 rounding of rebuilding P = D + (P - D);
            # preact_P = relu(P) - relu(D) also carries D's own rounding where the ReLU cuts one side
            bound = 2.0 ** -K * (np.abs(x) + (d if t == "preact_P" else 0)) + 2.0 ** -22 * (d + np.abs(x))
            assert np.all(np.abs(y - x) <= bound), t
        rows = {k: v.astype(np.float64) for k, v in a.read_rows(n, n + 1, ["act_P", "act_D"]).items()}
        back = b.read_rows(n, n + 1, ["act_P"])["act_P"].astype(np.float64)  # the raw P pass, rebuilt
        diff = np.abs(rows["act_P"] - rows["act_D"])
        assert np.all(np.abs(back - rows["act_P"]) <= 2.0 ** -K * (np.abs(rows["act_D"]) + diff)
                      + 2.0 ** -22 * np.abs(rows["act_P"]))


def test_lossy_codec_is_a_bitround_filter_before_blosc_and_crc_last(pair):
    _, _, lossy = pair
    names = [c["name"] for c in _tensor_codecs(lossy)]
    assert names[0] == "numcodecs.bitround" and names[-1] == "crc32c" and "blosc" in names
    assert _tensor_codecs(lossy)[0]["configuration"]["keepbits"] == K
    assert [c["name"] for c in _tensor_codecs(lossy, "data_batch")] == ["bytes", "blosc", "crc32c"]


def test_lossless_default_is_unchanged(pair, tmp_path):
    bench, lossless, _ = pair
    expected = [{"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "blosc", "configuration": {"typesize": 4, "cname": "zstd", "clevel": 3,
                                                    "shuffle": "shuffle", "blocksize": 0}},
                {"name": "crc32c"}]
    assert _tensor_codecs(lossless) == expected
    p = open_store(lossless).plan
    assert p.codec == "lossless"
    assert "codec" not in plan_to_json(p) and "codec" not in open_store(lossless).meta["plan"]
    old = plan_to_json(p)  # a store made before --codec: no codec in its plan
    assert plan_fingerprint(plan_from_json(old)) == plan_fingerprint(p)
    explicit = str(tmp_path / "explicit.zarr")
    run_ingest(tiny_ingest_config(explicit, bench, networks=5, codec="lossless"))
    for k, v in store_arrays(lossless).items():
        np.testing.assert_array_equal(v, store_arrays(explicit)[k], err_msg=k)


def test_other_codec_is_refused_as_a_shard(tmp_path, tiny_bench):
    url = str(tmp_path / "s.zarr")
    run_ingest(tiny_ingest_config(url, tiny_bench, networks=4, shard=(0, 2)))
    with pytest.raises(StoreError, match="'codec' differs"):
        run_ingest(tiny_ingest_config(url, tiny_bench, networks=4, shard=(1, 2), codec="bitround:9"))
    url2 = str(tmp_path / "t.zarr")
    run_ingest(tiny_ingest_config(url2, tiny_bench, networks=4, shard=(0, 2), codec="bitround:9"))
    for other in ("lossless", "bitround:10"):
        with pytest.raises(StoreError, match="'codec' differs"):
            run_ingest(tiny_ingest_config(url2, tiny_bench, networks=4, shard=(1, 2), codec=other))
    run_ingest(tiny_ingest_config(url2, tiny_bench, networks=4, shard=(1, 2), codec="bitround:09"))
    assert open_store(url2).complete().all()


def test_info_shows_the_codec(pair, capsys):
    from eznas_store.cli import main

    _, lossless, lossy = pair
    assert main(["info", lossy]) == 0
    out = capsys.readouterr().out
    assert f"codec        bitround:{K} (tensors: BitRound keeps {K} mantissa bits" in out
    assert main(["info", lossless]) == 0
    assert "codec        lossless" in capsys.readouterr().out
    assert main(["info", lossy, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["codec"] == f"bitround:{K}"


def test_plain_xarray_without_this_package_opens_a_lossy_store(pair):
    _, lossless, lossy = pair
    code = textwrap.dedent(f"""
        import sys, warnings
        import numpy, xarray, zarr, numcodecs
        warnings.simplefilter("ignore")
        ds = xarray.open_zarr({lossy!r})
        x = ds["act_D"].values
        assert ds.sizes["network"] == 5 and numpy.isfinite(x).all()
        assert "P - D difference" in ds["act_P"].attrs["description"]  # says what the array holds
        numpy.save(sys.argv[1], x)
        assert not any(m.startswith("eznas_store") for m in sys.modules), "eznas_store was imported"
    """)
    out = os.path.join(os.path.dirname(lossy), "act_D.npy")
    r = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(lossy))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), store_arrays(lossy)["act_D"])


@pytest.mark.parametrize("text", ["bitround:0", "bitround:24", "zfp:-1", "foo", "bitround:x", "zfp:", ""])
def test_bad_codec_is_a_one_line_error(tmp_path, tiny_bench, text):
    with pytest.raises(ConfigError) as e:
        tiny_ingest_config(str(tmp_path / "s"), tiny_bench, codec=text)
    assert "\n" not in str(e.value) and "--codec" in str(e.value)


@pytest.mark.parametrize("text", ["bitround:0", "bitround:24", "zfp:-1", "foo", "bitround:3+zstd:0",
                                  "compact+zstd:9"])
def test_bad_codec_on_the_command_line_is_one_line_exit_2(capsys, tmp_path, tiny_bench, text):
    from eznas_store.cli import main

    rc = main(["ingest", "--store", str(tmp_path / "s"), "--dataset", "digits", "--benchmark", str(tiny_bench),
               "--codec", text, "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "--codec" in err[0], err
    assert not os.path.exists(tmp_path / "s")


def test_zfp_without_zfpy_is_refused_naming_the_package(tmp_path, tiny_bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "zfpy", None)  # import zfpy raises ImportError
    with pytest.raises(ConfigError, match="zfpy") as e:
        tiny_ingest_config(str(tmp_path / "s"), tiny_bench, codec="zfp:0.001")
    assert "\n" not in str(e.value)


def test_zfp_reads_back_within_its_tolerance(pair, tmp_path):
    pytest.importorskip("zfpy")
    bench, lossless, _ = pair
    url, tol = str(tmp_path / "zfp.zarr"), 1e-3
    run_ingest(tiny_ingest_config(url, bench, networks=5, codec="zfp:1e-3"))
    s = open_store(url)
    assert s.plan.codec == "zfp:0.001" and s.meta["plan"]["codec"] == "zfp:0.001"
    names = [c["name"] for c in _tensor_codecs(url)]
    assert names == ["numcodecs.zfpy", "crc32c"]
    a, b = store_arrays(lossless), store_arrays(url)
    for name in s.meta["stored"]:
        assert np.all(np.abs(b[name].astype(np.float64) - a[name]) <= tol), name


def test_job_file_sets_the_codec(tmp_path, tiny_bench):
    from eznas_store.cli import main

    job = tmp_path / "job.toml"
    job.write_text(f'[ingest]\ncodec = "bitround:11"\ndataset = "digits"\nbenchmark = "{tiny_bench}"\n'
                   'networks = 3\nbatch_size = 2\nchannels = 4\ncells = 1\nimage_size = 8\ndevice = "cpu"\n')
    url = str(tmp_path / "j.zarr")
    assert main(["ingest", "--job", str(job), "--store", url, "--no-progress", "--no-proxies"]) == 0
    assert open_store(url).plan.codec == "bitround:11"


GOOD = {"lossless": "lossless", "bitround:7": "bitround:7", "bitround:07": "bitround:7",
        "bitround:7+zstd:3": "bitround:7", "bitround:3+zstd:9": "bitround:3+zstd:9",
        " bitround:23+zstd:1 ": "bitround:23+zstd:1", "zfp:1e-3": "zfp:0.001"}
BAD = ["bitround:3+zstd:0", "bitround:3+zstd:10", "bitround:3+lz4:3", "bitround:3+", "bitround:3+zstd:",
       "bitround:3+zstd:x", "zfp:0.1+zstd:9", "lossless+zstd:9", "compact+zstd:9", "bitround:+zstd:9",
       "bitround:3+zstd:9+zstd:9", "bitround:3+zstd:٣"]


@pytest.mark.parametrize("text,canonical", sorted(GOOD.items()))
def test_codec_specs_are_recorded_canonically(text, canonical):
    from eznas_store.store.plan import canonical_codec, parse_codec

    assert canonical_codec(text) == canonical
    assert parse_codec(canonical) == parse_codec(text) and canonical_codec(canonical) == canonical


def test_every_bitround_spec_round_trips_and_matches_the_store_schema():
    """Property over the whole grammar: K = 1..23 x L = 1..9 (with and without the stage)."""
    import re

    from eznas_store.config import load_schema
    from eznas_store.store.plan import canonical_codec, codec_level, parse_codec

    pattern = re.compile(load_schema("store")["properties"]["plan"]["properties"]["codec"]["pattern"])
    seen = set()
    for k in range(1, 24):
        for level in range(1, 10):
            c = canonical_codec(f"bitround:{k}+zstd:{level}")
            assert parse_codec(c) == ("bitround", k) and codec_level(c) == level
            assert (c == f"bitround:{k}") == (level == 3)
            assert pattern.fullmatch(c), c
            seen.add(c)
    assert len(seen) == 23 * 9
    for bad in BAD + ["bitround:0", "bitround:24+zstd:9"]:
        assert not pattern.fullmatch(bad.strip()), bad


@pytest.mark.parametrize("text", BAD)
def test_bad_level_or_stage_is_a_one_line_error(tmp_path, tiny_bench, text):
    with pytest.raises(ConfigError) as e:
        tiny_ingest_config(str(tmp_path / "s"), tiny_bench, codec=text)
    assert "\n" not in str(e.value) and "--codec" in str(e.value)


def test_compact_preset_is_recorded_as_its_spec_with_the_zstd_level(pair, tmp_path):
    from eznas_store.cli import main
    from eznas_store.store.plan import COMPACT, codec_level

    bench = pair[0]
    url = str(tmp_path / "compact.zarr")
    run_ingest(tiny_ingest_config(url, bench, networks=5, codec="compact", proxies=False))
    s = open_store(url)
    assert s.plan.codec == COMPACT != "compact" and s.meta["plan"]["codec"] == COMPACT
    blosc = [c for c in _tensor_codecs(url) if c["name"] == "blosc"][0]
    assert blosc["configuration"]["clevel"] == codec_level(COMPACT)
    assert [c["name"] for c in _tensor_codecs(url)][-1] == "crc32c"
    assert main(["info", url]) == 0


def test_transcoded_store_is_the_store_ingest_writes(pair, tmp_path):
    """benchmarks/bench_codecs.py measures lossy stores transcoded from one lossless ingest:
    they must be the stores ``ingest --codec`` writes (same values, plan, fingerprint)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from bench_codecs import transcode

    from eznas_store.store.verify import verify_store

    _, lossless, lossy = pair
    url = str(tmp_path / "t.zarr")
    transcode(lossless, url, f"bitround:0{K}")
    a, b = store_arrays(url), store_arrays(lossy)
    assert set(a) == set(b)
    for k in set(a) - {"seconds"}:  # the wall time of each network's collection differs by run
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    t, d = open_store(url), open_store(lossy)
    assert t.plan == d.plan and plan_fingerprint(t.plan) == plan_fingerprint(d.plan)
    assert _tensor_codecs(url) == _tensor_codecs(lossy)
    assert verify_store(t).ok


@pytest.fixture(scope="module")
def sumround(pair, tmp_path_factory):
    """The pair's 5 networks ingested with ``sumround:3``."""
    bench, lossless, _ = pair
    url = str(tmp_path_factory.mktemp("sumround") / "s.zarr")
    run_ingest(tiny_ingest_config(url, bench, networks=5, codec="sumround:3"))
    return url


def test_sumround_store_holds_the_rounded_lossless_rows(pair, sumround):
    """What a sumround store holds is the lossless rows (P as P - D) rounded block tensor by
    block tensor: signs and zeros kept, every value within 2^-K, and every block's sum closer
    to the lossless one than nearest rounding gets it."""
    from numcodecs import BitRound

    from eznas_store.store.rounding import sum_round_segments

    _, lossless, _ = pair
    a, s = open_store(lossless), open_store(sumround)
    assert s.plan.codec == "sumround:3" and s.plan.p_difference
    for lo, hi in a.chunk_ranges():
        raw = a.read_rows(lo, hi)
        for name in ("preactgrad_D", "act_P", "wt"):
            x = raw[name] - raw[name.replace("_P", "_D")] if name.endswith("_P") else raw[name]
            y = np.asarray(s.group[name][lo:hi])
            segments = a.tensor_segments(lo, hi, name)
            np.testing.assert_array_equal(y, sum_round_segments(x, segments, 3), err_msg=name)
            assert np.array_equal(np.sign(x), np.sign(y))
            assert np.all(np.abs(y.astype(np.float64) - x) <= 2.0 ** -3 * np.abs(x.astype(np.float64)))
            near = BitRound(keepbits=3).decode(BitRound(keepbits=3).encode(x.copy())).reshape(x.shape)
            for r, off, size in segments:
                exact = x[r, off:off + size].astype(np.float64).sum()
                mine, theirs = (abs(v[r, off:off + size].astype(np.float64).sum() - exact) for v in (y, near))
                assert mine <= theirs + 1e-9 * abs(exact), (name, r, off)


def test_sumround_transcoded_is_the_store_ingest_writes(pair, sumround, tmp_path):
    from eznas_store.store.transcode import transcode_store

    _, lossless, _ = pair
    url = str(tmp_path / "t.zarr")
    transcode_store(lossless, url, "sumround:3")
    a, b = store_arrays(url), store_arrays(sumround)
    assert set(a) == set(b)
    for k in set(a) - {"seconds"}:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert open_store(url).plan == open_store(sumround).plan
    with pytest.raises(StoreError, match="exists"):
        transcode_store(lossless, url, "sumround:3")


def test_transcode_command_writes_the_lossy_store_and_refuses_one_line(pair, tmp_path, capsys):
    from eznas_store.cli import main
    from eznas_store.store.plan import COMPACT

    _, lossless, _ = pair
    url = str(tmp_path / "c.zarr")
    assert main(["transcode", lossless, url]) == 0  # --codec compact by default
    out = capsys.readouterr().out
    assert "transcoded 5 networks" in out and COMPACT in out
    assert open_store(url).plan.codec == COMPACT
    assert main(["transcode", lossless, url]) == 2  # the target exists
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "exists" in err[0]
