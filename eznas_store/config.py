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


def load_job(path: str | Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML job file, validated; ``{}`` if the file has none."""
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"job file {p} does not exist")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"job file {p} is not valid TOML: {e}") from None
    errors = sorted(schema_validator("job").iter_errors(doc), key=lambda e: list(e.absolute_path))
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
