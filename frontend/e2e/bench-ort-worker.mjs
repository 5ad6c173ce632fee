// onnxruntime-web's side of the benchmark against the visage pipeline (bench-ort.mjs drives it).
// A module worker, as the app's pipeline workers are, so both engines run off the page's main
// thread and time their work in their own worker with performance.now().
//
// onnxruntime-web (npm, a devDependency of frontend/e2e, never shipped in the app) runs the two
// ONNX files of models/ with its wasm execution provider: one thread (numThreads = 1, as the
// app's workers are single-threaded), SIMD (the only wasm build it ships), all graph
// optimisations. Its timings are `session.run` alone: the input tensors are built once, at
// init, the way visage preprocesses (YuNet: BGR 0..255, NCHW, the frame scaled to 320x240 and
// zero-padded to 320x256; MobileFaceNet: RGB (x - 127.5) / 128 on a face aligned to the ArcFace
// template), and the outputs are decoded at init only, to check that ORT finds the face and
// gives a 192-d embedding like visage's.
import * as ort from '/ort/ort.wasm.min.mjs';

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = '/ort/';
const OPTIONS = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };

// What visage's video detection and its refinement use (shared/src/detect.rs).
const VIDEO = { side: 320, threshold: 0.6, nms: 0.3 };
const REFINE = { side: 480, threshold: 0.5 };
const STRIDES = [8, 16, 32];
// shared/src/align.rs ARCFACE_TEMPLATE: right eye, left eye, nose, mouth corners (image left first).
const TEMPLATE = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

let models; // { detector, embedder }: the .onnx bytes
let det = null; // sessions
let emb = null;
const feeds = {}; // det320, det480, face112: { input: ort.Tensor }

const now = () => performance.now();

/// A YuNet input: `img` (ImageBitmap) drawn at (0, 0) with size `w` x `h` on a black `cw` x
/// `ch` canvas, as 1x3xHxW BGR floats 0..255. `src` optionally picks a region of `img`.
function yunetInput(img, cw, ch, w, h, src) {
  const c = new OffscreenCanvas(cw, ch);
  const g = c.getContext('2d');
  g.fillStyle = '#000';
  g.fillRect(0, 0, cw, ch);
  g.imageSmoothingQuality = 'medium';
  if (src) g.drawImage(img, src.x, src.y, src.w, src.h, src.dx, src.dy, src.dw, src.dh);
  else g.drawImage(img, 0, 0, w, h);
  const px = g.getImageData(0, 0, cw, ch).data;
  const plane = cw * ch;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    data[i] = px[4 * i + 2];
    data[plane + i] = px[4 * i + 1];
    data[2 * plane + i] = px[4 * i];
  }
  return { input: new ort.Tensor('float32', data, [1, 3, ch, cw]) };
}

/// YuNet's 12 outputs to detections in input pixels (shared/src/detect.rs decode_outputs), NMS.
function decode(out, w, h, threshold, iou) {
  const found = [];
  for (const s of STRIDES) {
    const cols = w / s, n = cols * (h / s);
    const cls = out[`cls_${s}`].data, obj = out[`obj_${s}`].data, bb = out[`bbox_${s}`].data, kp = out[`kps_${s}`].data;
    for (let i = 0; i < n; i++) {
      const score = Math.sqrt(Math.min(Math.max(cls[i], 0), 1) * Math.min(Math.max(obj[i], 0), 1));
      if (score < threshold) continue;
      const r = Math.floor(i / cols), c = i % cols;
      const cx = (c + bb[4 * i]) * s, cy = (r + bb[4 * i + 1]) * s;
      const bw = Math.exp(bb[4 * i + 2]) * s, bh = Math.exp(bb[4 * i + 3]) * s;
      const landmarks = [0, 1, 2, 3, 4].map((j) => ({ x: (c + kp[10 * i + 2 * j]) * s, y: (r + kp[10 * i + 2 * j + 1]) * s }));
      found.push({ score, bbox: { x: cx - bw / 2, y: cy - bh / 2, width: bw, height: bh }, landmarks });
    }
  }
  found.sort((a, b) => b.score - a.score);
  const keep = [];
  for (const d of found) if (keep.every((k) => boxIou(k.bbox, d.bbox) <= iou)) keep.push(d);
  return keep;
}

function boxIou(a, b) {
  const x0 = Math.max(a.x, b.x), y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width), y1 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  return inter / (a.width * a.height + b.width * b.height - inter);
}

/// The least-squares similarity transform (rotation, scale, shift) taking `pts` to TEMPLATE,
/// as canvas setTransform arguments.
function toTemplate(pts) {
  const m = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const px = m(pts.map((p) => p.x)), py = m(pts.map((p) => p.y));
  const qx = m(TEMPLATE.map((q) => q[0])), qy = m(TEMPLATE.map((q) => q[1]));
  let sxx = 0, a = 0, b = 0;
  pts.forEach((p, i) => {
    const x = p.x - px, y = p.y - py, u = TEMPLATE[i][0] - qx, v = TEMPLATE[i][1] - qy;
    sxx += x * x + y * y;
    a += x * u + y * v;
    b += x * v - y * u;
  });
  a /= sxx;
  b /= sxx;
  return [a, b, -b, a, qx - (a * px - b * py), qy - (b * px + a * py)];
}

