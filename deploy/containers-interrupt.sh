#!/usr/bin/env bash
# Ctrl-C in the middle of a run on the containers provider: the harness
# must remove every container it started before it exits (no destructor
# runs on a signal). Run by image-test.sh --with-containers, which then
# checks that no container is left.
#
#   bash deploy/containers-interrupt.sh BOOKING_HARNESS
set -euo pipefail
harness=$1
docker=/usr/bin/docker
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$harness" run scenarios/05-redis-restart.toml --out "$out" >"$out/run.log" 2>&1 &
pid=$!
# Until its Redis and PostgreSQL containers run (at most 60 s).
for ((i = 0; i < 120; i++)); do
  running=$("$docker" ps -q --filter label=org.testcontainers.managed-by=testcontainers | wc -l)
  [ "$running" -ge 2 ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out/run.log"; echo "the run ended before its containers started"; exit 1; }
  sleep 0.5
done
[ "$running" -ge 2 ] || { kill -KILL "$pid"; echo "no containers after 60 s"; exit 1; }
sleep 2
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
echo "harness exit status after SIGINT: $rc"
[ "$rc" -eq 130 ] || { tail -n 20 "$out/run.log"; exit 1; }
left=$("$docker" ps -aq --filter label=org.testcontainers.managed-by=testcontainers | wc -l)
echo "containers left: $left"
[ "$left" -eq 0 ]
