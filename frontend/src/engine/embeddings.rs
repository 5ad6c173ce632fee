//! Embedding jobs and what becomes of their embeddings: live faces go to the service to be
//! recognised (their answers vote on the faces' tracks), enrollment faces into the collector.

use leptos::prelude::*;
use visage_shared::{Detection, Embedding, Quality};
use wasm_bindgen::prelude::*;

use super::workers::post;
use super::{ENGINE, Engine, Mode, Ui, decide};
use crate::api;
use crate::proto::Request;

/// What an embedding job was for.
pub(super) enum EmbedJob {
    /// Recognition of these tracks' faces.
    Live(Vec<u64>),
    /// An enrollment face of collection `generation`.
    Enroll { generation: u64, quality: Quality },
}

/// Sends faces of a drawn frame to the embedding worker, which refines their landmarks
/// first; the frame's buffer moves with them (the page is done with it).
pub(super) fn send_embed_faces(
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

/// The embedding worker's answer to job `job` (`None` for a face that failed).
pub(super) fn on_embedded(ui: Ui, job: u64, embeddings: Vec<Option<Embedding>>, embed_ms: f64) {
    let (probes, progress) = ENGINE.with_borrow_mut(|e| {
        e.embeds += embeddings.len() as u64;
        e.samples.embed_ms(embed_ms);
        match e.embed_jobs.remove(&job) {
            Some(EmbedJob::Live(tracks)) => {
                let probes: Vec<(u64, Embedding)> = tracks
                    .into_iter()
                    .zip(embeddings)
                    .filter_map(|(t, emb)| Some((t, emb?)))
                    .collect();
                (probes, None)
            }
            // A face of an enrollment since cancelled or restarted is dropped.
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

/// Asks the service who these tracks' faces are; each answer is a vote on its track.
fn spawn_recognition(ui: Ui, probes: Vec<(u64, Embedding)>) {
    ENGINE.with_borrow_mut(|e| {
        e.in_flight += 1;
        e.requests += 1;
    });
    leptos::task::spawn_local(async move {
        let settings = ui.settings.get_untracked();
        let embs: Vec<&Embedding> = probes.iter().map(|(_, e)| e).collect();
        let res = api::recognize(&settings, &embs).await;
        // An answer that comes back after the person left the live view says nothing there.
        let live = ui.mode.get_untracked() == Mode::Live;
        ENGINE.with_borrow_mut(|e| {
            e.in_flight -= 1;
            match res {
                Ok(r) => {
                    for ((track, _), result) in probes.iter().zip(&r.results) {
                        e.tracker.vote(*track, decide::vote(&r, result));
                    }
                    if ui.server_threshold.get_untracked() != Some(r.threshold) {
                        ui.server_threshold.set(Some(r.threshold));
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
