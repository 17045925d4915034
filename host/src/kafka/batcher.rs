//! Gathering a source's records per partition until a batch is due: when it reaches
//! `max_rows`, when its first record has waited `linger`, or when the partition is caught up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::records::RecordBuf;
use crate::io::Batching;

/// Longest a poll waits when no batch is pending.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Records of one partition waiting to become a batch.
struct Pending {
    records: RecordBuf,
    since: Instant,
}

/// Pending records of every partition.
pub struct Batcher {
    batching: Batching,
    pending: BTreeMap<i32, Pending>,
}

impl Batcher {
    /// A batcher with nothing pending.
    pub fn new(batching: Batching) -> Self {
        Self {
            batching,
            pending: BTreeMap::new(),
        }
    }

    /// Adds a record; returns its partition's batch once it is full.
    pub fn push(&mut self, partition: i32, push: impl FnOnce(&mut RecordBuf)) -> Option<RecordBuf> {
        let slot = self.pending.entry(partition).or_insert_with(|| Pending {
            records: RecordBuf::default(),
            since: Instant::now(),
        });
        push(&mut slot.records);
        if slot.records.len() < self.batching.max_rows {
            return None;
        }
        self.take(partition)
    }

    /// The pending records of `partition`, if any.
    pub fn take(&mut self, partition: i32) -> Option<RecordBuf> {
        self.pending.remove(&partition).map(|p| p.records)
    }

    /// Batches whose first record has waited `linger`.
    pub fn due(&mut self) -> Vec<(i32, RecordBuf)> {
        let linger = self.batching.linger;
        let due: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since.elapsed() >= linger)
            .map(|(partition, _)| *partition)
            .collect();
        due.into_iter()
            .filter_map(|p| Some((p, self.take(p)?)))
            .collect()
    }

    /// Every pending batch.
    pub fn drain(&mut self) -> Vec<(i32, RecordBuf)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(p, pending)| (p, pending.records))
            .collect()
    }

    /// How long the next poll may wait without making a batch late.
    pub fn wait(&self) -> Duration {
        let now = Instant::now();
        self.pending
            .values()
            .map(|p| (p.since + self.batching.linger).saturating_duration_since(now))
            .min()
            .unwrap_or(IDLE_WAIT)
            .min(IDLE_WAIT)
    }

    /// Whether no partition has pending records.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> impl FnOnce(&mut RecordBuf) {
        move |records: &mut RecordBuf| records.push(offset, None, Some(b"{}"), None, Vec::new())
    }

    #[test]
    fn batches_by_size_per_partition_and_by_linger() {
        let mut batcher = Batcher::new(Batching {
            max_rows: 2,
            linger: Duration::from_millis(30),
        });
        assert!(batcher.push(0, record(0)).is_none());
        assert!(batcher.push(1, record(0)).is_none());
        let full = batcher.push(0, record(1)).expect("partition 0 is full");
        assert_eq!((full.offset(0), full.offset(1)), (0, 1));
        assert!(batcher.due().is_empty(), "partition 1 still lingers");
        assert!(batcher.wait() <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        let due = batcher.due();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, 1);
        assert!(batcher.is_empty());
        assert_eq!(batcher.wait(), IDLE_WAIT);
    }
}
