//! Erasure on disk (docs/erasure.md): after an erasure and the service's post-erasure scrub,
//! no file of the database's directory on the server (`base/<database oid>/`: tables, their
//! TOAST, indexes, catalogs) holds the erased name, embedding or consent evidence. Reads the
//! files directly, so it needs the server's data directory on this machine (the embedded
//! server; as root, or as its owner) and skips otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use visage_backend::domain::DEFAULT_COLLECTION_ID;
use visage_backend::scrub::{self, ScrubConfig};
use visage_backend::store::hnsw;

use crate::helpers::{TestApp, consent, spawn_app};

/// A dense pseudo-random vector (every component at least 0.1 from zero, so every window of
/// its bytes is distinctive; different seeds are nearly orthogonal).
fn dense(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            if u < 0.5 { -0.1 - u } else { u - 0.4 }
        })
        .collect()
}

/// What must not outlive the erasure, as byte strings to look for.
struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    /// The name, the consent's evidence, and the stored embedding: all 768 bytes, and every
    /// 48-byte window of them at a 48-byte stride (a partly overwritten copy still counts).
    fn new(name: &str, evidence: &[&str], embedding: &[f32]) -> Self {
        let mut v = vec![("name".to_string(), name.as_bytes().to_vec())];
        for e in evidence {
            v.push((format!("evidence {e}"), e.as_bytes().to_vec()));
        }
        let bytes: Vec<u8> = embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(bytes.len(), 768);
        v.push(("embedding".into(), bytes.clone()));
        for (i, w) in bytes.chunks(48).enumerate() {
            v.push((
                format!("embedding bytes {}..{}", i * 48, i * 48 + 48),
                w.to_vec(),
            ));
        }
        Self(v)
    }
}

/// `(needle, file)` for every needle found in a file under `dir`.
fn grep_dir(dir: &Path, needles: &Needles) -> Vec<(String, PathBuf)> {
    let mut hits = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the database directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        if !f.is_file() {
            continue;
        }
        // A file may go (an old relation file unlinked by a checkpoint) between listing and
        // reading: then it holds nothing any more.
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        for (what, n) in &needles.0 {
            if data.windows(n.len()).any(|w| w == n.as_slice()) {
                hits.push((what.clone(), f.clone()));
            }
        }
    }
    hits
}

/// The database's directory on the server, if this process can read it.
async fn database_dir(pool: &PgPool) -> Option<PathBuf> {
    let (data, oid): (String, sqlx::postgres::types::Oid) = sqlx::query_as(
        "SELECT current_setting('data_directory'), oid FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .expect("data directory (needs a superuser or pg_read_all_settings)");
    let dir = Path::new(&data).join("base").join(oid.0.to_string());
    std::fs::read_dir(&dir).is_ok().then_some(dir)
}

/// A fresh app and its database's directory, or `None` (said on stderr) when this process
/// cannot read the server's files (a `DATABASE_URL` on another machine).
async fn app_with_data_dir() -> Option<(TestApp, PathBuf)> {
    let app = spawn_app().await;
    match database_dir(&app.pool).await {
        Some(dir) => Some((app, dir)),
        None => {
            eprintln!("skipped: the server's data directory is not readable from here");
            None
        }
    }
}

/// Writes every dirty page to disk, so the files show what the server holds.
async fn checkpoint(pool: &PgPool) {
    sqlx::raw_sql("CHECKPOINT")
        .execute(pool)
        .await
        .expect("checkpoint");
}

/// The files of a relation and of its TOAST table and indexes: (relation, path).
async fn relation_files(pool: &PgPool, dir: &Path, table: &str) -> Vec<(String, PathBuf)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT r::regclass::text, pg_relation_filepath(r) FROM (
             SELECT $1::text::regclass::oid AS r
             UNION ALL SELECT reltoastrelid FROM pg_class
                 WHERE oid = $1::text::regclass AND reltoastrelid <> 0
             UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = $1::text::regclass) x",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("relation files");
    let data = dir.parent().and_then(Path::parent).expect("data directory");
    rows.into_iter().map(|(r, p)| (r, data.join(p))).collect()
}

