//! The page's side of the live view: camera, frame capture, the pipeline workers, tracking and
//! voting, drawing, recognition calls. Runs on the page's main thread; the pipeline itself runs
//! in module Web Workers (`worker.rs`), so the page stays responsive:
//!
//! - on each new camera frame (`requestVideoFrameCallback`) the frame is drawn into a
//!   capture canvas, read back (RGBA) and its buffer moved (transferred, not copied) to a
//!   detection worker, unless every detection worker is busy: then the frame is dropped,
//!   never queued ([`FrameScheduler`]);
//! - the detection worker answers with the faces (box, landmarks, quality) and
//!   the frame itself, which is drawn with its overlay, so boxes always sit on their frame;
//! - the tracker picks the faces to recognise; the drawn frame moves on with them to the
//!   embedding worker, which refines their landmarks on a crop around each (a second detector
//!   pass, only for these faces, off the overlay's path), aligns and embeds them; the
//!   embeddings go to the service (embeddings only, never pixels).
//!
//! Capture and drawing here, detection and embedding in two workers: three stages that overlap
//! on the machine's cores.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use leptos::prelude::*;
use visage_shared::{AnalyzedFace, Detection, Quality, QualityGate};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement};

use crate::api;
use crate::proto::{FrameFace, Reply, Request, Role};
use crate::schedule::{FrameScheduler, LoopConfig};
use crate::settings::Settings;
use crate::track::{Collector, Label, Tracker, Vote};
pub use crate::worker::now;

/// Frames (and faces) per enrollment.
pub const ENROLL_FRAMES: usize = 5;
/// Recognition requests allowed in flight at once.
const MAX_IN_FLIGHT: usize = 2;
/// Frames between two enrollment faces.
const ENROLL_GAP: u32 = 3;

/// What the frame loop does with camera frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Live,
    Enroll,
}

/// Camera state shown to the person.
#[derive(Debug, Clone, PartialEq)]
pub enum Camera {
    Off,
    Starting,
    On,
    /// No camera, or permission refused: the message says which.
    Unavailable(String),
}

/// One face as listed beside the live view.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRow {
    pub track: u64,
    pub label: String,
    pub known: Option<bool>,
}

/// Reactive state the loop writes and the screens read.
#[derive(Clone, Copy)]
pub struct Ui {
    pub models: RwSignal<Option<Result<f64, String>>>,
    pub camera: RwSignal<Camera>,
    pub mode: RwSignal<Mode>,
    pub fps: RwSignal<f64>,
    pub latency_ms: RwSignal<f64>,
    pub faces: RwSignal<Vec<FaceRow>>,
    pub advice: RwSignal<String>,
    pub progress: RwSignal<usize>,
    pub error: RwSignal<Option<String>>,
    pub settings: RwSignal<Settings>,
    /// The match threshold the service last reported using (it may raise a low one).
    pub server_threshold: RwSignal<Option<f32>>,
}

/// The pipeline workers.
struct Pool {
    detect: Vec<web_sys::Worker>,
    embed: web_sys::Worker,
    ready: usize,
    /// Kept alive as long as the workers.
    _handlers: Vec<Closure<dyn FnMut(web_sys::MessageEvent)>>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Pool {
    fn is_ready(&self) -> bool {
        self.ready == self.detect.len() + 1
    }
}

/// A frame on its way through a detection worker.
struct InFlight {
    /// When its capture began (main thread clock).
    t0: f64,
    /// The camera's capture time, when the browser gives it.
    capture: Option<f64>,
    width: u32,
    height: u32,
}

/// What an embedding job was for.
enum EmbedJob {
    /// Recognition of these tracks' faces.
    Live(Vec<u64>),
    /// An enrollment face of collection `generation`.
    Enroll { generation: u64, quality: Quality },
}

/// Rolling samples (ms) for the statistics.
#[derive(Default)]
struct Samples {
    frame_ends: VecDeque<f64>,
    latencies: VecDeque<f64>,
    capture_latencies: VecDeque<f64>,
    capture_ms: VecDeque<f64>,
    draw_ms: VecDeque<f64>,
    prep_ms: VecDeque<f64>,
    detect_ms: VecDeque<f64>,
    align_ms: VecDeque<f64>,
    embed_ms: VecDeque<f64>,
}

/// Mutable state of the loop, owned by the main thread.
struct Engine {
    config: LoopConfig,
    tracker: Tracker,
    collector: Collector,
    /// Bumped when a new enrollment begins, so late embeddings of the last one are ignored.
    generation: u64,
    pool: Option<Pool>,
    sched: FrameScheduler,
    frames_in_flight: HashMap<u64, InFlight>,
    capture: Option<(HtmlCanvasElement, CanvasRenderingContext2d)>,
    view: Option<HtmlCanvasElement>,
    /// The view's canvas pixels per displayed CSS pixel (re-read now and then).
    view_scale: f64,
    next_job: u64,
    /// Embedding jobs posted and not answered yet (the worker is busy while any is).
    embed_jobs: HashMap<u64, EmbedJob>,
    photo_jobs: HashMap<u64, js_sys::Function>,
    samples: Samples,
    /// Overlays drawn.
    frames: u64,
    /// Camera frames seen while the loop was on.
    video_frames: u64,
    embeds: u64,
    in_flight: usize,
    requests: u64,
    stream: Option<web_sys::MediaStream>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine {
        config: LoopConfig::default(),
        tracker: Tracker::default(),
        collector: Collector::new(ENROLL_FRAMES, ENROLL_GAP),
        generation: 0,
        pool: None,
        sched: FrameScheduler::new(1, 1),
        frames_in_flight: HashMap::new(),
        capture: None,
        view: None,
        view_scale: 1.0,
        next_job: 0,
        embed_jobs: HashMap::new(),
        photo_jobs: HashMap::new(),
        samples: Samples::default(),
        frames: 0,
        video_frames: 0,
        embeds: 0,
        in_flight: 0,
        requests: 0,
        stream: None,
    });
}

