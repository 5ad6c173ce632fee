//! Running as root: PostgreSQL refuses to, so the server runs as the system user `visage-pg`
//! (created if missing) through `setpriv`, its files are chowned to it, and every parent of its
//! data directory must be traversable by it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{EmbeddedError, EmbeddedPostgres, Result, SYSTEM_USER, io_err};

/// Whether a user other than the owner can traverse every component of `dir`.
pub(super) fn traversable_by_others(dir: &Path) -> bool {
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

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("id").args(["-u", name]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", name]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    out.status.success().then_some((uid, gid))
}

pub(super) fn ensure_system_user() -> Result<(u32, u32)> {
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

impl EmbeddedPostgres {
    pub(super) fn as_server_user(&self, bin: &Path) -> Command {
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

    pub(super) fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
        }
        Ok(())
    }
}
