//! The screens: Live, Enroll, People, Settings. State lives in signals; the frame loop in
//! `engine` writes the ones it owns (`Ui`).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api::{self, PersonSummary};
use crate::engine::{self, Camera, ENROLL_FRAMES, Mode, Ui};
use crate::settings::Settings;
use crate::track::Label;

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
    Done(String),
    Failed(String),
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
            <ul id="live-faces">
                {move || ui.faces.get().into_iter().map(|f| {
                    let state = match f.known { Some(true) => "known", Some(false) => "unknown", None => "pending" };
                    view! { <li class=state data-track=f.track.to_string()>{f.label}</li> }
                }).collect_view()}
            </ul>
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
    let results = RwSignal::new(Vec::<String>::new());
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
                    let labels: Vec<Label> = r
                        .results
                        .iter()
                        .map(|p| match p.candidates.first() {
                            Some(c) if c.is_match => Label::Person {
                                id: c.person_id.clone(),
                                name: c.name.clone(),
                                similarity: c.similarity,
                            },
                            _ => Label::Unknown,
                        })
                        .collect();
                    engine::label_photo(&canvas, &faces, &labels);
                    results.set(labels.iter().map(Label::text).collect());
                    status.set(format!("{} face(s)", faces.len()));
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
            <ul id="photo-faces">{move || results.get().into_iter().map(|t| view! { <li>{t}</li> }).collect_view()}</ul>
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
                    Ok(_) => {
                        engine::clear_votes();
                        step.set(EnrollStep::Done(format!(
                            "Enrolled {who} with {} face embeddings.",
                            faces.len()
                        )));
                    }
                    Err(e) => step.set(EnrollStep::Failed(e)),
                }
            });
        }
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
                EnrollStep::Done(msg) => view! {
                    <div><p id="enroll-status" class="ok">{msg}</p>
                    <button on:click=move |_| { name.set(String::new()); agreed.set(false); step.set(EnrollStep::Consent) }>"Enroll someone else"</button></div>
                }.into_any(),
                EnrollStep::Failed(msg) => view! {
                    <div><p id="enroll-status" class="error">{format!("Enrollment failed: {msg}")}</p>
                    <button on:click=move |_| step.set(EnrollStep::Consent)>"Start again"</button></div>
                }.into_any(),
            }}
        </section>
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
    let status = RwSignal::new(String::new());
    let confirming = RwSignal::new(None::<String>);
    // `note` (what was just done) is shown before the count.
    let refresh = move |note: Option<String>| {
        spawn_local(async move {
            match api::list_people(&ui.settings.get_untracked(), &query.get_untracked()).await {
                Ok(page) => {
                    let count = format!("{} people", page.items.len());
                    status.set(note.map(|n| format!("{n} · {count}")).unwrap_or(count));
                    people.set(page.items);
                }
                Err(e) => status.set(format!("could not list people: {e}")),
            }
        });
    };
    refresh(None);
    let erase = move |id: String| {
        spawn_local(async move {
            match api::erase(&ui.settings.get_untracked(), &id).await {
                Ok(v) => {
                    confirming.set(None);
                    engine::clear_votes();
                    let faces = v.get("faces_deleted").and_then(|f| f.as_u64()).unwrap_or(0);
                    refresh(Some(format!(
                        "erased: {faces} face(s) and the consent records deleted"
                    )));
                }
                Err(e) => status.set(format!("erase failed: {e}")),
            }
        });
    };
    let export = move |id: String| {
        spawn_local(async move {
            match api::export(&ui.settings.get_untracked(), &id).await {
                Ok(v) => {
                    if let Err(e) = download_json(&format!("visage-export-{id}.json"), &v) {
                        status.set(format!("export failed: {e}"));
                    } else {
                        status.set("export downloaded".into());
                    }
                }
                Err(e) => status.set(format!("export failed: {e}")),
            }
        });
    };
    view! {
        <section id="people">
            <form on:submit=move |ev| { ev.prevent_default(); refresh(None); }>
                <input type="search" id="people-search" placeholder="search by name" prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev))/>
                <button type="submit">"Search"</button>
            </form>
            <p id="people-status">{move || status.get()}</p>
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
        </section>
    }
}

#[component]
fn SettingsPage(video_ref: NodeRef<leptos::html::Video>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let draft = RwSignal::new(ui.settings.get_untracked());
    let cameras = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(String::new());
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
                <label>"API key "
                    <input type="password" id="api-key" autocomplete="off" prop:value=move || draft.get().api_key
                        on:input=move |ev| draft.update(|d| d.api_key = event_target_value(&ev))/>
                </label>
                <button type="submit" id="settings-save">"Save"</button>
                <span id="settings-status">{move || saved.get()}</span>
            </form>
            <p class="note">"Settings are kept in this browser's localStorage."</p>
        </section>
    }
}
