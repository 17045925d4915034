//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`):
//!
//! - `demo [N] [SEED] [--kafka [--broker URL]]`: build everything and run the fraud demo on N
//!   generated transactions, on files or on Kafka;
//! - `test [ARGS]`: build the guest components, then run the whole test suite;
//! - `bench [ARGS]`: build the guest components, then run the benchmarks;
//! - `guests`: build the guest components for `wasm32-wasip2`;
//! - `tansu`: make sure the test broker (tansu) is installed; print its path.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

mod demo;
mod tansu;

/// Guest crates built for wasm32-wasip2.
const GUESTS: [&str; 5] = [
    "sabot-agent-filter",
    "sabot-agent-fraud",
    "sabot-agent-faults",
    "sabot-agent-counter",
    "sabot-not-an-agent",
];
const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "guests" => build_guests().map(|dir| println!("{}", dir.display())),
        "tansu" => tansu::ensure().map(|path| println!("{}", path.display())),
        "demo" => demo::run(&rest),
        "test" => with_guests("test", &rest),
        "bench" => with_guests("bench", &rest),
        _ => bail!(
            "usage: cargo xtask <demo [N] [SEED] [--kafka] | test [ARGS] | bench [ARGS] | guests | tansu>"
        ),
    }
}

/// The workspace root. Read at run time (`cargo run` sets `CARGO_MANIFEST_DIR`) rather than
/// baked in at compile time, so an xtask binary built from another checkout that shares the
/// target directory still works on this one.
fn workspace() -> PathBuf {
    let xtask_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    xtask_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Makes sure the wasm target is installed (rustup is part of the Rust toolchain).
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        Err(_) => Ok(()), // no rustup: let cargo report a missing target itself
    }
}

/// Builds every guest component; returns the directory holding the `.wasm` files.
pub(crate) fn build_guests() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", WASM_TARGET]);
    for guest in GUESTS {
        cmd.args(["-p", guest]);
    }
    run(&mut cmd)?;
    Ok(target_dir().join(WASM_TARGET).join("release"))
}

/// Runs `cargo SUBCOMMAND` with the guests built and the test broker installed.
fn with_guests(subcommand: &str, args: &[String]) -> Result<()> {
    let guests = build_guests()?;
    let broker = tansu::ensure()?;
    run(cargo()
        .arg(subcommand)
        .args(args)
        .env("SABOT_GUESTS", guests)
        .env("SABOT_TANSU", broker))
}
