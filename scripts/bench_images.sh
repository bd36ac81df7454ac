#!/usr/bin/env bash
# The image benchmarks of docs/BENCHMARKS.md ("Image pipeline", "Phone photos beside libheif
# and libvips"), in one command, each pinned to one core:
#
#   scripts/bench_images.sh            # both benches, JSON lines on stdout
#   CPU=0 scripts/bench_images.sh      # another core (default 1)
#
# The 12 MP phone JPEG (a Samsung Galaxy S7 Edge photo, 4032x3024, 4.2 MB, from
# github.com/drewnoakes/metadata-extractor-images: "free to use these however you wish") is
# too big for the repository: it is downloaded once into $CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/qrupload-bench) and checked by SHA-256; a file already there
# with the right checksum is used as it is. Needs heif-convert (libheif-examples), vips
# (libvips-tools), taskset, and Pillow for python3 (installed from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CPU="${CPU:-1}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qrupload-bench}"
JPEG_12MP_COMMIT=d69240df9f924b251aa93bafa8a4e53606d4de59
JPEG_12MP_NAME="Samsung SM-G935L (Galaxy S7 Edge).jpg"
JPEG_12MP_SHA256=33516b084ddb3fa7c4c40d55768b729d744fe580792335f5546a4e29cb4e71e6
JPEG_12MP="$CACHE/galaxy_s7_edge_12mp.jpg"

python3 -c 'import PIL' 2>/dev/null || python3 -m pip install -q pillow

mkdir -p "$CACHE"
if ! echo "$JPEG_12MP_SHA256  $JPEG_12MP" | sha256sum --check --status 2>/dev/null; then
  url="https://raw.githubusercontent.com/drewnoakes/metadata-extractor-images/$JPEG_12MP_COMMIT/jpg/${JPEG_12MP_NAME// /%20}"
  curl --fail --location --silent --show-error --output "$JPEG_12MP.part" "$url"
  echo "$JPEG_12MP_SHA256  $JPEG_12MP.part" | sha256sum --check --quiet
  mv "$JPEG_12MP.part" "$JPEG_12MP"
fi

# Build first (on every core), then measure on one.
bench_exe() {
  cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
PIPELINE=$(bench_exe pipeline)
HEIC=$(bench_exe heic)
taskset -c "$CPU" "$PIPELINE"
QRUPLOAD_BENCH_JPEG_12MP="$JPEG_12MP" VIPS_CONCURRENCY=1 taskset -c "$CPU" "$HEIC"
