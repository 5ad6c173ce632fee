//! The trust boundary (SECURITY.md): each attack of the security probe, run as an attacker
//! would with the weakest key that could try it, must now fail.

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{MODEL, TestApp, assert_problem, consent, direction, spawn_app, vector};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Solves (PᵀP + λI) t = Pᵀs: the least-squares template that explains the observed
/// similarities `s` of probes `P` (ridge keeps it defined with fewer probes than dimensions).
fn least_squares(probes: &[Vec<f32>], sims: &[f32]) -> Vec<f32> {
    let d = 192;
    let mut a = vec![vec![0f64; d + 1]; d];
    for (p, &s) in probes.iter().zip(sims) {
        for i in 0..d {
            for j in 0..d {
                a[i][j] += f64::from(p[i]) * f64::from(p[j]);
            }
            a[i][d] += f64::from(p[i]) * f64::from(s);
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-3;
    }
    // Gauss-Jordan with partial pivoting.
    for c in 0..d {
        let piv = (c..d)
            .max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))
            .unwrap_or(c);
        a.swap(c, piv);
        let p = a[c][c];
        for x in &mut a[c][c..=d] {
            *x /= p;
        }
        for r in 0..d {
            if r != c && a[r][c] != 0.0 {
                let f = a[r][c];
                let pivot_row = a[c].clone();
                for (x, p) in a[r][c..=d].iter_mut().zip(&pivot_row[c..=d]) {
                    *x -= f * p;
                }
            }
        }
    }
    a.iter().map(|row| row[d] as f32).collect()
}

/// What one probe of the attack learned: the similarity, if the answer carried one.
async fn verify_probe(app: &TestApp, key: &str, person: Uuid, v: &[f32]) -> Option<f32> {
    let r = app
        .post_json(
            key,
            "/v1/verify",
            &json!({ "person_id": person, "embedding": { "model": MODEL, "vector": v }, "threshold": -1 }),
        )
        .await;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["similarity"].as_f64().map(|s| s as f32)
}

async fn recognize_probe(app: &TestApp, key: &str, person: Uuid, v: &[f32]) -> Option<f32> {
    let r = app
        .post_json(
            key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": MODEL, "vector": v }], "threshold": -1, "top_k": 50 }),
        )
        .await;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["results"][0]["candidates"]
        .as_array()?
        .iter()
        .find(|c| c["person_id"] == person.to_string())
        .and_then(|c| c["similarity"].as_f64())
        .map(|s| s as f32)
}

/// The reconstruction attack of the probe: one verify per basis vector, then random probes
/// through verify and recognize, and a least-squares fit of whatever similarities came back.
/// Returns the rebuilt template and how many answers carried a similarity.
async fn reconstruct(
    app: &TestApp,
    key: &str,
    person: Uuid,
    random_probes: usize,
) -> (Vec<f32>, usize) {
    let mut probes: Vec<Vec<f32>> = (0..192)
        .map(|i| {
            let mut v = vec![0f32; 192];
            v[i] = 1.0;
            v
        })
        .collect();
    probes.extend((0..random_probes).map(|i| direction(1_000_000 + i as u64)));
    let answers: Vec<(usize, Option<f32>)> = futures::stream::iter(probes.iter().enumerate())
        .map(|(i, p)| async move {
            // Basis vectors and one random probe in two through verify, the rest through
            // recognize (with the lowest threshold and the most candidates one may ask for).
            let s = if i < 192 || i % 2 == 0 {
                verify_probe(app, key, person, p).await
            } else {
                recognize_probe(app, key, person, p).await
            };
            (i, s)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let (mut used, mut sims) = (Vec::new(), Vec::new());
    for (i, s) in answers {
        if let Some(s) = s {
            used.push(probes[i].clone());
            sims.push(s);
        }
    }
    let n = sims.len();
    if n == 0 {
        return (vec![0.0; 192], 0);
    }
    (least_squares(&used, &sims), n)
}

async fn enrolled(app: &TestApp, name: &str, template: &[f32]) -> Uuid {
    let p = app.create_person(name, consent()).await;
    assert_eq!(app.add_faces(p, &[template.to_vec()]).await.status(), 201);
    p
}

#[tokio::test]
async fn template_reconstruction_fails_with_a_recognize_key() {
    let app = spawn_app().await;
    let template = vector(4242, 1, 0.05);
    let person = enrolled(&app, "Target", &template).await;
    for i in 0..5 {
        enrolled(&app, &format!("Other {i}"), &vector(i, 2, 0.05)).await;
    }

    // The control: with raw similarities (an admin key) the attack works, so the test can fail.
    let (rebuilt, n) = reconstruct(&app, &app.admin_key, person, 200).await;
    assert_eq!(n, 392, "every admin probe is answered with a similarity");
    let c = cosine(&rebuilt, &template);
    assert!(
        c > 0.99,
        "with raw scores the attack rebuilds the template: {c}"
    );

    // The attack with the recognize key: 10,000 queries in all.
    let (rebuilt, n) = reconstruct(&app, &app.recognize_key, person, 10_000 - 192).await;
    let c = cosine(&rebuilt, &template);
    assert!(
        c.abs() < 0.5,
        "recognize key: {n} answers with a similarity rebuilt cosine {c}"
    );
    assert_eq!(n, 0, "no probe far from the template learns a similarity");

    // The attacker's basis probes were refused as implausible, not answered "no match".
    let mut basis = vec![0f32; 192];
    basis[7] = 1.0;
    let r = app
        .post_json(
            &app.recognize_key,
            "/v1/verify",
            &json!({ "person_id": person, "embedding": { "model": MODEL, "vector": basis } }),
        )
        .await;
    assert_problem(r, 422, "embedding_implausible").await;

    // The verification budget of this key for this person ran out and was audited.
    let r = app
        .post_json(
            &app.recognize_key,
            "/v1/verify",
            &json!({ "person_id": person, "embedding": { "model": MODEL, "vector": direction(5) } }),
        )
        .await;
    let p = assert_problem(r, 429, "query_budget_exhausted").await;
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| d.contains("too often"))
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'verify' AND outcome = 'budget_exhausted' AND subject = $1",
    )
    .bind(person.to_string())
    .fetch_one(&app.pool)
    .await
    .expect("audit");
    assert!(audited >= 1);
    assert!(
        audited <= 2,
        "one entry a minute per budget, not one per refusal: {audited}"
    );
}

