#!/usr/bin/env bash
# Runs every fan-out shape recorded in docs/BENCHMARKS.md against the release binary, appends
# each JSON line to docs/bench/results.jsonl, and redraws docs/bench/fanout.png.
#
#   scripts/bench_all.sh                 # every shape
#   SHAPES="floor-100x100 100x100" scripts/bench_all.sh   # some of them
#   SHAPES=fd-cap-probe scripts/bench_all.sh              # past the open-file cap (not in "every")
#   SHAPES="100x100-nchan 1000x2-nchan 300x1x3-nats" scripts/bench_all.sh   # beside nchan; NATS
#   make bench                                            # SHAPES=smoke, PLOT=0: a short smoke
#   SHAPES=issue13 scripts/bench_all.sh                   # issue 13's table, beside nchan (~17 min)
#
# QRUPLOAD_BIN=path measures another server binary; FANOUT_BIN=path skips building the bench.
# Servers run on core $SERVER_CPU (default 0), the load generator on the next core. Every
# QRUPLOAD__* variable set here reaches the servers (raise any per-address or per-member limit
# this way). The 3-instance shape needs PostgreSQL on 127.0.0.1:5432 and Redis on :6379.
# Other work on the machine shows in the latency tails: each line records the load average.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${OUT:-docs/bench/results.jsonl}"
SERVER_CPU="${SERVER_CPU:-0}"
IDLE="${IDLE:-60}"
SHAPES="${SHAPES:-floor-1000x2 floor-100x100 1000x2 100x100 50x100 190x100 500x100x3}"
# Issue 13's shapes, one run: 100×100 beside nchan (the stall: 1,000 uploads with 10,000
# watchers), the same on PostgreSQL + Redis, 1,000×2 beside nchan, 1,000 uploads beside
# 10,000 idle watchers, 3 instances on Redis and on NATS, and 19,000 idle watchers' memory.
# Its lines go to docs/bench/issue13.jsonl (replaced), then to $OUT, and the table is printed.
ISSUE13="i13-100x100-floor i13-100x100-nchan i13-100x100-pg i13-1000x2-nchan i13-idle10k i13-300x1x3-redis i13-300x1x3-redis-cluster i13-300x1x3-nats i13-190x100"
if [ "$SHAPES" = issue13 ]; then
  SHAPES=$ISSUE13
  ISSUE_OUT=docs/bench/issue13.jsonl
  : >"$ISSUE_OUT"
fi

# A server with abuse limits (a `limits:` section in the config) gets them lifted unless the
# caller set them: a benchmark's watchers and uploads come from few addresses, one member per
# session, and far faster than a person.
if grep -q '^limits:' configs/config.yaml; then
  for key in $(sed -n '/^limits:/,/^[^ ]/s/^  \([a-z_]*\):.*/\1/p' configs/config.yaml); do
    var="QRUPLOAD__LIMITS__${key^^}"
    [ -n "${!var:-}" ] || export "$var=0"
  done
fi

# A Redis Cluster of three nodes of its own (no replicas), in $WORK, on free ports; prints its
# nodes' URLs comma-separated. Stopped with the script.
redis_cluster() {
  local ports=() urls=() port bus tries
  for _ in 1 2 3; do
    # Two free ports: the node's and its cluster bus's (by default port + 10000, which is no
    # port at all for a port above 55535).
    read -r port bus < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    ports+=("$port")
    mkdir -p "$WORK/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --cluster-enabled yes \
      --cluster-port "$bus" --cluster-node-timeout 2000 --dir "$WORK/redis-$port" --daemonize yes \
      --pidfile "$WORK/redis-$port/pid" >/dev/null
    urls+=("redis://127.0.0.1:$port")
  done
  for port in "${ports[@]}"; do
    tries=0
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
      tries=$((tries + 1))
      [ "$tries" -lt 100 ] || { echo "redis cluster node on port $port did not start" >&2; return 1; }
      sleep 0.1
    done
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
  for port in "${ports[@]}"; do
    tries=0
    until redis-cli -p "$port" cluster info | grep -q cluster_state:ok; do
      tries=$((tries + 1))
      [ "$tries" -lt 300 ] || { echo "redis cluster on port $port never became ok" >&2; return 1; }
      sleep 0.1
    done
  done
  (IFS=,; echo "${urls[*]}")
}
stop_redis_cluster() {
  for pid in "$WORK"/redis-*/pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; rm -f "$pid"; done
  return 0
}

# Private copies: the target folder may be shared with other checkouts that rebuild it.
WORK=$(mktemp -d)
trap 'stop_redis_cluster; rm -rf "$WORK"' EXIT
if [ -n "${QRUPLOAD_BIN:-}" ]; then
  cp "$QRUPLOAD_BIN" "$WORK/qrupload"
