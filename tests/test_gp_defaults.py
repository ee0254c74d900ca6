"""The GP defaults have one source (``evolution.settings.PAPER_GP``): evolve's config, transfer's
config, the CLI flags and the paper job file all derive from it."""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from pathlib import Path

import pytest

from eznas_store.cli import run_commands, study_commands
from eznas_store.evolution import PAPER_GP, GPSettings
from eznas_store.evolution.evolve import EvolveConfig
from eznas_store.studies.transfer import TransferConfig

FIELDS = [f.name for f in dataclasses.fields(GPSettings)]
ROOT = Path(__file__).resolve().parents[1]


def test_paper_settings_are_appendix_1_7():
    assert (PAPER_GP.population, PAPER_GP.cxpb, PAPER_GP.mutpb, PAPER_GP.tournament, PAPER_GP.min_depth,
            PAPER_GP.max_depth, PAPER_GP.generations) == (50, 0.4, 0.4, 4, 2, 10, 15)


@pytest.mark.parametrize("config", [EvolveConfig, TransferConfig])
def test_configs_take_their_defaults_from_the_settings(config):
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name in FIELDS:
        if name in defaults:
            assert defaults[name] == getattr(PAPER_GP, name), f"{config.__name__}.{name}"


@pytest.mark.parametrize("command", [run_commands.evolve, study_commands.transfer])
def test_cli_flags_default_to_the_settings(command):
    for name, p in inspect.signature(command).parameters.items():
        if name in FIELDS and p.default is not inspect.Parameter.empty:
            assert p.default == getattr(PAPER_GP, name), f"{command.__name__} --{name}"


def test_no_source_repeats_a_gp_default_literal():
    """``population ... = 50`` written out again would drift from the settings one day."""
    for rel in ("eznas_store/cli/run_commands.py", "eznas_store/cli/study_commands.py",
                "eznas_store/evolution/evolve.py", "eznas_store/studies/transfer.py"):
        text = (ROOT / rel).read_text()
        for name in ("population", "cxpb", "mutpb", "generations", "max_depth"):
            for line in text.splitlines():
                if line.strip().startswith(f"{name}:") and "=" in line and "= PAPER_GP." not in line and "Annotated" not in line:
                    pytest.fail(f"{rel}: {line.strip()}")


def test_the_paper_job_file_leaves_the_settings_to_the_defaults():
    job = tomllib.loads((ROOT / "jobs" / "evolve-paper.toml").read_text())["evolve"]
    assert not set(job) & {"population", "mu", "lambda", "cxpb", "mutpb", "tournament", "min_depth", "max_depth",
                           "generations"}
