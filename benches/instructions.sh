#!/usr/bin/env bash
# User-space instructions per request of a booking binary, counted by
# valgrind's callgrind: the same binary and inputs count the same whatever
# else the machine does, so changes of a few per cent show (load runs on a
# shared 2-core machine cannot resolve them; docs/PERFORMANCE.md).
#
#   bash benches/instructions.sh target/release/booking [more binaries…]
#
# For each binary: a private PostgreSQL and Redis on free loopback ports
# (throwaway directories, stopped by pid), the service under callgrind with
# instrumentation off, one keep-alive client; per kind of request 300 to
# warm up, then the counters are zeroed, 1 000 requests counted and the
# counters dumped. Prints instructions per request for /health, a create
# (a new slot each time), a replay (one key again) and a refusal (a taken
# slot, no key); then, with the binary serving the embedded default (a
# SQLite file, the in-process coordinator), for a create and a refusal
# (`sqlite-…`). Needs valgrind, python3, redis-server and PostgreSQL's
# server binaries (initdb, pg_ctl). N= and WARM= change the counts; with
# KEEP=dir the callgrind dumps are kept there (one per binary and kind) for
# `callgrind_annotate`. Timers and the pools' upkeep make repeated counts of
# one binary differ by about 1%.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,22p' "$0"; exit 2; }
N=${N:-1000}
WARM=${WARM:-300}

pg_bin=${PG_BIN:-$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")}
[ -x "$pg_bin/initdb" ] || { echo "initdb not found (set PG_BIN)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -f "$work/pg/postmaster.pid" ]; then as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pg_port=$(free_port)
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg" -U postgres --auth=trust >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)

# Runs the service under callgrind with the environment given, sends each
# kind of request (a warm-up, then N counted) and prints the counts.
count() { # label-prefix kinds env…
  local prefix=$1 kinds=$2
  shift 2
  local port out service
  port=$(free_port)
  out="$work/callgrind.$prefix$n"
  env LISTEN_ADDR="127.0.0.1:$port" RATE_LIMIT_PER_SECOND=0 "$@" \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" serve >"$work/service.log" 2>&1 &
  service=$!
  pids+=("$service")
  python3 - "$port" "$service" "$N" "$WARM" "$kinds" <<'EOF'
import datetime, http.client, json, subprocess, sys, time, uuid
port, pid, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
wanted = sys.argv[5].split(",")
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        c.request("GET", "/health"); c.getresponse().read(); break
    except OSError:
        if time.time() > deadline: sys.exit("the service did not start")
        time.sleep(0.5)
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
day = [0]
def date():  # a new slot every time
    day[0] += 1
    return str(datetime.date(2030, 1, 1) + datetime.timedelta(days=day[0]))
def post(body, key=None):
    h = {"Content-Type": "application/json"}
    if key: h["Idempotency-Key"] = key
    c.request("POST", "/api/bookings", json.dumps(body), h)
    r = c.getresponse(); body = r.read()
    if r.status >= 400 and r.status != 409: print(r.status, body[:200])
    return r.status
def health(i):
    c.request("GET", "/health"); r = c.getresponse(); r.read(); return r.status
user = lambda i: f"u{i // 10}"
def create(i): return post({"userId": user(i), "resourceId": "room_A", "date": date()}, str(uuid.uuid4()))
taken = {"userId": "holder", "resourceId": "room_B", "date": "2029-06-01"}
assert post(taken, "taken") == 201
def replay(i): return post(taken, "taken")
def refusal(i): return post({**taken, "userId": user(i)})
kinds = {"health": (health, 200), "create": (create, 201),
         "replay": (replay, 201), "refusal": (refusal, 409)}
for name in wanted:
    send, want = kinds[name]
    for i in range(warm):
        got = send(i)
        assert got == want, (name, got)
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for i in range(warm, warm + n):
        got = send(i)
        assert got == want, (name, got)
    subprocess.run(["callgrind_control", "-d", name, pid], check=True, capture_output=True)
    time.sleep(0.5)
EOF
  kill -INT "$service"
  wait "$service" || true
  # One dump per kind, in the order the client sent them.
  local i=0 kind ir
  for kind in ${kinds//,/ }; do
    i=$((i + 1))
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.$i")
    [ "${ir:-0}" -gt 0 ] || { echo "no count for $prefix$kind in $out.$i" >&2; exit 1; }
    printf '  %-15s %8d instructions per request\n' "$prefix$kind" $((ir / N))
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"
      cp "$out.$i" "$KEEP/$(basename "$bin").$prefix$kind.callgrind"
    fi
  done
}

# Each binary gets a database and a Redis database of its own, and a SQLite
# file of its own for the embedded default.
n=0
for bin in "$@"; do
  n=$((n + 1))
  db="b$n"
  as_pg "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$db"
  echo "== $bin"
  count "" health,create,replay,refusal \
    DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$db" \
    REDIS_URL="redis://127.0.0.1:$redis_port/$((n % 16))"
  count sqlite- create,refusal DATABASE_URL="sqlite://$work/e$n.db"
done
