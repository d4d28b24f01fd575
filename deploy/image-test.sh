#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # single-quoted scripts run in containers; cleanup runs from a trap
# The image, built and run for real, with a private Docker daemon.
#
#   bash deploy/image-test.sh BIN_DIR      # BIN_DIR holds built `booking` and `booking-harness`
#   bash deploy/image-test.sh BIN_DIR --with-containers 'COMMAND' ...
#
# Each `--with-containers COMMAND` then runs (bash -c) against the same
# private daemon with the harness's containers provider chosen
# (BOOKING_INFRA=containers, DOCKER_HOST, BOOKING_REDIS_IMAGE and
# BOOKING_POSTGRES_IMAGE naming the stand-in images): one check each.
#
# Starts its own dockerd (own socket, data and exec roots under a temporary
# folder, vfs storage, no bridge, no iptables, no TCP listener), builds
# stand-in base images from Debian packages with debootstrap (no registry
# is reachable; their root filesystems are cached in
# ~/.cache/booking-image-test/), builds the project's image with
# `--target runtime-prebuilt` from the given binaries and the built front
# end, then runs PostgreSQL, Redis and two replicas of the image (host
# network, ports on 127.0.0.1 chosen free), checks readiness, Docker's
# HEALTHCHECK, a few API calls, and runs a target-mode chaos scenario from
# inside a container of the same image. The `runtime` target (Rust and
# Node build stages) is not built here: there are no Rust or Node images.
#
# Prints `image: N passed, M failed` last; exits 1 on any failure. When
# Docker cannot run here at all (no root, dockerd does not start, no
# container can start) it prints `image test: SKIPPED: <reason>` and exits 0.
# Needs root: installs docker.io, debootstrap and curl with apt if missing.
set -euo pipefail

BIN_DIR=${1:-}
shift || true
WITH_CONTAINERS=()
while [ $# -gt 0 ]; do
  case $1 in
    --with-containers)
      [ $# -ge 2 ] || { echo "--with-containers needs a command" >&2; exit 2; }
      WITH_CONTAINERS+=("$2")
      shift 2
      ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)

# Bump to rebuild the cached stand-in root filesystems.
ROOTFS_VERSION=1
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
CACHE_DIR=$HOME/.cache/booking-image-test
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
IMAGE=booking:test
T0=$(date +%s)

PASSED=0
FAILED=0
SKIPPED=
INTERRUPTED=
WORK=
DOCKERD_PID=
FG_PID=
CONTAINERS=()
CGROUP_PARENT=
HAD_RUN_DOCKER=1
HAD_RUN_CONTAINERD=1

log() { printf '[image-test %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
pass() { PASSED=$((PASSED + 1)); log "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAILED: $*"; }
skip() {
  SKIPPED=$*
  exit 0
}
# A failure after which nothing further can be checked.
abort() {
  fail "$*"
  diagnostics
  exit 1
}

diagnostics() {
  [ -n "$DOCKERD_PID" ] || return 0
  local c
  for c in "${CONTAINERS[@]}"; do
    timeout 20 "$DOCKER" inspect "$c" >/dev/null 2>&1 || continue
    echo "--- docker logs --tail 40 $c ---"
    timeout 20 "$DOCKER" logs --tail 40 "$c" 2>&1 || true
  done
  if [ -f "$WORK/dockerd.log" ]; then
    echo "--- dockerd warnings and errors (last 15) ---"
    grep -E 'level=(warning|error|fatal)' "$WORK/dockerd.log" | tail -n 15 || true
  fi
}

# Runs a command in the background and waits for it, so that INT/TERM reach
# the trap at once instead of after the command; output goes to $1.
bg_run() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 &
  FG_PID=$!
  wait "$FG_PID" || rc=$?
  FG_PID=
  return "$rc"
}

wait_gone() { # pid seconds
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  ! kill -0 "$1" 2>/dev/null
}