#[tokio::test]
async fn a_recognize_key_sees_decisions_not_the_gallery() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(enrolled(&app, &format!("Member {i}"), &vector(100 + i, 3, 0.05)).await);
    }
    // Enumeration: the lowest threshold and the most candidates, with random probes.
    for seed in 0..20 {
        let r = app
            .post_json(&app.recognize_key, "/v1/recognize", &json!({ "embeddings": [{ "model": MODEL, "vector": direction(777 + seed) }], "threshold": -1, "top_k": 50 }))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        let floor = visage_shared::model::default_threshold();
        assert!(
            (v["threshold"].as_f64().expect("threshold") - f64::from(floor)).abs() < 1e-6,
            "the floor is used and said: {v}"
        );
        assert!(v["top_k"].as_u64() <= Some(5), "{v}");
        assert_eq!(
            v["results"][0]["candidates"].as_array().map(Vec::len),
            Some(0),
            "no one who does not match is listed: {v}"
        );
    }
    // A real match is still found, its similarity coarse.
    let r = app
        .post_json(
            &app.recognize_key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": MODEL, "vector": vector(105, 9, 0.2) }] }),
        )
        .await;
    let v: Value = r.json().await.expect("json");
    let c = &v["results"][0]["candidates"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(c[0]["person_id"], ids[5].to_string());
    let s = c[0]["similarity"].as_f64().expect("similarity");
    assert!(
        ((s * 100.0).round() - s * 100.0).abs() < 1e-4,
        "coarse: {s}"
    );
    // The admin key still sees the full ranking (for calibration and audits).
    let r = app
        .post_json(&app.admin_key, "/v1/recognize", &json!({ "embeddings": [{ "model": MODEL, "vector": direction(777) }], "threshold": -1, "top_k": 50 }))
        .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["results"][0]["candidates"].as_array().map(Vec::len),
        Some(30)
    );
    // A verify without a match carries no similarity for a recognize key.
    let r = app
        .post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": ids[0], "embedding": { "model": MODEL, "vector": direction(31337) } }))
        .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["match"], false);
    assert!(v["similarity"].is_null(), "{v}");
    assert!(v["false_match_rate"].is_null(), "{v}");
}

