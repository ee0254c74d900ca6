"""Commands that make and inspect stores and labels: ingest, verify, info, label.

Each command parses options, builds the stage's typed config and calls its library
function; the stages are imported inside the commands so that ``eznas-store -h`` does
not load torch, zarr or dask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from eznas_store.cli.app import HELP, JobOption, app, fail, with_job


@app.command()
def ingest(
    ctx: typer.Context,
    store: Annotated[Optional[str], typer.Option("--store", help="Store path or fsspec URL to create or complete.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="cifar10, cifar100, imagenet16-120 or digits.")] = None,
    space: Annotated[str, typer.Option("--space", help="Search space: nb201 or darts (darts has no 'all': give --benchmark, a count or a file of genotypes).")] = "nb201",
    skeleton: Annotated[Optional[str], typer.Option("--skeleton", help="darts: eval (NetworkCIFAR at --channels/--cells, the default) or swap (SWAP's stem-less one-cell network, C=3: 310-2,692 parameters); the store's plan records it (space darts-swap).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="Benchmark table (CSV[.gz]) with arch and accuracy columns.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Folder of the dataset in its published format.")] = None,
    networks: Annotated[str, typer.Option("--networks", help="A number (seeded sample), 'all', a cell string or a file of cells.")] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the network sample, the data batch, init and noise.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help=HELP["--batch-size"])] = 1,
    structure: Annotated[str, typer.Option("--structure", help="Block unit: rcb (ReLU-Conv-BN) or cbr.")] = "rcb",
    perturb_scale: Annotated[Optional[float], typer.Option("--perturb-scale", help="Std of the P input's noise (default sqrt(0.01), as the released EZNAS code).")] = None,
    shard: Annotated[str, typer.Option("--shard", help="I/N: this job takes chunks I, I+N, ... (0-based).")] = "0/1",
    device: Annotated[str, typer.Option("--device", help=HELP["--device"])] = "auto",
    chunk_networks: Annotated[int, typer.Option("--chunk-networks", help="Networks per chunk (0: about 256 MB per chunk).")] = 0,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Benchmark column used as fitness target.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize (digits only).")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Skeleton width C (benchmark default).")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help="Cells per stage N (benchmark default).")] = None,
    no_proxies: Annotated[bool, typer.Option("--no-proxies", help="Skip the 13 default hand-crafted proxies (with --proxy: only those named).")] = False,
    proxy: Annotated[Optional[list[str]], typer.Option("--proxy", help="Also compute this proxy of the registry (repeatable): the modern ones are opt-in (az_expressivity, az_progressivity, az_trainability, az_complexity, meco, zico, swap, swap_reg).")] = None,
    no_statistics: Annotated[bool, typer.Option("--no-statistics", help="A proxies-only store: no statistics, only the proxies (the default 13 and any --proxy), each network written as it finishes.")] = False,
    proxy_batch_size: Annotated[int, typer.Option("--proxy-batch-size", help="Batch of the proxies (0: the statistics batch; NASLib used 64).")] = 0,
    redo_broken: Annotated[bool, typer.Option("--redo-broken", help="Recollect networks whose chunks 'verify' finds broken.")] = False,
    codec: Annotated[str, typer.Option("--codec", help="Codec of the float32 tensor arrays: lossless, compact (the measured default lossy spec), sumround:K[+zstd:L] (K = 1..23 mantissa bits kept, rounded so sums keep their value; L = Blosc zstd level 1..9, default 3), bitround:K[+zstd:L] (the same bits, each value to nearest) or zfp:TOL (absolute error bound; needs zfpy).")] = "lossless",
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Ingest even if the estimated size exceeds the free disk.")] = False,
    job: JobOption = None,
) -> None:
    """Collect the 22 EZNAS statistics and hand-crafted proxies of each network into a Zarr store
    (resumable, shardable); --no-statistics collects the proxies alone.

    First prints the plan (networks, estimated disk and time) and refuses one larger than
    the free disk unless --yes; the default --networks all is 15,625 NB201 cells.
    """
    given = dict(locals())
    from eznas_store.ingest import plan_announcer, run_ingest

    o = with_job(ctx, job, "ingest", given)
    report = run_ingest(_ingest_config(o), on_plan=plan_announcer(typer.echo, yes=bool(o["yes"])))
    typer.echo(report.line())


def _ingest_config(o: dict):
    """``ingest``'s options (command line over job file) as an ``IngestConfig``."""
    from eznas_store.ingest import IngestConfig, parse_shard
    from eznas_store.sources import parse_network_selection
    from eznas_store.terminals import DEFAULT_PERTURB_SCALE

    if not o["store"] or not o["dataset"]:
        fail("ingest needs --store and --dataset (on the command line or in --job)")
    sel = parse_network_selection(str(o["networks"]))
    scale = o["perturb_scale"]
    return IngestConfig(
        store=o["store"], dataset=o["dataset"], space=o["space"], skeleton=o.get("skeleton"), benchmark=o["benchmark"],
        data_root=o["data_root"],
        networks=tuple(sel) if isinstance(sel, list) else sel, seed=o["seed"], batch_size=o["batch_size"],
        structure=o["structure"], perturb_scale=DEFAULT_PERTURB_SCALE if scale is None else scale,
        shard=parse_shard(o["shard"]), device=o["device"], chunk_networks=o["chunk_networks"],
        accuracy_column=o["accuracy_column"], image_size=o["image_size"], C=o["channels"], N=o["cells"],
        proxies=not o["no_proxies"], proxy_names=tuple(o.get("proxy") or ()), statistics=not o.get("no_statistics"),
        proxy_batch_size=o["proxy_batch_size"], redo_broken=o["redo_broken"],
        codec=str(o.get("codec") or "lossless"), progress=not o["no_progress"],
    )


