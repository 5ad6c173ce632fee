//! Pure logic of the live view, independent of the browser (unit-tested on the host):
//! following faces between frames by box overlap, deciding when to embed a face, voting over
//! recognition results so a name shows only when several frames agree, and collecting good
//! frames for enrollment.

use std::collections::{HashMap, VecDeque};

use visage_shared::Detection;
use visage_shared::geometry::BBox;

/// Minimum IoU between a track's last box and a detection to continue the track.
pub const MATCH_IOU: f32 = 0.3;
/// A track not seen for more frames than this is dropped.
pub const MAX_MISSED: u32 = 10;
/// Embed a new track on each of its first frames, until this many embeddings were taken...
pub const EAGER_EMBEDS: u32 = 3;
/// ...then every this many frames.
pub const EMBED_EVERY: u32 = 5;
/// Recognition results kept per track.
pub const VOTE_WINDOW: usize = 5;
/// Agreeing results needed before a name (or "unknown") is shown.
pub const AGREE: usize = 3;

/// The outcome of recognising one embedding of a track.
#[derive(Debug, Clone, PartialEq)]
pub enum Vote {
    Person {
        id: String,
        name: String,
        similarity: f32,
    },
    Unknown {
        best: Option<f32>,
    },
}

/// What the overlay shows for a track.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// Not enough agreeing results yet.
    Pending,
    Unknown,
    /// No match, on a face too small, blurred, turned or dark for that to mean "unknown"
    /// (`QualityGate::DECISION`); the text says why.
    Undecided(String),
    Person {
        id: String,
        name: String,
        similarity: f32,
    },
}

impl Label {
    pub fn text(&self) -> String {
        match self {
            Label::Pending => "…".to_string(),
            Label::Unknown => "unknown".to_string(),
            Label::Undecided(why) => why.clone(),
            Label::Person {
                name, similarity, ..
            } => format!("{name} {similarity:.2}"),
        }
    }
}

/// One face followed over frames.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: u64,
    pub bbox: BBox,
    /// Frames since the track was last matched (0: seen in the latest frame).
    pub missed: u32,
    pub embeds: u32,
    pub frames_since_embed: u32,
    pub votes: VecDeque<Vote>,
}

impl Track {
    /// Whether this frame's face of the track should be embedded and recognised.
    pub fn wants_embedding(&self) -> bool {
        self.missed == 0 && (self.embeds < EAGER_EMBEDS || self.frames_since_embed >= EMBED_EVERY)
    }

    /// The label from the latest votes: a person only when `AGREE` of them name that person.
    pub fn label(&self) -> Label {
        let mut counts: HashMap<&str, (usize, f32, &str)> = HashMap::new();
        let mut unknown = 0;
        for v in &self.votes {
            match v {
                Vote::Person {
                    id,
                    name,
                    similarity,
                } => {
                    let e = counts.entry(id.as_str()).or_insert((0, 0.0, name.as_str()));
                    e.0 += 1;
                    e.1 += similarity;
                }
                Vote::Unknown { .. } => unknown += 1,
            }
        }
        if let Some((id, (n, sum, name))) = counts.into_iter().max_by_key(|(_, (n, _, _))| *n)
            && n >= AGREE
        {
            return Label::Person {
                id: id.to_string(),
                name: name.to_string(),
                similarity: sum / n as f32,
            };
        }
        if unknown >= AGREE {
            Label::Unknown
        } else {
            Label::Pending
        }
    }
}

