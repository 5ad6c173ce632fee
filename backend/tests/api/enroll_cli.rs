//! `visage enroll DIR` (issue 15): batch enrollment over HTTP from a folder, killed halfway and
//! run again: the second run skips what the first settled, creates nobody twice, and ends with
//! every photo enrolled or refused with the service's reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, consent, spawn_app};

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A folder of people cut out of the face-api demo group photos (fetched at test time): one
/// sub-folder per detected face with two crops of it, plus files the service must refuse.
async fn folder(app: &TestApp) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("visage-enroll-test-{}", uuid::Uuid::new_v4()));
    let samples = visage_shared::fixtures::face_api_samples().expect("fetch the demo photos");
    let mut n = 0;
    for sample in [&samples[5], &samples[4]] {
        let bytes = std::fs::read(sample).expect("read sample");
        let r = app
            .post_image(&app.recognize_key, "/v1/detect", bytes.clone())
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        let img = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        for face in v["faces"].as_array().expect("faces") {
            let b = &face["detection"]["bbox"];
            let (cx, cy) = (
                num(&b["x"]) + num(&b["width"]) / 2.0,
                num(&b["y"]) + num(&b["height"]) / 2.0,
            );
            let person = dir.join(format!("person-{n}"));
            std::fs::create_dir_all(&person).expect("dir");
            for (scale, file, format) in [
                (2.0, "a.jpg", image::ImageFormat::Jpeg),
                (2.6, "b.png", image::ImageFormat::Png),
            ] {
                let side = num(&b["width"]).max(num(&b["height"])) * scale;
                let x0 = (cx - side / 2.0).max(0.0) as u32;
                let y0 = (cy - side / 2.0).max(0.0) as u32;
                let w = (side as u32).min(img.width() - x0);
                let h = (side as u32).min(img.height() - y0);
                image::imageops::crop_imm(&img, x0, y0, w, h)
                    .to_image()
                    .save_with_format(person.join(file), format)
                    .expect("write crop");
            }
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} faces in the demo photos");
    // What must be refused: a group photo (several faces), damaged bytes, a text file.
    let extra = dir.join("zz-refusals");
    std::fs::create_dir_all(&extra).expect("dir");
    std::fs::copy(&samples[5], extra.join("group.jpg")).expect("copy");
    std::fs::write(extra.join("damaged.jpg"), b"\xFF\xD8\xFF\xE0 not really").expect("write");
    std::fs::write(extra.join("notes.txt"), b"hello").expect("write");
    dir
}

fn state(dir: &Path) -> Value {
    std::fs::read(dir.join(".visage-enroll-default.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn settled(state: &Value) -> usize {
    state["people"]
        .as_object()
        .map(|p| {
            p.values()
                .map(|x| x["photos"].as_object().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

fn enroll_command(app: &TestApp, dir: &Path, consent_file: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_visage"));
    c.arg("enroll")
        .arg(dir)
        .arg("--consent")
        .arg(consent_file)
        .arg("--url")
        .arg(&app.base)
        .env("VISAGE_API_KEY", &app.enroll_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[tokio::test]
async fn batch_enrollment_resumes_after_being_killed_halfway() {
    let app = spawn_app().await;
    let dir = folder(&app).await;
    let photos: usize = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| {
            std::fs::read_dir(e.expect("entry").path())
                .expect("sub")
                .count()
        })
        .sum();
    let consent_file = dir.with_extension("consent.json");
    std::fs::write(&consent_file, consent().to_string()).expect("consent");

    // First run, killed (SIGKILL) once a few photos are settled.
    let mut child = enroll_command(&app, &dir, &consent_file)
        .spawn()
        .expect("run visage enroll");
    let deadline = Instant::now() + Duration::from_secs(120);
    while settled(&state(&dir)) < 3 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "visage enroll ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let first = settled(&state(&dir));
    assert!(
        first < photos,
        "the first run finished all {photos} photos before the kill"
    );

    // Second run: goes on from there and ends.
    let out = tokio::task::spawn_blocking({
        let mut c = enroll_command(&app, &dir, &consent_file);
        move || c.output().expect("run visage enroll")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{first} skipped")),
        "the second run did not skip the {first} settled photos: {stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");

    // Every photo settled; the service holds exactly what the state file says.
    let s = state(&dir);
    assert_eq!(settled(&s), photos, "{s}");
    let people = s["people"].as_object().expect("people");
    let mut enrolled = 0;
    for (folder, p) in people {
        let fates: Vec<&str> = p["photos"]
            .as_object()
            .expect("photos")
            .values()
            .filter_map(|f| f["status"].as_str())
            .collect();
        let ok = fates.iter().filter(|f| **f == "enrolled").count();
        enrolled += ok;
        let id = p["person_id"].as_str().expect("person id");
        let v: Value = app
            .get(&app.admin_key, &format!("/v1/people/{id}"))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(v["face_count"], ok, "{folder}: {v}");
        assert_eq!(v["name"], folder.as_str());
    }
    let refusals = &people["zz-refusals"]["photos"];
    assert_eq!(
        refusals["group.jpg"]["code"], "multiple_faces",
        "{refusals}"
    );
    assert_eq!(refusals["notes.txt"]["code"], "not_a_photo", "{refusals}");
    assert_eq!(refusals["damaged.jpg"]["status"], "refused", "{refusals}");
    assert!(enrolled >= 6, "only {enrolled} photos enrolled");
    // Nobody was created twice: one person per folder in the database.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count as usize, people.len());

    // A third run has nothing left to do.
    let out = enroll_command(&app, &dir, &consent_file)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "0 photos enrolled, 0 people created, {photos} skipped"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&consent_file);
}
