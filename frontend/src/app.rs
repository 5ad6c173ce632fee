//! The screens: Live, Enroll, People, Settings. State lives in signals; the frame loop in
//! `engine` writes the ones it owns (`Ui`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api::{self, PersonSummary, WithdrawalToken};
use crate::engine::{self, Camera, ENROLL_FRAMES, Mode, Ui};
use crate::settings::Settings;
use crate::track::Label;
use crate::words::{count, looks_like_id, people_error, threshold_note};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Live,
    Enroll,
    People,
    Settings,
}

#[derive(Debug, Clone, PartialEq)]
enum EnrollStep {
    Consent,
    Capture,
    Sending,
    Done(Done),
    Failed(String),
}

/// A finished enrollment, as the Enrolled screen shows it. The withdrawal token lives only
/// here, in memory, until the next enrollment: never in localStorage, never logged (its
/// `Debug` is hidden).
#[derive(Debug, Clone, PartialEq)]
struct Done {
    message: String,
    person_id: String,
    token: Option<WithdrawalToken>,
}

/// Copies `text` to the clipboard; false where the browser does not allow it.
async fn copy_text(text: &str) -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let get = |o: &wasm_bindgen::JsValue, k: &str| {
        js_sys::Reflect::get(o, &k.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(clipboard) = get(&window.navigator(), "clipboard") else {
        return false;
    };
    let Some(write) =
        get(&clipboard, "writeText").and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    else {
        return false;
    };
    match write.call1(&clipboard, &text.into()) {
        Ok(p) => match p.dyn_into::<js_sys::Promise>() {
            Ok(p) => JsFuture::from(p).await.is_ok(),
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// Reads the first file of a file input.
async fn read_file(input: &web_sys::HtmlInputElement) -> Option<Vec<u8>> {
    let file = input.files()?.get(0)?;
    let buf = JsFuture::from(file.array_buffer()).await.ok()?;
    Some(js_sys::Uint8Array::new(&buf).to_vec())
}

#[component]
pub fn App() -> impl IntoView {
    let ui = Ui {
        models: RwSignal::new(None),
        camera: RwSignal::new(Camera::Off),
        mode: RwSignal::new(Mode::Off),
        fps: RwSignal::new(0.0),
        latency_ms: RwSignal::new(0.0),
        faces: RwSignal::new(Vec::new()),
        advice: RwSignal::new(String::new()),
        progress: RwSignal::new(0),
        error: RwSignal::new(None),
        settings: RwSignal::new(Settings::load()),
        server_threshold: RwSignal::new(None),
    };
    provide_context(ui);
    let tab = RwSignal::new(Tab::Live);
    let enroll_step = RwSignal::new(EnrollStep::Consent);
    provide_context(enroll_step);
    let video_ref = NodeRef::<leptos::html::Video>::new();
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();

    // The pipeline workers start (and load the models) after the first paint.
    Effect::new(move |_| engine::start_workers(ui));

    // The frame loop starts once both elements exist.
    let started = StoredValue::new(false);
    Effect::new(move |_| {
        if let (Some(v), Some(c)) = (video_ref.get(), canvas_ref.get())
            && !started.get_value()
        {
            started.set_value(true);
            engine::start_loop(ui, v, c);
        }
    });

    let wants_camera = move || {
        matches!(tab.get(), Tab::Live)
            || (tab.get() == Tab::Enroll && enroll_step.get() == EnrollStep::Capture)
    };
    // An error belongs to the screen it happened on: a new screen starts without it.
    Effect::new(move |prev: Option<(Tab, EnrollStep)>| {
        let screen = (tab.get(), enroll_step.get());
        if prev.is_some_and(|p| p != screen) && ui.error.get_untracked().is_some() {
            ui.error.set(None);
        }
        screen
    });
    // Mode follows the screen.
    Effect::new(move |_| {
        let m = match tab.get() {
            Tab::Live => Mode::Live,
            Tab::Enroll if enroll_step.get() == EnrollStep::Capture => Mode::Enroll,
            _ => Mode::Off,
        };
        ui.mode.set(m);
    });
    // The camera starts when a screen needs it the first time (and again on a camera change).
    Effect::new(move |_| {
        if wants_camera()
            && ui.camera.get_untracked() == Camera::Off
            && let Some(v) = video_ref.get_untracked()
        {
            spawn_local(engine::start_camera(ui, v));
        }
    });

    let tab_button = move |t: Tab, label: &'static str| {
        view! { <button class="tab" class:active=move || tab.get() == t on:click=move |_| tab.set(t)>{label}</button> }
    };

    view! {
        <header>
            <h1>"visage"</h1>
            <nav>
                {tab_button(Tab::Live, "Live")}
                {tab_button(Tab::Enroll, "Enroll")}
                {tab_button(Tab::People, "People")}
                {tab_button(Tab::Settings, "Settings")}
            </nav>
            <span id="models-status">
                {move || match ui.models.get() {
                    None => "loading models…".to_string(),
                    Some(Ok(ms)) => format!("models ready ({:.1} s)", ms / 1000.0),
                    Some(Err(e)) => format!("models failed: {e}"),
                }}
            </span>
        </header>
        <p class="privacy">"Faces are analysed in this browser; only numeric embeddings are sent to the service, never images."</p>
        <div class="stage" style:display=move || if wants_camera() && ui.camera.get() == Camera::On { "block" } else { "none" }>
            <video node_ref=video_ref autoplay=true playsinline=true muted=true class="source"></video>
            <canvas id="view" node_ref=canvas_ref width="640" height="480"></canvas>
            <div id="hud">
                {move || format!("{:.1} FPS · {} ms/frame", ui.fps.get(), ui.latency_ms.get())}
            </div>
        </div>
        {move || ui.error.get().map(|e| view! { <p class="error" id="error">{e}</p> })}
        <main>
            {move || match tab.get() {
                Tab::Live => view! { <Live/> }.into_any(),
                Tab::Enroll => view! { <Enroll/> }.into_any(),
                Tab::People => view! { <People/> }.into_any(),
                Tab::Settings => view! { <SettingsPage video_ref=video_ref/> }.into_any(),
            }}
        </main>
    }
}

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

#[component]
fn Live() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <section id="live">
            <CameraMessage/>
            <ul id="live-faces" class="faces">
                {move || ui.faces.get().into_iter().map(|f| {
                    let state = match f.known { Some(true) => "known", Some(false) => "unknown", None => "pending" };
                    view! { <li class=state data-track=f.track.to_string()>{f.label}</li> }
                }).collect_view()}
            </ul>
            <p class="note" id="server-threshold">
                {move || ui.server_threshold.get().map(|t| threshold_note(t, ui.settings.with(|s| s.threshold)))}
            </p>
            <PhotoRecognize/>
        </section>
    }
}

/// Recognises the faces of an uploaded photo, processed in the browser.
#[component]
fn PhotoRecognize() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let input_ref = NodeRef::<leptos::html::Input>::new();
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    // Each face's label and its class (known/unknown), coloured as in the live list.
    let results = RwSignal::new(Vec::<(String, &'static str)>::new());
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
                    let labels = engine::photo_labels(&r);
                    engine::label_photo(&canvas, &faces, &labels);
                    results.set(
                        labels
                            .iter()
                            .map(|l| {
                                let class = match l {
                                    Label::Person { .. } => "known",
                                    Label::Unknown => "unknown",
                                    Label::Pending => "pending",
                                };
                                (l.text(), class)
                            })
                            .collect(),
                    );
                    if r.threshold.is_some() {
                        ui.server_threshold.set(r.threshold);
                    }
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
            <ul id="photo-faces" class="faces">{move || results.get().into_iter().map(|(t, class)| view! { <li class=class>{t}</li> }).collect_view()}</ul>
            <canvas class="photo-view" node_ref=canvas_ref width="0" height="0"></canvas>
        </div>
    }
}

#[component]
fn Enroll() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let step = expect_context::<RwSignal<EnrollStep>>();
    let name = RwSignal::new(String::new());
    let agreed = RwSignal::new(false);
    let can_continue = move || agreed.get() && !name.get().trim().is_empty();
    let begin = move |_| {
        engine::reset_enrollment();
        ui.progress.set(0);
        ui.advice.set("look at the camera".into());
        step.set(EnrollStep::Capture);
    };
    // Sends everything once enough good frames are collected.
    Effect::new(move |_| {
        if ui.progress.get() >= ENROLL_FRAMES && step.get_untracked() == EnrollStep::Capture {
            step.set(EnrollStep::Sending);
            let faces = engine::take_enrollment();
            let who = name.get_untracked().trim().to_string();
            spawn_local(async move {
                let settings = ui.settings.get_untracked();
                match api::enroll(&settings, &who, &faces).await {
                    Ok(enrolled) => {
                        engine::clear_votes();
                        step.set(EnrollStep::Done(Done {
                            message: format!(
                                "Enrolled {who} with {}.",
                                count(faces.len() as u64, "face embedding", "face embeddings")
                            ),
                            person_id: enrolled.id,
                            token: enrolled.withdrawal_token,
                        }));
                    }
                    Err(e) => step.set(EnrollStep::Failed(e.to_string())),
                }
            });
        }
    });
    // The withdrawal form is on the consent and result steps, not during capture.
    let show_withdraw = Memo::new(move |_| {
        matches!(
            step.get(),
            EnrollStep::Consent | EnrollStep::Done(_) | EnrollStep::Failed(_)
        )
    });
    let photo_ref = NodeRef::<leptos::html::Input>::new();
    let photo_canvas = NodeRef::<leptos::html::Canvas>::new();
    let photo_msg = RwSignal::new(String::new());
    let on_photo = move |_| {
        let (Some(input), Some(canvas)) = (photo_ref.get(), photo_canvas.get()) else {
            return;
        };
        spawn_local(async move {
            let Some(bytes) = read_file(&input).await else {
                return photo_msg.set("could not read the file".into());
            };
            match engine::analyze_photo(&bytes, &canvas).await {
                Ok(faces) if faces.len() == 1 => match engine::offer_enrollment_face(&faces[0]) {
                    Ok(n) => {
                        photo_msg.set("photo accepted".into());
                        ui.progress.set(n);
                    }
                    Err(advice) => photo_msg.set(format!("photo refused: {advice}")),
                },
                Ok(faces) => photo_msg.set(format!(
                    "a photo must show exactly one face; found {}",
                    faces.len()
                )),
                Err(e) => photo_msg.set(e),
            }
        });
    };

    view! {
        <section id="enroll">
            {move || match step.get() {
                EnrollStep::Consent => view! {
                    <div class="consent">
                        <h2>"Consent"</h2>
                        <p>"Policy version " <code id="policy-version">{api::POLICY_VERSION}</code></p>
                        <blockquote id="policy-text">{api::POLICY_TEXT}</blockquote>
                        <p>"Purpose: " <span id="purpose">{api::PURPOSE}</span></p>
                        <label>"Name " <input type="text" id="enroll-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/></label>
                        <label class="check"><input type="checkbox" id="consent-check" prop:checked=move || agreed.get() on:change=move |ev| agreed.set(event_target_checked(&ev))/>
                            "I have read the policy and agree that an embedding of my face is stored for this purpose."</label>
                        <button id="consent-continue" disabled=move || !can_continue() on:click=begin>"Continue to capture"</button>
                    </div>
                }.into_any(),
                EnrollStep::Capture => view! {
                    <div class="capture">
                        <h2>{move || format!("Capture: {}", name.get())}</h2>
                        <CameraMessage/>
                        <p id="advice">{move || ui.advice.get()}</p>
                        <progress id="enroll-progress" max=ENROLL_FRAMES.to_string() value=move || ui.progress.get().to_string()></progress>
                        <span>{move || format!(" {}/{ENROLL_FRAMES} good frames", ui.progress.get())}</span>
                        <div class="photo">
                            <label>"Or add photos (processed here, never uploaded): "
                                <input type="file" accept="image/*" id="enroll-photo" node_ref=photo_ref on:change=on_photo/></label>
                            <span>{move || photo_msg.get()}</span>
                            <canvas class="photo-view" node_ref=photo_canvas width="0" height="0"></canvas>
                        </div>
                        <button on:click=move |_| step.set(EnrollStep::Consent)>"Cancel"</button>
                    </div>
                }.into_any(),
                EnrollStep::Sending => view! { <p id="enroll-status">"sending embeddings…"</p> }.into_any(),
                EnrollStep::Done(done) => view! {
                    <div id="enrolled"><p id="enroll-status" class="ok">{done.message.clone()}</p>
                    <WithdrawalCode person_id=done.person_id.clone() token=done.token.clone()/>
                    <button id="enroll-again" on:click=move |_| { name.set(String::new()); agreed.set(false); step.set(EnrollStep::Consent) }>"Enroll someone else"</button></div>
                }.into_any(),
                EnrollStep::Failed(msg) => view! {
                    <div><p id="enroll-status" class="error">{format!("Enrollment failed: {msg}")}</p>
                    <button on:click=move |_| step.set(EnrollStep::Consent)>"Start again"</button></div>
                }.into_any(),
            }}
            {move || show_withdraw.get().then(|| view! { <WithdrawForm/> })}
        </section>
    }
}

