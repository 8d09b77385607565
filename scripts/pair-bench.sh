#!/usr/bin/env bash
# Two builds back to back on embedded SQLite: for each round, each build
# serves in its own process and `loopgate bench --server` drives it with
# the `cycle` and the `ingest` workloads. Prints the throughput and the
# server's CPU per operation (user + system time from /proc/<pid>/stat over
# the run, divided by the operations done), which noise moves less.
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
token=lgt_bench_admin_token_0123456789
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {
  local bin=$1 workload=$2 dir log pid base before after out ops
  dir=$(mktemp -d)
  log="$dir/serve.log"
  : >"$log"
  LOOPGATE_BOOTSTRAP_TOKEN=$token RUST_LOG=warn \
    "$bin" serve --bind 127.0.0.1:0 --data-dir "$dir" >"$log" 2>&1 &
  pid=$!
  until grep -q "loopgate listening on" "$log"; do
    kill -0 "$pid" 2>/dev/null || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  base=$(sed -n 's/^loopgate listening on //p' "$log" | head -1)
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2086
  out=$("${DRIVER:-$bin}" bench --server "$base" --token "$token" --workload "$workload" ${BENCH_ARGS:---duration 10s})
  after=$(cpu_ticks "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  # Operations: the histogram's n of the cycle (or submit) line.
  ops=$(echo "$out" | sed -n 's/^\(cycle\|submit\).*(n=\([0-9]*\))$/\2/p' | head -1)
  printf '%-6s %-7s %s   server CPU %s µs/op\n' "$3" "$workload" \
    "$(echo "$out" | sed -n 's/^throughput *//p')" \
    "$(awk -v t=$((after - before)) -v hz="$ticks" -v n="${ops:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "?" }')"
}

for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  for workload in ${WORKLOADS:-cycle ingest}; do
    run "$old" "$workload" old
    run "$new" "$workload" new
  done
done
