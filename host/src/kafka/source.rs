//! Reading a topic as a consumer-group member: records batched per partition (in order) by
//! size and linger, decoded, handed on with a hold on their offsets. Offsets are committed
//! only once everything derived from them is settled (at-least-once), or, when the job takes
//! checkpoints, from each completed checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::batcher::Batcher;
use super::client::KafkaConfig;
use super::decode::{DecodeSpec, Decoder, MetadataColumn};
use super::group::GroupContext;
use super::records::RecordBuf;
use super::transaction::Transactions;
use crate::checkpoint::{Manifest, SourcePosition};
use crate::io::source::SourceBatch;
use crate::io::watermark::PartitionedWatermark;
use crate::io::{Batching, DeadLetter, DeadLetters};
use crate::pipeline::{OffsetTracker, SourceOutlet};

/// A source bound to a topic.
#[derive(Debug, Clone)]
pub struct KafkaSourceSpec {
    pub topic: String,
    pub group: String,
    pub decode: DecodeSpec,
    /// Where records that cannot be processed go (default `<topic>.dlq`).
    pub dead_letter_topic: String,
    /// Stop once every assigned partition has been read to its end.
    pub stop_at_end: bool,
    /// Column holding event time in ms, for watermarks, and how far they trail it.
    pub event_time_column: Option<String>,
    pub allowed_lateness_ms: i64,
    /// Next offset per partition of a restored checkpoint: each partition is read from there
    /// once assigned, whatever the group committed.
    pub resume_offsets: BTreeMap<i32, i64>,
    pub client: KafkaConfig,
}