fn ctx2d(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    let opts = js_sys::Object::new();
    js_sys::Reflect::set(&opts, &"willReadFrequently".into(), &true.into()).ok()?;
    canvas
        .get_context_with_context_options("2d", &opts)
        .ok()??
        .dyn_into()
        .ok()
}

fn push(q: &mut VecDeque<f64>, v: f64, cap: usize) {
    q.push_back(v);
    while q.len() > cap {
        q.pop_front();
    }
}

fn median(q: &VecDeque<f64>) -> f64 {
    if q.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = q.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Sends a request with its buffers moved to the worker.
fn post(
    worker: &web_sys::Worker,
    req: &Request,
    extra: &[(&str, &JsValue)],
    transfer: &[&JsValue],
) -> Result<(), String> {
    let msg = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&msg, &"meta".into(), &req.to_json().into());
    for (k, v) in extra {
        let _ = js_sys::Reflect::set(&msg, &(*k).into(), v);
    }
    let list = js_sys::Array::new();
    for t in transfer {
        list.push(t);
    }
    worker
        .post_message_with_transfer(&msg, &list)
        .map_err(|e| format!("posting to a worker failed: {e:?}"))
}

/// Starts the pipeline workers (once): one or more for detection, one for embedding. Each
/// gets the page's compiled wasm module (downloaded once, with the models in it) and loads its
/// models; `ui.models` says when all are ready. The loop's settings come from the page address
/// (see [`LoopConfig::from_query`]).
pub fn start_workers(ui: Ui) {
    if ENGINE.with_borrow(|e| e.pool.is_some()) {
        return;
    }
    let query = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let config = LoopConfig::from_query(&query);
    match spawn_pool(ui, &config) {
        Ok(pool) => ENGINE.with_borrow_mut(|e| {
            e.config = config;
            e.sched = FrameScheduler::new(config.detect_workers, config.depth);
            e.pool = Some(pool);
        }),
        Err(msg) => ui.models.set(Some(Err(msg))),
    }
}

fn spawn_pool(ui: Ui, config: &LoopConfig) -> Result<Pool, String> {
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    // The page's own compiled module: workers instantiate it without downloading it again.
    let module = wasm_bindgen::module();
    let on_error =
        Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
            ui.models.set(Some(Err(format!(
                "a pipeline worker failed: {}",
                ev.message()
            ))));
        });
    let mut handlers = Vec::new();
    let mut spawn = |role: Role, index: usize| -> Result<web_sys::Worker, String> {
        let w = web_sys::Worker::new_with_options("./worker.js", &opts)
            .map_err(|e| format!("this browser cannot start the pipeline worker: {e:?}"))?;
        let h =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                on_reply(ui, role, index, &ev.data())
            });
        w.set_onmessage(Some(h.as_ref().unchecked_ref()));
        w.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        handlers.push(h);
        post(
            &w,
            &Request::Load {
                role,
                detect: config.detect(),
            },
            &[("module", &module)],
            &[],
        )?;
        Ok(w)
    };
    let embed = spawn(Role::Embed, 0)?;
    let detect = (0..config.detect_workers)
        .map(|i| spawn(Role::Detect, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pool {
        detect,
        embed,
        ready: 0,
        _handlers: handlers,
        _on_error: on_error,
    })
}

