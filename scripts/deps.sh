#!/bin/sh
# scripts/deps.sh: install the Debian packages paycore builds, tests and runs with.
# Idempotent: asks dpkg first and installs only what is missing. Debian packages only.
# prometheus: its promtool checks the /metrics output in the tests.
set -eu

PACKAGES="build-essential cmake pkg-config sqlite3 libsqlite3-dev libmicrohttpd-dev \
libjansson-dev libsodium-dev libcurl4-openssl-dev libxgboost-dev libssl-dev \
postgresql libpq-dev curl ca-certificates python3 clang libclang-rt-14-dev \
prometheus librabbitmq-dev rabbitmq-server"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || $SUDO apt-get update >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