/// Which relation a file of the database directory belongs to (for failure messages).
async fn describe(pool: &PgPool, hits: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    for (what, f) in hits {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let node: i64 = name
            .split(['.', '_'])
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let rel: Option<String> =
            sqlx::query_scalar("SELECT pg_filenode_relation(0, $1::bigint::oid)::regclass::text")
                .bind(node)
                .fetch_one(pool)
                .await
                .unwrap_or(None);
        out.push_str(&format!(
            "\n  {what} in {} ({})",
            f.display(),
            rel.as_deref().unwrap_or("no relation: an old file")
        ));
    }
    out
}

/// The file of relation `rel` in a list from [`relation_files`].
/// The HNSW graph of the gallery's collection (the default one).
fn graph() -> String {
    hnsw::index_name(DEFAULT_COLLECTION_ID)
}

fn file_of(list: &[(String, PathBuf)], rel: &str) -> PathBuf {
    list.iter()
        .find(|(r, _)| r == rel)
        .unwrap_or_else(|| panic!("no file for {rel}"))
        .1
        .clone()
}

fn found_in(hits: &[(String, PathBuf)], what: &str, file: &Path) -> bool {
    hits.iter().any(|(w, f)| w == what && f == file)
}

/// A gallery where the person to erase was enrolled last: their rows are the last on their
/// pages, which is where a plain VACUUM leaves the bytes (compacting a page moves only the
/// rows that follow a dead one over it). Returns the person, their stored embedding and the
/// strings that must go.
struct Gallery {
    target: Uuid,
    /// The consent evidence's client address, unique to this gallery.
    address: String,
    others: Vec<(Uuid, Vec<f32>)>,
    needles: Needles,
}

