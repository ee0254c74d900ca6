"""Commands that evolve, score and report programs: evolve, score, report.

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
def evolve(
    ctx: typer.Context,
    stores: Annotated[Optional[list[str]], typer.Argument(help="One store per evolution task (fitness: min over tasks).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Run directory (programs, log, checkpoint, scores).")] = None,
    population: Annotated[int, typer.Option("--population", help=HELP["--population"])] = PAPER_GP.population,
    mu: Annotated[Optional[int], typer.Option("--mu", help="Parents kept per generation (default: population // 2).")] = None,
    lambda_: Annotated[Optional[int], typer.Option("--lambda", help="Children per generation (default: population).")] = None,
    cxpb: Annotated[float, typer.Option("--cxpb", help=HELP["--cxpb"])] = PAPER_GP.cxpb,
    mutpb: Annotated[float, typer.Option("--mutpb", help=HELP["--mutpb"])] = PAPER_GP.mutpb,
    tournament: Annotated[int, typer.Option("--tournament", help=HELP["--tournament"])] = PAPER_GP.tournament,
    min_depth: Annotated[int, typer.Option("--min-depth", help=HELP["--min-depth"])] = PAPER_GP.min_depth,
    max_depth: Annotated[int, typer.Option("--max-depth", help=HELP["--max-depth"])] = PAPER_GP.max_depth,
    generations: Annotated[int, typer.Option("--generations", help=HELP["--generations"])] = PAPER_GP.generations,
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    combine: Annotated[str, typer.Option("--combine", help="min (EZNAS) or mean over tasks.")] = "min",
    fitness: Annotated[str, typer.Option("--fitness", help="--over proxies: what each task's fitness measures: tau (Kendall tau, EZNAS) or weighted_tau (weighted Kendall tau, hyperbolic weights on the top of the score and accuracy rankings: ordering the top networks counts most).")] = "tau",
    accuracy_column: Annotated[Optional[list[str]], typer.Option("--accuracy-column", help="Label column of the STOREs (default: the one chosen at ingest). Repeatable: each store x each column is one task.")] = None,
    abs_tau: Annotated[bool, typer.Option("--abs-tau", help="Use |tau| as the released EZNAS code did.")] = False,
    to_scalar: Annotated[str, typer.Option("--to-scalar", help="Per-block reduction: mean or l2.")] = "mean",
    workers: Annotated[int, typer.Option("--workers", help=HELP["--workers"])] = 0,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help=HELP["--scheduler"])] = None,
    max_networks: Annotated[Optional[int], typer.Option("--max-networks", help="Use only the first N usable networks of each store.")] = None,
    over: Annotated[str, typer.Option("--over", help="statistics: programs over the 22 per-block statistics of STOREs; proxies: formulas over hand-crafted proxy values (STOREs with proxies, proxies-only stores, Suite-Zero zc_*.json files or proxy-table CSVs).")] = "statistics",
    representation: Annotated[str, typer.Option("--representation", help="tree (EZNAS) or sequential (AutoML-Zero instruction lists, EZNAS appendix 1.2).")] = "tree",
    problems: Annotated[Optional[list[str]], typer.Option("--problems", help="--over proxies: problems to train on (default all); the others are test problems. Repeatable.")] = None,
    train_networks: Annotated[int, typer.Option("--train-networks", help="--over proxies: networks per training problem to evolve on; the rest are held out.")] = 100,
    graph_features: Annotated[bool, typer.Option("--graph-features", help="--over proxies: the cells' graph features (graph_*: op counts, paths, conv ops on paths, depth, degrees; computed from each cell string) are terminals beside the proxies.")] = False,
    min_length: Annotated[int, typer.Option("--min-length", help="--representation sequential: fewest instructions.")] = 2,
    max_length: Annotated[int, typer.Option("--max-length", help="--representation sequential: most instructions.")] = 32,
    split: Annotated[Optional[str], typer.Option("--split", help="--over statistics: TRAIN/VAL/TEST networks of each store (counts, fractions or one 'rest', e.g. 100/200/rest), seeded by --seed: fitness on train, best_ever by validation tau, final programs scored on test. Default: all networks train.")] = None,
    test_store: Annotated[Optional[list[str]], typer.Option("--test-store", help="--over statistics: a store whose networks are all test networks (e.g. another batch size). Repeatable.")] = None,
    equivalence_cache: Annotated[bool, typer.Option("--equivalence-cache/--no-equivalence-cache", help="--over statistics: a program whose outputs on a small probe of networks match a scored program's takes its fitness without being scored.")] = False,
    racing: Annotated[float, typer.Option("--racing", help="--over statistics: score children on this fraction of the train networks first (whole chunks) and finish only those that could be selected (0: off).")] = 0.0,
    chunk_cache_mb: Annotated[Optional[float], typer.Option("--chunk-cache-mb", help="--over statistics: keep decoded chunks (as read) across generations, up to this many MB per scoring process, counted as they are held (0: off). Default: sized to the stores and the machine (at most 128 MB, never more than the stores hold decoded, and with the subtree cache at most a quarter of the available memory, shared by the workers); run.json 'caches' says what was chosen. Scores do not change.")] = None,
    subtree_cache_mb: Annotated[Optional[float], typer.Option("--subtree-cache-mb", help="--over statistics: keep small per-block subtree outputs across generations, up to this many MB per scoring process, objects around them counted (0: off). Default: sized (at most 64 MB); see --chunk-cache-mb. Scores do not change.")] = None,
    seed_programs: Annotated[Optional[str], typer.Option("--seed-programs", help="Comma-separated programs (names such as eznas-a, or JSON files) put into the first population.")] = None,
    evolve_aggregate: Annotated[bool, typer.Option("--evolve-aggregate", help="--representation tree: evolve each program's network aggregate (mean, sum, depth-weighted mean) with its tree.")] = False,
    op_set: Annotated[str, typer.Option("--op-set", help="--over statistics, trees: paper (the seed paper's Table 1 + the released logdet) or extended (+ channel covariance/correlation, eigenvalue min/max/entropy, effective rank).")] = "paper",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
    job: JobOption = None,
) -> None:
    """Evolve a proxy program by genetic programming (EZNAS appendix 1.7 defaults)."""
    given = dict(locals())
    from eznas_store.evolution import EvolveConfig, run_evolve

    o = with_job(ctx, job, "evolve", given)
    o.pop("resume"), o.pop("no_progress")
    if job and not o["out"]:  # a job file names the campaign: one run folder per seed
        o["out"] = f"runs/{Path(job).stem}-seed{o['seed']}"
        typer.echo(f"run folder: {o['out']}")
    if not o["stores"] or not o["out"]:
        fail("evolve needs at least one STORE and --out (on the command line or in --job)")
    cfg = EvolveConfig(**_evolve_options(o), progress=not no_progress)
    res = run_evolve(cfg, resume=resume)
    typer.echo(_evolve_summary(cfg, res))
    for line in _after_run_lines(cfg, res):
        typer.echo(line)
    typer.echo(f"programs in {res.out / 'programs'}; report with: eznas-store report {res.out}")


def _evolve_summary(cfg, res) -> str:
    """The best final program's fitness, saying what it combines: which tasks, which labels."""
    import json

    best = res.best_final
    fit = best.meta.get("fitness")
    fit = f"{fit:.4f}" if isinstance(fit, (int, float)) else "n/a"
    where = ""
    if cfg.over == "statistics":
        tasks = json.loads((res.out / "run.json").read_text()).get("tasks") or []
        names = [f"{t.get('name')} (label {t['label']})" if t.get("label") else str(t.get("name")) for t in tasks]
        where = f" ({cfg.combine} over {'; '.join(names)})" if len(names) > 1 else f" (on {''.join(names)})"
    return (f"evolved {res.generations} generations in {res.seconds:.1f} s; best of the final population: "
            f"{cfg.fitness} {fit}{where}: {best.formula()}")


