#!/bin/sh
# scripts/deps.sh: install the Debian packages paycore builds, tests and runs with, and
# the dashboard's npm packages from web/package-lock.json (npm ci). Idempotent: asks
# dpkg first and installs only what is missing; runs npm ci only when the lockfile
# changed since the last run. Debian packages and the npm lockfile only.
set -eu
cd "$(dirname "$0")/.."

# chromium: the dashboard's browser test; prometheus: promtool for deploy/prometheus;
# systemd: systemd-analyze verify for deploy/systemd; podman + runc: the container test;
# librabbitmq-dev + rabbitmq-server: the events publisher and its broker test;
# libhttp-parser-dev: the gateway's own HTTP client reads channel answers with it, and
# the payments benchmark's load reads its answers with it;
# patroni + python3-etcd + etcd-server: the high-availability tests (tests/ha), which
# start their own etcd members and Patroni nodes (the packaged services stay off).
# libzstd-dev: payment records packed in the SQLite store (src/store/sqlite_pay_pack.c).
# libtcmalloc-minimal4: the paycore executable's malloc (CMakeLists.txt, PC_ALLOCATOR).
PACKAGES="build-essential cmake pkg-config sqlite3 libsqlite3-dev libmicrohttpd-dev libzstd-dev libtcmalloc-minimal4 \
libjansson-dev libsodium-dev libcurl4-openssl-dev libhttp-parser-dev libxgboost-dev libssl-dev \
postgresql libpq-dev curl ca-certificates python3 python3-yaml clang libclang-rt-14-dev \
prometheus librabbitmq-dev rabbitmq-server chromium systemd podman runc \
patroni python3-etcd etcd-server"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done
# node and npm may come from Debian's packages or from a nodejs package that bundles npm
command -v node >/dev/null 2>&1 || missing="$missing nodejs"

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
if [ -n "$missing" ]; then
    echo "deps: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2 || $SUDO apt-get update >&2
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi
# The packages enable system-wide etcd and Patroni services (etcd on the default
# ports 2379/2380, Patroni on /etc/patroni): tests start their own on free ports, so
# the packaged ones are stopped and disabled, once, wherever they were enabled.
for service in etcd patroni; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl is-enabled --quiet "$service" 2>/dev/null || systemctl is-active --quiet "$service" 2>/dev/null; then
            echo "deps: stopping and disabling the packaged $service service" >&2
            $SUDO systemctl disable --now "$service" >&2 || true
        fi
    elif [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" status >/dev/null 2>&1; then
        echo "deps: stopping the packaged $service service" >&2
        $SUDO "/etc/init.d/$service" stop >&2 || true
    fi
done
if ! command -v npm >/dev/null 2>&1; then
    echo "deps: installing: npm" >&2
    $SUDO apt-get install -y -qq --no-install-recommends npm >&2
fi

# The dashboard's packages (uPlot, esbuild, playwright-core), exactly as locked.
lock_sum=$(sha256sum web/package-lock.json | cut -d' ' -f1)
stamp=web/node_modules/.paycore-lock-sha256
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
    echo "deps: npm ci (web/package-lock.json)" >&2
    (cd web && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_sum" > "$stamp"
fi
