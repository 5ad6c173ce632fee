//! The screens, one module each: Live (with the photo recognition under it), Enroll (with the
//! withdrawal code and form), People, Settings; and what more than one of them shows.

mod enroll;
mod live;
mod people;
mod photo;
mod settings;
mod withdraw;

use leptos::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::engine::{Camera, Ui};

pub use enroll::{Enroll, EnrollStep};
pub use live::Live;
pub use people::People;
pub use settings::SettingsPage;

/// Why the camera view is missing (unavailable, still starting), on the screens that use it.
#[component]
fn CameraMessage() -> impl IntoView {
    let ui = expect_context::<Ui>();
    move || {
        match ui.camera.get() {
        Camera::Unavailable(msg) => Some(view! {
            <p class="warning" id="camera-message">
                {format!("Camera unavailable: {msg}. You can still analyse a photo: it is processed in this browser and never uploaded.")}
            </p>
        }.into_any()),
        Camera::Starting => Some(view! { <p class="info" id="camera-message">"starting the camera…"</p> }.into_any()),
        _ => None,
    }
    }
}

/// Reads the first file of a file input.
async fn read_file(input: &web_sys::HtmlInputElement) -> Option<Vec<u8>> {
    let file = input.files()?.get(0)?;
    let buf = JsFuture::from(file.array_buffer()).await.ok()?;
    Some(js_sys::Uint8Array::new(&buf).to_vec())
}
