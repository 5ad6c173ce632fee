//! The browser side of the pipeline: models, camera, the per-frame loop, drawing, and the
//! recognition calls. Runs on the page's main thread (a Web Worker is the next step).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::OnceLock;

use leptos::prelude::*;
use visage_shared::decode::{DecodeLimits, decode_image, from_rgba};
use visage_shared::{
    AnalyzeOptions, AnalyzedFace, DetectOptions, Detection, Pipeline, QualityGate,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement};

use crate::api;
use crate::settings::Settings;
use crate::track::{Collector, Label, Tracker, Vote};

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Frames (and faces) per enrollment.
pub const ENROLL_FRAMES: usize = 5;
/// Recognition requests allowed in flight at once.
const MAX_IN_FLIGHT: usize = 2;

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
}

/// Mutable state of the loop, owned by the main thread.
struct Engine {
    tracker: Tracker,
    collector: Collector,
    frame_ends: VecDeque<f64>,
    latencies: VecDeque<f64>,
    capture_latencies: VecDeque<f64>,
    detect_ms: VecDeque<f64>,
    embed_ms: VecDeque<f64>,
    frames: u64,
    in_flight: usize,
    requests: u64,
    stream: Option<web_sys::MediaStream>,
}

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine {
        tracker: Tracker::default(),
        collector: Collector::new(ENROLL_FRAMES, 3),
        frame_ends: VecDeque::new(),
        latencies: VecDeque::new(),
        capture_latencies: VecDeque::new(),
        detect_ms: VecDeque::new(),
        embed_ms: VecDeque::new(),
        frames: 0,
        in_flight: 0,
        requests: 0,
        stream: None,
    });
}

pub fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

pub fn pipeline() -> Option<&'static Pipeline> {
    PIPELINE.get()
}

