#!/bin/sh
# scripts/container-rootfs.sh BIN OUT: the build context of deploy/container/Containerfile:
# OUT/rootfs with BIN as /usr/bin/paycore, every shared library it loads (from ldd, at
# the same paths, so the dynamic loader finds them), the built dashboard beside it
# (share/paycore/web) and a passwd entry for the paycore user (uid 10001).
set -eu
bin="$1"
out="$2"
root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root/usr/bin" "$root/usr/share/paycore" "$root/etc" "$root/var/lib/paycore" "$root/tmp"
cp "$bin" "$root/usr/bin/paycore"
web="$(dirname "$bin")/web"
[ -f "$web/index.html" ] || { echo "container-rootfs: no built dashboard at $web (make build)" >&2; exit 1; }
cp -R "$web" "$root/usr/share/paycore/web"
for lib in $(ldd "$bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
echo "paycore:x:10001:10001:paycore:/var/lib/paycore:/nonexistent" > "$root/etc/passwd"
echo "paycore:x:10001:" > "$root/etc/group"
chmod 1777 "$root/tmp"
chown 10001:10001 "$root/var/lib/paycore" 2>/dev/null || true
chmod 700 "$root/var/lib/paycore"