#[tokio::test]
async fn withdrawal_is_the_data_subjects_act_not_an_enroll_keys() {
    let app = spawn_app().await;
    let v = app
        .create_person_as(&app.enroll_key, "Grace", consent())
        .await;
    let id: Uuid = v["id"].as_str().expect("id").parse().expect("uuid");
    let token = v["withdrawal_token"]
        .as_str()
        .expect("token returned once")
        .to_string();
    assert!(token.starts_with("vwt_") && token.len() > 40);
    let stored: String =
        sqlx::query_scalar("SELECT withdrawal_token_sha256 FROM people WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert!(!stored.contains(&token[4..]), "only the digest is stored");
    let url = app.url(&format!("/v1/people/{id}/consent/withdraw"));
    let before = app.counts().await;

    // An enroll key can neither withdraw, erase, list, show nor export.
    let r = app.call("POST", &url, Some(&app.enroll_key)).await;
    assert_problem(r, 403, "forbidden").await;
    for (method, path) in [
        ("DELETE", format!("/v1/people/{id}")),
        ("GET", "/v1/people".to_string()),
        ("GET", format!("/v1/people/{id}")),
        ("GET", format!("/v1/people/{id}/export")),
    ] {
        for key in [&app.enroll_key, &app.recognize_key] {
            let r = app.call(method, &app.url(&path), Some(key)).await;
            assert_problem(r, 403, "forbidden").await;
        }
    }
    // A wrong token, or a token for another person, is refused the same way.
    let other = app.create_person("Hopper", consent()).await;
    for (person, tok) in [(id, "vwt_wrong".to_string()), (other, token.clone())] {
        let r = app
            .client
            .post(app.url(&format!("/v1/people/{person}/consent/withdraw")))
            .header("x-withdrawal-token", tok)
            .send()
            .await
            .expect("request");
        assert_problem(r, 401, "unauthorized").await;
    }
    let r = app.call("POST", &url, None).await;
    assert_problem(r, 401, "unauthorized").await;
    let after = app.counts().await;
    assert_eq!(
        before[..3],
        [after[0] - 1, after[1] - 1, after[2]],
        "only Hopper was added"
    );

    // The token alone, without any key, withdraws and erases.
    let r = app
        .client
        .post(&url)
        .header("x-withdrawal-token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["person_id"], id.to_string());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM people WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
    let actor: String = sqlx::query_scalar(
        "SELECT actor FROM audit_log WHERE action = 'withdraw_consent' AND subject = $1",
    )
    .bind(id.to_string())
    .fetch_one(&app.pool)
    .await
    .expect("audited");
    assert_eq!(actor, "data_subject");
}

#[tokio::test]
async fn an_enroll_key_changes_only_the_people_it_enrolled() {
    let app = spawn_app().await;
    // Created by the admin: the enroll key may not add its holder's face to this record.
    let v = app
        .create_person_as(&app.admin_key, "Victim", consent())
        .await;
    let victim: Uuid = v["id"].as_str().expect("id").parse().expect("uuid");
    let before = app.counts().await;
    let r = app.add_faces(victim, &[vector(1, 2, 0.1)]).await;
    assert_problem(r, 403, "not_permitted").await;
    assert_eq!(app.counts().await, before);
    // Its own people it may change.
    let own = app.create_person("Own", consent()).await;
    assert_eq!(app.add_faces(own, &[vector(1, 2, 0.1)]).await.status(), 201);
}

#[tokio::test]
async fn metrics_need_an_admin_key_and_keep_a_bounded_label_set() {
    let app = spawn_app().await;
    let r = app.call("GET", &app.url("/metrics"), None).await;
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .call("GET", &app.url("/metrics"), Some(&app.recognize_key))
        .await;
    assert_problem(r, 403, "forbidden").await;
    for i in 0..200 {
        let _ = app
            .client
            .request(
                reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("method"),
                app.url("/v1/people"),
            )
            .send()
            .await;
    }
    let r = app
        .call("GET", &app.url("/metrics"), Some(&app.admin_key))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(
        !text.contains("MADEUP"),
        "made-up methods are one OTHER label"
    );
    assert!(text.contains("method=\"OTHER\""));
}

#[tokio::test]
async fn keys_can_be_listed_revoked_rotated_and_expire() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/keys",
            &json!({ "name": "kiosk", "scopes": ["recognize"], "expires_in_days": 30 }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let (id, key) = (
        v["id"].as_str().expect("id").to_string(),
        v["key"].as_str().expect("key").to_string(),
    );
    assert!(v["expires_at"].is_string());
    let probe = json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }] });
    assert_eq!(
        app.post_json(&key, "/v1/recognize", &probe).await.status(),
        200
    );
    // Only admins manage keys; listing never shows a secret.
    let r = app.call("GET", &app.url("/v1/keys"), Some(&key)).await;
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .call("GET", &app.url("/v1/keys"), Some(&app.admin_key))
        .await;
    let list = r.text().await.expect("text");
    assert!(list.contains(&id) && !list.contains(&key[12..]));

    // Rotation: the old key stops at once, the new one works with the same scopes.
    let r = app
        .post_json(&app.admin_key, &format!("/v1/keys/{id}/rotate"), &json!({}))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let new_key = v["key"].as_str().expect("key").to_string();
    let new_id = v["id"].as_str().expect("id").to_string();
    assert_problem(
        app.post_json(&key, "/v1/recognize", &probe).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.post_json(&new_key, "/v1/recognize", &probe)
            .await
            .status(),
        200
    );
    // Revocation.
    let r = app
        .post_json(
            &app.admin_key,
            &format!("/v1/keys/{new_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_problem(
        app.post_json(&new_key, "/v1/recognize", &probe).await,
        401,
        "unauthorized",
    )
    .await;
    // Expiry.
    let (expiring, eid) = visage_backend::auth::create_key(
        &app.pool,
        "short",
        &visage_backend::domain::Scopes::parse(&["recognize"]).expect("scopes"),
        None,
        None,
    )
    .await
    .expect("key");
    assert_eq!(
        app.post_json(&expiring, "/v1/recognize", &probe)
            .await
            .status(),
        200
    );
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(eid)
        .execute(&app.pool)
        .await
        .expect("expire");
    assert_problem(
        app.post_json(&expiring, "/v1/recognize", &probe).await,
        401,
        "unauthorized",
    )
    .await;
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/keys",
            &json!({ "name": "x", "scopes": ["root"] }),
        )
        .await;
    assert_problem(r, 400, "invalid_scopes").await;
}

