//! Hot standbys of the embedded server, run from the same binaries on other loopback ports with
//! PostgreSQL's own streaming replication (issue 15): the primary is made to accept replication
//! connections from 127.0.0.1, `pg_basebackup -R` copies it into `standbys/<name>/data` (and
//! writes `standby.signal` and `primary_conninfo`), and `pg_ctl` starts the copy.
//!
//! A standby lives as long as its [`Standby`] handle: dropping the handle stops it and deletes
//! its data, so its copy never outlives the process (which is why the backup skips fsync). A
//! `standbys/<name>.lock` file held by the handle keeps two processes from using one name, and
//! lets a later run wipe the folder a crashed one left behind.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server::server_options;
use super::{EmbeddedError, EmbeddedPostgres, Result, io_err, mkdir, run};

/// The role the standby replicates as: the primary's superuser, whose password is the one of
/// [`EmbeddedPostgres::url`], so no second secret has to be kept.
const REPLICATION_USER: &str = "postgres";

/// How long a new standby may take to accept connections in recovery.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running hot standby of the embedded server. Dropping it stops the standby and deletes its
/// data (blocking, best effort).
pub struct Standby {
    pg: EmbeddedPostgres,
    name: String,
    dir: PathBuf,
    port: u16,
    password: String,
    /// `standbys/<name>.lock`, held for the standby's lifetime (see the module comment).
    _lock: File,
}

impl fmt::Debug for Standby {
    // By hand, to keep the password out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Standby")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A standby's name becomes a folder name: keep it to a safe alphabet.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EmbeddedError::Setup(format!(
            "standby name {name:?}: use 1 to 63 letters, digits, '-' or '_'"
        )))
    }
}

/// Whether `pg_hba.conf` text has a line letting `user` make replication connections over TCP
/// from 127.0.0.1 (initdb's default file has one for every user). Only the usual spellings are
/// recognised: a line missed here just gets a duplicate appended, which is harmless.
pub(super) fn hba_allows_loopback_replication(text: &str, user: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [kind, dbs, users, addr, rest @ ..] = fields.as_slice() else {
            return false;
        };
        let (loopback, method) = match (*addr, rest) {
            ("127.0.0.1", ["255.255.255.255", method, ..]) => (true, *method),
            (addr, [method, ..]) => (
                matches!(addr, "127.0.0.1/32" | "samehost" | "all" | "0.0.0.0/0"),
                *method,
            ),
            _ => (false, ""),
        };
        // hostssl would not match: the embedded server has no TLS.
        matches!(*kind, "host" | "hostnossl")
            && dbs.split(',').any(|d| d == "replication")
            && users.split(',').any(|u| u == "all" || u == user)
            && loopback
            && method != "reject"
    })
}

/// The postmaster's pid from the first line of `postmaster.pid`, if that process still runs
/// (a zombie does not count: a killed postmaster may wait for a parent that never reaps it)
/// and is a `postgres` (a stale file's pid may have been reused by anything).
fn live_postmaster(data: &Path) -> Option<i32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() != "postgres" {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    (state != 'Z' && state != 'X').then_some(pid)
}

/// Locks `<name>.lock` without waiting. The handle deletes the file before it unlocks, so a
/// lock won on a file that is no longer at `path` (deleted meanwhile) is retried on a new one.
fn lock_name(path: &Path, name: &str) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..10 {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(EmbeddedError::Setup(format!(
                    "standby {name} is in use by another process"
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
        }
        let held = lock.metadata().map_err(io_err(path))?;
        if let Ok(now) = fs::metadata(path)
            && (now.dev(), now.ino()) == (held.dev(), held.ino())
        {
            return Ok(lock);
        }
    }
    Err(EmbeddedError::Setup(format!(
        "standby {name}: cannot lock {}",
        path.display()
    )))
}

/// A loopback port free right now (the server binds it a moment later; a start that loses the
/// race is retried on another port).
fn free_port(dir: &Path) -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err(dir))?;
    Ok(l.local_addr().map_err(io_err(dir))?.port())
}

