//! A bad-input corpus: every case is a 4xx problem response and the database is unchanged.
//! The cases are a table of named requests; a failure lists the names of every failing case.

use serde_json::{Value, json};

use crate::helpers::{MODEL, TestApp, assert_problem, check_problem, consent, spawn_app, vector};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// A PNG whose header claims 100000x100000 pixels (30 GB decoded) in 60 bytes.
fn decompression_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid small JPEG, cut in half.
fn truncated_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .expect("encode");
    let bytes = buf.into_inner();
    bytes[..bytes.len() / 2].to_vec()
}

/// Whose credential a case sends.
#[derive(Clone, Copy)]
enum Key {
    None,
    Enroll,
    Recognize,
    Admin,
    /// This `Authorization` header value as is.
    Header(&'static str),
}

/// What a case sends as its body.
enum Body {
    None,
    Json(Value),
    /// Bytes with this content type (none: no `content-type` header).
    Raw(Option<&'static str>, Vec<u8>),
}

/// One bad request and the problem it must get.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    key: Key,
    body: Body,
    status: u16,
    /// The acceptable codes (the first is the usual one).
    codes: &'static [&'static str],
    /// Text the problem's `detail` must contain.
    detail_contains: Option<&'static str>,
}

impl Case {
    fn new(
        name: impl Into<String>,
        method: &'static str,
        path: impl Into<String>,
        key: Key,
    ) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            key,
            body: Body::None,
            status: 400,
            codes: &[],
            detail_contains: None,
        }
    }

    fn json(mut self, v: Value) -> Self {
        self.body = Body::Json(v);
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(content_type, bytes.into());
        self
    }

    fn image(self, bytes: Vec<u8>) -> Self {
        self.raw(Some("image/jpeg"), bytes)
    }

    fn expect(mut self, status: u16, codes: &'static [&'static str]) -> Self {
        self.status = status;
        self.codes = codes;
        self
    }

    fn detail_contains(mut self, text: &'static str) -> Self {
        self.detail_contains = Some(text);
        self
    }

    async fn send(&self, app: &TestApp) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut req = app.client.request(method, app.url(&self.path));
        req = match self.key {
            Key::None => req,
            Key::Enroll => req.bearer_auth(&app.enroll_key),
            Key::Recognize => req.bearer_auth(&app.recognize_key),
            Key::Admin => req.bearer_auth(&app.admin_key),
            Key::Header(h) => req.header("authorization", h),
        };
        req = match &self.body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Raw(ct, bytes) => {
                let req = match ct {
                    Some(ct) => req.header("content-type", *ct),
                    None => req,
                };
                req.body(bytes.clone())
            }
        };
        req.send().await.expect("request")
    }
}

