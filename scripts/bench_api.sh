#!/bin/sh
# scripts/bench_api.sh BUILD full|quick: the API benchmark (issue 3). On this machine,
# server and load generator together on loopback:
#   1. `paycore load` single-transfer POSTs at 64 connections, and batches of 1000 per
#      POST, against a real `paycore serve`;
#   2. the same work in-process (`paycore load --engine-db`: writer_submit_wait, no
#      HTTP) as the baseline, and the ratio;
#   3. pgbench TPC-B against a throwaway PostgreSQL in the same run, as the peer
#      baseline (skipped, and said so, when PostgreSQL cannot start here).
#   4. the same HTTP work with a merchant key (its accounts, every event checked
#      against its grants in the writer), each run right after the admin's:
#      api_http_owner ... baseline=api_http_admin ... ratio=...
# One key=value line per figure, baseline in the same line, ratio last.
set -eu
build="$1"
mode="$2"
bin="$build/paycore"
seconds=10
[ "$mode" = "quick" ] && seconds=3
work=$(mktemp -d "${TMPDIR:-/tmp}/paycore-bench-api-XXXXXX")
chmod 755 "$work"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    if [ -f "$work/pg/postmaster.pid" ]; then
        runas pg_ctl -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
runas() {
    if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# 1. the real server
key=$("$bin" init --db "$work/api.db" 2>/dev/null | sed -n 's/^admin_key=//p')
"$bin" serve --db "$work/api.db" --listen 127.0.0.1:0 --log-level warn --log-file "$work/serve.log" 2>/dev/null &
server_pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' "$work/serve.log" 2>/dev/null | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "bench_api: server did not start" >&2; exit 1; }
url="http://127.0.0.1:$port"
merchant=$("$bin" key create --url "$url" --key "$key" --scope merchant --name bench | sed -n 's/^key  *//p')
[ -n "$merchant" ] || { echo "bench_api: no merchant key" >&2; exit 1; }
single=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds")
owner_single=$("$bin" load --url "$url" --key "$merchant" --concurrency 64 --duration-s "$seconds")
batch=$("$bin" load --url "$url" --key "$key" --concurrency 8 --batch 1000 --duration-s "$seconds")
owner_batch=$("$bin" load --url "$url" --key "$merchant" --concurrency 8 --batch 1000 --duration-s "$seconds")
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""

# 2. the in-process engine, same work
engine_single=$("$bin" load --engine-db "$work/engine1.db" --concurrency 64 --duration-s "$seconds")
engine_batch=$("$bin" load --engine-db "$work/engine2.db" --concurrency 8 --batch 1000 --duration-s "$seconds")

s_tps=$(field "$single" transfers_per_s); b_tps=$(field "$batch" transfers_per_s)
es_tps=$(field "$engine_single" transfers_per_s); eb_tps=$(field "$engine_batch" transfers_per_s)
echo "api_http batch=1 connections=64 requests_per_s=$(field "$single" requests_per_s) transfers_per_s=$s_tps p50_ms=$(field "$single" p50_ms) p99_ms=$(field "$single" p99_ms) p999_ms=$(field "$single" p999_ms) errors=$(field "$single" errors) baseline=engine_in_process baseline_per_s=$es_tps ratio=$(ratio "$s_tps" "$es_tps")"
echo "api_http batch=1000 connections=8 requests_per_s=$(field "$batch" requests_per_s) transfers_per_s=$b_tps p50_ms=$(field "$batch" p50_ms) p99_ms=$(field "$batch" p99_ms) p999_ms=$(field "$batch" p999_ms) errors=$(field "$batch" errors) baseline=engine_in_process baseline_per_s=$eb_tps ratio=$(ratio "$b_tps" "$eb_tps")"
os_tps=$(field "$owner_single" transfers_per_s); ob_tps=$(field "$owner_batch" transfers_per_s)
echo "api_http_owner batch=1 connections=64 transfers_per_s=$os_tps p99_ms=$(field "$owner_single" p99_ms) errors=$(field "$owner_single" errors) baseline=api_http_admin baseline_per_s=$s_tps ratio=$(ratio "$os_tps" "$s_tps")"
echo "api_http_owner batch=1000 connections=8 transfers_per_s=$ob_tps p99_ms=$(field "$owner_batch" p99_ms) errors=$(field "$owner_batch" errors) baseline=api_http_admin baseline_per_s=$b_tps ratio=$(ratio "$ob_tps" "$b_tps")"

# 3. pgbench TPC-B on a throwaway PostgreSQL (unix socket only)
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ] || ! command -v runuser >/dev/null 2>&1; then
    echo "pgbench skipped=postgresql_not_installed"
    exit 0
fi
PATH="$pgbin:$PATH"; export PATH
mkdir "$work/pg" "$work/sock"
[ "$(id -u)" = "0" ] && chown postgres "$work/pg" "$work/sock"
if ! runas initdb -D "$work/pg" -A trust -U bench >/dev/null 2>&1 ||
   ! runas pg_ctl -D "$work/pg" -l "$work/pg/log" -w -o "-k $work/sock -c listen_addresses='' -c fsync=on -c synchronous_commit=on -c max_connections=100" start >/dev/null 2>&1; then
    echo "pgbench skipped=postgresql_did_not_start"
    exit 0
fi
runas pgbench -h "$work/sock" -U bench -i -s 8 postgres >/dev/null 2>&1
best=0; best_clients=0
for clients in 8 32; do
    tps=$(runas pgbench -h "$work/sock" -U bench -c "$clients" -j 2 -T "$seconds" -M prepared postgres 2>/dev/null |
          sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    [ -z "$tps" ] && continue
    if awk -v a="$tps" -v b="$best" 'BEGIN { exit !(a > b) }'; then best=$tps; best_clients=$clients; fi
done
echo "api_vs_pgbench batch=1 transfers_per_s=$s_tps baseline=pgbench_tpcb_c$best_clients baseline_per_s=$best ratio=$(ratio "$s_tps" "$best")"
echo "api_vs_pgbench batch=1000 transfers_per_s=$b_tps baseline=pgbench_tpcb_c$best_clients baseline_per_s=$best ratio=$(ratio "$b_tps" "$best")"
