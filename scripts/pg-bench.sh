#!/usr/bin/env bash
# The human-in-the-loop cycle on PostgreSQL with 1..N replicas (real server
# processes on one database), driven by `loopgate bench --server a,b,...`.
# Waiters and the reviewers who unblock them are on different replicas, so
# "decision → client unblocked" is the wake-up across replicas.
#
#   scripts/pg-bench.sh [REPLICAS...]      e.g. scripts/pg-bench.sh 1 2 3
#   PG_RTT=1ms scripts/pg-bench.sh 1 2 4
#
# PG_RTT puts a relay (`loopgate latency-relay`) between the replicas and
# PostgreSQL that adds that round-trip time, as when the database is on
# another host. Each run prints the replicas' CPU (user + system, from
# /proc/<pid>/stat) per cycle and as a share of the machine, and the same
# for PostgreSQL's processes (when it runs on this machine: all of the
# cluster's, so run nothing else against it meanwhile), so that a
# gain from more replicas can be told from idle cores filling. RELAY_BIN
# runs the relay when LOOPGATE_BIN is a build without it, DRIVER the load
# (`loopgate bench`) instead of LOOPGATE_BIN, so that two builds of the
# server meet the same load generator.
#
# Needs a release build (cargo build --release) and PostgreSQL at
# LOOPGATE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test).
# PG_SYNCHRONOUS_COMMIT (e.g. off) sets the bench database's
# synchronous_commit, to see what the WAL flush of each commit bounds.
# BENCH_ARGS adds flags to `loopgate bench` (default: --systems 64 --reviewers 8 --duration 10s).
# PG_TABLE_STATS=1 prints, after each run, what it asked of PostgreSQL
# table by table (pg_stat_user_tables) and its transactions; PG_WRITE_TIMES=1
# each replica's write times from /metrics (the wait for a writer, the run).
set -euo pipefail
. "$(dirname "$0")/listening.sh"
cd "$(dirname "$0")/.."
bin=${LOOPGATE_BIN:-target/release/loopgate}
driver=${DRIVER:-$bin}
admin_url=${LOOPGATE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
token=lgt_bench_admin_token_0123456789
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 3)
ticks=$(getconf CLK_TCK)
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
# PostgreSQL's own processes (backends, WAL writer, checkpointer): ticks by
# pid, so that a backend started during the run counts from zero.
pg_ticks() { local p; for p in $(pgrep -x postgres || true); do echo "$p $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"; done; }