async fn enroll_gallery(app: &TestApp) -> Gallery {
    let mut others = Vec::new();
    for i in 0..4 {
        let id = app
            .create_person(&format!("Other Person {i}"), consent())
            .await;
        let v = dense(100 + i as u64);
        assert_eq!(
            app.add_faces(id, std::slice::from_ref(&v)).await.status(),
            201
        );
        others.push((id, v));
    }
    let name = format!("Zyxwvut Erasure-Probe {}", Uuid::new_v4().simple());
    // Every value unique to this call: the tests of this binary share one server and its WAL.
    let salt = Uuid::new_v4().as_u128();
    let address = format!("2001:db8::{:x}:{:x}", salt as u16, (salt >> 16) as u16);
    let address = address.as_str();
    let agent = format!("ProbeAgent/{}", Uuid::new_v4().simple());
    let mut c = consent();
    c["evidence"]["client_address"] = json!(address);
    c["evidence"]["user_agent"] = json!(agent);
    let target = app.create_person(&name, c).await;
    let r = app.add_faces(target, &[dense((salt >> 32) as u64)]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    // The embedding as stored (the server normalises it), through the export route.
    let r = app
        .call(
            "GET",
            &app.url(&format!("/v1/people/{target}/export")),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let stored: Vec<f32> = v["faces"][0]["embedding"]
        .as_array()
        .expect("embedding")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    // The same values as the database's, bit for bit.
    let in_db: pgvector::Vector =
        sqlx::query_scalar("SELECT embedding FROM faces WHERE person_id = $1")
            .bind(target)
            .fetch_one(&app.pool)
            .await
            .expect("stored embedding");
    assert_eq!(in_db.as_slice(), stored.as_slice());
    // The collection's HNSW graph, as the service's background job builds it for a large
    // collection (here with a bound of 0 faces: every collection is large).
    let built = hnsw::build_missing(
        &app.pool,
        0,
        &hnsw::BuildOptions {
            concurrently: true,
            memory: "64MB".into(),
        },
    )
    .await
    .expect("graph built");
    assert_eq!(built, [DEFAULT_COLLECTION_ID]);
    Gallery {
        target,
        address: address.to_string(),
        others,
        needles: Needles::new(&name, &[address, &agent], &stored),
    }
}

/// Before erasure the bytes are where the test will look for them (so that not finding them
/// afterwards means something): name and evidence in the tables' files, the embedding in the
/// table's and in the HNSW index's.
async fn assert_present_before(app: &TestApp, dir: &Path, g: &Gallery) {
    // What autovacuum does sooner or later: the statistics must not copy personal columns.
    sqlx::raw_sql("ANALYZE")
        .execute(&app.pool)
        .await
        .expect("analyze");
    checkpoint(&app.pool).await;
    let hits = grep_dir(dir, &g.needles);
    let people = relation_files(&app.pool, dir, "people").await;
    let faces = relation_files(&app.pool, dir, "faces").await;
    let consents = relation_files(&app.pool, dir, "consents").await;
    assert!(
        found_in(&hits, "name", &file_of(&people, "people")),
        "the name is in the people table's file before erasure: {}",
        describe(&app.pool, &hits).await
    );
    assert!(found_in(&hits, "embedding", &file_of(&faces, "faces")));
    assert!(found_in(&hits, "embedding", &file_of(&faces, &graph())));
    assert!(found_in(
        &hits,
        &format!("evidence {}", g.address),
        &file_of(&consents, "consents")
    ));
    // Only there: not in the statistics (migration 20261130100001), nor anywhere else.
    let known: Vec<PathBuf> = [&people, &faces, &consents]
        .iter()
        .flat_map(|l| l.iter().map(|(_, p)| p.clone()))
        .collect();
    let elsewhere: Vec<(String, PathBuf)> = hits
        .into_iter()
        .filter(|(_, f)| !known.contains(f))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "personal bytes outside the people, consents and faces files: {}",
        describe(&app.pool, &elsewhere).await
    );
}

/// The rest of the gallery is untouched: the other people are still recognised.
async fn assert_others_intact(app: &TestApp, g: &Gallery) {
    for (id, v) in &g.others {
        let r = app
            .post_json(
                &app.admin_key,
                "/v1/recognize",
                &json!({ "embeddings": [{ "model": crate::helpers::MODEL, "vector": v }] }),
            )
            .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(
            body["results"][0]["candidates"][0]["person_id"],
            json!(id.to_string()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn erased_name_and_embedding_are_not_in_any_file_of_the_database() {
    let Some((app, dir)) = app_with_data_dir().await else {
        return;
    };
    let g = enroll_gallery(&app).await;
    assert_present_before(&app, &dir, &g).await;

    let r = app
        .delete(&app.admin_key, &format!("/v1/people/{}", g.target))
        .await;
    assert_eq!(r.status(), 200);
    // The service's own post-erasure step: scheduled by the erasure, run in the background.
    tokio::time::timeout(Duration::from_secs(300), scrub::settled(&app.pool))
        .await
        .expect("the post-erasure scrub ends");
    // Flush whatever is still only in shared buffers: the files then show all there is.
    checkpoint(&app.pool).await;
    let hits = grep_dir(&dir, &g.needles);
    assert!(
        hits.is_empty(),
        "erased bytes still on disk after the scrub: {}",
        describe(&app.pool, &hits).await
    );
    // The WAL too: the embedded server runs with wal_recycle=off, so the segments that logged
    // the enrollment (and the erasure's own full-page images) are unlinked at the scrub's
    // checkpoint rather than kept under a future segment's name.
    let recycle: String = sqlx::query_scalar("SHOW wal_recycle")
        .fetch_one(&app.pool)
        .await
        .expect("wal_recycle");
    if recycle == "off" {
        let hits = grep_dir(&dir.join("../../pg_wal"), &g.needles);
        assert!(
            hits.is_empty(),
            "erased bytes still in the WAL after the scrub: {hits:?}"
        );
    } else {
        eprintln!("WAL not checked: this server recycles WAL segments (docs/erasure.md)");
    }
    assert_others_intact(&app, &g).await;
}

/// Without the scrub, what erasure did before it: the bytes stay in the tables' files after
/// DELETE, VACUUM and CHECKPOINT. (The deletion is plain SQL here, which schedules no scrub.)
#[tokio::test]
async fn plain_vacuum_leaves_the_bytes_that_the_scrub_removes() {
    let Some((app, dir)) = app_with_data_dir().await else {
        return;
    };
    let g = enroll_gallery(&app).await;
    assert_present_before(&app, &dir, &g).await;
    sqlx::query("DELETE FROM people WHERE id = $1")
        .bind(g.target)
        .execute(&app.pool)
        .await
        .expect("delete");
    sqlx::raw_sql("VACUUM people, consents, faces")
        .execute(&app.pool)
        .await
        .expect("vacuum");
    checkpoint(&app.pool).await;
    let hits = grep_dir(&dir, &g.needles);
    let people = relation_files(&app.pool, &dir, "people").await;
    let faces = relation_files(&app.pool, &dir, "faces").await;
    assert!(
        found_in(&hits, "name", &file_of(&people, "people")),
        "plain VACUUM removed the name: {}",
        describe(&app.pool, &hits).await
    );
    assert!(found_in(&hits, "embedding", &file_of(&faces, "faces")));

    let report = scrub::scrub_now(&app.pool).await.expect("scrub");
    assert!(report.faces_rewritten && report.checkpointed, "{report:?}");
    eprintln!("scrub of a 5-face gallery: {report:?}");
    checkpoint(&app.pool).await;
    let hits = grep_dir(&dir, &g.needles);
    assert!(hits.is_empty(), "{}", describe(&app.pool, &hits).await);
    assert_others_intact(&app, &g).await;
}

/// The way for large galleries (`faces` over `faces_full_max_rows`): `faces` is vacuumed in
/// place, not rewritten. The name and evidence go (their tables are rewritten) and the HNSW
/// index no longer holds the vector (pgvector zeroes a deleted element's vector); the table's
/// freed space may keep it until reused or rewritten, as docs/erasure.md says.
#[tokio::test]
async fn large_gallery_way_clears_the_index_in_place() {
    let Some((app, dir)) = app_with_data_dir().await else {
        return;
    };
    let g = enroll_gallery(&app).await;
    assert_present_before(&app, &dir, &g).await;
    let hnsw_before = file_of(&relation_files(&app.pool, &dir, "faces").await, &graph());
    sqlx::query("DELETE FROM people WHERE id = $1")
        .bind(g.target)
        .execute(&app.pool)
        .await
        .expect("delete");
    let cfg = ScrubConfig {
        faces_full_max_rows: 0,
        ..ScrubConfig::from_env()
    };
    let report = scrub::scrub_with(&app.pool, &cfg).await.expect("scrub");
    assert!(!report.faces_rewritten && report.checkpointed, "{report:?}");
    checkpoint(&app.pool).await;
    let hits = grep_dir(&dir, &g.needles);
    let faces = relation_files(&app.pool, &dir, "faces").await;
    // The index was not rebuilt: the same file, cleared in place.
    assert_eq!(file_of(&faces, &graph()), hnsw_before);
    let heap = file_of(&faces, "faces");
    let left: Vec<(String, PathBuf)> = hits.iter().filter(|(_, f)| *f != heap).cloned().collect();
    assert!(
        left.is_empty(),
        "erased bytes outside the faces table's free space: {}",
        describe(&app.pool, &left).await
    );
    eprintln!(
        "in-place way: the faces table's freed space {} the embedding",
        if found_in(&hits, "embedding", &heap) {
            "still holds"
        } else {
            "no longer holds"
        }
    );
    assert_others_intact(&app, &g).await;
}

/// A transaction older than the scrub (a backup's snapshot, say) keeps the erased rows
/// visible to it, and VACUUM FULL would copy them: the scrub waits for it, then fails (and is
/// retried) rather than report a scrub that removed nothing.
#[tokio::test]
async fn scrub_waits_for_older_transactions() {
    let app = spawn_app().await;
    let id = app.create_person("Snapshot Holder", consent()).await;
    sqlx::query("DELETE FROM people WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .expect("delete");
    let mut old = app.pool.acquire().await.expect("connection");
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM people")
        .execute(&mut *old)
        .await
        .expect("snapshot");
    let cfg = ScrubConfig {
        snapshot_wait: Duration::from_millis(500),
        ..ScrubConfig::from_env()
    };
    match scrub::scrub_with(&app.pool, &cfg).await {
        Err(scrub::ScrubError::OlderTransactions(1, _)) => {}
        other => panic!("expected to wait for the older transaction: {other:?}"),
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut *old)
        .await
        .expect("commit");
    drop(old);
    let report = scrub::scrub_with(&app.pool, &cfg).await.expect("scrub");
    assert!(report.faces_rewritten, "{report:?}");
}