else
  cargo build --release --locked --bin qrupload
  cp "$CARGO_TARGET_DIR/release/qrupload" "$WORK/qrupload"
fi
if [ -n "${FANOUT_BIN:-}" ]; then
  cp "$FANOUT_BIN" "$WORK/fanout"
else
  cargo bench --locked --bench fanout --no-run
  cp "$(cargo bench --locked --bench fanout --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.target.name == "fanout" and .executable != null) | .executable' | tail -n1)" \
    "$WORK/fanout"
fi

run() {
  echo "== $*" >&2
  "$WORK/fanout" --binary "$WORK/qrupload" --server-cpu "$SERVER_CPU" --idle-secs "$IDLE" \
    --out "${ISSUE_OUT:-$OUT}" "$@"
}

for shape in $SHAPES; do
  case "$shape" in
    floor-1000x2)  run --floor --sessions 1000 --watchers 2 --rate 100 --uploads 300 ;;
    floor-100x100) run --floor --sessions 100 --watchers 100 --rate 50 --uploads 100 ;;
    1000x2)        run --sessions 1000 --watchers 2 --rate 100 --uploads 300 ;;
    100x100)       run --sessions 100 --watchers 100 --rate 50 --uploads 100 ;;
    50x100)        run --sessions 50 --watchers 100 --rate 50 --uploads 50 ;;
    190x100)       run --sessions 190 --watchers 100 --rate 50 --uploads 190 ;;
    500x100x3)     run --instances 3 --sessions 500 --watchers 100 --rate 50 --uploads 500 ;;
    # Beside nginx + nchan in one command (both rows printed); NATS across three instances with
    # one watcher per session, so each instance serves a third of the sessions.
    100x100-nchan) run --beside-nchan --sessions 100 --watchers 100 --rate 50 --uploads 1000 ;;
    1000x2-nchan)  run --beside-nchan --sessions 1000 --watchers 2 --rate 50 --uploads 1000 ;;
    300x1x3-nats)  run --instances 3 --bus nats --sessions 300 --watchers 1 --rate 50 --uploads 300 ;;
    # Issue 13 (SHAPES=issue13).
    i13-100x100-floor) run --floor --sessions 100 --watchers 100 --rate 50 --uploads 1000 --label "i13 100x100 floor" ;;
    i13-100x100-nchan) run --beside-nchan --sessions 100 --watchers 100 --rate 50 --uploads 1000 --label "i13 100x100" ;;
    i13-100x100-pg)    run --pg-redis --sessions 100 --watchers 100 --rate 50 --uploads 1000 --label "i13 100x100 pg+redis" ;;
    i13-1000x2-nchan)  run --beside-nchan --sessions 1000 --watchers 2 --rate 50 --uploads 1000 --label "i13 1000x2" ;;
    i13-idle10k)       run --sessions 10 --watchers 1 --idle-watchers 10000 --rate 50 --uploads 1000 --label "i13 idle 10k" ;;
    i13-300x1x3-redis) run --instances 3 --bus redis --sessions 300 --watchers 1 --rate 50 --uploads 300 --label "i13 300x1 x3 redis" ;;
    i13-300x1x3-redis-cluster)
      nodes=$(redis_cluster)
      run --instances 3 --bus redis_cluster --redis-cluster "$nodes" --sessions 300 --watchers 1 --rate 50 --uploads 300 --label "i13 300x1 x3 redis cluster"
      stop_redis_cluster ;;
    i13-300x1x3-nats)  run --instances 3 --bus nats --sessions 300 --watchers 1 --rate 50 --uploads 300 --label "i13 300x1 x3 nats" ;;
    i13-190x100)       run --sessions 190 --watchers 100 --rate 50 --uploads 190 --calibrate-uploads 0 --label "i13 190x100" ;;
    # `make bench`: a short smoke of both rows, not a measurement.
    smoke)         run --beside-nchan --sessions 10 --watchers 10 --rate 50 --uploads 50 ;;
    # Not in the default set: 20,000 watchers on one instance, past its open-file cap.
    fd-cap-probe)  "$WORK/fanout" --binary "$WORK/qrupload" --server-cpu "$SERVER_CPU" --idle-secs 5 \
                     --sessions 200 --watchers 100 --rate 50 --uploads 50 --connect-timeout-secs 20 \
                     --label "fd-cap probe 200x100" --out docs/bench/fd-cap-probe.jsonl ;;
    *) echo "unknown shape $shape" >&2; exit 2 ;;
  esac
done

if [ -n "${ISSUE_OUT:-}" ]; then
  cat "$ISSUE_OUT" >>"$OUT"
  python3 scripts/plot_bench.py --issue13 "$ISSUE_OUT"
fi
if [ "${PLOT:-1}" = 1 ]; then
  python3 scripts/plot_bench.py "$OUT" docs/bench/fanout.png
fi