#[tokio::test]
async fn failed_authentication_is_throttled_per_address() {
    let app = spawn_app().await;
    let probe = json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }] });
    // A request without any key guesses nothing: 401 each time, never counted.
    for _ in 0..40 {
        let r = app
            .client
            .post(app.url("/v1/recognize"))
            .json(&probe)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post_json(&app.recognize_key, "/v1/recognize", &probe)
        .await;
    assert_eq!(r.status(), 200);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = app
            .post_json(&format!("vsg_guess{i}"), "/v1/recognize", &probe)
            .await;
        statuses.push(r.status().as_u16());
    }
    let limit = visage_backend::auth::FailedAuth::MAX_PER_MINUTE as usize;
    assert!(statuses[..limit].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(statuses[limit..].iter().all(|&s| s == 429), "{statuses:?}");
    // While throttled, even a valid key from that address waits.
    let r = app
        .post_json(&app.recognize_key, "/v1/recognize", &probe)
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn nul_bytes_and_unknown_methods_are_problems_that_change_nothing() {
    let app = spawn_app().await;
    let p = app.create_person("Nul", consent()).await;
    let before = app.counts().await;
    let mut c = consent();
    c["evidence"]["user_agent"] = json!("agent\u{0}x");
    let r = app
        .post_json(
            &app.enroll_key,
            "/v1/people",
            &json!({ "name": "A", "consent": c }),
        )
        .await;
    assert!(matches!(r.status().as_u16(), 400 | 422), "{}", r.status());
    let mut c = consent();
    c["evidence"]["client_address"] = json!("10.0.0.1\u{0}");
    let r = app
        .post_json(
            &app.enroll_key,
            "/v1/people",
            &json!({ "name": "A", "consent": c }),
        )
        .await;
    assert!(matches!(r.status().as_u16(), 400 | 422), "{}", r.status());
    let r = app
        .post_json(
            &app.enroll_key,
            &format!("/v1/people/{p}/faces"),
            &json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }], "quality": { "note": "a\u{0}b" } }),
        )
        .await;
    assert_problem(r, 400, "invalid_text").await;
    let r = app
        .call("GET", &app.url("/v1/people?q=a%00b"), Some(&app.admin_key))
        .await;
    assert_problem(r, 400, "invalid_text").await;
    assert_eq!(app.counts().await[..3], before[..3]);

    let r = app
        .call("PUT", &app.url("/v1/recognize"), Some(&app.admin_key))
        .await;
    assert_problem(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn pages_cannot_be_framed_and_docs_have_a_policy() {
    let app = spawn_app().await;
    for path in ["/docs/", "/v1/people", "/healthz"] {
        let r = app.get_public(path).await;
        let h = r.headers();
        assert_eq!(
            h.get("x-frame-options").and_then(|v| v.to_str().ok()),
            Some("DENY"),
            "{path}"
        );
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
    // A long model id is not echoed back whole.
    let long = "m".repeat(10_000);
    let r = app
        .post_json(
            &app.recognize_key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": long, "vector": vector(1, 2, 0.1) }] }),
        )
        .await;
    let p = assert_problem(r, 400, "embedding_unknown_model").await;
    assert!(p["detail"].as_str().is_some_and(|d| d.len() < 400), "{p}");
}
