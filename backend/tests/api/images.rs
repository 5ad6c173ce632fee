//! Image requests on real photos (fetched at test time, never committed).

use serde_json::Value;

use crate::helpers::{assert_problem, consent, spawn_app};

fn samples() -> Option<Vec<Vec<u8>>> {
    match visage_shared::fixtures::face_api_samples() {
        Ok(paths) => Some(
            paths
                .iter()
                .map(|p| std::fs::read(p).expect("read sample"))
                .collect(),
        ),
        Err(e) => {
            eprintln!("skipping image tests: {e}");
            None
        }
    }
}

async fn post_image(
    app: &crate::helpers::TestApp,
    key: &str,
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .header("content-type", "image/jpeg")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn enroll_by_image_and_recognize_in_a_group_photo() {
    let Some(photos) = samples() else { return };
    let app = spawn_app().await;
    let group = photos[0].clone();

    // Detect: the known number of faces.
    let r = post_image(&app, &app.recognize_key, "/v1/detect", group.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let faces = v["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), visage_shared::fixtures::FACE_API_COUNTS[0]);

    // A group photo cannot enroll one person.
    let p = app.create_person("Group member", consent()).await;
    let before = app.counts().await;
    let r = post_image(
        &app,
        &app.enroll_key,
        &format!("/v1/people/{p}/faces/image"),
        group.clone(),
    )
    .await;
    let prob = assert_problem(r, 422, "multiple_faces").await;
    assert_eq!(prob["extra"]["faces_found"], faces.len());
    assert_eq!(app.counts().await, before);

    // Crop the first face generously and enroll it.
    let img = image::load_from_memory(&group).expect("decode").to_rgb8();
    let b = &faces[0]["detection"]["bbox"];
    let (x, y, w, h) = (
        b["x"].as_f64().unwrap_or(0.0),
        b["y"].as_f64().unwrap_or(0.0),
        b["width"].as_f64().unwrap_or(0.0),
        b["height"].as_f64().unwrap_or(0.0),
    );
    let (cx, cy, side) = (x + w / 2.0, y + h / 2.0, w.max(h) * 2.0);
    let x0 = (cx - side / 2.0).max(0.0) as u32;
    let y0 = (cy - side / 2.0).max(0.0) as u32;
    let cw = (side as u32).min(img.width() - x0);
    let ch = (side as u32).min(img.height() - y0);
    let crop = image::imageops::crop_imm(&img, x0, y0, cw, ch).to_image();
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(crop)
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .expect("encode");
    let r = post_image(
        &app,
        &app.enroll_key,
        &format!("/v1/people/{p}/faces/image"),
        buf.into_inner(),
    )
    .await;
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    if status == 422 && v["code"] == "face_quality" {
        // The quality gate explains itself; nothing more to check on this crop.
        assert!(
            v["extra"]["issues"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        return;
    }
    assert_eq!(status, 201, "{v}");

    // Recognize the group photo: one face is that person.
    let r = post_image(&app, &app.recognize_key, "/v1/recognize/image", group).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), faces.len());
    let matched: Vec<&Value> = results
        .iter()
        .filter(|r| r["candidates"][0]["match"] == true)
        .collect();
    assert_eq!(matched.len(), 1, "{v}");
    assert_eq!(matched[0]["candidates"][0]["person_id"], p.to_string());
    assert!(matched[0]["face"]["detection"]["bbox"].is_object());
}
