//! The camera: opening the chosen one into the page's video element, stopping it, listing
//! the cameras the browser knows.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::HtmlVideoElement;

use super::{Camera, ENGINE, Ui};

/// Starts the chosen camera into `video`; on failure says why in `ui.camera`.
pub async fn start_camera(ui: Ui, video: HtmlVideoElement) {
    stop_camera(&video);
    ui.camera.set(Camera::Starting);
    match open_camera(&ui.settings.get_untracked().camera_id).await {
        Ok(stream) => {
            video.set_muted(true);
            video.set_src_object(Some(&stream));
            let _ = video.play().map(wasm_bindgen_futures::JsFuture::from);
            ENGINE.with_borrow_mut(|e| e.stream = Some(stream));
            ui.camera.set(Camera::On);
        }
        Err(msg) => ui.camera.set(Camera::Unavailable(msg)),
    }
}

/// Stops the camera playing into `video` (its light goes off).
fn stop_camera(video: &HtmlVideoElement) {
    if let Some(stream) = ENGINE.with_borrow_mut(|e| e.stream.take()) {
        for t in stream.get_tracks().iter() {
            if let Ok(t) = t.dyn_into::<web_sys::MediaStreamTrack>() {
                t.stop();
            }
        }
    }
    video.set_src_object(None);
}

/// Asks for camera `device_id` (empty: the default one) at about 640x480, without sound; the
/// error says in words what went wrong.
async fn open_camera(device_id: &str) -> Result<web_sys::MediaStream, String> {
    let devices = web_sys::window()
        .ok_or("no window")?
        .navigator()
        .media_devices()
        .map_err(|_| "this browser gives no camera access here (a secure origin, https or localhost, is needed)".to_string())?;
    let video = js_sys::Object::new();
    let set = |o: &js_sys::Object, k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(o, &k.into(), &v);
    };
    let ideal = |n: f64| {
        let o = js_sys::Object::new();
        set(&o, "ideal", n.into());
        o.into()
    };
    set(&video, "width", ideal(640.0));
    set(&video, "height", ideal(480.0));
    if !device_id.is_empty() {
        let o = js_sys::Object::new();
        set(&o, "exact", device_id.into());
        set(&video, "deviceId", o.into());
    }
    let constraints = web_sys::MediaStreamConstraints::new();
    constraints.set_video(&video);
    constraints.set_audio(&false.into());
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|_| "the camera could not be requested".to_string())?;
    let stream = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| {
            let name = js_sys::Reflect::get(&e, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .unwrap_or_default();
            match name.as_str() {
                "NotAllowedError" | "SecurityError" => "camera permission was refused".to_string(),
                "NotFoundError" | "OverconstrainedError" => "no camera was found".to_string(),
                "NotReadableError" => "the camera is in use by another program".to_string(),
                _ => format!("the camera could not be started ({name})"),
            }
        })?;
    stream
        .dyn_into()
        .map_err(|_| "not a media stream".to_string())
}

/// Cameras the browser lists: (deviceId, label).
pub async fn list_cameras() -> Vec<(String, String)> {
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else {
        return vec![];
    };
    let Ok(p) = devices.enumerate_devices() else {
        return vec![];
    };
    let Ok(list) = wasm_bindgen_futures::JsFuture::from(p).await else {
        return vec![];
    };
    let list: js_sys::Array = list.unchecked_into();
    list.iter()
        .filter_map(|d| d.dyn_into::<web_sys::MediaDeviceInfo>().ok())
        .filter(|d| d.kind() == web_sys::MediaDeviceKind::Videoinput)
        .enumerate()
        .map(|(i, d)| {
            let label = if d.label().is_empty() {
                format!("camera {}", i + 1)
            } else {
                d.label()
            };
            (d.device_id(), label)
        })
        .collect()
}
