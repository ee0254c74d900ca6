"""The ``eznas-store`` command line: thin wrappers that parse options and call library functions.

Nothing imports this module; every command calls a plain keyword-only function that other
code can call directly. User errors (``EznasError``) end as one line on stderr and exit 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .errors import EznasError

app = typer.Typer(
    name="eznas-store",
    help="Evolve zero-cost NAS proxies over an on-disk statistics store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"eznas-store: error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def ingest(
    store: Annotated[str, typer.Option("--store", help="Store path or fsspec URL to create or complete.")],
    dataset: Annotated[str, typer.Option("--dataset", help="cifar10, cifar100, imagenet16-120 or digits.")],
    space: Annotated[str, typer.Option("--space", help="Search space.")] = "nb201",
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="Benchmark table (CSV[.gz]) with arch and accuracy columns.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Folder of the dataset in its published format.")] = None,
    networks: Annotated[str, typer.Option("--networks", help="A number (seeded sample), 'all', a cell string or a file of cells.")] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the network sample, the data batch, init and noise.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 1,
    structure: Annotated[str, typer.Option("--structure", help="Block unit: rcb (ReLU-Conv-BN) or cbr.")] = "rcb",
    perturb_scale: Annotated[Optional[float], typer.Option("--perturb-scale", help="Std of the P input's noise (default sqrt(0.01), as the released EZNAS code).")] = None,
    shard: Annotated[str, typer.Option("--shard", help="I/N: this job takes chunks I, I+N, ... (0-based).")] = "0/1",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:k].")] = "auto",
    chunk_networks: Annotated[int, typer.Option("--chunk-networks", help="Networks per chunk (0: about 256 MB per chunk).")] = 0,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Benchmark column used as fitness target.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize (digits only).")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Skeleton width C (benchmark default).")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help="Cells per stage N (benchmark default).")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Collect the 22 EZNAS statistics of each network into a Zarr store (resumable, shardable)."""
    from .benchmarks import parse_network_selection
    from .collect import DEFAULT_PERTURB_SCALE
    from .ingest import IngestConfig, parse_shard, run_ingest

    sel = parse_network_selection(networks)
    cfg = IngestConfig(
        store=store, dataset=dataset, space=space, benchmark=benchmark, data_root=data_root,
        networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed, batch_size=batch_size,
        structure=structure, perturb_scale=DEFAULT_PERTURB_SCALE if perturb_scale is None else perturb_scale,
        shard=parse_shard(shard), device=device, chunk_networks=chunk_networks,
        accuracy_column=accuracy_column, image_size=image_size, C=channels, N=cells,
        progress=not no_progress,
    )
    report = run_ingest(cfg)
    typer.echo(report.line())


@app.command()
def info(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """Print a store's summary: plan, completion, sizes and accuracy range."""
    from .store import open_store, store_summary

    typer.echo(store_summary(open_store(store)))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn user errors into one line."""
    try:
        app(args=argv, standalone_mode=False)
    except EznasError as e:
        typer.echo(f"eznas-store: error: {e}", err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        typer.echo("eznas-store: interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
