#!/usr/bin/env bash
# Statements and fsyncs per upload, and the fsync durations behind the upload tail.
#
#   scripts/upload_trace.sh fsync [N]   # SQLite under strace: fsyncs by file, their durations
#   scripts/upload_trace.sh sql         # PostgreSQL with log_statement=all: one upload's statements
#
# QRUPLOAD_BIN (default target/release/qrupload) is the server; JPEG a small photo to upload.
# The sql mode needs PostgreSQL on 127.0.0.1:5432 (user postgres) and read access to its log.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-fsync}
N=${2:-1000}
BIN=${QRUPLOAD_BIN:-target/release/qrupload}
JPEG=${JPEG:-/usr/share/doc/nodejs/thin-white-stripe.jpg}
PGLOG=${PGLOG:-/var/log/postgresql/postgresql-15-main.log}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export QRUPLOAD__SERVER__HTTP__ADDR=127.0.0.1:$PORT QRUPLOAD__SERVER__GRPC__ADDR=127.0.0.1:0
export QRUPLOAD__DATA__BLOB__ROOT=$WORK/blobs QRUPLOAD__LOG__LEVEL=warn
export QRUPLOAD__LIMITS__UPLOADS_PER_SESSION_PER_MINUTE=0 QRUPLOAD__LIMITS__UPLOADS_PER_IP_PER_MINUTE=0
export QRUPLOAD__UPLOAD__MAX_IMAGES=100000 QRUPLOAD__UPLOAD__MAX_SESSION_BYTES=100GiB
PG="psql -U postgres -h 127.0.0.1 -Atq"
DB=qrupload_trace_$$

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$MODE" = sql ]; then $PG -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true; fi
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$MODE" = sql ]; then
  $PG -d postgres -c "CREATE DATABASE $DB"
  $PG -d postgres -c "ALTER DATABASE $DB SET log_statement = 'all'"
  export QRUPLOAD__DATA__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$DB
  "$BIN" --conf configs serve >"$WORK/server.log" 2>&1 &
  server_pid=$!
else
  export QRUPLOAD__DATA__DATABASE__URL="sqlite://$WORK/db.sqlite?mode=rwc"
  strace -f -tt -T -e trace=fsync,fdatasync,sync_file_range,openat -o "$WORK/trace.txt" \
    "$BIN" --conf configs serve >"$WORK/server.log" 2>&1 &
  tracer=$!
  for _ in $(seq 1 50); do server_pid=$(pgrep -P "$tracer" || true); [ -n "$server_pid" ] && break; sleep 0.1; done
fi
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
session=$(curl -sf -X POST -H 'content-type: application/json' -d '{"member_id":1}' \
  "http://127.0.0.1:$PORT/v1/api/upload-sessions")
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["identifier"])' "$session")
token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["upload_url"].split("#t=")[1])' "$session")
upload() {
  curl -s -o /dev/null -w "$(date +%H:%M:%S.%6N) %{http_code} %{time_total}\n" \
    -H "authorization: Bearer $token" -F "file=@$JPEG;type=image/jpeg" \
    "http://127.0.0.1:$PORT/v1/api/upload-sessions/$id/images"
}

if [ "$MODE" = sql ]; then
  upload >/dev/null; upload >/dev/null   # warm: prepared statements, first-upload paths
  $PG -d "$DB" -c "SELECT 'trace-begin-$$'"
  upload >/dev/null
  sleep 0.5
  $PG -d "$DB" -c "SELECT 'trace-end-$$'"
  # The janitor's periodic expiry scan may fall in the window: it is not the upload's.
  sed -n "/trace-begin-$$/,/trace-end-$$/p" "$PGLOG" | grep "@$DB" | grep -v "trace-" |
    grep -E 'LOG: +(execute|statement)' | grep -v '"expires_at" <' |
    sed 's/^.*LOG: *//' | cut -c1-160 >"$WORK/statements.txt"
  cat "$WORK/statements.txt"
  echo "statements: $(wc -l <"$WORK/statements.txt")"
  exit 0
fi

for _ in $(seq 1 "$N"); do upload; done >"$WORK/uploads.txt"
kill "$server_pid"; wait "$tracer" 2>/dev/null || true; server_pid=""
python3 - "$WORK/trace.txt" "$WORK/uploads.txt" "$WORK" <<'PY'
import re, sys, collections
work = sys.argv[3]
def kind(path):
    if path.startswith(work + '/blobs'):
        return 'blob files and folders'
    if path == work:
        return 'database folder'
    return path.rsplit('/', 1)[-1]
def secs(stamp):
    h, m, s = stamp.split(':')
    return int(h) * 3600 + int(m) * 60 + float(s)
# Threads interleave: strace splits a call into "<unfinished ...>" and "<... resumed>" lines;
# the call started at the first line's time.
fds, syncs, pending = {}, [], {}
for line in open(sys.argv[1]):
    m = re.match(r'(\d+)\s+(\S+)\s+(openat|fsync|fdatasync)\((.*) <unfinished \.\.\.>', line)
    if m:
        pending[m.group(1)] = (m.group(2), m.group(3), m.group(4))
        continue
    m = re.match(r'(\d+)\s+\S+\s+<\.\.\. (\w+) resumed>(.*)', line)
    if m and m.group(1) in pending:
        stamp, call, args = pending.pop(m.group(1))
        line = f"{m.group(1)} {stamp} {call}({args}{m.group(3)}"
    m = re.match(r'\d+\s+\S+\s+openat\(AT_FDCWD, "([^"]+)".*= (\d+) <', line)
    if m:
        fds[int(m.group(2))] = kind(m.group(1))
        continue
    m = re.match(r'\d+\s+(\S+)\s+f(?:data)?sync\((\d+)\)\s+= \d+ <([\d.]+)>', line)
    if m:
        syncs.append((fds.get(int(m.group(2)), '?'), secs(m.group(1)), float(m.group(3))))
ups = sorted(float(l.split()[2]) * 1000 for l in open(sys.argv[2]) if l.split()[1] == '201')
pct = lambda d, p: d[min(len(d) - 1, int(len(d) * p))]
print(f"uploads {len(ups)}: p50 {pct(ups, .5):.1f} ms, p99 {pct(ups, .99):.1f} ms, max {ups[-1]:.1f} ms")
by = collections.defaultdict(list)
for f, _, s in syncs:
    by[f].append(s * 1000)
for f, d in sorted(by.items(), key=lambda kv: -len(kv[1])):
    d.sort()
    print(f"fsync {f}: {len(d)} ({len(d) / max(1, len(ups)):.2f} per upload), "
          f"p50 {pct(d, .5):.2f} ms, p99 {pct(d, .99):.2f} ms, max {d[-1]:.2f} ms, "
          f"over 20 ms: {sum(x > 20 for x in d)}")
# Serial depth: syncs that overlap in time count once (they wait together). The uploads run
# one at a time, so the runs of overlapping syncs per upload are the syncs it waits for in turn.
runs, end = 0, None
for _, start, took in sorted(syncs, key=lambda s: s[1]):
    if end is None or start > end:
        runs += 1
        end = start + took
    else:
        end = max(end, start + took)
print(f"serial sync depth: {runs} runs of overlapping syncs, {runs / max(1, len(ups)):.2f} per upload")
PY
