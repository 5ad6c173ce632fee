//! The Settings screen: match threshold, camera, service address and API key, kept in this
//! browser.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, Ui};

/// The Settings screen; `video_ref` is the camera's video element, restarted on a camera
/// change.
#[component]
pub fn SettingsPage(video_ref: NodeRef<leptos::html::Video>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let draft = RwSignal::new(ui.settings.get_untracked());
    // The cameras to choose from, asked of the browser once per visit.
    let cameras = LocalResource::new(engine::list_cameras);
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
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let s = draft.get_untracked();
        if !(s.threshold.is_finite() && (-1.0..=1.0).contains(&s.threshold)) {
            return saved.set("the threshold must be between -1 and 1".into());
        }
        if s.max_false_match_rate
            .is_some_and(|r| !(r > 0.0 && r <= 1.0))
        {
            return saved.set("the false-match rate must be above 0 and at most 1".into());
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
                <label>"or decide by false-match rate, at most (empty: by the threshold; e.g. 0.001) "
                    <input type="number" id="max-false-match-rate" step="any" min="0" max="1"
                        placeholder="0.001"
                        prop:value=move || draft.get().max_false_match_rate.map(|r| r.to_string()).unwrap_or_default()
                        on:input=move |ev| {
                            let text = event_target_value(&ev);
                            draft.update(|d| d.max_false_match_rate = text.trim().parse().ok());
                        }/>
                </label>
                <label>"Camera "
                    <select id="camera" on:change=move |ev| draft.update(|d| d.camera_id = event_target_value(&ev))>
                        <option value="" selected=move || draft.get().camera_id.is_empty()>"default"</option>
                        {move || cameras.get().unwrap_or_default().into_iter().map(|(id, label)| {
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
