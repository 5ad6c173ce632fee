// The benchmark page's script (bench-ort.html; test.mjs serves it with `run.sh --bench` and
// calls window.benchOrt): the visage pipeline as the app runs it against onnxruntime-web on the
// same two ONNX files, in the same browser, taking turns.
//
// visage: the app's own build (frontend/dist) in the app's own module workers (worker.js gets
// the page's compiled WebAssembly.Module and a `load` message, as frontend/src/engine/workers.rs
// sends them), one `detect` and one `embed` worker; `bench` messages (frontend/src/proto.rs)
// time the app's functions inside the worker. onnxruntime-web: bench-ort-worker.mjs, another
// module worker. Each round runs K iterations of visage, then K of onnxruntime, row by row, so
// both see the same machine; round 0 is a warm-up and not counted.
//
// Rows (issue 16):
//  detect   visage: Detector::detect with the app's video options on the RGB frame (resize to
//           320x240, pad to 320x256, YuNet, decoding, NMS); ORT: YuNet on 1x3x256x320, run alone.
//  embed    visage: one face of the embedding worker's EmbedFaces job (crop 480x480 around the
//           face, YuNet refinement, alignment, quality, MobileFaceNet); ORT: YuNet on 1x3x480x480
//           + MobileFaceNet on 1x3x112x112, the two runs alone.
//  set_up   per model, fresh objects: visage Detector::new + warm_up (640x480 at the app's
//           video side) and Embedder::new; ORT InferenceSession.create from the same bytes.
//  load     the app's worker `load` per role (`ready.load_ms`, what the app waits for), visage only.

const FRAME = { width: 640, height: 480 };
// What the bench sends with `load`: the app's video options (LoopConfig::default().detect()).
// The `bench` replies carry the options the app itself uses, and the run fails if they differ.
const VIDEO = { max_side: 320, score_threshold: 0.6, nms_iou: 0.3, refine_landmarks: false };

const log = (...a) => { document.getElementById('log').textContent += `\n${a.join(' ')}`; };

/// Sends one message and waits for the answer (one message at a time per worker).
function call(worker, msg, transfer = []) {
  return new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => {
      if (data.meta !== undefined) {
        const meta = JSON.parse(data.meta);
        if (meta.op === 'failed' || meta.error) reject(new Error(`visage worker: ${meta.error}`));
        else resolve(meta);
      } else if (data.error) reject(new Error(`onnxruntime worker: ${data.error}`));
      else resolve(data.ok);
    };
    worker.onerror = (e) => reject(new Error(`worker error: ${e.message}`));
    worker.postMessage(msg, transfer);
  });
}

/// A pipeline worker started the way the app starts one; `load_ms` is its `ready` reply's.
async function visageWorker(module, role) {
  const worker = new Worker('/worker.js', { type: 'module' });
  const ready = await call(worker, { meta: JSON.stringify({ op: 'load', role, detect: VIDEO }), module });
  if (ready.op !== 'ready' || ready.role !== role) throw new Error(`unexpected reply to load: ${JSON.stringify(ready)}`);
  return { worker, load_ms: ready.load_ms };
}

/// A `bench` request; the frame is copied for each (outside the timings).
async function visageBench(worker, task, iterations, rgba, faces = []) {
  const buf = rgba ? rgba.slice(0) : undefined;
  const r = await call(worker, { meta: JSON.stringify({ op: 'bench', task, iterations, ...FRAME, faces }), buf }, buf ? [buf] : []);
  if (r.op !== 'bench' || r.ms.length !== iterations) throw new Error(`unexpected bench reply: ${JSON.stringify(r).slice(0, 300)}`);
  if (JSON.stringify(r.detect) !== JSON.stringify(VIDEO)) {
    throw new Error(`the app detects with ${JSON.stringify(r.detect)}, the bench loads with ${JSON.stringify(VIDEO)}: update VIDEO`);
  }
  return r;
}

const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

