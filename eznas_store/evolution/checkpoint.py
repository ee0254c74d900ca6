"""The checkpoint of an evolution run: everything needed to continue it as if never stopped.

One JSON file, written atomically after every generation: the options, the population
and hall of fame (as program JSON with their fitness records), the fitness cache, and
the state of the run's own ``random.Random``, so a resumed run continues the same
random stream and ends with the same programs. :func:`resume_point` checks a checkpoint
before any work (options it may be continued with, no fewer generations than it has); the
run's log (``generations.jsonl``, one line per generation) is written and trimmed here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import resource
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.errors import ConfigError, ProgramError
from eznas_store.fitness import Fitness, selection_value
from eznas_store.outputs import json_safe, write_atomic
from eznas_store.programs import program_from_json, program_to_json
from eznas_store.programs import Op

#: options that may change on resume: where the work runs, progress output, how long to go
#: on, and where the run folder itself now is (a preempted job may be resumed after a move)
RESUMABLE_CHANGES = frozenset({"workers", "scheduler", "progress", "generations", "out", "chunk_cache_mb",
                               "subtree_cache_mb"})
#: options that name stores or files: compared by meaning (absolute, no trailing "/")
PATH_OPTIONS = frozenset({"stores", "test_stores"})
#: options added after checkpoints were first written, with the value a checkpoint
#: without them was made with (so such a checkpoint can still be resumed)
ADDED_OPTIONS: dict[str, Any] = {"split": None, "test_stores": [], "equivalence_cache": False, "racing": 0.0,
                                 "seed_programs": [], "evolve_aggregate": False, "op_set": "paper", "fitness": "tau"}
#: a checkpoint larger than this is not one of ours (a population of 100,000 is ~100 MB)
MAX_CHECKPOINT_BYTES = 1 << 30


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (no NaN), written atomically."""
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def config_json(cfg: Any) -> dict:
    """A config dataclass as the JSON the checkpoint holds (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _same_path(value: Any) -> Any:
    if isinstance(value, list):
        return [_same_path(v) for v in value]
    if not isinstance(value, str):
        return value
    if "://" in value:
        return value.rstrip("/")
    return os.path.normpath(os.path.abspath(os.path.expanduser(value)))


def normalised(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options by meaning: store paths absolute and without a trailing "/"."""
    return {k: (_same_path(v) if k in PATH_OPTIONS else v) for k, v in options.items()}


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """The first option (besides :data:`RESUMABLE_CHANGES`) whose meaning differs, or None."""
    old = normalised({**{k: v for k, v in ADDED_OPTIONS.items() if k in new}, **old})
    new = normalised(new)
    for k in sorted(set(old) | set(new)):
        if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k):
            return k
    return None


