//! A bad-input corpus: every case is a 4xx problem response and the database is unchanged.

use serde_json::{Value, json};

use crate::helpers::{MODEL, assert_problem, consent, spawn_app, vector};

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

#[tokio::test]
async fn bad_inputs_are_problems_and_change_nothing() {
    let app = spawn_app().await;
    let person = app.create_person("Frank", consent()).await;
    assert_eq!(
        app.add_faces(person, &[vector(5, 6, 0.1)]).await.status(),
        201
    );
    let before = app.counts().await;
    let faces_path = format!("/v1/people/{person}/faces");
    let emb = |v: Value| json!({ "embeddings": [v] });
    let mut huge: Vec<Value> = vec![json!(0.1); 192];
    huge[3] = json!(1e39);

    // Embeddings.
    let cases: Vec<(Value, &str)> = vec![
        (
            emb(json!({ "model": MODEL, "vector": vec![0.5f32; 10] })),
            "embedding_wrong_length",
        ),
        (
            emb(json!({ "model": MODEL, "vector": vec![0.0f32; 192] })),
            "embedding_zero",
        ),
        (
            emb(json!({ "model": "facenet-512", "vector": vector(1, 2, 0.1) })),
            "embedding_unknown_model",
        ),
        (
            emb(json!({ "model": MODEL, "vector": huge })),
            "embedding_not_finite",
        ),
        (json!({ "embeddings": [] }), "embeddings_empty"),
        (json!({ "embeddings": "nope" }), "invalid_request"),
    ];
    for (body, code) in &cases {
        assert_problem(
            app.post_json(&app.enroll_key, &faces_path, body).await,
            400,
            code,
        )
        .await;
        let mut rec = body.clone();
        rec["top_k"] = json!(3);
        assert_problem(
            app.post_json(&app.recognize_key, "/v1/recognize", &rec)
                .await,
            400,
            code,
        )
        .await;
    }
    // NaN is not JSON: a syntax error.
    let raw = format!(
        "{{\"embeddings\":[{{\"model\":\"{MODEL}\",\"vector\":[NaN{}]}}]}}",
        ",0.1".repeat(191)
    );
    let r = app
        .client
        .post(app.url(&faces_path))
        .bearer_auth(&app.enroll_key)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("request");
    assert_problem(r, 400, "invalid_json").await;
    // Zero-byte JSON body, wrong content type.
    let r = app
        .client
        .post(app.url(&faces_path))
        .bearer_auth(&app.enroll_key)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("request");
    assert_problem(r, 400, "invalid_json").await;
    let r = app
        .client
        .post(app.url(&faces_path))
        .bearer_auth(&app.enroll_key)
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_problem(r, 415, "unsupported_media_type").await;
    // Out-of-range parameters.
    let r = app
        .post_json(
            &app.recognize_key,
            "/v1/recognize",
            &json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }], "top_k": 0 }),
        )
        .await;
    assert_problem(r, 400, "top_k_out_of_range").await;
    let r = app.post_json(&app.recognize_key, "/v1/recognize", &json!({ "embeddings": [{ "model": MODEL, "vector": vector(1, 2, 0.1) }], "threshold": 7 })).await;
    assert_problem(r, 400, "threshold_out_of_range").await;

    // Unknown ids and malformed ids.
    let unknown = uuid::Uuid::new_v4();
    assert_problem(
        app.add_faces(unknown, &[vector(1, 2, 0.1)]).await,
        404,
        "not_found",
    )
    .await;
    let r = app
        .client
        .post(app.url("/v1/people/not-a-uuid/faces"))
        .bearer_auth(&app.enroll_key)
        .json(&emb(json!({ "model": MODEL, "vector": vector(1, 2, 0.1) })))
        .send()
        .await
        .expect("request");
    assert_problem(r, 400, "invalid_id").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/people/{unknown}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .expect("request");
    assert_problem(r, 404, "not_found").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/people/{person}/faces/{unknown}")))
        .bearer_auth(&app.enroll_key)
        .send()
        .await
        .expect("request");
    assert_problem(r, 404, "not_found").await;
    let r = app.post_json(&app.recognize_key, "/v1/verify", &json!({ "person_id": unknown, "embedding": { "model": MODEL, "vector": vector(1, 2, 0.1) } })).await;
    assert_problem(r, 404, "not_found").await;

    // Keys: missing, malformed, unknown, wrong scope.
    let body = emb(json!({ "model": MODEL, "vector": vector(1, 2, 0.1) }));
    let r = app
        .client
        .post(app.url("/v1/recognize"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_problem(r, 401, "unauthorized").await;
    let r = app
        .client
        .post(app.url("/v1/recognize"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_problem(r, 401, "unauthorized").await;
    assert_problem(
        app.post_json("vsg_not-a-real-key", "/v1/recognize", &body)
            .await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.post_json(&app.recognize_key, &faces_path, &body).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.post_json(&app.enroll_key, "/v1/recognize", &body).await,
        403,
        "forbidden",
    )
    .await;
    let r = app
        .client
        .get(app.url("/v1/people"))
        .bearer_auth(&app.enroll_key)
        .send()
        .await
        .expect("request");
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .client
        .get(app.url(&format!("/v1/people/{person}/export")))
        .bearer_auth(&app.recognize_key)
        .send()
        .await
        .expect("request");
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/people/{person}")))
        .bearer_auth(&app.recognize_key)
        .send()
        .await
        .expect("request");
    assert_problem(r, 403, "forbidden").await;

    // Images: zero bytes, not an image, truncated, a decompression bomb, too large a body.
    for path in ["/v1/detect", "/v1/recognize/image", faces_path.as_str()] {
        let path = if path.ends_with("/faces") {
            format!("{path}/image")
        } else {
            path.to_string()
        };
        let key = if path.contains("/faces") {
            &app.enroll_key
        } else {
            &app.recognize_key
        };
        assert_problem(
            app.post_image(key, &path, Vec::new()).await,
            400,
            "image_empty",
        )
        .await;
        assert_problem(
            app.post_image(key, &path, b"this is not an image at all".to_vec())
                .await,
            422,
            "image_unsupported_format",
        )
        .await;
        assert_problem(
            app.post_image(key, &path, truncated_jpeg()).await,
            422,
            "image_corrupt",
        )
        .await;
        // Refused from the header, before any pixel is decoded (shared's decoder may report it
        // as over the pixel limit or as over the image crate's own decoding limits).
        let r = app.post_image(key, &path, decompression_bomb()).await;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.expect("problem");
        assert!(
            v["code"] == "image_too_many_pixels" || v["code"] == "image_corrupt",
            "{v}"
        );
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains("limit")),
            "{v}"
        );
        assert_problem(
            app.post_image(key, &path, vec![0xff; 11 * 1024 * 1024])
                .await,
            413,
            "payload_too_large",
        )
        .await;
    }

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