cleanup() {
  local rc=$? c p pid cmd cg m children leftovers=0
  trap - EXIT INT TERM
  set +e
  if [ -n "$FG_PID" ]; then
    kill -TERM "$FG_PID" 2>/dev/null
    wait_gone "$FG_PID" 20 || kill -KILL "$FG_PID" 2>/dev/null
  fi
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the private dockerd (pid $DOCKERD_PID)"
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      for c in "${CONTAINERS[@]}"; do
        timeout 30 "$DOCKER" rm -f -v "$c" >/dev/null 2>&1
      done
    fi
    # Its containerd, started under the exec root.
    children=$(ps -o pid= --ppid "$DOCKERD_PID" 2>/dev/null)
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    if ! wait_gone "$DOCKERD_PID" 40; then
      log "dockerd did not stop in 40 s: SIGKILL"
      kill -KILL "$DOCKERD_PID" 2>/dev/null
      wait_gone "$DOCKERD_PID" 10
    fi
    wait "$DOCKERD_PID" 2>/dev/null
    for p in $children; do
      if ! wait_gone "$p" 15; then
        log "dockerd's child $p still runs: SIGKILL"
        kill -KILL "$p" 2>/dev/null
        wait_gone "$p" 10
      fi
    done
  fi
  if [ -n "$WORK" ]; then
    # Anything of this run still alive: shims name the exec root on their
    # command line, container processes sit in this run's cgroup parent.
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [ "$pid" = $$ ] && continue
      cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
      cg=$(cat 2>/dev/null <"$p/cgroup") || cg=
      if [[ $cmd == *"$WORK"* ]] || { [ -n "$CGROUP_PARENT" ] && [[ $cg == *"$CGROUP_PARENT/"* ]]; }; then
        log "left over: pid $pid ($cmd): SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        leftovers=$((leftovers + 1))
      fi
    done
    # Mounts under the temporary folder (dockerd's netns file, an
    # interrupted debootstrap's /proc), deepest first.
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done < <(awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    if awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      log "something is still mounted under $WORK: not deleting it"
      leftovers=$((leftovers + 1))
    else
      rm -rf --one-file-system "$WORK"
    fi
  fi
  rm -f "$CACHE_DIR"/*.tmp.$$
  if [ -n "$CGROUP_PARENT" ]; then
    for cg in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup/*/*"$CGROUP_PARENT"; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  fi
  # What the daemon and its shims create under /run, if it was not there before (only if empty).
  [ "$HAD_RUN_DOCKER" = 1 ] || rmdir /run/docker/plugins /run/docker 2>/dev/null
  [ "$HAD_RUN_CONTAINERD" = 1 ] || rmdir /run/containerd/s /run/containerd 2>/dev/null
  if [ -n "$SKIPPED" ]; then
    echo "image test: SKIPPED: $SKIPPED"
    exit 0
  fi
  if [ "$leftovers" -gt 0 ]; then
    fail "processes or mounts of the private daemon were left over"
  fi
  if [ -n "$INTERRUPTED" ]; then
    fail "interrupted by $INTERRUPTED"
  elif [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
    fail "unexpected error (exit status $rc)"
  fi
  log "done in $(($(date +%s) - T0)) s"
  echo "image: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && exit 0
  exit 1
}
trap cleanup EXIT
trap 'INTERRUPTED=SIGINT; exit 130' INT
trap 'INTERRUPTED=SIGTERM; exit 143' TERM

# --- what the test needs -------------------------------------------------------
[ -n "$BIN_DIR" ] || abort "usage: bash deploy/image-test.sh BIN_DIR (a folder with built booking and booking-harness)"
BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd) || abort "no folder $1"
for b in booking booking-harness; do
  [ -x "$BIN_DIR/$b" ] || abort "$BIN_DIR/$b is missing or not executable (build with cargo build -p booking -p booking-harness)"
done
[ "$(id -u)" = 0 ] || skip "not root: cannot start a Docker daemon (or install it)"
need=()
{ [ -x "$DOCKER" ] && [ -x "$DOCKERD" ]; } || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "no apt-get to install ${need[*]}"
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# The built front end.
if [ ! -f "$REPO/frontend/dist/index.html" ]; then
  log "building the front end (frontend/dist is missing)"
  (
    cd "$REPO/frontend"
    [ -d node_modules ] || npm ci --no-audit --no-fund
    npm run build
  ) >/tmp/booking-image-test-frontend.$$.log 2>&1 || {
    tail -n 30 /tmp/booking-image-test-frontend.$$.log
    rm -f /tmp/booking-image-test-frontend.$$.log
    abort "the front end does not build"
  }
  rm -f /tmp/booking-image-test-frontend.$$.log
fi

# --- the private daemon --------------------------------------------------------
WORK=$(mktemp -d /tmp/booking-image-test.XXXXXX)
CGROUP_PARENT=/$(basename "$WORK")
[ -e /run/docker ] || HAD_RUN_DOCKER=0
[ -e /run/containerd ] || HAD_RUN_CONTAINERD=0
export DOCKER_HOST="unix://$WORK/docker.sock"
export DOCKER_CONFIG="$WORK/docker-config" # no user configuration, no credentials
export DOCKER_BUILDKIT=0                     # Debian's 20.10 has no buildx; the classic builder
mkdir -p "$DOCKER_CONFIG" "$WORK/data" "$WORK/exec"
echo '{}' >"$WORK/daemon.json"
log "starting a private dockerd in $WORK"
"$DOCKERD" --config-file "$WORK/daemon.json" \
  -H "unix://$WORK/docker.sock" \
  --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" \
  --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
  --cgroup-parent "$CGROUP_PARENT" \
  >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
up=
for ((i = 0; i < 60; i++)); do
  if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
    break
  fi
  if timeout 5 "$DOCKER" version >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 0.5
done
if [ -z "$up" ]; then
  reason=$(grep -E 'level=(fatal|error)|failed to start' "$WORK/dockerd.log" | tail -n 1 | cut -c1-300)
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then
    skip "dockerd did not answer within 30 s${reason:+: $reason}"
  fi
  skip "dockerd exited at start${reason:+: $reason}"
fi
log "dockerd is up (pid $DOCKERD_PID, $("$DOCKER" version --format '{{.Server.Version}}'))"

# --- stand-in images from Debian packages -------------------------------------
mkdir -p "$CACHE_DIR"
# rootfs NAME [PACKAGES]: sets TARBALL to the cached tarball of a minbase
# root filesystem with PACKAGES, running debootstrap when it is not cached.
rootfs() {
  local name=$1 include=${2:-} dir
  TARBALL="$CACHE_DIR/$name-$SUITE-minbase-v$ROOTFS_VERSION.tar.gz"
  if [ -s "$TARBALL" ]; then
    log "$name: cached $(basename "$TARBALL")"
    return 0
  fi
  dir="$WORK/rootfs-$name"
  log "$name: debootstrap --variant=minbase $SUITE${include:+ --include=$include} (not cached yet)"
  mkdir -p "$WORK/debs"
  if ! bg_run "$WORK/debootstrap-$name.log" timeout 900 debootstrap --variant=minbase \
    ${include:+--include="$include"} --cache-dir="$WORK/debs" "$SUITE" "$dir" "$MIRROR"; then
    tail -n 20 "$WORK/debootstrap-$name.log"
    return 1
  fi
  find "$dir/var/cache/apt/archives" -name '*.deb' -delete || return 1
  find "$dir/var/lib/apt/lists" -type f -delete || return 1
  tar -C "$dir" --numeric-owner -c . | gzip -1 >"$TARBALL.tmp.$$" || return 1
  mv "$TARBALL.tmp.$$" "$TARBALL" || return 1
  rm -rf --one-file-system "$dir"
  log "$name: cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}
BASE_IMAGE=booking-image-test/debian:$SUITE-v$ROOTFS_VERSION
REDIS_IMAGE=booking-image-test/redis:$SUITE-v$ROOTFS_VERSION
PG_IMAGE=booking-image-test/postgres:$SUITE-v$ROOTFS_VERSION
for spec in "base $BASE_IMAGE" "redis $REDIS_IMAGE redis-server" "postgres $PG_IMAGE postgresql"; do
  read -r name image include <<<"$spec"
  rootfs "$name" "$include" || abort "debootstrap of the $name stand-in failed"
  if ! "$DOCKER" import - "$image" <"$TARBALL" >/dev/null; then
    rm -f "$TARBALL" # rebuilt by the next run
    abort "docker import of $TARBALL failed (removed it from the cache)"
  fi
  log "$name: imported $image"
done
# A container at all? (Not one means Docker cannot run here.)
if ! out=$(timeout 60 "$DOCKER" run --rm --network host "$BASE_IMAGE" true 2>&1); then
  if grep -qiE 'OCI runtime|operation not permitted|permission denied|cgroup|namespace' <<<"$out"; then
    skip "dockerd runs but cannot start a container: $(tail -n 1 <<<"$out" | cut -c1-300)"
  fi
  abort "a container of $BASE_IMAGE does not run: $(tail -n 1 <<<"$out" | cut -c1-300)"
fi
pass "stand-in images ($BASE_IMAGE, $REDIS_IMAGE, $PG_IMAGE) imported, a container runs"

# --- the project's image --------------------------------------------------------
CTX="$WORK/context"
mkdir -p "$CTX/prebuilt"
cp "$REPO/Dockerfile" "$REPO/.dockerignore" "$CTX/"
cp -r "$REPO/scenarios" "$CTX/scenarios"
install -m 0755 "$BIN_DIR/booking" "$BIN_DIR/booking-harness" "$CTX/prebuilt/"
cp -r "$REPO/frontend/dist" "$CTX/prebuilt/static"
log "building $IMAGE (target runtime-prebuilt, RUNTIME_IMAGE=$BASE_IMAGE)"
build() {
  timeout 900 "$DOCKER" build --network host --target runtime-prebuilt \
    --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$CTX" 2>&1 |
    tee "$WORK/build.log" | grep --line-buffered -E '^Step ' | sed -u 's/^/    /'
}
build_rc=0
build & FG_PID=$!
wait "$FG_PID" || build_rc=$?
FG_PID=
if [ "$build_rc" -ne 0 ] || ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  tail -n 30 "$WORK/build.log"
  abort "docker build --target runtime-prebuilt failed"
fi
size=$("$DOCKER" image inspect "$IMAGE" --format '{{.Size}}')
pass "docker build --target runtime-prebuilt ($((size / 1048576)) MiB)"

meta=$("$DOCKER" image inspect "$IMAGE" --format '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Healthcheck.Test}}')
if [[ $meta == '10001:10001 ["booking"] '* ]] && [[ $meta == *probe* ]]; then
  pass "image metadata: user 10001:10001, entrypoint booking, a HEALTHCHECK"
else
  fail "image metadata: $meta"
fi
if out=$(timeout 60 "$DOCKER" run --rm --network host --read-only "$IMAGE" --version 2>&1) && [[ $out == booking* ]]; then
  pass "the binaries run in the image ($out)"
else
  fail "booking --version in the image: $out"
fi

# --- PostgreSQL, Redis, two replicas ---------------------------------------------
read -r PG_PORT REDIS_PORT PORT1 PORT2 < <(python3 - <<'EOF'
import socket
held, ports = [], []
for _ in range(50):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    held.append(s)
    if port not in (3000, 5432, 6379):
        ports.append(port)
    if len(ports) == 4:
        break
print(*ports)
EOF
)
[ -n "${PORT2:-}" ] || abort "no four free ports on 127.0.0.1"
log "ports on 127.0.0.1: postgres $PG_PORT, redis $REDIS_PORT, replicas $PORT1 and $PORT2"
DB_URL="postgres://booking:booking@127.0.0.1:$PG_PORT/booking"

# Waits up to $2 seconds for the command to succeed while container $1 runs.
wait_until() {
  local c=$1 secs=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ "$("$DOCKER" inspect --format '{{.State.Running}}' "$c" 2>/dev/null)" != true ]; then
      log "$c is not running"
      return 1
    fi
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# PostgreSQL as its own user, the cluster in a tmpfs: initdb, then in
# single-user mode the role `booking` (password `booking`, checked with
# scram-sha-256 over TCP) and its database, then the server.
PG_ENTRY='set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
"$bin/initdb" -D /tmp/pg -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/tmp/initdb.log
printf "%s\n" "CREATE ROLE booking LOGIN PASSWORD '\''booking'\'';" "CREATE DATABASE booking OWNER booking;" |
  "$bin/postgres" --single -D /tmp/pg postgres >/tmp/single.log
exec "$bin/postgres" -D /tmp/pg -p "$PGPORT" -k /tmp -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off'
CONTAINERS+=(bit-postgres)
"$DOCKER" run -d --name bit-postgres --network host --user postgres --read-only \
  --tmpfs /tmp:rw,size=1g,mode=1777 -e PGPORT="$PG_PORT" "$PG_IMAGE" sh -c "$PG_ENTRY" >/dev/null ||
  abort "docker run postgres failed"
CONTAINERS+=(bit-redis)
"$DOCKER" run -d --name bit-redis --network host --user redis --read-only "$REDIS_IMAGE" \
  redis-server --port "$REDIS_PORT" --save "" --appendonly no --bind 127.0.0.1 >/dev/null ||
  abort "docker run redis failed"
if wait_until bit-postgres 60 "$DOCKER" exec bit-postgres sh -c \
  'exec $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)/pg_isready -q -h 127.0.0.1 -p "$PGPORT" -U booking -d booking'; then
  pass "PostgreSQL ready on 127.0.0.1:$PG_PORT"
else
  abort "PostgreSQL not ready within 60 s"
fi
if wait_until bit-redis 30 sh -c "'$DOCKER' exec bit-redis redis-cli -p $REDIS_PORT ping | grep -q PONG"; then
  pass "Redis ready on 127.0.0.1:$REDIS_PORT"
else
  abort "Redis not ready within 30 s"
fi

for n in 1 2; do
  port_var=PORT$n
  CONTAINERS+=("bit-booking-$n")
  "$DOCKER" run -d --name "bit-booking-$n" --network host --read-only --tmpfs /tmp \
    -e LISTEN_ADDR="127.0.0.1:${!port_var}" -e DATABASE_URL="$DB_URL" \
    -e REDIS_URL="redis://127.0.0.1:$REDIS_PORT" -e RATE_LIMIT_PER_SECOND=0 \
    "$IMAGE" >/dev/null || abort "docker run of replica $n failed"
done
for n in 1 2; do
  port_var=PORT$n
  if wait_until "bit-booking-$n" 60 curl -fsS -m 5 "http://127.0.0.1:${!port_var}/api/health/ready"; then
    pass "replica $n ready: GET /api/health/ready on 127.0.0.1:${!port_var}"
  else
    abort "replica $n not ready within 60 s"
  fi
done
for n in 1 2; do
  status=
  for ((i = 0; i < 60; i++)); do
    status=$("$DOCKER" inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "bit-booking-$n" 2>/dev/null) || status=
    [ "$status" = healthy ] || [ "$status" = unhealthy ] || [ -z "$status" ] && break
    sleep 1
  done
  if [ "$status" = healthy ]; then
    pass "replica $n: Docker HEALTHCHECK healthy"
  else
    fail "replica $n: Docker HEALTHCHECK ${status:-absent} (last: $("$DOCKER" inspect --format '{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}' "bit-booking-$n" 2>/dev/null | tail -n 2 | tr '\n' ' '))"
  fi
done

# --- API smoke checks -------------------------------------------------------------
B1="http://127.0.0.1:$PORT1"
B2="http://127.0.0.1:$PORT2"
# call NAME METHOD URL [curl args]: body in $WORK/NAME.body, headers in $WORK/NAME.headers, status echoed.
call() {
  local name=$1 method=$2 url=$3
  shift 3
  curl -sS -m 15 -X "$method" -o "$WORK/$name.body" -D "$WORK/$name.headers" -w '%{http_code}' "$@" "$url" 2>"$WORK/$name.err" || echo " curl: $(cat "$WORK/$name.err")"
}
json() { # FILE PYTHON-EXPRESSION-ON-d
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

code=$(call resources GET "$B2/api/resources")
resource=$(json "$WORK/resources.body" 'd[0]["id"]') || resource=
if [ "$code" = 200 ] && [ -n "$resource" ]; then
  pass "GET /api/resources: 200, first resource $resource"
else
  fail "GET /api/resources: $code $(head -c 300 "$WORK/resources.body" 2>/dev/null)"
  resource=room_A
fi

DATE=$(date -u -d '+30 days' +%F)
KEY="image-test-$(date +%s)-$$"
body=$(printf '{"userId":"image-test-alice","resourceId":"%s","date":"%s"}' "$resource" "$DATE")
code=$(call book POST "$B1/api/bookings" -H 'Content-Type: application/json' -H "Idempotency-Key: $KEY" --data "$body")
if [ "$code" = 201 ] && [ "$(json "$WORK/book.body" 'd["booking"]["status"]')" = confirmed ]; then
  pass "POST /api/bookings on replica 1: 201 confirmed ($resource on $DATE)"
else
  fail "POST /api/bookings on replica 1: $code $(head -c 300 "$WORK/book.body" 2>/dev/null)"
fi
code=$(call replay POST "$B2/api/bookings" -H 'Content-Type: application/json' -H "Idempotency-Key: $KEY" --data "$body")
if [ "$code" = 201 ] && grep -qi '^Idempotent-Replayed: *true' "$WORK/replay.headers" &&
  cmp -s "$WORK/book.body" "$WORK/replay.body"; then
  pass "the same request on replica 2: 201, Idempotent-Replayed: true, the same body"
else
  fail "replay on replica 2: $code, replayed header: $(grep -i '^Idempotent-Replayed' "$WORK/replay.headers" | tr -d '\r'), body $(head -c 300 "$WORK/replay.body" 2>/dev/null)"
fi
rival=$(printf '{"userId":"image-test-bob","resourceId":"%s","date":"%s"}' "$resource" "$DATE")
code=$(call rival POST "$B2/api/bookings" -H 'Content-Type: application/json' -H "Idempotency-Key: $KEY-rival" --data "$rival")
if [ "$code" = 409 ] && [ "$(json "$WORK/rival.body" 'd["code"]')" = ALREADY_BOOKED ]; then
  pass "a rival key for the same slot: 409 ALREADY_BOOKED"
else
  fail "rival booking: $code $(head -c 300 "$WORK/rival.body" 2>/dev/null)"
fi
code=$(call index GET "$B1/")
if [ "$code" = 200 ] && cmp -s "$WORK/index.body" "$CTX/prebuilt/static/index.html"; then
  pass "GET / serves the front end's index.html"
else
  fail "GET /: $code $(head -c 200 "$WORK/index.body" 2>/dev/null)"
fi

# --- a target-mode scenario from inside the image --------------------------------
SCENARIO=/opt/booking/scenarios/11-cancel-and-rebook.toml
log "running $SCENARIO in a container of $IMAGE against both replicas"
CONTAINERS+=(bit-harness)
scenario_rc=0
bg_run "$WORK/harness.log" timeout 300 "$DOCKER" run --rm --name bit-harness --network host \
  --read-only --tmpfs /tmp --entrypoint booking-harness "$IMAGE" \
  run "$SCENARIO" --target-url "$B1" --target-url "$B2" --database-url "$DB_URL" --out /tmp/results ||
  scenario_rc=$?
grep -E 'scenarios:|PASS|FAIL' "$WORK/harness.log" | tail -n 8 | sed 's/^/    /' || true
if [ "$scenario_rc" -eq 0 ] && grep -q '1 passed' "$WORK/harness.log"; then
  pass "booking-harness run 11-cancel-and-rebook in the image: 1 passed"
else
  tail -n 40 "$WORK/harness.log"
  fail "booking-harness run in the image: exit $scenario_rc"
fi

# --- graceful stop ------------------------------------------------------------------
for n in 1 2; do
  timeout 60 "$DOCKER" stop -t 30 "bit-booking-$n" >/dev/null 2>&1 || true
  exit_code=$("$DOCKER" inspect --format '{{.State.ExitCode}}' "bit-booking-$n" 2>/dev/null) || exit_code='?'
  if [ "$exit_code" = 0 ]; then
    pass "replica $n stops on SIGTERM with exit status 0"
  else
    fail "replica $n: exit status $exit_code after docker stop"
  fi
done

# --- the harness's containers provider on the same daemon ---------------------------
n=0
for cmd in "${WITH_CONTAINERS[@]}"; do
  log "with the containers provider: $cmd"
  n=$((n + 1))
  since=$(date +%s)
  rc=0
  bg_run "$WORK/with-containers-$n.log" timeout 1800 env BOOKING_INFRA=containers \
    BOOKING_REDIS_IMAGE="$REDIS_IMAGE" BOOKING_POSTGRES_IMAGE="$PG_IMAGE" \
    bash -c "cd '$REPO' && $cmd" || rc=$?
  grep -E '^test result|scenarios:' "$WORK/with-containers-$n.log" | sed 's/^/    /' || true
  if [ "$rc" -eq 0 ]; then
    pass "containers provider: $cmd"
  else
    tail -n 60 "$WORK/with-containers-$n.log"
    fail "containers provider (exit $rc): $cmd"
  fi
  created=$(timeout 30 "$DOCKER" events --since "$since" --until "$(date +%s)" \
    --filter label=org.testcontainers.managed-by=testcontainers --filter event=create \
    --format '{{.ID}}' 2>/dev/null | wc -l)
  left=$("$DOCKER" ps -aq --filter label=org.testcontainers.managed-by=testcontainers 2>/dev/null | wc -l)
  if [ "$created" -eq 0 ]; then
    fail "containers provider: the command started no container"
  elif [ "$left" -eq 0 ]; then
    pass "containers provider: all $created containers it started are removed"
  else
    fail "containers provider: $left containers left behind"
    "$DOCKER" ps -aq --filter label=org.testcontainers.managed-by=testcontainers | xargs -r "$DOCKER" rm -f -v >/dev/null 2>&1
  fi
done

[ "$FAILED" -eq 0 ] || diagnostics
exit 0