@app.command()
def verify(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Exit 0 for a store with networks not yet collected (corruption still exits 1).")] = False,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="The benchmark table the store was made from, if it moved (default: the path recorded at ingest).")] = None,
) -> None:
    """Read every chunk of every array; check the tables against their checksum, the plan and the
    benchmark they came from; name broken chunks and networks, count complete ones."""
    from eznas_store.ingest import check_benchmark
    from eznas_store.ingest import plan_layout
    from eznas_store.store import open_store
    from eznas_store.store import verify_store

    s = open_store(store)
    rep = verify_store(s, plan_layout(s.plan))
    against = check_benchmark(s, benchmark)
    for line in rep.lines(s.plan.archs) + against.lines():
        typer.echo(line)
    if not rep.ok or against.problems:
        raise typer.Exit(1)
    if not rep.complete and not allow_incomplete:
        typer.echo(f"  store is incomplete ({rep.n_networks - rep.n_complete} network(s) missing): "
                   "finish it with 'eznas-store ingest' or pass --allow-incomplete")
        raise typer.Exit(1)


@app.command()
def info(
    store: Annotated[str, typer.Argument(help="Store path or URL.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (NaN as null).")] = False,
) -> None:
    """Print a store's summary: plan, completion, sizes and accuracy range."""
    from eznas_store.store import open_store
    from eznas_store.store import store_summary

    if json_out:
        from eznas_store.fitness import json_text

        typer.echo(json_text(_info_json(open_store(store))))
        return
    typer.echo(store_summary(open_store(store)))


