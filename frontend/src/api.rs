//! The visage service's JSON API, called with embeddings only: no image ever leaves the page.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use visage_shared::api::{
    AddFacesRequest, ConsentRequest, CreatePersonRequest, CreatedPerson, EmbeddingInput,
    EvidenceRequest, FaceSource, Problem, RecognizeRequest,
};
pub use visage_shared::api::{Erasure, PeoplePage, PersonSummary, ProbeResult, RecognizeResponse};
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

/// The message when no key is set (no request is sent then).
pub const NO_KEY: &str = "no API key: set one in Settings";

/// A failed call, in words for the person at the screen (never with the key or a token).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status; 0 when no answer came (no key, bad address, network).
    pub status: u16,
    /// The problem's stable `code`, when the service gave one.
    pub code: Option<String>,
    pub detail: String,
}

impl ApiError {
    fn local(detail: impl Into<String>) -> Self {
        Self {
            status: 0,
            code: None,
            detail: detail.into(),
        }
    }

    /// Reads a failed answer: an `application/problem+json` body ([`Problem`]), or anything
    /// else (a proxy's page, nothing).
    pub fn from_answer(status: u16, body: &Value) -> Self {
        match Problem::deserialize(body) {
            Ok(p) => Self {
                status,
                code: Some(p.code),
                detail: p.detail,
            },
            Err(_) => {
                let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
                Self {
                    status,
                    code: text("code"),
                    detail: text("detail")
                        .or_else(|| text("title"))
                        .unwrap_or_else(|| format!("HTTP {status}")),
                }
            }
        }
    }

    /// The key is valid but lacks the scope (the browser's `enroll,recognize` key on an
    /// admin route).
    pub fn is_forbidden(&self) -> bool {
        self.status == 403 || self.code.as_deref() == Some("forbidden")
    }

    /// The key (or token) was refused as a credential.
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401 || self.code.as_deref() == Some("unauthorized")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A data subject's withdrawal token: returned once when they are enrolled, shown to them on
/// the Enrolled screen, never stored (not in localStorage) and never logged: `Debug` hides it.
#[derive(Clone, PartialEq)]
pub struct WithdrawalToken(String);

impl WithdrawalToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into().trim().to_string())
    }

    /// The token itself, for the screen and the one request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WithdrawalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithdrawalToken(hidden)")
    }
}

/// People per page of the People screen (the service allows 1..200).
pub const PAGE_SIZE: u32 = 100;

/// A new person.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrolled {
    pub id: String,
    /// Their withdrawal token, shown to them once.
    pub withdrawal_token: Option<WithdrawalToken>,
}

fn embeddings_out(embs: &[&Embedding]) -> Vec<EmbeddingInput> {
    embs.iter().map(|e| EmbeddingInput::from(*e)).collect()
}

/// A request body as JSON.
fn body(b: &impl Serialize) -> Option<Value> {
    serde_json::to_value(b).ok()
}

/// The credential a request carries.
enum Auth<'a> {
    /// The API key of the settings (`Authorization: Bearer`).
    Key,
    /// A data subject's withdrawal token, and no API key.
    Withdrawal(&'a WithdrawalToken),
}

/// Sends one JSON request. Errors are the service's problem `detail` (never the key).
async fn call(
    settings: &Settings,
    auth: Auth<'_>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ApiError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|_| ApiError::local("headers"))?;
    match auth {
        Auth::Key => {
            if settings.api_key.trim().is_empty() {
                return Err(ApiError::local(NO_KEY));
            }
            headers
                .set(
                    "Authorization",
                    &format!("Bearer {}", settings.api_key.trim()),
                )
                .map_err(|_| ApiError::local("bad API key characters"))?;
        }
        Auth::Withdrawal(token) => {
            headers
                .set("X-Withdrawal-Token", token.expose())
                .map_err(|_| ApiError::local("bad characters in the withdrawal code"))?;
        }
    }
    headers.set("Accept", "application/json").ok();
    if let Some(b) = &body {
        headers.set("Content-Type", "application/json").ok();
        init.set_body(&wasm_bindgen::JsValue::from_str(&b.to_string()));
    }
    init.set_headers(&headers);
    let url = format!("{}{}", settings.backend.trim_end_matches('/'), path);
    let req = web_sys::Request::new_with_str_and_init(&url, &init)
        .map_err(|_| ApiError::local(format!("bad backend address {url:?}")))?;
    let window = web_sys::window().ok_or(ApiError::local("no window"))?;
    let resp = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|_| ApiError::local(format!("the service at {url:?} cannot be reached")))?;
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| ApiError::local("not a response"))?;
    let text = JsFuture::from(resp.text().map_err(|_| ApiError::local("no body"))?)
        .await
        .map_err(|_| ApiError::local("reading the response failed"))?;
    let text = text.as_string().unwrap_or_default();
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !resp.ok() {
        return Err(ApiError::from_answer(resp.status(), &value));
    }
    Ok(value)
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::local(format!("unexpected answer from the service: {e}")))
}