def _after_run_lines(cfg, res) -> list[str]:
    """What evolve prints after its summary: round-off, generalisation, the proxies' matrix."""
    matrix = [(res.out / "cross_problem" / "matrix.txt").read_text().rstrip()] if cfg.over == "proxies" else []
    return [*_roundoff_lines(res), *_generalisation_lines(res.out), *matrix]


def _roundoff_lines(res) -> list[str]:
    """What the round-off check said of the saved programs (statistics evolves): one line, and
    one per program whose ranking is set by float32 round-off."""
    checked = [p for p in (res.best_final, *res.best_ever) if "roundoff" in p.meta]
    if not checked:
        return []
    bad = [p for p in checked if p.meta["roundoff"]["round_off_determined"]]
    lines = [f"round-off check (every statistic nudged by one float32 ulp): {len(checked) - len(bad)} of "
             f"{len(checked)} saved programs stable"]
    for p in bad:
        shift = p.meta["roundoff"]["shift"]
        lines.append(f"  {p.name}: ROUND-OFF-DETERMINED (a score moves by {'inf' if shift is None else f'{shift:.2g}'} of "
                     f"the scores' spread): its tau will not hold on another copy of the statistics "
                     f"(a lossy store, other hardware): {p.formula()}")
    return lines


def _evolve_options(o: dict) -> dict:
    """Command-line/job values as EvolveConfig fields (tuples; repeatable flags renamed)."""
    o["stores"] = tuple(o["stores"])
    o["problems"] = tuple(o.get("problems") or ())
    o["accuracy_columns"] = tuple(o.pop("accuracy_column") or ()) or None
    o["test_stores"] = tuple(o.pop("test_store") or ())
    seeds = o.get("seed_programs") or ()
    seeds = seeds.split(",") if isinstance(seeds, str) else seeds
    o["seed_programs"] = tuple(s.strip() for s in seeds if s.strip())
    return o


