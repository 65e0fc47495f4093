#!/bin/sh
# scripts/bench_capacity.sh BUILD full|quick: checks the queueing model of
# docs/capacity.md against one measured point, all in this run, for transfers
# (POST /v1/transfers) and for card sales (POST /v1/payments, captured at once, against
# the card simulator), each on its own server:
#   1. closed loop at 64 connections: the saturation throughput X_max; the service
#      time per request and core is S = cores / X_max;
#   2. open loop, Poisson arrivals at 10 % of X_max: the mean response W_low and the
#      mean commit time K (paycore_commit_duration_seconds over that run); the fixed
#      delay is D = W_low - the model at that rate with D = 0 (docs/capacity.md);
#   3. open loop, Poisson arrivals at 60 % of X_max: measured mean and p99 response,
#      against the model's prediction (scripts/capacity.py) from S, K, D and the cores;
#   4. closed loop again: X_max after the point (x_max_after_per_s). On a machine
#      shared with other work the capacity left can move between steps 1 and 3; the
#      point's utilisation against it (utilisation_after) shows when it did.
# One key=value line each (capacity_model: transfers, capacity_model_payments: card
# sales); the prediction is the baseline, ratio = measured / predicted.
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
sim_pid=""
stop_server() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    server_pid=""
}
cleanup() {
    stop_server
    [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
calc() { awk "BEGIN { printf \"%.6g\", ($1) }"; }
# waits for a "PATTERN(number)" line in FILE; prints the number
wait_port() {
    for _ in $(seq 1 200); do
        port=$(sed -n "s/$2/\\1/p" "$1" 2>/dev/null | head -1 || true)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.1
    done
    echo "bench_capacity: $1 shows no port" >&2
    return 1
}

# start_server NAME [serve options]: a new database; sets key and url
start_server() {
    name="$1"
    shift
    key=$("$bin" init --db "$work/$name.db" 2>/dev/null | sed -n 's/^admin_key=//p')
    "$bin" serve --db "$work/$name.db" --listen 127.0.0.1:0 --log-level warn --log-file "$work/$name.log" "$@" 2>/dev/null &
    server_pid=$!
    url="http://127.0.0.1:$(wait_port "$work/$name.log" '.*"msg":"listening".*"port":\([0-9]*\).*')"
}

# measure LINE COMMITS [load options]: the three runs against $url; prints LINE's line.
# COMMITS: commit waits one after another per request (docs/capacity.md).
measure() {
    line="$1"
    commits="$2"
    shift 2
    closed=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds" --accounts 1000 "$@")
    x_max=$(field "$closed" requests_per_s)
    service_ms=$(calc "$cores * 1000 / $x_max")
    # mean commit time over a run: the commit histogram's _sum and _count before and after
    commit_metric() { curl -sf "$url/metrics" | sed -n "s/^paycore_commit_duration_seconds_$1 //p"; }
    low_rate=$(calc "int($x_max * 0.1)")
    sum0=$(commit_metric sum); count0=$(commit_metric count)
    low=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds" --accounts 1000 --rate "$low_rate" --arrivals poisson "$@")
    sum1=$(commit_metric sum); count1=$(commit_metric count)
    commit_ms=$(calc "($sum1 - $sum0) * 1000 / ($count1 - $count0)")
    commits_per_request=$(calc "($count1 - $count0) / $(field "$low" requests)")
    model_args="--service-ms $service_ms --commit-ms $commit_ms --cores $cores --commits $commits"
    # shellcheck disable=SC2086
    low_model=$(python3 "$here/capacity.py" $model_args --rate "$low_rate")
    delay_ms=$(calc "$(field "$low" mean_latency_ms) - $(field "$low_model" mean_ms)")
    delay_ms=$(calc "$delay_ms > 0 ? $delay_ms : 0")
    rate=$(calc "int($x_max * 0.6)")
    point=$("$bin" load --url "$url" --key "$key" --concurrency 256 --duration-s "$seconds" --accounts 1000 --rate "$rate" --arrivals poisson "$@")
    # shellcheck disable=SC2086
    model=$(python3 "$here/capacity.py" $model_args --delay-ms "$delay_ms" --rate "$rate")
    after=$("$bin" load --url "$url" --key "$key" --concurrency 64 --duration-s "$seconds" --accounts 1000 "$@")
    x_after=$(field "$after" requests_per_s)
    predicted_mean=$(field "$model" mean_ms)
    measured_mean=$(field "$point" mean_latency_ms)
    echo "$line model=mmc_group_commit cores=$cores x_max_per_s=$x_max service_ms=$service_ms commit_ms=$commit_ms delay_ms=$delay_ms" \
         "rate_per_s=$rate utilisation=$(field "$model" utilisation) predicted_p99_ms=$(field "$model" p99_ms)" \
         "measured_p99_ms=$(field "$point" p99_ms) measured_per_s=$(field "$point" requests_per_s)" \
         "little_ok=$(field "$closed" little_ok)$(field "$low" little_ok)$(field "$point" little_ok)" \
         "x_max_after_per_s=$x_after utilisation_after=$(calc "$rate / $x_after")" \
         "commits=$commits commits_per_request_low=$commits_per_request" \
         "measured_mean_ms=$measured_mean baseline=mmc_predicted_mean_ms baseline_ms=$predicted_mean" \
         "ratio=$(calc "$measured_mean / $predicted_mean")"
}

start_server transfers
measure capacity_model 1
stop_server

# card sales: the card simulator as the channel, a merchant in USD
"$bin" simulator card --listen 127.0.0.1:0 --db "$work/card.db" --log-level warn > "$work/card.out" 2>/dev/null &
sim_pid=$!
sim_port=$(wait_port "$work/card.out" '^listening=.*:\([0-9]*\)$')
printf '{"channels":[{"name":"card","kind":"card","url":"http://127.0.0.1:%s"}]}\n' "$sim_port" > "$work/channels.json"
start_server payments --channels "$work/channels.json"
curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' "$url/v1/merchants" \
    -d '{"id":"cap","name":"Capacity shop","country":"DE","default_currency":"USD","currencies":["USD"],"pricing":{"default":{"bps":290,"fixed_minor":30}}}'
# a sale waits for two commits: its pending record before the channel call, its outcome after
measure capacity_model_payments 2 --payments cap
