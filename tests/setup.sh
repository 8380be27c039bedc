#!/usr/bin/env bash
# Installs and starts everything the tests and the demo need, idempotently:
# Debian packages (etcd, busybox, protoc with its well-known .proto files, dig and delv, dnssec-keygen,
# openssl for test certificates, headless chromium for the skydns page, systemd for
# systemd-socket-activate, which runs skydns -systemd in its tests, rsyslogd with imrelp for the
# logspout RELP test, run by the test itself, never as the system logger), a running Docker
# daemon, and the test image.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(etcd-server etcd-client busybox-static protobuf-compiler libprotobuf-dev dnsutils bind9-dnsutils bind9-utils openssl chromium systemd rsyslog rsyslog-relp)
command -v docker >/dev/null 2>&1 || packages+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  say "no Docker daemon answers; starting dockerd"
  as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { say "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi

bash docker/test-image.sh >&2
say "ready: $(etcd --version | head -1), $(protoc --version), Docker $(docker version --format '{{.Server.Version}}')"
