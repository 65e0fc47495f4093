#!/usr/bin/env bash
# Goal: docs/errors.md is exactly what `paycore docs errors` generates from
# include/paycore/status.def, so the published list of codes never drifts from the code.
# Method: generate into a temp file and diff; a difference fails with the diff and the
# fix (`make docs`). Also checks that the generator covers every X(...) line.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT

"$bin" docs errors > "$generated"
if ! diff -u "$root/docs/errors.md" "$generated"; then
    echo "FAIL: docs/errors.md differs from 'paycore docs errors': run 'make docs'" >&2
    exit 1
fi

codes_in_def="$(grep -c '^X(' "$root/include/paycore/status.def")"
codes_in_doc="$(grep -c '^| `' "$generated")"
if [ "$codes_in_def" != "$codes_in_doc" ]; then
    echo "FAIL: status.def has $codes_in_def codes, docs/errors.md lists $codes_in_doc" >&2
    exit 1
fi
echo "1 passed, 0 failed"