fn on_reply(ui: Ui, role: Role, index: usize, data: &JsValue) {
    let get = |k: &str| {
        js_sys::Reflect::get(data, &k.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(meta) = get("meta").and_then(|m| m.as_string()) else {
        return;
    };
    let reply: Reply = match serde_json::from_str(&meta) {
        Ok(r) => r,
        Err(e) => {
            ui.error
                .set(Some(format!("bad message from the pipeline: {e}")));
            return;
        }
    };
    match reply {
        Reply::Ready { .. } => {
            // Counted from the page's navigation start (performance.now()), so the time
            // includes downloading and compiling the wasm, as the person waited for it.
            let ready_in = ENGINE.with_borrow_mut(|e| {
                let p = e.pool.as_mut()?;
                p.ready += 1;
                p.is_ready().then(now)
            });
            if let Some(ms) = ready_in {
                ui.models.set(Some(Ok(ms)));
            }
        }
        Reply::Failed { error } => ui.models.set(Some(Err(error))),
        Reply::Detected {
            seq,
            faces,
            prep_ms,
            detect_ms,
            align_ms,
            error,
        } => {
            let buf = get("buf");
            if let Some(e) = &error {
                ui.error.set(Some(format!("detection: {e}")));
            }
            on_detected(
                ui,
                Detected {
                    worker: index,
                    seq,
                    faces,
                    timings: [prep_ms, detect_ms, align_ms],
                    failed: error.is_some(),
                    frame: buf,
                },
            );
        }
        Reply::Embedded {
            job,
            embeddings,
            embed_ms,
            error,
        } => {
            if let Some(e) = error {
                ui.error.set(Some(format!("embedding: {e}")));
            }
            on_embedded(ui, job, embeddings, embed_ms);
        }
        Reply::Photo { job, .. } => {
            debug_assert_eq!(role, Role::Embed);
            if let Some(resolve) = ENGINE.with_borrow_mut(|e| e.photo_jobs.remove(&job)) {
                let _ = resolve.call1(&JsValue::NULL, data);
            }
        }
    }
}

/// Starts the chosen camera into `video`; on failure says why in `ui.camera`.
pub async fn start_camera(ui: Ui, video: HtmlVideoElement) {
    stop_camera(&video);
    ui.camera.set(Camera::Starting);
    match open_camera(&ui.settings.get_untracked().camera_id).await {
        Ok(stream) => {
            video.set_muted(true);
            video.set_src_object(Some(&stream));
            let _ = video.play().map(wasm_bindgen_futures::JsFuture::from);
            ENGINE.with_borrow_mut(|e| e.stream = Some(stream));
            ui.camera.set(Camera::On);
        }
        Err(msg) => ui.camera.set(Camera::Unavailable(msg)),
    }
}

pub fn stop_camera(video: &HtmlVideoElement) {
    if let Some(stream) = ENGINE.with_borrow_mut(|e| e.stream.take()) {
        for t in stream.get_tracks().iter() {
            if let Ok(t) = t.dyn_into::<web_sys::MediaStreamTrack>() {
                t.stop();
            }
        }
    }
    video.set_src_object(None);
}

async fn open_camera(device_id: &str) -> Result<web_sys::MediaStream, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser gives no camera access here (a secure origin, https or localhost, is needed)".to_string())?;
    let video = js_sys::Object::new();
    let set = |o: &js_sys::Object, k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(o, &k.into(), &v);
    };
    let ideal = |n: f64| {
        let o = js_sys::Object::new();
        set(&o, "ideal", n.into());
        o.into()
    };
    set(&video, "width", ideal(640.0));
    set(&video, "height", ideal(480.0));
    if !device_id.is_empty() {
        let o = js_sys::Object::new();
        set(&o, "exact", device_id.into());
        set(&video, "deviceId", o.into());
    }
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_video(&video);
    constraints.set_audio(&false.into());
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|_| "the camera could not be requested".to_string())?;
    let stream = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| {
            let name = js_sys::Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            match name.as_str() {
                "NotAllowedError" | "SecurityError" => "camera permission was refused".to_string(),
                "NotFoundError" | "OverconstrainedError" => "no camera was found".to_string(),
                "NotReadableError" => "the camera is in use by another program".to_string(),
                _ => format!("the camera could not be started ({name})"),
            }
        })?;
    stream
        .dyn_into()
        .map_err(|_| "not a media stream".to_string())
}

/// Cameras the browser lists: (deviceId, label).
pub async fn list_cameras() -> Vec<(String, String)> {
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else {
        return vec![];
    };
    let Ok(p) = devices.enumerate_devices() else {
        return vec![];
    };
    let Ok(list) = wasm_bindgen_futures::JsFuture::from(p).await else {
        return vec![];
    };
    let list: js_sys::Array = list.unchecked_into();
    list.iter()
        .filter_map(|d| d.dyn_into::<web_sys::MediaDeviceInfo>().ok())
        .filter(|d| d.kind() == web_sys::MediaDeviceKind::Videoinput)
        .enumerate()
        .map(|(i, d)| {
            let label = if d.label().is_empty() {
                format!("camera {}", i + 1)
            } else {
                d.label()
            };
            (d.device_id(), label)
        })
        .collect()
}

