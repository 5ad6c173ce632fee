//! The People screen (an admin key's): search, page through, export and erase the people
//! enrolled.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::api::{self, PersonSummary};
use crate::engine::{self, Ui};
use crate::words::{count, people_error};

/// Offers `value` as a JSON file download named `filename`.
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

/// The People screen.
#[component]
pub fn People() -> impl IntoView {
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
                    people.update(|p| p.retain(|p| p.id.to_string() != id));
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
                    let pid = p.id.to_string();
                    let (row, id1, id2, id3) = (pid.clone(), pid.clone(), pid.clone(), pid.clone());
                    let name = p.name.clone();
                    view! {
                        <tr data-person=row>
                            <td class="name">{p.name.clone()}</td>
                            <td>{p.face_count}</td>
                            <td>{if p.consent_active { "active" } else { "inactive" }}</td>
                            <td>{p.created_at.format("%Y-%m-%d").to_string()}</td>
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
