//! One agent's stage: calls the Wasm instance for each incoming batch, routes its outputs,
//! dead-letters what it cannot process, and replaces the instance after a trap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use arrow::array::RecordBatch;
use sabot_ipc::Trust;
use serde_json::Value;

use super::align::{Aligned, AlignedInputs};
use super::envelope::{Envelope, Offsets, Outlet};
use super::graph::PlannedAgent;
use super::metrics::{self, Metrics};
use crate::checkpoint::{Coordinator, GUEST_FILE, STATE_FOLDER};
use crate::io::dead_letter::rows_as_json;
use crate::io::{DeadLetter, DeadLetters};
use crate::state::StateBackend;
use crate::wasm::{AgentInstance, BatchContext, CallError, ErrorKind, ProcessResult};

/// First wait before retrying a batch after a retryable error; doubles each time.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// What became of a batch.
enum Outcome {
    /// Delivered or dead-lettered.
    Done,
    /// The agent failed on it (trap or bad data) and it has more than the bad records in it.
    Poisoned(String),
}

/// An agent stage's part in the job's checkpoints.
#[derive(Default)]
pub struct Checkpoints {
    /// The job's coordinator, when it takes checkpoints.
    pub coordinator: Option<Arc<Coordinator>>,
    /// What the agent's `snapshot` returned in the restored checkpoint, for its first instance.
    pub restore: Option<Vec<u8>>,
}

/// A running agent stage.
pub struct AgentStage {
    agent: PlannedAgent,
    label: Arc<str>,
    outlets: HashMap<String, Outlet>,
    dead: Arc<DeadLetters>,
    metrics: Arc<Metrics>,
    state: Arc<dyn StateBackend>,
    checkpoints: Checkpoints,
    instance: Option<AgentInstance>,
}

impl AgentStage {
    /// A stage for `agent`; `outlets` maps each output name to its receivers; the agent's
    /// state tables live in `state`; it is snapshotted at the barriers of `checkpoints`.
    pub fn new(
        agent: PlannedAgent,
        outlets: HashMap<String, Outlet>,
        dead: Arc<DeadLetters>,
        metrics: Arc<Metrics>,
        state: Arc<dyn StateBackend>,
        checkpoints: Checkpoints,
    ) -> Self {
        let label: Arc<str> = Arc::from(agent.name.as_str());
        Self {
            agent,
            label,
            outlets,
            dead,
            metrics,
            state,
            checkpoints,
            instance: None,
        }
    }

    /// Processes batches until every input closes, snapshotting state at each aligned
    /// barrier and once more at the end. An error is fatal for the job.
    pub fn run(mut self, mut inputs: AlignedInputs) -> Result<()> {
        let mut instance = self.fresh_instance()?;
        if let Some(snapshot) = self.checkpoints.restore.take() {
            instance.restore(&snapshot).map_err(|err| {
                anyhow::anyhow!(
                    "agent `{}`: restoring its snapshot failed: {err}",
                    self.label
                )
            })?;
            tracing::info!(agent = %self.label, "restored the agent's own snapshot ({} bytes)", snapshot.len());
        }
        self.instance = Some(instance);
        while let Some(next) = inputs.next() {
            let envelope = match next {
                Aligned::Batch(envelope) => envelope,
                Aligned::Barrier(id) => {
                    self.checkpoint(id);
                    continue;
                }
            };
            let ack = envelope.ack.clone();
            if let Err(err) = self.handle(envelope) {
                // The batch was not processed: its offsets must not be committed.
                if let Some(ack) = ack {
                    ack.fail();
                }
                inputs.fail_queued();
                return Err(err);
            }
        }
        tracing::debug!(agent = %self.label, "input closed; agent stage done");
        if let Some(coordinator) = self.checkpoints.coordinator.clone() {
            let written = coordinator
                .final_agent_dir(&self.agent.name)
                .and_then(|dir| self.snapshot(&dir));
            coordinator.agent_finished(&self.agent.name, written);
        }
        Ok(())
    }

