//! What travels between stages.

use std::sync::Arc;

use arrow::array::RecordBatch;
use tokio::sync::mpsc::{Receiver, Sender};

use super::ack::Ack;

/// Source offsets of a batch's rows.
#[derive(Debug, Clone)]
pub enum Offsets {
    /// One offset per row (batches straight from a source).
    Rows(Arc<[i64]>),
    /// The offset range of the input batch an agent output came from.
    Range { first: i64, last: i64 },
}

impl Offsets {
    /// Offset of the first and last record.
    pub fn bounds(&self) -> (i64, i64) {
        match self {
            Offsets::Rows(rows) => (
                rows.first().copied().unwrap_or(-1),
                rows.last().copied().unwrap_or(-1),
            ),
            Offsets::Range { first, last } => (*first, *last),
        }
    }

    /// Offset of row `row`, when rows are tracked one by one.
    pub fn row(&self, row: usize) -> Option<i64> {
        match self {
            Offsets::Rows(rows) => rows.get(row).copied(),
            Offsets::Range { .. } => None,
        }
    }
}

/// A batch on its way to a stage.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The stream it belongs to (`source` or `agent.output`).
    pub stream: Arc<str>,
    /// The source stream its records descend from.
    pub origin: Arc<str>,
    /// The receiving agent's input name (the stream name for sinks).
    pub input: Arc<str>,
    pub partition: u32,
    pub offsets: Offsets,
    pub watermark_ms: Option<i64>,
    pub batch: RecordBatch,
    /// Hold on the source batch's offsets, for sources that commit them (Kafka).
    pub ack: Option<Ack>,
}

impl Envelope {
    /// Marks the source batch as failed: its offsets are not committed.
    pub fn fail(&self) {
        if let Some(ack) = &self.ack {
            ack.fail();
        }
    }

    /// The two halves of the batch (at least one row each; needs two rows or more).
    pub fn halves(&self) -> [Envelope; 2] {
        let rows = self.batch.num_rows();
        let mid = rows / 2;
        let part = |start: usize, len: usize| Envelope {
            offsets: match &self.offsets {
                Offsets::Rows(all) => Offsets::Rows(all[start..start + len].into()),
                range => range.clone(),
            },
            batch: self.batch.slice(start, len),
            ..self.clone()
        };
        [part(0, mid), part(mid, rows - mid)]
    }
}

/// What flows through a stream: batches, and the checkpoint barriers between them.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(Envelope),
    /// Everything before it belongs to checkpoint `id`, everything after to the next one.
    Barrier(u64),
}

impl Message {
    /// Marks a batch failed (see [`Envelope::fail`]); barriers carry no offsets.
    pub fn fail(&self) {
        if let Message::Batch(envelope) = self {
            envelope.fail();
        }
    }
}

/// Closes a stage's input after the stage failed: everything still queued is marked failed
/// (so its offsets are not committed), and senders see the channel closed.
pub fn fail_queued(input: &mut Receiver<Message>) {
    input.close();
    while let Ok(message) = input.try_recv() {
        message.fail();
    }
}

/// The receivers of one stream.
#[derive(Clone)]
pub struct Outlet {
    /// The stream's name.
    pub stream: Arc<str>,
    /// Each receiver's channel and its name for the stream.
    pub subscribers: Vec<(Sender<Message>, Arc<str>)>,
}

impl Outlet {
    /// Sends a copy to every receiver (blocking while their channels are full). Returns
    /// `false` when no receiver is left.
    pub fn send(&self, envelope: Envelope) -> bool {
        let mut delivered = false;
        for (tx, input) in &self.subscribers {
            let copy = Envelope {
                input: input.clone(),
                ..envelope.clone()
            };
            match tx.blocking_send(Message::Batch(copy)) {
                Ok(()) => delivered = true,
                // The receiver is gone: its copy was not processed.
                Err(unsent) => unsent.0.fail(),
            }
        }
        delivered || self.subscribers.is_empty()
    }

    /// Sends checkpoint barrier `id` to every receiver, behind everything sent before it.
    /// Returns `false` when no receiver is left.
    pub fn send_barrier(&self, id: u64) -> bool {
        let mut delivered = false;
        for (tx, _) in &self.subscribers {
            delivered |= tx.blocking_send(Message::Barrier(id)).is_ok();
        }
        delivered || self.subscribers.is_empty()
    }

    /// An outlet of `stream` with no receivers yet.
    pub fn new(stream: &str) -> Self {
        Self {
            stream: Arc::from(stream),
            subscribers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::mpsc;
    use std::time::Duration;

    fn envelope(rows: i64) -> Envelope {
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows)) as _,
        )])
        .unwrap();
        Envelope {
            stream: Arc::from("s"),
            origin: Arc::from("s"),
            input: Arc::from("s"),
            partition: 0,
            offsets: Offsets::Rows((100..100 + rows).collect()),
            watermark_ms: None,
            batch,
            ack: None,
        }
    }

    fn batch_of(message: Option<Message>) -> Envelope {
        match message {
            Some(Message::Batch(envelope)) => envelope,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn a_full_channel_blocks_the_sender_until_the_receiver_catches_up() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let outlet = Outlet {
            stream: Arc::from("s"),
            subscribers: vec![(tx, Arc::from("in"))],
        };
        assert!(outlet.send(envelope(1)));
        let (done_tx, done_rx) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            let delivered = outlet.send(envelope(2));
            done_tx.send(()).unwrap();
            delivered
        });
        assert!(
            done_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the second send must wait for room in the channel"
        );
        assert_eq!(batch_of(rx.blocking_recv()).batch.num_rows(), 1);
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("send completes once there is room");
        assert!(sender.join().unwrap());
        let second = batch_of(rx.blocking_recv());
        assert_eq!(
            &*second.input, "in",
            "each receiver gets its own input name"
        );
        drop(rx);
    }

    #[test]
    fn send_reports_when_no_receiver_is_left() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let outlet = Outlet {
            stream: Arc::from("s"),
            subscribers: vec![(tx, Arc::from("in"))],
        };
        let tracker = super::super::ack::OffsetTracker::new();
        let mut unsent = envelope(1);
        unsent.ack = Some(tracker.track(0, 100));
        assert!(!outlet.send(unsent));
        assert_eq!(
            tracker.failed_partitions(),
            vec![0],
            "an unsent batch is not committed"
        );
    }

    #[test]
    fn a_failed_stage_fails_what_it_had_queued() {
        let tracker = super::super::ack::OffsetTracker::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        for partition in [0, 1] {
            let mut queued = envelope(1);
            queued.ack = Some(tracker.track(partition, 100));
            tx.blocking_send(Message::Batch(queued)).unwrap();
        }
        fail_queued(&mut rx);
        assert_eq!(tracker.failed_partitions(), vec![0, 1]);
        assert!(
            tx.blocking_send(Message::Batch(envelope(1))).is_err(),
            "senders see the input closed"
        );
    }

    #[test]
    fn halves_split_rows_and_offsets() {
        let [a, b] = envelope(5).halves();
        assert_eq!((a.batch.num_rows(), b.batch.num_rows()), (2, 3));
        assert_eq!(a.offsets.bounds(), (100, 101));
        assert_eq!(b.offsets.bounds(), (102, 104));
        assert_eq!(b.offsets.row(0), Some(102));
    }
}
