//! Settings of every command, from the command line or the environment (`clap`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use secrecy::SecretString;

/// A secret from the command line or the environment (its `Debug` prints `[REDACTED]`).
fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

/// Where the database is.
#[derive(Debug, Clone, Args, Default)]
pub struct DbArgs {
    /// PostgreSQL URL (with pgvector). Unset: the project-local embedded PostgreSQL is
    /// provisioned and started (data under `.visage/`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,
}

/// `visage serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "VISAGE_HOST", default_value_t = DEFAULT_HOST)]
    pub host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, env = "VISAGE_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// An API key to accept with every scope (created if missing, stored hashed). Without it,
    /// and with no key in the database, one admin key is generated and printed once.
    #[arg(long, env = "VISAGE_BOOTSTRAP_KEY", hide_env_values = true, value_parser = secret)]
    pub bootstrap_key: Option<SecretString>,
    /// Hot standbys of the database (PostgreSQL streaming replication) to read from, as
    /// PostgreSQL URLs (repeat or comma-separate). Recognition, verification and listing read
    /// from a fresh one, everything else from the primary (docs/scaling.md).
    #[arg(long = "read-replica", env = "VISAGE_READ_REPLICAS", value_delimiter = ',', hide_env_values = true, value_parser = secret)]
    pub read_replicas: Vec<SecretString>,
    /// Skip a replica that has not replayed what the primary wrote this many milliseconds ago.
    #[arg(long, env = "VISAGE_REPLICA_MAX_LAG_MS", default_value_t = DEFAULT_REPLICA_MAX_LAG_MS)]
    pub replica_max_lag_ms: u64,
    /// Largest request body in bytes (JSON and images).
    #[arg(long, env = "VISAGE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest decoded image in pixels (width x height).
    #[arg(long, env = "VISAGE_MAX_IMAGE_PIXELS", default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Default per-key rate limit, requests per minute (a key may carry its own). A bucket
    /// of this many requests, refilled at this rate.
    #[arg(long, env = "VISAGE_RATE_PER_MINUTE", default_value_t = DEFAULT_RATE_PER_MINUTE)]
    pub rate_per_minute: u32,
    /// Seconds between runs of the job that purges people whose consent expired.
    #[arg(long, env = "VISAGE_PURGE_INTERVAL_SECS", default_value_t = DEFAULT_PURGE_INTERVAL_SECS)]
    pub purge_interval_secs: u64,
    /// Threads for the face pipeline (0: one per core).
    #[arg(long, env = "VISAGE_PIPELINE_THREADS", default_value_t = DEFAULT_PIPELINE_THREADS)]
    pub pipeline_threads: usize,
    /// Largest connection pool size.
    #[arg(long, env = "VISAGE_DB_POOL", default_value_t = DEFAULT_DB_POOL)]
    pub db_pool: u32,
    /// HNSW `ef_search` for recognition (higher: better recall, slower). At 1M faces, 150
    /// gives recall@1 0.995 with p99 8 ms on 2 cores (BENCHMARKS.md).
    #[arg(long, env = "VISAGE_EF_SEARCH", default_value_t = DEFAULT_EF_SEARCH)]
    pub ef_search: u32,
    /// Collections of at most this many faces are searched exactly; a larger one gets its own
    /// HNSW graph (built in the background) and is searched through it once it is built.
    #[arg(long, env = "VISAGE_EXACT_SEARCH_MAX_FACES", default_value_t = DEFAULT_EXACT_SEARCH_MAX_FACES)]
    pub exact_search_max_faces: i64,
    /// Seconds between looks for collections whose HNSW graph is due.
    #[arg(long, env = "VISAGE_INDEX_INTERVAL_SECS", default_value_t = DEFAULT_INDEX_INTERVAL_SECS)]
    pub index_interval_secs: u64,
    /// `maintenance_work_mem` of an HNSW graph build (PostgreSQL syntax): the build is several
    /// times faster while the graph fits (about 1.2 KB per face).
    #[arg(long, env = "VISAGE_INDEX_BUILD_MEMORY", default_value = DEFAULT_INDEX_BUILD_MEMORY)]
    pub index_build_memory: String,
    /// The laxest operating point a non-admin key may match at, as a false-match rate
    /// (default: the default operating point, 1e-3). Its thresholds, one per probe class
    /// (faces under 48 px in images have their own calibration table), are the floor: lower
    /// requests are raised to them (SECURITY.md).
    #[arg(long, env = "VISAGE_NON_ADMIN_MAX_FALSE_MATCH_RATE", default_value_t = visage_shared::model::DEFAULT_MAX_FALSE_MATCH_RATE)]
    pub non_admin_max_false_match_rate: f64,
    /// Verifications of one person by one non-admin key per hour.
    #[arg(
        long,
        env = "VISAGE_VERIFY_BUDGET_PER_KEY_PERSON",
        default_value_t = DEFAULT_VERIFY_BUDGET_PER_KEY_PERSON
    )]
    pub verify_budget_per_key_person: u32,
    /// Verifications of one person by all non-admin keys together per hour.
    #[arg(long, env = "VISAGE_VERIFY_BUDGET_PER_PERSON", default_value_t = DEFAULT_VERIFY_BUDGET_PER_PERSON)]
    pub verify_budget_per_person: u32,
    /// Wrong keys or withdrawal tokens allowed per client address and minute before that
    /// address gets 429 for a minute.
    #[arg(
        long,
        env = "VISAGE_FAILED_AUTH_PER_MINUTE",
        default_value_t = crate::auth::FailedAuth::MAX_PER_MINUTE
    )]
    pub failed_auth_per_minute: u32,
    /// Log as JSON lines.
    #[arg(long, env = "VISAGE_LOG_JSON")]
    pub log_json: bool,
    /// Directory of the built browser app, served at `/` (`cargo xtask web` builds it there).
    /// Relative to the current directory. Missing: `/` says how to build it.
    #[arg(long, env = "VISAGE_WEB_DIR", default_value = DEFAULT_WEB_DIR)]
    pub web_dir: PathBuf,
    /// An origin (`https://host[:port]`) whose pages may call the API from a browser (CORS);
    /// repeat, or comma-separate in the environment. None: only the service's own origin.
    #[arg(long = "cors-origin", env = "VISAGE_CORS_ORIGINS", value_delimiter = ',', value_parser = crate::cors::parse_origin)]
    pub cors_origins: Vec<String>,
}

