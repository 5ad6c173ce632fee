//! The pipeline's side of a Web Worker (`worker.js` loads the app's wasm module in a module
//! worker and calls [`worker_main`]). A worker has one [`Role`]:
//!
//! - `Detect`: an RGBA camera frame in (transferred, not copied), faces out: boxes,
//!   landmarks and quality (measured on the aligned crop), with the frame handed back for
//!   display. Only the detector is loaded.
//! - `Embed`: a drawn frame and the faces to embed in, embeddings out (landmarks refined
//!   first); and uploaded photos (decode, detect, refine, align, embed). Both models are
//!   loaded.
//!
//! Models are parsed and optimised once per worker, on the `Load` message; the wasm itself (with
//! the models compiled in) is downloaded and compiled once by the page and handed over as a
//! `WebAssembly.Module`.
//!
//! A `Bench` message (never sent by the app) times the same work for the benchmark against
//! onnxruntime-web (`frontend/e2e/bench-ort.mjs`).

use std::cell::RefCell;

use image::RgbImage;
use visage_shared::decode::{DecodeLimits, decode_image, from_rgba};
use visage_shared::fuse::profile;
use visage_shared::{
    AnalyzeOptions, DetectOptions, Detection, Detector, Embedder, Embedding, Pipeline, Quality,
    model,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use crate::proto::{self, BenchTask, FrameFace, PhotoFace, Reply, Request, Role};
use crate::schedule::LoopConfig;

#[derive(Default)]
struct State {
    detector: Option<Detector>,
    pipeline: Option<Pipeline>,
    /// The latest frame's RGBA bytes, reused between frames.
    rgba: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// `performance.now()` of whichever global this runs in (window or worker).
pub fn now() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .filter(|p| !p.is_undefined())
        .map(|p| p.unchecked_into::<web_sys::Performance>().now())
        .unwrap_or(0.0)
}

/// Entry point inside a worker: answers `first` (the `Load` message that carried the wasm
/// module), then every later message.
#[wasm_bindgen]
pub fn worker_main(first: JsValue) {
    console_error_panic_hook::set_once();
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let handler = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(|ev: web_sys::MessageEvent| {
        handle(&ev.data())
    });
    scope.set_onmessage(Some(handler.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    handler.forget();
    handle(&first);
}

fn field(data: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(data, &name.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn buffer(data: &JsValue, name: &str) -> Option<js_sys::ArrayBuffer> {
    field(data, name).and_then(|v| v.dyn_into().ok())
}

/// Posts a reply with its buffer moved (transferred) to the page.
fn post(reply: &Reply, buf: Option<&js_sys::ArrayBuffer>) {
    let msg = js_sys::Object::new();
    let transfer = js_sys::Array::new();
    let _ = js_sys::Reflect::set(&msg, &"meta".into(), &reply.to_json().into());
    if let Some(b) = buf {
        let _ = js_sys::Reflect::set(&msg, &"buf".into(), b);
        transfer.push(b);
    }
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    if let Err(e) = scope.post_message_with_transfer(&msg, &transfer) {
        web_sys::console::error_2(&"visage worker: posting a reply failed".into(), &e);
    }
}

/// A copy of the bytes the message moved in `buf` (empty when there are none).
fn buffer_bytes(data: &JsValue) -> Vec<u8> {
    buffer(data, "buf")
        .map(|b| js_sys::Uint8Array::new(&b).to_vec())
        .unwrap_or_default()
}

fn bytes_to_buffer(bytes: &[u8]) -> js_sys::ArrayBuffer {
    js_sys::Uint8Array::from(bytes).buffer()
}

fn handle(data: &JsValue) {
    let Some(meta) = field(data, "meta").and_then(|m| m.as_string()) else {
        return;
    };
    let req: Request = match serde_json::from_str(&meta) {
        Ok(r) => r,
        Err(e) => {
            web_sys::console::error_1(&format!("visage worker: bad message: {e}").into());
            return;
        }
    };
    match req {
        Request::Load { role, detect } => {
            let t0 = now();
            match load(role, &detect) {
                Ok(()) => post(
                    &Reply::Ready {
                        role,
                        load_ms: now() - t0,
                    },
                    None,
                ),
                Err(error) => post(&Reply::Failed { error }, None),
            }
        }
        Request::Frame {
            seq,
            width,
            height,
            detect,
        } => {
            let buf = buffer(data, "buf");
            let reply = match &buf {
                Some(b) => detect_frame(seq, width, height, &detect, b),
                None => frame_error(seq, "no frame".into()),
            };
            post(&reply, buf.as_ref());
        }
        Request::EmbedFaces {
            job,
            width,
            height,
            faces,
            detect,
        } => {
            let rgba = buffer_bytes(data);
            let reply = embed_faces(job, width, height, &faces, &detect, &rgba);
            post(&reply, None);
        }
        Request::Photo { job } => {
            let bytes = buffer_bytes(data);
            let (reply, rgba) = analyze_photo(job, &bytes);
            let rgba = (!rgba.is_empty()).then(|| bytes_to_buffer(&rgba));
            post(&reply, rgba.as_ref());
        }
        Request::Bench {
            task,
            iterations,
            width,
            height,
            faces,
            detect,
        } => {
            let rgba = buffer_bytes(data);
            let detect = detect.unwrap_or_else(|| LoopConfig::default().detect());
            let frame = Frame {
                width,
                height,
                rgba: &rgba,
            };
            post(&bench(task, iterations, &frame, &faces, &detect), None);
        }
    }
}

fn load(role: Role, detect: &DetectOptions) -> Result<(), String> {
    STATE.with_borrow_mut(|s| match role {
        Role::Detect => {
            if s.detector.is_none() {
                let d = Detector::new(model::DETECTOR_ONNX).map_err(|e| e.to_string())?;
                // Builds the plan for VGA frames now, not on the first frame.
                d.warm_up(640, 480, detect).map_err(|e| e.to_string())?;
                s.detector = Some(d);
            }
            Ok(())
        }
        Role::Embed => {
            if s.pipeline.is_none() {
                let p = Pipeline::load().map_err(|e| e.to_string())?;
                // The refinement's fixed-size plan, built now rather than on the first face.
                let side = visage_shared::detect::REFINE_SIDE;
                let refine = DetectOptions {
                    max_side: side,
                    ..*detect
                };
                p.detector
                    .warm_up(side, side, &refine)
                    .map_err(|e| e.to_string())?;
                s.pipeline = Some(p);
            }
            Ok(())
        }
    })
}

fn frame_error(seq: u64, error: String) -> Reply {
    Reply::Detected {
        seq,
        faces: Vec::new(),
        prep_ms: 0.0,
        detect_ms: 0.0,
        align_ms: 0.0,
        error: Some(error),
    }
}

/// Detects every face of one frame and measures its quality on the aligned crop.
fn detect_frame(
    seq: u64,
    width: u32,
    height: u32,
    opts: &DetectOptions,
    buf: &js_sys::ArrayBuffer,
) -> Reply {
    STATE.with_borrow_mut(|s| {
        let Some(detector) = s.detector.as_ref() else {
            return frame_error(seq, "the detector is not loaded".into());
        };
        let t0 = now();
        let view = js_sys::Uint8Array::new(buf);
        s.rgba.resize(view.length() as usize, 0);
        view.copy_to(&mut s.rgba);
        let img = match from_rgba(width, height, &s.rgba, &DecodeLimits::default()) {
            Ok(i) => i,
            Err(e) => return frame_error(seq, e.to_string()),
        };
        let t1 = now();
        let dets = match detector.detect(&img, opts) {
            Ok(d) => d,
            Err(e) => return frame_error(seq, e.to_string()),
        };
        let t2 = now();
        let faces = dets
            .into_iter()
            .map(|d| {
                let quality = visage_shared::align::align(&img, &d.landmarks)
                    .map(|aligned| Quality::measure(&d, &aligned));
                FrameFace {
                    detection: d,
                    quality,
                }
            })
            .collect();
        Reply::Detected {
            seq,
            faces,
            prep_ms: t1 - t0,
            detect_ms: t2 - t1,
            align_ms: now() - t2,
            error: None,
        }
    })
}

/// Refines, aligns and embeds faces of a camera frame (the embedding worker's pipeline has its
/// own detector for the refinement).
fn embed_faces(
    job: u64,
    width: u32,
    height: u32,
    faces: &[Detection],
    detect: &DetectOptions,
    rgba: &[u8],
) -> Reply {
    let t0 = now();
    let result = STATE.with_borrow(|s| -> Result<Vec<Option<Embedding>>, &'static str> {
        let p = s.pipeline.as_ref().ok_or("the embedder is not loaded")?;
        let img = from_rgba(width, height, rgba, &DecodeLimits::default())
            .map_err(|_| "the frame does not match its size")?;
        let (scale, _, _) = visage_shared::detect::input_size(width, height, detect.max_side);
        Ok(faces
            .iter()
            .map(|d| embed_face(p, &img, d, scale))
            .collect::<Vec<_>>())
    });
    let (embeddings, error) = match result {
        Ok(e) => (e, None),
        Err(e) => (vec![None; faces.len()], Some(String::from(e))),
    };
    Reply::Embedded {
        job,
        embeddings,
        embed_ms: now() - t0,
        error,
    }
}

/// One face of a camera frame to its embedding: landmarks refined on a crop around the face
/// (`scale`: the size the detector saw the frame at), then aligned and embedded. `None` when
/// any step fails.
fn embed_face(p: &Pipeline, img: &RgbImage, d: &Detection, scale: f32) -> Option<Embedding> {
    let d = p.detector.refine(img, d.clone(), scale).ok()?;
    let face = p.analyze_detection(img, d).ok()??;
    Some(face.embedding)
}

/// An RGBA frame as a message carries it.
struct Frame<'a> {
    width: u32,
    height: u32,
    rgba: &'a [u8],
}

impl Frame<'_> {
    fn rgb(&self) -> Result<RgbImage, String> {
        from_rgba(self.width, self.height, self.rgba, &DecodeLimits::default())
            .map_err(|e| e.to_string())
    }
}

/// Times `iterations` runs of a benchmark task with the functions the app runs (see
/// [`BenchTask`]). The frame is converted to RGB once, outside the timings, as the app's own
/// timings keep that step apart too (`prep_ms`). Set-ups make fresh objects each time, never
/// the worker's loaded ones.
fn bench(
    task: BenchTask,
    iterations: u32,
    frame: &Frame,
    faces: &[Detection],
    detect: &DetectOptions,
) -> Reply {
    let mut ms = Vec::with_capacity(iterations as usize);
    let mut found = Vec::new();
    let mut embedding = None;
    let (mut ops, mut nodes) = (Vec::new(), Vec::new());
    let result = STATE.with_borrow(|s| -> Result<(), String> {
        match task {
            BenchTask::Detect => {
                let d = s.detector.as_ref().ok_or("the detector is not loaded")?;
                let img = frame.rgb()?;
                found = timed(iterations, &mut ms, || {
                    d.detect(&img, detect).map_err(|e| e.to_string())
                })?
                .unwrap_or_default();
            }
            BenchTask::EmbedFace => {
                let p = s.pipeline.as_ref().ok_or("the embedder is not loaded")?;
                let img = frame.rgb()?;
                let face = faces.first().ok_or("no face to embed")?;
                let (scale, _, _) =
                    visage_shared::detect::input_size(frame.width, frame.height, detect.max_side);
                embedding = timed(iterations, &mut ms, || {
                    embed_face(p, &img, face, scale).ok_or_else(|| "no embedding".to_string())
                })?;
            }
            BenchTask::SetUpDetector => {
                timed(iterations, &mut ms, || {
                    let d = Detector::new(model::DETECTOR_ONNX).map_err(|e| e.to_string())?;
                    d.warm_up(frame.width, frame.height, detect)
                        .map_err(|e| e.to_string())?;
                    Ok(d)
                })?;
            }
            BenchTask::SetUpEmbedder => {
                timed(iterations, &mut ms, || {
                    Embedder::new(model::EMBEDDER_ONNX).map_err(|e| e.to_string())
                })?;
            }
            BenchTask::ProfileDetector | BenchTask::ProfileEmbedder => {
                let shape = if task == BenchTask::ProfileEmbedder {
                    let s = visage_shared::align::ALIGNED_SIZE as usize;
                    [1, 3, s, s]
                } else {
                    let (_, w, h) = visage_shared::detect::input_size(
                        frame.width,
                        frame.height,
                        detect.max_side,
                    );
                    [1, 3, h, w]
                };
                let embedder = task == BenchTask::ProfileEmbedder;
                let plan = profile::pipeline_plan(embedder, shape).map_err(|e| e.to_string())?;
                let p = profile::profile(&plan, &shape, iterations as usize, &now)
                    .map_err(|e| e.to_string())?;
                ms.push(p.median_ms);
                let time = |(op, ms): (String, f64)| proto::OpTime { op, ms };
                ops = p.by_op().into_iter().map(time).collect();
                nodes = p
                    .nodes
                    .into_iter()
                    .take(15)
                    .map(|n| time((n.desc, n.ms)))
                    .collect();
            }
        }
        Ok(())
    });
    Reply::Bench {
        task,
        detect: *detect,
        ms,
        faces: found,
        embedding,
        ops,
        nodes,
        error: result.err(),
    }
}

/// Runs `run` `iterations` times, each one's milliseconds pushed to `ms`; gives the last
/// result. Results are dropped outside the timings (freeing a model is not setting one up).
fn timed<T>(
    iterations: u32,
    ms: &mut Vec<f64>,
    mut run: impl FnMut() -> Result<T, String>,
) -> Result<Option<T>, String> {
    let mut last = None;
    for _ in 0..iterations {
        let t0 = now();
        let out = run()?;
        ms.push(now() - t0);
        last = Some(out);
    }
    Ok(last)
}

fn analyze_photo(job: u64, bytes: &[u8]) -> (Reply, Vec<u8>) {
    let result = STATE.with_borrow(|s| {
        let p = s.pipeline.as_ref().ok_or("the models are not loaded")?;
        let img = decode_image(bytes, &DecodeLimits::default()).map_err(|e| e.to_string())?;
        let faces = p
            .analyze(
                &img,
                &AnalyzeOptions {
                    detect: DetectOptions::PHOTO,
                },
            )
            .map_err(|e| e.to_string())?;
        let (w, h) = img.dimensions();
        let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
        proto::push_rgba(&mut rgba, img.as_raw());
        Ok::<_, String>((w, h, faces, rgba))
    });
    match result {
        Ok((width, height, faces, rgba)) => (
            Reply::Photo {
                job,
                width,
                height,
                faces: faces.into_iter().map(PhotoFace::from).collect(),
                error: None,
            },
            rgba,
        ),
        Err(e) => (
            Reply::Photo {
                job,
                width: 0,
                height: 0,
                faces: vec![],
                error: Some(e),
            },
            vec![],
        ),
    }
}
