#!/usr/bin/env bash
# The seed's stack on this machine (docker/docker-compose.yml):
#   up     set up this machine (tests/setup.sh), build the images (docker/build-images.sh, a
#          no-op when nothing changed), start the stack, then `check`
#   check  show what a user wants to see: the A and SRV answers for
#          elasticsearch-9200.staging.example.local (both instances, round robin) from skydns on
#          127.0.0.1:$STACK_DNS_PORT (default 5353), logspout's route (the seed's
#          syslog://docker-rsyslog.staging.example.local:514, UDP) and the address it resolved to,
#          and an elasticsearch container's log line as the syslog receiver (the syslog-sink
#          image) printed it: one RFC 5424 message
# COMPOSE_PROJECT_NAME (default seedstack), STACK_DNS_PORT and STACK_NET (the /24 prefix, default
# 172.31.253) give a second copy its own names, DNS port and subnet (each copy's registrator still
# registers every container on the host, so check expects no other copy to be up).
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
# What the receiver printed (its stdout: one line per message), and this stack's elasticsearch1's
# messages in it: RFC 5424, facility user, severity info (stdout), the container's name as the
# app name, the line as the message.
received() { docker logs "$(compose ps -q docker-rsyslog)" 2>/dev/null; }
es1_messages() {
  local es1
  es1=$(docker inspect -f '{{.Name}}' "$(compose ps -q elasticsearch1)")
  received | grep -E "^<14>1 [^ ]+ [^ ]+ ${es1#/} [0-9]+ - - elasticsearch1 is alive\$"
}
line_arrived() { es1_messages >/dev/null; }

check() {
  wait_for 90 two_answers
  echo "== dig @127.0.0.1 -p $port $name A"
  dig_ +noall +answer "$name" A
  echo "== the same, +short, four times: both instances, in an order shuffled per answer"
  for _ in 1 2 3 4; do dig_ +short "$name" A | paste -sd ' '; done
  echo "== dig @127.0.0.1 -p $port $name SRV"
  dig_ +noall +answer +additional "$name" SRV
  if ! wait_for 90 line_arrived; then
    echo "== the receiver's last lines (of $(received | wc -l)), and logspout's last log lines" >&2
    received | tail -n 5 >&2
    docker logs "$(compose ps -q logspout)" 2>&1 | tail -n 20 >&2
    return 1
  fi
  local logspout
  logspout=$(compose ps -q logspout)
  echo "== logspout's route, and where it connected (docker-rsyslog, found through skydns)"
  docker inspect -f '{{join .Args " "}}' "$logspout"
  docker logs "$logspout" 2>&1 | grep ' connected' | tail -n 1
  echo "== dig @127.0.0.1 -p $port +short docker-rsyslog.staging.example.local A, then the receiver's address on the stack network"
  dig_ +short docker-rsyslog.staging.example.local A
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(compose ps -q docker-rsyslog)"
  echo "== docker logs of the receiver (docker-rsyslog, syslog-sink): elasticsearch1's line as it arrived, RFC 5424"
  es1_messages | tail -n 1
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
