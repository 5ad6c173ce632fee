#!/usr/bin/env bash
# Image recognition under load: wrk POSTs a 640x480 JPEG with one enrolled face to
# /v1/recognize/image at 1, 2, 4 and 8 connections and reports requests/s and latency
# percentiles; any answer other than a 200 naming a match, and any socket error, fails the run.
#
#   scripts/load_recognize.sh            # builds the release binary first
#   VISAGE_BIN=path/to/visage scripts/load_recognize.sh
#
# Settings (environment): VISAGE_BIN, PORT (0: any free port), DURATION (20s), CONNECTIONS ("1 2 4 8"),
# DISTRACTORS (people enrolled besides the probe's, 50), VISAGE_PG_DIR (the embedded
# PostgreSQL's directory, /var/tmp/visage-wrk-pg so the project's own is not touched),
# VISAGE_PIPELINE_THREADS (the server's pool; default one per core), WORK (scratch directory).
# Needs: wrk, curl, python3, ffmpeg, npm (to fetch the test photos once).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-0}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-"1 2 4 8"}
DISTRACTORS=${DISTRACTORS:-50}
export VISAGE_PG_DIR=${VISAGE_PG_DIR:-/var/tmp/visage-wrk-pg}
WORK=${WORK:-$(mktemp -d /tmp/visage-wrk.XXXXXX)}
mkdir -p "$WORK"

for tool in wrk curl python3 ffmpeg; do
  command -v "$tool" >/dev/null || { echo "load_recognize: $tool is missing (apt-get install -y $tool)" >&2; exit 1; }
done

