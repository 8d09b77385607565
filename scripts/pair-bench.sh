#!/usr/bin/env bash
# Two builds back to back on embedded SQLite: for each round, each build
# serves in its own process and `loopgate bench --server` drives it with
# the `cycle` and the `ingest` workloads (scripts/cpu-per-op). Prints the
# throughput and the server's CPU per operation, which noise moves less.
#
#   scripts/pair-bench.sh OLD_BIN NEW_BIN [ROUNDS]     (default 3 rounds)
#
# Build each with `cargo build --release -p loopgate` (separate target
# directories, or copy the first binary away before building the second).
# BENCH_ARGS adds flags to `loopgate bench` (default: --duration 10s);
# WORKLOADS picks the workloads (default: cycle ingest). The same binary
# twice compares workloads, e.g. what admission through a standing grant
# costs beside a policy's allow:
#
#   WORKLOADS="ingest granted" scripts/pair-bench.sh BIN BIN 3
#
# DRIVER runs the load instead of each build's own `loopgate bench` (for a
# workload the old build does not know), e.g.
#
#   DRIVER=NEW_BIN WORKLOADS=queued scripts/pair-bench.sh OLD_BIN NEW_BIN 3
set -euo pipefail
old=${1:?usage: scripts/pair-bench.sh OLD_BIN NEW_BIN [ROUNDS]}
new=${2:?usage: scripts/pair-bench.sh OLD_BIN NEW_BIN [ROUNDS]}
rounds=${3:-3}
here=$(dirname "$0")

for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  for workload in ${WORKLOADS:-cycle ingest}; do
    LABEL=old "$here/cpu-per-op" "$old" "$workload"
    LABEL=new "$here/cpu-per-op" "$new" "$workload"
  done
done
