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
//!
//! This module holds the loop's state ([`Engine`], one per page) and the enrollment calls the
//! screens make; the rest by concern:
//!
//! - `workers`: the worker pool, messages to it and its replies;
//! - `camera`: opening, stopping and listing cameras;
//! - `frames`: the frame loop, a frame's way out to a detection worker and back;
//! - `embeddings`: embedding jobs, recognition calls and enrollment faces;
//! - `decide`: what the live view and enrollment make of a frame (pure, unit-tested);
//! - `overlay`: drawing frames, boxes and labels;
//! - `stats`: timing samples, the HUD and `window.__visage`;
//! - `photo`: uploaded photos, analysed in the embedding worker and labelled.

mod camera;
mod decide;
mod embeddings;
mod frames;
mod overlay;
mod photo;
mod stats;
mod workers;

use std::cell::RefCell;
use std::collections::HashMap;

use leptos::prelude::*;
use visage_shared::AnalyzedFace;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use crate::schedule::{FrameScheduler, LoopConfig};
use crate::settings::Settings;
use crate::track::{Collector, Tracker};

pub use camera::{list_cameras, start_camera};
pub use decide::FaceRow;
pub use frames::start_loop;
pub use photo::{analyze_photo, label_photo, photo_labels};
pub use workers::start_workers;

/// Frames (and faces) per enrollment.
pub const ENROLL_FRAMES: usize = 5;
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

/// Mutable state of the loop, owned by the main thread.
struct Engine {
    config: LoopConfig,
    tracker: Tracker,
    collector: Collector,
    /// Bumped when a new enrollment begins, so late embeddings of the last one are ignored.
    generation: u64,
    pool: Option<workers::Pool>,
    sched: FrameScheduler,
    frames_in_flight: HashMap<u64, frames::InFlight>,
    capture: Option<(HtmlCanvasElement, CanvasRenderingContext2d)>,
    view: Option<HtmlCanvasElement>,
    /// The view's canvas pixels per displayed CSS pixel (re-read now and then).
    view_scale: f64,
    next_job: u64,
    /// Embedding jobs posted and not answered yet (the worker is busy while any is).
    embed_jobs: HashMap<u64, embeddings::EmbedJob>,
    photo_jobs: HashMap<u64, js_sys::Function>,
    samples: stats::Samples,
    /// Overlays drawn.
    frames: u64,
    /// Camera frames seen while the loop was on.
    video_frames: u64,
    embeds: u64,
    /// Recognition requests on their way.
    in_flight: usize,
    /// Recognition requests made.
    requests: u64,
    stream: Option<web_sys::MediaStream>,
}

thread_local! {
    // The page's one loop: worker callbacks, the frame callback and the screens all reach it
    // here (the main thread only, so a RefCell).
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
        samples: stats::Samples::default(),
        frames: 0,
        video_frames: 0,
        embeds: 0,
        in_flight: 0,
        requests: 0,
        stream: None,
    });
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

/// Adds a face from an uploaded photo to the enrollment: the number of faces collected, or
/// the advice if refused.
pub fn offer_enrollment_face(face: &AnalyzedFace) -> Result<usize, String> {
    decide::enrollment_gate(&face.quality)?;
    ENGINE.with_borrow_mut(|e| Ok(decide::add_photo_face(&mut e.collector, face)))
}

/// Forgets recognition results (after enrolling or erasing someone).
pub fn clear_votes() {
    ENGINE.with_borrow_mut(|e| e.tracker.clear_votes());
}
