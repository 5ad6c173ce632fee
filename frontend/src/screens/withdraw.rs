//! Withdrawal of consent by the data subject: the code shown once at enrollment, and the
//! form that withdraws with it (no API key needed).

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api::{self, WithdrawalToken};
use crate::engine::{self, Ui};
use crate::words::{count, looks_like_id};

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

/// The Enrolled screen's withdrawal code, shown this once with what it is for.
#[component]
pub(super) fn WithdrawalCode(person_id: String, token: Option<WithdrawalToken>) -> impl IntoView {
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
pub(super) fn WithdrawForm() -> impl IntoView {
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
