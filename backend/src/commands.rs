//! What the `visage` binary's service subcommands run.

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::configuration::{
    CreateKeyArgs, DbAction, DbArgs, DbCommandArgs, EnrollArgs, KeysAction, KeysArgs, ServeArgs,
};
use crate::domain::Scopes;
use crate::embedded::{self, EmbeddedPostgres, Standby};
use crate::startup::Application;
use crate::{auth, db, purge, store, telemetry};

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// `visage serve`: migrate, make sure an admin key exists, start the consent purge job and
/// serve until SIGINT/SIGTERM. Without `DATABASE_URL`, the embedded PostgreSQL is started and,
/// if no other process uses it, stopped at the end.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_json);
    let embedded = args.db.database_url.is_none();
    let url = db::resolve_url(&args.db).await?;
    let result = serve_on(&args, &url).await;
    if embedded {
        tokio::task::spawn_blocking(embedded::release_for_process).await?;
    }
    result
}

async fn serve_on(args: &ServeArgs, url: &str) -> anyhow::Result<()> {
    let pool = db::connect(url, args.db_pool).await?;
    db::migrate(&pool).await?;
    if let Some(key) = &args.bootstrap_key {
        let key = key.expose_secret();
        auth::check_key_strength(key)?;
        auth::ensure_key(&pool, key, "bootstrap").await?;
    } else {
        let keys = crate::store::keys::count_unrevoked(&pool).await?;
        if keys == 0 {
            let (key, _) =
                auth::create_key(&pool, "initial-admin", &Scopes::all(), None, None).await?;
            eprintln!(
                "No API key existed; created an admin key (shown only this once):\n\n    {key}\n"
            );
        }
    }
    let app = Application::build(args, pool.clone()).await?;
    let port = app.port();
    // Load the models in the background; /readyz says when they are in.
    let warm = app.pipeline().clone();
    tokio::spawn(async move {
        if let Err(e) = warm.get().await {
            tracing::error!(error = %e, "loading the face models failed");
        }
    });
    let purge = purge::spawn(pool.clone(), Duration::from_secs(args.purge_interval_secs));
    let indexer = store::hnsw::spawn(
        pool.clone(),
        Duration::from_secs(args.index_interval_secs),
        args.exact_search_max_faces,
        args.index_build_memory.clone(),
    );
    let host = if args.host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.host.to_string()
    };
    // Scripts parse this first line: keep its format.
    eprintln!("visage listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)");
    let web = app.web();
    if web.is_built() {
        eprintln!(
            "browser app: http://{host}:{port}/  (files from {})",
            web.dir().display()
        );
    } else {
        eprintln!(
            "browser app: not built (no index.html in {}); build it with `cargo xtask web`",
            web.dir().display()
        );
    }
    tracing::info!(port, "listening");
    app.run_until_stopped(shutdown_signal()).await?;
    purge.abort();
    indexer.abort();
    pool.close().await;
    Ok(())
}

/// `visage migrate`: applies `migrations/`.
pub async fn migrate(args: DbArgs) -> anyhow::Result<()> {
    let url = db::resolve_url(&args).await?;
    let pool = db::connect(&url, 2).await?;
    db::migrate(&pool).await?;
    pool.close().await;
    eprintln!("migrations applied");
    Ok(())
}

/// `visage create-key`: stores a new key and prints it once.
pub async fn create_key(args: CreateKeyArgs) -> anyhow::Result<()> {
    let scopes = Scopes::parse(&args.scopes).map_err(anyhow::Error::msg)?;
    let url = db::resolve_url(&args.db).await?;
    let pool = db::connect(&url, 2).await?;
    db::migrate(&pool).await?;
    let collections = if args.collections.is_empty() {
        None
    } else {
        let found = store::collections::ids_of(&pool, &args.collections).await?;
        if let Some(missing) = args
            .collections
            .iter()
            .find(|n| !found.iter().any(|(f, _)| f == *n))
        {
            anyhow::bail!("there is no collection {missing:?}");
        }
        Some(found.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
    };
    let new = auth::NewKey {
        name: &args.name,
        scopes: &scopes,
        rate_per_minute: args.rate_per_minute,
        expires_at: args
            .expires_in_days
            .map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d))),
        collections: collections.as_deref(),
    };
    let (key, id) = auth::create_key_with(&pool, &new, "cli").await?;
    pool.close().await;
    eprintln!(
        "created key {id} ({}) with scopes {}; it is shown only this once:",
        args.name,
        scopes.names().join(",")
    );
    println!("{key}");
    Ok(())
}

