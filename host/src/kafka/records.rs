//! The records of one partition gathered for a batch, stored back to back: values in one
//! buffer (ready for the JSON decoder as they are), keys in another, and per-record metadata.
//! Consuming a message copies its bytes once and allocates nothing per message.

use crate::io::lines::LineChunk;

/// Records of one partition, in offset order.
#[derive(Default)]
pub struct RecordBuf {
    /// Values, one "line" each (numbered by index); a null value is an empty line.
    values: LineChunk,
    null_values: Vec<bool>,
    keys: Vec<u8>,
    /// Start and end of each key in `keys`; `None` for a null key.
    key_spans: Vec<Option<(usize, usize)>>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    /// Headers per record, kept only when the source asks for them.
    headers: Vec<Vec<(String, Option<Vec<u8>>)>>,
}

impl RecordBuf {
    /// Appends one record.
    pub fn push(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) {
        let index = self.offsets.len() as i64;
        self.values.push(index, value.unwrap_or_default());
        self.null_values.push(value.is_none());
        self.key_spans.push(key.map(|k| {
            let start = self.keys.len();
            self.keys.extend_from_slice(k);
            (start, self.keys.len())
        }));
        self.offsets.push(offset);
        self.timestamps.push(timestamp_ms);
        self.headers.push(headers);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Offset of record `i`.
    pub fn offset(&self, i: usize) -> i64 {
        self.offsets[i]
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> Option<i64> {
        self.offsets.last().copied()
    }

    /// Value of record `i`; `None` for a null value (tombstone).
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        (!self.null_values[i]).then(|| self.values.line(i))
    }

    /// Key of record `i`; `None` for a null key.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let (start, end) = self.key_spans[i]?;
        Some(&self.keys[start..end])
    }

    /// Message timestamp of record `i`, in ms.
    pub fn timestamp_ms(&self, i: usize) -> Option<i64> {
        self.timestamps[i]
    }

    /// Headers of record `i` (empty unless the source keeps headers).
    pub fn headers(&self, i: usize) -> &[(String, Option<Vec<u8>>)] {
        &self.headers[i]
    }

    /// Bytes of key and value of record `i`.
    pub fn size(&self, i: usize) -> usize {
        self.key(i).map_or(0, <[u8]>::len) + self.value(i).map_or(0, <[u8]>::len)
    }

    /// All values as one chunk, numbered by record index.
    pub fn values(&self) -> &LineChunk {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_values_and_nulls_apart() {
        let mut records = RecordBuf::default();
        records.push(7, Some(b"k1"), Some(b"v1"), Some(1), Vec::new());
        records.push(8, None, None, None, Vec::new());
        records.push(9, Some(b""), Some(b"{\n}"), None, Vec::new());
        records.push(10, Some(b"k4"), Some(b""), None, Vec::new());
        assert_eq!(records.len(), 4);
        assert_eq!(
            (records.key(0), records.value(0)),
            (Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        assert_eq!((records.key(1), records.value(1)), (None, None));
        assert_eq!(
            (records.key(2), records.value(2)),
            (Some(&b""[..]), Some(&b"{\n}"[..]))
        );
        assert_eq!(
            (records.key(3), records.value(3)),
            (Some(&b"k4"[..]), Some(&b""[..]))
        );
        assert_eq!(records.size(0), 4);
        assert_eq!(records.last_offset(), Some(10));
    }
}