    /// Takes this agent's part in checkpoint `id`: its state as of the barrier goes into the
    /// checkpoint, then the barrier goes on to every output.
    fn checkpoint(&mut self, id: u64) {
        if let Some(coordinator) = self.checkpoints.coordinator.clone() {
            match coordinator.agent_dir(id, &self.agent.name) {
                Some(dir) => match self.snapshot(&dir) {
                    Some(backend) => coordinator.agent_snapshot(id, &self.agent.name, backend),
                    None => coordinator.abandon(id, "an agent's state could not be written"),
                },
                None => {
                    tracing::debug!(agent = %self.label, "checkpoint {id} is no longer in flight")
                }
            }
        }
        for outlet in self.outlets.values() {
            outlet.send_barrier(id);
        }
    }

    /// Writes the state tables and the agent's own snapshot into its folder `dir`; the
    /// backend's name, or `None` (logged) when it failed.
    fn snapshot(&mut self, dir: &std::path::Path) -> Option<&'static str> {
        let written = self.state.snapshot(&dir.join(STATE_FOLDER)).and_then(|()| {
            if self.instance.is_none() {
                self.instance = Some(self.fresh_instance()?);
            }
            let instance = self.instance.as_mut().expect("created above");
            let own = instance
                .snapshot()
                .map_err(|err| anyhow::anyhow!("the agent's snapshot failed: {err}"))?;
            if let Some(bytes) = own {
                std::fs::write(dir.join(GUEST_FILE), bytes)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => Some(self.state.name()),
            Err(err) => {
                tracing::error!(agent = %self.label, "state snapshot failed: {err:#}");
                None
            }
        }
    }

    fn fresh_instance(&self) -> Result<AgentInstance> {
        let name = &self.agent.name;
        let mut instance = self
            .agent
            .component
            .instantiate(
                self.label.clone(),
                &self.agent.limits.wasm,
                Some(self.state.clone()),
            )
            .map_err(|err| anyhow::anyhow!("agent `{name}`: cannot instantiate: {err}"))?;
        instance
            .init(&self.agent.config)
            .map_err(|err| anyhow::anyhow!("agent `{name}`: init failed: {err}"))?;
        Ok(instance)
    }

    fn handle(&mut self, envelope: Envelope) -> Result<()> {
        match self.call(&envelope)? {
            Outcome::Done => Ok(()),
            Outcome::Poisoned(reason) => {
                tracing::error!(
                    "{}: {reason}; isolating the records that cause it",
                    self.place(&envelope)
                );
                self.isolate(envelope, reason)
            }
        }
    }

    /// Names the agent, input, partition and offsets of a batch, for logs and errors.
    fn place(&self, envelope: &Envelope) -> String {
        let (first, last) = envelope.offsets.bounds();
        format!(
            "agent `{}` on input `{}` partition {} offsets {first}..={last}",
            self.label, envelope.input, envelope.partition
        )
    }

    /// Finds the records that make the agent fail: the halves of a failing batch are tried
    /// again (on a fresh instance after a trap), down to single records, so that only those
    /// are dead-lettered and every other record is processed.
    fn isolate(&mut self, envelope: Envelope, reason: String) -> Result<()> {
        if envelope.batch.num_rows() <= 1 {
            self.dead_letter_batch(&envelope, &reason);
            return Ok(());
        }
        for half in envelope.halves() {
            if let Outcome::Poisoned(reason) = self.call(&half)? {
                self.isolate(half, reason)?;
            }
        }
        Ok(())
    }

    /// One batch through the agent, with retries; an error ends the job.
    fn call(&mut self, envelope: &Envelope) -> Result<Outcome> {
        let bytes = sabot_ipc::encode(&envelope.batch)?;
        let (first_offset, last_offset) = envelope.offsets.bounds();
        let ctx = BatchContext {
            input: envelope.input.to_string(),
            partition: envelope.partition,
            first_offset,
            last_offset,
            watermark_ms: envelope.watermark_ms,
        };
        let mut attempt = 0;
        loop {
            if self.instance.is_none() {
                self.instance = Some(self.fresh_instance()?);
            }
            let instance = self.instance.as_mut().expect("created above");
            let error = match instance.process(&ctx, &bytes) {
                Ok(result) => {
                    self.deliver(envelope, result);
                    return Ok(Outcome::Done);
                }
                Err(error) => error,
            };
            let place = self.place(envelope);
            match error {
                CallError::Agent(err)
                    if err.kind == ErrorKind::Retryable
                        && attempt < self.agent.limits.max_retries =>
                {
                    attempt += 1;
                    tracing::warn!(
                        "{place}: retryable error (attempt {attempt}): {}",
                        err.message
                    );
                    std::thread::sleep(RETRY_BACKOFF * 2u32.pow(attempt - 1));
                }
                CallError::Agent(err) if err.kind == ErrorKind::Fatal => {
                    bail!("{place}: fatal error: {}", err.message);
                }
                CallError::Host(reason) => bail!("{place}: {reason}"),
                CallError::Agent(err) if err.kind == ErrorKind::Retryable => {
                    let reason = format!("still failing after {attempt} retries: {}", err.message);
                    self.dead_letter_batch(envelope, &reason);
                    return Ok(Outcome::Done);
                }
                CallError::Agent(err) => {
                    return Ok(Outcome::Poisoned(format!(
                        "agent refused the batch: {}",
                        err.message
                    )));
                }
                CallError::Deadline(reason) => {
                    // Halving would cost a deadline per step: the whole batch is dead-lettered.
                    tracing::error!("{place}: {reason}; replacing the instance");
                    self.replace_instance();
                    self.dead_letter_batch(envelope, &reason);
                    return Ok(Outcome::Done);
                }
                CallError::Trap(reason) => {
                    tracing::debug!("{place}: {reason}; replacing the instance");
                    self.replace_instance();
                    return Ok(Outcome::Poisoned(reason));
                }
            }
        }
    }

    /// Drops a trapped instance; the next call gets a fresh one.
    fn replace_instance(&mut self) {
        self.instance = None;
        metrics::add(&self.metrics.restarts, 1);
    }

    /// Validates every output before sending any, so a batch is delivered whole or not at all;
    /// a batch the agent got wrong is dead-lettered.
    fn deliver(&mut self, envelope: &Envelope, result: ProcessResult) {
        let mut batches: Vec<(&Outlet, RecordBatch)> = Vec::with_capacity(result.outputs.len());
        for output in result.outputs {
            let Some(outlet) = self.outlets.get(&output.output) else {
                let declared: Vec<&str> = self.outlets.keys().map(String::as_str).collect();
                let reason = format!(
                    "agent emitted to undeclared output `{}` (declared: {})",
                    output.output,
                    declared.join(", ")
                );
                tracing::error!(agent = %self.label, "{reason}");
                self.dead_letter_batch(envelope, &reason);
                return;
            };
            match sabot_ipc::decode(output.batch, Trust::Untrusted) {
                Ok(batch) => batches.push((outlet, batch)),
                Err(err) => {
                    let reason = format!(
                        "agent returned a malformed batch for output `{}`: {err}",
                        output.output
                    );
                    tracing::error!(agent = %self.label, "{reason}");
                    self.dead_letter_batch(envelope, &reason);
                    return;
                }
            }
        }
        if !result.rejected.is_empty() {
            let rows = rows_as_json(&envelope.batch);
            for rejected in result.rejected {
                let row = rejected.row as usize;
                self.dead.send(self.letter(
                    envelope,
                    envelope.offsets.row(row),
                    rows.get(row).cloned().unwrap_or(Value::Null),
                    rejected.reason,
                ));
            }
        }
        let offsets = {
            let (first, last) = envelope.offsets.bounds();
            Offsets::Range { first, last }
        };
        for (outlet, batch) in batches {
            let stream = outlet.stream.clone();
            outlet.send(Envelope {
                stream,
                origin: envelope.origin.clone(),
                input: envelope.input.clone(),
                partition: envelope.partition,
                offsets: offsets.clone(),
                watermark_ms: envelope.watermark_ms,
                batch,
                ack: envelope.ack.clone(),
            });
        }
    }

    fn dead_letter_batch(&self, envelope: &Envelope, reason: &str) {
        for (row, record) in rows_as_json(&envelope.batch).into_iter().enumerate() {
            let offset = envelope
                .offsets
                .row(row)
                .or(Some(envelope.offsets.bounds().0));
            self.dead
                .send(self.letter(envelope, offset, record, reason.to_string()));
        }
    }

    fn letter(
        &self,
        envelope: &Envelope,
        offset: Option<i64>,
        record: Value,
        reason: String,
    ) -> DeadLetter {
        DeadLetter {
            reason,
            stage: format!("agent:{}", self.label),
            input: envelope.origin.to_string(),
            partition: envelope.partition,
            offset,
            record,
            ack: envelope.ack.clone(),
            ..DeadLetter::default()
        }
    }
}
