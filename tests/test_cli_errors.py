"""Every usage error of every command is one line on stderr and exit code 2.

Run in-process through ``cli.main`` (what the console script calls), so whichever copy
of click typer carries raised the error, the test sees what a user would.
"""

from __future__ import annotations

import pytest
import typer

from eznas_store import __version__
from eznas_store.cli import app, main

COMMANDS = sorted(typer.main.get_command(app).commands)


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, [line for line in err.splitlines() if line.strip()]


def test_every_command_is_covered():
    assert {"ingest", "info", "verify", "evolve", "score", "report", "compare", "search",
            "proxy-table"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_one_line_and_exit_2(capsys, command):
    rc, _, err = _run(capsys, [command, "--no-such-option-xyz"])
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"eznas-store {command}: error:") and "--no-such-option-xyz" in err[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_exits_0(capsys, command):
    rc, out, err = _run(capsys, [command, "-h"])
    assert rc == 0 and not err
    assert "Usage:" in out and "-h, --help" in out


@pytest.mark.parametrize("argv, fragment", [
    (["scor", "S.zarr"], "No such command 'scor'"),
    (["evolve", "S.zarr", "--out", "R", "--population", "ten"], "--population"),
    (["info"], "Missing argument"),
    (["transcode", "S.zarr"], "Missing argument"),
    (["transcode", "S.zarr", "T.zarr", "--codec", "bitround:99"], "bitround:K needs K"),
    (["transcode", "no/such.zarr", "T.zarr"], "no/such.zarr"),
    (["score", "--roundoff", "--dataset", "cifar10"], "--roundoff needs a STORE"),
    (["score", "S.zarr", "--program", "eznas-a", "--accuracy-column"], "--accuracy-column"),
    (["--no-such-global"], "--no-such-global"),
    (["proxy-table"], "proxy-table needs --store"),
    (["proxy-table", "--out", "t.csv"], "give --store S.zarr (and --export t.csv"),
    (["proxy-table", "--store", "p.zarr", "--export", "t.txt"], "--export must name a .csv"),
    (["proxy-table", "--store", "p.zarr", "--networks", "0"], "--networks must be at least 1"),
    (["proxy-table", "--store", "p.zarr", "--label-set", "svhn"], "--label-set must be among"),
    (["proxy-table", "--store", "p.zarr", "--suitezero", "no/such.json.gz"], "no/such.json.gz not found"),
    (["proxy-table", "--store", "p.zarr", "--proxy", "mecco"], "unknown proxy 'mecco'"),
    (["proxy-table", "--store", "p.zarr"], "proxy-table needs --benchmark, --data-root"),
    (["ingest", "--store", "s.zarr", "--dataset", "digits", "--no-statistics", "--no-proxies"],
     "--no-statistics collects proxies only"),
])
def test_usage_errors_named_in_the_issue(capsys, argv, fragment):
    rc, _, err = _run(capsys, argv)
    assert rc == 2
    assert len(err) == 1 and fragment in err[0], err


def test_version_and_short_help(capsys):
    rc, out, err = _run(capsys, ["--version"])
    assert rc == 0 and out.strip() == f"eznas-store {__version__}" and not err
    rc, out, err = _run(capsys, ["-h"])
    assert rc == 0 and "Commands" in out and not err


def test_bare_command_prints_help(capsys):
    rc, out, err = _run(capsys, [])
    assert rc == 0 and "Usage:" in out and not err


def test_console_entry_point_gives_one_line_and_exit_2():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "eznas_store.cli", "scor", "S.zarr"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "No such command" in p.stderr


def test_every_option_has_a_help_line_and_booleans_are_flags():
    cmd = typer.main.get_command(app)
    missing, not_flags = [], []
    for name, c in sorted(cmd.commands.items()):
        for p in c.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{name} {p.opts or p.name}")
            if isinstance(p.default, bool) and not getattr(p, "is_flag", True):
                not_flags.append(f"{name} {p.opts}")
    assert not missing, missing
    assert not not_flags, not_flags


def test_flags_that_mean_one_thing_default_alike():
    """Issue 12.3: --workers, --device and --scheduler look and default the same in every command."""
    cmd = typer.main.get_command(app)
    seen: dict[str, set] = {"--workers": set(), "--device": set(), "--scheduler": set()}
    helps: dict[str, set] = {k: set() for k in seen}
    for c in cmd.commands.values():
        for p in c.params:
            for opt in set(p.opts) & set(seen):
                seen[opt].add(p.default)
                helps[opt].add(p.help)
    assert seen["--workers"] == {0} and seen["--device"] == {"auto"} and seen["--scheduler"] <= {None}, seen
    assert all(len(h) == 1 for h in helps.values()), helps
