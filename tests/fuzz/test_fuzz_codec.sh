#!/bin/bash
# Goal: the API's request decoders survive arbitrary bytes. Method: build the
# libFuzzer target (clang, ASan+UBSan) from the decoder sources and run it for a
# bounded time from the seeds in tests/fuzz/corpus (new inputs go to a temp dir, the
# seeds stay as they are). PAYCORE_FUZZ_SECONDS overrides the time.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seconds="${PAYCORE_FUZZ_SECONDS:-30}"
if [ "${PAYCORE_SANITIZED:-0}" = "1" ]; then seconds="${PAYCORE_FUZZ_SECONDS:-10}"; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_GNU_SOURCE -DPAYCORE_VERSION='"fuzz"' -I"$root/include" -I"$root/src" \
    $(pkg-config --cflags jansson) \
    "$root/tests/fuzz/fuzz_codec.c" "$root/src/api/codec.c" "$root/src/api/codec_fast.c" "$root/src/ledger/names.c" \
    "$root/src/core/core.c" "$root/src/core/currency.c" "$root/src/core/json_fields.c" "$root/src/core/status.c" \
    $(pkg-config --libs jansson) -o "$work/fuzz_codec"
mkdir "$work/corpus"
ASAN_OPTIONS=detect_leaks=1 "$work/fuzz_codec" -max_total_time="$seconds" -max_len=8192 \
    -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 "$work/corpus" "$root/tests/fuzz/corpus" \
    2>"$work/fuzz.log" || { tail -60 "$work/fuzz.log"; exit 1; }
grep -E "stat::number_of_executed_units|cov:" "$work/fuzz.log" | tail -2
echo "fuzz codec: ok (${seconds}s)"
