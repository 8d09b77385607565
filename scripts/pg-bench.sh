#!/usr/bin/env bash
# The human-in-the-loop cycle on PostgreSQL with 1..N replicas (real server
# processes on one database), driven by `loopgate bench --server a,b,...`.
# Waiters and the reviewers who unblock them are on different replicas, so
# "decision → client unblocked" is the wake-up across replicas.
#
#   scripts/pg-bench.sh [REPLICAS...]      e.g. scripts/pg-bench.sh 1 2 3
#
# Needs a release build (cargo build --release) and PostgreSQL at
# LOOPGATE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test).
# BENCH_ARGS adds flags to `loopgate bench` (default: --systems 64 --reviewers 8 --duration 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOPGATE_BIN:-target/release/loopgate}
admin_url=${LOOPGATE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
token=lgt_bench_admin_token_0123456789
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 3)

for n in "${counts[@]}"; do
  db="loopgate_bench_$$_$n"
  psql -q "$admin_url" -c "CREATE DATABASE $db"
  url="${admin_url%/*}/$db"
  dir=$(mktemp -d)
  pids=()
  bases=()
  for i in $(seq 1 "$n"); do
    log="$dir/replica$i.log"
    LOOPGATE_BOOTSTRAP_TOKEN=$token RUST_LOG=warn \
      "$bin" serve --bind 127.0.0.1:0 --data-dir "$dir" --database-url "$url" >"$log" 2>&1 &
    pids+=($!)
    until grep -q "loopgate listening on" "$log"; do
      kill -0 "${pids[-1]}" 2>/dev/null || { echo "replica $i did not start:" >&2; cat "$log" >&2; exit 1; }
      sleep 0.1
    done
    bases+=("$(sed -n 's/^loopgate listening on //p' "$log" | head -1)")
  done
  servers=$(IFS=,; echo "${bases[*]}")
  echo "== $n replica(s): $servers"
  # shellcheck disable=SC2086
  "$bin" bench --server "$servers" --token "$token" ${BENCH_ARGS:---systems 64 --reviewers 8 --duration 10s}
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE $db WITH (FORCE)"
  rm -rf "$dir"
done
