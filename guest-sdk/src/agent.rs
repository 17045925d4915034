//! The [`Agent`] trait and what a `process` call sees.

use arrow::array::RecordBatch;

use crate::{AgentInfo, Config, Error, Result};

/// User logic of a Sabot agent.
///
/// The host creates one instance per sandbox with [`Agent::init`] and calls
/// [`Agent::process`] for each batch of an input, in order per partition.
pub trait Agent: Sized + 'static {
    /// Describes the agent: its inputs, outputs and configuration keys.
    /// Must not depend on configuration.
    fn describe() -> AgentInfo;

    /// Builds the agent from its configuration.
    fn init(config: &Config) -> Result<Self>;

    /// Processes one batch; emits results through `out`.
    fn process(&mut self, ctx: &Context, batch: RecordBatch, out: &mut Emitter) -> Result<()>;

    /// State this agent keeps in its own fields, for a checkpoint (taken between `process`
    /// calls). The default, `None`, suits agents whose state lives in host [`Table`]s, which
    /// the host checkpoints itself.
    ///
    /// [`Table`]: crate::Table
    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Puts back what [`Agent::snapshot`] returned, when the job restarts from a checkpoint
    /// (after `init`, before any `process`).
    fn restore(&mut self, _snapshot: &[u8]) -> Result<()> {
        Err(Error::fatal(
            "the checkpoint holds a snapshot, but this agent does not restore one",
        ))
    }
}

/// Where a batch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The input stream name.
    pub input: String,
    /// Source partition (0 for files).
    pub partition: u32,
    /// Offset of the batch's first record in its partition.
    pub first_offset: i64,
    /// Offset of the batch's last record in its partition.
    pub last_offset: i64,
    /// Event-time watermark in ms since the Unix epoch, when the host knows one.
    pub watermark_ms: Option<i64>,
}

/// Collects what one `process` call produces: batches for outputs and rejected rows.
#[derive(Debug)]
pub struct Emitter {
    outputs: &'static [String],
    pub(crate) batches: Vec<(String, RecordBatch)>,
    pub(crate) rejected: Vec<(u32, String)>,
}

impl Emitter {
    pub(crate) fn new(outputs: &'static [String]) -> Self {
        Self {
            outputs,
            batches: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// Emits `batch` on the output named `output`. Empty batches are dropped.
    pub fn emit(&mut self, output: &str, batch: RecordBatch) -> Result<()> {
        if !self.outputs.iter().any(|name| name == output) {
            return Err(Error::fatal(format!(
                "agent emitted to undeclared output `{output}` (declared: {})",
                self.outputs.join(", ")
            )));
        }
        if batch.num_rows() > 0 {
            self.batches.push((output.to_string(), batch));
        }
        Ok(())
    }

    /// Refuses row `row` of the input batch; the host dead-letters it with `reason`.
    pub fn reject(&mut self, row: usize, reason: impl Into<String>) {
        self.rejected.push((row as u32, reason.into()));
    }
}
