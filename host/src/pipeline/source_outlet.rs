//! Where a source hands its batches on: the stream's receivers, and (when the job takes
//! checkpoints) the barriers the coordinator asks for.

use std::sync::Arc;

use super::envelope::{Envelope, Offsets, Outlet};
use super::metrics::Metrics;
use crate::checkpoint::{Coordinator, SourcePosition};
use crate::io::source::SourceBatch;

/// A source's side of its stream.
pub struct SourceOutlet {
    name: String,
    outlet: Outlet,
    metrics: Arc<Metrics>,
    checkpoints: Option<Arc<Coordinator>>,
    /// The newest barrier sent.
    sent: u64,
}

impl SourceOutlet {
    /// The outlet of source `name`.
    pub fn new(
        name: &str,
        outlet: Outlet,
        metrics: Arc<Metrics>,
        checkpoints: Option<Arc<Coordinator>>,
    ) -> Self {
        Self {
            name: name.to_string(),
            outlet,
            metrics,
            checkpoints,
            sent: 0,
        }
    }

    /// Whether the job takes checkpoints (offsets are then committed from them).
    pub fn checkpoints(&self) -> Option<&Arc<Coordinator>> {
        self.checkpoints.as_ref()
    }

    /// Sends a batch on (blocking while the next stage is full). Returns `false` when no
    /// receiver is left.
    pub fn send(&self, b: SourceBatch) -> bool {
        self.metrics.read(b.batch.num_rows());
        let stream = self.outlet.stream.clone();
        self.outlet.send(Envelope {
            stream: stream.clone(),
            origin: stream.clone(),
            input: stream,
            partition: b.partition,
            offsets: Offsets::Rows(b.offsets),
            watermark_ms: b.watermark_ms,
            batch: b.batch,
            ack: b.ack,
        })
    }

    /// Sends the barrier of a checkpoint the coordinator asked for since the last one, with
    /// the source's `position` (everything sent so far is before the barrier). Call it between
    /// batches, and regularly while idle. Returns `false` when no receiver is left.
    pub fn barrier_if_due(&mut self, position: impl FnOnce() -> SourcePosition) -> bool {
        let Some(coordinator) = &self.checkpoints else {
            return true;
        };
        let id = coordinator.requested();
        if id <= self.sent {
            return true;
        }
        self.sent = id;
        coordinator.source_barrier(id, &self.name, position());
        self.outlet.send_barrier(id)
    }

    /// Ends the stream: the source has read its last record and stands at `position`. Sends
    /// the barrier it still owes the checkpoint in flight, then closes the stream.
    pub fn finish(self, position: impl FnOnce() -> SourcePosition) {
        if let Some(coordinator) = &self.checkpoints
            && let Some(id) = coordinator.source_finished(&self.name, self.sent, position())
        {
            self.outlet.send_barrier(id);
        }
    }
}
