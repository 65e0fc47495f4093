#!/usr/bin/env bash
# Goal: paycore ships as a container image built without any registry: from scratch,
# with only the binary, its shared libraries and the dashboard; the image initialises a
# database on a volume, serves the API and the dashboard, and stops cleanly (exit 0)
# on SIGTERM.
# Method: scripts/container-rootfs.sh + Debian's podman (deploy/container/Containerfile),
# runc as the runtime and cgroupfs as the cgroup manager (these machines mount cgroups in
# hybrid mode, which crun refuses), explicit ulimits (podman's defaults exceed this
# machine's hard limits), host networking on a free loopback port.
# Needs podman and runc (scripts/deps.sh): missing FAILS in CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${PAYCORE_BIN:?PAYCORE_BIN must name the built paycore binary}"
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then echo "FAIL: podman or runc missing (scripts/deps.sh installs them)" >&2; exit 1; fi
    echo "SKIPPED: needs podman and runc (apt-get install podman runc)" >&2
    exit 77
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/paycore-container-XXXXXX")"
tag="localhost/paycore-test:$(basename "$work" | tr 'A-Z' 'a-z')"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
cid=""
cleanup() {
    [ -n "$cid" ] && "${podman[@]}" rm -f "$cid" >/dev/null 2>&1
    "${podman[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/data/serve.log" ] && tail -5 "$work/data/serve.log" >&2; exit 1; }

sh "$root/scripts/container-rootfs.sh" "$bin" "$work/ctx"
"${podman[@]}" build -q -t "$tag" -f "$root/deploy/container/Containerfile" "$work/ctx" >/dev/null || fail "podman build"
mkdir -m 700 "$work/data"
chown 10001:10001 "$work/data"
run() { "${podman[@]}" run "${limits[@]}" -v "$work/data:/var/lib/paycore" "$@"; }
key=$(run --rm "$tag" init 2>/dev/null | sed -n 's/^admin_key=//p') || fail "init in the container"
[ -n "$key" ] || fail "init printed no admin key"
[ "$(stat -c %u "$work/data/paycore.db")" = 10001 ] || fail "the database is not owned by the image's user"
cid=$(run -d --network host "$tag" serve --listen 127.0.0.1:0 --log-file /var/lib/paycore/serve.log) || fail "podman run"
port=""
# as long as the Python tests wait for a start (pcapi.START_TIMEOUT_S): a loaded machine is slow
start_timeout_s=80
[ "${PAYCORE_SANITIZED:-}" = 1 ] && start_timeout_s=240
start_deadline=$(($(date +%s) + start_timeout_s))
while [ "$(date +%s)" -lt "$start_deadline" ]; do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9]*\).*/\1/p' "$work/data/serve.log" 2>/dev/null | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "the container's server did not listen"
curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"accounts":[{"id":"c1","currency":"USD","code":1}]}' "http://127.0.0.1:$port/v1/accounts" >/dev/null || fail "POST /v1/accounts"
curl -sf -o /dev/null "http://127.0.0.1:$port/dashboard" || fail "GET /dashboard (the image's web assets)"
"${podman[@]}" stop -t 30 "$cid" >/dev/null || fail "podman stop"
code=$("${podman[@]}" inspect "$cid" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "the server exited $code on SIGTERM"
grep -q '"msg":"stopped"' "$work/data/serve.log" || fail "no clean stop in the log"
"$bin" verify --db "$work/data/paycore.db" --pubkey "$work/data/paycore.db.key.pub" >/dev/null || fail "verify the container's database"
echo "1 passed, 0 failed"
