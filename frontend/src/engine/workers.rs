//! The pipeline workers: starting them, posting requests to them, and routing their replies.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::frames::{Detected, on_detected};
use super::{ENGINE, Ui, embeddings};
use crate::proto::{Reply, Request, Role};
use crate::schedule::{FrameScheduler, LoopConfig};
use crate::worker::now;

/// The pipeline workers.
pub(super) struct Pool {
    pub(super) detect: Vec<web_sys::Worker>,
    pub(super) embed: web_sys::Worker,
    ready: usize,
    /// Kept alive as long as the workers.
    _handlers: Vec<Closure<dyn FnMut(web_sys::MessageEvent)>>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

impl Pool {
    /// Whether every worker has loaded its models.
    pub(super) fn is_ready(&self) -> bool {
        self.ready == self.detect.len() + 1
    }
}

/// Sends a request with its buffers moved to the worker.
pub(super) fn post(
    worker: &web_sys::Worker,
    req: &Request,
    extra: &[(&str, &JsValue)],
    transfer: &[&JsValue],
) -> Result<(), String> {
    let msg = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&msg, &"meta".into(), &req.to_json().into());
    for (k, v) in extra {
        let _ = js_sys::Reflect::set(&msg, &(*k).into(), v);
    }
    let list = js_sys::Array::new();
    for t in transfer {
        list.push(t);
    }
    worker
        .post_message_with_transfer(&msg, &list)
        .map_err(|e| format!("posting to a worker failed: {e:?}"))
}

/// Starts the pipeline workers (once): one or more for detection, one for embedding. Each
/// gets the page's compiled wasm module (downloaded once, with the models in it) and loads its
/// models; `ui.models` says when all are ready. The loop's settings come from the page address
/// (see [`LoopConfig::from_query`]).
pub fn start_workers(ui: Ui) {
    if ENGINE.with_borrow(|e| e.pool.is_some()) {
        return;
    }
    let query = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let config = LoopConfig::from_query(&query);
    match spawn_pool(ui, &config) {
        Ok(pool) => ENGINE.with_borrow_mut(|e| {
            e.config = config;
            e.sched = FrameScheduler::new(config.detect_workers, config.depth);
            e.pool = Some(pool);
        }),
        Err(msg) => ui.models.set(Some(Err(msg))),
    }
}

fn spawn_pool(ui: Ui, config: &LoopConfig) -> Result<Pool, String> {
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    // The page's own compiled module: workers instantiate it without downloading it again.
    let module = wasm_bindgen::module();
    let on_error =
        Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
            ui.models.set(Some(Err(format!(
                "a pipeline worker failed: {}",
                ev.message()
            ))));
        });
    let mut handlers = Vec::new();
    let mut spawn = |role: Role, index: usize| -> Result<web_sys::Worker, String> {
        let w = web_sys::Worker::new_with_options("./worker.js", &opts)
            .map_err(|e| format!("this browser cannot start the pipeline worker: {e:?}"))?;
        let h =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
                on_reply(ui, role, index, &ev.data())
            });
        w.set_onmessage(Some(h.as_ref().unchecked_ref()));
        w.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        handlers.push(h);
        post(
            &w,
            &Request::Load {
                role,
                detect: config.detect(),
            },
            &[("module", &module)],
            &[],
        )?;
        Ok(w)
    };
    let embed = spawn(Role::Embed, 0)?;
    let detect = (0..config.detect_workers)
        .map(|i| spawn(Role::Detect, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pool {
        detect,
        embed,
        ready: 0,
        _handlers: handlers,
        _on_error: on_error,
    })
}

/// A worker's message: `meta` (a [`Reply`] as JSON) and, for frames and photos, `buf`.
fn on_reply(ui: Ui, role: Role, index: usize, data: &JsValue) {
    let get = |k: &str| {
        js_sys::Reflect::get(data, &k.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(meta) = get("meta").and_then(|m| m.as_string()) else {
        return;
    };
    let reply: Reply = match serde_json::from_str(&meta) {
        Ok(r) => r,
        Err(e) => {
            ui.error
                .set(Some(format!("bad message from the pipeline: {e}")));
            return;
        }
    };
    match reply {
        Reply::Ready { .. } => {
            // Counted from the page's navigation start (performance.now()), so the time
            // includes downloading and compiling the wasm, as the person waited for it.
            let ready_in = ENGINE.with_borrow_mut(|e| {
                let p = e.pool.as_mut()?;
                p.ready += 1;
                p.is_ready().then(now)
            });
            if let Some(ms) = ready_in {
                ui.models.set(Some(Ok(ms)));
            }
        }
        Reply::Failed { error } => ui.models.set(Some(Err(error))),
        Reply::Detected {
            seq,
            faces,
            prep_ms,
            detect_ms,
            align_ms,
            error,
        } => {
            let buf = get("buf");
            if let Some(e) = &error {
                ui.error.set(Some(format!("detection: {e}")));
            }
            on_detected(
                ui,
                Detected {
                    worker: index,
                    seq,
                    faces,
                    timings: [prep_ms, detect_ms, align_ms],
                    failed: error.is_some(),
                    frame: buf,
                },
            );
        }
        Reply::Embedded {
            job,
            embeddings,
            embed_ms,
            error,
        } => {
            if let Some(e) = error {
                ui.error.set(Some(format!("embedding: {e}")));
            }
            embeddings::on_embedded(ui, job, embeddings, embed_ms);
        }
        // Only the benchmark page sends `Bench` requests.
        Reply::Bench { .. } => {}
        Reply::Photo { job, .. } => {
            debug_assert_eq!(role, Role::Embed);
            // The whole message goes to the waiting `analyze_photo`, pixels and all.
            if let Some(resolve) = ENGINE.with_borrow_mut(|e| e.photo_jobs.remove(&job)) {
                let _ = resolve.call1(&JsValue::NULL, data);
            }
        }
    }
}
