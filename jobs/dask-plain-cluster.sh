#!/usr/bin/env bash
# evolve on a plain dask.distributed cluster: one scheduler, N single-threaded workers.
# Workers must see the store path (shared filesystem) or an fsspec URL.
#
# By default everything listens on loopback (127.0.0.1) only: a dask scheduler runs any
# function a client sends it, so it must never be reachable unauthenticated. For workers
# on other hosts, use TLS with mutual certificates (distributed's security settings):
#   dask scheduler --host 0.0.0.0 --protocol tls --tls-ca-file ca.pem \
#       --tls-cert sched.pem --tls-key sched.key
#   dask worker tls://HEAD:8786 --tls-ca-file ca.pem --tls-cert worker.pem --tls-key worker.key
#   DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca.pem DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=client.pem \
#   DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=client.key DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True \
#       eznas-store evolve --job jobs/evolve-paper.toml --scheduler tls://HEAD:8786
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST=127.0.0.1
PORT=${PORT:-8786}
dask scheduler --host "$HOST" --port "$PORT" --no-dashboard & SCHED=$!
trap 'kill $(jobs -p) 2>/dev/null' EXIT
for _ in $(seq 1 50); do  # wait until the scheduler accepts connections
  python3 -c "import socket,sys; socket.create_connection(('$HOST', $PORT), 1)" 2>/dev/null && break
  sleep 0.2
done
for i in $(seq 1 "${WORKERS:-2}"); do
  dask worker "tcp://$HOST:$PORT" --host "$HOST" --nthreads 1 --nworkers 1 --no-dashboard &
done
eznas-store evolve --job "$HERE/evolve-paper.toml" --scheduler "tcp://$HOST:$PORT" "$@"
