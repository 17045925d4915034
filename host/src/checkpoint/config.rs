//! The `[checkpoint]` table of a job.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How often and where a job takes checkpoints. Checkpoints are on when a directory is
/// given (here or with `--checkpoint-dir`).
///
/// ```toml
/// [checkpoint]
/// dir = "checkpoints"   # turns checkpoints on
/// interval_ms = 1000    # between the start of one checkpoint and the next
/// keep = 3              # complete checkpoints kept
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    pub dir: Option<PathBuf>,
    pub interval_ms: u64,
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            dir: None,
            interval_ms: 1000,
            keep: 3,
        }
    }
}

impl CheckpointConfig {
    /// The interval between checkpoints.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(10))
    }
}
