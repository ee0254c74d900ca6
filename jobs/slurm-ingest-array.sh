#!/usr/bin/env bash
# Sharded ingest on GPU nodes: one array task per shard, all writing one store.
#   sbatch --array=0-7 jobs/slurm-ingest-array.sh
# A preempted or failed task is simply resubmitted: finished chunks are skipped and a
# chunk interrupted mid-write is redone (its completion flags are written last).
#SBATCH --job-name=eznas-ingest
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
set -euo pipefail
trap 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' USR1
eznas-store ingest --job jobs/ingest-nb201-cifar10.toml \
  --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" --device cuda --no-progress &
wait $!
