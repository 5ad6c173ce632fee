#!/usr/bin/env bash
# End-to-end test of the browser client: builds it (`cargo xtask web`), starts the visage service
# (embedded PostgreSQL), makes fake-webcam videos from fixture photos, and runs test.mjs in
# headless Debian Chromium.
#
#   frontend/e2e/run.sh           the flow test (enroll, recognise, unknown, erase, unknown,
#                                 withdrawal by the data subject)
#   frontend/e2e/run.sh --bench   speed in the browser, release builds with and without SIMD,
#                                 then the release build against onnxruntime-web on the same
#                                 models (artifacts/bench-ort.{json,md}); BENCH_VARIANTS picks
#                                 some of "simd nosimd ort"
#
# `cargo xtask test` runs it after `cargo test`, installing what it needs. Needs: chromium,
# ffmpeg, node/npm. Videos and artifacts go to ignored folders (frontend/e2e/work, frontend/e2e/artifacts);
# no photo is ever committed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/visage-target}"
WORK="$HERE/work"
ART="$HERE/artifacts"
MODE=flow
[ "${1:-}" = "--bench" ] && MODE=bench
mkdir -p "$WORK" "$ART"

need() { command -v "$1" >/dev/null || { echo "e2e: $1 is required ($2)"; exit 1; }; }
need ffmpeg "apt-get install ffmpeg"
need node "Node.js 20"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || { echo "e2e: $CHROMIUM is required (apt-get install chromium chromium-driver)"; exit 1; }

VARIANTS="${BENCH_VARIANTS:-simd nosimd ort}"
if [ "$MODE" = bench ]; then
  echo "== build the app (release, wasm-opt: what \`cargo xtask serve\` ships)"
  (cd "$ROOT" && cargo xtask web --release)
  if [[ " $VARIANTS " == *" nosimd "* ]]; then
    echo "== build the app without SIMD"
    (cd "$ROOT" && cargo xtask web --release --no-simd --dist frontend/dist-nosimd)
  fi
else
  echo "== build the app (dev profile: dependencies, so the pipeline, at opt-level 3)"
  (cd "$ROOT" && cargo xtask web)
fi

echo "== fixture videos"
if [ ! -f "$WORK/demo/sample1.jpg" ]; then
  (cd "$WORK" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null && tar xzf vladmandic-face-api-1.7.15.tgz package/demo \
     && mkdir -p demo && mv package/demo/*.jpg demo/ && rm -rf package vladmandic-face-api-1.7.15.tgz)
fi
video() { # name source filter
  [ -f "$WORK/$1.y4m" ] || ffmpeg -v error -y -loop 1 -i "$2" -vf "$3,format=yuv420p" -t 2 -r 30 "$WORK/$1.y4m"
}
# Person A (sample1, second face) in two framings; person B (sample3, first face).
video A1 "$WORK/demo/sample1.jpg" "crop=560:420:653:329,scale=640:480"
video A2 "$WORK/demo/sample1.jpg" "crop=800:600:600:260,scale=640:480"
video B "$WORK/demo/sample3.jpg" "crop=640:480:374:232,scale=640:480"
FACES="${VISAGE_FACES:-$ROOT/../shared/faces}"
if [ "$MODE" = flow ] && [ -f "$FACES/people/barack_obama/1.jpg" ]; then
  # Two different photos of one person, letterboxed to 640x480: the check beside the suite.
  fit="scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2"
  video S1 "$FACES/people/barack_obama/1.jpg" "$fit"
  video S2 "$FACES/people/barack_obama/2.jpg" "$fit"
fi
if [ "$MODE" = bench ] && [[ " $VARIANTS " == *" ort "* ]] && [ ! -f "$WORK/A2.rgba" ]; then
  # The comparison with onnxruntime-web works on one frame of the bench's video, as RGBA.
  ffmpeg -v error -y -i "$WORK/A2.y4m" -frames:v 1 -f rawvideo -pix_fmt rgba "$WORK/A2.rgba"
fi

echo "== start the visage service"
(cd "$ROOT" && cargo build -q -p visage-backend --bin visage)
KEY="vsg_e2e_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export VISAGE_PG_DIR="${VISAGE_PG_DIR:-/var/tmp/visage-e2e-pg}"
LOG="$ART/service-$(date +%s)-$$.log"
rm -f "$ART"/service-*.log
# The service serves the flow test's app itself (as `cargo xtask serve` does); the benchmark
# compares builds from several directories through test.mjs's own static server.
"$CARGO_TARGET_DIR/debug/visage" serve --port 0 --bootstrap-key "$KEY" --rate-per-minute 100000 \
  --web-dir "$ROOT/frontend/dist" >"$LOG" 2>&1 &
SERVICE=$!
cleanup() { kill -TERM "$SERVICE" 2>/dev/null || true; wait "$SERVICE" 2>/dev/null || true; }
trap cleanup EXIT
PORT=""
for _ in $(seq 1 600); do
  PORT="$(sed -n 's#.*visage listening on http://127.0.0.1:\([0-9]*\).*#\1#p' "$LOG" | head -1)"
  [ -n "$PORT" ] && break
  kill -0 "$SERVICE" 2>/dev/null || { echo "the service exited:"; cat "$LOG"; exit 1; }
  sleep 0.5
done
[ -n "$PORT" ] || { echo "the service did not start:"; tail -20 "$LOG"; exit 1; }
echo "service on port $PORT"
# The browser holds the least powerful key it needs (enroll,recognize); KEY (admin, every
# scope) is the operator's: test.mjs puts it in Settings for the People screen only. The CLI
# talks to the same database as `serve` (the same VISAGE_PG_DIR, or DATABASE_URL when set).
BROWSER_KEY="$("$CARGO_TARGET_DIR/debug/visage" create-key --name browser --scope enroll,recognize 2>>"$LOG")"
[[ "$BROWSER_KEY" == vsg_* ]] || { echo "create-key gave no key:"; tail -5 "$LOG"; exit 1; }
echo "browser key created (scopes enroll,recognize)"

echo "== browser tests ($MODE)"
# The flow test needs playwright-core only; onnxruntime-web (a devDependency) is for the
# benchmark against it.
if [ "$MODE" = bench ] && [[ " $VARIANTS " == *" ort "* ]]; then
  (cd "$HERE" && { [ -d node_modules/playwright-core ] && [ -d node_modules/onnxruntime-web ] || npm ci --no-audit --no-fund --silent; })
else
  (cd "$HERE" && { [ -d node_modules/playwright-core ] || npm ci --omit=dev --no-audit --no-fund --silent; })
fi
export VISAGE_BIN="$CARGO_TARGET_DIR/debug/visage" VISAGE_BACKEND="http://127.0.0.1:$PORT" VISAGE_KEY="$KEY" VISAGE_BROWSER_KEY="$BROWSER_KEY" E2E_WORK="$WORK" E2E_ARTIFACTS="$ART" CHROMIUM
if [ "$MODE" = bench ]; then
  for v in $VARIANTS; do
    dist="$ROOT/frontend/dist"; [ "$v" = nosimd ] && dist="$ROOT/frontend/dist-nosimd"
    mode=bench; [ "$v" = ort ] && mode=bench-ort
    E2E_MODE=$mode E2E_BENCH_LABEL="$v" E2E_DIST="$dist" node "$HERE/test.mjs"
  done
else
  E2E_APP_FROM_BACKEND=1 E2E_DIST="$ROOT/frontend/dist" node "$HERE/test.mjs"
fi
