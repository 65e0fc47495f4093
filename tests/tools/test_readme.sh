#!/usr/bin/env bash
# Goal: the README's commands run as written for a new user who followed its quick
# start (the offline verify named a `paycore` that is not on PATH: the binary is
# build/paycore). Method: in a temp dir laid out like the checkout after `make run`
# (build/paycore, paycore.db made with `init --demo` as scripts/run.sh does), run the
# README's offline command verbatim; it must succeed and say "verify ok".
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command="$(sed -n 's/^Offline, on the file: `\(.*\)`\.$/\1/p' "$root/README.md")"
if [ -z "$command" ]; then
    echo "FAIL: README.md has no line 'Offline, on the file: \`...\`.'" >&2
    exit 1
fi
mkdir "$work/build"
ln -s "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" "$work/build/paycore"
if ! (cd "$work" && build/paycore init --db paycore.db --demo > init.out 2>&1); then
    echo "FAIL: init --demo failed:" >&2
    cat "$work/init.out" >&2
    exit 1
fi
if ! output="$(cd "$work" && env PATH=/usr/bin:/bin sh -c "$command" 2>&1)"; then
    echo "FAIL: the README's offline command failed: $command" >&2
    echo "$output" >&2
    exit 1
fi
case "$output" in
    "verify ok"*) ;;
    *) echo "FAIL: '$command' did not say 'verify ok': $output" >&2; exit 1 ;;
esac
echo "readme: '$command' ok"