/// 1:N recognition of probe embeddings: the best candidate of each.
pub async fn recognize(
    settings: &Settings,
    probes: &[&Embedding],
) -> Result<RecognizeResponse, ApiError> {
    let (threshold, max_false_match_rate) = settings.operating_point();
    let req = RecognizeRequest {
        embeddings: embeddings_out(probes),
        top_k: Some(1),
        threshold,
        max_false_match_rate,
    };
    parse(call(settings, Auth::Key, "POST", "/v1/recognize", body(&req)).await?)
}

/// Creates the person with their consent record, then stores the embeddings. If storing the
/// embeddings fails, the new record is withdrawn again (with its token), so no half-enrolled
/// person stays behind.
pub async fn enroll(
    settings: &Settings,
    name: &str,
    faces: &[(Embedding, Quality)],
) -> Result<Enrolled, ApiError> {
    let req = CreatePersonRequest {
        name: name.to_string(),
        external_ref: None,
        consent: Some(ConsentRequest {
            policy_version: POLICY_VERSION.to_string(),
            policy_text: Some(POLICY_TEXT.to_string()),
            policy_sha256: None,
            purpose: PURPOSE.to_string(),
            granted_at: None,
            expires_at: None,
            evidence: EvidenceRequest {
                method: "checkbox".to_string(),
                collected_by: "visage-web".to_string(),
                client_address: None,
                user_agent: None,
            },
        }),
    };
    let created: CreatedPerson =
        parse(call(settings, Auth::Key, "POST", "/v1/people", body(&req)).await?)?;
    let id = created.person.id.to_string();
    let token = WithdrawalToken::new(created.withdrawal_token);
    let embs: Vec<&Embedding> = faces.iter().map(|(e, _)| e).collect();
    let q = &faces.iter().map(|(_, q)| *q).collect::<Vec<_>>();
    // The median face size and sharpness summarise the capture.
    let quality = q.get(q.len() / 2).map(|q| json!({ "score": q.score, "face_px": q.face_px, "sharpness": q.sharpness, "brightness": q.brightness }));
    let req = AddFacesRequest {
        embeddings: embeddings_out(&embs),
        source: FaceSource::Browser,
        quality,
    };
    let added = call(
        settings,
        Auth::Key,
        "POST",
        &format!("/v1/people/{}/faces", path_segment(&id)),
        body(&req),
    )
    .await;
    if let Err(e) = added {
        let _ = withdraw(settings, &id, &token).await;
        return Err(e);
    }
    Ok(Enrolled {
        id,
        withdrawal_token: Some(token),
    })
}

/// One page of people (admin keys only), from `cursor` (the last page's `next_cursor`).
pub async fn list_people(
    settings: &Settings,
    query: &str,
    cursor: Option<&str>,
) -> Result<PeoplePage, ApiError> {
    parse(
        call(
            settings,
            Auth::Key,
            "GET",
            &people_path(query, cursor),
            None,
        )
        .await?,
    )
}

/// The address of a page of the people list.
fn people_path(query: &str, cursor: Option<&str>) -> String {
    let mut path = format!("/v1/people?limit={PAGE_SIZE}");
    let q = query.trim();
    if !q.is_empty() {
        path.push_str(&format!("&q={}", encode(q)));
    }
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={}", encode(c)));
    }
    path
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A person id as one path segment (an id typed by hand cannot reach another route).
fn path_segment(id: &str) -> String {
    encode(id.trim())
}

pub async fn erase(settings: &Settings, id: &str) -> Result<Erasure, ApiError> {
    let path = format!("/v1/people/{}", path_segment(id));
    parse(call(settings, Auth::Key, "DELETE", &path, None).await?)
}

pub async fn export(settings: &Settings, id: &str) -> Result<Value, ApiError> {
    let path = format!("/v1/people/{}/export", path_segment(id));
    call(settings, Auth::Key, "GET", &path, None).await
}

