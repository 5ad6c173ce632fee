//! The frame loop: each new camera frame goes out to a free detection worker (or is dropped),
//! and comes back with its faces to be drawn, tracked or collected, and passed on to be
//! embedded.

use std::cell::RefCell;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlCanvasElement, HtmlVideoElement};

use super::embeddings::{EmbedJob, send_embed_faces};
use super::overlay::{ctx2d, display_scale, draw_frame, draw_overlay};
use super::stats::FrameTimes;
use super::workers::{Pool, post};
use super::{ENGINE, Mode, Ui, decide, stats};
use crate::proto::{FrameFace, Request};
use crate::track::Label;
use crate::worker::now;

/// A frame on its way through a detection worker.
pub(super) struct InFlight {
    /// When its capture began (main thread clock).
    t0: f64,
    /// The camera's capture time, when the browser gives it.
    capture: Option<f64>,
    width: u32,
    height: u32,
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
        e.samples.capture_ms(now() - t0);
        Ok(())
    })
}

/// A detection worker's answer for one frame.
pub(super) struct Detected {
    pub(super) worker: usize,
    pub(super) seq: u64,
    pub(super) faces: Vec<FrameFace>,
    /// RGBA to RGB, detection, alignment and quality (ms, in the worker).
    pub(super) timings: [f64; 3],
    pub(super) failed: bool,
    /// The frame's RGBA pixels, handed back.
    pub(super) frame: Option<JsValue>,
}

/// A frame back from detection: unless a newer one was drawn already, it is drawn with its
/// faces, which the mode's decisions ([`decide`]) label, track or collect and send on to be
/// embedded; the screens' list or progress follow.
pub(super) fn on_detected(ui: Ui, d: Detected) {
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
        let draw_start = now();
        let view = e.view.clone()?;
        let ctx = draw_frame(&view, info.width, info.height, d.frame.as_ref())?;
        let size = (info.width, info.height);
        let mut labels: Vec<(_, Label)> = Vec::new();
        let mut tracks: Vec<u64> = Vec::new();
        let mut good_face = None;
        match mode {
            Mode::Live => {
                let free =
                    decide::may_embed(e.embed_jobs.is_empty(), e.in_flight, d.frame.is_some());
                let live = decide::live_frame(&mut e.tracker, &d.faces, free);
                if let (false, Some(frame)) = (live.embed.is_empty(), d.frame.as_ref()) {
                    let (ids, faces) = live.embed.into_iter().unzip();
                    send_embed_faces(e, EmbedJob::Live(ids), frame, size, faces);
                }
                labels = live.labels;
                tracks = live.tracks;
            }
            Mode::Enroll => {
                let can_embed = e.embed_jobs.is_empty() && d.frame.is_some();
                let enroll = decide::enroll_frame(&mut e.collector, &d.faces, can_embed);
                if let (Some((face, quality)), Some(frame)) = (enroll.embed, d.frame.as_ref()) {
                    let job = EmbedJob::Enroll {
                        generation: e.generation,
                        quality,
                    };
                    send_embed_faces(e, job, frame, size, vec![face]);
                }
                if ui.advice.get_untracked() != enroll.advice {
                    ui.advice.set(enroll.advice);
                }
                good_face = enroll.good_face;
                labels = d
                    .faces
                    .iter()
                    .map(|f| (f.detection.clone(), Label::Pending))
                    .collect();
            }
            Mode::Off => {}
        }
        // Reading the layout costs, and the shown size seldom changes: now and then.
        if e.frames.is_multiple_of(30) {
            e.view_scale = display_scale(&view);
        }
        draw_overlay(&ctx, &labels, mode, good_face, e.view_scale);
        let end = now();

        // Statistics, for the screen and for tests (window.__visage).
        e.frames += 1;
        e.samples.frame_drawn(&FrameTimes {
            t0: info.t0,
            draw_start,
            end,
            capture: info.capture,
            worker: d.timings,
        });
        let fps = e.samples.fps();
        stats::show(ui, e, fps);
        let rows = decide::face_rows(&labels, &tracks);
        stats::publish(e, fps, &rows);
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