/// Starts the frame loop (once): one step per new camera frame, through
/// `requestVideoFrameCallback` (requestAnimationFrame where the browser lacks it, skipping
/// frames already seen). It does nothing while the mode is `Off`.
pub fn start_loop(ui: Ui, video: HtmlVideoElement, canvas: HtmlCanvasElement) {
    ENGINE.with_borrow_mut(|e| e.view = Some(canvas));
    let rvfc = js_sys::Reflect::get(&video, &"requestVideoFrameCallback".into())
        .ok()
        .filter(|f| f.is_function());
    type FrameCallback = Closure<dyn FnMut(f64, JsValue)>;
    let cb: Rc<RefCell<Option<FrameCallback>>> = Rc::new(RefCell::new(None));
    let cb2 = cb.clone();
    let v2 = video.clone();
    let rvfc2 = rvfc.clone();
    let last_time = Rc::new(RefCell::new(-1.0f64));
    let schedule = move |video: &HtmlVideoElement,
                         f: &Closure<dyn FnMut(f64, JsValue)>,
                         rvfc: &Option<JsValue>| {
        match rvfc {
            Some(r) => {
                let r: &js_sys::Function = r.unchecked_ref();
                let _ = r.call1(video, f.as_ref());
            }
            None => {
                if let Some(w) = web_sys::window() {
                    let _ = w.request_animation_frame(f.as_ref().unchecked_ref());
                }
            }
        }
    };
    *cb.borrow_mut() = Some(Closure::new(move |_now: f64, meta: JsValue| {
        // With rAF, skip a frame whose media time did not move.
        let fresh = if meta.is_object() {
            true
        } else {
            let t = v2.current_time();
            let mut last = last_time.borrow_mut();
            let fresh = t != *last;
            *last = t;
            fresh
        };
        if fresh {
            let capture = js_sys::Reflect::get(&meta, &"captureTime".into())
                .ok()
                .and_then(|v| v.as_f64());
            if let Err(e) = capture_frame(ui, &v2, capture) {
                ui.error.set(Some(e));
            }
        }
        if let Some(c) = cb2.borrow().as_ref() {
            schedule(&v2, c, &rvfc2);
        }
    }));
    if let Some(c) = cb.borrow().as_ref() {
        schedule(&video, c, &rvfc);
    }
}

/// Resets enrollment collection (a new capture begins).
pub fn reset_enrollment() {
    ENGINE.with_borrow_mut(|e| {
        e.generation += 1;
        e.collector = Collector::new(ENROLL_FRAMES, ENROLL_GAP);
    });
}

/// Takes the collected enrollment faces.
pub fn take_enrollment() -> Vec<(visage_shared::Embedding, visage_shared::Quality)> {
    ENGINE.with_borrow_mut(|e| std::mem::take(&mut e.collector.items))
}

/// Adds a face from an uploaded photo to the enrollment; returns the advice if refused.
pub fn offer_enrollment_face(face: &AnalyzedFace) -> Result<usize, String> {
    let issues = face.quality.issues(&QualityGate::default());
    if !issues.is_empty() {
        return Err(issues
            .iter()
            .map(|i| i.advice())
            .collect::<Vec<_>>()
            .join("; "));
    }
    ENGINE.with_borrow_mut(|e| {
        e.collector.frames_since = u32::MAX / 2;
        e.collector
            .offer(Some((face.embedding.clone(), face.quality)));
        Ok(e.collector.items.len())
    })
}

/// Forgets recognition results (after enrolling or erasing someone).
pub fn clear_votes() {
    ENGINE.with_borrow_mut(|e| e.tracker.clear_votes());
}

/// One new camera frame: reads its pixels and moves them to a free detection worker, or drops
/// the frame if none is free.
fn capture_frame(
    ui: Ui,
    video: &HtmlVideoElement,
    capture_time: Option<f64>,
) -> Result<(), String> {
    let mode = ui.mode.get_untracked();
    if mode == Mode::Off || video.ready_state() < 2 {
        return Ok(());
    }
    let (w, h) = (video.video_width(), video.video_height());
    if w == 0 || h == 0 {
        return Ok(());
    }
    ENGINE.with_borrow_mut(|e| {
        if !e.pool.as_ref().is_some_and(Pool::is_ready) {
            return Ok(());
        }
        e.video_frames += 1;
        let Some((worker, seq)) = e.sched.offer() else {
            return Ok(());
        };
        let t0 = now();
        if e.capture.is_none() {
            let canvas: HtmlCanvasElement = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.create_element("canvas").ok())
                .and_then(|c| c.dyn_into().ok())
                .ok_or("no canvas")?;
            let ctx = ctx2d(&canvas).ok_or("no 2d canvas")?;
            e.capture = Some((canvas, ctx));
        }
        let Some((canvas, ctx)) = e.capture.as_ref() else {
            return Ok(());
        };
        if canvas.width() != w || canvas.height() != h {
            canvas.set_width(w);
            canvas.set_height(h);
        }
        let sent = ctx
            .draw_image_with_html_video_element_and_dw_and_dh(video, 0.0, 0.0, w as f64, h as f64)
            .map_err(|_| "drawing the frame failed".to_string())
            .and_then(|_| {
                ctx.get_image_data(0.0, 0.0, w as f64, h as f64)
                    .map_err(|_| "reading the frame failed".to_string())
            })
            .and_then(|img| {
                // The pixels' own buffer, moved to the worker: no copy into wasm memory here.
                let buf = js_sys::Reflect::get(&img, &"data".into())
                    .and_then(|d| js_sys::Reflect::get(&d, &"buffer".into()))
                    .map_err(|_| "no frame buffer".to_string())?;
                let pool = e.pool.as_ref().ok_or("no workers")?;
                post(
                    &pool.detect[worker],
                    &Request::Frame {
                        seq,
                        width: w,
                        height: h,
                        detect: e.config.detect(),
                    },
                    &[("buf", &buf)],
                    &[&buf],
                )
            });
        if let Err(msg) = sent {
            e.sched.done(worker, seq);
            return Err(msg);
        }
        e.frames_in_flight.insert(
            seq,
            InFlight {
                t0,
                capture: capture_time,
                width: w,
                height: h,
            },
        );
        push(&mut e.samples.capture_ms, now() - t0, 300);
        Ok(())
    })
}