/// The default per-key rate limit: 3600 a minute, 60 a second sustained.
///
/// Sized for the browser's live view, the busiest client: it sends at most one
/// `POST /v1/recognize` per camera frame, batching every face due for recognition (a new face
/// on each of its first 3 frames, then every 5th frame), and at most 2 at a time. One face at
/// 30 fps costs 6 requests a second; three faces out of step 18, and new faces arriving up to
/// one per frame, 30. The earlier 600 (10 a second) let one camera with three faces empty its
/// bucket in about 75 s and then fail recognitions; 3600 holds two cameras at their ceiling
/// on one key. The image endpoints are bounded by the pipeline's threads, not by this limit.
/// Keys for scripts can carry a lower limit (`create-key --rate-per-minute`).
pub const DEFAULT_RATE_PER_MINUTE: u32 = 3600;

/// Where `cargo xtask web` writes the browser app, from the project root.
pub const DEFAULT_WEB_DIR: &str = "frontend/dist";

/// The default listening address: loopback only.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The default port.
pub const DEFAULT_PORT: u16 = 8080;
/// The default largest request body: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The default largest decoded image: 40 megapixels.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// The default seconds between consent purges.
pub const DEFAULT_PURGE_INTERVAL_SECS: u64 = 60;
/// The default pipeline threads (0: one per core).
pub const DEFAULT_PIPELINE_THREADS: usize = 0;
/// The default connection pool size.
pub const DEFAULT_DB_POOL: u32 = 16;
/// The default HNSW `ef_search`.
pub const DEFAULT_EF_SEARCH: u32 = 150;
/// The default size up to which a collection is searched exactly (about 20 ms on 2 cores).
pub const DEFAULT_EXACT_SEARCH_MAX_FACES: i64 = 20_000;
/// The default seconds between looks for HNSW graphs to build.
pub const DEFAULT_INDEX_INTERVAL_SECS: u64 = 60;
/// The default memory of an HNSW graph build.
pub const DEFAULT_INDEX_BUILD_MEMORY: &str = "1GB";
/// The default verifications of one person by one non-admin key per hour.
pub const DEFAULT_VERIFY_BUDGET_PER_KEY_PERSON: u32 = 60;
/// The default verifications of one person by all non-admin keys per hour.
pub const DEFAULT_VERIFY_BUDGET_PER_PERSON: u32 = 600;