/// Consumes until `stop` is set, the downstream stages are gone, or (with `stop_at_end`) every
/// assigned partition has been read to its end; then waits for every batch to settle (or the
/// final checkpoint) and commits. With exactly-once `transactions`, offsets are committed in
/// the output transactions instead, and the source only reports its group membership.
pub fn run(
    name: &str,
    spec: &KafkaSourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    dead: &DeadLetters,
    mut out: SourceOutlet,
    transactions: Option<&Transactions>,
) -> Result<()> {
    let role = format!("source:{name}");
    let tracker = OffsetTracker::new();
    let consumer: BaseConsumer<GroupContext> = spec
        .client
        .consumer_config(&spec.group)?
        .create_with_context(GroupContext::new(
            &role,
            &spec.topic,
            // With checkpoints, only completed checkpoints commit offsets.
            out.checkpoints().is_none().then(|| tracker.clone()),
        ))
        .with_context(|| format!("{role}: creating a Kafka consumer"))?;
    consumer
        .subscribe(&[&spec.topic])
        .with_context(|| format!("{role}: subscribing to `{}`", spec.topic))?;
    // Before the first assignment the membership has no generation yet; it is refreshed after
    // every rebalance.
    if let (Some(transactions), Some(metadata)) = (transactions, consumer.group_metadata()) {
        transactions.set_group(name, metadata);
    }
    tracing::info!(
        "{role}: consuming `{}` as group `{}`{}",
        spec.topic,
        spec.group,
        if spec.stop_at_end {
            " until caught up"
        } else {
            ""
        }
    );

    let mut handoff = Handoff {
        name,
        role: &role,
        tracker,
        decoder: Decoder::new(spec.decode.clone())?,
        watermark: PartitionedWatermark::new(
            spec.event_time_column.clone(),
            spec.allowed_lateness_ms,
        ),
        dead,
        next_offsets: spec.resume_offsets.clone(),
    };
    // Partitions still to be moved to their restored offsets once assigned.
    let mut seeks = spec.resume_offsets.clone();
    let mut committed_checkpoint = 0;
    let wants_headers = spec.decode.metadata.contains(&MetadataColumn::Headers);
    let mut batcher = Batcher::new(batching);
    // Partitions whose end has been reached since their last record.
    let mut at_end: HashSet<i32> = HashSet::new();
    let commit_every = Duration::from_millis(spec.client.commit_interval_ms());
    let mut last_commit = Instant::now();
    let mut errors = ErrorLog::default();

    'consume: while !stop.load(Ordering::Relaxed) {
        let mut ready = Vec::new();
        let polled = consumer.poll(batcher.wait());
        if let Some(transactions) = transactions
            && consumer.context().take_rebalanced()
            && let Some(metadata) = consumer.group_metadata()
        {
            transactions.set_group(name, metadata);
        }
        // Records of partitions given to another member are read again by that member.
        for partition in consumer.context().take_revoked() {
            batcher.take(partition);
            at_end.remove(&partition);
        }
        match polled {
            Some(Ok(message)) if seeks.contains_key(&message.partition()) => {
                // The first record of a restored partition: read it from the checkpoint's offset.
                let partition = message.partition();
                let offset = seeks.remove(&partition).expect("checked");
                seek(&consumer, &spec.topic, partition, offset, &role)?;
            }
            Some(Ok(message)) => {
                errors.recovered(&role);
                let partition = message.partition();
                at_end.remove(&partition);
                let headers = match (wants_headers, message.headers()) {
                    (true, Some(headers)) => headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                    _ => Vec::new(),
                };
                let full = batcher.push(partition, |records| {
                    records.push(
                        message.offset(),
                        message.key(),
                        message.payload(),
                        message.timestamp().to_millis(),
                        headers,
                    )
                });
                ready.extend(full.map(|records| (partition, records)));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) if seeks.contains_key(&partition) => {
                let offset = seeks.remove(&partition).expect("checked");
                seek(&consumer, &spec.topic, partition, offset, &role)?;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // Caught up: nothing more to wait for, so the partition's batch goes now.
                at_end.insert(partition);
                ready.extend(batcher.take(partition).map(|records| (partition, records)));
            }
            Some(Err(err)) => errors.report(&role, &err),
            None => {}
        }
        ready.extend(batcher.due());
        for (partition, records) in ready {
            if !handoff.send(partition, records, &out) {
                break 'consume;
            }
        }
        if !out.barrier_if_due(|| handoff.position(&spec.topic)) {
            break 'consume;
        }
        match out.checkpoints() {
            Some(_) if transactions.is_some() => {}
            Some(checkpoints) => {
                if let Some(done) = checkpoints
                    .completed()
                    .filter(|m| m.id > committed_checkpoint)
                {
                    committed_checkpoint = done.id;
                    let offsets = checkpoint_offsets(&done, name);
                    commit(&consumer, &spec.topic, offsets, CommitMode::Async, &role);
                }
            }
            None if last_commit.elapsed() >= commit_every => {
                let offsets = handoff.tracker.take_committable();
                commit(&consumer, &spec.topic, offsets, CommitMode::Async, &role);
                last_commit = Instant::now();
            }
            None => {}
        }
        if spec.stop_at_end && batcher.is_empty() && all_caught_up(&consumer, &at_end)? {
            tracing::info!("{role}: every partition is read to its end");
            break;
        }
    }
    for (partition, records) in batcher.drain() {
        if !handoff.send(partition, records, &out) {
            break;
        }
    }
    let checkpoints = out.checkpoints().cloned();
    // Closing the stream lets the downstream stages drain and finish.
    out.finish(|| handoff.position(&spec.topic));
    let offsets = match checkpoints {
        Some(checkpoints) => {
            let last = wait_paused(&consumer, &role, "the final checkpoint", || {
                checkpoints.wait_final(|| {
                    let _ = consumer.poll(Duration::from_millis(0));
                })
            });
            last.and_then(|m| checkpoint_offsets(&m, name))
        }
        None => {
            let tracker = &handoff.tracker;
            wait_paused(&consumer, &role, "every batch to be delivered", || {
                let started = Instant::now();
                let mut next_log = Duration::from_secs(5);
                while tracker.pending() > 0 {
                    // Keeps the group membership alive; nothing is read while paused.
                    let _ = consumer.poll(Duration::from_millis(20));
                    if started.elapsed() >= next_log {
                        tracing::info!(
                            "{role}: waiting for {} batches to be delivered",
                            tracker.pending()
                        );
                        next_log += Duration::from_secs(5);
                    }
                }
            });
            let failed = tracker.failed_partitions();
            if !failed.is_empty() {
                tracing::warn!(
                    "{role}: offsets of partitions {failed:?} stop before records that were not delivered; they are read again on restart"
                );
            }
            Some(tracker.committable())
        }
    };
    if transactions.is_none() {
        commit(&consumer, &spec.topic, offsets, CommitMode::Sync, &role);
    }
    Ok(())
}

/// The offsets of source `name` in a checkpoint.
fn checkpoint_offsets(manifest: &Manifest, name: &str) -> Option<Vec<(i32, i64)>> {
    match manifest.sources.get(name)? {
        SourcePosition::Kafka { offsets, .. } => {
            Some(offsets.iter().map(|(p, o)| (*p, *o)).collect())
        }
        SourcePosition::File { .. } => None,
    }
}

