//! The Live screen: the faces in view with their names, the threshold the service used, and
//! recognition of an uploaded photo.

use leptos::prelude::*;

use super::CameraMessage;
use super::photo::PhotoRecognize;
use crate::engine::Ui;
use crate::words::threshold_note;

/// The Live screen (the camera view above it is the shell's).
#[component]
pub fn Live() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <section id="live">
            <CameraMessage/>
            <ul id="live-faces" class="faces">
                {move || ui.faces.get().into_iter().map(|f| {
                    let class = f.class();
                    view! { <li class=class data-track=f.track.to_string()>{f.label}</li> }
                }).collect_view()}
            </ul>
            <p class="note" id="server-threshold">
                {move || ui.server_threshold.get().map(|t| threshold_note(t, ui.settings.with(|s| s.operating_point().0)))}
            </p>
            <PhotoRecognize/>
        </section>
    }
}
