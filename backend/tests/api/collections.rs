//! Collections (issue 15): a key never sees another collection's people, by any route; the
//! schema keeps the collection in every key a sharded deployment would distribute on; the
//! migration moves existing data into the default collection.

use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::helpers::{MODEL, TestApp, assert_problem, consent, fresh_database, spawn_app, vector};

/// Creates collection `name` with the admin key.
async fn create_collection(app: &TestApp, name: &str) -> Uuid {
    let r = app
        .post_json(&app.admin_key, "/v1/collections", &json!({ "name": name }))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["name"], name);
    v["id"].as_str().expect("id").parse().expect("uuid")
}

/// A new key with `scopes` for `collections` (by name).
async fn key_for(app: &TestApp, scopes: &[&str], collections: &[&str]) -> String {
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/keys",
            &json!({ "name": format!("{scopes:?} of {collections:?}"), "scopes": scopes, "collections": collections }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let v: Value = r.json().await.expect("json");
    v["key"].as_str().expect("key").to_string()
}

/// Key `id` as `GET /v1/keys` lists it.
async fn listed_key(app: &TestApp, id: &Value) -> Value {
    let keys: Value = app
        .get(&app.admin_key, "/v1/keys")
        .await
        .json()
        .await
        .expect("json");
    keys.as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == *id)
        .cloned()
        .expect("listed")
}

fn probe(v: &[f32]) -> Value {
    json!({ "embeddings": [{ "model": MODEL, "vector": v }] })
}

