//! A source's consumer-group membership: rebalances are logged; before partitions are taken
//! away, the offsets completed on them are committed (so the new owner repeats as little as
//! possible); the source learns which partitions it lost and drops their pending records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::LoggingContext;
use crate::pipeline::OffsetTracker;

/// The consumer context of a Kafka source.
pub struct GroupContext {
    log: LoggingContext,
    topic: String,
    tracker: Option<Arc<OffsetTracker>>,
    revoked: Mutex<Vec<i32>>,
    /// A rebalance has happened since the last [`GroupContext::take_rebalanced`].
    rebalanced: AtomicBool,
}

impl GroupContext {
    /// The context of the consumer of `topic`, whose completed offsets `tracker` knows (and
    /// commits before partitions are taken away; `None` commits nothing then).
    pub fn new(role: &str, topic: &str, tracker: Option<Arc<OffsetTracker>>) -> Self {
        Self {
            log: LoggingContext::new(role),
            topic: topic.to_string(),
            tracker,
            revoked: Mutex::new(Vec::new()),
            rebalanced: AtomicBool::new(false),
        }
    }

    /// Whether the group's assignment changed since the last call (the group membership, its
    /// generation, is then new).
    pub fn take_rebalanced(&self) -> bool {
        self.rebalanced.swap(false, Ordering::Relaxed)
    }

    /// Partitions taken away since the last call.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }

    /// The source's name in logs, e.g. `source:transactions`.
    pub fn role(&self) -> &str {
        &self.log.role
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let lost: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        let mut offsets = TopicPartitionList::new();
        let committable = self
            .tracker
            .as_ref()
            .map(|t| t.committable())
            .unwrap_or_default();
        for (partition, offset) in committable {
            if lost.contains(&partition) {
                let _ =
                    offsets.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
            }
        }
        if offsets.count() > 0
            && let Err(err) = consumer.commit(&offsets, CommitMode::Sync)
        {
            tracing::warn!(target: "kafka", "{}: committing before a rebalance failed: {err}", self.role());
        }
        self.revoked.lock().expect("revoked lock").extend(lost);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let describe = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let role = self.role();
        self.rebalanced.store(true, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(target: "kafka", "{role}: assigned {}", describe(list))
            }
            Rebalance::Revoke(list) => {
                tracing::info!(target: "kafka", "{role}: revoked {}", describe(list))
            }
            Rebalance::Error(err) => {
                tracing::warn!(target: "kafka", "{role}: rebalance error: {err}")
            }
        }
    }
}
