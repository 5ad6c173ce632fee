//! The app's shell: the tabs, the live view's video and canvas (shared by the Live and Enroll
//! screens), the models' status and the error line; the screens themselves are in
//! `screens`. State lives in signals, shared through the context: the frame loop in `engine`
//! writes the ones it owns (`Ui`), the Enroll screen's step decides with the tab whether the
//! camera runs.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, Camera, Mode, Ui};
use crate::screens::{Enroll, EnrollStep, Live, People, SettingsPage};
use crate::settings::Settings;

/// The screen shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Live,
    Enroll,
    People,
    Settings,
}

/// The app: its state, the effects that tie the camera and the frame loop to the screen shown,
/// and the screen.
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