/// The default lag bound of read replicas, in milliseconds.
pub const DEFAULT_REPLICA_MAX_LAG_MS: u64 = 1000;

/// The defaults of the command line (the same constants), without reading the environment.
impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            db: DbArgs::default(),
            host: DEFAULT_HOST,
            port: DEFAULT_PORT,
            bootstrap_key: None,
            read_replicas: Vec::new(),
            replica_max_lag_ms: DEFAULT_REPLICA_MAX_LAG_MS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            purge_interval_secs: DEFAULT_PURGE_INTERVAL_SECS,
            pipeline_threads: DEFAULT_PIPELINE_THREADS,
            db_pool: DEFAULT_DB_POOL,
            ef_search: DEFAULT_EF_SEARCH,
            exact_search_max_faces: DEFAULT_EXACT_SEARCH_MAX_FACES,
            index_interval_secs: DEFAULT_INDEX_INTERVAL_SECS,
            index_build_memory: DEFAULT_INDEX_BUILD_MEMORY.to_string(),
            non_admin_max_false_match_rate: visage_shared::model::DEFAULT_MAX_FALSE_MATCH_RATE,
            verify_budget_per_key_person: DEFAULT_VERIFY_BUDGET_PER_KEY_PERSON,
            verify_budget_per_person: DEFAULT_VERIFY_BUDGET_PER_PERSON,
            failed_auth_per_minute: crate::auth::FailedAuth::MAX_PER_MINUTE,
            log_json: false,
            web_dir: PathBuf::from(DEFAULT_WEB_DIR),
            cors_origins: Vec::new(),
        }
    }
}

/// `visage create-key`.
#[derive(Debug, Clone, Args)]
pub struct CreateKeyArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A name for the key (who or what uses it).
    #[arg(long)]
    pub name: String,
    /// Scopes: enroll, recognize, admin (repeat or comma-separate).
    #[arg(long = "scope", value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Requests per minute for this key (default: the server's).
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
    /// Days until the key expires (default: never).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub expires_in_days: Option<u32>,
    /// Collections the key may use, by name (repeat or comma-separate; default: every
    /// collection for an admin key, `default` for any other).
    #[arg(long = "collection", value_delimiter = ',')]
    pub collections: Vec<String>,
}

/// `visage keys <action>`: the API keys in the database.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(subcommand)]
    pub action: KeysAction,
}

/// What to do with the keys.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// List every key (id, name, prefix, scopes, created, expires, revoked, last used).
    List,
    /// Revoke a key by id, effective at once.
    Revoke { id: uuid::Uuid },
    /// Replace a key by a new secret with the same settings; the old one stops working.
    Rotate { id: uuid::Uuid },
}

/// `visage enroll`: batch enrollment from a folder.
#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A folder with one sub-folder of photos per person (the sub-folder's name is the
    /// person's name).
    pub dir: PathBuf,
    /// The collection to enroll into (locally: created if missing; with --url: the key's when
    /// not given).
    #[arg(long)]
    pub collection: Option<String>,
    /// A JSON file with the consent record given for every person (the `consent` object of
    /// `POST /v1/people`).
    #[arg(long)]
    pub consent: PathBuf,
    /// A remote service to enroll through, e.g. https://visage.example.org (default: this
    /// machine's database, through the service started in-process on a loopback port).
    #[arg(long)]
    pub url: Option<String>,
    /// The API key for --url: the enroll scope in the collection.
    #[arg(long, env = "VISAGE_API_KEY", hide_env_values = true, value_parser = secret)]
    pub key: Option<SecretString>,
    /// Allow an http:// --url to another machine: the key and every photo would cross the
    /// network unencrypted. Without it only https://, or http:// to this machine, is accepted.
    #[arg(long)]
    pub allow_plain_http: bool,
}