/// The Enrolled screen's withdrawal code, shown this once with what it is for.
#[component]
fn WithdrawalCode(person_id: String, token: Option<WithdrawalToken>) -> impl IntoView {
    let copied = RwSignal::new(String::new());
    let copy = move |what: &'static str, text: String| {
        spawn_local(async move {
            copied.set(if copy_text(&text).await {
                format!("{what} copied")
            } else {
                format!("could not copy: select the {what} and copy it")
            });
        })
    };
    let id = person_id.clone();
    let Some(token) = token else {
        return view! {
            <div class="withdrawal" id="withdrawal">
                <p class="warning">"The service issued no withdrawal code: to withdraw consent, ask an operator to erase the record "
                    <code id="enrolled-id">{person_id}</code>"."</p>
            </div>
        }
        .into_any();
    };
    let code = token.expose().to_string();
    let shown = code.clone();
    view! {
        <div class="withdrawal" id="withdrawal">
            <h3>"Your withdrawal code"</h3>
            <p>"Keep this code: with it you can withdraw your consent and erase your data at any time, without an operator \
                (the \"Withdraw consent\" form below, with your person id). It is shown only this once and is not kept in this browser."</p>
            <p>"Person id " <code id="enrolled-id" class="copyable">{person_id}</code>" "
                <button type="button" id="copy-id" on:click=move |_| copy("person id", id.clone())>"Copy"</button></p>
            <p>"Withdrawal code " <code id="withdrawal-token" class="copyable">{shown}</code>" "
                <button type="button" id="copy-token" on:click=move |_| copy("withdrawal code", code.clone())>"Copy"</button></p>
            <p class="note" id="copy-status">{move || copied.get()}</p>
        </div>
    }
    .into_any()
}

