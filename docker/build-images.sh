#!/usr/bin/env bash
# Builds the project's images locally, idempotently, with no registry and no base image from
# outside: static release binaries of registrator, skydns and logspout, each copied into
# `FROM scratch` with CA certificates; the syslog-sink receiver (the harness package's
# `syslog-sink` binary) `FROM scratch`; and an etcd image from Debian's etcd-server binary.
# Images are tagged with the crate version and `latest`.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
target=x86_64-unknown-linux-gnu
out=target-static

# One build at a time (tests running in parallel each ask for the images): a second caller
# waits for the first, then finds everything up to date.
mkdir -p "$out"
exec 9>"$out/.build-images.lock"
flock 9

# +crt-static with an explicit --target: a static-pie binary, while build scripts and
# proc-macros stay dynamic. Its own target dir, since the flags rebuild every dependency.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target "$target" --target-dir "$out" -p registrator -p skydns -p logspout --bins
# A cargo run of its own, so the harness package's dependencies do not change the features the
# components are built with.
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target "$target" --target-dir "$out" -p harness --bin syslog-sink

context=$out/images

# docker build, quiet unless it fails (the legacy builder's deprecation notice is noise here).
# Every image carries the label `$label`, so that the images a rebuild replaced (left untagged)
# are removed at the end, and nothing else.
label=io.registrator-skydns-logspout.built-by=build-images.sh
build() {
  local log
  if ! log=$(docker build --quiet --label "$label" "$@" 2>&1); then
    echo "$log" >&2
    return 1
  fi
}
rm -rf "$context"
for component in registrator skydns logspout; do
  mkdir -p "$context/$component"
  cp "$out/$target/release/$component" "$context/$component/"
  cp /etc/ssl/certs/ca-certificates.crt "$context/$component/"
  build -t "$component:$version" -t "$component:latest" \
    -f "docker/$component.Dockerfile" "$context/$component"
  echo "built $component:$version ($(docker image inspect -f '{{.Size}}' "$component:$version" | numfmt --to=iec))"
done

mkdir -p "$context/syslog-sink"
cp "$out/$target/release/syslog-sink" "$context/syslog-sink/"
build -t "syslog-sink:$version" -t syslog-sink:latest \
  -f docker/syslog-sink.Dockerfile "$context/syslog-sink"
echo "built syslog-sink:$version ($(docker image inspect -f '{{.Size}}' "syslog-sink:$version" | numfmt --to=iec))"

etcd_version=$(/usr/bin/etcd --version | sed -n 's/^etcd Version: //p')
mkdir -p "$context/etcd/lib"
cp /usr/bin/etcd /usr/bin/etcdctl "$context/etcd/"
cp -L /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2 "$context/etcd/lib/"
build -t "etcd:$etcd_version" -t etcd:latest -f docker/etcd.Dockerfile "$context/etcd"
echo "built etcd:$etcd_version ($(docker image inspect -f '{{.Size}}' "etcd:$etcd_version" | numfmt --to=iec))"

docker image prune --force --filter "label=$label" >/dev/null
