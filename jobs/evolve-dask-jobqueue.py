"""evolve on a Slurm (or PBS) cluster through dask-jobqueue.

    pip install dask-jobqueue
    python jobs/evolve-dask-jobqueue.py --workers 16 --out runs/slurm-paper

The driver runs on the login/head node; each Dask worker is one single-threaded Slurm
job that reads one chunk at a time from the shared store.
"""

import argparse

from dask_jobqueue import SLURMCluster  # or PBSCluster

from eznas_store.cli import main

ap = argparse.ArgumentParser()
ap.add_argument("--workers", type=int, default=16)
ap.add_argument("--out", default="runs/slurm-paper")
args = ap.parse_args()
cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00", job_name="eznas-evolve")
cluster.scale(jobs=args.workers)
raise SystemExit(main(["evolve", "--job", "jobs/evolve-paper.toml", "--scheduler", cluster.scheduler_address,
                       "--out", args.out]))
