"""evolve on a Slurm (or PBS) cluster through dask-jobqueue.

    pip install dask-jobqueue
    python jobs/evolve-dask-jobqueue.py --workers 16 --out runs/slurm-paper

The driver runs on the login/head node; each Dask worker is one single-threaded Slurm
job that reads one chunk at a time from the shared store. The job file is read by the
library (`config.job_config`), and the run is the library's
`run_evolve`: nothing here goes through the command line's code.
"""

import argparse
from pathlib import Path

from dask_jobqueue import SLURMCluster  # or PBSCluster

from eznas_store.config import job_config
from eznas_store.evolution.evolve import EvolveConfig, run_evolve

ap = argparse.ArgumentParser()
ap.add_argument("--workers", type=int, default=16)
ap.add_argument("--out", default="runs/slurm-paper")
ap.add_argument("--job", default=str(Path(__file__).resolve().parent / "evolve-paper.toml"))
args = ap.parse_args()
cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00", job_name="eznas-evolve")
cluster.scale(jobs=args.workers)
options = job_config(args.job, "evolve") | {"out": args.out, "scheduler": cluster.scheduler_address, "workers": 0}
result = run_evolve(EvolveConfig(**options))
print(f"best of the final population: {result.best_final.formula()}")