/// The data subject withdraws their consent with their person id and withdrawal code, without
/// any API key; the service erases them.
#[component]
fn WithdrawForm() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let id = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let result = RwSignal::new(None::<(String, &'static str)>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let pid = id.get_untracked().trim().to_string();
        let code = WithdrawalToken::new(token.get_untracked());
        if !looks_like_id(&pid) {
            return result.set(Some((
                "The person id has the form 8-4-4-4-12 hex digits, as shown when you were enrolled.".into(),
                "error",
            )));
        }
        if code.expose().is_empty() {
            return result.set(Some(("Enter your withdrawal code.".into(), "error")));
        }
        busy.set(true);
        result.set(None);
        spawn_local(async move {
            let r = api::withdraw(&ui.settings.get_untracked(), &pid, &code).await;
            busy.set(false);
            result.set(Some(match r {
                Ok(e) => {
                    engine::clear_votes();
                    id.set(String::new());
                    token.set(String::new());
                    (
                        format!(
                            "Consent withdrawn: the record, {} and {} are erased.",
                            count(e.faces_deleted, "face embedding", "face embeddings"),
                            count(e.consents_deleted, "consent record", "consent records")
                        ),
                        "ok",
                    )
                }
                Err(e) if e.is_unauthorized() => (
                    "The person id or the withdrawal code is wrong: nothing was erased.".into(),
                    "error",
                ),
                Err(e) if e.status == 404 => (
                    "There is no such person: the record may already be erased.".into(),
                    "warning",
                ),
                Err(e) => (format!("Withdrawal failed: {e}"), "error"),
            }));
        });
    };
    view! {
        <form class="withdraw" id="withdraw" on:submit=submit>
            <h3>"Withdraw consent"</h3>
            <p class="note">"With the person id and withdrawal code shown at enrollment, anyone enrolled can withdraw their consent here: \
                their record and every face embedding are erased at once. No API key is used."</p>
            <label>"Person id "
                <input type="text" id="withdraw-id" autocomplete="off" spellcheck="false" placeholder="8-4-4-4-12 hex digits"
                    prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/></label>
            <label>"Withdrawal code "
                <input type="text" id="withdraw-token" autocomplete="off" spellcheck="false" autocapitalize="off" placeholder="vwt_…"
                    prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev))/></label>
            <button type="submit" id="withdraw-submit" disabled=move || busy.get()>"Withdraw consent and erase my data"</button>
            {move || result.get().map(|(text, class)| view! { <p id="withdraw-status" class=class>{text}</p> })}
        </form>
    }
}