@app.command()
def transcode(
    source: Annotated[str, typer.Argument(help="A complete local store (any codec).")],
    target: Annotated[str, typer.Argument(help="The new local store to write.")],
    codec: Annotated[str, typer.Option("--codec", help="Codec of the new store's tensor arrays, as ingest --codec (compact, sumround:K, bitround:K, zfp:TOL, lossless).")] = "compact",
) -> None:
    """Write a copy of a store with another tensor codec: tables, flags and proxies as they are,
    tensors re-encoded chunk by chunk; the store 'ingest --codec' would have written.

    The source must verify; the copy is written beside the target as .<name>.transcode-partial
    and renamed to it once every chunk is written and read back, so a failed or killed run
    leaves no target (rerun the same command to resume)."""
    import time

    from eznas_store.ingest import check_codec
    from eznas_store.store import transcode_store
    from eznas_store.store import codec_line

    spec = check_codec(codec)
    t0 = time.perf_counter()
    s = transcode_store(source, target, spec, say=typer.echo)
    typer.echo(f"transcoded {s.n_networks} networks in {time.perf_counter() - t0:.0f} s → {target}: "
               f"{codec_line(s.plan.codec)}")


def _info_json(s) -> dict:
    """``info --json``: the plan's main fields, completion and every accuracy column's range."""
    import numpy as np

    from eznas_store.store import intact_networks

    p = s.plan
    complete, lost, tables = intact_networks(s)

    def spread(values) -> dict:
        a = np.asarray(values, dtype=np.float64)
        a = a[np.isfinite(a)]
        return {"min": a.min() if a.size else None, "mean": a.mean() if a.size else None,
                "max": a.max() if a.size else None, "n_finite": int(a.size)}

    return {
        "url": s.url, "space": p.space, "dataset": p.dataset, "n_networks": s.n_networks,
        "complete": int(complete.sum()), "complete_but_missing_chunks": lost, "missing_table_chunks": tables,
        "chunk_networks": s.chunk_networks,
        "structure": p.collect.structure, "batch_size": p.collect.batch_size, "seed": p.collect.seed,
        "image_size": p.image_size, "num_classes": p.num_classes, "C": p.C, "N": p.N,
        "benchmark": p.benchmark, "accuracy_column": p.accuracy_column,
        "accuracy_columns": {c: spread(v) for c, v in p.accuracies.items()},
        "proxies": list(p.proxies), "proxy_batch_size": p.proxy_batch_size, "statistics": p.statistics,
        "label_sets": [{"name": n, "classes": c, "accuracy_column": col} for n, c, col in p.heads()],
        "suitezero_proxies": list(p.suitezero_proxies),
        "format_version": s.meta.get("format_version"), "codec": p.codec,
    }


@app.command()
def label(
    out: Annotated[str, typer.Option("--out", help="Benchmark CSV to write (NB201 table format + .meta.json recipe).")],
    dataset: Annotated[str, typer.Option("--dataset", help=HELP["--dataset"])] = "digits",
    data_root: Annotated[Optional[str], typer.Option("--data-root", help=HELP["--data-root"])] = None,
    space: Annotated[str, typer.Option("--space", help=HELP["--space"])] = "nb201",
    networks: Annotated[str, typer.Option("--networks", help="A number (seeded sample), a cell string or a file of cells.")] = "40",
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    epochs: Annotated[int, typer.Option("--epochs", help=HELP["--epochs"])] = 12,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch of each cell (default 256; not a statistics batch).")] = 256,
    lr: Annotated[float, typer.Option("--lr", help=HELP["--lr"])] = 0.1,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Skeleton width C.")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help="Cells per stage N.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help=HELP["--image-size"])] = None,
    device: Annotated[str, typer.Option("--device", help=HELP["--device"])] = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
) -> None:
    """Train cells for a fixed budget and write a benchmark table: ground truth no benchmark covers."""
    from eznas_store.sources import parse_network_selection
    from eznas_store.collect import LabelConfig, run_label

    sel = parse_network_selection(networks)
    if sel is None:
        fail("label needs a number of networks or a list of cells, not 'all'")
    cfg = LabelConfig(out=out, space=space, dataset=dataset, data_root=data_root,
                      networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed, epochs=epochs,
                      batch_size=batch_size, lr=lr, C=channels, N=cells, image_size=image_size,
                      device=device, progress=not no_progress)
    rep = run_label(cfg)
    typer.echo(rep.line() if hasattr(rep, "line") else str(rep))
