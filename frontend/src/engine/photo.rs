//! Uploaded photos: analysed in the embedding worker (a photo never leaves the browser),
//! shown with their faces, then labelled with the service's answer.

use visage_shared::{AnalyzedFace, Detection};
use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use super::overlay::{ctx2d, display_scale, draw_overlay};
use super::workers::post;
use super::{ENGINE, Mode, decide};
use crate::api;
use crate::proto::{Reply, Request};
use crate::track::{Label, Vote};

/// Decodes an uploaded photo in the embedding worker (it never leaves the browser), finds and
/// embeds every face, and draws it.
pub async fn analyze_photo(
    bytes: &[u8],
    canvas: &HtmlCanvasElement,
) -> Result<Vec<AnalyzedFace>, String> {
    // The worker's reply resolves this promise (see `workers::on_reply`).
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
    // Boxes only, drawn as enrollment draws them: names come with the service's answer
    // (`label_photo`).
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
/// candidate, or none that matches, is unknown, or undecided on a face too poor to decide
/// (`faces` gives their quality, in the answer's order).
pub fn photo_labels(r: &api::RecognizeResponse, faces: &[AnalyzedFace]) -> Vec<Label> {
    r.results
        .iter()
        .zip(
            faces
                .iter()
                .map(|f| Some(&f.quality))
                .chain(std::iter::repeat(None)),
        )
        .map(|(p, quality)| match decide::vote(r, p) {
            Vote::Person {
                id,
                name,
                similarity,
            } => Label::Person {
                id,
                name,
                similarity,
            },
            Vote::Unknown { .. } => decide::decided(Label::Unknown, quality),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::answer;

    #[test]
    fn photo_faces_without_candidates_are_unknown() {
        let r = answer(&[None, Some(("Ann", 0.93, true))]);
        let labels = photo_labels(&r, &[]);
        assert_eq!(labels[0], Label::Unknown);
        assert_eq!(labels[1].text(), "Ann 0.93");
    }
}
