//! Which camera frames go to which detection worker (pure, unit-tested on the host).
//!
//! Frames are never queued behind a busy pipeline: a frame goes to the least busy worker that
//! has room (at most `depth` frames in flight each), else it is dropped, so the overlay never
//! falls behind the camera. Results that come back older than one already drawn (possible with
//! several workers) are not drawn, so tracking always moves forward in time.

use visage_shared::DetectOptions;

/// How the live loop runs; defaults measured in BENCHMARKS.md, overridable for benchmarks
/// through the page address (`?detect_side=320&detect_workers=2&depth=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopConfig {
    /// The detector's longer input side for camera frames.
    pub detect_side: u32,
    /// Detection workers taking frames in turn.
    pub detect_workers: usize,
    /// Frames in flight per detection worker.
    pub depth: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            detect_side: 320,
            // Two detection workers take frames in turn: measured in headless Chromium on 2
            // cores, capture-to-overlay p50 20 ms instead of 27 ms with SIMD (no frame dropped),
            // and 26 instead of 15 FPS without SIMD (BENCHMARKS.md).
            detect_workers: 2,
            depth: 1,
        }
    }
}

impl LoopConfig {
    /// Reads overrides from a query string (`?a=1&b=2`); unknown keys and bad values are
    /// ignored, values are clamped to what makes sense.
    pub fn from_query(query: &str) -> Self {
        let mut c = Self::default();
        for pair in query.trim_start_matches('?').split('&') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let Ok(n) = v.parse::<u32>() else { continue };
            match k {
                // Multiples of 32 (the detector pads to them anyway), 160..=640.
                "detect_side" => c.detect_side = (n.clamp(160, 640) / 32) * 32,
                "detect_workers" => c.detect_workers = n.clamp(1, 4) as usize,
                "depth" => c.depth = n.clamp(1, 3) as usize,
                _ => {}
            }
        }
        c
    }

    /// Detector options for camera frames: the video threshold at this input size.
    pub fn detect(&self) -> DetectOptions {
        DetectOptions {
            max_side: self.detect_side,
            ..DetectOptions::VIDEO
        }
    }
}

/// Hands frames to detection workers and orders their results.
#[derive(Debug, Clone)]
pub struct FrameScheduler {
    in_flight: Vec<usize>,
    depth: usize,
    next_seq: u64,
    /// Worker to try first on a tie (turns go round).
    turn: usize,
    last_drawn: Option<u64>,
    pub sent: u64,
    pub dropped: u64,
    pub stale: u64,
}

impl FrameScheduler {
    pub fn new(workers: usize, depth: usize) -> Self {
        Self {
            in_flight: vec![0; workers.max(1)],
            depth: depth.max(1),
            next_seq: 0,
            turn: 0,
            last_drawn: None,
            sent: 0,
            dropped: 0,
            stale: 0,
        }
    }

    /// A new camera frame: the worker that takes it and the frame's sequence number, or
    /// `None` when every worker is full (the frame is dropped).
    pub fn offer(&mut self) -> Option<(usize, u64)> {
        let n = self.in_flight.len();
        let best = (0..n)
            .map(|k| (self.turn + k) % n)
            .filter(|&w| self.in_flight[w] < self.depth)
            .min_by_key(|&w| self.in_flight[w]);
        let Some(w) = best else {
            self.dropped += 1;
            return None;
        };
        self.in_flight[w] += 1;
        self.turn = (w + 1) % n;
        self.next_seq += 1;
        self.sent += 1;
        Some((w, self.next_seq))
    }

    /// Worker `worker` finished frame `seq`. Returns whether to draw it: not if a later frame
    /// was drawn already.
    pub fn done(&mut self, worker: usize, seq: u64) -> bool {
        if let Some(c) = self.in_flight.get_mut(worker) {
            *c = c.saturating_sub(1);
        }
        if self.last_drawn.is_some_and(|l| seq <= l) {
            self.stale += 1;
            return false;
        }
        self.last_drawn = Some(seq);
        true
    }

    /// Frames in flight over all workers.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_one_frame_drops_frames_while_busy() {
        let mut s = FrameScheduler::new(1, 1);
        assert_eq!(s.offer(), Some((0, 1)));
        assert_eq!(s.offer(), None);
        assert_eq!(s.offer(), None);
        assert!(s.done(0, 1));
        assert_eq!(s.offer(), Some((0, 2)));
        assert_eq!((s.sent, s.dropped, s.in_flight()), (2, 2, 1));
    }

    #[test]
    fn two_workers_take_turns_and_queue_nothing() {
        let mut s = FrameScheduler::new(2, 1);
        assert_eq!(s.offer(), Some((0, 1)));
        assert_eq!(s.offer(), Some((1, 2)));
        assert_eq!(s.offer(), None);
        assert!(s.done(0, 1));
        assert_eq!(s.offer(), Some((0, 3)));
        assert!(s.done(1, 2));
        assert_eq!(s.offer(), Some((1, 4)));
        // Both idle: turns alternate.
        assert!(s.done(0, 3));
        assert!(s.done(1, 4));
        let a = s.offer().unwrap().0;
        let b = s.offer().unwrap().0;
        assert_ne!(a, b);
    }

    #[test]
    fn depth_two_keeps_a_second_frame_waiting_and_prefers_idle_workers() {
        let mut s = FrameScheduler::new(2, 2);
        let firsts: Vec<usize> = (0..4).map(|_| s.offer().unwrap().0).collect();
        assert_eq!(firsts, vec![0, 1, 0, 1]);
        assert_eq!(s.offer(), None);
        assert!(s.done(1, 2));
        assert_eq!(s.offer().unwrap().0, 1);
    }

    #[test]
    fn late_results_are_not_drawn() {
        let mut s = FrameScheduler::new(2, 1);
        let (w1, f1) = s.offer().unwrap();
        let (w2, f2) = s.offer().unwrap();
        // The second frame finishes first; the first is then stale.
        assert!(s.done(w2, f2));
        assert!(!s.done(w1, f1));
        assert_eq!(s.stale, 1);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn config_from_the_page_address() {
        assert_eq!(LoopConfig::from_query(""), LoopConfig::default());
        let c = LoopConfig::from_query("?detect_side=256&detect_workers=2&depth=2&x=1");
        assert_eq!(
            c,
            LoopConfig {
                detect_side: 256,
                detect_workers: 2,
                depth: 2
            }
        );
        assert_eq!(c.detect().max_side, 256);
        assert_eq!(
            c.detect().score_threshold,
            DetectOptions::VIDEO.score_threshold
        );
        let c = LoopConfig::from_query("detect_side=1000&detect_workers=0&depth=x");
        assert_eq!(c.detect_side, 640);
        assert_eq!(c.detect_workers, 1);
        assert_eq!(c.depth, LoopConfig::default().depth);
        assert_eq!(LoopConfig::from_query("detect_side=300").detect_side, 288);
    }
}