/// Follows faces between frames by greedy IoU matching.
#[derive(Debug, Default)]
pub struct Tracker {
    pub tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// Matches this frame's detections to tracks (new tracks for unmatched ones, ageing the
    /// others). Returns, per detection, the index of its track in `self.tracks`.
    pub fn update(&mut self, dets: &[Detection]) -> Vec<usize> {
        for t in &mut self.tracks {
            t.missed += 1;
            t.frames_since_embed += 1;
        }
        self.tracks.retain(|t| t.missed <= MAX_MISSED);
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (di, d) in dets.iter().enumerate() {
            for (ti, t) in self.tracks.iter().enumerate() {
                let iou = t.bbox.iou(&d.bbox);
                if iou >= MATCH_IOU {
                    pairs.push((iou, di, ti));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut det_track: Vec<Option<usize>> = vec![None; dets.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, di, ti) in pairs {
            if det_track[di].is_none() && !taken[ti] {
                det_track[di] = Some(ti);
                taken[ti] = true;
            }
        }
        det_track
            .into_iter()
            .enumerate()
            .map(|(di, ti)| {
                let ti = ti.unwrap_or_else(|| {
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id: self.next_id,
                        bbox: dets[di].bbox,
                        missed: 0,
                        embeds: 0,
                        frames_since_embed: 0,
                        votes: VecDeque::new(),
                    });
                    self.tracks.len() - 1
                });
                let t = &mut self.tracks[ti];
                t.bbox = dets[di].bbox;
                t.missed = 0;
                ti
            })
            .collect()
    }

    /// Records that track `index` was embedded this frame.
    pub fn mark_embedded(&mut self, index: usize) {
        let t = &mut self.tracks[index];
        t.embeds += 1;
        t.frames_since_embed = 0;
    }

    /// Adds a recognition result to a track (ignored if the track is gone).
    pub fn vote(&mut self, track_id: u64, vote: Vote) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == track_id) {
            t.votes.push_back(vote);
            while t.votes.len() > VOTE_WINDOW {
                t.votes.pop_front();
            }
        }
    }

    /// Forgets every track's votes (after an enrollment or erasure, the answers change).
    pub fn clear_votes(&mut self) {
        for t in &mut self.tracks {
            t.votes.clear();
            t.embeds = 0;
        }
    }
}

/// Collects good frames for enrollment, spaced apart so they are not near-duplicates.
///
/// Live frames are embedded in a worker, so a good face is first *reserved* (spacing counts
/// from it) and its embedding *fulfilled* when it arrives; [`Collector::offer`] does both at
/// once for a face already embedded (an uploaded photo).
#[derive(Debug)]
pub struct Collector {
    pub target: usize,
    pub min_gap_frames: u32,
    pub frames_since: u32,
    /// Reserved faces whose embedding has not arrived yet.
    pub pending: usize,
    pub items: Vec<(visage_shared::Embedding, visage_shared::Quality)>,
}

