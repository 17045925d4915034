//! What travels between stages.

use std::sync::Arc;

use arrow::array::RecordBatch;
use tokio::sync::mpsc::Sender;

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
    /// The receiving agent's input name (the stream name for sinks).
    pub input: Arc<str>,
    pub partition: u32,
    pub offsets: Offsets,
    pub watermark_ms: Option<i64>,
    pub batch: RecordBatch,
}

impl Envelope {
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

/// The receivers of one stream.
#[derive(Clone)]
pub struct Outlet {
    /// The stream's name.
    pub stream: Arc<str>,
    /// Each receiver's channel and its name for the stream.
    pub subscribers: Vec<(Sender<Envelope>, Arc<str>)>,
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
            delivered |= tx.blocking_send(copy).is_ok();
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
