//! `visage`: the face recognition service and its command line.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(name = "visage", version, about = "Privacy-first face recognition")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect faces in an image: JSON with boxes, landmarks and quality.
    Detect(cli::DetectCmd),
    /// Embed every face in an image: JSON with model id and vector.
    Embed(cli::EmbedCmd),
    /// Compare the main face of two images: similarity, match, false-match rate.
    Compare(cli::CompareCmd),
    /// Evaluate on a labelled set: pairs (AUC, EER, TAR@FAR), group counts, invalid files.
    Eval(cli::EvalCmd),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    match Cli::parse().command {
        Command::Detect(c) => cli::detect(c),
        Command::Embed(c) => cli::embed(c),
        Command::Compare(c) => cli::compare(c),
        Command::Eval(c) => cli::eval(c),
    }
}
