"""Research instruments built on the stages: compare, transfer, seeds, search, demo.

Each command parses options, builds the stage's typed config and calls its library
function; the stages are imported inside the commands so that ``eznas-store -h`` does
not load torch, zarr or dask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from eznas_store.evolution import PAPER_GP
from eznas_store.cli.app import HELP, JobOption, app, fail, with_job


@app.command()
def compare(
    store: Annotated[str, typer.Argument(help="A store with hand-crafted proxies (with statistics, or proxies-only).")],
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON files to add (EZNAS-A is always there).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for compare.csv and compare.png.")] = None,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Label to correlate with: any accuracy column the store holds (default: the one chosen at ingest).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON on stdout (unrounded; NaN as null).")] = False,
    suitezero: Annotated[Optional[str], typer.Option("--suitezero", help="A NAS-Bench-Suite-Zero zc_*.json[.gz] to compare our proxy values with.")] = None,
    task: Annotated[str, typer.Option("--task", help="Suite-Zero task (cifar10, ImageNet16-120, ...).")] = "cifar10",
    workers: Annotated[int, typer.Option("--workers", help=HELP["--workers"])] = 0,
) -> None:
    """Kendall tau and Spearman rho of every hand-crafted proxy, EZNAS-A and given programs."""
    from eznas_store.studies import (check_compare_args, compare_store, format_table, rows_json,
                                             suitezero_agreement, write_outputs)
    from eznas_store.fitness import Engine
    from eznas_store.fitness import json_text

    tables = check_compare_args(store, out=out, suitezero=suitezero, task=task)  # refuse before scoring
    with Engine(workers=workers) as engine:
        rows = compare_store(store, programs=program or [], engine=engine, accuracy_column=accuracy_column)
    label = rows[0].label if rows else ""
    title = f"{store}: {rows[0].n if rows else 0} networks, against {label}"
    agreement = suitezero_agreement(store, suitezero, task=task, tables=tables) if suitezero else None
    if json_out:
        doc = {"store": store, "label": label, "rows": rows_json(rows)}
        if agreement is not None:
            doc["suitezero"] = [{"proxy": name, "common": n, "spearman_rho": rho} for name, n, rho in agreement]
        typer.echo(json_text(doc))
    else:
        typer.echo(format_table(rows, title))
    if out:
        csv_path, png_path = write_outputs(rows, out, title)
        typer.echo(f"table → {csv_path}; plot → {png_path}", err=json_out)
    if agreement is not None and not json_out:
        typer.echo(f"\nour proxy values vs NAS-Bench-Suite-Zero ({suitezero}, task {task}), Spearman rho per proxy:")
        for name, n, rho in agreement:
            typer.echo(f"  {name:<10} {rho:7.4f}  ({n} common cells)")
        if not any(n for _, n, _ in agreement):
            typer.echo(f"no cell of {store} is in {suitezero}: ingest its cells into a store "
                       f"(ingest --benchmark {suitezero}, with the --space, --channels and --cells it used)")


@app.command()
def transfer(
    stores: Annotated[list[str], typer.Argument(help="One store per task, URL or NAME=URL (at least two).")],
    out: Annotated[str, typer.Option("--out", help="Folder: evolve/<task>/ runs, transfer.csv/.md/.json/.png.")],
    program: Annotated[str, typer.Option("--program", help="Each run's representative: best_ever or best_final.")] = "best_ever",
    population: Annotated[int, typer.Option("--population", help=HELP["--population"])] = PAPER_GP.population,
    mu: Annotated[Optional[int], typer.Option("--mu", help="Parents kept per generation (default: population // 2).")] = None,
    lambda_: Annotated[Optional[int], typer.Option("--lambda", help="Children per generation (default: population).")] = None,
    generations: Annotated[int, typer.Option("--generations", help=HELP["--generations"])] = PAPER_GP.generations,
    max_depth: Annotated[int, typer.Option("--max-depth", help=HELP["--max-depth"])] = PAPER_GP.max_depth,
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    abs_tau: Annotated[bool, typer.Option("--abs-tau", help=HELP["--abs-tau"])] = False,
    to_scalar: Annotated[str, typer.Option("--to-scalar", help=HELP["--to-scalar"])] = "mean",
    workers: Annotated[int, typer.Option("--workers", help=HELP["--workers"])] = 0,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help=HELP["--scheduler"])] = None,
    max_networks: Annotated[Optional[int], typer.Option("--max-networks", help=HELP["--max-networks"])] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
) -> None:
    """Transfer matrix (EZNAS figure 4): evolve on each task, test every best program on every task (Kendall-tau matrix,
    FLOPs/params/EZNAS-A rows, best ** and second best * per column, heat map). Reruns reuse runs."""
    from eznas_store.studies import TransferConfig, format_transfer, run_transfer

    cfg = TransferConfig(stores=tuple(stores), out=out, program=program, population=population, mu=mu,
                         lambda_=lambda_, generations=generations, max_depth=max_depth, seed=seed, abs_tau=abs_tau,
                         to_scalar=to_scalar, workers=workers, scheduler=scheduler, max_networks=max_networks,
                         progress=not no_progress)
    typer.echo(format_transfer(run_transfer(cfg)))
    typer.echo(f"matrix → {out}/transfer.csv, transfer.md, transfer.png")


@app.command()
def seeds(
    out: Annotated[str, typer.Option("--out", help="Folder for seeds.csv, seeds.json, seeds.png (a rerun with the same options resumes; other options are refused).")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="Benchmark table with the accuracies.")],
    dataset: Annotated[str, typer.Option("--dataset", help=HELP["--dataset"])],
    data_root: Annotated[Optional[str], typer.Option("--data-root", help=HELP["--data-root"])] = None,
    space: Annotated[str, typer.Option("--space", help="Search space of the benchmark's cells: nb201 or darts.")] = "nb201",
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON file or a name (eznas-a). Repeatable.")] = None,
    networks: Annotated[int, typer.Option("--networks", help="Cells per sample.")] = 100,
    k: Annotated[int, typer.Option("--seeds", help="Number of seeds k (2 to 1000).")] = 5,
    first_seed: Annotated[int, typer.Option("--first-seed", help=HELP["--first-seed"])] = 0,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Seed of the one sample of mode 'fixed'.")] = 0,
    modes: Annotated[str, typer.Option("--modes", help="fixed (architectures fixed, init/batch vary), resampled (architectures vary too), or both, comma-separated.")] = "fixed,resampled",
    batch_size: Annotated[int, typer.Option("--batch-size", help=HELP["--batch-size"])] = 16,
    structure: Annotated[str, typer.Option("--structure", help=HELP["--structure"])] = "rcb",
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help=HELP["--accuracy-column"])] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help=HELP["--image-size"])] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help=HELP["--channels"])] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help=HELP["--cells"])] = None,
    device: Annotated[str, typer.Option("--device", help=HELP["--device"])] = "auto",
    to_scalar: Annotated[Optional[str], typer.Option("--to-scalar", help=HELP["--to-scalar"])] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
) -> None:
    """Seed spread (EZNAS figure 2): spread of Kendall tau over k seeds, (a) architectures fixed, (b) resampled; box plots.
    Storeless; a killed study resumes from its finished seeds."""
    from eznas_store.studies import SeedsConfig, format_seeds, run_seeds

    cfg = SeedsConfig(out=out, dataset=dataset, benchmark=benchmark, space=space, programs=tuple(program or ("eznas-a",)),
                      data_root=data_root, networks=networks, seeds=k, first_seed=first_seed, sample_seed=sample_seed,
                      modes=tuple(m.strip() for m in modes.split(",") if m.strip()), batch_size=batch_size,
                      structure=structure, accuracy_column=accuracy_column, image_size=image_size, C=channels,
                      N=cells, device=device, to_scalar=to_scalar, progress=not no_progress)
    typer.echo(format_seeds(run_seeds(cfg)))
    typer.echo(f"→ {out}/seeds.csv, seeds.json, seeds.png")


@app.command()
def search(
    proxy: Annotated[str, typer.Option("--proxy", help="Fitness: a hand-crafted proxy (synflow, nwot, meco, ...), az_nas (the AZ-NAS aggregate, ranked against --reference-size random cells), a registered program (eznas-a) or a program JSON file (statistics or proxies).")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="Benchmark table: true accuracy and rank of the chosen cell.")],
    budget: Annotated[Optional[str], typer.Option("--budget", help="Wall-time budget, e.g. 15m, 90s, 1h (setup included).")] = None,
    max_evaluations: Annotated[Optional[int], typer.Option("--max-evaluations", help="Stop after scoring this many unseen cells.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help=HELP["--dataset"])] = "cifar10",
    data_root: Annotated[Optional[str], typer.Option("--data-root", help=HELP["--data-root"])] = None,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Default: the dataset's test accuracy.")] = None,
    space: Annotated[str, typer.Option("--space", help="Search space: nb201 (all 15,625 cells) or darts (the --benchmark table's cells only, so the chosen cell always has a true accuracy).")] = "nb201",
    population: Annotated[int, typer.Option("--population", help="Cells in the aging population.")] = 64,
    sample: Annotated[int, typer.Option("--sample", help="Tournament size of aging evolution.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Default 64 for proxies, 16 for statistics programs.")] = None,
    proxy_init: Annotated[Optional[str], typer.Option("--proxy-init", help="Init of the networks NASLib's 13 proxies are computed on: eznas (as ingest stores them) or default (PyTorch's, as NASLib/Suite-Zero). Default: a proxy program's own meta proxy_init, else eznas.")] = None,
    reference_size: Annotated[int, typer.Option("--reference-size", help="Proxy programs and az_nas: random cells that rank ops (and AZ-NAS's ranks) compare with.")] = 64,
    device: Annotated[str, typer.Option("--device", help=HELP["--device"])] = "auto",
    threads: Annotated[int, typer.Option("--threads", help=HELP["--threads"])] = 1,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help=HELP["--image-size"])] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help=HELP["--channels"])] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help=HELP["--cells"])] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for search.json and history.csv.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
) -> None:
    """Aging evolution over NB201 cells with a zero-cost proxy as fitness, computed on the fly
    (no store): prints the chosen cell, its true accuracy, its rank among all cells, wall time.
    DARTS (--space darts) is searched over the benchmark table's genotypes only: a mutation moves
    to the nearest listed genotype, since only those have a true accuracy to judge the search by."""
    from eznas_store.archsearch import ArchSearchConfig
    from eznas_store.archsearch import format_result
    from eznas_store.archsearch import run_search

    cfg = ArchSearchConfig(proxy=proxy, benchmark=benchmark, budget=budget, max_evaluations=max_evaluations,
                       dataset=dataset, data_root=data_root, accuracy_column=accuracy_column, space=space,
                       population=population, sample=sample, seed=seed, batch_size=batch_size,
                       reference_size=reference_size, proxy_init=proxy_init, device=device, threads=threads, image_size=image_size,
                       C=channels, N=cells, out=out, progress=not no_progress)
    typer.echo(format_result(run_search(cfg)))


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the table, store, run and report.")] = "demo-out",
    networks: Annotated[int, typer.Option("--networks", help="Cells to train and study (at least 2: Kendall tau needs two).")] = 40,
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    workers: Annotated[int, typer.Option("--workers", help=HELP["--workers"])] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete what an earlier demo wrote into --out (only that: a folder demo did not make is refused) instead of resuming.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
) -> None:
    """The whole pipeline with no files from you: label (train cells on digits) → ingest → evolve → report."""
    from eznas_store.studies import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, networks=networks, seed=seed, workers=workers, fresh=fresh,
                        progress=not no_progress), echo=typer.echo)