/// A detection worker's answer for one frame.
struct Detected {
    worker: usize,
    seq: u64,
    faces: Vec<FrameFace>,
    /// RGBA to RGB, detection, alignment and quality (ms, in the worker).
    timings: [f64; 3],
    failed: bool,
    /// The frame's RGBA pixels, handed back.
    frame: Option<JsValue>,
}

/// Sends faces of a drawn frame to the embedding worker, which refines their landmarks
/// first; the frame's buffer moves with them (the page is done with it).
fn send_embed_faces(
    e: &mut Engine,
    job: EmbedJob,
    frame: &JsValue,
    (width, height): (u32, u32),
    faces: Vec<Detection>,
) {
    let Some(pool) = e.pool.as_ref() else { return };
    e.next_job += 1;
    let id = e.next_job;
    let request = Request::EmbedFaces {
        job: id,
        width,
        height,
        faces,
        detect: e.config.detect(),
    };
    if post(&pool.embed, &request, &[("buf", frame)], &[frame]).is_ok() {
        e.embed_jobs.insert(id, job);
    }
}

fn on_detected(ui: Ui, d: Detected) {
    let mode = ui.mode.get_untracked();
    let drawn = ENGINE.with_borrow_mut(|e| {
        let fresh = e.sched.done(d.worker, d.seq);
        let info = e.frames_in_flight.remove(&d.seq);
        // Frames older than the oldest in flight can no longer come back.
        let oldest = d.seq.saturating_sub(16);
        e.frames_in_flight.retain(|s, _| *s > oldest);
        let info = info?;
        if !fresh || d.failed || mode == Mode::Off {
            return None;
        }
        let t_start = now();
        let view = e.view.clone()?;
        if view.width() != info.width || view.height() != info.height {
            view.set_width(info.width);
            view.set_height(info.height);
        }
        let ctx = ctx2d(&view)?;
        if let Some(frame) = &d.frame {
            let pixels = js_sys::Uint8ClampedArray::new(frame);
            if let Ok(img) = web_sys::ImageData::new_with_js_u8_clamped_array_and_sh(
                &pixels,
                info.width,
                info.height,
            ) {
                let _ = ctx.put_image_data(&img, 0.0, 0.0);
            }
        }
        let dets: Vec<Detection> = d.faces.iter().map(|f| f.detection.clone()).collect();
        let mut labels: Vec<(Detection, Label)> = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut good_face = None;
        match mode {
            Mode::Live => {
                let idx = e.tracker.update(&dets);
                let mut want: Vec<Detection> = Vec::new();
                let mut tracks: Vec<u64> = Vec::new();
                let free =
                    e.embed_jobs.is_empty() && e.in_flight < MAX_IN_FLIGHT && d.frame.is_some();
                for (f, &ti) in d.faces.iter().zip(&idx) {
                    if free && f.quality.is_some() && e.tracker.tracks[ti].wants_embedding() {
                        want.push(f.detection.clone());
                        tracks.push(e.tracker.tracks[ti].id);
                        e.tracker.mark_embedded(ti);
                    }
                    labels.push((f.detection.clone(), e.tracker.tracks[ti].label()));
                    ids.push(e.tracker.tracks[ti].id);
                }
                if let (false, Some(frame)) = (want.is_empty(), d.frame.as_ref()) {
                    let size = (info.width, info.height);
                    send_embed_faces(e, EmbedJob::Live(tracks), frame, size, want);
                }
            }
            Mode::Enroll => {
                e.collector.tick();
                let advice = match d.faces.as_slice() {
                    [] => "no face in view: look at the camera".to_string(),
                    [f] => match f.quality {
                        None => "face the camera".to_string(),
                        Some(q) => {
                            let issues = q.issues(&QualityGate::default());
                            good_face = Some(issues.is_empty());
                            if !issues.is_empty() {
                                issues
                                    .iter()
                                    .map(|i| i.advice())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            } else {
                                if let (true, true, Some(frame)) = (
                                    e.collector.wants(),
                                    e.embed_jobs.is_empty(),
                                    d.frame.as_ref(),
                                ) {
                                    e.collector.reserve();
                                    let job = EmbedJob::Enroll {
                                        generation: e.generation,
                                        quality: q,
                                    };
                                    let size = (info.width, info.height);
                                    let face = vec![f.detection.clone()];
                                    send_embed_faces(e, job, frame, size, face);
                                }
                                if e.collector.is_full() {
                                    "done: all frames collected".to_string()
                                } else {
                                    "good: hold still".to_string()
                                }
                            }
                        }
                    },
                    faces => format!(
                        "{} faces in view: only the person enrolling, please",
                        faces.len()
                    ),
                };
                if ui.advice.get_untracked() != advice {
                    ui.advice.set(advice);
                }
                for det in dets {
                    labels.push((det, Label::Pending));
                }
            }
            Mode::Off => {}
        }
        if e.frames % 30 == 0 {
            e.view_scale = display_scale(&view);
        }
        draw_overlay(&ctx, &labels, mode, good_face, e.view_scale);
        let t_end = now();

        // Statistics, for the screen and for tests (window.__visage).
        e.frames += 1;
        let s = &mut e.samples;
        push(&mut s.frame_ends, t_end, 120);
        push(&mut s.latencies, t_end - info.t0, 300);
        push(&mut s.draw_ms, t_end - t_start, 300);
        if let Some(c) = info.capture.filter(|c| *c > 0.0 && *c <= t_end) {
            push(&mut s.capture_latencies, t_end - c, 300);
        }
        let [prep, det, align] = d.timings;
        push(&mut s.prep_ms, prep, 300);
        push(&mut s.detect_ms, det, 300);
        push(&mut s.align_ms, align, 300);
        let fps = match (s.frame_ends.front(), s.frame_ends.back()) {
            (Some(a), Some(b)) if b > a => (s.frame_ends.len() - 1) as f64 * 1000.0 / (b - a),
            _ => 0.0,
        };
        if e.frames % 5 == 0 {
            ui.fps.set((fps * 10.0).round() / 10.0);
            ui.latency_ms.set(median(&s.latencies).round());
        }
        let rows: Vec<FaceRow> = labels
            .iter()
            .zip(ids.iter().copied().chain(std::iter::repeat(0)))
            .map(|((_, l), id)| FaceRow {
                track: id,
                label: l.text(),
                known: match l {
                    Label::Pending => None,
                    Label::Unknown => Some(false),
                    Label::Person { .. } => Some(true),
                },
            })
            .collect();
        publish_stats(e, fps, &rows);
        Some((rows, e.collector.items.len()))
    });
    if let Some((rows, progress)) = drawn {
        if mode == Mode::Live && ui.faces.get_untracked() != rows {
            ui.faces.set(rows);
        }
        if mode == Mode::Enroll && ui.progress.get_untracked() != progress {
            ui.progress.set(progress);
        }
    }
}

