//! The job configuration: `job.toml`, merged with command-line flags. Relative paths in a file
//! are relative to the file's directory.
//!
//! ```toml
//! [batch]
//! max_rows = 8192        # rows per batch handed to an agent
//! linger_ms = 100        # wait at most this long to fill a batch
//!
//! [limits]               # defaults for every agent
//! memory_mb = 256
//! call_timeout_ms = 5000
//!
//! dead_letter = "dead-letters.jsonl"
//!
//! [[sources]]
//! name = "transactions"
//! path = "transactions.jsonl"
//!
//! [[agents]]
//! wasm = "fraud.wasm"
//! inputs = { transactions = "transactions" }
//! config = { zscore_threshold = "3" }
//!
//! [[sinks]]
//! stream = "fraud-detector.alerts"
//! path = "alerts.jsonl"
//! ```
//!
//! Agents keep keyed state in the host, in memory unless `[state]` says otherwise:
//!
//! ```toml
//! [state]
//! backend = "rocksdb"    # or "memory" (the default)
//! dir = "sabot-state"    # RocksDB's directory
//! ```
//!
//! A path `kafka:TOPIC` binds a source or sink to a Kafka topic; the `[kafka]` table (or
//! `--broker`) says where the cluster is:
//!
//! ```toml
//! [kafka]
//! brokers = "kafka://localhost:9092"
//! group_id = "fraud"              # default: sabot-<first agent>
//!
//! [[sources]]
//! name = "transactions"
//! path = "kafka:bank-transactions"
//! metadata = ["key", "timestamp"] # extra columns _key, _timestamp
//!
//! [[sinks]]
//! stream = "alerts"
//! path = "kafka:fraud-alerts"
//! key_column = "account_number"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::checkpoint::CheckpointConfig;
use crate::io::Format;
use crate::kafka::{KafkaConfig, KeyFormat, MetadataColumn};
use crate::state::StateConfig;
use crate::wasm::{Grants, MAX_MEMORY_CAP};

/// A whole job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Batching of source records.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Default limits of every agent.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Dead-letter file (JSON Lines). Default: `dead-letters.jsonl` in the working directory.
    pub dead_letter: Option<PathBuf>,
    /// Directory of compiled components. Default: `~/.cache/sabot/components`.
    pub cache_dir: Option<PathBuf>,
    /// Seconds between progress lines; 0 turns them off. Default 5.
    pub progress_secs: Option<u64>,
    /// The Kafka cluster of `kafka:` sources and sinks.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Where agents keep their keyed state.
    #[serde(default)]
    pub state: StateConfig,
    /// Checkpoints of state and source positions.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// How source records are gathered into batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most rows in one batch.
    pub max_rows: usize,
    /// Longest wait to fill a batch before handing it on.
    pub linger_ms: u64,
    /// Batches buffered between two stages; bounds memory and applies backpressure.
    pub channel_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 8192,
            linger_ms: 100,
            channel_capacity: 4,
        }
    }
}

/// Limits of an agent; unset fields take the job's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear-memory cap in MiB (default 256).
    pub memory_mb: Option<u64>,
    /// CPU deadline of one call in ms (default 5000).
    pub call_timeout_ms: Option<u64>,
    /// Retries of a batch after a retryable error (default 3).
    pub max_retries: Option<u32>,
    /// What the guest may see beyond the defaults (nothing).
    pub grants: Option<Grants>,
}

/// Limits with every field decided.
#[derive(Debug, Clone)]
pub struct ResolvedLimits {
    pub wasm: crate::wasm::Limits,
    pub max_retries: u32,
}

impl LimitsConfig {
    /// These limits over `defaults`, with built-in defaults last.
    pub fn resolve(&self, defaults: &LimitsConfig) -> Result<ResolvedLimits> {
        let memory_mb = self.memory_mb.or(defaults.memory_mb).unwrap_or(256);
        let memory_bytes = usize::try_from(memory_mb << 20).unwrap_or(usize::MAX);
        if memory_mb == 0 || memory_bytes > MAX_MEMORY_CAP {
            bail!("memory_mb must be between 1 and {}", MAX_MEMORY_CAP >> 20);
        }
        let timeout_ms = self
            .call_timeout_ms
            .or(defaults.call_timeout_ms)
            .unwrap_or(5000);
        if timeout_ms == 0 {
            bail!("call_timeout_ms must be at least 1");
        }
        Ok(ResolvedLimits {
            wasm: crate::wasm::Limits {
                memory_bytes,
                call_timeout: std::time::Duration::from_millis(timeout_ms),
                grants: self
                    .grants
                    .clone()
                    .or_else(|| defaults.grants.clone())
                    .unwrap_or_default(),
            },
            max_retries: self.max_retries.or(defaults.max_retries).unwrap_or(3),
        })
    }
}

/// A source of records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Stream name (default `input`).
    #[serde(default = "default_source_name")]
    pub name: String,
    /// File path, `-` for stdin, or `kafka:TOPIC`.
    pub path: String,
    /// Format; detected from the extension when unset (`jsonl` for Kafka).
    pub format: Option<Format>,
    /// Kafka: how message keys appear in the `_key` column (`string` or `bytes`).
    #[serde(default)]
    pub key_format: KeyFormat,
    /// Kafka: message metadata added as columns (`key`, `timestamp`, `headers`,
    /// `partition`, `offset` → `_key`, `_timestamp`, …).
    #[serde(default)]
    pub metadata: Vec<MetadataColumn>,
    /// Kafka: topic for records that cannot be processed (default `<topic>.dlq`).
    pub dead_letter_topic: Option<String>,
    /// Kafka: records larger than this many bytes are dead letters (default 1 MiB).
    pub max_record_bytes: Option<usize>,
    /// Declared schema, `column = "type"` (types: int64, float64, utf8, bool, timestamp_ms,
    /// int32, float32; a trailing `?` allows nulls). Inferred when unset.
    pub schema: Option<toml::Table>,
    /// Column holding event time in ms, for watermarks.
    pub event_time_column: Option<String>,
    /// How far the watermark trails the newest event time.
    #[serde(default)]
    pub allowed_lateness_ms: i64,
}