def compatible(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a run made with options ``old`` may be resumed with ``new``."""
    return first_difference(old, new) is None


def _option_name(key: str) -> str:
    return "--" + key.rstrip("_").replace("_", "-")


def _load_checkpoint_json(path: Path) -> dict:
    """The checkpoint document; one-line errors for a missing, empty, truncated or hostile file."""
    if not path.is_file():
        raise ConfigError(f"{path.parent} has no {path.name} to resume from; run without --resume")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CHECKPOINT_BYTES >> 20} MB: not a checkpoint of this tool")
    try:
        ck = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        why = "empty" if path.stat().st_size == 0 else f"not valid JSON ({str(e)[:80]})"
        raise ConfigError(f"{path} is {why}: it was cut short; start over without --resume") from None
    keys = ("config", "generation", "population", "hall_of_fame", "random_state")
    if not isinstance(ck, dict) or any(k not in ck for k in keys) or not isinstance(ck["config"], dict):
        raise ConfigError(f"{path} is not a checkpoint of eznas-store evolve (it lacks {', '.join(keys)})")
    return ck


def fitness_to_json(f: Fitness | None) -> dict | None:
    if f is None:
        return None
    return json_safe({"value": f.value, "taus": f.taus, "rhos": f.rhos, "reason": f.reason,
                      "valid_fraction": f.valid_fraction})


def fitness_from_json(d: dict | None) -> Fitness | None:
    if d is None:
        return None
    f = lambda x: float("nan") if x is None else float(x)
    return Fitness(value=f(d["value"]), taus=tuple(f(x) for x in d["taus"]), rhos=tuple(f(x) for x in d["rhos"]),
                   reason=d.get("reason"), valid_fraction=float(d.get("valid_fraction", 0.0)))


def rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(state: list) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def _entries(individuals: Iterable[Any], rep) -> list[dict]:
    return [{"program": program_to_json(rep.program(i)), "fitness": fitness_to_json(i.record),
             "generation": getattr(i, "generation", None)} for i in individuals]


def _individuals(entries: Iterable[dict], rep, ops: Mapping[str, Op]) -> list:
    out = []
    for e in entries:
        ind = rep.individual(program_from_json(e["program"], ops=ops))
        ind.record = fitness_from_json(e["fitness"])
        ind.generation = e.get("generation")
        if ind.record is not None:
            ind.fitness.values = (selection_value(ind.record),)
        out.append(ind)
    return out


@dataclass
class Checkpoint:
    """A run after ``generation``: individuals rebuilt through the representation ``rep``."""

    config: dict
    generation: int
    population: list
    hall_of_fame: list
    rng: random.Random
    cache: dict[str, Fitness]
    started: str | None
    #: keys of programs raced out (their fitness is partial), with racing
    raced: list[str] = field(default_factory=list)
    #: probe hash -> program key, with the equivalence cache
    probes: dict[str, str] = field(default_factory=dict)
    #: program key -> validation fitness, with a split
    validation: dict[str, Fitness] = field(default_factory=dict)


def write_checkpoint(path: Path, ck: Checkpoint, rep) -> None:
    write_json(path, {
        "config": ck.config,
        "generation": ck.generation,
        "population": _entries(ck.population, rep),
        "hall_of_fame": _entries(ck.hall_of_fame, rep),
        "random_state": rng_to_json(ck.rng),
        "cache": {k: fitness_to_json(v) for k, v in ck.cache.items()},
        "started": ck.started,
        # written only when used, so a default run's checkpoint is as before
        **({"raced": sorted(ck.raced)} if ck.raced else {}),
        **({"probes": dict(ck.probes)} if ck.probes else {}),
        **({"validation": {k: fitness_to_json(v) for k, v in ck.validation.items()}} if ck.validation else {}),
    })


def _check_options(path: Path, old: dict, new: dict) -> None:
    key = first_difference(old, new)
    if key is not None:
        was, now = normalised(old).get(key), normalised(new).get(key)
        raise ConfigError(f"{path.parent}: the checkpoint was made with other options: {_option_name(key)} "
                          f"was {was!r}, now {now!r}; resume with the same value")


def resume_point(path: Path, config: dict, generations: int) -> dict:
    """The checkpoint document at ``path``, checked before any work: a run made with options it
    may be continued with (``config``), and no more generations done than ``generations`` asks
    for (a run is never cut back: its log, checkpoint and programs are of its last generation)."""
    ck = _load_checkpoint_json(path)
    _check_options(path, ck["config"], config)
    done = ck["generation"]
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        raise ConfigError(f"{path} is damaged (generation {str(done)[:20]!r}); start over without --resume")
    if done > generations:
        raise ConfigError(f"{path.parent}: the run already has {done} generations; --generations must be "
                          f">= {done} to continue it")
    return ck


def read_checkpoint(path: Path, rep, ops: Mapping[str, Op], config: dict, doc: dict | None = None) -> Checkpoint:
    """The run saved at ``path``, to be continued with options ``config`` (refused if they
    differ in more than :data:`RESUMABLE_CHANGES`); ``doc``: its document, if already read
    (and checked) by :func:`resume_point`."""
    ck = doc if doc is not None else _load_checkpoint_json(path)
    _check_options(path, ck["config"], config)
    try:
        return Checkpoint(
            config=config, generation=int(ck["generation"]),
            population=_individuals(ck["population"], rep, ops),
            hall_of_fame=_individuals(ck["hall_of_fame"], rep, ops),
            rng=rng_from_json(ck["random_state"]),
            cache={k: fitness_from_json(v) for k, v in ck.get("cache", {}).items()},
            started=ck.get("started"),
            raced=[str(k) for k in ck.get("raced", [])],
            probes={str(h): str(k) for h, k in ck.get("probes", {}).items()},
            validation={k: fitness_from_json(v) for k, v in ck.get("validation", {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ConfigError(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); "
                          "start over without --resume") from None


def trim_log(path: Path, generation: int) -> None:
    """Drop log lines of generations after ``generation`` (the run was killed mid-write)."""
    if path.exists():
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CHECKPOINT_BYTES >> 20} MB: not a log of this tool; "
                              "start over without --resume")
        keep = [ln for ln in path.read_text(errors="replace").splitlines() if _generation_of(ln) <= generation]
        path.write_text("".join(ln + "\n" for ln in keep))


def _generation_of(line: str) -> float:
    """Generation of a log line; a half-written line (killed mid-write) counts as newest."""
    try:
        gen = json.loads(line)["gen"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return math.inf
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else math.inf


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log_generation(path: Path, gen: int, population, evaluated: int, seconds: float, scorer, rep,
                   extra: dict | None = None) -> None:
    """Append generation ``gen``'s line to the run's log (``generations.jsonl``)."""
    values = np.array([i.record.value if i.record else np.nan for i in population], dtype=float)
    finite = values[np.isfinite(values)]
    best = max(population, key=lambda i: i.fitness.values[0])
    worker_peak = scorer.peak_rss_mb()
    try:
        formula = rep.evaluable(rep.program(best)).formula()
    except ProgramError:
        formula = None
    rec = {
        "gen": gen,
        "best": float(finite.max()) if finite.size else None,
        "median": float(np.median(finite)) if finite.size else None,
        "valid_fraction": float(finite.size / len(values)),
        "evaluated": int(evaluated),
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(max(_peak_rss_mb(), worker_peak), 1),
        "driver_peak_rss_mb": round(_peak_rss_mb(), 1),
        "worker_peak_rss_mb": round(worker_peak, 1),
        "best_formula": formula,
        **rep.stats(population),
    }
    if extra and "val_best" in extra:
        rec["train_best"] = rec["best"]
    rec.update(extra or {})
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