fn on_embedded(ui: Ui, job: u64, embeddings: Vec<Option<visage_shared::Embedding>>, embed_ms: f64) {
    let (probes, progress) = ENGINE.with_borrow_mut(|e| {
        e.embeds += embeddings.len() as u64;
        push(&mut e.samples.embed_ms, embed_ms, 300);
        match e.embed_jobs.remove(&job) {
            Some(EmbedJob::Live(tracks)) => {
                let probes: Vec<(u64, visage_shared::Embedding)> = tracks
                    .into_iter()
                    .zip(embeddings)
                    .filter_map(|(t, emb)| Some((t, emb?)))
                    .collect();
                (probes, None)
            }
            Some(EmbedJob::Enroll {
                generation,
                quality,
            }) if generation == e.generation => {
                let item = embeddings.into_iter().next().flatten();
                e.collector.fulfil(item.map(|emb| (emb, quality)));
                (vec![], Some(e.collector.items.len()))
            }
            _ => (vec![], None),
        }
    });
    if !probes.is_empty() {
        spawn_recognition(ui, probes);
    }
    if let Some(n) = progress.filter(|n| ui.progress.get_untracked() != *n) {
        ui.progress.set(n);
    }
}

fn publish_stats(e: &Engine, fps: f64, rows: &[FaceRow]) {
    let s = &e.samples;
    let lat: Vec<f64> = s.latencies.iter().copied().collect();
    let cap: Vec<f64> = s.capture_latencies.iter().copied().collect();
    let stats = serde_json::json!({
        "frames": e.frames,
        "video_frames": e.video_frames,
        "dropped": e.sched.dropped,
        "stale": e.sched.stale,
        "frames_in_flight": e.sched.in_flight(),
        "fps": fps,
        "config": {
            "detect_side": e.config.detect_side,
            "detect_workers": e.config.detect_workers,
            "depth": e.config.depth,
        },
        "latency_ms_median": median(&s.latencies),
        "latencies_ms": lat,
        "capture_to_overlay_ms_median": median(&s.capture_latencies),
        "capture_to_overlay_ms": cap,
        "capture_samples": s.capture_latencies.len(),
        "main_capture_ms_median": median(&s.capture_ms),
        "main_draw_ms_median": median(&s.draw_ms),
        "prep_ms_median": median(&s.prep_ms),
        "detect_ms_median": median(&s.detect_ms),
        "align_ms_median": median(&s.align_ms),
        "embed_ms_median": median(&s.embed_ms),
        "embeds": e.embeds,
        "recognize_requests": e.requests,
        "faces": rows.iter().map(|r| serde_json::json!({"track": r.track, "label": r.label, "known": r.known})).collect::<Vec<_>>(),
    });
    if let (Some(w), Ok(v)) = (web_sys::window(), js_sys::JSON::parse(&stats.to_string())) {
        let _ = js_sys::Reflect::set(&w, &"__visage".into(), &v);
    }
}

