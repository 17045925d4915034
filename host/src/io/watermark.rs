//! Event-time watermarks: how far event time has progressed on a source, from a column that
//! holds event time in ms, trailing the newest event time by the allowed lateness.

use std::collections::HashMap;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::DataType;

/// The watermark of one ordered stream (a file, or one Kafka partition).
#[derive(Debug, Clone)]
pub struct Watermark {
    column: Option<String>,
    lateness_ms: i64,
    current: Option<i64>,
}

impl Watermark {
    /// A watermark from `column` (none without one), `lateness_ms` behind its newest value.
    pub fn new(column: Option<String>, lateness_ms: i64) -> Self {
        Self {
            column,
            lateness_ms,
            current: None,
        }
    }

    /// Takes a batch into account; returns the watermark after it (never moving back).
    pub fn advance(&mut self, batch: &RecordBatch) -> Option<i64> {
        let column = batch.column_by_name(self.column.as_deref()?)?;
        let as_i64 = arrow::compute::cast(column, &DataType::Int64).ok()?;
        let values = as_i64.as_any().downcast_ref::<Int64Array>()?;
        if let Some(newest) = arrow::compute::max(values) {
            let candidate = newest - self.lateness_ms;
            self.current = Some(self.current.map_or(candidate, |w| w.max(candidate)));
        }
        self.current
    }
}

/// The watermark of a partitioned source: the smallest of its partitions' watermarks
/// (partitions that have delivered nothing yet do not hold it back).
#[derive(Debug, Clone)]
pub struct PartitionedWatermark {
    template: Watermark,
    partitions: HashMap<i32, Watermark>,
}

impl PartitionedWatermark {
    /// A watermark per partition from `column`, `lateness_ms` behind each one's newest value.
    pub fn new(column: Option<String>, lateness_ms: i64) -> Self {
        Self {
            template: Watermark::new(column, lateness_ms),
            partitions: HashMap::new(),
        }
    }

    /// Takes a batch of `partition` into account; returns the source's watermark.
    pub fn advance(&mut self, partition: i32, batch: &RecordBatch) -> Option<i64> {
        self.template.column.as_ref()?;
        self.partitions
            .entry(partition)
            .or_insert_with(|| self.template.clone())
            .advance(batch);
        self.partitions.values().filter_map(|w| w.current).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn times(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("ts", Arc::new(Int64Array::from(values.to_vec())) as _)])
            .unwrap()
    }

    #[test]
    fn trails_the_newest_event_time_and_never_moves_back() {
        let mut watermark = Watermark::new(Some("ts".into()), 10);
        assert_eq!(watermark.advance(&times(&[100, 150, 120])), Some(140));
        assert_eq!(watermark.advance(&times(&[90])), Some(140));
        assert_eq!(Watermark::new(None, 0).advance(&times(&[1])), None);
    }

    #[test]
    fn a_partitioned_source_waits_for_its_slowest_partition() {
        let mut watermark = PartitionedWatermark::new(Some("ts".into()), 0);
        assert_eq!(watermark.advance(0, &times(&[500])), Some(500));
        assert_eq!(watermark.advance(1, &times(&[200])), Some(200));
        assert_eq!(watermark.advance(0, &times(&[900])), Some(200));
        assert_eq!(watermark.advance(1, &times(&[700])), Some(700));
    }
}