/// The last lines of a server log, for error messages (pg_ctl only says "see the log").
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl EmbeddedPostgres {
    /// Runs one SQL statement with `psql` on the server at `port` (database `postgres`) and
    /// returns its unaligned, trimmed output.
    fn psql(&self, port: u16, password: &str, sql: &str) -> Result<String> {
        // -X: no ~/.psqlrc; -w: never prompt for a password.
        let out = run(
            Command::new(self.bin("psql"))
                .args(["-X", "-q", "-t", "-A", "-w", "-h", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .args(["-U", REPLICATION_USER, "-d", "postgres", "-c", sql])
                .env("PGPASSWORD", password)
                .env("PGCONNECT_TIMEOUT", "5"),
            "psql",
        )?;
        Ok(out.trim().to_string())
    }

    /// Makes sure the primary (running on `port`, its lock held) can feed a standby over
    /// loopback: WAL detailed enough, spare WAL senders, and a `pg_hba.conf` line.
    fn ensure_replication_access(&self, port: u16, password: &str) -> Result<()> {
        let settings = self.psql(
            port,
            password,
            "SELECT current_setting('wal_level') || ' ' || current_setting('max_wal_senders')",
        )?;
        let (level, senders) = settings.split_once(' ').unwrap_or((&settings, ""));
        let senders: u32 = senders.parse().unwrap_or(0);
        // pg_basebackup -X stream uses two senders while it copies, the standby one after.
        if level == "minimal" || senders < 3 {
            return Err(EmbeddedError::Setup(format!(
                "the primary has wal_level={level} and max_wal_senders={senders}: a standby \
                 needs wal_level=replica and max_wal_senders of at least 3"
            )));
        }
        let hba = self.data_dir().join("pg_hba.conf");
        let text = fs::read_to_string(&hba).map_err(io_err(&hba))?;
        if hba_allows_loopback_replication(&text, REPLICATION_USER) {
            return Ok(());
        }
        tracing::info!("allowing loopback replication in {}", hba.display());
        let mut line = String::new();
        if !text.is_empty() && !text.ends_with('\n') {
            line.push('\n');
        }
        line.push_str(&format!(
            "# added by visage for loopback standbys\n\
             host    replication     {REPLICATION_USER}        127.0.0.1/32            scram-sha-256\n"
        ));
        let mut f = OpenOptions::new()
            .append(true)
            .open(&hba)
            .map_err(io_err(&hba))?;
        std::io::Write::write_all(&mut f, line.as_bytes()).map_err(io_err(&hba))?;
        drop(f);
        // The reload is a signal the postmaster handles a moment later; a new session reports
        // the postmaster's load time, so wait until it changes to know the new line is in force.
        let before = self.psql(port, password, "SELECT pg_conf_load_time()")?;
        self.psql(port, password, "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql(port, password, "SELECT pg_conf_load_time()")? == before {
            if Instant::now() > deadline {
                return Err(EmbeddedError::Setup(
                    "the primary did not reload pg_hba.conf within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts a hot standby named `name` of this (running) server on a free loopback port and
    /// waits until it accepts connections in recovery. Its data lives in
    /// `<base>/standbys/<name>/data`, wiped first if an earlier run left it behind; two handles
    /// with one name cannot coexist. Blocking: call it off the async runtime.
    pub fn start_standby(&self, name: &str) -> Result<Standby> {
        check_name(name)?;
        let root = self.base.join("standbys");
        mkdir(&root, 0o755)?;
        let lock_path = root.join(format!("{name}.lock"));
        let lock = lock_name(&lock_path, name)?;
        let dir = root.join(name);
        let data = dir.join("data");
        // Left by a run that crashed: its postmaster may even still run on the old copy.
        if live_postmaster(&data).is_some() {
            let _ = run(
                self.as_server_user(&self.bin("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "-t", "30", "stop"]),
                "pg_ctl stop (leftover standby)",
            );
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        // From here on, dropping the handle cleans up whatever fails.
        let mut standby = Standby {
            pg: self.clone(),
            name: name.to_string(),
            dir,
            port: 0,
            password: self.password()?,
            _lock: lock,
        };
        for d in [&standby.dir, &data] {
            mkdir(d, 0o700)?;
            self.chown(d)?;
        }
        {
            // The primary must neither stop nor change port while it is copied.
            let _primary = self.lock()?;
            if !self.running_locked() {
                return Err(EmbeddedError::Setup(
                    "the embedded server is not running: start it before a standby".into(),
                ));
            }
            let port = self.port()?;
            self.ensure_replication_access(port, &standby.password)?;
            // --no-sync: the copy is deleted with the handle, it never has to survive a crash
            // of the machine.
            run(
                self.as_server_user(&self.bin("pg_basebackup"))
                    .args(["-h", "127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["-U", REPLICATION_USER, "-w", "-D"])
                    .arg(&data)
                    .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"])
                    .arg(format!("--label=visage standby {name}"))
                    .env("PGPASSWORD", &standby.password),
                "pg_basebackup",
            )?;
        }
        // The primary's own log came along with its data directory; the standby logs next to
        // its data instead.
        let _ = fs::remove_file(data.join("server.log"));
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port(&standby.dir)?;
            match standby.pg_ctl_start(port) {
                Ok(()) => {
                    standby.port = port;
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        standby.wait_in_recovery()?;
        Ok(standby)
    }
}

impl Standby {
    /// The standby's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory (`<base>/standbys/<name>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.with_file_name(format!("{}.lock", self.name))
    }

    /// Its server log (`<base>/standbys/<name>/server.log`).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The connection URL of database `db` on the standby: the primary's user and password.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{REPLICATION_USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    fn pg_ctl_start(&self, port: u16) -> Result<()> {
        // fsync=off: the copy is disposable (deleted with the handle, as pg_basebackup's
        // --no-sync above says), and with fsync on, the standby's start-up first fsyncs the
        // unsynced copy file by file: over a minute for a primary with many databases on a
        // busy disk, past pg_ctl's wait.
        let opts = format!("{} -c hot_standby=on -c fsync=off", server_options(port)?);
        run(
            self.pg
                .as_server_user(&self.pg.bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-o")
                .arg(opts)
                .arg("-l")
                .arg(self.log_file())
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "pg_ctl start (standby)",
        )
        .map(|_| ())
        .map_err(|e| EmbeddedError::Setup(format!("{e}\n{}", log_tail(&self.log_file()))))
    }

    /// Waits until the standby answers queries and says it is in recovery (pg_ctl -w already
    /// waits for connections; this also proves the password and the standby mode).
    fn wait_in_recovery(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match self
                .pg
                .psql(self.port, &self.password, "SELECT pg_is_in_recovery()")
            {
                Ok(s) if s == "t" => return Ok(()),
                Ok(s) => format!("pg_is_in_recovery() is {s:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(EmbeddedError::Setup(format!(
                    "standby {} not ready in recovery after {} s: {last}\n{}",
                    self.name,
                    READY_TIMEOUT.as_secs(),
                    log_tail(&self.log_file())
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the standby's postmaster with SIGKILL, as a crash would, and waits until it is
    /// gone (connections are refused from then on). Its data stays until the handle drops.
    pub fn kill(&self) -> Result<()> {
        let Some(pid) = live_postmaster(&self.data_dir()) else {
            return Err(EmbeddedError::Setup(format!(
                "standby {} is not running",
                self.name
            )));
        };
        // SAFETY: kill has no memory-safety preconditions; the pid was checked to be a live
        // postgres just above.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(EmbeddedError::Setup(format!(
                "cannot kill the standby's postmaster {pid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while live_postmaster(&self.data_dir()).is_some() {
            if Instant::now() > deadline {
                return Err(EmbeddedError::Setup(format!(
                    "the standby's postmaster {pid} outlived SIGKILL for 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the standby (`pg_ctl stop -m fast`); nothing to do if it is not running (killed).
    pub fn stop(&self) -> Result<()> {
        if live_postmaster(&self.data_dir()).is_none() {
            return Ok(());
        }
        run(
            self.pg
                .as_server_user(&self.pg.bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop (standby)",
        )
        .map(|_| ())
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("stopping standby {}: {e}", self.name);
            // Do not leave a server running on deleted files.
            let _ = self.kill();
        }
        if self.dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            tracing::warn!("removing {}: {e}", self.dir.display());
        }
        // Still locked here (fields drop after this body): see lock_name.
        let _ = fs::remove_file(self.lock_path());
    }
}

#[cfg(test)]
mod tests {
    use super::{check_name, hba_allows_loopback_replication};

    #[test]
    fn standby_names_are_safe_folder_names() {
        for ok in ["standby", "replica-2", "r_1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_replication_lines_are_recognised() {
        let initdb = "local   replication     all                                     trust\n\
                      host    replication     all             127.0.0.1/32            scram-sha-256\n";
        assert!(hba_allows_loopback_replication(initdb, "postgres"));
        for yes in [
            "host replication postgres 127.0.0.1/32 scram-sha-256",
            "hostnossl all,replication x,postgres samehost md5 # comment",
            "host replication all 127.0.0.1 255.255.255.255 trust",
        ] {
            assert!(hba_allows_loopback_replication(yes, "postgres"), "{yes}");
        }
        for no in [
            "# host replication all 127.0.0.1/32 scram-sha-256",
            "local replication all trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host replication other 127.0.0.1/32 scram-sha-256",
            "host replication all ::1/128 scram-sha-256",
            "host replication all 127.0.0.1/32 reject",
            "hostssl replication all 127.0.0.1/32 scram-sha-256",
            "host replication all 127.0.0.1/32",
        ] {
            assert!(!hba_allows_loopback_replication(no, "postgres"), "{no}");
        }
    }
}
