"""``eznas-store proxy-table``: the proxies-only collection of NB201 cells (per label set) or DARTS genotypes into a store.

Registered on import, like the other command modules. The stage is imported inside the
command so that ``eznas-store -h`` does not load torch.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from eznas_store.cli.app import HELP, app


@app.command("proxy-table")
def proxy_table(
    store: Annotated[Optional[str], typer.Option("--store", help="The proxies-only store to create or continue (a path or fsspec URL).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="Required: NB201 accuracy table with one column per label set (cifar10_test, cifar100_test, imagenet16_test); for --space darts a DARTS table (genotype, accuracy).")] = None,
    space: Annotated[str, typer.Option("--space", help="nb201 or darts (one label set, cifar10; SWAP on SWAP's network, the others on NetworkCIFAR C=4, L=3 unless --channels/--cells).")] = "nb201",
    skeleton: Annotated[Optional[str], typer.Option("--skeleton", help="darts only: eval (NetworkCIFAR at --channels/--cells, the default) or swap (every proxy on SWAP's stem-less one-cell network).")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Required (but for --dataset digits): the dataset's images (CIFAR-10 pickles or image folder), the proxies' input.")] = None,
    suitezero: Annotated[Optional[str], typer.Option("--suitezero", help="Suite-Zero zc_nasbench201.json[.gz]: NASLib's 13 proxies are joined from it (not computed), and a sample is drawn from its cells.")] = None,
    networks: Annotated[Optional[str], typer.Option("--networks", help="A number (seeded sample), 'all', a cell string or a file of cells (default: 1100 NB201 cells; every DARTS genotype of the table).")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Images the proxies read: cifar10 (the papers') or digits (tests).")] = "cifar10",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the cell sample, the image batch, inits and noise; 0 to 2**32-1.")] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per proxy batch (default NB201: the papers' 64, DARTS: 16; ZiCo takes two such batches; SWAP reads the first 16).")] = None,
    label_set: Annotated[Optional[list[str]], typer.Option("--label-set", help="cifar10, cifar100, imagenet16 (repeatable; default all three; DARTS: cifar10 only): one classifier head each.")] = None,
    proxy: Annotated[Optional[list[str]], typer.Option("--proxy", help="Proxies to compute (repeatable; any of the registry; default NB201: the 8 modern ones, DARTS: NASLib's 13 and the modern ones but swap_reg).")] = None,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="The benchmark column of the store's accuracy (default: the dataset's; DARTS tables: cifar10_valid).")] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="Skeleton width C (NB201: 16; DARTS proxy table: 4).")] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help="Cells per stage N (NB201: 5); DARTS: layers L (proxy table: 3).")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help=HELP["--image-size"])] = None,
    shard: Annotated[str, typer.Option("--shard", help="I/N: this job takes chunks I, I+N, ... (0-based).")] = "0/1",
    export: Annotated[Optional[str], typer.Option("--export", help="Also write the store's proxies as an eznas-proxy-table/1 CSV (+ .meta.json) here, as proxy-table wrote before stores.")] = None,
    export_only: Annotated[bool, typer.Option("--export-only", help="Only write --export from the existing --store; collect nothing.")] = False,
    redo_broken: Annotated[bool, typer.Option("--redo-broken", help="Recompute the networks whose chunks 'verify' finds broken.")] = False,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop after this many seconds (0: no cap); rerun to continue.")] = 0.0,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda[:k].")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="Torch threads, 1 to 256 (1 keeps results bit-reproducible).")] = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars (for logs and batch jobs).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Collect even if the estimated size exceeds the free disk.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", hidden=True, help="Replaced by --store (and --export for the CSV).")] = None,
) -> None:
    """Modern proxies (AZ-NAS, MeCo, ZiCo, SWAP) of NB201 cells per label set into a proxies-only
    store (ingest --no-statistics), NASLib's 13 joined from Suite-Zero; --space darts: DARTS
    genotypes with the 13 computed, SWAP on its paper's network; --export writes the CSV."""
    from eznas_store.errors import ConfigError

    if out is not None:
        raise ConfigError(f"proxy-table writes a store now: give --store S.zarr (and --export {out} for the CSV "
                          "table it wrote before)")
    if not store:
        raise ConfigError("proxy-table needs --store (the proxies-only store to create or continue)")
    if export_only:
        _export_only(store, export)
        return
    o = dict(locals())
    from eznas_store.ingest import MAX_THREADS, collect_proxy_table, plan_announcer

    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be from 1 to {MAX_THREADS}, got {threads}")
    cfg = _config(o)
    import torch

    torch.set_num_threads(threads)
    res = collect_proxy_table(cfg, on_plan=plan_announcer(typer.echo, yes=yes))
    typer.echo(res.line)
    if res.export is not None:
        typer.echo(f"exported {res.export} ({FORMAT_NOTE})")


def _config(o: dict):
    """The command's options as a ``ProxyTableConfig`` (defaults of the space where not given)."""
    from eznas_store.ingest import ProxyTableConfig, parse_shard
    from eznas_store.sources import parse_network_selection

    networks = o["networks"] if o["networks"] is not None else "all" if o["space"] == "darts" else "1100"
    sel = parse_network_selection(networks)
    kw = {"proxies": tuple(o["proxy"])} if o["proxy"] else {}
    return ProxyTableConfig(
        store=o["store"], benchmark=o["benchmark"], data_root=o["data_root"], suitezero=o["suitezero"],
        dataset=o["dataset"], networks=tuple(sel) if isinstance(sel, list) else sel, seed=o["seed"],
        batch_size=o["batch_size"], label_sets=tuple(o["label_set"]) if o["label_set"] else None,
        space=o["space"], skeleton=o["skeleton"], accuracy_column=o["accuracy_column"], channels=o["channels"],
        cells_per_stage=o["cells"], image_size=o["image_size"], shard=parse_shard(o["shard"]),
        progress=not o["no_progress"], max_seconds=o["max_seconds"], device=o["device"], export=o["export"],
        redo_broken=o["redo_broken"], **kw)


#: what an export is, for the line that names it
FORMAT_NOTE = "eznas-proxy-table/1 CSV + .meta.json: complete networks only"


def _export_only(store: str, export: str | None) -> None:
    """``--export-only``: the CSV of an existing store, nothing collected."""
    from eznas_store.errors import ConfigError
    from eznas_store.ingest import export_proxy_csv

    if not export:
        raise ConfigError("--export-only needs --export T.csv")
    if not str(export).endswith(".csv"):
        raise ConfigError(f"--export must name a .csv file, got {export!r}")
    typer.echo(f"exported {export_proxy_csv(store, export)} ({FORMAT_NOTE})")
