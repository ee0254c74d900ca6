"""Job files: TOML tables of command options, validated once against ``schemas/job.schema.json``.

A job file fixes what a whole campaign shares (dataset, batch, seeds, GP settings); the
command line overrides only what differs per node (shard, store, scheduler address).
The resolved options are then checked again by the command's own frozen dataclass
(``IngestConfig``, ``EvolveConfig``) and written into the store or run directory.
"""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from eznas_store.errors import ConfigError, DataNotFoundError

SCHEMA_PATH = next((p for p in (Path(__file__).resolve().parents[1] / "schemas" / "job.schema.json",
                                Path(__file__).resolve().parent / "schemas" / "job.schema.json")
                    if p.exists()), None)


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    if SCHEMA_PATH is None:
        raise ConfigError("schemas/job.schema.json is missing from this installation")
    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def load_job(path: str | Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML job file, validated; ``{}`` if the file has none."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"job file {p} does not exist")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"job file {p} is not valid TOML: {e}") from None
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(x) for x in e.absolute_path) or "(top level)"
        raise ConfigError(f"job file {p}: {where}: {e.message}")
    return dict(doc.get(section, {}))


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
