#!/bin/sh
# scripts/bench_capacity.sh BUILD full|quick: checks the queueing model of
# docs/capacity.md against one measured point, all in this run:
#   1. closed loop at 64 connections: the saturation throughput X_max; the service
#      time per request and core is S = cores / X_max;
#   2. open loop, Poisson arrivals at 10 % of X_max: the mean response W_low and the
#      mean commit time K (paycore_commit_duration_seconds over that run); the fixed
#      delay is D = W_low - S - K * (1 + writer busy / 2) (docs/capacity.md);
#   3. open loop, Poisson arrivals at 60 % of X_max: measured mean and p99 response,
#      against the model's prediction (scripts/capacity.py) from S, K, D and the cores.
# One key=value line; the prediction is the baseline, ratio = measured / predicted.
set -eu
build="$1"
mode="$2"
bin="$build/paycore"
here="$(dirname "$0")"
seconds=10
[ "$mode" = "quick" ] && seconds=3
cores=$(nproc)
work=$(mktemp -d "${TMPDIR:-/tmp}/paycore-bench-capacity-XXXXXX")
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
calc() { awk "BEGIN { printf \"%.6g\", ($1) }"; }

key=$("$bin" init --db "$work/c.db" 2>/dev/null | sed -n 's/^admin_key=//p')
"$bin" serve --db "$work/c.db" --listen 127.0.0.1:0 --log-level warn --log-file "$work/serve.log" 2>/dev/null &
server_pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' "$work/serve.log" 2>/dev/null | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "bench_capacity: server did not start" >&2; exit 1; }
url="http://127.0.0.1:$port"

closed=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds" --accounts 1000)
x_max=$(field "$closed" requests_per_s)
service_ms=$(calc "$cores * 1000 / $x_max")
# mean commit time over a run: the commit histogram's _sum and _count before and after
commit_metric() { curl -sf "$url/metrics" | sed -n "s/^paycore_commit_duration_seconds_$1 //p"; }
low_rate=$(calc "int($x_max * 0.1)")
sum0=$(commit_metric sum); count0=$(commit_metric count)
low=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds" --accounts 1000 --rate "$low_rate" --arrivals poisson)
sum1=$(commit_metric sum); count1=$(commit_metric count)
commit_ms=$(calc "($sum1 - $sum0) * 1000 / ($count1 - $count0)")
low_model=$(python3 "$here/capacity.py" --service-ms "$service_ms" --commit-ms "$commit_ms" --cores "$cores" --rate "$low_rate")
delay_ms=$(calc "$(field "$low" mean_latency_ms) - $(field "$low_model" mean_ms)")
delay_ms=$(calc "$delay_ms > 0 ? $delay_ms : 0")
rate=$(calc "int($x_max * 0.6)")
point=$("$bin" load --url "$url" --key "$key" --concurrency 256 --duration-s "$seconds" --accounts 1000 --rate "$rate" --arrivals poisson)
model=$(python3 "$here/capacity.py" --service-ms "$service_ms" --commit-ms "$commit_ms" --delay-ms "$delay_ms" --cores "$cores" --rate "$rate")
predicted_mean=$(field "$model" mean_ms)
measured_mean=$(field "$point" mean_latency_ms)
echo "capacity_model model=mmc_group_commit cores=$cores x_max_per_s=$x_max service_ms=$service_ms commit_ms=$commit_ms delay_ms=$delay_ms" \
     "rate_per_s=$rate utilisation=$(field "$model" utilisation) predicted_p99_ms=$(field "$model" p99_ms)" \
     "measured_p99_ms=$(field "$point" p99_ms) measured_per_s=$(field "$point" requests_per_s)" \
     "little_ok=$(field "$closed" little_ok)$(field "$low" little_ok)$(field "$point" little_ok)" \
     "measured_mean_ms=$measured_mean baseline=mmc_predicted_mean_ms baseline_ms=$predicted_mean" \
     "ratio=$(calc "$measured_mean / $predicted_mean")"
