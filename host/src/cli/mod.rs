//! The `sabot-host` command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

mod checkpoints;
mod topics;

use crate::checkpoint::{CheckpointStore, verify};
use crate::config::{AgentConfig, JobConfig, SinkConfig, SourceConfig, kafka_topic};
use crate::io::{DeadLetters, Format};
use crate::pipeline::{self, Checkpointing, RunOptions, Summary};
use crate::state::StateKind;
use crate::wasm::{self, LoadError, Runtime};

/// Exit code of a bad invocation or configuration (also clap's).
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a file that is not a usable agent component.
pub const EXIT_BAD_COMPONENT: i32 = 3;
/// Exit code of a job that failed while running.
pub const EXIT_JOB_FAILED: i32 = 1;

/// Sabot: a stream processor whose agents are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "sabot-host", version, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `sabot_host=debug,guest=trace` (or RUST_LOG).
    #[arg(long, global = true, default_value = "info", env = "SABOT_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run agents over inputs until the inputs end or Ctrl-C / SIGTERM (which drain cleanly).
    Deploy(Box<DeployArgs>),
    /// Show what an agent component describes and which world it implements.
    Inspect(InspectArgs),
    /// List, create and describe Kafka topics (with a consumer group's lag).
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// List, inspect and read the checkpoints of a job.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
}

/// Where the Kafka cluster is.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap broker(s): kafka://HOST:PORT, comma-separated (`topics` commands
    /// default to kafka://localhost:9092).
    #[arg(long, env = "SABOT_BROKER", value_name = "kafka://HOST:PORT")]
    pub broker: Option<String>,
    /// librdkafka property for every Kafka client, KEY=VALUE (repeatable).
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Agent components; several form a chain (each feeds its first output to the next).
    /// Without any, the job copies its input to its output.
    pub wasm: Vec<PathBuf>,
    /// Job file (TOML); flags below override or extend it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Input `[NAME=]PATH`; PATH `-` is stdin, `kafka:TOPIC` a topic. Format from the
    /// extension or --input-format (JSON for topics).
    #[arg(short, long = "input", value_name = "[NAME=]PATH")]
    pub inputs: Vec<String>,
    /// Format of --input files without a telling extension (and of stdin).
    #[arg(long, value_enum)]
    pub input_format: Option<Format>,
    /// Output `[STREAM=]PATH`; STREAM is `agent.output` or an output name; PATH `-` is stdout,
    /// `null:` discards, `kafka:TOPIC` produces to a topic. Unrouted outputs go to stdout.
    #[arg(short, long = "output", value_name = "[STREAM=]PATH")]
    pub outputs: Vec<String>,
    /// Column that keys the messages of the Kafka outputs given with --output.
    #[arg(long, value_name = "COLUMN")]
    pub output_key: Option<String>,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Consumer group of the Kafka inputs [default: sabot-<first agent>].
    #[arg(long)]
    pub group: Option<String>,
    /// Create missing input and output topics instead of failing.
    #[arg(long)]
    pub create_topics: bool,
    /// Stop once every Kafka input partition has been read to its end (a bounded run);
    /// otherwise Kafka inputs are read until Ctrl-C or SIGTERM.
    #[arg(long)]
    pub stop_at_end: bool,
    /// Exactly-once Kafka output: one transaction per checkpoint, committed with the input
    /// offsets (needs --checkpoint-dir and Kafka inputs; consumers read with
    /// isolation.level=read_committed).
    #[arg(long)]
    pub exactly_once: bool,
    /// Agent configuration `KEY=VALUE` (single agent; use the job file for several).
    #[arg(short, long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Dead-letter file (JSON Lines) [default: dead-letters.jsonl].
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Rows per batch [default: 8192].
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// Longest wait to fill a batch, in ms [default: 100].
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Linear-memory cap of each agent in MiB [default: 256].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPU deadline of one agent call in ms [default: 5000].
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Directory of compiled components [default: ~/.cache/sabot/components].
    #[arg(long, env = "SABOT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile components afresh without the on-disk cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Seconds between progress lines; 0 turns them off [default: 5].
    #[arg(long)]
    pub progress_secs: Option<u64>,
    /// Where agents keep their keyed state [default: memory].
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub state: Option<StateKind>,
    /// Directory of the RocksDB state backend [default: sabot-state].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Take checkpoints into DIR, and restore the newest complete one found there on start.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints [default: 1000].
    #[arg(long, value_name = "MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Restore this checkpoint (a `chk-…` directory) instead of the newest; checkpoints go
    /// on into its parent directory unless --checkpoint-dir says otherwise.
    #[arg(long, value_name = "PATH")]
    pub from_checkpoint: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The agent component.
    pub wasm: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Directory of compiled components [default: ~/.cache/sabot/components].
    #[arg(long, env = "SABOT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    fn classify(error: anyhow::Error, default: i32) -> Self {
        let code = match error.downcast_ref::<LoadError>() {
            Some(LoadError::Read { .. }) => EXIT_USAGE,
            Some(_) => EXIT_BAD_COMPONENT,
            None => default,
        };
        Self { code, error }
    }
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Deploy(args) => deploy(*args),
        Command::Inspect(args) => inspect(args).map_err(|e| Failure::classify(e, EXIT_USAGE)),
        Command::Topics(command) => topics::execute(command).map_err(|error| Failure {
            code: EXIT_JOB_FAILED,
            error,
        }),
        Command::Checkpoints(command) => {
            checkpoints::execute(command).map_err(|e| Failure::classify(e, EXIT_USAGE))
        }
    }
}

fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let usage = |e| Failure::classify(e, EXIT_USAGE);
    let job = job_from_args(&args).map_err(usage)?;
    let cache_dir = if args.no_cache {
        None
    } else {
        job.cache_dir.clone().or_else(wasm::default_cache_dir)
    };
    let runtime = Runtime::new(cache_dir).map_err(|e| Failure {
        code: EXIT_JOB_FAILED,
        error: e,
    })?;
    let plan = pipeline::plan(&job, &runtime).map_err(usage)?;
    let dead_letter_topics = crate::kafka::prepare(&plan).map_err(|error| Failure {
        code: if error.is::<crate::kafka::MissingTopic>() {
            EXIT_USAGE
        } else {
            EXIT_JOB_FAILED
        },
        error,
    })?;
    for agent in &plan.agents {
        tracing::info!(
            agent = %agent.name,
            inputs = ?agent.inputs,
            memory_mb = agent.limits.wasm.memory_bytes >> 20,
            call_timeout_ms = agent.limits.wasm.call_timeout.as_millis() as u64,
            "deploying {} {}", agent.info.name, agent.info.version
        );
    }
    let dead_path = job
        .dead_letter
        .clone()
        .unwrap_or_else(|| PathBuf::from("dead-letters.jsonl"));
    let dead_letters = std::sync::Arc::new(match dead_letter_topics {
        Some(topics) => DeadLetters::new(Some(dead_path.clone())).with_topics(topics),
        None => DeadLetters::new(Some(dead_path.clone())),
    });
    let options = RunOptions {
        checkpoints: checkpointing(&job, &plan, args.from_checkpoint.as_deref()).map_err(usage)?,
        ..RunOptions::for_job(&job, dead_letters)
    };
    let summary = pipeline::run(plan, options).map_err(|e| Failure {
        code: EXIT_JOB_FAILED,
        error: e,
    })?;
    report(&summary, &dead_path);
    Ok(())
}

/// The job's checkpoints, and the checkpoint it restores: `from` if given; else, with
/// exactly-once output, the one whose offsets the broker has committed; else the newest
/// complete one in the directory (damaged ones are logged and skipped).
fn checkpointing(
    job: &JobConfig,
    plan: &pipeline::Plan,
    from: Option<&std::path::Path>,
) -> Result<Option<Checkpointing>> {
    let exactly_once = job.kafka.exactly_once;
    let Some(dir) = &job.checkpoint.dir else {
        if exactly_once {
            bail!("--exactly-once needs checkpoints: give --checkpoint-dir (or [checkpoint] dir)");
        }
        return Ok(None);
    };
    if exactly_once {
        if let Some(source) = plan.sources.iter().find(|s| s.kafka.is_none()) {
            bail!(
                "--exactly-once needs every input on Kafka; `{}` reads {} (its position cannot be committed with the output)",
                source.name,
                source.path
            );
        }
        if !plan.sinks.iter().any(|s| s.kafka.is_some()) {
            bail!("--exactly-once needs a Kafka output");
        }
    }
    let store = CheckpointStore::open(
        dir,
        job.checkpoint.keep.max(if exactly_once { 2 } else { 1 }),
    )?;
    let restore = match from {
        Some(path) => {
            let manifest = verify(path)
                .with_context(|| format!("checkpoint {} is not usable", path.display()))?;
            Some((path.to_path_buf(), manifest))
        }
        None if exactly_once => crate::kafka::recovery::committed_checkpoint(&store, plan)?,
        None => store.latest()?,
    };
    match &restore {
        Some((path, manifest)) => tracing::info!(
            "restoring checkpoint {} ({}): {} agents' state, {} sources' positions",
            manifest.id,
            path.display(),
            manifest.agents.len(),
            manifest.sources.len()
        ),
        None => tracing::info!(
            "no checkpoint in {}: starting from scratch (state empty)",
            dir.display()
        ),
    }
    tracing::info!(
        "checkpoints every {} ms into {} (keeping {})",
        job.checkpoint.interval().as_millis(),
        dir.display(),
        job.checkpoint.keep
    );
    Ok(Some(Checkpointing {
        store,
        interval: job.checkpoint.interval(),
        restore,
    }))
}

