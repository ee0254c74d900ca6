"""The ``eznas-store`` command line: thin wrappers that parse options and call library functions.

Nothing imports this module; every command calls a plain keyword-only function that other
code can call directly. User errors (``EznasError``) end as one line on stderr and exit 2.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from eznas_store.errors import EznasError

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


def _with_job(ctx: typer.Context, job: str | None, section: str, given: dict) -> dict:
    """Merge a TOML job file under the options typed on the command line."""
    given = {k: v for k, v in given.items() if k not in ("ctx", "job")}
    if not job:
        return given
    from eznas_store.config import load_job, merge_options

    # compare by name: typer may carry its own copy of click's ParameterSource enum
    explicit = {k for k in given
                if getattr(ctx.get_parameter_source(k), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}
    return merge_options(load_job(job, section), given, explicit)


JobOption = Annotated[Optional[str], typer.Option("--job", help="TOML job file (jobs/*.toml); flags override it.")]


@app.command()
def ingest(
    ctx: typer.Context,
    store: Annotated[Optional[str], typer.Option("--store", help="Store path or fsspec URL to create or complete.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="cifar10, cifar100, imagenet16-120 or digits.")] = None,
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
    no_proxies: Annotated[bool, typer.Option("--no-proxies", help="Skip the 13 hand-crafted proxies.")] = False,
    proxy_batch_size: Annotated[int, typer.Option("--proxy-batch-size", help="Batch of the proxies (0: the statistics batch; NASLib used 64).")] = 0,
    redo_broken: Annotated[bool, typer.Option("--redo-broken", help="Recollect networks whose chunks 'verify' finds broken.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
    job: JobOption = None,
) -> None:
    """Collect the 22 EZNAS statistics of each network into a Zarr store (resumable, shardable)."""
    given = dict(locals())
    from eznas_store.sources.tables import parse_network_selection
    from eznas_store.collect.statistics import DEFAULT_PERTURB_SCALE
    from eznas_store.ingest.driver import IngestConfig, parse_shard, run_ingest

    o = _with_job(ctx, job, "ingest", given)
    (store, dataset, space, benchmark, data_root, networks, seed, batch_size, structure, perturb_scale, shard,
     device, chunk_networks, accuracy_column, image_size, channels, cells) = (o[k] for k in (
        "store", "dataset", "space", "benchmark", "data_root", "networks", "seed", "batch_size", "structure",
        "perturb_scale", "shard", "device", "chunk_networks", "accuracy_column", "image_size", "channels", "cells"))
    if not store or not dataset:
        _fail("ingest needs --store and --dataset (on the command line or in --job)")
    sel = parse_network_selection(str(networks))
    cfg = IngestConfig(
        store=store, dataset=dataset, space=space, benchmark=benchmark, data_root=data_root,
        networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed, batch_size=batch_size,
        structure=structure, perturb_scale=DEFAULT_PERTURB_SCALE if perturb_scale is None else perturb_scale,
        shard=parse_shard(shard), device=device, chunk_networks=chunk_networks,
        accuracy_column=accuracy_column, image_size=image_size, C=channels, N=cells,
        proxies=not no_proxies, proxy_batch_size=proxy_batch_size, redo_broken=redo_broken,
        progress=not no_progress,
    )
    report = run_ingest(cfg)
    typer.echo(report.line())


@app.command()
def verify(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """Check a store's shapes, completion flags and that every chunk decodes; name broken networks."""
    from eznas_store.store.zarr_store import open_store, verify_store

    s = open_store(store)
    rep = verify_store(s)
    for line in rep.lines(s.plan.archs):
        typer.echo(line)
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def info(store: Annotated[str, typer.Argument(help="Store path or URL.")]) -> None:
    """Print a store's summary: plan, completion, sizes and accuracy range."""
    from eznas_store.store.zarr_store import open_store, store_summary

    typer.echo(store_summary(open_store(store)))