/// The data subject withdraws their consent with their token, without any API key: the
/// service erases them.
pub async fn withdraw(
    settings: &Settings,
    id: &str,
    token: &WithdrawalToken,
) -> Result<Erasure, ApiError> {
    let path = format!("/v1/people/{}/consent/withdraw", path_segment(id));
    parse(call(settings, Auth::Withdrawal(token), "POST", &path, None).await?)
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
        let v = serde_json::to_value(embeddings_out(&[&e])).unwrap();
        let item = &v[0];
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "vector"]);
        assert_eq!(item["model"], visage_shared::model::EMBEDDER_ID);
        assert_eq!(
            item["vector"].as_array().unwrap().len(),
            visage_shared::model::EMBEDDING_DIM
        );
    }

    /// A candidate as the service sends it.
    fn candidate(name: &str, similarity: f32, is_match: bool) -> Value {
        json!({ "person_id": "6f1c2a54-8d0e-4c3b-9a7e-2b1f0c9d8e7a", "name": name,
                "face_id": "0b6c7d8e-1f2a-4b3c-8d9e-0f1a2b3c4d5e", "similarity": similarity,
                "match": is_match, "false_match_rate": null })
    }

    #[test]
    fn recognition_answers_parse() {
        let r: RecognizeResponse = parse(json!({
            "model": "m", "threshold": 0.5, "top_k": 1,
            "results": [{ "candidates": [candidate("Ann", 0.8, true)], "threshold": 0.5 }]
        }))
        .unwrap();
        assert_eq!(r.best_match(&r.results[0]).unwrap().name, "Ann");
        assert_eq!(r.threshold, 0.5);
    }

    #[test]
    fn an_empty_candidate_list_is_an_unknown_face() {
        // What a key without the admin scope gets for an unknown face: no candidates at all,
        // and the threshold the service used (raised to its floor).
        let r: RecognizeResponse = parse(json!({
            "model": "m", "threshold": 0.67, "top_k": 1,
            "results": [{ "candidates": [], "threshold": 0.67 },
                        { "candidates": [candidate("Ann", 0.91, true)], "threshold": 0.67 }]
        }))
        .unwrap();
        assert!(r.best_match(&r.results[0]).is_none());
        assert_eq!(r.best_match(&r.results[1]).unwrap().similarity, 0.91);
        assert_eq!(r.threshold, 0.67);
    }

    #[test]
    fn a_candidate_below_the_threshold_is_no_match() {
        // Admin keys still see candidates under the threshold, marked `match: false`.
        let r: RecognizeResponse = parse(json!({
            "model": "m", "threshold": 0.67, "top_k": 1,
            "results": [{ "candidates": [candidate("Ann", 0.4, false)], "threshold": 0.67 }]
        }))
        .unwrap();
        assert!(r.best_match(&r.results[0]).is_none());
    }

    #[test]
    fn problems_keep_status_code_and_detail() {
        let e = ApiError::from_answer(
            403,
            &json!({ "type": "urn:visage:problem:forbidden", "title": "Forbidden", "status": 403, "code": "forbidden", "detail": "this key lacks the admin scope" }),
        );
        assert!(e.is_forbidden() && !e.is_unauthorized());
        assert_eq!(e.to_string(), "this key lacks the admin scope");
        let e = ApiError::from_answer(502, &Value::String("Bad Gateway".into()));
        assert_eq!((e.status, e.code.as_deref()), (502, None));
        assert_eq!(e.to_string(), "HTTP 502");
        assert!(ApiError::from_answer(401, &Value::Null).is_unauthorized());
    }

    #[test]
    fn a_new_person_carries_the_withdrawal_token() {
        let c: CreatedPerson = parse(json!({
            "id": "6f1c2a54-8d0e-4c3b-9a7e-2b1f0c9d8e7a", "name": "Ann", "external_ref": null,
            "created_at": "2026-11-30T12:00:00Z", "consent_status": "active", "face_count": 0,
            "consents": [], "withdrawal_token": "vwt_abc"
        }))
        .unwrap();
        assert_eq!(WithdrawalToken::new(c.withdrawal_token).expose(), "vwt_abc");
        assert_eq!(
            c.person.id.to_string(),
            "6f1c2a54-8d0e-4c3b-9a7e-2b1f0c9d8e7a"
        );
    }

    #[test]
    fn the_withdrawal_token_is_never_in_debug_output() {
        let e = Enrolled {
            id: "p".into(),
            withdrawal_token: Some(WithdrawalToken::new(" vwt_secret ")),
        };
        assert!(!format!("{e:?}").contains("vwt_secret"));
        assert_eq!(e.withdrawal_token.unwrap().expose(), "vwt_secret");
    }

    #[test]
    fn people_pages_follow_the_cursor() {
        assert_eq!(
            people_path("", None),
            format!("/v1/people?limit={PAGE_SIZE}")
        );
        assert_eq!(
            people_path(" Ann Lee ", Some("MTc2|a+b/c=")),
            format!("/v1/people?limit={PAGE_SIZE}&q=Ann%20Lee&cursor=MTc2%7Ca%2Bb%2Fc%3D")
        );
        let p: PeoplePage = parse(json!({ "items": [], "next_cursor": "abc" })).unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("abc"));
        let p: PeoplePage = parse(json!({ "items": [] })).unwrap();
        assert!(p.next_cursor.is_none());
    }

    #[test]
    fn a_typed_person_id_stays_one_path_segment() {
        assert_eq!(path_segment(" 3f2a-9 "), "3f2a-9");
        assert_eq!(path_segment("../keys?x=1"), "..%2Fkeys%3Fx%3D1");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
