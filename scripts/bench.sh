#!/bin/sh
# scripts/bench.sh BUILD full|quick: runs every benchmark; each prints key=value lines.
set -eu
build="$1"
mode="$2"
for bench in "$build"/bench_*; do
    [ -x "$bench" ] || continue
    "$bench" "--$mode"
done
# The payments rate over five minutes without a pause (full only): what 24 s never shows.
# A pool of 2M cards: each card pays about once, as in real traffic (100k cards reused
# for five minutes look like card testing to the risk model, and its declines grow).
if [ "$mode" = full ]; then "$build"/bench_payments --sustain 300 --cards 2000000; fi
sh "$(dirname "$0")/bench_api.sh" "$build" "$mode"
python3 "$(dirname "$0")/../bench/bench_events.py" "$build" "$mode"
python3 "$(dirname "$0")/../bench/bench_forward.py" "$build" "$mode"
sh "$(dirname "$0")/bench_capacity.sh" "$build" "$mode"