for n in "${counts[@]}"; do
  db="loopgate_bench_$$_$n"
  psql -q "$admin_url" -c "CREATE DATABASE $db"
  # PG_SYNCHRONOUS_COMMIT=off takes the WAL flush out of every commit's
  # wait, to tell what the database's disk bounds from what loopgate does.
  [ -z "${PG_SYNCHRONOUS_COMMIT:-}" ] ||
    psql -q "$admin_url" -c "ALTER DATABASE $db SET synchronous_commit = '$PG_SYNCHRONOUS_COMMIT'"
  url="${admin_url%/*}/$db"
  dir=$(mktemp -d)
  pids=()
  relay=
  if [ -n "${PG_RTT:-}" ]; then
    # The database's host and port from the URL, the relay in front of it.
    hostport=$(sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#' <<<"$admin_url")
    case $hostport in *:*) ;; *) hostport="$hostport:5432" ;; esac
    "${RELAY_BIN:-$bin}" latency-relay --to "$hostport" --rtt "$PG_RTT" >"$dir/relay.log" 2>&1 &
    relay=$!
    via=$(wait_listening "$relay" "$dir/relay.log" "relay listening on" "the relay") || exit 1
    url=$(sed -E "s#^([a-z]+://([^@/]*@)?)[^/?]*#\1$via#" <<<"$url")
  fi
  bases=()
  for i in $(seq 1 "$n"); do
    log="$dir/replica$i.log"
    LOOPGATE_BOOTSTRAP_TOKEN=$token RUST_LOG=warn \
      "$bin" serve --bind 127.0.0.1:0 --data-dir "$dir" --database-url "$url" >"$log" 2>&1 &
    pids+=($!)
    base=$(wait_listening "${pids[-1]}" "$log" "loopgate listening on" "replica $i") || exit 1
    bases+=("$base")
  done
  servers=$(IFS=,; echo "${bases[*]}")
  echo "== $n replica(s)${PG_RTT:+, $PG_RTT to the database}: $servers"
  machine_before=$(head -1 /proc/stat)
  before=$(cpu_ticks "${pids[@]}")
  pg_before=$(pg_ticks)
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  out=$("$driver" bench --server "$servers" --token "$token" ${BENCH_ARGS:---systems 64 --reviewers 8 --duration 10s})
  after=$(cpu_ticks "${pids[@]}")
  pg_after=$(pg_ticks)
  machine_after=$(head -1 /proc/stat)
  end=$(date +%s.%N)
  echo "$out"
  ops=$(echo "$out" | sed -n 's/^\(cycle\|submit\).*(n=\([0-9]*\))$/\2/p' | head -1)
  awk -v t=$((after - before)) -v hz="$ticks" -v n="${ops:-0}" -v s="$start" -v e="$end" -v cores="$(nproc)" \
    'BEGIN { cpu = t / hz; printf "replicas CPU   %.0f µs/op, %.0f%% of %d cores\n", (n > 0 ? cpu * 1e6 / n : 0), cpu / (e - s) / cores * 100, cores }'
  awk -v hz="$ticks" -v n="${ops:-0}" -v s="$start" -v e="$end" -v cores="$(nproc)" '
    FNR == NR { was[$1] = $2; next }
    { t += $2 - ($1 in was ? was[$1] : 0) }
    END { cpu = t / hz; printf "PostgreSQL CPU %.0f µs/op, %.0f%% of %d cores\n", (n > 0 ? cpu * 1e6 / n : 0), cpu / (e - s) / cores * 100, cores }
  ' <(echo "$pg_before") <(echo "$pg_after")
  # The whole machine (replicas, PostgreSQL, the relay and the load
  # generator share it): when it is busy, more replicas cannot show more.
  paste <(echo "$machine_before") <(echo "$machine_after") | awk '{
    n = NF / 2; busy = 0; total = 0
    for (i = 2; i <= n; i++) { d = $(i + n) - $i; total += d; if (i != 5 && i != 6) busy += d }
    printf "machine CPU    %.0f%% busy (all processes)\n", busy / total * 100 }'
  if [ -n "${PG_WRITE_TIMES:-}" ]; then
    # Each replica's writes (`/metrics`): how long they waited for a
    # writer, and how long they ran to their answer; p50 and p99 as the
    # bucket bound that holds them, and how many took over 10 ms.
    for i in "${!bases[@]}"; do
      curl -s "${bases[$i]}/metrics" | awk -v r=$((i + 1)) '
        /^loopgate_db_write(_wait)?_seconds_bucket/ {
          split($0, a, "\""); name = ($0 ~ /_wait_/) ? "wait" : "run"
          if (a[2] != "+Inf") { bound[name, ++n[name]] = a[2]; cum[name, n[name]] = $2 } else total[name] = $2 }
        END {
          for (k = 1; k <= 2; k++) {
            name = (k == 1) ? "wait" : "run"; t = total[name]; p50 = p99 = "> 1"; over = t
            for (j = n[name]; j >= 1; j--) {
              if (cum[name, j] >= 0.5 * t) p50 = bound[name, j]
              if (cum[name, j] >= 0.99 * t) p99 = bound[name, j]
              if (bound[name, j] == "0.01") over = t - cum[name, j]
            }
            printf "replica %d writes %-4s n=%d  p50 <= %s s  p99 <= %s s  over 10 ms: %d\n", r, name, t, p50, p99, over
          } }'
    done
  fi
  if [ -n "${PG_TABLE_STATS:-}" ]; then
    # What the run asked of PostgreSQL, table by table (a sequential scan
    # of a growing table is the thing to look for), and its transactions.
    sleep 1
    psql -q "$url" -c "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd
      FROM pg_stat_user_tables ORDER BY seq_tup_read + coalesce(idx_scan, 0) + n_tup_ins + n_tup_upd DESC LIMIT 25"
    psql -q "$url" -c "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted
      FROM pg_stat_database WHERE datname = current_database()"
  fi
  kill "${pids[@]}" $relay
  wait "${pids[@]}" 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE $db WITH (FORCE)"
  rm -rf "$dir"
done
