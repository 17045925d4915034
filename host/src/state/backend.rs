//! The backend trait, its configuration, and choosing one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{MemoryBackend, RocksBackend};

/// A state table of an agent: a column family in RocksDB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(Arc<str>);

impl TableId {
    /// The table named `table`.
    pub fn new(table: &str) -> Self {
        Self(Arc::from(table))
    }

    /// The name the backend stores the table under.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Writes applied together or not at all: `(table, scoped key, stored entry or None to delete)`.
#[derive(Debug, Default)]
pub struct WriteSet {
    pub ops: Vec<(TableId, Vec<u8>, Option<Vec<u8>>)>,
}

/// Where one agent's state lives (each agent has its own, so each can be snapshotted at its own
/// point of a checkpoint). Keys are scoped keys ([`super::scoped_key`]), values stored entries
/// ([`super::entry`]); expiry is checked by the caller.
pub trait StateBackend: Send + Sync {
    /// `memory` or `rocksdb`, for logs.
    fn name(&self) -> &'static str;

    /// The stored entries of `keys` in `table`, in order; `None` where absent.
    fn get_many(&self, table: &TableId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Applies `writes` atomically.
    fn write(&self, writes: WriteSet) -> Result<()>;

    /// Writes a consistent copy of every table into `dir` (which must not exist yet), for a
    /// checkpoint; restored with [`open`] and [`StateStart::Restore`].
    fn snapshot(&self, dir: &Path) -> Result<()>;
}

/// What an agent's state starts from.
#[derive(Debug, Clone)]
pub enum StateStart {
    /// Whatever the backend holds (RocksDB keeps its directory; memory starts empty).
    Keep,
    /// Nothing: a checkpointed job without a checkpoint to restore starts empty, so state
    /// never holds effects of records whose offsets no checkpoint covers.
    Empty,
    /// The snapshot of `backend` in a checkpoint folder.
    Restore { backend: String, dir: PathBuf },
}

/// Which backend keeps the agents' state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// In the host's memory: fast, lost when the process ends (until checkpoints restore it).
    #[default]
    Memory,
    /// RocksDB on local disk: survives a restart of the process.
    Rocksdb,
}

impl StateKind {
    /// The backend's name, as in configuration and checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Memory => "memory",
            StateKind::Rocksdb => "rocksdb",
        }
    }
}

/// The `[state]` table of a job.
///
/// ```toml
/// [state]
/// backend = "rocksdb"   # or "memory" (the default)
/// dir = "sabot-state"   # RocksDB's directory, one database per agent inside
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateKind,
    /// Directory of the RocksDB backend [default: `sabot-state`]; agent `A` keeps its
    /// database in `DIR/A`.
    pub dir: Option<PathBuf>,
}

impl StateConfig {
    /// The RocksDB directory of the agent named `agent`.
    pub fn agent_dir(&self, agent: &str) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("sabot-state"))
            .join(agent)
    }
}

/// Opens the configured backend for the agent named `agent`, starting from `start`.
pub fn open(
    config: &StateConfig,
    agent: &str,
    start: &StateStart,
) -> Result<Arc<dyn StateBackend>> {
    let kind = config.backend;
    if let StateStart::Restore { backend, .. } = start
        && backend != kind.name()
    {
        bail!(
            "the checkpoint holds `{backend}` state for agent `{agent}`, but the job's state backend is `{}`",
            kind.name()
        );
    }
    let live = config.agent_dir(agent);
    Ok(match (kind, start) {
        (StateKind::Memory, StateStart::Restore { dir, .. }) => {
            let backend = MemoryBackend::restore(dir)?;
            tracing::info!(
                agent,
                "state backend: memory, restored from {}",
                dir.display()
            );
            Arc::new(backend)
        }
        (StateKind::Memory, _) => {
            tracing::info!(agent, "state backend: memory (lost when the process ends)");
            Arc::new(MemoryBackend::default())
        }
        (StateKind::Rocksdb, StateStart::Restore { dir, .. }) => {
            let backend = RocksBackend::restore(dir, &live)?;
            tracing::info!(agent, "RocksDB state restored from {}", dir.display());
            Arc::new(backend)
        }
        (StateKind::Rocksdb, StateStart::Empty) => {
            super::rocks::clear(&live)?;
            Arc::new(RocksBackend::open(&live)?)
        }
        (StateKind::Rocksdb, StateStart::Keep) => Arc::new(RocksBackend::open(&live)?),
    })
}

/// Called with `(table, scoped key, stored entry)` for each entry of a snapshot.
pub type EntryVisitor<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<()> + 'a;

/// Calls `visit(table, scoped key, stored entry)` for every entry of `backend`'s snapshot in
/// `dir` (a checkpoint's agent folder).
pub fn read_snapshot(backend: &str, dir: &Path, visit: &mut EntryVisitor<'_>) -> Result<()> {
    match backend {
        "memory" => super::memory::read_snapshot(dir, visit),
        "rocksdb" => super::rocks::read_snapshot(dir, visit),
        other => bail!("unknown state backend `{other}` in the checkpoint"),
    }
}
