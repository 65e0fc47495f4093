#!/usr/bin/env bash
# Goal: the dashboard works for a person in a real browser: it logs in with a key kept
# in session storage, its figures move under load and agree with GET /v1/stats, a
# review is approved from the page, a merchant key sees its own figures (and its merchant's payments) only, and the
# page runs under its strict Content-Security-Policy without a single violation.
# Method: tests/web/dashboard.mjs drives Debian's chromium with playwright-core (from
# web/package-lock.json) against a real `paycore serve`; see that file.
# Needs: chromium (scripts/deps.sh installs it), web/node_modules (make deps: npm ci),
# the built page (<build>/web, made by make build). Missing any of them FAILS in CI; on
# a machine where chromium cannot be installed it is reported as skipped (exit 77).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
chromium="${PAYCORE_CHROMIUM:-/usr/bin/chromium}"

missing=""
[ -x "$chromium" ] || missing="$missing chromium ($chromium: apt-get install chromium, or set PAYCORE_CHROMIUM)"
command -v node >/dev/null 2>&1 || missing="$missing node (apt-get install nodejs)"
[ -d "$root/web/node_modules/playwright-core" ] || missing="$missing web/node_modules (run: make deps)"
[ -f "$(dirname "$bin")/web/index.html" ] || missing="$missing $(dirname "$bin")/web/index.html (run: make build)"
if [ -n "$missing" ]; then
    if [ -n "${CI:-}" ]; then
        echo "FAIL: the dashboard browser test cannot run, missing:$missing" >&2
        exit 1
    fi
    echo "SKIPPED: the dashboard browser test needs:$missing" >&2
    exit 77
fi
out="${PAYCORE_TEST_OUTPUT:-$(pwd)/test-output}/web"
mkdir -p "$out"
exec node "$root/tests/web/dashboard.mjs" "$bin" "$chromium" "$out"
