"""Reliability replay: every case of issue 24's hostile sweep (and later finds), one subprocess each.

Usage (from the repository root; no ../shared needed)::

    python benchmarks/bench_reliability.py                      # every case, Markdown table
    python benchmarks/bench_reliability.py --only 'seed-*,bom'  # a subset (globs or substrings)
    python benchmarks/bench_reliability.py --list               # case names and what they need
    python benchmarks/bench_reliability.py --json --out /tmp/rel  # rows as JSON; keep the files

It builds its tiny fixtures once in a temporary folder (only those the chosen cases need): a
hand-written NB201 table (digits and the three NB201 test columns), a Suite-Zero file for its
cells, a tiny CIFAR-10 pickle folder, a store (``ingest --dataset digits``, C=4, N=1), evolve runs
(tree, sequential, over proxies), a proxy table, DARTS tables, and hostile files: dataset pickles
with a huge int label, a ragged ``data`` list and a 200,000-deep list (raw pickle opcodes), a
20000x20000 and a 10000x10000 1-bit PNG (tiny on disk), a 2 GB gzip bomb ``zc_*.json.gz``
(2 MB), a cells file with a UTF-8 BOM, a dangling symlink, a folder holding ``thesis.tex``.

Each case runs the real ``eznas-store`` command(s) as subprocesses with a timeout and judges
what a user sees: the exit code, the stderr lines, a Python traceback, files deleted that the
command did not write (the folder is snapshotted before and after), a damaged store that
``verify`` passes or ``score`` scores with exit 0. Two writers of one output are made to
overlap deterministically: the first is started, frozen with SIGSTOP as soon as its
``<output>.lock`` (or, failing a lock, its output) appears, the second runs to its end while the
first provably holds the output, then the first is continued.

The expected behaviour is issue 24's: a user error is one line on stderr and exit 2, nothing is
deleted that the command did not write, a store missing a chunk fails ``verify`` and is refused by
``score``, a failed or killed transcode leaves no target that verifies, one writer per output.
Prints a Markdown table (case, command, expected, observed, PASS/FAIL) and the summary line
``N cases: P pass, F fail, T tracebacks, D deletions``; exits 1 if any case fails. Cases that may
eat memory (bombs, huge counts) run under an address-space limit (``--mem-limit-gb``).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import gzip
import hashlib
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

TRACEBACK = "Traceback (most recent call last)"
BIG = str(2**64)  # the seed: no uint64 holds it
TINY = ["--channels", "4", "--cells", "1", "--image-size", "8", "--device", "cpu"]
INGEST = ["--dataset", "digits", "--batch-size", "2", "--chunk-networks", "2", *TINY, "--no-progress"]
EVOLVE = ["--generations", "1", "--population", "4", "--seed", "0", "--no-progress"]
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DEFAULT_TIMEOUT = 120.0
#: the file that marks an --out folder as this script's (only such a folder is cleared and reused)
MARK = ".bench-reliability"


# ============================================================================ running commands


@dataclass
class Res:
    """One finished (or timed-out) subprocess."""

    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool = False

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.err or TRACEBACK in self.out

    def brief(self) -> str:
        """``rc=2, 1 line: <first line>`` (or ``timeout``/``traceback: <last line>``)."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        lines = self.err_lines
        if self.traceback:
            return f"rc={self.rc}, TRACEBACK: {lines[-1][:140] if lines else ''}"
        if lines:
            return f"rc={self.rc}, {len(lines)} stderr line(s): {lines[0][:160]}"
        out = [ln.strip() for ln in self.out.splitlines() if ln.strip()]
        bad = [ln for ln in out if re.search(r"missing|broken|error|fail|incomplete|not ", ln, re.I)]
        return f"rc={self.rc}, 0 stderr lines; stdout: {' / '.join((bad or out)[:2])[:160]}"


@dataclass
class Outcome:
    passed: bool
    observed: str
    command: str = ""
    deletions: int = 0


@dataclass
class Case:
    name: str
    section: str
    expected: str
    fn: Callable[["Ctx"], Outcome]
    needs: tuple[str, ...] = ()
    mem_limited: bool = False


