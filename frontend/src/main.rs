//! visage browser client: the face pipeline runs here in WebAssembly on camera frames; only
//! embeddings (JSON vectors) go to the service.

mod api;
mod app;
mod engine;
mod settings;
mod track;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
