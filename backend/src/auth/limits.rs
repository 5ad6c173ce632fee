//! Request limits: per-key token buckets (governor) and the per-address throttle of failed
//! authentications.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::error::ApiError;
use crate::once_per::OncePer;

/// Per-key token buckets.
pub struct RateLimits {
    default_per_minute: NonZeroU32,
    buckets: Mutex<HashMap<Uuid, Arc<DefaultDirectRateLimiter>>>,
    last_used: OncePer<Uuid>,
}

impl RateLimits {
    /// Buckets refilling `default_per_minute` per minute unless a key says otherwise.
    pub fn new(default_per_minute: u32) -> Self {
        Self {
            default_per_minute: NonZeroU32::new(default_per_minute).unwrap_or(NonZeroU32::MIN),
            buckets: Mutex::new(HashMap::new()),
            last_used: OncePer::new(Duration::from_secs(60)),
        }
    }

    /// Whether `key`'s `last_used_at` should be written now (at most once a minute).
    pub fn due_for_last_used(&self, key: Uuid) -> bool {
        self.last_used.due(key)
    }

    /// Forgets `key`'s bucket (and when it was last used): a revoked or rotated key is never
    /// seen again, and its entry would otherwise stay for the life of the process.
    pub fn forget(&self, key: Uuid) {
        if let Ok(mut b) = self.buckets.lock() {
            b.remove(&key);
        }
        self.last_used.forget(&key);
    }

    /// How many keys have a bucket.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: Uuid, per_minute: Option<u32>) -> Result<(), ApiError> {
        let limiter = {
            let mut b = self
                .buckets
                .lock()
                .map_err(|_| ApiError::internal("rate limiter poisoned"))?;
            b.entry(key)
                .or_insert_with(|| {
                    let rate = per_minute
                        .and_then(NonZeroU32::new)
                        .unwrap_or(self.default_per_minute);
                    Arc::new(RateLimiter::direct(Quota::per_minute(rate)))
                })
                .clone()
        };
        limiter.check().map_err(|not_until| ApiError::RateLimited {
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1,
        })
    }
}

/// Failed authentications per client address: after `max_per_minute` wrong keys or withdrawal
/// tokens in a minute, every authentication from that address is refused with 429 until the
/// minute is over, so credentials cannot be guessed at network speed. A request without any
/// credential guesses nothing and is not counted.
pub struct FailedAuth {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    max_per_minute: u32,
}

impl FailedAuth {
    /// The default number of failures allowed per address and minute.
    pub const MAX_PER_MINUTE: u32 = 30;
    const WINDOW: Duration = Duration::from_secs(60);

    /// An empty table allowing `max_per_minute` failures per address and minute.
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            max_per_minute: max_per_minute.max(1),
        }
    }

    /// Refuses with 429 while `ip` is over its failure budget.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Ok(w) = self.windows.lock() else {
            return Ok(());
        };
        match w.get(&ip) {
            Some((start, n)) if *n >= self.max_per_minute && start.elapsed() < Self::WINDOW => {
                Err(ApiError::RateLimited {
                    retry_after_secs: (Self::WINDOW - start.elapsed()).as_secs() + 1,
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `ip`.
    pub fn record(&self, ip: IpAddr) {
        let Ok(mut w) = self.windows.lock() else {
            return;
        };
        let now = Instant::now();
        if w.len() > 100_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let e = w.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Self::WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 == self.max_per_minute {
            tracing::warn!(%ip, "failed authentications throttled for this address");
            metrics::counter!("visage_auth_throttled_total").increment(1);
        }
    }
}

impl Default for FailedAuth {
    fn default() -> Self {
        Self::new(Self::MAX_PER_MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_key_loses_its_bucket() {
        let limits = RateLimits::new(1);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limits.check(a, None).is_ok());
        assert!(limits.check(a, None).is_err(), "one a minute");
        assert!(limits.check(b, None).is_ok());
        assert_eq!(limits.tracked(), 2);
        limits.forget(a);
        assert_eq!(limits.tracked(), 1);
        // A key seen again after being forgotten starts with a full bucket.
        assert!(limits.check(a, None).is_ok());
    }
}
