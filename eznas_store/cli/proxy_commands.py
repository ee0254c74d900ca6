"""``eznas-store proxy-table``: a proxies-only network x proxy table of NB201 cells (resumable).

Registered on import, like the other command modules. The stage is imported inside the
command so that ``eznas-store -h`` does not load torch.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from eznas_store.cli.app import app


@app.command("proxy-table")
def proxy_table(
    out: Annotated[str, typer.Option("--out", help="The table to create or continue (.csv; the recipe goes to .meta.json beside it).")],
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help="Required: NB201 accuracy table with cifar10_test, cifar100_test, imagenet16_test.")] = None,
    suitezero: Annotated[Optional[str], typer.Option("--suitezero", help="Required: Suite-Zero zc_nasbench201.json[.gz]: NASLib's 13 proxies are joined from it, and only its cells are taken.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Required: CIFAR-10 images (pickles or image folder): the proxies' input.")] = None,
    networks: Annotated[int, typer.Option("--networks", help="Cells: the first N of a permutation seeded by --seed (a larger N extends the table).")] = 1100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the cell sample, the image batch, inits and noise; 0 to 2**32-1.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per proxy batch (the papers' 64; ZiCo takes two such batches).")] = 64,
    label_set: Annotated[Optional[list[str]], typer.Option("--label-set", help="cifar10, cifar100, imagenet16 (repeatable; default all three): one classifier head each.")] = None,
    proxy: Annotated[Optional[list[str]], typer.Option("--proxy", help="Modern proxies to compute (repeatable; default all of MODERN_PROXY_NAMES).")] = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop after this many seconds (0: no cap); rerun to continue.")] = 0.0,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if present), cpu or cuda[:k].")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="Torch threads, 1 to 256 (1 keeps results bit-reproducible).")] = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars (for logs and batch jobs).")] = False,
) -> None:
    """Modern proxies (AZ-NAS, MeCo, ZiCo, SWAP) of NB201 cells + NASLib's 13 joined from Suite-Zero."""
    from eznas_store.errors import ConfigError
    from eznas_store.ingest import LABEL_SETS, MAX_THREADS, ProxyTableConfig, collect_proxy_table

    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be from 1 to {MAX_THREADS}, got {threads}")
    kw = {"label_sets": tuple(label_set)} if label_set else {"label_sets": tuple(LABEL_SETS)}
    if proxy:
        kw["proxies"] = tuple(proxy)
    cfg = ProxyTableConfig(out=out, benchmark=benchmark, suitezero=suitezero, data_root=data_root,
                           networks=networks, seed=seed, batch_size=batch_size, progress=not no_progress,
                           max_seconds=max_seconds, device=device, **kw)
    import torch

    torch.set_num_threads(threads)
    res = collect_proxy_table(cfg)
    more = f" ({res.stopped}; rerun to continue)" if res.stopped else ""
    typer.echo(f"{res.out}: {res.done}/{res.target} cells, {res.new} new in {res.seconds:.1f} s "
               f"({res.cells_per_second:.4f} cells/s){more}")
