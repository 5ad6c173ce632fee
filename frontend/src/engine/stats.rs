//! Statistics of the frame loop: rolling timing samples, the HUD's numbers, and
//! `window.__visage`, which the end-to-end test and the browser benchmark read.

use std::collections::VecDeque;

use leptos::prelude::*;

use super::{Engine, FaceRow, Ui};

/// Samples kept per measure.
const KEEP: usize = 300;
/// Frame ends kept for the frame rate.
const KEEP_FRAME_ENDS: usize = 120;

/// Rolling samples (ms) for the statistics.
#[derive(Default)]
pub(super) struct Samples {
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

/// When a drawn frame went through the loop (main thread clock, ms).
pub(super) struct FrameTimes {
    /// Its capture began.
    pub(super) t0: f64,
    /// Its result came back and drawing began.
    pub(super) draw_start: f64,
    /// Its overlay was drawn.
    pub(super) end: f64,
    /// The camera's capture time, when the browser gives it.
    pub(super) capture: Option<f64>,
    /// In the detection worker: RGBA to RGB, detection, alignment and quality.
    pub(super) worker: [f64; 3],
}

impl Samples {
    /// Main-thread time to capture a frame and post it.
    pub(super) fn capture_ms(&mut self, ms: f64) {
        push(&mut self.capture_ms, ms, KEEP);
    }

    /// Embedding worker time for one job.
    pub(super) fn embed_ms(&mut self, ms: f64) {
        push(&mut self.embed_ms, ms, KEEP);
    }

    /// Records a drawn frame.
    pub(super) fn frame_drawn(&mut self, t: &FrameTimes) {
        push(&mut self.frame_ends, t.end, KEEP_FRAME_ENDS);
        push(&mut self.latencies, t.end - t.t0, KEEP);
        push(&mut self.draw_ms, t.end - t.draw_start, KEEP);
        // A capture time from another clock (0, or later than now) says nothing.
        if let Some(c) = t.capture.filter(|c| *c > 0.0 && *c <= t.end) {
            push(&mut self.capture_latencies, t.end - c, KEEP);
        }
        let [prep, det, align] = t.worker;
        push(&mut self.prep_ms, prep, KEEP);
        push(&mut self.detect_ms, det, KEEP);
        push(&mut self.align_ms, align, KEEP);
    }

    /// Overlays drawn per second over the frames kept (0 before two).
    pub(super) fn fps(&self) -> f64 {
        match (self.frame_ends.front(), self.frame_ends.back()) {
            (Some(a), Some(b)) if b > a => (self.frame_ends.len() - 1) as f64 * 1000.0 / (b - a),
            _ => 0.0,
        }
    }
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

/// Updates the HUD every fifth frame drawn (steadier to read, fewer updates).
pub(super) fn show(ui: Ui, e: &Engine, fps: f64) {
    if e.frames.is_multiple_of(5) {
        ui.fps.set((fps * 10.0).round() / 10.0);
        ui.latency_ms.set(median(&e.samples.latencies).round());
    }
}

/// Publishes the loop's statistics and the faces listed as `window.__visage`.
pub(super) fn publish(e: &Engine, fps: f64, rows: &[FaceRow]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t0: f64, end: f64, capture: Option<f64>) -> FrameTimes {
        FrameTimes {
            t0,
            draw_start: end - 1.0,
            end,
            capture,
            worker: [1.0, 2.0, 3.0],
        }
    }

    #[test]
    fn the_median_is_the_middle_sample() {
        let q: VecDeque<f64> = [5.0, 1.0, 3.0, 9.0].into_iter().collect();
        assert_eq!(median(&q), 5.0, "the upper middle of an even count");
        let q: VecDeque<f64> = [5.0, 1.0, 3.0].into_iter().collect();
        assert_eq!(median(&q), 3.0);
        assert_eq!(median(&VecDeque::new()), 0.0);
    }

    #[test]
    fn samples_roll_over() {
        let mut q = VecDeque::new();
        for v in 0..10 {
            push(&mut q, v as f64, 3);
        }
        assert_eq!(q, [7.0, 8.0, 9.0]);
    }

    #[test]
    fn frames_drawn_give_the_rate_and_latencies() {
        let mut s = Samples::default();
        assert_eq!(s.fps(), 0.0);
        s.frame_drawn(&frame(0.0, 40.0, Some(10.0)));
        assert_eq!(s.fps(), 0.0, "one frame is no rate");
        // 30 frames 25 ms apart: 40 FPS.
        for i in 1..30 {
            let end = 40.0 + i as f64 * 25.0;
            s.frame_drawn(&frame(end - 40.0, end, None));
        }
        assert_eq!(s.fps(), 40.0);
        assert_eq!(median(&s.latencies), 40.0);
        assert_eq!(median(&s.detect_ms), 2.0);
        // Only the frame with a usable camera time counts capture-to-overlay.
        assert_eq!(s.capture_latencies, [30.0]);
        s.frame_drawn(&frame(0.0, 50.0, Some(0.0)));
        s.frame_drawn(&frame(0.0, 50.0, Some(60.0)));
        assert_eq!(s.capture_latencies.len(), 1);
    }
}