/// `visage keys list|revoke|rotate`.
pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let url = db::resolve_url(&args.db).await?;
    let pool = db::connect(&url, 2).await?;
    db::migrate(&pool).await?;
    match args.action {
        KeysAction::List => {
            let keys = auth::list_keys(&pool).await?;
            println!(
                "{:<36}  {:<14}  {:<20}  {:<24}  {:<10}  {:<10}  {:<10}  last used",
                "id", "prefix", "name", "scopes", "created", "expires", "revoked"
            );
            let day = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            for k in keys {
                println!(
                    "{:<36}  {:<14}  {:<20}  {:<24}  {:<10}  {:<10}  {:<10}  {}",
                    k.id,
                    k.prefix,
                    k.name.chars().take(20).collect::<String>(),
                    k.scopes.join(","),
                    day(Some(k.created_at)),
                    day(k.expires_at),
                    day(k.revoked_at),
                    k.last_used_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        KeysAction::Revoke { id } => match auth::revoke_key(&pool, id, "cli").await? {
            Some(_) => eprintln!("revoked key {id}"),
            None => anyhow::bail!("no key {id}"),
        },
        KeysAction::Rotate { id } => match auth::rotate_key(&pool, id, "cli").await? {
            Some(new) => {
                eprintln!(
                    "key {id} is revoked; its replacement {} is shown only this once:",
                    new.id
                );
                println!("{}", new.key);
            }
            None => anyhow::bail!("no active key {id}"),
        },
    }
    pool.close().await;
    Ok(())
}

/// `visage db start|stop|status|url|standby`: the embedded PostgreSQL.
pub async fn db(args: DbCommandArgs) -> anyhow::Result<()> {
    let action = args.action;
    let needs_app_db = matches!(
        action,
        DbAction::Url | DbAction::Start | DbAction::Standby { .. }
    );
    let standby = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Standby>> {
        let pg = EmbeddedPostgres::locate()?;
        match action {
            DbAction::Start => {
                pg.start()?;
                eprintln!("{}", pg.describe()?);
            }
            DbAction::Stop => {
                pg.stop()?;
                eprintln!("{}", pg.describe()?);
            }
            DbAction::Status => println!("{}", pg.describe()?),
            DbAction::Url => {
                pg.start()?;
                println!("{}", pg.url(embedded::APP_DATABASE)?);
            }
            DbAction::Standby { name } => {
                // Like `visage serve`, use the server while this process runs: the last user
                // to leave stops it, unless `visage db start` started it.
                let (pg, _) = embedded::acquire_for_process()?;
                return Ok(Some(pg.start_standby(&name)?));
            }
        }
        Ok(None)
    })
    .await??;
    if needs_app_db {
        // Make sure the application database exists (on a standby, through replication).
        let pg = tokio::task::spawn_blocking(EmbeddedPostgres::locate).await??;
        db::create_database_if_missing(&pg.url(embedded::APP_DATABASE)?).await?;
    }
    if let Some(standby) = standby {
        println!("{}", standby.url(embedded::APP_DATABASE));
        eprintln!(
            "hot standby {:?} on port {} (read-only, data in {}); Ctrl-C stops it",
            standby.name(),
            standby.port(),
            standby.data_dir().display()
        );
        shutdown_signal().await;
        // Dropping the standby stops it and deletes its data; both block.
        tokio::task::spawn_blocking(move || {
            drop(standby);
            embedded::release_for_process();
        })
        .await?;
    }
    Ok(())
}

/// `visage enroll DIR`: batch enrollment through the HTTP API, with a progress bar, resumable
/// (`enroll` module). With `--url` it talks to that service with `--key`; otherwise it starts
/// the service in-process on a loopback port over this machine's database, with a key of its
/// own (the enroll scope in the collection, revoked at the end).
pub async fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    let consent: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args.consent)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.consent.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", args.consent.display()))?;
    if let Some(c) = &args.collection {
        crate::domain::CollectionName::parse(c)?;
    }
    let (total, done) = crate::enroll::count(&args.dir, args.collection.as_deref())?;
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} photos  {per_sec}  ETA {eta}  {wide_msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar: {e}"))?,
    );
    bar.set_position(done as u64);
    bar.reset_eta();
    let progress = |shown: &str| {
        bar.inc(1);
        bar.set_message(shown.to_string());
    };
    let summary = match &args.url {
        Some(url) => {
            let key = args
                .key
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--url needs --key (or VISAGE_API_KEY)"))?;
            let base_url = crate::enroll::remote_base_url(url, args.allow_plain_http)?;
            let target = crate::enroll::Target {
                base_url,
                key: key.expose_secret().to_string(),
                collection: args.collection.clone(),
            };
            crate::enroll::run(&args.dir, &consent, &target, progress).await?
        }
        None => enroll_locally(&args, &consent, progress).await?,
    };
    bar.finish_and_clear();
    eprintln!("{}", summary.render());
    if !summary.failed.is_empty() {
        anyhow::bail!(
            "{} photos failed for a reason that may pass; run the same command again",
            summary.failed.len()
        );
    }
    Ok(())
}

async fn enroll_locally(
    args: &EnrollArgs,
    consent: &serde_json::Value,
    progress: impl FnMut(&str),
) -> anyhow::Result<crate::enroll::Summary> {
    let embedded_db = args.db.database_url.is_none();
    let url = db::resolve_url(&args.db).await?;
    let pool = db::connect(&url, 8).await?;
    db::migrate(&pool).await?;
    let name = args
        .collection
        .clone()
        .unwrap_or_else(|| crate::domain::DEFAULT_COLLECTION.to_string());
    if store::collections::create(&pool, uuid::Uuid::new_v4(), &name).await? {
        eprintln!("created collection {name}");
    }
    let collection = store::collections::id_of(&pool, &name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("collection {name} vanished"))?;
    let scopes = Scopes::parse(&["enroll"]).map_err(anyhow::Error::msg)?;
    let (key, key_id) = auth::create_key(
        &pool,
        "visage enroll (local, revoked when done)",
        &scopes,
        None,
        Some(&[collection]),
    )
    .await?;
    let serve = ServeArgs {
        host: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 0,
        rate_per_minute: 1_000_000,
        web_dir: std::env::temp_dir().join("visage-enroll-no-web"),
        ..ServeArgs::default()
    };
    let app = Application::build(&serve, pool.clone()).await?;
    let target = crate::enroll::Target {
        base_url: format!("http://127.0.0.1:{}", app.port()),
        key,
        collection: Some(name),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let result = crate::enroll::run(&args.dir, consent, &target, progress).await;
    let _ = auth::revoke_key(&pool, key_id, "cli").await;
    let _ = stop.send(());
    let _ = server.await;
    pool.close().await;
    if embedded_db {
        tokio::task::spawn_blocking(embedded::release_for_process).await?;
    }
    result
}
