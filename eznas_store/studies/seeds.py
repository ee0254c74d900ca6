"""``eznas-store seeds``: how much does a proxy's Kendall τ move with the random seed?

The seed study of the EZNAS appendix (Fig. 2). For each program and each of ``k`` seeds
it scores ``networks`` NB201 cells straight from the networks (no store:
:func:`~eznas_store.storeless.scoring.score_storeless`, the same numbers ``ingest`` + ``score``
would give), in two modes:

``fixed``
    the architectures are one seeded sample (``sample_seed``), the same for every seed;
    only the seed of the initialisation, the data batch and the noise inputs changes;
``resampled``
    the sample of architectures changes with the seed too (sample seed = seed), as when
    an ingest is simply rerun with ``--seed``.

``IngestConfig``'s one ``seed`` drives the network sample (``select_networks``), the data
batch and each network's init and noise (``collect.network_seed(seed, n)``). Mode ``fixed``
therefore draws the sample itself (``select_networks(seed=sample_seed)``) and passes the cells
as a list, so only init, batch and noise follow ``seed``; ``resampled`` passes the count. A
"seed" always moves init and batch together (as in the paper's study). Where the two modes
name the same experiment (``seed == sample_seed``) it is computed once.

Outputs in ``OUT/``: ``seeds.csv`` (one line per mode × seed × program), ``seeds.json``
(configuration, versions, per-run provenance, summary mean/std/min/max of τ and ρ per
mode × program; std with ``ddof=1``) and ``seeds.png`` (box plots of τ, every seed a point).
A rerun with the same options resumes; one with other options is refused (one line naming the
option), as is a second writer of the folder or a file of these names the study did not write.

>>> cfg = SeedsConfig(out="seeds", dataset="cifar10", benchmark="nb201_accuracies.csv",
...                   data_root="cifar10-images", networks=30, seeds=5)  # doctest: +SKIP
>>> print(format_seeds(run_seeds(cfg)))                                 # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eznas_store.errors import ConfigError, OutputError
from eznas_store.fitness import summarise
from eznas_store.storeless import score_storeless
from eznas_store.config import SEED_LIMIT, check_seed, check_sizes, is_int
from eznas_store.ingest import IngestConfig
from eznas_store.outputs import MARKER, ensure_dir, exclusive, figure, json_safe, mark_owned, package_versions, png, write_atomic
from eznas_store.programs import load_program, program_to_json
from eznas_store.programs import Program
from eznas_store.sources import tables as benchmarks
from eznas_store.sources import get_space
from eznas_store.terminals import DEFAULT_PERTURB_SCALE

__all__ = ["MAX_SEEDS", "MODES", "SeedRun", "SeedsConfig", "SeedsResult", "format_seeds", "run_seeds", "seed_plan"]

#: the two experiments of the seed study, in the order they are run and drawn
MODES: tuple[str, ...] = ("fixed", "resampled")
#: most seeds one study takes (the paper uses 5; each seed scores ``--networks`` networks per mode)
MAX_SEEDS = 1000
#: one line per finished (sample, seed) scoring, so a killed study resumes where it stopped
PARTIAL = "seeds.partial.jsonl"
#: what a study writes into ``--out`` (and records in its ownership marker)
OUTPUTS = ("seeds.csv", "seeds.json", "seeds.png", PARTIAL)
MODE_LABELS = {"fixed": "fixed architectures (init/batch seed varies)",
               "resampled": "architectures resampled with the seed"}


@dataclass(frozen=True, kw_only=True)
class SeedsConfig:
    """One seed study; written into ``seeds.json``.

    ``programs``: registered names (``eznas-a``) or program JSON files. ``seeds`` is the
    number ``k`` of seeds, ``first_seed .. first_seed + k - 1``; ``sample_seed`` seeds the
    one architecture sample of mode ``fixed``. The remaining fields are those of
    ``ingest`` (``batch_size`` defaults to 16, the released EZNAS code's batch).
    """

    out: str
    dataset: str
    benchmark: str
    programs: tuple[str, ...] = ("eznas-a",)
    data_root: str | None = None
    space: str = "nb201"
    networks: int = 100
    seeds: int = 5
    first_seed: int = 0
    sample_seed: int = 0
    modes: tuple[str, ...] = MODES
    batch_size: int = 16
    structure: str = "rcb"
    perturb_scale: float = DEFAULT_PERTURB_SCALE
    accuracy_column: str | None = None
    image_size: int | None = None
    C: int | None = None
    N: int | None = None
    device: str = "auto"
    to_scalar: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("programs", "modes"):
            v = getattr(self, name)
            object.__setattr__(self, name, (v,) if isinstance(v, str) else tuple(str(x) for x in v))
        if not self.out:
            raise ConfigError("seeds needs --out (the folder for seeds.csv, seeds.json and seeds.png)")
        if not self.benchmark:
            raise ConfigError("seeds needs --benchmark: a table with the networks' accuracies (tau needs them)")
        if not self.programs:
            raise ConfigError("seeds needs at least one --program (a registered name such as eznas-a, or a JSON file)")
        if len(set(self.programs)) != len(self.programs):
            raise ConfigError("a --program is listed twice")
        if not self.modes:
            raise ConfigError(f"--modes must name at least one of {', '.join(MODES)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ConfigError(f"unknown mode {bad[0]!r}: --modes takes {', '.join(MODES)}")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError("a mode is listed twice in --modes")
        checks = [
            (isinstance(self.networks, int) and self.networks >= 2,
             f"--networks must be a number >= 2 (Kendall tau needs two networks), got {self.networks!r}"),
            (is_int(self.seeds) and 2 <= self.seeds <= MAX_SEEDS,
             f"--seeds must be >= 2 (a spread needs two seeds) and at most {MAX_SEEDS}, got {self.seeds!r}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.structure in ("rcb", "cbr"), f"--structure must be rcb or cbr, got {self.structure!r}"),
            (self.to_scalar in (None, "mean", "l2"), f"--to-scalar must be mean or l2, got {self.to_scalar!r}"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"--device must be auto, cpu or cuda[:k], got {self.device!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        check_seed(self.first_seed, "--first-seed")
        check_seed(self.sample_seed, "--sample-seed")
        last = self.first_seed + self.seeds - 1
        if last >= SEED_LIMIT:
            raise ConfigError(f"--first-seed {self.first_seed} with --seeds {self.seeds} reaches seed {last}: "
                              f"seeds must stay below {SEED_LIMIT} (--first-seed at most {SEED_LIMIT - self.seeds})")
        check_sizes(C=self.C, N=self.N, image_size=self.image_size, batch_size=self.batch_size)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def ingest_config(self, *, seed: int, networks: int | tuple[str, ...]) -> IngestConfig:
        """The ``IngestConfig`` of one run (no store is written: ``store`` is unused)."""
        return IngestConfig(
            store="", dataset=self.dataset, space=self.space, benchmark=self.benchmark, data_root=self.data_root,
            networks=networks, seed=seed, batch_size=self.batch_size, structure=self.structure,
            perturb_scale=self.perturb_scale, device=self.device, accuracy_column=self.accuracy_column,
            image_size=self.image_size, C=self.C, N=self.N, proxies=False, progress=False,
        )


@dataclass(frozen=True, eq=False)
class SeedRun:
    """τ and ρ of one program in one mode at one seed, and the networks it saw."""

    mode: str
    seed: int
    sample_seed: int
    program: str
    tau: float
    rho: float
    n: int
    n_valid: int
    archs: tuple[str, ...]
    scores: np.ndarray = dataclasses.field(repr=False)  # per network, aligned with ``archs``
    accuracy: np.ndarray = dataclasses.field(repr=False)
    reason: str | None = None
    seconds: float = 0.0

    @property
    def archs_digest(self) -> str:
        return _digest(self.archs)


@dataclass
class SeedsResult:
    out: Path
    runs: list[SeedRun]
    summary: dict[tuple[str, str], dict[str, float]]  # (mode, program) → mean/std/min/max/k
    programs: dict[str, Program]
    seconds: float

    def taus(self, mode: str, program: str) -> np.ndarray:
        return np.array([r.tau for r in self.runs if r.mode == mode and r.program == program])


def _digest(archs: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(archs).encode()).hexdigest()[:12]


def seed_plan(cfg: SeedsConfig) -> list[tuple[str, int, int, tuple[str, ...]]]:
    """``(mode, seed, sample_seed, cells)`` of every run, without building a network."""
    table = benchmarks.read_benchmark(cfg.benchmark)
    space = get_space(cfg.space)

    def sample(seed: int) -> tuple[str, ...]:
        rows = benchmarks.select_networks(table, networks=cfg.networks, seed=seed)
        return tuple(space.canonical(table.archs[r]) for r in rows)

    fixed = sample(cfg.sample_seed) if "fixed" in cfg.modes else ()
    plan = []
    for mode in cfg.modes:
        for s in cfg.seed_list:
            plan.append((mode, s, cfg.sample_seed, fixed) if mode == "fixed" else (mode, s, s, sample(s)))
    return plan


def _labels(paths: Sequence[str], programs: Sequence[Program]) -> list[str]:
    labels = []
    for text, p in zip(paths, programs):
        base = text if not text.endswith(".json") else (p.name or Path(text).stem)
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip("_.-")[:100] or "program"
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def run_seeds(cfg: SeedsConfig) -> SeedsResult:
    """Score the programs over ``k`` seeds in each mode; write CSV, JSON and box plots.

    Under the folder's one-writer lock; before any scoring, the programs, the plan and
    ``--out`` are checked: a folder holding a study made with other options, or a file of
    the names the study writes that it did not write, is refused in one line."""
    out = Path(cfg.out)
    ensure_dir(out.parent, "folder of --out")
    with exclusive(out, "seeds study"):
        return _run_seeds(cfg, out)


def _run_seeds(cfg: SeedsConfig, out: Path) -> SeedsResult:
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC).isoformat()
    loaded = [load_program(p) for p in cfg.programs]
    labels = _labels(cfg.programs, loaded)
    programs = [dataclasses.replace(p, name=lab) for p, lab in zip(loaded, labels)]
    plan = seed_plan(cfg)
    _check_out(out, cfg)
    ensure_dir(out)
    mark_owned(out, "seeds", OUTPUTS)
    runs = _score_plan(cfg, plan, programs, labels, out / PARTIAL)
    summary = {(m, lab): _summary([r for r in runs if r.mode == m and r.program == lab])
               for m in cfg.modes for lab in labels}
    result = SeedsResult(out=out, runs=runs, summary=summary, programs=dict(zip(labels, programs)),
                         seconds=time.perf_counter() - t0)
    _write_csv(out / "seeds.csv", runs)
    write_atomic(out / "seeds.png", seeds_plot(result, cfg))
    meta = _metadata(cfg, result, started)
    write_atomic(out / "seeds.json", json.dumps(meta, indent=1, allow_nan=False) + "\n")
    return result


_FLAGS = {"programs": "--program", "C": "--channels", "N": "--cells"}


def _recipe(config: dict) -> dict:
    """What decides a study's numbers, from its config as JSON: paths absolute, ``out``/``progress`` dropped."""
    d = {k: v for k, v in config.items() if k not in ("out", "progress")}  # the folder may have moved
    for k in ("benchmark", "data_root"):
        d[k] = _abspath(d.get(k))
    if isinstance(d.get("programs"), list):
        d["programs"] = [_abspath(p) if str(p).endswith(".json") else p for p in d["programs"]]
    return d


def _abspath(v):
    return os.path.abspath(os.path.expanduser(v)) if isinstance(v, str) and "://" not in v else v


def _json_dict(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _earlier_configs(out: Path) -> list[dict]:
    """The configs of the study already in ``out``: its ``seeds.json``'s and its partial lines'."""
    doc = _json_dict(out / "seeds.json")
    configs = [doc["config"]] if doc.get("command") == "seeds" and isinstance(doc.get("config"), dict) else []
    partial = out / PARTIAL
    for text in set(partial.read_text(encoding="utf-8", errors="replace").splitlines() if partial.is_file() else ()):
        try:
            config = json.loads(json.loads(text)["config"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
        if isinstance(config, dict) and config not in configs:
            configs.append(config)
    return configs


def _check_out(out: Path, cfg: SeedsConfig) -> None:
    """Refuse (one line) a folder another command made, a file of the study's names in a folder
    that holds no study (not the study's to overwrite), or a study made with other options
    (naming the first option that differs). A study made before markers is recognised by its files."""
    if not out.is_dir():
        return  # missing, or a file that ensure_dir refuses
    marker, configs = _json_dict(out / MARKER).get("command"), _earlier_configs(out)
    if marker not in (None, "seeds"):
        raise OutputError(f"--out {out} was made by eznas-store {marker}, not seeds: choose another --out")
    clash = [name for name in OUTPUTS if (out / name).exists()]
    if clash and marker != "seeds" and not configs:
        raise OutputError(f"seeds refuses to overwrite {out / clash[0]}: eznas-store seeds did not write it; "
                          "move it or choose another --out")
    new = _recipe(json.loads(json.dumps(dataclasses.asdict(cfg))))
    for old in map(_recipe, configs):
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            flag = _FLAGS.get(diff[0], "--" + diff[0].replace("_", "-"))
            raise ConfigError(f"{out} holds a seeds study made with other options: {flag} was {old.get(diff[0])!r}, "
                              f"now {new.get(diff[0])!r}; rerun with the same options or choose another --out")


def _score_plan(cfg: SeedsConfig, plan: list[tuple[str, int, int, tuple[str, ...]]], programs: list[Program],
                labels: list[str], partial: Path) -> list[SeedRun]:
    """Every planned run, in plan order. A (sample, seed) pair both modes name is scored once,
    and each scoring is appended to ``partial`` so a killed study redoes only the rest."""
    done = _read_partial(partial, cfg, labels)
    runs: list[SeedRun] = []
    with tqdm(total=len(plan), desc="seeds", unit="run", disable=not cfg.progress) as bar:
        for mode, seed, sample_seed, cells in plan:
            key = (cells, seed)
            if key not in done:
                t = time.perf_counter()
                icfg = cfg.ingest_config(seed=seed, networks=cells if mode == "fixed" else cfg.networks)
                done[key] = (score_storeless(icfg, programs, to_scalar=cfg.to_scalar, progress=False),
                             time.perf_counter() - t)
                _append_partial(partial, cfg, key, *done[key])
            results, secs = done[key]
            for label, r in zip(labels, results):
                if tuple(r.archs) != cells:  # the sample seed_plan predicted is the one scored
                    raise RuntimeError(f"seed {seed} ({mode}): scored networks differ from the planned sample")
                runs.append(SeedRun(mode=mode, seed=seed, sample_seed=sample_seed, program=label, tau=float(r.tau),
                                    rho=float(r.rho), n=r.n, n_valid=r.n_valid, archs=tuple(r.archs),
                                    scores=r.scores, accuracy=r.accuracy, reason=r.reason, seconds=round(secs, 3)))
            bar.update(1)
            bar.set_postfix(mode=mode, seed=seed)
    return runs


def _method(cfg: SeedsConfig) -> dict[str, str]:
    """How each mode draws its networks and how a run is scored, in words, for ``seeds.json``."""
    return {
        "fixed": f"one sample of {cfg.networks} cells drawn with select_networks(seed={cfg.sample_seed}), "
                 "passed as an explicit list; the seed sets the data batch, each network's init and the noise",
        "resampled": "the seed sets the sample of cells too (IngestConfig.networks = count, seed = seed)",
        "scoring": "score_storeless: collect -> evaluate -> discard per network, no store",
        "statistic": "Kendall tau-b and Spearman rho over the networks with a finite score; std with ddof=1",
    }


def _metadata(cfg: SeedsConfig, result: SeedsResult, started: str) -> dict:
    """``seeds.json``: configuration, method, programs, summary, every run and the samples it saw."""
    runs = result.runs
    return {
        "command": "seeds",
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
        "method": _method(cfg),
        "seeds": cfg.seed_list,
        "programs": {lab: {"formula": p.formula(), "program": program_to_json(p)} for lab, p in result.programs.items()},
        "summary": [{"mode": m, "program": p, **json_safe(s)}
                    for (m, p), s in result.summary.items()],
        "runs": [{"mode": r.mode, "seed": r.seed, "sample_seed": r.sample_seed, "init_seed": r.seed,
                  "batch_seed": r.seed, "program": r.program, "tau": json_safe(r.tau), "rho": json_safe(r.rho), "n": r.n,
                  "n_valid": r.n_valid, "archs_sha1": r.archs_digest, "reason": r.reason, "seconds": r.seconds}
                 for r in runs],
        "samples": {d: list(a) for d, a in {r.archs_digest: r.archs for r in runs}.items()},
        "versions": package_versions(), "host": socket.gethostname(),
        "started": started, "finished": _dt.datetime.now(_dt.UTC).isoformat(),
        "seconds": round(result.seconds, 3),
    }


def _config_key(cfg: SeedsConfig) -> str:
    """The config a partial line records (everything but progress output)."""
    return json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"}, sort_keys=True)


def _append_partial(path: Path, cfg: SeedsConfig, key, results, seconds: float) -> None:
    cells, seed = key
    line = {"config": _config_key(cfg), "cells": list(cells), "seed": seed, "seconds": seconds,
            "results": [{"program": r.program, "task": r.task, "scores": json_safe(r.scores),
                         "accuracy": [float(x) for x in r.accuracy], "archs": list(r.archs),
                         "networks": [int(x) for x in r.networks], "reason": r.reason} for r in results]}
    with open(path, "a") as f:
        f.write(json.dumps(line, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_partial(path: Path, cfg: SeedsConfig, labels: Sequence[str]) -> dict:
    """Scorings a previous, interrupted run of the same study finished (a torn last line is ignored)."""
    done: dict = {}
    key = _recipe(json.loads(_config_key(cfg)))  # _check_out refused lines of another study: this is a safeguard
    for ln in path.read_text().splitlines() if path.exists() else ():
        try:
            d = json.loads(ln)
            if _recipe(json.loads(d["config"])) != key or [r["program"] for r in d["results"]] != list(labels):
                continue
        except (ValueError, KeyError, TypeError):
            continue
        results = [summarise(r["program"], r["task"], np.array([np.nan if x is None else x for x in r["scores"]],
                                                               dtype=np.float64),
                             np.asarray(r["accuracy"], dtype=np.float64), r["archs"],
                             np.asarray(r["networks"], dtype=np.int64), r["reason"]) for r in d["results"]]
        done[(tuple(d["cells"]), int(d["seed"]))] = (results, float(d["seconds"]))
    return done


def _summary(runs: Sequence[SeedRun]) -> dict[str, float]:
    out: dict[str, float] = {"k": float(len(runs))}
    for stat in ("tau", "rho"):
        v = np.array([getattr(r, stat) for r in runs], dtype=np.float64)
        v = v[np.isfinite(v)]
        for name, f, need in (("mean", np.mean, 1), ("std", lambda x: np.std(x, ddof=1), 2), ("min", np.min, 1),
                              ("max", np.max, 1)):
            out[f"{stat}_{name}"] = float(f(v)) if v.size >= need else math.nan
    out["k_valid"] = float(sum(math.isfinite(r.tau) for r in runs))
    return out


def _write_csv(path: Path, runs: Sequence[SeedRun]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mode", "seed", "program", "tau", "rho", "n", "n_valid", "sample_seed", "archs_sha1"])
    for r in runs:
        w.writerow([r.mode, r.seed, r.program, "" if not math.isfinite(r.tau) else repr(r.tau),
                    "" if not math.isfinite(r.rho) else repr(r.rho), r.n, r.n_valid, r.sample_seed, r.archs_digest])
    write_atomic(path, buf.getvalue())


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


def format_seeds(result: SeedsResult) -> str:
    """Mean ± std [min, max] of τ (and mean ρ) per mode × program, as a plain-text table."""
    head = ["mode", "program", "k", "tau mean", "tau std", "tau min", "tau max", "rho mean", "rho std"]
    rows = [[m, p, str(int(s["k"])), _fmt(s["tau_mean"]), _fmt(s["tau_std"]), _fmt(s["tau_min"]),
             _fmt(s["tau_max"]), _fmt(s["rho_mean"]), _fmt(s["rho_std"])] for (m, p), s in result.summary.items()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def just(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    n = sorted({r.n for r in result.runs})
    foot = (f"{len({r.seed for r in result.runs})} seeds, {'/'.join(map(str, n))} networks per run; "
            f"std over seeds (ddof=1); {result.seconds:.1f} s")
    return "\n".join([just(head), *(just(r) for r in rows), foot])


def seeds_plot(result: SeedsResult, cfg: SeedsConfig) -> bytes:
    """Box plots of τ over the seeds: one box per mode per program, each seed a point."""
    progs = list(result.programs)
    modes = list(cfg.modes)
    colours = {"fixed": "#4c72b0", "resampled": "#dd8452"}
    fig = figure(max(4.5, 1.0 + 1.6 * len(progs) * len(modes) / 2 + 1.5), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(modes)
    rng = np.random.default_rng(0)  # jitter only
    for j, m in enumerate(modes):
        pos = [i - 0.4 + width * (j + 0.5) for i in range(len(progs))]
        data = [result.taus(m, p)[np.isfinite(result.taus(m, p))] for p in progs]
        bp = ax.boxplot([d if d.size else [np.nan] for d in data], positions=pos, widths=width * 0.8,
                        patch_artist=True, showfliers=False, manage_ticks=False)
        for box in bp["boxes"]:
            box.set_facecolor(colours[m])
            box.set_alpha(0.45)
        for med in bp["medians"]:
            med.set_color("black")
        for x, d in zip(pos, data):
            ax.scatter(x + rng.uniform(-0.12, 0.12, d.size) * width, d, s=14, color=colours[m], zorder=3,
                       edgecolor="black", linewidth=0.4)
        ax.plot([], [], "s", color=colours[m], alpha=0.6, label=MODE_LABELS[m])
    ax.set_xticks(range(len(progs)), progs)
    ax.set_xlim(-0.6, len(progs) - 0.4)
    ax.set_ylabel("Kendall τ")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"τ over {cfg.seeds} seeds ({cfg.networks} {cfg.space} networks, {cfg.dataset}, "
                 f"batch {cfg.batch_size})", fontsize=10)
    ax.margins(y=0.08)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(modes), frameon=False)
    return png(fig)