def _generalisation_lines(out) -> list[str]:
    """Train / validation / test tau of the final programs, when the run held networks out."""
    import json

    final = json.loads((out / "run.json").read_text()).get("final") or {}
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
    return [f"{role}: train tau {fmt(s.get('train'))}, validation tau {fmt(s.get('validation'))}, "
            f"test tau {fmt(s.get('test'))}" for role, s in final.items()]


@app.command()
def score(
    store: Annotated[Optional[str], typer.Argument(help="Store to score (omit to collect on the fly).")] = None,
    program: Annotated[Optional[list[str]], typer.Option("--program", help="Program JSON file or a name (eznas-a). Repeatable.")] = None,
    proxy: Annotated[Optional[list[str]], typer.Option("--proxy", help="A hand-crafted proxy (synflow, nwot, ...): the values ingest stored, or computed on the fly without a STORE. Repeatable.")] = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Folder for scores.csv (per network: program, task, label, network, arch, accuracy, score) and scores.json (the summary).")] = None,
    accuracy_column: Annotated[Optional[str], typer.Option("--accuracy-column", help="Label to correlate with: any accuracy column the store (or --benchmark) holds (default: the one chosen at ingest).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout (unrounded; NaN as null).")] = False,
    to_scalar: Annotated[Optional[str], typer.Option("--to-scalar", help="Override the programs' reduction: mean or l2.")] = None,
    workers: Annotated[int, typer.Option("--workers", help=HELP["--workers"])] = 0,
    space: Annotated[str, typer.Option("--space", help=HELP["--space"])] = "nb201",
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", help=HELP["--benchmark"])] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help=HELP["--dataset"])] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help=HELP["--data-root"])] = None,
    networks: Annotated[str, typer.Option("--networks", help=HELP["--networks"])] = "100",
    seed: Annotated[int, typer.Option("--seed", help=HELP["--seed"])] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help=HELP["--batch-size"])] = 16,
    structure: Annotated[str, typer.Option("--structure", help=HELP["--structure"])] = "rcb",
    device: Annotated[str, typer.Option("--device", help=HELP["--device"])] = "auto",
    image_size: Annotated[Optional[int], typer.Option("--image-size", help=HELP["--image-size"])] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help=HELP["--channels"])] = None,
    cells: Annotated[Optional[int], typer.Option("--cells", help=HELP["--cells"])] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help=HELP["--no-progress"])] = False,
    roundoff: Annotated[bool, typer.Option("--roundoff", help="Also score each program with every stored statistic nudged by one float32 ulp, and say which programs' rankings are set by round-off (a score moving by over 1 % of the scores' spread).")] = False,
) -> None:
    """Kendall tau and Spearman rho of programs and proxies, from a store or straight from networks (no store)."""
    programs = _score_programs(store, program, proxy, dataset, benchmark, roundoff, to_scalar, workers, out)
    checks: dict = {}
    if store is not None:
        results = _score_store(store, programs, proxy or [], accuracy_column, to_scalar, workers, no_progress)
        if roundoff and programs:
            checks = _roundoff(store, programs, results[len(results) - len(programs):], accuracy_column, to_scalar)
    else:
        from eznas_store.config import check_seed
        from eznas_store.ingest import IngestConfig
        from eznas_store.sources import parse_network_selection

        check_seed(seed)
        sel = parse_network_selection(networks)
        cfg = IngestConfig(store="", dataset=dataset, space=space, benchmark=benchmark, data_root=data_root,
                           networks=tuple(sel) if isinstance(sel, list) else sel, seed=seed,
                           batch_size=batch_size, structure=structure, device=device, image_size=image_size,
                           C=channels, N=cells, accuracy_column=accuracy_column, progress=not no_progress)
        results = _score_on_the_fly(cfg, programs, proxy or [], to_scalar, no_progress)
    _print_results(results, out, json_out, checks)