/// Moves `partition` to `offset` (its position in the restored checkpoint).
fn seek(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    partition: i32,
    offset: i64,
    role: &str,
) -> Result<()> {
    consumer
        .seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        )
        .with_context(|| format!("{role}: cannot move partition {partition} to offset {offset}"))?;
    tracing::info!(
        "{role}: partition {partition} resumes at offset {offset} (from the checkpoint)"
    );
    Ok(())
}

/// Pauses every assigned partition and runs `wait`, which must keep polling the consumer;
/// logs (at debug level) `what` is waited for.
fn wait_paused<T>(
    consumer: &BaseConsumer<GroupContext>,
    role: &str,
    what: &str,
    wait: impl FnOnce() -> T,
) -> T {
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    tracing::debug!("{role}: waiting for {what}");
    wait()
}

/// Turns a partition's records into a batch for the next stage, with a hold on their
/// offsets, and the records that cannot be decoded into dead letters.
struct Handoff<'a> {
    name: &'a str,
    role: &'a str,
    tracker: Arc<OffsetTracker>,
    decoder: Decoder,
    watermark: PartitionedWatermark,
    dead: &'a DeadLetters,
    /// The offset after the last record handed on, per partition.
    next_offsets: BTreeMap<i32, i64>,
}

impl Handoff<'_> {
    /// Where the source stands: everything before these offsets has been handed on.
    fn position(&self, topic: &str) -> SourcePosition {
        SourcePosition::Kafka {
            topic: topic.to_string(),
            offsets: self.next_offsets.clone(),
        }
    }

    /// Returns `false` when the next stage is gone.
    fn send(&mut self, partition: i32, records: RecordBuf, out: &SourceOutlet) -> bool {
        let Some(last) = records.last_offset() else {
            return true;
        };
        self.next_offsets.insert(partition, last + 1);
        let ack = self.tracker.track(partition, last);
        let decoded = self.decoder.decode(partition, &records);
        for (index, reason) in decoded.bad {
            let value = records.value(index);
            self.dead.send(DeadLetter {
                reason,
                stage: self.role.to_string(),
                input: self.name.to_string(),
                partition: partition as u32,
                offset: Some(records.offset(index)),
                record: value.map_or(Value::Null, |v| {
                    Value::String(String::from_utf8_lossy(v).into_owned())
                }),
                raw: value.map(<[u8]>::to_vec),
                key: records.key(index).map(<[u8]>::to_vec),
                ack: Some(ack.clone()),
            });
        }
        match decoded.batch {
            Some(batch) => out.send(SourceBatch {
                watermark_ms: self.watermark.advance(partition, &batch),
                batch,
                partition: partition as u32,
                offsets: decoded.offsets.into(),
                ack: Some(ack),
            }),
            None => true,
        }
    }
}

/// Whether every assigned partition has reported its end since its last record.
fn all_caught_up(consumer: &BaseConsumer<GroupContext>, at_end: &HashSet<i32>) -> Result<bool> {
    if at_end.is_empty() {
        return Ok(false);
    }
    let assignment = consumer.assignment()?;
    let assigned = assignment.elements();
    Ok(!assigned.is_empty() && assigned.iter().all(|e| at_end.contains(&e.partition())))
}

fn commit(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    offsets: Option<Vec<(i32, i64)>>,
    mode: CommitMode,
    role: &str,
) {
    let Some(offsets) = offsets.filter(|o| !o.is_empty()) else {
        return;
    };
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (partition, offset) in &offsets {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    match consumer.commit(&list, mode) {
        Ok(()) => tracing::debug!("{role}: committed {offsets:?}"),
        Err(err) => tracing::warn!("{role}: committing offsets {offsets:?} failed: {err}"),
    }
}

/// Consumer errors, logged when they start and when they clear rather than on every poll.
#[derive(Default)]
struct ErrorLog {
    failing_since: Option<Instant>,
    repeats: u64,
}

impl ErrorLog {
    fn report(&mut self, role: &str, err: &rdkafka::error::KafkaError) {
        self.repeats += 1;
        if self.failing_since.is_none() || self.repeats.is_power_of_two() {
            tracing::warn!("{role}: {err} (librdkafka retries with backoff)");
        }
        self.failing_since.get_or_insert_with(Instant::now);
    }

    fn recovered(&mut self, role: &str) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                "{role}: consuming again after {:.1} s of errors",
                since.elapsed().as_secs_f64()
            );
            self.repeats = 0;
        }
    }
}
