//! The API contract test: the service, on a fresh embedded database, against its own OpenAPI
//! document with schemathesis (`--checks all`), once with a key of each scope.
//!
//! Two things are left out, both explained in SECURITY.md ("API contract"): the
//! `positive_data_acceptance` check (schema-valid requests that the service refuses by design:
//! bytes that are not a photo, a zero vector, a consent whose dates or policy hash do not add
//! up, a cursor it never gave out) and the operations that revoke or rotate a key (the fuzzer
//! would revoke the very key it authenticates with; `tests/api/security.rs` covers them).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{output, progress, root, suite, venv_with};

/// schemathesis, pinned.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// Runs the contract test; fails on any schemathesis failure.
pub fn run() -> Result<()> {
    let python = venv_with("schemathesis", &[SCHEMATHESIS])?;
    let st = python.with_file_name("schemathesis");
    let visage = suite::build_service(false)?;
    let service = Service::start(&visage)?;
    let enroll = service.create_key("contract-enroll", "enroll")?;
    let recognize = service.create_key("contract-recognize", "recognize")?;
    let seed = std::env::var("VISAGE_CONTRACT_SEED").unwrap_or_else(|_| "1".into());
    for (scope, key, examples) in [
        ("admin", &service.admin_key, "100"),
        ("enroll", &enroll, "25"),
        ("recognize", &recognize, "25"),
    ] {
        progress::say(&format!(
            "schemathesis with the {scope} key ({examples} examples per operation, seed {seed})"
        ));
        crate::run(
            Command::new(&st)
                .arg("run")
                .arg(format!("{}/openapi.json", service.url))
                .args(["--checks", "all"])
                .args(["--exclude-checks", "positive_data_acceptance"])
                .args(["--exclude-path-regex", "/v1/keys/.*/(revoke|rotate)"])
                .args(["--max-examples", examples, "--seed", &seed, "--no-color"])
                .arg("-H")
                .arg(format!("Authorization: Bearer {key}")),
        )
        .with_context(|| format!("schemathesis found failures with the {scope} key"))?;
    }
    Ok(())
}

/// `visage serve` on a random port and its own embedded PostgreSQL, stopped (SIGTERM, so it
/// stops PostgreSQL too) and removed on drop.
struct Service {
    child: Child,
    url: String,
    admin_key: String,
    visage: PathBuf,
    pg_dir: PathBuf,
}

impl Service {
    fn start(visage: &Path) -> Result<Self> {
        // Outside any 0700 home: PostgreSQL runs as an unprivileged user and must reach it.
        let pg_dir = PathBuf::from(format!("/var/tmp/visage-contract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pg_dir);
        let log_path = pg_dir.with_extension("log");
        let log = File::create(&log_path)?;
        let admin_key = format!("vsg_contract_{}", hex_nonce());
        let child = Command::new(visage)
            .args(["serve", "--port", "0", "--bootstrap-key", &admin_key])
            // Generous limits: the fuzzer sends thousands of requests, many without a key.
            .args(["--rate-per-minute", "1000000"])
            .args(["--failed-auth-per-minute", "1000000"])
            .env("VISAGE_PG_DIR", &pg_dir)
            .current_dir(root())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting visage serve")?;
        let mut service = Self {
            child,
            url: String::new(),
            admin_key,
            visage: visage.to_path_buf(),
            pg_dir,
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(300) {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = text
                .split("visage listening on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .filter(|p| !p.is_empty())
            {
                service.url = format!("http://127.0.0.1:{port}");
                return Ok(service);
            }
            if let Some(status) = service.child.try_wait()? {
                bail!("visage serve exited ({status}):\n{text}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "visage serve did not start in 5 minutes (log: {})",
            log_path.display()
        )
    }

    /// A key with one scope, made with the CLI against the same database.
    fn create_key(&self, name: &str, scope: &str) -> Result<String> {
        let out = output(
            Command::new(&self.visage)
                .args(["create-key", "--name", name, "--scope", scope])
                .env("VISAGE_PG_DIR", &self.pg_dir)
                .current_dir(root()),
        )?;
        let key = out.trim().to_string();
        if !key.starts_with("vsg_") {
            bail!("create-key gave no key: {out}");
        }
        Ok(key)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        crate::terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.pg_dir);
        let _ = std::fs::remove_file(self.pg_dir.with_extension("log"));
    }
}

/// 16 random bytes as hex, from the kernel.
fn hex_nonce() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
