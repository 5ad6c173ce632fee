//! Settings of the scrub: [`ScrubConfig`], its defaults and the `VISAGE_SCRUB_*` variables of
//! the environment that override them, read once per process.

use std::sync::OnceLock;
use std::time::Duration;

/// Settings of the scrub, from the environment ([`ScrubConfig::from_env`]).
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    /// Wait after an erasure before scrubbing, so that a burst shares one scrub
    /// (`VISAGE_SCRUB_DELAY_SECS`, default 2).
    pub delay: Duration,
    /// At most one scrub starts per this interval and database
    /// (`VISAGE_SCRUB_MIN_INTERVAL_SECS`, default 60).
    pub min_interval: Duration,
    /// `faces` is rewritten (`VACUUM FULL`, with its HNSW index) up to this many rows; above,
    /// it is vacuumed in place (`VISAGE_SCRUB_FACES_FULL_MAX_ROWS`, default 10000: the rewrite
    /// holds an exclusive lock, so recognition waits, for 3 to 8 s at 10,000 faces on 2 cores,
    /// 24 s at 20,000, 147 s at 100,000; docs/erasure.md).
    pub faces_full_max_rows: i64,
    /// How long a statement of the scrub waits for a lock before giving up (and retrying after
    /// `min_interval`), so that it never queues the service behind a long transaction
    /// (`VISAGE_SCRUB_LOCK_TIMEOUT_MS`, default 5000).
    pub lock_timeout: Duration,
    /// `maintenance_work_mem` of the scrub's session: the HNSW rebuild of `VACUUM FULL faces`
    /// is several times slower when the graph does not fit (`VISAGE_SCRUB_MAINTENANCE_WORK_MEM`,
    /// default `256MB`).
    pub maintenance_work_mem: String,
    /// Whether to close the current WAL segment before the checkpoint, so that the segments
    /// holding the erased rows are released at once (`VISAGE_SCRUB_SWITCH_WAL`, default on;
    /// `0`/`off`/`false` turns it off).
    pub switch_wal: bool,
    /// How long the scrub waits for the transactions of other sessions that began before it
    /// (`VISAGE_SCRUB_SNAPSHOT_WAIT_SECS`, default 30): while one runs, VACUUM must keep the
    /// rows it may still see, erased ones included, and VACUUM FULL would copy them into the
    /// new file. After the wait the scrub fails and is retried.
    pub snapshot_wait: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(2),
            min_interval: Duration::from_secs(60),
            faces_full_max_rows: 10_000,
            lock_timeout: Duration::from_millis(5000),
            maintenance_work_mem: "256MB".into(),
            switch_wal: true,
            snapshot_wait: Duration::from_secs(30),
        }
    }
}

impl ScrubConfig {
    /// The defaults, overridden by the `VISAGE_SCRUB_*` variables that parse.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mem = get("VISAGE_SCRUB_MAINTENANCE_WORK_MEM")
            .map(|v| v.trim().to_string())
            .filter(|v| valid_memory_setting(v))
            .unwrap_or(d.maintenance_work_mem);
        Self {
            delay: num("VISAGE_SCRUB_DELAY_SECS").map_or(d.delay, Duration::from_secs),
            min_interval: num("VISAGE_SCRUB_MIN_INTERVAL_SECS")
                .map_or(d.min_interval, Duration::from_secs),
            faces_full_max_rows: num("VISAGE_SCRUB_FACES_FULL_MAX_ROWS")
                .map_or(d.faces_full_max_rows, |n| n.min(i64::MAX as u64) as i64),
            lock_timeout: num("VISAGE_SCRUB_LOCK_TIMEOUT_MS")
                .map_or(d.lock_timeout, Duration::from_millis),
            maintenance_work_mem: mem,
            switch_wal: get("VISAGE_SCRUB_SWITCH_WAL").map_or(d.switch_wal, |v| {
                !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "0" | "off" | "false" | "no"
                )
            }),
            snapshot_wait: num("VISAGE_SCRUB_SNAPSHOT_WAIT_SECS")
                .map_or(d.snapshot_wait, Duration::from_secs),
        }
    }
}

/// A number with an optional unit kB, MB, GB (formatted into a `SET`, so nothing else).
fn valid_memory_setting(v: &str) -> bool {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && ["", "kB", "MB", "GB"].contains(&&v[digits..])
}

pub(super) fn config() -> &'static ScrubConfig {
    static CFG: OnceLock<ScrubConfig> = OnceLock::new();
    CFG.get_or_init(ScrubConfig::from_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let c = ScrubConfig::from_lookup(|_| None);
        assert_eq!(c.delay, Duration::from_secs(2));
        assert_eq!(c.faces_full_max_rows, 10_000);
        assert!(c.switch_wal);
        let c = ScrubConfig::from_lookup(|k| {
            Some(
                match k {
                    "VISAGE_SCRUB_DELAY_SECS" => "0",
                    "VISAGE_SCRUB_FACES_FULL_MAX_ROWS" => "500",
                    "VISAGE_SCRUB_SWITCH_WAL" => "off",
                    "VISAGE_SCRUB_MAINTENANCE_WORK_MEM" => "1GB; DROP TABLE faces",
                    _ => "x",
                }
                .to_string(),
            )
        });
        assert_eq!(c.delay, Duration::ZERO);
        assert_eq!(c.min_interval, Duration::from_secs(60));
        assert_eq!(c.faces_full_max_rows, 500);
        assert!(!c.switch_wal);
        assert_eq!(c.maintenance_work_mem, "256MB");
        assert!(valid_memory_setting("512MB") && valid_memory_setting("65536"));
        assert!(!valid_memory_setting("MB") && !valid_memory_setting("1 GB"));
    }
}
