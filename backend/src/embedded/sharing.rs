//! One server shared by several processes: a file lock serialises start and stop, each process
//! registers under `users/`, the last one to leave stops the server (unless `visage db start`
//! started it), and the process-wide handle is released at exit.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{EmbeddedError, EmbeddedPostgres, Result, io_err, mkdir};

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl EmbeddedPostgres {
    pub(super) fn lock(&self) -> Result<File> {
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
