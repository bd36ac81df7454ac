#!/usr/bin/env bash
# Real 12 MP phone photos uploaded end to end through HTTP, the server confined to one core:
# uploads per second per core, and the server's CPU per upload.
#
#   scripts/bench_upload_12mp.sh            # N=60 uploads of each photo, C=4 at a time
#   N=200 C=4 scripts/bench_upload_12mp.sh
#
# The server (QRUPLOAD_BIN, default target/release/qrupload, built when missing) runs on the
# embedded defaults (SQLite, local blobs, in-process bus) with `taskset -c 0`; curl runs the
# uploads on core 1, C at a time, so that the server's core stays busy. The photos: the
# 12 MP Galaxy S7 Edge JPEG that scripts/bench_images.sh caches (skipped when it is not
# there) and the 12 MP iPhone 11 Pro HEIC of tests/fixtures/images. Prints one JSON line per
# photo: uploads per second of wall time with the server on one core, and the server's CPU
# time per upload (from /proc: user + system), whose inverse is uploads per CPU-second.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-60}
C=${C:-4}
BIN=${QRUPLOAD_BIN:-target/release/qrupload}
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qrupload-bench}"
[ -x "$BIN" ] || cargo build --release --locked --bin qrupload
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export QRUPLOAD__SERVER__HTTP__ADDR=127.0.0.1:$PORT QRUPLOAD__SERVER__GRPC__ADDR=127.0.0.1:0
export QRUPLOAD__DATA__BLOB__ROOT=$WORK/blobs QRUPLOAD__LOG__LEVEL=warn
export QRUPLOAD__DATA__DATABASE__URL="sqlite://$WORK/db.sqlite?mode=rwc"
export QRUPLOAD__LIMITS__UPLOADS_PER_SESSION_PER_MINUTE=0 QRUPLOAD__LIMITS__UPLOADS_PER_IP_PER_MINUTE=0
export QRUPLOAD__UPLOAD__MAX_IMAGES=100000 QRUPLOAD__UPLOAD__MAX_SESSION_BYTES=100GiB

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

taskset -c 0 "$BIN" --conf configs serve >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

# user + system clock ticks of the server so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

bench() {
  local photo=$1 type=$2
  local session id token
  session=$(curl -sf -X POST -H 'content-type: application/json' -d '{"member_id":1}' \
    "http://127.0.0.1:$PORT/v1/api/upload-sessions")
  id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["identifier"])' "$session")
  token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["upload_url"].split("#t=")[1])' "$session")
  local url="http://127.0.0.1:$PORT/v1/api/upload-sessions/$id/images"
  one() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "authorization: Bearer $token" \
      -F "file=@$photo;type=$type" "$url"
  }
  export -f one
  export photo type token url
  one >/dev/null; one >/dev/null   # warm: first-upload paths, page cache
  local load ticks0 ticks1 start end
  load=$(cut -d' ' -f1 /proc/loadavg)
  ticks0=$(cpu_ticks)
  start=$(date +%s.%N)
  seq 1 "$N" | taskset -c 1 xargs -P "$C" -I{} bash -c one >"$WORK/answers.txt"
  end=$(date +%s.%N)
  ticks1=$(cpu_ticks)
  python3 - "$WORK/answers.txt" "$photo" "$start" "$end" "$ticks0" "$ticks1" "$(getconf CLK_TCK)" "$C" "$load" <<'PY'
import json, os, sys
answers, photo = sys.argv[1], sys.argv[2]
start, end, t0, t1, hz = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
rows = [l.split() for l in open(answers)]
ok = sorted(float(t) * 1000 for code, t in rows if code == "201")
pct = lambda p: round(ok[min(len(ok) - 1, int(len(ok) * p))], 1) if ok else None
cpu_ms = (t1 - t0) * 1000 / hz / max(1, len(ok))
print(json.dumps({
    "bench": "upload_12mp_http_one_core",
    "input": os.path.basename(photo),
    "input_bytes": os.path.getsize(photo),
    "uploads": len(rows),
    "created": len(ok),
    "concurrency": int(sys.argv[8]),
    "uploads_per_s_one_core": round(len(ok) / (end - start), 2),
    "server_cpu_ms_per_upload": round(cpu_ms, 1),
    "uploads_per_cpu_s": round(1000 / cpu_ms, 2) if cpu_ms else None,
    "answer_ms_p50": pct(0.5),
    "answer_ms_max": ok[-1] if ok else None,
    "loadavg_at_start": sys.argv[9],
}))
PY
}

if [ -f "$CACHE/galaxy_s7_edge_12mp.jpg" ]; then
  bench "$CACHE/galaxy_s7_edge_12mp.jpg" image/jpeg
else
  echo "no $CACHE/galaxy_s7_edge_12mp.jpg (scripts/bench_images.sh fetches it): skipped" >&2
fi
bench tests/fixtures/images/iphone_11_pro_12mp.heic image/heic
