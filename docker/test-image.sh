#!/usr/bin/env bash
# Builds the tiny image the tests run containers from, with no registry: Debian's static
# busybox plus one symlink per applet, imported with `docker import`. Idempotent.
set -euo pipefail

image=${1:-harness-busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if ! [ -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "test-image.sh: $busybox is missing or not static; install Debian's busybox-static" >&2
  exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/www"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["/bin/sh"]' \
  --change 'LABEL io.harness.image=busybox' \
  - "$image" >/dev/null
echo "built $image"