impl Collector {
    pub fn new(target: usize, min_gap_frames: u32) -> Self {
        Self {
            target,
            min_gap_frames,
            frames_since: u32::MAX / 2,
            pending: 0,
            items: Vec::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.target
    }

    /// Called once per frame.
    pub fn tick(&mut self) {
        self.frames_since = self.frames_since.saturating_add(1);
    }

    /// Whether a good face seen in this frame would be kept.
    pub fn wants(&self) -> bool {
        self.pending == 0 && !self.is_full() && self.frames_since >= self.min_gap_frames
    }

    /// A good face of this frame is being embedded.
    pub fn reserve(&mut self) {
        self.pending += 1;
        self.frames_since = 0;
    }

    /// The embedding of a reserved face arrived (`None`: it failed). Returns whether it was kept.
    pub fn fulfil(
        &mut self,
        item: Option<(visage_shared::Embedding, visage_shared::Quality)>,
    ) -> bool {
        self.pending = self.pending.saturating_sub(1);
        match item {
            Some(item) if !self.is_full() => {
                self.items.push(item);
                true
            }
            _ => false,
        }
    }

    /// Called once per frame with the frame's embedding if the face passed the gate.
    /// Returns whether it was kept.
    pub fn offer(
        &mut self,
        good: Option<(visage_shared::Embedding, visage_shared::Quality)>,
    ) -> bool {
        self.tick();
        match good {
            Some(item) if self.wants() => {
                self.reserve();
                self.fulfil(Some(item))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visage_shared::geometry::Point;

    fn det(x: f32, y: f32) -> Detection {
        Detection {
            score: 0.9,
            bbox: BBox::new(x, y, 100.0, 100.0),
            landmarks: [Point::new(0.0, 0.0); 5],
        }
    }

    fn person(id: &str) -> Vote {
        Vote::Person {
            id: id.into(),
            name: format!("name-{id}"),
            similarity: 0.8,
        }
    }

    #[test]
    fn tracks_follow_moving_faces_and_new_faces_get_new_ids() {
        let mut t = Tracker::default();
        let a = t.update(&[det(0.0, 0.0), det(300.0, 0.0)]);
        let (id0, id1) = (t.tracks[a[0]].id, t.tracks[a[1]].id);
        assert_ne!(id0, id1);
        // Both move a little, listed in the other order.
        let b = t.update(&[det(310.0, 5.0), det(10.0, 5.0)]);
        assert_eq!(t.tracks[b[0]].id, id1);
        assert_eq!(t.tracks[b[1]].id, id0);
        // A face far away is new.
        let c = t.update(&[det(600.0, 300.0)]);
        assert!(t.tracks[c[0]].id > id1);
        // Unseen tracks expire.
        for _ in 0..=MAX_MISSED {
            t.update(&[]);
        }
        assert!(t.tracks.is_empty());
    }

    #[test]
    fn embeds_eagerly_then_every_few_frames() {
        let mut t = Tracker::default();
        let mut embedded = Vec::new();
        for frame in 0..20 {
            let i = t.update(&[det(0.0, 0.0)])[0];
            if t.tracks[i].wants_embedding() {
                t.mark_embedded(i);
                embedded.push(frame);
            }
        }
        assert_eq!(embedded, vec![0, 1, 2, 7, 12, 17]);
    }

    #[test]
    fn a_name_needs_several_agreeing_frames() {
        let mut t = Tracker::default();
        let i = t.update(&[det(0.0, 0.0)])[0];
        let id = t.tracks[i].id;
        t.vote(id, person("a"));
        t.vote(id, person("a"));
        assert_eq!(t.tracks[0].label(), Label::Pending);
        t.vote(id, Vote::Unknown { best: Some(0.1) });
        assert_eq!(
            t.tracks[0].label(),
            Label::Pending,
            "one blurred frame must not decide"
        );
        t.vote(id, person("a"));
        assert!(matches!(t.tracks[0].label(), Label::Person { ref id, .. } if id == "a"));
        // Three unknowns out of the last five win back.
        for _ in 0..4 {
            t.vote(id, Vote::Unknown { best: None });
        }
        assert_eq!(t.tracks[0].label(), Label::Unknown);
        t.clear_votes();
        assert_eq!(t.tracks[0].label(), Label::Pending);
        // Votes for a vanished track are ignored.
        t.vote(9999, person("b"));
    }

    /// An embedding and the quality of a face the enrollment gate accepts.
    fn good_face() -> (visage_shared::Embedding, visage_shared::Quality) {
        (crate::fixtures::embedding(), crate::fixtures::good())
    }

    #[test]
    fn collector_spaces_frames_and_stops_when_full() {
        let (emb, q) = good_face();
        let mut c = Collector::new(2, 3);
        let kept: Vec<bool> = (0..8).map(|_| c.offer(Some((emb.clone(), q)))).collect();
        assert_eq!(
            kept,
            vec![true, false, false, true, false, false, false, false]
        );
        assert!(c.is_full());
    }

    #[test]
    fn collector_reserves_faces_whose_embedding_is_on_its_way() {
        let (emb, q) = good_face();
        let mut c = Collector::new(2, 3);
        c.tick();
        assert!(c.wants());
        c.reserve();
        // While one is on its way, and until the gap has passed, no other face is taken.
        for _ in 0..5 {
            c.tick();
            assert!(!c.wants());
        }
        assert!(c.fulfil(Some((emb.clone(), q))));
        assert_eq!(c.items.len(), 1);
        c.tick();
        assert!(c.wants(), "the gap counts from the reservation");
        c.reserve();
        // A failed embedding frees the place.
        assert!(!c.fulfil(None));
        c.tick();
        c.tick();
        c.tick();
        assert!(c.wants());
        c.reserve();
        assert!(c.fulfil(Some((emb, q))));
        assert!(c.is_full());
        c.tick();
        c.tick();
        c.tick();
        assert!(!c.wants());
    }
}