fn download_json(filename: &str, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    let parts = js_sys::Array::of1(&text.into());
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/json");
    let blob =
        web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts).map_err(|_| "blob")?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|_| "url")?;
    let doc = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = doc.create_element("a").map_err(|_| "a")?.unchecked_into();
    a.set_href(&url);
    a.set_download(filename);
    a.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}

#[component]
fn People() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let query = RwSignal::new(String::new());
    let people = RwSignal::new(Vec::<PersonSummary>::new());
    // Where the next page starts (the service's `next_cursor`); None on the last page.
    let next = RwSignal::new(None::<String>);
    // What was just done ("erased ...", "export downloaded"), shown before the count.
    let note = RwSignal::new(None::<String>);
    // Why the list cannot be shown (no admin key, refused key, ...), instead of the count.
    let problem = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);
    let confirming = RwSignal::new(None::<String>);
    // Bumped by every new search, so a late page of an older one is dropped.
    let generation = StoredValue::new(0u64);
    let status = move || {
        if let Some(p) = problem.get() {
            return p;
        }
        let n = people.with(Vec::len) as u64;
        let shown = if next.with(Option::is_some) {
            format!("{} shown, more to load", count(n, "person", "people"))
        } else {
            count(n, "person", "people")
        };
        match note.get() {
            Some(note) => format!("{note} · {shown}"),
            None => shown,
        }
    };
    // The first page (`more` false: a new search) or the next one.
    let load = move |more: bool| {
        let cursor = if more {
            match next.get_untracked() {
                Some(c) => Some(c),
                None => return,
            }
        } else {
            generation.update_value(|g| *g += 1);
            None
        };
        let g = generation.get_value();
        loading.set(true);
        spawn_local(async move {
            let settings = ui.settings.get_untracked();
            let r = api::list_people(&settings, &query.get_untracked(), cursor.as_deref()).await;
            if generation.get_value() != g {
                return;
            }
            loading.set(false);
            match r {
                Ok(page) => {
                    problem.set(None);
                    if more {
                        people.update(|p| p.extend(page.items));
                    } else {
                        people.set(page.items);
                    }
                    next.set(page.next_cursor);
                }
                Err(e) => {
                    if !more {
                        people.set(Vec::new());
                        next.set(None);
                    }
                    problem.set(Some(people_error("could not list people", &e)));
                }
            }
        });
    };
    load(false);
    let erase = move |id: String| {
        spawn_local(async move {
            match api::erase(&ui.settings.get_untracked(), &id).await {
                Ok(e) => {
                    confirming.set(None);
                    engine::clear_votes();
                    people.update(|p| p.retain(|p| p.id != id));
                    note.set(Some(format!(
                        "erased: {} and {} deleted",
                        count(e.faces_deleted, "face embedding", "face embeddings"),
                        count(e.consents_deleted, "consent record", "consent records")
                    )));
                }
                Err(e) => problem.set(Some(people_error("erase failed", &e))),
            }
        });
    };
    let export = move |id: String| {
        spawn_local(async move {
            match api::export(&ui.settings.get_untracked(), &id).await {
                Ok(v) => {
                    if let Err(e) = download_json(&format!("visage-export-{id}.json"), &v) {
                        note.set(Some(format!("export failed: {e}")));
                    } else {
                        note.set(Some("export downloaded".into()));
                    }
                }
                Err(e) => problem.set(Some(people_error("export failed", &e))),
            }
        });
    };
    view! {
        <section id="people">
            <form on:submit=move |ev| { ev.prevent_default(); note.set(None); load(false); }>
                <input type="search" id="people-search" placeholder="search by name" prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev))/>
                <button type="submit">"Search"</button>
            </form>
            <p id="people-status" class:warning=move || problem.with(Option::is_some)>{status}</p>
            <table id="people-list">
                <thead><tr><th>"Name"</th><th>"Faces"</th><th>"Consent"</th><th>"Enrolled"</th><th></th></tr></thead>
                <tbody>
                {move || people.get().into_iter().map(|p| {
                    let (id1, id2, id3) = (p.id.clone(), p.id.clone(), p.id.clone());
                    let pid = p.id.clone();
                    let name = p.name.clone();
                    view! {
                        <tr data-person=p.id.clone()>
                            <td class="name">{p.name.clone()}</td>
                            <td>{p.face_count}</td>
                            <td>{if p.consent_active { "active" } else { "inactive" }}</td>
                            <td>{p.created_at.chars().take(10).collect::<String>()}</td>
                            <td>
                                <button class="export" on:click=move |_| export(id1.clone())>"Export"</button>
                                {move || if confirming.get().as_deref() == Some(pid.as_str()) {
                                    let (a, name) = (id2.clone(), name.clone());
                                    view! {
                                        <span class="confirm">{format!("Erase {name} and all their data? ")}
                                            <button class="erase-confirm" on:click=move |_| erase(a.clone())>"Yes, erase"</button>
                                            <button on:click=move |_| confirming.set(None)>"Cancel"</button>
                                        </span>
                                    }.into_any()
                                } else {
                                    let a = id3.clone();
                                    view! { <button class="erase" on:click=move |_| confirming.set(Some(a.clone()))>"Erase…"</button> }.into_any()
                                }}
                            </td>
                        </tr>
                    }
                }).collect_view()}
                </tbody>
            </table>
            {move || next.with(Option::is_some).then(|| view! {
                <button id="people-more" disabled=move || loading.get() on:click=move |_| load(true)>"Load more"</button>
            })}
        </section>
    }
}