impl SourceConfig {
    /// A source `name` reading `path`, everything else at its default.
    pub fn new(name: &str, path: &str) -> Self {
        Self {
            name: name.to_string(),
            path: path.to_string(),
            format: None,
            key_format: KeyFormat::default(),
            metadata: Vec::new(),
            dead_letter_topic: None,
            max_record_bytes: None,
            schema: None,
            event_time_column: None,
            allowed_lateness_ms: 0,
        }
    }
}

fn default_source_name() -> String {
    "input".into()
}

/// An agent of the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Name in logs and stream names (default: the name the agent describes).
    pub name: Option<String>,
    /// Path of the component.
    pub wasm: PathBuf,
    /// Agent input name → stream (`source` or `agent.output`). Default: the first input reads
    /// the only source (first agent) or the previous agent's first output.
    #[serde(default)]
    pub inputs: toml::Table,
    /// Configuration passed to the agent's `init`.
    #[serde(default)]
    pub config: toml::Table,
    /// Limits over the job's defaults.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Where a stream is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `agent.output`, or an output name that only one agent has.
    pub stream: String,
    /// File path, `-` for stdout, `null:` to discard, or `kafka:TOPIC`.
    pub path: String,
    pub format: Option<Format>,
    /// Kafka: the column whose value keys each message.
    pub key_column: Option<String>,
}

/// The topic of a `kafka:TOPIC` path.
pub fn kafka_topic(path: &str) -> Option<&str> {
    path.strip_prefix("kafka:")
}

impl JobConfig {
    /// Reads a job file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config `{}`", path.display()))?;
        let mut config: JobConfig = toml::from_str(&text)
            .with_context(|| format!("invalid config `{}`", path.display()))?;
        config.rebase(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes relative paths relative to `dir`.
    fn rebase(&mut self, dir: &Path) {
        let rebase = |p: &str| -> String {
            if p == "-" || p == "null:" || kafka_topic(p).is_some() || Path::new(p).is_absolute() {
                p.to_string()
            } else {
                dir.join(p).display().to_string()
            }
        };
        for source in &mut self.sources {
            source.path = rebase(&source.path);
        }
        for sink in &mut self.sinks {
            sink.path = rebase(&sink.path);
        }
        for agent in &mut self.agents {
            agent.wasm = dir.join(&agent.wasm);
        }
        if let Some(dead) = &mut self.dead_letter {
            *dead = dir.join(&*dead);
        }
        for path in [
            self.cache_dir.as_mut(),
            self.state.dir.as_mut(),
            self.checkpoint.dir.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *path = dir.join(&*path);
        }
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.batch.max_rows == 0 {
            bail!("batch.max_rows must be at least 1");
        }
        if self.batch.channel_capacity == 0 {
            bail!("batch.channel_capacity must be at least 1");
        }
        self.limits.resolve(&LimitsConfig::default())?;
        for agent in &self.agents {
            agent
                .limits
                .resolve(&self.limits)
                .with_context(|| format!("limits of agent `{}`", agent.wasm.display()))?;
        }
        let mut names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("two sources are named `{}`", w[0]);
        }
        Ok(())
    }
}

/// A TOML value as the text an agent's `init` receives.
pub fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_job_and_rebases_paths() {
        let mut job: JobConfig = toml::from_str(
            r#"
            dead_letter = "dlq.jsonl"
            [batch]
            max_rows = 100
            [limits]
            memory_mb = 64
            [[sources]]
            name = "tx"
            path = "tx.jsonl"
            schema = { id = "int64", amount = "float64?" }
            [[agents]]
            wasm = "a.wasm"
            config = { threshold = 3, mode = "x" }
            limits = { call_timeout_ms = 10 }
            [[sinks]]
            stream = "a.out"
            path = "-"
            "#,
        )
        .unwrap();
        job.rebase(Path::new("/jobs"));
        job.validate().unwrap();
        assert_eq!(job.sources[0].path, "/jobs/tx.jsonl");
        assert_eq!(job.sinks[0].path, "-");
        assert_eq!(job.agents[0].wasm, PathBuf::from("/jobs/a.wasm"));
        assert_eq!(value_text(&job.agents[0].config["threshold"]), "3");
        let limits = job.agents[0].limits.resolve(&job.limits).unwrap();
        assert_eq!(limits.wasm.memory_bytes, 64 << 20);
        assert_eq!(limits.wasm.call_timeout.as_millis(), 10);
        let schema = crate::io::schema::from_toml(job.sources[0].schema.as_ref().unwrap()).unwrap();
        assert_eq!(schema.field(0).name(), "id");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<JobConfig>("bogus = 1").is_err());
        let job: JobConfig = toml::from_str("[batch]\nmax_rows = 0").unwrap();
        assert!(job.validate().is_err());
        let job: JobConfig = toml::from_str("[limits]\nmemory_mb = 999999").unwrap();
        assert!(job.validate().is_err());
    }
}