/// The people a recognition of `v` with `key` (at `query`) matched.
async fn matched(app: &TestApp, key: &str, query: &str, v: &[f32]) -> Vec<String> {
    let r = app
        .post_json(key, &format!("/v1/recognize{query}"), &probe(v))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let v: Value = r.json().await.expect("json");
    v["results"][0]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter(|c| c["match"] == true)
        .map(|c| c["person_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Enrolls one person with `face` in the collection of `key` (as `query` names it).
async fn enroll(app: &TestApp, key: &str, query: &str, name: &str, face: &[f32]) -> Uuid {
    let r = app
        .post_json(
            key,
            &format!("/v1/people{query}"),
            &json!({ "name": name, "consent": consent() }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let v: Value = r.json().await.expect("json");
    let id: Uuid = v["id"].as_str().expect("id").parse().expect("uuid");
    let r = app
        .post_json(
            key,
            &format!("/v1/people/{id}/faces{query}"),
            &json!({ "embeddings": [{ "model": MODEL, "vector": face }] }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    id
}

#[tokio::test]
async fn a_key_never_sees_another_collections_people_by_any_route() {
    let app = spawn_app().await;
    let site_a = create_collection(&app, "site-a").await;
    let site_b = create_collection(&app, "site-b").await;
    let enroll_a = key_for(&app, &["enroll"], &["site-a"]).await;
    let enroll_b = key_for(&app, &["enroll"], &["site-b"]).await;
    let recognize_a = key_for(&app, &["recognize"], &["site-a"]).await;
    let recognize_b = key_for(&app, &["recognize"], &["site-b"]).await;
    let admin_a = key_for(&app, &["admin"], &["site-a"]).await;

    // The same face enrolled as two people, one per site: each site finds only its own.
    let face = vector(1, 1, 0.05);
    let probe_face = vector(1, 2, 0.05);
    let a = enroll(&app, &enroll_a, "", "Ann at A", &face).await;
    let b = enroll(&app, &enroll_b, "", "Ann at B", &face).await;
    assert_eq!(
        matched(&app, &recognize_a, "", &probe_face).await,
        [a.to_string()]
    );
    assert_eq!(
        matched(&app, &recognize_b, "", &probe_face).await,
        [b.to_string()]
    );
    // Each recognition's audit entry names the collection it searched.
    let searched: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'collection' FROM audit_log WHERE action = 'recognize' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("audit");
    assert_eq!(searched, [site_a.to_string(), site_b.to_string()]);
    // The default collection (the keys every app starts with) holds neither.
    assert!(
        matched(&app, &app.recognize_key, "", &probe_face)
            .await
            .is_empty()
    );

    // Naming another site's collection, or one that does not exist, is the same 404.
    for query in ["?collection=site-b", "?collection=nowhere"] {
        let r = app
            .post_json(
                &recognize_a,
                &format!("/v1/recognize{query}"),
                &probe(&probe_face),
            )
            .await;
        let p = assert_problem(r, 404, "not_found").await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("collection"),
            "{p}"
        );
    }
    for query in ["?collection=Site%20B", "?collection=a&collection=b"] {
        let r = app
            .post_json(
                &recognize_a,
                &format!("/v1/recognize{query}"),
                &probe(&probe_face),
            )
            .await;
        assert_eq!(r.status(), 400, "{query}");
    }

    // Every route that takes a person id answers 404 for the other site's person, and
    // changes nothing.
    let before = app.counts().await;
    let other = format!("/v1/people/{b}");
    let r = app
        .post_json(
            &enroll_a,
            &format!("{other}/faces"),
            &json!({ "embeddings": [{ "model": MODEL, "vector": vector(9, 1, 0.05) }] }),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post_image(&enroll_a, &format!("{other}/faces/image"), vec![0xFF, 0xD8])
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .delete(&enroll_a, &format!("{other}/faces/{}", Uuid::new_v4()))
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post_json(
            &recognize_a,
            "/v1/verify",
            &json!({ "person_id": b, "embedding": { "model": MODEL, "vector": probe_face } }),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    // By image too, and before the image is looked at: damaged bytes are the same 404, not a
    // 422 that would tell the person exists.
    let r = app
        .post_image(
            &recognize_a,
            &format!("/v1/verify/image?person_id={b}"),
            vec![0xFF, 0xD8],
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    for (method, path) in [
        ("GET", other.clone()),
        ("GET", format!("{other}/export")),
        ("DELETE", other.clone()),
        ("POST", format!("{other}/consent/withdraw")),
    ] {
        let r = app.call(method, &app.url(&path), Some(&admin_a)).await;
        assert_problem(r, 404, "not_found").await;
    }
    assert_eq!(app.counts().await, before, "a refused request changed data");

    // An admin of site A lists site A only, and manages neither keys nor collections.
    let r = app.get(&admin_a, "/v1/people").await;
    let v: Value = r.json().await.expect("json");
    let ids: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, [a.to_string()]);
    assert_eq!(app.get(&admin_a, "/v1/keys").await.status(), 403);
    let r = app
        .post_json(&admin_a, "/v1/collections", &json!({ "name": "site-c" }))
        .await;
    assert_eq!(r.status(), 403);
    let r = app.get(&admin_a, "/v1/people?collection=site-b").await;
    assert_problem(r, 404, "not_found").await;
    // Listing collections shows a key its own.
    let v: Value = app
        .get(&recognize_a, "/v1/collections")
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["site-a"]);

    // The admin of every collection sees one collection when it names it, all otherwise.
    let v: Value = app
        .get(&app.admin_key, "/v1/people?collection=site-b")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["items"][0]["id"], b.to_string());
    let v: Value = app
        .get(&app.admin_key, "/v1/people")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));

    // A key of two collections names the one it means.
    let both = key_for(&app, &["recognize"], &["site-a", "site-b"]).await;
    let r = app
        .post_json(&both, "/v1/recognize", &probe(&probe_face))
        .await;
    assert_problem(r, 400, "collection_required").await;
    assert_eq!(
        matched(&app, &both, "?collection=site-b", &probe_face).await,
        [b.to_string()]
    );

    // Erasing B (in its own collection) leaves A matching.
    let r = app.delete(&app.admin_key, &other).await;
    assert_eq!(r.status(), 200);
    assert!(
        matched(&app, &recognize_b, "", &probe_face)
            .await
            .is_empty()
    );
    assert_eq!(
        matched(&app, &recognize_a, "", &probe_face).await,
        [a.to_string()]
    );
}

#[tokio::test]
async fn keys_name_existing_collections_and_collections_are_unique() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/keys",
            &json!({ "name": "k", "scopes": ["recognize"], "collections": ["nowhere"] }),
        )
        .await;
    assert_problem(r, 400, "unknown_collection").await;
    create_collection(&app, "site-a").await;
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/collections",
            &json!({ "name": "site-a" }),
        )
        .await;
    assert_problem(r, 409, "collection_exists").await;
    for bad in ["", "Site", "-a", "a b"] {
        let r = app
            .post_json(&app.admin_key, "/v1/collections", &json!({ "name": bad }))
            .await;
        assert_problem(r, 400, "invalid_collection_name").await;
    }
    // A key that is not admin, created without collections, gets the default one only.
    let r = app
        .post_json(
            &app.admin_key,
            "/v1/keys",
            &json!({ "name": "k", "scopes": ["recognize"] }),
        )
        .await;
    let key: Value = r.json().await.expect("json");
    let default = json!([visage_backend::domain::DEFAULT_COLLECTION_ID]);
    assert_eq!(listed_key(&app, &key["id"]).await["collections"], default);
    // Rotation keeps the collections.
    let r = app
        .post_json(
            &app.admin_key,
            &format!("/v1/keys/{}/rotate", key["id"].as_str().expect("id")),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let rotated: Value = r.json().await.expect("json");
    assert_eq!(
        listed_key(&app, &rotated["id"]).await["collections"],
        default
    );
}

/// The schema choices that let a distributed PostgreSQL shard by collection (docs/scaling.md):
/// every table of the gallery holds the collection, and a face or consent can only sit in its
/// person's collection.
#[tokio::test]
async fn the_collection_is_in_every_key_a_sharded_deployment_distributes_on() {
    let app = spawn_app().await;
    for table in ["people", "consents", "faces"] {
        let nullable: Option<String> = sqlx::query_scalar(
            "SELECT is_nullable FROM information_schema.columns WHERE table_name = $1 AND column_name = 'collection_id'",
        )
        .bind(table)
        .fetch_optional(&app.pool)
        .await
        .expect("query");
        assert_eq!(nullable.as_deref(), Some("NO"), "{table}.collection_id");
    }
    // The foreign keys from faces and consents to people include the collection.
    for table in ["faces", "consents"] {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT string_agg(a.attname, ',' ORDER BY a.attname)
             FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
             WHERE c.conrelid = $1::regclass AND c.contype = 'f' AND c.confrelid = 'people'::regclass
             GROUP BY c.oid",
        )
        .bind(table)
        .fetch_all(&app.pool)
        .await
        .expect("query");
        assert!(
            columns.iter().any(|c| c == "collection_id,person_id"),
            "{table}: {columns:?}"
        );
    }
    // A face can never sit in another collection than its person's.
    let other = Uuid::new_v4();
    sqlx::query("INSERT INTO collections (id, name) VALUES ($1, 'other')")
        .bind(other)
        .execute(&app.pool)
        .await
        .expect("collection");
    let person = app.create_person("Ann", consent()).await;
    let wrong = sqlx::query(
        "INSERT INTO faces (id, person_id, model_id, embedding, source, collection_id)
         VALUES ($1, $2, 'm', $3, 'browser', $4)",
    )
    .bind(Uuid::new_v4())
    .bind(person)
    .bind(pgvector::Vector::from(vector(1, 1, 0.0)))
    .bind(other)
    .execute(&app.pool)
    .await;
    assert!(
        wrong.is_err(),
        "a face was stored in another collection than its person's"
    );
}

/// The migration puts what existed before collections into the default collection, and scopes
/// the existing keys that are not admin to it.
#[tokio::test]
async fn the_migration_moves_existing_data_into_the_default_collection() {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(fresh_database().await)
        .await
        .expect("pool");
    let all = &visage_backend::db::MIGRATOR;
    let before_collections: Vec<_> = all
        .migrations
        .iter()
        .filter(|m| m.version < 20261201100001)
        .cloned()
        .collect();
    assert!(before_collections.len() < all.migrations.len());
    let old = sqlx::migrate::Migrator {
        migrations: before_collections.into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    old.run(&pool).await.expect("old migrations");
    let (person, face, recognize_key, admin_key) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    for stmt in [
        "INSERT INTO people (id, display_name) VALUES ($1, 'Old Ann')",
        "INSERT INTO consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, evidence_method, collected_by)
         VALUES (gen_random_uuid(), $1, 'v1', repeat('0', 64), 'p', now(), 'checkbox', 'desk')",
    ] {
        sqlx::query(stmt).bind(person).execute(&pool).await.expect(stmt);
    }
    sqlx::query(
        "INSERT INTO faces (id, person_id, model_id, embedding, source) VALUES ($1, $2, 'm', $3, 'browser')",
    )
    .bind(face)
    .bind(person)
    .bind(pgvector::Vector::from(vector(1, 1, 0.0)))
    .execute(&pool)
    .await
    .expect("face");
    for (id, scope) in [(recognize_key, "recognize"), (admin_key, "admin")] {
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, key_sha256, scopes) VALUES ($1, 'k', 'p', md5($1::text) || md5($1::text), ARRAY[$2])",
        )
        .bind(id)
        .bind(scope)
        .execute(&pool)
        .await
        .expect("key");
    }

    visage_backend::db::migrate(&pool)
        .await
        .expect("new migrations");
    let default = visage_backend::domain::DEFAULT_COLLECTION_ID;
    for table in ["people", "consents", "faces"] {
        let c: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT collection_id FROM {table}"
        )))
        .fetch_all(&pool)
        .await
        .expect("select");
        assert_eq!(c, [default], "{table}");
    }
    let scoped: Option<Vec<Uuid>> =
        sqlx::query_scalar("SELECT collections FROM api_keys WHERE id = $1")
            .bind(recognize_key)
            .fetch_one(&pool)
            .await
            .expect("key");
    assert_eq!(scoped, Some(vec![default]));
    let admin: Option<Vec<Uuid>> =
        sqlx::query_scalar("SELECT collections FROM api_keys WHERE id = $1")
            .bind(admin_key)
            .fetch_one(&pool)
            .await
            .expect("key");
    assert_eq!(admin, None, "an existing admin key keeps every collection");
}
