//! The Enroll screen: consent, then capture from the camera (or photos), then the result with
//! the withdrawal code; the withdrawal form beside the consent and result steps.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::withdraw::{WithdrawForm, WithdrawalCode};
use super::{CameraMessage, read_file};
use crate::api::{self, WithdrawalToken};
use crate::engine::{self, ENROLL_FRAMES, Ui};
use crate::words::count;

/// Where an enrollment is; the shell reads it too (the camera runs during `Capture`).
#[derive(Debug, Clone, PartialEq)]
pub enum EnrollStep {
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
pub struct Done {
    message: String,
    person_id: String,
    token: Option<WithdrawalToken>,
}

/// The Enroll screen; its step is in the context (see [`EnrollStep`]).
#[component]
pub fn Enroll() -> impl IntoView {
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
