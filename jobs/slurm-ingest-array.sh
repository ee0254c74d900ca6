#!/usr/bin/env bash
# Sharded ingest on GPU nodes: one array task per shard, all writing one store.
#   SHARDS=8 sbatch --array=0-7 --export=ALL,SHARDS=8 jobs/slurm-ingest-array.sh
# The shard count is passed explicitly (SHARDS), never read from SLURM_ARRAY_TASK_COUNT:
# resubmitting one failed task (`sbatch --array=3 --export=ALL,SHARDS=8 ...`) must still
# run shard 3/8, and SLURM_ARRAY_TASK_COUNT is 1 for such a resubmission.
# A preempted or failed task is simply resubmitted: finished chunks are skipped and a
# chunk interrupted mid-write is redone (its completion flags are written last).
# Runs from any directory: the job file is found beside this script.
#SBATCH --job-name=eznas-ingest
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# 2 CPUs: the collector runs one pinned torch thread (bit-reproducible gradients) and the
# data loader / Zarr compression take the other.
set -euo pipefail
: "${SHARDS:?set SHARDS to the number of shards of the whole array, e.g. --export=ALL,SHARDS=8}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -f "$HERE/ingest-nb201-cifar10.toml" ] || HERE="${SLURM_SUBMIT_DIR:-.}/jobs"  # sbatch copies the script
trap 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' USR1
eznas-store ingest --job "$HERE/ingest-nb201-cifar10.toml" \
  --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" --device cuda --no-progress &
wait $!