/// The corpus, on an app with one person (`person`) who has one face.
fn cases(person: uuid::Uuid) -> Vec<Case> {
    let faces_path = format!("/v1/people/{person}/faces");
    let emb = |v: Value| json!({ "embeddings": [v] });
    let mut huge: Vec<Value> = vec![json!(0.1); 192];
    huge[3] = json!(1e39);
    let unknown = uuid::Uuid::new_v4();
    let probe = emb(json!({ "model": MODEL, "vector": vector(1, 2, 0.1) }));
    let mut out = Vec::new();

    // Embeddings: each bad one refused by enrollment and by recognition.
    let embeddings: [(&str, Value, &'static [&'static str]); 6] = [
        (
            "wrong length",
            emb(json!({ "model": MODEL, "vector": vec![0.5f32; 10] })),
            &["embedding_wrong_length"],
        ),
        (
            "zero vector",
            emb(json!({ "model": MODEL, "vector": vec![0.0f32; 192] })),
            &["embedding_zero"],
        ),
        (
            "unknown model",
            emb(json!({ "model": "facenet-512", "vector": vector(1, 2, 0.1) })),
            &["embedding_unknown_model"],
        ),
        (
            "not finite",
            emb(json!({ "model": MODEL, "vector": huge })),
            &["embedding_not_finite"],
        ),
        (
            "no embeddings",
            json!({ "embeddings": [] }),
            &["embeddings_empty"],
        ),
        (
            "embeddings not a list",
            json!({ "embeddings": "nope" }),
            &["invalid_request"],
        ),
    ];
    for (name, body, codes) in embeddings {
        let mut rec = body.clone();
        rec["top_k"] = json!(3);
        out.push(
            Case::new(
                format!("add faces: {name}"),
                "POST",
                &faces_path,
                Key::Enroll,
            )
            .json(body)
            .expect(400, codes),
        );
        out.push(
            Case::new(
                format!("recognize: {name}"),
                "POST",
                "/v1/recognize",
                Key::Recognize,
            )
            .json(rec)
            .expect(400, codes),
        );
    }
    // NaN is not JSON: a syntax error.
    let nan = format!(
        "{{\"embeddings\":[{{\"model\":\"{MODEL}\",\"vector\":[NaN{}]}}]}}",
        ",0.1".repeat(191)
    );
    out.extend([
        Case::new("NaN in JSON", "POST", &faces_path, Key::Enroll)
            .raw(Some("application/json"), nan)
            .expect(400, &["invalid_json"]),
        Case::new("zero-byte JSON body", "POST", &faces_path, Key::Enroll)
            .raw(Some("application/json"), Vec::new())
            .expect(400, &["invalid_json"]),
        Case::new("JSON without content type", "POST", &faces_path, Key::Enroll)
            .raw(None, "{}")
            .expect(415, &["unsupported_media_type"]),
        // Out-of-range parameters.
        Case::new("top_k 0", "POST", "/v1/recognize", Key::Recognize)
            .json(json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }], "top_k": 0 }))
            .expect(400, &["top_k_out_of_range"]),
        Case::new("threshold 7", "POST", "/v1/recognize", Key::Recognize)
            .json(json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }], "threshold": 7 }))
            .expect(400, &["threshold_out_of_range"]),
        // Unknown ids and malformed ids.
        Case::new("faces of an unknown person", "POST", format!("/v1/people/{unknown}/faces"), Key::Enroll)
            .json(probe.clone())
            .expect(404, &["not_found"]),
        Case::new("faces of a malformed id", "POST", "/v1/people/not-a-uuid/faces", Key::Enroll)
            .json(probe.clone())
            .expect(400, &["invalid_id"]),
        Case::new("erase an unknown person", "DELETE", format!("/v1/people/{unknown}"), Key::Admin)
            .expect(404, &["not_found"]),
        Case::new("delete an unknown face", "DELETE", format!("/v1/people/{person}/faces/{unknown}"), Key::Enroll)
            .expect(404, &["not_found"]),
        Case::new("verify an unknown person", "POST", "/v1/verify", Key::Recognize)
            .json(json!({ "person_id": unknown, "embedding": { "model": MODEL, "vector": vector(1, 2, 0.1) } }))
            .expect(404, &["not_found"]),
        // Keys: missing, malformed, unknown, wrong scope.
        Case::new("no key", "POST", "/v1/recognize", Key::None)
            .json(probe.clone())
            .expect(401, &["unauthorized"]),
        Case::new("basic authentication", "POST", "/v1/recognize", Key::Header("Basic Zm9vOmJhcg=="))
            .json(probe.clone())
            .expect(401, &["unauthorized"]),
        Case::new("unknown key", "POST", "/v1/recognize", Key::Header("Bearer vsg_not-a-real-key"))
            .json(probe.clone())
            .expect(401, &["unauthorized"]),
        Case::new("add faces with a recognize key", "POST", &faces_path, Key::Recognize)
            .json(probe.clone())
            .expect(403, &["forbidden"]),
        Case::new("recognize with an enroll key", "POST", "/v1/recognize", Key::Enroll)
            .json(probe.clone())
            .expect(403, &["forbidden"]),
        Case::new("list people with an enroll key", "GET", "/v1/people", Key::Enroll)
            .expect(403, &["forbidden"]),
        Case::new("export with a recognize key", "GET", format!("/v1/people/{person}/export"), Key::Recognize)
            .expect(403, &["forbidden"]),
        Case::new("erase with a recognize key", "DELETE", format!("/v1/people/{person}"), Key::Recognize)
            .expect(403, &["forbidden"]),
    ]);

    // Images: zero bytes, not an image, truncated, a decompression bomb, too large a body.
    for (path, key) in [
        ("/v1/detect".to_string(), Key::Recognize),
        ("/v1/recognize/image".to_string(), Key::Recognize),
        (format!("{faces_path}/image"), Key::Enroll),
    ] {
        let at = |what: &str| format!("{what} to {}", path.replace(&person.to_string(), "{id}"));
        out.extend([
            Case::new(at("zero bytes"), "POST", &path, key)
                .image(Vec::new())
                .expect(400, &["image_empty"]),
            Case::new(at("not an image"), "POST", &path, key)
                .image(b"this is not an image at all".to_vec())
                .expect(422, &["image_unsupported_format"]),
            Case::new(at("truncated JPEG"), "POST", &path, key)
                .image(truncated_jpeg())
                .expect(422, &["image_corrupt"]),
            // Refused from the header, before any pixel is decoded (shared's decoder may report
            // it as over the pixel limit or as over the image crate's own decoding limits).
            Case::new(at("decompression bomb"), "POST", &path, key)
                .image(decompression_bomb())
                .expect(422, &["image_too_many_pixels", "image_corrupt"])
                .detail_contains("limit"),
            Case::new(at("11 MB body"), "POST", &path, key)
                .image(vec![0xff; 11 * 1024 * 1024])
                .expect(413, &["payload_too_large"]),
        ]);
    }
    out
}

#[tokio::test]
async fn bad_inputs_are_problems_and_change_nothing() {
    let app = spawn_app().await;
    let person = app.create_person("Frank", consent()).await;
    assert_eq!(
        app.add_faces(person, &[vector(5, 6, 0.1)]).await.status(),
        201
    );
    let before = app.counts().await;
    let mut failures = Vec::new();
    for case in cases(person) {
        let r = case.send(&app).await;
        if let Err(why) = check_problem(r, case.status, case.codes, case.detail_contains).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    assert_eq!(app.counts().await, before, "the database changed");
}

#[tokio::test]
async fn per_key_rate_limit() {
    let app = crate::helpers::spawn_app_with(visage_backend::configuration::ServeArgs {
        port: 0,
        rate_per_minute: 3,
        ..Default::default()
    })
    .await;
    let body = json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }] });
    for _ in 0..3 {
        assert_eq!(
            app.post_json(&app.recognize_key, "/v1/recognize", &body)
                .await
                .status(),
            200
        );
    }
    let r = app
        .post_json(&app.recognize_key, "/v1/recognize", &body)
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 429, "rate_limited").await;
    // Other keys have their own bucket.
    assert_eq!(
        app.post_json(&app.admin_key, "/v1/recognize", &body)
            .await
            .status(),
        200
    );
}
