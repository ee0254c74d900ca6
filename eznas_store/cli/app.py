"""The typer app, the options every command shares, and the one error funnel.

``main`` runs the app so that every user error (``EznasError``) and every usage error,
whichever copy of click raised it, ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from eznas_store.config import job_options
from eznas_store.errors import EznasError, EznasWarning

app = typer.Typer(
    name="eznas-store",
    help="Evolve zero-cost NAS proxies over an on-disk statistics store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from eznas_store._version import __version__

        typer.echo(f"eznas-store {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Evolve zero-cost NAS proxies over an on-disk statistics store."""


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"eznas-store: error: {message}", err=True)
    raise typer.Exit(code)


def with_job(ctx: typer.Context, job: str | None, section: str, given: dict) -> dict:
    """Merge a TOML job file under the options typed on the command line."""
    given = {k: v for k, v in given.items() if k not in ("ctx", "job")}
    # compare by name: typer may carry its own copy of click's ParameterSource enum
    explicit = {k for k in given
                if getattr(ctx.get_parameter_source(k), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}
    return job_options(job, section, given, explicit)


#: one help text per flag that several commands share, so a flag reads alike everywhere
HELP: dict[str, str] = {
    "--no-progress": "No progress bars (for logs and batch jobs).",
    "--seed": "Seed of everything random in this command (sample, batch, init, noise, evolution); >= 0.",
    "--first-seed": "First of the consecutive seeds to run.",
    "--dataset": "cifar10, cifar100, imagenet16-120 or digits.",
    "--data-root": "Folder of the dataset in its published format (pickles or image folders).",
    "--space": "Search space (nb201).",
    "--benchmark": "Benchmark table (CSV[.gz]) with arch and accuracy columns.",
    "--networks": "A number (seeded sample), 'all', a cell string or a file of cells.",
    "--batch-size": "Images per pass (ingest default 1 as EZNAS collects; scoring default 16 as EZNAS-A is scored).",
    "--structure": "Block unit: rcb (ReLU-Conv-BN, EZNAS) or cbr (Conv-BN-ReLU).",
    "--device": "auto (CUDA if present), cpu or cuda[:k].",
    "--image-size": "Resize images to this size (digits only).",
    "--channels": "Skeleton width C (default: the benchmark's).",
    "--cells": "Cells per stage N; for darts the number of layers L (default: the benchmark's).",
    "--workers": "Local Dask worker processes (default 0: in-process, on the threads torch uses; N > 0 starts N processes).",
    "--scheduler": "Address of an existing Dask scheduler to use instead of local workers.",
    "--threads": "Torch threads of the collector (1 keeps results bit-reproducible).",
    "--population": "Programs per generation (mu and lambda follow it unless given).",
    "--cxpb": "Crossover probability (DEAP varOr).",
    "--mutpb": "Mutation probability (DEAP varOr).",
    "--tournament": "Tournament size of selection.",
    "--min-depth": "Smallest tree depth of random programs.",
    "--max-depth": "Largest tree depth (random programs and after variation).",
    "--generations": "Generations to evolve (the paper: 15).",
    "--max-networks": "Use only the first N usable networks of each store.",
    "--abs-tau": "Use |tau| as the released EZNAS code did.",
    "--to-scalar": "Per-block reduction of a program's output: mean (EZNAS) or l2.",
    "--accuracy-column": "Benchmark accuracy column used as the label.",
    "--epochs": "Training epochs per cell.",
    "--lr": "Learning rate (SGD with cosine decay).",
}

JobOption = Annotated[Optional[str], typer.Option("--job", help="TOML job file (jobs/*.toml); flags override it.")]


def _click_kind(e: BaseException) -> str | None:
    """'usage', 'help', 'abort' or None, by class name.

    Typer >= 0.26 ships its own copy of click (``typer._click``), so ``isinstance`` against
    the installed ``click`` misses its exceptions; the class names are the same in both.
    """
    names = {k.__name__ for k in type(e).__mro__}
    if "NoArgsIsHelpError" in names:
        return "help"
    if "ClickException" in names:
        return "usage"
    if "Abort" in names:
        return "abort"
    return None


def _usage_line(e: BaseException) -> str:
    """One line: the command path, click's message, and where to read more."""
    ctx = getattr(e, "ctx", None)
    where = getattr(ctx, "command_path", None) or "eznas-store"
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    return " ".join(f"{where}: error: {message} (see '{where} -h')".split())


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (an incomplete store, a skipped round-off check) as one line; others as
    Python prints them."""
    if issubclass(category, EznasWarning):
        typer.echo(" ".join(f"eznas-store: warning: {message}".split()), err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app; every user or usage error ends as one line and exit 2."""
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        # with standalone_mode=False click *returns* the code of typer.Exit instead of raising
        rv = app(args=argv, prog_name="eznas-store", standalone_mode=False)
    except EznasError as e:
        typer.echo(" ".join(f"eznas-store: error: {e}".split()), err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("eznas-store: interrupted", err=True)
        return 130
    except Exception as e:  # click's usage errors, whichever copy of click raised them
        kind = _click_kind(e)
        if kind == "help":  # bare `eznas-store`: the help is what was asked for
            ctx = getattr(e, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else e.format_message())
            return 0
        if kind == "usage":
            typer.echo(_usage_line(e), err=True)
            return 2
        if kind == "abort":
            typer.echo("eznas-store: interrupted", err=True)
            return 130
        raise
    return rv if isinstance(rv, int) else 0


def _entry() -> None:
    sys.exit(main())
