//! `visage`: the face recognition service and its command line. Thin: parses arguments and
//! calls the library (`visage_backend::commands`) or the pipeline commands (`cli`).

use anyhow::Result;
use clap::{Parser, Subcommand};
use visage_backend::commands;
use visage_backend::configuration::{
    CreateKeyArgs, DbArgs, DbCommandArgs, EnrollArgs, KeysArgs, ServeArgs,
};

mod cli;

/// glibc's allocator handed the pipeline's multi-megabyte activation buffers back to the OS after
/// every image, and the page faults cost up to half of a detection; mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "visage", version, about = "Privacy-first face recognition")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (embedded PostgreSQL unless DATABASE_URL is set).
    Serve(Box<ServeArgs>),
    /// Apply the database migrations.
    Migrate(DbArgs),
    /// Create an API key (printed once).
    CreateKey(CreateKeyArgs),
    /// List, revoke or rotate API keys.
    Keys(KeysArgs),
    /// Enroll a folder of photos, one sub-folder per person (resumable, with a progress bar).
    Enroll(EnrollArgs),
    /// Manage the embedded PostgreSQL (start, stop, status, url).
    Db(DbCommandArgs),
    /// Detect faces in an image: JSON with boxes, landmarks and quality.
    Detect(cli::DetectCmd),
    /// Embed every face in an image: JSON with model id and vector.
    Embed(cli::EmbedCmd),
    /// Compare the main face of two images: similarity, match, false-match rate.
    Compare(cli::CompareCmd),
    /// Evaluate on a labelled set: pairs (AUC, EER, TAR@FAR), group counts, invalid files.
    Eval(cli::EvalCmd),
    /// Degrade photos as a poor camera would (small face, strong JPEG), for evaluations.
    Degrade(cli::DegradeCmd),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn cli_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> Result<()> {
    // Freed activations kept for the next image (see the module).
    visage_shared::allocator::keep_freed_memory();
    let command = Cli::parse().command;
    // The service commands set up their own tracing (plain or JSON); the pipeline commands log
    // to stderr so their JSON on stdout stays clean.
    if matches!(
        command,
        Command::Detect(_)
            | Command::Embed(_)
            | Command::Compare(_)
            | Command::Eval(_)
            | Command::Degrade(_)
    ) {
        cli_tracing();
    }
    match command {
        Command::Serve(a) => runtime()?.block_on(commands::serve(*a)),
        Command::Migrate(a) => runtime()?.block_on(commands::migrate(a)),
        Command::CreateKey(a) => runtime()?.block_on(commands::create_key(a)),
        Command::Keys(a) => runtime()?.block_on(commands::keys(a)),
        Command::Db(a) => runtime()?.block_on(commands::db(a)),
        Command::Enroll(a) => runtime()?.block_on(commands::enroll(a)),
        Command::Detect(c) => cli::detect(c),
        Command::Embed(c) => cli::embed(c),
        Command::Compare(c) => cli::compare(c),
        Command::Eval(c) => cli::eval(c),
        Command::Degrade(c) => cli::degrade(c),
    }
}
