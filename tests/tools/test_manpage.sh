#!/usr/bin/env bash
# Goal: docs/paycore.1 (installed by make install) is exactly what scripts/manpage.sh
# makes from the binary's own help texts, so the man page never drifts from the code.
# Method: generate into a temp file and diff; a difference fails with the fix
# (`make docs`). Also checks that every command of `paycore --help` has its section.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT

sh "$root/scripts/manpage.sh" "$bin" > "$generated"
if ! diff -u "$root/docs/paycore.1" "$generated"; then
    echo "FAIL: docs/paycore.1 differs from the help texts: run 'make docs'" >&2
    exit 1
fi
for command in $("$bin" --help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p'); do
    grep -q "^\.SS paycore $command\$" "$generated" || { echo "FAIL: no section for '$command'" >&2; exit 1; }
done
echo "1 passed, 0 failed"
