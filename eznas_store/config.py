"""Job files: TOML tables of command options, validated once against ``schemas/job.schema.json``.

A job file fixes what a whole campaign shares (dataset, batch, seeds, GP settings); the
command line overrides only what differs per node (shard, store, scheduler address).
The resolved options are then checked again by the command's own frozen dataclass
(``IngestConfig``, ``EvolveConfig``) and written into the store or run directory.
"""

from __future__ import annotations

import json
import numbers
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from eznas_store.errors import ConfigError, DataNotFoundError

#: upper bounds of the network-size options, shared by every command that builds networks:
#: far beyond any benchmark's, a run past them exhausts memory instead of finishing
#: (NB201 is C=16, N=5, 32 px; NASLib's batch is 64)
MAX_C, MAX_N, MAX_IMAGE_SIZE, MAX_BATCH = 1024, 64, 1024, 4096


def is_int(v: Any) -> bool:
    """An integer, not a bool (``True`` is an ``int`` to Python, never a count to a user)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_sizes(*, C: Any = None, N: Any = None, image_size: Any = None, batch_size: Any = None,
                seed: Any = None) -> None:
    """A one-line ``ConfigError`` naming the CLI flag of the first out-of-range option
    (``None`` values are not checked: they mean the default)."""
    for flag, value, hi in (("--channels", C, MAX_C), ("--cells", N, MAX_N),
                            ("--image-size", image_size, MAX_IMAGE_SIZE), ("--batch-size", batch_size, MAX_BATCH)):
        if value is not None and (not is_int(value) or not 1 <= value <= hi):
            raise ConfigError(f"{flag} must be an integer from 1 to {hi}, got {value!r}")
    if seed is not None:
        check_seed(seed)


#: seeds are 0 <= seed < 2**32 everywhere (numpy's SeedSequence and torch take more, but a
#: seed must also fit every derived per-network/per-repeat seed and every stored attribute)
SEED_LIMIT = 2**32


def check_seed(value: Any, flag: str = "--seed") -> int:
    """``value`` if it is an integer with 0 <= value < 2**32; else a one-line ``ConfigError``
    naming ``flag``. The one seed range of every command."""
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{flag} must be an integer from 0 to {SEED_LIMIT - 1}, got {value!r}")
    return int(value)


#: torch threads of one process and local Dask worker processes: bounds of every command's
#: ``--threads`` and ``--workers`` (torch crashes the process on absurd thread counts, and each
#: worker is a process with its own copy of the evaluator)
MAX_THREADS = 256
MAX_WORKERS = 256


def check_count(value: Any, flag: str, lo: int, hi: int) -> int:
    """``value`` if it is an integer in ``lo..hi``; else a one-line ``ConfigError`` naming ``flag``."""
    if not is_int(value) or not lo <= value <= hi:
        raise ConfigError(f"{flag} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


#: ``eznas_store/schemas`` is the repository's ``schemas/`` (a link in a checkout, a copy in a wheel)
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """``schemas/<name>.schema.json`` as a dict (a constant of the installation, so memoised)."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:  # pragma: no cover - packaging problem
        raise ConfigError(f"schemas/{name}.schema.json is missing from this installation ({e})") from None


@lru_cache(maxsize=None)
def schema_validator(name: str):
    """A Draft 2020-12 validator of ``schemas/<name>.schema.json``."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


#: a job file is a page of options; anything larger is not one (and would be read whole)
MAX_JOB_BYTES = 1 << 20


def load_job(path: str | Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML job file, validated; ``{}`` if the file has none."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"job file {p} does not exist")
    if p.stat().st_size > MAX_JOB_BYTES:
        raise ConfigError(f"job file {p} is larger than {MAX_JOB_BYTES >> 20} MiB: not a job file")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"job file {p} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"job file {p} nests its values too deeply to be a job file") from None
    errors = sorted(schema_validator("job").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(x) for x in e.absolute_path) or "(top level)"
        raise ConfigError(f"job file {p}: {where}: {e.message}")
    return dict(doc.get(section, {}))


#: job-file options that name files or folders: relative ones resolve against the job file
PATH_OPTIONS = frozenset({"store", "stores", "benchmark", "data_root", "networks", "out", "suitezero"})


def _resolve_path(value: Any, base: Path, key: str) -> Any:
    if isinstance(value, list):
        return [_resolve_path(v, base, key) for v in value]
    if not isinstance(value, str) or "://" in value or Path(value).is_absolute():
        return value
    candidate = Path(os.path.normpath(base / value))
    if key == "networks" and not candidate.exists():  # a count, 'all' or a cell string
        return value
    return str(candidate)


def resolve_job_paths(job: dict[str, Any], job_path: str | Path) -> dict[str, Any]:
    """Relative paths in a job file mean "beside the job file", wherever it is run from."""
    base = Path(job_path).resolve().parent
    return {k: (_resolve_path(v, base, k) if k in PATH_OPTIONS else v) for k, v in job.items()}


def job_config(job_path: str | Path, section: str) -> dict[str, Any]:
    """A job file's ``[section]`` as keyword arguments of the section's config dataclass."""
    job = resolve_job_paths(load_job(job_path, section), job_path)
    out = {("lambda_" if k == "lambda" else k): v for k, v in job.items()}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in out.items()}


def job_options(job_path: str | Path | None, section: str, given: dict[str, Any],
                explicit: set[str]) -> dict[str, Any]:
    """The options of one command: ``given`` (typed or default) merged over a job file, if any."""
    if not job_path:
        return dict(given)
    return merge_options(resolve_job_paths(load_job(job_path, section), job_path), given, explicit)


def merge_options(job: dict[str, Any], given: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """Command-line values win where they were typed; otherwise the job file; otherwise defaults."""
    out = dict(given)
    for key, value in job.items():
        key = "lambda_" if key == "lambda" else key
        if key not in out:
            raise ConfigError(f"job file option {key!r} is not an option of this command")
        if key not in explicit:
            out[key] = value
    return out