if [ -z "${VISAGE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --workspace --bin visage)
  VISAGE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/visage
fi

# The test photos: the face-api demo photos the tests use (visage_shared::fixtures).
FIX="$ROOT/.visage/fixtures/face-api-1.7.15"
if [ ! -f "$FIX/sample6.jpg" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack @vladmandic/face-api@1.7.15 --silent >/dev/null \
    && tar xzf vladmandic-face-api-1.7.15.tgz --strip-components=2 package/demo)
  mkdir -p "$FIX"
  cp "$tmp"/sample*.jpg "$FIX"/
  rm -rf "$tmp"
fi

# The probe: the most frontal face of sample6.jpg (four people), cropped 4:3 so that no other
# face is in the frame, scaled to 640x480 (a webcam frame).
PHOTO="$FIX/sample6.jpg"
PROBE="$WORK/probe-640x480.jpg"
"$VISAGE_BIN" detect "$PHOTO" > "$WORK/photo.json" 2>/dev/null
CROP=$(python3 - "$WORK/photo.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
W, H = d["width"], d["height"]
boxes = [f["detection"]["bbox"] for f in d["faces"]]
i = min(range(len(boxes)), key=lambda k: abs(d["faces"][k]["quality"]["yaw_deg"]))
b = boxes[i]
others = [o for k, o in enumerate(boxes) if k != i]
def hits(x0, y0, w, h, o):
    return not (o["x"] + o["width"] <= x0 or o["x"] >= x0 + w or o["y"] + o["height"] <= y0 or o["y"] >= y0 + h)
for factor in [3.2, 3.0, 2.8, 2.6, 2.4, 2.2, 2.0]:
    w = min(int(b["width"] * factor), W); h = w * 3 // 4
    if h > H: continue
    cy = b["y"] + b["height"] / 2
    y0 = int(min(max(cy - h / 2, 0), H - h))
    # Slide the window left to right over every position that keeps the face inside.
    lo = int(max(b["x"] + b["width"] - w, 0)); hi = int(min(b["x"], W - w))
    for x0 in sorted(range(lo, hi + 1, 4), key=lambda x: abs(x + w / 2 - (b["x"] + b["width"] / 2))):
        if not any(hits(x0, y0, w, h, o) for o in others):
            print(f"{w}:{h}:{x0}:{y0}")
            sys.exit(0)
sys.exit("no crop holds the chosen face alone")
EOF
)
ffmpeg -loglevel error -y -i "$PHOTO" -vf "crop=$CROP,scale=640:480" -q:v 3 "$PROBE"
"$VISAGE_BIN" detect "$PROBE" > "$WORK/probe.json" 2>/dev/null
python3 - "$WORK/probe.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert (d["width"], d["height"]) == (640, 480), (d["width"], d["height"])
assert len(d["faces"]) == 1, f"the probe must hold exactly one face, found {len(d['faces'])}"
f = d["faces"][0]
assert not f["quality_issues"], f["quality_issues"]
print(f"probe: 640x480, one face of {f['quality']['face_px']:.0f} px, yaw {f['quality']['yaw_deg']:.0f} deg", file=sys.stderr)
EOF

# The server, on its own embedded PostgreSQL, with a fresh key and no effective rate limit.
KEY="vsg_wrk_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
RUST_LOG=${RUST_LOG:-info,sqlx=warn} "$VISAGE_BIN" serve --port "$PORT" --bootstrap-key "$KEY" \
  --rate-per-minute 1000000000 --log-json > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
BASE=
for _ in $(seq 600); do
  PORT=$(sed -n 's#^visage listening on http://127.0.0.1:\([0-9]*\).*#\1#p' "$WORK/server.log" | head -1)
  [ -n "$PORT" ] && { BASE="http://127.0.0.1:$PORT"; break; }
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$BASE" ] || { echo "the server did not start" >&2; exit 1; }
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" = 200 ] || { echo "server not ready" >&2; exit 1; }
THREADS=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if "threads" in e.get("fields", {}): print(e["fields"]["threads"]); break
' "$WORK/server.log")

api() { curl -sS --fail-with-body -H "Authorization: Bearer $KEY" "$@"; }
CONSENT='{"policy_version":"load-test","policy_text":"Synthetic person of a load test.","purpose":"load test","evidence":{"method":"checkbox","collected_by":"scripts/load_recognize.sh"}}'
person() {
  api -H 'Content-Type: application/json' -d "{\"name\":\"$1\",\"consent\":$CONSENT}" "$BASE/v1/people" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# A clean gallery: the database directory is kept between runs, so erase what an earlier run
# (or an interrupted one) left.
while :; do
  ids=$(api "$BASE/v1/people?limit=200" | python3 -c 'import json,sys; print(" ".join(p["id"] for p in json.load(sys.stdin)["items"]))')
  [ -n "$ids" ] || break
  for id in $ids; do api -X DELETE "$BASE/v1/people/$id" >/dev/null; done
done

# The probe's person, enrolled from the probe itself; and distractors with random embeddings
# (three each) so the search has a crowd to look through.
P=$(person "Probe person")
api -H 'Content-Type: image/jpeg' --data-binary @"$PROBE" "$BASE/v1/people/$P/faces/image" >/dev/null
MODEL=$("$VISAGE_BIN" embed "$PROBE" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["faces"][0]["embedding"]["model"])')
for n in $(seq "$DISTRACTORS"); do
  D=$(person "Distractor $n")
  python3 -c '
import json, random, sys
def unit():
    v = [random.gauss(0, 1) for _ in range(192)]
    s = sum(x * x for x in v) ** 0.5
    return [x / s for x in v]
print(json.dumps({"embeddings": [{"model": sys.argv[1], "vector": unit()} for _ in range(3)]}))
' "$MODEL" | api -H 'Content-Type: application/json' -d @- "$BASE/v1/people/$D/faces" >/dev/null
done
# One request by hand: the probe's person must be the match.
api -H 'Content-Type: image/jpeg' --data-binary @"$PROBE" "$BASE/v1/recognize/image" \
  | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"]
assert len(r) == 1 and r[0]["candidates"][0]["match"] and r[0]["candidates"][0]["person_id"] == sys.argv[1], r
' "$P"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); server pipeline pool: $THREADS; enrolled: 1 + $DISTRACTORS people"
echo "load before: $(uptime | sed 's/.*load average: //')"
# The server's own stage histograms (sum and count per stage), differenced around each run.
stages() {
  curl -s "$BASE/metrics" | sed -n 's/^visage_pipeline_stage_seconds_\(sum\|count\){stage="\([a-z_]*\)"} \(.*\)$/\2 \1 \3/p'
}
stage_means() {
  python3 -c '
import sys
def read(p):
    return {(st, kind): float(v) for st, kind, v in (line.split() for line in open(p))}
a, b = read(sys.argv[1]), read(sys.argv[2])
def mean(st):
    n = b.get((st, "count"), 0) - a.get((st, "count"), 0)
    return 1000 * (b.get((st, "sum"), 0) - a.get((st, "sum"), 0)) / n if n else float("nan")
print(" / ".join(f"{mean(st):.1f}" for st in ["decode", "detect", "align_quality_embed"]))
' "$1" "$2"
}
printf '| connections | wrk threads | requests/s | p50 ms | p90 ms | p99 ms | max ms | requests | non-200 or no match | socket errors | server decode / detect / align+embed ms | load average after (1 min) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
failed=0
for c in $CONNECTIONS; do
  stages > "$WORK/stages-before-c$c.txt"
  t=$(( c < 2 ? 1 : 2 ))
  out=$(VISAGE_KEY=$KEY PROBE=$PROBE wrk -t"$t" -c"$c" -d"$DURATION" --timeout 10s --latency \
    -s "$ROOT/scripts/load_recognize.lua" "$BASE")
  echo "$out" > "$WORK/wrk-c$c.txt"
  line=$(echo "$out" | grep '^visage-wrk ')
  rps=$(echo "$out" | sed -n 's/^Requests\/sec: *//p')
  get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  bad=$(( $(get non200) + $(get unmatched) ))
  sock=$(( $(get connect) + $(get read) + $(get write) + $(get timeout) ))
  load=$(uptime | sed 's/.*load average: //' | cut -d, -f1)
  stages > "$WORK/stages-after-c$c.txt"
  means=$(stage_means "$WORK/stages-before-c$c.txt" "$WORK/stages-after-c$c.txt")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$t" "$rps" \
    "$(get p50_ms)" "$(get p90_ms)" "$(get p99_ms)" "$(get max_ms)" "$(get requests)" "$bad" "$sock" "$means" "$load"
  if [ "$bad" -ne 0 ] || [ "$sock" -ne 0 ]; then failed=1; fi
done
echo "wrk outputs and the server log: $WORK"
if [ "$failed" -ne 0 ]; then
  echo "load_recognize: FAILED: some answers were not a 200 with the match, or sockets failed" >&2
  exit 1
fi
