//! A source's consumer-group membership: rebalances are logged; before partitions are taken
//! away, the offsets completed on them are committed (so the new owner repeats as little as
//! possible); the source learns which partitions it lost and drops their pending records.

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
    tracker: Arc<OffsetTracker>,
    revoked: Mutex<Vec<i32>>,
}

impl GroupContext {
    /// The context of the consumer of `topic`, whose completed offsets `tracker` knows.
    pub fn new(role: &str, topic: &str, tracker: Arc<OffsetTracker>) -> Self {
        Self {
            log: LoggingContext::new(role),
            topic: topic.to_string(),
            tracker,
            revoked: Mutex::new(Vec::new()),
        }
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
        for (partition, offset) in self.tracker.committable() {
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
