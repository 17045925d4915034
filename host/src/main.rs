//! `sabot-host`: see `sabot-host --help`.

use clap::Parser;
use sabot_host::cli::{Cli, execute};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .unwrap_or_else(|| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(failure) = execute(cli) {
        tracing::error!("{:#}", failure.error);
        std::process::exit(failure.code);
    }
}
