use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use visage_backend::configuration::ServeArgs;
use visage_backend::domain::Scopes;
use visage_backend::startup::Application;
use visage_backend::{auth, db, embedded};

/// The server's admin URL (database `postgres`) and whether this process is alone on it.
fn server() -> &'static (String, bool) {
    static S: OnceLock<(String, bool)> = OnceLock::new();
    S.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => (url, false),
        Err(_) => {
            let (pg, alone) = embedded::acquire_for_process().expect("embedded PostgreSQL starts");
            (pg.url("postgres").expect("url"), alone)
        }
    })
}

async fn admin_options() -> PgConnectOptions {
    let (url, alone) = server().clone();
    let opts = PgConnectOptions::from_str(&url)
        .expect("valid URL")
        .database("postgres");
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    if alone {
        let o = opts.clone();
        CLEANED
            .get_or_init(|| async move {
                // Nobody else uses the server: drop the databases of earlier test runs.
                let mut conn = o.connect().await.expect("connect");
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                for n in names {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
                let _ = conn.close().await;
            })
            .await;
    }
    opts
}

/// A running app on a fresh database with one key per scope.
pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub enroll_key: String,
    pub recognize_key: String,
}

/// The app without a browser app (no web directory), so every unknown path is an API 404.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(ServeArgs {
        port: 0,
        rate_per_minute: 1_000_000,
        web_dir: std::env::temp_dir().join(format!("visage-no-web-{}", uuid::Uuid::new_v4())),
        ..ServeArgs::default()
    })
    .await
}