async function init({ detector, embedder, width, height, rgba, face }) {
  models = { detector: new Uint8Array(detector), embedder: new Uint8Array(embedder) };
  // The first session also starts onnxruntime's wasm (download, compile, instantiate): timed
  // apart, and not a set-up sample.
  let t0 = now();
  (await ort.InferenceSession.create(models.detector, OPTIONS)).release();
  const first_create_ms = now() - t0;
  det = await ort.InferenceSession.create(models.detector, OPTIONS);
  emb = await ort.InferenceSession.create(models.embedder, OPTIONS);

  const frame = await createImageBitmap(new ImageData(new Uint8ClampedArray(rgba), width, height));
  // Detection: the frame scaled so its longer side is 320, zero-padded to multiples of 32.
  const scale = VIDEO.side / Math.max(width, height);
  const sw = Math.round(width * scale), sh = Math.round(height * scale);
  const pw = Math.ceil(sw / 32) * 32, ph = Math.ceil(sh / 32) * 32;
  feeds.det320 = yunetInput(frame, pw, ph, sw, sh);
  const faces = decode(await det.run(feeds.det320), pw, ph, VIDEO.threshold, VIDEO.nms)
    .map((d) => ({ ...d, bbox: { x: d.bbox.x / scale, y: d.bbox.y / scale, width: d.bbox.width / scale, height: d.bbox.height / scale } }));

  // The embedding job, on the face visage embeds: a square crop of twice the face's size
  // around it, black outside the frame, at 480x480 (Detector::refine); the face found nearest
  // the crop's centre gives the landmarks; the face aligned to 112x112 from them.
  const b = face.bbox;
  const side = 2 * Math.max(b.width, b.height);
  const x0 = b.x + b.width / 2 - side / 2, y0 = b.y + b.height / 2 - side / 2;
  const f = REFINE.side / side;
  feeds.det480 = yunetInput(frame, REFINE.side, REFINE.side, 0, 0, { x: x0, y: y0, w: side, h: side, dx: 0, dy: 0, dw: REFINE.side, dh: REFINE.side });
  const refined = decode(await det.run(feeds.det480), REFINE.side, REFINE.side, REFINE.threshold, VIDEO.nms);
  const c = REFINE.side / 2;
  const best = refined.sort((p, q) => Math.hypot(p.bbox.x + p.bbox.width / 2 - c, p.bbox.y + p.bbox.height / 2 - c)
    - Math.hypot(q.bbox.x + q.bbox.width / 2 - c, q.bbox.y + q.bbox.height / 2 - c))[0];
  const landmarks = (best ? best.landmarks : []).map((p) => ({ x: x0 + p.x / f, y: y0 + p.y / f }));
  const aligned = new OffscreenCanvas(112, 112);
  const g = aligned.getContext('2d');
  g.fillStyle = '#000';
  g.fillRect(0, 0, 112, 112);
  g.imageSmoothingQuality = 'medium';
  if (landmarks.length === 5) {
    g.setTransform(...toTemplate(landmarks));
    g.drawImage(frame, 0, 0);
  }
  const px = g.getImageData(0, 0, 112, 112).data;
  const data = new Float32Array(3 * 112 * 112);
  for (let i = 0; i < 112 * 112; i++) for (let k = 0; k < 3; k++) data[k * 112 * 112 + i] = (px[4 * i + k] - 127.5) / 128;
  feeds.face112 = { input: new ort.Tensor('float32', data, [1, 3, 112, 112]) };
  const embedding = Array.from((await emb.run(feeds.face112)).embeddings.data);
  const norm = Math.hypot(...embedding);
  return {
    ort_version: ort.env.versions?.web ?? null, first_create_ms,
    inputs: { detect: feeds.det320.input.dims, refine: feeds.det480.input.dims, embed: feeds.face112.input.dims },
    faces, refined_face: best ? { score: best.score, landmarks } : null,
    embedding: embedding.map((v) => v / norm),
  };
}

/// `k` timed runs of `work`, which returns its parts' timings; a sample is the sum of the parts
/// named in `counted` (all of them by default).
async function timed(k, work, counted = null) {
  const ms = [];
  const parts = {};
  for (let i = 0; i < k; i++) {
    const t = await work();
    ms.push(Object.entries(t).filter(([n]) => !counted || counted.includes(n)).reduce((a, [, v]) => a + v, 0));
    for (const [name, v] of Object.entries(t)) (parts[name] ||= []).push(v);
  }
  return { ms, parts };
}

async function run(session, feed) {
  const t0 = now();
  await session.run(feed);
  return now() - t0;
}

const tasks = {
  init,
  // Row 1: YuNet on 1x3x256x320.
  detect: ({ k }) => timed(k, async () => ({ yunet_320x256: await run(det, feeds.det320) })),
  // Row 2: YuNet on 1x3x480x480, then MobileFaceNet on 1x3x112x112.
  embed: ({ k }) => timed(k, async () => ({ yunet_480x480: await run(det, feeds.det480), mobilefacenet: await run(emb, feeds.face112) })),
  // Row 3: a fresh session from the model's bytes (released after its timing). Its first run
  // (on the video frame's input, or the aligned face) is timed apart and not counted: the row
  // is `create` alone, but visage's detector set-up builds its plan for the frame size, which
  // onnxruntime leaves to the first run of a shape, so the report shows that too.
  set_up: ({ k, model }) => timed(k, async () => {
    const t0 = now();
    const s = await ort.InferenceSession.create(models[model], OPTIONS);
    const create = now() - t0;
    const first_run = await run(s, model === 'detector' ? feeds.det320 : feeds.face112);
    await s.release();
    return { create, first_run };
  }, ['create']),
};

self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ ok: await tasks[data.op](data) });
  } catch (e) {
    self.postMessage({ error: `${data.op}: ${e && e.stack || e}` });
  }
};
