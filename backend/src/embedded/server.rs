//! The server itself: `initdb` once, `pg_ctl start` (on the remembered port, or another one
//! when it is taken) and `pg_ctl stop`, whether it runs, and its `shared_buffers` setting.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use super::{EmbeddedError, EmbeddedPostgres, Result, io_err, mkdir, run};

impl EmbeddedPostgres {
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

    pub(super) fn running_locked(&self) -> bool {
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
        let opts = server_options(port)?;
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

    pub(super) fn start_locked(&self) -> Result<()> {
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

    pub(super) fn stop_locked(&self) -> Result<()> {
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
}

/// The `-o` options of `pg_ctl start` on `port`, the same for the primary and its standbys
/// (a hot standby needs `max_connections` and the like at least as high as its primary's).
pub(super) fn server_options(port: u16) -> Result<String> {
    let shared_buffers = shared_buffers_setting(std::env::var("VISAGE_PG_SHARED_BUFFERS").ok())?;
    // wal_recycle=off: a WAL segment released by the post-erasure scrub's checkpoint is
    // unlinked, not renamed ahead with the erased rows still in it (docs/erasure.md).
    Ok(format!(
        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c dynamic_shared_memory_type=mmap -c max_connections=300 -c shared_buffers={shared_buffers} -c wal_recycle=off"
    ))
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