#[component]
fn SettingsPage(video_ref: NodeRef<leptos::html::Video>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let draft = RwSignal::new(ui.settings.get_untracked());
    let cameras = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(String::new());
    let show_key = RwSignal::new(false);
    let key_ref = NodeRef::<leptos::html::Input>::new();
    // Attributes the view macro does not know: Safari's autocorrect, and 1Password's opt-out.
    Effect::new(move |_| {
        if let Some(input) = key_ref.get() {
            let _ = input.set_attribute("autocorrect", "off");
            let _ = input.set_attribute("data-1p-ignore", "true");
        }
    });
    spawn_local(async move { cameras.set(engine::list_cameras().await) });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = draft.get_untracked();
        if !(s.threshold.is_finite() && (-1.0..=1.0).contains(&s.threshold)) {
            return saved.set("the threshold must be between -1 and 1".into());
        }
        let camera_changed = s.camera_id != ui.settings.get_untracked().camera_id;
        match s.save() {
            Ok(()) => {
                ui.settings.set(s);
                engine::clear_votes();
                // An error of the old settings ("no API key", a refused key) is stale now.
                ui.error.set(None);
                ui.server_threshold.set(None);
                saved.set("saved".into());
                if camera_changed && let Some(v) = video_ref.get_untracked() {
                    spawn_local(engine::start_camera(ui, v));
                }
            }
            Err(e) => saved.set(e),
        }
    };
    view! {
        <section id="settings">
            <form on:submit=save>
                <label>"Match threshold (cosine similarity) "
                    <input type="number" id="threshold" step="0.01" min="-1" max="1"
                        prop:value=move || draft.get().threshold.to_string()
                        on:input=move |ev| { if let Ok(t) = event_target_value(&ev).parse() { draft.update(|d| d.threshold = t) } }/>
                </label>
                <label>"Camera "
                    <select id="camera" on:change=move |ev| draft.update(|d| d.camera_id = event_target_value(&ev))>
                        <option value="" selected=move || draft.get().camera_id.is_empty()>"default"</option>
                        {move || cameras.get().into_iter().map(|(id, label)| {
                            let sel = id.clone();
                            view! { <option value=id selected=move || draft.get().camera_id == sel>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label>"Service address (empty: this site) "
                    <input type="url" id="backend" placeholder="https://visage.example" prop:value=move || draft.get().backend
                        on:input=move |ev| draft.update(|d| d.backend = event_target_value(&ev))/>
                </label>
                // A text field masked by CSS, not a password field: a browser's password manager
                // would take the key for a password (offer to save it, send it to its leak check).
                <label>"API key "
                    <input type="text" id="api-key" name="visage-service-key" node_ref=key_ref
                        class="secret" class:revealed=move || show_key.get()
                        autocomplete="off" spellcheck="false" autocapitalize="off"
                        data-lpignore="true" data-bwignore="true" data-form-type="other"
                        prop:value=move || draft.get().api_key
                        on:input=move |ev| draft.update(|d| d.api_key = event_target_value(&ev))/>
                </label>
                <label class="check"><input type="checkbox" id="api-key-show" prop:checked=move || show_key.get()
                    on:change=move |ev| show_key.set(event_target_checked(&ev))/>" show the key"</label>
                <p class="note">"This browser needs only a key with the enroll and recognize scopes \
                    (visage create-key --name browser --scope enroll,recognize). The People screen needs an admin key."</p>
                <button type="submit" id="settings-save">"Save"</button>
                <span id="settings-status">{move || saved.get()}</span>
            </form>
            <p class="note">"Settings are kept in this browser's localStorage."</p>
        </section>
    }
}