/// Loads (parses and optimises) both models once; returns the time it took in ms.
pub fn load_models() -> Result<f64, String> {
    let t0 = now();
    if PIPELINE.get().is_none() {
        let p = Pipeline::load().map_err(|e| e.to_string())?;
        p.detector
            .warm_up(640, 480, &DetectOptions::VIDEO)
            .map_err(|e| e.to_string())?;
        let _ = PIPELINE.set(p);
    }
    Ok(now() - t0)
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
/// frames already processed). It does nothing while the mode is `Off`.
pub fn start_loop(ui: Ui, video: HtmlVideoElement, canvas: HtmlCanvasElement) {
    let rvfc = js_sys::Reflect::get(&video, &"requestVideoFrameCallback".into())
        .ok()
        .filter(|f| f.is_function());
    let cb: Rc<RefCell<Option<Closure<dyn FnMut(f64, JsValue)>>>> = Rc::new(RefCell::new(None));
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
            if let Err(e) = step(ui, &v2, &canvas, capture) {
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
    ENGINE.with_borrow_mut(|e| e.collector = Collector::new(ENROLL_FRAMES, 3));
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

fn step(
    ui: Ui,
    video: &HtmlVideoElement,
    canvas: &HtmlCanvasElement,
    capture_time: Option<f64>,
) -> Result<(), String> {
    let mode = ui.mode.get_untracked();
    if mode == Mode::Off || video.ready_state() < 2 {
        return Ok(());
    }
    let Some(pipeline) = pipeline() else {
        return Ok(());
    };
    let (w, h) = (video.video_width(), video.video_height());
    if w == 0 || h == 0 {
        return Ok(());
    }
    let t0 = now();
    if canvas.width() != w || canvas.height() != h {
        canvas.set_width(w);
        canvas.set_height(h);
    }
    let ctx = ctx2d(canvas).ok_or("no 2d canvas")?;
    ctx.draw_image_with_html_video_element_and_dw_and_dh(video, 0.0, 0.0, w as f64, h as f64)
        .map_err(|_| "drawing the frame failed")?;
    let data = ctx
        .get_image_data(0.0, 0.0, w as f64, h as f64)
        .map_err(|_| "reading the frame failed")?
        .data();
    let img = from_rgba(w, h, &data, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    let t_det = now();
    let dets = pipeline
        .detect(&img, &DetectOptions::VIDEO)
        .map_err(|e| e.to_string())?;
    let detect_ms = now() - t_det;
    let mut embed_total = 0.0;
    let mut probes: Vec<(u64, visage_shared::Embedding)> = Vec::new();
    let mut labels: Vec<(Detection, Label)> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut good_face: Option<bool> = None;

    ENGINE.with_borrow_mut(|e| -> Result<(), String> {
        match mode {
            Mode::Live => {
                let idx = e.tracker.update(&dets);
                for (d, &ti) in dets.iter().zip(&idx) {
                    if e.tracker.tracks[ti].wants_embedding() && e.in_flight < MAX_IN_FLIGHT {
                        let t = now();
                        if let Some(face) = pipeline
                            .analyze_detection(&img, d.clone())
                            .map_err(|e| e.to_string())?
                        {
                            probes.push((e.tracker.tracks[ti].id, face.embedding));
                            e.tracker.mark_embedded(ti);
                        }
                        embed_total += now() - t;
                    }
                    labels.push((d.clone(), e.tracker.tracks[ti].label()));
                    ids.push(e.tracker.tracks[ti].id);
                }
            }
            Mode::Enroll => {
                let advice = match dets.len() {
                    0 => {
                        e.collector.offer(None);
                        "no face in view: look at the camera".to_string()
                    }
                    1 => {
                        let t = now();
                        let face = pipeline
                            .analyze_detection(&img, dets[0].clone())
                            .map_err(|e| e.to_string())?;
                        embed_total += now() - t;
                        match face {
                            None => {
                                e.collector.offer(None);
                                "face the camera".to_string()
                            }
                            Some(face) => {
                                let issues = face.quality.issues(&QualityGate::default());
                                good_face = Some(issues.is_empty());
                                if issues.is_empty() {
                                    e.collector.offer(Some((face.embedding, face.quality)));
                                    if e.collector.is_full() {
                                        "done: all frames collected".to_string()
                                    } else {
                                        "good: hold still".to_string()
                                    }
                                } else {
                                    e.collector.offer(None);
                                    issues
                                        .iter()
                                        .map(|i| i.advice())
                                        .collect::<Vec<_>>()
                                        .join("; ")
                                }
                            }
                        }
                    }
                    n => {
                        e.collector.offer(None);
                        format!("{n} faces in view: only the person enrolling, please")
                    }
                };
                if ui.advice.get_untracked() != advice {
                    ui.advice.set(advice);
                }
                let n = e.collector.items.len();
                if ui.progress.get_untracked() != n {
                    ui.progress.set(n);
                }
                for d in &dets {
                    labels.push((d.clone(), Label::Pending));
                }
            }
            Mode::Off => {}
        }
        Ok(())
    })?;

    draw_overlay(&ctx, &labels, mode, good_face);
    let t_end = now();

    if !probes.is_empty() {
        spawn_recognition(ui, probes);
    }

    // Statistics, for the screen and for tests (window.__visage).
    ENGINE.with_borrow_mut(|e| {
        e.frames += 1;
        push(&mut e.frame_ends, t_end, 120);
        push(&mut e.latencies, t_end - t0, 300);
        if let Some(c) = capture_time.filter(|c| *c > 0.0 && *c <= t_end) {
            push(&mut e.capture_latencies, t_end - c, 300);
        }
        push(&mut e.detect_ms, detect_ms, 300);
        if embed_total > 0.0 {
            push(&mut e.embed_ms, embed_total, 300);
        }
        let fps = match (e.frame_ends.front(), e.frame_ends.back()) {
            (Some(a), Some(b)) if b > a => (e.frame_ends.len() - 1) as f64 * 1000.0 / (b - a),
            _ => 0.0,
        };
        if e.frames % 5 == 0 {
            ui.fps.set((fps * 10.0).round() / 10.0);
            ui.latency_ms.set(median(&e.latencies).round());
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
        if mode == Mode::Live && ui.faces.get_untracked() != rows {
            ui.faces.set(rows.clone());
        }
        publish_stats(e, fps, &rows);
    });
    Ok(())
}

fn publish_stats(e: &Engine, fps: f64, rows: &[FaceRow]) {
    let lat: Vec<f64> = e.latencies.iter().copied().collect();
    let stats = serde_json::json!({
        "frames": e.frames,
        "fps": fps,
        "latency_ms_median": median(&e.latencies),
        "latencies_ms": lat,
        "capture_to_overlay_ms_median": median(&e.capture_latencies),
        "capture_samples": e.capture_latencies.len(),
        "detect_ms_median": median(&e.detect_ms),
        "embed_ms_median": median(&e.embed_ms),
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
        ENGINE.with_borrow_mut(|e| {
            e.in_flight -= 1;
            match res {
                Ok(r) => {
                    for ((track, _), result) in probes.iter().zip(r.results) {
                        let vote = match result.candidates.first() {
                            Some(c) if c.is_match => Vote::Person {
                                id: c.person_id.clone(),
                                name: c.name.clone(),
                                similarity: c.similarity,
                            },
                            best => Vote::Unknown {
                                best: best.map(|c| c.similarity),
                            },
                        };
                        e.tracker.vote(*track, vote);
                    }
                    if ui.error.get_untracked().is_some() {
                        ui.error.set(None);
                    }
                }
                Err(msg) => ui.error.set(Some(format!("recognition: {msg}"))),
            }
        });
    });
}

fn draw_overlay(
    ctx: &CanvasRenderingContext2d,
    labels: &[(Detection, Label)],
    mode: Mode,
    good_face: Option<bool>,
) {
    ctx.set_line_width(3.0);
    ctx.set_font("bold 18px sans-serif");
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
            ctx.fill_rect(p.x as f64 - 2.0, p.y as f64 - 2.0, 4.0, 4.0);
        }
        if mode == Mode::Live {
            let text = label.text();
            let y = (b.y as f64 - 8.0).max(18.0);
            ctx.set_fill_style_str("rgba(0,0,0,0.6)");
            let tw = ctx.measure_text(&text).map(|m| m.width()).unwrap_or(80.0);
            ctx.fill_rect(b.x as f64, y - 18.0, tw + 8.0, 24.0);
            ctx.set_fill_style_str(color);
            let _ = ctx.fill_text(&text, b.x as f64 + 4.0, y);
        }
    }
}

/// Decodes an uploaded photo in the browser, finds and embeds every face, and draws it.
pub fn analyze_photo(
    bytes: &[u8],
    canvas: &HtmlCanvasElement,
) -> Result<Vec<AnalyzedFace>, String> {
    let pipeline = pipeline().ok_or("the models are still loading")?;
    let img = decode_image(bytes, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    let faces = pipeline
        .analyze(
            &img,
            &AnalyzeOptions {
                detect: DetectOptions::PHOTO,
            },
        )
        .map_err(|e| e.to_string())?;
    let (w, h) = img.dimensions();
    let rgba: Vec<u8> = img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    canvas.set_width(w);
    canvas.set_height(h);
    let ctx = ctx2d(canvas).ok_or("no 2d canvas")?;
    let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w, h)
        .map_err(|_| "image too large to show")?;
    ctx.put_image_data(&data, 0.0, 0.0)
        .map_err(|_| "drawing failed")?;
    let labels: Vec<(Detection, Label)> = faces
        .iter()
        .map(|f| (f.detection.clone(), Label::Pending))
        .collect();
    draw_overlay(&ctx, &labels, Mode::Enroll, None);
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
        draw_overlay(&ctx, &l, Mode::Live, None);
    }
}
