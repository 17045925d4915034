//! The running job: a graph of sources, agents and sinks connected by bounded channels.
//!
//! Each stage runs on its own thread; channels hold at most `batch.channel_capacity` batches,
//! so a slow stage slows everything upstream of it (backpressure) and memory stays bounded.

pub mod ack;
mod agent_stage;
mod align;
mod envelope;
mod graph;
mod metrics;
mod run;
mod source_outlet;

pub use ack::{Ack, OffsetTracker};
pub use envelope::{Envelope, Offsets};
pub use graph::{Plan, PlannedAgent, plan};
pub use metrics::Metrics;
pub use run::{Checkpointing, RunOptions, Summary, run};
pub use source_outlet::SourceOutlet;
