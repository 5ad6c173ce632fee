//! The background job that erases people whose consent has expired. (Matching already
//! ignores them from the moment of expiry; this removes their data.)

use std::time::Duration;

use crate::domain::AuditAction;
use crate::routes::common::erase_person;
use crate::store;
use sqlx::PgPool;

/// Erases every person without an active consent; returns how many.
pub async fn purge_expired(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let ids = store::people::without_active_consent(pool).await?;
    let mut n = 0;
    for id in ids {
        if erase_person(pool, id, "system", AuditAction::PurgeExpiredConsent)
            .await?
            .is_some()
        {
            n += 1;
        }
    }
    if n > 0 {
        tracing::info!(people = n, "purged people whose consent expired");
        metrics::counter!("visage_purged_people_total").increment(n as u64);
    }
    Ok(n)
}

/// Runs [`purge_expired`] every `interval` until the runtime ends.
pub fn spawn(pool: PgPool, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        loop {
            tick.tick().await;
            if let Err(e) = purge_expired(&pool).await {
                tracing::warn!(error = %e, "consent purge failed");
            }
        }
    })
}