fn report(summary: &Summary, dead_path: &std::path::Path) {
    let rate = summary.records_in as f64 / summary.active_secs.max(1e-9);
    let outputs: Vec<String> = summary
        .per_stream
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    tracing::info!(
        "{}: {} records in ({rate:.0}/s), {} out [{}], {} dead letters{}, {} restarts, {:.2} s",
        if summary.interrupted {
            "stopped"
        } else {
            "done"
        },
        summary.records_in,
        summary.records_out(),
        outputs.join(", "),
        summary.dead_letters,
        if summary.dead_letters > 0 {
            format!(" (in {})", dead_path.display())
        } else {
            String::new()
        },
        summary.restarts,
        summary.elapsed_secs,
    );
}

/// The job: the config file (if any) extended by the flags.
fn job_from_args(args: &DeployArgs) -> Result<JobConfig> {
    let mut job = match &args.config {
        Some(path) => JobConfig::load(path)?,
        None => JobConfig::default(),
    };
    for wasm in &args.wasm {
        job.agents.push(AgentConfig {
            name: None,
            wasm: wasm.clone(),
            inputs: Default::default(),
            config: Default::default(),
            limits: Default::default(),
        });
    }
    if job.agents.is_empty() && job.sinks.is_empty() && args.outputs.is_empty() {
        bail!(
            "no agent to deploy: give an agent.wasm, a --config with [[agents]], or an --output to copy the input to"
        );
    }
    if !args.settings.is_empty() {
        let [agent] = job.agents.as_mut_slice() else {
            bail!("--set needs exactly one agent; configure several in the job file");
        };
        for setting in &args.settings {
            let (key, value) = setting
                .split_once('=')
                .with_context(|| format!("--set `{setting}`: expected KEY=VALUE"))?;
            agent.config.insert(
                key.trim().to_string(),
                toml::Value::String(value.to_string()),
            );
        }
    }
    let unnamed_inputs = args
        .inputs
        .iter()
        .filter(|i| split_named(i).0.is_none())
        .count();
    for input in &args.inputs {
        let (name, path) = split_named(input);
        if name.is_none() && unnamed_inputs > 1 {
            bail!("several --input without a name; write them as NAME=PATH");
        }
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| "input".to_string());
        job.sources.retain(|s| s.name != name);
        job.sources.push(SourceConfig {
            format: args.input_format,
            ..SourceConfig::new(&name, path)
        });
    }
    for output in &args.outputs {
        let (stream, path) = split_named(output);
        let stream = match stream {
            Some(stream) => stream.to_string(),
            None => last_output_placeholder(),
        };
        job.sinks.push(SinkConfig {
            stream,
            path: path.to_string(),
            format: None,
            key_column: args
                .output_key
                .clone()
                .filter(|_| kafka_topic(path).is_some()),
        });
    }
    if let Some(v) = args.max_rows {
        job.batch.max_rows = v;
    }
    if let Some(v) = args.linger_ms {
        job.batch.linger_ms = v;
    }
    if args.memory_mb.is_some() {
        job.limits.memory_mb = args.memory_mb;
    }
    if args.timeout_ms.is_some() {
        job.limits.call_timeout_ms = args.timeout_ms;
    }
    if let Some(dir) = &args.cache_dir {
        job.cache_dir = Some(dir.clone());
    }
    if let Some(kind) = args.state {
        job.state.backend = kind;
    }
    if let Some(dir) = &args.state_dir {
        job.state.dir = Some(dir.clone());
    }
    if let Some(dead) = &args.dead_letter {
        job.dead_letter = Some(dead.clone());
    }
    if let Some(dir) = &args.checkpoint_dir {
        job.checkpoint.dir = Some(dir.clone());
    } else if let Some(parent) = args.from_checkpoint.as_deref().and_then(|p| p.parent()) {
        job.checkpoint
            .dir
            .get_or_insert_with(|| parent.to_path_buf());
    }
    if let Some(ms) = args.checkpoint_interval_ms {
        job.checkpoint.interval_ms = ms;
    }
    if args.progress_secs.is_some() {
        job.progress_secs = args.progress_secs;
    }
    args.broker.apply(&mut job.kafka)?;
    if let Some(group) = &args.group {
        job.kafka.group_id = Some(group.clone());
    }
    job.kafka.create_topics |= args.create_topics;
    job.kafka.stop_at_end |= args.stop_at_end;
    job.kafka.exactly_once |= args.exactly_once;
    job.validate()?;
    Ok(job)
}

