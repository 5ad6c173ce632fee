//! Recognition of an uploaded photo, under the live view: the photo is analysed in this
//! browser and only its faces' embeddings go to the service.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::read_file;
use crate::api;
use crate::engine::{self, FaceRow, Ui};
use crate::words::count;

/// Recognises the faces of an uploaded photo, processed in the browser.
#[component]
pub(super) fn PhotoRecognize() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let input_ref = NodeRef::<leptos::html::Input>::new();
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    // Each face's label, coloured as in the live list.
    let results = RwSignal::new(Vec::<FaceRow>::new());
    let status = RwSignal::new(String::new());
    let on_change = move |_| {
        let (Some(input), Some(canvas)) = (input_ref.get(), canvas_ref.get()) else {
            return;
        };
        spawn_local(async move {
            status.set("analysing…".into());
            let Some(bytes) = read_file(&input).await else {
                return status.set("could not read the file".into());
            };
            let faces = match engine::analyze_photo(&bytes, &canvas).await {
                Ok(f) => f,
                Err(e) => return status.set(e),
            };
            if faces.is_empty() {
                results.set(vec![]);
                return status.set("no face found in this photo".into());
            }
            let settings = ui.settings.get_untracked();
            let embs: Vec<_> = faces.iter().map(|f| &f.embedding).collect();
            match api::recognize(&settings, &embs).await {
                Ok(r) => {
                    let labels = engine::photo_labels(&r, &faces);
                    engine::label_photo(&canvas, &faces, &labels);
                    // A photo's faces are not tracked: no track ids.
                    results.set(labels.iter().map(|l| FaceRow::new(0, l)).collect());
                    ui.server_threshold.set(Some(r.threshold));
                    status.set(count(faces.len() as u64, "face", "faces"));
                }
                Err(e) => status.set(format!("recognition failed: {e}")),
            }
        });
    };
    view! {
        <div class="photo">
            <label>"Recognise a photo (stays in this browser): "
                <input type="file" accept="image/*" id="photo-recognize" node_ref=input_ref on:change=on_change/>
            </label>
            <span class="status">{move || status.get()}</span>
            <ul id="photo-faces" class="faces">{move || results.get().into_iter().map(|f| {
                let class = f.class();
                view! { <li class=class>{f.label}</li> }
            }).collect_view()}</ul>
            <canvas class="photo-view" node_ref=canvas_ref width="0" height="0"></canvas>
        </div>
    }
}