@app.command()
def evolve(
    ctx: typer.Context,
    stores: Annotated[Optional[list[str]], typer.Argument(help="One store per evolution task (fitness: min over tasks).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Run directory (programs, log, checkpoint, scores).")] = None,
    population: Annotated[int, typer.Option("--population")] = 50,
    mu: Annotated[int, typer.Option("--mu")] = 25,
    lambda_: Annotated[int, typer.Option("--lambda")] = 50,
    cxpb: Annotated[float, typer.Option("--cxpb")] = 0.4,
    mutpb: Annotated[float, typer.Option("--mutpb")] = 0.4,
    tournament: Annotated[int, typer.Option("--tournament")] = 4,
    min_depth: Annotated[int, typer.Option("--min-depth")] = 2,
    max_depth: Annotated[int, typer.Option("--max-depth")] = 10,
    generations: Annotated[int, typer.Option("--generations")] = 15,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    combine: Annotated[str, typer.Option("--combine", help="min (EZNAS) or mean over tasks.")] = "min",
    abs_tau: Annotated[bool, typer.Option("--abs-tau", help="Use |tau| as the released EZNAS code did.")] = False,
    to_scalar: Annotated[str, typer.Option("--to-scalar", help="Per-block reduction: mean or l2.")] = "mean",
    workers: Annotated[int, typer.Option("--workers", help="Local Dask worker processes (0: in-process).")] = 2,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of an existing Dask scheduler.")] = None,
    max_networks: Annotated[Optional[int], typer.Option("--max-networks", help="Use only the first N usable networks of each store.")] = None,
    over: Annotated[str, typer.Option("--over", help="statistics: programs over the 22 per-block statistics of STOREs; proxies: formulas over hand-crafted proxy values (STOREs ingested with proxies, or Suite-Zero zc_*.json files).")] = "statistics",
    representation: Annotated[str, typer.Option("--representation", help="tree (EZNAS) or sequential (AutoML-Zero instruction lists, EZNAS appendix 1.2).")] = "tree",
    problems: Annotated[Optional[list[str]], typer.Option("--problems", help="--over proxies: problems to train on (default all); the others are test problems. Repeatable.")] = None,
    train_networks: Annotated[int, typer.Option("--train-networks", help="--over proxies: networks per training problem to evolve on; the rest are held out.")] = 100,
    min_length: Annotated[int, typer.Option("--min-length", help="--representation sequential: fewest instructions.")] = 2,
    max_length: Annotated[int, typer.Option("--max-length", help="--representation sequential: most instructions.")] = 32,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
    job: JobOption = None,
) -> None:
    """Evolve a proxy program by genetic programming (EZNAS appendix 1.7 defaults)."""
    given = dict(locals())
    from eznas_store.search.evolve import EvolveConfig, run_evolve

    o = _with_job(ctx, job, "evolve", given)
    o.pop("resume"), o.pop("no_progress")
    if not o["stores"] or not o["out"]:
        _fail("evolve needs at least one STORE and --out (on the command line or in --job)")
    o["stores"] = tuple(o["stores"])
    o["problems"] = tuple(o.get("problems") or ())
    cfg = EvolveConfig(**o, progress=not no_progress)
    res = run_evolve(cfg, resume=resume)
    best = res.best_final
    typer.echo(f"evolved {res.generations} generations in {res.seconds:.1f} s; best of the final population: "
               f"tau {best.meta.get('fitness')}: {best.formula()}")
    if cfg.over == "proxies":
        typer.echo((res.out / "cross_problem" / "matrix.txt").read_text().rstrip())
    typer.echo(f"programs in {res.out / 'programs'}; report with: eznas-store report {res.out}")