fn spawn_recognition(ui: Ui, probes: Vec<(u64, visage_shared::Embedding)>) {
    ENGINE.with_borrow_mut(|e| {
        e.in_flight += 1;
        e.requests += 1;
    });
    leptos::task::spawn_local(async move {
        let settings = ui.settings.get_untracked();
        let embs: Vec<&visage_shared::Embedding> = probes.iter().map(|(_, e)| e).collect();
        let res = api::recognize(&settings, &embs).await;
        // An answer that comes back after the person left the live view says nothing there.
        let live = ui.mode.get_untracked() == Mode::Live;
        ENGINE.with_borrow_mut(|e| {
            e.in_flight -= 1;
            match res {
                Ok(r) => {
                    for ((track, _), result) in probes.iter().zip(&r.results) {
                        // No candidate (what keys without the admin scope get for an unknown
                        // face) or none that matches: unknown.
                        let vote = match r.best_match(result) {
                            Some(c) => Vote::Person {
                                id: c.person_id.clone(),
                                name: c.name.clone(),
                                similarity: c.similarity,
                            },
                            None => Vote::Unknown {
                                best: result.candidates.first().map(|c| c.similarity),
                            },
                        };
                        e.tracker.vote(*track, vote);
                    }
                    if r.threshold.is_some() && ui.server_threshold.get_untracked() != r.threshold {
                        ui.server_threshold.set(r.threshold);
                    }
                    if ui.error.get_untracked().is_some() {
                        ui.error.set(None);
                    }
                }
                Err(err) if live => ui.error.set(Some(format!("recognition: {err}"))),
                Err(_) => {}
            }
        });
    });
}

/// Canvas pixels per displayed CSS pixel: a large photo shown scaled down needs its lines and
/// labels drawn that much larger to look the same size as on the live view (1 when the canvas
/// is not laid out).
fn display_scale(canvas: &HtmlCanvasElement) -> f64 {
    overlay_scale(canvas.width(), canvas.client_width())
}

/// See [`display_scale`]: never below 1 (a small canvas shown enlarged keeps 18 px labels).
pub(crate) fn overlay_scale(canvas_px: u32, shown_px: i32) -> f64 {
    if shown_px <= 0 || canvas_px == 0 {
        return 1.0;
    }
    (canvas_px as f64 / shown_px as f64).max(1.0)
}

/// Draws boxes, landmarks and (live) labels; `scale` is [`display_scale`] of the canvas.
fn draw_overlay(
    ctx: &CanvasRenderingContext2d,
    labels: &[(Detection, Label)],
    mode: Mode,
    good_face: Option<bool>,
    scale: f64,
) {
    let px = |v: f64| v * scale;
    ctx.set_line_width(px(3.0));
    ctx.set_font(&format!("bold {:.0}px sans-serif", px(18.0)));
    for (d, label) in labels {
        let color = match (mode, label, good_face) {
            (Mode::Enroll, _, Some(true)) => "#2ecc71",
            (Mode::Enroll, _, _) => "#f1c40f",
            (_, Label::Person { .. }, _) => "#2ecc71",
            (_, Label::Unknown, _) => "#e74c3c",
            (_, Label::Pending, _) => "#f1c40f",
        };
        ctx.set_stroke_style_str(color);
        ctx.set_fill_style_str(color);
        let b = d.bbox;
        ctx.stroke_rect(b.x as f64, b.y as f64, b.width as f64, b.height as f64);
        for p in &d.landmarks {
            ctx.fill_rect(p.x as f64 - px(2.0), p.y as f64 - px(2.0), px(4.0), px(4.0));
        }
        if mode == Mode::Live {
            let text = label.text();
            let y = (b.y as f64 - px(8.0)).max(px(18.0));
            ctx.set_fill_style_str("rgba(0,0,0,0.6)");
            let tw = ctx
                .measure_text(&text)
                .map(|m| m.width())
                .unwrap_or(px(80.0));
            ctx.fill_rect(b.x as f64, y - px(18.0), tw + px(8.0), px(24.0));
            ctx.set_fill_style_str(color);
            let _ = ctx.fill_text(&text, b.x as f64 + px(4.0), y);
        }
    }
}

