//! `sabot-host checkpoints`: list a job's checkpoints, inspect one, and read the state an
//! agent has in it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::checkpoint::{CheckpointStore, Manifest, SourcePosition, verify};
use crate::state::read_snapshot;

#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// List the checkpoints of a directory, newest first, each verified against its manifest.
    List(ListArgs),
    /// Show what one checkpoint holds: source positions, agents' state, files.
    Inspect(InspectArgs),
    /// Print the state an agent has in a checkpoint as JSON Lines: table, partition, key
    /// (text when it is UTF-8, else `key_hex`), `value_hex` and `expires_ms` (0: never).
    State(StateArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The job's checkpoint directory.
    #[arg(default_value = "sabot-checkpoints")]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A checkpoint directory (`.../chk-00000012`).
    pub path: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// A checkpoint directory (`.../chk-00000012`).
    pub path: PathBuf,
    /// The agent whose state to print.
    #[arg(long)]
    pub agent: String,
    /// Only this table.
    #[arg(long)]
    pub table: Option<String>,
}

/// Runs a `checkpoints` command.
pub fn execute(command: CheckpointsCommand) -> Result<()> {
    match command {
        CheckpointsCommand::List(args) => list(&args),
        CheckpointsCommand::Inspect(args) => {
            let manifest = verify(&args.path)
                .with_context(|| format!("checkpoint {} is not usable", args.path.display()))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                print_manifest(&manifest);
            }
            Ok(())
        }
        CheckpointsCommand::State(args) => print_state(&args),
    }
}

fn list(args: &ListArgs) -> Result<()> {
    if !args.dir.is_dir() {
        bail!("{} is not a checkpoint directory", args.dir.display());
    }
    let store = CheckpointStore::open(&args.dir, usize::MAX)?;
    let listed = store.list()?;
    if args.json {
        let rows: Vec<Value> = listed
            .iter()
            .map(|l| match &l.manifest {
                Ok(m) => {
                    json!({"id": l.id, "path": l.path, "ok": true, "created_ms": m.created_ms,
                                "bytes": m.bytes(), "sources": m.sources, "agents": m.agents.len()})
                }
                Err(reason) => {
                    json!({"id": l.id, "path": l.path, "ok": false, "reason": reason})
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!("no checkpoints in {}", args.dir.display());
    }
    for l in &listed {
        match &l.manifest {
            Ok(m) => println!(
                "{:>8}  ok       {}  {:>10} bytes  {}",
                l.id,
                age(m.created_ms),
                m.bytes(),
                positions(m)
            ),
            Err(reason) => println!("{:>8}  DAMAGED  {reason}", l.id),
        }
    }
    Ok(())
}

fn print_manifest(m: &Manifest) {
    println!(
        "checkpoint {} ({}, {} bytes)",
        m.id,
        age(m.created_ms),
        m.bytes()
    );
    println!("sources:");
    for (name, position) in &m.sources {
        println!("  {name}: {}", describe_position(position));
    }
    println!("agents:");
    for (name, snapshot) in &m.agents {
        println!("  {name}: {} state in {}", snapshot.backend, snapshot.dir);
    }
    println!("files: {}", m.files.len());
}

fn positions(m: &Manifest) -> String {
    m.sources
        .iter()
        .map(|(name, p)| format!("{name}: {}", describe_position(p)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_position(position: &SourcePosition) -> String {
    match position {
        SourcePosition::Kafka { topic, offsets } => {
            let parts: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}@{o}")).collect();
            format!("topic {topic} next offsets {}", parts.join(" "))
        }
        SourcePosition::File { next_offset } => format!("file, next record {next_offset}"),
    }
}

/// When a checkpoint was taken, as a UTC time.
fn age(created_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(created_ms as i64).map_or_else(
        || format!("{created_ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn print_state(args: &StateArgs) -> Result<()> {
    let manifest = verify(&args.path)
        .with_context(|| format!("checkpoint {} is not usable", args.path.display()))?;
    let Some(snapshot) = manifest.agents.get(&args.agent) else {
        let known: Vec<&str> = manifest.agents.keys().map(String::as_str).collect();
        bail!(
            "checkpoint {} has no state of agent `{}` (it has: {})",
            manifest.id,
            args.agent,
            known.join(", ")
        );
    };
    let dir: &Path = &snapshot.state_dir(&args.path);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    read_snapshot(&snapshot.backend, dir, &mut |table, scoped, stored| {
        if args.table.as_deref().is_some_and(|t| t != table) {
            return Ok(());
        }
        let (partition, key) = crate::state::split_scoped_key(scoped)?;
        let (expires_ms, value) = crate::state::split_entry(stored)?;
        let mut row = json!({"table": table, "partition": partition, "expires_ms": expires_ms});
        match std::str::from_utf8(key) {
            Ok(text) => row["key"] = Value::String(text.to_string()),
            Err(_) => row["key_hex"] = Value::String(hex(key)),
        }
        row["value_hex"] = Value::String(hex(value));
        writeln!(out, "{row}")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
