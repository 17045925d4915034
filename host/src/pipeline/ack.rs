//! At-least-once bookkeeping: a source batch's offsets become committable only once every
//! record derived from it (outputs, dead letters, records filtered out) has been settled.
//!
//! Each source batch gets an [`Ack`]. Every envelope, dead letter and produced message that
//! descends from the batch holds a clone; dropping a clone settles that part. When the last
//! clone is gone the batch is complete, unless some holder called [`Ack::fail`] (or was
//! dropped while its thread panicked). Completions are reported to the partition's
//! [`OffsetTracker`], which hands out the highest offset below which every batch is complete.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A hold on a source batch's offsets; see the module documentation.
#[derive(Clone)]
pub struct Ack(Arc<Batch>);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ack(partition {} up to {})",
            self.0.partition, self.0.next_offset
        )
    }
}

impl Ack {
    /// Marks the batch failed: its offsets (and every later one of its partition) are never
    /// committed by this run, so the records are read again after a restart.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }
}

struct Batch {
    tracker: Arc<OffsetTracker>,
    partition: i32,
    sequence: u64,
    next_offset: i64,
    failed: AtomicBool,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let failed = self.failed.load(Ordering::Relaxed) || std::thread::panicking();
        self.tracker.complete(self.partition, self.sequence, failed);
    }
}

/// In-flight batches of every partition of one source, in the order they were read.
#[derive(Default)]
pub struct OffsetTracker {
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    partitions: BTreeMap<i32, PartitionState>,
    next_sequence: u64,
    /// Committable offsets that changed since the last [`OffsetTracker::take_committable`].
    dirty: bool,
}

#[derive(Default)]
struct PartitionState {
    /// (sequence, offset after the batch, completed) in read order.
    pending: VecDeque<(u64, i64, bool)>,
    /// Offset up to which (exclusive) every batch has completed.
    committable: Option<i64>,
    /// A batch failed: nothing of this partition is committed any more.
    failed: bool,
}

impl OffsetTracker {
    /// A tracker shared by a source's batches.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a batch of `partition` whose last record has offset `last_offset`.
    pub fn track(self: &Arc<Self>, partition: i32, last_offset: i64) -> Ack {
        let mut state = self.state.lock().expect("tracker lock");
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state
            .partitions
            .entry(partition)
            .or_default()
            .pending
            .push_back((sequence, last_offset + 1, false));
        Ack(Arc::new(Batch {
            tracker: self.clone(),
            partition,
            sequence,
            next_offset: last_offset + 1,
            failed: AtomicBool::new(false),
        }))
    }

    fn complete(&self, partition: i32, sequence: u64, failed: bool) {
        let mut state = self.state.lock().expect("tracker lock");
        let Some(part) = state.partitions.get_mut(&partition) else {
            return;
        };
        if failed {
            part.failed = true;
        }
        if let Some(entry) = part.pending.iter_mut().find(|(s, _, _)| *s == sequence) {
            entry.2 = true;
        }
        let mut advanced = false;
        while let Some(&(_, next, true)) = part.pending.front() {
            part.pending.pop_front();
            if !part.failed {
                part.committable = Some(next);
                advanced = true;
            }
        }
        state.dirty |= advanced;
    }

    /// The offsets to commit per partition (the next offset to read), if any changed since
    /// the last call.
    pub fn take_committable(&self) -> Option<Vec<(i32, i64)>> {
        let mut state = self.state.lock().expect("tracker lock");
        if !std::mem::take(&mut state.dirty) {
            return None;
        }
        drop(state);
        Some(self.committable())
    }

    /// The offsets to commit per partition, changed or not.
    pub fn committable(&self) -> Vec<(i32, i64)> {
        let state = self.state.lock().expect("tracker lock");
        state
            .partitions
            .iter()
            .filter_map(|(p, s)| s.committable.map(|o| (*p, o)))
            .collect()
    }

    /// Batches not yet complete.
    pub fn pending(&self) -> usize {
        let state = self.state.lock().expect("tracker lock");
        state.partitions.values().map(|p| p.pending.len()).sum()
    }

    /// Partitions on which a batch failed.
    pub fn failed_partitions(&self) -> Vec<i32> {
        let state = self.state.lock().expect("tracker lock");
        state
            .partitions
            .iter()
            .filter(|(_, s)| s.failed)
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_first_incomplete_batch() {
        let tracker = OffsetTracker::new();
        let a = tracker.track(0, 9);
        let b = tracker.track(0, 19);
        let c = tracker.track(1, 4);
        drop(b);
        assert_eq!(tracker.take_committable(), None, "batch b waits for a");
        drop(c);
        assert_eq!(tracker.take_committable(), Some(vec![(1, 5)]));
        drop(a);
        assert_eq!(tracker.take_committable(), Some(vec![(0, 20), (1, 5)]));
        assert_eq!(tracker.take_committable(), None, "nothing changed");
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn a_batch_completes_when_its_last_holder_lets_go() {
        let tracker = OffsetTracker::new();
        let ack = tracker.track(0, 99);
        let output = ack.clone();
        let dead_letter = ack.clone();
        drop(ack);
        drop(output);
        assert_eq!(
            tracker.take_committable(),
            None,
            "a dead letter still in flight"
        );
        drop(dead_letter);
        assert_eq!(tracker.take_committable(), Some(vec![(0, 100)]));
    }

    #[test]
    fn a_failed_batch_blocks_its_partition_for_good() {
        let tracker = OffsetTracker::new();
        let a = tracker.track(0, 9);
        let b = tracker.track(0, 19);
        let other = tracker.track(1, 9);
        b.clone().fail();
        drop(a);
        drop(b);
        drop(other);
        assert_eq!(tracker.take_committable(), Some(vec![(0, 10), (1, 10)]));
        let later = tracker.track(0, 29);
        drop(later);
        assert_eq!(
            tracker.take_committable(),
            None,
            "offsets after a failure are never committed"
        );
        assert_eq!(tracker.failed_partitions(), vec![0]);
    }

    #[test]
    fn a_holder_dropped_by_a_panic_fails_the_batch() {
        let tracker = OffsetTracker::new();
        let ack = tracker.track(0, 9);
        let _ = std::thread::spawn(move || {
            let _held = ack;
            panic!("stage crashed");
        })
        .join();
        assert_eq!(tracker.take_committable(), None);
        assert_eq!(tracker.failed_partitions(), vec![0]);
    }
}
