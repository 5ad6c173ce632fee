//! The persistence layer: every SQL statement of the service, as plain async functions over a
//! [`sqlx::PgExecutor`] (a pool, a connection or a transaction; `&mut PgConnection` where a
//! function runs several statements that belong together), returning domain types. Handlers
//! compose them, in a transaction where they must; errors are [`sqlx::Error`] here and become
//! HTTP problems only at the edge (`error::ApiError`).
//!
//! The queries are `sqlx::query!` macros, checked against the migrated schema at compile time:
//! without `DATABASE_URL` (CI, a fresh clone) the macros read the committed `.sqlx/` at the
//! workspace root, which `cargo xtask sqlx-prepare` regenerates after a query or a migration
//! changes. "Has an active consent" is defined once, by the `active_consents` view (migration
//! `20261130200001`), which every consent-gated query asks.

pub mod audit;
pub mod collections;
pub mod consents;
pub mod faces;
pub mod hnsw;
pub mod keys;
pub mod people;
pub mod search;

/// Whether the database answers (`/readyz`).
pub async fn ping<'e>(ex: impl sqlx::PgExecutor<'e>) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(ex)
        .await
        .map(drop)
}