/// Decodes an uploaded photo in the embedding worker (it never leaves the browser), finds and
/// embeds every face, and draws it.
pub async fn analyze_photo(
    bytes: &[u8],
    canvas: &HtmlCanvasElement,
) -> Result<Vec<AnalyzedFace>, String> {
    let mut resolve = None;
    let promise = js_sys::Promise::new(&mut |res, _| resolve = Some(res));
    let resolve = resolve.ok_or("no promise")?;
    ENGINE.with_borrow_mut(|e| {
        let pool = e
            .pool
            .as_ref()
            .filter(|p| p.is_ready())
            .ok_or("the models are still loading")?;
        e.next_job += 1;
        let job = e.next_job;
        let buf: JsValue = js_sys::Uint8Array::from(bytes).buffer().into();
        post(
            &pool.embed,
            &Request::Photo { job },
            &[("buf", &buf)],
            &[&buf],
        )?;
        e.photo_jobs.insert(job, resolve);
        Ok::<_, String>(())
    })?;
    let data = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|_| "the photo could not be analysed")?;
    let meta = js_sys::Reflect::get(&data, &"meta".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    let Ok(Reply::Photo {
        width,
        height,
        faces,
        error,
        ..
    }) = serde_json::from_str::<Reply>(&meta)
    else {
        return Err("bad answer from the pipeline".into());
    };
    if let Some(e) = error {
        return Err(e);
    }
    let faces: Vec<AnalyzedFace> = faces.into_iter().map(AnalyzedFace::from).collect();
    canvas.set_width(width);
    canvas.set_height(height);
    let ctx = ctx2d(canvas).ok_or("no 2d canvas")?;
    let buf = js_sys::Reflect::get(&data, &"buf".into()).map_err(|_| "no pixels")?;
    let pixels = js_sys::Uint8ClampedArray::new(&buf);
    let img = web_sys::ImageData::new_with_js_u8_clamped_array_and_sh(&pixels, width, height)
        .map_err(|_| "image too large to show")?;
    ctx.put_image_data(&img, 0.0, 0.0)
        .map_err(|_| "drawing failed")?;
    let labels: Vec<(Detection, Label)> = faces
        .iter()
        .map(|f| (f.detection.clone(), Label::Pending))
        .collect();
    draw_overlay(&ctx, &labels, Mode::Enroll, None, display_scale(canvas));
    Ok(faces)
}

/// Draws names for the faces of a photo after recognition.
pub fn label_photo(canvas: &HtmlCanvasElement, faces: &[AnalyzedFace], labels: &[Label]) {
    if let Some(ctx) = ctx2d(canvas) {
        let l: Vec<(Detection, Label)> = faces
            .iter()
            .map(|f| f.detection.clone())
            .zip(labels.iter().cloned())
            .collect();
        draw_overlay(&ctx, &l, Mode::Live, None, display_scale(canvas));
    }
}

/// The labels of a photo's faces from the service's answer: a person only for a match; no
/// candidate, or none that matches, is unknown.
pub fn photo_labels(r: &api::RecognizeResponse) -> Vec<Label> {
    r.results
        .iter()
        .map(|p| match r.best_match(p) {
            Some(c) => Label::Person {
                id: c.person_id.clone(),
                name: c.name.clone(),
                similarity: c.similarity,
            },
            None => Label::Unknown,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_scale_with_the_displayed_size() {
        // A 4000 px wide photo shown 928 px wide: lines and labels 4.3 times larger.
        assert!((overlay_scale(4000, 928) - 4000.0 / 928.0).abs() < 1e-9);
        // The live view at its own size, a small photo, a canvas not laid out.
        assert_eq!(overlay_scale(640, 640), 1.0);
        assert_eq!(overlay_scale(300, 600), 1.0);
        assert_eq!(overlay_scale(640, 0), 1.0);
    }

    #[test]
    fn photo_faces_without_candidates_are_unknown() {
        let r: api::RecognizeResponse = serde_json::from_value(serde_json::json!({
            "threshold": 0.67,
            "results": [
                { "candidates": [] },
                { "candidates": [{ "person_id": "p", "name": "Ann", "similarity": 0.93, "match": true }] },
            ]
        }))
        .unwrap();
        let labels = photo_labels(&r);
        assert_eq!(labels[0], Label::Unknown);
        assert_eq!(labels[1].text(), "Ann 0.93");
    }
}