/// `visage db <action>`: the embedded PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct DbCommandArgs {
    #[command(subcommand)]
    pub action: DbAction,
}

/// What to do with the embedded PostgreSQL.
#[derive(Debug, Clone, Subcommand, PartialEq, Eq)]
pub enum DbAction {
    /// Install (first time), initialise and start it; it keeps running until `visage db stop`.
    Start,
    /// Stop it.
    Stop,
    /// Say whether it runs, where and on which port.
    Status,
    /// Print its connection URL (starting it if needed).
    Url,
    /// Start a hot standby of it on another loopback port (starting it if needed), print the
    /// standby's URL and run until Ctrl-C; the standby and its copy of the data go then.
    Standby {
        /// The standby's name (its folder under the embedded server's `standbys/`).
        #[arg(long, default_value = "standby")]
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn defaults_are_the_command_lines_and_secrets_stay_out_of_debug() {
        let cli = Cli::try_parse_from([
            "visage",
            "--bootstrap-key",
            "vsg_very-secret-bootstrap",
            "--database-url",
            "postgres://u:db-password@h/d",
        ])
        .expect("parses");
        let printed = format!("{:?}", cli.serve);
        assert!(
            !printed.contains("very-secret") && !printed.contains("db-password"),
            "{printed}"
        );
        // Every default the command line has is the Default impl's (the environment aside).
        let mut parsed = cli.serve;
        parsed.bootstrap_key = None;
        parsed.db.database_url = None;
        let d = ServeArgs::default();
        if std::env::vars().any(|(k, _)| {
            k.starts_with("VISAGE_") && k != "VISAGE_HOME" && !k.starts_with("VISAGE_PG_")
        }) {
            return; // a setting from the environment: not the defaults
        }
        assert_eq!(
            (parsed.host, parsed.port, parsed.ef_search, parsed.db_pool),
            (d.host, d.port, d.ef_search, d.db_pool)
        );
        assert_eq!(
            (
                parsed.max_body_bytes,
                parsed.max_image_pixels,
                parsed.purge_interval_secs
            ),
            (d.max_body_bytes, d.max_image_pixels, d.purge_interval_secs)
        );
        assert_eq!(
            (
                parsed.pipeline_threads,
                parsed.rate_per_minute,
                parsed.failed_auth_per_minute
            ),
            (
                d.pipeline_threads,
                d.rate_per_minute,
                d.failed_auth_per_minute
            )
        );
        assert_eq!(
            (
                parsed.verify_budget_per_key_person,
                parsed.verify_budget_per_person
            ),
            (d.verify_budget_per_key_person, d.verify_budget_per_person)
        );
        assert_eq!(parsed.web_dir, d.web_dir);
    }

    #[test]
    fn cors_origins_are_repeatable_checked_and_normalised() {
        let cli = Cli::try_parse_from([
            "visage",
            "--cors-origin",
            "https://App.example.org",
            "--cors-origin",
            "http://localhost:3000,http://127.0.0.1:3000",
        ])
        .expect("valid origins");
        assert_eq!(
            cli.serve.cors_origins,
            [
                "https://app.example.org",
                "http://localhost:3000",
                "http://127.0.0.1:3000"
            ]
        );
        assert!(Cli::try_parse_from(["visage"]).is_ok_and(|c| c.serve.cors_origins.is_empty()));
        assert!(Cli::try_parse_from(["visage", "--cors-origin", "https://a.example/x"]).is_err());
        assert!(Cli::try_parse_from(["visage", "--cors-origin", "*"]).is_err());
    }
}
