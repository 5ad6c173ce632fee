//! Connection pool and migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::configuration::DbArgs;
use crate::embedded;

/// The migrations of `migrations/`, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The database URL: `DATABASE_URL`, or the embedded server's (started for this process).
pub async fn resolve_url(args: &DbArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.database_url {
        return Ok(url.expose_secret().to_string());
    }
    let (pg, _) = tokio::task::spawn_blocking(embedded::acquire_for_process).await??;
    let url = pg.url(embedded::APP_DATABASE)?;
    create_database_if_missing(&url).await?;
    Ok(url)
}

/// Creates the database named in `url` if missing, connecting to the `postgres` database.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let opts = PgConnectOptions::from_str(url)?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    let mut conn = opts.clone().database("postgres").connect().await?;
    let exists = database_exists(&mut conn, &name).await?;
    if !exists {
        // A name cannot be a bound parameter: the statement is built (quoted) at run time.
        let q = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(q)).execute(&mut conn).await {
            // A concurrent process may have created it.
            if !database_exists(&mut conn, &name).await? {
                return Err(e.into());
            }
        }
    }
    conn.close().await?;
    Ok(())
}

async fn database_exists(conn: &mut sqlx::PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        name
    )
    .fetch_one(conn)
    .await
}

/// How long a request waits for a database connection before it is answered 503. Short on
/// purpose: when PostgreSQL is down, connecting fails at once and the pool retries until this
/// runs out, so it is how long every request blocks while the database is away.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool on `url`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with(PgConnectOptions::from_str(url)?, max_connections).await
}

/// A pool with these connection options, set up as the service's own (statement logging
/// off, [`ACQUIRE_TIMEOUT`]).
pub async fn connect_with(opts: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts.disable_statement_logging())
        .await?)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
