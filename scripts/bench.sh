#!/bin/sh
# scripts/bench.sh BUILD full|quick: runs every benchmark; each prints key=value lines.
set -eu
build="$1"
mode="$2"
for bench in "$build"/bench_*; do
    [ -x "$bench" ] || continue
    "$bench" "--$mode"
done
sh "$(dirname "$0")/bench_api.sh" "$build" "$mode"
python3 "$(dirname "$0")/../bench/bench_events.py" "$build" "$mode"
python3 "$(dirname "$0")/../bench/bench_forward.py" "$build" "$mode"
sh "$(dirname "$0")/bench_capacity.sh" "$build" "$mode"
