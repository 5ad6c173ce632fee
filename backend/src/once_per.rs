//! "At most once per period per key": for the writes and audit entries that a busy key would
//! otherwise repeat on every request (a key's `last_used_at`, an exhausted budget's audit
//! entry).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each key was last due; forgets keys a period old once it holds many.
pub struct OncePer<K> {
    period: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

/// Past this many keys, those whose period is over are dropped (memory stays bounded).
const MAX_KEYS: usize = 10_000;

impl<K: Eq + Hash> OncePer<K> {
    /// Nothing due yet; each key is due at most once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is due now (its first time, or a period after it was last due); if so,
    /// its period starts again.
    pub fn due(&self, key: K) -> bool {
        // A panic elsewhere cannot leave a map of instants inconsistent: keep using it.
        let mut m = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if m.len() > MAX_KEYS {
            m.retain(|_, t| now.duration_since(*t) < self.period);
        }
        match m.get(&key) {
            Some(t) if now.duration_since(*t) < self.period => false,
            _ => {
                m.insert(key, now);
                true
            }
        }
    }
}

impl<K: Eq + Hash> OncePer<K> {
    /// Forgets `key` (due again at once).
    pub fn forget(&self, key: &K) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period_per_key() {
        let once = OncePer::new(Duration::from_millis(200));
        assert!(once.due(1));
        assert!(!once.due(1));
        assert!(once.due(2));
        std::thread::sleep(Duration::from_millis(250));
        assert!(once.due(1));
        assert!(!once.due(1));
    }
}
