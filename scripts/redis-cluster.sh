#!/usr/bin/env bash
# Start or stop a three-master Redis Cluster on loopback for the tests.
#   scripts/redis-cluster.sh start [DIR]   (ports 17101-17103)
#   scripts/redis-cluster.sh stop  [DIR]
# Prints the seed addresses for SLUICE_TEST_REDIS_CLUSTER on start.
set -euo pipefail
PORTS=(17101 17102 17103)
DIR=${2:-/tmp/sluice-redis-cluster}

stop() {
  for p in "${PORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
}

start() {
  stop
  for p in "${PORTS[@]}"; do
    mkdir -p "$DIR/$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$DIR/$p/nodes.conf" --dir "$DIR/$p" \
      --save "" --appendonly no --daemonize yes --logfile "$DIR/$p/log"
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 100); do
    ok=1
    for p in "${PORTS[@]}"; do redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0; done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  (IFS=,; echo "${PORTS[*]/#/127.0.0.1:}")
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