/// A new, empty database on the test server: its connection options.
pub async fn fresh_database() -> PgConnectOptions {
    let admin = admin_options().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.expect("connect to the server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    admin.database(&name)
}

pub async fn spawn_app_with(args: ServeArgs) -> TestApp {
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(fresh_database().await)
        .await
        .expect("pool");
    spawn_app_on(args, pool).await
}

/// The app on `pool` (a fresh database), with one key per scope.
pub async fn spawn_app_on(args: ServeArgs, pool: PgPool) -> TestApp {
    db::migrate(&pool).await.expect("migrations");
    let app = Application::build(&args, pool.clone())
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (admin_key, _) = auth::create_key(&pool, "admin", &Scopes::all(), None, None)
        .await
        .expect("key");
    let (enroll_key, _) = auth::create_key(
        &pool,
        "enroll",
        &Scopes::parse(&["enroll"]).expect("scope"),
        None,
        None,
    )
    .await
    .expect("key");
    let (recognize_key, _) = auth::create_key(
        &pool,
        "recognize",
        &Scopes::parse(&["recognize"]).expect("scope"),
        None,
        None,
    )
    .await
    .expect("key");
    TestApp {
        base,
        pool,
        client: reqwest::Client::new(),
        admin_key,
        enroll_key,
        recognize_key,
    }
}

/// A dense pseudo-random unit direction, the same for the same `seed` (a stand-in for one
/// identity's embedding: face embeddings are dense, and different seeds are nearly orthogonal,
/// cosine about +-0.07 in 192 dimensions).
pub fn direction(seed: u64) -> Vec<f32> {
    // splitmix64, then Box-Muller: Gaussian coordinates.
    let mut state = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x1234_5678);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut v: Vec<f32> = (0..192)
        .map(|_| {
            let (u1, u2) = (next().max(1e-12), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A face-like vector: identity `axis` plus `noise` times the direction `noise_axis` (so
/// `vector(a, n, 0.1)` and `vector(a, m, 0.1)` are the same identity at cosine about 0.99,
/// and different `a` are different identities).
pub fn vector(axis: usize, noise_axis: usize, noise: f32) -> Vec<f32> {
    let id = direction(axis as u64);
    let n = direction(10_000 + noise_axis as u64);
    id.iter().zip(&n).map(|(a, b)| a + noise * b).collect()
}

pub const MODEL: &str = visage_shared::model::EMBEDDER_ID;

pub fn consent() -> Value {
    json!({
        "policy_version": "2026-01",
        "policy_text": "I agree that my face template is stored to let me into the building.",
        "purpose": "building access",
        "evidence": { "method": "checkbox", "collected_by": "front-desk-1" }
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request without a body to the full `url`, with `key` as its bearer key when given.
    pub async fn call(&self, method: &str, url: &str, key: Option<&str>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send().await.expect("request")
    }

    /// `GET path` with `key` as its bearer key.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.call("GET", &self.url(path), Some(key)).await
    }

    /// `GET path` without a key.
    pub async fn get_public(&self, path: &str) -> reqwest::Response {
        self.call("GET", &self.url(path), None).await
    }

    /// `DELETE path` with `key` as its bearer key.
    pub async fn delete(&self, key: &str, path: &str) -> reqwest::Response {
        self.call("DELETE", &self.url(path), Some(key)).await
    }

    /// Posts image bytes (sent as `image/jpeg`, whatever they are) to `path`.
    pub async fn post_image(&self, key: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", "image/jpeg")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a person with consent; returns the id.
    pub async fn create_person(&self, name: &str, consent: Value) -> uuid::Uuid {
        let v = self.create_person_as(&self.enroll_key, name, consent).await;
        v["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Creates a person with consent using `key`; returns the whole response (201 asserted).
    pub async fn create_person_as(&self, key: &str, name: &str, consent: Value) -> Value {
        let r = self
            .post_json(
                key,
                "/v1/people",
                &json!({ "name": name, "consent": consent }),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "create person: {}",
            r.text().await.unwrap_or_default()
        );
        r.json().await.expect("json")
    }

    /// Adds embeddings to a person.
    pub async fn add_faces(&self, person: uuid::Uuid, vectors: &[Vec<f32>]) -> reqwest::Response {
        let embs: Vec<Value> = vectors
            .iter()
            .map(|v| json!({ "model": MODEL, "vector": v }))
            .collect();
        self.post_json(
            &self.enroll_key,
            &format!("/v1/people/{person}/faces"),
            &json!({ "embeddings": embs }),
        )
        .await
    }

    /// Recognizes one vector; returns the response JSON.
    pub async fn recognize(&self, v: &[f32]) -> Value {
        let r = self
            .post_json(
                &self.recognize_key,
                "/v1/recognize",
                &json!({ "embeddings": [{ "model": MODEL, "vector": v }] }),
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Row counts of every table.
    pub async fn counts(&self) -> [i64; 5] {
        let mut out = [0; 5];
        for (i, t) in ["people", "consents", "faces", "audit_log", "api_keys"]
            .iter()
            .enumerate()
        {
            out[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                .fetch_one(&self.pool)
                .await
                .expect("count");
        }
        out
    }
}

/// Checks a problem response: `status`, problem+json, one of `codes` (any without codes) and
/// `detail` containing `detail_contains`: the problem body, or what is wrong.
pub async fn check_problem(
    r: reqwest::Response,
    status: u16,
    codes: &[&str],
    detail_contains: Option<&str>,
) -> Result<Value, String> {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap_or_default();
    if got != status {
        return Err(format!("status {got}, expected {status}: {text}"));
    }
    if ct != "application/problem+json" {
        return Err(format!("content type {ct:?}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if !codes.is_empty() && !codes.iter().any(|c| v["code"] == *c) {
        return Err(format!("code {}, expected one of {codes:?}", v["code"]));
    }
    if v["status"] != status {
        return Err(format!("problem status {}, expected {status}", v["status"]));
    }
    if let Some(t) = detail_contains
        && !v["detail"].as_str().is_some_and(|d| d.contains(t))
    {
        return Err(format!("detail without {t:?}: {v}"));
    }
    Ok(v)
}

/// Asserts a problem response with `status` and `code`; its body.
pub async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    check_problem(r, status, &[code], None)
        .await
        .unwrap_or_else(|e| panic!("expected a {status} {code} problem: {e}"))
}