@app.command()
def score(
    store: Annotated[Optional[str], typer.Argument(help="Store to score (omit to collect on the fly).")] = None,
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON file or a name (eznas-a). Repeatable.")] = None,
    proxy: Annotated[Optional[list[str]], typer.Option("--proxy", help="A hand-crafted proxy stored by ingest (synflow, nwot, ...). Repeatable.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="CSV of per-network scores.")] = None,
    to_scalar: Annotated[Optional[str], typer.Option("--to-scalar", help="Override the programs' reduction: mean or l2.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Dask workers for store scoring (0: in-process).")] = 0,
    space: Annotated[str, typer.Option("--space")] = "nb201",
    benchmark: Annotated[Optional[str], typer.Option("--benchmark")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root")] = None,
    networks: Annotated[str, typer.Option("--networks")] = "100",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    structure: Annotated[str, typer.Option("--structure")] = "rcb",
    device: Annotated[str, typer.Option("--device")] = "auto",
    image_size: Annotated[Optional[int], typer.Option("--image-size")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Kendall tau and Spearman rho of programs, from a store or straight from networks (no store)."""
    from eznas_store.programs.tree import load_program
    from eznas_store.fitness.engine import Engine, score_store, score_storeless, summarise, write_scores_csv

    if proxy:
        if store is None:
            _fail("--proxy reads the values ingest stored: give a STORE")
        from eznas_store.studies.compare import proxy_scores

        task_name = store
        results = []
        for name in proxy:
            values, acc, nets = proxy_scores(store, name)
            results.append(summarise(name, task_name, values, acc, [""] * len(nets), nets))
        for r in results:
            typer.echo(r.line())
        if out:
            write_scores_csv(out, results)
        if not program:
            return
    programs = [load_program(p) for p in (program or ["eznas-a"])]
    if store is not None:
        with Engine(workers=workers, progress=not no_progress) as engine:
            results = score_store(store, programs, engine=engine, to_scalar=to_scalar)
    else:
        if dataset is None:
            _fail("score without a STORE needs --dataset (and --benchmark, --data-root) to collect on the fly")
        from eznas_store.sources.tables import parse_network_selection
        from eznas_store.ingest.driver import IngestConfig

        sel = parse_network_selection(networks)
        cfg = IngestConfig(store="", dataset=dataset, space=space, benchmark=benchmark, data_root=data_root,
                           networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed,
                           batch_size=batch_size, structure=structure, device=device, image_size=image_size,
                           C=channels, N=cells, progress=not no_progress)
        results = score_storeless(cfg, programs, to_scalar=to_scalar, progress=not no_progress)
    for r in results:
        typer.echo(r.line())
    if out:
        write_scores_csv(out, results)
        typer.echo(f"per-network scores → {out}")


@app.command()
def report(
    run_dirs: Annotated[list[str], typer.Argument(help="An evolve run directory; several: one comparison report.")],
    out: Annotated[Optional[str], typer.Option("--out", help="With several runs: where the comparison goes.")] = None,
) -> None:
    """One run: RUN/report.md + .html (fitness curve, scatter plots, best program tree).
    Several runs (e.g. the statistic variants R-C-B/C-B-R x mean/L2, or tree vs sequential):
    one comparison table + overlaid fitness curves in --out."""
    from eznas_store.report.render import write_comparison, write_report

    if len(run_dirs) == 1 and out is None:
        md, html = write_report(run_dirs[0])
        typer.echo(f"report → {html} (and {md})")
        return
    if out is None:
        _fail("several runs are compared into one report: give --out DIR")
    md, html, csv = write_comparison(run_dirs, out)
    import pandas as pd

    table = pd.read_csv(csv).drop(columns=["formula"])
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"comparison → {html} (and {md}, {csv})")


@app.command()
def label(
    out: Annotated[str, typer.Option("--out", help="Benchmark CSV to write (NB201 table format + .meta.json recipe).")],
    dataset: Annotated[str, typer.Option("--dataset")] = "digits",
    data_root: Annotated[Optional[str], typer.Option("--data-root")] = None,
    space: Annotated[str, typer.Option("--space")] = "nb201",
    networks: Annotated[str, typer.Option("--networks", help="A number (seeded sample), a cell string or a file of cells.")] = "40",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    epochs: Annotated[int, typer.Option("--epochs")] = 12,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    lr: Annotated[float, typer.Option("--lr")] = 0.1,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Skeleton width C.")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help="Cells per stage N.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size")] = None,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Train cells for a fixed budget and write a benchmark table: ground truth no benchmark covers."""
    from eznas_store.sources.tables import parse_network_selection
    from eznas_store.collect.label import LabelConfig, run_label

    sel = parse_network_selection(networks)
    if sel is None:
        _fail("label needs a number of networks or a list of cells, not 'all'")
    cfg = LabelConfig(out=out, space=space, dataset=dataset, data_root=data_root,
                      networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed, epochs=epochs,
                      batch_size=batch_size, lr=lr, C=channels, N=cells, image_size=image_size,
                      device=device, progress=not no_progress)
    rep = run_label(cfg)
    typer.echo(rep.line() if hasattr(rep, "line") else str(rep))


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the table, store, run and report.")] = "demo-out",
    networks: Annotated[int, typer.Option("--networks", help="Cells to train and study.")] = 40,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Dask workers for evolve (0: in-process).")] = 2,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete --out first instead of resuming.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """The whole pipeline with no files from you: label (train cells on digits) → ingest → evolve → report."""
    from eznas_store.studies.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, networks=networks, seed=seed, workers=workers, fresh=fresh,
                        progress=not no_progress), echo=typer.echo)


@app.command()
def compare(
    store: Annotated[str, typer.Argument(help="A store ingested with hand-crafted proxies.")],
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON files to add (EZNAS-A is always there).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for compare.csv and compare.png.")] = None,
    suitezero: Annotated[Optional[str], typer.Option("--suitezero", help="A NAS-Bench-Suite-Zero zc_*.json[.gz] to compare our proxy values with.")] = None,
    task: Annotated[str, typer.Option("--task", help="Suite-Zero task (cifar10, ImageNet16-120, ...).")] = "cifar10",
    workers: Annotated[int, typer.Option("--workers")] = 0,
) -> None:
    """Kendall tau and Spearman rho of every hand-crafted proxy, EZNAS-A and given programs."""
    from eznas_store.studies.compare import compare_store, format_table, suitezero_agreement, write_outputs
    from eznas_store.fitness.engine import Engine

    with Engine(workers=workers) as engine:
        rows = compare_store(store, programs=program or [], engine=engine)
    title = f"{store}: {rows[0].n if rows else 0} networks"
    typer.echo(format_table(rows, title))
    if out:
        csv_path, png_path = write_outputs(rows, out, title)
        typer.echo(f"table → {csv_path}; plot → {png_path}")
    if suitezero:
        typer.echo(f"\nour proxy values vs NAS-Bench-Suite-Zero ({suitezero}, task {task}), Spearman rho per proxy:")
        for name, n, rho in suitezero_agreement(store, suitezero, task=task):
            typer.echo(f"  {name:<10} {rho:7.3f}  ({n} common cells)")


@app.command()
def transfer(
    stores: Annotated[list[str], typer.Argument(help="One store per task, URL or NAME=URL (at least two).")],
    out: Annotated[str, typer.Option("--out", help="Folder: evolve/<task>/ runs, transfer.csv/.md/.json/.png.")],
    program: Annotated[str, typer.Option("--program", help="Each run's representative: best_ever or best_final.")] = "best_ever",
    population: Annotated[int, typer.Option("--population")] = 50,
    mu: Annotated[int, typer.Option("--mu")] = 25,
    lambda_: Annotated[int, typer.Option("--lambda")] = 50,
    generations: Annotated[int, typer.Option("--generations")] = 15,
    max_depth: Annotated[int, typer.Option("--max-depth")] = 10,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    abs_tau: Annotated[bool, typer.Option("--abs-tau")] = False,
    to_scalar: Annotated[str, typer.Option("--to-scalar")] = "mean",
    workers: Annotated[int, typer.Option("--workers", help="Dask workers (0: in-process).")] = 2,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler")] = None,
    max_networks: Annotated[Optional[int], typer.Option("--max-networks")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Fig. 4: evolve on each task, test every best program on every task (Kendall-tau matrix,
    FLOPs/params/EZNAS-A rows, best ** and second best * per column, heat map). Reruns reuse runs."""
    from eznas_store.studies.transfer import TransferConfig, format_transfer, run_transfer

    cfg = TransferConfig(stores=tuple(stores), out=out, program=program, population=population, mu=mu,
                         lambda_=lambda_, generations=generations, max_depth=max_depth, seed=seed, abs_tau=abs_tau,
                         to_scalar=to_scalar, workers=workers, scheduler=scheduler, max_networks=max_networks,
                         progress=not no_progress)
    typer.echo(format_transfer(run_transfer(cfg)))
    typer.echo(f"matrix → {out}/transfer.csv, transfer.md, transfer.png")


@app.command()
def seeds(
    out: Annotated[str, typer.Option("--out", help="Folder for seeds.csv, seeds.json, seeds.png.")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="Benchmark table with the accuracies.")],
    dataset: Annotated[str, typer.Option("--dataset")],
    data_root: Annotated[Optional[str], typer.Option("--data-root")] = None,
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON file or a name (eznas-a). Repeatable.")] = None,
    networks: Annotated[int, typer.Option("--networks", help="Cells per sample.")] = 100,
    k: Annotated[int, typer.Option("--seeds", help="Number of seeds k.")] = 5,
    first_seed: Annotated[int, typer.Option("--first-seed")] = 0,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Seed of the one sample of mode 'fixed'.")] = 0,
    modes: Annotated[str, typer.Option("--modes", help="fixed (architectures fixed, init/batch vary), resampled (architectures vary too), or both, comma-separated.")] = "fixed,resampled",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    structure: Annotated[str, typer.Option("--structure")] = "rcb",
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    to_scalar: Annotated[Optional[str], typer.Option("--to-scalar")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Fig. 2: spread of Kendall tau over k seeds, (a) architectures fixed, (b) resampled; box plots.
    Storeless; a killed study resumes from its finished seeds."""
    from eznas_store.studies.seeds import SeedsConfig, format_seeds, run_seeds

    cfg = SeedsConfig(out=out, dataset=dataset, benchmark=benchmark, programs=tuple(program or ("eznas-a",)),
                      data_root=data_root, networks=networks, seeds=k, first_seed=first_seed, sample_seed=sample_seed,
                      modes=tuple(m.strip() for m in modes.split(",") if m.strip()), batch_size=batch_size,
                      structure=structure, accuracy_column=accuracy_column, image_size=image_size, C=channels,
                      N=cells, device=device, to_scalar=to_scalar, progress=not no_progress)
    typer.echo(format_seeds(run_seeds(cfg)))
    typer.echo(f"→ {out}/seeds.csv, seeds.json, seeds.png")


@app.command()
def search(
    proxy: Annotated[str, typer.Option("--proxy", help="Fitness: a hand-crafted proxy (synflow, nwot, ...), a registered program (eznas-a) or a program JSON file (statistics or proxies).")],
    benchmark: Annotated[str, typer.Option("--benchmark", help="Benchmark table: true accuracy and rank of the chosen cell.")],
    budget: Annotated[Optional[str], typer.Option("--budget", help="Wall-time budget, e.g. 15m, 90s, 1h (setup included).")] = None,
    max_evaluations: Annotated[Optional[int], typer.Option("--max-evaluations", help="Stop after scoring this many unseen cells.")] = None,
    dataset: Annotated[str, typer.Option("--dataset")] = "cifar10",
    data_root: Annotated[Optional[str], typer.Option("--data-root")] = None,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Default: the dataset's test accuracy.")] = None,
    space: Annotated[str, typer.Option("--space")] = "nb201",
    population: Annotated[int, typer.Option("--population")] = 64,
    sample: Annotated[int, typer.Option("--sample", help="Tournament size of aging evolution.")] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Default 64 for proxies, 16 for statistics programs.")] = None,
    reference_size: Annotated[int, typer.Option("--reference-size", help="Proxy programs: random cells that rank ops compare with.")] = 64,
    device: Annotated[str, typer.Option("--device")] = "auto",
    threads: Annotated[int, typer.Option("--threads")] = 1,
    image_size: Annotated[Optional[int], typer.Option("--image-size")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for search.json and history.csv.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Aging evolution over NB201 cells with a zero-cost proxy as fitness, computed on the fly
    (no store): prints the chosen cell, its true accuracy, its rank among all cells, wall time."""
    from eznas_store.search.aging import SearchConfig, format_result, run_search

    cfg = SearchConfig(proxy=proxy, benchmark=benchmark, budget=budget, max_evaluations=max_evaluations,
                       dataset=dataset, data_root=data_root, accuracy_column=accuracy_column, space=space,
                       population=population, sample=sample, seed=seed, batch_size=batch_size,
                       reference_size=reference_size, device=device, threads=threads, image_size=image_size,
                       C=channels, N=cells, out=out, progress=not no_progress)
    typer.echo(format_result(run_search(cfg)))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn user errors into one line."""
    try:
        # with standalone_mode=False click *returns* the code of typer.Exit instead of raising
        rv = app(args=argv, standalone_mode=False)
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
    return rv if isinstance(rv, int) else 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
