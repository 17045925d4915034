//! The batch wire format of Sabot's WIT contract (`ipc-batch`): one Arrow record batch encoded
//! as an Arrow IPC stream (schema message, then the batch message). Shared by the host and the
//! guest SDK so both sides agree byte for byte.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;

/// Bytes reserved beyond the array data for the schema and message headers.
const HEADER_SLACK: usize = 1024;

/// Encodes `batch` as IPC stream bytes, in one allocation sized from the batch.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let capacity = batch.get_array_memory_size() + HEADER_SLACK;
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), &batch.schema())?;
    writer.write(batch)?;
    writer.into_inner()
}

/// How much the decoder trusts the bytes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Bytes from the other side of a sandbox boundary: every buffer, offset and UTF-8
    /// string is validated, so malformed input is an error, never undefined behaviour.
    Untrusted,
    /// Bytes produced by [`encode`] in a process that the decoder trusts (the host, seen from
    /// inside the guest). Validation is skipped.
    Trusted,
}

/// Decodes IPC stream bytes holding exactly one record batch. Takes ownership of the bytes so
/// aligned buffers are used in place, without a copy.
pub fn decode(bytes: Vec<u8>, trust: Trust) -> Result<RecordBatch, ArrowError> {
    let mut decoder = StreamDecoder::new();
    if trust == Trust::Trusted {
        // SAFETY: `Trusted` is only passed for bytes written by `encode` in the trusted host;
        // the sandbox boundary protects the host, not the guest from its host.
        decoder = unsafe { decoder.with_skip_validation(true) };
    }
    let mut buffer = Buffer::from_vec(bytes);
    let mut batch = None;
    while !buffer.is_empty() {
        match decoder.decode(&mut buffer)? {
            Some(decoded) if batch.is_none() => batch = Some(decoded),
            Some(_) => {
                return Err(ArrowError::IpcError(
                    "expected one record batch, found several".into(),
                ));
            }
            None => {}
        }
    }
    batch.ok_or_else(|| ArrowError::IpcError("IPC stream holds no record batch".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn sample() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            (
                "name",
                Arc::new(StringArray::from(vec!["a", "bb", "ccc"])) as _,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn round_trips_one_batch() {
        let batch = sample();
        let bytes = encode(&batch).unwrap();
        assert_eq!(decode(bytes.clone(), Trust::Untrusted).unwrap(), batch);
        assert_eq!(decode(bytes, Trust::Trusted).unwrap(), batch);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let bytes = encode(&sample()).unwrap();
        assert!(decode(b"not arrow at all".to_vec(), Trust::Untrusted).is_err());
        assert!(decode(bytes[..bytes.len() / 2].to_vec(), Trust::Untrusted).is_err());
        assert!(decode(Vec::new(), Trust::Untrusted).is_err());
    }

    #[test]
    fn rejects_invalid_utf8_when_untrusted() {
        let mut bytes = encode(&sample()).unwrap();
        let pos = bytes.windows(3).rposition(|w| w == b"ccc").unwrap();
        bytes[pos] = 0xff;
        let err = decode(bytes, Trust::Untrusted).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("utf"), "{err}");
    }
}
