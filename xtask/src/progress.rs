//! Stage lines for the long commands (`serve`, `test`): what runs, how long a cold first run of
//! it takes, and once it is done, how long it took and the total so far:
//!
//! ```text
//! [2/4] building the browser client (release wasm; first build ~9 min on 2 cores) ...
//! [2/4] done in 3m12s (total 7m40s)
//! ```
//!
//! On a terminal the stage stays on one line with its elapsed time counting, and the output of
//! the commands it runs ([`crate::run`]) is passed through line by line above it.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The stage running now, when the status line is drawn (stdout is a terminal).
static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

/// What the unit tests' relayed commands printed (tests do not write to the terminal).
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Active {
    line: String,
    t0: Instant,
}

/// The numbered stages of one command.
pub struct Stages {
    total: usize,
    n: usize,
    start: Instant,
    tty: bool,
}

impl Stages {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            n: 0,
            start: Instant::now(),
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Time since the first stage began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The next stage's number and line, printed without running anything (for a last stage
    /// that does not end, like the service).
    pub fn announce(&mut self, what: &str) {
        self.n += 1;
        println!("[{}/{}] {what}", self.n, self.total);
    }

    /// Runs `work` as the next stage. `cold` says how long a first run takes (from a cold cargo
    /// target directory, on 2 cores).
    pub fn run<T>(
        &mut self,
        what: &str,
        cold: &str,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.n += 1;
        let head = format!("[{}/{}]", self.n, self.total);
        let line = format!("{head} {what} ({cold}) ...");
        let t0 = Instant::now();
        if self.tty {
            *lock() = Some(Active {
                line: line.clone(),
                t0,
            });
            let active = lock();
            redraw(&mut std::io::stdout().lock(), active.as_ref());
            drop(active);
            spawn_ticker();
        } else {
            println!("{line}");
        }
        let result = work();
        let took = t0.elapsed();
        let end = match &result {
            Ok(_) => format!(
                "done in {} (total {})",
                duration(took),
                duration(self.start.elapsed())
            ),
            Err(_) => format!("failed after {}", duration(took)),
        };
        if self.tty {
            *lock() = None;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "\r\x1b[K{line} {end}");
            let _ = out.flush();
        } else {
            println!("{head} {end}");
        }
        result
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Active>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn redraw(out: &mut impl Write, active: Option<&Active>) {
    if let Some(a) = active {
        let _ = write!(out, "\r\x1b[K{} {}", a.line, duration(a.t0.elapsed()));
        let _ = out.flush();
    }
}

/// Prints a line of xtask's own, above the status line when one is drawn.
pub fn say(text: &str) {
    let active = lock();
    let mut out = std::io::stdout().lock();
    if active.is_some() {
        let _ = write!(out, "\r\x1b[K");
    }
    let _ = writeln!(out, "{text}");
    redraw(&mut out, active.as_ref());
}

/// One thread for the life of the process, redrawing the status line every second.
fn spawn_ticker() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let active = lock();
                redraw(&mut std::io::stdout().lock(), active.as_ref());
            }
        });
    });
}

/// Runs `cmd` to completion. While a stage's status line is drawn, the command's stdout and
/// stderr are passed through line by line, above the status line; otherwise they are inherited.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    if lock().is_none() {
        return cmd.status().with_context(|| format!("running {cmd:?}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let stderr = child.stderr.take().context("child stderr")?;
    let relays = [
        std::thread::spawn(move || relay(stdout, false)),
        std::thread::spawn(move || relay(stderr, true)),
    ];
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    // The pipes close when the command exits, unless something it started in the background
    // still holds them (a server left running): then stop waiting after a moment and let the
    // relays go on by themselves.
    let until = Instant::now() + Duration::from_secs(2);
    while relays.iter().any(|r| !r.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(status)
}

/// Runs `cmd` to completion and returns its stdout; its stderr is passed through as by
/// [`status`].
pub fn output(cmd: &mut Command) -> Result<(ExitStatus, String)> {
    let relayed = lock().is_some();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(if relayed {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let mut stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    if let Some(stderr) = child.stderr.take() {
        relay(stderr, true);
    }
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading the output of {cmd:?}"))?
        .with_context(|| format!("reading the output of {cmd:?}"))?;
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    Ok((status, text))
}

/// Copies `from` line by line to stdout (or stderr), clearing the status line before each line
/// and drawing it again after.
fn relay(from: impl Read, to_stderr: bool) {
    for line in BufReader::new(from).split(b'\n') {
        let Ok(line) = line else { break };
        if cfg!(test) {
            let mut captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
            captured.extend_from_slice(&line);
            captured.push(b'\n');
            continue;
        }
        let active = lock();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[K");
        if to_stderr {
            let _ = out.flush();
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&line);
            let _ = err.write_all(b"\n");
            let _ = err.flush();
        } else {
            let _ = out.write_all(&line);
            let _ = out.write_all(b"\n");
        }
        redraw(&mut out, active.as_ref());
    }
}

/// `45s`, `3m12s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        let d = |s| duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(59), "59s");
        assert_eq!(d(60), "1m00s");
        assert_eq!(d(192), "3m12s");
        assert_eq!(d(3599), "59m59s");
        assert_eq!(d(3720), "1h02m");
    }

    #[test]
    fn under_a_status_line_output_is_relayed_whole() {
        let script = "echo out; echo err >&2; printf 'no newline'; exit 3";
        *lock() = Some(Active {
            line: "[1/1] test".into(),
            t0: Instant::now(),
        });
        let code = status(Command::new("sh").args(["-c", script]))
            .unwrap()
            .code();
        // A background process holding the pipes does not keep the command from returning.
        let t0 = Instant::now();
        let code_bg = status(Command::new("sh").args(["-c", "(sleep 30 &); exit 4"]))
            .unwrap()
            .code();
        assert!(t0.elapsed() < Duration::from_secs(10));
        let (out, text) =
            output(Command::new("sh").args(["-c", "echo out; echo err >&2"])).unwrap();
        *lock() = None;
        assert_eq!((code, code_bg), (Some(3), Some(4)));
        assert_eq!((out.code(), text.as_str()), (Some(0), "out\n"));
        let relayed = String::from_utf8(CAPTURED.lock().unwrap().clone()).unwrap();
        // stdout and stderr are relayed by two threads: their order may differ.
        let mut lines: Vec<&str> = relayed.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["err", "err", "no newline", "out"]);
    }
}
