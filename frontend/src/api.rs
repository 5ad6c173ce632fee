//! The visage service's JSON API, called with embeddings only: no image ever leaves the page.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use visage_shared::{Embedding, Quality};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::settings::Settings;

/// The text of the consent policy shown on the Enroll screen; its version goes with it.
pub const POLICY_VERSION: &str = "2026-11-demo-1";
pub const POLICY_TEXT: &str = "visage stores a numeric template (an embedding) computed from your face in this browser, \
never a photo, to recognise you on this site's cameras. It is kept until you withdraw consent or are erased, \
which deletes it at once. You may ask for an export of everything held about you at any time.";
pub const PURPOSE: &str = "recognising enrolled people on the live camera";

#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    pub person_id: String,
    pub name: String,
    pub similarity: f32,
    #[serde(rename = "match")]
    pub is_match: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProbeResult {
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecognizeResponse {
    pub results: Vec<ProbeResult>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PersonSummary {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub consent_active: bool,
    pub face_count: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeoplePage {
    pub items: Vec<PersonSummary>,
    #[allow(dead_code)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub id: String,
}

#[derive(Serialize)]
struct EmbeddingOut<'a> {
    model: &'a str,
    vector: &'a [f32],
}

fn embeddings_json(embs: &[&Embedding]) -> Value {
    json!(
        embs.iter()
            .map(|e| EmbeddingOut {
                model: e.model(),
                vector: e.vector()
            })
            .collect::<Vec<_>>()
    )
}

/// Sends one JSON request. Errors are the service's problem `detail` (never the key).
async fn call(
    settings: &Settings,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    if settings.api_key.trim().is_empty() {
        return Err("no API key: set one in Settings".into());
    }
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|_| "headers")?;
    headers
        .set(
            "Authorization",
            &format!("Bearer {}", settings.api_key.trim()),
        )
        .map_err(|_| "bad API key characters")?;
    headers.set("Accept", "application/json").ok();
    if let Some(b) = &body {
        headers.set("Content-Type", "application/json").ok();
        init.set_body(&wasm_bindgen::JsValue::from_str(&b.to_string()));
    }
    init.set_headers(&headers);
    let url = format!("{}{}", settings.backend.trim_end_matches('/'), path);
    let req = web_sys::Request::new_with_str_and_init(&url, &init)
        .map_err(|_| format!("bad backend address {url:?}"))?;
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|_| format!("the service at {url:?} cannot be reached"))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "not a response")?;
    let text = JsFuture::from(resp.text().map_err(|_| "no body")?)
        .await
        .map_err(|_| "reading the response failed")?;
    let text = text.as_string().unwrap_or_default();
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !resp.ok() {
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", resp.status()));
        return Err(detail);
    }
    Ok(value)
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected answer from the service: {e}"))
}

/// 1:N recognition of probe embeddings: the best candidate of each.
pub async fn recognize(
    settings: &Settings,
    probes: &[&Embedding],
) -> Result<RecognizeResponse, String> {
    let body = json!({ "embeddings": embeddings_json(probes), "top_k": 1, "threshold": settings.threshold });
    parse(call(settings, "POST", "/v1/recognize", Some(body)).await?)
}

/// Creates the person with their consent record, then stores the embeddings.
pub async fn enroll(
    settings: &Settings,
    name: &str,
    faces: &[(Embedding, Quality)],
) -> Result<String, String> {
    let body = json!({
        "name": name,
        "consent": {
            "policy_version": POLICY_VERSION,
            "policy_text": POLICY_TEXT,
            "purpose": PURPOSE,
            "evidence": { "method": "checkbox", "collected_by": "visage-web" },
        },
    });
    let created: Created = parse(call(settings, "POST", "/v1/people", Some(body)).await?)?;
    let embs: Vec<&Embedding> = faces.iter().map(|(e, _)| e).collect();
    let q = &faces.iter().map(|(_, q)| *q).collect::<Vec<_>>();
    // The median face size and sharpness summarise the capture.
    let quality = q.get(q.len() / 2).map(|q| json!({ "score": q.score, "face_px": q.face_px, "sharpness": q.sharpness, "brightness": q.brightness }));
    let body =
        json!({ "embeddings": embeddings_json(&embs), "source": "browser", "quality": quality });
    call(
        settings,
        "POST",
        &format!("/v1/people/{}/faces", created.id),
        Some(body),
    )
    .await?;
    Ok(created.id)
}

pub async fn list_people(settings: &Settings, query: &str) -> Result<PeoplePage, String> {
    let q: String = js_sys::encode_uri_component(query.trim()).into();
    let path = if q.is_empty() {
        "/v1/people?limit=200".to_string()
    } else {
        format!("/v1/people?limit=200&q={q}")
    };
    parse(call(settings, "GET", &path, None).await?)
}

pub async fn erase(settings: &Settings, id: &str) -> Result<Value, String> {
    call(settings, "DELETE", &format!("/v1/people/{id}"), None).await
}

pub async fn export(settings: &Settings, id: &str) -> Result<Value, String> {
    call(settings, "GET", &format!("/v1/people/{id}/export"), None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_go_out_as_model_and_vector_only() {
        let e = Embedding::new(
            visage_shared::model::EMBEDDER_ID,
            vec![0.5; visage_shared::model::EMBEDDING_DIM],
        )
        .unwrap();
        let v = embeddings_json(&[&e]);
        let item = &v[0];
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "vector"]);
        assert_eq!(item["model"], visage_shared::model::EMBEDDER_ID);
        assert_eq!(
            item["vector"].as_array().unwrap().len(),
            visage_shared::model::EMBEDDING_DIM
        );
    }

    #[test]
    fn recognition_answers_parse() {
        let r: RecognizeResponse = parse(json!({
            "model": "m", "threshold": 0.5, "top_k": 1,
            "results": [{ "candidates": [{ "person_id": "p", "name": "Ann", "face_id": "f", "similarity": 0.8, "match": true, "false_match_rate": null }] }]
        }))
        .unwrap();
        assert!(r.results[0].candidates[0].is_match);
    }
}
