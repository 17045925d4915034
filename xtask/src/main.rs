//! Project tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`):
//!
//! - `demo [N] [SEED]`: build everything and run the fraud demo on N generated transactions;
//! - `test [ARGS]`: build the guest components, then run the whole test suite;
//! - `bench [ARGS]`: build the guest components, then run the benchmarks;
//! - `guests`: build the guest components for `wasm32-wasip2`;
//! - `tansu`: make sure the test broker (tansu) is installed; print its path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod tansu;

/// Guest crates built for wasm32-wasip2.
const GUESTS: [&str; 4] = [
    "sabot-agent-filter",
    "sabot-agent-fraud",
    "sabot-agent-faults",
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
        "demo" => demo(&rest),
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

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
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
fn build_guests() -> Result<PathBuf> {
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

fn demo(args: &[String]) -> Result<()> {
    let count: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()
        .context("N must be a number")?
        .unwrap_or(200_000);
    let seed: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()
        .context("SEED must be a number")?
        .unwrap_or(42);
    let guests = build_guests()?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "sabot-host",
        "-p",
        "sabot-fraud-gen",
    ]))?;
    let bin = target_dir().join("release");
    let out = target_dir().join("demo");
    std::fs::create_dir_all(&out)?;
    let transactions = out.join("transactions.jsonl");
    let alerts = out.join("alerts.jsonl");
    let dead = out.join("dead-letters.jsonl");
    let _ = std::fs::remove_file(&dead);

    println!("== generating {count} transactions (seed {seed})");
    run(Command::new(bin.join("sabot-fraud-gen"))
        .args([
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&transactions))?;

    println!("== sabot-host deploy fraud.wasm");
    run(Command::new(bin.join("sabot-host"))
        .arg("deploy")
        .arg(guests.join("sabot_agent_fraud.wasm"))
        .arg("--input")
        .arg(format!("transactions={}", transactions.display()))
        .arg("--output")
        .arg(format!("alerts={}", alerts.display()))
        .arg("--dead-letter")
        .arg(&dead))?;

    summarize(&alerts)?;
    println!(
        "\nalerts: {}\ninput:  {}",
        alerts.display(),
        transactions.display()
    );
    Ok(())
}

/// Prints alert counts by rule and severity, and one example of each rule.
fn summarize(alerts: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(alerts).with_context(|| format!("reading {}", alerts.display()))?;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut examples: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0;
    for line in text.lines() {
        let alert: serde_json::Value = serde_json::from_str(line)?;
        let field = |name: &str| alert[name].as_str().unwrap_or("?").to_string();
        *counts
            .entry((field("fraud_type"), field("severity")))
            .or_default() += 1;
        examples.entry(field("fraud_type")).or_insert_with(|| {
            format!(
                "tx {} account {}: {}",
                alert["transaction_id"],
                field("account_number"),
                field("details")
            )
        });
        total += 1;
    }
    println!("\n== {total} fraud alerts");
    for ((rule, severity), n) in &counts {
        println!("  {rule:<16} {severity:<9} {n:>7}");
    }
    println!("examples:");
    for (rule, example) in &examples {
        println!("  {rule:<16} {example}");
    }
    Ok(())
}
