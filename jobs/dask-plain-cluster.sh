#!/usr/bin/env bash
# evolve on a plain dask.distributed cluster: one scheduler, N single-threaded workers.
# Workers must see the store path (shared filesystem) or an fsspec URL.
set -euo pipefail
PORT=${PORT:-8786}
dask scheduler --port "$PORT" --no-dashboard & SCHED=$!
sleep 3
for i in $(seq 1 "${WORKERS:-2}"); do
  dask worker "tcp://127.0.0.1:$PORT" --nthreads 1 --nworkers 1 --no-dashboard & 
done
trap 'kill $(jobs -p) 2>/dev/null' EXIT
eznas-store evolve --job jobs/evolve-paper.toml --scheduler "tcp://127.0.0.1:$PORT" "$@"