class Ctx:
    """Where a case runs: the launcher, the work folder, the fixtures, what it ran."""

    def __init__(self, work: Path, exe: list[str], mem_limit_gb: float, timeout_scale: float) -> None:
        self.work, self.exe = work, exe
        self.fx = work / "fixtures"
        for old in (self.fx, work / "cases"):  # a reused --out starts from fresh fixtures
            shutil.rmtree(old, ignore_errors=True)
        self.fx.mkdir(parents=True, exist_ok=True)
        self.mem_limit_gb, self.timeout_scale = mem_limit_gb, timeout_scale
        self.runs: list[Res] = []
        self.mem_limited = False
        self.case_name = ""
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1", TERM="dumb",
                        COLUMNS="200", PYTHONUNBUFFERED="1")

    # ---------------------------------------------------------------- folders and display
    def case_dir(self) -> Path:
        d = self.work / "cases" / self.case_name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def show(self, argv: list[str]) -> str:
        args = ["eznas-store", *argv[len(self.exe):]]
        text = " ".join(shlex.quote(str(a)) for a in args)
        return text.replace(str(self.work / "cases" / self.case_name) + "/", "").replace(str(self.work), "$W")

    # ---------------------------------------------------------------- processes
    def _preexec(self) -> Callable[[], None] | None:
        if not (self.mem_limited and self.mem_limit_gb > 0):
            return None
        limit = int(self.mem_limit_gb * 2**30)

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        return apply

    def start(self, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        argv = [*self.exe, *map(str, args)]
        return subprocess.Popen(argv, cwd=cwd or self.case_dir(), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", preexec_fn=self._preexec(),
                                start_new_session=True)

    def finish(self, p: subprocess.Popen, t0: float, timeout: float) -> Res:
        timed_out = False
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(p)
            out, err = p.communicate()
        res = Res(list(map(str, p.args)), None if timed_out else p.returncode, out, err, time.monotonic() - t0,
                  timed_out)
        self.runs.append(res)
        return res

    def cli(self, *args: str, timeout: float = DEFAULT_TIMEOUT, cwd: Path | None = None) -> Res:
        t0 = time.monotonic()
        return self.finish(self.start(*args, cwd=cwd), t0, timeout * self.timeout_scale)

    # ---------------------------------------------------------------- fixtures
    def fixture(self, name: str) -> Path:
        return FIXTURES.build(self, name)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def launcher() -> list[str]:
    exe = shutil.which("eznas-store")
    return [exe] if exe else [sys.executable, "-m", "eznas_store.cli"]


# ============================================================================ judging


def one_line_exit2(r: Res) -> tuple[bool, str]:
    """A user error as the README promises it: exit 2, exactly one stderr line, no traceback."""
    ok = r.rc == 2 and len(r.err_lines) == 1 and not r.traceback
    return ok, r.brief()


def refused(r: Res) -> tuple[bool, str]:
    """A refusal: non-zero exit (not a timeout), something said (``verify`` reports on stdout), no traceback."""
    ok = r.rc not in (0, None) and bool(r.err_lines or r.out.strip()) and not r.traceback
    return ok, r.brief()


def succeeded(r: Res) -> tuple[bool, str]:
    ok = r.rc == 0 and not r.traceback
    return ok, r.brief()


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 (``dir`` / ``link``) of everything under ``folder``."""
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def lost(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Entries of ``before`` deleted or changed in ``after``."""
    return [k for k, v in before.items() if after.get(k) != v]


def tensor_chunk(store: Path, array: str = "act_D", chunk: str = "1/0") -> Path:
    """A tensor chunk file of ``store`` (the first stored float array when ``array`` is absent)."""
    p = store / array / "c" / chunk
    if p.is_file():
        return p
    for arr in sorted(store.iterdir()):
        q = arr / "c" / chunk
        if q.is_file() and arr.name.startswith(("act", "wt", "inpact", "preactgrad")):
            return q
    raise FileNotFoundError(f"no tensor chunk {chunk} in {store}")


def copy_store(ctx: Ctx, name: str = "store.zarr") -> Path:
    dst = ctx.case_dir() / name
    shutil.copytree(ctx.fixture("store"), dst, symlinks=True)
    return dst


def store_files(store: Path) -> int:
    return sum(1 for p in store.rglob("*") if p.is_file() and "/c/" in str(p))


# ============================================================================ fixtures


def nb201_cells(n: int) -> list[str]:
    """``n`` NB201 cells with no edge 'none' (so every Suite-Zero task keeps them), spread out."""
    cells = []
    for j in range(n):
        i = (j * 1237 + 301) % 4**6
        o = [OPS[1 + (i // 4**k) % 4] for k in range(6)]
        cells.append(f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|")
    return cells


def write_table(path: Path, archs: list[str], columns: dict[str, np.ndarray], index=None) -> Path:
    index = list(range(len(archs))) if index is None else list(index)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", *columns])
        for i, a in enumerate(archs):
            w.writerow([index[i], a, *(repr(float(c[i])) for c in columns.values())])
    return path


def fx_bench(ctx: Ctx) -> Path:
    """8 NB201 cells, columns digits_test and NB201's three test accuracies (made-up values)."""
    rng = np.random.default_rng(0)
    archs = nb201_cells(8)
    cols = {c: rng.uniform(40, 95, len(archs)) for c in
            ("digits_test", "cifar10_test", "cifar100_test", "imagenet16_test")}
    return write_table(ctx.fx / "bench.csv", archs, cols, index=range(100, 100 + len(archs)))


def _bench_archs(ctx: Ctx) -> list[str]:
    with open(ctx.fixture("bench"), newline="") as f:
        return [r["arch"] for r in csv.DictReader(f)]


#: NASLib's NB201 op index -> op, and the key position of each edge of a cell string (o0 | o1, o3 | o2, o4, o5)
NASLIB_NB201_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_KEY_POSITION = (0, 1, 3, 2, 4, 5)


def naslib_key(cell: str) -> str:
    """NASLib's Suite-Zero key of a NB201 cell string, e.g. ``"(4, 0, 3, 1, 4, 3)"``."""
    ops = re.findall(r"\|([a-z_0-9]+)~\d", cell)
    idx = [0] * 6
    for pos, key_pos in enumerate(_KEY_POSITION):
        idx[key_pos] = NASLIB_NB201_OPS.index(ops[pos])
    return "(" + ", ".join(map(str, idx)) + ")"


def fx_zc(ctx: Ctx) -> Path:
    """A Suite-Zero ``zc_nasbench201.json.gz`` for the bench's cells (tasks cifar10, ImageNet16-120)."""
    rng = np.random.default_rng(1)
    keys = [naslib_key(a) for a in _bench_archs(ctx)]
    data = {task: {k: {p: {"score": float(rng.normal())} for p in ("flops", "jacov", "synflow")}
                   | {"val_accuracy": 50.0} for k in keys} for task in ("cifar10", "ImageNet16-120")}
    d = ctx.fx / "suitezero"
    d.mkdir(exist_ok=True)
    p = d / "zc_nasbench201.json.gz"
    p.write_bytes(gzip.compress(json.dumps(data).encode()))
    return p


_CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_folder(root: Path, entry: Callable[[int], bytes]) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(_CIFAR_FILES):
        (folder / name).write_bytes(entry(k))
    return root


def fx_cifar(ctx: Ctx) -> Path:
    """A valid CIFAR-10 python folder, 40 random images per file (the proxies' input)."""
    def entry(k: int) -> bytes:
        rng = np.random.default_rng(k)
        return pickle.dumps({"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8),
                             "labels": rng.integers(0, 10, 40).tolist(), "batch_label": f"fixture {k}"}, protocol=4)
    return _cifar_folder(ctx.fx / "cifar", entry)


def fx_pickle_hugeint(ctx: Ctx) -> Path:
    data = np.zeros((4, 3072), dtype=np.uint8)
    return _cifar_folder(ctx.fx / "pk-hugeint", lambda k: pickle.dumps({"data": data, "labels": [2**70] * 4}, 4))


def fx_pickle_ragged(ctx: Ctx) -> Path:
    return _cifar_folder(ctx.fx / "pk-ragged",
                         lambda k: pickle.dumps({"data": [[0] * 3072, [0] * 5], "labels": [0, 1]}, 4))


def deep_list_pickle(depth: int = 200_000) -> bytes:
    """``{'data': [[[...]]] (depth lists), 'labels': [0]}`` as raw protocol-2 opcodes: no Python
    recursion is needed to write it (EMPTY_LIST x depth, then APPEND x depth-1)."""
    deep = b"]" * depth + b"a" * (depth - 1)
    return (b"\x80\x02}(" + b"U\x04data" + deep + b"U\x06labels" + b"](K\x00e" + b"u.")


def fx_pickle_deep(ctx: Ctx) -> Path:
    blob = deep_list_pickle()
    return _cifar_folder(ctx.fx / "pk-deep", lambda k: blob)


def bilevel_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit greyscale PNG of zeros, streamed through zlib (a few kB on disk)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _png_folder(ctx: Ctx, name: str, size: int) -> Path:
    root = ctx.fx / name
    for split in ("train", "test"):
        d = root / split / "airplane"
        d.mkdir(parents=True, exist_ok=True)
        bilevel_png(d / "0000.png", size, size)
    return root


def fx_png20k(ctx: Ctx) -> Path:
    return _png_folder(ctx, "png-20000", 20000)


def fx_png10k(ctx: Ctx) -> Path:
    return _png_folder(ctx, "png-10000", 10000)


def fx_gzip_bomb(ctx: Ctx) -> Path:
    """``zc_nasbench201.json.gz``: 2 GiB of spaces then ``{}``, as 2048 identical gzip members
    (one compressed MiB repeated: made in milliseconds, ~2 MB on disk)."""
    d = ctx.fx / "bomb"
    d.mkdir(exist_ok=True)
    member = gzip.compress(b" " * 2**20, 9)
    p = d / "zc_nasbench201.json.gz"
    with open(p, "wb") as f:
        for _ in range(2048):
            f.write(member)
        f.write(gzip.compress(b"{}"))
    return p


def fx_cells_bom(ctx: Ctx) -> Path:
    archs = _bench_archs(ctx)[:2]
    p = ctx.fx / "cells-bom.txt"
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(archs).encode() + b"\n")
    return p


def fx_store(ctx: Ctx) -> Path:
    """The tiny store: 8 networks, digits, C=4, N=1, batch 2, 2 networks per chunk, with proxies."""
    store = ctx.fx / "store.zarr"
    _must(ctx.cli("ingest", "--store", store, "--benchmark", ctx.fixture("bench"), "--accuracy-column",
                  "digits_test", *INGEST, cwd=ctx.fx), "ingest of the tiny store")
    return store


def fx_run(ctx: Ctx) -> Path:
    """A 3-generation evolve run on the tiny store."""
    run = ctx.fx / "run3"
    _must(ctx.cli("evolve", ctx.fixture("store"), "--out", run, "--generations", "3", "--population", "4",
                  "--seed", "0", "--no-progress", cwd=ctx.fx), "evolve of the 3-generation run")
    return run


def fx_seqrun(ctx: Ctx) -> Path:
    run = ctx.fx / "run-seq"
    _must(ctx.cli("evolve", ctx.fixture("store"), "--out", run, "--representation", "sequential", *EVOLVE,
                  cwd=ctx.fx), "evolve --representation sequential")
    return run


def fx_proxrun(ctx: Ctx) -> Path:
    run = ctx.fx / "run-proxies"
    _must(ctx.cli("evolve", ctx.fixture("store"), "--out", run, "--over", "proxies", "--train-networks", "4",
                  *EVOLVE, cwd=ctx.fx), "evolve --over proxies on the store")
    return run


PT_N = 4  # cells of the proxy tables: evolve --over proxies needs 2 to train on and 2 held out
PTABLE_ARGS = ["--networks", str(PT_N), "--batch-size", "4", "--label-set", "cifar10", "--proxy", "meco",
               "--device", "cpu", "--no-progress"]
PROXY_EVOLVE = ["--over", "proxies", "--train-networks", "2", *EVOLVE]


def ptable_cmd(ctx: Ctx, out: Path, *extra: str) -> list[str]:
    """proxy-table into the store beside ``out`` (``t.zarr``), with the CSV exported to ``out``."""
    return ["proxy-table", "--store", str(out.with_suffix(".zarr")), "--export", str(out), "--benchmark", str(ctx.fixture("bench")), "--suitezero",
            str(ctx.fixture("zc")), "--data-root", str(ctx.fixture("cifar")), *PTABLE_ARGS, *extra]


def fx_ptable(ctx: Ctx) -> Path:
    """A 4-cell proxy table (meco, CIFAR-10 label set) and a control: evolve over it succeeds."""
    d = ctx.fx / "ptable"
    d.mkdir(exist_ok=True)
    out = d / "t.csv"
    _must(ctx.cli(*ptable_cmd(ctx, out), cwd=d), f"proxy-table of {PT_N} cells")
    _must(ctx.cli("evolve", out, "--out", d / "control-run", *PROXY_EVOLVE, cwd=d),
          "control: evolve --over proxies on the intact proxy table")
    return out


DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5")


def darts_genotype(rng: np.random.Generator) -> str:
    """A random DARTS genotype (normal == reduce, concat 2..5), as the 1000-genotype table writes them."""
    pairs = [(DARTS_OPS[int(rng.integers(len(DARTS_OPS)))], int(rng.integers(e // 2 + 2))) for e in range(8)]
    text = "[" + ", ".join(f"('{op}', {i})" for op, i in pairs) + "]"
    return f"Genotype(normal={text}, normal_concat=[2, 3, 4, 5], reduce={text}, reduce_concat=[2, 3, 4, 5])"


def _darts_rows(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    cells: list[str] = []
    while len(cells) < n:
        g = darts_genotype(rng)
        if g not in cells:
            cells.append(g)
    return cells


def _write_darts(path: Path, genotypes: list[str]) -> Path:
    rng = np.random.default_rng(3)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        for g in genotypes:
            w.writerow([g, f"{rng.uniform(60, 86):.2f}"])
    return path


DARTS_SEARCH = ["--space", "darts", "--proxy", "params", "--dataset", "digits", "--accuracy-column", "cifar10_valid",
                "--max-evaluations", "3",
                "--population", "2", "--sample", "2", "--channels", "4", "--cells", "3", "--image-size", "8",
                "--device", "cpu", "--no-progress"]


def fx_darts(ctx: Ctx) -> Path:
    """A header-less DARTS table of 6 genotypes and a control: search --space darts on it succeeds."""
    p = _write_darts(ctx.fx / "darts.csv", _darts_rows(6, 0))
    _must(ctx.cli("search", "--benchmark", p, *DARTS_SEARCH, cwd=ctx.fx), "control: search --space darts")
    return p


def fx_darts_bad(ctx: Ctx) -> Path:
    good = _darts_rows(6, 0)
    bad = [good[0].replace("sep_conv_3x3", "sep_conv_9x9", 1), good[1].replace(", 0)", ", 7)", 1)]
    return _write_darts(ctx.fx / "darts-invalid.csv", good[:4] + bad + good[4:])


class FixtureError(RuntimeError):
    pass


def _must(r: Res, what: str) -> None:
    if r.rc != 0:
        raise FixtureError(f"{what} failed: {r.brief()}")


class _Fixtures:
    def __init__(self, builders: dict[str, Callable[[Ctx], Path]]) -> None:
        self.builders, self.built, self.failed = builders, {}, {}
        self.seconds: dict[str, float] = {}

    def build(self, ctx: Ctx, name: str) -> Path:
        if name in self.built:
            return self.built[name]
        if name in self.failed:
            raise FixtureError(self.failed[name])
        t0, saved, runs = time.monotonic(), ctx.mem_limited, ctx.runs
        ctx.mem_limited, ctx.runs = False, []
        try:
            self.built[name] = self.builders[name](ctx)
        except Exception as e:  # noqa: BLE001 - a fixture failing fails its cases, not the harness
            self.failed[name] = f"fixture {name}: {e}"
            raise FixtureError(self.failed[name]) from None
        finally:
            ctx.mem_limited, ctx.runs = saved, runs
            self.seconds[name] = time.monotonic() - t0
        return self.built[name]


FIXTURES = _Fixtures({
    "bench": fx_bench, "zc": fx_zc, "cifar": fx_cifar, "cells_bom": fx_cells_bom,
    "pk_hugeint": fx_pickle_hugeint, "pk_ragged": fx_pickle_ragged, "pk_deep": fx_pickle_deep,
    "png20k": fx_png20k, "png10k": fx_png10k, "gzip_bomb": fx_gzip_bomb,
    "store": fx_store, "run": fx_run, "seqrun": fx_seqrun, "proxrun": fx_proxrun, "ptable": fx_ptable,
    "darts": fx_darts, "darts_bad": fx_darts_bad,
})


# ============================================================================ cases

CASES: list[Case] = []
DESTROYED, OMISSION, TRACEBACKS, SAID_WRONG, NEW = (
    "data destroyed", "a store that lies by omission", "tracebacks", "said wrong, or work wasted", "found since")


def case(name: str, section: str, expected: str, needs: tuple[str, ...] = (), mem: bool = False):
    def deco(fn: Callable[[Ctx], Outcome]) -> Callable[[Ctx], Outcome]:
        CASES.append(Case(name, section, expected, fn, needs, mem))
        return fn
    return deco


def victim(ctx: Ctx, name: str = "victim") -> Path:
    """A folder of the user's own: a thesis and a figure."""
    d = ctx.case_dir() / name
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "thesis.tex").write_text("\\documentclass{book}\n% four years of work\n")
    (d / "figures" / "fig1.pdf").write_bytes(b"%PDF-1.4 not really\n")
    return d


def judge_victim(ctx: Ctx, r: Res, before: dict[str, str], folder: Path,
                 check: Callable[[Res], tuple[bool, str]] = one_line_exit2) -> Outcome:
    gone = lost(before, snapshot(folder))
    ok, obs = check(r)
    if gone:
        obs += f"; DELETED/CHANGED {len(gone)} of the user's files ({', '.join(gone[:3])})"
    return Outcome(ok and not gone, obs, ctx.show(r.argv), deletions=len(gone))


def all_of(ctx: Ctx, main: Res, checks: list[tuple[str, Res, tuple[bool, str]]]) -> Outcome:
    """Pass if every (label, res, (ok, text)) passed; observed lists each."""
    parts = [f"{label}: {text}" for label, _, (ok, text) in checks]
    return Outcome(all(ok for _, _, (ok, _t) in checks), "; ".join(parts), ctx.show(main.argv))


# ---------------------------------------------------------------------------- data destroyed


@case("demo-fresh-bad-option-empties-folder", DESTROYED,
      "exit 2, one line (--networks 0); thesis.tex and figures/ untouched")
def c_demo_fresh_bad_option(ctx: Ctx) -> Outcome:
    d = victim(ctx)
    before = snapshot(d)
    r = ctx.cli("demo", "--out", d, "--fresh", "--networks", "0", "--no-progress", timeout=60)
    return judge_victim(ctx, r, before, d)


@case("demo-fresh-foreign-folder", DESTROYED,
      "valid options, --out a folder demo did not make: exit 2, one line; nothing deleted")
def c_demo_fresh_foreign(ctx: Ctx) -> Outcome:
    d = victim(ctx)
    before = snapshot(d)
    r = ctx.cli("demo", "--out", d, "--fresh", "--networks", "3", "--no-progress", timeout=90)
    return judge_victim(ctx, r, before, d)


SEEDS = ["--benchmark", None, "--dataset", "digits", "--seeds", "2", "--modes", "fixed", "--batch-size", "2",
         *TINY, "--no-progress"]


def seeds_args(ctx: Ctx, *extra: str) -> list[str]:
    return ["seeds", *[str(ctx.fixture("bench")) if a is None else a for a in SEEDS], *extra]


@case("seeds-other-networks-replaces-study", DESTROYED,
      "a study exists (--networks 4); seeds --networks 5 into it: exit 2, one line; study files unchanged",
      needs=("bench",))
def c_seeds_replace(ctx: Ctx) -> Outcome:
    study = ctx.case_dir() / "study"
    first = ctx.cli(*seeds_args(ctx, "--out", str(study), "--networks", "4"))
    if first.rc != 0:
        return Outcome(False, f"control (first study) failed: {first.brief()}", ctx.show(first.argv))
    before = snapshot(study)
    r = ctx.cli(*seeds_args(ctx, "--out", str(study), "--networks", "5"))
    return judge_victim(ctx, r, before, study)


# ---------------------------------------------------------------------------- lies by omission


@case("missing-chunk-passes-verify", OMISSION, "a tensor chunk file deleted: verify exits non-zero",
      needs=("store",))
def c_missing_chunk_verify(ctx: Ctx) -> Outcome:
    s = copy_store(ctx)
    tensor_chunk(s).unlink()
    r = ctx.cli("verify", s)
    return Outcome(*refused(r), ctx.show(r.argv))


@case("missing-chunk-scores-nan", OMISSION,
      "a tensor chunk file deleted: score refuses (non-zero exit, says why), never NaN scores with exit 0",
      needs=("store",))
def c_missing_chunk_score(ctx: Ctx) -> Outcome:
    s = copy_store(ctx)
    tensor_chunk(s).unlink()
    r = ctx.cli("score", s, "--program", "eznas-a", "--no-progress")
    ok, obs = refused(r)
    if r.rc == 0:
        obs += " | stdout: " + r.out.strip().splitlines()[-1][:140] if r.out.strip() else ""
    return Outcome(ok, obs, ctx.show(r.argv))


@case("missing-proxy-chunk-compare", OMISSION,
      "a proxy_value chunk deleted: verify exits non-zero and compare refuses", needs=("store",))
def c_missing_proxy_chunk(ctx: Ctx) -> Outcome:
    s = copy_store(ctx)
    (s / "proxy_value" / "c" / "1" / "0").unlink()
    v = ctx.cli("verify", s)
    c = ctx.cli("compare", s)
    return all_of(ctx, c, [("verify", v, refused(v)), ("compare", c, refused(c))])


@case("chunk-replaced-by-directory", OMISSION,
      "a tensor chunk replaced by an empty directory: verify exits non-zero and score refuses", needs=("store",))
def c_chunk_dir(ctx: Ctx) -> Outcome:
    s = copy_store(ctx)
    p = tensor_chunk(s)
    p.unlink()
    p.mkdir()
    v = ctx.cli("verify", s)
    sc = ctx.cli("score", s, "--program", "eznas-a", "--no-progress")
    return all_of(ctx, v, [("verify", v, refused(v)), ("score", sc, refused(sc))])


def _flip_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))


def _target_checks(ctx: Ctx, dst: Path) -> list[tuple[str, Res, tuple[bool, str]]]:
    """A target that exists must not verify, score, evolve or serve as --test-store."""
    if not dst.exists():
        return []
    v = ctx.cli("verify", dst)
    sc = ctx.cli("score", dst, "--program", "eznas-a", "--no-progress")
    ev = ctx.cli("evolve", dst, "--out", ctx.case_dir() / "run-on-target", *EVOLVE)
    ts = ctx.cli("evolve", ctx.fixture("store"), "--test-store", dst, "--out", ctx.case_dir() / "run-test-store",
                 *EVOLVE)
    return [("verify target", v, refused(v)), ("score target", sc, refused(sc)),
            ("evolve target", ev, refused(ev)), ("--test-store target", ts, refused(ts))]


@case("transcode-failed-leaves-complete-target", OMISSION,
      "one flipped byte in the source: transcode exit 2, one line; no target, or one that verify, score, "
      "evolve and --test-store all refuse", needs=("store",))
def c_transcode_failed(ctx: Ctx) -> Outcome:
    src = copy_store(ctx, "src.zarr")
    _flip_byte(tensor_chunk(src, chunk="2/0"))
    dst = ctx.case_dir() / "dst.zarr"
    r = ctx.cli("transcode", src, dst, "--codec", "compact")
    checks = [("transcode", r, one_line_exit2(r))]
    checks += _target_checks(ctx, dst)
    if not dst.exists():
        checks.append(("target", r, (True, "absent")))
    return all_of(ctx, r, checks)


def _wait_for(pred: Callable[[], bool], p: subprocess.Popen, timeout: float, poll: float = 0.002) -> bool:
    """Poll ``pred`` until true (True), ``p`` exits or ``timeout`` passes (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        if p.poll() is not None:
            return pred()
        time.sleep(poll)
    return False


@case("transcode-killed-leaves-complete-target", OMISSION,
      "transcode SIGKILLed after its first chunks: the target does not verify; rerunning transcode "
      "finishes it (exit 0) and then it verifies", needs=("store",))
def c_transcode_killed(ctx: Ctx) -> Outcome:
    d = ctx.case_dir()
    src = ctx.fixture("store")
    dst = d / "dst.zarr"
    total = store_files(src)

    def written() -> int:  # chunk files of the target, wherever the transcode stages them
        return sum(1 for p in d.rglob("*") if p.is_file() and "/c/" in str(p))
    t0 = time.monotonic()
    p = ctx.start("transcode", src, dst, "--codec", "compact")
    seen = _wait_for(lambda: written() >= 3, p, 60 * ctx.timeout_scale, poll=0.001)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    first = ctx.finish(p, t0, 30)
    n = written()
    if not seen or first.rc == 0 or n >= total:
        return Outcome(False, f"inconclusive: the transcode ended before it could be killed mid-way "
                              f"({first.brief()}, {n}/{total} chunk files)", ctx.show(first.argv))
    checks: list[tuple[str, Res, tuple[bool, str]]] = [
        ("killed", first, (True, f"after {n}/{total} chunk files"))]
    if dst.exists():
        v = ctx.cli("verify", dst)
        checks.append(("verify killed target", v, refused(v)))
    again = ctx.cli("transcode", src, dst, "--codec", "compact")
    checks.append(("rerun", again, succeeded(again)))
    if again.rc == 0:
        v2 = ctx.cli("verify", dst)
        checks.append(("verify after rerun", v2, succeeded(v2)))
    return all_of(ctx, first, checks)


@case("transcode-launders-missing-chunk", OMISSION,
      "a source missing a chunk: transcode refuses (non-zero, one line); no target that verifies",
      needs=("store",))
def c_transcode_launders(ctx: Ctx) -> Outcome:
    src = copy_store(ctx, "src.zarr")
    tensor_chunk(src).unlink()
    dst = ctx.case_dir() / "dst.zarr"
    r = ctx.cli("transcode", src, dst, "--codec", "compact")
    checks = [("transcode", r, one_line_exit2(r))]
    if dst.exists():
        v = ctx.cli("verify", dst)
        checks.append(("verify target", v, refused(v)))
    return all_of(ctx, r, checks)


def two_writers(ctx: Ctx, argv: list[str], output: Path, started: Callable[[], bool]) -> tuple[Res, Res, str]:
    """Run ``argv`` twice on ``output`` so that they provably overlap: the first is frozen (SIGSTOP)
    as soon as ``<output>.lock`` exists (or, with no lock, as soon as ``started()``), the second runs to
    its end, then the first is continued. Returns (first, second, how the overlap was made)."""
    lock = output.with_name(output.name + ".lock")
    t0 = time.monotonic()
    a = ctx.start(*argv)
    got = _wait_for(lambda: lock.exists() or started(), a, 90 * ctx.timeout_scale)
    how = "frozen holding its lock" if lock.exists() else ("frozen after its output appeared (no lock file)"
                                                          if got else "never started writing")
    if a.poll() is not None:
        first = ctx.finish(a, t0, 5)
        return first, first, f"the first ended before it could be frozen ({first.brief()})"
    os.killpg(a.pid, signal.SIGSTOP)
    try:
        b = ctx.cli(*argv)
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    return ctx.finish(a, t0, 120 * ctx.timeout_scale), b, how


@case("proxy-table-two-writers", OMISSION,
      "two proxy-table runs on one CSV at once: the second exit 2, one line; the table holds each cell once",
      needs=("bench", "zc", "cifar"))
def c_ptable_two(ctx: Ctx) -> Outcome:
    out = ctx.case_dir() / "t.csv"
    first, second, how = two_writers(ctx, ptable_cmd(ctx, out), out.with_suffix(".zarr"), lambda: out.exists())
    if first is second:
        return Outcome(False, how, ctx.show(first.argv))
    archs = [r.get("arch") for r in csv.DictReader(open(out, newline=""))] if out.exists() else []
    dup = len(archs) - len(set(archs))
    checks = [("first", first, succeeded(first)), ("second", second, one_line_exit2(second)),
              ("table", first, (dup == 0 and len(archs) == PT_N, f"{len(archs)} rows, {dup} duplicated"))]
    o = all_of(ctx, second, checks)
    o.observed = f"[{how}] " + o.observed
    return o


@case("ingest-two-writers", OMISSION,
      "two identical ingests on one new store at once: the second exit 2, one line; the store verifies",
      needs=("bench",))
def c_ingest_two(ctx: Ctx) -> Outcome:
    store = ctx.case_dir() / "s.zarr"
    argv = ["ingest", "--store", str(store), "--benchmark", str(ctx.fixture("bench")), "--accuracy-column",
            "digits_test", *INGEST]
    first, second, how = two_writers(ctx, argv, store, lambda: (store / "zarr.json").exists())
    if first is second:
        return Outcome(False, how, ctx.show(first.argv))
    v = ctx.cli("verify", store)
    o = all_of(ctx, second, [("first", first, succeeded(first)), ("second", second, one_line_exit2(second)),
                             ("verify", v, succeeded(v))])
    o.observed = f"[{how}] " + o.observed
    return o


# ---------------------------------------------------------------------------- tracebacks

STORELESS = ["score", "--program", "eznas-a", "--networks", "2", "--batch-size", "2", "--channels", "4", "--cells",
             "1", "--device", "cpu", "--no-progress"]


def _simple(ctx: Ctx, *argv: str, timeout: float = 90) -> Outcome:
    r = ctx.cli(*argv, timeout=timeout)
    return Outcome(*one_line_exit2(r), ctx.show(r.argv))


@case("seed-2^64-ingest", TRACEBACKS,
      "ingest --seed 2^64: exit 2, one line; the store is then finished by ingest --seed 0 (exit 0)",
      needs=("bench",))
def c_seed_ingest(ctx: Ctx) -> Outcome:
    store = ctx.case_dir() / "s.zarr"
    base = ["ingest", "--store", str(store), "--benchmark", str(ctx.fixture("bench")), "--accuracy-column",
            "digits_test", *INGEST]
    r = ctx.cli(*base, "--seed", BIG)
    again = ctx.cli(*base, "--seed", "0")
    return all_of(ctx, r, [("--seed 2^64", r, one_line_exit2(r)), ("then --seed 0", again, succeeded(again))])


@case("seed-2^64-score-storeless", TRACEBACKS, "storeless score --seed 2^64: exit 2, one line", needs=("bench",))
def c_seed_score(ctx: Ctx) -> Outcome:
    return _simple(ctx, *STORELESS, "--benchmark", str(ctx.fixture("bench")), "--dataset", "digits",
                   "--image-size", "8", "--seed", BIG)


@case("seed-2^64-proxy-table", TRACEBACKS,
      "proxy-table --seed 2^64: exit 2, one line; then --seed 0 on the same --out works (exit 0)",
      needs=("bench", "zc", "cifar"))
def c_seed_ptable(ctx: Ctx) -> Outcome:
    out = ctx.case_dir() / "t.csv"
    r = ctx.cli(*ptable_cmd(ctx, out, "--seed", BIG))
    again = ctx.cli(*ptable_cmd(ctx, out, "--seed", "0"))
    return all_of(ctx, r, [("--seed 2^64", r, one_line_exit2(r)), ("then --seed 0", again, succeeded(again))])


@case("seed-2^64-seeds-first-seed", TRACEBACKS, "seeds --first-seed 2^64: exit 2, one line", needs=("bench",))
def c_seed_seeds(ctx: Ctx) -> Outcome:
    return _simple(ctx, *seeds_args(ctx, "--out", str(ctx.case_dir() / "study"), "--networks", "4",
                                    "--first-seed", BIG))


@case("seed-2^64-search", TRACEBACKS, "search --seed 2^64 (was accepted): exit 2, one line", needs=("bench",))
def c_seed_search(ctx: Ctx) -> Outcome:
    return _simple(ctx, "search", "--proxy", "params", "--benchmark", str(ctx.fixture("bench")), "--dataset",
                   "digits", "--accuracy-column", "digits_test", "--max-evaluations", "2", *TINY, "--no-progress",
                   "--seed", BIG)


@case("seed-2^64-evolve", TRACEBACKS, "evolve --seed 2^64 (was accepted): exit 2, one line", needs=("store",))
def c_seed_evolve(ctx: Ctx) -> Outcome:
    return _simple(ctx, "evolve", str(ctx.fixture("store")), "--out", str(ctx.case_dir() / "run"),
                   "--generations", "1", "--population", "4", "--no-progress", "--seed", BIG)


def _cifar_score(ctx: Ctx, root: Path, timeout: float = 90) -> Outcome:
    return _simple(ctx, *STORELESS, "--benchmark", str(ctx.fixture("bench")), "--dataset", "cifar10",
                   "--data-root", str(root), "--accuracy-column", "cifar10_test", timeout=timeout)


@case("pickle-huge-int-label", TRACEBACKS, "CIFAR pickle with label 2^70: exit 2, one line",
      needs=("bench", "pk_hugeint"), mem=True)
def c_pk_hugeint(ctx: Ctx) -> Outcome:
    return _cifar_score(ctx, ctx.fixture("pk_hugeint"))


@case("pickle-ragged-data", TRACEBACKS, "CIFAR pickle whose 'data' is a ragged list: exit 2, one line",
      needs=("bench", "pk_ragged"), mem=True)
def c_pk_ragged(ctx: Ctx) -> Outcome:
    return _cifar_score(ctx, ctx.fixture("pk_ragged"))


@case("pickle-200000-deep-list", TRACEBACKS, "CIFAR pickle holding a 200,000-deep nested list: exit 2, one line",
      needs=("bench", "pk_deep"), mem=True)
def c_pk_deep(ctx: Ctx) -> Outcome:
    return _cifar_score(ctx, ctx.fixture("pk_deep"))


@case("png-20000x20000-bomb", TRACEBACKS, "a 20000x20000 PNG in an image folder: exit 2, one line",
      needs=("bench", "png20k"), mem=True)
def c_png20k(ctx: Ctx) -> Outcome:
    return _cifar_score(ctx, ctx.fixture("png20k"))


@case("png-10000x10000-warning", TRACEBACKS,
      "a 10000x10000 PNG (wrong size anyway): exit 2, one line (no two-line Python warning)",
      needs=("bench", "png10k"), mem=True)
def c_png10k(ctx: Ctx) -> Outcome:
    return _cifar_score(ctx, ctx.fixture("png10k"))


@case("gzip-bomb-evolve-proxies", TRACEBACKS,
      "evolve --over proxies on a 2 GB gzip bomb zc_*.json.gz: exit 2, one line",
      needs=("gzip_bomb",), mem=True)
def c_bomb_evolve(ctx: Ctx) -> Outcome:
    return _simple(ctx, "evolve", str(ctx.fixture("gzip_bomb")), "--out", str(ctx.case_dir() / "run"),
                   *PROXY_EVOLVE)


@case("gzip-bomb-compare-suitezero", TRACEBACKS, "compare --suitezero of a 2 GB gzip bomb: exit 2, one line",
      needs=("store", "gzip_bomb"), mem=True)
def c_bomb_compare(ctx: Ctx) -> Outcome:
    return _simple(ctx, "compare", str(ctx.fixture("store")), "--suitezero", str(ctx.fixture("gzip_bomb")))


@case("proxy-table-threads-100000", TRACEBACKS, "proxy-table --threads 100000: exit 2, one line",
      needs=("bench", "zc", "cifar"), mem=True)
def c_ptable_threads(ctx: Ctx) -> Outcome:
    return _simple(ctx, *ptable_cmd(ctx, ctx.case_dir() / "t.csv", "--threads", "100000"))


@case("seeds-seeds-100000000", TRACEBACKS, "seeds --seeds 100000000: exit 2, one line", needs=("bench",), mem=True)
def c_seeds_many(ctx: Ctx) -> Outcome:
    argv = seeds_args(ctx, "--out", str(ctx.case_dir() / "study"), "--networks", "4")
    argv[argv.index("--seeds") + 1] = "100000000"
    return _simple(ctx, *argv)


def _damaged_ptable(ctx: Ctx, damage: Callable[[Path, Path], None]) -> Outcome:
    src = ctx.fixture("ptable")
    d = ctx.case_dir()
    t, meta = d / "t.csv", d / "t.meta.json"
    shutil.copy(src, t)
    shutil.copy(src.with_name("t.meta.json"), meta)
    damage(t, meta)
    return _simple(ctx, "evolve", str(t), "--out", str(d / "run"), *PROXY_EVOLVE)


def _empty_label(t: Path, meta: Path) -> None:
    rows = list(csv.reader(open(t, newline="")))
    rows[1][rows[0].index("cifar10_test")] = ""
    with open(t, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _meta_without_columns(t: Path, meta: Path) -> None:
    doc = json.loads(meta.read_text())
    doc.pop("columns", None)
    meta.write_text(json.dumps(doc))


@case("proxy-table-empty-label-cell", TRACEBACKS,
      "evolve over a proxy table with an empty label cell: exit 2, one line",
      needs=("ptable",))
def c_pt_empty(ctx: Ctx) -> Outcome:
    return _damaged_ptable(ctx, _empty_label)


@case("proxy-table-meta-lacks-columns", TRACEBACKS,
      "evolve over a proxy table whose meta lacks 'columns': exit 2, one line",
      needs=("ptable",))
def c_pt_nocols(ctx: Ctx) -> Outcome:
    return _damaged_ptable(ctx, _meta_without_columns)


@case("proxy-table-meta-not-json", TRACEBACKS, "evolve over a proxy table whose meta is not JSON: exit 2, one line",
      needs=("ptable",))
def c_pt_notjson(ctx: Ctx) -> Outcome:
    return _damaged_ptable(ctx, lambda t, meta: meta.write_text("{\"format\": \"eznas-proxy-table/1\", "))


@case("transcode-to-dangling-symlink", TRACEBACKS,
      "transcode onto a dangling symlink: exit 2, one line; nothing made at the link's target", needs=("store",))
def c_transcode_symlink(ctx: Ctx) -> Outcome:
    d = ctx.case_dir()
    link = d / "dst.zarr"
    link.symlink_to(d / "nowhere" / "elsewhere.zarr")
    r = ctx.cli("transcode", ctx.fixture("store"), link, "--codec", "compact")
    ok, obs = one_line_exit2(r)
    made = (d / "nowhere").exists()
    return Outcome(ok and not made, obs + ("; made the link's target" if made else ""), ctx.show(r.argv))


@case("sequential-program-score", TRACEBACKS, "score a program from evolve --representation sequential: exit 0",
      needs=("store", "seqrun"))
def c_seq_score(ctx: Ctx) -> Outcome:
    r = ctx.cli("score", ctx.fixture("store"), "--program", ctx.fixture("seqrun") / "programs" / "best_final.json",
                "--no-progress")
    return Outcome(*succeeded(r), ctx.show(r.argv))


@case("sequential-program-compare", TRACEBACKS, "compare --program of a sequential program: exit 0",
      needs=("store", "seqrun"))
def c_seq_compare(ctx: Ctx) -> Outcome:
    r = ctx.cli("compare", ctx.fixture("store"), "--program",
                ctx.fixture("seqrun") / "programs" / "best_final.json")
    return Outcome(*succeeded(r), ctx.show(r.argv))


# ---------------------------------------------------------------------------- said wrong, work wasted


@case("evolve-resume-fewer-generations", SAID_WRONG,
      "evolve --resume --generations 1 on a 3-generation run: exit 2 one line (or an honest no-op, exit 0); "
      "never 'evolved 1 generations'; the run folder unchanged", needs=("store", "run"))
def c_resume_fewer(ctx: Ctx) -> Outcome:
    run = ctx.case_dir() / "run"
    shutil.copytree(ctx.fixture("run"), run)
    before = snapshot(run)
    r = ctx.cli("evolve", ctx.fixture("store"), "--out", run, "--resume", "--generations", "1", "--population",
                "4", "--seed", "0", "--no-progress")
    gone = lost(before, snapshot(run))
    said = "evolved 1 generation" in r.out
    ok = (one_line_exit2(r)[0] or (r.rc == 0 and not r.traceback)) and not gone and not said
    obs = r.brief() + (f"; stdout: {r.out.strip().splitlines()[0][:100]}" if said else "")
    obs += f"; changed {', '.join(gone[:4])}" if gone else "; run unchanged"
    return Outcome(ok, obs, ctx.show(r.argv))


@case("evolve-test-store-is-train-store", SAID_WRONG, "evolve S --test-store S: exit 2, one line",
      needs=("store",))
def c_test_store_train(ctx: Ctx) -> Outcome:
    s = str(ctx.fixture("store"))
    return _simple(ctx, "evolve", s, "--test-store", s, "--out", str(ctx.case_dir() / "run"), *EVOLVE)


@case("op-set-hint-for-proxies-program", SAID_WRONG,
      "score a program evolved --over proxies: scored (exit 0) or exit 2 one line; never 'needs --op-set extended'",
      needs=("store", "proxrun"))
def c_opset_hint(ctx: Ctx) -> Outcome:
    r = ctx.cli("score", ctx.fixture("store"), "--program",
                ctx.fixture("proxrun") / "programs" / "best_final.json", "--no-progress")
    hint = "op-set" in r.err
    ok = (r.rc == 0 or one_line_exit2(r)[0]) and not r.traceback and not hint
    return Outcome(ok, r.brief(), ctx.show(r.argv))


@case("search-table-of-other-space", SAID_WRONG, "search (nb201) over a DARTS table: exit 2, one line",
      needs=("darts",))
def c_search_other_space(ctx: Ctx) -> Outcome:
    return _simple(ctx, "search", "--proxy", "params", "--benchmark", str(ctx.fixture("darts")), "--dataset",
                   "digits", "--accuracy-column", "cifar10_valid", "--max-evaluations", "2", *TINY, "--no-progress")


@case("search-darts-drops-invalid-genotypes", SAID_WRONG,
      "search --space darts over a table with 2 invalid genotypes: exit 2 one line naming one (as ingest), "
      "or exit 0 saying they were skipped", needs=("darts", "darts_bad"))
def c_search_darts_invalid(ctx: Ctx) -> Outcome:
    r = ctx.cli("search", "--benchmark", ctx.fixture("darts_bad"), *DARTS_SEARCH)
    said = re.search(r"invalid|skipp|dropp|ignor", r.out + r.err, re.I) is not None
    ok = (one_line_exit2(r)[0] or (r.rc == 0 and said)) and not r.traceback
    return Outcome(ok, r.brief() + ("" if said or r.rc else "; the dropped genotypes are not mentioned"),
                   ctx.show(r.argv))


@case("score-storeless-without-benchmark", SAID_WRONG,
      "storeless score without --benchmark (1000 networks): exit 2, one line, before collecting (< 60 s)")
def c_score_no_bench(ctx: Ctx) -> Outcome:
    return _simple(ctx, "score", "--program", "eznas-a", "--dataset", "digits", "--networks", "1000", "--device",
                   "cpu", "--no-progress", timeout=60)


@case("demo-networks-1-works-then-refuses", SAID_WRONG,
      "demo --networks 1: exit 2, one line, before training (nothing written into --out)")
def c_demo_one(ctx: Ctx) -> Outcome:
    d = ctx.case_dir() / "demo"
    r = ctx.cli("demo", "--out", d, "--networks", "1", "--no-progress", timeout=90)
    ok, obs = one_line_exit2(r)
    written = [str(p.relative_to(d)) for p in d.rglob("*")] if d.exists() else []
    work = [w for w in written if w.endswith((".csv", ".zarr", "run"))]
    return Outcome(ok and not work, obs + (f"; wrote {', '.join(work[:3])}" if work else ""), ctx.show(r.argv))


@case("cells-file-with-bom", SAID_WRONG, "a cells file saved with a UTF-8 BOM is read (storeless score exit 0)",
      needs=("bench", "cells_bom"))
def c_bom(ctx: Ctx) -> Outcome:
    r = ctx.cli("score", "--program", "eznas-a", "--networks", str(ctx.fixture("cells_bom")), "--benchmark",
                str(ctx.fixture("bench")), "--dataset", "digits", "--batch-size", "2", *TINY, "--no-progress")
    return Outcome(*succeeded(r), ctx.show(r.argv))


@case("proxy-table-without-meta", SAID_WRONG,
      "evolve over a proxy table whose .meta.json is missing: exit 2, one line, not 'not an eznas store'",
      needs=("ptable",))
def c_pt_nometa(ctx: Ctx) -> Outcome:
    t = ctx.case_dir() / "t.csv"
    shutil.copy(ctx.fixture("ptable"), t)
    r = ctx.cli("evolve", t, "--out", ctx.case_dir() / "run", *PROXY_EVOLVE)
    ok, obs = one_line_exit2(r)
    return Outcome(ok and "not an eznas store" not in r.err, obs, ctx.show(r.argv))


# ---------------------------------------------------------------------------- found since the sweep


def _wait_and_kill(p: subprocess.Popen, pred: Callable[[], bool], timeout: float) -> bool:
    """Wait for ``pred`` (or the process's end), then SIGKILL its group; whether ``pred`` held."""
    got = _wait_for(pred, p, timeout, poll=0.05)
    if p.poll() is None:
        _kill_group(p)
    return got


@case("demo-fresh-keeps-user-file", NEW,
      "a demo folder (killed after its label step) with the user's notes.txt added: demo --fresh deletes "
      "only what demo wrote; notes.txt kept")
def c_demo_fresh_user_file(ctx: Ctx) -> Outcome:
    d = ctx.case_dir() / "demo"
    argv = ["demo", "--out", str(d), "--networks", "2", "--no-progress"]
    t0 = time.monotonic()
    p = ctx.start(*argv)
    got = _wait_and_kill(p, lambda: (d / "digits_labels.csv").exists(), 120 * ctx.timeout_scale)
    first = ctx.finish(p, t0, 30)
    if not got:
        return Outcome(False, f"control: the first demo never wrote its table ({first.brief()})", ctx.show(argv))
    (d / "notes.txt").write_text("my notes on the demo\n")
    before = {"notes.txt": snapshot(d)["notes.txt"]}
    t0 = time.monotonic()
    p = ctx.start(*argv, "--fresh")
    _wait_and_kill(p, lambda: (d / "store.zarr").exists(), 120 * ctx.timeout_scale)
    r = ctx.finish(p, t0, 30)
    gone = lost(before, snapshot(d))
    ok = not gone and (r.rc in (None, 0, -9) or one_line_exit2(r)[0]) and not r.traceback
    obs = ("killed once its store appeared" if r.rc in (None, -9) else r.brief())
    obs += f"; DELETED {', '.join(gone)}" if gone else "; notes.txt kept"
    return Outcome(ok, obs, ctx.show(r.argv), deletions=len(gone))


def _two_writer_case(ctx: Ctx, argv: list[str], output: Path, started: Callable[[], bool],
                     unique: Callable[[], tuple[bool, str]]) -> Outcome:
    first, second, how = two_writers(ctx, argv, output, started)
    if first is second:
        return Outcome(False, how, ctx.show(first.argv))
    o = all_of(ctx, second, [("first", first, succeeded(first)), ("second", second, one_line_exit2(second)),
                             ("output", first, unique())])
    o.observed = f"[{how}] " + o.observed
    return o


def _jsonl_unique(path: Path, key: Callable[[dict], object]) -> tuple[bool, str]:
    keys = []
    for ln in path.read_text().splitlines() if path.exists() else []:
        try:
            keys.append(key(json.loads(ln)))
        except (ValueError, KeyError, TypeError):
            keys.append(("torn", ln[:20]))
    dup = len(keys) - len(set(map(str, keys)))
    return dup == 0 and bool(keys), f"{path.name}: {len(keys)} lines, {dup} duplicated"


@case("evolve-two-writers", NEW, "two evolves into one new --out at once: the second exit 2, one line; "
      "each generation logged once", needs=("store",))
def c_evolve_two(ctx: Ctx) -> Outcome:
    run = ctx.case_dir() / "run"
    argv = ["evolve", str(ctx.fixture("store")), "--out", str(run), "--generations", "2", "--population", "4",
            "--seed", "0", "--no-progress"]
    return _two_writer_case(ctx, argv, run, lambda: run.exists(),
                            lambda: _jsonl_unique(run / "generations.jsonl", lambda d: d["gen"]))


@case("seeds-two-writers", NEW, "two seeds studies into one --out at once: the second exit 2, one line; "
      "each seed's row once", needs=("bench",))
def c_seeds_two(ctx: Ctx) -> Outcome:
    study = ctx.case_dir() / "study"
    argv = seeds_args(ctx, "--out", str(study), "--networks", "4")

    def unique() -> tuple[bool, str]:
        rows = list(csv.reader(open(study / "seeds.csv", newline=""))) if (study / "seeds.csv").exists() else []
        dup = len(rows) - len({tuple(r) for r in rows})
        return bool(rows) and dup == 0, f"seeds.csv: {len(rows)} rows, {dup} duplicated"
    return _two_writer_case(ctx, argv, study, lambda: study.exists(), unique)


@case("label-two-writers", NEW, "two label runs onto one table at once: the second exit 2, one line; "
      "each cell once")
def c_label_two(ctx: Ctx) -> Outcome:
    out = ctx.case_dir() / "labels.csv"
    argv = ["label", "--out", str(out), "--networks", "3", "--epochs", "1", "--channels", "4", "--cells", "1",
            "--device", "cpu", "--no-progress"]

    def unique() -> tuple[bool, str]:
        archs = [r.get("arch") for r in csv.DictReader(open(out, newline=""))] if out.exists() else []
        dup = len(archs) - len(set(archs))
        return len(archs) == 3 and dup == 0, f"{len(archs)} rows, {dup} duplicated"
    return _two_writer_case(ctx, argv, out, lambda: out.exists() or out.with_name("labels.csv.meta.json").exists(),
                            unique)


def _damaged_run(ctx: Ctx, damage: Callable[[Path], None]) -> Path:
    run = ctx.case_dir() / "run"
    shutil.copytree(ctx.fixture("run"), run)
    damage(run)
    return run


def _resume(ctx: Ctx, run: Path) -> Res:
    return ctx.cli("evolve", ctx.fixture("store"), "--out", run, "--resume", "--generations", "4", "--population",
                   "4", "--seed", "0", "--no-progress")


def _append_deep_line(run: Path) -> None:
    with open(run / "generations.jsonl", "a") as f:
        f.write("[" * 100_000 + "\n")


def _report_noted(ctx: Ctx, run: Path, note: str) -> Outcome:
    """``report`` of a run with a damaged log: the log is optional, so either a one-line refusal
    (exit 2) or a report (exit 0) whose notes say what was skipped; never a traceback."""
    r = ctx.cli("report", str(run))
    md = run / "report.md"
    noted = r.rc == 0 and md.exists() and note in md.read_text(errors="replace")
    return Outcome((noted or one_line_exit2(r)[0]) and not r.traceback,
                   r.brief() + ("; report.md notes it" if noted else ""), ctx.show(r.argv))


@case("run-log-deep-line-report", NEW, "report of a run whose generations.jsonl holds a 100,000-deep line: "
      "exit 2 one line, or a report that notes the skipped line", needs=("store", "run"))
def c_log_deep_report(ctx: Ctx) -> Outcome:
    return _report_noted(ctx, _damaged_run(ctx, _append_deep_line), "generations.jsonl line")


@case("run-log-deep-line-resume", NEW, "evolve --resume of a run whose generations.jsonl holds a 100,000-deep "
      "line: exit 2 one line (or resumes, exit 0)", needs=("store", "run"))
def c_log_deep_resume(ctx: Ctx) -> Outcome:
    r = _resume(ctx, _damaged_run(ctx, _append_deep_line))
    return Outcome((r.rc == 0 or one_line_exit2(r)[0]) and not r.traceback, r.brief(), ctx.show(r.argv))


@case("run-log-gen-not-a-number-resume", NEW, "evolve --resume of a run whose log has a line {\"gen\": \"a\"}: "
      "exit 2 one line (or resumes, exit 0)", needs=("store", "run"))
def c_log_gen_str(ctx: Ctx) -> Outcome:
    def damage(run: Path) -> None:
        with open(run / "generations.jsonl", "a") as f:
            f.write('{"gen": "a"}\n')
    r = _resume(ctx, _damaged_run(ctx, damage))
    return Outcome((r.rc == 0 or one_line_exit2(r)[0]) and not r.traceback, r.brief(), ctx.show(r.argv))


@case("run-json-deep-report", NEW, "report of a run whose run.json is 100,000 nested lists: exit 2, one line",
      needs=("store", "run"))
def c_runjson_deep(ctx: Ctx) -> Outcome:
    run = _damaged_run(ctx, lambda run: (run / "run.json").write_text("[" * 100_000 + "]" * 100_000))
    return _simple(ctx, "report", str(run))


@case("job-file-deep-toml", NEW, "ingest --job of a TOML file holding a 100,000-deep array: exit 2, one line")
def c_job_deep(ctx: Ctx) -> Outcome:
    job = ctx.case_dir() / "deep.toml"
    job.write_text("[ingest]\nnetworks = " + "[" * 100_000 + "]" * 100_000 + "\n")
    return _simple(ctx, "ingest", "--job", str(job))


def _sparse(path: Path, size: int = 3 * 2**30) -> Path:
    """``path`` grown to ``size`` bytes by a hole of zeros after its content (no disk taken): its
    beginning stays valid, so only a size check (or reading it all) can tell."""
    with open(path, "ab") as f:
        f.truncate(size)
    return path


def _ptable_copy(ctx: Ctx) -> tuple[Path, Path]:
    d = ctx.case_dir()
    t, meta = d / "t.csv", d / "t.meta.json"
    shutil.copy(ctx.fixture("ptable"), t)
    shutil.copy(ctx.fixture("ptable").with_name("t.meta.json"), meta)
    return t, meta


@case("oversized-proxy-table-csv", NEW, "evolve --over proxies on a 3 GB proxy table (with its meta): exit 2, "
      "one line, refused by size like every other input", needs=("ptable",), mem=True)
def c_big_ptable(ctx: Ctx) -> Outcome:
    t, _ = _ptable_copy(ctx)
    _sparse(t)
    return _simple(ctx, "evolve", str(t), "--out", str(ctx.case_dir() / "run"), *PROXY_EVOLVE)


@case("oversized-proxy-table-meta", NEW, "evolve --over proxies on a proxy table whose meta is 3 GB: exit 2, "
      "one line", needs=("ptable",), mem=True)
def c_big_meta(ctx: Ctx) -> Outcome:
    t, meta = _ptable_copy(ctx)
    _sparse(meta)
    return _simple(ctx, "evolve", str(t), "--out", str(ctx.case_dir() / "run"), *PROXY_EVOLVE)


@case("oversized-run-json-report", NEW, "report of a run whose run.json is 3 GB: exit 2, one line",
      needs=("store", "run"), mem=True)
def c_big_runjson(ctx: Ctx) -> Outcome:
    run = _damaged_run(ctx, lambda run: _sparse(run / "run.json"))
    return _simple(ctx, "report", str(run))


@case("oversized-run-log-report", NEW, "report of a run whose generations.jsonl is 3 GB: exit 2 one line, "
      "or a report that notes the log was not read", needs=("store", "run"), mem=True)
def c_big_log_report(ctx: Ctx) -> Outcome:
    return _report_noted(ctx, _damaged_run(ctx, lambda run: _sparse(run / "generations.jsonl")),
                         "generations.jsonl is larger than")


@case("oversized-run-log-resume", NEW, "evolve --resume of a run whose generations.jsonl is 3 GB: exit 2, "
      "one line", needs=("store", "run"), mem=True)
def c_big_log_resume(ctx: Ctx) -> Outcome:
    r = _resume(ctx, _damaged_run(ctx, lambda run: _sparse(run / "generations.jsonl")))
    return Outcome(*one_line_exit2(r), ctx.show(r.argv))


@case("array-metadata-missing-passes-verify", NEW,
      "a tensor array's own zarr.json deleted (zarr without consolidated metadata cannot open it): "
      "verify exits non-zero", needs=("store",))
def c_array_meta(ctx: Ctx) -> Outcome:
    s = copy_store(ctx)
    (tensor_chunk(s).parents[2] / "zarr.json").unlink()
    r = ctx.cli("verify", s)
    return Outcome(*refused(r), ctx.show(r.argv))


# ============================================================================ runner


def select(pattern: str | None) -> list[Case]:
    """Cases whose name matches one of the comma-separated globs (or contains a plain item)."""
    if not pattern:
        return list(CASES)
    items = [p.strip() for p in pattern.split(",") if p.strip()]

    def hit(name: str, item: str) -> bool:
        return fnmatch.fnmatchcase(name, item) if any(ch in item for ch in "*?[") else item in name
    return [c for c in CASES if any(hit(c.name, it) for it in items)]


def run_cases(cases: list[Case], ctx: Ctx, log=sys.stderr) -> list[dict]:
    rows = []
    for i, c in enumerate(cases, 1):
        ctx.case_name = c.name
        shutil.rmtree(ctx.work / "cases" / c.name, ignore_errors=True)
        ctx.runs, ctx.mem_limited = [], c.mem_limited
        t0 = time.monotonic()
        error = None
        try:
            for n in c.needs:
                ctx.fixture(n)
            o = c.fn(ctx)
        except FixtureError as e:
            o, error = Outcome(False, str(e)), "fixture"
        except Exception as e:  # noqa: BLE001 - the harness reports, never stops
            o, error = Outcome(False, f"harness error: {type(e).__name__}: {e}"), "harness"
        for f in (ctx.work / "cases" / c.name).rglob("*"):  # the sparse 3 GB inputs: not kept with --out
            if f.is_file() and not f.is_symlink() and f.stat().st_size > 2**30:
                f.unlink()
        tb = any(r.traceback for r in ctx.runs)
        row = {"case": c.name, "section": c.section, "command": o.command, "expected": c.expected,
               "observed": o.observed, "passed": bool(o.passed and not tb), "traceback": tb,
               "deletions": o.deletions, "exit_codes": [r.rc for r in ctx.runs],
               "seconds": round(time.monotonic() - t0, 1), "error": error}
        rows.append(row)
        print(f"[{i}/{len(cases)}] {c.name}: {'PASS' if row['passed'] else 'FAIL'} ({row['seconds']} s)"
              f"{'' if row['passed'] else ' - ' + o.observed[:160]}", file=log, flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    p = sum(r["passed"] for r in rows)
    t = sum(r["traceback"] for r in rows)
    d = sum(1 for r in rows if r["deletions"])
    return f"{len(rows)} cases: {p} pass, {len(rows) - p} fail, {t} tracebacks, {d} deletions"


def _cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict]) -> str:
    out = ["| case | command | expected | observed | result |", "|---|---|---|---|---|"]
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            out.append(f"| **{_cell(section)}** | | | | |")
        out.append("| " + " | ".join(_cell(x) for x in (r["case"], f"`{r['command']}`" if r["command"] else "",
                                                         r["expected"], r["observed"],
                                                         "PASS" if r["passed"] else "**FAIL**")) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="keep the fixtures and case folders here, with reliability.md/.json "
                                  "(default: a temporary folder, removed)")
    ap.add_argument("--only", help="comma-separated case names: globs (seed-*) or substrings (bom)")
    ap.add_argument("--json", action="store_true", help="print the rows and the summary as JSON on stdout")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--mem-limit-gb", type=float, default=4.0,
                    help="address-space limit of the cases that may eat memory (bombs, huge counts; 0: none)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every per-case timeout")
    args = ap.parse_args(argv)
    cases = select(args.only)
    if args.list:
        for c in cases:
            print(f"{c.name:42s} {c.section:28s} needs: {', '.join(c.needs) or '-'}")
        return 0
    if not cases:
        print(f"no case matches {args.only!r} (see --list)", file=sys.stderr)
        return 2
    if args.out:
        work = Path(args.out).resolve()
        if work.is_dir() and any(work.iterdir()) and not (work / MARK).exists():
            print(f"--out {work} is a non-empty folder this script did not make: choose another", file=sys.stderr)
            return 2
        work.mkdir(parents=True, exist_ok=True)
        (work / MARK).write_text("made by benchmarks/bench_reliability.py: fixtures/ and cases/ are rebuilt\n")
    else:
        work = Path(tempfile.mkdtemp(prefix="eznas-reliability-"))
    t0 = time.monotonic()
    try:
        ctx = Ctx(work, launcher(), args.mem_limit_gb, args.timeout_scale)
        rows = run_cases(cases, ctx)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    line = summary(rows) + f" ({time.monotonic() - t0:.0f} s)"
    doc = {"summary": line, "fixtures_seconds": {k: round(v, 1) for k, v in FIXTURES.seconds.items()}, "rows": rows}
    if args.out:
        (work / "reliability.md").write_text(markdown(rows) + "\n\n" + line + "\n")
        (work / "reliability.json").write_text(json.dumps(doc, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc, indent=1))
        print(line, file=sys.stderr)
    else:
        print(markdown(rows))
        print()
        print(line)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