def _score_programs(store: str | None, program: list[str] | None, proxy: list[str] | None,
                    dataset: str | None, benchmark: str | None, roundoff: bool, to_scalar: str | None,
                    workers: int, out: str | None) -> list:
    """``score``'s checks that need no store and no network, made before any work (``--out``
    made now); the programs."""
    from eznas_store.fitness import require_statistics_programs
    from eznas_store.storeless import check_to_scalar
    from eznas_store.outputs import ensure_dir
    from eznas_store.programs import load_program

    if store is None and dataset is None:
        fail("score without a STORE needs --dataset (and --benchmark, --data-root) to collect on the fly")
    if roundoff and store is None:
        fail("--roundoff needs a STORE: it rescores the stored statistics nudged by one float32 ulp")
    if store is None and benchmark is None:
        fail("score without a STORE needs --benchmark: the networks' accuracies come from its table "
             "(without one there is nothing to correlate the scores with)")
    from eznas_store.config import MAX_WORKERS, check_count

    check_count(workers, "--workers", 0, MAX_WORKERS)
    check_to_scalar(to_scalar)
    if proxy and store is None:
        from eznas_store.collect import check_proxy_names

        check_proxy_names(proxy)
    programs = [load_program(p, require_output=True) for p in (program or ([] if proxy else ["eznas-a"]))]
    require_statistics_programs(programs)
    if out:
        ensure_dir(out)
    return programs


def _score_store(store: str, programs: list, proxies: list[str], accuracy_column: str | None,
                 to_scalar: str | None, workers: int, no_progress: bool) -> list:
    """``score STORE``: the stored proxies' values and the programs, against one label."""
    from eznas_store.fitness import Engine, score_store
    from eznas_store.studies import stored_proxy_results

    results = stored_proxy_results(store, proxies, accuracy_column=accuracy_column) if proxies else []
    if programs:
        with Engine(workers=workers, progress=not no_progress) as engine:
            results += score_store(store, programs, engine=engine, to_scalar=to_scalar,
                                   accuracy_column=accuracy_column)
    return results


def _roundoff(store: str, programs: list, results: list, accuracy_column: str | None,
              to_scalar: str | None) -> dict:
    """``score --roundoff``: each program's round-off check, keyed by ``id`` of its result."""
    from eznas_store.fitness import roundoff_check

    found = roundoff_check(store, programs, results, accuracy_column=accuracy_column, to_scalar=to_scalar)
    return dict(zip(map(id, results), found))


def _score_on_the_fly(cfg, programs: list, proxies: list[str], to_scalar: str | None, no_progress: bool) -> list:
    """``score`` without a STORE: proxies and statistics collected network by network, discarded."""
    from eznas_store.storeless import score_storeless, score_storeless_proxies

    # as from a store, networks without an accuracy are left out (never collected)
    results = score_storeless_proxies(cfg, proxies, progress=not no_progress, labelled_only=True) if proxies else []
    if programs:
        results += score_storeless(cfg, programs, to_scalar=to_scalar, progress=not no_progress,
                                   labelled_only=True)
    return results


def _print_results(results: list, out: str | None, json_out: bool, checks: dict | None = None) -> None:
    """One line per result (4 decimals) and its round-off check (``checks``: by ``id`` of the
    result), or with ``json_out`` only JSON on stdout; then the CSV."""
    from eznas_store.fitness import json_text, result_json, write_scores_csv
    from eznas_store.outputs import ensure_dir, write_atomic

    checks = checks or {}
    docs = [result_json(r) | ({"roundoff": checks[id(r)].json()} if id(r) in checks else {}) for r in results]
    if json_out:
        typer.echo(json_text(docs))
    else:
        for r in results:
            typer.echo(r.line())
            if id(r) in checks:
                typer.echo("  " + checks[id(r)].line())
    if out:
        folder = ensure_dir(out)
        write_scores_csv(folder / "scores.csv", results)
        write_atomic(folder / "scores.json", json_text(docs) + "\n")
        typer.echo(f"per-network scores → {folder / 'scores.csv'}; summary → {folder / 'scores.json'}", err=json_out)


@app.command()
def report(
    run_dirs: Annotated[list[str], typer.Argument(help="An evolve run directory; several: one comparison report.")],
    out: Annotated[Optional[str], typer.Option("--out", help="With several runs: where the comparison goes.")] = None,
) -> None:
    """One run: RUN/report.md + .html (fitness curve, scatter plots, best program tree).
    Several runs (e.g. the statistic variants R-C-B/C-B-R x mean/L2, or tree vs sequential):
    one comparison table + overlaid fitness curves in --out."""
    from eznas_store.report import write_comparison
    from eznas_store.report import write_report

    if len(run_dirs) == 1 and out is None:
        md, html = write_report(run_dirs[0])
        typer.echo(f"report → {html} (and {md})")
        return
    if out is None:
        fail("several runs are compared into one report: give --out DIR")
    md, html, csv = write_comparison(run_dirs, out)
    import pandas as pd

    table = pd.read_csv(csv).drop(columns=["formula"])
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"comparison → {html} (and {md}, {csv})")