impl BrokerArgs {
    /// Puts the flags over the job file's `[kafka]` table.
    pub fn apply(&self, kafka: &mut crate::kafka::KafkaConfig) -> Result<()> {
        if let Some(broker) = &self.broker {
            kafka.brokers = Some(broker.clone());
        }
        for property in &self.kafka_properties {
            let (key, value) = property
                .split_once('=')
                .with_context(|| format!("-X `{property}`: expected KEY=VALUE"))?;
            kafka
                .properties
                .insert(key.trim().to_string(), value.to_string());
        }
        Ok(())
    }
}

/// The stream name an unnamed `--output PATH` stands for: the last agent's first output.
pub const LAST_OUTPUT: &str = "@last";

fn last_output_placeholder() -> String {
    LAST_OUTPUT.to_string()
}

/// `NAME=PATH` → (Some(NAME), PATH); `PATH` → (None, PATH). A `=` inside a path with a slash
/// before it is part of the path.
fn split_named(arg: &str) -> (Option<&str>, &str) {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => (Some(name), path),
        _ => (None, arg),
    }
}

fn inspect(args: InspectArgs) -> Result<()> {
    let runtime = Runtime::new(args.cache_dir.or_else(wasm::default_cache_dir))?;
    let component = runtime.load(&args.wasm)?;
    let info = component
        .describe(&wasm::Limits::default())
        .map_err(|err| anyhow::anyhow!("{}: describe failed: {err}", args.wasm.display()))?;
    let interfaces = component.interfaces();
    if args.json {
        let streams = |s: &[wasm::StreamSpec]| -> Vec<serde_json::Value> {
            s.iter()
                .map(|s| serde_json::json!({"name": s.name, "description": s.description}))
                .collect()
        };
        let value = serde_json::json!({
            "world": wasm::WORLD,
            "name": info.name,
            "version": info.version,
            "description": info.description,
            "inputs": streams(&info.inputs),
            "outputs": streams(&info.outputs),
            "config": info.config.iter().map(|k| serde_json::json!({
                "name": k.name, "description": k.description, "required": k.required, "default": k.default_value,
            })).collect::<Vec<_>>(),
            "imports": interfaces.iter().filter(|(_, imp)| *imp).map(|(n, _)| n).collect::<Vec<_>>(),
            "exports": interfaces.iter().filter(|(_, imp)| !*imp).map(|(n, _)| n).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("agent        {} {}", info.name, info.version);
    println!("description  {}", info.description);
    println!("world        {}", wasm::WORLD);
    println!("inputs");
    for s in &info.inputs {
        println!("  {:<24} {}", s.name, s.description);
    }
    println!("outputs");
    for s in &info.outputs {
        println!("  {:<24} {}", s.name, s.description);
    }
    println!("config");
    for k in &info.config {
        let default = match (&k.default_value, k.required) {
            (_, true) => "required".to_string(),
            (Some(d), _) => format!("default {d}"),
            (None, _) => "optional".to_string(),
        };
        println!("  {:<24} {} ({default})", k.name, k.description);
    }
    for (title, want_import) in [("imports", true), ("exports", false)] {
        println!("{title}");
        for (name, _) in interfaces.iter().filter(|(_, imp)| *imp == want_import) {
            println!("  {name}");
        }
    }
    Ok(())
}
