#!/usr/bin/env bash
# Goal: a test that cannot find its input never passes: under CI it fails, elsewhere it
# exits 77 (CTest: "Skipped") and says how to provide the input.
# Method: run the risk tests that need the dev data (a Python one and a C one) with
# PAYCORE_SHARED pointing at an empty directory, once with CI=1 and once without.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
build="$(cd "$(dirname "$bin")" && pwd)"
empty="$(mktemp -d)"
trap 'rm -rf "$empty"' EXIT
failed=0

expect_exit() { # want_code label command...
    local want="$1" label="$2"
    shift 2
    local out code
    out="$("$@" 2>&1)"
    code=$?
    if [ "$code" != "$want" ]; then
        echo "FAIL: $label: exit $code, want $want; output: $out" >&2
        failed=1
    elif ! grep -q "PAYCORE_SHARED" <<< "$out"; then
        echo "FAIL: $label: the output does not say how to provide the input: $out" >&2
        failed=1
    fi
}

skew=(python3 "$root/tests/risk/test_risk_skew.py")
engine=("$build/risk_test_engine")
expect_exit 1 "skew test under CI" env CI=1 PAYCORE_SHARED="$empty" PAYCORE_BIN="$bin" "${skew[@]}"
expect_exit 77 "skew test locally" env -u CI PAYCORE_SHARED="$empty" PAYCORE_BIN="$bin" "${skew[@]}"
expect_exit 1 "engine test under CI" env CI=1 PAYCORE_SHARED="$empty" "${engine[@]}"
expect_exit 77 "engine test locally" env -u CI PAYCORE_SHARED="$empty" "${engine[@]}"
[ "$failed" = 0 ] || exit 1
echo "missing inputs: fail under CI, reported not run elsewhere"
