//! The OpenAPI document, generated from the handlers, with the error contract every operation
//! shares added in one place.

use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::routes::{collections, common, detect, faces, health, keys, people, recognize};

/// The problem responses that any operation may give, with when.
const COMMON_PROBLEMS: [(&str, &str); 4] = [
    ("400", "Malformed request (a `code` names what is wrong)"),
    (
        "429",
        "Rate limit, query budget or failed-authentication throttle (see `Retry-After`)",
    ),
    ("500", "Internal error (logged; never expected)"),
    ("503", "The database is not reachable"),
];
const AUTH_PROBLEMS: [(&str, &str); 2] = [
    ("401", "No, unknown, revoked or expired API key"),
    (
        "403",
        "The key lacks the scope, or the right to this record",
    ),
];
const BODY_PROBLEMS: [(&str, &str); 3] = [
    ("413", "The body is over the limit"),
    ("415", "Wrong content type"),
    (
        "422",
        "Well-formed but unusable (no face, damaged image, ...)",
    ),
];

fn problem(description: &str) -> Response {
    let mut r = Response::new(description);
    r.content.insert(
        "application/problem+json".into(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    r
}

/// Every error response is `application/problem+json` and every operation lists the errors
/// it can give: the common ones, authentication's where a key is needed, the body's where
/// there is one, 404 where the path names a record.
struct ProblemResponses;

impl ProblemResponses {
    fn fix(path: &str, op: &mut Operation) {
        for (status, resp) in op.responses.responses.iter_mut() {
            let RefOr::T(r) = resp else { continue };
            // An error declared with the Problem schema (or no body) is a problem+json body;
            // others keep theirs (/readyz's 503 is its readiness report).
            let is_problem = r.content.is_empty()
                || r.content.values().any(|c| {
                    matches!(&c.schema, Some(RefOr::Ref(x)) if x.ref_location.ends_with("/Problem"))
                });
            if (status.starts_with('4') || status.starts_with('5')) && is_problem {
                let description = if r.description.is_empty() {
                    "Problem".to_string()
                } else {
                    r.description.clone()
                };
                *r = problem(&description);
            }
        }
        let mut add = |status: &str, description: &str| {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::T(problem(description)));
        };
        for (s, d) in COMMON_PROBLEMS {
            add(s, d);
        }
        let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
        if authenticated {
            for (s, d) in AUTH_PROBLEMS {
                add(s, d);
            }
            add("404", "No such record, or no such collection for this key");
        }
        if op.request_body.is_some() {
            for (s, d) in BODY_PROBLEMS {
                add(s, d);
            }
        }
        if path.contains('{') {
            add("404", "No such record");
        }
        if authenticated {
            op.parameters
                .get_or_insert_with(Vec::new)
                .push(collection_parameter());
        }
    }
}

/// The `collection` query parameter every authenticated route takes (`auth::Caller`).
fn collection_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("collection")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "The collection to work in, by name (default: the key's only collection, or \
             `default` for a key of every collection). Unknown and foreign collections are 404.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9][a-z0-9_-]{0,62}$")),
        ))
        .build()
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::fix(path, op);
            }
        }
    }
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vsg_...")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "visage", description = "Privacy-first face recognition: consented enrollment, recognition and erasure. Errors are application/problem+json with a stable `code`. Keys below admin get decisions, not scores (SECURITY.md)."),
    paths(
        health::healthz, health::readyz, health::metrics,
        people::create_person, people::list_people, people::show_person, people::export_person, people::erase, people::withdraw_consent,
        faces::add_faces, faces::add_face_image, faces::delete_face,
        recognize::recognize, recognize::recognize_image, recognize::verify, recognize::verify_image,
        detect::detect,
        keys::list_keys, keys::create_key, keys::revoke_key, keys::rotate_key,
        collections::create_collection, collections::list_collections,
    ),
    components(schemas(crate::error::Problem, common::Candidate, common::Erasure, common::EmbeddingInput)),
    modifiers(&SecurityAddon, &ProblemResponses),
    tags((name = "people", description = "People and consent"), (name = "faces", description = "Enrolled faces"),
         (name = "recognize", description = "Recognition, verification, detection"), (name = "health", description = "Probes and metrics"),
         (name = "keys", description = "API keys (admin)"),
         (name = "collections", description = "Collections: independent galleries"))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_problems_and_queries_are_query_parameters() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("item") {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for (status, r) in responses {
                    // /readyz answers 503 with its readiness report, on purpose.
                    let report = path == "/readyz" && status == "503";
                    if (status.starts_with('4') || status.starts_with('5')) && !report {
                        assert!(
                            r["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status}: {r}"
                        );
                    }
                }
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap_or_default();
                    if ["q", "limit", "cursor", "top_k", "threshold"].contains(&name)
                        || (name == "person_id" && !path.contains("{person_id}"))
                    {
                        assert_eq!(p["in"], "query", "{method} {path} {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_model_pattern_names_the_model_this_server_runs() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let pattern =
            doc["components"]["schemas"]["EmbeddingInput"]["properties"]["model"]["pattern"]
                .as_str()
                .expect("a pattern on EmbeddingInput.model");
        assert_eq!(
            pattern,
            format!(
                "^{}$",
                visage_shared::model::EMBEDDER_ID.replace('.', "\\.")
            )
        );
    }

    #[test]
    fn consent_status_keeps_its_wire_values() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ConsentStatus"]["enum"],
            serde_json::json!(["active", "expired", "withdrawn", "none"]),
            "{}",
            schemas["ConsentStatus"]
        );
        let consent = &schemas["ConsentView"]["properties"];
        assert!(consent["withdrawn_at"].is_object(), "{consent}");
        assert!(consent.get("active").is_none(), "{consent}");
    }
}
