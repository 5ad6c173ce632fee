//! visage browser client: the face pipeline runs here in WebAssembly, in Web Workers, on
//! camera frames; only embeddings (JSON vectors) go to the service.

mod api;
mod app;
mod engine;
#[cfg(test)]
mod fixtures;
mod proto;
mod schedule;
mod screens;
mod settings;
mod track;
mod words;
mod worker;

pub use worker::worker_main;

fn main() {
    console_error_panic_hook::set_once();
    // wasm-bindgen runs this start function in the pipeline workers too (`worker.js` then calls
    // `worker_main`): only a page with a document mounts the app.
    if web_sys::window().and_then(|w| w.document()).is_none() {
        return;
    }
    leptos::mount::mount_to_body(app::App);
    // index.html's loading message (shown while the wasm downloaded) is done.
    if let Some(boot) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("boot"))
    {
        boot.remove();
    }
}
