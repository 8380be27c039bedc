#!/usr/bin/env bash
# The seed's stack on this machine (docker/docker-compose.yml):
#   up     set up this machine (tests/setup.sh), build the images (docker/build-images.sh, a
#          no-op when nothing changed), start the stack, then `check`
#   check  show what a user wants to see: the A and SRV answers for
#          elasticsearch-9200.staging.example.local (both instances, round robin) from skydns on
#          127.0.0.1:$STACK_DNS_PORT (default 5353), and an elasticsearch container's log line at
#          the syslog receiver
# COMPOSE_PROJECT_NAME (default seedstack), STACK_DNS_PORT and STACK_NET (the /24 prefix, default
# 172.31.253) let a second copy run beside the first.
#   down   stop and remove the stack
# Exits non-zero when a check does not succeed within its wait.
set -euo pipefail
cd "$(dirname "$0")"

project=${COMPOSE_PROJECT_NAME:-seedstack}
compose() { docker-compose -p "$project" -f docker-compose.yml "$@"; }
name=elasticsearch-9200.staging.example.local
port=${STACK_DNS_PORT:-5353}
dig_() { dig @127.0.0.1 -p "$port" +time=2 +tries=1 "$@"; }

# Retries "$@" until it succeeds, for at most $1 seconds.
wait_for() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "stack.sh: gave up after ${timeout}s waiting for: $*" >&2
      return 1
    fi
    sleep 1
  done
}

two_answers() { [ "$(dig_ +short "$name" A | wc -l)" -eq 2 ]; }
all_healthy() {
  for service in etcd skydns registrator logspout; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$service")")" = healthy ] || return 1
  done
}
line_arrived() { compose logs --no-color docker-rsyslog | grep -q 'elasticsearch1 is alive'; }

check() {
  wait_for 90 two_answers
  echo "== dig @127.0.0.1 -p $port $name A"
  dig_ +noall +answer "$name" A
  echo "== the same, +short, four times: both instances, in an order shuffled per answer"
  for _ in 1 2 3 4; do dig_ +short "$name" A | paste -sd ' '; done
  echo "== dig @127.0.0.1 -p $port $name SRV"
  dig_ +noall +answer +additional "$name" SRV
  wait_for 90 line_arrived
  echo "== the syslog receiver (docker-rsyslog) got elasticsearch1's output through logspout"
  compose logs --no-color docker-rsyslog | grep 'elasticsearch1 is alive' | tail -n 1
  wait_for 90 all_healthy
  echo "== docker-compose ps (the components' HEALTHCHECKs are their healthcheck subcommands)"
  compose ps
}

case ${1:-} in
  up)
    bash ../tests/setup.sh
    bash build-images.sh
    # The demo containers' image: busybox, tagged as the seed's elasticsearch image.
    bash test-image.sh
    docker tag harness-busybox:latest elasticsearch:1.5.2
    compose up -d
    check
    echo "== the stack is up; stop it with: bash docker/stack.sh down"
    ;;
  check) check ;;
  down) compose down --volumes --remove-orphans ;;
  *)
    echo "usage: $0 up|check|down" >&2
    exit 2
    ;;
esac
