#!/usr/bin/env bash
# Goal: `make install` gives a working paycore: the installed binary runs, serves the
# installed dashboard (found beside it in share/paycore/web), the man page is there,
# the systemd unit points at the installed binary, passes `systemd-analyze verify` with
# not one warning and keeps its hardening (exposure at most 2.0 of 10 in
# `systemd-analyze security`); `make uninstall` leaves nothing behind.
# Method: install into a DESTDIR (packaging) and into a temporary PREFIX (so the unit's
# ExecStart exists for verify), start the installed binary on a free port.
# Needs systemd-analyze (Debian's systemd package): missing FAILS in CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
build="$(cd "$(dirname "$bin")" && pwd)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then echo "FAIL: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; fi
    echo "SKIPPED: needs systemd-analyze (apt-get install systemd)" >&2
    exit 77
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/paycore-install-XXXXXX")"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0

# 1. DESTDIR install, then run the installed binary from there
make -s -C "$root" install BUILD="$build" DESTDIR="$work/stage" PREFIX=/usr >/dev/null
stage="$work/stage/usr"
for f in bin/paycore share/man/man1/paycore.1 share/paycore/web/index.html lib/systemd/system/paycore.service \
         lib/sysusers.d/paycore.conf share/doc/paycore/operations.md share/paycore/grafana/paycore.json; do
    [ -f "$stage/$f" ] || fail "not installed: $f"
done
ls "$stage"/share/paycore/web/assets/*.js >/dev/null 2>&1 || fail "no dashboard script installed"
grep -q '^ExecStart=/usr/bin/paycore serve$' "$stage/lib/systemd/system/paycore.service" || fail "unit ExecStart not at BINDIR"
cmp -s "$stage/share/man/man1/paycore.1" "$root/docs/paycore.1" || fail "installed man page differs"
"$stage/bin/paycore" --version | grep -q '^paycore ' || fail "installed binary does not run"
passed=$((passed + 1))

"$stage/bin/paycore" init --db "$work/i.db" >/dev/null
"$stage/bin/paycore" serve --db "$work/i.db" --listen 127.0.0.1:0 --log-file "$work/serve.log" &
server_pid=$!
port=""
# as long as the Python tests wait for a start (pcapi.START_TIMEOUT_S): a loaded machine is slow
start_timeout_s=80
[ "${PAYCORE_SANITIZED:-}" = 1 ] && start_timeout_s=240
start_deadline=$(($(date +%s) + start_timeout_s))
while [ "$(date +%s)" -lt "$start_deadline" ]; do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' "$work/serve.log" 2>/dev/null | head -1 || true)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "installed server exited: $(cat "$work/serve.log")"
    sleep 0.05
done
[ -n "$port" ] || fail "installed server did not start"
grep -q "dashboard: .* files from $stage/bin/../share/paycore/web" "$work/serve.log" || fail "dashboard not found beside the installed binary: $(grep dashboard "$work/serve.log")"
page=$(curl -sf "http://127.0.0.1:$port/dashboard") || fail "GET /dashboard"
script=$(echo "$page" | sed -n 's/.*src="\(\/dashboard\/assets\/[^"]*\.js\)".*/\1/p')
[ -n "$script" ] || fail "the page names no script"
curl -sf -o /dev/null "http://127.0.0.1:$port$script" || fail "GET $script"
kill -TERM "$server_pid"
wait "$server_pid" || fail "installed server did not stop cleanly"
server_pid=""
passed=$((passed + 1))

# 2. uninstall removes every file it installed
make -s -C "$root" uninstall DESTDIR="$work/stage" PREFIX=/usr >/dev/null
left=$(find "$work/stage" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
passed=$((passed + 1))

# 3. the unit as installed under a real PREFIX: verify (no warning at all) and hardening
make -s -C "$root" install BUILD="$build" PREFIX="$work/prefix" >/dev/null
unit="$work/prefix/lib/systemd/system/paycore.service"
for directive in '^User=paycore$' '^ProtectSystem=strict$' '^NoNewPrivileges=yes$' '^PrivateTmp=yes$' \
                 '^StateDirectory=paycore$' '^EnvironmentFile=-/etc/paycore/paycore.env$' "^ExecStart=$work/prefix/bin/paycore serve\$"; do
    grep -q "$directive" "$unit" || fail "unit lacks $directive"
done
out=$(systemd-analyze verify --man=no "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
systemd-analyze security --offline=yes --threshold=20 "$unit" >"$work/security.txt" 2>&1 ||
    fail "exposure above 2.0: $(tail -1 "$work/security.txt")"
passed=$((passed + 1))
echo "$passed passed, 0 failed"
