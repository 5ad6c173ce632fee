//! The README's two commands: `cargo xtask serve` (run the product) and `cargo xtask test`
//! (run every test).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::web::{self, WebArgs};
use crate::{cargo, on_path, root, run};

fn step(what: &str) {
    println!("\n=== xtask: {what}");
}

/// Builds the browser client into frontend/dist, then runs `visage serve` (release) on it.
pub fn serve(release_app: bool, args: &[String]) -> Result<()> {
    let dist = PathBuf::from("frontend/dist");
    step("build the browser client");
    web::build(&WebArgs {
        release: release_app,
        no_simd: false,
        dist: dist.clone(),
    })?;
    step("build and start the service");
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "--bin",
            "visage",
            "--",
            "serve",
        ])
        .arg("--web-dir")
        .arg(root().join(&dist))
        .args(args)
        .current_dir(root()))
}

/// Every test: the workspace's `cargo test`, the wasm32 build of the pipeline, and the
/// browser end-to-end test (`frontend/e2e/run.sh`).
pub fn test() -> Result<()> {
    system_packages()?;
    web::ensure_wasm_target()?;
    step("cargo test (pipeline, service with its embedded PostgreSQL, client logic)");
    run(cargo().arg("test").current_dir(root()))?;
    step("the pipeline builds for wasm32");
    run(cargo()
        .args([
            "build",
            "--quiet",
            "-p",
            "visage-shared",
            "--target",
            web::WASM_TARGET,
        ])
        .current_dir(root()))?;
    step("browser end-to-end test (headless Chromium, fake webcam)");
    run(&mut Command::new(root().join("frontend/e2e/run.sh")))?;
    step("all tests passed");
    Ok(())
}

/// Chromium and ffmpeg (for the fake-webcam videos) from Debian's packages, and Node.js for
/// the browser driver. Installed with apt-get when missing and running as root.
fn system_packages() -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut missing = Vec::new();
    if !std::path::Path::new(&chromium).exists() {
        missing.push("chromium");
    }
    if !on_path("ffmpeg") {
        missing.push("ffmpeg");
    }
    if !on_path("node") || !on_path("npm") {
        bail!(
            "Node.js and npm are required (the browser test drives Chromium with playwright-core)"
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root_user || !on_path("apt-get") {
        bail!(
            "the browser test needs {}: install with `sudo apt-get install {}`",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    step(&format!("installing {} (apt-get)", missing.join(", ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing the browser test's packages")
}