window.benchOrt = async ({ rounds = 10, k = 10, setUpRounds = 10 } = {}) => {
  const [rgba, detector, embedder] = await Promise.all(['/bench/frame.rgba', '/models/yunet_2023mar.onnx', '/models/mobilefacenet.onnx']
    .map(async (u) => { const r = await fetch(u); if (!r.ok) throw new Error(`${u}: ${r.status}`); return r.arrayBuffer(); }));
  if (rgba.byteLength !== FRAME.width * FRAME.height * 4) throw new Error(`the frame has ${rgba.byteLength} bytes`);
  const module = await WebAssembly.compileStreaming(fetch('/visage-frontend_bg.wasm'));
  const det = await visageWorker(module, 'detect');
  const emb = await visageWorker(module, 'embed');
  log('visage workers ready', det.load_ms.toFixed(0), emb.load_ms.toFixed(0), 'ms');

  // The face: visage's detection of the frame, embedded by both.
  const first = await visageBench(det.worker, 'detect', 1, rgba);
  if (!first.faces.length) throw new Error('visage found no face in the frame');
  const face = first.faces[0];
  const ortWorker = new Worker('/bench/bench-ort-worker.mjs', { type: 'module' });
  const ortInit = await call(ortWorker, { op: 'init', detector: detector.slice(0), embedder: embedder.slice(0), ...FRAME, rgba: rgba.slice(0), face });
  log('onnxruntime ready', JSON.stringify(ortInit.inputs));

  const samples = { detect: { visage: [], ort: [], ort_parts: {} }, embed: { visage: [], ort: [], ort_parts: {} } };
  const add = (row, side, xs) => { samples[row][side].push(...xs); };
  const addParts = (row, parts) => { for (const [n, xs] of Object.entries(parts)) (samples[row].ort_parts[n] ||= []).push(...xs); };
  let lastEmbedding = null;
  for (let r = 0; r <= rounds; r++) {
    const keep = r > 0; // round 0: warm-up
    const vd = await visageBench(det.worker, 'detect', k, rgba);
    const od = await call(ortWorker, { op: 'detect', k });
    const ve = await visageBench(emb.worker, 'embed_face', k, rgba, [face]);
    const oe = await call(ortWorker, { op: 'embed', k });
    lastEmbedding = ve.embedding;
    if (keep) {
      add('detect', 'visage', vd.ms); add('detect', 'ort', od.ms); addParts('detect', od.parts);
      add('embed', 'visage', ve.ms); add('embed', 'ort', oe.ms); addParts('embed', oe.parts);
    }
    log(`round ${r}${keep ? '' : ' (warm-up)'}: detect ${median(vd.ms).toFixed(1)} / ${median(od.ms).toFixed(1)} ms, embed ${median(ve.ms).toFixed(1)} / ${median(oe.ms).toFixed(1)} ms`);
  }

  // Set-up: fresh objects each time, one of each per round, visage then ORT; then the app's
  // whole worker `load` per role, in a fresh worker.
  const setUp = { detector: { visage: [], ort: [], ort_parts: {} }, embedder: { visage: [], ort: [], ort_parts: {} } };
  const addSetUpParts = (model, parts) => { for (const [n, xs] of Object.entries(parts)) (setUp[model].ort_parts[n] ||= []).push(...xs); };
  const load = { detect: [], embed: [] };
  for (let r = 0; r <= setUpRounds; r++) {
    const keep = r > 0;
    const vd = await visageBench(det.worker, 'set_up_detector', 1);
    const od = await call(ortWorker, { op: 'set_up', model: 'detector', k: 1 });
    const ve = await visageBench(emb.worker, 'set_up_embedder', 1);
    const oe = await call(ortWorker, { op: 'set_up', model: 'embedder', k: 1 });
    const loads = {};
    for (const role of ['detect', 'embed']) {
      const w = await visageWorker(module, role);
      w.worker.terminate();
      loads[role] = w.load_ms;
    }
    if (keep) {
      setUp.detector.visage.push(...vd.ms); setUp.detector.ort.push(...od.ms); addSetUpParts('detector', od.parts);
      setUp.embedder.visage.push(...ve.ms); setUp.embedder.ort.push(...oe.ms); addSetUpParts('embedder', oe.parts);
      load.detect.push(loads.detect); load.embed.push(loads.embed);
    }
    log(`set-up round ${r}${keep ? '' : ' (warm-up)'}: detector ${vd.ms[0].toFixed(0)} / ${od.ms[0].toFixed(0)} ms, embedder ${ve.ms[0].toFixed(0)} / ${oe.ms[0].toFixed(0)} ms, load ${loads.detect.toFixed(0)} / ${loads.embed.toFixed(0)} ms`);
  }
  // Where the wasm build spends its time, operator by operator (the native table of the same
  // plans: shared/examples/profile_plan.rs). Each plan is built fresh in the worker.
  const profileRuns = 30;
  const profiles = {};
  for (const [name, task] of [['detector', 'profile_detector'], ['embedder', 'profile_embedder']]) {
    const p = await call(det.worker, { meta: JSON.stringify({ op: 'bench', task, iterations: profileRuns, ...FRAME }) });
    profiles[name] = { median_ms: p.ms[0], runs: profileRuns, ops: p.ops, nodes: p.nodes };
    log(`profile ${name}: ${p.ms[0].toFixed(2)} ms per run`);
  }
  det.worker.terminate();
  emb.worker.terminate();
  ortWorker.terminate();

  return {
    hardware_concurrency: navigator.hardwareConcurrency,
    user_agent: navigator.userAgent,
    cross_origin_isolated: self.crossOriginIsolated,
    rounds, k, set_up_rounds: setUpRounds,
    detect_options: VIDEO,
    checks: {
      visage_faces: first.faces.map((f) => ({ score: f.score, bbox: f.bbox })),
      ort_faces: ortInit.faces.map((f) => ({ score: f.score, bbox: f.bbox })),
      ort_refined_face: ortInit.refined_face,
      visage_embedding_len: lastEmbedding ? lastEmbedding.vector.length : 0,
      ort_embedding_len: ortInit.embedding.length,
      // The two engines' embeddings of the face (visage aligns with its own warp; the ORT side
      // with a canvas transform from onnxruntime's refined landmarks).
      cosine_visage_ort: lastEmbedding ? cosine(lastEmbedding.vector, ortInit.embedding) : null,
    },
    ort: { version: ortInit.ort_version, first_session_ms: ortInit.first_create_ms, inputs: ortInit.inputs },
    visage_first_load_ms: { detect: det.load_ms, embed: emb.load_ms },
    samples, set_up: setUp, load, profiles,
  };
};

function median(xs) { const v = [...xs].sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; }

log('ready');
window.benchReady = true;
